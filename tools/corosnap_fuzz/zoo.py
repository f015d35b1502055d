# mypy: disallow-untyped-defs=False, check-untyped-defs=False
# (The zoo is test data: its generators stay plain, unannotated Python.)
"""The construct zoo: generators and coroutines the fuzzer takes real blobs from.

What lives here: one importable module (corosnap finds code again by module
and qualified name, so nothing here may be defined inside a test) holding a
generator or coroutine for every construct whose frame state corosnap has to
capture: loops over every builtin iterator kind, ``yield from`` chains,
coroutine chains over a custom awaitable, closures and ``nonlocal``, ``with``
and ``async with`` (including a suspension inside ``__aexit__`` on the
exception path, which leaves an instruction offset on the value stack),
suspensions inside ``except``, ``finally`` and ``except*`` blocks,
half-evaluated expressions (partial call arguments, displays, f-strings),
rich values (dataclass, enum, datetime, Decimal, big ints, sets, nested dicts,
cycles) and generators that are never started.

``SCENARIOS`` lists them with a script of values to drive each one, so
``corosnap_fuzz`` can capture every scenario at each of its suspension points.

Rule for this file: the work a generator does between two suspensions must not
depend on the *size* of the values it holds (no ``sum(items)`` over a local),
so that a restored generator holding absurd but well-typed values cannot make
the fuzzer's resume step hang for reasons that are not corosnap's.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import functools
import itertools
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

LOG: list[Any] = []
"""Side effects of the zoo's context managers; the fuzzer clears it per input."""


def note(item: Any) -> None:
    if len(LOG) > 64:
        del LOG[:32]
    LOG.append(item)


# -- helpers: values, context managers, awaitables --------------------------


@dataclass
class Point:
    x: int
    y: list[int]


@dataclass(frozen=True)
class Frozen:
    name: str
    tags: frozenset[int]


class Color(enum.Enum):
    RED = 1
    BLUE = 2


class Flags(enum.IntFlag):
    A = 1
    B = 2


class Slotted:
    __slots__ = ("a", "b")

    def __init__(self, a: Any, b: Any) -> None:
        self.a = a
        self.b = b

    def __eq__(self, other: object) -> bool:
        return type(other) is Slotted and (self.a, self.b) == (other.a, other.b)


class Resource:
    """A context manager that records enter/exit and never swallows errors."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> Resource:
        note(("enter", self.name))
        return self

    def __exit__(self, et: Any, ev: Any, tb: Any) -> None:
        note(("exit", self.name, et.__name__ if et else None))


class Suppress:
    """A context manager that swallows the exception raised in its body."""

    def __enter__(self) -> Suppress:
        return self

    def __exit__(self, et: Any, ev: Any, tb: Any) -> bool:
        return True


class Ready:
    """A custom awaitable whose ``__await__`` is a generator (one suspension)."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __await__(self) -> Generator[Any, Any, Any]:
        got = yield self.value
        return got


class AsyncResource:
    """An async context manager whose enter and exit both suspend."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def __aenter__(self) -> AsyncResource:
        await Ready(("aenter", self.name))
        return self

    async def __aexit__(self, *exc_info: Any) -> bool:
        # The traceback is not serializable: keep only the exception's name.
        name = exc_info[0].__name__ if exc_info[0] else None
        del exc_info
        got = await Ready(("aexit", self.name, name))
        return bool(got == "suppress")


class Ticker:
    """An async iterator whose ``__anext__`` suspends."""

    def __init__(self, n: int) -> None:
        self.i = 0
        self.n = n

    def __aiter__(self) -> Ticker:
        return self

    async def __anext__(self) -> int:
        if self.i >= self.n:
            raise StopAsyncIteration
        self.i += 1
        await Ready(("tick", self.i))
        return self.i


def double(x: Any) -> Any:
    return x * 2


def is_odd(x: Any) -> bool:
    return bool(x % 2)


def f3(a: Any, b: Any, c: Any) -> tuple[Any, Any, Any]:
    return (a, b, c)


def kw(a: Any, *, b: Any = None, c: Any = None) -> tuple[Any, Any, Any]:
    return (a, b, c)


square = lambda x: x * x  # noqa: E731 (a module-level lambda has no importable name)


class Counter:
    """A callable for ``iter(callable, sentinel)``."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> int:
        self.n += 1
        return self.n


