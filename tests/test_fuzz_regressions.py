"""Hostile blobs that once crashed, hung or fooled ``loads``, one minimal
reproduction each, found by the fuzzing campaign: frame slots holding values
of the wrong kind (iterators, dicts, exceptions, except* result lists,
cells), generators delegating to themselves, chains of cells, slices and
exceptions deep enough to overflow the C stack, hash-flooding sets and maps,
safe-mode escapes through getattr and qualnames, and errors escaping a
reduce.  Each must now be refused with a clear error or restored harmlessly.

Every reproduction runs in a fresh interpreter, since most of them take the
interpreter down (a segfault, or an object that is not an exception raised as
one).  The child script ends by printing ``OK`` when ``loads`` refused the blob
with a ``CorosnapError`` or the restored object resumed, closed and was
collected without harm; the test asserts exactly that.

While a hole is open its test is ``xfail(strict=True)``; the fix flips it to
XPASS, which fails the suite until the mark is removed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

TOOLS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools")
PY311 = sys.version_info[:2] == (3, 11)
only311 = pytest.mark.skipif(not PY311, reason="the blob layout of a CPython 3.11 construct")

PRELUDE = """
import gc, resource, sys
import msgpack
from msgpack import ExtType as X
import corosnap
from corosnap_fuzz import zoo

def tag(kind):
    return X(0, bytes([kind]))

def ref(i):
    return X(1, i.to_bytes(1 if i < 256 else 4, "big"))

WELLKNOWN = lambda i: X(5, bytes([i]))  # noqa: E731
GETATTR, ITER, BYTES, BYTEARRAY = WELLKNOWN(6), WELLKNOWN(0), WELLKNOWN(25), WELLKNOWN(19)
T_TUPLE, T_DICT, T_GLOBAL, T_CELL, T_FRAME, T_REDUCE = 1, 4, 6, 8, 10, 11

def tree_of(gen):
    return msgpack.unpackb(corosnap.dumps(gen), strict_map_key=False)

def blob_of(tree):
    return msgpack.packb(tree, use_bin_type=True)

def expect_refused_or_harmless(blob, safe=False, allow=(), actions=("send", "close")):
    try:
        obj = corosnap.loads(blob, safe=safe, allow=allow)
    except corosnap.CorosnapError:
        gc.collect()
        print("OK")
        return
    for action in actions:
        try:
            if action == "send":
                obj.send(None)
            elif action == "throw":
                obj.throw(ValueError("x"))
            else:
                obj.close()
        except BaseException:
            pass
    del obj
    gc.collect()
    print("OK")
