"""Resume points and the stack depth at each of them.

What lives here: a pure function of a code object that says where a frame of
that code may legally be suspended, and how many values its value stack holds
there.  The restore path trusts nothing else: an offset that is not in
``CodeInfo.resume`` is refused, and a snapshot whose stack has a different
number of values than ``CodeInfo.resume[offset]`` is refused, before a single
byte of frame memory is written.  (What *kind* of value each slot must hold is
``_kinds``' job, built on this.)

Theory of operation: abstract interpretation of the bytecode over stack
*depths* (not values).  Start at offset 0 with depth 0 and at every exception
handler with the depth the exception table records (+1 for ``lasti``, +1 for
the exception itself); follow fall-through and jump edges with
``dis.stack_effect``; every instruction must be reached with one depth (the
compiler guarantees it, and we check it).  A ``YIELD_VALUE`` reached with depth
``d`` suspends the frame with ``d - 1`` values on its stack: the yielded value
is popped, and on resume ``gen.send()`` pushes the sent value back.  A created
frame holds what its prologue pushed before ``RETURN_GENERATOR``: nothing,
except in 3.15's generator expressions, which evaluate ``iter(.0)`` first.

The analysis is driven by ``dis`` of the running interpreter, so it follows
each version's instruction set by itself; the few places where ``dis`` alone
says the wrong thing, or where versions encode the same fact differently, are
the small tables below, each naming the versions it applies to.

Offsets crossing this module's boundary are in code units (2 bytes), the unit
CPython's ``_PyInterpreterFrame`` uses, and name the ``YIELD_VALUE`` the frame
is suspended on.  A created (never started) frame has offset ``-1``.
"""

from __future__ import annotations

import dis
import sys
import types
from dataclasses import dataclass

from .._weak import IdentityCache

V = sys.version_info[:2]
_YIELD_VALUE = dis.opmap["YIELD_VALUE"]
_RESUME = dis.opmap["RESUME"]
_RETURN_GENERATOR = dis.opmap.get("RETURN_GENERATOR", -1)
_LOAD_FAST = dis.opmap["LOAD_FAST"]
UNCONDITIONAL = frozenset(
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
)
TERMINAL = frozenset(
    dis.opmap[name]
    for name in ("RETURN_VALUE", "RETURN_CONST", "RAISE_VARARGS", "RERAISE")
    if name in dis.opmap
)
# 3.14+: END_ASYNC_FOR is listed in hasjrel, but its oparg only names the
# loop's END_SEND for sys.monitoring's BRANCH events (dis calls it "not really
# a jump"); control falls through to the next instruction.
JUMPS = frozenset(set(dis.hasjrel) | set(dis.hasjabs)) - {
    dis.opmap[name] for name in ("END_ASYNC_FOR", "INSTRUMENTED_END_ASYNC_FOR") if name in dis.opmap
}
_HAVE_ARGUMENT = dis.HAVE_ARGUMENT

# RESUME's oparg says where it is: 0 function start, 1 after yield, 2 after
# yield from, 3 after await.  3.11/3.12 use the whole oparg; 3.13 and 3.14
# keep the location in the low 2 bits and add a flag (4: "exception depth
# is 1"); 3.15 widens the location to 3 bits (4: start of a generator
# expression) and moves the flag to 8.
_RESUME_LOCATION_MASK = 0x7 if V >= (3, 15) else 0x3

CREATED = -1
"""The offset that stands for a created, never started frame."""

DELEGATE = -2 if V >= (3, 15) else -1
"""Stack index (from the top) of the sub-iterator a delegating frame sends
to.  3.15 keeps SEND's receiver in a pair with a NULL-or-index slot above it
(see ``_kinds.INDEX``); before, the receiver is the top of the stack."""


@dataclass(frozen=True, slots=True)
class CodeInfo:
    """What the bytecode of one code object says about its suspensions.

    ``resume`` maps each legal suspension offset (code units; ``CREATED`` for a
    frame that never ran) to the number of values on the value stack there;
    ``delegating`` holds the offsets where the frame is suspended inside
    ``yield from`` / ``await`` (the stack value at ``DELEGATE`` is the
    sub-iterator the frame delegates to).  ``slot_names`` names the
    ``localsplus`` slots (arguments, locals, cells, free variables), in frame
    order, for error messages and ``inspect``.  ``iterable_args`` are the
    argument slots the prologue iterates before ``RETURN_GENERATOR`` (3.15
    generator expressions), which a fresh generator needs an iterable for.
    """

    resume: dict[int, int]
    delegating: frozenset[int]
    slot_names: tuple[str, ...]
    cell_slots: tuple[int, ...]
    """Slots the interpreter reads as cells without checking (cell and free variables)."""
    iterable_args: tuple[int, ...] = ()

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


def effect(op: int, arg: int | None, jump: bool) -> int:
    """``dis.stack_effect`` for one edge of an instruction."""
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
            if op in TERMINAL:
                break
            if op in JUMPS:
                work.append((ins.argval, d + effect(op, ins.arg, True)))
                if op in UNCONDITIONAL:
                    break
            nxt = following.get(offset)
            if nxt is None:
                break
            if op == _RETURN_GENERATOR:
                # gen_send_ex() pushes the first sent value (None), which the
                # following POP_TOP discards.  (dis says 0 up to 3.12, 1 after.)
                d += 1
            else:
                d += effect(op, ins.arg, False)
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
    iterable_args: set[int] = set()
    created_seen = False
    for i, ins in enumerate(instrs):
        if ins.offset not in depth:
            continue
        if ins.opcode == _RETURN_GENERATOR and not created_seen:
            # The stack RETURN_GENERATOR copies into the generator.
            created_seen = True
            resume[CREATED] = depth[ins.offset]
            # 3.15: generator expressions run LOAD_FAST .0; GET_ITER first.
            iterable_args = {
                p.arg for p in instrs[:i]
                if p.opcode == _LOAD_FAST and p.arg is not None and p.arg < code.co_argcount
            }
            continue
        if ins.opcode != _YIELD_VALUE:
            continue
        nxt = instrs[i + 1] if i + 1 < len(instrs) else None
        if nxt is None or nxt.opcode != _RESUME:
            continue
        at = ins.offset // 2
        resume[at] = depth[ins.offset] - 1
        if (nxt.arg or 0) & _RESUME_LOCATION_MASK >= 2:  # after yield from / await
            delegating.add(at)
    names = slot_names(code)
    celled = set(code.co_cellvars) | set(code.co_freevars)
    cells = tuple(i for i, name in enumerate(names) if name in celled)
    return CodeInfo(resume, frozenset(delegating), names, cells, tuple(sorted(iterable_args)))


_cache: IdentityCache[CodeInfo] = IdentityCache()


def code_info(code: types.CodeType) -> CodeInfo:
    """Cached :func:`analyze`: keyed by identity, holding the code weakly."""
    info = _cache.get(code)
    if info is None:
        info = _cache.put(code, analyze(code))
    return info
