"""Per-version behaviour: every suspension shape round-trips on the running
CPython, real frames match what the bytecode analysis says about them, blobs
from another minor version are refused, unsupported interpreters are refused
clearly, and restoring refuses slot values the interpreter could not survive.

The same tests run on every supported version (``make test-matrix``); what
differs between versions (tagged integers from 3.14, iteration pairs from
3.15, ...) is checked against the version the test runs on.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import types
from typing import Any

import msgpack
import pytest

import corosnap
import version_samples as vs
from _helpers import TESTS_DIR, in_child
from corosnap import frames as frames_pkg
from corosnap.bytecode import _kinds as K
from corosnap.bytecode import code_info
from corosnap.bytecode._analysis import DELEGATE
from corosnap.bytecode._kinds import slot_rules
from corosnap.codec import EXT_HEADER, EXT_SIGNED
from corosnap.codec._tags import NONE_EXT, T_SET, TAGS

FRAMES = frames_pkg.backend()
V = sys.version_info[:2]


def run(gen: Any, script: list[Any]) -> list[Any]:
    """Apply sends (or THROW) in turn; record what came out, normalised."""
    out: list[Any] = []
    for value in script:
        try:
            if value is vs.THROW:
                got = gen.throw(vs.Boom("thrown"))
            else:
                got = gen.send(value)
            out.append(("yield", repr(got)))
        except StopIteration as stop:
            out.append(("return", repr(stop.value)))
            break
        except BaseException as exc:  # noqa: BLE001 - compared, not handled
            out.append(("raise", type(exc).__name__, repr(exc.args)))
            break
    return out


def code_of(gen: Any) -> types.CodeType:
    t = type(gen)
    return (gen.gi_code if t is types.GeneratorType else gen.cr_code
            if t is types.CoroutineType else gen.ag_code)


def kinds_at(gen: Any, at: int, depth: int) -> tuple[int, ...]:
    rules = slot_rules(code_of(gen))
    assert rules.ok, code_of(gen).co_qualname
    return rules.stack_kinds(at, depth)


def assert_frame_matches_analysis(gen: Any) -> None:
    """The real frame has exactly the slot kinds the analysis predicts."""
    state, lasti, localsplus, stack, exc, _ = FRAMES.read(gen)
    if state not in (FRAMES.CREATED, FRAMES.SUSPENDED):
        return
    info = code_info(code_of(gen))
    at = -1 if state == FRAMES.CREATED else lasti
    assert at in info.resume, f"{at} not a resume point of {code_of(gen).co_qualname}"
    assert len(stack) == info.resume[at]
    kinds = kinds_at(gen, at, len(stack))
    for j, (v, kind) in enumerate(zip(stack, kinds, strict=True)):
        base = kind & ~K.NULLABLE
        where = f"{code_of(gen).co_qualname} at {at}, stack[{j}] ({kind}) = {v!r}"
        if v is FRAMES.NULL:
            assert kind & K.NULLABLE, where
        elif type(v) is FRAMES.TaggedInt:
            assert base in K.TAGGED, where
        elif base == K.INDEX:
            raise AssertionError(where)  # NULL or a tagged int only
        elif base == K.LASTI:
            assert V < (3, 14) and type(v) is int, where
        elif base == K.EXC:
            assert isinstance(v, BaseException), where
        elif base == K.EXC_OR_NONE:
            assert v is None or isinstance(v, BaseException), where
        elif base == K.EXC_LIST:
            assert type(v) is list, where
            assert all(x is None or isinstance(x, BaseException) for x in v), where
        elif base == K.ITER:
            nxt = stack[j + 1] if j + 1 < len(stack) else None
            assert hasattr(type(v), "__next__") or type(nxt) is FRAMES.TaggedInt, where
        elif base in (K.LIST, K.SET, K.DICT):
            assert type(v).__name__ == K.KIND_NAMES[base].split()[-1], where
        if type(v) in (types.GeneratorType, types.CoroutineType, types.AsyncGeneratorType):
            assert_frame_matches_analysis(v)
    for index in slot_rules(code_of(gen)).bound.get(at, ()):
        assert localsplus[index] is not FRAMES.NULL, info.slot_names[index]


@pytest.mark.parametrize("name", sorted(vs.CASES))
def test_every_suspension_round_trips_and_matches_the_analysis(name):
    factory, script = vs.CASES[name]
    suspensions = 0
    for k in range(len(script)):
        gen = factory()
        head = run(gen, script[:k])
        if head and head[-1][0] != "yield":
            break
        assert_frame_matches_analysis(gen)
        restored = corosnap.loads(corosnap.dumps(gen))
        assert_frame_matches_analysis(restored)
        assert run(restored, script[k:]) == run(gen, script[k:]), f"after {k} steps"
        suspensions += 1
    assert suspensions >= 2


@pytest.mark.parametrize("name", ["for_loops", "delegations", "async_with_exit_on_exception",
                                  "comprehension_shadowing", "genexpr_list", "half_built"])
def test_suspensions_resume_in_another_process(name):
    factory, script = vs.CASES[name]
    for k in (1, len(script) // 2):
        gen = factory()
        run(gen, script[:k])
        blob = corosnap.dumps(gen)
        body = "import version_samples as vs, test_versions\n" \
               f"result = test_versions.run(gen, vs.CASES[{name!r}][1][{k}:])"
        assert in_child(blob, body=body) == run(gen, script[k:])


def test_created_frames_round_trip_with_their_prologue_stack():
    # 3.15 generator expressions start with iter(.0) already on the stack.
    g = vs.genexpr_over([4, 5])
    info = code_info(g.gi_code)
    assert info.resume[-1] == (2 if V >= (3, 15) else 0)
    assert info.iterable_args == ((0,) if V >= (3, 15) else ())
    assert list(corosnap.loads(corosnap.dumps(g))) == [8, 10]


def test_delegating_suspensions_keep_gi_yieldfrom_and_delegate_slot():
    g = vs.delegations()
    next(g)
    g2 = corosnap.loads(corosnap.dumps(g))
    info = code_info(g2.gi_code)
    at = FRAMES.read(g2)[1]
    assert at in info.delegating
    assert type(g2.gi_yieldfrom) is types.GeneratorType
    assert FRAMES.read(g2)[3][DELEGATE] is g2.gi_yieldfrom
    c = vs.nested_awaits(1)
    c.send(None)
    c2 = corosnap.loads(corosnap.dumps(c))
    assert type(c2.cr_await) is types.CoroutineType
    assert type(c2.cr_await.cr_await) is types.CoroutineType


def test_async_generator_frames_match_the_analysis_at_every_step():
    """Async generator code on this version: each `yield` is a wrapped value
    (3.11 ASYNC_GEN_WRAP, 3.12+ CALL_INTRINSIC_1 INTRINSIC_ASYNC_GEN_WRAP) then
    a non-delegating YIELD_VALUE; each await a delegating one; the real frames
    (the coroutine, the generators in flight under it) are what the analysis
    says, and their capture round-trips, at every step."""
    import dis
    import gc

    import agen_samples as ags

    for fn in (ags.ticker, ags.inner_pairs, ags.closer):
        code = fn.__code__
        info = code_info(code)
        instrs = [i for i in dis.get_instructions(code) if i.opname != "CACHE"]
        for k, ins in enumerate(instrs):
            if ins.opname != "YIELD_VALUE" or ins.offset // 2 not in info.resume:
                continue
            wrapped = instrs[k - 1].opname == "ASYNC_GEN_WRAP" or (
                instrs[k - 1].opname == "CALL_INTRINSIC_1"
                and instrs[k - 1].argrepr == "INTRINSIC_ASYNC_GEN_WRAP")
            assert wrapped == (ins.offset // 2 not in info.delegating), (fn, ins)
            assert (instrs[k - 1].opname == "ASYNC_GEN_WRAP") == (wrapped and V == (3, 11))
            if V >= (3, 13):
                assert ins.arg == (0 if wrapped else 1)

    def agens_under(obj: Any) -> list[Any]:
        out = []
        while obj is not None:
            if type(obj).__name__ == "async_generator_asend":
                obj = next(x for x in gc.get_referents(obj)
                           if type(x) is types.AsyncGeneratorType)
            if type(obj) is types.AsyncGeneratorType:
                out.append(obj)
                obj = obj.ag_await
            elif type(obj) is types.CoroutineType:
                obj = obj.cr_await
            else:
                break
        return out

    seen = 0
    done: list[Any] = []
    for k in range(8):
        co = ags.pipeline(2)
        try:
            for value in [None, *range(k)]:
                co.send(value)
        except StopIteration:
            break
        under = agens_under(co)
        assert all(a.ag_running for a in under[:-1]), k
        seen += len(under)
        for frame_owner in (co, *under):
            assert_frame_matches_analysis(frame_owner)
        restored = corosnap.loads(corosnap.dumps(co))
        assert len(agens_under(restored)) == len(under)
        for frame_owner in (restored, *agens_under(restored)):
            assert_frame_matches_analysis(frame_owner)
        done.extend((co, restored))
    assert seen >= 4
    hook = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: None  # generators closed mid-await complain
    try:
        for x in done:
            try:
                x.close()
            except RuntimeError:
                pass
        del x, done, co, restored
        gc.collect()
    finally:
        sys.unraisablehook = hook


_APPEND_CHILD = """
import sys, msgpack
sys.path.insert(0, {tests!r})
import corosnap, version_samples as vs
# Let the interpreter specialize the call site (3.13: CALL_LIST_APPEND).
for _ in range(300):
    g = vs.appends_what_it_is_sent([])
    next(g)
    try:
        g.send(1)
    except StopIteration:
        pass
