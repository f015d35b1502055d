"""Generators and coroutines through pickle, cloudpickle, dill, copy,
multiprocessing, ProcessPoolExecutor and Dask (``corosnap.pickling``)."""

from __future__ import annotations

import concurrent.futures
import copy
import copyreg
import functools
import io
import multiprocessing
import os
import pickle
import pickletools
import subprocess
import sys
import types
from collections.abc import Iterator
from typing import Any

import cloudpickle
import dill
import msgpack
import pytest

import corosnap
import corosnap.pickling
import pickling_samples as ps
from corosnap.codec._tags import BUFFER_MIN_SIZE, EXT_PICKLE

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
LIBS = {"pickle": pickle, "cloudpickle": cloudpickle, "dill": dill}


@pytest.fixture
def installed() -> Iterator[corosnap.pickling.Reducer]:
    reducer = corosnap.pickling.install()
    yield reducer
    corosnap.pickling.uninstall()


def started(gen: Any) -> Any:
    next(gen)
    return gen


def graph() -> dict[str, Any]:
    """A larger object graph with suspended generators and a coroutine inside."""
    acc = started(ps.accumulate(100))
    acc.send(5)
    coro = ps.compute(1, b"p" * 10)
    assert coro.send(None) == 2
    return {
        "jobs": [acc, started(ps.holds("a", [1, 2]))],
        "coro": coro,
        "meta": {"owner": "test", "numbers": list(range(20)), "big": b"B" * BUFFER_MIN_SIZE},
    }


def check_advanced(g: dict[str, Any]) -> None:
    """What ``ps.advance_graph`` leaves behind, then one more step here."""
    assert g["results"] == [(106, 2), (("a", [1, 2]), 2), 14]
    assert g["meta"]["big"] == b"B" * BUFFER_MIN_SIZE
    assert g["jobs"][0].send(10) == (116, 3)
    with pytest.raises(StopIteration) as stop:
        g["coro"].send(8)
    assert stop.value.value == (1, 7, 8, 10)


# -- registration ---------------------------------------------------------

def test_refused_until_installed_and_after_uninstall():
    gen = started(ps.holds(1))
    with pytest.raises(TypeError, match="cannot pickle 'generator' object"):
        pickle.dumps(gen)
    corosnap.pickling.install()
    try:
        assert copyreg.dispatch_table[types.GeneratorType] is corosnap.pickling.installed()
        assert dill.Pickler.dispatch[types.CoroutineType] is not None
        assert pickle.loads(pickle.dumps(gen)).send("y") == ((1,), "y")
    finally:
        corosnap.pickling.uninstall()
    assert corosnap.pickling.installed() is None
    assert types.GeneratorType not in copyreg.dispatch_table
    assert types.GeneratorType not in dill.Pickler.dispatch
    for lib in LIBS.values():
        with pytest.raises(Exception, match="generator"):
            lib.dumps(gen)


def test_dill_imported_after_install_reads_copyreg():
    code = ("import sys, corosnap.pickling as c\n"
            "c.install()\n"
            "assert 'dill' not in sys.modules  # install() does not import dill\n"
            "import dill, pickling_samples as ps\n"
            "g = ps.holds(1); next(g)\n"
            "print(dill.loads(dill.dumps(g)).send(2))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": TESTS_DIR})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "((1,), 2)"


def test_uninstall_restores_what_was_registered_before():
    def earlier(obj: Any) -> Any:
        return (str, ("earlier",))

    copyreg.pickle(types.CoroutineType, earlier)
    try:
        corosnap.pickling.install()
        assert copyreg.dispatch_table[types.CoroutineType] is not earlier
        corosnap.pickling.install(pickler="pickle")  # again: options replaced, history kept
        corosnap.pickling.uninstall()
        assert copyreg.dispatch_table[types.CoroutineType] is earlier
    finally:
        del copyreg.dispatch_table[types.CoroutineType]


