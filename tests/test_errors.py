"""Errors name the function, the slot and the type; bad blobs get corosnap
exceptions; restores are validated before any frame write."""

from __future__ import annotations

import pickle
import re
import socket
import sys
import threading

import msgpack
import pytest

import corosnap
import samples
from corosnap.codec._engines import ENGINES
from corosnap.codec._tags import EXT_PICKLE
from corosnap.snapshot._blob import HEADER


def suspended_holding(value):
    g = samples.holds(value)
    next(g)
    return g


def test_unserializable_local_names_function_local_and_type():
    lock = threading.Lock()
    with pytest.raises(corosnap.SnapshotError) as info:
        corosnap.dumps(suspended_holding(lock))
    msg = str(info.value)
    assert "holds()" in msg and "'value'" in msg and "lock" in msg


def test_unserializable_value_deep_in_a_chain_names_the_inner_function():
    s = socket.socket()
    try:
        def outer():
            yield from samples.holds(s)

        g = outer.__globals__["samples"].holds(s)
        next(g)
        with pytest.raises(corosnap.SnapshotError, match=r"holds\(\).*'value'.*socket"):
            corosnap.dumps(g)
    finally:
        s.close()


def _lock_three_frames_down():
    def inner():
        x = threading.Lock()  # noqa: F841 - the unserializable local
        yield 1

    def middle():
        yield from inner()

    def outer():
        yield from middle()

    g = outer()
    next(g)
    return g


def test_error_names_every_frame_down_to_the_slot_on_the_first_and_later_dumps():
    # The first dumps of a code goes through the Python path, later ones
    # through the C fast path (which recurses into sub-frames itself): both
    # must name the whole chain.
    g = _lock_three_frames_down()
    messages = []
    for _ in range(3):
        with pytest.raises(corosnap.SnapshotError) as info:
            corosnap.dumps(g)
        messages.append(str(info.value))
    assert len(set(messages)) == 1, messages
    assert re.search(r"outer\(\).*value stack slot 0: in generator .*middle\(\).*value stack "
                     r"slot 0: in generator .*inner\(\).*local 'x': cannot serialize "
                     r"_thread.lock", messages[0]), messages[0]


def test_error_hierarchy():
    assert issubclass(corosnap.CodeMismatch, corosnap.RestoreError)
    assert issubclass(corosnap.CorruptSnapshot, corosnap.RestoreError)
    assert issubclass(corosnap.SignatureError, corosnap.CorruptSnapshot)
    for cls in (corosnap.SnapshotError, corosnap.RestoreError, corosnap.UnsafeSnapshot,
                corosnap.UnsupportedInterpreter):
        assert issubclass(cls, corosnap.CorosnapError)


def _frame_fields(blob):
    return msgpack.unpackb(blob, raw=False, strict_map_key=False)


def _repack(tree):
    return msgpack.packb(tree, use_bin_type=True)


def test_offset_that_is_not_a_resume_point_is_refused_before_writing():
    g = samples.counter(5)
    next(g)
    tree = _frame_fields(corosnap.dumps(g))
    pos = 4  # [header, module, qualname, fingerprint, position, ...]
    for bad in (tree[pos] + 1, tree[pos] - 2, 0, 10**6, -5, "x", 2**40):
        tree2 = list(tree)
        tree2[pos] = bad
        with pytest.raises(corosnap.CorruptSnapshot, match="not a resume point"):
            corosnap.loads(_repack(tree2))


def test_stack_depth_that_disagrees_with_the_bytecode_is_refused():
    g = samples.counter(5)
    next(g)
    tree = _frame_fields(corosnap.dumps(g))
    for tree2 in (tree[:-1], [*tree, 1], [*tree, 1, 2]):
        with pytest.raises(corosnap.CorruptSnapshot, match="stack values"):
            corosnap.loads(_repack(tree2))


def test_non_cell_in_a_cell_slot_is_refused():
    g = samples.closure_gen()
    next(g)
    tree = _frame_fields(corosnap.dumps(g))
    # localsplus of closure_gen: inc, scale, got, n (cell): replace the cell.
    tree[5 + 3] = 123
    with pytest.raises(corosnap.CorruptSnapshot, match="must hold a cell"):
        corosnap.loads(_repack(tree))


