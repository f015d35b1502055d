"""The fuzzing campaign, small and seeded, as part of the suite.

``python -m corosnap_fuzz`` (``make fuzz``) runs the long campaign; here a few thousand
inputs must end in ``rejected`` or ``restored`` only.  The harness itself is
tested with a stand-in ``loads`` (the children are forked, so a monkeypatch
made before the pool starts is what they run), and hypothesis drives
blob-shaped documents through the same forked runner.
"""

from __future__ import annotations

import functools
import gc
import importlib.util
import os
import random
import signal
import sys
import tempfile
import time

import pytest
from hypothesis import HealthCheck, given, settings
from msgpack import ExtType

import corosnap
from corosnap_fuzz import fuzz, zoo

CAMPAIGN_INPUTS = int(os.environ.get("COROSNAP_FUZZ_INPUTS", "3000"))


def describe(report: fuzz.Report) -> str:
    lines = [report.table(), ""]
    for f in report.findings.values():
        lines.append(f"{f.key}: input #{f.index} ({f.input.origin}), safe={f.input.safe}, "
                     f"script={f.input.script}\n  {f.input.data.hex()[:400]}")
    return "\n".join(lines)


def test_seeded_campaign_has_no_failures():
    report = fuzz.run_campaign(CAMPAIGN_INPUTS, seed=20261123, jobs=2, timeout=10.0)
    assert report.corpus_failures == []
    assert report.counts["rejected"] + report.counts["restored"] > 0
    assert report.counts["crash"] == 0, describe(report)
    assert report.counts["hang"] == 0, describe(report)
    assert report.counts["memoryerror"] == 0, describe(report)
    assert report.counts["other"] == 0, describe(report)


def test_inputs_are_a_function_of_seed_and_index():
    corpus = fuzz.get_corpus()
    for i in (0, 1, 17, 999, 123456):
        a, b = fuzz.make_input(7, i, corpus), fuzz.make_input(7, i, corpus)
        assert (a.data, a.safe, a.script, a.origin) == (b.data, b.safe, b.script, b.origin)
    assert fuzz.make_input(7, 1, corpus).data != fuzz.make_input(8, 1, corpus).data


def test_corpus_covers_every_scenario_and_state():
    names = {s.name.split("@")[0] for s in fuzz.get_corpus().seeds}
    missing = {sc.name for sc in zoo.SCENARIOS} - names
    assert not missing, missing
    assert any(s.name.endswith("@0") for s in fuzz.get_corpus().seeds)  # unstarted
    assert any("/signed" in s.name for s in fuzz.get_corpus().seeds)


def test_mutators_produce_distinct_inputs():
    corpus = fuzz.get_corpus()
    inputs = [fuzz.make_input(3, i, corpus) for i in range(400)]
    assert len({x.data for x in inputs}) > 350
    ops = " ".join(x.origin for x in inputs)
    for name in ("truncate", "bitflip", "splice", "position", "stack", "ref", "swap_frames",
                 "generate", "ext", "tag", "deep", "lying_length", "cycle"):
        assert name in ops, name


def test_inputs_come_in_both_modes():
    corpus = fuzz.get_corpus()
    safe = sum(fuzz.make_input(4, i, corpus).safe for i in range(400))
    assert 150 < safe < 250


@pytest.mark.filterwarnings("ignore:coroutine .* was never awaited:RuntimeWarning")
def test_memo_walk_follows_the_decoders_memo(monkeypatch):
    # The cycle mutator aims back-references by memo index: MemoWalk must give
    # every object the index the decoder gives it (counted where the root
    # frame is about to be written, on the Python path safe mode takes).
    from corosnap.codec._decoder import Decoder

    sizes: list[int] = []
    finish = Decoder.finish

    def spy(self):
        sizes.append(len(self.memo))
        finish(self)

    monkeypatch.setattr(Decoder, "finish", spy)
    monkeypatch.setattr(sys, "unraisablehook", lambda _u: None)  # zoo generators on close
    checked = 0
    for s in fuzz.get_corpus().seeds:
        tree = fuzz.unpack(s.blob)
        if tree[0].code != fuzz.EXT_HEADER:
            continue
        sizes.clear()
        try:
            corosnap.loads(s.blob, safe=True, allow=fuzz.SAFE_ALLOW)
        except corosnap.CorosnapError:
            continue
        assert sizes and sizes[-1] == fuzz.memo_walk(tree).memo, s.name
        checked += 1
    assert checked > 250


def test_cycle_mutator_aims_at_objects_still_being_built():
    corpus = fuzz.get_corpus()
    seed = next(s for s in corpus.seeds if s.name == "uses_callables@1")
    tree = fuzz.unpack(seed.blob)
    w = fuzz.memo_walk(tree)
    # the partials' own state parts, aimed at the partial itself
    assert len({target for _c, _k, target in w.state_sites}) >= 4
    def refs(t):
        return sum(type(c[k]) is ExtType and c[k].code == fuzz.EXT_REF
                   for c, k in fuzz.nodes(t, limit=100_000))

    base = refs(tree)
    more = 0
    for i in range(50):
        t = fuzz.unpack(seed.blob)
        r = random.Random(i)
        assert fuzz.t_cycle(r, t, fuzz.Gen(r, corpus))
        more += refs(t) > base
    assert more >= 40


