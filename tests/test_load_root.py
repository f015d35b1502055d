"""``loads``'s common case in one C call: ``_csnapshot.load_root``.

On the C engine, ``Snapshotter.loads`` of an unsigned blob in the default
mode hands the bytes to ``load_root``, which parses them, checks the header
and restores the root with a RestoreState of its own, kept emptied between
calls.  What must hold:

- its three answers (the restored object; the parsed tree, untouched, when
  it declines; None when the bytes are not a blob of this version) each lead
  ``loads`` to the same result as the general path;
- the kept state holds nothing of the last blob (no restored value stays
  alive because of it), and a ``loads`` run inside another (by a reduce)
  gets a state of its own;
- errors raised inside are the ones the general path raises.
"""

from __future__ import annotations

import gc
import subprocess
import sys
import types
import weakref
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest

import corosnap
import samples
from corosnap import CorruptSnapshot, RestoreError, Snapshotter, _accel
from corosnap.snapshot import _contract

needs_c = pytest.mark.skipif(_accel.ENGINE != "c", reason="the C engine is not loaded "
                                                         "(COROSNAP_PUREPYTHON=1)")


class Payload:
    """A plain instance, restored through the C value codec."""

    def __init__(self, n: int) -> None:
        self.n = n


def holds(value: Any) -> Iterator[Any]:
    kept = value
    yield 1
    yield kept


def counter(n: int) -> Iterator[int]:
    for i in range(n):  # noqa: UP028 - a range iterator on the stack
        yield i


def _warm(snap: Snapshotter, blob: bytes) -> None:
    """Restore once, so the Python engine has found and checked the code
    (the C engine declines a code it meets for the first time)."""
    snap.loads(blob).close()


def _load_root(snap: Snapshotter) -> Any:
    caches = snap._caches
    assert caches.load_root is not None
    return caches.load_root


@needs_c
def test_its_three_answers() -> None:
    snap = Snapshotter()._with_engine("c")
    g = counter(10)
    next(g)
    blob = snap.dumps(g)
    load_root = _load_root(snap)
    first = load_root(blob)  # a code met for the first time: declined, untouched
    assert type(first) is list and first == msgpack.unpackb(blob, ext_hook=_ext,
                                                              strict_map_key=False)
    _warm(snap, blob)
    restored = load_root(blob)
    assert type(restored).__name__ == "generator" and list(restored) == list(range(1, 10))
    assert load_root(b"\x93\x01\x02\x03") is None  # not a blob: Python opens it
    assert load_root(blob[:-1]) is None  # truncated: the C unpack declines it
    migratable = snap.replace(migratable=True).dumps(counter(3))
    tree = load_root(migratable)  # format 2: restored by Python, from this tree
    assert type(tree) is list and len(tree) == len(msgpack.unpackb(
        migratable, ext_hook=_ext, strict_map_key=False))


def _ext(code: int, data: bytes) -> Any:
    from corosnap.codec import new_ext_hook

    return new_ext_hook()(code, data)


@needs_c
def test_loads_gives_what_the_general_path_gives() -> None:
    fast = Snapshotter()._with_engine("c")
    general = Snapshotter(max_size=10**9)._with_engine("c")
    general._caches.load_root = None  # the path before load_root
    for make in (lambda: counter(20), lambda: holds(Payload(3)), lambda: holds([1, {"a": 2}])):
        g = make()
        next(g)
        blob = fast.dumps(g)
        for _ in range(3):  # cold, then warm
            a, b = fast.loads(blob), general.loads(blob)
            assert [repr(x) if not isinstance(x, Payload) else x.n for x in a] == \
                [repr(x) if not isinstance(x, Payload) else x.n for x in b]


@needs_c
def test_the_kept_state_keeps_no_value_alive() -> None:
    snap = Snapshotter()._with_engine("c")
    g = holds(Payload(1))
    next(g)
    blob = snap.dumps(g)
    _warm(snap, blob)
    for _ in range(3):
        restored = snap.loads(blob)
        frame_value = restored.gi_frame.f_locals["kept"]
        ref = weakref.ref(frame_value)
        del frame_value
        restored.close()
        del restored
        gc.collect()
        assert ref() is None


