"""Resume points, and the shape of a frame at each of them.

What lives here: a pure function of a code object that says where a frame of
that code may legally be suspended, how many values its value stack holds
there, what *kind* of value each stack slot must hold (see ``_kinds``), and
which local slots must not be empty.  The restore path trusts nothing else:
an offset that is not in ``CodeInfo.resume`` is refused, a snapshot whose stack
has a different number of values than ``CodeInfo.resume[offset]`` is refused,
and so is any slot value its kind forbids, before a single byte of frame
memory is written.  Nothing here touches a frame or does I/O.

Theory of operation:
1. Forward abstract interpretation over stacks of slot kinds (depth = number
   of kinds).  Start at offset 0 with an empty stack; follow fall-through and
   jump edges (``dis.stack_effect`` for each edge, ``_kinds.transfer`` for the
   kinds); from every instruction inside an exception-table range, also follow
   the edge to its handler, which starts with the range's preserved slots, the
   handler's ``lasti`` if it has one, and the exception.  Paths that meet must
   agree on the depth (the compiler guarantees it, and we check it); their
   kinds join, and the pass runs to a fixpoint.
2. A ``YIELD_VALUE`` followed by ``RESUME``, reached with kinds ``k``, suspends
   the frame with ``k[:-1]`` on its stack: the yielded value is popped, and on
   resume ``gen.send()`` pushes the sent value.  A created frame holds what the
   prologue pushed before ``RETURN_GENERATOR`` (nothing, except 3.15's
   generator expressions, which evaluate ``iter(.0)`` first).
3. Backward liveness of *unchecked* local reads (3.12+, where the compiler
   emits LOAD_FAST only for locals it proved bound, and LOAD_FAST_CHECK
   elsewhere): a local that some path from the resume point reads unchecked
   before writing it must not be restored empty, or that read dereferences
   NULL.  The same pass decides whether a value an inlined comprehension
   saved with LOAD_FAST_AND_CLEAR may be NULL: only if the local it goes back
   into is not read unchecked afterwards.

Offsets crossing this module's boundary are in code units (2 bytes), the unit
CPython's ``_PyInterpreterFrame`` uses, and name the ``YIELD_VALUE`` the frame
is suspended on.  A created (never started) frame has offset ``-1``.
"""

from __future__ import annotations

import dis
import sys
import types
from dataclasses import dataclass

from . import _kinds
from ._kinds import OBJ, OPT, SAVED_PREFIX, TAGGED_KINDS, Kinds

V = sys.version_info[:2]
_YIELD_VALUE = dis.opmap["YIELD_VALUE"]
_RESUME = dis.opmap["RESUME"]
_RETURN_GENERATOR = dis.opmap.get("RETURN_GENERATOR", -1)
_LOAD_FAST_AND_CLEAR = dis.opmap.get("LOAD_FAST_AND_CLEAR", -1)
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
# 3.14+: END_ASYNC_FOR is listed in hasjrel, but its oparg only names the
# loop's END_SEND for sys.monitoring's BRANCH events; control falls through.
_JUMPS = (set(dis.hasjrel) | set(dis.hasjabs)) - {
    dis.opmap[name] for name in ("END_ASYNC_FOR", "INSTRUMENTED_END_ASYNC_FOR") if name in dis.opmap
}
_HAVE_ARGUMENT = dis.HAVE_ARGUMENT

# RESUME's oparg says where it is: 0 function start, 1 after yield, 2 after
# yield from, 3 after await.  3.11/3.12 use the whole oparg; 3.13 and 3.14
# keep the location in the low 2 bits and add a flag (4: "exception depth
# is 1"); 3.15 widens the location to 3 bits (4: start of a generator
# expression) and moves the flag to 8.
_RESUME_LOCATION_MASK = 0x7 if V >= (3, 15) else 0x3


def _op_ids(*names: str) -> frozenset[int]:
    return frozenset(dis.opmap[n] for n in names if n in dis.opmap)


