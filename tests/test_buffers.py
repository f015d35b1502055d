"""Out-of-band buffers: ``dumps(buffer_callback=)`` and ``loads(buffers=)``,
modelled on pickle protocol 5, and memoryviews in frames."""

from __future__ import annotations

import json
import pickle

import msgpack
import pytest
from msgpack import ExtType

import corosnap
import corosnap.inspection
import pickling_samples as ps
from _helpers import in_child
from corosnap.codec._tags import BUFFER_MIN_SIZE, EXT_BUFFER

BIG = BUFFER_MIN_SIZE


def suspended(gen):
    next(gen)
    return gen


def resumed(gen, send="x", **kwargs):
    """Dump with a callback that takes every buffer out of band, load with them."""
    bufs: list[pickle.PickleBuffer] = []
    blob = corosnap.dumps(gen, buffer_callback=bufs.append, **kwargs)
    return corosnap.loads(blob, buffers=bufs).send(send), bufs, blob


def exts(blob: bytes) -> list[ExtType]:
    """Every EXT_BUFFER of an unsigned blob."""
    found: list[ExtType] = []

    def hook(code: int, data: bytes) -> ExtType:
        if code == EXT_BUFFER:
            found.append(ExtType(code, data))
        return ExtType(code, data)

    msgpack.unpackb(blob, ext_hook=hook, strict_map_key=False)
    return found


def test_large_buffers_leave_the_blob_and_are_not_copied():
    data, ba = b"d" * 100_000, bytearray(b"b" * 50_000)
    gen = suspended(ps.holds(data, ba, memoryview(data)))
    (values, got), bufs, blob = resumed(gen)
    assert len(blob) < 200
    # The callback is handed views of the very objects, not copies.
    assert [pb.raw().obj for pb in bufs[:2]] == [data, ba]
    assert bufs[0].raw().obj is data and bufs[1].raw().obj is ba
    # Restored from the same buffers: the objects themselves (as pickle does).
    assert values[0] is data and values[1] is ba
    assert type(values[2]) is memoryview and values[2].readonly and values[2] == data
    assert got == "x"


def test_a_restored_memoryview_shares_the_buffers_memory():
    target = bytearray(b"\0" * 10)
    gen = suspended(ps.holds(memoryview(bytearray(10))))
    bufs: list[pickle.PickleBuffer] = []
    blob = corosnap.dumps(gen, buffer_callback=bufs.append)
    assert len(bufs) == 1
    (view,), _ = corosnap.loads(blob, buffers=[target]).send(None)
    assert not view.readonly and view.obj is target
    view[3] = 65
    assert target[3] == 65  # zero-copy: the view writes into the buffer given to loads


def test_views_of_read_only_memory_are_copied_where_the_type_needs_it():
    gen = suspended(ps.holds(bytearray(BIG), memoryview(bytearray(BIG)), b"q" * BIG))
    bufs: list[pickle.PickleBuffer] = []
    blob = corosnap.dumps(gen, buffer_callback=bufs.append)
    readonly = [bytes(pb.raw()) for pb in bufs]  # bytes: not a bytearray, not writable
    (ba, view, data), _ = corosnap.loads(blob, buffers=readonly).send(None)
    assert type(ba) is bytearray and ba == bytearray(BIG)
    assert not view.readonly  # writable, as captured: a copy of the read-only buffer
    assert data is readonly[2]  # a whole bytes object is used as it is


def test_a_callback_returning_true_keeps_the_buffer_in_band():
    data = b"i" * BIG
    gen = suspended(ps.holds(data, bytearray(data), memoryview(data)))
    offered = []
    blob = corosnap.dumps(gen, buffer_callback=lambda pb: offered.append(pb) or True)
    assert len(offered) == 3 and len(blob) > 3 * BIG
    (values, _) = corosnap.loads(blob).send(None)
    assert values[0] == data and type(values[1]) is bytearray and values[1] == data
    assert type(values[2]) is memoryview and values[2].readonly and values[2] == data


def test_only_buffers_of_at_least_the_threshold_are_offered():
    small, edge = b"s" * (BIG - 1), b"e" * BIG
    gen = suspended(ps.holds(small, bytearray(small), edge))
    (values, _), bufs, blob = resumed(gen)
    assert [pb.raw().nbytes for pb in bufs] == [BIG]
    assert values == (small, bytearray(small), edge)


def test_memoryviews_without_a_callback_travel_in_band():
    gen = suspended(ps.holds(memoryview(b"abc"), memoryview(bytearray(b"xyz"))))
    blob = corosnap.dumps(gen)
    assert [e.data[0] for e in exts(blob)] == [0x82, 0x83]  # in band, read-only / writable
    ((ro, rw), _) = corosnap.loads(blob).send(None)
    assert ro.readonly and ro == b"abc"
    assert not rw.readonly and rw == b"xyz"