# -- loops over every builtin iterator kind ---------------------------------


def loop_range(n):
    for i in range(n):  # noqa: UP028 (the for-loop iterator is what is being tested)
        yield i


def loop_long_range():
    for i in range(2**64, 2**64 + 10):  # noqa: UP028 (longrange_iterator)
        yield i


def loop_stepped_range():
    for i in range(100, -100, -7):  # noqa: UP028
        yield i


def loop_sequences():
    for x in [10, 20, 30]:
        got = yield ("list", x)
        note(got)
    for t in (1, "two", 3.0):
        yield ("tuple", t)
    for ch in "ab":
        yield ("str", ch)
    for ch in "\u20ac\u00e9":
        yield ("unicode", ch)
    for b in b"xy":
        yield ("bytes", b)
    for b in bytearray(b"pq"):
        yield ("bytearray", b)


def loop_dicts():
    d = {"k1": 1, "k2": 2, 3: "three"}
    for k in d:
        yield ("keys", k)
    for v in d.values():
        yield ("values", v)
    for k, v in d.items():
        yield ("items", k, v)
    for k in reversed(d):
        yield ("reversed keys", k)


def loop_wrappers():
    for i, x in enumerate(["p", "q", "r"], 5):
        yield ("enumerate", i, x)
    for a, b in zip([1, 2], "xy"):  # noqa: B905
        yield ("zip", a, b)
    for x in reversed([7, 8, 9]):
        yield ("reversed", x)
    for x in reversed(range(3)):
        yield ("reversed range", x)
    for x in map(double, [1, 2, 3]):
        yield ("map", x)
    for x in filter(is_odd, [1, 2, 3, 4, 5]):
        yield ("filter", x)
    for x in iter(Counter(), 3):
        yield ("callable_iterator", x)


def loop_sets():
    for x in {1, 2, 3}:
        yield ("set", x)
    for x in frozenset({(1, 2), 3.5}):
        yield ("frozenset", x)


def loop_itertools():
    for x in itertools.count(10, 5):
        if x > 30:
            break
        yield ("count", x)
    for x in itertools.islice([1, 2, 3, 4, 5, 6], 1, 5, 2):
        yield ("islice", x)
    for x in itertools.chain([1], (2,)):
        yield ("chain", x)


def is_small(x: Any) -> bool:
    return x < 4


def loop_builtin_iterators():
    """Every builtin iterator corosnap stores with its position (tags 64-89).
    Infinite ones are cut by a counter, not by islice: a mutated islice
    position over an endless input would make one next() endless (data, not
    corosnap: see the rule at the top)."""
    nums = [3, 1, 4, 1, 5, 9, 2, 6]
    n = 0
    for x in itertools.count(7, 3):
        n += 1
        if n > 2:
            break
        yield ("count", x)
    for x in itertools.repeat("r", 2):
        yield ("repeat", x)
    n = 0
    for x in itertools.cycle("ab"):
        n += 1
        if n > 3:
            break
        yield ("cycle", x)
    for x in itertools.islice(nums, 1, 7, 2):
        yield ("islice", x)
    for x in itertools.chain(nums[:2], "xy"):
        yield ("chain", x)
    for x in itertools.chain.from_iterable([[1], (2, 3)]):
        yield ("chain.from_iterable", x)
    for x in itertools.zip_longest([1], "ab", fillvalue=0):
        yield ("zip_longest", x)
    for x in itertools.accumulate(nums[:3], initial=1):
        yield ("accumulate", x)
    for x in itertools.pairwise(nums[:3]):
        yield ("pairwise", x)
    batched = getattr(itertools, "batched", None)
    if batched is not None:
        for x in batched(nums[:5], 2):
            yield ("batched", x)
    for x in itertools.compress(nums, [1, 0, 1]):
        yield ("compress", x)
    for x in itertools.dropwhile(is_small, nums[3:]):
        yield ("dropwhile", x)
    for x in itertools.takewhile(is_small, nums):
        yield ("takewhile", x)
    for x in itertools.filterfalse(is_odd, nums[:4]):
        yield ("filterfalse", x)
    for x in itertools.starmap(f3, [(1, 2, 3), (4, 5, 6)]):
        yield ("starmap", x)
    a, b = itertools.tee(nums[:3])
    for x in a:
        yield ("tee", x, next(b))
    for k, group in itertools.groupby("aabbbc"):
        for x in group:
            yield ("groupby", k, x)
    for x in itertools.product("ab", range(2)):
        yield ("product", x)
    for x in itertools.permutations("abc", 2):
        yield ("permutations", x)
    for x in itertools.combinations(nums[:4], 2):
        yield ("combinations", x)
    for x in itertools.combinations_with_replacement("ab", 2):
        yield ("cwr", x)
    for x in reversed(("p", "q")):
        yield ("reversed", x)


