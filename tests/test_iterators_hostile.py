"""Builtin iterators from blobs nobody should trust, safe mode, and refusals.

A blob's iterator fields are checked against the whole state before anything
is written: each iterator kind below gets fields of the wrong type, indices
out of range and states its CPython never reaches, and must be refused with
CorruptSnapshot; thousands of random field changes, loaded and iterated in a
child process, must never crash it.  Safe mode restores every kind, but a
function an iterator calls must be one safe mode lets a blob call.  Capture
refuses, naming the local, what it cannot take safely.
"""

from __future__ import annotations

import functools
import itertools as it
import json
import os
import subprocess
import sys
import textwrap
import threading
from typing import Any

import msgpack
import pytest
from msgpack import ExtType

import _iter_funcs as fx
import corosnap
from corosnap.codec._globals import WELLKNOWN
from corosnap.codec._tags import (
    NONE_EXT,
    T_ACCUMULATE,
    T_BATCHED,
    T_CALL_ITER,
    T_CHAIN,
    T_COMBINATIONS,
    T_COMPRESS,
    T_COUNT,
    T_CWR,
    T_CYCLE,
    T_DROPWHILE,
    T_FILTER,
    T_FILTERFALSE,
    T_GLOBAL,
    T_GROUPBY,
    T_GROUPER,
    T_ISLICE,
    T_MAP,
    T_PAIRWISE,
    T_PERMUTATIONS,
    T_PRODUCT,
    T_REDUCE,
    T_REPEAT,
    T_REVERSED,
    T_SEQITER,
    T_STARMAP,
    T_TAKEWHILE,
    T_TEE,
    T_TEE_DATA,
    T_TUPLE,
    T_ZIP_LONGEST,
)

pytestmark = pytest.mark.filterwarnings("error::DeprecationWarning")

PY = sys.version_info[:2]
TESTS = os.path.dirname(os.path.abspath(__file__))


def tag(kind: int) -> ExtType:
    return ExtType(0, bytes([kind]))


def wellknown(obj: Any) -> ExtType:
    return ExtType(5, bytes([next(i for i, x in enumerate(WELLKNOWN) if x is obj)]))


ITER = [tag(T_SEQITER), [1, 2, 3], 0]  # iter([1, 2, 3])


def TUP(*items: Any) -> list[Any]:  # noqa: N802 - reads like the constructor
    return [tag(T_TUPLE), *items]


def TEEDATA(*values: Any, link: Any = None) -> list[Any]:  # noqa: N802
    return [tag(T_TEE_DATA), *values, link, [tag(T_SEQITER), [7, 8], 0]]


GROUPBY = [tag(T_GROUPBY), ITER, None]
LEN = [tag(T_GLOBAL), "builtins", "len"]


def held_blob(fields: list[Any], kind: int) -> bytes:
    """A blob of ``holder(x)`` with ``x`` the tagged array ``[kind, *fields]``."""
    g = fx.holder(iter(()))
    next(g)
    tree = msgpack.unpackb(corosnap.dumps(g), strict_map_key=False)
    tree[-1] = [tag(kind), *fields]
    return msgpack.packb(tree)


def load_held(fields: list[Any], kind: int, **kw: Any) -> Any:
    g = corosnap.loads(held_blob(fields, kind), **kw)
    return g.gi_frame.f_locals["x"]


def test_the_harness_builds_working_iterators() -> None:
    x = load_held([ITER, 1, 3, 1, 0], T_ISLICE)
    assert list(x) == [2, 3]
    assert list(load_held([TEEDATA(1, 2), 1], T_TEE)) == [2, 7, 8]


