"""Async generators: created and suspended at a yield (snapshotted themselves),
suspended at an await inside them (captured through the coroutine awaiting
them, with the __anext__/asend/athrow/aclose in flight), async for over async
generators, await chains, asend/athrow/aclose on restored objects, and the
event loop's hooks, in this and another process."""

from __future__ import annotations

import asyncio
import gc
import pickle
import subprocess
import sys
import types
import warnings
from typing import Any

import msgpack
import pytest

import agen_samples as ags
import corosnap
from _helpers import TESTS_DIR, drive, in_child, roundtrip

SENDS = [None, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]


def run_aw(aw: Any, inner: list[Any] | None = None) -> list[Any]:
    """Await ``aw`` by hand: send None, then ``inner`` values to what it yields.
    Records ('yield', v) for each value passed through, then ('return', v) or
    ('raise', type name, args)."""
    out: list[Any] = []
    sends = [None, *(inner or [])]
    for value in sends:
        try:
            out.append(("yield", aw.send(value)))
        except StopIteration as stop:
            out.append(("return", stop.value))
            return out
        except Exception as exc:  # noqa: BLE001 - the test compares what was raised
            out.append(("raise", type(exc).__name__, exc.args))
            return out
    return out


def quietly_drop(obj: Any) -> None:
    """Close an original object without its cleanup touching LOG (closing a
    coroutine with an async generator in flight leaves that generator to be
    finalized, which complains when its cleanup awaits: not what is tested)."""
    saved = list(ags.LOG)
    hook = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                if type(obj) is types.AsyncGeneratorType:
                    run_aw(obj.aclose(), [None] * 5)
                else:
                    obj.close()
            except Exception:  # noqa: BLE001 - whatever cleanup does: not tested here
                pass
            del obj
            gc.collect()
    finally:
        sys.unraisablehook = hook
    ags.LOG[:] = saved


def split_trace(make: Any, sends: list[Any], k: int, child: bool) -> tuple[list[Any], list[Any]]:
    """Drive ``make()`` with ``sends[:k]``, snapshot, and finish with the rest
    here (restored) or in a fresh interpreter.  Returns (events, LOG)."""
    ags.LOG.clear()
    obj = make()
    first = drive(obj, sends[:k])
    assert all(e[0] == "yield" for e in first), first
    blob = corosnap.dumps(obj)
    log = list(ags.LOG)
    quietly_drop(obj)
    if child:
        rest, child_log = in_child(
            blob, "import agen_samples\nresult = (drive(gen, SENDS), agen_samples.LOG)",
            sends=sends[k:])
        return first + rest, log + child_log
    ags.LOG.clear()
    rest = drive(corosnap.loads(blob), sends[k:])
    return first + rest, log + ags.LOG


def whole_trace(make: Any, sends: list[Any]) -> tuple[list[Any], list[Any]]:
    ags.LOG.clear()
    events = drive(make(), sends)
    return events, list(ags.LOG)


# -- the async generator itself ---------------------------------------------------

def test_created_async_generator_round_trip():
    ag = ags.ticker(2)
    ag2 = roundtrip(ag)
    assert type(ag2) is types.AsyncGeneratorType
    assert ag2.ag_code is ags.ticker.__code__
    assert run_aw(ag2.__anext__(), [7]) == [("yield", ("tick", 0)), ("return", (0, 7))]


def test_suspended_at_yield_round_trip_then_asend_athrow_aclose():
    ags.LOG.clear()
    ag = ags.ticker(5)
    assert run_aw(ag.__anext__(), [1]) == [("yield", ("tick", 0)), ("return", (0, 1))]
    ag2 = roundtrip(ag)
    assert type(ag2) is types.AsyncGeneratorType and not ag2.ag_running
    # asend: the value goes to the suspended yield, then the generator awaits
    assert run_aw(ag2.asend("s1"), [2]) == [("yield", ("tick", 1)), ("return", (1, 2))]
    assert ("sent", 0, "s1") in ags.LOG
    # athrow: raised at the yield, not caught: the generator ends
    assert run_aw(ag2.athrow(ValueError("boom"))) == [("raise", "ValueError", ("boom",))]
    assert ags.LOG[-1] == "ticker finally"
    assert run_aw(ag2.__anext__()) == [("raise", "StopAsyncIteration", ())]
    quietly_drop(ag)


