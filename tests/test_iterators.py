"""Builtin iterators in snapshots: itertools, map, filter, reversed, iter(callable, sentinel).

Each iterator is captured suspended mid-way (on a for loop's stack, or held in a
local), resumed in another process and compared with an uninterrupted run;
identity survives (tees sharing a buffer, an iterator held by a chain and a
local, tees whose source generator holds them); exhausted iterators stay
exhausted; a blob whose iterator fields are wrong or out of range is refused
with CorruptSnapshot, and random ones never crash the interpreter; safe mode
lets the functions iterators call through only when it would let a blob call
them.  No DeprecationWarning is allowed anywhere (3.12 and 3.13 deprecate
itertools' pickling, which corosnap does not use).
"""

from __future__ import annotations

import itertools as it
import operator
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

import msgpack
import pytest
from msgpack import ExtType

import _driver
import _iter_funcs as fx
import corosnap
from _worker import WorkerClient, _script_step
from corosnap.codec import _iterators
from corosnap.codec._tags import (
    T_GLOBAL,
)
from corosnap.frames import backend

pytestmark = pytest.mark.filterwarnings("error::DeprecationWarning")

MOD = "_iter_funcs"
PY = sys.version_info[:2]
frames = backend()


def tag(kind: int) -> ExtType:
    return ExtType(0, bytes([kind]))


@pytest.fixture(scope="module")
def strict_worker() -> Iterator[WorkerClient]:
    """A worker in which any DeprecationWarning is an error."""
    env = dict(os.environ, PYTHONWARNINGS="error::DeprecationWarning")
    client = WorkerClient(env=env)
    client.ping()
    yield client
    client.close()


def _sends(n: int) -> list[list[Any]]:
    return [["send", None]] * n


def run_here(fn: str, n: int) -> list[str]:
    g = getattr(fx, fn)()
    return [_script_step(g, a) for a in _sends(n)]


XP = [(fn, n, k) for fn, n, cuts in fx.CASES for k in cuts]


@pytest.mark.parametrize(("fn", "n", "k"), XP, ids=[f"{f}-{k}" for f, _, k in XP])
def test_suspended_here_resumed_in_another_process(
        strict_worker: WorkerClient, fixture_dir: str, fn: str, n: int, k: int) -> None:
    want = run_here(fn, n)
    g = getattr(fx, fn)()
    got = [_script_step(g, a) for a in _sends(k)]
    blob = corosnap.dumps(g)
    _driver.discard(g, fx)
    reply = strict_worker.script(fixture_dir, MOD, _sends(n - k), blob=blob)
    assert got + reply["results"] == want


CASES_BACK = [(fn, n, cuts[-1]) for fn, n, cuts in fx.CASES]


@pytest.mark.parametrize(("fn", "n", "k"), CASES_BACK, ids=[f for f, _, _ in CASES_BACK])
def test_suspended_in_another_process_resumed_here(
        strict_worker: WorkerClient, fixture_dir: str, fn: str, n: int, k: int) -> None:
    want = run_here(fn, n)
    reply = strict_worker.script(fixture_dir, MOD, _sends(k), fn=fn, dump=True)
    g = corosnap.loads(reply["blob"])
    assert reply["results"] + [_script_step(g, a) for a in _sends(n - k)] == want


def _buffered(tees: list[Any]) -> int:
    """How many values the tees' shared buffers hold (what CPython keeps)."""
    seen: set[int] = set()
    total = 0
    for t in tees:
        data = frames.iter_read(t)[0]
        while data is not frames.NULL and id(data) not in seen:
            seen.add(id(data))
            fields = frames.iter_read(data)
            total += len(fields) - 2
            data = fields[-2]
    return total


def test_tee_blobs_grow_with_what_the_buffer_holds_and_no_more() -> None:
    g = fx.hamming()
    for _ in range(500):
        next(g)
    blob = corosnap.dumps(g)
    m_res = next(v for v in frames.read(g)[3] if type(v) is type(it.tee(())[0]))
    m1 = frames.iter_read(frames.iter_read(m_res)[0])[-1]  # the buffer's source
    tees = [m_res, *(m1.gi_frame.f_locals[name] for name in ("m2", "m3", "m5"))]
    # 500th Hamming number < 2**32: 5 bytes a value, a few frames around them
    assert len(blob) <= 300 + 5 * _buffered(tees)
    f = fx.fibonacci()
    for _ in range(60):
        next(f)
    assert len(corosnap.dumps(f)) < 250  # the tees lag by two values: nothing piles up


# -- any state, in a local ---------------------------------------------------------

def holder(x: Any) -> Iterator[Any]:
    yield "ready"
    yield _drain(x)


def _drain(x: Any) -> list[Any]:
    out = []
    for v in it.islice(x, 30):
        if type(v).__name__ == "_grouper":
            v = list(v)
        elif type(v) is tuple and len(v) == 2 and type(v[1]).__name__ == "_grouper":
            v = (v[0], list(v[1]))
        out.append(v)
    return out


def adv(x: Any, n: int) -> Any:
    for _ in range(n):
        next(x)
    return x