g = vs.appends_what_it_is_sent([])
next(g)
good = corosnap.dumps(g)
# Restored once intact: its code and plan are known, so the C engine (when
# it runs) decides the tampered blob itself, with its own copy of the check.
corosnap.loads(good).close()
from corosnap.snapshot._restore import FrameDecoder
python_frames = []
real = FrameDecoder.decode
FrameDecoder.decode = lambda self, *a, **k: python_frames.append(1) or real(self, *a, **k)
tree = msgpack.unpackb(good, strict_map_key=False)
assert tree[-2] == [msgpack.ExtType(0, bytes([21])), msgpack.ExtType(5, bytes([14])),
                    "append"] or sys.version_info < (3, 13), tree
tree[-1] = None  # the self slot above list.append: empty
try:
    g2 = corosnap.loads(msgpack.packb(tree))
except corosnap.CorruptSnapshot as exc:
    print("refused:", exc)
else:
    try:
        g2.send(5)
    except TypeError as exc:
        print("TypeError:", exc)
from corosnap import _accel
print("python engine frames:", len(python_frames), _accel.ENGINE)
print("alive")
"""


def test_restore_refuses_an_empty_self_under_list_append():
    # CPython 3.13's CALL_LIST_APPEND reads the self slot above list.append
    # without checking it for NULL: a blob that empties it must be refused
    # (a crash otherwise, once the call site is specialized).  In a child:
    # if this regresses, the child dies, not the test run.
    proc = subprocess.run([sys.executable, "-c", _APPEND_CHILD.format(tests=TESTS_DIR)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "alive"
    frames, engine = proc.stdout.splitlines()[-2].split(": ")[1].split()
    assert frames == ("0" if engine == "c" else "1"), proc.stdout  # C decided it alone
    first = proc.stdout.splitlines()[0]
    if V == (3, 13):
        assert first.startswith("refused: ") and "list.append" in first, first
    else:
        assert first.startswith(("refused: ", "TypeError: ")), first


def test_a_legitimate_null_above_list_append_restores():
    g = vs.unbound_append([1])
    next(g)
    g2 = corosnap.loads(corosnap.dumps(g))
    with pytest.raises(StopIteration) as stop:
        g2.send(2)
    assert stop.value.value == [1, 2]


def _lasti_slot(c: Any) -> int:
    state, at, _, stack, _, _ = FRAMES.read(c)
    kinds = kinds_at(c, at, len(stack))
    return [k & ~K.NULLABLE for k in kinds].index(K.LASTI)


def test_tagged_slots_are_plain_ints_in_the_blob():
    """3.14+ keeps the handler's lasti as a tagged integer; 3.15 also the
    index of a sequence walked in place.  The blob holds plain ints either way."""
    c = vs.async_with([], True)
    for value in (None, "in", "body"):
        c.send(value)
    lasti = FRAMES.read(c)[3][_lasti_slot(c)]
    assert type(lasti) is (FRAMES.TaggedInt if V >= (3, 14) else int)
    tree = msgpack.unpackb(corosnap.dumps(c), raw=False, strict_map_key=False)
    assert int(lasti) in tree  # stored natively, as an int
    g = vs.for_loops()
    next(g)
    st = FRAMES.read(g)[3]
    # The constant list [1, 2] is compiled to a tuple.
    if V >= (3, 15):
        assert st[0] == (1, 2) and type(st[1]) is FRAMES.TaggedInt and st[1] == 1
    else:
        assert type(st[0]).__name__ == "tuple_iterator"


# -- blobs from another version, unsupported interpreters --------------------

def _with_minor(blob: bytes, minor: int) -> bytes:
    tree = msgpack.unpackb(blob, raw=False, strict_map_key=False)
    head = tree[0]
    assert head.code == EXT_HEADER
    tree[0] = msgpack.ExtType(head.code, bytes([head.data[0] & ~31 | minor]))
    return msgpack.packb(tree, use_bin_type=True)


@pytest.mark.parametrize("minor", [m for m in (11, 12, 13, 14, 15, 16) if m != V[1]])
def test_blob_from_another_minor_version_is_refused(minor):
    g = vs.plain(3)
    next(g)
    blob = _with_minor(corosnap.dumps(g), minor)
    expected = rf"CPython 3\.{minor}, this is CPython 3\.{V[1]}"
    with pytest.raises(corosnap.CodeMismatch, match=expected):
        corosnap.loads(blob)


def test_signed_blob_from_another_minor_version_is_refused():
    g = vs.plain(3)
    next(g)
    signed = corosnap.dumps(g, key=b"k")
    tree = msgpack.unpackb(signed, raw=False)
    assert tree[0].code == EXT_SIGNED
    other = V[1] - 1
    tree[0] = msgpack.ExtType(EXT_SIGNED, bytes([tree[0].data[0] & ~31 | other]))
    with pytest.raises(corosnap.CodeMismatch, match=rf"CPython 3\.{other}"):
        corosnap.loads(msgpack.packb(tree, use_bin_type=True), key=b"k")


@pytest.mark.parametrize(
    ("impl", "version", "gil_disabled", "reason"),
    [
        ("PyPy", (3, 11), False, "needs CPython; this is PyPy"),
        ("CPython", (3, 10), False, "this is 3.10"),
        ("CPython", (3, 16), False, "this is 3.16"),
        ("CPython", (3, 14), True, "free-threaded"),
        ("CPython", (3, 13), 1, "free-threaded"),
    ],
)
def test_unsupported_interpreters_are_refused_clearly(monkeypatch, impl, version, gil_disabled,
                                                      reason):
    assert frames_pkg.probe(impl, version, gil_disabled) is not None
    assert reason in frames_pkg.probe(impl, version, gil_disabled)
    g = vs.plain(3)
    next(g)
    blob = corosnap.dumps(g)
    # Simulate this process being such an interpreter: the backend is gone.
    monkeypatch.setattr(frames_pkg, "_backend", None)
    monkeypatch.setattr(frames_pkg, "_reason", frames_pkg.probe(impl, version, gil_disabled))
    # The C entries of dumps and loads exist only where the C engine, built
    # against this interpreter's frame module, was loaded; the Python
    # functions check.
    dumps = getattr(corosnap.dumps, "reference", corosnap.dumps)
    loads = getattr(corosnap.loads, "reference", corosnap.loads)
    with pytest.raises(corosnap.UnsupportedInterpreter, match=reason):
        dumps(g)
    with pytest.raises(corosnap.UnsupportedInterpreter, match=reason):
        loads(blob)


def test_every_supported_version_is_accepted_by_the_probe():
    for version in frames_pkg.SUPPORTED:
        assert frames_pkg.probe("CPython", version, None) is None
        assert frames_pkg.probe("CPython", version, 0) is None


def test_this_interpreter_is_supported_and_not_free_threaded():
    assert V in frames_pkg.SUPPORTED
    assert not sysconfig.get_config_var("Py_GIL_DISABLED")
    assert FRAMES.TAGGED_INTS == (V >= (3, 14))


def _other_pythons() -> list[str]:
    """Unsupported CPythons on this machine (for setup.py/import checks)."""
    found = []
    roots = [os.path.expanduser("~/.pyenv/versions")]
    for root in roots:
        if not os.path.isdir(root):
            continue
        for name in sorted(os.listdir(root)):
            if name.startswith(("3.9.", "3.10.")):
                exe = os.path.join(root, name, "bin", "python" + ".".join(name.split(".")[:2]))
                if os.path.exists(exe):
                    found.append(exe)
    return found


@pytest.mark.skipif(not _other_pythons(), reason="no CPython < 3.11 on this machine")
@pytest.mark.parametrize("python", _other_pythons())
def test_setup_py_compiles_nothing_on_an_unsupported_interpreter(python, tmp_path):
    root = os.path.dirname(TESTS_DIR)
    probe = (
        "import runpy, sys, setuptools\n"
        "captured = {}\n"
        "setuptools.setup = lambda **kw: captured.update(kw)\n"
        f"runpy.run_path({os.path.join(root, 'setup.py')!r})\n"
        "print(len(captured['ext_modules']))\n"
    )
    proc = subprocess.run([python, "-c", probe], capture_output=True, text=True, cwd=root,
                          timeout=60)
    if proc.returncode != 0 and "No module named 'setuptools'" in proc.stderr:
        pytest.skip(f"{python} has no setuptools")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "0"


# -- restoring refuses what the interpreter could not survive ---------------

def _frame_fields(gen: Any) -> tuple[list[Any], int]:
    """The decoded blob tree and the index of the root frame's position field."""
    tree = msgpack.unpackb(corosnap.dumps(gen), raw=False, strict_map_key=False)
    return tree, 4  # [HEADER, module, qualname, fingerprint, position, *slots]


