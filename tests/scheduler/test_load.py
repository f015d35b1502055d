"""1,000 concurrent workflows on SQLite, driven to completion by one scheduler.

Each workflow is ``workflows.pipeline``: a two-way fan-out, two sequential
steps, a durable timer and a child workflow, so the 1,000 runs make 2,000
runs in all, 6,000 checkpoints and 5,000 recorded steps.  All 1,000 are
started before the scheduler runs, so they are all in flight at once: their
fan-outs share the thread pool and their timers are due together.

The default test uses ``SQLiteStore(durable=False)`` (WAL, ``synchronous=NORMAL``:
atomic and crash-safe for a killed process, no fsync per commit).  The slow
variant uses the default ``durable=True``, where every commit waits for an
fsync and the disk sets the pace (docs/scheduler.md has the numbers).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from corosnap.scheduler import Scheduler
from corosnap.stores import SQLiteStore

from . import workflows as wf

N = 1000


def drive(path: Path, durable: bool) -> None:
    wf.reset()
    store = SQLiteStore(path, durable=durable)
    sched = wf.register(Scheduler(store, workers=4))
    t0 = time.perf_counter()
    ids = [sched.start(wf.pipeline, [i, i + 1]) for i in range(N)]
    t1 = time.perf_counter()
    stats = sched.run_until_complete(timeout=600)
    t2 = time.perf_counter()
    for i, run_id in enumerate(ids):
        result = sched.result(run_id)
        total = 2 * (2 * i) + 2 * (2 * i + 2)
        assert result == {"doubled": [2 * i, 2 * i + 2], "total": total, "child": 2 * total}
    assert stats.runs_resumed == N and stats.runs_done == 2 * N and stats.runs_failed == 0
    assert stats.checkpoints == 6 * N and stats.steps_recorded == 5 * N
    assert list(sched.run_ids(state="running")) == []
    print(
        f"\n{N} workflows (durable={durable}): start {t1 - t0:.2f} s, run {t2 - t1:.2f} s "
        f"({N / (t2 - t1):.0f} workflows/s, {stats.checkpoints / (t2 - t1):.0f} checkpoints/s); "
        f"mean snapshot {stats.snapshot_bytes / stats.checkpoints:.0f} B, "
        f"mean record {stats.record_bytes / stats.checkpoints:.0f} B"
    )
    store.close()


def test_a_thousand_concurrent_workflows_on_sqlite(tmp_path: Path) -> None:
    drive(tmp_path / "load.db", durable=False)


@pytest.mark.slow
def test_a_thousand_concurrent_workflows_on_durable_sqlite(tmp_path: Path) -> None:
    drive(tmp_path / "load.db", durable=True)
