"""Resume points and the stack depth at each of them.

What lives here: a pure function of a code object that says where a frame of
that code may legally be suspended, and how many values its value stack holds
there.  The restore path trusts nothing else: an offset that is not in
``CodeInfo.resume`` is refused, and a snapshot whose stack has a different
number of values than ``CodeInfo.resume[offset]`` is refused, before a single
byte of frame memory is written.

Theory of operation: abstract interpretation of the bytecode over stack
*depths* (not values).  Start at offset 0 with depth 0 and at every exception
handler with the depth the exception table records (+1 for ``lasti``, +1 for
the exception itself); follow fall-through and jump edges with
``dis.stack_effect``; every instruction must be reached with one depth (the
compiler guarantees it, and we check it).  A ``YIELD_VALUE`` reached with depth
``d`` suspends the frame with ``d - 1`` values on its stack: the yielded value
is popped, and on resume ``gen.send()`` pushes the sent value back.

Offsets crossing this module's boundary are in code units (2 bytes), the unit
CPython's ``_PyInterpreterFrame`` uses, and name the ``YIELD_VALUE`` the frame
is suspended on.  A created (never started) frame has offset ``-1``.
"""

from __future__ import annotations

import dis
import types
from dataclasses import dataclass

_YIELD_VALUE = dis.opmap["YIELD_VALUE"]
_RESUME = dis.opmap["RESUME"]
_RETURN_GENERATOR = dis.opmap.get("RETURN_GENERATOR", -1)
_UNCONDITIONAL = {
    dis.opmap[name]
    for name in (
        "JUMP_FORWARD",
        "JUMP_BACKWARD",
        "JUMP_BACKWARD_NO_INTERRUPT",
        "JUMP_ABSOLUTE",
        "JUMP",
        "JUMP_NO_INTERRUPT",
    )
    if name in dis.opmap
}
_TERMINAL = {
    dis.opmap[name]
    for name in ("RETURN_VALUE", "RETURN_CONST", "RAISE_VARARGS", "RERAISE")
    if name in dis.opmap
}
_JUMPS = set(dis.hasjrel) | set(dis.hasjabs)
_HAVE_ARGUMENT = dis.HAVE_ARGUMENT

CREATED = -1
"""The offset that stands for a created, never started frame."""


@dataclass(frozen=True, slots=True)
class CodeInfo:
    """What the bytecode of one code object says about its suspensions.

    ``resume`` maps each legal suspension offset (code units) to the number of
    values on the value stack there; ``delegating`` holds the offsets where the
    frame is suspended inside ``yield from`` / ``await`` (the top of the stack is
    the sub-iterator the frame delegates to).  ``slot_names`` names the
    ``localsplus`` slots (arguments, locals, cells, free variables), in frame
    order, for error messages and ``inspect``.
    """

    resume: dict[int, int]
    delegating: frozenset[int]
    slot_names: tuple[str, ...]
    cell_slots: tuple[int, ...]
    """Slots the interpreter reads as cells without checking (cell and free variables)."""

    @property
    def nlocalsplus(self) -> int:
        return len(self.slot_names)


def slot_names(code: types.CodeType) -> tuple[str, ...]:
    """Names of the frame's ``localsplus`` slots, in frame order.

    Arguments that are also cells share one slot (CPython >= 3.11), so a cell
    variable already listed in ``co_varnames`` does not get a second slot.
    """
    varnames = code.co_varnames
    cells = tuple(c for c in code.co_cellvars if c not in varnames)
    return varnames + cells + code.co_freevars


def _exception_entries(code: types.CodeType) -> list[tuple[int, int]]:
    """(handler offset, depth at the handler) for every exception table entry."""
    out = []
    for entry in dis.Bytecode(code).exception_entries:  # type: ignore[attr-defined]
        out.append((entry.target, entry.depth + (1 if entry.lasti else 0) + 1))
    return out


def _effect(op: int, arg: int | None, jump: bool) -> int:
    if op < _HAVE_ARGUMENT:
        return dis.stack_effect(op, jump=jump)
    return dis.stack_effect(op, arg, jump=jump)


def stack_depths(code: types.CodeType) -> tuple[list[dis.Instruction], dict[int, int]]:
    """Depth of the value stack before each reachable instruction (byte offsets)."""
    instrs = list(dis.get_instructions(code))
    following = {ins.offset: instrs[i + 1].offset for i, ins in enumerate(instrs[:-1])}
    by_offset = {ins.offset: ins for ins in instrs}
    depth: dict[int, int] = {}
    work: list[tuple[int, int]] = [(instrs[0].offset, 0)]
    work.extend(_exception_entries(code))
    while work:
        offset, d = work.pop()
        while True:
            seen = depth.get(offset)
            if seen is not None:
                if seen != d:
                    raise ValueError(
                        f"inconsistent stack depth at offset {offset} of {code.co_qualname}: "
                        f"{seen} != {d}"
                    )
                break
            depth[offset] = d
            ins = by_offset[offset]
            op = ins.opcode
            if op in _TERMINAL:
                break
            if op in _JUMPS:
                work.append((ins.argval, d + _effect(op, ins.arg, True)))
                if op in _UNCONDITIONAL:
                    break
            nxt = following.get(offset)
            if nxt is None:
                break
            if op == _RETURN_GENERATOR:
                # gen_send_ex() pushes the first sent value (None), which the
                # following POP_TOP discards.
                d += 1
            else:
                d += _effect(op, ins.arg, False)
            if d < 0:
                raise ValueError(
                    f"negative stack depth after offset {offset} of {code.co_qualname}"
                )
            offset = nxt
    return instrs, depth


def analyze(code: types.CodeType) -> CodeInfo:
    """Compute the resume points of ``code`` (uncached; see :func:`code_info`)."""
    instrs, depth = stack_depths(code)
    resume: dict[int, int] = {CREATED: 0}
    delegating = set()
    for i, ins in enumerate(instrs):
        if ins.opcode != _YIELD_VALUE or ins.offset not in depth:
            continue
        nxt = instrs[i + 1] if i + 1 < len(instrs) else None
        if nxt is None or nxt.opcode != _RESUME:
            continue
        at = ins.offset // 2
        resume[at] = depth[ins.offset] - 1
        if (nxt.arg or 0) >= 2:  # RESUME after a yield inside yield from / await
            delegating.add(at)
    names = slot_names(code)
    celled = set(code.co_cellvars) | set(code.co_freevars)
    cells = tuple(i for i, name in enumerate(names) if name in celled)
    return CodeInfo(resume, frozenset(delegating), names, cells)


_cache: dict[int, tuple[types.CodeType, CodeInfo]] = {}


def code_info(code: types.CodeType) -> CodeInfo:
    """Cached :func:`analyze`: keyed by identity, holding the code alive."""
    hit = _cache.get(id(code))
    if hit is not None and hit[0] is code:
        return hit[1]
    info = analyze(code)
    _cache[id(code)] = (code, info)
    return info
