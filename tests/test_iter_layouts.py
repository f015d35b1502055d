"""The restated iterator structs (frames/_itertools*.h) against the running CPython.

CPython keeps the itertools, map, filter, reversed and callable_iterator
structs private, so the frames layer restates them per version.  These probes
would catch a wrong restatement on any version: the size of every restated
struct must equal the type's ``__basicsize__``; reading objects put in known
states must give exactly those states (every field of every struct is
checked by at least one case, a shifted or resized field reads garbage); on
3.11-3.13, where itertools still pickles (3.12 and 3.13 with a warning the
library never triggers), the state read must agree with the type's own
``__reduce__``; and a state written into a fresh
object must read back the same and continue exactly like the original.
"""

from __future__ import annotations

import itertools as it
import operator
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from corosnap.frames import backend

pytestmark = pytest.mark.filterwarnings("error::DeprecationWarning")

frames = backend()
NULL = frames.NULL
read = frames.iter_read
PY = sys.version_info[:2]

TYPES: dict[str, type] = {
    name: getattr(it, name) for name in (
        "count", "repeat", "cycle", "islice", "chain", "zip_longest", "accumulate",
        "pairwise", "batched", "compress", "dropwhile", "takewhile", "filterfalse",
        "starmap", "_tee", "_tee_dataobject", "groupby", "_grouper", "product",
        "permutations", "combinations", "combinations_with_replacement")
    if hasattr(it, name)
}
TYPES.update(map=map, filter=filter, reversed=reversed,
             callable_iterator=type(iter(int, 0)), range_iterator=type(iter(range(0))),
             list_iterator=type(iter([])), tuple_iterator=type(iter(())))


def test_every_restated_struct_has_the_size_of_its_type() -> None:
    sizes = frames.iter_layouts()
    assert set(sizes) == set(TYPES)
    assert ("batched" in sizes) == (PY >= (3, 12))
    for name, size in sizes.items():
        assert size == TYPES[name].__basicsize__, name


def adv(x: Iterator[Any], n: int) -> Iterator[Any]:
    for _ in range(n):
        next(x)
    return x


# -- reading known states ------------------------------------------------------

def test_count() -> None:
    assert read(adv(it.count(7), 2)) == (9,)
    assert read(it.count(-3)) == (-3,)
    assert read(adv(it.count(2**70, -3), 1)) == (2**70 - 3, -3)
    assert read(adv(it.count(1.5), 1)) == (2.5, 1)
    assert read(it.count(sys.maxsize)) == (sys.maxsize,)


def test_repeat() -> None:
    assert read(adv(it.repeat("x", 3), 1)) == ("x", 2)
    assert read(it.repeat(None)) == (None,)
    r = it.repeat(5, 1)
    list(r)
    assert read(r) == (5, 0)


def test_cycle() -> None:
    src = iter("abc")
    c = it.cycle(src)
    assert read(c) == ([], 0, src)
    assert read(adv(c, 1)) == (["a"], 0, src)
    assert read(adv(c, 3)) == (["a", "b", "c"], 1)  # the input ran out at the 4th
    assert read(adv(c, 1)) == (["a", "b", "c"], 2)


@pytest.mark.skipif(PY >= (3, 14), reason="3.14 removed cycle's firstpass (and __setstate__)")
def test_cycle_after_setstate_does_not_save_again() -> None:
    src = iter("ab")
    c = it.cycle(src)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12, 3.13
        c.__setstate__((["x", "y"], True))
    assert read(c) == (["x", "y"], 0, src, True)
    fresh = it.cycle(())
    frames.iter_write(fresh, read(c))
    assert [next(fresh) for _ in range(5)] == ["a", "b", "x", "y", "x"]


def test_islice() -> None:
    src = iter(range(100))
    s = it.islice(src, 2, 50, 5)
    assert read(s) == (src, 2, 50, 5, 0)
    assert read(adv(s, 2)) == (src, 12, 50, 5, 8)
    assert read(it.islice(src, None)) == (src, 0, -1, 1, 0)
    done = it.islice("ab", 5)
    list(done)
    assert read(done) == ()


def test_chain() -> None:
    a, b = iter([1]), iter([2, 3])
    ch = it.chain(a, b)
    (source,) = read(ch)
    assert type(source) is type(iter(()))
    assert read(adv(ch, 1)) == (source, a)
    assert read(adv(ch, 1)) == (source, b)
    list(ch)
    assert read(ch) == ()
    lazy = it.chain.from_iterable(x for x in [[1]])
    assert type(read(lazy)[0]).__name__ == "generator"


