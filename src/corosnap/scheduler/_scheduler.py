"""The public face of the scheduler: registration, starting runs, asking about them.

What lives here: :class:`Scheduler`, which holds the store, the registry of
step functions and workflows, and the settings; and :class:`RunStatus`.  The
loop that drives runs lives in ``_engine.py``; a ``Scheduler`` creates one
engine (one *worker*, with its own lease owner id) per
:meth:`Scheduler.run_until_complete` or :meth:`Scheduler.serve` call.  The
snapshot calls (``corosnap.dumps`` / ``corosnap.loads``) are made here, in
:meth:`Scheduler._snapshot` and :meth:`Scheduler._restore` only.

Registration returns the function unchanged.  A step stays an ordinary
function that tests can call directly; a workflow stays an ordinary ``async
def`` (or generator function).  The registry maps the function object to its
options; because corosnap and pickle store module-level functions by module
and qualified name, the directive restored from a snapshot in another process
holds the very same function object, and the lookup works there too.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
import os
import secrets
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, TypeVar, overload

import corosnap

from ..stores import Conflict, Store
from ._engine import Engine, Stats
from ._errors import RunNotFinished, RunNotFound, SchedulerError
from ._policy import ExceptionTypes, FunctionOptions
from ._records import (
    LIVE_PREFIX,
    RUN_PREFIX,
    STEP_PREFIX,
    STEPLOG_PREFIX,
    RunRecord,
    State,
    decode_chunk,
    decode_run,
    decode_step,
    encode_run,
    marker_key,
    parse_marker_key,
    run_key,
    steplog_key,
    validate_run_id,
)

F = TypeVar("F", bound=Callable[..., Any])

log = logging.getLogger("corosnap.scheduler")


def _name(fn: Callable[..., Any]) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


@dataclass(frozen=True)
class StepInfo:
    """One recorded step of a run: what ran, how it ended, and where (``Scheduler.steps``)."""

    seq: int
    function: str
    ok: bool
    attempts: int  #: attempts made by the worker that recorded it
    pid: int  #: the process that recorded it
    started: float  #: wall-clock time of its first attempt in that worker
    finished: float
    worker: str = ""  #: the id of the worker that recorded it (``host:pid:token``)


@dataclass(frozen=True)
class RunStatus:
    """A run as the store has it now.  ``waiting_on`` describes its pending ops, if running."""

    run_id: str
    workflow: str
    state: State
    checkpoints: int
    waiting_on: tuple[str, ...]
    parent: str | None
    created: float
    updated: float
    owner: str | None = None  #: the worker holding the run's lease, if any
    lease_until: float = 0.0  #: wall-clock time that lease ends unless renewed


def _positive(name: str, value: object, *, zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ValueError(f"{name} must be a number, not {value!r}")
    if value < 0 or (value == 0 and not zero) or math.isinf(value):
        raise ValueError(f"{name} must be a finite number {'>=' if zero else '>'} 0, not {value!r}")
    return float(value)


class Scheduler:
    """Durable workflows on a :class:`~corosnap.stores.Store`.  See docs/scheduler.md.

    ``workers``: threads that run step attempts (``0``: run each one inline
    in the loop; timeouts are then not enforced).  ``executor``: run them on
    this ``concurrent.futures.Executor`` instead (a process pool, a Dask
    client's ``get_executor()``, ...); the scheduler never shuts it down.

    Any number of processes may run :meth:`run_until_complete` or
    :meth:`serve` on one store at once (docs/scaling.md): each run is owned
    through a lease of ``lease`` seconds, renewed while held; a worker that
    dies loses its runs when their leases end, ``clock_skew`` seconds later
    (the largest difference between two workers' clocks), and another worker
    resumes them from their last checkpoint.  Workers look for runs every
    ``poll`` seconds and hold at most ``max_runs`` top-level runs at once (a
    run's child runs come along).  ``grace``: seconds a stopping worker waits
    for its step attempts before letting go of their runs.

    ``store`` may be None for a scheduler that only registers functions and
    gets its store later (``sched.store = ...``), as the command-line worker
    does with ``--store``.  Use a scheduler from one thread at a time.
    """

    def __init__(
        self,
        store: Store | None = None,
        *,
        workers: int = 8,
        executor: Executor | None = None,
        lease: float = 30.0,
        clock_skew: float = 1.0,
        poll: float = 1.0,
        max_runs: int = 100,
        grace: float = 30.0,
    ) -> None:
        self.store = store
        self._functions: dict[Callable[..., Any], FunctionOptions] = {}
        self._workflows: dict[Callable[..., Any], str] = {}
        self._serving: Engine | None = None
        self.configure(
            workers=workers, executor=executor, lease=lease, clock_skew=clock_skew, poll=poll,
            max_runs=max_runs, grace=grace,
        )  # fmt: skip

    def configure(self, **settings: Any) -> None:
        """Change settings (the keyword arguments of the constructor but ``store``), checked.

        They apply to the next :meth:`run_until_complete` or :meth:`serve`.
        """
        unknown = set(settings) - {
            "workers", "executor", "lease", "clock_skew", "poll", "max_runs", "grace",
        }  # fmt: skip
        if unknown:
            raise TypeError(f"unknown scheduler settings: {', '.join(sorted(unknown))}")
        if "workers" in settings:
            workers = settings["workers"]
            if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
                raise ValueError(f"workers must be an int >= 0, not {workers!r}")
            self.workers = workers
        if "executor" in settings:
            executor = settings["executor"]
            if executor is not None and not isinstance(executor, Executor):
                raise TypeError(
                    "executor must be a concurrent.futures.Executor, "
                    f"not {type(executor).__name__}"
                )
            self.executor = executor
        if "max_runs" in settings:
            max_runs = settings["max_runs"]
            if isinstance(max_runs, bool) or not isinstance(max_runs, int) or max_runs < 1:
                raise ValueError(f"max_runs must be an int >= 1, not {max_runs!r}")
            self.max_runs = max_runs
        if "lease" in settings:
            self.lease = _positive("lease", settings["lease"])
        if "clock_skew" in settings:
            self.clock_skew = _positive("clock_skew", settings["clock_skew"], zero=True)
        if "poll" in settings:
            self.poll = _positive("poll", settings["poll"])
        if "grace" in settings:
            self.grace = _positive("grace", settings["grace"], zero=True)

    def __repr__(self) -> str:
        where = f"executor={self.executor!r}" if self.executor else f"workers={self.workers}"
        return f"Scheduler({self.store!r}, {where})"

    @property
    def _store(self) -> Store:
        if self.store is None:
            raise SchedulerError("this scheduler has no store yet: set sched.store, or pass one")
        return self.store

    # -- the two snapshot calls --------------------------------------------------

    def _snapshot(self, coro: Any) -> bytes:
        """The snapshot of a suspended (or not yet started) workflow coroutine."""
        return corosnap.dumps(coro)

    def _restore(self, snapshot: bytes | None) -> Any:
        """The workflow coroutine of a run record: the one place snapshots are loaded."""
        return corosnap.loads(snapshot or b"")

    # -- registration ------------------------------------------------------------

    @overload
    def function(self, fn: F, /) -> F: ...
    @overload
    def function(
        self,
        /,
        *,
        retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 60.0,
        jitter: bool = True,
        timeout: float | None = None,
        concurrency: int | None = None,
        permanent: ExceptionTypes = (),
        transient: ExceptionTypes | None = None,
        name: str | None = None,
    ) -> Callable[[F], F]: ...
    def function(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 60.0,
        jitter: bool = True,
        timeout: float | None = None,
        concurrency: int | None = None,
        permanent: ExceptionTypes = (),
        transient: ExceptionTypes | None = None,
        name: str | None = None,
    ) -> Any:
        """Register a step: an ordinary function that workflows run with ``await call(fn, ...)``.

        ``retries``: further attempts after a transient failure, ``backoff``
        seconds apart, doubling up to ``max_backoff``, with jitter.
        ``permanent`` / ``transient``: exception classes that are never / the
        only ones to be retried (a :class:`PermanentError` is never retried).
        ``timeout``: seconds one attempt may take before it counts as a
        transient :class:`StepTimeout` (the thread is not killed; its late
        result is discarded).  ``concurrency``: at most this many attempts of
        this function run at once.  Returns the function unchanged.
        """

        def register(fn: F) -> F:
            special = inspect.iscoroutinefunction(fn) or inspect.isgeneratorfunction(fn)
            if not callable(fn) or special:
                raise TypeError(
                    f"@sched.function registers ordinary functions; {fn!r} is not one "
                    "(register coroutine and generator functions with @sched.workflow)"
                )
            self._functions[fn] = FunctionOptions(
                fn, name or _name(fn), retries, backoff, max_backoff, jitter, timeout,
                concurrency, tuple(permanent), None if transient is None else tuple(transient),
            )  # fmt: skip
            return fn

        return register if fn is None else register(fn)

    def workflow(self, fn: F, /) -> F:
        """Register a workflow: an ``async def`` (or generator function) that awaits directives.

        Returns the function unchanged.  Start runs of it with :meth:`start`,
        or from another workflow with ``await call(fn, ...)`` (a child run).
        """
        if not (inspect.iscoroutinefunction(fn) or inspect.isgeneratorfunction(fn)):
            raise TypeError(
                f"@sched.workflow registers async def or generator functions, not {fn!r}"
            )
        self._workflows[fn] = _name(fn)
        return fn

    # -- runs ----------------------------------------------------------------------

    def start(
        self, workflow: Callable[..., Any], /, *args: Any, run_id: str | None = None, **kwargs: Any
    ) -> str:
        """Record a new run of ``workflow(*args, **kwargs)`` and return its id.

        Nothing runs until a worker (:meth:`run_until_complete`,
        :meth:`serve`, in this process or any other) claims it.  With
        ``run_id`` the start is idempotent: if that run exists already (in any
        state), nothing happens and the id is returned, so a program can start
        its runs unconditionally every time it boots.  Without it a random id
        is chosen.

        Three writes: the run's ``live/`` marker (the index workers list),
        the run record (compare-and-set on "must not exist"), and the marker
        again (compare-and-set), so a worker that cleans up a marker it
        thinks was left by a failed start can never leave this run unlisted.
        """
        if workflow not in self._workflows:
            raise TypeError(f"{workflow!r} is not registered with @sched.workflow")
        store = self._store
        chosen = run_id
        if chosen is not None:
            validate_run_id(chosen)
            raw = store.get(run_key(chosen))
            if raw is not None:
                self._ensure_marker(decode_run(chosen, raw.blob))
                return chosen
        coro = workflow(*args, **kwargs)
        try:
            snapshot = self._snapshot(coro)
        finally:
            coro.close()  # the run lives in the store; this unstarted copy is dropped
        while True:
            rid = chosen or secrets.token_hex(6)
            now = time.time()
            marker = secrets.token_hex(6)
            rec = RunRecord(
                rid, self._workflows[workflow], snapshot=snapshot, created=now, updated=now,
                pid=os.getpid(), marker=marker,
            )  # fmt: skip
            mkey = marker_key(rid, marker)
            stamp = repr(now).encode()
            version = store.put(mkey, stamp, expected_version=0)
            try:
                store.put(run_key(rid), encode_run(rec), expected_version=0)
            except Conflict:
                with contextlib.suppress(KeyError):
                    store.delete(mkey)
                if chosen is not None:
                    return chosen  # started by someone else meanwhile
                continue  # a random id collided: draw another
            try:
                store.put(mkey, stamp, expected_version=version)
            except Conflict:
                store.put(mkey, stamp, expected_version=0)  # a cleaner deleted it meanwhile
            log.info("run %s started: %s", rid, self._workflows[workflow])
            return rid

    def _ensure_marker(self, rec: RunRecord) -> None:
        """A running top-level run must be listed: put its marker back if it is missing.

        Only a start that failed between its writes (a lost connection) and
        then waited long enough for its marker to be cleaned up can leave a
        run without one; starting it again with its ``run_id`` repairs that.
        """
        if rec.state != "running" or rec.parent is not None or rec.marker is None:
            return
        key = marker_key(rec.run_id, rec.marker)
        if self._store.get(key) is None:
            with contextlib.suppress(Conflict):
                self._store.put(key, repr(time.time()).encode(), expected_version=0)

    def run_until_complete(self, *, timeout: float | None = None) -> Stats:
        """Drive every unfinished run in the store to its end; return what was done.

        Runs started by earlier processes that died are resumed from their
        last checkpoint (at once if that process ran on this machine, else
        when its lease ends).  Runs held by other live workers are left to
        them, and waited for: this returns when no unfinished run is left.
        Raises TimeoutError after ``timeout`` seconds (the runs it held are
        written back with no owner, for the next worker), and SchedulerError
        naming the runs whose snapshot could not be restored (e.g. their code
        changed), after finishing all the others.
        """
        return Engine(self, until_idle=True).loop(timeout)

    def serve(
        self,
        *,
        stop: threading.Event | None = None,
        handle_signals: bool = False,
        timeout: float | None = None,
    ) -> Stats:
        """Work as a long-running worker: claim runs as they appear and drive them, until stopped.

        Stops gracefully when ``stop`` is set, when :meth:`stop` is called
        (from any thread or a signal handler), or, with ``handle_signals``
        (main thread only), on SIGTERM or SIGINT: it claims nothing more,
        starts no new attempt, waits up to ``grace`` seconds for the attempts
        in flight, checkpoints the runs they made ready, and writes every run
        it still holds back with no owner, so that other workers take them
        over at once.  Returns what it did.  ``timeout`` (seconds) is for
        tests: a TimeoutError, as for :meth:`run_until_complete`.
        """
        engine = Engine(self, until_idle=False)
        previous: dict[signal.Signals, Any] = {}
        if handle_signals:
            if threading.current_thread() is not threading.main_thread():
                raise SchedulerError("serve(handle_signals=True) must run in the main thread")

            def on_signal(signum: int, frame: Any) -> None:
                log.info("signal %d: stopping gracefully (grace %g s)", signum, self.grace)
                engine.request_stop(self.grace)

            for sig in (signal.SIGTERM, signal.SIGINT):
                previous[sig] = signal.signal(sig, on_signal)
        self._serving = engine
        try:
            return engine.loop(timeout, stop=stop)
        finally:
            self._serving = None
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def stop(self) -> None:
        """Ask the worker running :meth:`serve` on this scheduler to stop gracefully."""
        engine = self._serving
        if engine is not None:
            engine.request_stop(self.grace)

    def _record(self, run_id: str) -> RunRecord:
        raw = self._store.get(run_key(validate_run_id_or_child(run_id)))
        if raw is None:
            raise RunNotFound(run_id)
        return decode_run(run_id, raw.blob)

    def status(self, run_id: str) -> RunStatus:
        """Where run ``run_id`` stands, read from the store (so from any process)."""
        rec = self._record(run_id)
        waiting = () if rec.waiting is None else tuple(op.describe() for op in rec.waiting.ops)
        return RunStatus(
            rec.run_id, rec.workflow, rec.state, rec.checkpoints, waiting,
            rec.parent, rec.created, rec.updated, rec.owner, rec.lease,
        )  # fmt: skip

    def result(self, run_id: str) -> Any:
        """The run's return value, or its exception raised here; RunNotFinished if still running."""
        rec = self._record(run_id)
        if rec.state == "running" or rec.outcome is None:
            raise RunNotFinished(f"run {run_id!r} has not finished")
        value = rec.outcome.load()
        if rec.outcome.ok:
            return value
        raise value

    def steps(self, run_id: str) -> list[StepInfo]:
        """The recorded steps of run ``run_id`` (not of its child runs), in order."""
        store = self._store
        rec = self._record(run_id)
        entries = []
        for chunk in range(rec.chunks):
            key = steplog_key(run_id, chunk)
            raw = store.get(key)
            if raw is None:
                raise SchedulerError(f"run {run_id!r}: step history chunk {key!r} is missing")
            entries.extend(decode_chunk(key, raw.blob))
        entries.extend(rec.history)
        found = [
            StepInfo(h.seq, h.fn, h.ok, h.attempts, _pid_of(h.worker), h.started, h.finished,
                     h.worker)
            for h in entries
        ]  # fmt: skip
        # Steps recorded by the first scheduler format, one record each.
        prefix = f"{STEP_PREFIX}{run_id}/"
        for key in list(store.keys(prefix)):
            seq = key[len(prefix) :]
            raw = store.get(key)
            if not seq.isdigit() or raw is None:
                continue  # a child run's step, or deleted meanwhile
            old = decode_step(key, raw.blob)
            found.append(StepInfo(
                int(seq), old.fn, old.outcome.ok, old.attempts, old.pid, old.started,
                old.finished, f"pid {old.pid}",
            ))  # fmt: skip
        return sorted(found, key=lambda s: s.seq)

    def forget(self, run_id: str) -> None:
        """Delete a finished run: its record, its child runs and all their step history.

        Finished runs stay in the store until forgotten.  They cost workers
        nothing (workers list only unfinished runs), only space and
        ``run_ids()`` time.  RunNotFinished if the run is still running.
        """
        store = self._store
        if self._record(run_id).state == "running":
            raise RunNotFinished(f"run {run_id!r} is still running; it cannot be forgotten")
        # Run ids may contain "@", so a marker prefix can match another run's: parse.
        markers = [
            k for k in store.keys(f"{LIVE_PREFIX}{run_id}@")
            if (parsed := parse_marker_key(k)) is not None and parsed[0] == run_id
        ]  # fmt: skip
        prefixes = [f"{p}{run_id}/" for p in (STEPLOG_PREFIX, STEP_PREFIX, RUN_PREFIX)]
        for key in markers + [k for p in prefixes for k in store.keys(p)] + [run_key(run_id)]:
            try:
                store.delete(key)
            except KeyError:
                pass  # deleted meanwhile

    def run_ids(self, *, state: State | None = None) -> Iterator[str]:
        """The ids of the runs in the store (child runs included), optionally only in ``state``."""
        store = self._store
        for key in list(store.keys(RUN_PREFIX)):
            run_id = key[len(RUN_PREFIX) :]
            if state is None:
                yield run_id
                continue
            raw = store.get(key)
            if raw is not None and decode_run(run_id, raw.blob).state == state:
                yield run_id


def validate_run_id_or_child(run_id: str) -> str:
    """A user run id, or a child id ``<run id>/<seq>/<seq>...``."""
    head, *seqs = run_id.split("/") if isinstance(run_id, str) else (run_id,)
    validate_run_id(head)
    if not all(s.isdigit() for s in seqs):
        raise ValueError(f"not a run id: {run_id!r}")
    return run_id


def _pid_of(worker: str) -> int:
    """The process id in a worker id ``host:pid:token`` (0 if it has none)."""
    parts = worker.split(":")
    return int(parts[-2]) if len(parts) >= 3 and parts[-2].isdigit() else 0
