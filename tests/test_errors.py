"""Errors name the function, the slot and the type; bad blobs get corosnap
exceptions; restores are validated before any frame write."""

from __future__ import annotations

import socket
import threading

import msgpack
import pytest

import corosnap
import samples
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