def test_zip_longest() -> None:
    a, b = iter([1]), iter([1, 2, 3])
    z = it.zip_longest(a, b, fillvalue="-")
    assert read(z) == ("-", a, b)
    assert read(adv(z, 2)) == ("-", NULL, b)
    list(z)
    assert read(z) == ("-", NULL, NULL)
    assert read(it.zip_longest()) == (None,)


def test_accumulate() -> None:
    src = iter([1, 2, 3])
    a = it.accumulate(src, operator.mul, initial=10)
    assert read(a) == (src, 10, operator.mul)
    assert read(adv(a, 1)) == (src, None, operator.mul, 10)
    assert read(adv(a, 2)) == (src, None, operator.mul, 20)
    src2 = iter([4, 5])
    plain = it.accumulate(src2)
    assert read(adv(plain, 1)) == (src2, None, None, 4)


def test_pairwise() -> None:
    src = iter("abcd")
    p = it.pairwise(src)
    assert read(p) == (src,)
    assert read(adv(p, 1)) == (src, "b")
    list(p)
    assert read(p) == ()


@pytest.mark.skipif(PY < (3, 12), reason="itertools.batched is 3.12+")
def test_batched() -> None:
    src = iter(range(5))
    b = it.batched(src, 2)  # type: ignore[attr-defined]
    assert read(b) == (src, 2)
    list(b)
    assert read(b) == ()
    if PY >= (3, 13):
        assert read(it.batched(src, 3, strict=True)) == (src, 3, True)  # type: ignore[attr-defined]


def test_compress_and_function_iterators() -> None:
    d, s = iter("ab"), iter([1, 0])
    assert read(it.compress(d, s)) == (d, s)
    src = iter([1, 2, 0, 3])
    dw = it.dropwhile(bool, src)
    assert read(dw) == (bool, src)
    assert read(adv(dw, 1)) == (bool, src, True)
    src = iter([1, 0, 2])
    tw = it.takewhile(bool, src)
    assert read(tw) == (bool, src)
    list(tw)
    assert read(tw) == (bool, src, True)
    assert read(it.filterfalse(None, src)) == (None, src)
    assert read(it.starmap(pow, src)) == (pow, src)
    assert read(filter(bool, src)) == (bool, src)


def test_tee() -> None:
    src = iter(range(100))
    a, b = it.tee(src)
    adv(a, 3)
    data, index = read(a)
    assert index == 3 and read(b) == (data, 0)
    assert read(data) == (0, 1, 2, NULL, src)
    adv(a, 60)  # into a second buffer of 57 cells
    data2, index2 = read(a)
    assert index2 == 63 - 57 and data2 is not data
    assert read(data) == (*range(57), data2, src)
    assert read(data2) == (*range(57, 63), NULL, src)


def test_groupby() -> None:
    src = iter("aabc")
    g = it.groupby(src)
    assert read(g) == (src, None)
    k, grp = next(g)
    assert read(g) == (src, None, "a", "a", "a")
    assert read(grp) == (g, "a", True)
    next(grp)
    assert read(g) == (src, None, "a")
    next(g)
    assert read(grp) == (g, "a")  # no longer the current group
    keyed = it.groupby(src, key=str.upper)
    assert read(keyed)[1] is str.upper


def test_combinatorics() -> None:
    pools = (("a", "b"), ("x", "y", "z"))
    p = it.product(*pools)
    assert read(p) == (pools,)
    assert read(adv(p, 1)) == (pools, 0, 0)
    assert read(adv(p, 1)) == (pools, 0, 1)
    list(p)
    assert read(p) == ()
    assert read(adv(it.product(), 1)) == ()

    c = it.combinations("abcd", 2)
    assert read(c) == (("a", "b", "c", "d"), 2)
    assert read(adv(c, 2)) == (("a", "b", "c", "d"), 2, 0, 2)
    assert read(it.combinations("ab", 3)) == ()

    w = it.combinations_with_replacement("abc", 2)
    assert read(w) == (("a", "b", "c"), 2)
    assert read(adv(w, 2)) == (("a", "b", "c"), 2, 0, 1)

    pe = it.permutations("abc", 2)
    assert read(pe) == (("a", "b", "c"), 2)
    assert read(adv(pe, 1)) == (("a", "b", "c"), 2, 0, 1, 2, 3, 2)
    assert read(adv(pe, 1)) == (("a", "b", "c"), 2, 0, 2, 1, 3, 1)


