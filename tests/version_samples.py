"""One generator or coroutine per suspension shape, for the per-version tests.

Each function suspends with a different set of things on its value stack
(loop iterators, with/async-with exits, handled exceptions, the handler's
lasti, a delegated-to sub-iterator, comprehension accumulators, half-built
calls) or with an unusual set of locals (deleted, never bound, saved by an
inlined comprehension).  ``CASES`` pairs each with the sends that walk it
through every suspension; ``THROW`` in a script throws ``Boom`` instead.
Kept in an importable module because corosnap finds code by module and
qualified name, also in another process.
"""

from __future__ import annotations

import sys
from typing import Any


class Boom(Exception):
    """Thrown in by scripts; compared by type and args."""


THROW = object()


class Step:
    """An awaitable whose __await__ yields once: the coroutine's suspension."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __await__(self):
        got = yield ("step", self.value)
        return (self.value, got)


async def twice(x):
    a = await Step(x)
    return a


class SyncCM:
    def __init__(self, log: list[Any]) -> None:
        self.log = log

    def __enter__(self) -> SyncCM:
        self.log.append("enter")
        return self

    def __exit__(self, et: Any, ev: Any, tb: Any) -> bool:
        self.log.append(("exit", et.__name__ if et else None))
        return et is Boom


class AsyncCM:
    def __init__(self, log: list[Any]) -> None:
        self.log = log

    async def __aenter__(self) -> AsyncCM:
        self.log.append((await Step("aenter"))[1])
        return self

    async def __aexit__(self, et: Any, ev: Any, tb: Any) -> bool:
        # Awaited while the exception path keeps the handler's lasti (a
        # tagged integer on 3.14+), the previous exception and the
        # exception on the caller's stack.  (Traceback objects cannot be
        # captured, so drop ours first.)
        del tb
        self.log.append(("aexit", et.__name__ if et else None, (await Step("aexit"))[1]))
        return et is Boom


class Ticker:
    """An async iterator whose __anext__ awaits."""

    def __init__(self, n: int) -> None:
        self.i, self.n = 0, n

    def __aiter__(self) -> Ticker:
        return self

    async def __anext__(self) -> int:
        if self.i >= self.n:
            raise StopAsyncIteration
        self.i += 1
        await Step(("tick", self.i))
        return self.i


def plain(n):
    total = 0
    while total < n:
        total += yield total
    return total


def for_loops():
    out = []
    for x in [1, 2]:
        out.append((yield ("list", x)))
    for x in (3, 4):
        out.append((yield ("tuple", x)))
    for x in range(5, 7):
        out.append((yield ("range", x)))
    for x in "ab":
        out.append((yield ("str", x)))
    for x in b"c":
        out.append((yield ("bytes", x)))
    for x in bytearray(b"d"):
        out.append((yield ("bytearray", x)))
    for x in {"k": 1}:
        out.append((yield ("dict", x)))
    for x in iter([8]):
        out.append((yield ("iter", x)))
    for x in reversed([9]):
        out.append((yield ("reversed", x)))
    for i, x in enumerate("e"):
        out.append((yield ("enumerate", i, x)))
    for x in (y * 2 for y in [5]):
        out.append((yield ("genexpr", x)))
    return out


def nested_loops():
    for i in range(2):
        for j in [10, 20]:
            for k in "xy":
                yield i, j, k


def sub(n):
    for i in range(n):
        got = yield ("sub", i)
        if got:
            return got
    return "sub done"


def delegations():
    a = yield from sub(2)
    b = yield from [1, 2]
    c = yield from (3,)
    d = yield from range(4, 6)
    e = yield from "fg"
    f = yield from (x for x in [7])
    return a, b, c, d, e, f


def in_except():
    try:
        raise KeyError("k")
    except KeyError as exc:
        got = yield ("handling", exc.args, sys.exc_info()[0].__name__)
        yield ("still", got, sys.exc_info()[0].__name__)
    yield ("after", sys.exc_info()[0])


def in_finally():
    try:
        yield "body"
    finally:
        yield ("finally", sys.exc_info()[0].__name__ if sys.exc_info()[0] else None)
    yield "after"


def finally_during_exception():
    try:
        raise ValueError("v")
    finally:
        got = yield ("finally", sys.exc_info()[0].__name__)
        yield ("again", got)


def in_with(log):
    with SyncCM(log):
        got = yield "in with"
        if got == "raise":
            raise Boom("b")
        yield ("with got", got)
    yield ("after", log)


class StaticExitCM:
    """__exit__ is a staticmethod: 3.14+ LOAD_SPECIAL pushes (exit, NULL)."""

    def __enter__(self) -> StaticExitCM:
        return self

    @staticmethod
    def __exit__(et: Any, ev: Any, tb: Any) -> None:
        return None


def in_static_exit_with():
    with StaticExitCM():
        got = yield "in with"
    yield ("after", got)


def with_in_except_in_loop(log):
    for i in range(2):
        try:
            with SyncCM(log):
                raise KeyError(i)
        except KeyError:
            with SyncCM(log):
                yield ("nested", i)
    return log


def except_star():
    try:
        raise ExceptionGroup("eg", [ValueError(1), KeyError(2)])
    except* ValueError as eg:
        yield ("value errors", len(eg.exceptions))
    except* KeyError as eg:
        yield ("key errors", len(eg.exceptions))


def matching(v):
    match v:
        case [a, b]:
            got = yield ("pair", a, b)
        case {"k": x}:
            got = yield ("mapping", x)
        case _:
            got = yield ("other",)
    return got


def f3(a, b, c):
    return (a, b, c)


class Obj:
    def m(self, *args, **kw):
        return ("m", args, tuple(sorted(kw.items())))


def half_built(a):
    o = Obj()
    r1 = f3(a, (yield "arg"), a)
    r2 = o.m(a, (yield "method arg"))
    r3 = a + (yield "binop")
    r4 = [a, (yield "list item")]
    r5 = {"a": a, "b": (yield "dict value")}
    r6 = f"{a}{(yield 'fstring')}"
    r7 = f3(*[a, a], (yield "star arg"))
    r8 = o.m(k=(yield "keyword"))
    r9 = (a, (yield "tuple item"))
    r10 = {a, (yield "set item")}
    return r1, r2, r3, r4, r5, r6, r7, r8, r9, r10


def odd_locals(flag):
    if flag:
        never = 1
    x = 1
    del x
    got = yield "x deleted, never unbound"
    x = got
    try:
        yield ("never", never)
    except NameError:
        yield "never unbound"
    yield x


def genexpr_over(seq):
    return (v * 2 for v in seq)


async def awaits(x):
    a = await twice(x)
    b = await Step("direct")
    return a, b


async def nested_awaits(x):
    r = await awaits(x)
    return r, await twice("again")


async def async_with(log, fail):
    async with AsyncCM(log):
        got = await Step("body")
        if fail:
            raise Boom(got)
    return log


async def async_for():
    out = []
    async for i in Ticker(2):
        out.append((i, await Step(("body", i))))
    return out


async def comprehensions(xs):
    lst = [await Step(("list", x)) for x in xs]
    st = {(await Step(("set", x)))[0] for x in xs}
    dct = {x: await Step(("dict", x)) for x in xs}
    return lst, sorted(st), dct


async def comprehension_shadowing(xs):
    x = "outer"
    lst = [await Step(("shadow", x)) for x in xs]
    return lst, x  # x is read after the comprehension: its saved value must survive


async def comprehension_unbound(xs):
    lst = [await Step(("unbound", x)) for x in xs]
    return lst


async def await_in_except():
    try:
        raise KeyError("k")
    except KeyError:
        got = await Step("in except")
        return got, sys.exc_info()[0].__name__


async def await_in_finally_during_exception():
    try:
        try:
            raise ValueError("v")
        finally:
            await Step("finally")
    except ValueError as e:
        return ("caught", e.args)


CASES: dict[str, tuple[Any, list[Any]]] = {
    "plain": (lambda: plain(5), [None, 1, 2, 3]),
    "for_loops": (for_loops, [None] + list(range(12))),
    "nested_loops": (nested_loops, [None] * 9),
    "delegations": (delegations, [None] * 10),
    "delegation_throw": (delegations, [None, THROW]),
    "in_except": (in_except, [None, "a", "b", "c"]),
    "in_finally": (in_finally, [None, None, None, None]),
    "in_finally_throw": (in_finally, [None, THROW, None]),
    "finally_during_exception": (finally_during_exception, [None, "x", "y"]),
    "in_with": (lambda: in_with([]), [None, "v", None, None]),
    "in_with_raise": (lambda: in_with([]), [None, "raise", None]),
    "in_with_throw": (lambda: in_with([]), [None, THROW, None]),
    "in_static_exit_with": (in_static_exit_with, [None, "v", None]),
    "with_in_except_in_loop": (lambda: with_in_except_in_loop([]), [None, None, None]),
    "except_star": (except_star, [None, None, None]),
    "match_pair": (lambda: matching([1, 2]), [None, "p"]),
    "match_mapping": (lambda: matching({"k": 3}), [None, "m"]),
    "half_built": (lambda: half_built(1), [None, 2, 3, 4, 5, 6, "f", 7, 8, 9, 10, 11]),
    "odd_locals": (lambda: odd_locals(False), [None, "g", None, None, None]),
    "genexpr_list": (lambda: genexpr_over([1, 2, 3]), [None, None, None, None]),
    "genexpr_range": (lambda: genexpr_over(range(3)), [None, None, None, None]),
    "genexpr_str": (lambda: genexpr_over("ab"), [None, None, None]),
    "awaits": (lambda: awaits(1), [None, "a", "b"]),
    "nested_awaits": (lambda: nested_awaits(1), [None, "a", "b", "c"]),
    "awaits_throw": (lambda: nested_awaits(1), [None, THROW]),
    "async_with": (lambda: async_with([], False), [None, "in", "body", "out"]),
    "async_with_exit_on_exception": (lambda: async_with([], True), [None, "in", "body", "x"]),
    "async_for": (async_for, [None, 1, 2, 3, 4, 5]),
    "comprehensions": (lambda: comprehensions([1, 2]), [None, 1, 2, 3, 4, 5, 6]),
    "comprehension_shadowing": (lambda: comprehension_shadowing([1, 2]), [None, 1, 2]),
    "comprehension_unbound": (lambda: comprehension_unbound([1, 2]), [None, 1, 2]),
    "await_in_except": (await_in_except, [None, "x"]),
    "await_in_finally_during_exception": (await_in_finally_during_exception, [None, "x"]),
}


def appends_what_it_is_sent(out):
    """``out.append((yield))``: at the yield the stack holds list.append and
    its self-or-NULL slot (3.13: above it), consumed by a one-argument CALL."""
    out.append((yield))


def unbound_append(out):
    """``list.append(out, (yield))``: the NULL above list.append is legitimate
    here (a two-argument CALL)."""
    list.append(out, (yield))
    return out
