"""The C value encoder against the Python one: the same bytes for every value.

The C engine's ``Encoder.enc`` and ``Encoder.enc_items`` (codec/_ccodec.c)
must build the very tree the Python methods build, so that a blob does not
depend on the engine that wrote it.  Checked here on generated values (the
codec property tests' values, plus instances that go through the reduce
protocol: frozen and slotted dataclasses, enums, datetimes, Decimals, big
ints, shared references and cycles, module globals) and on every suspension
point of the construct zoo, each captured cold (codes not yet known to the C
snapshot engine) and warm.  Builtin iterators, which the C encoder hands back
to the Python one, are checked in every place a value can hold them, with the
refusal of subclasses of itertools' types and module-level iterators stored by
reference.  A refusal must be the same too: the same
exception class and message.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import functools
import itertools
import sys
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import corosnap
from corosnap import _accel
from corosnap.codec._engines import ENGINES
from corosnap.snapshot._api import default
from corosnap_fuzz import fuzz, zoo
from test_codec_properties import values as property_values

pytestmark = pytest.mark.skipif(_accel.ENGINE != "c", reason="the C engine is not loaded")



@dataclasses.dataclass(frozen=True, slots=True)
class FrozenSlots:
    a: Any
    b: Any


rich = st.one_of(
    st.builds(zoo.Point, st.integers(), st.lists(st.integers(), max_size=3)),
    st.builds(zoo.Frozen, st.text(max_size=4), st.frozensets(st.integers(), max_size=3)),
    st.sampled_from(list(zoo.Color)), st.sampled_from(list(zoo.Flags)),
    st.builds(zoo.Slotted, st.integers(), st.text(max_size=2)),
    st.builds(FrozenSlots, st.integers(), st.sampled_from(list(zoo.Color))),
    st.datetimes(), st.dates(), st.timedeltas(),
    st.decimals(allow_nan=False, places=3),
    st.integers(min_value=2**64, max_value=2**200),
    st.integers(min_value=-(2**200), max_value=-(2**63) - 1),
    st.just(zoo.LOG), st.just(len), st.just(zoo.Frozen), st.just(zoo.double),
)
mixed = st.recursive(
    st.one_of(property_values, rich),
    lambda c: st.lists(c, max_size=6) | st.tuples(c, c)
    | st.dictionaries(st.text(max_size=3), c, max_size=4)
    | st.builds(FrozenSlots, c, c) | st.builds(zoo.Slotted, c, c),
    max_leaves=20,
)


def _outcome(snapshotter: Any, obj: Any) -> tuple[str, Any]:
    try:
        return "blob", snapshotter.dumps(obj)
    except corosnap.CorosnapError as exc:
        return type(exc).__name__, str(exc)


def _same_bytes(obj: Any) -> None:
    python = default()._with_engine("python")
    c = default()._with_engine("c")
    expected = _outcome(python, obj)
    assert _outcome(c, obj) == expected  # cold
    assert _outcome(c, obj) == expected  # warm: the C snapshot engine calls the C enc


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mixed)
def test_generated_values_encode_to_the_same_bytes(value: Any) -> None:
    g = zoo.holds(value)
    next(g)
    _same_bytes(g)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(mixed, min_size=1, max_size=5), st.data())
def test_shared_references_and_cycles_encode_to_the_same_bytes(pool: list[Any],
                                                                 data: st.DataObject) -> None:
    containers = [x for x in pool if type(x) in (list, dict)]
    for box in containers:  # make some cycles
        target = data.draw(st.sampled_from(pool))
        if type(box) is list:
            box.append(target)
        else:
            box["back"] = target
    g = zoo.holds([pool, pool[0], tuple(pool)])
    next(g)
    _same_bytes(g)


@pytest.mark.parametrize("value", [
    [FrozenSlots(i, zoo.Color.RED) for i in range(30)]
    + [zoo.Frozen(f"n{i}", frozenset({i})) for i in range(30)],
    {"when": datetime.datetime(2024, 1, 2, 3, 4, 5), "price": decimal.Decimal("1.25")},
    [2**70, -(2**70), [2**65] * 20, list(range(40)), [1.5, "a", None, b"x"] * 5],
    {1: "a", (1, 2): "tuple key", None: 0},
    {2**64: "too big a key", "k": 1},
    [set(), frozenset({1, 2}), {1, 2, 3}, bytearray(b"ab"), 1 + 2j, range(3)],
    zoo.LOG,
    [len, zoo.Frozen, sys.modules["corosnap_fuzz.zoo"], zoo.double, zoo.Color, zoo.Color.RED],
], ids=["dataclasses", "datetime_decimal", "ints", "scalar_keys", "big_key", "others",
        "module_global", "globals"])
def test_chosen_values_encode_to_the_same_bytes(value: Any) -> None:
    g = zoo.holds(value)
    next(g)
    _same_bytes(g)


def test_strict_re_encoding_is_the_same() -> None:
    # A lone surrogate and an int past 64 bits: the fast encoding overflows,
    # and both engines encode again, strictly.
    g = zoo.holds([{"\udc80": 2**64}, "\ud800", [2**64 + 1] * 20,
                       {"a": {"b": "\udfff"}}, FrozenSlots("\udc00", 2**90)])
    next(g)
    _same_bytes(g)


def test_refusals_are_the_same() -> None:
    import threading
    g = zoo.holds([1, threading.Lock()])
    next(g)
    _same_bytes(g)


def test_every_zoo_suspension_point_encodes_to_the_same_bytes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "unraisablehook", lambda _u: None)  # zoo generators on close
    compared = 0
    for sc in zoo.SCENARIOS:
        for k in range(len(sc.steps) + 1):
            obj = sc.make()
            if not fuzz._advance(obj, sc.steps[:k]):
                break
            _same_bytes(obj)
            compared += 1
    assert compared > 100


class CountSub(itertools.count):
    """A subclass of an itertools type: refused by both encoders, never reduced."""


class ChainSub(itertools.chain):
    pass


@dataclasses.dataclass
class PosingAsCount:
    """Not a subclass, but its __class__ says itertools.count: isinstance() is
    true for it, so both encoders refuse it as they refuse a subclass."""

    n: int

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        return itertools.count


@dataclasses.dataclass
class PosingAsInt:
    """Its __class__ says int: not an itertools type, so reduced as usual."""

    n: int

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        return int


MODULE_COUNT = itertools.count(5)
MODULE_MAP = map(abs, [-1, -2, -3])
MODULE_COUNT_SUB = CountSub(3)


def _iterator_values() -> list[Any]:
    src = iter(range(100, 110))
    t1, t2 = itertools.tee(src)
    next(t1)
    grouped = itertools.groupby("aabbbc")
    next(grouped)
    islice = itertools.islice(map(abs, [-1, -2, -3, -4]), 1, None)
    next(islice)
    return [
        itertools.count(1000), {"ids": itertools.count(2, 3), "cyc": itertools.cycle("ab")},
        (t1, t2, t1), grouped, islice,
        FrozenSlots(itertools.repeat("r", 3), itertools.chain([1], {"k": 2})),
        zoo.Slotted(itertools.zip_longest([1], "ab", fillvalue=[]), filter(None, [0, 1])),
        [reversed([1, 2, 3]), iter(list().pop, None), itertools.product("ab", repeat=2)],
        itertools.starmap(pow, [(2, 3)]),
    ]


@pytest.mark.parametrize("index", range(len(_iterator_values())))
def test_builtin_iterators_encode_to_the_same_bytes(index: int) -> None:
    # The C encoder hands each builtin iterator to the Python one
    # (_enc_other), which calls the C enc again for the values inside.
    g = zoo.holds(_iterator_values()[index])
    next(g)
    _same_bytes(g)


class ListSub(list[Any]):
    pass


class TupleSub(tuple[Any, ...]):
    pass


def _sequence_iterators() -> list[Any]:
    shared = [1, [2], 3]
    mid, done, shrunk = iter(shared), iter([7]), iter([4, 5, 6])
    next(mid)
    next(done, None), next(done, None)
    next(shrunk), next(shrunk)
    shrunk_list = shrunk.__reduce__()[1][0]
    shrunk_list.clear()
    tup = iter((1, (2, 3), "x"))
    next(tup)
    tup_done = iter(())
    next(tup_done, None)
    reset = iter([1, 2])
    reset.__setstate__(-1)  # type: ignore[attr-defined]  # exhausted on 3.13+
    inside = [1]
    inside.append(iter(inside))  # an iterator inside its own list
    return [
        [iter(shared), mid, shared, mid],  # the list shared with its iterators
        [done, iter([])], [shrunk], [tup, tup_done, iter((1,))],
        {"a": iter([{"k": 1}]), "b": iter((None,))}, [reset], inside,
        [iter(ListSub([1, 2])), iter(TupleSub((3,)))],  # over subclasses: reduced
    ]


@pytest.mark.parametrize("index", range(len(_sequence_iterators())))
def test_list_and_tuple_iterators_encode_to_the_same_bytes(index: int) -> None:
    """The C encoder reads a running list or tuple iterator's struct (the
    frames layer's seqiter_reduce) instead of calling __reduce__; an exhausted
    one goes through __reduce__ (a fresh empty sequence) on both engines."""
    value = _sequence_iterators()[index]
    g = zoo.holds(value)
    next(g)
    _same_bytes(g)
    restored = corosnap.loads(corosnap.dumps(g))  # and it loads
    assert type(restored.gi_frame.f_locals["value"]) is type(value)
    restored.close()
    g.close()


class _RollsBackAnIteratorInItsList:
    """Its protocol-4 reduce holds an iterator inside its own list (met twice:
    registered twice) and then itself, which is refused: the rollback must
    drop the iterator's memo entry once, and the fallback pickles it."""

    def __init__(self, tag: str) -> None:
        self.tag = tag

    def __reduce_ex__(self, protocol: Any) -> Any:
        if protocol == 4:
            items: list[Any] = [1]
            items.append(iter(items))
            return (_RollsBackAnIteratorInItsList, (items, self))
        return (_RollsBackAnIteratorInItsList, (self.tag,))