def loop_generator():
    for x in loop_range(3):
        yield ("inner", x)


def loop_nested(n):
    for i in range(n):  # noqa: UP028
        for j in [i, i + 1]:
            for k in "xy":
                got = yield (i, j, k)
                if got == "stop":
                    return (i, j, k)
    return None


def loop_while():
    n = 0
    while n < 5:
        got = yield n
        n += 1 if got is None else 2
    return n


def loop_genexpr(n):
    squares = (i * i for i in range(n))
    for s in squares:  # noqa: UP028 (FOR_ITER over a generator expression)
        yield s


def delegate_genexpr(n):
    total = yield from (i * 10 for i in range(n))
    return total


def unstarted_genexpr_holder(n):
    g = (i + 1 for i in [n, n + 1, n + 2])
    got = yield "ready"
    yield g, got


# -- yield from chains ------------------------------------------------------


def leaf_gen(k):
    x = yield ("leaf", k)
    y = yield ("leaf again", x)
    return (x, y)


def mid_gen(k):
    a = yield from leaf_gen(k)
    b = yield from leaf_gen(k + 1)
    return (a, b)


def top_gen(k):
    r = yield from mid_gen(k)
    yield ("top", r)
    return r


def recursive_chain(depth):
    if depth == 0:
        return (yield "bottom")
    got = yield from recursive_chain(depth - 1)
    return (got, depth)


def delegate_to_iterator():
    yield from [1, 2, 3]
    yield from iter("ab")
    yield from range(2)


# -- coroutine chains over a custom awaitable --------------------------------


async def leaf_coro(v):
    got = await Ready(v)
    return got


async def mid_coro(v):
    a = await leaf_coro(v)
    b = await leaf_coro(a)
    return (a, b)


async def top_coro(v):
    r = await mid_coro(v)
    s = await Ready(("after", r))
    return (r, s)


async def coro_loop(n):
    out = []
    for i in range(n):  # noqa: UP028
        out.append(await Ready(i))
    return out


async def coro_async_with():
    async with AsyncResource("a") as r:
        got = await Ready(("inside", r.name))
        if got == "raise":
            raise KeyError(got)
    return got


async def coro_aexit_on_error():
    """Suspends inside ``__aexit__`` while an exception propagates: the frame's
    value stack then holds the instruction offset RERAISE jumps back to."""
    try:
        async with AsyncResource("b"):
            await Ready("body")
            raise ValueError("propagates through __aexit__")
    except ValueError as exc:
        got = await Ready(("caught", str(exc)))
        return got
    return None


async def coro_async_for():
    seen = []
    async for i in Ticker(3):
        seen.append(await Ready(("body", i)))
    return seen


async def coro_in_except():
    try:
        raise LookupError("pending")
    except LookupError as exc:
        got = await Ready(("handling", exc.args))
        return got


async def coro_gather_like():
    results = []
    for aw in [leaf_coro(1), leaf_coro(2)]:
        results.append(await aw)
    return results


