"""What a running step may ask about itself: ``current_step()``.

Steps are ordinary functions, so the scheduler does not add parameters to
them.  A step that needs its idempotency key (to pass to a payment API, or to
deduplicate its own writes) calls :func:`current_step` instead.  The value is
held in a :class:`contextvars.ContextVar` set around each attempt, in the
thread that runs it.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StepContext:
    """Who is running: the run, the step's place in it and the attempt number.

    ``idempotency_key`` is ``"<run_id>/<seq>"``: the same for every attempt of
    this step, in every process, and different for every other step of every
    run.  A step that may run more than once (after a crash, or after a
    timeout) uses it to make its side effects happen once.
    """

    run_id: str
    seq: int
    attempt: int
    function: str

    @property
    def idempotency_key(self) -> str:
        return f"{self.run_id}/{self.seq}"


_CURRENT: ContextVar[StepContext | None] = ContextVar("corosnap_step", default=None)


def current_step() -> StepContext:
    """The :class:`StepContext` of the step running in this thread.

    Raises RuntimeError outside a step (e.g. when the function is called
    directly rather than through ``await call(...)``).
    """
    ctx = _CURRENT.get()
    if ctx is None:
        raise RuntimeError("current_step() called outside a step run by the scheduler")
    return ctx
