"""Frame slots against what the bytecode says they must hold.

What lives here: the two crossings between the values a blob stores and the
values a frame holds.  ``untag`` (capture side) turns the tagged integers a
3.14+ frame keeps in some stack slots into plain ints, after checking that
they sit exactly where the bytecode analysis says tagged slots are.
``check_and_tag`` (restore side) checks every decoded value against its slot's
kind (``corosnap.bytecode._kinds``) and the locals the code reads without a
check, and turns the ints of tagged slots back into ``frames.TaggedInt``.

Why: the interpreter trusts a frame's slots.  A NULL where it expects an
object, an object where it expects a tagged integer (or the reverse), a
non-list where LIST_APPEND appends or a non-iterator where FOR_ITER calls
tp_iternext crashes CPython instead of raising.  Every such value is refused
here, with CorruptSnapshot naming the slot, before the frame is written.  The
blob itself stays version-neutral: a tagged slot is stored as a plain int.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

from .._errors import CorruptSnapshot, SnapshotError
from ..bytecode import CodeInfo
from ..bytecode._kinds import (
    DICT,
    EXC,
    IDX,
    ITER,
    LASTI,
    LIST,
    MIXED,
    OBJ,
    OPT,
    PREV,
    RECV,
    RSRC,
    SET,
    SRC,
    TAGGED_KINDS,
)


def _is_iterator(v: Any) -> bool:
    # FOR_ITER calls tp_iternext unchecked; a type has one exactly when it
    # (or a base) defines __next__.  Coroutines have none.
    return hasattr(type(v), "__next__")


def _is_receiver(v: Any) -> bool:
    # What GET_AWAITABLE / GET_YIELD_FROM_ITER can leave for SEND.
    return type(v) is types.CoroutineType or hasattr(type(v), "__next__")


_CHECKS: dict[str, Callable[[Any], bool]] = {
    OBJ: lambda v: True,
    EXC: lambda v: isinstance(v, BaseException),
    PREV: lambda v: v is None or isinstance(v, BaseException),
    ITER: _is_iterator,
    RECV: _is_receiver,
    LIST: lambda v: type(v) is list,
    SET: lambda v: type(v) is set,
    DICT: lambda v: type(v) is dict,
}


def untag(info: CodeInfo, at: int, stack: list[Any], frames: Any, where: str) -> list[Any]:
    """Capture side: the stack with tagged integers as ints (3.14+)."""
    if not frames.TAGGED_INTS:
        return stack
    tagged = info.tagged[at]
    tagged_int = frames.TaggedInt
    out = stack
    for j, x in enumerate(stack):
        if type(x) is tagged_int:
            if j not in tagged:
                raise SnapshotError(
                    f"{where}: value stack slot {j} holds a tagged integer where the bytecode "
                    "analysis expects an object (corosnap does not know this code shape; "
                    "please report it)"
                )
            if out is stack:
                out = list(stack)
            out[j] = int(x)
        elif j in tagged and x is not frames.NULL and info.stack_kinds[at][j] == LASTI:
            raise SnapshotError(f"{where}: value stack slot {j} should be a tagged integer")
    return out


def check_and_tag(info: CodeInfo, at: int, slots: list[Any], frames: Any, where: str) -> None:
    """Restore side: refuse any slot value the interpreter could not survive;
    turn the ints of tagged slots into ``frames.TaggedInt`` (in place)."""
    null = frames.NULL
    n = info.nlocalsplus
    for index in info.bound[at]:
        if slots[index] is null:
            raise CorruptSnapshot(
                f"{where}: local {info.slot_names[index]!r} is empty, but the code reads it "
                "without checking"
            )
    kinds = info.stack_kinds[at]
    tagged_ints = bool(frames.TAGGED_INTS)
    for j, kind in enumerate(kinds):
        v = slots[n + j]
        if kind == OPT:
            continue
        if kind == IDX:
            # 3.15: (iterator, NULL) or (sequence walked in place, index).
            src = slots[n + j - 1]
            if j == 0 or kinds[j - 1] not in (SRC, RSRC) or src is null:
                raise CorruptSnapshot(f"{where}: malformed iteration pair at stack slot {j}")
            if v is null:
                if not (_is_iterator if kinds[j - 1] == SRC else _is_receiver)(src):
                    raise CorruptSnapshot(
                        f"{where}: stack slot {j - 1} must hold an iterator, got "
                        f"{type(src).__name__}"
                    )
            elif type(v) is not int or v < 0 or not frames.virtual_iterable(src):
                raise CorruptSnapshot(
                    f"{where}: stack slot {j - 1} cannot be walked by index "
                    f"({type(src).__name__}, {v!r})"
                )
            else:
                slots[n + j] = frames.TaggedInt(v)
            continue
        if v is null:
            raise CorruptSnapshot(f"{where}: value stack slot {j} must hold {kind}, got NULL")
        if kind == SRC or kind == RSRC:
            continue  # checked with the IDX slot above it
        if kind == LASTI:
            if type(v) is not int or not 0 <= v < info.code_units:
                raise CorruptSnapshot(
                    f"{where}: value stack slot {j} must hold an offset into the code, got {v!r}"
                )
            if tagged_ints and kind in TAGGED_KINDS:
                slots[n + j] = frames.TaggedInt(v)
            continue
        if kind == MIXED:
            raise CorruptSnapshot(
                f"{where}: value stack slot {j} cannot be checked (two code paths disagree "
                "about what it holds), so it is not restored"
            )
        check = _CHECKS.get(kind)
        if check is None or not check(v):
            raise CorruptSnapshot(
                f"{where}: value stack slot {j} must hold {'an' if kind[0] in 'aeiou' else 'a'} "
                f"{kind}, got {type(v).__name__}"
            )
