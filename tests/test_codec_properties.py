"""Property tests of the value codec: arbitrary nested values, shared
references and cycles survive a snapshot with the same identity graph."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import samples
from _helpers import roundtrip

scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=8) | st.binary(max_size=8) | st.complex_numbers(allow_nan=False)
)
keys = st.none() | st.booleans() | st.integers() | st.text(max_size=6) | st.binary(max_size=4)
hashables = st.recursive(keys, lambda c: st.tuples(c, c) | st.frozensets(c, max_size=3),
                         max_leaves=6)
values = st.recursive(
    scalars,
    lambda c: (st.lists(c, max_size=20) | st.tuples(c, c)
               | st.dictionaries(keys, c, max_size=5)
               | st.dictionaries(hashables, c, max_size=3)
               | st.sets(hashables, max_size=4) | st.frozensets(hashables, max_size=4)
               | st.builds(bytearray, st.binary(max_size=6))),
    max_leaves=30,
)


def shape(obj: Any, seen: dict[int, int] | None = None) -> Any:
    """A canonical form that records equality *and* which objects are shared."""
    seen = {} if seen is None else seen
    t = type(obj)
    if t in (list, dict, set, bytearray):
        if id(obj) in seen:
            return ("ref", seen[id(obj)])
        seen[id(obj)] = len(seen)
    if t is list:
        return ("list", [shape(x, seen) for x in obj])
    if t is tuple:
        return ("tuple", [shape(x, seen) for x in obj])
    if t is dict:
        return ("dict", [(shape(k, seen), shape(v, seen)) for k, v in obj.items()])
    if t in (set, frozenset):
        return (t.__name__, frozenset(obj))
    if t is float and obj == 0:
        return ("float", repr(obj))  # keep -0.0 distinct from 0.0
    return (t.__name__, obj)


def restored(value: Any) -> Any:
    g = samples.holds(value)
    next(g)
    return roundtrip(g).send(None)[0]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values)
def test_arbitrary_nested_values_round_trip(value):
    assert shape(restored(value)) == shape(value)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(values, min_size=1, max_size=6), st.data())
def test_shared_references_and_cycles_keep_their_identity_graph(pool, data):
    containers: list[Any] = [[], {}, [1, "x"], {"k": 1, "j": 2}, {"k": 3, "j": 4}]
    for _ in range(data.draw(st.integers(0, 12))):
        target = data.draw(st.sampled_from(containers))
        item = data.draw(st.sampled_from(containers + pool))
        if type(target) is list:
            target.append(item)
        else:
            target[data.draw(st.text(max_size=3))] = item
    value = (containers, pool, containers[0])
    assert shape(restored(value)) == shape(value)