"""


def run_child(body: str, limit_mb: int | None = None) -> subprocess.CompletedProcess[str]:
    script = PRELUDE
    if limit_mb:
        script += (f"resource.setrlimit(resource.RLIMIT_AS, ({limit_mb} << 20, "
                   f"{limit_mb} << 20))\n")
    script += textwrap.dedent(body)
    return subprocess.run([sys.executable, "-W", "ignore", "-c", script], capture_output=True,
                          env={**os.environ, "PYTHONPATH": TOOLS},  # corosnap_fuzz.zoo
                          text=True, timeout=120)


def assert_ok(proc: subprocess.CompletedProcess[str]) -> None:
    tail = (proc.stdout + proc.stderr)[-1500:]
    assert proc.returncode == 0, f"child died with {proc.returncode}:\n{tail}"
    assert proc.stdout.strip().endswith("OK"), tail


# -- 1. FOR_ITER over a slot that did not come from GET_ITER -----------------


@pytest.mark.skipif(sys.version_info >= (3, 15),
                    reason="hand-built blob in the 3.11-3.14 layout (3.15 keeps two loop slots)")
def test_genexpr_iterator_slot_must_be_an_iterator():
    # A generator expression loops over its ".0" argument with LOAD_FAST + FOR_ITER
    # (no GET_ITER), so the slot FOR_ITER calls tp_iternext on is typed "any".  An
    # int there segfaults on the next send.
    assert_ok(run_child("""
        g = zoo.delegate_genexpr(4); next(g)
        t = tree_of(g)   # [.., position, total, <genexpr frame: .., .0, i, ITERATOR>]
        t[-1][-1] = 12345
        expect_refused_or_harmless(blob_of(t))
    """))


def test_unstarted_genexpr_argument_must_be_an_iterator():
    # Same hole in a created (never started) generator expression: ".0" is an
    # argument, and the first next() runs FOR_ITER on it.  Safe mode too.
    assert_ok(run_child("""
        g = zoo.unstarted_genexpr_holder(3); next(g)
        t = tree_of(g)   # slot g = [T_FRAME, .., -1 (created), .0, i]
        t[6][5] = 12345
        try:
            outer = corosnap.loads(blob_of(t), safe=True, allow=("corosnap_fuzz.zoo",))
        except corosnap.CorosnapError:
            print("OK"); sys.exit(0)
        inner, _ = outer.send(None)
        try:
            next(inner)
        except BaseException:
            pass
        print("OK")
    """))


@only311  # 3.12+ inlines comprehensions (PEP 709): no frame of their own
def test_async_comprehension_iterator_slot_must_be_an_iterator():
    # A comprehension that awaits is a coroutine of its own (3.11) and loops like
    # a generator expression: LOAD_FAST .0 + FOR_ITER.  Safe mode too.
    assert_ok(run_child("""
        c = zoo.coro_comprehensions([1, 2])
        for _ in range(5):
            c.send(None)
        t = tree_of(c)
        sub = t[-1]   # <dictcomp>: [.., position, .0, k, DICT, ITERATOR, key, <awaited>]
        sub[7] = 12345
        expect_refused_or_harmless(blob_of(t), safe=True, allow=("corosnap_fuzz.zoo",),
                                   actions=("send", "send", "send"))
    """))


# Fixed in main d4b4853.
@only311
def test_async_dict_comprehension_target_must_be_a_dict():
    # In an async dict comprehension the dict BUILD_MAP made sits on the stack
    # across the await; MAP_ADD casts it to a dict without checking: a list there
    # segfaults on resume.  Safe mode too.
    assert_ok(run_child("""
        c = zoo.coro_comprehensions([1, 2])
        for _ in range(5):
            c.send(None)
        t = tree_of(c)
        sub = t[-1]
        sub[6] = [1, 2, 3]
        expect_refused_or_harmless(blob_of(t), safe=True, allow=("corosnap_fuzz.zoo",),
                                   actions=("send", "send", "send"))
    """))


def test_null_pushed_by_load_method_is_accepted():
    # Not a crash but a false refusal: in 3.11 LOAD_METHOD pushes NULL + attribute
    # when the attribute is not a plain method (a module attribute, a classmethod),
    # dis does not say so in argrepr, and _kinds marks neither slot NULLABLE, so a
    # snapshot dumps() just made cannot be loaded.
    proc = run_child("""
        g = zoo.null_method_calls(); next(g)
        g2 = corosnap.loads(corosnap.dumps(g))
        assert g2.send("1.5") == "classmethod"
        g = zoo.null_method_calls(); next(g); g.send("1.5")
        g2 = corosnap.loads(corosnap.dumps(g))
        try:
            g2.send(700000)
        except StopIteration as stop:
            print(stop.value)
        print("OK")
    """)
    assert_ok(proc)


# -- 2. A frame that delegates (yield from / await) to itself ---------------


# Fixed in main 94280dd.
@pytest.mark.parametrize("action", ["close", "throw", "drop"])
def test_generator_delegating_to_itself(action):
    # The delegated sub-iterator is a back-reference to memo entry 0: the frame
    # itself.  gen_close()/_gen_throw() follow gi_yieldfrom without a recursion
    # check: close, throw and even dropping the generator (its finalizer closes
    # it) recurse until the C stack overflows.
    assert_ok(run_child(f"""
        g = zoo.mid_gen(1); next(g)
        t = tree_of(g)
        t[-1] = ref(0)
        actions = {{"close": ("close",), "throw": ("throw",), "drop": ()}}[{action!r}]
        expect_refused_or_harmless(blob_of(t), actions=actions)
    """))


# Fixed in main 94280dd.
def test_coroutine_awaiting_itself():
    assert_ok(run_child("""
        c = zoo.mid_coro(1); c.send(None)
        t = tree_of(c)
        t[-1] = ref(0)
        expect_refused_or_harmless(blob_of(t), actions=("throw",))
    """))


# Fixed in main 94280dd.
def test_rejected_blob_with_self_delegating_subframe():
    # loads() rightly raises CorruptSnapshot (a bad back-reference after the
    # sub-frame), but the sub-frame, already written and delegating to itself,
    # is dropped with the decoder's memo: its finalizer crashes the process.
    assert_ok(run_child("""
        c = zoo.holds(0); next(c)
        leaf = zoo.leaf_coro(5); leaf.send(None)
        t = tree_of(c)                    # [.., position, value, got]
        sub = tree_of(leaf)[1:]
        sub[-1] = ref(1)                  # memo 1 = this coroutine
        t[5] = [tag(T_FRAME), *sub]
        t[6] = ref(200)                   # then something invalid
        expect_refused_or_harmless(blob_of(t))
    """))


# -- 3. except* handler results --------------------------------------------


# Fixed on branch safety: the list is EXC_LIST, the rest CHECK_EG_MATCH leaves
# EXC_OR_NONE (bytecode._kinds), on every version.
@pytest.mark.parametrize("items", ["[12345]", "[]"])
def test_except_star_results_must_be_exceptions(items):
    # At a yield inside an ``except*`` clause the stack holds the list the
    # handlers' results are appended to; PREP_RERAISE_STAR reads its items as
    # exceptions without checking.  An int there is raised as if it were an
    # exception (no ``except`` clause can catch it: the program unwinds to the
    # top); other contents segfault.  3.12+ call the same C function through
    # CALL_INTRINSIC_2, also unchecked (this blob happens to end in a
    # SystemError from the traceback code there).
    assert_ok(run_child(f"""
        g = zoo.in_except_star(); next(g); g.send("v")
        t = tree_of(g)
        assert type(t[-2]) is list
        t[-2] = {items}
        if {items!r} == "[]":
            # the segfaulting shape the fuzzer found: the unmatched rest of the
            # group (appended to the list before PREP_RERAISE_STAR) is an int
            t[-1] = 0
        try:
            obj = corosnap.loads(blob_of(t))
        except corosnap.CorosnapError:
            print("OK"); sys.exit(0)
        try:
            obj.send(None)
        except BaseException:
            pass
        print("OK")
    """))


EXCEPT_STAR_COLLECTOR = """
def collect():
    errors = []
    try:
        raise ExceptionGroup("eg", [ValueError(1)])
    except* ValueError:
        errors.append((yield "in handler"))
    yield errors
