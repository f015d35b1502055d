"""Workflows and steps the scheduler tests run, at module level so snapshots can name them.

``register(sched)`` registers them all on a scheduler: the decorators return
the functions unchanged, so each test can build a fresh scheduler over a
fresh store and register the same functions on it.

``LOG`` records every step execution as ``(idempotency_key, attempt)``, and
``STORE`` (when a test sets it) lets each step check, as it starts, that its
outcome is not recorded yet: a step whose outcome was recorded must never run
again.  ``VIOLATIONS`` collects the keys where it was.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from corosnap.scheduler import (
    PermanentError,
    Scheduler,
    call,
    current_step,
    gather,
    sleep,
)
from corosnap.stores import Store

LOG: list[tuple[str, int]] = []
VIOLATIONS: list[str] = []
STORE: Store | None = None
FAIL_TIMES: dict[str, int] = {}  # step argument -> how many attempts fail before one succeeds
INTERRUPT_ON: set[int] = set()  # double(x) raises KeyboardInterrupt for these x
_lock = threading.Lock()
_running: dict[str, int] = {}  # run id -> slow() calls running now
MAX_RUNNING: dict[str, int] = {}  # run id -> most slow() calls seen running at once


def reset(store: Store | None = None) -> None:
    global STORE
    LOG.clear()
    VIOLATIONS.clear()
    FAIL_TIMES.clear()
    INTERRUPT_ON.clear()
    STORE = store


def _note() -> Any:
    ctx = current_step()
    with _lock:
        LOG.append((ctx.idempotency_key, ctx.attempt))
    if STORE is not None and is_recorded(STORE, ctx.run_id, ctx.seq):
        VIOLATIONS.append(ctx.idempotency_key)
    return ctx


def is_recorded(store: Store, run_id: str, seq: int) -> bool:
    """Is step ``seq`` of ``run_id`` recorded in ``store`` (so must never run again)?"""
    return any(s.seq == seq for s in Scheduler(store).steps(run_id))


# -- steps -----------------------------------------------------------------------


def double(x: int) -> int:
    _note()
    if x in INTERRUPT_ON:
        raise KeyboardInterrupt(f"double({x})")
    return 2 * x


def flaky(x: Any) -> str:
    """Fails with ConnectionError for the first FAIL_TIMES[x] attempts."""
    ctx = _note()
    if ctx.attempt <= FAIL_TIMES.get(str(x), 0):
        raise ConnectionError(f"flaky {x} attempt {ctx.attempt}")
    return f"ok-{x}"


def broken(x: Any) -> None:
    _note()
    raise ValueError(f"broken {x}")


def refuse(x: Any) -> None:
    _note()
    raise PermanentError(f"refused {x}")


def slow(seconds: float) -> float:
    run_id = _note().run_id
    with _lock:
        _running[run_id] = _running.get(run_id, 0) + 1
        MAX_RUNNING[run_id] = max(MAX_RUNNING.get(run_id, 0), _running[run_id])
    try:
        time.sleep(seconds)
    finally:
        with _lock:
            _running[run_id] -= 1
    return seconds


def key() -> str:
    return _note().idempotency_key


def unpicklable_result() -> Any:
    _note()
    return threading.Lock()


class OddError(Exception):
    """Pickles, but cannot be unpickled: __init__ takes two arguments, args holds one."""

    def __init__(self, a: str, b: str) -> None:
        super().__init__(f"{a}/{b}")


def odd_error() -> None:
    _note()
    raise OddError("x", "y")


def where() -> tuple[int, str]:
    """Where a step runs: the process id, and the idempotency key it was given there."""
    return os.getpid(), current_step().idempotency_key


def fails_once(x: Any) -> str:
    """Fails its first attempt, whatever process it runs in."""
    if current_step().attempt == 1:
        raise ConnectionError(f"first attempt at {x}")
    return f"ok-{x}"


def exits_process() -> None:
    """Kills the process it runs in (a process pool's worker): the pool breaks."""
    os._exit(3)


# -- workflows -----------------------------------------------------------------


async def one(x: int) -> int:
    return await call(double, x)


async def fan_out(xs: list[int]) -> list[int]:
    return await gather(*(call(double, x) for x in xs))


async def pipeline(xs: list[int]) -> dict[str, Any]:
    """Fan-out, a sequential loop, a timer and a child workflow."""
    doubled = await gather(*(call(double, x) for x in xs))
    total = 0
    for d in doubled:
        total += await call(double, d)
    await sleep(0.01)
    child_result = await call(one, total)
    return {"doubled": doubled, "total": total, "child": child_result}


async def catches(x: Any) -> str:
    try:
        await call(broken, x)
    except ValueError as exc:
        return f"caught {exc}"
    return "not raised"


async def gather_fails() -> Any:
    return await gather(call(double, 1), call(broken, "a"), call(refuse, "b"))


async def gather_collects() -> list[Any]:
    results = await gather(call(double, 1), call(broken, "a"), sleep(0), return_exceptions=True)
    return [type(r).__name__ if isinstance(r, BaseException) else r for r in results]


async def gather_nothing() -> list[Any]:
    return await gather()


def generator_flow(n: int):  # type: ignore[no-untyped-def]
    total = 0
    for i in range(n):
        total += yield call(double, i)
    total += yield from call(double, 100)
    yield sleep(0)
    both = yield gather(call(double, 1), call(double, 2))
    return total + sum(both)


async def _helper(x: int) -> int:
    """Not registered: awaited directly, it runs inside the caller's snapshot."""
    a = await call(double, x)
    return a + await call(double, a)


async def inline_helper(x: int) -> int:
    return await _helper(x) + 1


async def parent(x: int) -> list[Any]:
    children = await gather(call(one, x), call(one, x + 1), call(grandparent_child, x))
    return children


async def grandparent_child(x: int) -> int:
    return await call(one, x * 10)


async def child_fails() -> str:
    try:
        await call(catches_nothing)
    except KeyError as exc:
        return f"child failed with {exc!r}"
    return "no"


async def catches_nothing() -> None:
    raise KeyError("lost")


async def fails(x: Any) -> None:
    await call(double, 1)
    raise ValueError(f"workflow failed {x}")


async def flaky_flow(x: str) -> str:
    return await call(flaky, x)


async def refused_flow(x: str) -> str:
    try:
        return await call(refuse, x)
    except PermanentError as exc:
        return f"permanent: {exc}"


async def sleeper(seconds: float) -> float:
    start = time.time()
    await sleep(seconds)
    return time.time() - start


async def waits_for_child(seconds: float) -> float:
    return await call(sleeper, seconds)


async def slow_flow(seconds: float) -> Any:
    return await call(slow, seconds)


async def many_slow(n: int, seconds: float) -> Any:
    return await gather(*(call(slow, seconds) for _ in range(n)))


async def awaits_foreign() -> str:
    import asyncio

    try:
        await asyncio.sleep(0)
    except TypeError as exc:
        return f"refused: {exc}"
    return "accepted"


async def calls_unregistered() -> str:
    try:
        await call(len, "abc")
    except TypeError as exc:
        return f"refused: {exc}"
    return "accepted"


async def holds_lock() -> None:
    lock = threading.Lock()
    await call(double, 1)
    del lock


async def lambda_argument() -> str:
    try:
        await call(double, lambda: 1)
    except Exception as exc:
        return type(exc).__name__
    return "accepted"


async def awaits_in_handlers(x: int) -> list[Any]:
    """Suspends inside an except block, a finally block and an async with."""
    out: list[Any] = []
    try:
        await call(broken, x)
    except ValueError as exc:
        out.append(f"{exc}: {await call(double, x)}")
    try:
        out.append(await call(double, x + 1))
    finally:
        out.append(await call(double, x + 2))
    async with Resource() as res:
        out.append(await call(double, res.opened))
    out.append(res.closed)
    out.append([await call(double, i) for i in range(2)])
    return out


class Resource:
    """An async context manager whose enter and exit await steps."""

    def __init__(self) -> None:
        self.opened = self.closed = 0

    async def __aenter__(self) -> Resource:
        self.opened = await call(double, 50)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.closed = await call(double, 60)


async def keys() -> list[str]:
    return await gather(call(key), call(key))


async def unpicklable_flow() -> str:
    try:
        await call(unpicklable_result)
    except Exception as exc:
        return type(exc).__name__
    return "no"


async def chain(n: int) -> int:
    """``n`` sequential steps: a long history."""
    total = 0
    for i in range(n):
        total += await call(double, i)
    return total


async def slow_then_double(seconds: float, x: int) -> list[Any]:
    return [await call(slow, seconds), await call(double, x)]


async def spread(n: int) -> list[Any]:
    """``n`` steps at once, each saying where it ran; then one that fails once."""
    places = await gather(*(call(where) for _ in range(n)))
    return [places, await call(fails_once, n)]


async def breaks_pool() -> None:
    await call(exits_process)


async def odd_flow() -> str:
    try:
        await call(odd_error)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return "no"


STEPS: dict[Any, dict[str, Any]] = {
    double: {},
    flaky: {"retries": 3, "backoff": 0.001},
    broken: {"retries": 2, "backoff": 0.001},
    refuse: {"retries": 5, "backoff": 0.001},
    slow: {"retries": 0},
    key: {},
    unpicklable_result: {"retries": 0},
    odd_error: {"retries": 0},
    where: {},
    fails_once: {"retries": 2, "backoff": 0.001},
    exits_process: {"retries": 0},
}
WORKFLOWS = [
    one, fan_out, pipeline, catches, gather_fails, gather_collects, gather_nothing,
    generator_flow, inline_helper, parent, grandparent_child, child_fails, catches_nothing,
    fails, flaky_flow, refused_flow, sleeper, waits_for_child, slow_flow, many_slow, awaits_foreign,
    calls_unregistered, holds_lock, keys, lambda_argument, awaits_in_handlers, unpicklable_flow,
    odd_flow, chain, slow_then_double, spread, breaks_pool,
]  # fmt: skip


def register(sched: Scheduler, **overrides: dict[str, Any]) -> Scheduler:
    """Register every step (options from STEPS, updated by ``overrides[name]``) and workflow."""
    for fn, options in STEPS.items():
        sched.function(**{**options, **overrides.get(fn.__name__, {})})(fn)
    for wf in WORKFLOWS:
        sched.workflow(wf)
    return sched
