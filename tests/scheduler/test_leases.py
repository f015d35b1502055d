"""Leases: runs owned by one worker at a time, taken over when the owner dies or stalls.

The deterministic tests drive engines step by step with an injected clock
and an executor whose attempts finish when the test says so; the others
run real workers (threads and processes) on a real clock.  The simulation
(test_simulation.py) explores the same protocol over thousands of seeded
interleavings; these tests pin down each rule on its own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any

import msgpack
import pytest

from corosnap.scheduler import Scheduler, SchedulerError
from corosnap.scheduler._engine import Engine
from corosnap.scheduler._lease import claimable, new_worker_id, owner_is_dead
from corosnap.scheduler._records import (
    HISTORY_CHUNK,
    LIVE_PREFIX,
    Outcome,
    StepRecord,
    decode_run,
    encode_step,
    marker_key,
    run_key,
)
from corosnap.stores import BytesLike, MemoryStore, Record, SQLiteStore, Store, StoreError

from . import workflows as wf

ROOT = Path(__file__).resolve().parents[2]


class Clock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class Held(Executor):
    """An executor whose attempts finish only when the test calls ``finish``."""

    def __init__(self) -> None:
        self.pending: list[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_running_or_notify_cancel()
        self.pending.append((future, fn, args))
        return future

    def finish(self) -> int:
        done, self.pending = self.pending, []
        for future, fn, args in done:
            try:
                future.set_result(fn(*args))
            except Exception as exc:
                future.set_exception(exc)
        return len(done)


def drive(*engines: Engine, rounds: int = 50) -> None:
    """Step every engine until none has anything to do now."""
    for _ in range(rounds):
        if not any([e.step() for e in engines]):
            return
    raise AssertionError("engines never settled")


def engine(sched: Scheduler, clock: Clock, name: str, executor: Executor | None = None) -> Engine:
    # Ids that do not look local, so only the lease's expiry frees their runs.
    return Engine(sched, until_idle=False, clock=clock, worker_id=f"{name}:1:x",
                  executor=executor or Held())  # fmt: skip


@pytest.fixture
def store() -> Iterator[MemoryStore]:
    s = MemoryStore()
    wf.reset(s)
    yield s
    wf.reset()


def sched_on(store: Store, **kw: Any) -> Scheduler:
    kw.setdefault("lease", 10.0)
    kw.setdefault("clock_skew", 1.0)
    kw.setdefault("poll", 1.0)
    return wf.register(Scheduler(store, workers=0, **kw))


def record(store: Store, run_id: str) -> Any:
    raw = store.get(run_key(run_id))
    assert raw is not None
    return decode_run(run_id, raw.blob)


# -- the rules, step by step ---------------------------------------------------------


def test_a_claim_names_the_owner_and_every_write_renews_the_lease(store: MemoryStore) -> None:
    s, clock = sched_on(store), Clock()
    run_id = s.start(wf.fan_out, [1, 2])
    assert record(store, run_id).owner is None
    a = engine(s, clock, "a")
    drive(a)
    rec = record(store, run_id)
    assert rec.owner == "a:1:x" and rec.lease == clock.t + 10 and rec.checkpoints == 1
    assert a.stats.claims == 1 and s.status(run_id).owner == "a:1:x"
    clock.t += 4
    assert isinstance(a.executor, Held) and a.executor.finish() == 2
    drive(a)
    rec = record(store, run_id)
    assert rec.state == "done" and rec.owner is None and rec.lease == 0.0
    assert s.result(run_id) == [2, 4]


def test_another_worker_claims_only_after_the_lease_and_the_clock_skew(store: MemoryStore) -> None:
    s, clock = sched_on(store), Clock()
    run_id = s.start(wf.one, 3)
    a, b = engine(s, clock, "a"), engine(s, clock, "b")
    drive(a)
    lease_end = record(store, run_id).lease
    clock.t = lease_end + 1.0 - 0.001  # lease over, but within the allowed clock skew
    drive(b)
    assert record(store, run_id).owner == "a:1:x" and b.stats.claims == 0
    clock.t = lease_end + 1.0
    drive(b)
    assert record(store, run_id).owner == "b:1:x" and b.stats.claims == 1


def test_a_stale_owners_write_is_refused_and_it_lets_go(store: MemoryStore) -> None:
    s, clock = sched_on(store), Clock()
    run_id = s.start(wf.fan_out, [1, 2])
    a, b = engine(s, clock, "a"), engine(s, clock, "b")
    drive(a)  # a claims and starts both steps
    clock.t += 20  # a stalls past its lease; b takes the run over and starts them again
    drive(b)
    assert record(store, run_id).owner == "b:1:x"
    assert isinstance(a.executor, Held) and a.executor.finish() == 2  # a's steps come back
    drive(a)  # its write of their outcomes is refused: it drops the run
    assert a.stats.leases_lost == 1 and run_id not in a.runs
    rec = record(store, run_id)
    assert rec.owner == "b:1:x" and rec.outcomes == {} and rec.history == ()
    drive(a)
    assert a.stats.writes == 2  # its claim and first checkpoint; nothing after the stall
    assert isinstance(b.executor, Held) and b.executor.finish() == 2
    drive(b)
    assert s.result(run_id) == [2, 4]
    assert {h.worker for h in s.steps(run_id)} == {"b:1:x"}


def test_an_owner_past_its_lease_renews_before_acting_and_keeps_the_run(
    store: MemoryStore,
) -> None:
    s, clock = sched_on(store), Clock()
    run_id = s.start(wf.one, 3)
    a = engine(s, clock, "a")
    drive(a)
    clock.t += 60  # a stalled; nobody took the run meanwhile
    assert isinstance(a.executor, Held) and a.executor.finish() == 1
    drive(a)
    assert s.result(run_id) == 6 and a.stats.leases_lost == 0


def test_an_owner_renews_while_a_step_runs_long(store: MemoryStore) -> None:
    s, clock = sched_on(store), Clock()
    run_id = s.start(wf.one, 3)
    a, b = engine(s, clock, "a"), engine(s, clock, "b")
    drive(a)
    for _ in range(10):  # a step that takes 10 leases
        clock.t += 4
        drive(a, b)
        assert record(store, run_id).owner == "a:1:x"
    assert a.stats.renewals >= 9 and b.stats.claims == 0
    assert isinstance(a.executor, Held) and a.executor.finish() == 1
    drive(a)
    assert s.result(run_id) == 6


def test_a_timer_longer_than_the_lease_lets_the_run_go_until_it_is_due(
    store: MemoryStore,
) -> None:
    s, clock = sched_on(store), Clock()
    run_id = s.start(wf.sleeper, 100)
    a, b = engine(s, clock, "a"), engine(s, clock, "b")
    drive(a)
    rec = record(store, run_id)
    assert rec.owner is None and rec.wake == clock.t + 100 and not a.runs
    assert a.stats.releases == 1
    clock.t += 99
    drive(b)
    assert b.stats.claims == 0 and record(store, run_id).owner is None
    clock.t += 1
    drive(b)
    assert s.status(run_id).state == "done" and b.stats.claims == 1


def test_a_parent_waiting_on_a_long_sleeping_child_is_let_go_too(store: MemoryStore) -> None:
    s, clock = sched_on(store), Clock()
    run_id = s.start(wf.waits_for_child, 100)
    a, b = engine(s, clock, "a"), engine(s, clock, "b")
    drive(a)  # the parent starts the child, which checkpoints its sleep and is let go
    clock.t += 1  # a looks at the child again at its next poll, and lets the parent go
    drive(a)
    assert not a.runs
    parent, child = record(store, run_id), record(store, f"{run_id}/1")
    assert parent.owner is None and child.owner is None and parent.wake == child.wake
    renewals = a.stats.renewals
    clock.t += 98.5
    drive(a, b)
    assert s.status(run_id).state == "running" and a.stats.renewals == renewals
    clock.t += 0.5
    drive(a, b)
    assert s.status(run_id).state == "done"
    assert a.stats.claims + b.stats.claims == 1 + 2  # the first claim, then parent and child


def test_a_graceful_stop_records_what_finished_and_lets_go_of_the_rest(
    store: MemoryStore,
) -> None:
    s, clock = sched_on(store, grace=5), Clock()
    run_id = s.start(wf.fan_out, [1, 2, 3])
    a = engine(s, clock, "a")
    drive(a)
    assert isinstance(a.executor, Held) and len(a.executor.pending) == 3
    a.request_stop(5)
    future, fn, args = a.executor.pending.pop(0)  # one attempt finishes during the grace
    future.set_result(fn(*args))
    drive(a)
    assert a.runs  # still waiting for the other two
    clock.t += 5  # the grace is over
    drive(a)
    assert not a.runs and a.finished()
    rec = record(store, run_id)
    assert rec.owner is None and set(rec.outcomes) == {1} and [h.seq for h in rec.history] == [1]
    b = engine(s, clock, "b", executor=None)
    b.executor = None  # inline
    drive(b)
    assert s.result(run_id) == [2, 4, 6]
    assert Counter(k for k, _ in wf.LOG)[f"{run_id}/1"] == 1  # not run again


def test_a_store_error_with_unknown_outcome_drops_the_run_then_takes_it_back(
    store: MemoryStore,
) -> None:
    class Flaky(Store):
        """Applies the n-th run-record put, then says the connection broke."""

        def __init__(self, inner: Store, fail_at: int) -> None:
            self.inner, self.fail_at, self.puts = inner, fail_at, 0

        def get(self, key: str) -> Record | None:
            return self.inner.get(key)

        def put(self, key: str, blob: BytesLike, *, expected_version: int | None = None) -> int:
            version = self.inner.put(key, blob, expected_version=expected_version)
            if key.startswith("run/"):
                self.puts += 1
                if self.puts == self.fail_at:
                    raise StoreError("connection lost after the write was sent")
            return version

        def delete(self, key: str, *, expected_version: int | None = None) -> None:
            self.inner.delete(key, expected_version=expected_version)

        def keys(self, prefix: str = "") -> Iterator[str]:
            return self.inner.keys(prefix)

        def close(self) -> None:
            pass

    for fail_at in range(2, 6):
        inner = MemoryStore()
        wf.reset(inner)
        s = sched_on(Flaky(inner, fail_at))
        run_id = s.start(wf.pipeline, [1, 2])
        stats = s.run_until_complete(timeout=10)
        assert stats.store_errors == 1  # the claim (fail_at 2) or a later write
        assert stats.leases_lost == (0 if fail_at == 2 else 1)
        assert s.result(run_id)["child"] == 24
        assert not wf.VIOLATIONS


# -- markers: the index of unfinished runs -------------------------------------------


def test_markers_list_exactly_the_unfinished_top_level_runs(store: MemoryStore) -> None:
    s = sched_on(store)
    first = s.start(wf.pipeline, [1])
    second = s.start(wf.one, 1)
    markers = sorted(store.keys(LIVE_PREFIX))
    assert [k.split("@")[0] for k in markers] == sorted(f"live/{r}" for r in (first, second))
    assert store.get(markers[0]).version == 2  # type: ignore[union-attr]  # rewritten after
    s.run_until_complete(timeout=10)
    assert list(store.keys(LIVE_PREFIX)) == []  # finishers delete theirs; children have none


def test_a_run_listed_while_it_is_being_started_is_claimed_once_its_record_is_there(
    store: MemoryStore,
) -> None:
    s, clock = sched_on(store), Clock()
    a = engine(s, clock, "a")
    a.executor = None  # steps inline

    class Slow(Store):
        """The client's store: worker a runs while start() is between its writes."""

        def get(self, key: str) -> Record | None:
            return store.get(key)

        def put(self, key: str, blob: BytesLike, *, expected_version: int | None = None) -> int:
            if key.startswith("run/"):
                drive(a)  # a lists the new marker and finds no run record yet
            return store.put(key, blob, expected_version=expected_version)

        def delete(self, key: str, *, expected_version: int | None = None) -> None:
            store.delete(key, expected_version=expected_version)

        def keys(self, prefix: str = "") -> Iterator[str]:
            return store.keys(prefix)

        def close(self) -> None:
            pass

    run_id = sched_on(Slow()).start(wf.one, 2)
    assert a.stats.claims == 0 and store.get(f"run/{run_id}") is not None
    clock.t += 1.0  # the next poll
    drive(a)
    assert s.result(run_id) == 4


