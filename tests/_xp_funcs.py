"""Hand-written generators and coroutines for ``test_cross_process.py``.

Both the test process and the worker import this module from ``tests/``, so a
snapshot taken on one side names code the other side has.
"""

from __future__ import annotations

from typing import Any

LOG: list[Any] = []


def job(items):
    """The README example."""
    total = 0
    for x in items:
        total += x
        got = yield total  # noqa: F841 - part of the example
    return total


class Recorder:
    def __init__(self, tag: str) -> None:
        self.tag = tag

    def __enter__(self) -> str:
        LOG.append(("enter", self.tag))
        return self.tag

    def __exit__(self, et: Any, ev: Any, tb: Any) -> bool:
        LOG.append(("exit", self.tag, None if et is None else et.__name__))
        return False


def leaf(n):
    got_all = []
    for i in range(n):
        got = yield ("leaf", i)
        got_all.append(got)
    LOG.append(("leaf-done", got_all))
    return sum(x for x in got_all if isinstance(x, int))


def middle(n):
    a = yield ("middle", n)
    r = yield from leaf(n)
    b = yield ("middle-after", r)
    return (a, r, b)


def top(n):
    """A 3-deep ``yield from`` chain inside ``with`` and ``try/finally``."""
    x = y = None
    try:
        with Recorder("top") as tag:
            x = yield from middle(n)
            y = yield (tag, x)
    finally:
        LOG.append(("top-finally", x))
    return (x, y)


class Sleep:
    """A custom awaitable: yields a request to the driver, returns its answer."""

    def __init__(self, what: Any) -> None:
        self.what = what

    def __await__(self):
        return (yield ("sleep", self.what))


async def fetch(n: int) -> Any:
    r = await Sleep(n)
    LOG.append(("fetched", n, r))
    return (n, r)


async def step(n: int) -> list[Any]:
    a = await fetch(n)
    b = await fetch(n + 100)
    return [a, b]


async def workflow(n: int) -> list[Any]:
    """A coroutine chain: workflow -> step -> fetch -> Sleep.__await__."""
    out = []
    for i in range(n):
        out.append(await step(i))
    LOG.append(("workflow-done", n))
    return out


def noisy(n):
    """Prints to stdout: the worker must keep its protocol channel clean anyway."""
    for i in range(n):
        print("noise", i, "\x00\xff" * 10)
        yield i
    return "quiet"