_inner_results: list[Any] = []


def _load_inside(blob: bytes) -> Payload:
    """A reduce callable that runs a whole loads while the outer one is in
    progress: it must get a RestoreState of its own."""
    inner = corosnap.loads(blob)
    _inner_results.append(list(inner))
    return Payload(7)


class LoadsInside:
    def __init__(self, blob: bytes) -> None:
        self.blob = blob

    def __reduce__(self) -> Any:
        return (_load_inside, (self.blob,))


@needs_c
def test_a_loads_inside_a_loads() -> None:
    inner_gen = counter(5)
    next(inner_gen)
    inner_blob = corosnap.dumps(inner_gen)
    corosnap.loads(inner_blob).close()  # warm
    g = holds(LoadsInside(inner_blob))
    next(g)
    blob = corosnap.dumps(g)
    _inner_results.clear()
    for _ in range(3):
        restored = corosnap.loads(blob)
        assert next(restored).n == 7
    assert _inner_results == [[1, 2, 3, 4]] * 3


def _fails() -> None:
    raise LookupError("refused by the reduce")


class FailsOnLoad:
    def __reduce__(self) -> Any:
        return (_fails, ())


@needs_c
def test_errors_are_the_general_paths() -> None:
    snap = Snapshotter()._with_engine("c")
    g = holds(FailsOnLoad())
    next(g)
    blob = snap.dumps(g)
    for _ in range(3):
        with pytest.raises(RestoreError, match="refused by the reduce") as info:
            snap.loads(blob)
        assert isinstance(info.value.__cause__, LookupError)
    h = counter(4)
    next(h)
    good = snap.dumps(h)
    _warm(snap, good)
    tree = msgpack.unpackb(good, strict_map_key=False)  # exts left as ExtType
    tree[-1] = "not a range iterator"  # the for loop's iterator (3.15: its index)
    bad = msgpack.packb(tree, use_bin_type=True)
    with pytest.raises(CorruptSnapshot, match="counter"):
        snap.loads(bad)


def test_the_contract_names_load_root() -> None:
    assert "load_root" in _contract.__all__
    if _accel.ENGINE == "c":
        assert callable(_contract.load_root)
    else:
        assert _contract.load_root is None


def holds_twice(a: Any, b: Any) -> Iterator[Any]:
    x = a
    y = b
    yield 1
    yield x, y


@needs_c
def test_a_kept_state_changed_while_it_waits_is_not_used() -> None:
    """Python code can reach the kept RestoreState (gc.get_objects) between
    two loads; whatever it puts in its tables must not reach the next blob
    (a back-reference would resolve to it)."""
    p = Payload(1)
    g = holds_twice(p, p)
    next(g)
    blob = corosnap.dumps(g)
    corosnap.loads(blob).close()  # warm
    corosnap.loads(blob).close()  # a state is kept
    kept = [o for o in gc.get_objects() if type(o) is _contract.RestoreState]
    assert kept, "no RestoreState kept between loads"
    for state in kept:
        state.memo.extend(["INJECTED"] * 3)
    del kept, state
    x, y = next(corosnap.loads(blob))
    assert type(x) is Payload and x is y and x.n == 1