def _refused(tree: list[Any], match: str) -> None:
    with pytest.raises(corosnap.CorruptSnapshot, match=match):
        corosnap.loads(msgpack.packb(tree, use_bin_type=True))


def test_restore_refuses_a_null_in_an_object_slot():
    g = vs.for_loops()
    next(g)
    tree, pos = _frame_fields(g)
    n = code_info(g.gi_code).nlocalsplus
    tree[pos + 1 + n] = None  # nil: an empty slot where the loop's iterator/sequence is
    _refused(tree, "empty where the bytecode|walks by index")


def test_restore_refuses_a_non_iterator_where_for_iter_calls_next():
    g = vs.nested_loops()
    next(g)
    tree, pos = _frame_fields(g)
    n = code_info(g.gi_code).nlocalsplus
    j = n + (1 if V < (3, 15) else 2)  # the inner loop's iterator (3.15: its sequence)
    tree[pos + 1 + j] = 12345
    _refused(tree, "must be an iterator|walks by index")


def test_restore_refuses_a_lasti_outside_the_code():
    c = vs.async_with([], True)
    for value in (None, "in", "body"):
        c.send(value)
    tree, pos = _frame_fields(c)
    j = code_info(c.cr_code).nlocalsplus + _lasti_slot(c)
    assert type(tree[pos + 1 + j]) is int
    for bad in (10**6, -1, "12"):
        tree[pos + 1 + j] = bad
        _refused(tree, "instruction offset")


