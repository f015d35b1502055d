"""A deterministic simulation of several scheduler workers sharing one store.

The real :class:`~corosnap.scheduler._engine.Engine` runs here, unchanged:
each simulated worker is an engine whose clock, executor and random source
are the simulation's, over one simulated store.  Engines are driven through
``Engine.step()``, which makes at most one store call, so the simulation
chooses, call by call, which worker goes next: every interleaving of store
calls between workers is reachable.  Everything is decided by one seeded
``random.Random``, so a seed replays exactly:

    python -m tests.scheduler.sim SEED [-v]       # replay one seed, with a trace

What the world does, chosen at random at every action (the *chaos* phase):

* lets a worker take one step, or finishes a step attempt whose (simulated)
  duration has passed (some attempts outlast the lease: their worker must
  renew it);
* moves the clock on to the next thing due; workers' clocks differ from the
  true time by up to ``SKEW / 2`` each;
* kills a worker (its memory and its running attempts are gone), or makes
  its next store call kill it just before or just after the call lands;
* pauses a worker for up to three leases (a GC pause, a stopped VM: it comes
  back as a stale owner with attempts in flight);
* makes a store call fail with an error, either before it lands or after it
  landed (the caller cannot tell which);
* asks a worker to stop gracefully; restarts dead and stopped workers; starts
  new runs while others are in flight.

Then the *calm* phase: no more failures; every run must finish.

Invariants, checked at every action (``Violation`` names the seed):

1. **One owner at a time**: at no instant do two workers both hold a lease on
   one run that is valid by their own clocks; a worker resumes a workflow or
   starts a step only under a valid lease.
2. **Every run-record write is the owner's**: a claim only when the record is
   unowned, expired (by the claimer's clock, beyond the skew) or due; every
   other write by the worker that holds it; a claim changes nothing but the
   lease.
3. **Nothing acknowledged is lost**: a finished run is never written again;
   checkpoints and sequence numbers never go back; a recorded step outcome
   stays recorded (in the run's outcomes until a checkpoint consumes it, and
   in its history forever, history chunks included); no step is recorded
   twice.
4. **A recorded step never starts again.**
5. **Every top-level run has its ``live/`` marker while it is unfinished.**
6. **Every run finishes, with the right result**, once failures stop.
"""

from __future__ import annotations

import logging
import random
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Any

from corosnap.scheduler import PermanentError, Scheduler, call, current_step, gather, sleep
from corosnap.scheduler import _engine as engine_module
from corosnap.scheduler import _records as records_module
from corosnap.scheduler import _scheduler as scheduler_module
from corosnap.scheduler._engine import Engine
from corosnap.scheduler._records import (
    LIVE_PREFIX,
    RUN_PREFIX,
    RunRecord,
    decode_chunk,
    decode_run,
    marker_key,
    steplog_key,
)
from corosnap.stores import (
    BytesLike,
    Conflict,
    NotFound,
    Record,
    Store,
    StoreError,
    validate_blob,
    validate_delete_version,
    validate_expected_version,
    validate_key,
)

LEASE = 10.0
SKEW = 1.0
POLL = 1.0
T0 = 1_000_000.0
CHUNK = 3  # history entries per chunk in the simulation, so chunks happen in short runs


class SimCrash(BaseException):
    """The simulated process dies here (not an Exception: the engine must not catch it)."""


class Violation(AssertionError):
    """An invariant of the lease protocol does not hold."""


WORLD: World | None = None  # the world the workflows and steps below report to


def _world() -> World:
    assert WORLD is not None
    return WORLD


# -- workflows and steps: module level, so snapshots and pickles name them ---------


def add(x: int, y: int) -> int:
    return x + y


def flaky(x: int) -> int:
    """Fails its first attempt for odd ``x`` (a transient error: retried)."""
    if current_step().attempt == 1 and x % 2:
        raise ConnectionError(f"flaky {x}")
    return 3 * x


def refuse(x: int) -> None:
    raise PermanentError(f"refused {x}")


async def job(n: int, long_sleep: bool, loop: int) -> int:
    _world().resumed()
    a = await gather(call(add, n, 1), call(flaky, n), sleep(0.5))
    _world().resumed()
    b = await call(add, a[0], a[1])
    _world().resumed()
    try:
        await call(refuse, n)
    except PermanentError:
        b += 1
    _world().resumed()
    c = await call(child, b)
    _world().resumed()
    if long_sleep:
        await sleep(3 * LEASE)  # longer than a lease: the run is let go until it is due
        _world().resumed()
    total = c
    for i in range(loop):
        total = await call(add, total, i)
        _world().resumed()
    return total


