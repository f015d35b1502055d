"""Crash at every single store write, before or after it lands; the restart must finish the same.

A crash is simulated in-process: a store wrapper raises a BaseException (which
the scheduler does not catch) at the N-th ``put``, either instead of the write
or right after it.  Then a brand-new scheduler over the same underlying store
finishes the runs.  Walking N over every write of the workload visits every
point between two writes where a real crash can fall; the SIGKILL test
(test_crash.py) checks the same with real processes at random instants.

Steps run inline (``workers=0``), so each scenario is deterministic.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from corosnap.scheduler import Scheduler
from corosnap.stores import BytesLike, MemoryStore, Record, Store

from . import workflows as wf


class Crash(BaseException):
    """Stands for the process dying."""


class CrashingStore(Store):
    """Passes everything to ``inner``, but dies at put number ``crash_at``."""

    def __init__(self, inner: Store, crash_at: int, after: bool) -> None:
        self.inner, self.crash_at, self.after, self.puts = inner, crash_at, after, 0

    def get(self, key: str) -> Record | None:
        return self.inner.get(key)

    def put(self, key: str, blob: BytesLike, *, expected_version: int | None = None) -> int:
        self.puts += 1
        if self.puts == self.crash_at and not self.after:
            raise Crash(f"before put {self.puts} ({key})")
        version = self.inner.put(key, blob, expected_version=expected_version)
        if self.puts == self.crash_at:
            raise Crash(f"after put {self.puts} ({key})")
        return version

    def delete(self, key: str, *, expected_version: int | None = None) -> None:
        self.inner.delete(key, expected_version=expected_version)

    def keys(self, prefix: str = "") -> Iterator[str]:
        return self.inner.keys(prefix)

    def close(self) -> None:
        pass


def start_workload(sched: Scheduler) -> dict[str, Any]:
    """Start the runs; return run id -> expected result (an exception class for failures)."""
    wf.FAIL_TIMES.update({"f": 2})
    return {
        sched.start(wf.pipeline, [1, 2, 3], run_id="pipeline"): {
            "doubled": [2, 4, 6], "total": 24, "child": 48,
        },
        sched.start(wf.catches, "c", run_id="catches"): "caught broken c",
        sched.start(wf.flaky_flow, "f", run_id="flaky"): "ok-f",
        sched.start(wf.generator_flow, 3, run_id="generator"): 6 + 200 + 6,
        sched.start(wf.gather_collects, run_id="collects"): [2, "ValueError", None],
        sched.start(wf.fails, "w", run_id="fails"): ValueError,
        sched.start(wf.awaits_in_handlers, 1, run_id="handlers"): [
            "broken 1: 2", 4, 6, 200, 120, [0, 2],
        ],
    }  # fmt: skip


def outcome(sched: Scheduler, run_id: str) -> Any:
    try:
        return sched.result(run_id)
    except Exception as exc:
        return type(exc)


def count_writes() -> int:
    store = CrashingStore(MemoryStore(), crash_at=0, after=False)
    wf.reset(store.inner)
    sched = wf.register(Scheduler(store, workers=0))
    start_workload(sched)
    sched.run_until_complete(timeout=30)
    return store.puts


TOTAL = count_writes()


def test_the_workload_writes_enough_to_be_interesting() -> None:
    assert TOTAL > 40


@pytest.mark.parametrize("after", [False, True], ids=["before-write", "after-write"])
def test_a_crash_at_any_write_resumes_to_the_same_results(after: bool) -> None:
    reexecuted = Counter()
    for crash_at in range(1, TOTAL + 1):
        inner = MemoryStore()
        wf.reset(inner)
        crashing = CrashingStore(inner, crash_at, after)
        first = wf.register(Scheduler(crashing, workers=0))
        try:
            expected = start_workload(first)
            first.run_until_complete(timeout=30)
        except Crash:
            pass
        else:
            pytest.fail(f"no crash at write {crash_at} of {TOTAL}")
        executed_before = Counter(key for key, _ in wf.LOG)
        second = wf.register(Scheduler(inner, workers=0))
        expected = start_workload(second)  # idempotent: the ids that exist are kept
        second.run_until_complete(timeout=30)
        got = {run_id: outcome(second, run_id) for run_id in expected}
        assert got == expected, f"crash {'after' if after else 'before'} write {crash_at}"
        assert not wf.VIOLATIONS, f"recorded steps ran again: {wf.VIOLATIONS}"
        executed = Counter(key for key, _ in wf.LOG)
        reexecuted.update(k for k in executed if executed_before[k] and executed[k] > 1)
    # Some crash points do land between a step running and its outcome being
    # recorded (the at-least-once window), so the check above is not vacuous.
    assert reexecuted
