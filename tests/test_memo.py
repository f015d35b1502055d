"""The C engine's encoder memo (codec/_memo.h, ``corosnap.codec._ccodec.Memo``).

Under the C engine ``Encoder.memo`` is a C table of addresses instead of the
Python encoder's ``{id(obj): index}`` dict; the Python encoder's methods use it
through the same mapping operations.  These tests hold the table to a dict:
random operations (with keys that collide in the table, so deletion's
shifting is exercised), growth, clearing (which keeps or shrinks the table),
and the errors a wrong key or value gets.
"""

from __future__ import annotations

import gc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import corosnap
from corosnap import _accel

pytestmark = pytest.mark.skipif(_accel.ENGINE != "c", reason="the C engine is not loaded")


def _memo() -> object:
    from corosnap.codec import _ccodec

    return _ccodec.Memo()


def _slots(memo: object) -> int:
    return int(repr(memo).split(" in ")[1].split()[0])


# Keys 16 apart (as object addresses are) share table neighbourhoods; a few
# fixed "far" keys land anywhere.
keys = st.one_of(st.integers(1, 400).map(lambda k: 0x7F0000000000 + 16 * k),
                 st.sampled_from([1, 2, 2**40, 2**63 - 1, 2**64 - 16]))
operations = st.lists(st.one_of(
    st.tuples(st.just("set"), keys, st.integers(0, 2**40)),
    st.tuples(st.just("del"), keys, st.just(0)),
    st.tuples(st.just("get"), keys, st.just(0)),
    st.tuples(st.just("clear"), st.just(0), st.just(0)),
), max_size=300)


@settings(max_examples=300, deadline=None)
@given(operations)
def test_the_memo_answers_as_a_dict_does(ops: list[tuple[str, int, int]]) -> None:
    memo, model = _memo(), {}
    for op, key, value in ops:
        if op == "set":
            memo[key] = value
            model[key] = value
        elif op == "del":
            if key in model:
                del memo[key]
                del model[key]
            else:
                with pytest.raises(KeyError):
                    del memo[key]
        elif op == "get":
            assert memo.get(key) == model.get(key)
            assert memo.get(key, "none") == model.get(key, "none")
            assert (key in memo) == (key in model)
        else:
            memo.clear()
            model.clear()
        assert len(memo) == len(model)
    assert memo == model and not (memo != model)
    assert sorted(memo) == sorted(model)
    assert sorted(memo.items()) == sorted(model.items())
    for key, value in model.items():
        assert memo[key] == value


def test_many_entries_grow_the_table_and_deleting_half_keeps_the_rest() -> None:
    objs = [object() for _ in range(20_000)]
    memo = _memo()
    for i, obj in enumerate(objs):
        memo[id(obj)] = i
    assert len(memo) == len(objs) and _slots(memo) >= len(objs) * 3 // 2
    for obj in objs[::2]:
        del memo[id(obj)]
    assert len(memo) == len(objs) // 2
    for i, obj in enumerate(objs):
        assert memo.get(id(obj)) == (None if i % 2 == 0 else i)


def test_clearing_keeps_the_slots_a_snapshot_needs_and_drops_the_rest() -> None:
    memo = _memo()
    assert _slots(memo) == 0  # no table before the first entry
    memo[16] = 0
    small = _slots(memo)
    objs = [object() for _ in range(1_000)]
    for i, obj in enumerate(objs):
        memo[id(obj)] = i
    grown = _slots(memo)
    memo.clear()  # it held enough to need its slots: kept, emptied
    assert len(memo) == 0 and _slots(memo) == grown and id(objs[0]) not in memo
    memo[id(objs[0])] = 0
    memo.clear()  # it held far fewer than it has room for: back to the smallest
    assert len(memo) == 0 and _slots(memo) == small


def test_a_wrong_key_or_value_is_refused_by_name() -> None:
    memo = _memo()
    for key in ("x", 1.5, None, 0, -16, True, 2**70):
        assert memo.get(key) is None and key not in memo
        with pytest.raises(KeyError):
            memo[key]
        with pytest.raises(KeyError):
            del memo[key]
    for key in ("x", 0, -16, 2**70):
        with pytest.raises(TypeError, match="a Memo key is an object's id"):
            memo[key] = 1
    for value in (-1, "1", 1.0, True, None):
        with pytest.raises(TypeError, match="a Memo value is a memo index"):
            memo[16] = value
    assert len(memo) == 0
    with pytest.raises(TypeError, match="takes no arguments"):
        type(memo)({})
    with pytest.raises(TypeError):
        hash(memo)