def test_a_marker_left_by_a_start_that_died_is_cleaned_up_only_when_old(
    store: MemoryStore,
) -> None:
    s, clock = sched_on(store), Clock(time.time())
    key = marker_key("ghost", "abc")
    store.put(key, repr(clock.t).encode())  # the run record was never written
    a = engine(s, clock, "a")
    drive(a)
    assert store.get(key) is not None
    clock.t += 601
    a.next_look.clear()
    a.settled.clear()
    a.scan_due = 0
    drive(a)
    assert store.get(key) is None


def test_a_finished_run_whose_finisher_died_loses_its_marker_at_the_next_listing(
    store: MemoryStore,
) -> None:
    s = sched_on(store)
    run_id = s.start(wf.one, 2)
    marker = next(iter(store.keys(LIVE_PREFIX)))
    s.run_until_complete(timeout=10)
    store.put(marker, b"1")  # as if the finisher died before deleting it
    s.run_until_complete(timeout=10)
    assert list(store.keys(LIVE_PREFIX)) == [] and s.result(run_id) == 4


def test_starting_a_run_again_puts_back_a_marker_that_went_missing(store: MemoryStore) -> None:
    s = sched_on(store)
    s.start(wf.one, 1, run_id="lost")
    (marker,) = store.keys(LIVE_PREFIX)
    store.delete(marker)  # as if a failed start's marker had been cleaned up
    assert s.start(wf.one, 1, run_id="lost") == "lost"
    assert list(store.keys(LIVE_PREFIX)) == [marker]
    s.run_until_complete(timeout=10)
    assert s.result("lost") == 2


