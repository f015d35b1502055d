"""Capture: a suspended generator/coroutine -> the fields of one frame.

A frame is encoded as ``[coderef..., position, *localsplus, *stack]``:
``coderef`` names the code (see Encoder.coderef), ``position`` is the resume
offset (``-1`` for a created frame), or ``[offset, exception]`` when the frame
is suspended inside an ``except`` block.  The number of stack values is not
stored: it is implied by the code and the offset, and checked on restore.
"""

from __future__ import annotations

import types
from typing import Any

from .._errors import SnapshotError
from ..bytecode import CREATED, CodeInfo, CodeRef, code_info, describe, fingerprint
from ..bytecode._analysis import DELEGATE
from ..bytecode._kinds import NULLABLE, TAGGED, slot_rules
from ..codec import NONE_EXT, Encoder
from ..codec._tags import T_DONE, TAGS
from ..frames import backend

_GENERATOR_TYPES = (types.GeneratorType, types.CoroutineType)


def describe_target(obj: Any) -> str:
    code = getattr(obj, "gi_code", None) or getattr(obj, "cr_code", None)
    if code is None:
        return f"a {type(obj).__qualname__}"
    kind = "coroutine" if type(obj) is types.CoroutineType else "generator"
    return f"{kind} {code.co_qualname}()"


def check_target(obj: Any) -> None:
    t = type(obj)
    if t is types.GeneratorType or t is types.CoroutineType:
        return
    if t is types.AsyncGeneratorType:
        raise SnapshotError(
            f"{describe_target(obj)}: async generators are not supported (yet); "
            "snapshot plain generators and async def coroutines"
        )
    raise SnapshotError(
        f"corosnap snapshots generators and coroutines; got {t.__module__}.{t.__qualname__}"
    )


_meta: dict[int, tuple[types.CodeType, CodeInfo, CodeRef, int]] = {}


def _code_meta(code: types.CodeType, module: str | None) -> tuple[types.CodeType, CodeInfo,
                                                                  CodeRef, int]:
    """Everything capture needs about one code object, computed once."""
    hit = _meta.get(id(code))
    if hit is not None and hit[0] is code and hit[2].module == module:
        return hit
    hit = (code, code_info(code), describe(code, module), fingerprint(code))
    _meta[id(code)] = hit
    return hit


def encode_frame(enc: Encoder, gen: Any) -> list[Any]:
    """Encode one generator/coroutine frame (its sub-generators recursively)."""
    frames = backend()
    state, lasti, localsplus, stack, exc, globals_ = frames.read(gen)
    code = gen.gi_code if type(gen) is types.GeneratorType else gen.cr_code
    if state != frames.SUSPENDED and state != frames.CREATED:
        if state == frames.FINISHED and enc.keep and enc.keep[0] is not gen:
            # A finished generator held as a value (a helper kept in a local):
            # its frame is gone, so only its code is stored.
            return [TAGS[T_DONE], *enc.coderef(code, _describe_finished(enc, gen, code))]
        _refuse_state(gen, state, globals_)
    enc.note_globals(globals_)
    _, info, ref, fp = _code_meta(code, globals_.get("__name__"))
    if state == frames.CREATED:
        lasti = CREATED
    depth = info.resume.get(lasti)
    if depth is None or len(localsplus) != info.nlocalsplus or len(stack) != depth:
        raise SnapshotError(
            f"{_where(gen, globals_)} is suspended at offset {lasti} with {len(stack)} stack "
            f"values, which its bytecode does not explain (expected {depth})"
        )
    if frames.TAGGED_INTS:
        stack = _untag(code, lasti, stack, frames.TaggedInt, gen, globals_)
    fields = enc.coderef(code, ref, fp)
    null = frames.NULL
    passthrough = enc.passthrough
    value = enc.enc
    slot = -1
    try:
        if exc is None:
            fields.append(lasti)
        else:
            slot = -2
            fields.append([lasti, value(exc)])
        # In frame slots nil stands for an empty slot (an unbound local is more
        # common in a suspended frame than a None), and None gets an ext.
        for slot, x in enumerate(localsplus):  # noqa: B007 (slot names the error)
            fields.append(None if x is null else NONE_EXT if x is None
                          else x if type(x) in passthrough else _slot(value(x)))
        base = len(localsplus)
        # The sub-generator a delegating frame sends to is stored untagged, in
        # its slot (the top of the stack; on 3.15 the slot below the top).
        sub_at = len(stack) + DELEGATE
        if not (lasti in info.delegating and sub_at >= 0
                and type(stack[sub_at]) in _GENERATOR_TYPES):
            sub_at = -1
        for i, x in enumerate(stack):
            slot = base + i
            if i == sub_at:
                fields.append(enc.delegated_frame(x))
            else:
                fields.append(None if x is null else NONE_EXT if x is None
                              else x if type(x) in passthrough else _slot(value(x)))
    except SnapshotError as err:
        names = info.slot_names
        if slot == -2:
            what = "the exception being handled"
        elif slot < len(names):
            what = f"local {names[slot]!r}"
        else:
            what = f"value stack slot {slot - len(names)}"
        raise SnapshotError(f"in {_where(gen, globals_)}, {what}: {err}") from None
    except RecursionError:
        raise SnapshotError(f"in {_where(gen, globals_)}: values nested too deeply") from None
    return fields


def _untag(code: types.CodeType, lasti: int, stack: list[Any], tagged_int: Any,
           gen: Any, globals_: Any) -> list[Any]:
    """3.14+: the stack with its tagged integers (a handler's lasti, 3.15's
    sequence indexes) as plain ints, after checking they sit exactly where
    the bytecode analysis expects tagged slots (the restore side re-tags
    the same slots)."""
    if not any(type(x) is tagged_int for x in stack):
        return stack
    kinds = slot_rules(code).stack_kinds(lasti, len(stack))
    out = list(stack)
    for j, x in enumerate(stack):
        if type(x) is tagged_int:
            if kinds[j] & ~NULLABLE not in TAGGED:
                raise SnapshotError(
                    f"{_where(gen, globals_)}: value stack slot {j} holds a tagged integer "
                    "where the bytecode analysis expects an object; corosnap does not know "
                    "this code shape (please report it)"
                )
            out[j] = int(x)
    return out


def _describe_finished(enc: Encoder, gen: Any, code: types.CodeType) -> CodeRef:
    """Name the code of a finished generator, whose frame (and globals) are
    gone: it was made by code of one of the modules being captured."""
    for module in enc.modules:
        try:
            return describe(code, module)
        except SnapshotError:
            continue
    raise SnapshotError(
        f"{describe_target(gen)} has finished, and its code is not found in the modules of "
        "the frames being captured"
    )


def _slot(encoded: Any) -> Any:
    """A value encoded as nil (a dropped traceback) is None, not an empty slot."""
    return NONE_EXT if encoded is None else encoded


def _where(gen: Any, globals_: dict[str, Any] | None) -> str:
    module = globals_.get("__name__") if globals_ else "?"
    return f"{describe_target(gen)} (module {module})"


def _refuse_state(gen: Any, state: int, globals_: dict[str, Any] | None) -> None:
    check_target(gen)
    if state == backend().RUNNING:
        raise SnapshotError(
            f"{_where(gen, globals_)} is running: a generator cannot be captured while it "
            "executes (dumps() must be called from outside it)"
        )
    raise SnapshotError(f"{_where(gen, globals_)} has finished or was closed: there is "
                        "nothing to resume")
