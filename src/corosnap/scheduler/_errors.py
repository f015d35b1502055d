"""Exceptions of the scheduler, and the two a step may raise on purpose.

``PermanentError`` is for step authors: raise it (or a subclass) when trying
again cannot help, and the failure goes straight to the workflow.  The others
are raised by the scheduler.  Each one pickles as itself (plain ``args``), so
it can be recorded in the store and raised again in another process.
"""

from __future__ import annotations

from .._errors import CorosnapError


class PermanentError(Exception):
    """Raised by a step: do not retry, report this failure to the workflow now."""


class SchedulerError(CorosnapError):
    """Base class of the errors the scheduler raises."""


class RunNotFound(SchedulerError, KeyError):
    """There is no run with this id in the store."""

    def __str__(self) -> str:
        return f"no run {self.args[0]!r} in the store" if self.args else "no such run"


class RunNotFinished(SchedulerError):
    """``result()`` was asked for a run that is still running."""


class StepTimeout(SchedulerError, TimeoutError):
    """An attempt of a step took longer than its ``timeout``; retried like any transient error."""


class UnrecordableError(SchedulerError):
    """Stands in for a step's exception (or result) that could not be pickled into the store.

    ``args`` are ``(type_name, message)``: enough to log it and branch on it,
    and the same in every process, which the original could not promise.
    """

    def __str__(self) -> str:
        if len(self.args) == 2:
            return f"{self.args[0]}: {self.args[1]}"
        return super().__str__()


__all__ = [
    "PermanentError",
    "RunNotFinished",
    "RunNotFound",
    "SchedulerError",
    "StepTimeout",
    "UnrecordableError",
]