def test_not_a_blob_truncated_and_garbage():
    blob = corosnap.dumps(suspended_holding([1, 2, {"a": (3, 4)}]))
    with pytest.raises(corosnap.CorruptSnapshot):
        corosnap.loads(b"")
    with pytest.raises(corosnap.CorruptSnapshot):
        corosnap.loads(b"\x93\x01\x02\x03")
    for cut in range(1, len(blob)):
        with pytest.raises(corosnap.CorosnapError):
            corosnap.loads(blob[:cut])
    with pytest.raises(TypeError):
        corosnap.loads("a string")  # type: ignore[arg-type]


def test_other_minor_version_is_refused_clearly():
    blob = corosnap.dumps(samples.counter(3))
    tree = _frame_fields(blob)
    other = msgpack.ExtType(HEADER.code, bytes([HEADER.data[0] ^ 1]))
    with pytest.raises(corosnap.CodeMismatch, match="minor versions"):
        corosnap.loads(_repack([other, *tree[1:]]))


def test_unknown_format_version_is_refused():
    tree = _frame_fields(corosnap.dumps(samples.counter(3)))
    newer = msgpack.ExtType(HEADER.code, bytes([(HEADER.data[0] & 31) | (7 << 5)]))
    with pytest.raises(corosnap.CorruptSnapshot, match="format version 7"):
        corosnap.loads(_repack([newer, *tree[1:]]))


def test_signed_blobs():
    g = suspended_holding([1, 2])
    blob = corosnap.dumps(g, key=b"secret")
    assert corosnap.loads(blob, key=b"secret").send(None)[0] == [1, 2]
    with pytest.raises(corosnap.SignatureError):
        corosnap.loads(blob, key=b"wrong")
    tampered = bytearray(blob)
    tampered[-3] ^= 0x01
    with pytest.raises(corosnap.CorruptSnapshot):
        corosnap.loads(bytes(tampered), key=b"secret")
    with pytest.raises(corosnap.SignatureError, match="not signed"):
        corosnap.loads(corosnap.dumps(g), key=b"secret")


def test_safe_mode_refuses_pickles_and_foreign_globals():
    class Local:
        pass

    blob = corosnap.dumps(suspended_holding(Local()))
    with pytest.raises(corosnap.UnsafeSnapshot, match="pickler"):
        corosnap.loads(blob, safe=True, allow=("samples", "test_errors"))
    import os

    blob = corosnap.dumps(suspended_holding(os.system))
    with pytest.raises(corosnap.UnsafeSnapshot, match="os.system|posix.system"):
        corosnap.loads(blob, safe=True, allow=("samples",))
    blob = corosnap.dumps(suspended_holding(eval))
    with pytest.raises(corosnap.UnsafeSnapshot, match="builtins.eval"):
        corosnap.loads(blob, safe=True, allow=("samples",))
    with pytest.raises(corosnap.UnsafeSnapshot, match="code of samples"):
        corosnap.loads(corosnap.dumps(samples.counter(2)), safe=True, allow=("other",))
    assert list(corosnap.loads(corosnap.dumps(samples.counter(2)), safe=True,
                               allow=("samples",))) == [0, 1]


def test_a_pickled_value_that_asks_for_too_much_memory_is_a_limit():
    """pickle up to 3.14 makes a BYTEARRAY8's bytearray at the length its
    header gives before reading it: a damaged length is a MemoryError, which
    loads reports as the limit it is, naming the slot (both engines); 3.15's
    pickle finds the data truncated."""
    class Local:
        pass

    blob = corosnap.dumps(suspended_holding(Local()))
    huge = b"\x80\x05\x96" + (2**62).to_bytes(8, "little")

    def damage(code, data):
        if code == EXT_PICKLE:
            return msgpack.ExtType(code, data[:1] + huge)  # the pickler id, then pickle's bytes
        return msgpack.ExtType(code, data)

    bad = msgpack.packb(msgpack.unpackb(blob, ext_hook=damage, strict_map_key=False),
                        use_bin_type=True)
    try:
        pickle.loads(huge)
    except MemoryError:  # up to 3.14
        expected, match = corosnap.LimitExceeded, "fallback pickler asked for more memory"
    except pickle.UnpicklingError:  # 3.15 reads such a bytearray in chunks
        expected, match = corosnap.RestoreError, "fallback pickler could not load a value"
    for engine in ENGINES:
        snap = corosnap.Snapshotter()._with_engine(engine)
        with pytest.raises(expected, match=match) as info:
            snap.loads(bad)
        assert "local 'value'" in str(info.value)


