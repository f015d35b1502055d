"""One durable write per checkpoint: the store writes a run costs, counted exactly.

A step's outcome is recorded by the write of the checkpoint that resumes the
workflow with it (the snapshot and the outcomes it depends on in one record),
so a workflow of ``n`` sequential awaits costs one run-record write per
await, plus its claim and its end, plus one history chunk per 32 steps.
``make bench-scheduler`` turns the same counts into time.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from corosnap.scheduler import Scheduler
from corosnap.scheduler._records import HISTORY_CHUNK
from corosnap.stores import BytesLike, MemoryStore, Record, Store

from . import workflows as wf

ROOT = Path(__file__).resolve().parents[2]


class Counting(Store):
    def __init__(self) -> None:
        self.inner = MemoryStore()
        self.puts: Counter[str] = Counter()
        self.deletes: Counter[str] = Counter()

    def get(self, key: str) -> Record | None:
        return self.inner.get(key)

    def put(self, key: str, blob: BytesLike, *, expected_version: int | None = None) -> int:
        self.puts[key.split("/")[0]] += 1
        return self.inner.put(key, blob, expected_version=expected_version)

    def delete(self, key: str, *, expected_version: int | None = None) -> None:
        self.deletes[key.split("/")[0]] += 1
        self.inner.delete(key, expected_version=expected_version)

    def keys(self, prefix: str = "") -> Iterator[str]:
        return self.inner.keys(prefix)

    def close(self) -> None:
        pass


def test_each_await_costs_one_write_and_history_one_more_per_chunk() -> None:
    for n in (1, 5, HISTORY_CHUNK, 3 * HISTORY_CHUNK + 7):
        store = Counting()
        wf.reset()
        s = wf.register(Scheduler(store, workers=0))
        run_id = s.start(wf.chain, n)
        assert store.puts == {"live": 2, "run": 1}  # start: marker, record, marker again
        store.puts.clear()
        s.run_until_complete(timeout=60)
        assert s.result(run_id) == 2 * sum(range(n))
        # The claim, one checkpoint per await (each also records the step before it),
        # and the end (which records the last step).
        assert store.puts["run"] == 1 + n + 1, n
        assert store.puts["steplog"] == n // HISTORY_CHUNK - (n % HISTORY_CHUNK == 0 and n > 0)
        assert store.deletes == {"live": 1}
        assert len(s.steps(run_id)) == n


def test_a_gather_records_its_steps_as_they_finish_and_checkpoints_once() -> None:
    store = Counting()
    wf.reset()
    s = wf.register(Scheduler(store, workers=0))
    s.start(wf.fan_out, [1, 2, 3, 4])
    store.puts.clear()
    s.run_until_complete(timeout=60)
    # Claim, the gather's checkpoint, at most one write per step that finished while
    # others were still running (inline steps finish together: one), and the end.
    assert 3 <= store.puts["run"] <= 1 + 1 + 3 + 1


def test_the_scheduler_benchmark_runs(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "benchmarks/bench_scheduler.py", "--quick", "--awaits", "40",
         "--durable-awaits", "10", "--workflows", "6", "--durable-workflows", "3",
         "--dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "| SQLiteStore (fsync per commit) |" in out and "per await / floor" in out
    assert out.count("| SQLiteStore(durable=False) | ") == 4  # one per-await row, 3 throughputs