# -- the harness, with a stand-in loads -------------------------------------


def _pool_with(monkeypatch: pytest.MonkeyPatch, fake, timeout: float = 1.0):
    monkeypatch.setattr(corosnap, "loads", fake)
    workdir = tempfile.mkdtemp(prefix="corosnap-fuzz-test-")
    ctx = fuzz.Context(fuzz.get_corpus(), 0, timeout, 10.0, 512, workdir)
    return fuzz.Pool(ctx, 1)


def _fake(behaviour: str):
    def loads(data, **kwargs):
        if behaviour == "segv":
            os.kill(os.getpid(), signal.SIGSEGV)
        if behaviour == "sleep":
            time.sleep(30)
        if behaviour == "memory":
            return bytearray(2**40)
        if behaviour == "exit":
            raise SystemExit(3)
        if behaviour == "corrupt":
            raise corosnap.CorruptSnapshot("no")
        return zoo.loop_range(3)

    return loads


@pytest.mark.parametrize("behaviour, outcome", [
    ("segv", "crash"), ("sleep", "hang"), ("memory", "memoryerror"), ("exit", "other"),
    ("corrupt", "rejected"), ("restore", "restored"),
])
def test_harness_classifies_outcomes(monkeypatch, behaviour, outcome):
    with _pool_with(monkeypatch, _fake(behaviour)) as pool:
        inp = fuzz.Input(b"\x90", False, 1, "test")
        assert pool.run_one(inp)[0] == outcome
        # the pool goes on after a dead or killed child
        monkeypatch.setattr(corosnap, "loads", _fake("corrupt"))
        assert pool.run_one(inp)[0] in (outcome, "rejected")


class _SlowRepr:
    def __repr__(self):
        time.sleep(30)
        return "slow"


def _holding(value):
    def loads(data, **kwargs):
        return zoo.holds(value)
    return loads


def test_harness_uses_restored_values_and_a_crash_names_the_use(monkeypatch):
    # A partial that is its own func, made in pure Python: calling it
    # overflows the C stack.  The harness calls it before resuming the
    # generator that holds it, and the bucket says so.
    p = functools.partial(zoo.double)
    p.__setstate__((p, (), {}, None))
    with _pool_with(monkeypatch, _holding([1, {"k": p}])) as pool:
        outcome, phase, detail = pool.run_one(fuzz.Input(b"\x90", False, 1, "test"))
    assert (outcome, phase) == ("crash", "")
    assert fuzz.bucket(outcome, phase, detail) == "SIGSEGV in call"


def test_harness_names_what_hung(monkeypatch):
    with _pool_with(monkeypatch, _holding(_SlowRepr())) as pool:
        res = pool.run_one(fuzz.Input(b"\x90", False, 1, "test"))
    assert res == ("hang", "use", "use: repr _SlowRepr")
    assert fuzz.bucket(*res) == "hang in use (use: repr _SlowRepr)"


def test_engines_load_every_input_through_each_and_compare():
    # Fresh worker interpreters per engine; while both run the same engine
    # code, every input must end the same way in each.
    report = fuzz.run_campaign(60, seed=5, jobs=1, timeout=5.0, engines=("c", "python"))
    assert report.counts["differ"] == 0, report.table()
    assert sum(report.counts[o] for o in ("rejected", "restored")) == 60
    sig = fuzz._signature
    assert sig("rejected", "loads", "CorruptSnapshot: x", "") == \
        sig("rejected", "loads", "CorruptSnapshot: y", "")
    assert sig("restored", "gc", "", "y:1|y:2") != sig("restored", "gc", "", "y:1|y:3")
    assert sig("rejected", "loads", "CorruptSnapshot: x", "") != \
        sig("rejected", "loads", "UnsafeSnapshot: x", "")


def test_crash_bucket_names_signal_and_step():
    fault = ('Fatal Python error: Segmentation fault\n\nCurrent thread 0x1 (most recent call '
             'first):\n  File "/x/zoo.py", line 3 in <genexpr>\n'
             '  File "/x/fuzz.py", line 9 in _act_close\n  File "/x/fuzz.py", line 10 in '
             '_drive\n')
    key = fuzz.crash_key(signal.SIGSEGV, fault)
    assert key == "SIGSEGV in close at zoo.py:<genexpr>"


def test_minimizer_shrinks_a_crashing_input(monkeypatch):
    # Stand-in: "crashes" whenever the blob still contains the byte 0xAB.
    def loads(data, **kwargs):
        if b"\xab" in data:
            os.kill(os.getpid(), signal.SIGSEGV)
        raise corosnap.CorruptSnapshot("no")

    with _pool_with(monkeypatch, loads) as pool:
        inp = fuzz.Input(bytes(range(40)) + b"\xab" + bytes(20), False, 0, "test")
        small = fuzz.minimize_input(pool, inp, "crash", budget=400)
        assert small.data == b"\xab"