def test_forget_deletes_the_marker_history_chunks_and_children(store: MemoryStore) -> None:
    s = sched_on(store)
    run_id = s.start(wf.chain, 2 * HISTORY_CHUNK + 6)
    child = s.start(wf.parent, 1)
    s.run_until_complete(timeout=30)
    assert sum(1 for _ in store.keys(f"steplog/{run_id}/")) == 2
    s.forget(run_id)
    s.forget(child)
    assert list(store.keys()) == []


def test_run_ids_with_an_at_sign_do_not_share_markers(store: MemoryStore) -> None:
    s = sched_on(store)
    s.start(wf.one, 1, run_id="a")
    s.start(wf.one, 2, run_id="a@b")
    s.run_until_complete(timeout=10)
    s.start(wf.one, 3, run_id="a@b@c")
    s.forget("a")
    assert sorted(s.run_ids()) == ["a@b", "a@b@c"]
    assert len(list(store.keys(LIVE_PREFIX))) == 1


# -- history -----------------------------------------------------------------------


def test_a_long_run_keeps_a_small_record_and_its_whole_history(store: MemoryStore) -> None:
    s = sched_on(store)
    n = 3 * HISTORY_CHUNK + 5
    run_id = s.start(wf.chain, n)
    s.run_until_complete(timeout=30)
    assert s.result(run_id) == 2 * sum(range(n))
    steps = s.steps(run_id)
    assert [st.seq for st in steps] == list(range(1, n + 1))
    assert all(st.ok and st.pid == os.getpid() and st.worker for st in steps)
    rec = record(store, run_id)
    assert rec.chunks == 3 and len(rec.history) == 5
    raw = store.get(run_key(run_id))
    assert raw is not None and len(raw.blob) < 2000


