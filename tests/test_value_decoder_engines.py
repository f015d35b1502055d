"""The C value decoder against the Python one: the same objects, the same refusals.

The C engine's ``Decoder.dec`` and ``Decoder.dec_items`` (codec/_ccodec.c)
must rebuild from a blob the very object graph the Python methods rebuild
(the same values, the same sharing and cycles, registered in the same memo
order), and refuse a damaged or hostile blob with the same exception class
and message.  "The same graph" is checked by encoding what each engine
restored with the Python encoder: equal bytes mean equal values and equal
sharing.  Checked on generated values (the codec property tests' values and
instances that go through the reduce protocol), every suspension point of
the construct zoo, thousands of damaged copies of real blobs, and a table of
hand-made hostile trees, one per refusal the C decoder makes itself or hands
to a Python stage.  Each blob is loaded by the C engine cold (codes not yet
known to its snapshot engine) and warm.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import gc
import importlib
import operator
import random
import subprocess
import sys
import types
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from msgpack import ExtType

import corosnap
from corosnap import _accel
from corosnap.codec._engines import ENGINES
from corosnap.snapshot._api import default
from corosnap_fuzz import fuzz, zoo
from test_value_encoder_engines import FrozenSlots, mixed

pytestmark = pytest.mark.skipif(_accel.ENGINE != "c", reason="the C engine is not loaded")

T_TUPLE, T_SET, T_FROZENSET, T_DICT, T_FLATLIST, T_GLOBAL = 1, 2, 3, 4, 5, 6
T_REDUCE, T_NEWOBJ, T_SHAPED, T_METHOD = 11, 12, 16, 21


def tag(kind: int) -> ExtType:
    return ExtType(0, bytes([kind]))


def ref(i: int) -> ExtType:
    return ExtType(1, i.to_bytes(4, "big"))


def big(n: int) -> ExtType:
    return ExtType(2, n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True))


def glob(module: str, name: str) -> list[Any]:
    return [tag(T_GLOBAL), module, name]


class Refuses:
    """A class whose state cannot be set."""

    def __setstate__(self, state: Any) -> None:
        raise ValueError(f"no state for me: {state!r}")


class Plain:
    """An ordinary class: its state goes into its __dict__."""


class PartialSub(functools.partial):
    """A subclass of functools.partial (its state goes through partial's __setstate__)."""


class WithMethod:
    """An ordinary class with a method (a blob may hold its bound methods)."""

    def m(self) -> None:
        pass


def _outcome(snapshotter: Any, blob: bytes, safe: bool = False) -> tuple[str, Any]:
    try:
        if safe:
            snapshotter = snapshotter.replace(safe=True, allow=(
                "test_value_decoder_engines", "test_value_encoder_engines", "corosnap_fuzz"))
        g = snapshotter.loads(blob)
    except corosnap.CorosnapError as exc:
        return type(exc).__name__, str(exc)
    try:
        return "restored", default()._with_engine("python").dumps(g)
    except corosnap.CorosnapError as exc:  # restored, but holding what cannot be captured
        return "restored, " + type(exc).__name__, str(exc)
    finally:
        if hasattr(g, "close"):
            try:
                g.close()
            except Exception:  # noqa: BLE001 - a zoo generator's cleanup
                pass


def _same_objects(blob: bytes, warm_with: bytes | None = None,
                  safe: bool = False) -> tuple[str, Any]:
    python = _outcome(default()._with_engine("python"), blob, safe)
    cold = _outcome(default()._with_engine("c"), blob, safe)
    warm_snapshotter = default()._with_engine("c")
    try:
        warm_snapshotter.loads(warm_with or blob)
    except corosnap.CorosnapError:
        pass
    warm = _outcome(warm_snapshotter, blob, safe)
    assert cold == python
    assert warm == python
    return python


def _held(value: Any) -> bytes:
    g = zoo.holds(value)
    next(g)
    return corosnap.dumps(g)


def test_the_c_engine_decodes_values_in_c() -> None:
    # The engine's Decoder must really be the C one (not a silent fallback).
    dec = ENGINES["c"].Decoder.__dict__["dec"]
    assert type(dec).__name__ == "instancemethod"
    assert type(dec.__func__).__name__ == "builtin_function_or_method"
    assert "dec" not in ENGINES["python"].Decoder.__dict__


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mixed)
def test_generated_values_decode_alike(value: Any) -> None:
    assert _same_objects(_held(value))[0] == "restored"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(mixed, min_size=1, max_size=5), st.data())
def test_shared_references_and_cycles_decode_alike(pool: list[Any], data: st.DataObject) -> None:
    for box in [x for x in pool if type(x) in (list, dict)]:
        target = data.draw(st.sampled_from(pool))
        if type(box) is list:
            box.append(target)
        else:
            box["back"] = target
    assert _same_objects(_held([pool, pool[0], tuple(pool), {1, 2}]))[0] == "restored"


CHOSEN = {
    "dataclasses": [FrozenSlots(i, zoo.Color.RED) for i in range(30)]
    + [zoo.Frozen(f"n{i}", frozenset({i})) for i in range(30)],
    "records": [{"id": i, "name": f"n{i}", "tags": ["a", "b"], "score": i / 3} for i in range(40)],
    "scalar_keys": {1: "a", (1, 2): "tuple key", None: 0, 2**64: "big"},
    "sets": [set(), frozenset({1, 2}), {1, 2, 3}, {(1, 2), "x"}, bytearray(b"ab"), 1 + 2j],
    "ints": [2**70, -(2**70), [2**65] * 20, list(range(40)), [1.5, "a", None, b"x"] * 5],
    "shared_tuple": (lambda t: [t, t, {"t": t}])((1, [2], zoo.Color.RED)),
    "big_containers": [set(range(200)), {i * 7: i for i in range(100)},
                       frozenset(f"s{i}" for i in range(100)), list(range(-100, 100)),
                       [2**15 + i for i in range(20)], [-(2**31) - i for i in range(20)],
                       [2**62 + i for i in range(20)], bytearray(b"x" * 50)],
    "plain_state": (lambda p: (p.__dict__.update(a=1, b=[p]), [p, p])[1])(Plain()),
}


@pytest.mark.parametrize("name", sorted(CHOSEN))
def test_chosen_values_decode_alike(name: str) -> None:
    assert _same_objects(_held(CHOSEN[name]))[0] == "restored"


def test_every_zoo_suspension_point_decodes_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "unraisablehook", lambda _u: None)  # zoo generators on close
    compared = 0
    for sc in zoo.SCENARIOS:
        for k in range(len(sc.steps) + 1):
            obj = sc.make()
            if not fuzz._advance(obj, sc.steps[:k]):
                break
            try:
                blob = corosnap.dumps(obj)
            except corosnap.CorosnapError:
                continue
            _same_objects(blob)
            compared += 1
    assert compared > 100