# Local reads the interpreter does not check for NULL, and local writes.
# 3.11: LOAD_FAST raises UnboundLocalError on NULL, so nothing is unchecked.
# 3.12: LOAD_FAST is unchecked (the compiler emits LOAD_FAST_CHECK where a
#       local may be unbound).  3.13 adds the LOAD_FAST_LOAD_FAST and
#       STORE_FAST_LOAD_FAST superinstructions, 3.14 the borrowing variants.
_UNCHECKED_1 = _op_ids("LOAD_FAST", "LOAD_FAST_BORROW") if V >= (3, 12) else frozenset()
_UNCHECKED_2 = _op_ids("LOAD_FAST_LOAD_FAST", "LOAD_FAST_BORROW_LOAD_FAST_BORROW")
_STORE_1 = _op_ids("STORE_FAST", "DELETE_FAST", "LOAD_FAST_AND_CLEAR")
_STORE_2 = _op_ids("STORE_FAST_STORE_FAST")
_STORE_LOAD = _op_ids("STORE_FAST_LOAD_FAST")
_STORE_FAST = dis.opmap["STORE_FAST"]

CREATED = -1
"""The offset that stands for a created, never started frame."""


@dataclass(frozen=True, slots=True)
class CodeInfo:
    """What the bytecode of one code object says about its suspensions.

    ``resume`` maps each legal suspension offset (code units; ``CREATED`` for a
    frame that never ran) to the number of values on the value stack there, and
    ``stack_kinds`` to the kind of each of them (``_kinds``: OBJ, OPT, ITER,
    LASTI, ...).  ``tagged`` lists, per offset, the stack indexes whose integer
    values are tagged integers in the frame (3.14+).  ``bound`` lists, per
    offset, the ``localsplus`` indexes that must not be empty there.
    ``delegating`` holds the offsets where the frame is suspended inside
    ``yield from`` / ``await``; ``delegate`` is the stack index (from the top,
    negative) of the sub-iterator there.  ``slot_names`` names the
    ``localsplus`` slots (arguments, locals, cells, free variables), in frame
    order, for error messages and ``inspect``.  ``code_units`` bounds a
    handler's ``lasti``.  ``iterable_args`` are the argument indexes the
    prologue iterates before ``RETURN_GENERATOR`` (3.15 generator expressions),
    so a fresh generator needs an iterable placeholder there.
    """

    resume: dict[int, int]
    delegating: frozenset[int]
    slot_names: tuple[str, ...]
    cell_slots: tuple[int, ...]
    """Slots the interpreter reads as cells without checking (cell and free variables)."""
    stack_kinds: dict[int, Kinds]
    tagged: dict[int, tuple[int, ...]]
    bound: dict[int, frozenset[int]]
    code_units: int
    iterable_args: tuple[int, ...]
    delegate: int = -2 if V >= (3, 15) else -1
    """3.15 keeps a NULL-or-index slot above the receiver (see ``_kinds.SRC``)."""

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


def _effect(op: int, arg: int | None, jump: bool) -> int:
    if op < _HAVE_ARGUMENT:
        return dis.stack_effect(op, jump=jump)
    return dis.stack_effect(op, arg, jump=jump)