def test_restored_generator_acloses():
    ags.LOG.clear()
    ag = ags.ticker(5)
    run_aw(ag.__anext__(), [1])
    ag2 = roundtrip(ag)
    assert run_aw(ag2.aclose()) == [("return", None)]
    assert ags.LOG == ["ticker finally"]
    quietly_drop(ag)


def test_suspended_at_yield_in_another_process():
    ag = ags.ticker(3)
    run_aw(ag.__anext__(), [1])
    body = ("import agen_samples as a\nfrom test_async_generators import run_aw\n"
            "result = (run_aw(gen.asend('x'), [5]), run_aw(gen.__anext__(), [6]), "
            "run_aw(gen.__anext__()), a.LOG)")
    got = in_child(corosnap.dumps(ag), body)
    assert got == ([("yield", ("tick", 1)), ("return", (1, 5))],
                   [("yield", ("tick", 2)), ("return", (2, 6))],
                   [("raise", "StopAsyncIteration", ())],
                   [("sent", 0, "x"), ("sent", 1, None), ("sent", 2, None), "ticker finally"])
    quietly_drop(ag)


def test_finished_async_generator_root_is_refused_with_its_module():
    ag = ags.ticker(0)
    assert run_aw(ag.__anext__()) == [("raise", "StopAsyncIteration", ())]
    with pytest.raises(corosnap.SnapshotError) as err:
        corosnap.dumps(ag)
    assert str(err.value) == ("async generator ticker() (module agen_samples) has finished or "
                              "was closed: there is nothing to resume")


# -- in flight: captured through the awaiter ----------------------------------------

@pytest.mark.parametrize("make", [lambda: ags.consume(3), lambda: ags.pipeline(2),
                                  lambda: ags.manual(3), lambda: ags.with_anext_default(2),
                                  ags.finished_in_local, ags.await_wrapper,
                                  ags.yield_from_wrapper],
                         ids=["async_for", "pipeline", "manual", "anext_default",
                              "finished_in_local", "await_wrapper", "yield_from_wrapper"])
def test_split_at_every_step_same_process(make: Any):
    want = whole_trace(make, SENDS)
    assert want[0][-1][0] == "return", want
    for k in range(len(want[0])):
        assert split_trace(make, SENDS, k, child=False) == want, f"split at k={k}"


@pytest.mark.parametrize("make", [lambda: ags.consume(2), lambda: ags.pipeline(2),
                                  lambda: ags.with_anext_default(2), ags.await_wrapper,
                                  ags.yield_from_wrapper],
                         ids=["async_for", "pipeline", "anext_default", "await_wrapper",
                              "yield_from_wrapper"])
def test_split_at_every_step_in_another_process(make: Any):
    want = whole_trace(make, SENDS)
    for k in range(len(want[0])):
        assert split_trace(make, SENDS, k, child=True) == want, f"split at k={k}"


def test_in_flight_chain_is_rebuilt():
    co = ags.consume(3)
    co.send(None)
    co2 = roundtrip(co)
    asend = co2.cr_await
    assert type(asend).__name__ == "async_generator_asend"
    # the asend's generator is the restored ticker, in flight, awaiting Val
    inner = asend.gi_frame if hasattr(asend, "gi_frame") else None
    assert inner is None
    gens = [x for x in gc.get_referents(asend) if type(x) is types.AsyncGeneratorType]
    assert len(gens) == 1 and gens[0].ag_running
    assert gens[0].ag_await.gi_code is ags.Val.__await__.__code__
    quietly_drop(co)
    quietly_drop(co2)