def _suspended_tree(gen, steps=1):
    for _ in range(steps):
        next(gen)
    return _frame_fields(corosnap.dumps(gen))


def test_for_loop_iterator_slot_must_be_an_iterator():
    tree = _suspended_tree(samples.counter(5))
    assert corosnap.loads(_repack(tree)) is not None
    # 3.15 keeps (iterator, NULL) for the loop; before, just the iterator.
    at = -2 if sys.version_info >= (3, 15) else -1
    for bad in (5, "abc", [1, 2], None):  # None (nil) is an empty slot here
        tree[at] = bad
        with pytest.raises(corosnap.CorruptSnapshot,
                           match="must be an iterator|empty where the bytecode"):
            corosnap.loads(_repack(tree))


def test_list_and_set_display_slots_must_be_exact_list_and_set():
    g = samples.displays([1], {2})
    tree = _suspended_tree(g)
    tree[-1] = [msgpack.ExtType(0, bytes([1])), 1]  # a tuple where LIST_APPEND wants a list
    with pytest.raises(corosnap.CorruptSnapshot, match="must be a list"):
        corosnap.loads(_repack(tree))
    g = samples.displays([1], {2})
    next(g)
    g.send(None)
    good = _frame_fields(corosnap.dumps(g))
    with pytest.raises(StopIteration):
        corosnap.loads(_repack(good)).send([3])
    good[-1] = [1, 2]  # a list where SET_UPDATE wants a set
    with pytest.raises(corosnap.CorruptSnapshot, match="must be a set"):
        corosnap.loads(_repack(good))


def test_exception_slots_must_hold_exceptions():
    tree = _suspended_tree(samples.yield_in_finally())
    for bad in ("not an exception", 3):
        t = list(tree)
        t[-1] = bad
        with pytest.raises(corosnap.CorruptSnapshot, match="must be an exception"):
            corosnap.loads(_repack(t))


def test_null_only_where_the_bytecode_pushes_null():
    g = samples.half_evaluated(1, 3)
    tree = _suspended_tree(g)
    # Stack at the first yield: [NULL (for the call), f3, a] up to 3.12,
    # [f3, NULL, a] from 3.13: the NULL is legal...
    null, others = (-2, (-3, -1)) if sys.version_info >= (3, 13) else (-3, (-2, -1))
    assert tree[null] is None
    corosnap.loads(_repack(tree)).close()
    # ...but not in place of the callable or the argument.
    for slot in others:
        t = list(tree)
        t[slot] = None
        with pytest.raises(corosnap.CorruptSnapshot, match="empty where the bytecode"):
            corosnap.loads(_repack(t))


def test_restored_display_frames_still_work():
    g = samples.displays([1], {2})
    next(g)
    g2 = corosnap.loads(corosnap.dumps(g))
    g2.send(9)
    with pytest.raises(StopIteration) as stop:
        g2.send([3])
    assert stop.value.value == ([1, 9], {2, 3})


def test_lasti_kind_accepts_only_offsets_inside_the_code():
    from corosnap.bytecode._kinds import LASTI
    from corosnap.snapshot._restore import _kind_ok

    assert _kind_ok(0, LASTI, 10) and _kind_ok(9, LASTI, 10)
    for bad in (-1, 10, 2**40, "3", 3.0, True):
        assert not _kind_ok(bad, LASTI, 10)


def _holding_tree(value):
    return _frame_fields(corosnap.dumps(suspended_holding(value)))


def test_builtin_container_constructors_are_never_called_from_a_blob():
    tree = _holding_tree(None)
    tag = msgpack.ExtType(0, bytes([11]))  # T_REDUCE
    tuple_ref = msgpack.ExtType(5, bytes([18]))  # well-known builtins.tuple
    huge_range = [msgpack.ExtType(0, bytes([13])), 0, 10**12, 1]
    tree[-1] = [tag, tuple_ref, [huge_range]]
    with pytest.raises(corosnap.CorruptSnapshot, match="never rebuilds a tuple"):
        corosnap.loads(_repack(tree))