def test_a_rollback_over_an_object_registered_twice_is_clean() -> None:
    for engine in ("python", "c"):
        snap = default()._with_engine(engine)
        g = zoo.holds([_RollsBackAnIteratorInItsList("t")])
        next(g)
        restored = snap.loads(snap.dumps(g))
        assert restored.gi_frame.f_locals["value"][0].tag == "t"
        restored.close()
        g.close()


@pytest.mark.parametrize("value", [
    CountSub(1), [1, ChainSub([1], [2])], {"k": CountSub(2)}, FrozenSlots(1, CountSub(3)),
    [PosingAsCount(1)],
], ids=["bare", "in_list", "in_dict", "in_reduced_instance", "posing_by_class"])
def test_subclasses_of_itertools_types_are_refused_alike(value: Any) -> None:
    # Not in the dispatch table (an exact-type lookup): the C encoder's
    # instance path must refuse it as the Python _other does, not reduce it.
    g = zoo.holds(value)
    next(g)
    python = default()._with_engine("python")
    kind, message = _outcome(python, g)
    assert kind == "SnapshotError"
    assert "a subclass of itertools." in message
    assert "fallback pickler" not in message
    _same_bytes(g)


def test_an_instance_whose_class_attribute_is_another_type_is_reduced_alike() -> None:
    g = zoo.holds([PosingAsInt(4), PosingAsInt(5)])
    next(g)
    _same_bytes(g)


