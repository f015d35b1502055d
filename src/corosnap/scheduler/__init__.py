"""Durable workflows: a small reference scheduler built on corosnap snapshots and stores.

A *workflow* is an ordinary ``async def`` (or generator function) that awaits
*directives*: ``call(step, ...)`` runs a registered function, ``sleep(s)`` is
a durable timer, ``gather(...)`` runs several calls at once.  At every await
the scheduler writes the workflow's corosnap snapshot to a store *before*
acting on the directive, and records every step's outcome, so a process killed
at any instant can be restarted and every run finishes with the same result::

    from corosnap.scheduler import Scheduler, call, gather, sleep
    from corosnap.stores import SQLiteStore

    sched = Scheduler(SQLiteStore("runs.db"))

    @sched.function(retries=5)
    def charge(customer_id: str) -> str: ...

    @sched.workflow
    async def billing(customer_ids):
        receipts = await gather(*(call(charge, c) for c in customer_ids))
        await sleep(3600)
        return receipts

    run_id = sched.start(billing, ["a", "b"])
    sched.run_until_complete()
    sched.result(run_id)

Steps run *at least once*: a step whose outcome was recorded never runs
again, but one in flight when the process dies runs again after the restart;
``current_step().idempotency_key`` lets it make its effect happen once.
docs/scheduler.md explains how it works, for anyone building their own.

This package is optional: ``import corosnap`` does not import it.
"""

from __future__ import annotations

from ._context import StepContext, current_step
from ._directives import Call, Directive, Gather, Sleep, call, gather, sleep
from ._engine import Stats
from ._errors import (
    PermanentError,
    RunNotFinished,
    RunNotFound,
    SchedulerError,
    StepTimeout,
    UnrecordableError,
)
from ._policy import FunctionOptions
from ._scheduler import RunStatus, Scheduler, StepInfo

__all__ = [
    "Call",
    "Directive",
    "FunctionOptions",
    "Gather",
    "PermanentError",
    "RunNotFinished",
    "RunNotFound",
    "RunStatus",
    "Scheduler",
    "SchedulerError",
    "Sleep",
    "Stats",
    "StepContext",
    "StepInfo",
    "StepTimeout",
    "UnrecordableError",
    "call",
    "current_step",
    "gather",
    "sleep",
]