async def child(x: int) -> int:
    _world().resumed()
    y = await call(add, x, 100)
    _world().resumed()
    if x % 3 == 0:
        await sleep(2 * LEASE)  # the child is let go, then its waiting parent
        _world().resumed()
    return y


def expected(n: int, long_sleep: bool, loop: int) -> int:
    return (n + 1) + 3 * n + 1 + 100 + sum(range(loop))


def make_scheduler(store: Store, max_runs: int) -> Scheduler:
    s = Scheduler(store, lease=LEASE, clock_skew=SKEW, poll=POLL, max_runs=max_runs)
    s.function(add)
    s.function(retries=2, backoff=0.5)(flaky)
    s.function(refuse)
    s.workflow(job)
    s.workflow(child)
    return s


# -- the simulated world -----------------------------------------------------------


@dataclass(eq=False)
class Worker:
    index: int
    skew: float
    engine: Engine | None = None
    incarnation: int = 0
    paused_until: float = 0.0
    idle: bool = False  # its last step found nothing to do, and nothing changed since
    crash_in_op: str | None = None  # "before" / "after": die at the next store call

    @property
    def name(self) -> str:
        return f"w{self.index}.{self.incarnation}"


@dataclass(eq=False)
class SimCall:
    """A step attempt submitted to a worker's executor."""

    worker: Worker
    incarnation: int
    future: Future[Any]
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    ready_at: float


class SimExecutor(Executor):
    """Holds submitted attempts until the world decides they finish."""

    def __init__(self, world: World, worker: Worker) -> None:
        self.world, self.worker = world, worker

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        _, ctx = args
        self.world.on_submit(self.worker, ctx.run_id, ctx.seq)
        future: Future[Any] = Future()
        future.set_running_or_notify_cancel()
        self.world.calls.append(SimCall(
            self.worker, self.worker.incarnation, future, fn, args,
            self.world.now + self.world.step_duration(),
        ))  # fmt: skip
        return future


