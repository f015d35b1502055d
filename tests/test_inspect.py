"""corosnap.inspect / diff and the ``corosnap`` command: exact byte attribution,
names and kinds of slots, shared objects, damaged blobs, and that inspection
never imports, calls or unpickles anything a blob names."""

from __future__ import annotations

import gc
import importlib
import json
import os
import pickle
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from msgpack import ExtType

import corosnap
from _helpers import DILL_PICKLES_CODE  # tests/ is on sys.path (conftest)
from corosnap import CorruptSnapshot, SignatureError
from corosnap.cli import main
from corosnap.codec._decoder import Decoder, new_ext_hook
from corosnap.codec._tags import EXT_PICKLE, EXT_TAG, T_GLOBAL, T_REDUCE
from corosnap.inspection import Inspector, SnapshotInfo, render, render_diff
from corosnap.inspection import _msgpack as mp
from corosnap.inspection._code import CodeFinder
from corosnap.inspection._walk import Node, Walker
from corosnap.snapshot._api import default

ROOT = Path(__file__).resolve().parents[1]
MINOR = sys.version_info[1]
HEADER = ExtType(0x43, bytes([1 << 5 | MINOR]))


def _fuzz() -> Any:
    """The fuzzer (corpus builder and mutators), wherever it lives."""
    for name in ("corosnap_fuzz.fuzz", "corosnap.fuzz", "tools.fuzz", "fuzz"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise AssertionError("cannot find the fuzzer module (tools/corosnap_fuzz/fuzz.py)")


_corpus: list[Any] = []


def corpus() -> list[Any]:
    """Every blob of the construct zoo (each scenario at each suspension point;
    some signed with the fuzzer's key)."""
    if not _corpus:
        _corpus.extend(_fuzz().get_corpus().seeds)
    return _corpus


def key_for(name: str) -> bytes | None:
    return _fuzz().SIGN_KEY if name.endswith("/signed") else None


def check_attribution(info: SnapshotInfo) -> None:
    """The parts add up to the blob's size, at every level."""
    root = info.frames[0].bytes if info.frames else 0
    assert info.header_bytes + info.envelope_bytes + info.unread_bytes + root == info.size
    for f in info.frames:
        exc = f.exception.bytes if f.exception else 0
        assert f.bytes == f.overhead_bytes + exc + sum(s.bytes for s in f.slots), f
        assert f.overhead_bytes >= f.code_bytes >= 1
        for s in f.slots:
            assert s.bytes >= 1
            if s.frame is not None:
                assert info.frames[s.frame].bytes == s.bytes
                assert info.frames[s.frame].parent == f.index
    for c in info.contributors:
        assert 0 < c.bytes <= info.size


def sample_blobs() -> list[tuple[str, bytes]]:
    """Blobs of the core tests' samples, driven to interesting points."""
    import samples

    out = []

    def take(name: str, obj: Any, steps: int = 1, **kw: Any) -> None:
        for _ in range(steps):
            obj.send(None)
        out.append((name, corosnap.dumps(obj, **kw)))
        obj.close()

    take("job", samples.job([1, 2, 3]))
    take("counter", samples.counter(10), 3)
    take("chain", samples.chain(6))
    take("closure", samples.closure_gen())
    take("loops", samples.loops(), 4)
    take("cycles", samples.cycles())
    take("aliasing", samples.aliasing())
    take("self_referencing", samples.self_referencing())
    take("in_except", samples.in_except())
    take("unstarted", samples.unstarted(1), 0)
    take("holds_bytes", samples.holds(os.urandom(100_000)))
    take("holds_ints", samples.holds(list(range(5000))))
    take("holds_dicts", samples.holds([{"id": i, "name": f"n{i}"} for i in range(20)]))
    take("holds_lambda", samples.holds(lambda x: x + 1))
    take("holds_pickled", samples.holds(eval("lambda x: x + 1", {"__builtins__": {}})))  # noqa: S307
    take("holds_point", samples.holds(samples.Point(1, [2, 3])))
    take("coroutine_chain", samples.top(5))
    if DILL_PICKLES_CODE:
        take("dill", samples.holds(eval("lambda: 3", {"__builtins__": {}})), pickler="dill")  # noqa: S307
    take("signed", samples.counter(5), 2, key=b"k")
    return out


# -- exact attribution -----------------------------------------------------------


def test_attribution_is_exact_on_the_zoo() -> None:
    seeds = corpus()
    assert len(seeds) > 200
    unknown = 0
    for seed in seeds:
        info = corosnap.inspect(seed.blob, key=key_for(seed.name))
        check_attribution(info)
        assert info.frames, seed.name
        assert not [w for w in info.warnings if "not found" not in w], (seed.name, info.warnings)
        unknown += sum(s.kind == "unknown" for f in info.frames for s in f.slots)
    assert unknown == 0  # the zoo is imported here: every frame's code is found


def test_attribution_is_exact_on_the_samples() -> None:
    for name, blob in sample_blobs():
        info = corosnap.inspect(blob, key=b"k" if name == "signed" else None)
        check_attribution(info)
        assert info.size == len(blob)
        if name == "signed":
            assert info.signed and info.verified and info.envelope_bytes > 32


def test_attribution_is_exact_without_the_code() -> None:
    for seed in corpus()[::3]:
        info = corosnap.inspect(seed.blob, key=key_for(seed.name), find_code=False)
        check_attribution(info)
        for f in info.frames:
            assert f.code_found is None and f.line is None
            for s in f.slots:
                assert s.kind in ("unknown", "stack")
                assert s.name.startswith("#")


@pytest.mark.filterwarnings("ignore:coroutine .* was never awaited:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:Pickle, copy, and deepcopy:DeprecationWarning")  # 3.12/3.13
def test_memo_matches_the_decoder(monkeypatch: Any) -> None:
    """The walker registers exactly the objects the decoder does, in its order,
    so shared objects and back-references point at the right thing."""
    monkeypatch.setattr(sys, "unraisablehook", lambda _: None)  # zoo generators on close
    for seed in corpus():
        if seed.name.endswith("/signed"):
            continue
        tree = msgpack.unpackb(seed.blob, strict_map_key=False, ext_hook=new_ext_hook())
        frames = default()._caches.frames_in  # frames.decode: the Python engine
        dec = Decoder(frames)
        gen = frames.decode(dec, tree, 1, root=True)
        walker = Walker(seed.blob, MINOR, CodeFinder(MINOR, True, False, ()))
        _, count, pos, _ = mp.head(seed.blob, 0)
        walker.root(mp.head(seed.blob, pos)[3], count - 1, Node(0, "", None, ""))
        assert len(walker.memo) == len(dec.memo), seed.name
        for node, obj in zip(walker.memo, dec.memo, strict=True):
            name = type(obj).__name__
            if node.type not in ("global", "method"):
                # the walker names classes by module.qualname, and a few
                # iterators by what they walk; the decoded type ends the same
                assert node.type.split(".")[-1] == name or node.type.startswith(
                    name.replace("long", "")[:5]) or name == "callable_iterator", (
                    seed.name, node.type, name)
        dec.cstate = None  # made if a sub-frame went to the C engine; it refers back to dec
        try:
            gen.close()
        except BaseException:  # noqa: BLE001, S110 - zoo generators complaining on close
            pass
        del gen, dec
    gc.collect()


# -- what is shown ---------------------------------------------------------------


def _workload(name: str) -> Any:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import workloads
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return workloads.BY_NAME[name].make()


def test_checkout_names_every_slot() -> None:
    blob = corosnap.dumps(_workload("checkout"))
    info = corosnap.inspect(blob)
    assert [f.qualname for f in info.frames] == [
        "checkout", "price_order", "fetch_price", "Request.__await__"]
    assert [f.via for f in info.frames] == ["root", "delegate", "delegate", "delegate"]
    assert [f.parent for f in info.frames] == [None, 0, 1, 2]
    assert all(f.code_found == "loaded" for f in info.frames)
    assert all(re.fullmatch(r"[0-9a-f]{16}", f.fingerprint) for f in info.frames)
    root = info.frames[0]
    assert root.type == "coroutine" and root.source == "total = await price_order(items)"
    slots = {s.name: s for s in root.slots}
    assert slots["customer"].type == "str" and slots["customer"].summary == "'alice'"
    assert slots["customer"].bytes == 6 and slots["customer"].kind == "local"
    assert slots["items"].type == "list" and slots["items"].bytes == 1 + 6 + 5 + 4 + 5
    assert slots["total"].type == "<empty>" and slots["total"].summary == "unbound"
    stack = [s for s in root.slots if s.kind == "stack"]
    assert stack[-1 if MINOR < 15 else -2].frame == 1
    await_frame = info.frames[3]
    assert await_frame.type == "generator"
    assert {s.name: s.type for s in await_frame.slots}["self"] == "workloads.Request"
    # the item list is stored once and referred to from price_order
    shared = {s.id: s for s in info.shared}
    items = [s for s in shared.values() if s.type == "list"][0]
    assert items.first is not None and items.first.frame == 0 and items.first.slot == "items"
    assert any(loc.frame == 1 and loc.slot == "items" for loc in items.referenced_from)
    assert items.refs >= 1 and items.bytes == slots["items"].bytes
    # without the code: the same frames (the awaited sub-frames recognised by
    # place and shape), the same bytes, slots by position
    bare = corosnap.inspect(blob, find_code=False)
    assert [(f.qualname, f.bytes, f.parent) for f in bare.frames] == [
        (f.qualname, f.bytes, f.parent) for f in info.frames]
    assert [len(f.slots) for f in bare.frames] == [len(f.slots) for f in info.frames]
    assert [(s.id, s.type, s.bytes, s.refs) for s in bare.shared] == [
        (s.id, s.type, s.bytes, s.refs) for s in info.shared]


def test_async_generators_and_their_awaitables_are_shown() -> None:
    import agen_samples as ags

    ag = ags.ticker(3)
    step = ag.__anext__()
    step.send(None)
    with pytest.raises(StopIteration):
        step.send(1)  # the generator is now suspended at its yield
    info = corosnap.inspect(corosnap.dumps(ag))
    check_attribution(info)
    assert info.frames[0].type == "async_generator" and info.frames[0].offset >= 0

    co = ags.consume(3)
    co.send(None)
    blob = corosnap.dumps(co)
    info = corosnap.inspect(blob)
    check_attribution(info)
    assert [(f.qualname, f.type, f.via) for f in info.frames] == [
        ("consume", "coroutine", "root"),
        ("ticker", "async_generator", "value"),
        ("Val.__await__", "generator", "delegate")]
    by_type = {s.type: s for s in info.frames[0].slots if s.kind == "stack"}
    assert by_type["async_generator"].summary == "frame #1, in flight"
    assert by_type["async_generator_asend"].summary == "in flight, of shared #2"

    g = ags.yield_from_wrapper()
    g.send(None)
    info = corosnap.inspect(corosnap.dumps(g))
    check_attribution(info)
    (wrapper,) = [s for s in info.frames[0].slots if s.type == "coroutine_wrapper"]
    assert wrapper.summary == "of frame #1" and info.frames[1].type == "coroutine"
    for x in (co, g):
        x.close()


def test_largest_values_name_the_big_local() -> None:
    import samples

    gen = samples.holds({"payload": b"x" * 50_000, "small": [1, 2]})
    next(gen)
    info = corosnap.inspect(corosnap.dumps(gen))
    top = info.contributors[0]
    assert top.type == "bytes" and top.location.path == "['payload']"
    assert top.bytes == 3 + 50_000 and top.share > 0.9  # bin16 header + payload
    gen.close()


def test_cells_stack_roles_and_handled_exception() -> None:
    for seed in corpus():
        if seed.name == "closure_counter@1":
            info = corosnap.inspect(seed.blob)
            assert "cell" in {s.kind for f in info.frames for s in f.slots}
        if seed.name == "in_except@1":
            info = corosnap.inspect(seed.blob)
            exc = info.frames[0].exception
            assert exc is not None and exc.bytes > 0 and "Error" in exc.type
        if seed.name == "loop_range@1":
            info = corosnap.inspect(seed.blob)
            roles = [s.role for s in info.frames[0].slots if s.kind == "stack"]
            assert "an iterator" in roles


def test_fallback_pickler_is_reported_not_run() -> None:
    import samples

    # (dill cannot pickle code on CPython 3.15: tests/_helpers.py)
    for pickler in ("cloudpickle", "dill") if DILL_PICKLES_CODE else ("cloudpickle",):
        # a function with no module: no name to store it by, so it is pickled
        gen = samples.holds(eval("lambda x: x", {"__builtins__": {}}))  # noqa: S307
        next(gen)
        info = corosnap.inspect(corosnap.dumps(gen, pickler=pickler))
        assert info.picklers == {pickler: 1}
        value = info.frames[0].slots[0]
        assert value.type == "function" and value.summary == f"pickled by {pickler}"
        gen.close()


def test_signed_blob_shows_its_header_without_the_key() -> None:
    import samples

    gen = samples.counter(5)
    next(gen)
    blob = corosnap.dumps(gen, key=b"secret")
    info = corosnap.inspect(blob)
    assert info.signed and info.verified is False and info.frames == []
    assert info.header_bytes + info.envelope_bytes + info.unread_bytes == len(blob)
    assert info.python == f"3.{MINOR}" and info.format_version == 1
    verified = corosnap.inspect(blob, key=b"secret")
    assert verified.verified and verified.frames[0].qualname == "counter"
    check_attribution(verified)
    with pytest.raises(SignatureError):
        corosnap.inspect(blob, key=b"wrong")
    with pytest.raises(SignatureError):
        corosnap.inspect(corosnap.dumps(gen), key=b"secret")
    gen.close()


def test_unknown_tags_and_exts_are_shown_not_refused() -> None:
    import samples

    gen = samples.holds(1)
    next(gen)
    tree = msgpack.unpackb(corosnap.dumps(gen), strict_map_key=False)
    gen.close()
    i = tree.index(1, 5)  # the slot holding the value
    tree[i] = [ExtType(EXT_TAG, bytes([99])), "a", [1, 2], ExtType(42, b"xyz")]
    blob = msgpack.packb(tree, use_bin_type=True)
    info = corosnap.inspect(blob)
    check_attribution(info)
    slot = info.frames[0].slots[0]
    assert slot.type == "unknown tag 99" and slot.bytes == len(msgpack.packb(tree[i]))
    assert any("does not know" in w for w in info.warnings)
    assert "unknown tag 99" in render(info)


def test_blob_of_another_version_is_read_by_position() -> None:
    import samples

    gen = samples.chain(3)
    next(gen)
    blob = bytearray(corosnap.dumps(gen))
    gen.close()
    other = 12 if MINOR != 12 else 13
    blob[3] = 1 << 5 | other  # the header's payload byte (after 0x98 0xd4 0x43)
    info = corosnap.inspect(bytes(blob))
    check_attribution(info)
    assert info.python == f"3.{other}"
    assert any(f"CPython 3.{other}" in w for w in info.warnings)
    assert all(f.code_found is None for f in info.frames)


def test_source_is_found_without_importing(tmp_path: Path, monkeypatch: Any) -> None:
    """Code is read from the source file, which is compiled and not run; only
    ``resolve=True`` imports the module."""
    canary = tmp_path / "canary.txt"
    pkg = tmp_path / "inspectpkg"
    pkg.mkdir()
    for path in (pkg / "__init__.py", pkg / "jobs.py"):
        path.write_text(textwrap.dedent(f"""
            open({str(canary)!r}, "a").write("{path.name} ran\\n")

            def work(n):
                total = 0
                for i in range(n):
                    total += yield i
            """))
    monkeypatch.syspath_prepend(str(tmp_path))
    import inspectpkg.jobs

    gen = inspectpkg.jobs.work(5)
    next(gen)
    gen.send(10)
    blob = corosnap.dumps(gen)
    gen.close()
    for name in ("inspectpkg.jobs", "inspectpkg"):
        del sys.modules[name]
    canary.unlink()

    info = corosnap.inspect(blob)
    assert not canary.exists() and "inspectpkg" not in sys.modules
    frame = info.frames[0]
    assert frame.code_found == "source"
    assert [(s.name, s.kind) for s in frame.slots[:3]] == [
        ("n", "local"), ("total", "local"), ("i", "local")]
    stack = frame.slots[3:]  # the range iterator, and the total ``+=`` adds to
    assert [(s.name, s.kind) for s in stack] == [(f"stack[{j}]", "stack")
                                                 for j in range(len(stack))]
    assert stack[0].type == "range_iterator" and stack[0].role == "an iterator"
    assert frame.source == "total += yield i" and frame.line == 7

    bare = corosnap.inspect(blob, find_code=False)
    assert [s.name for s in bare.frames[0].slots] == [f"#{j}" for j in range(3 + len(stack))]
    assert not canary.exists()

    # resolve=True imports only what cannot be found otherwise: here, code
    # made at import time (exec), which the source file does not show.
    (pkg / "dyn.py").write_text(textwrap.dedent(f"""
        open({str(canary)!r}, "a").write("dyn ran\\n")
        exec("def work(n):\\n    got = yield n\\n")
        """))
    import inspectpkg.dyn

    gen = inspectpkg.dyn.work(5)  # type: ignore[attr-defined]
    next(gen)
    blob = corosnap.dumps(gen)
    gen.close()
    for name in ("inspectpkg.dyn", "inspectpkg"):
        del sys.modules[name]
    canary.unlink()
    static = corosnap.inspect(blob)
    assert static.frames[0].code_found is None and not canary.exists()
    assert any("has no function 'work'" in w for w in static.warnings)
    imported = corosnap.inspect(blob, resolve=True)
    assert imported.frames[0].code_found == "import"
    assert [s.name for s in imported.frames[0].slots] == ["n", "got"]
    assert canary.exists() and "inspectpkg.dyn" in sys.modules
    for name in ("inspectpkg.dyn", "inspectpkg"):
        sys.modules.pop(name, None)


def test_loaded_code_is_found_without_running_attribute_hooks(tmp_path: Path,
                                                               monkeypatch: Any) -> None:
    """An imported module's classes are read through their __dict__: a
    metaclass ``__getattribute__`` or a module ``__getattr__`` never runs."""
    (tmp_path / "inspect_hooks.py").write_text(textwrap.dedent("""
        HOSTILE = False
        CALLS = []

        class Meta(type):
            def __getattribute__(cls, name):
                if HOSTILE:
                    CALLS.append(name)
                return super().__getattribute__(name)

        class Service(metaclass=Meta):
            def run(self, n):
                got = yield n

        def __getattr__(name):
            CALLS.append(name)
            raise AttributeError(name)
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    import inspect_hooks

    gen = inspect_hooks.Service().run(3)
    next(gen)
    blob = corosnap.dumps(gen)
    gen.close()
    inspect_hooks.HOSTILE = True
    try:
        info = corosnap.inspect(blob)
    finally:
        inspect_hooks.HOSTILE = False
        del sys.modules["inspect_hooks"]
    assert info.frames[0].code_found == "loaded"
    assert [s.name for s in info.frames[0].slots] == ["self", "n", "got"]
    assert inspect_hooks.CALLS == []


def test_changed_code_is_reported(tmp_path: Path, monkeypatch: Any) -> None:
    mod = tmp_path / "inspect_changed.py"
    mod.write_text("def g(n):\n    yield n\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import inspect_changed

    gen = inspect_changed.g(1)
    blob = corosnap.dumps(gen)
    del sys.modules["inspect_changed"]
    mod.write_text("def g(n):\n    yield n + 1\n")
    info = corosnap.inspect(blob)
    assert info.frames[0].code_found is None
    assert any("changed since the snapshot" in w for w in info.warnings)


def test_nothing_in_the_blob_is_called_or_unpickled(tmp_path: Path) -> None:
    """A reduce callable and a pickled payload that would create a file are
    named, not run (loads, for contrast, runs them)."""
    import samples

    target = tmp_path / "created"

    class Opener:
        def __reduce__(self) -> Any:
            return (open, (str(target), "w"))

    gen = samples.holds(1)
    next(gen)
    tree = msgpack.unpackb(corosnap.dumps(gen), strict_map_key=False)
    gen.close()
    i = tree.index(1, 5)
    reduce = [ExtType(EXT_TAG, bytes([T_REDUCE])),
              [ExtType(EXT_TAG, bytes([T_GLOBAL])), "builtins", "open"], [str(target), "w"]]
    pickled = ExtType(EXT_PICKLE, b"\x01" + pickle.dumps(Opener(), protocol=5))
    # (open is io.open, or _io.open from CPython 3.14)
    for value, expected in ((reduce, "open"), (pickled, f"{open.__module__}.open")):
        tree[i] = value
        blob = msgpack.packb(tree, use_bin_type=True)
        info = corosnap.inspect(blob)
        assert info.frames[0].slots[0].type == expected
        assert not target.exists()
        loaded = corosnap.loads(blob)  # the blob is live: loads opens the file
        assert target.exists()
        target.unlink()
        loaded.close()


def test_to_dict_round_trips() -> None:
    blob = corosnap.dumps(_workload("checkout"))
    info = corosnap.inspect(blob)
    d = json.loads(info.to_json())
    assert SnapshotInfo.from_dict(d) == info
    assert SnapshotInfo.from_dict(d).to_dict() == d


# -- JSON schema -----------------------------------------------------------------


def _schemas() -> dict[str, Any]:
    """The JSON schemas docs/inspect.md documents (fenced blocks after a
    ``<!-- schema: NAME -->`` marker)."""
    text = (ROOT / "docs" / "inspect.md").read_text()
    found = re.findall(r"<!-- schema: (\w+) -->\s*```json\n(.*?)```", text, re.S)
    return {name: json.loads(body) for name, body in found}


def test_json_output_follows_the_documented_schema() -> None:
    import fastjsonschema

    schemas = _schemas()
    assert set(schemas) == {"inspect", "diff"}
    validate = fastjsonschema.compile(schemas["inspect"])
    blobs = [(s.blob, key_for(s.name)) for s in corpus()[::5]]
    blobs += [(blob, b"k" if name == "signed" else None) for name, blob in sample_blobs()]
    for blob, key in blobs:
        d = corosnap.inspect(blob, key=key).to_dict()
        validate(d)
        for frame in d["frames"]:
            for slot in frame["slots"]:
                assert set(slot) >= {"name", "kind", "type", "bytes"}
    validate(corosnap.inspect(blobs[0][0], find_code=False).to_dict())
    validate(corosnap.inspect(sample_blobs()[-1][1]).to_dict())  # signed, no key
    validate_diff = fastjsonschema.compile(schemas["diff"])
    validate_diff(corosnap.diff(blobs[0][0], blobs[1][0]).to_dict())
    # the schema does reject a wrong shape
    bad = corosnap.inspect(blobs[0][0]).to_dict()
    bad["frames"][0]["slots"][0]["kind"] = "register"
    with pytest.raises(fastjsonschema.JsonSchemaException):
        validate(bad)


# -- diff ------------------------------------------------------------------------


def test_diff_finds_the_slot_that_grew() -> None:
    import samples

    small, big = samples.holds(list(range(10))), samples.holds(list(range(1000)))
    next(small)
    next(big)
    d = corosnap.diff(corosnap.dumps(small), corosnap.dumps(big))
    small.close()
    big.close()
    assert d.delta == d.size_b - d.size_a > 0
    (frame,) = d.frames
    assert frame.status == "grown" and frame.delta == d.delta
    changed = [s for s in frame.slots if s.status != "same"]
    assert [s.name for s in changed] == ["value"]
    assert changed[0].delta == d.delta
    assert d.changed()[0][0] is frame
    text = render_diff(d)
    assert "value (local, list)" in text and f"{d.delta:+,}" in text


def test_diff_of_deeper_chain_shows_added_frames() -> None:
    import samples

    a, b = samples.chain(2), samples.chain(4)
    next(a)
    next(b)
    d = corosnap.diff(corosnap.dumps(a), corosnap.dumps(b))
    a.close()
    b.close()
    # frames match by their place in the tree: A's sub() (4th frame) has no
    # counterpart at that place in B, which has two more chain() frames and
    # its sub() two levels deeper
    assert [(f.qualname, f.status) for f in d.frames] == [
        ("chain", "grown"), ("chain", "grown"), ("chain", "grown"), ("sub", "removed"),
        ("chain", "added"), ("chain", "added"), ("sub", "added")]
    assert d.frames[0].delta == d.delta


# -- damaged blobs ---------------------------------------------------------------


def test_truncated_and_garbled_blobs_are_refused_cleanly() -> None:
    blob = corosnap.dumps(_workload("checkout"))
    for n in range(len(blob)):
        with pytest.raises(CorruptSnapshot):
            corosnap.inspect(blob[:n])
    with pytest.raises(CorruptSnapshot):
        corosnap.inspect(blob + b"\x00")
    with pytest.raises(CorruptSnapshot, match="no header"):
        corosnap.inspect(msgpack.packb([1, 2, 3]))
    with pytest.raises(CorruptSnapshot, match="format version"):
        corosnap.inspect(bytes([blob[0], 0xD4, 0x43, 2 << 5 | MINOR]) + blob[4:])
    for i in range(len(blob)):
        for flip in (0x01, 0x80, 0xFF):
            damaged = bytearray(blob)
            damaged[i] ^= flip
            try:
                info = corosnap.inspect(bytes(damaged))
            except CorruptSnapshot:
                continue
            check_attribution(info)
            render(info)


def test_bytes_line_of_a_large_unverified_signed_blob_fits_the_width() -> None:
    # A signed blob of a megabyte read without its key: header, envelope and the
    # unread body do not fit one 80-column line with the total.
    from corosnap_fuzz import zoo

    g = zoo.holds(b"x" * 1_000_000)
    next(g)
    info = Inspector().inspect(corosnap.dumps(g, key=b"k" * 32))
    text = render(info)
    assert all(len(line) <= 80 for line in text.splitlines()), text
    assert "body (not read)" in text and f"= {info.size:,}" in text


def _fuzz_one(data: bytes) -> None:
    try:
        info = Inspector().inspect(data)
    except CorruptSnapshot:
        return
    check_attribution(info)
    for line in render(info).splitlines():
        assert len(line) <= 80, line
    json.dumps(info.to_dict())


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.integers(0, 10**9), st.integers(0, 10**6))
def test_fuzz_inspector_on_mutated_blobs(seed: int, index: int) -> None:
    """The fuzzer's mutators (byte flips, truncation, splices, structural
    changes of the msgpack tree): inspect reads or refuses, nothing else."""
    fuzz = _fuzz()
    _fuzz_one(fuzz.make_input(seed, index, fuzz.get_corpus()).data)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_fuzz_inspector_on_generated_blobs(data: Any) -> None:
    blob = data.draw(_fuzz().blob_strategy())
    _fuzz_one(blob)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.integers(0, 299), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)),
                                     max_size=4), st.binary(max_size=8))
def test_fuzz_inspector_on_random_bytes(which: int, edits: list[tuple[int, int]],
                                        tail: bytes) -> None:
    seeds = corpus()
    blob = bytearray(seeds[which % len(seeds)].blob)
    for at, value in edits:
        blob[at % len(blob)] = value
    _fuzz_one(bytes(blob) + tail)


@settings(max_examples=300, deadline=None)
@given(st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats()
    | st.text(max_size=300) | st.binary(max_size=70000)
    | st.builds(ExtType, st.integers(0, 127), st.binary(max_size=300)),
    lambda c: st.lists(c, max_size=20) | st.dictionaries(st.text(max_size=4), c, max_size=20),
    max_leaves=40))
def test_msgpack_walker_agrees_with_msgpack(value: Any) -> None:
    """skip() ends where msgpack's parser ends; scalars decode the same."""
    buf = msgpack.packb(value, use_bin_type=True)
    assert mp.skip(buf, 0) == len(buf)
    if not isinstance(value, list | dict | ExtType):
        decoded, end = mp.scalar(buf, 0)
        assert end == len(buf)
        assert decoded == value or (decoded != decoded and value != value)


def test_msgpack_walker_edges() -> None:
    assert mp.head(b"\xd4\xff\x00", 0) == (mp.EXT, -1, 2, 3)  # ext types are signed
    assert mp.head(b"\xc7\x00\x05", 0) == (mp.EXT, 5, 3, 3)  # ext 8, empty payload
    for bad in (b"\xc1", b"\xdc\x00", b"\xd9\x05ab", b"\xc9\x00\x00\x00\x09\x01"):
        with pytest.raises(mp.Malformed):
            mp.skip(bad, 0)


# -- the command line ------------------------------------------------------------


def _run(*args: str, stdin: bytes | None = None, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "corosnap", *args], input=stdin,
                          capture_output=True, timeout=120, cwd=ROOT,
                          env={**os.environ, **(env or {})})


def test_cli_inspect_text_json_and_stdin(tmp_path: Path) -> None:
    blob = corosnap.dumps(_workload("checkout"))
    path = tmp_path / "checkout.blob"
    path.write_bytes(blob)
    text = _run("inspect", str(path), "--path", "benchmarks")
    assert text.returncode == 0, text.stderr
    out = text.stdout.decode()
    assert "workloads.checkout (coroutine, offset" in out
    assert "total = await price_order(items)" in out
    assert all(len(line) <= 80 for line in out.splitlines())
    js = _run("inspect", "-", "--json", "--path", "benchmarks", stdin=blob)
    assert js.returncode == 0, js.stderr
    d = json.loads(js.stdout)
    assert d["size"] == len(blob) and d["signed"] is False
    assert [f["qualname"] for f in d["frames"]][0] == "checkout"
    assert d["frames"][0]["code_found"] == "source"
    bare = json.loads(_run("inspect", str(path), "--json", "--no-code").stdout)
    assert bare["frames"][0]["slots"][0]["name"] == "#0"


def test_cli_damaged_blob_exits_2_without_traceback(tmp_path: Path) -> None:
    blob = corosnap.dumps(_workload("checkout"))
    path = tmp_path / "bad.blob"
    for damaged in (blob[:-5], b"", b"\xc1", blob[:40] + b"\xff" * 10):
        path.write_bytes(damaged)
        r = _run("inspect", str(path))
        assert r.returncode == 2
        err = r.stderr.decode()
        assert err.startswith("corosnap inspect: error: ") and "Traceback" not in err
        assert err.count("\n") == 1
    r = _run("inspect", str(tmp_path / "missing.blob"))
    assert r.returncode == 2 and "cannot read" in r.stderr.decode()


def test_cli_signed_blob(tmp_path: Path) -> None:
    import samples

    gen = samples.counter(5)
    next(gen)
    path = tmp_path / "signed.blob"
    path.write_bytes(corosnap.dumps(gen, key=b"s3cret"))
    gen.close()
    r = _run("inspect", str(path))
    assert r.returncode == 0 and "signed" in r.stdout.decode()
    assert "frames, outermost first" not in r.stdout.decode()
    ok = _run("inspect", str(path), "--key-env", "COROSNAP_TEST_KEY",
              env={"COROSNAP_TEST_KEY": "s3cret"})
    assert ok.returncode == 0 and "signature verified" in ok.stdout.decode()
    assert "samples.counter" in ok.stdout.decode()
    bad = _run("inspect", str(path), "--key", "nope")
    assert bad.returncode == 2 and "signature does not match" in bad.stderr.decode()


def test_cli_diff(tmp_path: Path, capsys: Any) -> None:
    import samples

    paths = []
    for n in (10, 500):
        gen = samples.holds(list(range(n)))
        next(gen)
        paths.append(tmp_path / f"{n}.blob")
        paths[-1].write_bytes(corosnap.dumps(gen))
        gen.close()
    assert main(["diff", str(paths[0]), str(paths[1])]) == 0
    out = capsys.readouterr().out
    assert "value (local, list)" in out and "samples.holds" in out
    assert main(["diff", str(paths[0]), str(paths[1]), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["delta"] > 0 and d["frames"][0]["slots"][0]["status"] == "grown"
    # an inspect --json output can stand for a blob
    js = tmp_path / "a.json"
    assert main(["inspect", str(paths[0]), "--json"]) == 0
    js.write_text(capsys.readouterr().out)
    assert main(["diff", str(js), str(paths[1]), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["delta"] == d["delta"]


def test_cli_usage() -> None:
    r = _run()
    assert r.returncode == 2 and b"inspect" in r.stderr and b"diff" in r.stderr
    r = _run("--help")
    assert r.returncode == 0 and b"inspect" in r.stdout
    r = _run("inspect", "--help")
    assert r.returncode == 0 and b"--resolve" in r.stdout


def test_console_script_entry_point() -> None:
    from importlib.metadata import entry_points

    (ep,) = [e for e in entry_points(group="console_scripts") if e.name == "corosnap"]
    assert ep.load() is main