def test_bare_async_generator_in_flight_is_refused():
    co = ags.consume(3)
    co.send(None)
    (ag,) = [x for x in gc.get_referents(co.cr_await) if type(x) is types.AsyncGeneratorType]
    assert ag.ag_running
    with pytest.raises(corosnap.SnapshotError) as err:
        corosnap.dumps(ag)
    msg = str(err.value)
    assert msg.startswith("async generator ticker() (module agen_samples) is awaiting inside "
                          "an __anext__()/asend()/athrow()/aclose() that is still in flight")
    assert "snapshot that coroutine instead" in msg
    quietly_drop(co)


def test_async_generator_in_flight_without_its_awaiter_is_refused():
    co = ags.consume(3)
    co.send(None)
    (ag,) = [x for x in gc.get_referents(co.cr_await) if type(x) is types.AsyncGeneratorType]

    def holder(x: Any) -> Any:
        yield x

    h = holder(ag)
    next(h)
    with pytest.raises(corosnap.SnapshotError) as err:
        corosnap.dumps(h)
    assert "does not hold the awaitable driving it" in str(err.value)
    quietly_drop(co)


def test_aclose_in_flight_across_an_await_in_finally():
    ags.LOG.clear()
    ag = ags.closer()
    assert run_aw(ag.__anext__()) == [("return", 1)]
    co = ags.close_it(ag)
    assert co.send(None) == "closing"  # aclose() is in flight, the finally awaits
    assert ag.ag_running
    blob = corosnap.dumps(co)
    quietly_drop(co)
    ags.LOG.clear()
    co2 = corosnap.loads(blob)
    assert drive(co2, ["done"]) == [("return", "closed")]
    assert ags.LOG == [("closed after", "done")]
    got = in_child(blob, "import agen_samples as a\nresult = (drive(gen, ['x']), a.LOG)")
    assert got == ([("return", "closed")], [("closed after", "x")])


def test_athrow_in_flight_caught_and_answered():
    ag = ags.catcher()
    assert run_aw(ag.__anext__()) == [("return", 0)]
    co = ags.throw_into(ag, KeyError("k"))
    assert co.send(None) == ("caught", ("k",))
    co2 = roundtrip(co)
    assert drive(co2, [5]) == [("return", 106)]
    quietly_drop(co)


def test_awaitables_in_every_state_restore_in_that_state():
    ag = ags.ticker(5)
    run_aw(ag.__anext__(), [1])
    fresh = ag.asend("v")           # not started
    done = ag.__anext__()
    run_aw(done, [2])              # finished
    closing = ag.aclose()          # not started, aclose mode
    thrower = ag.athrow(KeyError("x"))

    def keep(*values: Any) -> Any:
        yield values

    g = keep(ag, fresh, done, closing, thrower)
    next(g)
    g2 = roundtrip(g)
    ag2, fresh2, done2, closing2, thrower2 = g2.gi_frame.f_locals["values"]
    assert type(ag2) is types.AsyncGeneratorType and not ag2.ag_running
    assert run_aw(done2) == [("raise", "RuntimeError",
                              ("cannot reuse already awaited __anext__()/asend()",))]
    assert run_aw(fresh2, [3]) == [("yield", ("tick", 2)), ("return", (2, 3))]
    assert run_aw(thrower2) == [("raise", "KeyError", ("x",))]
    assert run_aw(closing2) == [("return", None)]  # already ended by the KeyError
    for x in (fresh, closing, thrower):
        x.close()
    quietly_drop(ag)


# -- hooks and asyncio -------------------------------------------------------------

def test_restoring_runs_no_hooks_and_the_next_operation_takes_them():
    ag = ags.ticker(3)
    run_aw(ag.__anext__(), [1])
    blob = corosnap.dumps(ag)
    seen: list[Any] = []
    old = sys.get_asyncgen_hooks()
    sys.set_asyncgen_hooks(firstiter=seen.append, finalizer=seen.append)
    try:
        ag2 = corosnap.loads(blob)
        assert seen == []  # loads made it without calling firstiter
        aw = ag2.__anext__()
        assert seen == [ag2]  # as for a fresh generator: at its first operation
        run_aw(aw, [2])
    finally:
        sys.set_asyncgen_hooks(*old)
    quietly_drop(ag)


