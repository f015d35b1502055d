"""Capture and resume generators: states, send/throw/close, loops, chains,
closures, methods, signatures, half-evaluated expressions, except blocks."""

from __future__ import annotations

import sys
import types

import pytest

import corosnap
import samples
from _helpers import drive, in_child, roundtrip


def test_readme_example_resumes_after_first_yield():
    g = samples.job([1, 2, 3])
    assert next(g) == 1
    blob = corosnap.dumps(g)
    assert isinstance(blob, bytes)
    g2 = corosnap.loads(blob)
    assert type(g2) is types.GeneratorType
    assert g2.send("hi") == 3
    assert g2.send("x") == 6
    with pytest.raises(StopIteration) as stop:
        g2.send("y")
    assert stop.value.value == 6


def test_readme_example_in_another_process():
    g = samples.job([1, 2, 3])
    next(g)
    assert in_child(corosnap.dumps(g), sends=["hi", "x", "y"]) == [
        ("yield", 3), ("yield", 6), ("return", 6)]


def test_unstarted_generator_keeps_its_arguments():
    g2 = roundtrip(samples.unstarted(5, b=7))
    assert g2.gi_frame.f_lasti == samples.unstarted(1).gi_frame.f_lasti
    assert next(g2) == 12


def test_restored_generator_is_independent_of_the_original():
    g = samples.counter(5)
    next(g)
    g2 = roundtrip(g)
    assert list(g) == [1, 2, 3, 4]
    assert list(g2) == [1, 2, 3, 4]


@pytest.mark.parametrize("state", ["running", "finished", "closed"])
def test_unresumable_states_are_refused(state):
    if state == "running":
        holder = {}

        def selfsnap():
            yield corosnap.dumps(holder["g"])

        holder["g"] = g = selfsnap()
        with pytest.raises(corosnap.SnapshotError, match="running"):
            next(g)
        return
    g = samples.counter(1)
    if state == "finished":
        list(g)
    else:
        next(g)
        g.close()
    with pytest.raises(corosnap.SnapshotError, match="finished or was closed"):
        corosnap.dumps(g)


def test_non_generators_are_refused_clearly():
    with pytest.raises(corosnap.SnapshotError) as err:
        corosnap.dumps([1, 2])
    assert str(err.value) == ("corosnap snapshots generators, coroutines and async "
                              "generators; got builtins.list")


def test_nested_async_generator_round_trips():
    async def agen(k):
        yield k
        yield k + 1

    ag = agen(1)
    ag2 = corosnap.loads(corosnap.dumps(ag))
    assert type(ag2) is types.AsyncGeneratorType and ag2.ag_code is ag.ag_code
    with pytest.raises(StopIteration) as stop:
        ag2.__anext__().send(None)
    assert stop.value.value == 1


def test_send_throw_close_match_the_original_with_finally_and_with():
    originals = []  # kept alive: a collected original would run its own finally

    def scenario(make_copy):
        samples.LOG.clear()
        g = samples.with_finally()
        next(g)
        originals.append(g)
        g = make_copy(g)
        log_before = list(samples.LOG)
        out = [g.send(5)]
        try:
            g.throw(ValueError("inside with"))
        except ValueError as exc:
            out.append(("raised", str(exc)))
        return out, log_before, list(samples.LOG)

    assert scenario(lambda g: g) == scenario(roundtrip)


def test_close_runs_exit_and_finally_after_restore():
    samples.LOG.clear()
    g = samples.with_finally()
    next(g)
    g2 = roundtrip(g)
    samples.LOG.clear()
    g2.close()
    assert samples.LOG == [("exit", "r", "GeneratorExit"), "finally"]
    samples.LOG.clear()
    g.close()


def test_exhaustion_runs_exit_and_finally_after_restore():
    samples.LOG.clear()
    g = samples.with_finally()
    next(g)
    g2 = roundtrip(g)
    samples.LOG.clear()
    assert g2.send(1) == 2
    assert g2.send(3) == 3
    with pytest.raises(StopIteration):
        next(g2)
    assert samples.LOG == [("exit", "r", None), "finally"]
    g.close()


