"""Generators and coroutines used by the core tests.

Kept in one importable module (not inside test functions) because corosnap
finds code again by module and qualified name, also in another process.
"""

from __future__ import annotations

import dataclasses
import enum
import sys
from typing import Any

LOG: list[Any] = []


class Resource:
    """A module-level context manager that records enter/exit."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> Resource:
        LOG.append(("enter", self.name))
        return self

    def __exit__(self, et: Any, ev: Any, tb: Any) -> bool:
        LOG.append(("exit", self.name, et.__name__ if et else None))
        return False


@dataclasses.dataclass
class Point:
    x: int
    y: list[int]


class Color(enum.Enum):
    RED = 1
    BLUE = 2


def job(items):
    total = 0
    for x in items:
        total += x
        got = yield total
        LOG.append(("got", got))
    return total


def counter(n):
    for i in range(n):  # noqa: UP028 (the for-loop iterator is what is being tested)
        yield i


def with_finally():
    try:
        with Resource("r"):
            x = yield 1
            y = yield x + 1
        yield y
    finally:
        LOG.append("finally")


def sub(k):
    x = yield k
    return (x or 0) * 2


def chain(depth):
    if depth == 0:
        return (yield from sub(depth))
    got = yield from chain(depth - 1)
    return got + 1


def uses_genexpr(n):
    squares = (i * i for i in range(n))
    total = yield from squares
    return total


def delegates_to_genexpr(n):
    g = (i * 10 for i in range(n))
    yield from g
    return "done"


class Ready:
    """A custom awaitable whose __await__ is a generator."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __await__(self):
        got = yield self.value
        return got


async def leaf(v):
    got = await Ready(v)
    return got


async def middle(v):
    a = await leaf(v)
    b = await leaf(a)
    return a + b


async def top(v):
    r = await middle(v)
    return r * 10


def closure_gen():
    n = 0

    def inc(step=1):
        nonlocal n
        n += step
        return n

    scale = lambda: n * 10  # noqa: E731
    while n < 100:
        got = yield inc(), scale()
        if got:
            inc(got)
    return n


def inner_genexpr_gen(values):
    evens = [v for v in values if v % 2 == 0]
    odd_iter = (v for v in values if v % 2)
    for v in odd_iter:
        yield v, len(evens)


class Widget:
    def __init__(self, name: str) -> None:
        self.name = name

    def method(self, n):
        for i in range(n):
            yield f"{self.name}:{i}"

    @staticmethod
    def static(n):
        for i in range(n):
            yield -i

    @classmethod
    def klass(cls, n):
        for i in range(n):
            yield cls.__name__, i


def signature(a, b=2, *args, c, d=4, **kwargs):
    yield a, b, args, c, d, kwargs
    yield a + b + c + d + sum(args) + sum(kwargs.values())


def loops():
    out = []
    for i in range(3):
        out.append((yield ("range", i)))
    for x in [10, 20]:
        out.append((yield ("list", x)))
    for t in (1, 2):
        out.append((yield ("tuple", t)))
    for ch in "ab":
        out.append((yield ("str", ch)))
    d = {"k1": 1, "k2": 2}
    for k in d:
        out.append((yield ("keys", k)))
    for v in d.values():
        out.append((yield ("values", v)))
    for k, v in d.items():
        out.append((yield ("items", k, v)))
    for i, x in enumerate(["p", "q"]):
        out.append((yield ("enumerate", i, x)))
    for a, b in zip([1, 2], "xy"):  # noqa: B905
        out.append((yield ("zip", a, b)))
    return out


def f3(a, b, c):
    return (a, b, c)


def half_evaluated(a, c):
    r1 = f3(a, (yield "arg"), c)
    r2 = a + (yield "binop")
    r3 = f"{a}-{(yield 'fstring')}-{c}"
    r4 = [a, (yield "list"), c]
    r5 = {"a": a, "b": (yield "dict")}
    return r1, r2, r3, r4, r5


def in_except():
    try:
        raise KeyError("boom")
    except KeyError:
        seen = yield sys.exc_info()[1]
        yield (seen, sys.exc_info()[1])
        raise


def aliasing():
    a = [1, 2, 3]
    b = a
    d = {"list": a}
    yield a
    a.append(4)
    yield b is a, d["list"] is a, b


def mutate_while_iterating():
    items = [1, 2]
    for x in items:
        if x < 3:
            items.append(x + 10)
        yield x


def cycles():
    a: list[Any] = [1]
    a.append(a)
    d: dict[str, Any] = {}
    d["self"] = d
    t = (a, d)
    yield "ready"
    yield a[1] is a, d["self"] is d, t[0] is a


def holds(value):
    got = yield "ready"
    yield value, got


def unstarted(a, b=1):
    yield a + b


square = lambda x: x * x  # noqa: E731 (a module-level lambda has no importable name)


def double(x):
    return x * 2


def self_referencing():
    me = yield "ready"
    yield me


def displays(a, s):
    lst = [*a, (yield "list")]
    st = {*s, *(yield "set")}
    return lst, st


def yield_in_finally():
    try:
        raise ValueError("pending")
    finally:
        got = yield "in finally"
        LOG.append(("finally got", got))


def append_to_module_log():
    LOG.append((yield "first"))
    LOG.append((yield "second"))


def keeps_finished_helper():
    helper = sub(1)
    next(helper)
    try:
        helper.send(2)
    except StopIteration as stop:
        result = stop.value
    got = yield result
    yield helper, got


class AsyncCM:
    async def __aenter__(self):
        return self

    async def __aexit__(self, et, ev, tb):
        await Ready("exiting")
        LOG.append(("aexit", et.__name__ if et else None, tb is None))
        return True


async def async_with_error():
    async with AsyncCM():
        raise KeyError("inside")
    return "after"


def surrogates():
    s = "bad\udcff"
    d = {"k\udc80": s}
    yield s
    yield s, d


def chained_exceptions():
    try:
        try:
            raise KeyError("first")
        except KeyError as first:
            raise ValueError("second") from first
    except ValueError as second:
        yield second
        yield second


def edits_dict_while_iterating():
    d = {"a": 1, "b": 2, "c": 3}
    out = []
    for k, v in d.items():
        got = yield k
        if got:
            d["c"] = got  # the rest of the loop must see this
        out.append((k, v))
    return out


def mid_gen(n):
    got = yield from sub(n)
    return got


def twin_genexprs(r1, r2):
    # two generator expressions with the same qualname and bytecode (so the
    # same fingerprint), told apart only by their path through co_consts
    a, b = (x for x in r1), (x for x in r2)
    return a, b