def _asyncio_split(n: int, stop_at: int, steps: int) -> bytes:
    """Run aio_consumer under asyncio here, let it take ``steps`` loop turns,
    and snapshot its coroutine while it is suspended inside the producer."""

    async def main() -> bytes:
        task = asyncio.ensure_future(ags.aio_consumer(n, stop_at))
        for _ in range(steps):
            await asyncio.sleep(0)
        assert not task.done()
        blob = corosnap.dumps(task.get_coro())
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        return blob

    ags.LOG.clear()
    blob = asyncio.run(main())
    ags.KEPT.clear()
    return blob


_ASYNCIO_CHILD = """
import asyncio, pickle, sys
sys.path.insert(0, {tests!r})
import corosnap, agen_samples as a
BLOB = sys.stdin.buffer.read()
{body}
sys.stdout.buffer.write(pickle.dumps(result))
"""


def in_asyncio_child(blob: bytes, body: str) -> Any:
    """Run ``body`` in a fresh interpreter, with the blob as ``BLOB`` (not yet
    loaded: the body loads it where it wants, e.g. inside the event loop)."""
    proc = subprocess.run([sys.executable, "-c", _ASYNCIO_CHILD.format(tests=TESTS_DIR,
                                                                       body=body)],
                          input=blob, capture_output=True, timeout=60)
    if proc.returncode != 0:
        raise AssertionError(f"child failed ({proc.returncode}):\n{proc.stderr.decode()}")
    return pickle.loads(proc.stdout)


LOADS_IN_LOOP = """
async def main():
    # a task, not `await`: a coroutine suspended inside an await cannot be
    # awaited by another ("coroutine is being awaited already")
    return await asyncio.ensure_future(corosnap.loads(BLOB))
a.LOG.clear()
result = (asyncio.run(main()), a.LOG)
"""
LOADS_OUTSIDE = """
coro = corosnap.loads(BLOB)
a.LOG.clear()
result = (asyncio.run(coro), a.LOG)
"""


@pytest.mark.parametrize("steps", [1, 2, 3, 5])
@pytest.mark.parametrize("body", [LOADS_IN_LOOP, LOADS_OUTSIDE], ids=["in_loop", "outside"])
def test_asyncio_consumer_resumes_in_another_process(steps: int, body: str):
    ags.LOG.clear()
    want = asyncio.run(ags.aio_consumer(4))
    want_log = list(ags.LOG)
    blob = _asyncio_split(4, -1, steps)
    before = [x for x in ags.LOG if x != "producer finally"]  # cancelled here: its finally ran
    got, log = in_asyncio_child(blob, body)
    assert got == want
    assert before + log == want_log


@pytest.mark.parametrize("steps", [1, 2])
def test_asyncio_closes_a_restored_generator_left_suspended(steps: int):
    # The consumer stops early, leaving the producer suspended at a yield; the
    # producer's finally awaits, so only an aclose() driven by the event loop
    # (shutdown_asyncgens) gets it to log: the loop's hooks must apply to the
    # restored generator.  steps=2 restores it in flight, and the consumer
    # stops right after that operation: it has no next operation to take the
    # hooks, so loads gives them (loads is called inside the loop).
    ags.LOG.clear()
    want = asyncio.run(ags.aio_consumer(5, 2))
    assert ags.LOG[-1] == "producer finally"
    ags.KEPT.clear()
    blob = _asyncio_split(5, 2, steps)
    got, log = in_asyncio_child(blob, LOADS_IN_LOOP)
    assert got == want == [0, 1]
    assert log[-1] == "producer finally"


def test_asyncio_root_async_generator_is_tracked_and_closed():
    ags.LOG.clear()
    ag = ags.aio_producer(5)

    async def first() -> Any:
        assert await ag.__anext__() == 0
        return corosnap.dumps(ag)  # before this loop's shutdown closes it

    blob = asyncio.run(first())
    body = """
seen = []
async def main():
    gen = corosnap.loads(BLOB)
    x = await gen.__anext__()
    seen.append(gen in asyncio.get_running_loop()._asyncgens)
    a.KEPT.append(gen)  # alive until the loop's shutdown_asyncgens closes it
    return x
a.LOG.clear()
result = (asyncio.run(main()), a.LOG, seen)
"""
    assert in_asyncio_child(blob, body) == (1, [("produced", 1), "producer finally"], [True])


