"""A workflow iterating async generators whose awaits are scheduler steps:
every checkpoint lands with an ``__anext__()`` in flight inside them, and a
crash at any store write resumes to the same result, no recorded step
running again."""

from __future__ import annotations

from collections import Counter

import pytest

from corosnap.scheduler import Scheduler
from corosnap.stores import MemoryStore

from . import agen_workflows as aw
from .test_recovery import Crash, CrashingStore

ITEMS = [0, 1, 2, 10]  # the first four items of pages(3): page 0, then page 1
EXPECTED = {"total": sum(x * x + (x + 1) ** 2 for x in ITEMS), "seen": 4, "first": 0}


def run_all(store: object) -> object:
    sched = aw.register(Scheduler(store, workers=0))  # type: ignore[arg-type]
    run_id = sched.start(aw.total_of, 3, run_id="agen")
    sched.run_until_complete(timeout=30)
    return sched.result(run_id)


class RecordingStore(CrashingStore):
    """Never crashes; keeps every blob written."""

    def __init__(self) -> None:
        super().__init__(MemoryStore(), crash_at=0, after=False)
        self.blobs: list[bytes] = []

    def put(self, key: str, blob: object, *, expected_version: int | None = None) -> int:
        self.blobs.append(bytes(blob))  # type: ignore[call-overload]
        return super().put(key, blob, expected_version=expected_version)  # type: ignore[arg-type]


def count_writes() -> tuple[int, list[bytes]]:
    store = RecordingStore()
    aw.LOG.clear()
    assert run_all(store) == EXPECTED
    return store.puts, store.blobs


TOTAL, BLOBS = count_writes()


def test_the_workflow_checkpoints_inside_the_generators() -> None:
    assert TOTAL > 10
    # checkpoints with an __anext__() in flight (tag 23 in state 1) in two
    # nested async generators, and with an aclose() after the break
    in_flight = [b for b in BLOBS if b.count(bytes([0xD4, 0x00, 23])) >= 2]
    assert in_flight, "no checkpoint landed inside the generators"


@pytest.mark.parametrize("after", [False, True], ids=["before-write", "after-write"])
def test_a_crash_at_any_write_resumes_to_the_same_result(after: bool) -> None:
    for crash_at in range(1, TOTAL + 1):
        inner = MemoryStore()
        aw.LOG.clear()
        try:
            run_all(CrashingStore(inner, crash_at, after))
        except Crash:
            pass
        else:
            pytest.fail(f"no crash at write {crash_at} of {TOTAL}")
        before = Counter(k for k in aw.LOG if k != "pages finally")
        assert run_all(inner) == EXPECTED, f"crash at write {crash_at}"
        executed = Counter(k for k in aw.LOG if k != "pages finally")
        # a step may run twice only when the crash fell between its run and
        # its record (at least once); never more than that
        assert all(n <= 2 for n in executed.values()), (crash_at, executed)
        assert set(executed) >= set(before)