HOSTILE: list[tuple[str, int, list[Any]]] = [
    ("count: not a number", T_COUNT, ["x"]),
    ("count: beyond ssize_t", T_COUNT, [2**63]),
    ("count: start and step not numbers", T_COUNT, ["a", 1]),
    ("count: three fields", T_COUNT, [1, 2, 3]),
    ("count: no field", T_COUNT, []),
    ("repeat: negative times", T_REPEAT, ["e", -1]),
    ("repeat: times not an int", T_REPEAT, ["e", "3"]),
    ("repeat: three fields", T_REPEAT, ["e", 1, 2]),
    ("cycle: saved not a list", T_CYCLE, [TUP(1), 0]),
    ("cycle: position past the items", T_CYCLE, [[1, 2], 2]),
    ("cycle: negative position", T_CYCLE, [[1, 2], -1]),
    ("cycle: input not an iterator", T_CYCLE, [[1], 0, 5]),
    ("cycle: position on the first pass", T_CYCLE, [[1, 2], 1, ITER]),
    ("cycle: first-pass flag not True", T_CYCLE, [[1], 0, ITER, False]),
    ("cycle: five fields", T_CYCLE, [[1], 0, ITER, True, 1]),
    ("islice: negative next", T_ISLICE, [ITER, -1, 5, 1, 0]),
    ("islice: stop below -1", T_ISLICE, [ITER, 0, -2, 1, 0]),
    ("islice: step 0", T_ISLICE, [ITER, 0, 5, 0, 0]),
    ("islice: negative count", T_ISLICE, [ITER, 0, 5, 1, -1]),
    ("islice: not an iterator", T_ISLICE, [[1, 2], 0, 5, 1, 0]),
    ("islice: three fields", T_ISLICE, [ITER, 0, 5]),
    ("chain: source not an iterator", T_CHAIN, [5]),
    ("chain: active not an iterator", T_CHAIN, [ITER, "x"]),
    ("chain: three fields", T_CHAIN, [ITER, ITER, ITER]),
    ("zip_longest: no fillvalue", T_ZIP_LONGEST, []),
    ("zip_longest: input not an iterator", T_ZIP_LONGEST, ["-", ITER, 5]),
    ("zip_longest: None as an input", T_ZIP_LONGEST, ["-", NONE_EXT]),
    ("accumulate: not an iterator", T_ACCUMULATE, [5, None, None]),
    ("accumulate: one field", T_ACCUMULATE, [ITER]),
    ("accumulate: a total and an unused initial", T_ACCUMULATE, [ITER, 7, None, 3]),
    ("pairwise: not an iterator", T_PAIRWISE, [5]),
    ("pairwise: three fields", T_PAIRWISE, [ITER, 1, 2]),
    ("compress: one field", T_COMPRESS, [ITER]),
    ("compress: selectors not an iterator", T_COMPRESS, [ITER, 5]),
    ("dropwhile: not an iterator", T_DROPWHILE, [None, 5]),
    ("dropwhile: flag not True", T_DROPWHILE, [None, ITER, 1]),
    ("dropwhile: one field", T_DROPWHILE, [None]),
    ("takewhile: flag not True", T_TAKEWHILE, [None, ITER, False]),
    ("filterfalse: not an iterator", T_FILTERFALSE, [None, 5]),
    ("starmap: one field", T_STARMAP, [None]),
    ("filter: not an iterator", T_FILTER, [None, "abc"]),
    ("tee: not a buffer", T_TEE, [ITER, 0]),
    ("tee: position past the values read", T_TEE, [TEEDATA(1, 2, 3), 4]),
    ("tee: negative position", T_TEE, [TEEDATA(1), -1]),
    ("tee: position past a full buffer", T_TEE, [TEEDATA(*range(57)), 58]),
    ("tee buffer: 58 values", T_TEE, [TEEDATA(*range(58)), 0]),
    ("tee buffer: a next buffer after a part-filled one", T_TEE,
     [TEEDATA(1, 2, link=TEEDATA(3)), 0]),
    ("tee buffer: next buffer not a buffer", T_TEE, [TEEDATA(*range(57), link=ITER), 0]),
    ("tee buffer: source not an iterator", T_TEE,
     [[tag(T_TEE_DATA), 1, None, [1, 2]], 0]),
    ("tee buffer: too short", T_TEE, [[tag(T_TEE_DATA), None], 0]),
    ("groupby: not an iterator", T_GROUPBY, [5, None]),
    ("groupby: a current key without a value", T_GROUPBY, [ITER, None, "a", "a"]),
    ("groupby: one field", T_GROUPBY, [ITER]),
    ("grouper: parent not a groupby", T_GROUPER, [ITER, "k"]),
    ("grouper: flag not True", T_GROUPER, [GROUPBY, "k", 1]),
    ("grouper: one field", T_GROUPER, [GROUPBY]),
    ("product: pools not a tuple", T_PRODUCT, [[TUP("a")]]),
    ("product: a pool not a tuple", T_PRODUCT, [TUP("ab")]),
    ("product: index past its pool", T_PRODUCT, [TUP(TUP("a", "b")), 2]),
    ("product: negative index", T_PRODUCT, [TUP(TUP("a", "b")), -1]),
    ("product: started with an empty pool", T_PRODUCT, [TUP(TUP()), 0]),
    ("product: one index too many", T_PRODUCT, [TUP(TUP("a")), 0, 0]),
    ("combinations: r past the pool", T_COMBINATIONS, [TUP("a", "b"), 3]),
    ("combinations: negative r", T_COMBINATIONS, [TUP("a", "b"), -1]),
    ("combinations: indices not increasing", T_COMBINATIONS, [TUP("a", "b", "c"), 2, 1, 1]),
    ("combinations: index past the pool", T_COMBINATIONS, [TUP("a", "b", "c"), 2, 0, 3]),
    ("combinations: pool not a tuple", T_COMBINATIONS, [["a"], 1]),
    ("combinations: too few indices", T_COMBINATIONS, [TUP("a", "b", "c"), 2, 0]),
    ("cwr: empty pool, r > 0", T_CWR, [TUP(), 1]),
    ("cwr: indices decreasing", T_CWR, [TUP("a", "b"), 2, 1, 0]),
    ("cwr: index past the pool", T_CWR, [TUP("a", "b"), 2, 0, 2]),
    ("permutations: not a permutation", T_PERMUTATIONS, [TUP("a", "b", "c"), 2, 0, 0, 1, 3, 2]),
    ("permutations: a cycle past n - i", T_PERMUTATIONS, [TUP("a", "b", "c"), 2, 0, 1, 2, 4, 2]),
    ("permutations: a zero cycle", T_PERMUTATIONS, [TUP("a", "b", "c"), 2, 0, 1, 2, 3, 0]),
    ("permutations: r past the pool", T_PERMUTATIONS, [TUP("a", "b"), 3]),
    ("permutations: too few fields", T_PERMUTATIONS, [TUP("a", "b", "c"), 2, 0, 1, 2, 3]),
    ("map: no input", T_MAP, [LEN]),
    ("map: input not an iterator", T_MAP, [None, 5]),
    ("reversed: not a sequence", T_REVERSED, [5, 0]),
    ("reversed: index below -1", T_REVERSED, [TUP(1), -2]),
    ("reversed: one field", T_REVERSED, [TUP(1)]),
    ("callable_iterator: not callable", T_CALL_ITER, [5, 0]),
    ("callable_iterator: three fields", T_CALL_ITER, [LEN, 0, 1]),
]
if PY >= (3, 12):
    HOSTILE += [
        ("batched: n 0", T_BATCHED, [ITER, 0]),
        ("batched: n not an int", T_BATCHED, [ITER, "2"]),
        ("batched: not an iterator", T_BATCHED, [5, 2]),
        ("batched: strict flag not True", T_BATCHED, [ITER, 2, 1]),
    ]