async def coro_comprehensions(keys):
    """Comprehensions that await: each is a coroutine of its own (3.11) that the
    outer frame awaits, looping over its ".0" argument and building a list, set
    or dict on its value stack."""
    lst = [await Ready(("list", k)) for k in keys]
    st = {await Ready(("set", k)) for k in keys}
    dct = {k: await Ready(("dict", k)) for k in keys}
    nested = [[await Ready(("nested", a, b)) for b in keys] for a in keys[:1]]
    return lst, st, dct, nested


async def coro_async_with_in_async_for():
    total = []
    async for i in Ticker(2):
        async with AsyncResource(f"r{i}"):
            total.append(await Ready(("deep", i)))
    return total


# -- async generators: at a yield, in flight, and their awaitables -----------


async def agen_ticks(n):
    """Awaits inside, then yields: each __anext__ is in flight across the await."""
    try:
        for i in range(n):  # noqa: UP028
            got = await Ready(("agen", i))
            sent = yield (i, got)
            note(("agen sent", sent))
    finally:
        note("agen finally")


async def agen_nested(n):
    """async for over another async generator, async with and an await chain."""
    async with AsyncResource("ag"):
        async for i, got in agen_ticks(n):
            r = await mid_coro(i)
            yield (got, r)


async def coro_agen_async_for(n):
    out = []
    async for item in agen_nested(n):
        out.append(item)
    return out


async def coro_agen_manual():
    """__anext__ / asend / athrow / aclose driven by hand, awaitables in locals."""
    ag = agen_ticks(3)
    first = await ag.__anext__()
    pending = ag.asend("hello")
    second = await pending
    thrower = ag.athrow(KeyError("k"))
    try:
        await thrower
    except KeyError as exc:
        note(("thrown", exc.args))
    closing = ag.aclose()
    await closing
    return (first, second, ag.ag_running)


async def agen_awaits_in_finally():
    try:
        yield 1
        yield 2
    finally:
        got = await Ready("closing")
        note(("closed after", got))


async def coro_anext_default(n):
    """anext(ag, default): an anext_awaitable wrapping the __anext__ in flight."""
    ag = agen_ticks(n)
    out = []
    for _ in range(3):  # not n + 1: past the generator's end nothing suspends
        out.append(await anext(ag, "end"))
    return out


async def coro_agen_aclose_in_flight():
    ag = agen_awaits_in_finally()
    await ag.__anext__()
    await ag.aclose()
    return "closed"


async def agen_catches():
    n = 0
    while n < 300:
        try:
            yield n
        except KeyError:
            n += 100 + (await Ready("caught") or 0)
        n += 1


async def coro_agen_athrow_in_flight():
    ag = agen_catches()
    await ag.__anext__()
    return await ag.athrow(KeyError("k"))


async def coro_wrapper_local():
    w = leaf_coro(3).__await__()
    first = w.send(None)
    got = await Ready(("wrapped", first))
    try:
        w.send(got)
    except StopIteration as stop:
        return stop.value
    return None


def gen_yield_from_wrapper():
    return (yield from leaf_coro(4).__await__())


def gen_inner_types_coroutine():
    """types.coroutine inside a function: a flagged copy of the nested code."""
    import types

    @types.coroutine
    def step(k):
        return (yield ("step", k))

    return step(1)


async def coro_awaits_inner_types_coroutine():
    a = await gen_inner_types_coroutine()
    return a


def _started_agen(n: int) -> Any:
    ag = agen_ticks(n)
    step = ag.__anext__()
    try:
        step.send(None)
        step.send("s")
    except StopIteration:
        pass
    return ag


# -- closures, nonlocal, nested code ----------------------------------------


def closure_counter():
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


def closure_inner_generator(base):
    def inner(k):
        for i in range(k):  # noqa: UP028
            yield base + i

    got = yield from inner(3)
    yield got


def closure_two_levels():
    x = [1]

    def outer():
        y = [2]

        def innermost():
            x.append(len(y))
            got = yield (x, y)
            yield got

        return innermost()

    yield from outer()


def lambda_generator_holder():
    inner = lambda y: ((yield y), (yield y + 1))  # noqa: E731
    got = yield from inner(1)
    yield got