class _Flow:
    """The forward and backward passes over one code object (see the module doc)."""

    def __init__(self, code: types.CodeType) -> None:
        self.code = code
        self.instrs = list(dis.get_instructions(code))
        self.index = {ins.offset: i for i, ins in enumerate(self.instrs)}
        # Exception-table entries never overlap: one handler per offset at most.
        self.handler: dict[int, tuple[int, int, bool]] = {}
        for entry in dis.Bytecode(code).exception_entries:  # type: ignore[attr-defined]
            for ins in self.instrs[self.index.get(entry.start, len(self.instrs)):]:
                if ins.offset >= entry.end:
                    break
                self.handler[ins.offset] = (entry.target, entry.depth, entry.lasti)
        self.kinds: dict[int, Kinds] = {}
        self.saved_into: dict[str, list[tuple[int, int]]] = {}
        """saved kind -> [(offset of the store putting it back, local index)]."""

    def _fail(self, offset: int, what: str) -> ValueError:
        return ValueError(f"{what} at offset {offset} of {self.code.co_qualname}")

    def successors(self, i: int, st: Kinds) -> list[tuple[int, Kinds]]:
        """(offset, kinds) for each normal (non-exception) successor."""
        ins = self.instrs[i]
        op = ins.opcode
        out: list[tuple[int, Kinds]] = []
        if op in _TERMINAL:
            return out
        if op in _JUMPS:
            out.append((ins.argval, self._after(ins, st, True)))
            if op in _UNCONDITIONAL:
                return out
        if i + 1 < len(self.instrs):
            if op == _RETURN_GENERATOR:
                # gen_send_ex() pushes the first sent value (None), which the
                # following POP_TOP discards.
                after: Kinds = (*st, OBJ)
            elif op == _LOAD_FAST_AND_CLEAR:
                after = (*st, f"{SAVED_PREFIX}{ins.offset}")
            else:
                after = self._after(ins, st, False)
            out.append((self.instrs[i + 1].offset, after))
        return out

    def _after(self, ins: dis.Instruction, st: Kinds, jump: bool) -> Kinds:
        e = _effect(ins.opcode, ins.arg, jump)
        if len(st) + e < 0:
            raise self._fail(ins.offset, "negative stack depth")
        after = _kinds.transfer(ins.opcode, ins.arg or 0, st, e)
        if len(after) != len(st) + e:  # a kinds rule disagrees with dis
            raise self._fail(ins.offset, f"{ins.opname} kinds rule gives depth {len(after)}, "
                             f"dis {len(st) + e}")
        return after

    def forward(self) -> None:
        work: list[tuple[int, Kinds]] = [(self.instrs[0].offset, ())]
        kinds = self.kinds
        while work:
            offset, st = work.pop()
            seen = kinds.get(offset)
            if seen is not None:
                if len(seen) != len(st):
                    raise self._fail(offset, f"inconsistent stack depth {len(seen)} != {len(st)}")
                st = _kinds.join(seen, st)
                if st == seen:
                    continue
            kinds[offset] = st
            i = self.index[offset]
            ins = self.instrs[i]
            h = self.handler.get(offset)
            if h is not None:
                target, depth, lasti = h
                # 3.15 generator expressions: the outer StopIteration handler
                # (depth 2, for the iterator pair) also covers END_FOR /
                # POP_ITER / RETURN_VALUE after the loop, where the stack is
                # already shallower.  Those instructions cannot raise, so no
                # exception edge leaves them; any other instruction must keep
                # the depth its handler preserves.
                if len(st) >= depth:
                    work.append((target, _kinds.handler_entry(st, depth, lasti)))
            if ins.opcode == _STORE_FAST or ins.opcode in _STORE_2:
                # Where saved comprehension values go back (top of stack first).
                a = ins.arg or 0
                targets = [a] if ins.opcode == _STORE_FAST else [a >> 4, a & 15]
                for from_top, local in enumerate(targets, 1):
                    if from_top <= len(st) and st[-from_top].startswith(SAVED_PREFIX):
                        self.saved_into.setdefault(st[-from_top], []).append((offset, local))
            work.extend(self.successors(i, st))

    def backward(self) -> tuple[dict[int, frozenset[int]], dict[int, frozenset[int]]]:
        """Locals read unchecked before being written, on some path from each
        reachable offset: (before the instruction, after it)."""
        reachable = [ins.offset for ins in self.instrs if ins.offset in self.kinds]
        succs: dict[int, list[int]] = {}
        preds: dict[int, list[int]] = {off: [] for off in reachable}
        for off in reachable:
            i = self.index[off]
            succ = [nxt for nxt, _ in self.successors(i, self.kinds[off])]
            h = self.handler.get(off)
            if h is not None:
                succ.append(h[0])
            succs[off] = [s for s in succ if s in preds]
            for s in succs[off]:
                preds[s].append(off)
        need: dict[int, frozenset[int]] = dict.fromkeys(reachable, frozenset())
        work = list(reachable)
        while work:
            off = work.pop()
            out = frozenset().union(*(need[s] for s in succs[off]))
            new = _gen_kill(self.instrs[self.index[off]], out)
            if new != need[off]:
                need[off] = new
                work.extend(preds[off])
        need_out = {off: frozenset().union(*(need[s] for s in succs[off])) for off in reachable}
        return need, need_out