@pytest.mark.parametrize("depth", [0, 1, 4, 20])
def test_yield_from_chains_of_any_depth(depth):
    g = samples.chain(depth)
    assert next(g) == 0
    g2 = roundtrip(g)
    with pytest.raises(StopIteration) as stop:
        g2.send(5)
    assert stop.value.value == 10 + depth
    assert drive(g, [5]) == [("return", 10 + depth)]


def test_yield_from_chain_cross_process():
    g = samples.chain(5)
    next(g)
    assert in_child(corosnap.dumps(g), sends=[3]) == [("return", 11)]


def test_gi_yieldfrom_and_throw_delegate_after_restore():
    g = samples.chain(2)
    next(g)
    g2 = roundtrip(g)
    assert g2.gi_yieldfrom is not None
    assert g2.gi_yieldfrom.gi_yieldfrom.gi_yieldfrom.gi_code is samples.sub.__code__
    with pytest.raises(KeyError):
        g2.throw(KeyError("x"))


def test_generator_expressions_standalone_and_delegated():
    g = samples.uses_genexpr(4)
    assert [next(g), next(g)] == [0, 1]
    g2 = roundtrip(g)
    assert list(g2) == [4, 9]
    d = samples.delegates_to_genexpr(3)
    next(d)
    assert drive(roundtrip(d), [None, None, None]) == [("yield", 10), ("yield", 20),
                                                        ("return", "done")]
    genexpr = (i + 1 for i in samples.counter(5))  # nested code of this test function
    next(genexpr)
    rest = list(roundtrip(genexpr))
    assert rest == [2, 3, 4, 5]
    orphan = eval("(i for i in range(3))")  # module-level code: no importable name
    with pytest.raises(corosnap.SnapshotError, match="cannot be found again by import"):
        corosnap.dumps(orphan)


def test_inner_genexpr_of_a_module_function():
    g = samples.inner_genexpr_gen([1, 2, 3, 4, 5])
    assert next(g) == (1, 2)
    g2 = roundtrip(g)
    assert list(g2) == [(3, 2), (5, 2)]


def test_closures_nonlocal_writes_and_lambdas_survive():
    g = samples.closure_gen()
    assert next(g) == (1, 10)
    g2 = roundtrip(g)
    assert g2.send(5) == (7, 70)  # inc(5) then inc(): both write the shared cell
    assert next(g2) == (8, 80)
    assert in_child(corosnap.dumps(g2), sends=[None, 10]) == [("yield", (9, 90)),
                                                             ("yield", (20, 200))]


def test_methods_staticmethods_classmethods():
    w = samples.Widget("w")
    g = w.method(3)
    next(g)
    g2 = roundtrip(g)
    assert list(g2) == ["w:1", "w:2"]
    s = samples.Widget.static(3)
    next(s)
    assert list(roundtrip(s)) == [-1, -2]
    k = samples.Widget.klass(2)
    next(k)
    assert list(roundtrip(k)) == [("Widget", 1)]


def test_defaults_varargs_kwargs_and_keyword_only():
    g = samples.signature(1, 2, 3, 4, c=5, e=6)
    first = next(g)
    g2 = roundtrip(g)
    assert first == (1, 2, (3, 4), 5, 4, {"e": 6})
    assert next(g2) == 1 + 2 + 5 + 4 + 7 + 6
    u = roundtrip(samples.signature(1, c=3))
    assert next(u) == (1, 2, (), 3, 4, {})


def test_for_loop_iterators_of_every_builtin_kind_cross_process():
    sends = list(range(100, 140))
    expected = drive(samples.loops(), [None, *sends])
    for k in range(1, len(expected)):
        g = samples.loops()
        prefix = drive(g, [None, *sends[: k - 1]])
        rest = in_child(corosnap.dumps(g), sends=sends[k - 1 :]) if k % 4 == 0 else drive(
            roundtrip(g), sends[k - 1 :])
        assert prefix + rest == expected, k


