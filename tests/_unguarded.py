"""Generators the unguarded-cycle tests capture (an importable module, so
that safe mode can allow it by name and a fresh interpreter finds the code)."""

from __future__ import annotations

import functools
from typing import Any


def add(a: Any, b: Any) -> Any:
    return a + b


def run_all(callbacks: list[Any]) -> int:
    return len(callbacks)


def caller(f: Any) -> Any:
    """Calls what it holds once resumed."""
    yield 1
    yield f(5)


def holder(v: Any) -> Any:
    """Holds a value; the test uses it."""
    yield 1
    yield v


class Node:
    def __init__(self) -> None:
        self.me = self
        self.cb = functools.partial(self.ping, 1)

    def ping(self, x: int) -> int:
        return x + 1


class Pair:
    """State is a tuple holding the object itself (custom __getstate__)."""

    def __init__(self) -> None:
        self.other: Any = self

    def __getstate__(self) -> Any:
        return (self.other, functools.partial(self.ping))

    def __setstate__(self, state: Any) -> None:
        self.other, self.cb = state

    def ping(self) -> str:
        return "pong"


def closure_counter() -> Any:
    def fact(n: int) -> int:
        return 1 if n <= 1 else n * fact(n - 1)
    total = 0
    while True:
        total += fact(3)
        yield total
