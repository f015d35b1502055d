"""A Snapshotter reuses its encoders: ``Encoder.clear`` and the spare list.

Making an encoder (a dozen tables) cost about as much as capturing a small
frame, so ``Snapshotter.dumps`` empties the one it used (``Encoder.clear``,
in place, as ``pickle.Pickler.clear_memo``) and keeps it for the next call.
What must hold: a reused encoder encodes exactly as a fresh one; nothing of
one snapshot survives into the next, or keeps its values alive; an encoder
is never shared by two dumps at once (threads, or a dumps run by a reduce
inside another); and one whose dumps failed is not reused.
"""

from __future__ import annotations

import gc
import threading
import weakref
from typing import Any

import pytest

from corosnap import SnapshotError, Snapshotter
from corosnap.codec._encoder import Encoder
from corosnap.codec._engines import ENGINES

ENGINE_NAMES = sorted(ENGINES)
KEPT = ("pid", "frame_hook", "strict", "passthrough", "buffer_callback", "cstate")


def _snapshotter(engine: str) -> Snapshotter:
    return Snapshotter()._with_engine(engine)


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_clear_empties_every_table_in_place(engine: str) -> None:
    """Every table of a fresh encoder is empty after clear(), and is the same
    object as before (a CaptureState refers to them); the other slots stay.
    Generic over __slots__: a table added to __init__ and forgotten by clear
    fails here."""
    cls = ENGINES[engine].Encoder
    enc = cls(7, len)
    fresh = cls(7, len)
    shared_index = {1: ("m", "x", None)}
    before = {}
    for name in Encoder.__slots__:
        value = getattr(enc, name)
        if name == "global_ids":
            enc.global_ids = shared_index  # a module's cached index, not the encoder's
        elif isinstance(value, dict):
            value[object()] = 1
        elif type(value).__name__ == "Memo":  # the C engine's memo: keyed by ids
            value[id(fresh)] = 1
        elif isinstance(value, list):
            value.append(object())
        elif isinstance(value, set):
            value.add(12345)
        before[name] = getattr(enc, name)
    enc.cstate = sentinel = object()
    before["cstate"] = sentinel
    enc.clear()
    assert shared_index == {1: ("m", "x", None)}  # replaced, not emptied
    for name in Encoder.__slots__:
        now, new = getattr(enc, name), getattr(fresh, name)
        if name == "global_ids":
            assert now == {} and now is not shared_index
        elif name in KEPT:
            assert now is before[name], name
        else:
            assert type(now) is type(new) and now == new and not now, name
            assert now is before[name], f"{name} was replaced, not emptied"
    # Cleared again, already empty: every table stays itself, but an empty
    # global_ids something else holds (an empty module's index) is replaced.
    tables = {name: getattr(enc, name) for name in Encoder.__slots__}
    enc.global_ids = empty_index = {}
    enc.clear()
    assert enc.global_ids == {} and enc.global_ids is not empty_index
    for name, table in tables.items():
        if name != "global_ids":
            assert getattr(enc, name) is table, name


def counter(n: int) -> Any:
    for i in range(n):  # noqa: UP028 - a for loop over a range, as the C encoder reads it
        yield i


class Nested:
    def __init__(self, blob: bytes) -> None:
        self.blob = blob


class Box:
    """A value whose reduce runs a dumps of its own (a nested dumps)."""

    def __init__(self, inner: Any, snap: Snapshotter) -> None:
        self.inner = inner
        self.snap = snap

    def __reduce__(self) -> Any:
        return (Nested, (self.snap.dumps(self.inner),))


def holds(value: Any) -> Any:
    x = value
    yield x


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_a_reused_encoder_writes_what_a_fresh_one_writes(engine: str) -> None:
    snap = _snapshotter(engine)
    g = counter(10)
    next(g)
    first = snap.dumps(g)
    assert len(snap._caches.spare) == 1
    reused = snap._caches.spare[0]
    assert all(not getattr(reused, name) for name in Encoder.__slots__
               if name not in KEPT)
    assert snap.dumps(g) == first
    assert snap._caches.spare == [reused]  # the same one, back
    assert _snapshotter(engine).dumps(g) == first
    assert list(snap.loads(first)) == list(range(1, 10))


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_the_spare_encoder_keeps_nothing_alive(engine: str) -> None:
    class Thing:
        pass

    snap = _snapshotter(engine)
    thing = Thing()
    g = holds([thing, {"k": thing}])
    next(g)
    snap.dumps(g)
    assert snap._caches.spare
    alive = weakref.ref(thing)
    gen_alive = weakref.ref(g)
    del thing, g
    gc.collect()
    assert alive() is None and gen_alive() is None


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_a_dumps_inside_a_dumps_gets_its_own_encoder(engine: str) -> None:
    snap = _snapshotter(engine)
    inner = counter(5)
    next(inner)
    outer = holds(Box(inner, snap))
    next(outer)
    blob = snap.dumps(outer)
    assert len(snap._caches.spare) == 2  # the inner dumps could not take the outer's
    restored = snap.loads(blob)
    nested = restored.gi_frame.f_locals["x"]
    assert list(snap.loads(nested.blob)) == [1, 2, 3, 4]
    assert snap.dumps(outer) == blob  # and the two spares encode alike


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_an_encoder_whose_dumps_failed_is_not_reused(engine: str) -> None:
    snap = _snapshotter(engine)
    g = counter(3)
    next(g)
    good = snap.dumps(g)
    spare = list(snap._caches.spare)
    bad = holds(threading.Lock())
    next(bad)
    with pytest.raises(SnapshotError, match="lock"):
        snap.dumps(bad)
    assert snap._caches.spare == []  # taken, and dropped with the failure
    assert snap.dumps(g) == good
    assert snap._caches.spare and snap._caches.spare[0] is not spare[0]


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_threads_never_share_an_encoder(engine: str) -> None:
    snap = _snapshotter(engine)
    gens = []
    expected = []
    for k in range(4):
        g = holds({"thread": k, "items": list(range(k * 50, k * 50 + 40)), "name": f"t{k}"})
        next(g)
        gens.append(g)
        expected.append(_snapshotter(engine).dumps(g))
    failures: list[str] = []

    def work(k: int) -> None:
        for _ in range(300):
            if snap.dumps(gens[k]) != expected[k]:
                failures.append(f"thread {k}")
                return

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert 1 <= len(snap._caches.spare) <= 4


def test_both_engines_keep_as_many_spare_encoders() -> None:
    from corosnap.snapshot import _api, _contract

    if _contract.C is None:
        pytest.skip("the C engine is not loaded")
    assert _contract.C.SPARE == _api._SPARE
    snap = _snapshotter("c")
    gens = []
    for _ in range(_api._SPARE + 2):
        g = counter(3)
        next(g)
        gens.append(g)
    # dumps nested _SPARE + 2 deep: each takes an encoder of its own, and
    # only _SPARE are kept afterwards
    outer: Any = None
    for g in gens:
        outer = holds(Box(g, snap) if outer is None else Box(outer, snap))
        next(outer)
    snap.dumps(outer)
    assert len(snap._caches.spare) == _api._SPARE
