"""``corosnap.loads`` and ``corosnap.dumps`` on the C engine: C entries in
front of the Python functions.

The Python functions ``snapshot._api.loads`` and ``dumps`` are the
references.  On the C engine the module's ``loads`` is a
``_csnapshot.Loads`` made from its function, and ``dumps`` a
``_csnapshot.Dumps`` (as ``_pickle.loads`` stands for ``pickle.loads``).
``loads`` answers ``loads(data)`` for a bytes ``data`` no larger than its
``max_size``, ``dumps`` answers ``dumps(obj)`` for a generator or coroutine,
with nothing else given; each hands whatever it does not finish back to
Python (``finish``: a tree or None, an encoder's fields, an exception to
meet again; ``failure``: an error of ``loads``), and passes every other call
to the reference unchanged.  What must hold:

- each looks like its reference to a caller (name, docstring, signature,
  pickling by name);
- every answer is the reference's: restored generators, blobs byte for byte,
  each error, declined blobs and frames, migratable blobs, bytes that are not
  a blob, values only the strict encoder takes;
- a call an entry does not answer reaches the reference with exactly its
  arguments;
- each is built by keyword, every field, as the contract says.
"""

from __future__ import annotations

import copy
import gc
import inspect
import pickle
import weakref
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest

import corosnap
from corosnap import CorruptSnapshot, RestoreError, _accel
from corosnap.snapshot import _api, _contract

needs_c = pytest.mark.skipif(_accel.ENGINE != "c", reason="the C engine is not loaded "
                                                         "(COROSNAP_PUREPYTHON=1)")


def counter(n: int) -> Iterator[int]:
    for i in range(n):  # noqa: UP028 - a range iterator on the stack
        yield i


def counter_met_once(n: int) -> Iterator[int]:
    """A code the C engine meets for the first time in its test."""
    for i in range(n):  # noqa: UP028
        yield i


def holds(value: Any) -> Iterator[Any]:
    kept = value
    yield 1
    yield kept


def _fails() -> None:
    raise LookupError("refused by the reduce")


class FailsOnLoad:
    def __reduce__(self) -> Any:
        return (_fails, ())


def _no_memory() -> None:
    raise MemoryError("made up")


class FailsWithMemoryError:
    def __reduce__(self) -> Any:
        return (_no_memory, ())


def _started(g: Iterator[Any]) -> Iterator[Any]:
    next(g)
    return g


def _chain(exc: BaseException | None) -> list[str]:
    """An exception and its __context__ chain, as class names (with each
    one's __cause__)."""
    out = []
    while exc is not None and len(out) < 8:
        out.append(f"{type(exc).__name__} (cause {type(exc.__cause__).__name__})")
        exc = exc.__context__
    return out


def _outcome(load: Any, blob: Any) -> tuple[str, Any]:
    """What a load gives: the rest of the restored generator, or the error's
    class, message, cause and context chain, raised on its own and raised
    while the caller handles an exception of its own."""
    try:
        g = load(blob)
    except Exception as exc:  # noqa: BLE001 - compared, not hidden
        error = exc
    else:
        return ("restored", [repr(x) for x in g])
    handled = None
    try:
        raise KeyError("the caller's")
    except KeyError:
        try:
            load(blob)
        except Exception as inner:  # noqa: BLE001
            handled = _chain(inner)
    return ("raised", (type(error).__name__, str(error), type(error.__cause__).__name__,
                       type(error.__context__).__name__, _chain(error), handled))


@pytest.mark.parametrize("name", ["loads", "dumps"])
def test_the_module_function_is_the_c_entry_only_on_the_c_engine(name: str) -> None:
    function = getattr(corosnap, name)
    if _accel.ENGINE == "c":
        assert type(function) is getattr(_contract, name.capitalize())
        assert function is getattr(_api, name)
        reference = function.reference
        assert inspect.isfunction(reference) and reference.__name__ == name
        assert function.__wrapped__ is reference
        assert repr(function) == f"<function corosnap.{name} (C entry)>"
    else:
        assert getattr(_contract, name.capitalize()) is None
        assert inspect.isfunction(function)
        reference = function
    assert function.__name__ == name
    assert function.__doc__ == reference.__doc__
    assert inspect.signature(function) == inspect.signature(reference)
    assert pickle.loads(pickle.dumps(function)) is function
    assert copy.deepcopy(function) is function
    assert weakref.ref(function)() is function