def test_restore_refuses_a_non_exception_where_the_handler_keeps_one():
    g = vs.in_except()
    next(g)
    tree, pos = _frame_fields(g)
    state, at, _, stack, _, _ = FRAMES.read(g)
    kinds = [k & ~K.NULLABLE for k in kinds_at(g, at, len(stack))]
    j = code_info(g.gi_code).nlocalsplus + kinds.index(K.EXC_OR_NONE)
    tree[pos + 1 + j] = "not an exception"
    _refused(tree, "an exception or None")


def test_restore_refuses_a_non_list_comprehension_accumulator():
    c = vs.comprehensions([1, 2])
    c.send(None)
    state, at, _, stack, _, _ = FRAMES.read(c)
    kinds = [k & ~K.NULLABLE for k in kinds_at(c, at, len(stack))]
    if K.LIST not in kinds:
        pytest.skip("this CPython runs comprehensions in their own frame")
    tree, pos = _frame_fields(c)
    j = code_info(c.cr_code).nlocalsplus + kinds.index(K.LIST)
    tree[pos + 1 + j] = {"not": "a list"}
    _refused(tree, "must be a list")


def test_restore_refuses_a_non_dict_comprehension_accumulator():
    c = vs.comprehensions([1, 2])
    for value in (None, 1, 2, 3, 4):
        c.send(value)
    state, at, _, stack, _, _ = FRAMES.read(c)
    kinds = [k & ~K.NULLABLE for k in kinds_at(c, at, len(stack))]
    if K.DICT not in kinds:
        pytest.skip("this CPython runs comprehensions in their own frame")
    tree, pos = _frame_fields(c)
    j = code_info(c.cr_code).nlocalsplus + kinds.index(K.DICT)
    assert corosnap.loads(msgpack.packb(tree, use_bin_type=True)) is not None
    tree[pos + 1 + j] = ["not", "a dict"]
    _refused(tree, "must be a dict")