# -- hostile blobs: refused cleanly, never a crash -------------------------------

TAG = msgpack.ExtType


def _tag(kind: int) -> Any:
    return msgpack.ExtType(0, bytes([kind]))


def _tree(obj: Any) -> list[Any]:
    return msgpack.unpackb(corosnap.dumps(obj), strict_map_key=False)


def _load(tree: list[Any]) -> Any:
    return corosnap.loads(msgpack.packb(tree, use_bin_type=True))


def _in_flight_tree() -> tuple[Any, list[Any]]:
    """consume(3) after one step: [header, coderef(3), position, n, acc, x,
    stack: the async generator (async for's iterator), its asend in flight]."""
    co = ags.consume(3)
    co.send(None)
    tree = _tree(co)
    assert tree[8][0] == _tag(22) and tree[9][0] == _tag(23), tree
    return co, tree


def _suspended_tree() -> tuple[Any, list[Any]]:
    ag = ags.ticker(3)
    run_aw(ag.__anext__(), [1])
    tree = _tree(ag)
    assert tree[1] == _tag(22) and tree[2] == 0
    return ag, tree


@pytest.mark.parametrize("flags", [-1, 4, 255, "x", None])
def test_hostile_async_generator_flags(flags: Any):
    ag, tree = _suspended_tree()
    tree[2] = flags
    with pytest.raises(corosnap.CorruptSnapshot, match="malformed async generator flags"):
        _load(tree)
    quietly_drop(ag)


def test_hostile_nested_root_tags():
    ag, tree = _suspended_tree()
    with pytest.raises(corosnap.CorruptSnapshot):
        _load([tree[0], *([_tag(22), 0] * 5000), *tree[3:]])
    with pytest.raises(corosnap.CorruptSnapshot, match="malformed frame"):
        _load([tree[0], _tag(10), *tree[3:]])
    quietly_drop(ag)


def test_hostile_root_in_flight():
    ag, tree = _suspended_tree()
    tree[2] = 2
    with pytest.raises(corosnap.CorruptSnapshot, match="root async generator"):
        _load(tree)
    quietly_drop(ag)


def test_hostile_in_flight_flag_on_a_generator_at_a_yield():
    co, tree = _in_flight_tree()
    # the async generator in the stack, suspended at its await: make it one at a yield
    ag, ag_tree = _suspended_tree()
    tree[8] = [_tag(22), 2, *ag_tree[3:]]
    with pytest.raises(corosnap.CorruptSnapshot, match="suspended inside an await, not at a "
                                                       "yield"):
        _load(tree)
    quietly_drop(co)
    quietly_drop(ag)


def test_hostile_generator_code_under_the_async_generator_tag():
    g = ags.yield_from_wrapper()
    g.send(None)
    tree = _tree(g)
    with pytest.raises(corosnap.CorruptSnapshot, match="is not an async generator"):
        _load([tree[0], _tag(22), 0, *tree[1:]])
    g.close()


def test_hostile_async_generator_code_in_a_plain_frame():
    ag, tree = _suspended_tree()
    with pytest.raises(corosnap.CorruptSnapshot, match="is an async generator, where the blob "
                                                       "has a generator or coroutine"):
        _load([tree[0], *tree[3:]])
    # and as a value
    g = ags.yield_from_wrapper()
    g.send(None)
    gtree = _tree(g)
    with pytest.raises(corosnap.CorruptSnapshot):
        _load([*gtree[:-1], [_tag(10), *tree[3:]]])
    quietly_drop(ag)
    g.close()


@pytest.mark.parametrize("field,value,match", [
    (1, 5, "belongs to an async generator, not a int"),
    (2, 3, "malformed async_generator_asend state 3"),
    (2, -1, "malformed async_generator_asend state -1"),
    (2, "1", "malformed async_generator_asend state"),
])
def test_hostile_asend_fields(field: int, value: Any, match: str):
    co, tree = _in_flight_tree()
    tree[9][field] = value
    with pytest.raises(corosnap.CorruptSnapshot, match=match):
        _load(tree)
    quietly_drop(co)