def _exhaust(x: Any) -> Any:
    for _ in x:
        pass
    return x


STATES: list[tuple[str, Callable[[], Any]]] = [
    ("count", lambda: adv(it.count(5), 3)),
    ("count at maxsize", lambda: adv(it.count(sys.maxsize - 1), 1)),
    ("count slow", lambda: adv(it.count(2**64, 2**62), 2)),
    ("count float step", lambda: it.count(0, 0.5)),
    ("repeat", lambda: adv(it.repeat([1], 5), 2)),
    ("repeat forever", lambda: it.repeat("x")),
    ("repeat done", lambda: _exhaust(it.repeat(1, 2))),
    ("cycle fresh", lambda: it.cycle("abc")),
    ("cycle first pass", lambda: adv(it.cycle("abc"), 2)),
    ("cycle cycling", lambda: adv(it.cycle("abc"), 4)),
    ("cycle of nothing", lambda: _exhaust(it.cycle(()))),
    ("islice", lambda: adv(it.islice(range(100), 3, 90, 9), 2)),
    ("islice open", lambda: adv(it.islice(it.count(), 3, None), 2)),
    ("islice done", lambda: _exhaust(it.islice("abc", 2))),
    ("chain", lambda: adv(it.chain("ab", [1, 2], "c"), 3)),
    ("chain done", lambda: _exhaust(it.chain("ab"))),
    ("zip_longest", lambda: adv(it.zip_longest("ab", range(5), [None], fillvalue=None), 2)),
    ("zip_longest done", lambda: _exhaust(it.zip_longest("a", "bc"))),
    ("accumulate", lambda: adv(it.accumulate([None, None], lambda a, b: (a, b)), 1)),
    ("accumulate initial", lambda: it.accumulate([1, 2], initial=None)),
    ("pairwise", lambda: adv(it.pairwise([None, 1, None, 2]), 1)),
    ("pairwise done", lambda: _exhaust(it.pairwise("ab"))),
    ("compress", lambda: adv(it.compress("abcdef", it.cycle([0, 1])), 1)),
    ("dropwhile", lambda: adv(it.dropwhile(fx.small, range(9)), 1)),
    ("takewhile done", lambda: _exhaust(it.takewhile(fx.small, range(9)))),
    ("filterfalse", lambda: adv(it.filterfalse(None, [0, 1, 0, 2, 0]), 1)),
    ("starmap", lambda: adv(it.starmap(operator.mul, [(1, 2), (3, 4), (5, 6)]), 1)),
    ("tee", lambda: adv(it.tee(range(100), 3)[1], 70)),
    ("groupby", lambda: adv(it.groupby("aabbbc"), 1)),
    ("groupby mid group", lambda: it.groupby("aaab")),
    ("product", lambda: adv(it.product("ab", "cd", repeat=2), 5)),
    ("product done", lambda: _exhaust(it.product("a"))),
    ("product not started", lambda: it.product("ab", "")),
    ("permutations", lambda: adv(it.permutations(range(5)), 17)),
    ("permutations done", lambda: _exhaust(it.permutations("ab"))),
    ("combinations", lambda: adv(it.combinations(range(7), 4), 11)),
    ("combinations none", lambda: it.combinations("ab", 5)),
    ("cwr", lambda: adv(it.combinations_with_replacement(range(3), 4), 6)),
    ("map", lambda: adv(map(operator.add, range(9), range(5, 20)), 2)),
    ("map done", lambda: _exhaust(map(str, "ab"))),
    ("filter", lambda: adv(filter(None, [0, 1, 2, 0, 3]), 1)),
    ("reversed", lambda: adv(reversed(fx.Letters("abcdef")), 2)),
    ("reversed done", lambda: _exhaust(reversed((1, 2)))),
    ("callable_iterator", lambda: adv(iter(fx.Ticker().tick, 9), 3)),
    ("callable_iterator done", lambda: _exhaust(iter(fx.Ticker().tick, 2))),
]
if PY >= (3, 12):
    STATES.append(("batched", lambda: adv(it.batched(range(10), 3), 1)))  # type: ignore[attr-defined]
    STATES.append(("batched done", lambda: _exhaust(it.batched("ab", 3))))  # type: ignore[attr-defined]
if PY >= (3, 13):
    STATES.append(("batched strict", lambda: it.batched(range(10), 3, strict=True)))  # type: ignore[attr-defined]
if PY >= (3, 14):
    STATES.append(("map strict", lambda: map(operator.add, "ab", "cd", strict=True)))  # type: ignore[call-overload]


@pytest.mark.parametrize("make", [m for _, m in STATES], ids=[n for n, _ in STATES])
def test_every_state_round_trips(make: Callable[[], Any]) -> None:
    original, twin = holder(make()), holder(make())
    next(original), next(twin)
    blob = corosnap.dumps(original)
    restored = corosnap.loads(blob)
    assert type(restored.gi_frame.f_locals["x"]) is type(twin.gi_frame.f_locals["x"])
    try:
        want = next(twin)
    except Exception as exc:  # noqa: BLE001 - strict batched/map raise at their end
        with pytest.raises(type(exc)):
            next(restored)
        return
    assert next(restored) == want


