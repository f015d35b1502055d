"""Restore: frame fields -> a live generator/coroutine, validated first.

Order of work for one frame, and why:
1. Resolve the code by name and compare fingerprints (CodeMismatch).
2. Check the position is a resume point of that code and the number of stack
   values equals what the bytecode implies there (CorruptSnapshot).
3. Build a fresh generator by calling a function made from the code with
   placeholder arguments: only the prologue up to RETURN_GENERATOR runs, no
   user code.  Register it in the memo (its own locals may refer to it).
4. Decode the slots, check the kinds the interpreter relies on without
   checking (cells where the code has cells, the exception, the delegated-to
   iterator), and only then write the frame in one C call.
A failure at any step leaves no half-written frame behind: the fresh
generator is simply dropped.
"""

from __future__ import annotations

import inspect
import types
from typing import Any

from msgpack import ExtType

from .._errors import CodeMismatch, CorruptSnapshot
from ..bytecode import CodeRef, code_info, fingerprint, locate
from ..codec import EXT_NULL, Decoder
from ..codec._globals import check_allowed
from ..frames import backend

_RESUMABLE = inspect.CO_GENERATOR | inspect.CO_COROUTINE | inspect.CO_ITERABLE_COROUTINE

_fresh_cache: dict[int, tuple[types.CodeType, types.FunctionType, tuple[Any, ...],
                              dict[str, Any]]] = {}


def fresh_generator(code: types.CodeType, globals_: dict[str, Any]) -> Any:
    """A new, created generator/coroutine of ``code``; runs no user code."""
    hit = _fresh_cache.get(id(code))
    if hit is None or hit[0] is not code or hit[1].__globals__ is not globals_:
        flags = code.co_flags
        if not flags & _RESUMABLE or flags & inspect.CO_ASYNC_GENERATOR:
            raise CorruptSnapshot(f"{code.co_qualname} is not a generator or coroutine function")
        closure = tuple(types.CellType() for _ in code.co_freevars) or None
        fn = types.FunctionType(code, globals_, code.co_name, None, closure)
        argc = code.co_argcount
        kwonly = code.co_varnames[argc : argc + code.co_kwonlyargcount]
        hit = (code, fn, (None,) * argc, dict.fromkeys(kwonly))
        _fresh_cache[id(code)] = hit
    return hit[1](*hit[2], **hit[3])


def decode_coderef(dec: Decoder, v: list[Any], i: int) -> tuple[types.CodeType, dict[str, Any],
                                                                 int]:
    """Read the code fields at v[i:], returning (code, globals, next index)."""
    if i >= len(v):
        raise CorruptSnapshot("truncated code reference")
    first = v[i]
    if type(first) is int and first < 0:
        k = -1 - first
        if k >= len(dec.codes):
            raise CorruptSnapshot(f"code reference {k} points past the codes read so far")
        code, globals_ = dec.codes[k]
        return code, globals_, i + 1
    if i + 3 > len(v):
        raise CorruptSnapshot("truncated code reference")
    module = dec.string(first)
    qual_f, fp = v[i + 1], v[i + 2]
    if type(qual_f) is list:
        if not qual_f or not all(type(p) is int and 0 <= p < 1 << 16 for p in qual_f[1:]):
            raise CorruptSnapshot("malformed nested code path")
        ref = CodeRef(module, dec.string(qual_f[0]), tuple(qual_f[1:]))
    else:
        ref = CodeRef(module, dec.string(qual_f))
    if type(fp) is not int:
        raise CorruptSnapshot("malformed code fingerprint")
    if dec.safe:
        check_allowed(ref.module, ref.qualname, dec.allow, "code of")
    code, globals_ = locate(ref)
    now = fingerprint(code)
    if now != fp:
        raise CodeMismatch(
            f"{ref.module}.{code.co_qualname}(): its code changed since the snapshot was taken "
            f"(fingerprint {fp:016x} in the snapshot, {now:016x} now); a changed function "
            "cannot resume an old frame"
        )
    dec.codes.append((code, globals_))
    return code, globals_, i + 3


def decode_frame(dec: Decoder, v: list[Any], i: int) -> Any:
    """Rebuild one frame from v[i:] (see the module docstring)."""
    code, globals_, i = decode_coderef(dec, v, i)
    info = code_info(code)
    where = f"{code.co_qualname}()"
    if i >= len(v):
        raise CorruptSnapshot(f"{where}: truncated frame")
    pos = v[i]
    exc_f = None
    if type(pos) is list:
        if len(pos) != 2:
            raise CorruptSnapshot(f"{where}: malformed position")
        pos, exc_f = pos
    if type(pos) is not int or pos not in info.resume:
        raise CorruptSnapshot(f"{where}: offset {pos!r} is not a resume point of its code")
    i += 1
    n = info.nlocalsplus
    depth = len(v) - i - n
    if depth != info.resume[pos]:
        raise CorruptSnapshot(
            f"{where}: {depth} stack values at offset {pos}, but its bytecode has "
            f"{info.resume[pos]} there"
        )
    gen = fresh_generator(code, globals_)
    dec.memo.append(gen)
    exc = None
    if exc_f is not None:
        exc = dec.dec(exc_f)
        if not isinstance(exc, BaseException):
            raise CorruptSnapshot(f"{where}: the handled exception is a {type(exc).__name__}")
    frames = backend()
    null = frames.NULL
    decode = dec.dec
    slots = []
    for x in v[i:]:
        t = type(x)
        if t is ExtType and x.code == EXT_NULL:
            slots.append(null)
        elif t is list or t is dict or t is ExtType:
            slots.append(decode(x))
        else:
            slots.append(x)
    for index in info.cell_slots:
        if type(slots[index]) is not types.CellType:
            raise CorruptSnapshot(
                f"{where}: slot {info.slot_names[index]!r} must hold a cell, got "
                f"{type(slots[index]).__name__}"
            )
    if pos in info.delegating:
        sub = slots[-1]
        if not (type(sub) in (types.GeneratorType, types.CoroutineType)
                or hasattr(type(sub), "__next__")):
            raise CorruptSnapshot(
                f"{where}: delegates to a {type(sub).__name__}, which is not an iterator"
            )
    try:
        frames.write(gen, pos, slots[:n], slots[n:], exc)
    except (TypeError, ValueError) as err:
        raise CorruptSnapshot(f"{where}: {err}") from err
    return gen
