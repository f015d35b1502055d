"""The value codec through real frames: native types, containers, identity,
cycles, globals by reference, the fallback pickler."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import fractions
import functools
import uuid

import pytest

import corosnap
import samples
from _helpers import DILL_PICKLES_CODE, in_child, roundtrip


def resumed_value(value, **kwargs):
    g = samples.holds(value)
    next(g)
    return roundtrip(g, **kwargs).send("x")[0]


SIMPLE = [
    None, True, False, 0, -1, 2**63 - 1, -(2**63), 2**64 - 1, 2**64, -(2**63) - 1, 10**40,
    -(10**40), 1.5, float("inf"), -0.0, "", "text", "\u20ac\U0001f600", b"", b"\x00\xff",
    bytearray(b"ab"), 3 + 4j, (), (1, (2, 3)), [], [1, [2, [3]]], {}, {"a": 1, 2: "b"},
    {(1, 2): "tuple key", frozenset({1}): "frozenset key"}, {1, 2, 3}, frozenset({"a"}),
    range(3), range(-5, 50, 7), [1] * 40, list(range(100)), ["s"] * 20 + [None, 1.5, b"x"],
    [2**70] * 20, {"nested": [{"deep": (1, {2})}]},
]


@pytest.mark.parametrize("value", SIMPLE, ids=lambda v: type(v).__name__)
def test_native_and_container_values_round_trip_exactly(value):
    got = resumed_value(value)
    assert got == value
    assert type(got) is type(value)


def test_bytes_and_bytearray_stay_distinct():
    got = resumed_value((b"a", bytearray(b"a")))
    assert type(got[0]) is bytes and type(got[1]) is bytearray


def test_rich_values_via_reduce():
    values = [
        datetime.datetime(2024, 5, 6, 7, 8, 9, 10, tzinfo=datetime.UTC),
        datetime.date(2020, 1, 2),
        datetime.timedelta(days=3, seconds=4),
        decimal.Decimal("1.25"),
        fractions.Fraction(2, 7),
        uuid.UUID(int=12345),
        samples.Color.BLUE,
        samples.Point(1, [2, 3]),
    ]
    got = resumed_value(values)
    assert got == values
    assert got[6] is samples.Color.BLUE


def test_partial_and_module_level_functions_and_classes_by_reference():
    value = (functools.partial(samples.f3, 1, c=3), samples.double, samples.Point, len, max)
    got = resumed_value(value)
    assert got[0](2) == (1, 2, 3)
    assert got[1] is samples.double and got[2] is samples.Point
    assert got[3] is len and got[4] is max


def test_identity_two_locals_one_list():
    g = samples.aliasing()
    next(g)
    g2 = roundtrip(g)
    same_b, same_d, b = next(g2)
    assert same_b and same_d and b == [1, 2, 3, 4]


def test_identity_list_and_its_iterator_stay_linked():
    g = samples.mutate_while_iterating()
    assert next(g) == 1
    assert list(roundtrip(g)) == [2, 11, 12]


def test_cycles_through_lists_dicts_and_tuples():
    g = samples.cycles()
    next(g)
    assert next(roundtrip(g)) == (True, True, True)


def test_identity_inside_objects_is_shared_with_locals():
    shared = [1, 2]
    p = samples.Point(1, shared)
    got = resumed_value((p, shared, p))
    assert got[0].y is got[1] and got[0] is got[2]


def test_identity_after_a_large_dict_with_object_keys():
    # A dict with a non-scalar key and at least 64 keys (checked for hash
    # flooding): its keys were decoded twice, once for the check, which gave
    # every later back-reference the wrong memo index (here: ``shared`` came
    # back as one of the keys).
    shared = ["shared"]
    d = {samples.Color.RED: 0, **{(i, "k"): [i] for i in range(80)},
         **{samples.Point(i, []).x: i for i in range(3)}}
    d[frozenset({1})] = shared
    got = resumed_value((d, shared, shared))
    assert got[0] == d and got[1] == ["shared"] and got[1] is got[2]
    assert got[0][frozenset({1})] is got[1]


def test_unimportable_class_goes_through_cloudpickle_by_default():
    @dataclasses.dataclass
    class Local:
        a: int

    got = resumed_value(Local(3))
    assert got.a == 3 and type(got).__name__ == "Local"


def test_module_level_lambda_needs_a_by_value_pickler():
    square = samples.square
    assert resumed_value(square)(4) == 16  # cloudpickle, the default
    if DILL_PICKLES_CODE:
        assert resumed_value(square, pickler="dill")(5) == 25
    with pytest.raises(corosnap.SnapshotError, match="fallback pickler failed"):
        resumed_value(square, pickler="pickle")


def test_unknown_pickler_name_is_refused():
    with pytest.raises(ValueError, match="pickler must be one of"):
        corosnap.dumps(samples.counter(1), pickler="marshal")


def test_values_cross_process():
    shared = [1]
    value = {"p": samples.Point(1, shared), "s": shared, "d": decimal.Decimal("2.5"),
             "c": samples.Color.RED, "big": 2**100, "z": 1j, "fs": frozenset({1})}
    g = samples.holds(value)
    next(g)
    got = in_child(corosnap.dumps(g), body="v = gen.send('x')[0]\n"
                   "result = (v, v['p'].y is v['s'])")
    assert got[0] == value and got[1] is True


@pytest.mark.skipif(not DILL_PICKLES_CODE, reason="dill cannot pickle code on this CPython")
def test_pickler_choice_is_recorded_in_the_blob():
    class Local:
        def __init__(self) -> None:
            self.v = 7

    g = samples.holds(Local())
    next(g)
    blob = corosnap.dumps(g, pickler="dill")
    assert corosnap.loads(blob).send(None)[0].v == 7  # no pickler argument needed to load


def test_reduce_shaped_objects_restore_natively_without_the_pickler():
    class Opaque:
        def __reduce__(self):
            return (samples.Point, (1, [2]))

    g = samples.holds(Opaque())
    next(g)
    blob = corosnap.dumps(g, pickler="pickle")
    assert corosnap.loads(blob, safe=True, allow=("samples",)).send(None)[0] == samples.Point(
        1, [2])


# -- lists of ints as packed arrays (EXT_INTLIST) ---------------------------------

INT_LISTS = [
    list(range(16)),  # width 1
    list(range(-128, 128)),  # width 1, both ends
    list(range(-129, 200)),  # width 2
    [-(2**15), 2**15 - 1] * 8,  # width 2, both ends
    [2**15] * 16,  # width 4
    [-(2**31), 2**31 - 1] * 8,  # width 4, both ends
    [2**31] + [0] * 15,  # width 8
    [-(2**63), 2**63 - 1] * 8,  # width 8, both ends
]


@pytest.mark.parametrize("ints", INT_LISTS, ids=lambda v: f"{min(v)}..{max(v)}")
def test_int_lists_are_packed_and_round_trip_exactly(ints):
    from msgpack import unpackb

    from corosnap.codec._tags import EXT_INTLIST

    g = samples.holds(list(ints))
    next(g)
    blob = corosnap.dumps(g)
    found = []
    unpackb(blob, strict_map_key=False,
            ext_hook=lambda code, data: found.append((code, data[0])) or None)
    widths = [w for code, w in found if code == EXT_INTLIST]
    assert len(widths) == 1
    assert widths[0] == next(w for w in (1, 2, 4, 8)
                             if all(-(2 ** (8 * w - 1)) <= x < 2 ** (8 * w - 1) for x in ints))
    got = corosnap.loads(blob).send("x")[0]
    assert got == ints and [type(x) for x in got] == [int] * len(ints)


def test_int_lists_that_must_not_be_packed_stay_exact():
    # bools are ints to array.array, not to corosnap; a big int or a float
    # anywhere keeps the list on the general path.
    for value in ([True, False] * 8, [0] * 15 + [2**64], [0] * 15 + [1.0],
                  [0] * 15 + [-(2**63) - 1]):
        got = resumed_value(value)
        assert got == value and [type(x) for x in got] == [type(x) for x in value]


def test_packed_int_list_keeps_identity_and_stays_mutable():
    def two_names():
        numbers = list(range(100))
        alias = numbers
        yield
        alias.append(-1)
        yield numbers

    g = two_names()
    next(g)
    g2 = corosnap.loads(corosnap.dumps(g))
    assert next(g2) == [*range(100), -1]


def test_packed_int_list_is_smaller_than_msgpack_ints():
    import msgpack

    ints = [(i * 7919) % 1009 for i in range(1000)]
    g = samples.holds(ints)
    next(g)
    assert len(corosnap.dumps(g)) < len(msgpack.packb(ints)) * 0.8


@pytest.mark.parametrize("payload", [b"", b"\x03" + b"\0" * 3, b"\x02" + b"\0" * 3,
                                     b"\x09" + b"\0" * 9])
def test_malformed_int_list_payload_is_refused(payload):
    import msgpack

    from corosnap.codec._tags import EXT_INTLIST

    g = samples.holds([0] * 20)
    next(g)
    tree = msgpack.unpackb(corosnap.dumps(g), strict_map_key=False)
    index = next(i for i, x in enumerate(tree) if isinstance(x, msgpack.ExtType)
                 and x.code == EXT_INTLIST)
    tree[index] = msgpack.ExtType(EXT_INTLIST, payload)
    with pytest.raises(corosnap.CorruptSnapshot, match="malformed int list"):
        corosnap.loads(msgpack.packb(tree))