class SimStore(Store):
    """A dict store whose every call is a point where the world may crash or fail it."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.records: dict[str, Record] = {}
        self.decoded: dict[str, RunRecord] = {}  # run id -> its record, decoded once per write
        self.changes = 0

    def _enter(self) -> str | None:
        w = self.world.current
        if w is None:
            self.world.client_yields()  # workers move on between the client's store calls
            return None
        if w.crash_in_op == "before":
            w.crash_in_op = None
            raise SimCrash("died before a store call")
        fault = self.world.fault()
        if fault == "before":
            raise StoreError("simulated: the connection broke before the call")
        return fault

    def _leave(self, fault: str | None) -> None:
        w = self.world.current
        if w is not None and w.crash_in_op == "after":
            w.crash_in_op = None
            raise SimCrash("died after a store call landed")
        if fault == "after":
            raise StoreError("simulated: the connection broke; the call went through")

    def get(self, key: str) -> Record | None:
        key = validate_key(key)
        fault = self._enter()
        found = self.records.get(key)
        self._leave(fault)
        return found

    def put(self, key: str, blob: BytesLike, *, expected_version: int | None = None) -> int:
        key = validate_key(key)
        blob = validate_blob(blob)
        expected = validate_expected_version(expected_version)
        fault = self._enter()
        current = self.records.get(key)
        actual = current.version if current is not None else 0
        if expected is not None and expected != actual:
            self._leave(None)
            raise Conflict(key, expected, actual)
        if key.startswith(RUN_PREFIX):
            run_id = key[len(RUN_PREFIX) :]
            self.decoded[run_id] = self.world.check_write(run_id, current, blob)
        self.records[key] = Record(blob, actual + 1)
        self.changes += 1
        self._leave(fault)
        return actual + 1

    def delete(self, key: str, *, expected_version: int | None = None) -> None:
        key = validate_key(key)
        expected = validate_delete_version(expected_version)
        fault = self._enter()
        current = self.records.get(key)
        actual = current.version if current is not None else 0
        if expected is not None and expected != actual:
            raise Conflict(key, expected, actual)
        if current is None:
            raise NotFound(key, "the simulated store")
        if key.startswith(RUN_PREFIX):
            raise Violation(f"a run record was deleted: {key}")
        del self.records[key]
        self.changes += 1
        self._leave(fault)

    def keys(self, prefix: str = "") -> Iterator[str]:
        fault = self._enter()
        found = sorted(k for k in self.records if k.startswith(prefix))
        self._leave(fault)
        return iter(found)

    def close(self) -> None:
        pass

    def run(self, run_id: str) -> RunRecord | None:
        return self.decoded.get(run_id)

    def full_history(self, rec: RunRecord) -> list[tuple[int, bool]]:
        entries = []
        for chunk in range(rec.chunks):
            key = steplog_key(rec.run_id, chunk)
            raw = self.records.get(key)
            if raw is None:
                raise Violation(f"run {rec.run_id}: history chunk {chunk} missing")
            entries.extend(decode_chunk(key, raw.blob))
        entries.extend(rec.history)
        return [(h.seq, h.ok) for h in entries]


@dataclass
class Counters:
    actions: int = 0
    steps: int = 0
    attempts_finished: int = 0
    crashes: int = 0
    crashes_in_op: int = 0
    pauses: int = 0
    stops: int = 0
    faults: int = 0
    claims: int = 0
    conflicts: int = 0
    resumes: int = 0


@dataclass(eq=False)
class World:
    seed: int
    verbose: bool = False
    rng: random.Random = field(init=False)
    now: float = T0
    workers: list[Worker] = field(default_factory=list)
    calls: list[SimCall] = field(default_factory=list)
    current: Worker | None = None
    recorded: dict[tuple[str, int], bool] = field(default_factory=dict)
    runs: dict[str, int] = field(default_factory=dict)  # root run id -> expected result
    to_start: list[tuple[int, bool, int]] = field(default_factory=list)
    chaos: bool = True
    in_client_yield: bool = False
    done_checked: int = -1
    counts: Counters = field(default_factory=Counters)
    trace: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        rng = self.rng
        self.store = SimStore(self)
        self.sched = make_scheduler(self.store, max_runs=rng.randint(1, 4))
        for i in range(rng.randint(2, 4)):
            self.workers.append(Worker(i, rng.uniform(-SKEW / 2, SKEW / 2)))
        for n in range(rng.randint(2, 5)):
            self.to_start.append((n, rng.random() < 0.3, rng.choice([0, 0, 1, 4])))
        self.chaos_actions = rng.randint(50, 400)
        self.p_fault = rng.choice([0.0, 0.01, 0.03])
        self.p_crash = rng.choice([0.003, 0.01, 0.03])
        self.p_pause = rng.choice([0.0, 0.005, 0.02])

    def log(self, text: str) -> None:
        if self.verbose:
            self.trace.append(f"[{self.counts.actions:5d} t={self.now - T0:8.3f}] {text}")

    # -- hooks called by the store, the executor and the workflows ------------------

    def clock_of(self, w: Worker) -> Callable[[], float]:
        return lambda: self.now + w.skew

    def fault(self) -> str | None:
        if self.chaos and self.p_fault and self.rng.random() < self.p_fault:
            self.counts.faults += 1
            where = self.rng.choice(["before", "after"])
            self.log(f"  store fault {where} the call")
            return where
        return None

    def step_duration(self) -> float:
        r = self.rng.random()
        if r < 0.05:
            return self.rng.uniform(LEASE, 3 * LEASE)  # outlasts the lease: renewals needed
        return self.rng.uniform(0.0, 2.0)

    def holders(self, run_id: str) -> list[Worker]:
        """Workers holding ``run_id`` under a lease valid by their own clock."""
        found = []
        for w in self.workers:
            e = w.engine
            if e is None:
                continue
            run = e.runs.get(run_id)
            if run is not None and run.version == 0:  # a new child, under its parent's lease
                run = e.runs.get(run.rec.parent or "")
            if run is not None and run.version > 0 and e.clock() < run.rec.lease:
                found.append(w)
        return found

    def acting(self, w: Worker, run_id: str, what: str) -> None:
        holders = self.holders(run_id)
        if w not in holders:
            raise Violation(f"{w.name} {what} run {run_id} without a valid lease")
        if len(holders) > 1:
            raise Violation(f"{what} run {run_id}: held by {[h.name for h in holders]} at once")

    def resumed(self) -> None:
        w = self.current
        assert w is not None and w.engine is not None and w.engine.resuming is not None
        self.counts.resumes += 1
        self.acting(w, w.engine.resuming, "resumed the workflow of")

    def on_submit(self, w: Worker, run_id: str, seq: int) -> None:
        self.acting(w, run_id, f"started step {seq} of")
        if (run_id, seq) in self.recorded:
            raise Violation(f"{w.name} started step {run_id}/{seq}, which is recorded")
        self.log(f"  {w.name} starts step {run_id}/{seq}")

    def check_write(self, run_id: str, prev: Record | None, blob: bytes) -> RunRecord:
        """Invariants 2 and 3, on every run-record write that is about to land."""
        new = decode_run(run_id, blob)
        w = self.current
        who = "client" if w is None else w.engine.id if w.engine else "?"
        wclock = self.now + (w.skew if w is not None else 0.0)
        if prev is None:
            if w is None:
                ok = new.parent is None and new.owner is None and new.state == "running"
            else:
                ok = new.parent is not None and new.owner in (who, None)
            if not ok:
                raise Violation(f"{who} created run {run_id} wrongly: owner {new.owner}")
            old_history: list[tuple[int, bool]] = []
        else:
            old = self.store.decoded[run_id]
            if old.state != "running":
                raise Violation(f"{who} wrote finished run {run_id}")
            if new.owner == who and old.owner != who:
                if old.owner is not None and not old.lease + SKEW <= wclock:
                    raise Violation(f"{who} claimed {run_id} while {old.owner}'s lease was valid")
                if old.owner is None and old.wake is not None and old.wake > wclock:
                    raise Violation(f"{who} claimed sleeping {run_id} before it was due")
                same = (old.snapshot, old.checkpoints, old.next_seq, old.outcomes, old.history,
                        old.chunks, old.state)  # fmt: skip
                if same != (new.snapshot, new.checkpoints, new.next_seq, new.outcomes,
                            new.history, new.chunks, new.state):  # fmt: skip
                    raise Violation(f"{who}'s claim of {run_id} changed more than the lease")
                self.counts.claims += 1
            elif old.owner != who:
                raise Violation(f"{who} wrote {run_id}, owned by {old.owner}")
            if new.checkpoints < old.checkpoints or new.next_seq < old.next_seq:
                raise Violation(f"{who} moved {run_id} back to an older checkpoint")
            if new.checkpoints == old.checkpoints and new.state == "running":
                for seq, outcome in old.outcomes.items():
                    if new.outcomes.get(seq) != outcome:
                        raise Violation(f"{who} lost the recorded outcome of {run_id}/{seq}")
            old_history = self.store.full_history(old)
        history = self.store.full_history(new)
        if history[: len(old_history)] != old_history:
            raise Violation(f"{who} rewrote the step history of {run_id}")
        for seq, ok in history[len(old_history) :]:
            if (run_id, seq) in self.recorded:
                raise Violation(f"{who} recorded step {run_id}/{seq} twice")
            self.recorded[(run_id, seq)] = ok
        self.log(f"  {who} writes {run_id}: v{prev.version + 1 if prev else 1} "
                 f"cp {new.checkpoints} owner {new.owner} {new.state}")  # fmt: skip
        return new

    # -- the world's moves ------------------------------------------------------

    def start_worker(self, w: Worker) -> None:
        w.incarnation += 1
        w.engine = Engine(
            self.sched, until_idle=False, clock=self.clock_of(w),
            worker_id=f"sim{w.index}:{w.incarnation}:x", executor=SimExecutor(self, w),
            rng=random.Random(self.rng.getrandbits(32)),
        )  # fmt: skip
        w.paused_until = 0.0
        w.idle = False
        w.crash_in_op = None
        self.log(f"{w.name} starts")

    def kill(self, w: Worker, why: str) -> None:
        self.log(f"{w.name} dies: {why}")
        assert w.engine is not None
        for run in list(w.engine.runs.values()):
            coro, run.coro = run.coro, None
            if coro is not None:
                coro.close()  # the process is gone; closing only keeps Python quiet
        w.engine = None
        self.calls = [c for c in self.calls if c.worker is not w]

    def client_yields(self) -> None:
        """Between two store calls of ``start``: let workers take a few steps."""
        if self.in_client_yield:
            return
        self.in_client_yield = True
        try:
            for _ in range(self.rng.choice([0, 0, 1, 2, 5])):
                runnable = [w for w in self.workers if w.engine is not None and not w.idle
                            and w.paused_until <= self.now]  # fmt: skip
                if not runnable:
                    break
                self.step(self.rng.choice(runnable))
        finally:
            self.in_client_yield = False
            self.current = None

    def start_run(self) -> None:
        n, long_sleep, loop = self.to_start.pop(0)
        run_id = f"r{n:02d}"
        self.current = None
        self.sched.start(job, n, long_sleep, loop, run_id=run_id)
        self.runs[run_id] = expected(n, long_sleep, loop)
        self.log(f"client starts {run_id} (long sleep {long_sleep}, loop {loop})")
        for w in self.workers:
            w.idle = False

    def step(self, w: Worker) -> None:
        assert w.engine is not None
        self.current = w
        self.counts.steps += 1
        self.log(f"{w.name} steps")
        try:
            did = w.engine.step()
        except SimCrash as exc:
            self.counts.crashes_in_op += 1
            self.kill(w, str(exc))
            return
        finally:
            self.current = None
        if w.crash_in_op is not None:  # armed, but the step made no store call
            w.crash_in_op = None
            self.counts.crashes_in_op += 1
            self.kill(w, "died between two store calls")
            return
        if not did:
            w.idle = True
            if w.engine.stopping and w.engine.finished():
                self.log(f"{w.name} stopped gracefully")
                w.engine = None
                self.calls = [c for c in self.calls if c.worker is not w]
        self.check_holders()

    def finish_call(self, c: SimCall) -> None:
        self.calls.remove(c)
        self.counts.attempts_finished += 1
        self.current = c.worker
        try:
            c.future.set_result(c.fn(*c.args))
        except Exception as exc:
            c.future.set_exception(exc)
        finally:
            self.current = None
        c.worker.idle = False

    def check_holders(self) -> None:
        for run_id in {r for w in self.workers if w.engine for r in w.engine.runs}:
            holders = self.holders(run_id)
            if len(holders) > 1:
                raise Violation(f"run {run_id} held by {[h.name for h in holders]} at once")

    def check_markers(self) -> None:
        for run_id in self.runs:
            rec = self.store.run(run_id)
            if rec is not None and rec.state == "running":
                assert rec.marker is not None
                if marker_key(run_id, rec.marker) not in self.store.records:
                    raise Violation(f"running run {run_id} has no live/ marker")

    def next_event(self) -> float | None:
        times = [c.ready_at for c in self.calls if c.worker.paused_until <= self.now]
        times += [w.paused_until for w in self.workers if w.paused_until > self.now]
        for w in self.workers:
            if w.engine is not None:
                times.append(w.engine.next_due() - w.skew)
        future = [t for t in times if t > self.now]
        return min(future) if future else None

    def advance_clock(self) -> bool:
        due = self.next_event()
        if due is None:
            return False
        self.now = due + self.rng.choice([0.0, 0.0, 1e-6, self.rng.uniform(0, 0.3)])
        for w in self.workers:
            w.idle = False
        return True

    def done(self) -> bool:
        if self.to_start or len(self.runs) == 0 or self.store.changes == self.done_checked:
            return False
        self.done_checked = self.store.changes
        return all(
            (rec := self.store.run(r)) is not None and rec.state != "running" for r in self.runs
        )

    def act(self) -> None:
        rng = self.rng
        self.counts.actions += 1
        if self.chaos and self.counts.actions >= self.chaos_actions:
            self.chaos = False
            self.log("-- calm: no more failures --")
        alive = [w for w in self.workers if w.engine is not None]
        if self.to_start and (not self.runs or rng.random() < 0.03):
            self.start_run()
            return
        dead = [w for w in self.workers if w.engine is None]
        if dead and (not self.chaos or rng.random() < 0.05 or not alive):
            self.start_worker(rng.choice(dead))
            return
        if self.chaos and alive:
            r = rng.random()
            if r < self.p_crash:
                self.counts.crashes += 1
                self.kill(rng.choice(alive), "killed")
                return
            r -= self.p_crash
            if r < self.p_crash:
                w = rng.choice(alive)
                w.crash_in_op = rng.choice(["before", "after"])
                self.step(w)
                return
            r -= self.p_crash
            if r < self.p_pause:
                w = rng.choice(alive)
                w.paused_until = self.now + rng.uniform(0, 3 * LEASE)
                self.counts.pauses += 1
                self.log(f"{w.name} paused until t={w.paused_until - T0:.3f}")
                return
            r -= self.p_pause
            if r < 0.002:
                w = rng.choice(alive)
                assert w.engine is not None
                if not w.engine.stopping:
                    self.counts.stops += 1
                    w.engine.request_stop(rng.choice([0.0, LEASE]))
                    w.idle = False
                    self.log(f"{w.name} asked to stop")
                return
        runnable = [w for w in alive if not w.idle and w.paused_until <= self.now]
        finishing = [
            c for c in self.calls if c.ready_at <= self.now and c.worker.paused_until <= self.now
        ]
        options: list[tuple[str, Any]] = [("step", w) for w in runnable]
        options += [("finish", c) for c in finishing]
        if not options:
            if not self.advance_clock():
                raise Violation("nothing can happen, yet runs are unfinished")
            return
        kind, what = rng.choice(options)
        if kind == "step":
            self.step(what)
        else:
            self.finish_call(what)

    def run(self, max_actions: int = 60_000) -> Counters:
        while not self.done():
            if self.counts.actions > max_actions or self.now > T0 + 100_000:
                raise Violation(
                    f"runs unfinished after {self.counts.actions} actions, "
                    f"{self.now - T0:.0f} s: "
                    + "; ".join(self.describe(r) for r in self.runs)
                )
            changes = self.store.changes
            self.act()
            if self.store.changes != changes:
                self.check_markers()
        for run_id, want in self.runs.items():
            got = self.sched.result(run_id)
            if got != want:
                raise Violation(f"run {run_id} returned {got}, expected {want}")
        leftover = [k for k in self.store.records if k.startswith(LIVE_PREFIX)]
        # Markers of finished runs are deleted by their finisher, or by the next listing.
        for w in self.workers:
            if w.engine is None:
                self.start_worker(w)
        for _ in range(200):
            if not [k for k in self.store.records if k.startswith(LIVE_PREFIX)]:
                break
            self.now += POLL
            for w in self.workers:
                while self.step_quietly(w):
                    pass
        else:
            raise Violation(f"markers of finished runs are never deleted: {leftover}")
        return self.counts

    def describe(self, run_id: str) -> str:
        rec = self.store.run(run_id)
        if rec is None:
            return f"{run_id}: no record"
        return (f"{run_id}: {rec.state} cp {rec.checkpoints} seq {rec.next_seq} owner {rec.owner} "
                f"lease {rec.lease - T0:.1f} wake {rec.wake} outcomes {sorted(rec.outcomes)} "
                f"waiting {rec.waiting.describe() if rec.waiting else None}")  # fmt: skip

    def step_quietly(self, w: Worker) -> bool:
        assert w.engine is not None
        self.current = w
        try:
            return w.engine.step()
        finally:
            self.current = None


class _Deterministic:
    """Stands in for ``secrets`` in the scheduler module: tokens from the world's seed."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def token_hex(self, n: int = 16) -> str:
        return f"{self.rng.getrandbits(8 * n):0{2 * n}x}"