def _holds_module_iterators() -> Any:
    held = [MODULE_COUNT, {"m": MODULE_MAP}, MODULE_COUNT]
    yield held


def test_module_level_iterators_are_stored_by_reference_alike() -> None:
    g = _holds_module_iterators()
    next(g)
    _same_bytes(g)
    for engine in ("python", "c"):
        snap = default()._with_engine(engine)
        g2 = snap.loads(snap.dumps(g))
        held = g2.gi_frame.f_locals["held"]
        assert held[0] is MODULE_COUNT and held[2] is MODULE_COUNT, engine
        assert held[1]["m"] is MODULE_MAP, engine


def _holds_module_subclass_instance() -> Any:
    held = [MODULE_COUNT_SUB]
    yield held


def test_a_module_level_subclass_instance_is_treated_alike() -> None:
    g = _holds_module_subclass_instance()
    next(g)
    _same_bytes(g)


def _slots(enc: Any) -> dict[str, Any]:
    from corosnap.codec._encoder import Encoder

    return {name: getattr(enc, name) for name in Encoder.__slots__}


@pytest.mark.parametrize("strict", [False, True])
@pytest.mark.parametrize("callback", [None, print])
def test_the_c_encoders_init_sets_every_slot_as_pythons_does(strict: bool,
                                                              callback: Any) -> None:
    """Encoder.__init__ is C on the C engine: every slot the same (tables
    fresh and empty, arguments and passthrough sets the very objects)."""
    made = {}
    for engine in ("python", "c"):
        cls = default()._with_engine(engine)._caches.Encoder
        made[engine] = (cls(7, len, strict, callback), cls(pid=7, frame_hook=len, strict=strict,
                                                         buffer_callback=callback))
    assert type(made["c"][0]).__init__ is not type(made["python"][0]).__init__
    from corosnap.codec import _ccodec

    python = _slots(made["python"][0])
    for enc in made["c"]:
        c = _slots(enc)
        assert set(c) == set(python)
        # the tables of another type: the memo and codes, C tables of addresses
        for table in ("memo", "codes"):
            assert type(c.pop(table)) is _ccodec.Memo and len(getattr(enc, table)) == 0
            assert type(python[table]) is dict and python[table] == {}
        for name, value in python.items():
            if name in ("memo", "codes"):
                continue
            assert type(c[name]) is type(value), name
            if isinstance(value, dict | list | set):
                assert c[name] == value and c[name] is not python[name], name
            else:
                assert c[name] is value, name
    a, b = made["c"]
    assert a.memo is not b.memo and a.codes is not b.codes  # fresh tables per encoder