def test_exhausted_iterators_are_short() -> None:
    for make in (lambda: it.islice("ab", 1), lambda: it.chain("a"), lambda: it.pairwise("ab"),
                 lambda: it.product("a"), lambda: reversed((1,)), lambda: iter(int, 0)):
        x = make()
        _exhaust(x)
        g = holder(x)
        next(g)
        tree = msgpack.unpackb(corosnap.dumps(g), strict_map_key=False)
        assert tree[-1] == [tag(_iterators.BY_TYPE[type(x)].tag)], type(x)


def test_a_count_is_a_few_bytes() -> None:
    g = holder(adv(it.count(), 1000))
    next(g)
    tree = msgpack.unpackb(corosnap.dumps(g), strict_map_key=False)
    assert msgpack.packb(tree[-1]) == b"\x92\xd4\x00\x40\xcd\x03\xe8"


# -- identity --------------------------------------------------------------------

def pair(a: Any, b: Any) -> Iterator[Any]:
    yield "ready"
    yield (next(a), next(b), next(a))


def test_a_tee_pair_keeps_sharing_its_buffer() -> None:
    a, b = it.tee(iter(range(10)))
    adv(a, 4)
    g = pair(a, b)
    next(g)
    g2 = corosnap.loads(corosnap.dumps(g))
    a2, b2 = g2.gi_frame.f_locals["a"], g2.gi_frame.f_locals["b"]
    assert frames.iter_read(a2)[0] is frames.iter_read(b2)[0]
    assert next(g2) == (4, 0, 5)
    assert list(b2) == list(range(1, 10)) and list(a2) == list(range(6, 10))


def test_an_iterator_held_by_a_chain_and_a_local_stays_one() -> None:
    source = iter(range(10))
    ch = it.chain(source, "z")
    next(ch)
    g = pair(ch, source)
    next(g)
    g2 = corosnap.loads(corosnap.dumps(g))
    assert next(g2) == (1, 2, 3)


def appender(ch: Any, items: list[Any]) -> Iterator[Any]:
    yield "ready"
    items.append(3)
    yield list(ch)


def test_a_chain_over_a_list_sees_later_appends() -> None:
    items = [1, 2]
    ch = it.chain(items)
    next(ch)  # the chain now walks a list iterator over items
    g = appender(ch, items)
    next(g)
    g2 = corosnap.loads(corosnap.dumps(g))
    assert next(g2) == [2, 3]


def groups(gb: Any, grp: Any) -> Iterator[Any]:
    yield "ready"
    first = next(grp)
    key2, grp2 = next(gb)  # grp is no longer the current group
    yield (first, key2, list(grp2), list(grp))


def _groups_at_second_a() -> Iterator[Any]:
    gb = it.groupby("aaabbc")
    _, grp = next(gb)
    next(grp)
    g = groups(gb, grp)
    next(g)
    return g


def test_a_groupby_and_its_current_group() -> None:
    g2 = corosnap.loads(corosnap.dumps(_groups_at_second_a()))
    assert next(g2) == ("a", "b", ["b", "b"], []) == next(_groups_at_second_a())


def test_a_module_level_iterator_is_stored_by_reference() -> None:
    g = fx.over(fx.SHARED_COUNTER)
    next(g)
    tree = msgpack.unpackb(corosnap.dumps(g), strict_map_key=False)
    assert [tag(T_GLOBAL), 0, "SHARED_COUNTER"] in tree  # the module name is string 0


@pytest.mark.parametrize("make", [m for _, m in STATES], ids=[n for n, _ in STATES])
def test_inspect_reads_every_iterator_without_restoring_it(make: Callable[[], Any]) -> None:
    x = make()
    g = holder(x)
    next(g)
    info = corosnap.inspect(corosnap.dumps(g))
    assert info.warnings == []
    (slot,) = info.frames[0].slots
    want = type(x).__name__ if type(x).__module__ == "builtins" else \
        f"itertools.{type(x).__name__}"
    assert slot.type == want
    frame = info.frames[0]
    assert frame.overhead_bytes + sum(s.bytes for s in frame.slots) == frame.bytes


def test_restoring_every_iterator_leaks_nothing() -> None:
    """Every written field's reference is released with the iterator (and the
    fresh iterator's own inert fields when they are replaced): many rounds of
    capture, restore and a step of every state keep traced memory flat."""
    import gc
    import tracemalloc

    blobs = []
    for _, make in STATES:
        g = holder(make())
        next(g)
        blobs.append(corosnap.dumps(g))

    def rounds(n: int) -> None:
        for _ in range(n):
            for blob in blobs:
                g2 = corosnap.loads(blob)
                try:
                    next(g2)
                except Exception:  # noqa: BLE001 - a strict batched/map ends with an error
                    continue
                corosnap.dumps(g2)
                g2.close()

    rounds(20)  # warm caches
    gc.collect()
    tracemalloc.start()
    try:
        rounds(5)
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        rounds(100)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 64 * 1024, f"traced memory grew by {grown} bytes over 100 rounds"