def _gen_kill(ins: dis.Instruction, out: frozenset[int]) -> frozenset[int]:
    op, arg = ins.opcode, ins.arg or 0
    if op in _UNCHECKED_1:
        return out | {arg}
    if op in _UNCHECKED_2:
        return out | {arg >> 4, arg & 15}
    if op in _STORE_1:
        return out - {arg}
    if op in _STORE_2:
        return out - {arg >> 4, arg & 15}
    if op in _STORE_LOAD:  # store arg >> 4, then load arg & 15
        return (out | {arg & 15}) - {arg >> 4} if (arg >> 4) != (arg & 15) else out - {arg >> 4}
    return out


def analyze(code: types.CodeType) -> CodeInfo:
    """Compute the resume points of ``code`` (uncached; see :func:`code_info`)."""
    flow = _Flow(code)
    flow.forward()
    need, need_out = flow.backward()
    # A saved value may be NULL only if the local it is put back into is not
    # read unchecked afterwards (3.12+ inlined comprehensions).
    must_saved = {
        k
        for k, stores in flow.saved_into.items()
        if any(local in need_out[store] for store, local in stores)
    }

    def final(kinds: Kinds) -> Kinds:
        return tuple(
            (OBJ if k in must_saved else OPT) if k.startswith(SAVED_PREFIX) else k for k in kinds
        )

    instrs, kinds = flow.instrs, flow.kinds
    resume: dict[int, int] = {}
    stack_kinds: dict[int, Kinds] = {}
    bound: dict[int, frozenset[int]] = {}
    delegating = set()
    iterable_args: tuple[int, ...] = ()
    for i, ins in enumerate(instrs):
        nxt = instrs[i + 1] if i + 1 < len(instrs) else None
        if ins.offset not in kinds or nxt is None:
            continue
        if ins.opcode == _RETURN_GENERATOR and CREATED not in resume:
            st = final(kinds[ins.offset])
            resume[CREATED], stack_kinds[CREATED] = len(st), st
            bound[CREATED] = need[nxt.offset]
            # 3.15: generator expressions iterate their argument before
            # RETURN_GENERATOR (LOAD_FAST .0; GET_ITER).
            iterable_args = tuple(
                sorted({p.arg for p in instrs[:i] if p.opname == "LOAD_FAST" and p.arg is not None
                        and p.arg < code.co_argcount}))
            continue
        if ins.opcode != _YIELD_VALUE or nxt.opcode != _RESUME:
            continue
        at = ins.offset // 2
        st = final(kinds[ins.offset][:-1])
        resume[at], stack_kinds[at] = len(st), st
        bound[at] = need[nxt.offset]
        if (nxt.arg or 0) & _RESUME_LOCATION_MASK >= 2:  # after yield from / await
            delegating.add(at)
    if CREATED not in resume:  # no RETURN_GENERATOR: not a generator's code
        resume[CREATED], stack_kinds[CREATED], bound[CREATED] = 0, (), frozenset()
    tagged = {
        at: tuple(j for j, k in enumerate(st) if k in TAGGED_KINDS)
        for at, st in stack_kinds.items()
    }
    names = slot_names(code)
    celled = set(code.co_cellvars) | set(code.co_freevars)
    cells = tuple(i for i, name in enumerate(names) if name in celled)
    return CodeInfo(
        resume,
        frozenset(delegating),
        names,
        cells,
        stack_kinds,
        tagged,
        bound,
        len(code.co_code) // 2,
        iterable_args,
    )


def stack_depths(code: types.CodeType) -> tuple[list[dis.Instruction], dict[int, int]]:
    """Depth of the value stack before each reachable instruction (byte offsets)."""
    flow = _Flow(code)
    flow.forward()
    return flow.instrs, {off: len(st) for off, st in flow.kinds.items()}


_cache: dict[int, tuple[types.CodeType, CodeInfo]] = {}


def code_info(code: types.CodeType) -> CodeInfo:
    """Cached :func:`analyze`: keyed by identity, holding the code alive."""
    hit = _cache.get(id(code))
    if hit is not None and hit[0] is code:
        return hit[1]
    info = analyze(code)
    _cache[id(code)] = (code, info)
    return info