if PY == (3, 12):
    HOSTILE.append(("batched: strict before 3.13", T_BATCHED, [ITER, 2, True]))
if PY < (3, 14):
    HOSTILE.append(("map: strict before 3.14", T_MAP, [None, True, ITER]))
else:
    HOSTILE.append(("cycle: first-pass flag from 3.14", T_CYCLE, [[1], 0, ITER, True]))


@pytest.mark.parametrize(("kind", "fields"), [(k, f) for _, k, f in HOSTILE],
                         ids=[name for name, _, _ in HOSTILE])
def test_a_hostile_iterator_is_corrupt(kind: int, fields: list[Any]) -> None:
    with pytest.raises(corosnap.CorruptSnapshot):
        load_held(fields, kind)


def test_an_unknown_kind_is_corrupt() -> None:
    with pytest.raises(corosnap.CorruptSnapshot, match="unknown tag"):
        load_held([], 63)
    if PY < (3, 12):
        with pytest.raises(corosnap.CorruptSnapshot, match="unknown tag"):
            load_held([ITER, 2], T_BATCHED)


def ref(index: int) -> ExtType:
    return ExtType(1, index.to_bytes(2, "big"))


def test_a_long_chain_of_iterators_is_refused_before_freeing_it_could_overflow() -> None:
    """chain(chain(chain(...))) built through back-references: CPython frees
    such a chain recursively, so its depth is bounded like any other."""
    g = fx.holder(iter(()))
    next(g)
    tree = msgpack.unpackb(corosnap.dumps(g), strict_map_key=False)
    base = 0  # the memo index the first item of x gets
    while True:
        tree[-1] = [[1], ref(base)]
        probe = corosnap.loads(msgpack.packb(tree))  # kept alive: 3.13.0's frame
        x = probe.gi_frame.f_locals["x"]  # locals proxy crashes on a dead generator's frame
        if x[1] is x[0]:
            break
        base += 1
    # the list [1] is at base, its iterator at base + 1, chain k at base + 2 + k
    chains = [[tag(T_CHAIN), ref(base + 1 + k)] for k in range(3000)]
    tree[-1] = [[tag(T_SEQITER), [1], 0], *chains]
    with pytest.raises(corosnap.LimitExceeded):
        corosnap.loads(msgpack.packb(tree))