def test_a_private_dispatch_table_leaves_every_other_pickler_alone():
    gen = started(ps.holds("private"))
    reducer = corosnap.pickling.Reducer(pickler="pickle")
    out = io.BytesIO()
    p = pickle.Pickler(out, protocol=5)
    p.dispatch_table = {**copyreg.dispatch_table, **reducer.dispatch_table()}
    p.dump({"gen": gen})
    assert types.GeneratorType not in copyreg.dispatch_table
    with pytest.raises(TypeError):
        pickle.dumps(gen)
    assert pickle.loads(out.getvalue())["gen"].send(1) == (("private",), 1)
    with pytest.raises(ValueError, match="pickler must be one of"):
        corosnap.pickling.Reducer(pickler="json")  # type: ignore[arg-type]


def test_the_reconstructor_is_an_importable_function(installed):
    ops = [(op.name, arg) for op, arg, _ in pickletools.genops(
        pickle.dumps(started(ps.holds(1)), protocol=5))]
    assert ("SHORT_BINUNICODE", "corosnap.pickling") in ops
    assert ("SHORT_BINUNICODE", "rebuild") in ops
    assert corosnap.pickling.rebuild.__module__ == "corosnap.pickling"
    ops4 = [op.name for op, _, _ in pickletools.genops(pickle.dumps(started(ps.holds(1)),
                                                                     protocol=2))]
    assert "GLOBAL" in ops4


def test_async_generators_are_carried_too(installed):
    import agen_samples as ags

    ag = ags.ticker(3)
    step = ag.__anext__()
    step.send(None)
    with pytest.raises(StopIteration):
        step.send(1)
    for lib in LIBS.values():
        ag2 = lib.loads(lib.dumps({"ag": ag}))["ag"]
        assert type(ag2) is types.AsyncGeneratorType
        nxt = ag2.__anext__()
        assert nxt.send(None) == ("tick", 1)
        with pytest.raises(StopIteration) as stop:
            nxt.send(2)
        assert stop.value.value == (1, 2)


@pytest.mark.parametrize("protocol", range(2, pickle.HIGHEST_PROTOCOL + 1))
def test_every_protocol_from_2(installed, protocol):
    gen = started(ps.holds(b"x" * BUFFER_MIN_SIZE, bytearray(BUFFER_MIN_SIZE),
                           memoryview(b"view")))
    values, got = pickle.loads(pickle.dumps(gen, protocol=protocol)).send("p")
    assert values == (b"x" * BUFFER_MIN_SIZE, bytearray(BUFFER_MIN_SIZE), b"view")
    assert type(values[2]) is memoryview and got == "p"


def test_copy_and_deepcopy_fork_the_generator(installed):
    ba = bytearray(b"f" * BUFFER_MIN_SIZE)
    gen = started(ps.holds(ba))
    for fork in (copy.copy(gen), copy.deepcopy(gen)):
        (values, _) = fork.send(None)
        assert values[0] == ba and values[0] is not ba  # a fork shares no mutable buffer
    assert gen.send("original") == ((ba,), "original")


# -- out-of-band buffers through pickle protocol 5 ------------------------

def test_pickle_buffer_callback_takes_large_buffers_out_of_band_without_copying(installed):
    data, ba = b"d" * 1_000_000, bytearray(b"a" * 500_000)
    gen = started(ps.holds(data, ba, memoryview(data)))
    buffers: list[pickle.PickleBuffer] = []
    stream = pickle.dumps({"gen": gen}, protocol=5, buffer_callback=buffers.append)
    assert len(stream) < 500
    # The pickler was handed the frame's own memory, not a copy of it.
    assert [pb.raw().obj for pb in buffers] == [data, ba, data]
    assert buffers[0].raw().obj is data and buffers[1].raw().obj is ba
    restored = pickle.loads(stream, buffers=buffers)["gen"]
    (values, _) = restored.send(None)
    assert values[0] is data and values[1] is ba  # the buffers' objects, as pickle gives them
    assert values[2].obj is gen.gi_frame.f_locals["values"][2]  # a view of the view it was
    # Without a buffer_callback the same pickle carries them in band.
    assert len(pickle.dumps(gen, protocol=5)) > 2_500_000