def _damaged(blob: bytes, rng: random.Random) -> bytes:
    data = bytearray(blob)
    roll = rng.random()
    if roll < 0.4:
        for _ in range(rng.randint(1, 3)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif roll < 0.6:
        del data[rng.randrange(1, len(data)):]
    elif roll < 0.8:
        i = rng.randrange(len(data))
        data[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
    else:
        i, j = sorted(rng.randrange(len(data)) for _ in range(2))
        del data[i:j]
    return bytes(data)


@pytest.mark.parametrize("name", sorted(CHOSEN))
def test_damaged_blobs_decode_alike(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "unraisablehook", lambda _u: None)
    blob = _held(CHOSEN[name])
    rng = random.Random(name)
    outcomes = set()
    for _ in range(150):
        outcomes.add(_same_objects(_damaged(blob, rng), warm_with=blob)[0])
    assert len(outcomes) > 1  # the damage reached the decoder, not only the parser


def _tree_with(value: Any) -> bytes:
    """A holds() blob whose held value is replaced by ``value`` (a msgpack tree)."""
    tree = msgpack.unpackb(_held("marker"), strict_map_key=False)
    spots = [i for i, x in enumerate(tree) if x == "marker"]
    assert len(spots) == 1, tree
    tree[spots[0]] = value
    return msgpack.packb(tree, use_bin_type=True)


MOD = "test_value_decoder_engines"
# 17 floats with one hash (2.0 ** (61 * k): 2**61 = 1 modulo CPython's hash
# modulus), so 289 distinct pairs of them share one tuple hash; floats are
# not counted by the ext hook as big ints are.
_ONES = [2.0 ** (61 * k) for k in range(17)]
COLLIDING = [[tag(T_TUPLE), a, b] for a in _ONES for b in _ONES][:79]

HOSTILE: dict[str, tuple[Any, str, str]] = {
    # name: (tree, exception class, start of the message; CPython's own words
    # after it change between versions)
    "reference_past_the_memo": (ref(99), "CorruptSnapshot", "back-reference 99 points past"),
    "empty_reference": (ExtType(1, b""), "CorruptSnapshot", "back-reference 0 points past"),
    "long_reference": (ExtType(1, b"\0" * 5), "CorruptSnapshot", "back-reference 0 points"),
    "unknown_ext_as_state": ([tag(T_NEWOBJ), glob(MOD, "Plain"), [], ExtType(99, b"x")],
                             "CorruptSnapshot", "unknown ext type 99"),
    "unknown_ext_as_callable": ([tag(T_REDUCE), ExtType(98, b""), []],
                                "CorruptSnapshot", "unknown ext type 98"),
    "shape_past_the_shapes": ([tag(T_SHAPED), 7, 1], "CorruptSnapshot",
                              "dict shape reference points past"),
    "shape_index_not_an_int": ([tag(T_SHAPED), "0", 1], "CorruptSnapshot",
                               "dict shape reference points past"),
    "shape_index_huge": ([tag(T_SHAPED), big(2**70)], "CorruptSnapshot",
                         "dict shape reference points past"),
    "shape_length": ([{"a": 1, "b": 2, "c": 3, "d": 4}, [tag(T_SHAPED), 0, 1]],
                     "CorruptSnapshot", "dict shape and values differ in length"),
    "dict_pairs_odd": ([tag(T_DICT), 1, 2, 3], "CorruptSnapshot", "dict pairs of odd length"),
    "dict_key_unhashable": ([tag(T_DICT), [1], 2], "CorruptSnapshot",
                            "unhashable dict key: "),
    "set_item_unhashable": ([tag(T_SET), 1, {"a": 1}], "CorruptSnapshot",
                            "unhashable set item: "),
    "frozenset_item_unhashable": ([tag(T_FROZENSET), [1]], "CorruptSnapshot",
                                  "unhashable frozenset item: "),
    "set_flooding": ([tag(T_SET), *COLLIDING], "CorruptSnapshot", "79 of 79 items share"),
    "dict_flooding": ([tag(T_DICT), *[x for c in COLLIDING for x in (c, 0)]],
                      "CorruptSnapshot", "79 of 79 items share"),
    "big_unhashable_set": ([tag(T_SET), *range(70), [1]], "CorruptSnapshot",
                           "unhashable item: "),
    "int_list_of_width_3": (ExtType(9, bytes([3]) + bytes(6)), "CorruptSnapshot",
                            "malformed int list"),
    "int_list_cut_short": (ExtType(9, bytes([4]) + bytes(6)), "CorruptSnapshot",
                           "malformed int list"),
    "int_list_empty_payload": (ExtType(9, b""), "CorruptSnapshot", "malformed int list"),
    "global_missing": (glob("os", "no_such_thing"), "RestoreError",
                       "cannot resolve global os.no_such_thing"),
    "global_unimportable": (glob("no_such_module_here", "a"), "RestoreError",
                            "cannot resolve global no_such_module_here.a"),
    "global_through_a_module": (glob("os", "path.join"), "RestoreError",
                                "cannot resolve global os.path.join"),
    "global_bad_string_reference": ([tag(T_GLOBAL), 99, "a"], "CorruptSnapshot",
                                    "bad string reference 99"),
    "global_malformed": ([tag(T_GLOBAL), "os"], "CorruptSnapshot",
                         "malformed global reference"),
    "flat_list_with_a_list": ([tag(T_FLATLIST), 1, [2]], "CorruptSnapshot",
                              "a flat list holds a non-scalar"),
    "tuple_items_not_an_array": ([tag(T_REDUCE), glob(MOD, "Plain"), 5], "CorruptSnapshot",
                                 "expected an array"),
    "reduce_too_short": ([tag(T_REDUCE), glob(MOD, "Plain")], "CorruptSnapshot",
                         "malformed reduce"),
    "reduce_not_callable": ([tag(T_REDUCE), 5, []], "CorruptSnapshot",
                            "reduce callable is not callable"),
    "newobj_not_a_class": ([tag(T_NEWOBJ), glob("builtins", "len"), []], "CorruptSnapshot",
                           "object constructor is not a class"),
    "reduce_call_fails": ([tag(T_REDUCE), glob("fractions", "Fraction"), ["x"]], "RestoreError",
                          "rebuilding a 'Fraction' failed: ValueError(\"Invalid literal"),
    "newobj_call_fails": ([tag(T_NEWOBJ), glob("datetime", "date"), ["x"]], "RestoreError",
                          "rebuilding a 'date' failed: TypeError("),
    "setstate_fails": ([tag(T_NEWOBJ), glob(MOD, "Refuses"), [], {"a": 1}], "RestoreError",
                       "restoring the state of a Refuses failed: ValueError(\"no state for me"),
    "state_not_a_mapping": ([tag(T_NEWOBJ), glob(MOD, "Plain"), [], [1, 2]], "RestoreError",
                            "restoring the state of a Plain failed: "),
    "state_with_a_bad_reference": ([tag(T_NEWOBJ), glob(MOD, "Plain"), [], {"a": ref(999)}],
                                   "CorruptSnapshot", "back-reference 999 points past"),
    "nested_too_deep_through_references": (
        [[tag(T_NEWOBJ), glob(MOD, "Plain"), [], {"p": 0}]]
        + [[tag(T_NEWOBJ), ref(2), [], {"p": ref(3 + 2 * k)}] for k in range(2100)],
        "LimitExceeded", "objects nested more than 2000 deep through back-references"),
    # Every other link a bound method, whose nesting count Python's stage
    # writes (the C decoder's filter of counted objects must see it).
    "nested_too_deep_through_methods": (
        [[tag(T_NEWOBJ), glob(MOD, "WithMethod"), [], {"p": 0}]]
        + [x for k in range(1100)
           for x in ([tag(T_METHOD), ref(3 + 3 * k), "m"],
                     [tag(T_NEWOBJ), ref(2), [], {"p": ref(5 + 3 * k)}])],
        "LimitExceeded", "objects nested more than 2000 deep through back-references"),
    # partial.__setstate__ of 3.11-3.13 takes any object as the instance
    # dict; attribute access then fails in CPython or crashes it.
    "partial_with_a_list_for_its_dict": (
        [tag(T_REDUCE), glob("functools", "partial"), [glob("builtins", "print")],
         [tag(T_TUPLE), glob("builtins", "print"), [tag(T_TUPLE)], {}, [1]]],
        "CorruptSnapshot", "a functools.partial's instance dict must be a dict or None, "
                           "got list"),
    "partial_subclass_with_an_int_for_its_dict": (
        [tag(T_REDUCE), glob(MOD, "PartialSub"), [glob("builtins", "print")],
         [tag(T_TUPLE), glob("builtins", "print"), [tag(T_TUPLE)], None, 5]],
        "CorruptSnapshot", "a functools.partial's instance dict must be a dict or None, "
                           "got int"),
    "tuple_nested_too_deep": (
        [[tag(T_NEWOBJ), glob(MOD, "Plain"), [], {"p": 0}]]
        + [[tag(T_NEWOBJ), ref(2), [], {"p": [tag(T_TUPLE), ref(3 + 2 * k)]}]
           for k in range(2100)],
        "LimitExceeded", "objects nested more than 2000 deep through back-references"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_trees_are_refused_alike(name: str) -> None:
    tree, cls, message = HOSTILE[name]
    kind, text = _same_objects(_tree_with(tree), warm_with=_held(1))
    assert (kind, text[:len(message)]) == (cls, message) or message in text, (kind, text)
    assert kind == cls


@pytest.mark.parametrize("name", ["reduce_call_fails", "setstate_fails"])
def test_refusals_keep_the_cause(name: str) -> None:
    tree, _cls, _message = HOSTILE[name]
    blob = _tree_with(tree)
    for engine in ("python", "c"):
        with pytest.raises(corosnap.RestoreError) as info:
            default()._with_engine(engine).loads(blob)
        assert type(info.value.__cause__) in (ValueError, TypeError), engine


def test_safe_mode_reduces_decode_alike() -> None:
    # Safe mode: the C decoder hands every reduce to the Python stage.
    value = [FrozenSlots(1, zoo.Color.RED), zoo.Frozen("a", frozenset({1}))]
    python, = {_same_objects(_held(value), safe=True)}
    assert python[0] == "restored"
    bad = _tree_with([tag(T_REDUCE), glob("os", "system"), ["true"]])
    kind, text = _same_objects(bad, warm_with=_held(1), safe=True)
    assert kind == "UnsafeSnapshot", text


def test_back_references_used_as_map_keys_decode_alike() -> None:
    # The decoder keeps map keys as they are (markers included): the C parse
    # must give each key its own marker, as msgpack's does (found by review:
    # sharing one made two dicts share a key and re-encode differently).
    r1 = ExtType(1, b"\x01")
    for tree in ([{r1: 1}, {r1: 2}], [{r1: 1}, r1], {r1: [r1, {r1: 3}]}):
        _same_objects(_tree_with(tree), warm_with=_held(1))


def test_a_state_with_a_plain_dict_and_slots_decodes_alike() -> None:
    # (dict, slotstate) states go through Python's _set_state on both engines.
    class_tree = glob(MOD, "Plain")
    tree = [tag(T_NEWOBJ), class_tree, [], [tag(T_TUPLE), {"a": 1}, {"b": 2}]]
    kind, _blob = _same_objects(_tree_with(tree), warm_with=_held(1))
    assert kind == "restored"


class Abstract(abc.ABC):
    """A class object.__new__ refuses to make."""

    @abc.abstractmethod
    def run(self) -> None: ...


class NewByMeta(type):
    """A metaclass answering __new__ with its own maker: the class's tp_new
    is still object's, but func.__new__ is not object.__new__."""

    def __getattribute__(cls, name: str) -> Any:
        if name == "__new__":
            return lambda c, *args: ("made by the metaclass", c.__name__, args)
        return super().__getattribute__(name)


class MadeByMeta(metaclass=NewByMeta):
    pass


class NewAssigned:
    """A class whose __new__ is assigned after it is made."""


NewAssigned.__new__ = staticmethod(lambda c, *args: ("assigned", args))  # type: ignore


class WithArgs:
    """An object.__new__ class rebuilt with arguments (refused by object.__new__)."""


@pytest.mark.parametrize("name", ["Plain", "Abstract", "MadeByMeta", "NewAssigned", "WithArgs"])
def test_objects_made_by_object_new_are_made_alike(name: str) -> None:
    """NEWOBJ of a class whose __new__ is object's calls object's tp_new
    directly in C; any other class (an abstract one, a metaclass that
    answers __new__ itself, a __new__ assigned later, extra arguments) gives
    the very outcome Python's cls.__new__(cls, *args) gives."""
    args = [1] if name == "WithArgs" else []
    tree = [tag(T_NEWOBJ), glob(MOD, name), args]
    if name in ("Plain", "Abstract", "WithArgs"):
        tree.append({"x": 1})  # a state: the others make a tuple
    kind, text = _same_objects(_tree_with(tree), warm_with=_held(1))
    expected = "restored" if name in ("Plain", "MadeByMeta", "NewAssigned") else "RestoreError"
    assert kind.startswith(expected), (kind, text)


T_SEQITER = 15
T_SHAPED = 16
_MEMO_SEEDS = ([1, 2, 3], (4, 5), "abc", b"xy", {"k": 1}, Plain)
_STRING_SEEDS = (MOD,)
_SHAPE_SEEDS = (("x", "y"),)


class SetsState:
    """A class with a __setstate__ of its own (Python code)."""

    def __setstate__(self, state: Any) -> None:
        self.__dict__.update(state, by_setstate=True)


class Looks:
    """A class whose missing attributes are answered by Python code."""

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(name)


class CallsInC:
    """A class whose __call__ is C code: a follower (follows_unguarded)."""

    __call__ = operator.truth


class Slotted:
    """A class with slots and no __dict__."""

    __slots__ = ("x",)


class PropertyDict:
    """A class whose __dict__ is a property (Python code)."""

    @property  # type: ignore[misc]
    def __dict__(self) -> Any:  # noqa: PLE0307
        return {}


def _plain_trees() -> dict[str, Any]:
    return {
        "reference": ref(0),
        "reference_to_a_dict": ref(4),
        "reference_past_the_memo": ref(9),
        "empty_reference": ExtType(1, b""),
        "long_reference": ExtType(1, b"\0" * 5),
        "bytearray": ExtType(4, b"abc"),
        "int_list": ExtType(9, bytes([2]) + (7).to_bytes(2, "little") + (-3).to_bytes(
            2, "little", signed=True)),
        "malformed_int_list": ExtType(9, bytes([3, 1, 2, 3])),
        "pickled_value": ExtType(6, b"not a pickle"),
        "tuple": [tag(T_TUPLE), 1, "a", None, 2.5, b"z", True],
        "empty_tuple": [tag(T_TUPLE)],
        "tuple_of_a_list": [tag(T_TUPLE), [1]],
        "tuple_of_a_reference": [tag(T_TUPLE), ref(0)],
        "list_iterator": [tag(T_SEQITER), ref(0), 1],
        "tuple_iterator": [tag(T_SEQITER), ref(1), 1],
        "str_iterator": [tag(T_SEQITER), ref(2), 2],
        "bytes_iterator": [tag(T_SEQITER), ref(3), 0],
        "iterator_past_the_end": [tag(T_SEQITER), ref(0), 9],
        "iterator_before_the_start": [tag(T_SEQITER), ref(0), -4],
        "iterator_at_a_huge_index": [tag(T_SEQITER), ref(0), 2**64 - 1],
        "iterator_at_a_str_index": [tag(T_SEQITER), ref(0), "1"],
        "iterator_over_a_dict": [tag(T_SEQITER), ref(4), 0],
        "iterator_over_an_inline_list": [tag(T_SEQITER), [1, 2], 1],
        "iterator_past_the_memo": [tag(T_SEQITER), ref(7), 0],
        "short_iterator": [tag(T_SEQITER), ref(0)],
        "set": [tag(T_SET), 1],
        "plain_list": [1, 2],
        "int": 5,
        "instance": [tag(T_NEWOBJ), glob(MOD, "Plain"), [], {"x": 1, "y": "a", "z": None}],
        "instance_named_by_string_indexes": [tag(T_NEWOBJ), [tag(T_GLOBAL), 0, "Plain"], [],
                                             {"x": 1, "y": 2}],
        "instance_of_a_referenced_class": [tag(T_NEWOBJ), ref(5), [], {"x": 1, "y": 2}],
        "instance_with_no_state": [tag(T_NEWOBJ), glob(MOD, "Plain"), []],
        "instance_with_a_none_state": [tag(T_NEWOBJ), glob(MOD, "Plain"), [], None],
        "instance_with_an_empty_state": [tag(T_NEWOBJ), glob(MOD, "Plain"), [], {}],
        "instance_with_one_attribute": [tag(T_NEWOBJ), glob(MOD, "Plain"), [], {"x": 1}],
        "instance_with_a_scalar_attribute": [tag(T_NEWOBJ), glob(MOD, "Plain"), [], {"x": 2.5}],
        "instance_holding_a_list": [tag(T_NEWOBJ), glob(MOD, "Plain"), [], {"x": [1], "y": 2}],
        "instance_holding_a_reference": [tag(T_NEWOBJ), glob(MOD, "Plain"), [],
                                         {"x": ref(0), "y": 2}],
        "instance_with_an_int_key": [tag(T_NEWOBJ), glob(MOD, "Plain"), [], {1: 1, "y": 2}],
        "instance_with_a_shaped_state": [tag(T_NEWOBJ), glob(MOD, "Plain"), [],
                                         [tag(T_SHAPED), 0, 1, ref(0)]],
        "instance_with_a_short_shaped_state": [tag(T_NEWOBJ), glob(MOD, "Plain"), [],
                                               [tag(T_SHAPED), 0, 1]],
        "instance_with_a_shape_past_the_table": [tag(T_NEWOBJ), glob(MOD, "Plain"), [],
                                                 [tag(T_SHAPED), 1, 1, 2]],
        "instance_with_a_shaped_list": [tag(T_NEWOBJ), glob(MOD, "Plain"), [],
                                        [tag(T_SHAPED), 0, [1], 2]],
        "instance_holding_a_reference_past_the_memo": [tag(T_NEWOBJ), glob(MOD, "Plain"), [],
                                                       {"x": ref(9), "y": 2}],
        "instance_holding_a_tuple": [tag(T_NEWOBJ), glob(MOD, "Plain"), [],
                                     {"x": [tag(T_TUPLE), 1], "y": 2}],
        "instance_with_a_big_state": [tag(T_NEWOBJ), glob(MOD, "Plain"), [],
                                      {f"a{i}": i for i in range(40)}],
        "instance_with_arguments": [tag(T_NEWOBJ), glob(MOD, "Plain"), [1], {"x": 1}],
        "instance_with_items": [tag(T_NEWOBJ), glob(MOD, "Plain"), [], {"x": 1}, [1]],
        "instance_of_an_abstract_class": [tag(T_NEWOBJ), glob(MOD, "Abstract"), [], {"x": 1}],
        "instance_of_a_class_with_setstate": [tag(T_NEWOBJ), glob(MOD, "SetsState"), [],
                                              {"x": 1, "y": 2}],
        "instance_of_a_class_with_getattr": [tag(T_NEWOBJ), glob(MOD, "Looks"), [],
                                             {"x": 1, "y": 2}],
        "instance_of_a_follower": [tag(T_NEWOBJ), glob(MOD, "CallsInC"), [], {"x": 1, "y": 2}],
        "instance_of_a_slotted_class": [tag(T_NEWOBJ), glob(MOD, "Slotted"), [], {"x": 1}],
        "instance_of_a_class_with_a_property_dict": [tag(T_NEWOBJ), glob(MOD, "PropertyDict"),
                                                     [], {"x": 1}],
        "instance_of_a_metaclass_made_class": [tag(T_NEWOBJ), glob(MOD, "MadeByMeta"), []],
        "instance_of_an_exception": [tag(T_NEWOBJ), glob("builtins", "ValueError"), [], {}],
        "instance_of_a_builtin_type": [tag(T_NEWOBJ), glob("builtins", "object"), []],
        "instance_of_a_missing_class": [tag(T_NEWOBJ), glob(MOD, "NoSuchClass"), [], {}],
        "instance_of_a_dotted_name": [tag(T_NEWOBJ), glob(MOD, "Plain.__class__"), []],
        "instance_of_an_unimported_module": [tag(T_NEWOBJ), glob("_cs_never_imported", "X"), []],
        "instance_of_a_bad_string_index": [tag(T_NEWOBJ), [tag(T_GLOBAL), 7, "Plain"], []],
        "instance_of_a_non_global": [tag(T_NEWOBJ), [tag(T_TUPLE), 1], []],
        "reduce_calling_a_class": [tag(T_REDUCE), glob(MOD, "Plain"), []],
    }


# dec_plain's answers for these are NotImplemented although the Decoder
# decodes them: a list, a set, a reduce that runs Python code or is checked
_DECODER_ONLY = {
    "plain_list", "int", "set", "tuple_of_a_list", "tuple_of_a_reference", "iterator_over_a_dict",
    "iterator_over_an_inline_list", "pickled_value", "instance_holding_a_list",
    "instance_with_a_shaped_list", "instance_holding_a_tuple", "instance_with_a_big_state",
    "instance_with_an_int_key", "instance_with_items", "instance_of_a_class_with_setstate",
    "instance_of_a_class_with_getattr", "instance_of_a_follower",
    "instance_of_a_class_with_a_property_dict", "instance_of_a_metaclass_made_class",
    "instance_of_an_exception", "instance_of_a_builtin_type", "reduce_calling_a_class",
    "instance_of_a_dotted_name"}


def _memo_shape(memo: list[Any]) -> list[Any]:
    """The memo's objects by kind: the classes and seeds themselves, the rest by type."""
    return [x if isinstance(x, type) or any(x is y for y in _MEMO_SEEDS) else type(x)
            for x in memo]


@pytest.mark.parametrize("name", sorted(_plain_trees()))
def test_dec_plain_gives_what_the_decoder_gives_or_declines(name: str) -> None:
    """The codec's dec_plain (what the C restore asks first for a frame
    slot, with no Decoder) gives what Decoder.dec gives, registering the same
    objects in the memo, for a back-reference, a tuple of plain items and a
    sequence iterator over a back-reference; anything else, or a step that
    fails, is NotImplemented with nothing changed (the Decoder's then, which
    says what is wrong)."""
    from corosnap.codec import _ccodec
    from corosnap.codec._speedups import C

    assert C is not None
    importlib.import_module(MOD)  # a global of a module not imported is the Decoder's
    tree = C.unpack(msgpack.packb(_plain_trees()[name], use_bin_type=True))
    memo, strings, shapes = list(_MEMO_SEEDS), list(_STRING_SEEDS), list(_SHAPE_SEEDS)
    depth = _ccodec.Memo()
    got = _ccodec.dec_plain(memo, strings, shapes, depth, tree)
    dec = ENGINES["python"].Decoder(None)
    dec.memo.extend(_MEMO_SEEDS)
    dec.strings.extend(_STRING_SEEDS)
    dec.shapes.extend(_SHAPE_SEEDS)
    tree = C.unpack(msgpack.packb(_plain_trees()[name], use_bin_type=True))
    try:
        want: Any = dec.dec(tree)
    except Exception as exc:  # noqa: BLE001 - the decoder's refusal
        want = exc
    if got is NotImplemented:
        assert memo == list(_MEMO_SEEDS) and strings == list(_STRING_SEEDS)
        assert shapes == list(_SHAPE_SEEDS) and len(depth) == 0
        assert isinstance(want, Exception) or name in _DECODER_ONLY, (name, want)
        return
    assert name not in _DECODER_ONLY, name
    assert not isinstance(want, BaseException), (name, want)
    assert type(got) is type(want)
    if name.startswith("reference"):
        assert got is want  # the same seed objects are in both memos
    elif name in ("bytearray", "int_list"):
        assert got == want and memo[-1] is got and len(memo) == len(dec.memo)
    elif "iterator" in name:
        assert list(got) == list(want) and memo[-1] is got and len(memo) == len(dec.memo)
    elif name.startswith("instance"):
        # the same attributes, and every side effect the Decoder has: the
        # same objects registered in the memo in its order, the same names
        # in the string table, the same shapes, the same nesting depth
        stateless = name in ("instance_with_no_state", "instance_with_a_none_state")
        assert got.__dict__ == want.__dict__ and memo[-1 if stateless else -2] is got
        assert _memo_shape(memo) == _memo_shape(dec.memo)
        assert strings == dec.strings and shapes == dec.shapes
        assert len(depth) == len(dec.depth) == 1 and depth[id(got)] == dec.depth[id(want)]
        for key, value in got.__dict__.items():  # a back-reference names the seed itself
            if any(value is x for x in _MEMO_SEEDS):
                assert value is want.__dict__[key], key
    else:
        assert got == want and len(memo) == len(dec.memo)
    with pytest.raises(TypeError):
        _ccodec.dec_plain((), strings, shapes, depth, tree)
    with pytest.raises(TypeError):
        _ccodec.dec_plain(memo, strings, shapes, {}, tree)
    with pytest.raises(TypeError):
        _ccodec.dec_plain(memo, tree, None)


def test_dec_plain_counts_the_nesting_the_decoder_counts() -> None:
    """An instance dec_plain makes records its depth as the Decoder does:
    one more than the deepest of its class and its state's values already
    recorded; and one whose depth would pass the limit is left to the
    Decoder, which refuses it."""
    from corosnap.codec import _ccodec
    from corosnap.codec._decoder import MAX_NESTING
    from corosnap.codec._speedups import C

    assert C is not None
    importlib.import_module(MOD)
    shared = 7  # a small int: one object wherever it appears
    for deep in (3, MAX_NESTING - 1, MAX_NESTING):
        tree = C.unpack(msgpack.packb(
            [tag(T_NEWOBJ), glob(MOD, "Plain"), [], {"x": shared, "y": "s"}], use_bin_type=True))
        memo, strings, shapes, depth = [], [], [], _ccodec.Memo()
        depth[id(shared)] = deep
        got = _ccodec.dec_plain(memo, strings, shapes, depth, tree)
        if deep >= MAX_NESTING:
            assert got is NotImplemented and memo == [] and strings == [] and len(depth) == 1
            dec = ENGINES["c"].Decoder(None)
            dec.depth[id(shared)] = deep
            with pytest.raises(corosnap.LimitExceeded):
                dec.dec(tree)
            continue
        assert type(got) is sys.modules[MOD].Plain and got.x == shared
        assert depth[id(got)] == deep + 1


def test_dec_plain_sees_a_class_changed_after_it_answered_for_it() -> None:
    """dec_plain remembers which classes it can make with no code run; a
    class changed afterwards (a __setstate__, a C __call__, a __getattr__
    added to it or to a base) is the Decoder's from then on."""
    from corosnap.codec import _ccodec
    from corosnap.codec._speedups import C

    assert C is not None
    module = types.ModuleType("_cs_changing_classes")
    sys.modules[module.__name__] = module
    try:
        for change in ("__setstate__", "__call__", "__getattr__", "base __setstate__"):
            base = type("Base", (), {})
            cls = type("Changing", (base,), {"__module__": module.__name__})
            module.Changing = cls  # type: ignore[attr-defined]
            tree0 = [tag(T_NEWOBJ), glob(module.__name__, "Changing"), [], {"x": 1, "y": 2}]

            def answer(tree0: Any = tree0) -> Any:
                tree = C.unpack(msgpack.packb(tree0, use_bin_type=True))
                return _ccodec.dec_plain([], [], [], _ccodec.Memo(), tree)

            assert type(answer()) is cls
            if change == "__setstate__":
                cls.__setstate__ = lambda self, state: None  # type: ignore[attr-defined]
            elif change == "__call__":
                cls.__call__ = operator.truth  # type: ignore[attr-defined]
            elif change == "__getattr__":
                cls.__getattr__ = lambda self, name: 1  # type: ignore[attr-defined]
            else:
                base.__setstate__ = lambda self, state: None  # type: ignore[attr-defined]
            assert answer() is NotImplemented, change
    finally:
        del sys.modules[module.__name__]


_STATE_KEYS = st.sampled_from(["x", "y", "z", "w", "x", "y", 1])
_STATE_VALUES = st.one_of(
    st.integers(-3, 300), st.sampled_from(["a", "", None, True, 2.5, b"b", 7, "c"]),
    st.integers(0, 4).map(ref),  # within the holder's memo, or past it
    st.sampled_from([[1, 2], [tag(T_TUPLE), 1], 3, "d", None, 4.5]))


@pytest.fixture(scope="module")
def globals_module() -> Any:
    """This file as the blobs' globals name it (imported here, not inside a
    generated test: importing it defines generated tests)."""
    return importlib.import_module(MOD)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["Plain"] * 5 + ["SetsState", "Looks", "Slotted", "CallsInC", "Abstract"]),
       st.dictionaries(_STATE_KEYS, _STATE_VALUES, max_size=6), st.booleans(), st.booleans())
def test_generated_instances_in_a_slot_restore_alike(globals_module: Any, name: str,
                                                      state: dict[Any, Any], twice: bool,
                                                      shaped: bool) -> None:
    """An instance in a frame slot, of a class dec_plain makes or leaves to
    the Decoder, with a generated state (plain values, references within
    and past the memo, lists, tuples, an int key), once or twice in the frame
    (the second one by a back-reference to the class and, when it can be, a
    reference to the first one's shape): every engine restores the same
    objects or refuses alike."""
    first = [tag(T_NEWOBJ), glob(MOD, name), [], state]
    if not twice:
        _same_objects(_tree_with(first))
        return
    # two slots of one frame: the second instance names the same class, and
    # its state is the first one's shape, or a tuple holding the first one
    second_state: Any = dict(state)
    if shaped and len(state) >= 2 and all(type(k) is str for k in state):
        second_state = [tag(T_SHAPED), 0, *state.values()]
    elif shaped:
        second_state = [tag(T_TUPLE), ref(3), 1]
    g = _two_values()
    next(g)
    tree = msgpack.unpackb(corosnap.dumps(g), strict_map_key=False)
    tree[tree.index("MARK_A")] = first
    tree[tree.index("MARK_B")] = [tag(T_NEWOBJ), glob(MOD, name), [], second_state]
    _same_objects(msgpack.packb(tree, use_bin_type=True))


_BASES_SWAPPED = r"""
import gc, sys, types
import corosnap

source = (
    "class B: pass\n"
    "class B2: pass\n"
    "class C(B): pass\n"
    "def gen():\n"
    "    shared = [1]\n"
    "    c = C()\n"
    "    c.x = shared\n"
    "    c.y = 1\n"
    "    yield shared, c\n")
mod = types.ModuleType("_cs_swapped_bases")
mod.__file__ = "<_cs_swapped_bases>"
sys.modules[mod.__name__] = mod
exec(compile(source, mod.__file__, "exec"), mod.__dict__)
g = mod.gen()
next(g)
blob = corosnap.dumps(g)
del g
corosnap.loads(blob).close()  # the code is known to the C restore
fired = []
pad = []
junk = []
PAD = int(sys.argv[1])  # moves the collections by a few allocations

class Swap:
    def __del__(self):
        # the class's __dict__ descriptor is its base's: the base is freed
        fired.append("swap")
        mod.C.__bases__ = (mod.B2,)
        del mod.B
        gc.collect()
        junk.extend(bytes([65] * 30) for _ in range(20000))  # over the freed memory

class Trigger:
    def __del__(self):
        # run by the collector inside the restore: once the loads' memo
        # holds the class (dec_plain has committed and is making the
        # instance), put a Swap in the tree's state dict, freed when
        # dec_plain writes the state's values back
        for o in gc.get_referrers(mod.C):
            if type(o) is list and len(o) == 3 and o[2] is mod.C and o[1] == [1]:
                for d in gc.get_objects():
                    if type(d) is dict and d.get("y") == 1 and "x" in d and len(d) == 2:
                        fired.append("planted")
                        d["y"] = Swap()
                        return
        if len(fired) < 10000:
            fired.append(1)
            t = Trigger()
            t.self = t
            pad.extend([] for _ in range(PAD))

gc.collect()
gc.disable()
t = Trigger()
t.self = t
del t
gc.set_threshold(1)
gc.enable()
try:
    h = corosnap.loads(blob)
    outcome = sorted(h.gi_frame.f_locals["c"].__dict__.items(), key=repr)
except corosnap.CorosnapError as exc:
    outcome = type(exc).__name__
gc.set_threshold(700)
print([f for f in fired if f != 1], outcome)
"""


def test_a_class_whose_bases_change_while_its_instance_is_made_is_read_as_it_is_then() -> None:
    """A finalizer run by the collector while dec_plain makes an instance
    (3.11 collects inside allocations) swaps the class's bases and frees the
    base whose __dict__ descriptor the class had: the descriptor is looked
    up again and held for the call (it was read freed and crashed)."""
    swapped = 0
    for pad in range(2):
        proc = subprocess.run([sys.executable, "-c", _BASES_SWAPPED, str(pad)],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, (pad, proc.returncode, proc.stderr[-2000:])
        assert "[('x', [1])" in proc.stdout or "RestoreError" in proc.stdout, proc.stdout
        swapped += "'swap'" in proc.stdout
    # 3.11 collects inside allocations: the base is freed inside dec_plain
    assert swapped or sys.version_info >= (3, 12)


def test_a_string_table_entry_that_is_no_str_is_refused_alike() -> None:
    """A global naming its module or class by a string-table entry that is
    not a str (only code reaching the loads' table can put one there) is
    declined by dec_plain and refused by both Decoders as the Python one
    refuses it (the C Decoder read it as a str and crashed)."""
    from corosnap.codec import _ccodec
    from corosnap.codec._speedups import C

    assert C is not None
    importlib.import_module(MOD)
    for table in ([MOD, b"Plain"], [b"mod", "Plain"], [MOD, ("Plain",)]):
        tree0 = [tag(T_NEWOBJ), [tag(T_GLOBAL), 0, 1], [], {"x": 1}]
        tree = C.unpack(msgpack.packb(tree0, use_bin_type=True))
        memo: list[Any] = []
        strings = list(table)
        got = _ccodec.dec_plain(memo, strings, [], _ccodec.Memo(), tree)
        assert got is NotImplemented and memo == [] and strings == table
        outcomes = []
        for engine in ("c", "python"):
            dec = ENGINES[engine].Decoder(None)
            dec.strings.extend(table)
            with pytest.raises(corosnap.CorruptSnapshot) as info:
                dec.dec(C.unpack(msgpack.packb(tree0[1], use_bin_type=True)))
            outcomes.append(str(info.value))
        assert outcomes[0] == outcomes[1] and "non-string" in outcomes[0], outcomes


def test_a_state_changed_while_its_instance_is_made_is_a_restore_error() -> None:
    """A finalizer run while dec_plain makes an instance that drops a key of
    the tree's state dict: a RestoreError naming the class, as the Decoder
    says of a state that fails (it was a bare RuntimeError)."""
    from corosnap.codec import _ccodec
    from corosnap.codec._speedups import C

    assert C is not None
    if sys.version_info >= (3, 12):
        pytest.skip("the collector runs inside allocations only up to 3.11")
    importlib.import_module(MOD)
    tree = C.unpack(msgpack.packb(
        [tag(T_NEWOBJ), glob(MOD, "Plain"), [], {"x": ref(0), "y": 1}], use_bin_type=True))
    state = tree[3]
    strings: list[Any] = []

    class Trigger:
        def __del__(self) -> None:
            if not strings:  # before the commit: again, at the next collection
                again = Trigger()
                again.self = again  # type: ignore[attr-defined]
                return
            state.pop("y", None)

    gc.collect()
    gc.disable()
    first = Trigger()
    first.self = first  # type: ignore[attr-defined]
    del first
    threshold = gc.get_threshold()
    gc.set_threshold(1)
    gc.enable()
    try:
        got: Any = _ccodec.dec_plain([[1]], strings, [], _ccodec.Memo(), tree)
    except corosnap.CorosnapError as exc:
        got = exc
    finally:
        gc.set_threshold(*threshold)
        gc.collect()
    assert "y" not in state  # the finalizer ran inside dec_plain, once it had committed
    assert type(got) is corosnap.RestoreError, got
    assert "restoring the state of a Plain failed" in str(got), got


def test_dec_plain_runs_no_code_for_a_class_with_a_key_that_is_no_str() -> None:
    """A class whose dict (or a base's) holds a key that is not a str, here
    one whose hash is `__setstate__`'s: looking names up on it could call
    that key's __eq__, so dec_plain leaves it to the Decoder, having run
    nothing."""
    from corosnap.codec import _ccodec
    from corosnap.codec._speedups import C

    assert C is not None
    ran: list[str] = []

    class Key:
        def __init__(self, text: str) -> None:
            self.text = text

        def __hash__(self) -> int:
            return hash(self.text)

        def __eq__(self, other: object) -> bool:
            ran.append(self.text)
            return False

    module = types.ModuleType("_cs_keys_that_are_no_str")
    sys.modules[module.__name__] = module
    try:
        base = type("Base", (), {Key("__setstate__"): 1})  # type: ignore[dict-item]
        module.Own = type("Own", (), {Key("__setstate__"): 1, "__module__": module.__name__})
        module.Inherits = type("Inherits", (base,), {"__module__": module.__name__})
        module.Clean = type("Clean", (), {"__module__": module.__name__})
        for name in ("Own", "Inherits", "Clean"):
            tree = C.unpack(msgpack.packb([tag(T_NEWOBJ), glob(module.__name__, name), [],
                                           {"a": 1}], use_bin_type=True))
            got = _ccodec.dec_plain([], [], [], _ccodec.Memo(), tree)
            assert ran == [], (name, ran)
            assert (got is NotImplemented) == (name != "Clean"), (name, got)
    finally:
        del sys.modules[module.__name__]


_SHAPED_CUT = r"""
import sys, types
import msgpack
from msgpack import ExtType
from corosnap.codec import _ccodec
from corosnap.codec._speedups import C

holder = {}

class Key:
    # a key of the module's dict that is no str, whose hash is the class
    # name's: finding the class calls its __eq__, which cuts the tree's
    # shaped state list short and reuses the memory its items had
    def __hash__(self):
        return hash("Plain")

    def __eq__(self, other):
        state = holder.get("state")
        if state is not None:
            del state[2:]
            holder["junk"] = [bytes([65]) * 40 for _ in range(10000)]
        return False

mod = types.ModuleType("_cs_shaped_cut")
sys.modules[mod.__name__] = mod
mod.__dict__[Key()] = 1
mod.Plain = type("Plain", (), {"__module__": mod.__name__})
values = ["v%d" % i * 50 for i in range(30)]
keys = tuple("k%d" % i for i in range(30))
tree = C.unpack(msgpack.packb([ExtType(0, bytes([12])),
                               [ExtType(0, bytes([6])), mod.__name__, "Plain"], [],
                               [ExtType(0, bytes([16])), 0, *values]], use_bin_type=True))
del values
holder["state"] = tree[3]
got = _ccodec.dec_plain([], [], [keys], _ccodec.Memo(), tree)
print(type(got).__name__)
"""


def test_a_shaped_state_cut_short_while_the_class_is_found_is_declined() -> None:
    """Finding the class compares the blob's name with the keys of the
    module's dict; a key that is no str and whose hash is the name's has its
    __eq__ called, which here cuts the tree's shaped state short: dec_plain
    reads its length again and leaves it to the Decoder (it read the items
    past the end, freed: a crash on 3.11)."""
    proc = subprocess.run([sys.executable, "-c", _SHAPED_CUT], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert proc.stdout.strip() == "NotImplementedType", proc.stdout


@dataclasses.dataclass
class Request:
    kind: str
    arg: Any


def _requests() -> Any:
    first = Request("price", "pear")
    second = Request("price", "fig")
    both = (first, second)
    attrs = first.__dict__
    yield first
    yield both, attrs


def test_instances_restored_without_a_decoder_share_its_tables() -> None:
    """A frame whose slots hold dataclass instances: the first one is made
    without a Decoder (dec_plain); the second names the class by a
    back-reference and its state by the first one's shape, and the tuple
    holding both counts their depth, which the Decoder made for them reads
    from the tables it shares with the restore.  Every engine restores the
    same objects, shared as they were."""
    g = _requests()
    next(g)
    blob = corosnap.dumps(g)
    text = repr(msgpack.unpackb(blob, strict_map_key=False))
    assert text.count("ExtType(code=0, data=b'\\x0c')") == 2  # two NEWOBJ
    assert "ExtType(code=0, data=b'\\x10')" in text  # a shaped dict
    kind, _ = _same_objects(blob)
    assert kind == "restored"
    for engine in ("c", "python"):
        h = default()._with_engine(engine).loads(blob)
        (first, second), attrs = next(h)
        assert type(first) is type(second) is Request
        # the state dict is a value of its own, as pickle's BUILD leaves it
        assert (first.arg, second.arg) == ("pear", "fig") and attrs == first.__dict__


def _two_values() -> Any:
    a = "MARK_A"
    b = "MARK_B"
    yield a, b


def test_a_tuple_after_a_deep_chain_is_refused_alike() -> None:
    """A tuple in a frame slot counts its items' nesting when the loads'
    Decoder has recorded some (dec_plain leaves it to the Decoder then): here
    slot a rebuilds a chain of 1,999 objects whose last one is given to
    operator.truth, so True itself gets a depth of 2,000, and slot b's tuple
    holding True is one level too deep, on every engine."""
    g = _two_values()
    next(g)
    tree = msgpack.unpackb(corosnap.dumps(g), strict_map_key=False)
    n = 1998
    chain = ([[tag(T_NEWOBJ), glob(MOD, "Plain"), [], {"p": 0}]]
             + [[tag(T_NEWOBJ), ref(2), [], {"p": ref(3 + 2 * k)}] for k in range(n)]
             + [[tag(T_REDUCE), glob("operator", "truth"), [ref(3 + 2 * n)]]])
    tree[tree.index("MARK_A")] = chain
    tree[tree.index("MARK_B")] = [tag(T_TUPLE), True]
    kind, text = _same_objects(msgpack.packb(tree, use_bin_type=True))
    assert kind == "LimitExceeded" and "nested more than" in text, (kind, text)


class _PropertyModule(types.ModuleType):
    """A module type whose property hides the dict entry of the same name."""

    @property
    def x(self) -> int:
        return 43


def _modules_for_globals() -> dict[str, types.ModuleType]:
    plain = types.ModuleType("_cs_plain_globals")
    plain.x = 41  # type: ignore[attr-defined]
    plain.__doc__ = "the plain one"
    lazy = types.ModuleType("_cs_lazy_globals")
    lazy.__getattr__ = lambda name: 42 if name == "x" else None  # type: ignore[attr-defined]
    hidden = _PropertyModule("_cs_hidden_globals")
    hidden.__dict__["x"] = 0
    return {m.__name__: m for m in (plain, lazy, hidden)}


@pytest.mark.parametrize(("module", "name", "value"), [
    ("_cs_plain_globals", "x", 41),
    ("_cs_plain_globals", "__doc__", "the plain one"),
    ("_cs_lazy_globals", "x", 42),
    ("_cs_hidden_globals", "x", 43),
])
def test_globals_resolve_as_getattr_resolves_them(
        module: str, name: str, value: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A global in a plain module is read from the module's dict in C; a name
    ModuleType itself defines, a module-level __getattr__ and a module of a
    ModuleType subclass give what getattr(module, name) gives."""
    for mod_name, mod in _modules_for_globals().items():
        monkeypatch.setitem(sys.modules, mod_name, mod)
    blob = _tree_with(glob(module, name))
    kind, _text = _same_objects(blob, warm_with=_held(1))
    assert kind == "restored"
    g = default()._with_engine("c").loads(blob)
    assert g.gi_frame.f_locals["value"] == value
    g.close()


@pytest.mark.skipif(not hasattr(types, "LazyImportType"), reason="no lazy imports (PEP 810)")
def test_a_global_imported_lazily_is_the_imported_object(monkeypatch: pytest.MonkeyPatch) -> None:
    """A module's dict holds a placeholder for a name imported lazily until
    getattr on the module imports it: a global naming it is the imported
    module, as getattr gives it, on both engines."""
    import colorsys

    mod = types.ModuleType("_cs_lazy_import_globals")
    exec(compile("lazy import colorsys\n", mod.__name__, "exec"), mod.__dict__)
    assert type(mod.__dict__["colorsys"]) is types.LazyImportType
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    blob = _tree_with(glob(mod.__name__, "colorsys"))
    for engine in ("python", "c", "c"):
        mod.__dict__["colorsys"] = _lazy_placeholder()
        g = default()._with_engine(engine).loads(blob)
        assert g.gi_frame.f_locals["value"] is colorsys, engine
        g.close()


def _lazy_placeholder() -> Any:
    scratch: dict[str, Any] = {"__name__": "_cs_lazy_scratch"}
    exec(compile("lazy import colorsys\n", "_cs_lazy_scratch", "exec"), scratch)
    return scratch["colorsys"]


def test_a_process_that_never_encoded_decodes_alike(tmp_path: Any) -> None:
    # The C decoder must not depend on anything the C encoder sets up on
    # first use: a process that only loads (a worker) decodes alike.
    blobs = [_held(CHOSEN[name]) for name in sorted(CHOSEN)]
    blobs.append(_tree_with(HOSTILE["reduce_call_fails"][0]))
    blobs.append(_tree_with(HOSTILE["setstate_fails"][0]))
    for k, blob in enumerate(blobs):
        (tmp_path / f"{k}.blob").write_bytes(blob)
    script = f"""
import pathlib, sys
import corosnap
from corosnap.snapshot._api import default
results = {{}}
for engine in ("c", "python"):
    for path in sorted(pathlib.Path({str(tmp_path)!r}).glob("*.blob")):
        try:
            results[engine, path.name] = default()._with_engine(engine).loads(path.read_bytes())
        except corosnap.CorosnapError as exc:
            results[engine, path.name] = (type(exc).__name__, str(exc))
out = {{}}
for (engine, name), r in sorted(results.items()):
    out[engine, name] = r if type(r) is tuple else default()._with_engine("python").dumps(r)
names = sorted({{name for _, name in out}})
bad = [name for name in names if out["c", name] != out["python", name]]
print("SAME" if not bad else f"DIFFER {{bad}}", len(names))
"""
    import os
    import subprocess
    here = os.path.dirname(os.path.abspath(__file__))
    tools = os.path.join(os.path.dirname(here), "tools")
    proc = subprocess.run([sys.executable, "-W", "ignore", "-c", script], capture_output=True,
                          text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join([here, tools])})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["SAME", str(len(blobs))], proc.stdout


class Callee:
    """A class that becomes callable in C (a follower) halfway through a test."""


def test_a_class_that_becomes_a_follower_is_decoded_as_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The C decoder remembers follows_unguarded() across blobs while a class
    # is unchanged; giving the class a C __call__ must be noticed.
    from corosnap.codec._decoder import Decoder

    obj = Callee()
    obj.__dict__["a"] = 1
    blob = _held(obj)
    c = default()._with_engine("c")
    calls: list[Any] = []
    real = Decoder._reduce_state

    def spy(self: Any, v: Any, built: Any, args: Any) -> Any:
        calls.append(type(built))
        return real(self, v, built, args)

    monkeypatch.setattr(Decoder, "_reduce_state", spy)
    c.loads(blob)
    assert Callee not in calls  # not a follower: the C decoder sets its state
    monkeypatch.setattr(Callee, "__call__", len, raising=False)
    c.loads(blob)
    assert Callee in calls  # a follower with state: the Python stage
    monkeypatch.delattr(Callee, "__call__")
    calls.clear()
    c.loads(blob)
    assert Callee not in calls


def _tree_changers() -> dict[str, Any]:
    # A reduce's array is reachable while it is decoded (through the plain
    # list holding it, already in the memo: memo 1 here), so a blob's own
    # callables can change it under the decoder (outside safe mode).
    get_r = [tag(T_REDUCE), glob("operator", "getitem"), [ref(1), 0]]
    clear_r = [tag(T_REDUCE), glob("builtins", "list.clear"), [get_r]]
    replace_args = [tag(T_REDUCE), glob("operator", "setitem"), [get_r, 2, None]]
    grow_r = [tag(T_REDUCE), glob("builtins", "list.extend"), [get_r, [1, 2, 3, 4]]]
    def clearing(k: int) -> list[Any]:  # list.clear(the parent's item k)
        return [tag(T_REDUCE), glob("builtins", "list.clear"),
                [[tag(T_REDUCE), glob("operator", "getitem"), [ref(1), k]]]]

    return {
        "tuple_item_empties_the_tuple": [[tag(T_TUPLE), clearing(0), 1, 2]],
        "set_item_empties_the_set": [[tag(T_SET), 1, clearing(0), 2]],
        "dict_pairs_item_empties_them": [[tag(T_DICT), 1, clearing(0), 2, 3]],
        "shaped_value_empties_the_shape": [
            {"a": 1, "b": 2, "c": 3, "d": 4}, [tag(T_SHAPED), 0, clearing(1), 2, 3, 4]],
        "callable_empties_its_reduce": [[tag(T_REDUCE), clear_r, []]],
        "argument_replaces_the_arguments": [
            [tag(T_REDUCE), glob("builtins", "print"),
             [replace_args] + [[tag(T_TUPLE), i] for i in range(50)]]],
        "argument_grows_the_reduce": [
            [tag(T_NEWOBJ), glob(MOD, "Plain"), [grow_r], {"a": 1}]],
    }


@pytest.mark.parametrize("name", sorted(_tree_changers()))
def test_blobs_that_change_their_own_tree_decode_alike(name: str, capsys: Any) -> None:
    _same_objects(_tree_with(_tree_changers()[name]), warm_with=_held(1))