def memo_base() -> int:
    """The memo index the value of ``holder``'s local gets in a held blob."""
    g = fx.holder(iter(()))
    next(g)
    tree = msgpack.unpackb(corosnap.dumps(g), strict_map_key=False)
    base = 0
    while True:
        tree[-1] = [[1], ref(base)]
        probe = corosnap.loads(msgpack.packb(tree))
        x = probe.gi_frame.f_locals["x"]
        if x[1] is x[0]:
            return base - 1  # x itself comes just before its first item
        base += 1


def test_an_iterator_that_would_call_itself_is_corrupt() -> None:
    """CPython's C iterators call their inputs without a recursion check: an
    input cycle would overflow the C stack on the first next()."""
    me = ref(memo_base())
    cycles = [
        ("islice of itself", T_ISLICE, [me, 0, -1, 1, 0]),
        ("zip_longest of itself", T_ZIP_LONGEST, [None, ITER, me]),
        ("cycle of itself", T_CYCLE, [[], 0, me]),
        ("map over itself", T_MAP, [None, me]),
        ("islice -> pairwise -> islice", T_ISLICE, [[tag(T_PAIRWISE), me], 0, -1, 1, 0]),
        ("groupby over its own group", T_GROUPBY, [[tag(T_GROUPER), me, "k", True], None]),
        ("islice -> enumerate -> islice", T_ISLICE,
         [[tag(T_REDUCE), wellknown(enumerate), [me]], 0, -1, 1, 0]),
    ]
    for name, kind, fields in cycles:
        with pytest.raises(corosnap.CorruptSnapshot, match="reaches itself"):
            load_held(fields, kind)
        print(name, "refused")


RECURSE = textwrap.dedent('''
    import sys, msgpack
    import test_iterators_hostile as h
    me = h.ref(h.memo_base())
    cases = {
        "chain yielding itself": (h.T_CHAIN, [[h.tag(h.T_SEQITER), [me], 0]]),
        "chain yielding an islice of itself": (
            h.T_CHAIN, [[h.tag(h.T_SEQITER), [[h.tag(h.T_ISLICE), me, 0, -1, 1, 0]], 0]]),
        "starmap over itself": (h.T_STARMAP, [None, [h.tag(h.T_SEQITER), [me] * 5000, 0]]),
    }
    for name, (kind, fields) in cases.items():
        x = h.load_held(fields, kind, safe=True, allow=("_iter_funcs",))
        try:
            next(x)
        except RecursionError:
            print(name, "RecursionError")
''')


