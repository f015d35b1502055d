"""The C fast paths (frames/_fastpath.h) against the Python paths.

Restore: the first ``loads`` of a code resolves it in Python and restores
that frame in Python; later ones, once the (code, offset) plan exists, go
through ``frames.restore`` in C.  Every refusal must come out the same on
both, so each tampered blob here is loaded cold (caches cleared: Python
path) and warm (its intact twin loaded first: C path), and the two
outcomes compared.  Capture: the first ``dumps`` of a code runs in Python,
later ones in C (``frames.capture``); their blobs must be byte-identical.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from typing import Any

import msgpack
import pytest

import corosnap
from corosnap.snapshot import _capture, _fast, _restore

V = sys.version_info[:2]


# Sample generators (module level: corosnap finds them by name).

def loop(n):
    for i in range(n):  # noqa: UP028 - the for loop (an iterator on the stack) is the point
        yield i


def over_list(items):
    for item in items:  # noqa: UP028 - 3.15 walks the list by index: the point
        yield item


def leaf():
    yield 1
    yield 2


def delegating():
    got = yield from leaf()
    yield got


def with_cell():
    count = 0

    def bump():
        nonlocal count
        count += 1
        return count

    yield bump()
    yield bump()


def in_except():
    try:
        raise ValueError("handled")
    except ValueError:
        yield 1


def delegating_to_in_except():
    yield from in_except()


def add(a, b):
    return a + b


def calls(f):
    yield 1
    yield f(2)


def _suspended(factory: Callable[[], Iterator[Any]], steps: int = 1) -> Iterator[Any]:
    g = factory()
    for _ in range(steps):
        next(g)
    return g


def _tree(gen: Any) -> list[Any]:
    return msgpack.unpackb(corosnap.dumps(gen), strict_map_key=False)


def _blob(tree: list[Any]) -> bytes:
    return msgpack.packb(tree, use_bin_type=True)


def _cold() -> None:
    _restore._entries.clear()
    _restore._fast_entries.clear()


def _outcome(blob: bytes) -> tuple[str, str]:
    try:
        g = corosnap.loads(blob)
    except corosnap.CorosnapError as exc:
        return type(exc).__name__, str(exc)
    try:
        return "restored", repr(next(g))
    except StopIteration as stop:
        return "restored", f"stop {stop.value!r}"
    finally:
        g.close()


def _is_tag(x: Any) -> bool:
    return isinstance(x, msgpack.ExtType) and x.code == 0


def _last_list(tree: list[Any]) -> list[Any]:
    """The innermost untagged sub-frame (the tree itself when none)."""
    node = tree
    while node and type(node[-1]) is list and node[-1] and not _is_tag(node[-1][0]) \
            and type(node[-1][0]) in (str, int) and len(node[-1]) > 3:
        node = node[-1]
    return node


def _range_iterator_slot(frame: list[Any]) -> int:
    return next(i for i, x in enumerate(frame)
                if type(x) is list and x and _is_tag(x[0]) and x[0].data == bytes([14]))


def case_iterator_replaced_by_int() -> tuple[bytes, bytes]:
    tree = _tree(_suspended(lambda: loop(10)))
    good = _blob(tree)
    frame = _last_list(tree)
    frame[_range_iterator_slot(frame)] = 5
    return good, _blob(tree)


def case_iterator_slot_emptied() -> tuple[bytes, bytes]:
    tree = _tree(_suspended(lambda: loop(10)))
    good = _blob(tree)
    frame = _last_list(tree)
    frame[_range_iterator_slot(frame)] = None
    return good, _blob(tree)


def case_iterator_slot_holds_a_non_iterator_object() -> tuple[bytes, bytes]:
    tree = _tree(_suspended(lambda: loop(10)))
    good = _blob(tree)
    frame = _last_list(tree)
    frame[_range_iterator_slot(frame)] = [msgpack.ExtType(0, bytes([1])), 1, 2]  # a tuple
    return good, _blob(tree)


def case_delegation_to_an_int() -> tuple[bytes, bytes]:
    tree = _tree(_suspended(delegating))
    good = _blob(tree)
    index = next(i for i, x in enumerate(tree) if type(x) is list and x
                 and not _is_tag(x[0]) and len(x) > 3)
    tree[index] = 7
    return good, _blob(tree)


def case_cell_replaced_by_int() -> tuple[bytes, bytes]:
    tree = _tree(_suspended(with_cell))
    good = _blob(tree)
    # The cell was first met in bump's closure; its frame slot is a back-reference.
    index = next(i for i, x in enumerate(tree) if isinstance(x, msgpack.ExtType)
                 and x.code == 1)
    tree[index] = 3
    return good, _blob(tree)


def case_sequence_walked_by_index_replaced() -> tuple[bytes, bytes]:
    # 3.15 walks a list in place: (list, tagged index) on the stack.
    tree = _tree(_suspended(lambda: over_list([1, 2, 3])))
    good = _blob(tree)
    index = len(tree) - 2  # the list below the index slot
    tree[index] = 12
    return good, _blob(tree)


def case_index_negative() -> tuple[bytes, bytes]:
    tree = _tree(_suspended(lambda: over_list([1, 2, 3])))
    good = _blob(tree)
    tree[-1] = -4
    return good, _blob(tree)


def case_intact() -> tuple[bytes, bytes]:
    blob = corosnap.dumps(_suspended(delegating))
    return blob, blob


def case_partial_that_is_its_own_func() -> tuple[bytes, bytes]:
    # Refused by the codec (an object reaching itself without CPython's
    # recursion guard), which the C path calls back: both paths name the local.
    tree = _tree(_suspended(lambda: calls(functools.partial(add, 1))))
    good = _blob(tree)
    # local f: [tag 11, partial, [[global add]], [tag 1, <func: ref 1>, (1,), {}, None]]
    tree[5][3][1] = msgpack.ExtType(1, bytes([2]))  # memo 2: the partial itself
    return good, _blob(tree)


CASES = {
    "partial_that_is_its_own_func": case_partial_that_is_its_own_func,
    "iterator_replaced_by_int": case_iterator_replaced_by_int,
    "iterator_slot_emptied": case_iterator_slot_emptied,
    "iterator_slot_holds_a_tuple": case_iterator_slot_holds_a_non_iterator_object,
    "delegation_to_an_int": case_delegation_to_an_int,
    "cell_replaced_by_int": case_cell_replaced_by_int,
    "intact": case_intact,
}
if V >= (3, 15):
    CASES["sequence_walked_by_index_replaced"] = case_sequence_walked_by_index_replaced
    CASES["index_negative"] = case_index_negative


def _spy_python_path(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    calls: list[Any] = []
    real = _restore.decode_frame

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(_restore, "decode_frame", spy)
    monkeypatch.setattr(corosnap.snapshot._api, "decode_frame", spy)
    return calls


@pytest.mark.parametrize("name", sorted(CASES))
def test_python_and_c_restore_agree(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    good, bad = CASES[name]()
    _cold()
    cold = _outcome(bad)
    _cold()
    assert _outcome(good)[0] == "restored"  # resolves the code, builds the plan
    plans = [e.fast_plans for e in _restore._entries.values()]
    assert any(plans), "the intact twin should leave a plan the C path can use"
    calls = _spy_python_path(monkeypatch)
    warm = _outcome(bad)
    assert warm == cold
    assert calls == [], "the warm run should have been decided by the C path"
    if name != "intact":
        assert cold[0] == "CorruptSnapshot", cold
    if name == "partial_that_is_its_own_func":
        assert cold[1].startswith("tests.test_fast_path.calls(): local 'f': an object that "
                                  "reaches itself (functools.partial -> functools.partial)")


def test_restore_of_a_known_code_goes_through_c(monkeypatch: pytest.MonkeyPatch) -> None:
    blob = corosnap.dumps(_suspended(delegating))
    corosnap.loads(blob).close()
    calls = _spy_python_path(monkeypatch)
    g = corosnap.loads(blob)
    assert next(g) == 2
    assert calls == [], "a known code's frames should not need the Python path"


@pytest.mark.parametrize("factory", [lambda: loop(10), delegating, with_cell,
                                     lambda: over_list([1, 2, 3])],
                         ids=["loop", "delegating", "with_cell", "over_list"])
def test_python_and_c_capture_agree_byte_for_byte(factory: Callable[[], Any]) -> None:
    g = _suspended(factory)
    _capture._meta.clear()
    _capture._fast_metas.clear()
    first = corosnap.dumps(g)  # Python path (meta built)
    assert _capture._fast_metas
    again = corosnap.dumps(g)  # C path
    assert again == first


def _count_calls(monkeypatch: pytest.MonkeyPatch, name: str) -> list[Any]:
    frames = _fast.frames()
    real = getattr(frames, name)
    calls: list[Any] = []

    def counting(*args: Any) -> Any:
        calls.append(args[0])
        return real(*args)

    monkeypatch.setattr(frames, name, counting)
    return calls


@pytest.mark.parametrize("factory", [in_except, delegating_to_in_except],
                         ids=["root_declined", "sub_frame_declined"])
def test_a_frame_the_c_restore_declines_is_not_offered_to_it_again(
        factory: Callable[[], Any], monkeypatch: pytest.MonkeyPatch) -> None:
    # A frame suspended inside ``except`` is left to Python by the C path.
    # Only loads offers the root to C through the module; the C restore
    # recurses into sub-frames directly.  So one call, whether the C path
    # declines the root or a sub-frame, if nobody offers a declined frame again.
    blob = corosnap.dumps(_suspended(factory))
    corosnap.loads(blob).close()  # codes and plans known
    calls = _count_calls(monkeypatch, "restore")
    g = corosnap.loads(blob)
    assert len(calls) == 1, calls
    with pytest.raises(StopIteration):
        next(g)


def test_a_frame_the_c_capture_declines_is_not_offered_to_it_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    g = _suspended(delegating)
    corosnap.dumps(g)  # both codes known
    _capture._fast_metas.pop(id(leaf.__code__))  # the C path now declines the sub-frame
    calls = _count_calls(monkeypatch, "capture")
    blob = corosnap.dumps(g)
    assert len(calls) == 1, calls  # the root, whose C capture declined its sub-frame itself
    assert corosnap.loads(blob).send(None) == 2