def test_the_encoders_memo_is_the_table_and_is_emptied_after_each_dumps() -> None:
    """dumps registers the root and every container in the encoder's memo and
    hands the emptied encoder back to the Snapshotter's spares."""

    def gen(items):
        yield items
        yield dict(items=items)

    snap = corosnap.Snapshotter()
    g = gen([[1], [2], {"a": [3]}])
    next(g)
    blob = snap.dumps(g)
    spare = snap._caches.spare[-1]
    assert type(spare.memo).__name__ == "Memo" and len(spare.memo) == 0
    again = corosnap.loads(blob)
    assert next(again) == {"items": [[1], [2], {"a": [3]}]}
    again.close()
    g.close()
    gc.collect()


SHARED = [1, 2]  # a module value: written as a global reference
OTHER = {"k": 1}


def test_a_module_index_keeps_a_table_of_its_ids_that_answers_as_the_index() -> None:
    """The C engine asks a module's index (ModuleIndex) whether a container is
    a module value through a table of the index's ids, made on first use and
    made again if the index's size no longer matches it."""
    from corosnap.codec import _encoder

    def gen(a, b):
        yield a, b

    g = gen(SHARED, [3])
    next(g)
    corosnap.dumps(g)
    index = _encoder._module_index(globals(), __name__)
    assert type(index) is _encoder.ModuleIndex
    table = index.addresses
    assert type(table).__name__ == "Memo"
    assert sorted(table) == sorted(index) and id(SHARED) in table and id(OTHER) in table
    restored = corosnap.loads(corosnap.dumps(g))
    frame = restored.gi_frame.f_locals
    assert frame["a"] is SHARED and frame["b"] == [3]  # by reference, and by value
    # The index changed behind the table (never done by corosnap): made again.
    # (The name is not bound in the module: the value is written as a value.)
    extra = [9]
    index[id(extra)] = (__name__, "not_bound_here", extra)
    try:
        h = gen(extra, SHARED)
        next(h)
        again = corosnap.loads(corosnap.dumps(h))
        assert id(extra) in index.addresses and len(index.addresses) == len(index)
        assert again.gi_frame.f_locals["a"] == [9] and again.gi_frame.f_locals["b"] is SHARED
        again.close()
        h.close()
    finally:
        del index[id(extra)]
    g.close()
    restored.close()


def _inner(n):
    yield n
    yield n + 1


class ReducesToAGenerator:
    """For corosnap (protocol 4) its reduce holds a suspended generator and then
    the object itself, which corosnap refuses (an object in its own constructor
    arguments), so the encoder rolls back what that generator registered (its
    frame's code among it) and hands the object to the fallback pickler, whose
    protocol-5 reduce is plain."""

    def __init__(self, tag):
        self.tag = tag

    def __reduce_ex__(self, protocol):
        if protocol == 4:
            g = _inner(1)
            next(g)
            _KEEP.append(g)
            return (ReducesToAGenerator, (g, self))
        return (ReducesToAGenerator, (self.tag,))


_KEEP: list = []


@pytest.mark.parametrize("engine", ["python", "c"])
def test_a_rolled_back_value_leaves_no_code_behind(engine: str) -> None:
    """The rollback removes the codes registered after its checkpoint (the C
    engine's codes table keeps no order: they are found by index), so a frame
    of the same code met later is written in full, and the blob loads."""

    def outer(holder, later):
        yield holder, later

    later = _inner(5)
    next(later)
    g = outer(ReducesToAGenerator("t"), later)
    next(g)
    snap = corosnap.Snapshotter()._with_engine(engine)
    blob = snap.dumps(g)
    python = corosnap.Snapshotter()._with_engine("python").dumps(g)
    assert blob == python
    restored = snap.loads(blob)
    holder, again = restored.gi_frame.f_locals["holder"], restored.gi_frame.f_locals["later"]
    assert type(holder) is ReducesToAGenerator and holder.tag == "t"
    assert next(again) == 6
    for x in (restored, again, later, g, *_KEEP):
        x.close()
    _KEEP.clear()


def test_deleting_an_entry_moves_back_the_ones_that_wrapped_past_the_end() -> None:
    """Backward-shift deletion across the end of the table: two keys whose
    home is the last slot (the second wraps to slot 0) and one whose home is
    slot 0 (pushed to slot 1); deleting the first must move both back."""
    mask64 = (1 << 64) - 1

    def home(key: int) -> int:
        x = ((key >> 4) * 0x9E3779B97F4A7C15) & mask64
        return (x ^ (x >> 29)) & 63

    candidates = range(16, 16 * 100_000, 16)
    a, b = [k for k in candidates if home(k) == 63][:2]
    c = next(k for k in candidates if home(k) == 0)
    memo = _memo()
    memo[a], memo[b], memo[c] = 1, 2, 3
    assert _slots(memo) == 64  # the homes above are for the smallest table
    del memo[a]
    assert memo.get(a) is None and memo.get(b) == 2 and memo.get(c) == 3 and len(memo) == 2
    del memo[c]
    assert memo.get(b) == 2 and len(memo) == 1