def test_cloudpickle_and_dill_take_buffers_out_of_band_too(installed):
    data = b"c" * 100_000
    gen = started(ps.holds(data))
    for lib in (cloudpickle, dill):
        buffers: list[pickle.PickleBuffer] = []
        stream = lib.dumps(gen, protocol=5, buffer_callback=buffers.append)
        assert len(stream) < 1000 and [pb.raw().obj for pb in buffers] == [data]
        assert lib.loads(stream, buffers=buffers).send(1) == ((data,), 1)


# -- options --------------------------------------------------------------

def test_key_signs_in_the_sender_and_is_checked_by_the_receiver():
    gen = started(ps.holds("signed"))
    try:
        corosnap.pickling.install(key=b"k1")
        stream = pickle.dumps(gen)
        assert pickle.loads(stream).send(0) == (("signed",), 0)
        corosnap.pickling.install(key=b"k2")  # a receiver with another key
        with pytest.raises(corosnap.SignatureError):
            pickle.loads(stream)
        corosnap.pickling.install()  # a sender without a key...
        unsigned = pickle.dumps(gen)
        corosnap.pickling.install(key=b"k2")  # ...and a receiver that expects one
        with pytest.raises(corosnap.SignatureError, match="not signed"):
            pickle.loads(unsigned)
    finally:
        corosnap.pickling.uninstall()


def test_safe_mode_applies_to_what_the_receiver_restores():
    gen = started(ps.holds(ps.Ready(1)))
    try:
        corosnap.pickling.install(safe=True, allow=("pickling_samples",))
        assert pickle.loads(pickle.dumps(gen)).send(0)[0][0].value == 1
        corosnap.pickling.install(safe=True, allow=("samples",))
        with pytest.raises(corosnap.UnsafeSnapshot):
            pickle.loads(pickle.dumps(gen))
    finally:
        corosnap.pickling.uninstall()


def _note_ext(out: list[tuple[int, bytes]], code: int, data: bytes) -> None:
    out.append((code, data[:1]))


def test_the_fallback_pickler_option_reaches_dumps():
    class Local:  # not importable by name: the fallback pickler stores it
        pass

    gen = started(ps.holds(Local()))
    for name, pickler_id in (("cloudpickle", 2), ("dill", 3)):
        try:
            reducer = corosnap.pickling.install(pickler=name)  # type: ignore[arg-type]
            func, args = reducer(gen)
            assert func is corosnap.pickling.rebuild
            payloads: list[tuple[int, bytes]] = []
            msgpack.unpackb(args[0], strict_map_key=False,
                            ext_hook=functools.partial(_note_ext, payloads))
            assert (EXT_PICKLE, bytes([pickler_id])) in payloads
            (values, _) = pickle.loads(pickle.dumps(gen)).send(0)
            assert type(values[0]).__qualname__.endswith("Local")
        finally:
            corosnap.pickling.uninstall()


# -- identity caveat ------------------------------------------------------

def test_objects_shared_with_the_rest_of_the_pickle_come_back_as_copies(installed):
    shared = [1, 2]
    gen = started(ps.holds(shared))
    out = pickle.loads(pickle.dumps({"gen": gen, "shared": shared}))
    (values, _) = out["gen"].send(None)
    assert values[0] == out["shared"] and values[0] is not out["shared"]
    # The way round it: reach the object through the generator.
    gen = started(ps.holds(shared))
    restored = pickle.loads(pickle.dumps(gen))
    assert restored.gi_frame.f_locals["values"][0] is restored.send(None)[0][0]


def test_module_level_values_keep_their_identity(installed):
    gen = started(ps.uses_shared())
    restored = pickle.loads(pickle.dumps(gen))
    assert restored.send("x") == len(ps.SHARED)
    assert ps.SHARED[-1] == "x"  # the restored frame appended to this module's list


# -- real processes -------------------------------------------------------