def test_a_chain_or_starmap_fed_itself_raises_instead_of_crashing(tmp_path: Any) -> None:
    """What a chain or starmap calls next() on comes from the items it
    reads, so no check at load sees it: restored ones relay those calls
    through Python, where recursion has a limit (CPython crashes otherwise)."""
    script = tmp_path / "recurse.py"
    script.write_text(RECURSE)
    env = dict(os.environ, PYTHONPATH=TESTS + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines() == [
        "chain yielding itself RecursionError",
        "chain yielding an islice of itself RecursionError",
        "starmap over itself RecursionError",
    ]


def test_restored_chains_and_starmaps_keep_their_real_inputs_in_the_blob() -> None:
    source = iter([[1, 2], [3]])
    ch = it.chain.from_iterable(source)
    next(ch)
    g = fx.holder(ch)
    next(g)
    g2 = corosnap.loads(corosnap.dumps(g))
    again = msgpack.unpackb(corosnap.dumps(g2), strict_map_key=False)
    assert again == msgpack.unpackb(corosnap.dumps(g), strict_map_key=False)
    assert next(g2) == [2, 3]


FUZZ = textwrap.dedent('''
    import gc, itertools as it, json, os, random, select, signal, sys, time, warnings
    warnings.simplefilter("error", DeprecationWarning)
    import msgpack
    import corosnap, _iter_funcs as fx
    import test_iterators_hostile as h
    from test_iterators import STATES

    seed, rounds = int(sys.argv[1]), int(sys.argv[2])
    rng = random.Random(seed)
    POOL = [None, True, False, 0, 1, -1, 2, 3, 56, 57, 58, 2**31, 2**63 - 1, -2**63,
            2**64 - 1, "s", b"b", 1.5, [], [1, 2], h.ITER, h.TUP(), h.TUP(h.TUP("a")),
            h.TUP("a", "b"), h.TEEDATA(1, 2), h.TEEDATA(*range(57)), h.GROUPBY, h.LEN,
            h.NONE_EXT, [h.tag(h.T_CHAIN), h.ITER], [h.tag(h.T_COUNT), 5],
            *(h.ref(i) for i in range(10))]  # back-references: the iterator itself, its parts

    def attempt(data, safe):
        # In a forked child: one byte once loads is done, one once resumed.
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            try:
                g2 = corosnap.loads(data, safe=safe, allow=("_iter_funcs",))
            except corosnap.CorosnapError as exc:
                os.write(w, b"R" + type(exc).__name__.encode())
                os._exit(0)
            except BaseException as exc:
                os.write(w, b"O" + type(exc).__name__.encode())
                os._exit(0)
            os.write(w, b"L")
            try:
                next(g2)
            except Exception:  # the generator's own business
                pass
            g2.close()
            del g2
            gc.collect()
            os.write(w, b"D")
            os._exit(0)
        os.close(w)
        out, deadline = b"", time.monotonic() + 3
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([r], [], [], left)[0]:
                os.kill(pid, signal.SIGKILL)
                break
            chunk = os.read(r, 64)
            if not chunk:
                break
            out += chunk
        os.close(r)
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status) and os.WTERMSIG(status) != signal.SIGKILL:
            return "crash " + signal.Signals(os.WTERMSIG(status)).name
        if out.startswith(b"R"):
            return "refused " + out[1:].decode()
        if out.startswith(b"O"):
            return "other " + out[1:].decode()
        if out == b"LD":
            return "restored"
        if out == b"L":
            # Restored, then next() ran on: the data says so (islice skipping
            # 2**62 items of a count(), filter(None, repeat(0))), as it
            # would in the program itself.
            return "restored, still running"
        return "hang in loads"

    outcomes = {}
    for n in range(rounds):
        g = fx.holder(STATES[n % len(STATES)][1]())
        next(g)
        tree = msgpack.unpackb(corosnap.dumps(g), strict_map_key=False)
        node = tree[-1]
        if not isinstance(node, list):
            continue
        for _ in range(rng.randint(1, 3)):
            op = rng.random()
            if op < 0.6 and len(node) > 1:
                node[rng.randrange(1, len(node))] = rng.choice(POOL)
            elif op < 0.8:
                node.insert(rng.randint(1, len(node)), rng.choice(POOL))
            elif len(node) > 1:
                del node[rng.randrange(1, len(node))]
        key = attempt(msgpack.packb(tree), rng.random() < 0.3)
        outcomes[key] = outcomes.get(key, 0) + 1
    print(json.dumps(outcomes))
''')


def test_random_fields_never_crash_the_interpreter(tmp_path: Any) -> None:
    """Random field changes to real iterator blobs, each loaded and iterated
    in a forked child: only refusals or working iterators, never a crash, an
    exception other than corosnap's from loads, or a hang in loads."""
    script = tmp_path / "fuzz_iterators.py"
    script.write_text(FUZZ)
    env = dict(os.environ, PYTHONPATH=TESTS + os.pathsep + os.environ.get("PYTHONPATH", ""),
               PYTHONFAULTHANDLER="1")
    rounds = int(os.environ.get("COROSNAP_ITER_FUZZ_ROUNDS", "600"))
    proc = subprocess.run([sys.executable, str(script), "1", str(rounds)], capture_output=True,
                          text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    outcomes = json.loads(proc.stdout.splitlines()[-1])
    bad = {k: v for k, v in outcomes.items()
           if k.startswith(("crash", "other", "hang")) or (k.startswith("refused") and k.split()[-1]
               not in ("CorruptSnapshot", "UnsafeSnapshot", "LimitExceeded", "RestoreError"))}
    assert not bad, outcomes
    assert outcomes.get("refused CorruptSnapshot", 0) > rounds // 6, outcomes
    assert outcomes.get("restored", 0) > rounds // 10, outcomes


# -- safe mode -------------------------------------------------------------------

SAFE = ["count_fast", "count_slow", "count_big", "repeat_n", "repeat_forever", "cycle",
        "islice", "chain", "chain_from_iterable", "zip_longest", "accumulate_plain",
        "pairwise", "compress", "dropwhile", "takewhile", "filterfalse", "tee", "groupby",
        "groupby_key", "product", "product_repeat", "permutations", "combinations",
        "combinations_with_replacement", "filter_", "reversed_", "callable_iterator",
        "nested", "shared", "lazy_chain", "hamming", "fibonacci"]
if PY >= (3, 12):
    SAFE.append("batched")


@pytest.mark.parametrize("fn", SAFE)
def test_safe_mode_restores_iterators_over_allowed_code(fn: str) -> None:
    n = next(steps for name, steps, _ in fx.CASES if name == fn)
    want, g = getattr(fx, fn)(), getattr(fx, fn)()
    for _ in range(n // 2):
        next(want), next(g)
    g2 = corosnap.loads(corosnap.dumps(g), safe=True, allow=("_iter_funcs",))
    assert [next(g2) for _ in range(n - n // 2 - 1)] == [next(want) for _ in range(n - n // 2 - 1)]


@pytest.mark.parametrize("fn", ["starmap", "map_two", "accumulate"])
def test_safe_mode_refuses_builtin_functions_held_as_values(fn: str) -> None:
    g = getattr(fx, fn)()
    next(g)
    with pytest.raises(corosnap.UnsafeSnapshot):
        corosnap.loads(corosnap.dumps(g), safe=True, allow=("_iter_funcs",))


PARTIAL_GETATTR = [tag(T_REDUCE), wellknown(functools.partial), [wellknown(getattr)]]

REFUSED_CALLS: list[tuple[str, int, list[Any]]] = [
    ("map(getattr, ...)", T_MAP, [wellknown(getattr), ITER, [tag(T_SEQITER), ["x"], 0]]),
    ("map(map, ...)", T_MAP, [wellknown(map), ITER]),
    ("filter(filter, ...)", T_FILTER, [wellknown(filter), ITER]),
    ("filterfalse(getattr, ...)", T_FILTERFALSE, [wellknown(getattr), ITER]),
    ("starmap(getattr, ...)", T_STARMAP, [wellknown(getattr), ITER]),
    ("dropwhile(getattr, ...)", T_DROPWHILE, [wellknown(getattr), ITER]),
    ("takewhile(getattr, ...)", T_TAKEWHILE, [wellknown(getattr), ITER]),
    ("accumulate(..., getattr)", T_ACCUMULATE, [ITER, None, wellknown(getattr)]),
    ("groupby(..., key=getattr)", T_GROUPBY, [ITER, wellknown(getattr)]),
    ("iter(getattr, ...)", T_CALL_ITER, [wellknown(getattr), 0]),
    ("map(partial(getattr), ...)", T_MAP, [PARTIAL_GETATTR, ITER]),
]


@pytest.mark.parametrize(("kind", "fields"), [(k, f) for _, k, f in REFUSED_CALLS],
                         ids=[name for name, _, _ in REFUSED_CALLS])
def test_safe_mode_refuses_an_iterator_that_would_call_a_dangerous_function(
        kind: int, fields: list[Any]) -> None:
    with pytest.raises(corosnap.UnsafeSnapshot, match="calling"):
        load_held(fields, kind, safe=True, allow=("_iter_funcs",))
    load_held(fields, kind)  # the default mode (trusted input) restores it


@pytest.mark.parametrize("func", [str, int, bool, iter, zip])
def test_safe_mode_lets_iterators_call_harmless_builtins(func: Any) -> None:
    digits = [tag(T_SEQITER), ["1", "23"], 0]
    x = load_held([wellknown(func), digits], T_MAP, safe=True, allow=("_iter_funcs",))
    lazy = func in (iter, zip)
    assert [list(v) if lazy else v for v in x] == [
        list(v) if lazy else v for v in map(func, ["1", "23"])]


@pytest.mark.parametrize("func", [tuple, list, set, frozenset, dict, bytes, bytearray])
def test_safe_mode_refuses_functions_that_consume_an_item(func: Any) -> None:
    """An item may be an iterator; consuming it from C, the map could call its
    own next() again without any recursion check."""
    with pytest.raises(corosnap.UnsafeSnapshot, match="calling"):
        load_held([wellknown(func), ITER], T_MAP, safe=True, allow=("_iter_funcs",))


def test_safe_mode_lets_filter_test_truth() -> None:
    for func in (None, wellknown(bool)):
        x = load_held([func, [tag(T_SEQITER), [0, 1, "", "a"], 0]], T_FILTER, safe=True,
                      allow=("_iter_funcs",))
        assert list(x) == [1, "a"]


# -- what capture refuses ----------------------------------------------------------

def consumer(t: Any) -> Any:
    for x in t:  # noqa: UP028 - the tee on a for loop's stack
        yield x


def sneaky_source(box: list[Any]) -> Any:
    yield 1
    box.append(corosnap.dumps(box[0]))  # while the tee's buffer waits for this value
    yield 2


def test_a_tee_whose_source_is_running_is_refused_naming_the_local() -> None:
    box: list[Any] = []
    t1, t2 = it.tee(sneaky_source(box))
    g = consumer(t2)
    box.append(g)
    assert next(g) == 1
    next(t1)
    with pytest.raises(corosnap.SnapshotError,
                       match=r"local 't'.*itertools._tee_dataobject.*source iterator is running"):
        next(t1)


class MyCount(it.count):
    pass


def test_a_subclass_of_an_itertools_type_is_refused_without_pickling_it() -> None:
    g = fx.holder(MyCount(3))
    next(g)
    with pytest.raises(corosnap.SnapshotError,
                       match=r"local 'x'.*MyCount: a subclass of itertools.count"):
        corosnap.dumps(g)


class Inner:
    def __init__(self) -> None:
        self.lock = threading.Lock()


class Outer:
    def __init__(self) -> None:
        self.inner = Inner()


def test_the_fallback_pickler_is_tried_once_and_said_once() -> None:
    g = fx.holder([Outer()])
    next(g)
    with pytest.raises(corosnap.SnapshotError) as info:
        corosnap.dumps(g)
    message = str(info.value)
    assert message.count("the fallback pickler failed too") == 1, message
    assert (f"cannot serialize {__name__}.Outer: cannot serialize {__name__}.Inner"
            in message), message


def test_an_iterator_inside_a_fallback_pickled_value() -> None:
    """An instance of a class defined in a function is pickled (cloudpickle);
    the count and tee inside go through corosnap's reducer, not itertools'."""
    class Local:
        pass

    obj = Local()
    obj.c = it.count(5)  # type: ignore[attr-defined]
    next(obj.c)  # type: ignore[attr-defined]
    obj.t = it.tee(range(4))[0]  # type: ignore[attr-defined]
    obj.z = it.zip_longest([1], "ab")  # type: ignore[attr-defined]
    next(obj.z)  # type: ignore[attr-defined]

    def take(o: Any) -> Any:
        yield "ready"
        yield next(o.c), list(o.t), list(o.z)

    g = take(obj)
    next(g)
    for pickler in ("cloudpickle", "dill"):
        pytest.importorskip(pickler)
        g2 = corosnap.loads(corosnap.dumps(g, pickler=pickler))
        assert next(g2) == (6, [0, 1, 2, 3], [(None, "b")])
