"""Objects a blob could make reach themselves through references CPython
follows without its recursion guard (a partial calling itself, an iterator
advancing itself, slices hashed through tuples), and the cycles real code
makes, which must keep loading.

A hole here is a segfault, so each hostile blob is loaded and used in a fresh
interpreter that prints ``OK`` when ``loads`` refused it with a
``CorosnapError`` (the test then checks which and what it named) or the
restored object was called, iterated, hashed and collected without harm.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import textwrap
from typing import Any

import msgpack
import pytest
from msgpack import ExtType

import corosnap
from corosnap.codec import _decoder

from . import _unguarded as ug

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PRELUDE = """
import functools, gc, sys
import msgpack
from msgpack import ExtType as X
import corosnap
from tests import _unguarded as ug

def tag(kind):
    return X(0, bytes([kind]))

def ref(i):
    return X(1, i.to_bytes(4, "big"))

ITER, PARTIAL, SLICE = X(5, bytes([0])), X(5, bytes([12])), X(5, bytes([13]))
T_TUPLE, T_SET, T_GLOBAL, T_REDUCE, T_SEQITER, T_METHOD = 1, 2, 6, 11, 15, 21
ADD = [tag(T_GLOBAL), "tests._unguarded", "add"]

def tree_of(gen):
    return msgpack.unpackb(corosnap.dumps(gen), strict_map_key=False)

def holder_tree(value):
    # memo 0 is the generator, 1 the first object of the value
    g = ug.holder(0); next(g)
    t = tree_of(g)
    t[5] = value
    return t

def use(v, depth=0):
    # what user code does with a value: call it, iterate it, hash it, repr it
    for act in (lambda: v(5), lambda: next(iter(v)), lambda: hash(v), lambda: repr(v)):
        try:
            act()
        except Exception:
            pass
    if depth < 2 and type(v) in (list, tuple):
        for x in v:
            use(x, depth + 1)

def expect(tree, safe, allow=("tests._unguarded",), warm=False):
    blob = msgpack.packb(tree, use_bin_type=True)
    if warm:
        corosnap.loads(corosnap.dumps(_warm())).close()  # its next restore takes the C engine
    try:
        g = corosnap.loads(blob, safe=safe, allow=allow if safe else ())
    except corosnap.CorosnapError as exc:
        print("REFUSED", type(exc).__name__, exc)
        print("OK")
        return
    try:
        v = g.send(None)
        use(v)
    except Exception:
        pass
    del g
    gc.collect()
    print("RESTORED")
    print("OK")