@pytest.mark.parametrize("how", ["positional", "keywords", "defaults"])
def test_the_c_decoders_init_sets_every_slot_as_pythons_does(how: str) -> None:
    """Decoder.__init__ is C on the C engine: every slot the same (tables
    fresh and empty, arguments the very objects)."""
    from corosnap.codec._decoder import Decoder

    frames, allow, buffers = object(), ("a", "b"), [b"x"]
    made = {}
    for engine in ("python", "c"):
        cls = ENGINES[engine].Decoder
        if how == "positional":
            made[engine] = cls(frames, True, allow, buffers)
        elif how == "keywords":
            made[engine] = cls(frames=frames, buffers=buffers, allow=allow, safe=True)
        else:
            made[engine] = cls(frames)
    assert ENGINES["c"].Decoder.__init__ is not ENGINES["python"].Decoder.__init__
    python = {name: getattr(made["python"], name) for name in Decoder.__slots__}
    c = {name: getattr(made["c"], name) for name in Decoder.__slots__}
    # the table of another type: depth, a C table of addresses
    assert type(c.pop("depth")).__name__ == "Memo" and len(made["c"].depth) == 0
    assert python.pop("depth") == {}
    for name, value in python.items():
        assert type(c[name]) is type(value), name
        if isinstance(value, dict | list | set) and value is not buffers:
            assert c[name] == value and c[name] is not value, name  # a fresh table
        else:
            assert c[name] == value, name
            if name != "walk_budget":
                assert c[name] is value, name  # an argument, or None
    other = ENGINES["c"].Decoder(frames)
    assert other.memo is not made["c"].memo and other.depth is not made["c"].depth
    with pytest.raises(TypeError):
        ENGINES["c"].Decoder()
    with pytest.raises(TypeError):
        ENGINES["c"].Decoder(frames, nope=1)
    with pytest.raises(TypeError):
        ENGINES["c"].Decoder.__init__(object(), frames)
    with pytest.raises(TypeError, match="needs frame_hook"):
        ENGINES["c"].Encoder(7)
    with pytest.raises(TypeError, match="takes at most 4 arguments"):
        ENGINES["c"].Encoder(7, len, False, None, 5)