def test_safe_mode_refuses_getattr_gadgets():
    # A bound method is stored as one (tag 21) and checked; the getattr reduce
    # older blobs used for it is refused, as is any other call of getattr.
    tree = _holding_tree(None)
    getattr_ref = msgpack.ExtType(5, bytes([6]))  # well-known builtins.getattr
    tree[-2] = [msgpack.ExtType(0, bytes([11])), getattr_ref, [[1], "append"]]
    assert corosnap.loads(_repack(tree)).send(None)[0] is not None
    with pytest.raises(corosnap.UnsafeSnapshot, match="refused to call"):
        corosnap.loads(_repack(tree), safe=True, allow=("samples",))


def test_delegation_cycle_is_refused():
    g = samples.mid_gen(1)
    next(g)
    tree = _frame_fields(corosnap.dumps(g))
    # The delegated sub-frame is the untagged array among the stack values (the
    # last one on 3.11-3.14; 3.15 keeps a second slot after it).
    sub = max(i for i, x in enumerate(tree) if type(x) is list)
    tree[sub] = msgpack.ExtType(1, bytes([0]))  # delegate to memo 0: the frame itself
    with pytest.raises(corosnap.CorruptSnapshot, match="loops back"):
        corosnap.loads(_repack(tree))


def test_system_exit_from_a_constructor_does_not_escape_loads():
    tree = _holding_tree(None)
    tree[-2] = [msgpack.ExtType(0, bytes([11])),
                [msgpack.ExtType(0, bytes([6])), "sys", "exit"], [3]]
    with pytest.raises(corosnap.RestoreError, match="SystemExit"):
        corosnap.loads(_repack(tree))


@pytest.mark.parametrize("qualname", ["msgpack.packb", "__builtins__.get", "socket.socket"])
def test_safe_mode_qualnames_cannot_walk_out_of_the_module(qualname):
    tree = _holding_tree(None)
    tree[-2] = [msgpack.ExtType(0, bytes([6])), "test_errors", qualname]
    with pytest.raises(corosnap.UnsafeSnapshot):
        corosnap.loads(_repack(tree), safe=True, allow=("samples", "test_errors"))


def test_safe_mode_refuses_names_imported_from_other_modules():
    tree = _holding_tree(None)
    tree[-2] = [msgpack.ExtType(0, bytes([6])), "test_errors", "HEADER"]
    corosnap.loads(_repack(tree), safe=False)  # fine in the default mode
    tree[-2] = [msgpack.ExtType(0, bytes([6])), "samples", "dataclasses"]
    with pytest.raises(corosnap.UnsafeSnapshot):
        corosnap.loads(_repack(tree), safe=True, allow=("samples",))


def test_cell_chains_are_refused():
    tree = _holding_tree(None)
    cell = msgpack.ExtType(0, bytes([8]))
    tree[-2] = [cell, [cell, [cell, 1]]]
    with pytest.raises(corosnap.CorruptSnapshot, match="cell holding a cell"):
        corosnap.loads(_repack(tree))


