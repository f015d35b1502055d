"""The C engine's msgpack writer against msgpack itself.

On the C engine the value encoder writes a container's msgpack bytes itself
(a ``Packed`` node) and ``_ccodec.pack`` packs the blob's tree, where the
Python engine builds a tree of Python objects and msgpack packs it.  So
``_ccodec.pack`` must be ``msgpack.Packer(use_bin_type=True,
default=...).pack`` for every tree: the same bytes, the same errors (an int
past 64 bits, a str with a lone surrogate, a type it cannot pack, nesting
past msgpack's limit), the same calls of ``default``.  And what the writer
cannot write while values are still being encoded (those same ints and
strs, a buffer's placeholder) must fail or be packed at the end, as msgpack
would: checked through ``dumps`` on both engines.
"""

from __future__ import annotations

import gc
import sys
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import corosnap
from corosnap import _accel
from corosnap.codec import _speedups
from corosnap.snapshot._api import default

pytestmark = pytest.mark.skipif(_accel.ENGINE != "c", reason="the C engine is not loaded")

C_PACK = _speedups.C.pack if _speedups.C is not None else None
PY_PACK = _speedups.PYTHON.pack


def _outcome(pack: Any, tree: Any, dflt: Any = None) -> tuple[str, Any]:
    try:
        return "bytes", pack(tree, dflt) if dflt is not None else pack(tree)
    except Exception as exc:  # noqa: BLE001 - the outcome is what is compared
        return type(exc).__name__, str(exc)


def _same(tree: Any, dflt: Any = None) -> tuple[str, Any]:
    expected = _outcome(PY_PACK, tree, dflt)
    assert _outcome(C_PACK, tree, dflt) == expected
    return expected


scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.sampled_from([0, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63 - 1, 2**63,
                     2**64 - 1, -1, -32, -33, -128, -129, -32768, -32769, -(2**31),
                     -(2**31) - 1, -(2**63),
                     # around one 30-bit digit: the ints read without a call
                     2**30 - 1, 2**30, 2**30 + 1, -(2**30) + 1, -(2**30), -(2**30) - 1]),
    st.floats(allow_nan=False), st.text(), st.text(min_size=30, max_size=300),
    st.binary(), st.binary(min_size=250, max_size=70_000).map(bytearray),
    st.builds(msgpack.ExtType, st.integers(0, 127),
              st.sampled_from([0, 1, 2, 3, 4, 8, 16, 17, 255, 256, 70_000]).map(bytes)),
)
keys = st.one_of(st.text(max_size=40), st.integers(-(2**63), 2**64 - 1), st.binary(max_size=4),
                 st.none(), st.booleans(), st.floats(allow_nan=False))
trees = st.recursive(
    scalars,
    lambda c: st.lists(c, max_size=20) | st.lists(c, min_size=15, max_size=40).map(tuple)
    | st.dictionaries(keys, c, max_size=20),
    max_leaves=60,
)


@settings(max_examples=400, deadline=None)
@given(trees)
def test_pack_writes_what_msgpack_writes(tree: Any) -> None:
    kind, _ = _same(tree)
    assert kind == "bytes"


@pytest.mark.parametrize("tree", [
    2**64, -(2**63) - 1, [1, [2, {"a": 2**70}]],  # past 64 bits
    "\ud800", ["ok", {"k": "\udfff"}], {"\ud800": 1},  # lone surrogates
    object(), [1, {2: object()}], {object(): 1},  # types msgpack cannot pack
    {1.5j: 2}, complex(1, 2), memoryview(b"abc"), [memoryview(b"xy")],
])
def test_pack_refuses_and_accepts_what_msgpack_does(tree: Any) -> None:
    _same(tree)