def test_the_c_note_globals_notes_as_pythons_does() -> None:
    encoders = [default()._with_engine(engine)._caches.Encoder(0, len)
                for engine in ("python", "c")]
    for enc in encoders:
        enc.note_globals(globals())
        enc.note_globals(globals())  # noted once
        enc.note_globals(vars(dataclasses))
    python, c = (_slots(enc) for enc in encoders)
    for name in ("globals_seen", "pending_globals", "modules", "global_values"):
        assert c[name] == python[name], name
    assert c["global_ids"] is python["global_ids"]  # _EVERYTHING, until resolved
    with pytest.raises(TypeError):
        type(encoders[1]).note_globals(object(), {})


@dataclasses.dataclass(frozen=True, slots=True)
class WithClassVar:
    a: Any
    b: Any = 2
    KIND: ClassVar[str] = "k"


@dataclasses.dataclass(frozen=True, slots=True)
class OwnReduce:
    a: Any

    def __reduce__(self) -> Any:
        return (OwnReduce, (self.a,))


@dataclasses.dataclass(frozen=True, slots=True)
class NewArgs:
    a: Any

    def __getnewargs__(self) -> tuple[Any, ...]:
        return (self.a,)


@dataclasses.dataclass(frozen=True, slots=True)
class Unset:
    a: Any


class Plain:
    def __init__(self, **attrs: Any) -> None:
        self.__dict__.update(attrs)


@dataclasses.dataclass(frozen=True)
class FrozenDict:
    a: Any
    b: Any = None


class OwnGetstate(Plain):
    def __getstate__(self) -> Any:
        return {"only": 1}


class SlotBase:
    __slots__ = ("s",)


class SlotChild(SlotBase):
    """An instance dict and a slot: the reduce's state is (dict, slots)."""


class SlottedBase:
    __slots__ = ("a",)


class DictOverSlots(SlottedBase):
    """An instance dict over a slotted base: the state is (dict, slots) only
    when the slot is set, so a first instance without it proves nothing."""


class Moody:
    """Answers the reduce's own lookup of __getstate__ itself, per instance."""

    def __getattribute__(self, name: str) -> Any:
        if name == "__getstate__" and object.__getattribute__(self, "__dict__").get("custom"):
            return functools.partial(dict, replaced=True)
        return object.__getattribute__(self, name)


