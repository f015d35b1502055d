"""Steps on an executor the application already has: a process pool, a Dask cluster.

``Scheduler(store, executor=...)`` takes any ``concurrent.futures.Executor``.
The step function, its arguments and ``run_step`` (which sets
``current_step()``) are pickled to wherever the executor runs them, so steps
and their arguments must be importable there, as they must be for the
snapshots anyway.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from corosnap.scheduler import Scheduler, SchedulerError
from corosnap.stores import MemoryStore

from . import workflows as wf

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def store() -> Iterator[MemoryStore]:
    s = MemoryStore()
    wf.reset()
    yield s
    wf.reset()


def check_spread(s: Scheduler, run_ids: list[str], n: int) -> set[int]:
    pids: set[int] = set()
    for run_id in run_ids:
        places, last = s.result(run_id)
        assert last == f"ok-{n}"
        assert [key for _, key in places] == [f"{run_id}/{i}" for i in range(1, n + 1)]
        pids.update(pid for pid, _ in places)
    return pids


def test_steps_run_on_a_process_pool(store: MemoryStore) -> None:
    with ProcessPoolExecutor(2) as pool:
        s = wf.register(Scheduler(store, executor=pool))
        ids = [s.start(wf.spread, 4) for _ in range(3)]
        stats = s.run_until_complete(timeout=60)
    pids = check_spread(s, ids, 4)
    assert os.getpid() not in pids and len(pids) >= 1
    assert stats.retries == 3 and stats.runs_done == 3
    assert all(st.pid == os.getpid() for st in s.steps(ids[0]))  # recorded by this worker


def test_a_broken_process_pool_stops_the_worker_and_leaves_the_runs(store: MemoryStore) -> None:
    with ProcessPoolExecutor(1) as pool:
        s = wf.register(Scheduler(store, executor=pool))
        run_id = s.start(wf.breaks_pool)
        with pytest.raises(SchedulerError, match="executor running the steps is broken"):
            s.run_until_complete(timeout=60)
    assert s.status(run_id).state == "running"  # still there for a worker with a good pool


def test_the_scheduler_does_not_shut_down_an_executor_it_was_given(store: MemoryStore) -> None:
    with ProcessPoolExecutor(1) as pool:
        s = wf.register(Scheduler(store, executor=pool))
        s.start(wf.one, 2)
        s.run_until_complete(timeout=60)
        assert pool.submit(abs, -3).result(timeout=30) == 3


def test_steps_run_on_a_dask_cluster() -> None:
    if importlib.util.find_spec("distributed") is None:  # not imported here: see below
        pytest.skip("Dask is missing: pip install 'dask[distributed]' (a test dependency)")
    # In a process of its own: importing distributed changes exception pickling process-wide.
    proc = subprocess.run(
        [sys.executable, "-m", "tests.scheduler.dask_run"], cwd=ROOT, capture_output=True,
        text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    pids: set[int] = set()
    for run_id, (places, last) in zip(out["ids"], out["results"], strict=True):
        assert last == "ok-3"
        assert [key for _, key in places] == [f"{run_id}/{i}" for i in range(1, 4)]
        pids.update(pid for pid, _ in places)
    assert pids <= set(out["dask_pids"]) and out["pid"] not in pids
    assert out["retries"] == 3