def test_pack_calls_default_as_msgpack_does() -> None:
    seen: list[Any] = []

    def dflt(obj: Any) -> Any:
        seen.append(obj)
        if isinstance(obj, complex):
            return msgpack.ExtType(3, b"c")
        if isinstance(obj, set):
            return sorted(obj)
        if type(obj) is int:
            raise OverflowError("Integer value out of range")
        return obj  # packed again: refused, default is asked once per object

    tree = [1j, {1, 2}, object(), 2**65]
    for k in range(len(tree)):
        seen.clear()
        expected = _outcome(PY_PACK, tree[: k + 1], dflt)
        expected_seen = list(seen)
        seen.clear()
        assert _outcome(C_PACK, tree[: k + 1], dflt) == expected
        assert seen == expected_seen


@pytest.mark.parametrize("depth", [1023, 1024, 1025, 1100])
def test_pack_refuses_nesting_past_msgpacks_limit(depth: int) -> None:
    tree: Any = 1
    for _ in range(depth):
        tree = [tree]
    _same(tree)


def g(x):
    yield 1


def _both(obj_factory: Any, **options: Any) -> tuple[Any, Any]:
    outcomes = []
    for engine in ("python", "c"):
        snapshotter = default().replace(**options)._with_engine(engine)
        try:
            outcomes.append(("blob", snapshotter.dumps(obj_factory())))
        except Exception as exc:  # noqa: BLE001 - the outcome is what is compared
            outcomes.append((type(exc).__name__, str(exc)))
    return outcomes[0], outcomes[1]


def _started(value: Any) -> Any:
    gen = g(value)
    next(gen)
    return gen


@pytest.mark.parametrize("value", [
    [1, 2**70, [-(2**80)]],  # ints past 64 bits inside written containers
    {"a": [2**64, "x"], "b": {"c": 2**100}},
    ("\ud800", ["fine", "\udc00"]),  # lone surrogates inside written containers
    {"k": {"\ud800": 1, "v": 2}},
    [{"id": 1, "name": "a", "tags": ["\ud83d"]}, {"id": 2, "name": "b", "tags": []}],
    [frozenset({2**65}), {2**66}],
], ids=["big-ints", "big-ints-in-dicts", "surrogates", "surrogate-key", "shaped",
        "sets"])
def test_what_the_writer_leaves_for_the_end_retries_strictly_as_msgpack_does(
        value: Any) -> None:
    python, c = _both(lambda: _started(value))
    assert python[0] == "blob"
    assert c == python
    restored = corosnap.loads(c[1])  # kept alive: 3.13.0 crashes on a dead generator's frame
    assert restored.gi_frame.f_locals["x"] == value


def test_buffers_inside_written_containers_are_decided_at_the_end() -> None:
    big, other = b"x" * 5000, bytearray(b"y" * 6000)
    value = [{"payload": big, "n": 1}, [other, big], (big,)]
    for keep in (True, False):
        outs = []
        for engine in ("python", "c"):
            sent: list[Any] = []
            snapshotter = default()._with_engine(engine)

            def callback(buf: Any, sent: list[Any] = sent, keep: bool = keep) -> bool:
                sent.append(bytes(buf.raw()))
                return keep

            blob = snapshotter.dumps(_started(value), buffer_callback=callback)
            outs.append((blob, sent))
        assert outs[0] == outs[1]
        blob, sent = outs[1]
        restored = corosnap.loads(blob, buffers=None if keep else sent)
        assert restored.gi_frame.f_locals["x"] == value


def test_values_nested_past_msgpacks_limit_are_refused_by_both_engines() -> None:
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(20_000)
    try:
        value: Any = []
        for _ in range(1100):
            value = [value]
        python, c = _both(lambda: _started(value))
    finally:
        sys.setrecursionlimit(limit)
    # msgpack's nesting limit, met by both engines' packers: the refusal of
    # values nested too deeply, as the encoders' own recursion limit gives.
    for kind, message in (python, c):
        assert kind == "SnapshotError"
        assert message.endswith("values nested too deeply")


def test_the_c_encoder_writes_containers_as_packed_nodes() -> None:
    enc_cls = default()._with_engine("c")._caches.Encoder
    enc = enc_cls(0, None)
    node = enc.enc([1, "two", {"three": 3.0}])
    assert type(node).__name__ == "Packed"
    assert "bytes" in repr(node)
    python_enc = default()._with_engine("python")._caches.Encoder(0, None)
    assert C_PACK(node) == PY_PACK(python_enc.enc([1, "two", {"three": 3.0}]))