def match_with_yield(subject):
    match subject:
        case [a, b] if (yield ("guard", a)):
            got = yield ("sequence", a, b)
        case {"k": v} if (yield ("mapping guard", v)):
            got = yield ("mapping", v)
        case Point(x=x) if (yield ("class guard", x)):
            got = yield ("class", x)
        case _:
            got = yield "default"
    return got


def cell_argument(a):
    def read():
        return a

    got = yield read()
    a = got
    yield read()


# -- with blocks, except, finally -------------------------------------------


def with_block():
    with Resource("outer"):
        got = yield "in outer"
        with Resource("inner") as r:
            got = yield ("in inner", r.name, got)
    yield ("after", got)


def with_suppress():
    with Suppress():
        yield "in suppress"
        raise RuntimeError("swallowed")
    yield "after"


def in_except():
    try:
        raise KeyError("boom")
    except KeyError as exc:
        seen = yield ("handling", exc.args)
        yield seen
        raise


def nested_except():
    try:
        raise KeyError("outer")
    except KeyError:
        try:
            raise ValueError("inner")
        except ValueError as e:
            got = yield ("inner handler", str(e))
            note(got)
        yield "back in outer handler"


def in_finally_normal():
    try:
        got = yield "in try"
    finally:
        got2 = yield "in finally"
        note(got2)
    return got


def in_finally_error():
    try:
        raise ValueError("pending")
    finally:
        got = yield "in finally during an error"
        note(got)


def in_except_star():
    try:
        raise ExceptionGroup("eg", [ValueError(1), KeyError(2)])
    except* ValueError as eg:
        got = yield ("value errors", len(eg.exceptions))
        note(got)
    except* KeyError:
        got = yield "key errors"
        note(got)


def try_in_loop():
    for i in range(3):  # noqa: UP028
        try:
            got = yield i
            if got == "raise":
                raise ValueError(i)
        except ValueError:
            yield ("caught", i)
        finally:
            note(("finally", i))


# -- half-evaluated expressions ---------------------------------------------


def half_evaluated(a, c):
    r1 = f3(a, (yield "arg"), c)
    r2 = a + (yield "binop")
    r3 = f"{a}-{(yield 'fstring')}-{c!r:>5}"
    r4 = [a, (yield "list"), c]
    r5 = {"a": a, "b": (yield "dict")}
    r6 = kw(a, b=(yield "kwarg"), c=c)
    r7 = (a, (yield "tuple"))
    return r1, r2, r3, r4, r5, r6, r7


def displays(a, s, d):
    lst = [*a, (yield "list")]
    st = {*s, *(yield "set")}
    dd = {**d, "k": (yield "dict merge")}
    call = f3(*a[:2], (yield "star call"))
    return lst, st, dd, call


def method_call(obj):
    out = obj.append((yield "method arg"))
    got = yield out
    return got


def null_method_calls():
    """LOAD_METHOD pushes NULL + the attribute when it is not a plain method (a module
    attribute, a classmethod, a callable instance attribute): the NULL stays on the
    stack across the yield in the arguments."""
    m = decimal
    a = m.Decimal((yield "module attribute through a local"))
    b = datetime.date.fromordinal((yield "classmethod"))
    return a, b


def attribute_and_subscript(p):
    p.x = (yield "attr")
    p.y[0] = (yield "subscript")
    return p


# -- rich values -------------------------------------------------------------


def holds(value):
    got = yield "ready"
    yield value, got


