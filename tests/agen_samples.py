"""Async generators (and the coroutines around them) used by test_async_generators.

One importable module, so another process finds the code again by module and
qualified name.  ``Val`` is an awaitable whose ``__await__`` is a generator: it
yields its value to whoever drives the outermost coroutine and returns what
is sent back, so tests can drive everything by hand with ``send``; the
``aio_*`` functions await ``asyncio.sleep(0)`` instead, to run under asyncio.
"""

from __future__ import annotations

import asyncio
import types
from typing import Any

LOG: list[Any] = []


class Val:
    def __init__(self, v: Any) -> None:
        self.v = v

    def __await__(self) -> Any:
        return (yield self.v)


class ACM:
    """An async context manager whose enter and exit themselves await."""

    def __init__(self, tag: str) -> None:
        self.tag = tag

    async def __aenter__(self) -> str:
        got = await Val(("aenter", self.tag))
        LOG.append(("aenter", self.tag, got))
        return self.tag

    async def __aexit__(self, et: Any, ev: Any, tb: Any) -> bool:
        got = await Val(("aexit", self.tag))
        LOG.append(("aexit", self.tag, et.__name__ if et else None, got))
        return False


async def ticker(n: int) -> Any:
    """Awaits, then yields what was sent to the await, n times."""
    try:
        for i in range(n):
            got = await Val(("tick", i))
            sent = yield (i, got)
            LOG.append(("sent", i, sent))
    finally:
        LOG.append("ticker finally")


async def consume(n: int) -> list[Any]:
    """async for over ticker: each step is in flight inside the generator."""
    acc = []
    async for x in ticker(n):
        acc.append(x)
    return acc


async def helper(x: int) -> int:
    got = await Val(("helper", x))
    return x * 10 + (got or 0)


async def inner_pairs(n: int) -> Any:
    """An async generator that iterates another one and awaits a coroutine."""
    async with ACM("inner"):
        async for i, got in ticker(n):
            total = await helper(i)
            yield (i, got, total)


async def pipeline(n: int) -> list[Any]:
    acc = []
    async for item in inner_pairs(n):
        acc.append(item)
        await Val(("pipeline", item))
    return acc


async def closer() -> Any:
    """Its finally block awaits: aclose() stays in flight across that await."""
    try:
        yield 1
        yield 2
    finally:
        got = await Val("closing")
        LOG.append(("closed after", got))


async def close_it(ag: Any) -> str:
    await ag.aclose()
    return "closed"


async def catcher() -> Any:
    """Catches what athrow() throws, awaits, and yields a reply."""
    n = 0
    while True:
        try:
            yield n
        except KeyError as exc:
            got = await Val(("caught", exc.args))
            n += 100 + (got or 0)
        n += 1


async def throw_into(ag: Any, exc: BaseException) -> Any:
    return await ag.athrow(exc)


async def manual(n: int) -> list[Any]:
    """Drives an async generator through __anext__ and asend by hand, keeping
    an awaitable in a local."""
    ag = ticker(n)
    first = await ag.__anext__()
    pending = ag.asend("hello")
    second = await pending
    return [first, second, await ag.asend("again")]


async def with_anext_default(n: int) -> list[Any]:
    """anext(ag, default) (an anext_awaitable wrapping the __anext__) in flight,
    past the generator's end too."""
    ag = ticker(n)
    out = []
    for _ in range(n + 1):
        out.append(await anext(ag, "done"))
    return out


async def finished_in_local() -> Any:
    """A finished async generator held in a local (stored as its code)."""
    ag = ticker(0)
    async for _ in ag:
        pass
    await Val("after")
    return ag.ag_running


async def await_wrapper() -> Any:
    """A coroutine's __await__() (a coroutine_wrapper) kept and driven."""
    w = helper(3).__await__()
    first = w.send(None)
    got = await Val(("first", first))
    try:
        w.send(got)
    except StopIteration as stop:
        return stop.value
    return None


def yield_from_wrapper() -> Any:
    """A plain generator delegating to a coroutine_wrapper: the wrapper sits on
    its stack."""
    return (yield from helper(4).__await__())


def outer_with_types_coroutine() -> Any:
    """A generator-based coroutine defined inside a function: types.coroutine
    swaps in a copy of its code with CO_ITERABLE_COROUTINE added."""

    @types.coroutine
    def gb(k: int) -> Any:
        got = yield ("gb", k)
        return got

    return gb(5)


async def awaits_inner_types_coroutine() -> Any:
    @types.coroutine
    def step(k: int) -> Any:
        return (yield ("step", k))

    a = await step(1)
    b = await step(2)
    return (a, b)


# -- under asyncio ---------------------------------------------------------------

async def aio_producer(n: int) -> Any:
    try:
        for i in range(n):
            await asyncio.sleep(0)
            LOG.append(("produced", i))
            yield i * i
    finally:
        await asyncio.sleep(0)  # only an aclose() from the event loop gets past this
        LOG.append("producer finally")


KEPT: list[Any] = []
"""Async generators kept alive until the event loop shuts down."""


async def aio_consumer(n: int, stop_at: int = -1) -> list[int]:
    acc = []
    it = aio_producer(n)
    async for x in it:
        acc.append(x)
        if len(acc) == stop_at:
            # Stop early, leaving the generator suspended at a yield, alive
            # until asyncio.run's shutdown_asyncgens closes it.
            KEPT.append(it)
            break
    return acc