def test_hostile_awaitable_payloads():
    co, tree = _in_flight_tree()
    tree[9] = [*tree[9], 1, 2]  # asend takes at most one value
    with pytest.raises(corosnap.CorruptSnapshot, match="asend takes at most 1 values"):
        _load(tree)
    co, tree = _in_flight_tree()
    tree[9] = [_tag(24), *tree[9][1:], 1, 2, 3, 4]  # athrow at most three
    with pytest.raises(corosnap.CorruptSnapshot, match="athrow takes at most 3 values"):
        _load(tree)
    co, tree = _in_flight_tree()
    tree[9] = [_tag(23)]
    with pytest.raises(corosnap.CorruptSnapshot, match="malformed async_generator_asend"):
        _load(tree)
    quietly_drop(co)


def test_hostile_coroutine_wrapper():
    g = ags.yield_from_wrapper()
    g.send(None)
    tree = _tree(g)
    # the delegate: the last stack value (on 3.15 the one before a NULL index slot)
    (at,) = [i for i, x in enumerate(tree) if type(x) is list and x[:1] == [_tag(25)]]
    tree[at] = [_tag(25), [1, 2]]
    with pytest.raises(corosnap.CorruptSnapshot, match="wraps a coroutine, not a list"):
        _load(tree)
    tree[at] = [_tag(25)]
    with pytest.raises(corosnap.CorruptSnapshot, match="malformed coroutine_wrapper"):
        _load(tree)
    g.close()


def test_hostile_delegation_cycle_back_to_the_frame():
    # The async generator's await target replaced by the root coroutine,
    # which awaits the generator's asend: close()/throw() would recurse in C
    # without end.
    co, tree = _in_flight_tree()
    ag_fields = tree[8]
    (at,) = [i for i, x in enumerate(ag_fields) if type(x) is list and x[1:2] == ["Val.__await__"]]
    ag_fields[at] = msgpack.ExtType(1, b"\x00")  # memo 0: the root coroutine
    with pytest.raises(corosnap.CorruptSnapshot, match="loops back to itself"):
        _load(tree)
    quietly_drop(co)


def test_hostile_delegation_cycle_through_an_asend():
    # An async generator X (decoded first, as a value) awaits a coroutine
    # decoded inside it, which awaits an asend of X: only following the
    # asend to its generator finds the loop.
    co = ags.consume(3)
    co.send(None)
    (ag,) = [x for x in gc.get_referents(co.cr_await) if type(x) is types.AsyncGeneratorType]

    def holder(*values: Any) -> Any:
        yield values

    h = holder(ag, co)
    next(h)
    tree = _tree(h)
    values = tree[-1]
    assert values[0] == _tag(1) and values[1][0] == _tag(22) and values[2][0] == _tag(10)
    ag_fields, co_fields = values[1], values[2]
    (at,) = [i for i, x in enumerate(ag_fields) if type(x) is list and x[1:2] == ["Val.__await__"]]
    ag_fields[at] = co_fields[1:]  # the coroutine, as the generator's await target
    values[2] = None
    with pytest.raises(corosnap.CorruptSnapshot, match="loops back to itself"):
        _load(tree)
    quietly_drop(co)


def test_hostile_anext_awaitable():
    co = ags.with_anext_default(2)
    co.send(None)
    tree = _tree(co)
    (at,) = [i for i, x in enumerate(tree) if type(x) is list and x[:1] == [_tag(26)]]
    bad = list(tree)
    bad[at] = [_tag(26), tree[at][1]]
    with pytest.raises(corosnap.CorruptSnapshot, match="malformed anext_awaitable"):
        _load(bad)
    # Wrapping something that is not awaitable: restored (it is an iterator
    # either way), and refused by CPython when used, which checks what it wraps
    # at every step.
    bad = list(tree)
    bad[at] = [_tag(26), 5, "d"]
    co2 = _load(bad)
    with pytest.raises(TypeError, match="int"):
        co2.send(None)
    quietly_drop(co)
