"""Generators suspended over each builtin iterator, for ``test_iterators.py``.

Both the test process and the worker import this module from ``tests/``.
Each function builds its iterator itself (iterators cannot travel as
arguments to the worker) and yields plain, comparable data.
"""

# ruff: noqa: UP028  (the iterators must sit on a for loop's stack, not behind yield from)
from __future__ import annotations

import itertools as it
import operator
import sys
from typing import Any

LOG: list[Any] = []
SHARED_COUNTER = it.count()  # a module's iterator: stored by reference


def small(x: int) -> bool:
    return x < 3


def is_even(x: int) -> bool:
    return x % 2 == 0


def tens(x: int) -> int:
    return x // 10


class Letters:
    """A sequence without __reversed__: reversed() walks it by index."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __len__(self) -> int:
        return len(self.text)

    def __getitem__(self, i: int) -> str:
        return self.text[i]


class Ticker:
    def __init__(self) -> None:
        self.n = 0

    def tick(self) -> int:
        self.n += 1
        return self.n


def over(iterator: Any) -> Any:
    for x in iterator:
        yield x


def holder(x: Any) -> Any:
    """Holds an iterator in its only local: suspended at "ready", then takes from it."""
    yield "ready"
    yield take(x)


def take(x: Any, n: int = 30) -> list[Any]:
    out = []
    for v in it.islice(x, n):
        out.append(list(v) if type(v).__name__ == "_grouper" else v)
    return out


def count_fast():
    for x in it.count(10):
        yield x


def count_slow():
    yield from over(it.count(1.5, 0.25))


def count_big():
    for x in it.count(2**70, -3):
        yield x


def repeat_n():
    for x in it.repeat("r", 6):
        yield x


def repeat_forever():
    for x in it.repeat(("t", 1)):
        yield x


def cycle():
    for x in it.cycle("abc"):
        yield x


def islice():
    for x in it.islice(it.count(), 3, 40, 7):
        yield x


def chain():
    for x in it.chain([1, 2], "ab", range(3)):
        yield x


def chain_from_iterable():
    for x in it.chain.from_iterable([[1], (2, 3), "xy", range(2)]):
        yield x


def zip_longest():
    for x in it.zip_longest([1, 2], "abcd", range(3), fillvalue="-"):
        yield x


def accumulate():
    for x in it.accumulate([1, 2, 3, 4, 5], operator.mul, initial=2):
        yield x


def accumulate_plain():
    for x in it.accumulate(range(7)):
        yield x


def pairwise():
    for x in it.pairwise("abcdef"):
        yield x


def batched():
    for x in it.batched(range(11), 3):  # type: ignore[attr-defined]
        yield x


def compress():
    for x in it.compress("abcdefgh", [1, 0, 1, 1, 0, 0, 1, 1]):
        yield x


def dropwhile():
    for x in it.dropwhile(small, [1, 2, 3, 4, 1, 2]):
        yield x


def takewhile():
    for x in it.takewhile(small, [0, 1, 2, 3, 1]):
        yield x


def filterfalse():
    for x in it.filterfalse(is_even, range(12)):
        yield x


def starmap():
    for x in it.starmap(pow, [(2, 5), (3, 2), (10, 3), (4, 4), (7, 1)]):
        yield x


def tee():
    a, b = it.tee(iter(range(20)))
    for x in a:
        yield (x, next(b), next(b, None) if x % 3 == 0 else None)


def groupby():
    for k, grp in it.groupby("aaabbcdddd"):
        for x in grp:
            yield (k, x)


def groupby_key():
    for k, grp in it.groupby(range(0, 50, 4), key=tens):
        yield ("key", k)
        for x in grp:
            yield (k, x)


def product():
    for x in it.product("ab", range(3)):
        yield x


def product_repeat():
    for x in it.product([0, 1], repeat=3):
        yield x


def permutations():
    for x in it.permutations("abcd", 2):
        yield x


def combinations():
    for x in it.combinations(range(5), 3):
        yield x


def combinations_with_replacement():
    for x in it.combinations_with_replacement("abc", 3):
        yield x


def map_two():
    for x in map(operator.add, [1, 2, 3], [10, 20, 30, 40]):
        yield x


def map_strict():
    for x in map(operator.add, [1, 2, 3], [10, 20, 30], strict=True):  # type: ignore[call-overload]
        yield x


def filter_():
    for x in filter(is_even, range(13)):
        yield x


def reversed_():
    for x in reversed(Letters("abcdef")):
        yield x


def callable_iterator():
    for x in iter(Ticker().tick, 6):
        yield x


def nested():
    for x in it.chain(it.islice(it.count(), 3), map(str, it.cycle("xy"))):
        yield x


def shared():
    """One iterator, in a local and inside a chain: identity must survive."""
    source = iter(range(12))
    for x in it.chain(source, "z"):
        yield (x, next(source, None))


def lazy_chain():
    """chain.from_iterable over a generator: the chain holds a live generator."""
    for x in it.chain.from_iterable([i] * i for i in range(1, 5)):
        yield x


# Hamming numbers and Fibonacci by tees that feed on their own output, as in
# CPython's Lib/test/test_generators.py.

def times(n, g):
    for i in g:
        yield n * i


def merge(g, h):
    ng = next(g)
    nh = next(h)
    while 1:
        if ng < nh:
            yield ng
            ng = next(g)
        elif ng > nh:
            yield nh
            nh = next(h)
        else:
            yield ng
            ng = next(g)
            nh = next(h)


def m235():
    def _m235():
        yield 1
        for n in merge(times(2, m2),
                       merge(times(3, m3),
                             times(5, m5))):
            yield n
    m1 = _m235()
    m2, m3, m5, m_res = it.tee(m1, 4)
    return m_res


def fib():
    def _isum(g, h):
        while 1:
            yield next(g) + next(h)

    def _fib():
        yield 1
        yield 2
        next(fib_tail)  # throw first away
        for res in _isum(fib_head, fib_tail):
            yield res

    real = _fib()
    fib_head, fib_tail, fib_res = it.tee(real, 3)
    return fib_res


def hamming():
    for x in m235():
        yield x


def fibonacci():
    yield from fib()


# (function, steps to run, cut points) for the cross-process tests
CASES: list[tuple[str, int, tuple[int, ...]]] = [
    ("count_fast", 6, (1, 4)),
    ("count_slow", 6, (2,)),
    ("count_big", 5, (2,)),
    ("repeat_n", 7, (1, 6)),
    ("repeat_forever", 4, (2,)),
    ("cycle", 9, (2, 3, 5)),  # during the first pass, at its end, cycling
    ("islice", 7, (1, 3)),
    ("chain", 8, (1, 3, 6)),
    ("chain_from_iterable", 8, (2, 5)),
    ("zip_longest", 5, (1, 3)),
    ("accumulate", 7, (1, 3)),
    ("accumulate_plain", 8, (2,)),
    ("pairwise", 6, (1, 3)),
    ("compress", 6, (2,)),
    ("dropwhile", 5, (1, 2)),
    ("takewhile", 4, (1, 3)),
    ("filterfalse", 7, (2,)),
    ("starmap", 6, (1, 3)),
    ("tee", 8, (1, 4)),
    ("groupby", 11, (1, 3, 6)),
    ("groupby_key", 18, (1, 2, 6)),
    ("product", 7, (1, 4)),
    ("product_repeat", 9, (3,)),
    ("permutations", 13, (2, 7)),
    ("combinations", 11, (1, 6)),
    ("combinations_with_replacement", 11, (3,)),
    ("map_two", 4, (1, 2)),
    ("filter_", 8, (2,)),
    ("reversed_", 7, (1, 4)),
    ("callable_iterator", 6, (2,)),
    ("nested", 8, (2, 5)),
    ("shared", 8, (1, 4)),
    ("lazy_chain", 11, (3, 7)),
    ("hamming", 60, (1, 20, 45)),
    ("fibonacci", 40, (1, 3, 30)),
]
if sys.version_info >= (3, 12):
    CASES.append(("batched", 5, (1, 3)))
if sys.version_info >= (3, 14):
    CASES.append(("map_strict", 4, (1, 3)))