"""


def test_except_star_result_list_cannot_be_aliased():
    # The result list passes the check at load time, but the blob makes it the
    # same list as the local ``errors``, which the handler appends the sent value
    # to before PREP_RERAISE_STAR reads it: an int raised as an exception.  The
    # restore puts a copy of the checked list on the stack (nothing else holds
    # it in a real frame).
    assert_ok(run_child(EXCEPT_STAR_COLLECTOR + """
from corosnap.codec import Decoder, ext_hook
from corosnap.snapshot._api import default

frames = default()._caches.frames_in  # the Python engine's frame decoder: frames.decode

g = collect(); next(g)
blob = corosnap.dumps(g)
t = tree_of(g)   # [.., position, errors, prev exc, exc, RESULTS, rest, <errors.append>..]
results = next(j for j in range(6, len(t)) if t[j] == [])
assert t[5] == [], t
# the memo index the decoder gives the local ``errors``: decode once and look
dec = Decoder(frames)
gen = frames.decode(dec, msgpack.unpackb(blob, strict_map_key=False, ext_hook=ext_hook), 1)
t[results] = ref(next(i for i, o in enumerate(dec.memo) if o is gen.gi_frame.f_locals["errors"]))
del gen, dec
try:
    g2 = corosnap.loads(blob_of(t))
except corosnap.CorosnapError:
    print("OK"); sys.exit(0)
try:
    print(g2.send(12345))
except BaseException as exc:
    print("raised", type(exc).__name__)
del g2; gc.collect()
print("OK")
"""))


def test_exception_slots_reject_objects_that_only_claim_to_be_exceptions():
    # unittest.mock's spec= makes ``__class__`` return the spec: isinstance(m,
    # BaseException) is true, but the object is no exception struct.  In the
    # previous-exception slot of an ``except`` block POP_EXCEPT installs it as
    # the handled exception; sys.exc_info() then reads a "traceback" from its
    # memory and ``raise`` raises it.  Checks now use the type's flags, as
    # CPython does (PyExceptionInstance_Check).
    assert_ok(run_child("""
def handler():
    try:
        raise KeyError("k")
    except KeyError:
        yield 1
    info = sys.exc_info()
    yield info
    raise