def rich_locals():
    point = Point(1, [2, 3])
    frozen = Frozen("f", frozenset({1, 2}))
    color = Color.BLUE
    flags = Flags.A | Flags.B
    when = datetime.datetime(2024, 2, 29, 12, 30, 15, 123456)
    day = datetime.date(1999, 12, 31)
    delta = datetime.timedelta(days=-3, seconds=7)
    tz = datetime.timezone(datetime.timedelta(hours=5, minutes=30))
    aware = datetime.datetime(2020, 1, 1, tzinfo=tz)
    money = decimal.Decimal("-12345.678900")
    big = 2**200 + 1
    negbig = -(3**150)
    edge = [2**63 - 1, -(2**63), 2**64 - 1, 2**64, -(2**63) - 1]
    floats = [float("inf"), -0.0, 1e308, float("nan")]
    cplx = complex(1.5, -2.5)
    raw = bytearray(b"\x00\xff")
    sets = ({1, 2, 3}, frozenset({(1, 2), 7}))
    nested = {"a": {"b": {"c": [1, {"d": (2, 3)}]}}, 1: None, (1, 2): "tuple key"}
    records = [{"id": i, "name": f"n{i}"} for i in range(3)]
    slotted = Slotted(1, [2])
    rng = range(3, 30, 4)
    fn = double
    lam = square
    cls = Point
    mod = decimal
    got = yield "ready"
    yield (point, frozen, color, flags, when, day, delta, aware, money, big, negbig, edge,
           floats, cplx, raw, sets, nested, records, slotted, rng, fn, lam, cls, mod, got)


def cycles():
    a = [1]
    a.append(a)
    d = {}
    d["self"] = d
    t = (a, d)
    s = Point(0, a)
    yield "ready"
    yield a[1] is a, d["self"] is d, t[0] is a, s.y is a


def aliasing():
    a = [1, 2, 3]
    b = a
    it = iter(a)
    d = {"list": a, "it": it}
    next(it)
    yield a
    a.append(4)
    yield b is a, d["list"] is a, next(it)


def self_referencing():
    me = yield "ready"
    yield me


def many_locals():
    v0, v1, v2, v3, v4, v5, v6, v7 = range(8)
    u0 = u1 = u2 = None
    del u1
    got = yield (v0, v7)
    yield v1 + v2 + v3 + v4 + v5 + v6, u0, u2, got


def uses_callables():
    """Values built by safe mode's vetted callables and native codecs (partials,
    a partial of a partial, a callable iterator, zip/enumerate over iterators,
    slices, dict views, bound methods, cells), used again after the resume:
    called, advanced, hashed, measured."""
    inc = functools.partial(f3, 1)
    inc.tag = "kept"  # a partial with a __dict__ is not flattened into the next one
    twice = functools.partial(inc, 2)
    # Without arguments or keywords, CPython calls a partial's func through
    # vectorcall with a fixed-size argument array: nothing but the C stack grows.
    plain = functools.partial(double)
    plain.tag = "plain"
    outer = functools.partial(plain)
    calls = iter(functools.partial(double, 2), 99)
    pairs = zip(iter([1, 2, 3]), enumerate("abc", 1), strict=False)
    back = reversed([4, 5, 6])
    cut = slice(1, (2, 3), None)
    table = {"a": 1, "b": 2}
    view = table.items()
    keys = iter(table)
    box = [0]
    push = box.append
    shared = [twice]

    def reach():
        return shared[0]
    got = yield "ready"
    push(got)
    yield (twice(3), reach()(4), outer(5), next(calls), next(pairs), next(back), cut.stop,
           len(view), next(keys), box[-1], inc.tag)


# -- signatures, methods, unstarted generators ------------------------------


def signature(a, b=2, *args, c, d=4, **kwargs):
    yield a, b, args, c, d, kwargs
    yield a, kwargs


class Widget:
    def __init__(self, name: str) -> None:
        self.name = name

    def method(self, n):
        for i in range(n):  # noqa: UP028
            yield f"{self.name}:{i}"

    @staticmethod
    def static(n):
        for i in range(n):  # noqa: UP028
            yield -i

    @classmethod
    def klass(cls, n):
        for i in range(n):  # noqa: UP028
            yield cls.__name__, i

    async def amethod(self, v):
        return await Ready((self.name, v))


def unstarted(a, b=1):
    yield a + b


async def unstarted_coro(x, *, y=2):
    return await Ready(x + y)


# -- the scenario table ------------------------------------------------------

Step = tuple[str, Any]
"""("send", value) or ("throw", exception instance)."""


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    make: Callable[[], Any]
    steps: tuple[Step, ...]


