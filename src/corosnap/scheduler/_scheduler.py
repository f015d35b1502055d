"""The public face of the scheduler: registration, starting runs, asking about them.

What lives here: :class:`Scheduler`, which holds the store, the registry of
step functions and workflows, and the settings; and :class:`RunStatus`.  The
loop that drives runs lives in ``_engine.py``; a ``Scheduler`` only creates
one per :meth:`Scheduler.run_until_complete` call.

Registration returns the function unchanged.  A step stays an ordinary
function that tests can call directly; a workflow stays an ordinary ``async
def`` (or generator function).  The registry maps the function object to its
options; because corosnap and pickle store module-level functions by module
and qualified name, the directive restored from a snapshot in another process
holds the very same function object, and the lookup works there too.
"""

from __future__ import annotations

import inspect
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, overload

import corosnap

from ..migrate import Migrations, check
from ..stores import Conflict, Store
from ._engine import Engine, Stats
from ._errors import RunNotFinished, RunNotFound
from ._manifests import ManifestRecorder, StoreManifests
from ._policy import ExceptionTypes, FunctionOptions
from ._records import (
    RUN_PREFIX,
    STEP_PREFIX,
    RunRecord,
    State,
    decode_run,
    decode_step,
    encode_run,
    run_key,
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
    attempts: int  #: attempts made by the process that recorded it
    pid: int  #: the process that recorded it
    started: float  #: wall-clock time of its first attempt in that process
    finished: float


@dataclass(frozen=True)
class RunStatus:
    """A run as the store has it now.  ``waiting_on`` describes its pending ops, if running."""

    run_id: str
    workflow: str
    state: State | Literal["needs-migration"]
    """``running``, ``done``, ``failed``, or ``needs-migration``: the run is
    unfinished and its snapshot cannot resume on the current code (its
    workflow changed and no correspondence or explicit migration applies);
    ``problem`` says why.  The run stays in the store untouched and resumes
    once a migration (or the old code) is supplied."""
    checkpoints: int
    waiting_on: tuple[str, ...]
    parent: str | None
    created: float
    updated: float
    problem: str | None = None


class Scheduler:
    """Durable workflows on a :class:`~corosnap.stores.Store`.  See docs/scheduler.md.

    ``workers``: threads that run step functions (``0``: run each step inline
    in the loop, one at a time; timeouts are then not enforced).  Only one
    process should run :meth:`run_until_complete` on a store at a time; a
    second one is detected by the compare-and-set on every run record and
    backs off, run by run.  Use a scheduler from one thread at a time.
    """

    def __init__(self, store: Store, *, workers: int = 8, migrate: bool = True,
                 migrations: Migrations | None = None) -> None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
            raise ValueError(f"workers must be an int >= 0, not {workers!r}")
        if migrations is not None and not isinstance(migrations, Migrations):
            raise TypeError(f"migrations= takes a corosnap.migrate.Migrations, not "
                            f"{type(migrations).__name__}")
        self.store = store
        self.workers = workers
        # Deploys: runs suspended on an older version of their workflow are
        # migrated on resume (docs/evolution.md).  The store keeps the
        # description of every version the scheduler checkpoints.
        self.migrate = migrate
        self.migrations = migrations
        self._manifests = ManifestRecorder(store)
        self._functions: dict[Callable[..., Any], FunctionOptions] = {}
        self._workflows: dict[Callable[..., Any], str] = {}

    def __repr__(self) -> str:
        return f"Scheduler({self.store!r}, workers={self.workers})"

    # -- the two snapshot calls --------------------------------------------------

    def _snapshot(self, coro: Any) -> bytes:
        """The snapshot of a suspended (or not yet started) workflow coroutine;
        the first time a version of its code is seen, its manifest is kept in
        the store, so the run can migrate after a deploy."""
        self._manifests.remember(coro)
        return corosnap.dumps(coro)

    def _restore(self, snapshot: bytes | None) -> Any:
        """The workflow coroutine of a run record: the one place snapshots are loaded."""
        if not self.migrate:
            return corosnap.loads(snapshot or b"")
        return corosnap.loads(snapshot or b"", migrate=True,
                              manifests=StoreManifests(self.store),
                              migrations=self.migrations)

    def _stranded(self, snapshot: bytes | None) -> str | None:
        """Why an unfinished run's snapshot cannot resume on the current code, or None."""
        verdict = check(snapshot or b"", manifests=StoreManifests(self.store),
                        migrations=self.migrations)
        if verdict.status == "resumes":
            return None
        if verdict.status == "migrates":
            return None if self.migrate else (
                "its workflow changed; it would migrate, but this scheduler was made with "
                "migrate=False")
        # A damaged snapshot is not a deploy problem: the run stays "running".
        return verdict.reason if verdict.code_changed else None

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

        Nothing runs until :meth:`run_until_complete`.  With ``run_id`` the
        start is idempotent: if that run exists already (in any state), nothing
        happens and the id is returned, so a program can start its runs
        unconditionally every time it boots.  Without it a random id is chosen.
        """
        if workflow not in self._workflows:
            raise TypeError(f"{workflow!r} is not registered with @sched.workflow")
        chosen = run_id
        if chosen is not None:
            validate_run_id(chosen)
            if self.store.get(run_key(chosen)) is not None:
                return chosen
        coro = workflow(*args, **kwargs)
        try:
            while True:
                rid = chosen or secrets.token_hex(6)
                rec = self._new_run_record(rid, workflow, coro)
                try:
                    self.store.put(run_key(rid), encode_run(rec), expected_version=0)
                except Conflict:
                    if chosen is not None:
                        return chosen  # started by someone else meanwhile
                    continue  # a random id collided: draw another
                log.info("run %s started: %s", rid, self._workflows[workflow])
                return rid
        finally:
            coro.close()  # the run lives in the store; this unstarted copy is dropped

    def _new_run_record(
        self, run_id: str, workflow: Callable[..., Any], coro: Any, parent: str | None = None
    ) -> RunRecord:
        now = time.time()
        return RunRecord(
            run_id,
            self._workflows[workflow],
            snapshot=self._snapshot(coro),
            parent=parent,
            created=now,
            updated=now,
            pid=os.getpid(),
        )

    def run_until_complete(self, *, timeout: float | None = None) -> Stats:
        """Drive every unfinished run in the store to its end; return what was done.

        Runs started by earlier processes that died are resumed from their
        last checkpoint.  Raises TimeoutError after ``timeout`` seconds (the
        runs stay in the store, to be resumed by the next call), and
        SchedulerError naming the runs whose snapshot could not be restored
        (e.g. their code changed), after finishing all the others.
        """
        return Engine(self).run(timeout)

    def _record(self, run_id: str) -> RunRecord:
        raw = self.store.get(run_key(validate_run_id_or_child(run_id)))
        if raw is None:
            raise RunNotFound(run_id)
        return decode_run(run_id, raw.blob)

    def status(self, run_id: str) -> RunStatus:
        """Where run ``run_id`` stands, read from the store (so from any process).

        An unfinished run whose snapshot cannot resume on the current code is
        ``needs-migration`` (checked without resuming it, like ``corosnap
        check``), with the reason in ``problem``.
        """
        rec = self._record(run_id)
        waiting = () if rec.waiting is None else tuple(op.describe() for op in rec.waiting.ops)
        state: Any = rec.state
        problem = None
        if rec.state == "running":
            problem = self._stranded(rec.snapshot)
            if problem is not None:
                state = "needs-migration"
        return RunStatus(
            rec.run_id, rec.workflow, state, rec.checkpoints, waiting,
            rec.parent, rec.created, rec.updated, problem,
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
        prefix = f"{STEP_PREFIX}{validate_run_id_or_child(run_id)}/"
        found = []
        for key in list(self.store.keys(prefix)):
            seq = key[len(prefix) :]
            raw = self.store.get(key)
            if not seq.isdigit() or raw is None:
                continue  # a child run's step, or deleted meanwhile
            rec = decode_step(key, raw.blob)
            found.append(StepInfo(
                int(seq), rec.fn, rec.outcome.ok, rec.attempts, rec.pid, rec.started, rec.finished
            ))  # fmt: skip
        return sorted(found, key=lambda s: s.seq)

    def forget(self, run_id: str) -> None:
        """Delete a finished run: its record, its child runs and all their step records.

        Finished runs stay in the store until forgotten (``run_until_complete``
        reads every run record when it starts, so a store that only grows
        makes every start slower).  RunNotFinished if the run is still running.
        """
        if self._record(run_id).state == "running":
            raise RunNotFinished(f"run {run_id!r} is still running; it cannot be forgotten")
        prefixes = (f"{STEP_PREFIX}{run_id}/", f"{RUN_PREFIX}{run_id}/")
        for key in [k for p in prefixes for k in self.store.keys(p)] + [run_key(run_id)]:
            try:
                self.store.delete(key)
            except KeyError:
                pass  # deleted meanwhile

    def run_ids(self, *, state: State | Literal["needs-migration"] | None = None
                ) -> Iterator[str]:
        """The ids of the runs in the store (child runs included), optionally only in
        ``state`` (``needs-migration``: the unfinished runs that cannot resume on
        the current code, see :meth:`status`)."""
        for key in list(self.store.keys(RUN_PREFIX)):
            run_id = key[len(RUN_PREFIX) :]
            if state is None:
                yield run_id
                continue
            raw = self.store.get(key)
            if raw is None:
                continue
            rec = decode_run(run_id, raw.blob)
            if state == "needs-migration":
                if rec.state == "running" and self._stranded(rec.snapshot) is not None:
                    yield run_id
            elif rec.state == state:
                yield run_id


def validate_run_id_or_child(run_id: str) -> str:
    """A user run id, or a child id ``<run id>/<seq>/<seq>...``."""
    head, *seqs = run_id.split("/") if isinstance(run_id, str) else (run_id,)
    validate_run_id(head)
    if not all(s.isdigit() for s in seqs):
        raise ValueError(f"not a run id: {run_id!r}")
    return run_id