def test_pack_refuses_cyclic_trees_as_msgpack_does() -> None:
    cyclic_list: list[Any] = []
    cyclic_list.append(cyclic_list)
    cyclic_dict: dict[str, Any] = {}
    cyclic_dict["self"] = cyclic_dict
    for tree in (cyclic_list, cyclic_dict):
        assert _same(tree) == ("ValueError", "recursion limit exceeded.")


def test_packed_nodes_are_made_only_by_the_encoder() -> None:
    packed_type = type(default()._with_engine("c")._caches.Encoder(0, None).enc([1]))
    with pytest.raises(TypeError):
        packed_type()


# -- values whose encoding changes what is being encoded, and deep instances --


def _rec(i: int) -> dict[str, int]:
    return {"a": i, "b": i}


class ReducesToItself:
    """For corosnap (protocol 4) it refers to itself through its constructor
    arguments, after two records of one shape: the encoder rolls its tables
    back (the shape too) and hands it to the fallback pickler, which gets
    protocol 5's plain reduce."""

    def __reduce_ex__(self, protocol: int) -> Any:
        if protocol == 4:
            return (ReducesToItself, (_rec(1), _rec(2), self))
        return (ReducesToItself, ())


class SwapsKeys:
    """Its reduce deletes a key of the dict holding it and adds another: the
    dict's size stays, its keys change while it is encoded."""

    def __init__(self, target: Any) -> None:
        self.target = target

    def __reduce__(self) -> Any:
        target, self.target = self.target, None
        if target is not None:
            del target["a"]
            target["c"] = 3
        return (SwapsKeys, (None,))


class Resizes:
    """Its reduce appends to or pops from the list holding it."""

    def __init__(self, target: list[Any], grow: int) -> None:
        self.target, self.grow = target, grow

    def __reduce__(self) -> Any:
        target, self.target = self.target, None
        if target is not None:
            for _ in range(abs(self.grow)):
                target.append("new") if self.grow > 0 else target.pop()
        return (Resizes, ([], 0))


class Node:
    def __init__(self, nxt: Any, payload: Any) -> None:
        self.nxt, self.payload = nxt, payload


class Holder:
    def __init__(self, state: Any = None) -> None:
        self.state = state


def _dumps_outcome(engine: str, value: Any, **kw: Any) -> tuple[str, Any]:
    try:
        return "blob", default()._with_engine(engine).dumps(_started(value), **kw)
    except Exception as exc:  # noqa: BLE001 - the outcome is what is compared
        return type(exc).__name__, str(exc)


def test_a_rolled_back_record_shape_is_not_reused() -> None:
    value = (ReducesToItself(), _rec(3), _rec(4))
    python = _dumps_outcome("python", value)
    assert _dumps_outcome("c", value) == python
    restored = corosnap.loads(python[1])
    assert restored.gi_frame.f_locals["x"][1:] == value[1:]


@pytest.mark.parametrize("shaped", [False, True])
def test_a_dict_whose_keys_change_while_encoded_is_refused_alike(shaped: bool) -> None:
    def value() -> Any:
        d: dict[Any, Any] = {"a": 1, "b": None} if shaped else {"a": 1, 5: None}
        d["b" if shaped else 5] = SwapsKeys(d)
        return ({"a": 0, "b": 0}, d) if shaped else d

    python = _dumps_outcome("python", value())
    assert python[0] == "RuntimeError"
    assert _dumps_outcome("c", value()) == python