def test_builtins() -> None:
    a, b = iter([1]), iter([2])
    assert read(map(operator.add, a, b)) == (operator.add, a, b)
    if PY >= (3, 14):
        assert read(map(operator.add, a, b, strict=True)) == (  # type: ignore[call-overload]
            operator.add, True, a, b)
    seq = ("a", "b", "c")
    r = reversed(seq)
    assert read(r) == (seq, 2)
    list(r)
    assert read(r) == ()

    def f() -> int:
        return 1
    ci = iter(f, 0)
    assert read(ci) == (f, 0)
    done = iter(int, 0)
    next(done, None)
    assert read(done) == ()


@pytest.mark.parametrize("args", [(10,), (0,), (5, 100, 3), (-7, 20), (50, -50, -7),
                                  (2**62, 2**62 + 9), (-(2**62), 2**62, 2**61)])
def test_range_iterator_reads_what_its_reduce_says(args: tuple[int, ...]) -> None:
    """range_reduce (read by the C value codec for every `for` loop over a
    range) against the type's own __reduce__, at every position: each field
    of the struct moves as the iterator advances, so a shifted field fails."""
    r = iter(range(*args))
    positions = 0
    while True:  # every position, the exhausted one included
        _, (whole,), consumed = r.__reduce__()
        assert frames.range_reduce(r) == (whole.start, whole.stop, whole.step, consumed)
        positions += 1
        if next(r, None) is None:
            break
    assert positions == len(range(*args)) + 1


def test_range_reduce_takes_only_range_iterators() -> None:
    for obj in (iter(range(2**70)), iter([]), range(3), 1, None):
        assert frames.range_reduce(obj) is None


@pytest.mark.parametrize("seq", [[], [1], [1, "two", 3.0, None], (), (1,), (1, [2], 3, 4, 5),
                                 list(range(100))])
def test_list_and_tuple_iterators_read_what_their_reduce_says(seq: Any) -> None:
    """seqiter_reduce (read by the C value codec for every list or tuple
    iterator) against the type's own __reduce__ at every position: the very
    sequence and the index while it runs; nothing once exhausted (the reduce
    then makes a fresh empty sequence, which the codec asks for itself)."""
    i = iter(seq)
    positions = 0
    while True:  # every position, the exhausted one included
        reduced = i.__reduce__()
        if len(reduced) == 3:
            _, (whole,), index = reduced
            got = frames.seqiter_reduce(i)
            assert got is not None and got[0] is whole is seq and got[1] == index
        else:
            assert frames.seqiter_reduce(i) is None
        positions += 1
        if next(i, StopIteration) is StopIteration:
            break
    assert positions == len(seq) + 1
    assert frames.seqiter_reduce(i) is None  # exhausted for good


@pytest.mark.parametrize("seq", [[1, 2, 3], (1, 2, 3)])
@pytest.mark.parametrize("state", [-5, -1, 0, 2, 3, 10])
def test_an_iterator_set_to_any_position_reads_as_its_reduce(seq: Any, state: int) -> None:
    """__setstate__ clamps; on 3.13+ a negative one leaves a list iterator
    marked exhausted (index -1) with its list still set, which its reduce
    gives as a fresh empty list: seqiter_reduce must say nothing then."""
    i = iter(seq)
    i.__setstate__(state)  # type: ignore[attr-defined]
    reduced = i.__reduce__()
    if len(reduced) == 3:
        assert frames.seqiter_reduce(i) == (reduced[1][0], reduced[2])
    else:
        assert frames.seqiter_reduce(i) is None


def test_a_list_iterator_past_a_shrunk_list_reads_as_its_reduce() -> None:
    items = [1, 2, 3]
    i = iter(items)
    next(i), next(i)
    items.clear()  # the index now points past the end; the reduce still says it
    _, (whole,), index = i.__reduce__()
    assert frames.seqiter_reduce(i) == (whole, index) and index == 2


def test_seqiter_reduce_takes_only_list_and_tuple_iterators() -> None:
    class L(list):
        pass

    for obj in (iter(range(3)), iter({}), iter("ab"), [1], (1,), reversed([1]), 1, None):
        assert frames.seqiter_reduce(obj) is None
    assert frames.seqiter_reduce(iter(L([1]))) == (L([1]), 0)  # a list iterator all the same


def test_other_types_are_refused() -> None:
    for obj in (iter([]), 1, it.count, type("Sub", (it.count,), {})()):
        with pytest.raises(TypeError, match="not a builtin iterator"):
            read(obj)