def test_memoryview_streaming_generator_resumes_in_another_process():
    gen = ps.chunks(b"0123456789" * 1000, 4096)
    assert next(gen) == b"0123456789" * 409 + b"012345"
    bufs: list[pickle.PickleBuffer] = []
    blob = corosnap.dumps(gen, buffer_callback=lambda pb: True)
    assert not bufs
    assert in_child(blob, "result = [gen.send(None), gen.send(100)]", ) == [
        (b"0123456789" * 1000)[4096:8192], (b"0123456789" * 1000)[4196:8292]]


def test_the_same_buffer_twice_is_one_buffer_and_one_object():
    data = b"z" * BIG
    gen = suspended(ps.holds(data, [data, {"k": data}]))
    (values, _), bufs, blob = resumed(gen)
    assert len(bufs) == 1
    assert values[0] is values[1][0] is values[1][1]["k"] is data


def test_buffers_inside_containers_iterators_and_nested_frames():
    data = b"n" * BIG
    it = iter(data)
    next(it)
    gen = suspended(ps.holds({data: 1}, {data}, (data,), it))
    (values, _), bufs, _ = resumed(gen)
    assert values[0] == {data: 1}  # a dict key stays in band (msgpack map key)
    assert values[1] == {data} and values[2] == (data,)
    assert next(values[3]) == ord("n") and len(list(values[3])) == BIG - 2
    chain = ps.outer(b"c" * 20_000)
    assert next(chain) == 20_000
    bufs = []
    blob = corosnap.dumps(chain, buffer_callback=bufs.append)
    assert len(bufs) == 1  # both frames hold the one bytes object
    with pytest.raises(StopIteration) as stop:
        corosnap.loads(blob, buffers=bufs).send(3)
    assert stop.value.value == (b"cccc", b"ccc")


def test_a_coroutine_with_a_large_local():
    coro = ps.compute(1, b"p" * 30_000)
    assert coro.send(None) == 2
    bufs: list[pickle.PickleBuffer] = []
    blob = corosnap.dumps(coro, buffer_callback=bufs.append)
    assert len(bufs) == 1 and len(blob) < 300
    restored = corosnap.loads(blob, buffers=bufs)
    assert restored.send(2) == 4
    with pytest.raises(StopIteration) as stop:
        restored.send(4)
    assert stop.value.value == (1, 2, 4, 30_000)


def test_a_rolled_back_attempt_hands_out_no_buffer():
    # A nested function that refers to itself through its defaults cannot be
    # stored natively: the encoder rolls back what it wrote for it (a large
    # default among it) and pickles the function whole instead.
    big, other = b"r" * BIG, b"o" * BIG

    def f(x=big, me=None):
        return x

    f.__defaults__ = (big, f)
    gen = suspended(ps.holds(f, other))
    offered: list[pickle.PickleBuffer] = []
    blob = corosnap.dumps(gen, buffer_callback=offered.append)
    assert [pb.raw().obj for pb in offered] == [other]
    (values, _) = corosnap.loads(blob, buffers=offered).send(None)
    assert values[0]() == big and values[1] is other


def test_a_strict_second_encoding_asks_the_callback_once():
    # An int past 64 bits makes the fast encoding overflow at pack time; the
    # snapshot is encoded again, strictly, with the same buffer decisions.
    data = b"w" * BIG
    gen = suspended(ps.holds(data, 2**70, bytearray(data)))
    offered: list[pickle.PickleBuffer] = []
    blob = corosnap.dumps(gen, buffer_callback=offered.append)
    assert [pb.raw().obj is x for pb, x in zip(offered, (data, gen.gi_frame.f_locals["values"][2]),
                                                 strict=True)] == [True, True]
    (values, _) = corosnap.loads(blob, buffers=offered).send(None)
    assert values[0] is data and values[1] == 2**70


def test_safe_mode_loads_buffers():
    gen = suspended(ps.holds(b"s" * BIG))
    bufs: list[pickle.PickleBuffer] = []
    blob = corosnap.dumps(gen, buffer_callback=bufs.append)
    (values, _) = corosnap.loads(blob, buffers=bufs, safe=True,
                                 allow=("pickling_samples",)).send(None)
    assert values == (b"s" * BIG,)


def test_the_signature_covers_the_buffers():
    data = bytearray(b"k" * BIG)
    gen = suspended(ps.holds(data))
    bufs: list[pickle.PickleBuffer] = []
    blob = corosnap.dumps(gen, key=b"secret", buffer_callback=bufs.append)
    copies = [bytearray(pb.raw()) for pb in bufs]
    assert corosnap.loads(blob, key=b"secret", buffers=copies).send(None)[0] == (data,)
    copies[0][7] ^= 1
    with pytest.raises(corosnap.SignatureError):
        corosnap.loads(blob, key=b"secret", buffers=copies)
    with pytest.raises(corosnap.SignatureError):
        corosnap.loads(blob, key=b"secret", buffers=[*bufs, b"extra"])


# -- refusals -------------------------------------------------------------

