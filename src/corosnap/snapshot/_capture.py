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
from ..bytecode import CREATED, code_info, describe
from ..codec import NULL_EXT, Encoder
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


def encode_frame(enc: Encoder, gen: Any) -> list[Any]:
    """Encode one generator/coroutine frame (its sub-generators recursively)."""
    check_target(gen)
    frames = backend()
    state, lasti, localsplus, stack, exc, globals_ = frames.read(gen)
    code = gen.gi_code if type(gen) is types.GeneratorType else gen.cr_code
    where = f"{describe_target(gen)} (module {globals_.get('__name__') if globals_ else '?'})"
    if state == frames.RUNNING:
        raise SnapshotError(
            f"{where} is running: a generator cannot be captured while it executes "
            "(dumps() must be called from outside it)"
        )
    if state != frames.CREATED and state != frames.SUSPENDED:
        raise SnapshotError(f"{where} has finished or was closed: there is nothing to resume")
    info = code_info(code)
    if state == frames.CREATED:
        lasti = CREATED
    elif lasti not in info.resume:
        raise SnapshotError(f"{where} is suspended at offset {lasti}, which is not a yield point")
    if len(localsplus) != info.nlocalsplus or len(stack) != info.resume[lasti]:
        raise SnapshotError(
            f"{where}: frame shape ({len(localsplus)} slots, {len(stack)} stack values) does "
            f"not match its bytecode ({info.nlocalsplus}, {info.resume[lasti]})"
        )
    fields = enc.coderef(code, describe(code, globals_.get("__name__")))
    null = frames.NULL
    passthrough = enc.passthrough
    value = enc.enc
    names = info.slot_names
    slot = -1
    try:
        if exc is None:
            fields.append(lasti)
        else:
            slot = -2
            fields.append([lasti, value(exc)])
        for slot, x in enumerate(localsplus):  # noqa: B007 (slot names the error)
            fields.append(NULL_EXT if x is null else x if type(x) in passthrough else value(x))
        base = len(localsplus)
        for i, x in enumerate(stack):
            slot = base + i
            fields.append(NULL_EXT if x is null else x if type(x) in passthrough else value(x))
    except SnapshotError as err:
        if slot == -2:
            what = "the exception being handled"
        elif slot < len(names):
            what = f"local {names[slot]!r}"
        else:
            what = f"value stack slot {slot - len(names)}"
        raise SnapshotError(f"in {where}, {what}: {err}") from None
    except RecursionError:
        raise SnapshotError(f"in {where}: values nested too deeply to capture") from None
    return fields