@pytest.mark.skipif(V < (3, 12), reason="3.11's LOAD_FAST checks for NULL itself")
def test_restore_refuses_an_empty_local_the_code_reads_unchecked():
    g = vs.plain(10)
    next(g)
    tree, pos = _frame_fields(g)
    info = code_info(g.gi_code)
    at = FRAMES.read(g)[1]
    # After the yield, `total += <sent>` stores total before anything reads
    # it again, but `while total < n` reads n unchecked.
    assert slot_rules(g.gi_code).bound[at] == {info.slot_names.index("n")}
    tree[pos + 1 + info.slot_names.index("n")] = None
    _refused(tree, "local 'n' is read without a check")
    tree, pos = _frame_fields(g)
    tree[pos + 1 + info.slot_names.index("total")] = None
    assert corosnap.loads(msgpack.packb(tree, use_bin_type=True)).send(1) == 1


def test_restore_accepts_a_legitimately_empty_local():
    g = vs.odd_locals(False)
    next(g)
    info = code_info(g.gi_code)
    at = FRAMES.read(g)[1]
    never = info.slot_names.index("never")
    assert never not in slot_rules(g.gi_code).bound.get(at, ())
    assert FRAMES.read(g)[2][never] is FRAMES.NULL
    g2 = corosnap.loads(corosnap.dumps(g))
    assert g2.send(7) == "never unbound"