def _sends(*values: Any) -> tuple[Step, ...]:
    return tuple(("send", v) for v in values)


_N = (None,) * 12

SCENARIOS: tuple[Scenario, ...] = (
    Scenario("loop_range", lambda: loop_range(6), _sends(*_N[:5])),
    Scenario("loop_long_range", loop_long_range, _sends(*_N[:3])),
    Scenario("loop_stepped_range", loop_stepped_range, _sends(*_N[:3])),
    Scenario("loop_sequences", loop_sequences, _sends(None, "a", "b", *_N)),
    Scenario("loop_dicts", loop_dicts, _sends(*_N)),
    Scenario("loop_wrappers", loop_wrappers, _sends(*_N, *_N[:6])),
    Scenario("loop_sets", loop_sets, _sends(*_N[:6])),
    Scenario("loop_itertools", loop_itertools, _sends(*_N[:8])),
    Scenario("loop_builtin_iterators", loop_builtin_iterators, _sends(*(None,) * 64)),
    Scenario("loop_generator", loop_generator, _sends(*_N[:3])),
    Scenario("loop_nested", lambda: loop_nested(2), _sends(None, 1, 2, 3, 4)),
    Scenario("loop_while", loop_while, _sends(None, 1, None, 2)),
    Scenario("loop_genexpr", lambda: loop_genexpr(4), _sends(*_N[:4])),
    Scenario("delegate_genexpr", lambda: delegate_genexpr(4), _sends(*_N[:4])),
    Scenario("unstarted_genexpr_holder", lambda: unstarted_genexpr_holder(3), _sends(None)),
    Scenario("top_gen", lambda: top_gen(1), _sends(None, "x", "y", "z", "w")),
    Scenario("recursive_chain", lambda: recursive_chain(4), _sends(None)),
    Scenario("delegate_to_iterator", delegate_to_iterator, _sends(*_N[:7])),
    Scenario("top_coro", lambda: top_coro(1), _sends(None, 2, 3)),
    Scenario("coro_loop", lambda: coro_loop(3), _sends(None, "a", "b")),
    Scenario("coro_async_with", coro_async_with, _sends(None, None, "x")),
    Scenario("coro_async_with_raise", coro_async_with, _sends(None, None, "raise")),
    Scenario("coro_aexit_on_error", coro_aexit_on_error, _sends(None, None, None, None)),
    Scenario("coro_async_for", coro_async_for, _sends(*_N[:6])),
    Scenario("coro_in_except", coro_in_except, _sends(None)),
    Scenario("coro_gather_like", coro_gather_like, _sends(None, 1)),
    Scenario("amethod", lambda: Widget("w").amethod(3), _sends(None)),
    Scenario("unstarted_coro", lambda: unstarted_coro(1, y=5), ()),
    Scenario("coro_comprehensions", lambda: coro_comprehensions([1, 2]), _sends(*_N[:9])),
    Scenario("coro_async_with_in_async_for", coro_async_with_in_async_for,
             _sends(*_N[:8])),
    Scenario("coro_agen_async_for", lambda: coro_agen_async_for(2), _sends(*_N[:12])),
    Scenario("coro_agen_manual", coro_agen_manual, _sends(*_N[:6])),
    Scenario("coro_anext_default", lambda: coro_anext_default(2), _sends(*_N[:3])),
    Scenario("coro_agen_aclose_in_flight", coro_agen_aclose_in_flight, _sends(None, "x")),
    Scenario("coro_agen_athrow_in_flight", coro_agen_athrow_in_flight, _sends(None, 5)),
    Scenario("coro_wrapper_local", coro_wrapper_local, _sends(None, 1)),
    Scenario("gen_yield_from_wrapper", gen_yield_from_wrapper, _sends(None, 1)),
    Scenario("gen_inner_types_coroutine", gen_inner_types_coroutine, _sends(None, 1)),
    Scenario("coro_awaits_inner_types_coroutine", coro_awaits_inner_types_coroutine,
             _sends(None, 1)),
    Scenario("holds_async_generator", lambda: holds((agen_ticks(2), _started_agen(3))),
             _sends(None)),
    Scenario("lambda_generator_holder", lambda_generator_holder, _sends(None, 1, 2)),
    Scenario("match_sequence", lambda: match_with_yield([1, 2]), _sends(None, True, 3)),
    Scenario("match_fallthrough", lambda: match_with_yield({"k": 5}), _sends(None, True, 1)),
    Scenario("match_class", lambda: match_with_yield(Point(1, [])), _sends(None, True, 1)),
    Scenario("closure_counter", closure_counter, _sends(None, 3, None, 5)),
    Scenario("closure_inner_generator", lambda: closure_inner_generator(10), _sends(*_N[:3])),
    Scenario("closure_two_levels", closure_two_levels, _sends(None)),
    Scenario("cell_argument", lambda: cell_argument([1]), _sends(None)),
    Scenario("with_block", with_block, _sends(None, "g1")),
    Scenario("with_suppress", with_suppress, _sends(None)),
    Scenario("with_throw", with_block, (("send", None), ("throw", KeyError("thrown")))),
    Scenario("in_except", in_except, _sends(None, "seen")),
    Scenario("nested_except", nested_except, _sends(None, "x")),
    Scenario("in_finally_normal", in_finally_normal, _sends(None, "t")),
    Scenario("in_finally_error", in_finally_error, _sends(None)),
    Scenario("in_except_star", in_except_star, _sends(None, "v")),
    Scenario("try_in_loop", try_in_loop, _sends(None, "raise", None, None)),
    Scenario("half_evaluated", lambda: half_evaluated(1, 3), _sends(None, 2, 3, 4, 5, 6, 7)),
    Scenario("displays", lambda: displays([1, 2], {3}, {"d": 4}), _sends(None, 5, [6], 7)),
    Scenario("method_call", lambda: method_call([0]), _sends(None, 1)),
    Scenario("null_method_calls", null_method_calls, _sends(None, "1.5", 700000)),
    Scenario("attribute_and_subscript", lambda: attribute_and_subscript(Point(1, [2])),
             _sends(None, 3)),
    Scenario("uses_callables", uses_callables, _sends(None, "pushed", None)),
    Scenario("holds_partial", lambda: holds(functools.partial(kw, 1, b=2)), _sends(None)),
    Scenario("holds_dataclass", lambda: holds(Point(1, [2])), _sends(None)),
    Scenario("holds_enum", lambda: holds([Color.RED, Flags.B]), _sends(None)),
    Scenario("holds_nested", lambda: holds({"a": [{"b": {1, 2}}, (3, frozenset({4}))]}),
             _sends(None)),
    Scenario("holds_function", lambda: holds((double, square, Point, Widget.static)),
             _sends(None)),
    Scenario("holds_generator", lambda: holds(loop_range(3)), _sends(None)),
    Scenario("holds_started_generator", lambda: holds(_started(loop_range(4), 2)),
             _sends(None)),
    Scenario("holds_coroutine", lambda: holds(_started_coro(leaf_coro(5))), _sends(None)),
    Scenario("rich_locals", rich_locals, _sends(None)),
    Scenario("cycles", cycles, _sends(None)),
    Scenario("aliasing", aliasing, _sends(None, None)),
    Scenario("self_referencing", self_referencing, _sends(None)),
    Scenario("many_locals", many_locals, _sends(None)),
    Scenario("signature", lambda: signature(1, 2, 3, c=4, e=5), _sends(None)),
    Scenario("method", lambda: Widget("w").method(3), _sends(*_N[:2])),
    Scenario("static", lambda: Widget.static(3), _sends(*_N[:2])),
    Scenario("klass", lambda: Widget.klass(3), _sends(*_N[:2])),
    Scenario("unstarted", lambda: unstarted(5, b=7), ()),
)


def _started(gen: Any, n: int) -> Any:
    for _ in range(n):
        next(gen)
    return gen


def _started_coro(coro: Any) -> Any:
    coro.send(None)
    return coro


__all__ = ["LOG", "SCENARIOS", "Scenario"]