@needs_c
def test_the_c_adopt_makes_the_decoder_frame_decoder_adopt_makes() -> None:
    """The C engine makes a state's Decoder (the first value that needs the
    codec) with the codec's C adopt_decoder: slot by slot what the Python
    FrameDecoder.adopt makes, sharing the state's tables."""
    from corosnap.codec import _ccodec  # type: ignore[attr-defined]
    from corosnap.codec._decoder import Decoder

    frames = corosnap.snapshot._api.default()._caches.frames_in
    made = []
    for _ in range(2):
        state = _contract.RestoreState(
            decoder=None, memo=[], strings=[], codes=[], active=set(), exceptions=[],
            shapes=[], depth=_ccodec.Memo(), safe=False, allow=(), code_cache={},
            frames=frames)
        made.append(state)
    python = frames.adopt(made[0])
    c = _ccodec.adopt_decoder(frames.decoder, frames, made[1].safe, made[1].allow,
                              made[1].memo, made[1].strings, made[1].codes, made[1].active,
                              made[1].exceptions, made[1].shapes, made[1].depth, made[1])
    assert type(c) is type(python) is frames.decoder
    shared = {"memo", "strings", "codes", "active", "exceptions", "shapes", "depth"}
    for name in Decoder.__slots__:
        p, q = getattr(python, name), getattr(c, name)
        assert type(p) is type(q), name
        if name in shared:
            assert p is getattr(made[0], name) and q is getattr(made[1], name), name
        elif name == "cstate":
            assert p is made[0] and q is made[1]
        elif isinstance(p, dict | list | set):
            assert p == q and p is not q, name  # fresh and empty
        else:
            assert p == q, name
    with pytest.raises(TypeError):
        _ccodec.adopt_decoder(object, frames, False, (), [], [], [], set(), [], [],
                              _ccodec.Memo(), None)
    with pytest.raises(TypeError):
        _ccodec.adopt_decoder(frames.decoder, frames, False, (), (), [], [], set(), [], [],
                              _ccodec.Memo(), None)
    with pytest.raises(TypeError):  # depth: the codec's Memo, as Decoder.__init__ makes it
        _ccodec.adopt_decoder(frames.decoder, frames, False, (), [], [], [], set(), [], [],
                              {}, None)
    with pytest.raises(TypeError):  # the tables it shares before this version's two more
        _ccodec.adopt_decoder(frames.decoder, frames, False, (), [], [], [], set(), [], None)



@needs_c
def test_steps_left_for_after_the_blob_run_on_the_one_call_path() -> None:
    """A coroutine root restored in C whose frame holds an async generator
    in flight: the generator (restored by Python) leaves a step for after
    the whole blob, taking the event loop's hooks, which load_root runs
    (FrameDecoder.done) before it returns."""
    import sys

    import agen_samples as ags

    c = ags.consume(3)
    assert c.send(None) == ("tick", 0)  # ticker's await is in flight
    blob = corosnap.dumps(c)
    snap = corosnap.snapshot._api.default()
    _warm(snap, blob)
    seen: list[Any] = []
    old = sys.get_asyncgen_hooks()
    sys.set_asyncgen_hooks(firstiter=seen.append, finalizer=lambda _ag: None)
    try:
        restored = _load_root(snap)(blob)
        assert type(restored).__name__ == "coroutine"  # the one-call path restored it
        assert [type(x).__name__ for x in seen] == ["async_generator"]
        assert seen[0].ag_frame is not None
    finally:
        sys.set_asyncgen_hooks(*old)
        restored.close()
        c.close()


@needs_c
def test_codes_told_apart_only_by_their_path_restore_as_themselves() -> None:
    """The C restore keeps the code keys it met (by their fingerprint's low
    bits): two codes with the same module, qualname and fingerprint, told
    apart only by their path through co_consts, each find their own code."""
    a, b = samples.twin_genexprs(range(10), range(100, 110))
    next(a)
    next(b)
    ta, tb = (msgpack.unpackb(corosnap.dumps(g), strict_map_key=False) for g in (a, b))
    assert ta[1:2] == tb[1:2] and ta[3] == tb[3] and ta[2] != tb[2]  # only the path differs
    blobs = [(corosnap.dumps(a), a.gi_code, 1), (corosnap.dumps(b), b.gi_code, 101)]
    for _ in range(3):
        for blob, code, first in blobs:
            g = corosnap.loads(blob)
            assert g.gi_code is code
            assert next(g) == first