g = handler(); next(g)
t = tree_of(g)   # the stack is [previous exception (None)]
assert t[-1] == X(7, b"\\0"), t
t[-1] = [tag(T_REDUCE), [tag(T_GLOBAL), "unittest.mock", "NonCallableMock"],
         [[tag(T_GLOBAL), "builtins", "ValueError"]]]
expect_refused_or_harmless(blob_of(t), actions=("send", "send", "send"))
"""))


# -- 4. Object graphs deeper than the msgpack nesting limit ----------------


# Fixed in main 94280dd.
def test_long_cell_chain_through_back_references():
    # Each cell holds the previous one by back-reference: the blob is flat (10 MB,
    # well under max_size) but the object graph is a million levels deep, and
    # cells have no trashcan: freeing the chain recurses in C and segfaults.
    # Works in safe mode (no globals at all).
    assert_ok(run_child("""
        g = zoo.holds(0); next(g)
        t = tree_of(g)
        n = 1_000_000
        cells = [[tag(T_CELL)]] + [[tag(T_CELL), ref(2 + i)] for i in range(1, n)]
        # a dict with a repeated key drops the list that held the cells; only the
        # last cell, kept by the tuple, holds the chain
        t[5] = [tag(T_TUPLE), [tag(T_DICT), 0, cells, 0, None], ref(n + 1)]
        expect_refused_or_harmless(blob_of(t), safe=True, allow=("corosnap_fuzz.zoo",),
                                   actions=())
    """))


# Fixed in main 730dd94.
def test_long_slice_chain_through_back_references():
    # The same shape with a type the cell fix does not cover: slice(slice(...))
    # through back-references, 300,000 deep (a 4 MB blob).  slice has no trashcan
    # either, so freeing the chain overflows the C stack.  enumerate(enumerate(..))
    # and iter(object, iter(object, ...)) (callable_iterator, sentinel chain) do the
    # same from about 1.5 million (20 MB); all three are callables safe mode allows.
    assert_ok(run_child("""
        g = zoo.holds(0); next(g)
        t = tree_of(g)
        n = 300_000
        SLICE = WELLKNOWN(13)
        # memo: 0 root, 1 the T_DICT's dict, 2 the holding list, 3.. the slices
        items = [[tag(T_REDUCE), SLICE, [0]]]
        items += [[tag(T_REDUCE), SLICE, [X(1, (2 + i).to_bytes(4, "big"))]]
                  for i in range(1, n)]
        t[5] = [tag(T_TUPLE), [tag(T_DICT), 0, items, 0, None],
                X(1, (2 + n).to_bytes(4, "big"))]
        expect_refused_or_harmless(blob_of(t), safe=True, allow=("corosnap_fuzz.zoo",),
                                   actions=())
    """))


# Fixed on branch safety: chains longer than MAX_EXCEPTION_CHAIN (1,000) are
# refused with LimitExceeded, on every version.
def test_long_exception_chain_does_not_crash_when_raised():
    # T_EXCEPTION links __context__ by back-reference, so a 300,000-deep chain is
    # flat in the blob (8 MB).  The generator re-raises it with a bare ``raise``;
    # uncaught, CPython 3.11's traceback printer recurses down the chain in C and
    # segfaults (plain CPython does the same with such a chain, but only a blob can
    # hand one to code that never built it; 3.12+ guard that recursion).  Were it
    # restored, the child would let it propagate: a clean exit with status 1.
    proc = run_child("""
        g = zoo.in_except(); next(g)
        t = tree_of(g)   # position [offset, handled exception]; memo 0 = the generator
        T_EXC = 18
        n = 300_000
        ref4 = lambda i: X(1, i.to_bytes(4, "big"))
        # memo: 1 = ValueError (global), 2 = the args list, 3.. = the chain
        chain = [[tag(T_EXC), [tag(T_REDUCE), ref4(1), [0]], None, None, False]]
        chain += [[tag(T_EXC), [tag(T_REDUCE), ref4(1), [i]], None, ref4(2 + i), False]
                  for i in range(1, n)]
        t[4] = [t[4][0], [tag(T_EXC), [tag(T_REDUCE), [tag(T_GLOBAL), "builtins", "ValueError"],
                                       [chain]], None, ref4(2 + n), False]]
        t[5] = None
        try:
            g2 = corosnap.loads(blob_of(t), safe=True, allow=("corosnap_fuzz.zoo", "builtins"))
        except corosnap.CorosnapError as exc:
            print(type(exc).__name__, exc)
            print("OK"); sys.exit(0)
        g2.send(None)
        print("OK", flush=True)
        g2.send(None)   # re-raises the handled exception, uncaught
    """)
    tail = (proc.stdout + proc.stderr)[-800:]
    assert proc.returncode in (0, 1) and "OK" in proc.stdout, f"{proc.returncode}: {tail}"
    assert "LimitExceeded" in proc.stdout and "chain is longer than 1000" in proc.stdout, tail


def test_exception_raised_by_a_constructor_does_not_carry_a_long_chain_out():
    # Default mode: a reduce calls a fresh generator's ``throw`` (a bound method)
    # with a blob-built exception at the head of a 300,000-long __context__
    # chain.  loads() wraps what a constructor raises in RestoreError "from" it,
    # so the chain would reach the caller's traceback printer (3.11: a segfault).
    # The cause is dropped when its chain is too long to print.
    proc = run_child("""
        g = zoo.holds(0); next(g)
        t = tree_of(g)
        T_EXC = 18
        n = 300_000
        ref4 = lambda i: X(1, i.to_bytes(4, "big"))
        # memo: 0 = the generator, 1 = zoo.holds, 2 = a fresh generator, 3 = its
        # bound throw, 4 = ValueError, 5 = the chain's list, 6.. = the chain
        throw = [tag(T_REDUCE), GETATTR,
                 [[tag(T_REDUCE), [tag(T_GLOBAL), "corosnap_fuzz.zoo", "holds"], [0]], "throw"]]
        chain = [[tag(T_EXC), [tag(T_REDUCE), ref4(4), [i]], None,
                  ref4(5 + i) if i else None, False] for i in range(n)]
        top = [tag(T_EXC), [tag(T_REDUCE), [tag(T_GLOBAL), "builtins", "ValueError"], [chain]],
               None, ref4(5 + n), False]
        t[5] = [tag(T_REDUCE), throw, [top]]
        try:
            corosnap.loads(blob_of(t))
        except corosnap.CorosnapError as exc:
            print(type(exc).__name__, exc.__cause__ is None, flush=True)
            raise   # uncaught: the printer prints it and its cause chain
    """)
    tail = (proc.stdout + proc.stderr)[-800:]
    assert proc.returncode == 1 and "RestoreError True" in proc.stdout, f"{proc.returncode}: {tail}"


# -- 5. Memory: sizes declared through well-known constructors ---------------


def test_wellknown_constructor_with_an_absurd_size():
    # Safe mode allowed the whole well-known table, bytes/bytearray/list... included:
    # a 40-byte blob asked for bytes(2**31) and loads() tried to allocate 2 GiB (in
    # this child, limited to 1 GiB of address space, a MemoryError wrapped in
    # RestoreError; without a limit a real 2 GiB allocation).  Fixed in main dc45035.
    assert_ok(run_child("""
        g = zoo.holds(0); next(g)
        t = tree_of(g)
        t[5] = [tag(T_REDUCE), BYTES, [2**31]]
        try:
            corosnap.loads(blob_of(t), safe=True, allow=("corosnap_fuzz.zoo",))
        except corosnap.CorosnapError as exc:
            chain, e = [], exc
            while e is not None:
                chain.append(type(e).__name__); e = e.__cause__ or e.__context__
            assert "MemoryError" not in chain, chain
        # this process's own peak: Linux carries the parent's ru_maxrss across
        # fork and exec, so a big test process would count; VmHWM is this one's
        try:
            status = open("/proc/self/status").read()
            peak = int(status.split("VmHWM:")[1].split()[0])
        except (OSError, IndexError, ValueError):
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        assert peak < 400_000, f"peak RSS {peak} kB"
        print("OK")
    """, limit_mb=1024))


# Fixed in main 94280dd.
def test_colliding_set_items_do_not_hang():
    # Ints equal modulo 2**61 - 1 share a hash, and EXT_BIGINT can store any int:
    # a set of n such ints costs O(n^2) equality probes to build.  60,000 of them
    # (a 0.8 MB blob) take about a minute; 250,000 (3 MB) most of an hour.  Safe
    # mode too.  The child gives loads() 5 seconds.
    assert_ok(run_child("""
        import signal
        g = zoo.holds(0); next(g)
        t = tree_of(g)
        M = 2**61 - 1
        def big(v):
            return X(2, v.to_bytes((v.bit_length() + 8) // 8, "little", signed=True))
        t[5] = [tag(2), *[big(k * M) for k in range(1, 60_001)]]   # T_SET
        blob = blob_of(t)
        signal.alarm(5)
        expect_refused_or_harmless(blob, safe=True, allow=("corosnap_fuzz.zoo",),
                                   actions=())
    """))


COLLIDING_TUPLES = """
M64 = (1 << 64) - 1
P1, P2, P5 = 11400714785074694791, 14029467366897019727, 2870177450012600261

def colliding_pairs(n, target=12345):
    # 2-tuples of native ints that all hash to ``target``: CPython's tuple hash
    # (xxHash-like, the same on 3.11-3.15) is invertible in its last item, and
    # an int below 2**61 - 1 hashes to itself.
    rotl = lambda x, r: ((x << r) | (x >> (64 - r))) & M64
    rotr = lambda x, r: ((x >> r) | (x << (64 - r))) & M64
    acc2 = (target - (2 ^ (P5 ^ 3527539))) & M64
    x = rotr(acc2 * pow(P1, -1, 1 << 64) & M64, 31)
    out, a = [], 0
    while len(out) < n:
        a += 1
        acc1 = rotl((P5 + a * P2) & M64, 31) * P1 & M64
        b = (x - acc1) * pow(P2, -1, 1 << 64) & M64
        if b < (1 << 61) - 1:
            out.append((a, b))
    assert len({hash(p) for p in out[:100]}) == 1
    return out

def big(v):
    return X(2, v.to_bytes((v.bit_length() + 8) // 8, "little", signed=True))
"""


# Fixed on branch safety: the largest group of equal hashes is bounded (64).
@pytest.mark.parametrize("items", ["tuples", "bigints"])
@pytest.mark.parametrize("kind", ["set", "frozenset", "dict"])
def test_colliding_set_items_padded_with_distinct_ones_do_not_hang(kind, items):
    # The check above counted distinct hashes (at least half as many as items),
    # so 50,000 colliding items padded with 50,000 distinct ones passed it and
    # took minutes to insert.  Colliding items: 2-tuples of small ints (no ext at
    # all) or big ints equal modulo 2**61 - 1.  Safe mode too; 5 seconds.
    assert_ok(run_child(COLLIDING_TUPLES + f"""
import signal
g = zoo.holds(0); next(g)
t = tree_of(g)
n = 50_000
if {items!r} == "tuples":
    colliding = [[tag(T_TUPLE), a, b] for a, b in colliding_pairs(n)]
else:
    colliding = [big(k * (2**61 - 1)) for k in range(1, n + 1)]
keys = colliding + list(range(10**6, 10**6 + n))
if {kind!r} == "dict":
    t[5] = [tag(T_DICT)] + [x for key in keys for x in (key, None)]
else:
    t[5] = [tag(2 if {kind!r} == "set" else 3), *keys]
blob = blob_of(t)
signal.alarm(5)
expect_refused_or_harmless(blob, safe=True, allow=("corosnap_fuzz.zoo",), actions=())
"""))


# Fixed on branch safety: EXT_BIGINT / EXT_COMPLEX are counted by hash as msgpack
# reads them.
def test_colliding_big_int_keys_of_a_plain_map_do_not_hang():
    # A plain msgpack map is turned into a dict by msgpack itself, before the
    # decoder sees it, and its keys may be exts: 60,000 big ints equal modulo
    # 2**61 - 1 made msgpack.unpackb quadratic (a minute) with no check at all.
    assert_ok(run_child(COLLIDING_TUPLES + """
import signal
g = zoo.holds(0); next(g)
t = tree_of(g)
n = 60_000
t[5] = "PLACEHOLDER"
body = b"".join(msgpack.packb(big(k * (2**61 - 1))) + b"\\xc0" for k in range(1, n + 1))
blob = blob_of(t).replace(msgpack.packb("PLACEHOLDER"), b"\\xdf" + n.to_bytes(4, "big") + body)
signal.alarm(5)
expect_refused_or_harmless(blob, safe=True, allow=("corosnap_fuzz.zoo",), actions=())
"""))


# -- 6. Safe mode ------------------------------------------------------------


def test_safe_mode_getattr_cannot_reach_eval():
    # getattr was in the always-allowed well-known table: getattr(iter, "__self__")
    # is the builtins module, getattr(that, "eval") is eval, and a reduce called it.
    # Fixed in main dc45035.
    assert_ok(run_child("""
        g = zoo.holds(0); next(g)
        t = tree_of(g)
        builtins_mod = [tag(T_REDUCE), GETATTR, [ITER, "__self__"]]
        evalf = [tag(T_REDUCE), GETATTR, [builtins_mod, "eval"]]
        t[5] = [tag(T_REDUCE), evalf, ["__import__('os').getpid()"]]
        try:
            obj = corosnap.loads(blob_of(t), safe=True, allow=("corosnap_fuzz.zoo",))
        except corosnap.UnsafeSnapshot:
            print("OK"); sys.exit(0)
        print("ran code in safe mode:", obj.send(None))
    """))


# Fixed in main 94280dd.
@pytest.mark.parametrize("qualname", ["itertools.count", "__builtins__.get",
                                      "dataclasses.sys.exit"])
def test_safe_mode_qualname_cannot_leave_the_allowed_module(qualname):
    # The allow list is checked against the module name only; the qualname is then
    # walked with getattr, through the allowed module's own imports and its
    # __builtins__ dict, to anything.
    assert_ok(run_child(f"""
        g = zoo.holds(0); next(g)
        t = tree_of(g)
        t[5] = [tag(T_GLOBAL), "corosnap_fuzz.zoo", {qualname!r}]
        try:
            obj = corosnap.loads(blob_of(t), safe=True, allow=("corosnap_fuzz.zoo",))
        except corosnap.UnsafeSnapshot:
            print("OK"); sys.exit(0)
        print("reached", obj.send(None))
    """))


# Fixed in main 730dd94.
def test_safe_mode_class_walk_cannot_reach_a_getattr():
    # Qualnames now walk only through classes, but a class has object's slot
    # wrappers: Point.__getattribute__ is object.__getattribute__, a
    # wrapper_descriptor (no __module__, so the owner check passes; not a builtin
    # function, so the call check passes).  That is getattr again:
    # __getattribute__(iter, "__self__") is builtins, then builtins.type,
    # builtins.dict, builtins.exec; type("Evil", (dict,), {"__init__":
    # partial(exec, CODE)}) is a class (classes may be called) whose __init__ runs
    # exec(CODE, instance) when the blob instantiates it.
    assert_ok(run_child("""
        g = zoo.holds(0); next(g)
        t = tree_of(g)
        GA = [tag(T_GLOBAL), "corosnap_fuzz.zoo", "Point.__getattribute__"]
        ga = lambda obj, name: [tag(T_REDUCE), GA, [obj, name]]
        builtins_mod = ga(ITER, "__self__")
        init = [tag(T_REDUCE), WELLKNOWN(12), [ga(builtins_mod, "exec"),
                                               "import sys; sys.modules['pwned'] = 1"]]
        evil = [tag(T_REDUCE), ga(builtins_mod, "type"),
                ["Evil", [tag(T_TUPLE), ga(builtins_mod, "dict")], {"__init__": init}]]
        t[5] = [tag(T_REDUCE), evil, []]
        try:
            corosnap.loads(blob_of(t), safe=True, allow=("corosnap_fuzz.zoo",))
        except corosnap.UnsafeSnapshot:
            pass
        assert "pwned" not in sys.modules, "safe mode ran code from the blob"
        print("OK")
    """))


# -- 7. Exceptions that are not Exception ----------------------------------


# Fixed in main 94280dd.
def test_system_exit_from_a_reduce_does_not_escape_loads():
    # loads() wraps every Exception in RestoreError, but a reduce callable that
    # raises SystemExit (or GeneratorExit) goes straight through: ``except
    # CorosnapError`` around loads() does not stop the process from exiting.
    assert_ok(run_child("""
        g = zoo.holds(0); next(g)
        t = tree_of(g)
        t[5] = [tag(T_REDUCE), [tag(T_GLOBAL), "sys", "exit"], [3]]
        try:
            corosnap.loads(blob_of(t))
        except corosnap.CorosnapError:
            pass
        print("OK")
    """))


# -- 8. Stack slots typed by the instruction that made them -----------------


# Fixed in main d4b4853.
def test_dict_display_slot_must_be_a_dict():
    # Not a crash: at the yield in ``{**d, "k": (yield)}`` the stack holds the dict
    # BUILD_MAP made; a list there makes DICT_UPDATE raise SystemError ("bad
    # argument to internal function") when resumed: a frame CPython never makes.
    assert_ok(run_child("""
        g = zoo.displays([1, 2], {3}, {"d": 4}); next(g); g.send(5); g.send([6])
        t = tree_of(g)
        assert t[-2] == {"d": 4}, t
        t[-2] = [1, 2]
        try:
            obj = corosnap.loads(blob_of(t))
        except corosnap.CorosnapError:
            print("OK"); sys.exit(0)
        try:
            obj.send(7)
        except SystemError as exc:
            print("SystemError:", exc); sys.exit(0)
        except BaseException:
            pass
        print("OK")
    """))


# -- 9. State that CPython's own __setstate__ does not check ------------------


def test_a_partials_instance_dict_must_be_a_dict():
    # partial.__setstate__ of 3.11-3.13 takes any object as the partial's
    # __dict__; the next attribute lookup or assignment on it raises
    # SystemError or segfaults (3.13: ``p.x = 1``).  Found by the fuzzing
    # campaign (seed 22, input 27,685 on 3.11: the restored partial crashed
    # the pure-Python engine's dumps of it).  Refused on both engines.
    assert_ok(run_child("""
        import functools
        from corosnap import _accel
        from corosnap.snapshot._api import default
        engines = ("python", "c") if _accel.ENGINE == "c" else ("python",)
        g = zoo.holds(functools.partial(print, 1, sep="")); next(g)
        t = tree_of(g)
        state = t[5][3]
        assert state[0] == tag(T_TUPLE) and len(state) == 5, state  # fn, args, kw, dict
        for bad in ([1], 5, "d"):
            state[4] = bad
            for engine in engines:
                try:
                    p = default()._with_engine(engine).loads(blob_of(t))
                except corosnap.CorruptSnapshot as exc:
                    assert "instance dict must be a dict or None" in str(exc), exc
                else:
                    raise AssertionError(f"{engine} restored a partial with a {bad!r} dict")
        state[4] = {"note": 1}  # a dict is fine
        for engine in engines:
            v, _ = default()._with_engine(engine).loads(blob_of(t)).send(None)
            v.extra = 2
            assert v.note == 1 and v.extra == 2
        print("OK")
    """))


def test_a_sub_frame_delegating_back_to_the_frame_above_it_is_refused():
    # outer -> mid -> leaf, with mid's sub-frame replaced by a back-reference
    # to outer (memo 0), which is still being restored when mid is: accepted,
    # outer and mid would delegate to each other, and close() would recurse
    # in C until the stack overflows.  The chain check must see outer as a
    # frame in progress on both engines (the C engine registers a frame as
    # in progress only before a step that can restore another frame).
    assert_ok(run_child("""
        from corosnap import _accel
        from corosnap.snapshot._api import default

        def leaf(n):
            yield n

        def mid(n):
            got = yield from leaf(n)
            return got

        PICK = [mid]

        def outer(n):  # no local but an int: nothing registers it but the rules
            got = yield from PICK[0](n)
            return got

        def looping():
            PICK[0] = mid
            g = outer(1); next(g)
            t = tree_of(g)
            m = max(i for i, x in enumerate(t) if type(x) is list)  # outer's sub-frame: mid
            s = max(i for i, x in enumerate(t[m]) if type(x) is list)  # mid's: leaf
            t[m][s] = ref(0)  # mid delegates to outer
            return blob_of(t)

        engines = ("python", "c") if _accel.ENGINE == "c" else ("python",)
        for engine in engines:
            # mid restored by the C engine (its code met before), then by the
            # Python engine under a frame the C engine restores (mid met for
            # the first time: the C engine declines it)
            for first in (mid, leaf):
                snap = default()._with_engine(engine)
                PICK[0] = first
                warm = outer(1); next(warm)
                snap.loads(corosnap.dumps(warm)).close()  # the C engine restores code it has met
                for _ in range(2):
                    try:
                        snap.loads(looping())
                    except corosnap.CorruptSnapshot as exc:
                        assert "loops back" in str(exc), exc
                    else:
                        raise AssertionError(f"{engine} restored a chain that loops back")
        print("OK")
    """))