def test_the_default_snapshotters_options_are_fixed() -> None:
    """The C entries are made from them once: a change would hold for the
    Python functions only."""
    snap = _api.default()
    for name, value in (("safe", True), ("key", b"k" * 32), ("max_size", 10),
                        ("migratable", True)):
        with pytest.raises(AttributeError, match=f"options are fixed \\(setting '{name}'\\)"):
            setattr(snap, name, value)
    assert snap.safe is False and snap.key is None and snap.replace(safe=True).safe is True


@needs_c
def test_every_answer_is_the_references() -> None:
    reference = corosnap.loads.reference
    good = corosnap.dumps(_started(counter(6)))
    fails = corosnap.dumps(_started(holds(FailsOnLoad())))
    tree = msgpack.unpackb(good, strict_map_key=False)  # exts left as ExtType
    tree[-1] = "not a range iterator"  # the for loop's iterator (3.15: its index)
    corrupt = msgpack.packb(tree, use_bin_type=True)
    blobs = {
        "first met (declined, then restored by Python)":
            corosnap.dumps(_started(counter_met_once(4))),
        "good": good,
        "a reduce that raises": fails,
        "a corrupt slot": corrupt,
        "migratable": corosnap.dumps(_started(counter(5)), migratable=True),
        "not a blob": b"\x93\x01\x02\x03",
        "truncated": good[:-1],
        "empty": b"",
        "a bytes subclass": type("B", (bytes,), {})(good),
    }
    for name, blob in blobs.items():
        for _ in range(2):  # cold, then warm
            assert _outcome(corosnap.loads, blob) == _outcome(reference, blob), name
    assert _outcome(corosnap.loads, fails)[1][:3] == (
        "RestoreError", "tests.test_entries.holds(): local 'value': rebuilding a '_fails' "
        "failed: LookupError('refused by the reduce')", "LookupError")
    # raised while the caller handles an exception, the chain reaches it last
    assert _outcome(corosnap.loads, fails)[1][5][-1] == "KeyError (cause NoneType)"
    memory = corosnap.dumps(_started(holds(FailsWithMemoryError())))
    assert _outcome(corosnap.loads, memory) == _outcome(reference, memory)
    assert _outcome(corosnap.loads, corrupt)[1][0] == "CorruptSnapshot"
    with pytest.raises(RestoreError) as info:
        corosnap.loads(fails)
    assert isinstance(info.value.__cause__, LookupError)


class Spy:
    def __init__(self, answer: Any = "the reference's") -> None:
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        self.answer = answer

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((args, kwargs))
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer


def _entry(max_size: int = 1000, **fields: Any) -> Any:
    caches = _api.default()._caches
    made = {"frames": caches.frames_in, "code_cache": caches.restore_codes.data,
            "max_size": max_size, "reference": Spy(), "finish": Spy("finished"),
            "failure": Spy(), **fields}
    return _contract.Loads(**made)


@needs_c
def test_a_call_it_does_not_answer_goes_to_the_reference_unchanged() -> None:
    entry = _entry(max_size=100)
    good = corosnap.dumps(_started(counter(6)))
    corosnap.loads(good).close()  # warm: the C engine answers this code
    restored = entry(good)
    assert list(restored) == [1, 2, 3, 4, 5]
    assert entry.reference.calls == [] and entry.finish.calls == []
    key = b"k" * 32
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
        ((good,), {"key": key}),
        ((good,), {"safe": False}),  # even a default given by name
        ((bytearray(good),), {}),
        ((memoryview(good),), {}),
        ((b"x" * 101,), {}),  # larger than max_size
        ((good, good), {}),
        ((), {}),
        ((), {"data": good}),
    ]
    for args, kwargs in calls:
        assert entry(*args, **kwargs) == "the reference's"
    assert entry.reference.calls == calls
    assert entry(b"x" * 100) == "finished"  # max_size itself is answered
    assert entry.finish.calls == [((b"x" * 100, None), {})]