@needs_c
def test_codes_sharing_a_slot_of_the_key_table_restore_as_themselves() -> None:
    """100 generator functions, more than the table of code keys has slots:
    loaded round-robin, each frame finds its own code."""
    name = "corosnap_test_many_codes"
    module = types.ModuleType(name)
    exec("\n".join(f"def g{i}(n):\n    for k in range(n):\n        yield k * {i + 1}\n"
                   for i in range(100)), module.__dict__)
    sys.modules[name] = module
    try:
        gens = [getattr(module, f"g{i}")(10) for i in range(100)]
        for g in gens:
            next(g)
        blobs = [corosnap.dumps(g) for g in gens]
        for _ in range(3):
            for i, blob in enumerate(blobs):
                g = corosnap.loads(blob)
                assert g.gi_code is getattr(module, f"g{i}").__code__
                assert next(g) == i + 1
                g.close()
    finally:
        del sys.modules[name]


@needs_c
def test_the_same_body_under_two_names_restores_as_itself() -> None:
    """Two functions of one module with the same body: the same fingerprint,
    told apart by the qualname only."""
    name = "corosnap_test_same_body"
    module = types.ModuleType(name)
    exec("def g(n):\n    for k in range(n):\n        yield k\n"
         "def h(n):\n    for k in range(n):\n        yield k\n", module.__dict__)
    sys.modules[name] = module
    try:
        gens = [module.g(5), module.h(5)]
        for g in gens:
            next(g)
        trees = [msgpack.unpackb(corosnap.dumps(g), strict_map_key=False) for g in gens]
        assert trees[0][3] == trees[1][3] and trees[0][2] != trees[1][2]
        blobs = [corosnap.dumps(g) for g in gens]
        for _ in range(3):
            for fn, blob in zip((module.g, module.h), blobs, strict=True):
                g = corosnap.loads(blob)
                assert g.gi_code is fn.__code__
                g.close()
    finally:
        del sys.modules[name]


@needs_c
def test_the_same_code_in_two_modules_restores_in_its_own() -> None:
    """Identical source in two modules: the same qualname and fingerprint,
    told apart by the module name only."""
    made = []
    for name in ("corosnap_test_twin_a", "corosnap_test_twin_b"):
        module = types.ModuleType(name)
        exec("def g(n):\n    for k in range(n):\n        yield k\n", module.__dict__)
        sys.modules[name] = module
        made.append(module)
    try:
        gens = [m.g(5) for m in made]
        for g in gens:
            next(g)
        trees = [msgpack.unpackb(corosnap.dumps(g), strict_map_key=False) for g in gens]
        assert trees[0][2:4] == trees[1][2:4] and trees[0][1] != trees[1][1]
        blobs = [corosnap.dumps(g) for g in gens]
        for _ in range(3):
            for module, blob in zip(made, blobs, strict=True):
                g = corosnap.loads(blob)
                assert g.gi_code is module.g.__code__
                g.close()
    finally:
        for module in made:
            del sys.modules[module.__name__]


def plain_values() -> Iterator[Any]:
    a = [1, "x", None, 2.5, b"y", True]
    b: list[Any] = []
    c: dict[Any, Any] = {}
    d = {"k": 1}
    e = {"k": [1]}
    f = [[1], 2]
    g = {1: "one"}
    h = {"a": 1, "b": 2}  # a shape, read again by h2
    h2 = {"a": 3, "b": 4}
    i = [a]  # a back-reference inside a list
    j = [bytearray(b"z")]
    k = [{}]
    t = (1, 2)
    again = (a, b, c, d, e, f, g, h, h2, i, j, k, t, e["k"], f[0], k[0])
    yield 1
    yield again


def only_plain_values() -> Iterator[Any]:
    items = ["apple", "pear", 3, 4.5, None, b"x"]
    done: list[Any] = []
    seen: dict[str, int] = {}
    one = {"k": "v"}
    yield 0
    yield items, done, seen, one


def refs_tuples_and_iterators() -> Iterator[Any]:
    items = ["apple", "pear", "fig", "plum"]
    alias = items  # a back-reference
    pair = (1, "x", None)  # a tuple of plain items
    for item in items:  # a list iterator over a back-reference, on the stack
        if item == "pear":
            yield 0
            yield alias, pair, item, next(iter(()), "after")
    yield "done"


def one_nested_list() -> Iterator[Any]:
    nested = [[1, 2]]
    yield 0
    yield nested