def test_a_blob_with_out_of_band_buffers_needs_them():
    gen = suspended(ps.holds(b"m" * BIG))
    blob = corosnap.dumps(gen, buffer_callback=lambda pb: None)
    with pytest.raises(corosnap.CorruptSnapshot, match="out-of-band buffer 0, but loads.. was "
                       "given no buffers="):
        corosnap.loads(blob)
    with pytest.raises(corosnap.CorruptSnapshot, match="buffer 0, but loads.. was given 0"):
        corosnap.loads(blob, buffers=[])


def _with_buffer_ext(payload: bytes) -> bytes:
    """A real blob whose buffer ext is replaced by ``payload``."""
    gen = suspended(ps.holds(b"h" * BIG))
    blob = corosnap.dumps(gen, buffer_callback=lambda pb: None)

    def hook(code: int, data: bytes) -> ExtType:
        return ExtType(code, payload if code == EXT_BUFFER else data)

    return msgpack.packb(msgpack.unpackb(blob, ext_hook=hook, strict_map_key=False),
                         use_bin_type=True)


@pytest.mark.parametrize("payload", [
    b"\x00\x05",          # index 5 of 1 buffer
    b"\x00\xff\xff",      # index 65535
    b"\x00\xff\xff\xff\xff",
    b"",                  # no kind
    b"\x00",              # no index
    b"\x00\x00\x00\x00",  # a 3-byte index
    b"\x04\x00",          # unknown kind
    b"\x84abc",           # unknown in-band kind
    b"\x7f\x00",
])
def test_a_hostile_buffer_reference_is_corrupt(payload):
    blob = _with_buffer_ext(payload)
    with pytest.raises(corosnap.CorruptSnapshot):
        corosnap.loads(blob, buffers=[b"only one"])


@pytest.mark.parametrize("payload,value", [
    (b"\x80abc", b"abc"), (b"\x81abc", bytearray(b"abc")), (b"\x82", b""), (b"\x83xy", b"xy"),
])
def test_in_band_kinds_decode_without_buffers(payload, value):
    (values, _) = corosnap.loads(_with_buffer_ext(payload)).send(None)
    assert values[0] == value and type(values[0]) is type(value) or (
        type(values[0]) is memoryview and values[0].readonly == (payload[0] == 0x82))


def test_buffers_must_be_bytes_like():
    gen = suspended(ps.holds(b"t" * BIG))
    blob = corosnap.dumps(gen, buffer_callback=lambda pb: None)
    with pytest.raises(TypeError, match=r"buffers\[1\] is a int, not a bytes-like object"):
        corosnap.loads(blob, buffers=[b"ok", 7])


@pytest.mark.parametrize("make,match", [
    (lambda: memoryview(bytes(8)).cast("i"), "format 'i'"),
    (lambda: memoryview(bytes(8))[::2], "only contiguous one-dimensional"),
    (lambda: memoryview(bytes(8)).cast("B", (2, 4)), r"shape \(2, 4\)"),
])
def test_memoryviews_that_cannot_be_captured_are_named(make, match):
    gen = suspended(ps.holds(make()))
    with pytest.raises(corosnap.SnapshotError, match=r"local 'values'.*" + match):
        corosnap.dumps(gen)


def test_a_released_memoryview_is_refused():
    view = memoryview(b"x")
    view.release()
    gen = suspended(ps.holds(view))
    with pytest.raises(corosnap.SnapshotError, match="released memoryview"):
        corosnap.dumps(gen)


def test_a_view_sharing_memory_with_a_captured_bytearray_is_refused():
    ba = bytearray(b"a" * 100)
    gen = suspended(ps.holds(ba, memoryview(ba)))
    with pytest.raises(corosnap.SnapshotError, match=r"generator holds\(\).*shares its memory "
                       "with a bytearray the snapshot also holds"):
        corosnap.dumps(gen)
    gen = suspended(ps.holds(memoryview(ba), memoryview(ba)[10:]))
    with pytest.raises(corosnap.SnapshotError, match="another memoryview of the same bytearray"):
        corosnap.dumps(gen, buffer_callback=lambda pb: None)
    # A view of an immutable bytes may sit beside it: nothing to keep in step.
    data = b"d" * 100
    gen = suspended(ps.holds(data, memoryview(data)))
    (values, _) = corosnap.loads(corosnap.dumps(gen)).send(None)
    assert values[1] == data


def test_inspect_reads_buffers_in_and_out_of_band():
    data = b"v" * BIG
    gen = suspended(ps.holds(data, bytearray(data), memoryview(b"small view")))
    for callback in (lambda pb: None, lambda pb: True):
        blob = corosnap.dumps(gen, buffer_callback=callback)
        info = corosnap.inspect(blob)
        assert not info.warnings, info.warnings
        text = json.dumps(info.to_json())
        assert "approximate" not in text
        summaries = [line for line in corosnap.inspection.render(info).splitlines()
                     if "out-of-band buffer" in line or f"{BIG:,} bytes" in line]
        assert len(summaries) >= 2, corosnap.inspection.render(info)