@needs_c
def test_what_it_leaves_goes_to_finish_and_failure() -> None:
    entry = _entry()
    first = corosnap.dumps(_started(counter_met_once(3)))
    assert entry(b"\x93\x01\x02\x03") == "finished"
    assert entry.finish.calls[-1] == ((b"\x93\x01\x02\x03", None), {})
    # a blob whose root the C engine declines (its code is not in this
    # cache) reaches finish as its parsed tree, untouched
    cold = _contract.Loads(frames=_api.default()._with_engine("c")._caches.frames_in,
                          code_cache={}, max_size=1000, reference=Spy(), finish=Spy("finished"),
                          failure=Spy())
    assert cold(first) == "finished"
    (data, tree), _ = cold.finish.calls[0]
    assert data is first and type(tree) is list and tree[0] is _api.HEADER
    fails = corosnap.dumps(_started(holds(FailsOnLoad())))
    corosnap.loads(corosnap.dumps(_started(holds(1)))).close()  # warm holds
    failing = _entry(failure=Spy(CorruptSnapshot("said by failure")))
    with pytest.raises(CorruptSnapshot, match="said by failure"):
        failing(fails)
    (exc,), _ = failing.failure.calls[0]
    assert type(exc) is RestoreError
    assert isinstance(exc.__cause__, LookupError)
    returning = _entry()  # a failure that returns is a bug, said so
    with pytest.raises(SystemError, match="failure returned"):
        returning(fails)


@needs_c
def test_it_is_made_by_keyword_every_field_once() -> None:
    assert _contract.Loads.__fields__ == _contract.ENTRIES["Loads"]
    assert _contract.Dumps.__fields__ == _contract.ENTRIES["Dumps"]
    caches = _api.default()._caches
    fields = {"frames": caches.frames_in, "code_cache": {}, "max_size": 10,
              "reference": len, "finish": len, "failure": len}
    _contract.Loads(**fields)
    for missing in fields:
        with pytest.raises(TypeError, match=f"{missing} missing"):
            _contract.Loads(**{k: v for k, v in fields.items() if k != missing})
    with pytest.raises(TypeError, match="by keyword only"):
        _contract.Loads(*fields.values())
    with pytest.raises(TypeError, match="exactly 6 fields by keyword, got 7"):
        _contract.Loads(**fields, extra=1)
    with pytest.raises(TypeError):
        _contract.Loads(**{**fields, "code_cache": []})
    with pytest.raises(TypeError, match="callables"):
        _contract.Loads(**{**fields, "finish": 3})
    with pytest.raises(TypeError, match="max_size an int >= 0"):
        _contract.Loads(**{**fields, "max_size": -1})
    with pytest.raises(TypeError, match="max_size an int >= 0"):
        _contract.Loads(**{**fields, "max_size": "10"})
    made = {"root": caches.root, "pid": 2, "reference": len, "finish": len}
    _contract.Dumps(**made)
    for missing in made:
        with pytest.raises(TypeError, match=f"{missing} missing"):
            _contract.Dumps(**{k: v for k, v in made.items() if k != missing})
    with pytest.raises(TypeError, match="root must be a CaptureRoot"):
        _contract.Dumps(**{**made, "root": object()})
    with pytest.raises(TypeError, match="callables"):
        _contract.Dumps(**{**made, "reference": None})


class Marker:
    pass


@needs_c
def test_a_cycle_through_it_is_collected() -> None:
    def cycle() -> weakref.ref[Marker]:
        marker = Marker()
        box: list[Any] = [marker]
        box.append(_entry(finish=lambda data, out: box))  # box -> entry -> lambda -> box
        return weakref.ref(marker)

    ref = cycle()
    gc.collect()
    assert ref() is None