@pytest.mark.parametrize("start,grow", [(3, 2), (14, 5), (20, -6), (10, -4), (70_000, -10)])
def test_a_list_that_changes_size_while_encoded_is_written_as_python_does(
        start: int, grow: int) -> None:
    # The header is rewritten for the count written (its width changes at
    # 16 and 65,536 items), with a buffer's placeholder after it.
    def value() -> Any:
        items: list[Any] = [[i] for i in range(start)]
        items[1] = Resizes(items, grow)
        items[0] = [b"z" * 5000]
        return items

    outcomes = []
    for engine in ("python", "c"):
        sent: list[Any] = []
        outcomes.append((_dumps_outcome(engine, value(), buffer_callback=sent.append),
                         [bytes(b.raw()) for b in sent]))
    assert outcomes[0][0][0] == "blob"
    assert outcomes[1] == outcomes[0]


@pytest.mark.parametrize("keep", [True, False])
def test_buffers_inside_instances_inside_written_containers(keep: bool) -> None:
    # A buffer's placeholder inside an instance's state inside a container:
    # its hole is moved into each enclosing container's bytes.
    big = b"x" * 5000
    value = [1, Holder([b"a", [big, 2], {"k": bytearray(b"y" * 6000)}]), (big, [2**70])]
    outs = []
    for engine in ("python", "c"):
        sent: list[Any] = []
        snapshotter = default()._with_engine(engine)
        blob = snapshotter.dumps(_started(value),
                                 buffer_callback=lambda b, sent=sent: sent.append(b) or keep)
        outs.append((blob, [bytes(b.raw()) for b in sent]))
    assert outs[0] == outs[1]
    restored = corosnap.loads(outs[1][0], buffers=None if keep else outs[1][1])
    got = restored.gi_frame.f_locals["x"]
    assert got[1].state == value[1].state and got[2] == value[2]


def test_nested_instances_encode_alike() -> None:
    # Each instance's bytes past a few hundred are joined into the blob by
    # pack() rather than copied into every enclosing instance's.
    def chain(n: int) -> Any:
        x = None
        for i in range(n):
            x = Node(x, [i, i, b"p" * 300])
        return x

    for n in (1, 10, 100):
        python = _dumps_outcome("python", chain(n))
        assert python[0] == "blob"
        assert _dumps_outcome("c", chain(n)) == python


@pytest.mark.parametrize("ints", [
    [0, 1, -1, 2**30 - 1, -(2**30) + 1],
    [2**30, -(2**30), 2**31 - 1, -(2**31)],
    [2**30 - 1, 2**30, 2**62, -(2**63), 2**63 - 1],
    [True, 1],  # a bool is not an int here
    [2**64],  # past 64 bits
])
def test_int_lists_and_flat_lists_around_one_digit(ints: list[Any]) -> None:
    """The fast paths over lists of ints read one-digit ints inline: at and
    past the digit's edge they agree with the Python ones."""
    assert _speedups.C is not None
    assert _speedups.C.pack_ints(ints) == _speedups.PYTHON.pack_ints(ints)
    assert _speedups.C.is_flat(ints) == _speedups.PYTHON.is_flat(ints)
    _same(ints)


class _WalkerOnCollect:
    """Walks every list the collector knows, item by item, when collected."""

    walks = 0

    def __del__(self) -> None:
        _WalkerOnCollect.walks += 1
        for o in gc.get_objects():
            if type(o) is list:
                for _ in o:
                    pass


def test_a_list_being_parsed_is_not_seen_half_filled() -> None:
    """The C unpack fills an array while msgpack's ExtType (Python) makes an
    unknown ext: a collection then may run a finalizer that walks
    gc.get_objects(), which must not meet the half-filled array."""
    assert _speedups.C is not None
    data = msgpack.packb([[1, 2, msgpack.ExtType(99, b"x"), [3, msgpack.ExtType(98, b"y"), 5], 6]
                          for _ in range(100)], use_bin_type=True)
    before = gc.get_threshold()
    _WalkerOnCollect.walks = 0
    try:
        for threshold in range(2, 60, 7):
            gc.collect()
            gc.set_threshold(threshold)
            w = _WalkerOnCollect()
            w.cycle = [w]  # collected by the collector, during the unpack
            del w
            assert _speedups.C.unpack(data) == msgpack.unpackb(data)
    finally:
        gc.set_threshold(*before)
    assert _WalkerOnCollect.walks > 0