"""


def run_child(body: str, warm: str = "ug.holder(0)") -> str:
    script = PRELUDE + f"\ndef _warm():\n    g = {warm}; next(g); return g\n" + \
        textwrap.dedent(body)
    proc = subprocess.run([sys.executable, "-W", "ignore", "-c", script], capture_output=True,
                          text=True, timeout=120, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": REPO})
    tail = (proc.stdout + proc.stderr)[-2000:]
    assert proc.returncode == 0, f"child died with {proc.returncode}:\n{tail}"
    assert proc.stdout.strip().endswith("OK"), tail
    return proc.stdout


def _started(gen: Any) -> Any:
    next(gen)
    return gen


MODES = [pytest.param(True, False, id="safe"), pytest.param(False, False, id="default"),
         pytest.param(False, True, id="default-c-path")]


@pytest.mark.parametrize("safe,warm", MODES)
def test_partial_whose_func_is_itself_is_refused_naming_the_local(safe: bool,
                                                                  warm: bool) -> None:
    # The reported blob: a partial's state decoded after the partial is in the
    # memo, its func a back-reference to the partial; calling it recursed in
    # C (partial_vectorcall) until the stack overflowed, on 3.11-3.15.
    out = run_child(f"""
        g = ug.caller(functools.partial(ug.add, 17)); next(g)
        t = tree_of(g)
        # local f: [tag 11, partial, [[global add]], [tag 1, ref 1, (17,), {{}}, None]]
        t[5][3][1] = ref(2)
        blob = msgpack.packb(t, use_bin_type=True)
        try:
            if {warm}:
                corosnap.loads(corosnap.dumps(g)).close()
            g2 = corosnap.loads(blob, safe={safe}, allow=("tests._unguarded",))
        except corosnap.CorosnapError as exc:
            print("REFUSED", type(exc).__name__, exc)
            print("OK")
        else:
            g2.send("go")
            print("OK")
    """)
    assert "REFUSED CorruptSnapshot tests._unguarded.caller(): local 'f': " \
           "an object that reaches itself (functools.partial -> functools.partial)" in out


@pytest.mark.parametrize("safe,warm", MODES)
def test_partials_calling_each_other_are_refused(safe: bool, warm: bool) -> None:
    # P.func = Q (built inside P's state), Q.func = P (P still being built).
    out = run_child(f"""
        Q = [tag(T_REDUCE), PARTIAL, [ref(2)], [tag(T_TUPLE), ref(3), [tag(T_TUPLE)], {{}}, None]]
        P = [tag(T_REDUCE), PARTIAL, [ADD], [tag(T_TUPLE), Q, [tag(T_TUPLE), 1], {{}}, None]]
        expect(holder_tree([P]), safe={safe}, warm={warm})
    """)
    assert "REFUSED CorruptSnapshot" in out
    assert "functools.partial -> functools.partial -> functools.partial" in out


@pytest.mark.parametrize("safe,warm", MODES)
def test_partial_and_callable_iterator_loop_is_refused(safe: bool, warm: bool) -> None:
    # partial(list.extend, iter(P, None)): P's arguments hold an iterator that
    # calls P.  No real partial can hold, in its arguments, an object built
    # from itself.
    out = run_child(f"""
        P = [tag(T_REDUCE), PARTIAL, [[tag(T_METHOD), ref(1), "extend"]],
             [tag(T_TUPLE), ref(2), [tag(T_TUPLE), [tag(T_REDUCE), ITER, [ref(3), None]]],
              {{}}, None]]
        expect(holder_tree([P]), safe={safe}, warm={warm})
    """)
    assert "functools.partial -> callable_iterator -> functools.partial" in out


@pytest.mark.parametrize("safe", [True, False])
def test_itertools_object_advancing_itself_is_refused(safe: bool) -> None:
    # itertools.chain.__setstate__((source, active)) with active = the chain
    # (3.11-3.13; 3.14 dropped itertools pickling, so the state is refused).
    out = run_child(f"""
        CH = [tag(T_REDUCE), [tag(T_GLOBAL), "itertools", "chain"], [],
              [tag(T_TUPLE), [tag(T_REDUCE), ITER, [[1, 2]]], ref(3)]]
        expect(holder_tree([CH]), safe={safe}, allow=("tests._unguarded", "itertools"))
    """)
    assert "REFUSED" in out
    if sys.version_info < (3, 14):
        assert "reaches itself (itertools.chain -> itertools.chain)" in out


# A chain whose source yields the chain, directly or through other iterators:
# chain_next calls iter() and next() on what its source yields, which no check
# can see ahead (SIGSEGV on 3.11, found by the campaign).  A restored chain
# gets its inputs through Python relays, so using it ends in RecursionError.
# (3.14 dropped chain.__setstate__: there the state is refused.)
SOURCES = {
    "tuple-iterator": "[tag(T_SEQITER), [tag(T_TUPLE), ref(3)], 0]",
    "islice": '[tag(T_REDUCE), [tag(T_GLOBAL), "itertools", "islice"], '
              '[[tag(T_SEQITER), [tag(T_TUPLE), ref(3)], 0], None]]',
    "nested-chain": '[tag(T_REDUCE), [tag(T_GLOBAL), "itertools", "chain"], [], '
                    '[tag(T_TUPLE), [tag(T_SEQITER), [tag(T_TUPLE), [ref(3)]], 0]]]',
}


@pytest.mark.parametrize("source", sorted(SOURCES))
@pytest.mark.parametrize("safe,warm", MODES)
def test_itertools_chain_whose_source_yields_the_chain_does_not_crash(
        safe: bool, warm: bool, source: str) -> None:
    out = run_child(f"""
        CH = [tag(T_REDUCE), [tag(T_GLOBAL), "itertools", "chain"], [],
              [tag(T_TUPLE), {SOURCES[source]}]]
        expect(holder_tree([CH]), safe={safe}, allow=("tests._unguarded", "itertools"),
               warm={warm})
        import itertools
        if sys.version_info < (3, 14):
            g = corosnap.loads(msgpack.packb(holder_tree([CH]), use_bin_type=True),
                               safe={safe}, allow=("tests._unguarded", "itertools"))
            chain = g.send(None)[0]
            try:
                next(chain)
            except RecursionError:
                print("RECURSION")
        print("OK")
    """)
    if sys.version_info < (3, 14):
        assert "RESTORED" in out and "RECURSION" in out, out
    else:
        assert "REFUSED" in out


def test_a_chain_whose_active_iterator_yields_the_chain_still_loads() -> None:
    # The active iterator's items are only returned, never advanced: harmless,
    # and not refused (only the source's items are followed).
    out = run_child("""
        CH = [tag(T_REDUCE), [tag(T_GLOBAL), "itertools", "chain"], [],
              [tag(T_TUPLE), [tag(T_REDUCE), ITER, [[1, 2]]],
               [tag(T_SEQITER), [tag(T_TUPLE), ref(3)], 0]]]
        expect(holder_tree([CH]), safe=True, allow=("tests._unguarded", "itertools"))
    """)
    if sys.version_info < (3, 14):
        assert "RESTORED" in out


def test_a_tuple_iterator_over_values_that_reach_no_iterator_still_loads() -> None:
    # The same shape with a harmless item: restored and used.
    out = run_child("""
        IT = [tag(T_SEQITER), [tag(T_TUPLE), 1, [tag(T_REDUCE), ITER, [[1, 2]]], ref(1)], 0]
        expect(holder_tree([IT]), safe=True, allow=("tests._unguarded",))
    """)
    assert "RESTORED" in out


@pytest.mark.parametrize("safe", [True, False])
def test_slices_and_tuples_hashed_300000_deep_are_refused(safe: bool) -> None:
    # Flat in the blob, deep in memory: slice((slice((...),),),).  CPython
    # 3.12+ hashes a slice's fields, and tuples' items (up to 3.13) without
    # the recursion guard; tuples used to reset the nesting count, so putting
    # the last slice in a set segfaulted loads itself on 3.12 and 3.13.
    out = run_child(f"""
        n = 300000
        items = [[tag(T_REDUCE), SLICE, [0, 1, 2]]]
        for i in range(1, n):
            items.append([tag(T_REDUCE), SLICE, [[tag(T_TUPLE), ref(i)], 1, 2]])
        items.append([tag(T_SET), ref(n)])
        expect(holder_tree(items), safe={safe})
    """)
    assert "REFUSED LimitExceeded" in out


def test_short_slice_and_tuple_chains_still_load() -> None:
    s: Any = slice(0, 1, 2)
    for _ in range(50):
        s = slice((s,), 1, 2)
    g = _started(ug.holder([s, (s, s)]))
    g2 = corosnap.loads(corosnap.dumps(g), safe=True, allow=("tests._unguarded",))
    v = g2.send(None)
    assert v[0] == s and v[1][0] is v[0]
    if sys.version_info >= (3, 12):
        assert hash(v[0]) == hash(s)


# -- the cycles real code makes keep loading -----------------------------------


def _cycles() -> dict[str, Any]:
    lst: list[Any] = [1]
    lst.append(lst)
    d: dict[str, Any] = {}
    d["self"] = d
    callbacks: list[Any] = []
    p = functools.partial(ug.run_all, callbacks)
    callbacks.append(p)
    tagged = functools.partial(ug.add, 1)
    tagged.me = tagged  # type: ignore[attr-defined]
    return {"list": lst, "dict": d, "callbacks": callbacks, "tagged": tagged,
            "node": ug.Node(), "pair": ug.Pair(), "nested": [lst, d, (lst, d)]}


def _check(v: dict[str, Any]) -> None:
    assert v["list"][1] is v["list"]
    assert v["dict"]["self"] is v["dict"]
    assert v["callbacks"][0]() == 1 and v["callbacks"][0].args[0] is v["callbacks"]
    assert v["tagged"].me is v["tagged"] and v["tagged"](2) == 3
    node = v["node"]
    assert node.me is node and node.cb() == 2 and node.cb.func.__self__ is node
    pair = v["pair"]
    assert pair.other is pair and pair.cb() == "pong"
    assert v["nested"][2][0] is v["list"]


@pytest.mark.parametrize("safe", [True, False])
def test_cycles_real_code_makes_still_load(safe: bool) -> None:
    g = _started(ug.holder(_cycles()))
    blob = corosnap.dumps(g)
    for _ in range(2):  # the second restore of the code takes the C engine (when loaded)
        g2 = corosnap.loads(blob, safe=safe, allow=("tests._unguarded",))
        _check(g2.send(None))


def test_recursive_closure_and_self_holding_generator_still_load() -> None:
    g = _started(ug.closure_counter())
    g2 = corosnap.loads(corosnap.dumps(g), safe=True, allow=("tests._unguarded",))
    assert g2.send(None) == 12
    box: list[Any] = []
    h = _started(ug.holder(box))
    box.append(h)
    h2 = corosnap.loads(corosnap.dumps(h), safe=True, allow=("tests._unguarded",))
    assert h2.send(None)[0] is h2


def test_many_partials_over_shared_values_check_in_linear_time() -> None:
    # Every finished partial is walked once ("settled"): 20,000 partials
    # sharing one func and one iterator stay far below the walk budget.
    shared = functools.partial(ug.add, 1)
    it = iter(range(3))
    ps = [functools.partial(shared, i, it) for i in range(20_000)]
    g = _started(ug.holder(ps))
    blob = corosnap.dumps(g)
    dec_budget: list[int] = []
    orig = _decoder.Decoder._check_no_unguarded_cycle

    def spy(self: Any, obj: Any) -> None:
        orig(self, obj)
        dec_budget.append(self.walk_budget)

    _decoder.Decoder._check_no_unguarded_cycle = spy  # type: ignore[method-assign]
    try:
        g2 = corosnap.loads(blob, safe=True, allow=("tests._unguarded",))
    finally:
        _decoder.Decoder._check_no_unguarded_cycle = orig  # type: ignore[method-assign]
    assert len(g2.send(None)) == 20_000
    assert _decoder.MAX_CYCLE_WALK - dec_budget[-1] < 5 * 20_000


def _tag(kind: int) -> ExtType:
    return ExtType(0, bytes([kind]))


def _ref(i: int) -> ExtType:
    return ExtType(1, i.to_bytes(4, "big"))


def test_cycle_walk_budget_is_a_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    # Partials built inside an unfinished partial O's state (in a list: no
    # cycle), each holding O and the one before: none can be settled while O
    # is open, so each check walks them all again (quadratic).  The budget
    # turns that into a refusal.
    partial_ = ExtType(5, bytes([12]))
    add = [_tag(6), "tests._unguarded", "add"]
    k = 60
    # memo: 0 the generator, 1 the local's list, 2 add, 3 O, 4 the list, 5.. the partials
    inner = [[_tag(11), partial_, [_ref(2)],
              [_tag(1), _ref(2), [_tag(1), _ref(3), *([_ref(4 + j)] if j else [])], None, None]]
             for j in range(k)]
    o = [_tag(11), partial_, [add], [_tag(1), _ref(2), [_tag(1), inner], {}, None]]
    g = _started(ug.holder(0))
    t = msgpack.unpackb(corosnap.dumps(g), strict_map_key=False)
    t[5] = [o]
    loaded = corosnap.loads(_raw(t), safe=True, allow=("tests._unguarded",)).send(None)[0]
    assert len(loaded.args[0]) == k
    monkeypatch.setattr(_decoder, "MAX_CYCLE_WALK", k * k // 4)
    with pytest.raises(corosnap.LimitExceeded, match="cycles took more than"):
        corosnap.loads(_raw(t), safe=True, allow=("tests._unguarded",))


def test_follows_unguarded_tells_c_from_python() -> None:
    f = _decoder.follows_unguarded
    assert f(functools.partial) and f(type(iter(int, 1))) and f(enumerate) and f(zip)
    assert not f(ug.Node) and not f(ug.Pair) and not f(object) and not f(ValueError)

    class PyPartial(functools.partial):
        def __call__(self, *a: Any) -> Any:
            return super().__call__(*a)

    class CPartial(functools.partial):
        pass

    assert not f(PyPartial) and f(CPartial)


def _raw(tree: Any) -> bytes:
    return msgpack.packb(tree, use_bin_type=True)


def test_error_names_the_stack_slot_or_local() -> None:
    g = _started(ug.caller(functools.partial(ug.add, 17)))
    t = msgpack.unpackb(corosnap.dumps(g), strict_map_key=False)
    t[5] = [ExtType(0, bytes([8])), [ExtType(0, bytes([8]))]]  # a cell holding a cell
    with pytest.raises(corosnap.CorruptSnapshot,
                       match=r"^tests\._unguarded\.caller\(\): local 'f': a cell holding a cell"):
        corosnap.loads(_raw(t))


# -- constructors given ints they convert in quadratic time ---------------------


def test_safe_mode_refuses_ints_past_the_interpreters_digit_limit() -> None:
    # decimal.Decimal(int) converts quadratically: a 200 KB int took 10 s.
    # Safe mode bounds the ints it passes to constructors as CPython bounds
    # int <-> str conversions (sys.get_int_max_str_digits()).
    import decimal

    g = _started(ug.holder(decimal.Decimal(7)))
    t = msgpack.unpackb(corosnap.dumps(g), strict_map_key=False)
    big = 10 ** 6000
    t[5][2] = [ExtType(2, big.to_bytes(big.bit_length() // 8 + 1, "little", signed=True))]
    allow = ("tests._unguarded", "decimal")
    with pytest.raises(corosnap.UnsafeSnapshot,
                       match=r"local 'v': safe mode refused to call 'Decimal' with an int of "
                             r"19932 bits \(more than sys.get_int_max_str_digits\(\) = "):
        corosnap.loads(_raw(t), safe=True, allow=allow)
    assert corosnap.loads(_raw(t)).send(None) == decimal.Decimal(big)  # default mode: trusted
    old = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        assert corosnap.loads(_raw(t), safe=True, allow=allow).send(None) == decimal.Decimal(big)
    finally:
        sys.set_int_max_str_digits(old)
    small = _started(ug.holder(2**14000))  # stored natively (EXT_BIGINT), never an argument
    assert corosnap.loads(corosnap.dumps(small), safe=True, allow=allow).send(None) == 2**14000