# -- dumps ------------------------------------------------------------------


async def awaits(x: Any) -> Any:
    return await x


class Step:
    def __await__(self) -> Any:
        got = yield "step"
        return got


async def twice() -> Any:
    a = await Step()
    b = await Step()
    return a, b


async def agen() -> Any:
    yield 1


def holds_met_once(value: Any) -> Iterator[Any]:
    """A code the C capture meets for the first time in its test."""
    kept = value
    yield 1
    yield kept


def _dumps_outcome(dump: Any, obj: Any) -> tuple[str, Any]:
    try:
        return ("blob", dump(obj))
    except Exception as exc:  # noqa: BLE001 - compared, not hidden
        return ("raised", (type(exc).__name__, str(exc)))


@needs_c
def test_every_dumps_answer_is_the_references() -> None:
    import threading

    reference = corosnap.dumps.reference
    coroutine = twice()
    coroutine.send(None)
    makers = {
        "a counter": lambda: _started(counter(6)),
        "a coroutine": lambda: coroutine,
        "an int past 64 bits (encoded again, strictly)": lambda: _started(holds(2**70)),
        "a lone surrogate": lambda: _started(holds("a\udc80b")),
        "a lock (refused, naming the slot)": lambda: _started(holds(threading.Lock())),
        "a frame met for the first time": lambda: _started(holds_met_once([1, 2])),
        "a dict and a list": lambda: _started(holds({"a": [1, 2.5, None]})),
    }
    for name, make in makers.items():
        for _ in range(2):  # cold, then warm
            obj = make()
            ours, theirs = _dumps_outcome(corosnap.dumps, obj), _dumps_outcome(reference, obj)
            assert ours == theirs, name
    assert _dumps_outcome(corosnap.dumps, makers["a lock (refused, naming the slot)"]())[1][0] \
        == "SnapshotError"
    assert "'value'" in _dumps_outcome(
        corosnap.dumps, makers["a lock (refused, naming the slot)"]())[1][1]
    big = corosnap.dumps(_started(holds(2**70)))
    assert next(corosnap.loads(big)) == 2**70
    for other in (agen(), counter, 3, None):  # the reference's: it names what it got
        assert _dumps_outcome(corosnap.dumps, other) == _dumps_outcome(reference, other)


@needs_c
def test_a_dumps_call_it_does_not_answer_goes_to_the_reference_unchanged() -> None:
    caches = _api.default()._caches
    entry = _contract.Dumps(root=caches.root, pid=_api.default()._pid, reference=Spy(),
                            finish=Spy("finished"))
    g = _started(counter(6))
    corosnap.dumps(g)  # the C capture knows this code now
    assert entry(g) == corosnap.dumps(g)
    assert entry.reference.calls == [] and entry.finish.calls == []
    a = agen()
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
        ((g,), {"key": b"k" * 32}),
        ((g,), {"migratable": False}),  # even a default given by name
        ((a,), {}),
        ((counter,), {}),
        ((g, g), {}),
        ((), {}),
        ((), {"obj": g}),
    ]
    for args, kwargs in calls:
        assert entry(*args, **kwargs) == "the reference's"
    assert entry.reference.calls == calls
    fresh = _started(holds_met_once(5))
    cold = _contract.Dumps(root=_api.default()._with_engine("c")._caches.root,
                           pid=_api.default()._pid, reference=Spy(), finish=Spy("finished"))
    assert cold(fresh) == "finished"  # a code met for the first time: declined
    assert cold.finish.calls == [((fresh, None), {})]
    big = _started(holds(2**70))
    corosnap.dumps(_started(holds(1)))
    assert entry(big) == "finished"  # the C capture raised: met again in Python
    (obj, exc), _ = entry.finish.calls[-1]
    assert obj is big and isinstance(exc, OverflowError)