def test_a_run_written_by_the_first_record_format_resumes_without_rerunning_steps(
    store: MemoryStore,
) -> None:
    import corosnap

    coro = wf.fan_out([5, 6])
    coro.send(None)  # suspended at its gather of double(5), double(6)
    calls = [(wf.double, (5,), None), (wf.double, (6,), None)]
    import pickle

    body = {
        "format": 1, "workflow": "tests.scheduler.workflows.fan_out", "state": "running",
        "snapshot": corosnap.dumps(coro), "next_seq": 3, "checkpoints": 1,
        "waiting": {"gather": True, "return_exceptions": False,
                    "ops": [[1, "step", None], [2, "step", None]],
                    "calls": pickle.dumps(calls)},
        "outcome": None, "parent": None, "created": 1.0, "updated": 1.0, "pid": 1,
    }  # fmt: skip
    coro.close()
    store.put("run/old", msgpack.packb(body, use_bin_type=True))
    step = StepRecord(Outcome.success(10), "tests.scheduler.workflows.double", 1, 1, 1.0, 2.0)
    store.put("step/old/1", encode_step(step))
    s = sched_on(store)
    s.run_until_complete(timeout=10)
    assert s.result("old") == [10, 12]
    assert [k for k, _ in wf.LOG] == ["old/2"]  # step 1 was recorded: not run again
    assert [(st.seq, st.pid) for st in s.steps("old")] == [(1, 1), (2, os.getpid())]
    assert list(store.keys(LIVE_PREFIX)) == []