# -- the state 3.11 pickles ----------------------------------------------------

def _reduce_311(obj: Any) -> tuple[Any, ...]:
    """Our fields, computed from the type's own __reduce__ (3.11-3.13; 3.12 and
    3.13 deprecate it, which is why corosnap itself never calls it)."""
    rv = obj.__reduce__()
    name = type(obj).__name__
    args = rv[1]
    state = rv[2] if len(rv) > 2 else None
    if name in ("count", "repeat"):
        return args  # type: ignore[no-any-return]
    if name == "islice":
        return (*args, state)
    if name == "chain":
        return state or ()  # type: ignore[no-any-return]
    if name == "zip_longest":
        return (state, *args)
    if name in ("dropwhile", "takewhile"):
        return (*args, True) if state else args
    if name == "_tee":
        return state  # type: ignore[no-any-return]
    if name == "_tee_dataobject":
        source, values, link = args
        return (*values, NULL if link is None else link, source)
    if name == "groupby":
        return (*args, state[2], *state[:2]) if state else args
    if name == "_grouper":
        return (*args, True)  # only the current grouper reduces to itself
    if name == "product":
        return (args, *state) if state else (args,)
    if name in ("combinations", "combinations_with_replacement"):
        return (*args, *state) if state else args
    if name == "permutations":
        return (*args, *state[0], *state[1]) if state else args
    raise AssertionError(name)


STATES: list[tuple[str, Callable[[], Any]]] = [
    ("count", lambda: adv(it.count(3), 2)),
    ("count slow", lambda: adv(it.count(1.5, 2), 2)),
    ("repeat", lambda: adv(it.repeat("x", 4), 1)),
    ("repeat forever", lambda: it.repeat("x")),
    ("islice", lambda: adv(it.islice(iter(range(100)), 2, 50, 5), 2)),
    ("chain", lambda: adv(it.chain([1], [2, 3]), 2)),
    ("zip_longest", lambda: adv(it.zip_longest([1, 2], "abcd", fillvalue=0), 1)),
    ("dropwhile", lambda: adv(it.dropwhile(bool, [1, 0, 3]), 1)),
    ("takewhile", lambda: it.takewhile(bool, [1, 0, 3])),
    ("tee", lambda: adv(it.tee(iter(range(9)))[0], 4)),
    ("tee data", lambda: read(adv(it.tee(iter(range(9)))[0], 4))[0]),
    ("groupby", lambda: adv(it.groupby("aabbb"), 1)),
    ("grouper", lambda: next(it.groupby("aab"))[1]),
    ("product", lambda: adv(it.product("ab", "xyz"), 2)),
    ("combinations", lambda: adv(it.combinations("abcd", 2), 1)),
    ("cwr", lambda: adv(it.combinations_with_replacement("abc", 2), 2)),
    ("permutations", lambda: adv(it.permutations("abcd", 2), 3)),
]


@pytest.mark.skipif(PY >= (3, 14), reason="3.14 removed the pickling of itertools")
@pytest.mark.parametrize("make", [m for _, m in STATES], ids=[n for n, _ in STATES])
def test_read_agrees_with_the_pickled_state(make: Callable[[], Any]) -> None:
    obj = make()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12, 3.13
        pickled = _reduce_311(obj)
    assert read(obj) == pickled


# -- writing -------------------------------------------------------------------

INERT: dict[str, Callable[[], Any]] = {
    "count": it.count, "repeat": lambda: it.repeat(None, 0), "cycle": lambda: it.cycle(()),
    "islice": lambda: it.islice((), 0), "chain": it.chain, "zip_longest": it.zip_longest,
    "accumulate": lambda: it.accumulate(()), "pairwise": lambda: it.pairwise(()),
    "compress": lambda: it.compress((), ()), "dropwhile": lambda: it.dropwhile(None, ()),
    "takewhile": lambda: it.takewhile(None, ()), "filterfalse": lambda: it.filterfalse(None, ()),
    "starmap": lambda: it.starmap(None, ()), "_tee": lambda: it._tee(()),  # type: ignore[attr-defined]
    "groupby": lambda: it.groupby(()),
    "_grouper": lambda: it._grouper(it.groupby(()), None),  # type: ignore[attr-defined]
    "product": it.product, "permutations": lambda: it.permutations((), 0),
    "combinations": lambda: it.combinations((), 0),
    "combinations_with_replacement": lambda: it.combinations_with_replacement((), 0),
    "map": lambda: map(None, ()), "filter": lambda: filter(None, ()),
    "reversed": lambda: reversed(()), "callable_iterator": lambda: iter(int, 0),
    "batched": lambda: it.batched((), 1),  # type: ignore[attr-defined]
}