class SlotNamesMeta(type):
    """Changes its class while copyreg looks the class's slots up."""

    def __setattr__(cls, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name == "__slotnames__":
            super().__setattr__("__getstate__", lambda self: {"mutated": True})
            cls.__doc__  # noqa: B018 - a lookup, which gives the class a new version tag


def _dict_over_slots(**attrs: Any) -> DictOverSlots:
    x = DictOverSlots()
    for name, value in attrs.items():
        setattr(x, name, value)
    return x


def _moody(custom: bool) -> Moody:
    x = Moody()
    x.__dict__.update(k=1, **({"custom": 1} if custom else {}))
    return x




def _slot_child() -> SlotChild:
    x = SlotChild()
    x.s = 1
    x.d = 2  # type: ignore[attr-defined]
    return x


def _own_instance_getstate() -> Plain:
    x = Plain(a=1)
    x.__getstate__ = functools.partial(dict, replaced=True)  # type: ignore[method-assign]
    return x


@pytest.mark.parametrize("make", [
    lambda: [Plain(a=1, b="two"), Plain(a=Plain(c=[3]), b={"k": Plain()})],
    lambda: [FrozenDict(1, 2), FrozenDict(FrozenDict(3), [FrozenDict(4, 5)])],
    lambda: [Plain(), Plain(a=1), Plain()],  # an empty dict: the state is None
    lambda: [OwnGetstate(a=1), OwnGetstate()],
    lambda: [_slot_child(), _slot_child()],
    lambda: [Plain(a=1), _own_instance_getstate(), Plain(b=2)],
    lambda: [_dict_over_slots(x=1), _dict_over_slots(x=2, a="slot")],
    lambda: [_moody(False), _moody(False), _moody(True)],
], ids=["plain", "frozen-dataclass", "empty", "own-getstate", "dict-and-slot",
        "instance-getstate", "slot-unset-first", "own-getattribute"])
def test_instances_with_a_dict_reduce_alike(make: Any) -> None:
    """The C encoder builds the reduce of an instance with a __dict__ itself
    (object.__reduce_ex__'s (copyreg.__newobj__, (cls,), its dict)) once the
    class's first instance showed the real reduce agrees, and leaves any
    other class, or instance, to __reduce_ex__."""
    g = zoo.holds(make())
    next(g)
    _same_bytes(g)


@pytest.mark.parametrize("engine", ["python", "c"])
def test_a_class_changed_while_its_first_instance_is_reduced_is_not_cached(
        engine: str) -> None:
    """The first instance's real reduce runs Python code (here: copyreg
    storing __slotnames__ gives the class a __getstate__): what the C engine
    learnt from it is not kept, and the next instance gets the new reduce."""
    changing = SlotNamesMeta("Changing", (), {"__module__": __name__})
    globals()["Changing"] = changing  # importable by name, as a class must be
    try:
        snap = default()._with_engine(engine)
        a, b = changing(), changing()
        a.x, b.x = 1, 2
        g = zoo.holds([a])
        next(g)
        snap.dumps(g)  # the first reduce, during which the class changes
        g = zoo.holds([b])
        next(g)
        restored = snap.loads(snap.dumps(g))
        assert b.__reduce_ex__(4)[2] == {"mutated": True}
        assert next(restored)[0][0].__dict__ == {"mutated": True}
    finally:
        del globals()["Changing"]


def test_a_class_changed_after_its_reduce_was_cached_is_looked_at_again() -> None:
    class Changing(Plain):
        pass

    g = zoo.holds([Changing(a=1)])
    next(g)
    _same_bytes(g)
    Changing.__getstate__ = lambda self: {"changed": True}  # type: ignore[method-assign]
    _same_bytes(g)
    again = corosnap.loads(corosnap.dumps(g))  # kept alive: CPython 3.13.0 reads a freed frame
    assert again.gi_frame.f_locals["value"][0].__dict__ == {"changed": True}


@pytest.mark.parametrize("make", [
    lambda: [WithClassVar(1), WithClassVar([1, 2], {"k": WithClassVar(3)})],
    lambda: [FrozenSlots(1, 2), FrozenSlots(FrozenSlots(3, 4), [5])],
    lambda: [OwnReduce(1), OwnReduce([2])],
    lambda: [NewArgs(1)],
    lambda: [object.__new__(Unset)],  # a field never set: the reduce fails alike
], ids=["classvar", "nested", "own-reduce", "getnewargs", "unset-field"])
def test_slotted_dataclasses_reduce_alike(make: Any) -> None:
    """The C encoder builds a frozen slotted dataclass's reduce itself (the
    one object.__reduce_ex__ builds from dataclasses' __getstate__), and
    leaves every other class to __reduce_ex__."""
    g = zoo.holds(make())
    next(g)
    _same_bytes(g)