def test_half_evaluated_expressions_and_call_arguments():
    sends = ["B", 10, "F", "L", "D"]
    expected = drive(samples.half_evaluated(1, 3), [None, *sends])
    for k in range(1, 6):
        g = samples.half_evaluated(1, 3)
        prefix = drive(g, [None, *sends[: k - 1]])
        assert prefix + drive(roundtrip(g), sends[k - 1 :]) == expected


def test_with_exit_is_a_live_stack_value():
    g = samples.with_finally()
    next(g)
    frames = corosnap.frames.backend().read(g)
    assert any(getattr(x, "__name__", None) == "__exit__" for x in frames[3])
    g.close()


def test_suspended_inside_except_keeps_the_handled_exception():
    g = samples.in_except()
    exc = next(g)
    assert isinstance(exc, KeyError)
    g2 = roundtrip(g)
    seen, current = g2.send("s")
    assert seen == "s" and type(current) is KeyError and current.args == ("boom",)
    with pytest.raises(KeyError) as info:
        next(g2)  # bare raise re-raises the handled exception
    assert info.value.args == ("boom",)
    assert sys.exc_info() == (None, None, None)
    g.close()


def test_except_block_cross_process():
    g = samples.in_except()
    next(g)
    got = in_child(corosnap.dumps(g), sends=["s", None])
    assert got[0][0] == "yield" and got[0][1][0] == "s" and got[0][1][1].args == ("boom",)
    assert got[1] == ("raise", "KeyError", ("boom",))


def test_generator_that_refers_to_itself():
    g = samples.self_referencing()
    next(g)
    assert g.send(g) is g
    g2 = roundtrip(g)
    assert corosnap.frames.backend().read(g2)[2][0] is g2


def test_module_level_mutable_values_are_shared_not_copied():
    samples.LOG.clear()
    g = samples.append_to_module_log()
    next(g)
    g2 = roundtrip(g)
    g2.send("a")
    assert samples.LOG == ["a"]  # appended to the module's own list, not a copy
    samples.LOG.clear()
    g.close()


def test_finished_helper_generator_in_a_local():
    g = samples.keeps_finished_helper()
    assert next(g) == 4
    g2 = roundtrip(g)
    helper, got = g2.send("x")
    assert got == "x" and helper.gi_frame is None
    with pytest.raises(StopIteration):
        next(helper)


def test_traceback_argument_is_dropped_to_none():
    samples.LOG.clear()
    c = samples.async_with_error()
    assert c.send(None) == "exiting"  # __aexit__ awaits while KeyError passes through
    c2 = roundtrip(c)
    with pytest.raises(StopIteration) as stop:
        c2.send(None)
    assert stop.value.value == "after"
    assert samples.LOG == [("aexit", "KeyError", True)]  # tb restored as None
    c.close()


def test_strings_with_lone_surrogates():
    g = samples.surrogates()
    assert next(g) == "bad\udcff"
    s, d = roundtrip(g).send(None)
    assert s == "bad\udcff" and d == {"k\udc80": "bad\udcff"}


def test_exception_chains_survive():
    g = samples.chained_exceptions()
    exc = next(g)
    got = next(roundtrip(g))
    assert type(got) is ValueError and got.args == ("second",)
    assert type(got.__cause__) is KeyError and got.__cause__.args == ("first",)
    assert got.__suppress_context__ is exc.__suppress_context__
    assert type(got.__context__) is KeyError


def test_dict_iterator_stays_linked_to_its_dict():
    expected = drive(samples.edits_dict_while_iterating(), [None, 30, None, None])
    g = samples.edits_dict_while_iterating()
    assert next(g) == "a"
    rest = drive(roundtrip(g), [30, None, None])
    assert [("yield", "a"), *rest] == expected
    assert expected[-1] == ("return", [("a", 1), ("b", 2), ("c", 30)])