def simulate(seed: int, verbose: bool = False) -> World:
    """Run one seeded world to the end; raise Violation (with the seed) if an invariant fails."""
    global WORLD, LAST_WORLD
    world = World(seed, verbose)
    WORLD = LAST_WORLD = world
    saved = (records_module.HISTORY_CHUNK, engine_module.HISTORY_CHUNK, scheduler_module.secrets)
    records_module.HISTORY_CHUNK = engine_module.HISTORY_CHUNK = CHUNK
    scheduler_module.secrets = _Deterministic(random.Random(seed))  # type: ignore[assignment]
    logger = logging.getLogger("corosnap.scheduler")
    level = logger.level
    logger.setLevel(logging.DEBUG if verbose else logging.CRITICAL)
    try:
        world.run()
    except Violation as exc:
        raise Violation(f"seed {seed}: {exc}") from exc
    finally:
        records_module.HISTORY_CHUNK, engine_module.HISTORY_CHUNK = saved[:2]
        scheduler_module.secrets = saved[2]  # type: ignore[assignment]
        logger.setLevel(level)
        WORLD = None
        for w in world.workers:
            if w.engine is not None:
                for run in w.engine.runs.values():
                    if run.coro is not None:
                        run.coro.close()
    return world


def main() -> None:
    seed = int(sys.argv[1])
    verbose = "-v" in sys.argv
    if verbose:
        logging.basicConfig(level=logging.DEBUG, format="      log: %(message)s")
    t0 = time.perf_counter()
    try:
        world = simulate(seed, verbose)
    except Violation:
        if LAST_WORLD is not None:
            print("\n".join(LAST_WORLD.trace))
        raise
    print("\n".join(world.trace))
    print(f"seed {seed}: ok in {time.perf_counter() - t0:.3f} s: {world.counts}")


LAST_WORLD: World | None = None

if __name__ == "__main__":
    main()