def test_references_tuples_and_list_iterators_in_slots_restore_as_the_python_engine_does(
) -> None:
    """A back-reference, a tuple of plain items and a for loop over a list
    met before are restored by the C restore without a decoder (the codec's
    dec_plain): the reference is the very list, the loop goes on at the
    right item over it, on both engines."""
    for engine in ("c", "python") if _accel.ENGINE == "c" else ("python",):
        snap = Snapshotter()._with_engine(engine)
        original = refs_tuples_and_iterators()
        next(original)
        blob = snap.dumps(original)
        for _ in range(3):  # cold, then warm
            restored = snap.loads(blob)
            alias, pair, item, _after = next(restored)
            got = restored.gi_frame.f_locals
            assert alias is got["items"] and alias == ["apple", "pear", "fig", "plum"]
            assert pair == (1, "x", None) and item == "pear"
            alias.append("kiwi")  # the loop runs over the very list
            assert list(restored) == ["done"]
        assert next(original)[1:] == ((1, "x", None), "pear", "after")
        assert list(original) == ["done"]


def test_plain_lists_and_small_dicts_in_slots_restore_as_the_python_engine_does() -> None:
    """Lists of scalars and dicts of fewer keys than a shape are restored by
    the C restore without a decoder: each must be its own object, registered
    in the memo in the same order as the decoder registers it (the tuple's
    back-references to them, and to values nested in them, find the right
    ones), and a dict of as many keys as a shape still records it for the
    next dict with those keys; on both engines."""
    original = plain_values()
    next(original)
    want = original.gi_frame.f_locals
    names = ("a", "b", "c", "d", "e", "f", "g", "h", "h2", "i", "j", "k", "t")
    for engine in ("c", "python") if _accel.ENGINE == "c" else ("python",):
        snap = Snapshotter()._with_engine(engine)
        blob = snap.dumps(original)
        for _ in range(3):  # cold, then warm (load_root's path on the C engine)
            restored = snap.loads(blob)
            got = restored.gi_frame.f_locals
            assert {n: got[n] for n in names} == {n: want[n] for n in names}
            again = next(restored)
            assert again == want["again"]
            for index, n in enumerate(names):
                # a tuple is a value: equal, not necessarily the same object
                assert again[index] is got[n] or n == "t", (engine, n)
            assert again[-3] is got["e"]["k"] and again[-2] is got["f"][0]
            assert again[-1] is got["k"][0] and got["i"][0] is got["a"]
            assert len({id(got[n]) for n in names if n != "t"}) == len(names) - 1
            restored.close()


@needs_c
def test_a_frame_of_plain_values_makes_no_decoder_call() -> None:
    """The C restore takes a slot's list of scalars or small dict of scalars
    as it is: restoring a frame that holds only such values asks the decoder
    nothing, where a frame holding a list of lists does."""
    base: Any = corosnap.codec._engines.ENGINES["c"].Decoder

    class CountingDecoder(base):  # type: ignore[misc, valid-type]
        """The C engine's Decoder, counting the values handed to dec."""

        __slots__ = ()
        calls = 0

        def dec(self, v: Any) -> Any:
            CountingDecoder.calls += 1
            return super().dec(v)

    snap = Snapshotter()._with_engine("c")
    frames = snap._caches.frames_in
    for make, plain in ((only_plain_values, True), (refs_tuples_and_iterators, True),
                        (one_nested_list, False)):
        g = make()
        next(g)
        blob = snap.dumps(g)
        want = next(g)
        _warm(snap, blob)
        frames.decoder = CountingDecoder
        CountingDecoder.calls = 0
        try:
            restored = _load_root(snap)(blob)
            assert type(restored).__name__ == "generator"
            assert next(restored) == want
        finally:
            frames.decoder = base
        assert (CountingDecoder.calls == 0) is plain, (make.__name__, CountingDecoder.calls)