# -- hypothesis: blob-shaped documents through the forked runner -------------


@pytest.fixture(scope="module")
def pool():
    workdir = tempfile.mkdtemp(prefix="corosnap-fuzz-hyp-")
    ctx = fuzz.Context(fuzz.get_corpus(), 0, 5.0, 30.0, 1024, workdir)
    with fuzz.Pool(ctx, 1) as p:
        yield p


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                 HealthCheck.data_too_large])
@given(blob=fuzz.blob_strategy())
def test_generated_blobs_are_refused_or_restored(pool, blob):
    for safe in (False, True):
        outcome, phase, detail = pool.run_one(fuzz.Input(blob, safe, 12345, "hypothesis"))
        assert outcome in ("rejected", "restored"), (outcome, phase, detail[:500], blob.hex())


# -- memory --------------------------------------------------------------------


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def _zoo_objects() -> list:
    """One suspended object per scenario that dumps (advanced by one step)."""
    out = []
    for sc in zoo.SCENARIOS:
        obj = sc.make()
        if sc.steps and not fuzz._advance(obj, sc.steps[:1]):
            continue
        try:
            corosnap.dumps(obj)
        except corosnap.SnapshotError:
            continue
        out.append(obj)
    return out


def test_100k_zoo_rounds_keep_rss_flat(monkeypatch):
    # zoo generators that yield in ``finally`` complain when closed: not our subject
    monkeypatch.setattr("sys.unraisablehook", lambda _unraisable: None)
    objs = _zoo_objects()
    assert len(objs) > 40

    def rounds(n: int) -> None:
        for i in range(n):
            g = corosnap.loads(corosnap.dumps(objs[i % len(objs)]))
            try:
                g.send(None)
                g.close()
            except BaseException:  # noqa: BLE001 - the zoo's own behaviour
                pass

    rounds(5_000)  # warm caches and allocator pools
    gc.collect()
    before = rss_bytes()
    rounds(100_000)
    gc.collect()
    grown = rss_bytes() - before
    for obj in objs:
        try:
            obj.close()
        except BaseException:  # noqa: BLE001
            pass
    assert grown < 8 * 1024 * 1024, f"RSS grew by {grown / 1e6:.1f} MB over 100,000 rounds"


@pytest.mark.skipif(importlib.util.find_spec("corosnap.codec._ccodec") is None,
                    reason="the C engine is not built")
def test_engines_that_differ_only_by_running_out_of_recursion_are_deep_not_differ():
    # Input 6921 of seed 11 is a blob nested deeply enough that the Python
    # engine runs out of recursion ("blob nested too deeply") where the C
    # engine, one C call a level, restores it: the nesting difference by
    # design.  Loaded again in both with room to recurse, they agree.
    report = fuzz.run_campaign(1, seed=11, start=6921, jobs=1, timeout=5.0,
                               engines=("python", "c"))
    assert report.counts["differ"] == 0, report.table()
    assert report.counts["deep"] == 1, report.table()


def test_a_set_of_objects_hashed_by_address_reads_the_same_in_any_order() -> None:
    # Two engines' processes build the same set with different addresses, so
    # it iterates in different orders: the outcome must not depend on that.
    import itertools

    views = set()
    for _ in range(20):
        items = [3, itertools.chain(), itertools.count(), "x"]
        random.shuffle(items)
        views.add(fuzz._short_repr.repr(set(items)))
        views.add(fuzz._short_repr.repr(frozenset(items)).replace("frozenset(", "", 1)[:-1])
    assert len(views) == 1, views


def test_the_fuzzer_calls_only_functions_running_the_zoos_own_code() -> None:
    """A function rebuilt from a damaged pickle payload (default mode unpickles,
    which runs whatever code the payload carries) must not be called by the
    fuzzer: CPython executes damaged bytecode as it is.  A zoo function that
    went through the fallback pickler is still called (its code compares equal)."""
    import types

    import cloudpickle

    assert fuzz._callable_ok(zoo.square) and fuzz._callable_ok(zoo.double)
    assert fuzz._callable_ok(cloudpickle.loads(cloudpickle.dumps(zoo.square)))
    damaged = zoo.square.__code__.replace(co_code=bytes(len(zoo.square.__code__.co_code)))
    rebuilt = types.FunctionType(damaged, vars(zoo), "<lambda>")
    assert rebuilt.__module__ == "corosnap_fuzz.zoo" and not fuzz._callable_ok(rebuilt)
    assert not fuzz._callable_ok(functools.partial(rebuilt, 1))
    klass = type("Made", (), {"__init__": rebuilt, "__module__": "corosnap_fuzz.zoo"})
    assert not fuzz._callable_ok(klass) and fuzz._callable_ok(zoo.Point)