@pytest.mark.skipif(V < (3, 15), reason="3.15 walks sequences by index")
def test_restore_refuses_an_index_on_a_type_without_virtual_iteration():
    g = vs.for_loops()
    next(g)
    tree, pos = _frame_fields(g)
    n = code_info(g.gi_code).nlocalsplus
    assert tree[pos + 1 + n][1:] == [1, 2] and tree[pos + 2 + n] == 1  # (tuple, index)
    tree[pos + 1 + n] = ["a list", "is fine"]
    corosnap.loads(msgpack.packb(tree, use_bin_type=True))
    tree[pos + 1 + n] = [TAGS[T_SET], 1, 2]  # a set has no _tp_iteritem
    _refused(tree, "walks by index")
    tree[pos + 1 + n] = [1]
    for bad in (-1, "1", NONE_EXT):
        tree[pos + 2 + n] = bad
        _refused(tree, "walks by index")


def test_the_analysis_checks_itself_against_dis_on_the_standard_library():
    """Every code object of a few large stdlib modules analyses without a
    depth disagreement between the kinds rules and dis, and with no slot the
    restore path would have to refuse (MIXED) at a resume point."""
    import asyncio.base_events
    import asyncio.tasks
    import contextlib
    import email.feedparser
    import tokenize

    def walk(co: types.CodeType):
        yield co
        for c in co.co_consts:
            if isinstance(c, types.CodeType):
                yield from walk(c)

    resumes = 0
    for mod in (asyncio.base_events, asyncio.tasks, contextlib, email.feedparser, tokenize):
        with open(mod.__file__, encoding="utf-8") as f:
            top = compile(f.read(), mod.__file__, "exec")
        for co in walk(top):
            assert slot_rules(co).ok, co.co_qualname
            resumes += len(slot_rules(co).stack)
    assert resumes > 100


def test_cross_version_matrix_is_declared():
    assert frames_pkg.SUPPORTED == ((3, 11), (3, 12), (3, 13), (3, 14), (3, 15))



def test_frames_write_checks_its_arguments_in_order():
    """frames.write (two lists) over the C API's write (one list): the
    target is checked first, then the lists, then their shapes."""
    g = vs.plain(3)
    with pytest.raises(TypeError, match="expected a generator, coroutine or async generator"):
        FRAMES.write(42, 0, None, None, None)
    with pytest.raises(TypeError, match="localsplus and stack must be lists or tuples"):
        FRAMES.write(g, -1, None, [], None)
    n = g.gi_code.co_nlocals + len(g.gi_code.co_cellvars) + len(g.gi_code.co_freevars)
    with pytest.raises(ValueError, match=f"has {n} local slots, got {n + 1}"):
        FRAMES.write(g, -1, [None] * (n + 1), [], None)
    with pytest.raises(ValueError, match="has a stack of"):
        FRAMES.write(g, -1, [None] * n, [None] * (g.gi_code.co_stacksize + 1), None)
