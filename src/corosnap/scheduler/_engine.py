"""One worker: the loop that claims runs from the store and drives them.

Rules of this file:

* **One thread owns all state.**  The loop thread resumes coroutines, writes
  every record and keeps every table below.  Step attempts run on an
  executor (a thread pool by default, any ``concurrent.futures.Executor``
  if given, or inline); they only report what happened on ``self.events``.
  So there are no locks.
* **The store is the truth.**  An engine starts from nothing, learns which
  runs exist by listing the store, and takes a run only through a lease
  (``_lease.py``): a compare-and-set write of the run record naming itself
  as owner.  A crash at any instant is therefore the same as stopping: the
  leases run out and any worker carries on from what was written.
* **Write before acting.**  A checkpoint (the snapshot and what it now
  waits for, together with the step outcomes it was resumed with) is
  written before any of its ops is started.  A step's outcome counts as
  recorded once a run record holding it is written; until then it is only
  in memory, and a crash runs the step again.
* **One store operation per step.**  :meth:`Engine.step` does one unit of
  work with at most one store call (the legacy and clean-up paths named
  below aside), and never blocks.  The real loop (:meth:`Engine.loop`)
  calls it until there is nothing to do, then blocks on ``self.events``
  until a step attempt finishes or the next timer is due.  The simulation
  test (``tests/scheduler/test_simulation.py``) calls the same ``step`` of
  several engines in a seeded order, with a simulated clock, store and
  executor, so every interleaving of store calls between workers is
  reachable by the real code.

Theory of operation
-------------------
A run held by this engine is *ready* (everything it waits for has an
outcome, or it has never started) or *waiting* on ops (step calls, timers,
child runs).  Each :meth:`~Engine.step` takes the first of:

1. what the executor reported (attempts finished): record the outcome in
   memory (the run becomes *dirty*, or *ready* if it was its last op), or
   schedule a retry; and the timers that are due (durable sleeps, retry
   pauses, step timeouts, lease renewals, polls of child runs);
2. *advance* one ready run: compute the value of its ``await`` from the
   outcomes, ``send``/``throw`` it into the coroutine, and take what comes
   out: a directive becomes ops with fresh sequence numbers, the coroutine
   is snapshotted and the **checkpoint** written (one compare-and-set
   write, which also records the outcomes just consumed and renews the
   lease), then the ops are started; ``StopIteration`` or an exception ends
   the run (one write; a child then resolves its parent's op);
3. *flush* one dirty run: write its record with the outcomes recorded so
   far (a gather's finished steps while others still run) or a renewed
   lease;
4. one action from the agenda: inspect a run found in the store, claim it,
   write a history chunk, look up a child run, delete a finished run's
   marker;
5. when the poll interval has passed: list the unfinished top-level runs
   (``live/`` markers) and put inspections of the ones worth a look on the
   agenda.

A write refused by compare-and-set means another worker owns the run now:
the run is dropped from memory at once, and results of its attempts still
running are thrown away when they arrive.

Runs that need not be held are let go: a checkpoint that waits only on
timers due later than a lease is written with no owner and a ``wake`` time,
and any worker takes the run up when it is due.  A graceful stop
(:meth:`Engine.request_stop`) stops claiming and starting, lets the
attempts in flight finish (up to a grace period), checkpoints what became
ready, and writes every run it still holds back with no owner.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import queue
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import BrokenExecutor, Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from .._errors import CorosnapError
from ..stores import Conflict, StoreError
from ._context import _CURRENT, StepContext
from ._directives import Call, Gather, Sleep
from ._errors import SchedulerError, StepTimeout, UnrecordableError
from ._lease import claimable, new_worker_id, register, unregister
from ._policy import FunctionOptions
from ._records import (
    HISTORY_CHUNK,
    LIVE_PREFIX,
    RUN_PREFIX,
    SLEPT,
    STEP_PREFIX,
    HistoryEntry,
    Op,
    Outcome,
    RunRecord,
    Waiting,
    child_run_id,
    decode_run,
    decode_step,
    encode_chunk,
    encode_run,
    evolve,
    marker_key,
    parse_marker_key,
    run_key,
    step_key,
    steplog_key,
)

if TYPE_CHECKING:
    from ._scheduler import Scheduler

log = logging.getLogger("corosnap.scheduler")

#: Runs inspected per listing of the store; more candidates mean another
#: listing right after these (so workers listing at once share the work).
CLAIM_BATCH = 16
#: A ``live/`` marker with no run record is deleted once this old (seconds):
#: ``start`` writes the marker first, so a young one may be a start in progress.
ORPHAN_MARKER_AGE = 600.0
#: How long an engine that cannot reach the store waits before listing again.
STORE_TROUBLE_PAUSE = 1.0


@dataclass
class Stats:
    """What one ``run_until_complete`` or ``serve`` call did; returned by it."""

    runs_resumed: int = 0  #: runs taken over from the store (claimed), children included
    runs_done: int = 0
    runs_failed: int = 0
    checkpoints: int = 0
    snapshot_bytes: int = 0  #: sum of the corosnap snapshot sizes written
    record_bytes: int = 0  #: sum of the run record sizes written at checkpoints
    snapshot_seconds: float = 0.0  #: time spent in corosnap.dumps
    write_seconds: float = 0.0  #: time spent writing run records at checkpoints
    writes: int = 0  #: run record writes of every kind (checkpoints, outcomes, leases)
    history_writes: int = 0  #: step history chunks written (one per 32 steps recorded)
    steps_recorded: int = 0  #: step outcomes written by this worker
    steps_found_recorded: int = 0  #: step outcomes found in the store, not run again
    attempts: int = 0  #: step attempts started
    retries: int = 0
    timeouts: int = 0
    claims: int = 0  #: leases taken
    renewals: int = 0  #: writes made only to renew a lease
    releases: int = 0  #: runs written back with no owner (long timers, stopping)
    leases_lost: int = 0  #: runs dropped because another worker had taken them over
    store_errors: int = 0  #: store operations that failed (the run was dropped, then retaken)
    elapsed: float = 0.0
    unresumable: list[str] = field(default_factory=list)  #: runs whose snapshot would not load


@dataclass(eq=False)
class _LiveRun:
    """A run this engine holds: its last written record, its coroutine, the outcomes so far."""

    rec: RunRecord  # as last written (or read, for a claim); the store holds it at `version`
    version: int  # 0: not written yet (a new child run)
    coro: Any = None
    pending: set[int] = field(default_factory=set)  # ops of rec.waiting without an outcome
    outcomes: dict[int, Outcome] = field(default_factory=dict)  # ops resolved so far
    new_history: list[tuple[HistoryEntry, Op]] = field(default_factory=list)  # not yet written
    writes: int = 0  # successful writes by this engine: renewal timers check it
    chunk_written: int = -1  # index of the last history chunk this engine wrote
    chunk_failed_at: int = -1  # value of `writes` when writing a chunk last failed
    deferred: list[_Attempt] = field(default_factory=list)  # to start once the lease is renewed
    child_wake: dict[int, float] = field(default_factory=dict)  # pending child op -> its wake

    @property
    def id(self) -> str:
        return self.rec.run_id


@dataclass(eq=False)
class _Attempt:
    """One try at running one step op."""

    run: _LiveRun
    op: Op
    options: FunctionOptions
    number: int
    first_started: float
    live: bool = True  # False once finished or timed out: a later result is discarded
    future: Future[Any] | None = None


@dataclass(eq=False)
class _Done:
    """Posted when an attempt has finished, by whatever thread learned it."""

    attempt: _Attempt | None  # None: only wakes the loop up
    ok: bool = False
    value: Any = None  # the return value, or the exception
    fatal: bool = False  # a BaseException (KeyboardInterrupt, SystemExit): stop the engine


_WAKE = _Done(None)


@dataclass
class _Limit:
    running: int = 0
    queued: deque[_Attempt] = field(default_factory=deque)


def run_step(call: Call[Any], ctx: StepContext) -> Any:
    """Call one step attempt with ``current_step()`` set: on a thread, inline, or elsewhere.

    Module-level, so that a process pool or a Dask cluster can pickle it (by
    reference) together with the step function and its arguments.
    """
    token = _CURRENT.set(ctx)
    try:
        return call.fn(*call.args, **(call.kwargs or {}))
    finally:
        _CURRENT.reset(token)


class Engine:
    """One worker over ``sched.store``.  See the module docstring.

    ``until_idle``: stop when no unfinished run is left that this worker could
    take (``run_until_complete``); otherwise run until :meth:`request_stop`
    (``serve``).  ``clock``, ``worker_id``, ``executor`` and ``rng`` replace
    the wall clock, the random worker id, the scheduler's executor and the
    random source: the simulation test injects its own.
    """

    def __init__(
        self,
        sched: Scheduler,
        *,
        until_idle: bool,
        clock: Callable[[], float] | None = None,
        worker_id: str | None = None,
        executor: Executor | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if sched.store is None:
            raise SchedulerError(f"{sched!r} has no store: pass one to Scheduler(store)")
        self.sched = sched
        self.store = sched.store
        self.until_idle = until_idle
        self.clock = clock or time.time
        self.id = worker_id or new_worker_id()
        self.lease = sched.lease
        self.skew = sched.clock_skew
        self.poll = sched.poll
        self.max_runs = sched.max_runs
        self.runs: dict[str, _LiveRun] = {}
        self.ready: deque[_LiveRun] = deque()
        self.dirty: dict[str, _LiveRun] = {}
        self.agenda: deque[Callable[[], object]] = deque()
        self.timers: list[tuple[float, int, Callable[[], None]]] = []
        self.tiebreak = itertools.count()
        self.events: queue.SimpleQueue[_Done] = queue.SimpleQueue()
        self.in_flight = 0  # attempts started whose _Done has not been handled
        self.live_attempts: set[_Attempt] = set()  # started, neither finished nor timed out
        self.limits: dict[Callable[..., Any], _Limit] = {}
        self.own_pool: ThreadPoolExecutor | None = None
        self.executor: Executor | None = executor or sched.executor
        self.rng = rng or random.Random()
        self.pid = os.getpid()
        self.stats = Stats()
        # What this engine knows about the top-level runs it listed.
        self.listed: dict[str, str] = {}  # run id -> marker, from the last listing
        self.settled: set[str] = set()  # listed runs that are finished (marker being deleted)
        self.absent: set[str] = set()  # listed runs with no record yet (a start in progress?)
        self.next_look: dict[str, float] = {}  # run id -> not worth inspecting before then
        self.unresumable: dict[str, str] = {}  # run id -> why its snapshot would not load
        self.scan_due = 0.0
        self.inspecting = 0  # inspections on the agenda from the last listing
        self.confirmed = False  # a listing made while idle found nothing left (until_idle)
        self.legacy_checked = False
        self.stopping = False
        self.stop_deadline = 0.0
        self.resuming: str | None = None  # the run whose coroutine is running, for hooks/logs

    def __repr__(self) -> str:
        return f"<Engine {self.id} holding {len(self.runs)} run(s) of {self.store!r}>"

    # -- the real loop -----------------------------------------------------------

    def loop(self, timeout: float | None = None, stop: threading.Event | None = None) -> Stats:
        """Step until done (see ``until_idle``) or stopped; block while there is nothing to do.

        ``stop`` is a ``threading.Event`` checked between steps.  Raises
        TimeoutError after ``timeout`` seconds, having let go of every run it
        held, and SchedulerError naming the runs it could not resume.
        """
        start = time.monotonic()
        deadline = None if timeout is None else start + timeout
        if self.executor is None and self.sched.workers:
            self.own_pool = ThreadPoolExecutor(
                self.sched.workers, thread_name_prefix="corosnap-step"
            )
            self.executor = self.own_pool
        elif self.executor is None and any(
            o.timeout is not None for o in self.sched._functions.values()
        ):
            log.warning("steps run inline (workers=0): their timeouts are not enforced")
        register(self.id)
        try:
            while True:
                while self.step():
                    if deadline is not None and time.monotonic() >= deadline:
                        break
                if stop is not None and stop.is_set() and not self.stopping:
                    self.request_stop(self.sched.grace)
                    continue
                if self.finished():
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    held = ", ".join(sorted(self.runs)) or "none held here"
                    self.release_all()
                    raise TimeoutError(f"runs still unfinished after {timeout:g} s ({held})")
                self.wait(deadline, stop is not None)
        finally:
            unregister(self.id)
            if self.own_pool is not None:
                # Never wait here for a step that hangs; its late result has nowhere to go.
                self.own_pool.shutdown(wait=False, cancel_futures=True)
            self.drop_coroutines()
            self.stats.elapsed = time.monotonic() - start
        if self.stats.unresumable:
            raise SchedulerError(
                f"{len(self.stats.unresumable)} run(s) could not be resumed and were left "
                f"as they are in the store: {', '.join(self.stats.unresumable)} "
                "(see the log, or Scheduler.status(), for why: usually the workflow's code "
                "changed and needs an explicit migration, see docs/evolution.md)"
            )
        return self.stats

    def next_due(self) -> float:
        """When, by our clock, a timer, the next listing or the end of a grace period is due."""
        due = self.stop_deadline if self.stopping else self.scan_due
        return min(due, self.timers[0][0]) if self.timers else due

    def wait(self, deadline: float | None, stoppable: bool) -> None:
        """Block until an attempt finishes, a timer or the next listing is due, or a wake-up."""
        wait = max(0.0, self.next_due() - self.clock())
        if deadline is not None:
            wait = min(wait, max(0.0, deadline - time.monotonic()))
        if stoppable:
            wait = min(wait, 0.25)
        try:
            done = self.events.get(timeout=wait)
        except queue.Empty:
            return
        self.events.put(done)  # handled by the next step, in order with the others

    def request_stop(self, grace: float) -> None:
        """Stop gracefully: no new runs or attempts; after ``grace`` s, let go of everything.

        Safe to call from a signal handler (it only sets two attributes and
        puts a wake-up on a ``SimpleQueue``).
        """
        if not self.stopping:
            self.stop_deadline = self.clock() + grace
            self.stopping = True
        self.events.put(_WAKE)

    def finished(self) -> bool:
        if self.stopping:
            return not self.runs
        if not self.until_idle:
            return False
        if not self.idle():
            return False
        unsettled = [
            r for r in self.listed
            if r not in self.settled and r not in self.absent and r not in self.unresumable
            and r not in self.runs
        ]  # fmt: skip
        if unsettled:
            return False
        if not self.confirmed:
            self.scan_due = 0.0  # one more listing, now that we are idle, to be sure
            return False
        self.release_all()  # runs blocked on a child we cannot resume: others may
        return True

    def idle(self) -> bool:
        """Nothing to do and nothing coming: every held run (if any) is blocked."""
        if self.ready or self.dirty or self.agenda or self.inspecting or self.working():
            return False
        return all(self.blocked(run) for run in self.runs.values())

    def working(self) -> bool:
        """Is an attempt of a run we hold still running?  (Others' results are discarded.)"""
        return any(self.holds(a.run) for a in self.live_attempts)

    def blocked(self, run: _LiveRun) -> bool:
        """True if ``run`` waits only on child runs this engine cannot resume."""
        waiting = run.rec.waiting
        if waiting is None or not run.pending or run in self.ready:
            return False
        for op in waiting.ops:
            if op.seq not in run.pending:
                continue
            if op.kind != "child":
                return False
            child_id = child_run_id(run.id, op.seq)
            child = self.runs.get(child_id)
            if child_id not in self.unresumable and (child is None or not self.blocked(child)):
                return False
        return True

    def release_all(self) -> None:
        """Write every held run back with no owner (best effort: errors only logged)."""
        for run in list(self.runs.values()):
            try:
                self.release(run)
            except Exception as exc:  # the store may be what failed
                log.warning("run %s: could not release its lease: %r", run.id, exc)

    def drop_coroutines(self) -> None:
        """Close the coroutines of the runs still held when the engine stops.

        The runs are safe in the store; these in-memory copies are garbage.
        Python closes a dropped coroutine anyway, by raising GeneratorExit at
        its ``await``, which runs the workflow's ``finally`` blocks and
        ``__aexit__`` methods in this process (an ``await`` there fails with
        "coroutine ignored GeneratorExit").  Closing them here does the same at
        a known moment and keeps those errors off stderr; one never started
        just closes (and is not reported as "never awaited").
        """
        for run in list(self.runs.values()):
            self.close_coroutine(run)
        self.runs.clear()

    @staticmethod
    def close_coroutine(run: _LiveRun) -> None:
        coro, run.coro = run.coro, None
        if coro is None:
            return
        try:
            coro.close()
        except Exception as exc:
            log.debug("run %s: closing its dropped coroutine raised %r", run.id, exc)

    # -- one step ---------------------------------------------------------------

    def step(self) -> bool:
        """Do one unit of work (at most one store call); False if there is nothing to do now."""
        self.drain_events()
        self.fire_timers()
        if self.ready:
            self.advance(self.ready.popleft())
            return True
        if self.dirty:
            run = self.dirty.pop(next(iter(self.dirty)))
            if self.holds(run):
                self.flush(run)
            return True
        if self.agenda:
            self.agenda.popleft()()
            return True
        if self.stopping:
            if self.runs and (not self.working() or self.clock() >= self.stop_deadline):
                self.release(next(iter(self.runs.values())))
                return True
            return False
        if self.clock() >= self.scan_due:
            self.scan()
            return True
        return False

    def drain_events(self) -> None:
        events = self.events
        # empty() first: get_nowait on an empty queue raises, which costs
        # several times more, and most steps find no event.  Only this thread
        # takes from the queue, so an event seen is still there.
        while not events.empty():
            done = events.get_nowait()
            if done.attempt is not None:
                self.on_attempt_done(done)

    def at(self, due: float, action: Callable[[], None]) -> None:
        heapq.heappush(self.timers, (due, next(self.tiebreak), action))

    def fire_timers(self) -> None:
        now = self.clock()
        while self.timers and self.timers[0][0] <= now:
            _, _, action = heapq.heappop(self.timers)
            action()

    def holds(self, run: _LiveRun) -> bool:
        return self.runs.get(run.id) is run

    def lease_ok(self, run: _LiveRun) -> bool:
        """Is our lease on ``run`` comfortably valid by our clock (at least half of it left)?

        A child run not written yet has no lease of its own: it lives under its
        parent's, which created it.
        """
        if run.version == 0:
            parent = self.runs.get(run.rec.parent or "")
            return parent is not None and self.lease_ok(parent)
        return self.clock() < run.rec.lease - self.lease / 2

    # -- finding runs ------------------------------------------------------------

    def scan(self) -> None:
        """List the unfinished top-level runs; put inspections of a batch of them on the agenda."""
        now = self.clock()
        self.scan_due = now + self.poll
        idle = self.idle()
        if not self.legacy_checked:
            self.legacy_checked = True
            self.agenda.append(self.repair_legacy_markers)
        try:
            keys = list(self.store.keys(LIVE_PREFIX))
        except StoreError as exc:
            self.store_trouble("listing the unfinished runs", exc)
            return
        listed: dict[str, str] = {}
        stale: list[tuple[str, str]] = []
        for key in keys:
            parsed = parse_marker_key(key)
            if parsed is None:
                continue
            run_id, marker = parsed
            if run_id in listed:
                stale.append(parsed)  # an older incarnation's marker: inspect it on its own
                continue
            listed[run_id] = marker
        self.listed = listed
        self.settled &= listed.keys()
        self.absent &= listed.keys()
        for gone in [r for r in self.next_look if r not in listed]:
            del self.next_look[gone]
        candidates = [
            (run_id, marker) for run_id, marker in listed.items()
            if run_id not in self.runs and run_id not in self.unresumable
            and run_id not in self.settled and self.next_look.get(run_id, 0.0) <= now
        ] + stale  # fmt: skip
        self.rng.shuffle(candidates)
        room = self.max_runs - len(self.runs)
        batch = max(0, min(CLAIM_BATCH, room))
        if 0 < batch < len(candidates):
            self.scan_due = now  # more to look at: list again once this batch is done
        for run_id, marker in candidates[:batch]:
            self.inspecting += 1
            self.agenda.append(partial(self.inspect, run_id, marker))
        later = [t for t in self.next_look.values() if t > now]
        if later:
            self.scan_due = min(self.scan_due, min(later))
        self.confirmed = idle and not candidates and self.until_idle

    def inspect(self, run_id: str, marker: str) -> None:
        """Read one listed run: claim it, or note when it is worth another look."""
        self.inspecting -= 1
        if self.stopping or run_id in self.runs:
            return
        try:
            raw = self.store.get(run_key(run_id))
        except StoreError as exc:
            self.store_trouble(f"reading run {run_id}", exc)
            return
        now = self.clock()
        if raw is None:
            # The marker is written before the run record: a start in progress (look
            # again soon), or one that died between its writes (cleaned up when old).
            self.absent.add(run_id)
            self.look_again(run_id, now + self.poll)
            self.agenda.append(lambda: self.delete_orphan_marker(run_id, marker))
            return
        self.absent.discard(run_id)
        try:
            rec = decode_run(run_id, raw.blob)
        except CorosnapError as exc:
            self.give_up(run_id, exc)
            return
        if (rec.marker or "legacy") != marker:
            self.agenda.append(lambda: self.delete_marker(run_id, marker))  # an older incarnation's
            return
        if rec.state != "running":
            self.settled.add(run_id)
            self.agenda.append(lambda: self.delete_marker(run_id, marker))
            return
        ok, look_again = claimable(rec, self.id, now, self.skew)
        if not ok:
            self.look_again(run_id, look_again if look_again is not None else now + self.poll)
            return
        if len(self.runs) >= self.max_runs:
            return
        self.agenda.appendleft(lambda: self.claim(rec, raw.version))

    def claim(self, rec: RunRecord, version: int) -> _LiveRun | None:
        """Take the lease on ``rec`` (read at ``version``) and start what it waits for."""
        if self.stopping or rec.run_id in self.runs:
            return None
        # Restore first: a run whose snapshot does not load here is left exactly as it is.
        try:
            coro = self.sched._restore(rec.snapshot)
        except CorosnapError as exc:
            self.give_up(rec.run_id, exc)
            return None
        if rec.format == 1:
            rec = self.upgrade_legacy(rec)
        now = self.clock()
        claimed = evolve(
            rec, owner=self.id, lease=now + self.lease, wake=None, updated=now, pid=self.pid,
            marker=rec.marker if rec.parent is not None or rec.marker else "legacy",
        )  # fmt: skip
        try:
            new_version = self.store.put(
                run_key(rec.run_id), encode_run(claimed), expected_version=version
            )
        except Conflict:
            # Another worker claimed it first (or it moved on): look again later.
            self.discard(coro)
            self.look_again(rec.run_id, now + self.poll)
            return None
        except StoreError as exc:
            self.discard(coro)
            self.store_trouble(f"claiming run {rec.run_id}", exc)
            return None
        except BaseException:
            self.discard(coro)
            raise
        self.stats.claims += 1
        self.stats.runs_resumed += 1
        self.stats.writes += 1
        log.info("run %s (%s) claimed from the store at checkpoint %d%s", rec.run_id,
                 rec.workflow, rec.checkpoints,
                 f" (was held by {rec.owner})" if rec.owner else "")  # fmt: skip
        run = self.adopt(claimed, new_version, coro)
        self.wrote(run)
        self.wire(run, fresh=False)
        if self.holds(run) and run not in self.ready:
            self.release_if_only_sleeping(run)
        return run

    def look_again(self, run_id: str, at: float) -> None:
        """Inspect ``run_id`` again no earlier than ``at`` (and list the runs by then)."""
        self.next_look[run_id] = at
        self.scan_due = min(self.scan_due, at)

    def discard(self, coro: Any) -> None:
        try:
            coro.close()
        except Exception:
            pass

    def give_up(self, run_id: str, exc: Exception) -> None:
        """``run_id`` cannot be resumed by this worker: leave it in the store untouched.

        Scheduler.status() says "needs-migration" and why when its code
        changed; it resumes once a migration (or the old code) is supplied."""
        if run_id not in self.unresumable:
            log.error("run %s: its snapshot cannot be resumed, leaving it: %r", run_id, exc)
            self.unresumable[run_id] = repr(exc)
            self.stats.unresumable.append(run_id)

    def adopt(self, rec: RunRecord, version: int, coro: Any) -> _LiveRun:
        run = _LiveRun(rec, version, coro)
        self.runs[run.id] = run
        self.settled.discard(run.id)
        self.next_look.pop(run.id, None)
        return run

    def upgrade_legacy(self, rec: RunRecord) -> RunRecord:
        """A format-1 run kept its step outcomes in ``step/`` records: fold the pending ones in.

        This is the one place an action makes several store calls; it only
        runs for runs written by the first version of the scheduler.
        """
        outcomes = dict(rec.outcomes)
        for op in rec.waiting.ops if rec.waiting is not None else ():
            if op.kind != "step":
                continue
            key = step_key(rec.run_id, op.seq)
            raw = self.store.get(key)
            if raw is not None:
                outcomes[op.seq] = decode_step(key, raw.blob).outcome
        return evolve(rec, outcomes=outcomes)

    def repair_legacy_markers(self) -> None:
        """Give format-1 top-level runs (which have no ``live/`` marker) one, once per engine.

        Only a store holding format-1 step records is searched, so a store
        written by this version costs one empty listing here.
        """
        try:
            if next(iter(self.store.keys(STEP_PREFIX)), None) is None:
                return
            markers = {p[0] for k in self.store.keys(LIVE_PREFIX) if (p := parse_marker_key(k))}
            for key in list(self.store.keys(RUN_PREFIX)):
                run_id = key[len(RUN_PREFIX) :]
                if "/" in run_id or run_id in markers:
                    continue
                raw = self.store.get(key)
                if raw is None:
                    continue
                rec = decode_run(run_id, raw.blob)
                if rec.state == "running" and rec.format == 1:
                    self.store.put(marker_key(run_id, "legacy"), b"")
                    self.scan_due = 0.0
        except (StoreError, CorosnapError) as exc:
            log.warning("could not index the runs written by the first scheduler format: %r", exc)

    def delete_marker(self, run_id: str, marker: str) -> None:
        try:
            self.store.delete(marker_key(run_id, marker))
        except KeyError:
            pass
        except StoreError as exc:
            self.store_trouble(f"deleting the marker of run {run_id}", exc)

    def delete_orphan_marker(self, run_id: str, marker: str) -> None:
        """Delete a marker whose run never got a record, once it is old enough.

        Clean-up only, and rare, so it makes up to three store calls: read the
        marker (its version and age), the run record again, then delete the
        marker if it is still at the version read.  ``start`` rewrites its
        marker (compare-and-set) after writing the run record, so a slow start
        either keeps its marker or finds it deleted and writes it again.
        """
        key = marker_key(run_id, marker)
        try:
            raw = self.store.get(key)
            if raw is None or not raw.blob:
                return
            created = float(raw.blob.decode())
            if self.clock() - created < ORPHAN_MARKER_AGE:
                return
            if self.store.get(run_key(run_id)) is not None:
                return
            self.store.delete(key, expected_version=raw.version)
            log.info("run %s: deleted the marker of a start that never completed", run_id)
        except (KeyError, Conflict, ValueError, UnicodeDecodeError):
            pass
        except StoreError as exc:
            self.store_trouble(f"cleaning up the marker of run {run_id}", exc)

    def store_trouble(self, doing: str, exc: Exception) -> None:
        self.stats.store_errors += 1
        log.warning("store error while %s: %r; trying again later", doing, exc)
        self.scan_due = max(self.scan_due, self.clock() + STORE_TROUBLE_PAUSE)

    # -- writing ---------------------------------------------------------------

    def record_of(self, run: _LiveRun, **changes: Any) -> RunRecord:
        """The record to write for ``run`` now: what it held, plus outcomes and history since."""
        rec = run.rec
        history = rec.history + tuple(entry for entry, _ in run.new_history)
        chunks = rec.chunks
        if run.chunk_written == chunks and len(rec.history) >= HISTORY_CHUNK:
            # The oldest entries are safe in their chunk: drop them from the record.
            history, chunks = history[HISTORY_CHUNK:], chunks + 1
        waiting = changes.get("waiting", rec.waiting)
        if "outcomes" not in changes:
            steps = {op.seq for op in waiting.ops if op.kind == "step"} if waiting else set()
            changes["outcomes"] = {s: o for s, o in run.outcomes.items() if s in steps}
        now = self.clock()
        changes.setdefault("owner", self.id)
        changes.setdefault("lease", now + self.lease if changes["owner"] else 0.0)
        changes.setdefault("wake", None)
        return evolve(
            rec, history=history, chunks=chunks, updated=now, pid=self.pid, **changes
        )

    def write(self, run: _LiveRun, rec: RunRecord, blob: bytes | None = None) -> bool:
        """Compare-and-set ``run``'s record to ``rec``; False (and the run dropped) if refused."""
        if blob is None:
            blob = encode_run(rec)
        try:
            run.version = self.store.put(run_key(run.id), blob, expected_version=run.version)
        except Conflict as exc:
            self.lose(run, f"another worker advanced it ({exc})")
            return False
        except StoreError as exc:
            # The write may or may not have landed.  Drop the run: the record is
            # the truth, and a later listing takes it back if it is still ours.
            self.stats.store_errors += 1
            self.lose(run, f"store error, outcome unknown: {exc!r}")
            return False
        self.stats.writes += 1
        self.stats.steps_recorded += len(run.new_history)
        for entry, op in run.new_history:
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "run %s step %s: %s after %d attempt(s) in %.3f s",
                    run.id, op.describe(), "done" if entry.ok else "failed", entry.attempts,
                    entry.finished - entry.started,
                    extra={"scheduler_event": {
                        "event": "step", "run_id": run.id, "seq": entry.seq, "ok": entry.ok,
                        "attempts": entry.attempts, "pid": self.pid, "worker": self.id,
                    }},
                )  # fmt: skip
        run.new_history = []
        run.rec = rec
        self.dirty.pop(run.id, None)
        self.wrote(run)
        deferred, run.deferred = run.deferred, []
        for attempt in deferred:
            self.start_attempt(attempt)
        return True

    def wrote(self, run: _LiveRun) -> None:
        """After a successful write: plan the lease renewal and the next history chunk."""
        run.writes += 1
        if run.rec.state != "running" or run.rec.owner != self.id:
            return
        count = run.writes
        self.at(self.clock() + self.lease / 3, lambda: self.maybe_renew(run, count))
        if self.chunk_due(run):
            chunk = run.rec.chunks
            self.agenda.appendleft(lambda: self.write_chunk(run, chunk))

    def chunk_due(self, run: _LiveRun) -> bool:
        return (
            len(run.rec.history) >= HISTORY_CHUNK
            and run.chunk_written != run.rec.chunks
            and run.chunk_failed_at != run.writes
        )

    def maybe_renew(self, run: _LiveRun, count: int) -> None:
        if self.holds(run) and run.writes == count and run not in self.ready:
            self.stats.renewals += 1
            self.dirty[run.id] = run

    def write_chunk(self, run: _LiveRun, chunk: int) -> None:
        """Copy the oldest :data:`HISTORY_CHUNK` written history entries to their own record.

        Only entries already written in the run record go there, and every
        owner's written history extends every earlier one, so two workers
        writing chunk ``n`` write the same bytes: a plain put is safe.
        """
        if not self.holds(run) or run.rec.chunks != chunk or not self.chunk_due(run):
            return
        try:
            self.store.put(
                steplog_key(run.id, chunk), encode_chunk(run.rec.history[:HISTORY_CHUNK])
            )
        except StoreError as exc:
            # The next write keeps the entries in the run record; a later one tries again.
            self.stats.store_errors += 1
            log.warning("run %s: could not write its step history chunk: %r", run.id, exc)
            run.chunk_failed_at = run.writes  # not again before the run's next write
            return
        run.chunk_written = chunk
        self.stats.history_writes += 1

    def flush(self, run: _LiveRun) -> None:
        """Write the outcomes recorded since the last write, renewing the lease."""
        self.write(run, self.record_of(run))

    def release(self, run: _LiveRun, wake: float | None = None) -> bool:
        """Write ``run`` back with no owner (``wake``: nobody needs it before then); drop it."""
        if not self.holds(run):
            return False
        if run.version == 0:
            self.forget_run(run)  # a child never written: its parent's checkpoint recreates it
            return True
        if not self.write(run, self.record_of(run, owner=None, wake=wake)):
            return False
        self.stats.releases += 1
        self.forget_run(run)
        log.info("run %s released%s", run.id, f" until {wake:.3f}" if wake else "")
        return True

    def forget_run(self, run: _LiveRun) -> None:
        """Drop ``run`` from memory (it stays in the store as last written)."""
        self.runs.pop(run.id, None)
        self.dirty.pop(run.id, None)
        if run in self.ready:
            self.ready.remove(run)
        self.close_coroutine(run)
        if run.rec.parent is not None:
            parent = self.runs.get(run.rec.parent)
            seq = int(run.id.rsplit("/", 1)[1])
            if parent is not None and seq in parent.pending:
                self.poll_child_later(parent, seq)

    def lose(self, run: _LiveRun, why: str) -> None:
        """Another worker owns ``run`` now (or we cannot tell): stop touching it at once."""
        if not self.holds(run):
            return
        self.stats.leases_lost += 1
        log.warning("run %s: letting it go: %s", run.id, why)
        self.look_again(run.id, self.clock())  # take it back if the record says we may
        self.forget_run(run)

    # -- advancing a run ---------------------------------------------------------

    def advance(self, run: _LiveRun) -> None:
        """Resume a ready run until it awaits a directive (checkpoint it) or ends."""
        if not self.holds(run):
            return
        if not self.lease_ok(run):
            # We have not written for too long (a stall?): renew before acting.
            self.renew_first(run)
            return
        if self.chunk_due(run):
            # A busy run is always ready: its history chunk goes first, as this step's write.
            self.ready.appendleft(run)
            self.write_chunk(run, run.rec.chunks)
            return
        if run.coro is None:
            try:
                run.coro = self.sched._restore(run.rec.snapshot)
            except CorosnapError as exc:
                self.give_up(run.id, exc)
                self.forget_run(run)
                return
        value, error = self.answer(run)
        self.resuming = run.id
        try:
            while True:
                try:
                    if error is not None:
                        yielded = run.coro.throw(error)
                    else:
                        yielded = run.coro.send(value)
                except StopIteration as stop:
                    self.resuming = None
                    self.finish(run, True, stop.value)
                    return
                except Exception as exc:
                    self.resuming = None
                    self.finish(run, False, exc)
                    return
                try:
                    waiting, next_seq = self.plan(run, yielded)
                    waiting.pickle_calls()
                    break
                except (TypeError, UnrecordableError) as exc:
                    # Not something we can wait for (or record): raise it at the workflow's await.
                    value, error = None, exc
        finally:
            self.resuming = None
        self.checkpoint(run, waiting, next_seq)

    def renew_first(self, run: _LiveRun) -> None:
        """Renew the lease ``run`` acts under (its own, or its parent's), keeping it ready."""
        self.stats.renewals += 1
        if run.version > 0:
            self.ready.appendleft(run)
            self.flush(run)
            return
        parent = self.runs.get(run.rec.parent or "")
        if parent is None:
            # Its parent was let go: whoever holds the parent now creates the child.
            self.forget_run(run)
            return
        self.ready.appendleft(run)
        self.flush(parent)  # a refused write drops the parent; the child goes next step

    def answer(self, run: _LiveRun) -> tuple[Any, BaseException | None]:
        """The value the pending ``await`` returns, or the exception it raises."""
        waiting = run.rec.waiting
        if waiting is None:
            return None, None  # never started: the first send is None
        if not waiting.gather:
            outcome = run.outcomes[waiting.ops[0].seq]
            return (outcome.load(), None) if outcome.ok else (None, outcome.load())
        values = []
        for op in waiting.ops:
            outcome = run.outcomes[op.seq]
            value = outcome.load()
            if not outcome.ok and not waiting.return_exceptions:
                return None, value
            values.append(value)
        return values, None

    def plan(self, run: _LiveRun, yielded: object) -> tuple[Waiting, int]:
        """Turn what the workflow awaited into ops with new sequence numbers (TypeError if bad)."""
        if isinstance(yielded, Gather):
            items: tuple[Call[Any] | Sleep, ...] = yielded.items
        elif isinstance(yielded, (Call, Sleep)):
            items = (yielded,)
        else:
            raise TypeError(
                f"workflow {run.rec.workflow} awaited {type(yielded).__name__} {yielded!r:.80}; "
                "workflows can only await call(), sleep() and gather() from corosnap.scheduler"
            )
        now = self.clock()
        seq = run.rec.next_seq
        ops = []
        for item in items:
            if isinstance(item, Sleep):
                ops.append(Op(seq, "sleep", until=now + item.seconds))
            elif item.fn in self.sched._functions:
                ops.append(Op(seq, "step", call=item))
            elif item.fn in self.sched._workflows:
                ops.append(Op(seq, "child", call=item))
            else:
                raise TypeError(
                    f"{getattr(item.fn, '__qualname__', item.fn)!r} is not registered on this "
                    "scheduler: decorate it with @sched.function (a step) or @sched.workflow"
                )
            seq += 1
        if isinstance(yielded, Gather):
            return Waiting(ops, True, yielded.return_exceptions), seq
        return Waiting(ops), seq

    def checkpoint(self, run: _LiveRun, waiting: Waiting, next_seq: int) -> None:
        """Snapshot the run and write it with its new ops, in one write; then start them."""
        t0 = time.perf_counter()
        try:
            snapshot = self.sched._snapshot(run.coro)
        except CorosnapError as exc:
            log.info("run %s: cannot snapshot the workflow at its await: %s", run.id, exc)
            self.finish(run, False, exc)
            return
        t1 = time.perf_counter()
        # A checkpoint that only waits for timers due after the lease would run
        # out is written with no owner: any worker takes it up when it is due.
        wake = None
        now = self.clock()
        if waiting.ops and all(op.kind == "sleep" for op in waiting.ops):
            due = min(op.until for op in waiting.ops if op.until is not None)
            if due > now + self.lease:
                wake = due
        release = wake is not None or self.stopping
        rec = self.record_of(
            run, snapshot=snapshot, waiting=waiting, next_seq=next_seq, outcomes={},
            checkpoints=run.rec.checkpoints + 1,
            **({"owner": None, "wake": wake} if release else {}),
        )  # fmt: skip
        blob = encode_run(rec)
        if not self.write(run, rec, blob):
            return
        t2 = time.perf_counter()
        s = self.stats
        s.checkpoints += 1
        s.snapshot_bytes += len(snapshot)
        s.record_bytes += len(blob)
        s.snapshot_seconds += t1 - t0
        s.write_seconds += t2 - t1
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "run %s checkpoint %d: snapshot %d B, record %d B (dumps %.2f ms, write %.2f ms);"
                " waiting on %s",
                run.id, rec.checkpoints, len(snapshot), len(blob),
                (t1 - t0) * 1e3, (t2 - t1) * 1e3, waiting.describe(),
                extra={"scheduler_event": {
                    "event": "checkpoint", "run_id": run.id, "checkpoint": rec.checkpoints,
                    "snapshot_bytes": len(snapshot), "record_bytes": len(blob),
                    "pid": self.pid, "worker": self.id,
                }},
            )  # fmt: skip
        run.outcomes = {}
        if release:
            self.stats.releases += 1
            self.forget_run(run)
            return
        self.wire(run, fresh=True)

    def wire(self, run: _LiveRun, *, fresh: bool) -> None:
        """Start what the run's checkpoint waits for (``fresh``: just written by us)."""
        waiting = run.rec.waiting
        run.outcomes = {}
        if waiting is None or not waiting.ops:
            self.ready.append(run)
            return
        run.pending = {op.seq for op in waiting.ops}
        now = self.clock()
        for op in waiting.ops:
            recorded = run.rec.outcomes.get(op.seq)
            if recorded is not None:
                self.stats.steps_found_recorded += 1
                self.resolve(run, op.seq, recorded)
            elif op.kind == "sleep":
                assert op.until is not None
                if op.until <= now:
                    self.resolve(run, op.seq, SLEPT)
                else:
                    self.at(op.until, self._wake(run, op.seq))
            elif op.kind == "child":
                if fresh:
                    self.create_child(run, op)
                else:
                    self.agenda.append(partial(self.inspect_child, run, op))
            else:
                assert op.call is not None
                options = self.sched._functions[op.call.fn]
                self.start_attempt(_Attempt(run, op, options, 1, now))

    def release_if_only_sleeping(self, run: _LiveRun) -> None:
        """A run that only waits for timers due after the lease: let go until the first.

        Its timers are its own sleeps, and the wake times of child runs let go
        until a timer of theirs (so a family of long-sleeping runs costs no
        renewals).
        """
        waiting = run.rec.waiting
        if waiting is None or not run.pending or self.stopping:
            return
        times = []
        for op in waiting.ops:
            if op.seq not in run.pending:
                continue
            if op.kind == "sleep" and op.until is not None:
                times.append(op.until)
            elif op.kind == "child" and op.seq in run.child_wake:
                times.append(run.child_wake[op.seq])
            else:
                return
        due = min(times)
        if due > self.clock() + self.lease:
            self.agenda.append(lambda: self.release(run, wake=due))

    def _wake(self, run: _LiveRun, seq: int) -> Callable[[], None]:
        return lambda: self.resolve(run, seq, SLEPT)

    def resolve(
        self,
        run: _LiveRun,
        seq: int,
        outcome: Outcome,
        recorded: tuple[HistoryEntry, Op] | None = None,
    ) -> None:
        """Give op ``seq`` its outcome (``recorded``: a step's, to be written); last one: ready."""
        if seq not in run.pending or not self.holds(run):
            return
        run.pending.discard(seq)
        run.outcomes[seq] = outcome
        if recorded is not None:
            run.new_history.append(recorded)
        if not run.pending:
            self.dirty.pop(run.id, None)  # the checkpoint that advancing writes records it
            self.ready.append(run)
        elif recorded is not None:
            self.dirty[run.id] = run

    def finish(self, run: _LiveRun, ok: bool, value: Any) -> None:
        """Write the run's end (result or exception); resolve the parent's op if it is a child."""
        try:
            outcome = Outcome.success(value) if ok else Outcome.failure(value)
        except UnrecordableError as exc:
            ok, outcome = False, Outcome.failure(exc)
        rec = self.record_of(
            run, state="done" if ok else "failed", snapshot=None, waiting=None, outcomes={},
            outcome=outcome, owner=None,
        )  # fmt: skip
        if not self.write(run, rec):
            return
        del self.runs[run.id]
        run.coro = None
        if ok:
            self.stats.runs_done += 1
            log.info("run %s (%s) done after %d checkpoints", run.id, rec.workflow, rec.checkpoints)
        else:
            self.stats.runs_failed += 1
            log.info("run %s (%s) failed: %r", run.id, rec.workflow, outcome.load())
        if rec.parent is None:
            self.settled.add(run.id)
            marker = rec.marker or "legacy"
            self.agenda.append(lambda: self.delete_marker(run.id, marker))
        else:
            parent = self.runs.get(rec.parent)
            if parent is not None:
                self.resolve(parent, int(run.id.rsplit("/", 1)[1]), outcome)

    # -- child runs --------------------------------------------------------------

    def create_child(self, parent: _LiveRun, op: Op) -> None:
        """Start the child run of ``op`` in memory; its first checkpoint creates its record."""
        if self.stopping:
            return
        child_id = child_run_id(parent.id, op.seq)
        assert op.call is not None
        fn = op.call.fn
        try:
            coro = fn(*op.call.args, **(op.call.kwargs or {}))
        except Exception as exc:  # arguments that do not fit the signature
            self.resolve(parent, op.seq, Outcome.failure(exc))
            return
        now = self.clock()
        rec = RunRecord(
            child_id, self.sched._workflows[fn], parent=parent.id,
            created=now, updated=now, pid=self.pid, owner=self.id,
        )  # fmt: skip
        log.info("run %s started child run %s: %s", parent.id, child_id, op.call.describe())
        self.ready.append(self.adopt(rec, 0, coro))

    def inspect_child(self, parent: _LiveRun, op: Op) -> None:
        """Find the child run of ``op`` after a claim: resolve, claim, create or wait for it."""
        if not self.holds(parent) or op.seq not in parent.pending:
            return
        child_id = child_run_id(parent.id, op.seq)
        if child_id in self.runs:
            return  # ours already; it resolves the op when it ends
        try:
            raw = self.store.get(run_key(child_id))
        except StoreError as exc:
            self.store_trouble(f"reading child run {child_id}", exc)
            self.poll_child_later(parent, op.seq)
            return
        if raw is None:
            # The parent's owner died after its checkpoint, before the child's first write.
            self.create_child(parent, op)
            return
        try:
            child = decode_run(child_id, raw.blob)
        except CorosnapError as exc:
            self.give_up(child_id, exc)
            return
        if child.state != "running":
            assert child.outcome is not None
            self.resolve(parent, op.seq, child.outcome)
            return
        if child_id in self.unresumable:
            return  # the parent is blocked on it
        now = self.clock()
        ok, look_again = claimable(child, self.id, now, self.skew)
        if ok and not self.stopping:
            self.agenda.appendleft(lambda: self.claim_child(parent, op.seq, child, raw.version))
        elif child.owner is None and child.wake is not None and child.wake > now:
            # Let go, sleeping until a timer: nothing can happen to it before then.
            parent.child_wake[op.seq] = child.wake
            self.poll_child_later(parent, op.seq, child.wake, not_before=True)
            self.release_if_only_sleeping(parent)
        else:
            parent.child_wake.pop(op.seq, None)
            self.poll_child_later(parent, op.seq, look_again)

    def claim_child(self, parent: _LiveRun, seq: int, child: RunRecord, version: int) -> None:
        if self.claim(child, version) is None:
            self.poll_child_later(parent, seq)

    def poll_child_later(
        self, parent: _LiveRun, seq: int, at: float | None = None, not_before: bool = False
    ) -> None:
        """Look at the child run of op ``seq`` again after a poll interval, or by ``at``.

        ``not_before``: at ``at`` exactly, not earlier (a child let go until then).
        """
        waiting = parent.rec.waiting
        op = next((o for o in waiting.ops if o.seq == seq), None) if waiting else None
        if op is None:
            return
        due = self.clock() + self.poll
        if at is not None:
            due = at if not_before else min(due, at)
        self.at(due, lambda: self.agenda.append(lambda: self.inspect_child(parent, op)))

    # -- steps -----------------------------------------------------------------

    def start_attempt(self, attempt: _Attempt) -> None:
        """Run one attempt now, or queue it behind its function's concurrency limit."""
        run, options = attempt.run, attempt.options
        if attempt.op.seq not in run.pending or not self.holds(run) or self.stopping:
            return  # resolved meanwhile, the run let go, or we are stopping
        if not self.lease_ok(run):
            # Our lease may be running out (a stall): renew it first; the
            # successful write starts the attempt (a refused one drops the run).
            self.dirty[run.id] = run
            run.deferred.append(attempt)
            return
        limit = self.limits.setdefault(options.fn, _Limit())
        if options.concurrency is not None and limit.running >= options.concurrency:
            limit.queued.append(attempt)
            return
        limit.running += 1
        self.in_flight += 1
        self.stats.attempts += 1
        self.live_attempts.add(attempt)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "run %s step %s: attempt %d/%d started",
                run.id, attempt.op.describe(), attempt.number, options.max_attempts,
            )  # fmt: skip
        call = attempt.op.call
        assert call is not None
        ctx = StepContext(run.id, attempt.op.seq, attempt.number, options.name)
        if self.executor is None:
            # Inline: the outcome is queued and handled by the next step.
            try:
                self.events.put(_Done(attempt, True, run_step(call, ctx)))
            except Exception as exc:
                self.events.put(_Done(attempt, False, exc))
            return
        if options.timeout is not None:
            self.at(self.clock() + options.timeout, lambda: self.on_timeout(attempt))
        try:
            future = self.executor.submit(run_step, call, ctx)
        except BrokenExecutor:
            raise
        except Exception as exc:  # e.g. arguments a process pool cannot pickle
            self.events.put(_Done(attempt, False, exc))
            return
        attempt.future = future
        future.add_done_callback(lambda f: self.events.put(self.outcome_of(attempt, f)))

    @staticmethod
    def outcome_of(attempt: _Attempt, future: Future[Any]) -> _Done:
        """What a finished future says about an attempt (runs on whatever thread finished it)."""
        if future.cancelled():
            return _Done(attempt, False, StepTimeout("cancelled before it started"))
        exc = future.exception()
        if exc is None:
            return _Done(attempt, True, future.result())
        return _Done(attempt, False, exc, fatal=not isinstance(exc, Exception))

    def on_attempt_done(self, done: _Done) -> None:
        attempt = done.attempt
        assert attempt is not None
        self.in_flight -= 1
        self.live_attempts.discard(attempt)
        limit = self.limits[attempt.options.fn]
        limit.running -= 1
        if limit.queued:
            self.start_attempt(limit.queued.popleft())
        if done.fatal:
            raise done.value
        if isinstance(done.value, BrokenExecutor):
            raise SchedulerError(
                f"the executor running the steps is broken ({done.value!r}); "
                "the runs stay in the store for another worker"
            ) from done.value
        if not attempt.live:
            log.debug("run %s step %s: discarding the result of a timed-out attempt",
                      attempt.run.id, attempt.op.describe())  # fmt: skip
            return
        attempt.live = False
        if done.ok:
            try:
                outcome = Outcome.success(done.value)
            except UnrecordableError as exc:
                outcome = Outcome.failure(exc)
            self.record(attempt, outcome)
        else:
            self.attempt_failed(attempt, done.value)

    def on_timeout(self, attempt: _Attempt) -> None:
        if not attempt.live:
            return
        attempt.live = False
        self.live_attempts.discard(attempt)
        if attempt.future is not None:
            attempt.future.cancel()  # only helps if it has not started
        self.stats.timeouts += 1
        timeout = attempt.options.timeout
        self.attempt_failed(attempt, StepTimeout(
            f"{attempt.options.name} attempt {attempt.number} took more than {timeout:g} s"
        ))  # fmt: skip

    def attempt_failed(self, attempt: _Attempt, exc: BaseException) -> None:
        """Retry after a backoff pause, or record the failure for the workflow to see."""
        run, options, n = attempt.run, attempt.options, attempt.number
        if attempt.op.seq not in run.pending or not self.holds(run):
            return
        if options.should_retry(exc, n):
            delay = options.retry_delay(n, self.rng)
            self.stats.retries += 1
            log.info(
                "run %s step %s: attempt %d/%d failed (%s: %s); retrying in %.2f s",
                run.id, attempt.op.describe(), n, options.max_attempts,
                type(exc).__name__, exc, delay,
            )  # fmt: skip
            retry = _Attempt(run, attempt.op, options, n + 1, attempt.first_started)
            self.at(self.clock() + delay, lambda: self.start_attempt(retry))
            return
        why = "permanent error" if options.is_permanent(exc) else f"{n} attempt(s)"
        log.info(
            "run %s step %s failed after %s: %s: %s",
            run.id, attempt.op.describe(), why, type(exc).__name__, exc,
        )  # fmt: skip
        self.record(attempt, Outcome.failure(exc))

    def record(self, attempt: _Attempt, outcome: Outcome) -> None:
        """The step's final outcome: resolve its op; the run's next write records it."""
        run, op = attempt.run, attempt.op
        if op.seq not in run.pending or not self.holds(run):
            return
        entry = HistoryEntry(
            op.seq, attempt.options.name, outcome.ok, attempt.number, self.id,
            attempt.first_started, self.clock(),
        )  # fmt: skip
        self.resolve(run, op.seq, outcome, (entry, op))  # described only if logged