_CHILD = """
import importlib, sys
sys.path.insert(0, {tests!r})
lib = importlib.import_module(sys.argv[1])
import pickling_samples as ps
graph = lib.loads(sys.stdin.buffer.read())
assert "corosnap.pickling" in sys.modules  # imported by the unpickler, not by this script
sys.stdout.buffer.write(lib.dumps(ps.advance_graph(graph)))
"""


@pytest.mark.parametrize("lib", sorted(LIBS))
def test_a_graph_with_generators_round_trips_through_another_process(installed, lib):
    stream = LIBS[lib].dumps(graph())
    proc = subprocess.run([sys.executable, "-c", _CHILD.format(tests=TESTS_DIR), lib],
                          input=stream, capture_output=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": TESTS_DIR})
    assert proc.returncode == 0, proc.stderr.decode()
    check_advanced(LIBS[lib].loads(proc.stdout))


def _spawn() -> Any:
    return multiprocessing.get_context("spawn")


@pytest.fixture
def tests_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", TESTS_DIR)


def test_multiprocessing_pool_with_spawn(installed, tests_on_path):
    with _spawn().Pool(1) as pool:
        assert pool.apply(ps.installed_here) is False  # opt-in: nothing registered yet
        check_advanced(pool.apply(ps.advance_graph, (graph(),)))
        gen, out = pool.apply(ps.advance, (started(ps.accumulate(0)), [1, 2, 3]))
        assert out == [(1, 1), (3, 2), (6, 3)] and gen.send(4) == (10, 4)
        # Receiving a generator installed the reducer there: it could send it back.
        assert pool.apply(ps.installed_here) is True


def test_process_pool_executor_with_spawn(installed, tests_on_path):
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=_spawn()) as pool:
        check_advanced(pool.submit(ps.advance_graph, graph()).result(timeout=120))
        gen, out = pool.submit(ps.advance, started(ps.accumulate(0)), [5]).result(timeout=120)
        assert out == [(5, 1)] and gen.send(1) == (6, 2)


def test_workers_with_a_key_set_by_their_initializer(tests_on_path):
    corosnap.pickling.install(key=b"pool key")
    try:
        init = functools.partial(corosnap.pickling.install, key=b"pool key")
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=_spawn(),
                                                    initializer=init) as pool:
            gen, out = pool.submit(ps.advance, started(ps.accumulate(0)), [2]).result(120)
            assert out == [(2, 1)] and gen.send(3) == (5, 2)
    finally:
        corosnap.pickling.uninstall()


_DASK = """
import sys
sys.path.insert(0, {tests!r})
import distributed  # a dev dependency: a missing one fails, it does not skip
from distributed.protocol import serialize

import corosnap.pickling
import pickling_samples as ps
from test_pickling import check_advanced, graph, started

if __name__ == "__main__":  # (spawned Dask workers import this file as __mp_main__)
    corosnap.pickling.install()
    data = b"D" * 1_000_000
    gen = started(ps.holds(data))
    # Dask serializes with pickle protocol 5 and a buffer_callback: the
    # generator's large local is a frame of its own, the very bytes object.
    header, frames = serialize(gen)
    assert header["serializer"] == "pickle", header
    assert sorted(memoryview(f).nbytes for f in frames)[-1] == len(data)
    assert any(memoryview(f).obj is data for f in frames)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster, \\
            distributed.Client(cluster) as client:
        check_advanced(client.submit(ps.advance_graph, graph(), pure=False).result(120))
        big, out = client.submit(ps.advance, gen, ["via dask"], pure=False).result(120)
        assert out == [((data,), "via dask")], out
        acc, out = client.submit(ps.advance, started(ps.accumulate(1)), [1, 1],
                                 pure=False).result(120)
        assert out == [(2, 1), (3, 2)] and acc.send(1) == (4, 3)
    print("dask ok")
"""


def test_dask_local_cluster(tmp_path):
    # In a process of its own: importing distributed registers tblib's
    # reducers for every exception class and for tracebacks in copyreg,
    # which would change what the rest of this test session captures.
    script = tmp_path / "dask_check.py"
    script.write_text(_DASK.format(tests=TESTS_DIR))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": TESTS_DIR},
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("dask ok"), proc.stdout
