"""The loop that drives workflow runs to completion: one instance per ``run_until_complete``.

Rules of this file:

* **One thread owns all state.**  The loop thread resumes coroutines, writes
  every record to the store and keeps every table below.  Worker threads only
  call step functions and put what happened on ``self.events``; they never
  touch a run or the store.  So there are no locks, and the store sees one
  writer per process.
* **The store is the truth.**  Nothing here outlives the call: an engine
  starts by reading every unfinished run from the store (`recover`) and
  forgets everything when it returns or dies.  A crash at any instant is
  therefore the same as returning early: the next engine starts from what
  was written.
* **Write before acting.**  A run's checkpoint (its snapshot and what it now
  waits for) is written before any of that is started; a step's outcome is
  written before the workflow is resumed with it.

Theory of operation
-------------------
A run is either *ready* (everything it waits for has an outcome, or it has
never started) or *waiting* on a list of ops (step calls, timers, child
runs).  The loop repeats:

1. fire the timers that are due (durable sleeps, retry pauses, timeouts);
2. *advance* every ready run: compute the value its ``await`` returns (or the
   exception it raises) from the recorded outcomes, ``send``/``throw`` it
   into the coroutine, and take what comes out:

   - a directive: turn it into ops (``plan``), snapshot the coroutine and
     write the checkpoint (compare-and-set on the run record's version), then
     start the ops (``wire``): submit step attempts, set timers, start child
     runs;
   - ``StopIteration``: the run is done; write its result; if it is a child,
     resolve the parent's op;
   - an exception: the run failed; write the exception likewise;

3. block on ``self.events`` until a step attempt finishes or the next timer
   is due (no polling), and handle what arrives: record a success, schedule
   a retry, or record a final failure.  Recording an outcome resolves the
   op; the last op resolved makes the run ready again.

Recovery is the same ``wire`` step applied to a checkpoint read from the
store, except that a step whose outcome is already recorded is resolved from
the record instead of being run again.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import queue
import random
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from .._errors import CorosnapError
from ..stores import Conflict
from ._context import _CURRENT, StepContext
from ._directives import Call, Gather, Sleep
from ._errors import SchedulerError, StepTimeout, UnrecordableError
from ._policy import FunctionOptions
from ._records import (
    RUN_PREFIX,
    SLEPT,
    Op,
    Outcome,
    RunRecord,
    StepRecord,
    Waiting,
    child_run_id,
    decode_run,
    decode_step,
    encode_run,
    encode_step,
    run_key,
    step_key,
)

if TYPE_CHECKING:
    from ._scheduler import Scheduler

log = logging.getLogger("corosnap.scheduler")


@dataclass
class Stats:
    """What one ``run_until_complete`` call did; returned by it."""

    runs_resumed: int = 0  #: unfinished runs found in the store at the start
    runs_done: int = 0
    runs_failed: int = 0
    checkpoints: int = 0
    snapshot_bytes: int = 0  #: sum of the corosnap snapshot sizes written
    record_bytes: int = 0  #: sum of the run record sizes written (snapshot included)
    snapshot_seconds: float = 0.0  #: time spent in corosnap.dumps
    write_seconds: float = 0.0  #: time spent writing run records at checkpoints
    step_write_seconds: float = 0.0  #: time spent writing step records
    steps_recorded: int = 0  #: step outcomes written by this process
    steps_found_recorded: int = 0  #: step outcomes found in the store, not run again
    attempts: int = 0  #: step attempts started
    retries: int = 0
    timeouts: int = 0
    elapsed: float = 0.0
    unresumable: list[str] = field(default_factory=list)  #: runs whose snapshot would not load


@dataclass(eq=False)
class _LiveRun:
    """A run in memory: its last written record, its coroutine, and the outcomes so far."""

    rec: RunRecord
    version: int  # of the run record in the store; 0: not written yet (a new child run)
    coro: Any = None  # loaded from rec.snapshot when first advanced
    pending: set[int] = field(default_factory=set)  # ops of rec.waiting without an outcome
    outcomes: dict[int, Outcome] = field(default_factory=dict)

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


@dataclass(eq=False)
class _Done:
    """Posted by the thread that ran an attempt."""

    attempt: _Attempt
    ok: bool
    value: Any  # the return value, or the exception
    fatal: bool = False  # a BaseException (KeyboardInterrupt, SystemExit): stop the engine


@dataclass
class _Limit:
    running: int = 0
    queued: deque[_Attempt] = field(default_factory=deque)


class Engine:
    """Runs every unfinished run in ``sched.store`` to completion.  See the module docstring."""

    def __init__(self, sched: Scheduler) -> None:
        self.sched = sched
        self.store = sched.store
        self.runs: dict[str, _LiveRun] = {}
        self.ready: deque[_LiveRun] = deque()
        self.timers: list[tuple[float, int, Callable[[], None]]] = []
        self.tiebreak = itertools.count()
        self.events: queue.SimpleQueue[_Done] = queue.SimpleQueue()
        self.in_flight = 0  # attempts started whose _Done has not been handled
        self.limits: dict[Callable[..., Any], _Limit] = {}
        self.pool: ThreadPoolExecutor | None = None
        self.rng = random.Random()
        self.pid = os.getpid()
        self.stats = Stats()

    # -- the loop --------------------------------------------------------------

    def run(self, timeout: float | None = None) -> Stats:
        start = time.monotonic()
        deadline = None if timeout is None else start + timeout
        if self.sched.workers:
            self.pool = ThreadPoolExecutor(self.sched.workers, thread_name_prefix="corosnap-step")
        elif any(o.timeout is not None for o in self.sched._functions.values()):
            log.warning("steps run inline (workers=0): their timeouts are not enforced")
        try:
            self.recover()
            while self.runs:
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(f"runs still unfinished: {', '.join(sorted(self.runs))}")
                self.fire_timers()
                while self.ready:
                    self.advance(self.ready.popleft())
                if not self.runs or not self.wait_for_events(deadline):
                    break
        finally:
            if self.pool is not None:
                # Never wait here for a step that hangs; its late result has nowhere to go.
                self.pool.shutdown(wait=False, cancel_futures=True)
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

    def drop_coroutines(self) -> None:
        """Close the coroutines of the runs still unfinished when the engine stops early.

        The runs are safe in the store; these in-memory copies are garbage.
        Python closes a dropped coroutine anyway, by raising GeneratorExit at
        its ``await``, which runs the workflow's ``finally`` blocks and
        ``__aexit__`` methods in this process (an ``await`` there fails with
        "coroutine ignored GeneratorExit").  Closing them here does the same at
        a known moment and keeps those errors off stderr; one never started
        just closes (and is not reported as "never awaited").
        """
        for run in self.runs.values():
            coro, run.coro = run.coro, None
            if coro is None:
                continue
            try:
                coro.close()
            except Exception as exc:
                log.debug("run %s: closing its dropped coroutine raised %r", run.id, exc)

    def wait_for_events(self, deadline: float | None) -> bool:
        """Block until an attempt finishes or the next timer is due; handle what arrived.

        Returns False when nothing can ever arrive: every remaining run waits
        on a child run that could not be resumed.
        """
        wait: float | None = None
        if self.timers:
            wait = max(0.0, self.timers[0][0] - time.time())
        elif self.in_flight == 0 and self.events.empty():
            if self.stats.unresumable:
                return False  # their parents wait for them; run() reports them
            # Every run waits, yet nothing can wake any of them: a bug, not a state to sit in.
            raise SchedulerError(
                "scheduler stuck: runs wait but no step, timer or child run is in progress: "
                + "; ".join(f"{r.id} waits on {r.rec.waiting}" for r in self.runs.values())
            )
        if deadline is not None:
            left = max(0.0, deadline - time.monotonic())
            wait = left if wait is None else min(wait, left)
        try:
            done = self.events.get(timeout=wait)
        except queue.Empty:
            return True
        while True:
            self.on_attempt_done(done)
            try:
                done = self.events.get_nowait()
            except queue.Empty:
                return True

    def at(self, due: float, action: Callable[[], None]) -> None:
        heapq.heappush(self.timers, (due, next(self.tiebreak), action))

    def fire_timers(self) -> None:
        now = time.time()
        while self.timers and self.timers[0][0] <= now:
            _, _, action = heapq.heappop(self.timers)
            action()

    # -- runs ------------------------------------------------------------------

    def recover(self) -> None:
        """Load every unfinished run from the store and start what each one waits for."""
        found = []
        for key in list(self.store.keys(RUN_PREFIX)):
            raw = self.store.get(key)
            if raw is None:
                continue
            rec = decode_run(key[len(RUN_PREFIX) :], raw.blob)
            if rec.state == "running" and rec.run_id not in self.runs:
                found.append(self.adopt(rec, raw.version))
        self.stats.runs_resumed = len(found)
        if found:
            log.info("resuming %d unfinished run(s) from %r", len(found), self.store)
        for run in found:
            self.wire(run, fresh=False)

    def adopt(self, rec: RunRecord, version: int, coro: Any = None) -> _LiveRun:
        run = _LiveRun(rec, version, coro)
        self.runs[run.id] = run
        return run

    def advance(self, run: _LiveRun) -> None:
        """Resume a ready run until it awaits a directive (checkpoint it) or ends."""
        if self.runs.get(run.id) is not run:
            return  # abandoned meanwhile
        if run.coro is None:
            try:
                run.coro = self.sched._restore(run.rec.snapshot)
            except CorosnapError as exc:
                # Left in the store untouched: Scheduler.status() says
                # "needs-migration" and why; it resumes once a migration (or
                # the old code) is supplied.
                log.error("run %s: its snapshot cannot be resumed, leaving it: %r", run.id, exc)
                self.stats.unresumable.append(run.id)
                del self.runs[run.id]
                return
        value, error = self.answer(run)
        while True:
            try:
                if error is not None:
                    yielded = run.coro.throw(error)
                else:
                    yielded = run.coro.send(value)
            except StopIteration as stop:
                self.finish(run, True, stop.value)
                return
            except Exception as exc:
                self.finish(run, False, exc)
                return
            try:
                waiting, next_seq = self.plan(run, yielded)
                waiting.pickle_calls()
                break
            except (TypeError, UnrecordableError) as exc:
                # Not something we can wait for (or record): raise it at the workflow's await.
                value, error = None, exc
        if self.checkpoint(run, waiting, next_seq):
            self.wire(run, fresh=True)

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
        now = time.time()
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

    def checkpoint(self, run: _LiveRun, waiting: Waiting, next_seq: int) -> bool:
        """Snapshot the run and write it with its new ops; False if the run ended instead."""
        t0 = time.perf_counter()
        try:
            snapshot = self.sched._snapshot(run.coro)
        except CorosnapError as exc:
            log.info("run %s: cannot snapshot the workflow at its await: %s", run.id, exc)
            self.finish(run, False, exc)
            return False
        t1 = time.perf_counter()
        rec = replace(
            run.rec,
            snapshot=snapshot,
            waiting=waiting,
            next_seq=next_seq,
            checkpoints=run.rec.checkpoints + 1,
            updated=time.time(),
            pid=self.pid,
        )
        blob = encode_run(rec)
        if not self.write_run(run, rec, blob):
            return False
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
                    "pid": self.pid,
                }},
            )  # fmt: skip
        return True

    def write_run(self, run: _LiveRun, rec: RunRecord, blob: bytes) -> bool:
        """Compare-and-set the run record; on a conflict another worker owns the run: let go."""
        try:
            run.version = self.store.put(run_key(run.id), blob, expected_version=run.version)
        except Conflict as exc:
            log.warning("run %s was advanced by another worker (%s); leaving it", run.id, exc)
            self.runs.pop(run.id, None)
            return False
        run.rec = rec
        return True

    def wire(self, run: _LiveRun, *, fresh: bool) -> None:
        """Start what the run's checkpoint waits for (``fresh``: just written, nothing recorded)."""
        waiting = run.rec.waiting
        run.outcomes = {}
        if waiting is None or not waiting.ops:
            self.ready.append(run)
            return
        run.pending = {op.seq for op in waiting.ops}
        now = time.time()
        for op in waiting.ops:
            if op.kind == "sleep":
                assert op.until is not None
                if op.until <= now:
                    self.resolve(run, op.seq, SLEPT)
                else:
                    self.at(op.until, self._wake(run, op.seq))
            elif op.kind == "child":
                self.start_child(run, op)
            else:
                key = step_key(run.id, op.seq)
                raw = None if fresh else self.store.get(key)
                if raw is not None:
                    self.stats.steps_found_recorded += 1
                    self.resolve(run, op.seq, decode_step(key, raw.blob).outcome)
                else:
                    assert op.call is not None
                    options = self.sched._functions[op.call.fn]
                    self.start_attempt(_Attempt(run, op, options, 1, time.time()))

    def _wake(self, run: _LiveRun, seq: int) -> Callable[[], None]:
        return lambda: self.resolve(run, seq, SLEPT)

    def resolve(self, run: _LiveRun, seq: int, outcome: Outcome) -> None:
        """Give op ``seq`` of ``run`` its outcome; the last one makes the run ready."""
        if seq not in run.pending or self.runs.get(run.id) is not run:
            return
        run.pending.discard(seq)
        run.outcomes[seq] = outcome
        if not run.pending:
            self.ready.append(run)

    def finish(self, run: _LiveRun, ok: bool, value: Any) -> None:
        """Write the run's end (result or exception); resolve the parent's op if it is a child."""
        try:
            outcome = Outcome.success(value) if ok else Outcome.failure(value)
        except UnrecordableError as exc:
            ok, outcome = False, Outcome.failure(exc)
        rec = replace(
            run.rec,
            state="done" if ok else "failed",
            snapshot=None,
            waiting=None,
            outcome=outcome,
            updated=time.time(),
            pid=self.pid,
        )
        if not self.write_run(run, rec, encode_run(rec)):
            return
        del self.runs[run.id]
        run.coro = None
        if ok:
            self.stats.runs_done += 1
            log.info("run %s (%s) done after %d checkpoints", run.id, rec.workflow, rec.checkpoints)
        else:
            self.stats.runs_failed += 1
            log.info("run %s (%s) failed: %r", run.id, rec.workflow, outcome.load())
        if rec.parent is not None:
            parent = self.runs.get(rec.parent)
            if parent is not None:
                self.resolve(parent, int(run.id.rsplit("/", 1)[1]), outcome)

    def start_child(self, parent: _LiveRun, op: Op) -> None:
        """Start (or find, after a crash) the child run of ``op``; resolve ``op`` if it ended."""
        child_id = child_run_id(parent.id, op.seq)
        if child_id in self.runs:
            return  # running here already; it resolves our op when it ends
        raw = self.store.get(run_key(child_id))
        if raw is None:
            # The child's first checkpoint creates its record (compare-and-set on
            # "must not exist"); a crash before that brings the parent back here.
            assert op.call is not None
            fn = op.call.fn
            try:
                coro = fn(*op.call.args, **(op.call.kwargs or {}))
            except Exception as exc:  # arguments that do not fit the signature
                self.resolve(parent, op.seq, Outcome.failure(exc))
                return
            now = time.time()
            rec = RunRecord(
                child_id, self.sched._workflows[fn], parent=parent.id,
                created=now, updated=now, pid=self.pid,
            )  # fmt: skip
            log.info("run %s started child run %s: %s", parent.id, child_id, op.call.describe())
            self.ready.append(self.adopt(rec, 0, coro))
            return
        assert raw is not None
        child = decode_run(child_id, raw.blob)
        if child.state == "running":
            self.wire(self.adopt(child, raw.version), fresh=False)
        else:
            assert child.outcome is not None
            self.resolve(parent, op.seq, child.outcome)

    # -- steps -----------------------------------------------------------------

    def start_attempt(self, attempt: _Attempt) -> None:
        """Run one attempt now, or queue it behind its function's concurrency limit."""
        run, options = attempt.run, attempt.options
        if attempt.op.seq not in run.pending or self.runs.get(run.id) is not run:
            return  # the op was resolved, or the run let go, while this attempt waited
        limit = self.limits.setdefault(options.fn, _Limit())
        if options.concurrency is not None and limit.running >= options.concurrency:
            limit.queued.append(attempt)
            return
        limit.running += 1
        self.in_flight += 1
        self.stats.attempts += 1
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "run %s step %s: attempt %d/%d started",
                attempt.run.id, attempt.op.describe(), attempt.number, options.max_attempts,
            )  # fmt: skip
        if self.pool is None:
            self.execute(attempt)  # inline: the outcome is queued and handled by the loop
            return
        if options.timeout is not None:
            self.at(time.time() + options.timeout, lambda: self.on_timeout(attempt))
        self.pool.submit(self.execute, attempt)

    def execute(self, attempt: _Attempt) -> None:
        """Call the step function once, in whatever thread this is; post what happened."""
        call = attempt.op.call
        assert call is not None
        ctx = StepContext(attempt.run.id, attempt.op.seq, attempt.number, attempt.options.name)
        token = _CURRENT.set(ctx)
        try:
            value = call.fn(*call.args, **(call.kwargs or {}))
        except Exception as exc:
            done = _Done(attempt, False, exc)
        except BaseException as exc:
            if self.pool is None:
                raise
            done = _Done(attempt, False, exc, fatal=True)
        else:
            done = _Done(attempt, True, value)
        finally:
            _CURRENT.reset(token)
        self.events.put(done)

    def on_attempt_done(self, done: _Done) -> None:
        attempt = done.attempt
        self.in_flight -= 1
        limit = self.limits[attempt.options.fn]
        limit.running -= 1
        if limit.queued:
            self.start_attempt(limit.queued.popleft())
        if done.fatal:
            raise done.value
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
        self.stats.timeouts += 1
        timeout = attempt.options.timeout
        self.attempt_failed(attempt, StepTimeout(
            f"{attempt.options.name} attempt {attempt.number} took more than {timeout:g} s"
        ))  # fmt: skip

    def attempt_failed(self, attempt: _Attempt, exc: BaseException) -> None:
        """Retry after a backoff pause, or record the failure for the workflow to see."""
        run, options, n = attempt.run, attempt.options, attempt.number
        if attempt.op.seq not in run.pending or self.runs.get(run.id) is not run:
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
            self.at(time.time() + delay, lambda: self.start_attempt(retry))
            return
        why = "permanent error" if options.is_permanent(exc) else f"{n} attempt(s)"
        log.info(
            "run %s step %s failed after %s: %s: %s",
            run.id, attempt.op.describe(), why, type(exc).__name__, exc,
        )  # fmt: skip
        self.record(attempt, Outcome.failure(exc))

    def record(self, attempt: _Attempt, outcome: Outcome) -> None:
        """Write the step's final outcome (first writer wins), then resolve its op."""
        run, op = attempt.run, attempt.op
        if op.seq not in run.pending or self.runs.get(run.id) is not run:
            return
        key = step_key(run.id, op.seq)
        rec = StepRecord(
            outcome, attempt.options.name, attempt.number, self.pid,
            attempt.first_started, time.time(),
        )  # fmt: skip
        t0 = time.perf_counter()
        try:
            self.store.put(key, encode_step(rec), expected_version=0)
        except Conflict:
            # Another worker recorded this step first; its outcome is the one that counts.
            raw = self.store.get(key)
            assert raw is not None
            outcome = decode_step(key, raw.blob).outcome
            log.warning("run %s step %s was already recorded elsewhere; using that outcome",
                        run.id, op.describe())  # fmt: skip
        else:
            self.stats.steps_recorded += 1
            self.stats.step_write_seconds += time.perf_counter() - t0
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "run %s step %s: %s after %d attempt(s) in %.3f s",
                    run.id, op.describe(), "done" if outcome.ok else "failed", attempt.number,
                    rec.finished - rec.started,
                    extra={"scheduler_event": {
                        "event": "step", "run_id": run.id, "seq": op.seq, "ok": outcome.ok,
                        "attempts": attempt.number, "pid": self.pid,
                    }},
                )  # fmt: skip
        self.resolve(run, op.seq, outcome)
