"""The directives a workflow awaits: ``call``, ``sleep`` and ``gather``.

What lives here: three small frozen dataclasses and the functions that build
them.  Nothing in this file knows about stores, threads or the scheduler; a
directive is only a *request*, and the scheduler decides what it means.

Theory of operation
-------------------
A workflow suspends by awaiting a directive.  Each directive's ``__await__``
is a one-line generator, ``return (yield self)``: awaiting it makes the
coroutine yield the directive itself all the way out to whoever called
``coro.send()``, which is the scheduler.  The scheduler feeds the answer back
with ``coro.send(result)`` (or raises a failure at the ``await`` with
``coro.throw(exc)``), and the generator returns it as the value of the
``await``.  Generator workflows do the same by hand: ``x = yield call(...)``
(``yield from call(...)`` works too, through ``__iter__``).

Why dataclasses: while the workflow is suspended, the directive sits on its
value stack (as ``self`` in the ``__await__`` frame), so it is part of every
snapshot.  Frozen, slotted module-level dataclasses encode compactly with
corosnap's codec, and the functions they hold are module-level functions,
stored by module and qualified name rather than by value.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Coroutine, Generator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, ParamSpec, TypeVar, overload

P = ParamSpec("P")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)


@dataclass(frozen=True, slots=True)
class Call(Generic[R_co]):
    """Run ``fn(*args, **kwargs)`` durably and resume with its result.

    ``fn`` is a function registered with ``Scheduler.function`` (a *step*: it
    runs in the scheduler, with retries, and its result is recorded) or with
    ``Scheduler.workflow`` (a *child workflow*: it becomes a run of its own,
    with its own checkpoints).  Build it with :func:`call`.
    """

    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] | None = None

    def __await__(self) -> Generator[Directive, Any, R_co]:
        return (yield self)

    __iter__ = __await__  # so generator workflows can write `x = yield from call(...)`

    def describe(self) -> str:
        """``name(args)`` for logs and status, with long argument lists shortened."""
        return f"{getattr(self.fn, '__qualname__', repr(self.fn))}({_short_args(self)})"


@dataclass(frozen=True, slots=True)
class Sleep:
    """Resume after ``seconds`` of wall-clock time, even across restarts.  See :func:`sleep`."""

    seconds: float

    def __await__(self) -> Generator[Directive, Any, None]:
        return (yield self)

    __iter__ = __await__

    def describe(self) -> str:
        return f"sleep({self.seconds:g})"


@dataclass(frozen=True, slots=True)
class Gather:
    """Run every item concurrently and resume with the list of results.  See :func:`gather`."""

    items: tuple[Call[Any] | Sleep, ...]
    return_exceptions: bool = False

    def __await__(self) -> Generator[Directive, Any, list[Any]]:
        return (yield self)

    __iter__ = __await__

    def describe(self) -> str:
        return f"gather({len(self.items)} items)"


#: Anything a workflow may await (or yield, in a generator workflow).
Directive = Call[Any] | Sleep | Gather


@overload
def call(
    fn: Callable[P, Coroutine[Any, Any, R]], /, *args: P.args, **kwargs: P.kwargs
) -> Call[R]: ...
@overload
def call(
    fn: Callable[P, Generator[Any, Any, R]], /, *args: P.args, **kwargs: P.kwargs
) -> Call[R]: ...
@overload
def call(fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Call[R]: ...
def call(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Call[Any]:
    """Ask the scheduler to run ``fn(*args, **kwargs)``; ``await`` the result.

    ``fn`` must be registered on the scheduler, as a step (``@sched.function``)
    or as a workflow (``@sched.workflow``, which starts a child run), and must
    be importable by its module and qualified name, as must the arguments'
    types: they are part of the workflow's snapshot.
    """
    if not callable(fn):
        raise TypeError(f"call() needs a function, not {type(fn).__name__}")
    return Call(fn, args, kwargs or None)


def sleep(seconds: float) -> Sleep:
    """A durable timer: ``await sleep(3600)`` resumes an hour later, restarts or not.

    The due time is fixed (in wall-clock time) when the checkpoint that waits
    for it is written, so a process that is down when the timer falls due
    resumes the workflow as soon as it comes back.
    """
    seconds = float(seconds)
    if math.isnan(seconds) or seconds < 0:
        raise ValueError(f"sleep() needs a number of seconds >= 0, not {seconds!r}")
    return Sleep(seconds)


def gather(*items: Call[R] | Sleep, return_exceptions: bool = False) -> Gather:
    """Run every ``call(...)`` (and ``sleep(...)``) at once; resume with their results, in order.

    Unlike ``asyncio.gather``, the workflow resumes only when *every* item has
    finished, successfully or not; then, if any failed, the failure of the
    first failed item (in argument order) is raised at the ``await``.  Waiting
    for all of them keeps the outcome independent of which item happened to
    fail first in time, so a run resumed after a crash sees the same thing.
    With ``return_exceptions=True`` the failures are returned in the list
    instead.  ``await gather()`` with no items resumes at once with ``[]``.
    """
    for item in items:
        if not isinstance(item, (Call, Sleep)):
            raise TypeError(
                "gather() takes call(...) and sleep(...) directives, not "
                f"{type(item).__name__}; to run a coroutine concurrently, register it "
                "with @sched.workflow and pass call(that_workflow, ...)"
            )
    return Gather(tuple(items), bool(return_exceptions))


def _short_args(c: Call[Any], limit: int = 60) -> str:
    parts = [repr(a) for a in c.args]
    parts += [f"{k}={v!r}" for k, v in (c.kwargs or {}).items()]
    text = ", ".join(parts)
    return text if len(text) <= limit else text[: limit - 3] + "..."