def _fresh(i: int) -> Iterator[int]:
    return iter(range(i, i + 40))


# Two identical iterators in the same state: one is read and written into a
# fresh object, the other shows what must come next.
TWINS: list[tuple[str, Callable[[], Any]]] = [
    ("count", lambda: adv(it.count(5), 3)),
    ("count slow", lambda: adv(it.count(0.5, 0.25), 3)),
    ("repeat", lambda: adv(it.repeat("r", 5), 2)),
    ("cycle first pass", lambda: adv(it.cycle("abc"), 2)),
    ("cycle cycling", lambda: adv(it.cycle("abc"), 5)),
    ("islice", lambda: adv(it.islice(_fresh(0), 1, 30, 4), 2)),
    ("islice done", lambda: adv(it.islice("ab", 1), 1)),
    ("chain", lambda: adv(it.chain("ab", _fresh(3), "cd"), 3)),
    ("zip_longest", lambda: adv(it.zip_longest("ab", _fresh(1), fillvalue="-"), 3)),
    ("accumulate", lambda: adv(it.accumulate(_fresh(1), operator.mul, initial=2), 3)),
    ("accumulate fresh", lambda: it.accumulate(_fresh(1), initial=9)),
    ("pairwise", lambda: adv(it.pairwise(_fresh(0)), 2)),
    ("compress", lambda: adv(it.compress(_fresh(0), it.cycle([1, 0, 1])), 2)),
    ("dropwhile", lambda: adv(it.dropwhile(lambda x: x < 5, _fresh(0)), 1)),
    ("takewhile", lambda: adv(it.takewhile(lambda x: x < 9, _fresh(0)), 2)),
    ("filterfalse", lambda: adv(it.filterfalse(lambda x: x % 3, _fresh(0)), 2)),
    ("starmap", lambda: adv(it.starmap(pow, zip(_fresh(1), it.repeat(2))), 2)),
    ("groupby", lambda: adv(it.groupby("aaabbbcddd"), 2)),
    ("product", lambda: adv(it.product("abc", range(3), repeat=2), 7)),
    ("combinations", lambda: adv(it.combinations(range(6), 3), 5)),
    ("cwr", lambda: adv(it.combinations_with_replacement(range(4), 3), 6)),
    ("permutations", lambda: adv(it.permutations(range(4), 3), 7)),
    ("map", lambda: adv(map(operator.add, _fresh(0), _fresh(100)), 2)),
    ("filter", lambda: adv(filter(lambda x: x % 2, _fresh(0)), 2)),
    ("reversed", lambda: adv(reversed(tuple(range(9))), 2)),
    ("callable_iterator", lambda: adv(iter(iter(range(20)).__next__, 15), 2)),
]
if PY >= (3, 12):
    TWINS.append(("batched", lambda: adv(it.batched(_fresh(0), 3), 2)))  # type: ignore[attr-defined]


def _take(x: Iterator[Any], n: int = 25) -> list[Any]:
    out = []
    for v in it.islice(x, n):
        out.append(list(v[1]) if type(v) is tuple and len(v) == 2 and
                   type(v[1]).__name__ == "_grouper" else v)
    return out


@pytest.mark.parametrize("make", [m for _, m in TWINS], ids=[n for n, _ in TWINS])
def test_a_written_state_reads_back_and_continues_like_the_original(
        make: Callable[[], Any]) -> None:
    original, twin = make(), make()
    fields = read(original)
    fresh = INERT[type(original).__name__]()
    frames.iter_write(fresh, fields)
    assert read(fresh) == fields
    del original  # the fields still hold its inputs: fresh continues with them
    assert _take(fresh) == _take(twin)


def test_a_tee_buffer_is_written_in_stages() -> None:
    src = iter(range(200))
    a, b = it.tee(src)
    adv(a, 70)
    data, index = read(b)
    values = read(data)
    fresh = it._tee_dataobject(iter(()), [], None)  # type: ignore[attr-defined]
    frames.iter_write(fresh, (0, values[:-2]))
    frames.iter_write(fresh, (1, values[-2]))
    frames.iter_write(fresh, (2, values[-1]))
    assert read(fresh) == values
    tee = it._tee(())  # type: ignore[attr-defined]
    frames.iter_write(tee, (fresh, index))
    assert _take(tee, 100) == list(range(100))