_FOREIGN_AFTER = """
import corosnap
from corosnap.codec._engines import ENGINES

class Other:
    __slots__ = tuple(f"s{i}" for i in range(4000))

def g():
    x = {1, 2}  # a set: the restore makes a Decoder
    yield x

gen = g()
next(gen)
blob = corosnap.dumps(gen)
corosnap.loads(blob).close()  # the fast read of Decoder.after is set up
ENGINES["c"].Decoder.after = Other.__dict__["s21"]  # a slot far past a Decoder's end
try:
    corosnap.loads(blob)
except corosnap.CorosnapError as exc:
    print(type(exc).__name__, exc)
"""


@needs_c
def test_a_foreign_slot_assigned_as_the_decoders_after_is_refused_as_getattr_refuses() -> None:
    """The C restore reads Decoder.after at its slot's offset only for a slot
    of the Decoder's own layout: another class's slot assigned to the class
    is getattr's, which refuses it (reading at that offset read past the
    object's end and crashed)."""
    proc = subprocess.run([sys.executable, "-c", _FOREIGN_AFTER], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert proc.stdout.startswith("CorruptSnapshot") and "doesn't apply" in proc.stdout, proc.stdout


@needs_c
def test_a_decoder_dec_replaced_after_first_use_is_called() -> None:
    """The C restore calls the C engine's Decoder.dec directly only while the
    class is unchanged: a dec replaced on the class (a spy) is called."""
    cls = corosnap.codec._engines.ENGINES["c"].Decoder
    snap = Snapshotter()._with_engine("c")
    g = one_nested_list()
    next(g)
    blob = snap.dumps(g)
    want = next(g)
    _warm(snap, blob)  # the direct call is set up by now
    attribute = cls.__dict__["dec"]  # the C function, as an instance method
    original = cls.dec
    seen: list[Any] = []

    def spy(self: Any, v: Any) -> Any:
        seen.append(v)
        return original(self, v)

    cls.dec = spy
    try:
        restored = _load_root(snap)(blob)
        assert next(restored) == want
    finally:
        cls.dec = attribute
    assert seen == [[[1, 2]]]
    seen.clear()
    assert next(_load_root(snap)(blob)) == want and seen == []  # direct again


@needs_c
def test_a_fingerprint_with_the_hash_of_a_kept_one_is_told_apart() -> None:
    """The C restore keeps the code keys it met, in a slot picked by their
    fingerprint's hash: a blob whose fingerprint has the same hash as a kept
    key's (it differs by 2**61 - 1) but names the same function is refused
    as the Python engine refuses it, not restored with the kept code."""
    g = counter(20)
    next(g)
    blob = corosnap.dumps(g)
    for _ in range(3):  # found by the Python engine, then kept by the C one
        corosnap.loads(blob).close()
    tree = msgpack.unpackb(blob, strict_map_key=False)
    fp, m = tree[3], 2**61 - 1
    tree[3] = fp - m if fp >= m else fp + m
    assert hash(tree[3]) == hash(fp) and tree[3] != fp
    forged = msgpack.packb(tree)
    general = Snapshotter()._with_engine("python")
    with pytest.raises(corosnap.CodeMismatch) as python_error:
        general.loads(forged)
    for _ in range(2):
        with pytest.raises(corosnap.CodeMismatch) as c_error:
            corosnap.loads(forged)
        assert str(c_error.value) == str(python_error.value)
    restored = corosnap.loads(blob)  # the kept key still finds its code
    assert next(restored) == 1


def _decoders() -> list[Any]:
    """The C engine's Decoders alive now (found as a test finds them: the
    collector's list)."""
    gc.collect()
    return _alive_decoders()


def _alive_decoders() -> list[Any]:
    cls = corosnap.snapshot._api.default()._caches.frames_in.decoder
    return [o for o in gc.get_objects() if type(o) is cls]


def _decoding() -> list[Any]:
    """The Decoders decoding now (their state set), found from a reduce."""
    return [o for o in _alive_decoders() if o.cstate is not None]


def _tuple_holder() -> Iterator[Any]:
    return holds((Payload(5), "a tuple needs the value decoder"))


@needs_c
def test_the_decoder_of_one_loads_is_kept_empty_for_the_next() -> None:
    """A loads whose frame holds a tuple makes a Decoder; once done, the
    codec keeps it for the next loads, holding nothing of the last one."""
    g = _tuple_holder()
    next(g)
    blob = corosnap.dumps(g)
    _warm(corosnap.snapshot._api.default(), blob)
    restored = corosnap.loads(blob)
    next(restored)
    value = restored.gi_frame.f_locals["kept"]
    ref = weakref.ref(value[0])
    del value
    restored.close()
    del restored
    kept = _decoders()
    assert len(kept) == 1
    dec = kept[0]
    assert ref() is None  # the kept Decoder holds no value of that loads
    for name in ("memo", "strings", "codes", "active", "exceptions", "shapes", "depth",
                 "cstate", "frames", "safe", "allow", "buffers", "walk_budget", "migration"):
        assert getattr(dec, name) is None, name
    for name in ("pinned", "after", "follows", "building", "settled", "follower_types"):
        assert len(getattr(dec, name)) == 0, name
    del kept, dec
    g = holds((DecoderId(), "which Decoder decodes this"))
    next(g)
    blob = corosnap.dumps(g)
    _warm(corosnap.snapshot._api.default(), blob)
    for _ in range(3):  # used again, and kept again
        kept_id = [id(d) for d in _decoders()]
        assert len(kept_id) == 1
        _DECODING.clear()
        again = corosnap.loads(blob)
        assert _DECODING == kept_id  # the kept one (alive until now: its id is its own)
        again.close()
        del again
    assert len(_decoders()) == 1


_DECODING: list[int] = []  # the ids of the Decoders decoding when DecoderId was restored


def _decoder_id() -> str:
    _DECODING.extend(id(o) for o in _decoding())
    return "seen"


class DecoderId:
    def __reduce__(self) -> Any:
        return (_decoder_id, ())


@needs_c
def test_a_decoder_held_elsewhere_is_not_used_again() -> None:
    """A Decoder something else holds (here: found through the collector
    while it decodes, by a reduce) is left alone: the next loads makes its
    own, and the held one keeps what it had.  A kept Decoder whose tables
    something filled while it waited is not used either."""
    g = holds((GrabDecoder(), "x"))
    next(g)
    blob = corosnap.dumps(g)
    _warm(corosnap.snapshot._api.default(), blob)
    _HELD.clear()
    first = corosnap.loads(blob)
    assert len(_HELD) == 1
    grabbed = _HELD[0]
    assert grabbed.memo is not None  # not emptied: it was not the codec's to keep
    second = corosnap.loads(blob)
    assert len(_HELD) == 2 and _HELD[1] is not grabbed
    assert next(first)[0] == next(second)[0] == "grabbed"
    first.close()
    second.close()
    _HELD.clear()
    del grabbed
    # now one Decoder is kept; something finds it and fills a table
    g = _tuple_holder()
    next(g)
    plain = corosnap.dumps(g)
    _warm(corosnap.snapshot._api.default(), plain)
    spare = _decoders()
    assert len(spare) == 1
    spare[0].pinned.append(Payload(9))
    del spare
    third = corosnap.loads(blob)
    assert next(third)[0] == "grabbed"
    assert len(_HELD) == 1 and _PINNED_SEEN[-1] == []  # a fresh Decoder: nothing pinned yet
    third.close()
    _HELD.clear()


_HELD: list[Any] = []
_PINNED_SEEN: list[list[Any]] = []  # what the Decoder _grab found had pinned then


def _grab() -> str:
    found = [o for o in _decoding() if all(o is not h for h in _HELD)]
    _PINNED_SEEN.extend(list(o.pinned) for o in found)
    _HELD.extend(found)
    return "grabbed"


class GrabDecoder:
    def __reduce__(self) -> Any:
        return (_grab, ())


@needs_c
def test_a_kept_decoder_holds_no_large_table() -> None:
    """The kept Decoder's tables go back to their smallest size: a loads of
    100,000 slices (one `depth` entry each, a table of megabytes) leaves no
    such table behind for the next loads."""
    import tracemalloc

    g = holds([slice(i, i + 1) for i in range(100_000)])
    next(g)
    blob = corosnap.dumps(g)
    g.close()
    tracemalloc.start()  # before the first loads: whatever it keeps is traced
    try:
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(2):  # found by the Python engine, then restored in C
            restored = corosnap.loads(blob)
            restored.close()
            del restored
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(_decoders()) == 1  # kept
    assert after - before < 256 * 1024, f"{(after - before) // 1024} KiB still held"


@needs_c
def test_a_kept_decoder_found_and_held_is_not_used() -> None:
    """Something that found the kept Decoder (gc.get_objects) and holds it
    while the next loads runs: that loads makes a Decoder of its own."""
    g = holds((DecoderId(), "which Decoder decodes this"))
    next(g)
    blob = corosnap.dumps(g)
    _warm(corosnap.snapshot._api.default(), blob)
    held = _decoders()
    assert len(held) == 1
    _DECODING.clear()
    restored = corosnap.loads(blob)
    assert len(_DECODING) == 1 and _DECODING[0] != id(held[0])
    assert held[0].memo is None  # untouched while held
    restored.close()


class Refill:
    """Its finalizer appends a value to every RestoreState's memo: run while
    the kept state is emptied after a failed loads."""

    def __reduce__(self) -> Any:
        return (Refill, ())

    def __del__(self) -> None:
        for o in gc.get_objects():
            if type(o) is _contract.RestoreState:
                p = Payload(0)
                _REFILLED.append(weakref.ref(p))
                o.memo.append(p)


_REFILLED: list[Any] = []
_FAIL = [False]


def _maybe_fail() -> int:
    if _FAIL[0]:
        raise ValueError("refused on purpose")
    return 0


class FailLater:
    def __reduce__(self) -> Any:
        return (_maybe_fail, ())


@needs_c
def test_values_added_to_a_table_while_it_is_emptied_are_released() -> None:
    """A finalizer run while the kept state's tables are emptied (after a
    loads that failed) fills one again: what it added is released, not
    kept with a buffer the list no longer owns."""
    g = holds((Refill(), FailLater()))
    next(g)
    blob = corosnap.dumps(g)
    g.close()
    for _ in range(3):
        corosnap.loads(blob).close()
    gc.collect()
    _REFILLED.clear()
    _FAIL[0] = True
    try:
        with pytest.raises(RestoreError):
            corosnap.loads(blob)
    finally:
        _FAIL[0] = False
    gc.collect()
    assert _REFILLED, "the finalizer did not run while the state was emptied"
    assert [r for r in _REFILLED if r() is not None] == []


class LoadsWhenFreed:
    """Its finalizer runs a whole loads: while a Decoder's tables are
    emptied (it was only there, a loads having failed after it)."""

    def __reduce__(self) -> Any:
        return (LoadsWhenFreed, ())

    def __del__(self) -> None:
        if _NESTED_BLOB:
            inner = corosnap.loads(_NESTED_BLOB[0])
            _NESTED_RESULTS.append(next(inner)[0].n)
            inner.close()


_NESTED_BLOB: list[bytes] = []
_NESTED_RESULTS: list[int] = []


@needs_c
def test_a_loads_run_while_a_decoder_is_emptied() -> None:
    g = holds((Payload(4), "tuple"))
    next(g)
    _NESTED_BLOB[:] = [corosnap.dumps(g)]
    h = holds(([LoadsWhenFreed(), (LoadsWhenFreed(),)], FailLater()))
    next(h)
    blob = corosnap.dumps(h)
    try:
        for _ in range(3):
            corosnap.loads(blob).close()
            corosnap.loads(_NESTED_BLOB[0]).close()
        _FAIL[0] = True
        for _ in range(5):
            _NESTED_RESULTS.clear()
            with pytest.raises(RestoreError):
                corosnap.loads(blob)
            gc.collect()
            assert _NESTED_RESULTS and set(_NESTED_RESULTS) == {4}
            restored = corosnap.loads(_NESTED_BLOB[0])  # the decoders left are sound
            assert next(restored)[0].n == 4
            restored.close()
    finally:
        _FAIL[0] = False
        _NESTED_BLOB.clear()
    assert len(_decoders()) <= 1