def test_hash_flooding_sets_are_refused_quickly():
    import time

    tree = _holding_tree(None)
    m = 2**61 - 1

    def big(v):
        return msgpack.ExtType(2, v.to_bytes((v.bit_length() + 8) // 8, "little", signed=True))

    tree[-2] = [msgpack.ExtType(0, bytes([2])), *[big(k * m) for k in range(1, 20_001)]]
    start = time.perf_counter()
    with pytest.raises(corosnap.CorruptSnapshot, match="hash-flooding"):
        corosnap.loads(_repack(tree))
    assert time.perf_counter() - start < 5


def test_safe_mode_refuses_descriptors_reached_through_a_class():
    tree = _holding_tree(None)
    tree[-2] = [msgpack.ExtType(0, bytes([6])), "samples", "Point.__getattribute__"]
    with pytest.raises(corosnap.UnsafeSnapshot):
        corosnap.loads(_repack(tree), safe=True, allow=("samples",))


def test_deep_chains_of_unguarded_objects_are_refused():
    tree = _holding_tree(None)
    reduce_tag = msgpack.ExtType(0, bytes([11]))
    enumerate_ref = msgpack.ExtType(5, bytes([1]))  # well-known builtins.enumerate
    n = 5_000
    # memo: 0 = the generator, 1 = the list below, then one enumerate each.
    chain = [[reduce_tag, enumerate_ref, [[msgpack.ExtType(0, bytes([1]))]]]]
    chain += [[reduce_tag, enumerate_ref, [msgpack.ExtType(1, (2 + i).to_bytes(2, "big"))]]
              for i in range(n)]
    tree[-2] = chain
    with pytest.raises(corosnap.LimitExceeded, match="nested more than"):
        corosnap.loads(_repack(tree))


def test_longest_exception_chain_follows_cause_and_context_and_bounds_cycles():
    from corosnap.codec._decoder import longest_exception_chain

    def chain(n, link="__context__"):
        e = ValueError(0)
        for i in range(1, n):
            x = ValueError(i)
            setattr(x, link, e)
            e = x
        return e

    assert longest_exception_chain([ValueError()]) == 1
    assert longest_exception_chain([chain(10)]) == 10
    assert longest_exception_chain([chain(10, "__cause__")]) == 10
    top = ValueError("top")
    top.__cause__, top.__context__ = chain(3), chain(7)
    assert longest_exception_chain([top]) == 8  # the longer of the two links
    # cycles: every exception of the cycle counts, whichever is the root
    a, b, c = KeyError("a"), KeyError("b"), KeyError("c")
    a.__cause__, b.__context__, c.__context__ = b, a, a
    assert longest_exception_chain([a]) == 2
    assert longest_exception_chain([c]) == 3
    ring = [KeyError(i) for i in range(1500)]
    for x, y in zip(ring, ring[1:] + ring[:1], strict=True):
        x.__context__ = y
    assert longest_exception_chain([ring[0]]) > 1000  # stops counting past the limit
    assert longest_exception_chain([chain(5000)], limit=10**9) == 5000


def _exception_chain_tree(n):
    """A frame suspended in an except block whose handled exception heads a
    __context__ chain of ``n`` exceptions (linked by back-references)."""
    g = samples.in_except()
    tree = _suspended_tree(g)
    tag = lambda kind: msgpack.ExtType(0, bytes([kind]))  # noqa: E731
    ref = lambda i: msgpack.ExtType(1, i.to_bytes(4, "big"))  # noqa: E731
    # memo: 0 = the generator, 1 = ValueError, 2 = the list, 3.. = the chain
    chain = [[tag(18), [tag(11), ref(1), [i]], None, ref(2 + i) if i else None, False]
             for i in range(n - 1)]
    assert type(tree[4]) is list, tree[4]
    tree[4] = [tree[4][0], [tag(18), [tag(11), [tag(6), "builtins", "ValueError"], [chain]], None,
                            ref(2 + n - 1) if n > 1 else None, False]]
    return tree


def test_exception_chains_longer_than_the_limit_are_refused():
    from corosnap.codec._decoder import MAX_EXCEPTION_CHAIN

    g = corosnap.loads(_repack(_exception_chain_tree(MAX_EXCEPTION_CHAIN)))
    depth, e = 0, g.send(None)[1]  # sys.exc_info()[1] in the restored handler
    while e is not None:
        depth, e = depth + 1, e.__context__
    assert depth == MAX_EXCEPTION_CHAIN
    g.close()
    with pytest.raises(corosnap.LimitExceeded, match="chain is longer than 1000"):
        corosnap.loads(_repack(_exception_chain_tree(MAX_EXCEPTION_CHAIN + 1)))


def test_real_exception_chains_round_trip():
    g = samples.chained_exceptions()
    next(g)
    assert corosnap.loads(corosnap.dumps(g)) is not None


def test_is_exception_checks_the_type_not_what_the_object_claims():
    from unittest import mock

    from corosnap.codec import is_exception

    class Exc(ValueError):
        pass

    fake = mock.NonCallableMock(spec=ValueError)
    assert isinstance(fake, BaseException) and not is_exception(fake)
    assert is_exception(ValueError()) and is_exception(Exc()) and is_exception(KeyboardInterrupt())
    assert not is_exception(ValueError) and not is_exception(None)


def test_hash_flooding_bounds_the_largest_group_of_equal_hashes():
    from corosnap.codec._decoder import _not_flooding
    from corosnap.codec._tags import MAX_EQUAL_HASHES

    m = 2**61 - 1
    colliding = [k * m for k in range(1, MAX_EQUAL_HASHES + 1)]
    padding = list(range(10**6, 10**6 + 10_000))
    assert _not_flooding(colliding + padding)  # 64 may share a hash
    assert _not_flooding(colliding)  # containers of up to 64 items are not even hashed
    with pytest.raises(corosnap.CorruptSnapshot, match="65 of 65 items share the hash 0"):
        _not_flooding(colliding + [(MAX_EQUAL_HASHES + 1) * m])
    with pytest.raises(corosnap.CorruptSnapshot, match="65 of 10065 items share the hash 0"):
        _not_flooding(colliding + [(MAX_EQUAL_HASHES + 1) * m] + padding)
    with pytest.raises(corosnap.CorruptSnapshot, match="unhashable"):
        _not_flooding([[]] * 100)


def test_a_blob_refused_for_its_exception_chain_runs_none_of_its_code():
    # The chain check needs the whole blob, so it runs once the root frame's
    # values are decoded, but before that frame is written: the refused
    # generator is never resumed, not even by its finalizer (__exit__, finally).
    import gc

    g = samples.with_finally()
    tree = _suspended_tree(g)  # [.., position, x, y, <stack: bound __exit__>]
    g.close()
    tag = lambda kind: msgpack.ExtType(0, bytes([kind]))  # noqa: E731
    ref = lambda i: msgpack.ExtType(1, i.to_bytes(4, "big"))  # noqa: E731
    # memo: 0 = the generator, 1 = the list, 2 = ValueError, 3.. = the chain
    tree[6] = [[tag(18), [tag(11), [tag(6), "builtins", "ValueError"] if i == 0 else ref(2), [i]],
                None, ref(2 + i) if i else None, False] for i in range(1001)]
    samples.LOG.clear()
    with pytest.raises(corosnap.LimitExceeded, match="chain is longer than 1000"):
        corosnap.loads(_repack(tree))
    gc.collect()
    assert samples.LOG == []


def test_big_number_hash_counts_are_per_blob(monkeypatch):
    # loads counts colliding big ints per blob (hash flooding of msgpack's
    # own maps); the count must start afresh for every blob, or a process
    # loading many legit blobs would start refusing them.  (A refusal by the
    # inline parse falls back to open_blob, which parses again with fresh
    # counts, so the spy is what tells a stale count apart.)
    from corosnap.snapshot import _api

    fallbacks = []
    real_open_blob = _api.open_blob
    monkeypatch.setattr(_api, "open_blob",
                        lambda *a: fallbacks.append(a) or real_open_blob(*a))
    for start in (10, 50, 90):  # 40 distinct equal-hash ints per blob, 120 in all
        colliding = [k * (2**61 - 1) for k in range(start, start + 40)]  # each > 2**64
        assert len({hash(x) for x in colliding}) == 1
        g = samples.holds(colliding)
        next(g)
        assert corosnap.loads(corosnap.dumps(g)).send("x")[0] == colliding
    assert fallbacks == []
    flood = [k * (2**61 - 1) for k in range(10, 80)]  # 70: over the limit in one blob
    g = samples.holds(flood)
    next(g)
    with pytest.raises(corosnap.CorruptSnapshot, match="share one hash"):
        corosnap.loads(corosnap.dumps(g))


@pytest.mark.parametrize("how", ["finished", "closed"])
def test_finished_generator_is_refused_naming_its_module(how):
    g = samples.counter(1)
    if how == "finished":
        list(g)
    else:
        next(g)
        g.close()
    with pytest.raises(corosnap.SnapshotError) as info:
        corosnap.dumps(g)
    assert str(info.value) == ("generator counter() (module samples) has finished or was "
                               "closed: there is nothing to resume")


def test_finished_nested_generator_names_the_module_it_was_defined_in():
    def inner():
        yield 1

    g = inner()
    list(g)
    with pytest.raises(corosnap.SnapshotError) as info:
        corosnap.dumps(g)
    assert f"(module {__name__})" in str(info.value)


def test_running_async_generator_is_refused_with_an_article():
    out = []

    async def agen():
        try:
            corosnap.dumps(me[0])
        except corosnap.SnapshotError as exc:
            out.append(str(exc))
        yield 1

    me = [agen()]
    with pytest.raises(StopIteration):
        me[0].__anext__().send(None)
    assert out[0].endswith("is running: an async generator cannot be captured while it "
                           "executes (dumps() must be called from outside it)")
    assert out[0].startswith("async generator test_running_async_generator_is_refused_with_an_"
                             "article.<locals>.agen() (module ")
