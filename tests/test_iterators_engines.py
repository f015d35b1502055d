"""Builtin iterators on both engines: the same bytes, the same outcome.

The C snapshot engine does the frame that holds an iterator (a for loop's
stack slot, a local) and hands the iterator value itself to the codec's
Python encoder and decoder (``codec/_iterators.py``), which both engines
share.  Here the two are held against each other in one process, as
``tests/test_engines.py`` does for the other values: every iterator state of
the cross-process cases is captured to the same bytes by the Python engine
and by the C engine (cold: it declines a code it has not seen; warm: it
encodes the frame itself), and resumes to the same results from each; every
hostile iterator blob is refused with the same class and message, and the
warm C engine decides it without calling the Python engine's frame code.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

import _iter_funcs as fx
import corosnap
import test_iterators_hostile as hostile
from _worker import _script_step
from corosnap import _accel
from corosnap.codec._tags import T_MAP
from corosnap.snapshot._api import default
from corosnap.snapshot._restore import FrameDecoder

pytestmark = pytest.mark.filterwarnings("error::DeprecationWarning")

C_ENGINE = _accel.ENGINE == "c"
needs_c = pytest.mark.skipif(not C_ENGINE, reason="the C engine is not loaded "
                                                  "(COROSNAP_PUREPYTHON=1)")

XP = [(fn, n, k) for fn, n, cuts in fx.CASES for k in cuts]


def _sends(n: int) -> list[list[Any]]:
    return [["send", None]] * n


def _suspended(fn: str, k: int) -> tuple[Any, list[str]]:
    g = getattr(fx, fn)()
    return g, [_script_step(g, a) for a in _sends(k)]


def _resume(snapshotter: Any, blob: bytes, steps: int) -> list[str]:
    g = snapshotter.loads(blob)
    try:
        return [_script_step(g, a) for a in _sends(steps)]
    finally:
        g.close()


@pytest.mark.parametrize(("fn", "n", "k"), XP, ids=[f"{f}-{k}" for f, _, k in XP])
def test_both_engines_capture_and_resume_every_iterator_alike(fn: str, n: int, k: int) -> None:
    want = _suspended(fn, n)[1]
    g, got = _suspended(fn, k)
    python = default()._with_engine("python")
    blob = python.dumps(g)
    assert python.dumps(g) == blob  # warm caches, same bytes
    assert got + _resume(python, blob, n - k) == want
    if C_ENGINE:
        c = default()._with_engine("c")
        assert c.dumps(g) == blob  # cold: declined, the Python engine encodes
        assert c.dumps(g) == blob  # warm: the C engine encodes the frames
        assert got + _resume(c, blob, n - k) == want  # cold
        assert got + _resume(c, blob, n - k) == want  # warm
    g.close()


def _outcome(snapshotter: Any, blob: bytes, **kw: Any) -> tuple[str, str]:
    try:
        g = snapshotter.replace(**kw).loads(blob) if kw else snapshotter.loads(blob)
    except corosnap.CorosnapError as exc:
        return type(exc).__name__, str(exc)
    try:
        x = g.gi_frame.f_locals["x"]
        try:
            return "restored", repr(list(itertools.islice(x, 3)))
        except Exception as exc:  # what the restored iterator does when advanced
            return "advanced", f"{type(exc).__name__}: {exc}"
    finally:
        g.close()


def _intact_holder() -> bytes:
    g = fx.holder(iter([1, 2]))
    next(g)
    return corosnap.dumps(g)


def _spy_python_engine(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    calls: list[Any] = []
    real = FrameDecoder.decode

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(FrameDecoder, "decode", spy)
    return calls


def _agree(blob: bytes, monkeypatch: pytest.MonkeyPatch, **kw: Any) -> tuple[str, str]:
    python = _outcome(default()._with_engine("python"), blob, **kw)
    if not C_ENGINE:
        return python
    cold = _outcome(default()._with_engine("c"), blob, **kw)
    warm_snapshotter = default()._with_engine("c")
    assert _outcome(warm_snapshotter, _intact_holder(), **kw)[0] == "restored"
    calls = _spy_python_engine(monkeypatch)
    warm = _outcome(warm_snapshotter, blob, **kw)
    monkeypatch.undo()
    assert python == cold == warm
    if not kw.get("safe"):  # safe mode is the Python engine's alone (the C one declines it)
        assert calls == [], "the warm run should have been decided by the C engine"
    return python


@pytest.mark.parametrize(("kind", "fields"), [(k, f) for _, k, f in hostile.HOSTILE],
                         ids=[name for name, _, _ in hostile.HOSTILE])
def test_both_engines_refuse_a_hostile_iterator_alike(
        kind: int, fields: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    cls, message = _agree(hostile.held_blob(fields, kind), monkeypatch)
    assert cls == "CorruptSnapshot", message
    assert message.startswith("_iter_funcs.holder(): local 'x': "), message


@pytest.mark.parametrize("safe", [False, True], ids=["default", "safe"])
def test_both_engines_restore_an_iterator_and_gate_its_function_alike(
        safe: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    digits = [hostile.tag(hostile.T_SEQITER), [1, 22, 333], 0]
    kw: dict[str, Any] = {"safe": True, "allow": ("_iter_funcs",)} if safe else {}
    ok = _agree(hostile.held_blob([hostile.wellknown(str), digits], T_MAP), monkeypatch, **kw)
    assert ok == ("restored", "['1', '22', '333']")
    getattr_map = hostile.held_blob([hostile.wellknown(getattr), digits], T_MAP)
    refused = _agree(getattr_map, monkeypatch, **kw)
    if safe:
        assert refused[0] == "UnsafeSnapshot" and "calling" in refused[1], refused
    else:
        assert refused[0] == "advanced" and "getattr" in refused[1], refused


@needs_c
def test_a_frame_holding_iterators_is_restored_by_the_c_engine(
        monkeypatch: pytest.MonkeyPatch) -> None:
    g, _ = _suspended("nested", 2)
    c = default()._with_engine("c")
    blob = c.dumps(g)
    c.loads(blob).close()  # the code is known from now on
    calls = _spy_python_engine(monkeypatch)
    g2 = c.loads(blob)
    assert calls == []
    assert [next(g2) for _ in range(3)] == [next(g) for _ in range(3)]