# -- real workers ----------------------------------------------------------------------


def test_two_workers_share_the_runs_and_run_every_step_once(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    checker = SQLiteStore(db)
    wf.reset(checker)
    s = wf.register(Scheduler(checker, workers=2, max_runs=2))
    ids = [s.start(wf.pipeline, [i, i + 1]) for i in range(20)]
    slow = [s.start(wf.slow_then_double, 0.1, i) for i in range(6)]
    results: list[Any] = []
    together = threading.Barrier(2)

    def worker() -> None:
        with SQLiteStore(db) as own:
            sched = wf.register(Scheduler(own, workers=2, max_runs=2, poll=0.05))
            together.wait()
            results.append(sched.run_until_complete(timeout=60))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [s.result(i)["total"] for i in ids] == [4 * (2 * i + 1) for i in range(20)]
    assert [s.result(i) for i in slow] == [[0.1, 2 * i] for i in range(6)]
    assert all(r.claims > 0 for r in results), [r.claims for r in results]
    assert sum(r.runs_done for r in results) == 46
    counts = Counter(k for k, _ in wf.LOG)
    assert set(counts.values()) == {1}, "a step ran twice without any crash"
    assert not wf.VIOLATIONS
    checker.close()


def test_a_long_step_keeps_its_lease_against_a_second_worker(store: MemoryStore) -> None:
    opts = {"lease": 0.4, "clock_skew": 0.05, "poll": 0.02}
    s = wf.register(Scheduler(store, workers=2, **opts))  # type: ignore[arg-type]
    run_id = s.start(wf.slow_then_double, 1.5, 4)
    stats: list[Any] = []

    def worker() -> None:
        stats.append(wf.register(Scheduler(store, workers=2, **opts))  # type: ignore[arg-type]
                     .run_until_complete(timeout=20))  # fmt: skip

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert s.result(run_id) == [1.5, 8]
    assert Counter(k for k, _ in wf.LOG)[f"{run_id}/1"] == 1  # the slow step ran once
    assert sum(x.renewals for x in stats) >= 3 and sum(x.leases_lost for x in stats) == 0


def test_a_dead_workers_lease_runs_out_and_another_resumes_the_run(store: MemoryStore) -> None:
    s = wf.register(Scheduler(store, workers=0, lease=0.5, clock_skew=0.1, poll=0.05))
    run_id = s.start(wf.pipeline, [1, 2])
    ghost = Engine(s, until_idle=False, worker_id="elsewhere:1:x", executor=Held())
    while not ghost.runs:
        ghost.step()
    ghost.step()  # claims, checkpoints, starts steps; then "dies" (is never stepped again)
    claimed_at = time.time()
    stats = s.run_until_complete(timeout=10)
    assert time.time() - claimed_at >= 0.5  # it waited for the lease (+ skew)
    assert stats.claims >= 1 and s.result(run_id)["child"] == 24


def test_run_until_complete_waits_for_runs_another_worker_holds(store: MemoryStore) -> None:
    s = wf.register(Scheduler(store, workers=2, lease=5, poll=0.02))
    run_id = s.start(wf.slow_flow, 0.6)
    server = wf.register(Scheduler(store, workers=2, lease=5, poll=0.02))
    thread = threading.Thread(target=server.serve, kwargs={"timeout": 10})
    thread.start()
    try:
        deadline = time.time() + 5
        while s.status(run_id).owner is None and time.time() < deadline:
            time.sleep(0.01)
        stats = s.run_until_complete(timeout=10)
        assert s.result(run_id) == 0.6 and stats.claims == 0
    finally:
        server.stop()
        thread.join()


def test_serve_stops_gracefully_and_another_worker_takes_over_at_once(
    store: MemoryStore,
) -> None:
    s = wf.register(Scheduler(store, workers=2, lease=60, poll=0.02, grace=0.1))
    run_id = s.start(wf.slow_then_double, 2.0, 5)
    done = threading.Event()
    stats: list[Any] = []
    thread = threading.Thread(target=lambda: (stats.append(s.serve()), done.set()))
    thread.start()
    while s.status(run_id).owner is None:
        time.sleep(0.01)
    s.stop()
    assert done.wait(5), "serve() did not stop within the grace"
    thread.join()
    assert s.status(run_id).owner is None and stats[0].releases == 1
    t0 = time.time()
    other = wf.register(Scheduler(store, workers=2, lease=60, poll=0.02))
    other.run_until_complete(timeout=10)
    assert time.time() - t0 < 5  # no 60 s wait for a lease
    assert s.result(run_id) == [2.0, 10]


def test_serve_stops_on_its_stop_event() -> None:
    store = MemoryStore()
    s = wf.register(Scheduler(store, workers=1, poll=0.05))
    stop = threading.Event()
    timer = threading.Timer(0.3, stop.set)
    timer.start()
    t0 = time.time()
    s.serve(stop=stop, timeout=10)
    assert 0.3 <= time.time() - t0 < 2


def test_a_killed_worker_on_this_machine_is_taken_over_without_waiting_for_its_lease(
    tmp_path: Path,
) -> None:
    db = tmp_path / "runs.db"
    code = (
        "import sys; from corosnap.stores import SQLiteStore; "
        "from corosnap.scheduler import Scheduler; from tests.scheduler import workflows as wf; "
        f"s = wf.register(Scheduler(SQLiteStore({str(db)!r}), lease=600)); "
        "s.start(wf.slow_then_double, 30.0, 2, run_id='held'); s.run_until_complete()"
    )
    child = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    try:
        with SQLiteStore(db) as store:
            s = wf.register(Scheduler(store, lease=600, poll=0.05))
            deadline = time.time() + 30
            while time.time() < deadline:
                try:
                    if s.status("held").owner is not None:
                        break
                except KeyError:
                    pass
                time.sleep(0.02)
            owner = s.status("held").owner
            assert owner is not None and not owner_is_dead(owner)
            child.send_signal(signal.SIGKILL)
            child.wait()
            assert owner_is_dead(owner)
            s.store = store
            wf.FAIL_TIMES.clear()
            # The slow step runs again here (its outcome was never recorded); make it quick.
            s2 = wf.register(Scheduler(store, lease=600, poll=0.05), slow={"retries": 0})
            t0 = time.time()
            rec = decode_run("held", store.get("run/held").blob)  # type: ignore[union-attr]
            assert rec.owner == owner and rec.lease > time.time() + 500
            with pytest.raises(TimeoutError):
                s2.run_until_complete(timeout=3)  # it claimed the run and runs the 30 s step
            assert s2.status("held").owner is None  # let go again at the timeout
            assert time.time() - t0 < 10
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_worker_ids_tell_where_they_run_and_are_unique() -> None:
    a, b = new_worker_id(), new_worker_id()
    assert a != b and a.split(":")[1] == str(os.getpid())
    assert owner_is_dead(a)  # an id of this process that no engine is running under
    assert not owner_is_dead("otherhost:1:x") and not owner_is_dead("nonsense")


def test_claimable_follows_the_rules() -> None:
    from corosnap.scheduler._records import RunRecord

    rec = RunRecord("r", "w", owner="h:1:x", lease=100.0)
    assert claimable(rec, "me", 100.5, 1.0) == (False, 101.0)
    assert claimable(rec, "me", 101.0, 1.0) == (True, None)
    assert claimable(rec, "h:1:x", 50.0, 1.0) == (True, None)  # our own, not in memory
    sleeping = RunRecord("r", "w", owner=None, wake=200.0)
    assert claimable(sleeping, "me", 150.0, 1.0) == (False, 200.0)
    assert claimable(sleeping, "me", 200.0, 1.0) == (True, None)
    assert claimable(RunRecord("r", "w", state="done"), "me", 0, 1) == (False, None)


def test_scheduler_settings_are_checked() -> None:
    for bad in ({"lease": 0}, {"lease": -1}, {"clock_skew": -1}, {"poll": 0},
                {"max_runs": 0}, {"grace": float("nan")}, {"lease": float("inf")}):  # fmt: skip
        with pytest.raises(ValueError):
            Scheduler(MemoryStore(), **bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Executor"):
        Scheduler(MemoryStore(), executor=object())  # type: ignore[arg-type]
    s = wf.register(Scheduler())
    with pytest.raises(SchedulerError, match="no store"):
        s.start(wf.one, 1)
    with pytest.raises(SchedulerError, match="no store"):
        s.run_until_complete()
