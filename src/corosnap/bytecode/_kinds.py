"""What kind of object each frame slot must hold at a resume point.

What lives here: the answer to "which values would the interpreter use
*without checking* after this frame resumes?", derived from the bytecode that
produced each stack slot.  ``corosnap.snapshot`` checks restored values
against these kinds before writing the frame, so a hostile or corrupt blob
cannot make CPython dereference a wrong object later.

The dangerous uses (CPython 3.11-3.15), and the kind that guards each:

- ``FOR_ITER`` calls ``tp_iternext`` of its slot directly: ITER (the slot came
  from ``GET_ITER``).
- ``LIST_APPEND`` / ``LIST_EXTEND`` (and ``PREP_RERAISE_STAR``) cast their slot
  to a list: LIST (from ``BUILD_LIST``); ``SET_UPDATE`` to a set: SET.
- ``RERAISE``, ``WITH_EXCEPT_START``, ``POP_EXCEPT`` and ``sys.exc_info`` read
  exception slots as exception objects: EXC for the exception an exception
  handler pushes, EXC_OR_NONE for the previous exception ``PUSH_EXC_INFO``
  saves below it.
- ``RERAISE oparg`` jumps to the instruction offset stored in the handler's
  ``lasti`` slot: LASTI (an int inside the code).
- Every stack slot must be non-NULL except those the bytecode itself fills
  with NULL: ``PUSH_NULL``, the NULL half of ``LOAD_GLOBAL`` / ``LOAD_ATTR`` /
  ``LOAD_SUPER_ATTR`` / ``LOAD_METHOD`` (``dis`` shows it as ``NULL + name`` or
  ``name + NULL``, the position changed in 3.13) and ``LOAD_FAST_AND_CLEAR``:
  those get the NULLABLE flag.

Theory of operation: the same abstract interpretation as ``_analysis`` but
over tuples of labels.  An instruction's pops are derived from its net stack
effect and its number of pushes, which is 1 unless the tables below say
otherwise; special instructions (SWAP, COPY, the producers above) are handled
by name.  At a join the labels meet: equal labels stay, different ones become
ANY (with NULLABLE if either allows NULL), so a merge can only make the check
weaker, never reject a frame the interpreter could really produce.  If the
label stacks ever disagree in depth with ``_analysis`` the code gets no kind
information except "not NULL", which can only refuse, never crash.

Locals: from 3.12 on ``LOAD_FAST`` (and its super-instructions) read a local
without checking for NULL when the compiler proved it bound.  ``must_bind``
is a backward analysis: the locals some path from the resume point reads
with such an instruction before storing them must not be NULL.  3.11 checks
every ``LOAD_FAST``, so it has no such locals.
"""

from __future__ import annotations

import dis
import sys
import types

from ._analysis import CREATED, code_info, slot_names, stack_depths

ANY = 0
ITER = 1
LIST = 2
SET = 3
EXC = 4
EXC_OR_NONE = 5
LASTI = 6
NULLABLE = 8
"""Flag: the slot may be empty (NULL)."""

KIND_NAMES = {ANY: "any object", ITER: "an iterator", LIST: "a list", SET: "a set",
              EXC: "an exception", EXC_OR_NONE: "an exception or None",
              LASTI: "an instruction offset"}

_PUSH_NOTHING = frozenset(
    name for name in dis.opmap
    if name.startswith(("STORE_", "DELETE_", "POP_", "JUMP", "RETURN_", "RAISE_"))
    or name in {
        "NOP", "RESUME", "EXTENDED_ARG", "CACHE", "RERAISE", "PRINT_EXPR", "IMPORT_STAR",
        "LIST_APPEND", "SET_ADD", "MAP_ADD", "LIST_EXTEND", "SET_UPDATE", "DICT_UPDATE",
        "DICT_MERGE", "END_ASYNC_FOR", "SETUP_ANNOTATIONS", "COPY_FREE_VARS", "MAKE_CELL",
        "KW_NAMES", "PRECALL", "END_FOR", "INTERPRETER_EXIT", "NOT_TAKEN", "POP_ITER",
        "RESUME_CHECK", "ENTER_EXECUTOR",
    }
)
_PUSH_TWO = frozenset({"BEFORE_WITH", "BEFORE_ASYNC_WITH", "PUSH_EXC_INFO", "LOAD_METHOD",
                       "CHECK_EG_MATCH", "LOAD_SPECIAL", "CLEANUP_THROW"})
_NULL_PAIRS = frozenset({"LOAD_GLOBAL", "LOAD_ATTR", "LOAD_SUPER_ATTR", "LOAD_METHOD"})
_UNPACK = frozenset({"UNPACK_SEQUENCE", "UNPACK_EX"})
_RETURN_GENERATOR = dis.opmap.get("RETURN_GENERATOR", -1)
_JUMPS = set(dis.hasjrel) | set(dis.hasjabs)

_UNCHECKED_LOADS: frozenset[str]
if sys.version_info >= (3, 12):
    # LOAD_FAST and friends read without a NULL check (LOAD_FAST_CHECK exists).
    _UNCHECKED_LOADS = frozenset({"LOAD_FAST", "LOAD_FAST_LOAD_FAST", "LOAD_FAST_BORROW",
                                  "LOAD_FAST_BORROW_LOAD_FAST_BORROW",
                                  "STORE_FAST_LOAD_FAST"})
else:
    _UNCHECKED_LOADS = frozenset()
_PAIRED_LOCALS = frozenset({"LOAD_FAST_LOAD_FAST", "LOAD_FAST_BORROW_LOAD_FAST_BORROW",
                            "STORE_FAST_STORE_FAST", "STORE_FAST_LOAD_FAST"})


def _meet(a: int, b: int) -> int:
    if a == b:
        return a
    return ANY | ((a | b) & NULLABLE)


def _effect(ins: dis.Instruction, jump: bool) -> int:
    if ins.opcode < dis.HAVE_ARGUMENT:
        return dis.stack_effect(ins.opcode, jump=jump)
    return dis.stack_effect(ins.opcode, ins.arg, jump=jump)


def _step(ins: dis.Instruction, labels: tuple[int, ...], jump: bool) -> tuple[int, ...]:
    """Labels after ``ins`` (taking the jump edge if ``jump``)."""
    name = ins.opname
    net = _effect(ins, jump)
    if ins.opcode == _RETURN_GENERATOR:
        return labels + (ANY,)  # gen_send_ex pushes the first sent value
    if name == "SWAP":
        n = ins.arg or 0
        swapped = list(labels)
        swapped[-1], swapped[-n] = swapped[-n], swapped[-1]
        return tuple(swapped)
    if name == "COPY":
        return labels + (labels[-(ins.arg or 0)],)
    if name == "GET_ITER":
        return labels[:-1] + (ITER,)
    if name == "BUILD_LIST":
        return labels[: len(labels) - (ins.arg or 0)] + (LIST,)
    if name == "BUILD_SET":
        return labels[: len(labels) - (ins.arg or 0)] + (SET,)
    if name == "PUSH_EXC_INFO":
        return labels[:-1] + (EXC_OR_NONE, EXC)
    if name == "PUSH_NULL" or name == "LOAD_FAST_AND_CLEAR":
        return labels + (ANY | NULLABLE,)
    if name == "FOR_ITER" and not jump:
        return labels + (ANY,)  # peeks at the iterator, pushes the next value
    if name in _UNPACK:
        return labels[:-1] + (ANY,) * (net + 1)
    pushes = 0 if name in _PUSH_NOTHING else 2 if name in _PUSH_TWO else 1
    if name == "FOR_ITER":  # the exhausted edge: the iterator goes, nothing comes
        pushes = 0
    if name in _NULL_PAIRS and net >= 1 and "NULL" in ins.argrepr:
        pushes = 2
    pops = pushes - net
    if pops < 0:
        pushes, pops = net, 0
    out = labels[: len(labels) - pops]
    if pushes == 2 and name in _NULL_PAIRS and "NULL" in ins.argrepr:
        before, _, after = ins.argrepr.partition("+")
        low = ANY | NULLABLE if "NULL" in before else ANY
        high = ANY | NULLABLE if "NULL" in after else ANY
        return out + (low, high)
    return out + (ANY,) * pushes


def _kinds(code: types.CodeType) -> dict[int, tuple[int, ...]]:
    instrs, depth = stack_depths(code)
    following = {ins.offset: instrs[i + 1].offset for i, ins in enumerate(instrs[:-1])}
    by_offset = {ins.offset: ins for ins in instrs}
    handlers = [
        (e.start, e.end, e.target, e.depth, e.lasti)
        for e in dis.Bytecode(code).exception_entries  # type: ignore[attr-defined]
    ]
    state: dict[int, tuple[int, ...]] = {}
    work: list[tuple[int, tuple[int, ...]]] = []

    def flow(offset: int, labels: tuple[int, ...]) -> None:
        old = state.get(offset)
        if old is None:
            state[offset] = labels
            work.append((offset, labels))
        elif old != labels:
            if len(old) != len(labels):
                raise ValueError("label depth mismatch")
            merged = tuple(_meet(a, b) for a, b in zip(old, labels, strict=True))
            if merged != old:
                state[offset] = merged
                work.append((offset, merged))

    terminal = {"RETURN_VALUE", "RETURN_CONST", "RAISE_VARARGS", "RERAISE"}
    unconditional = {"JUMP_FORWARD", "JUMP_BACKWARD", "JUMP_BACKWARD_NO_INTERRUPT",
                     "JUMP_ABSOLUTE", "JUMP", "JUMP_NO_INTERRUPT"}
    flow(instrs[0].offset, ())
    while work:
        offset, labels = work.pop()
        if state.get(offset) != labels:
            continue
        ins = by_offset[offset]
        if len(labels) != depth.get(offset, -1):
            raise ValueError("label depth disagrees with the depth analysis")
        for start, end, target, hdepth, lasti in handlers:
            if start <= offset < end:
                flow(target, labels[:hdepth] + ((LASTI,) if lasti else ()) + (EXC,))
        if ins.opname in terminal:
            continue
        if ins.opcode in _JUMPS:
            flow(ins.argval, _step(ins, labels, True))
            if ins.opname in unconditional:
                continue
        nxt = following.get(offset)
        if nxt is not None:
            flow(nxt, _step(ins, labels, False))
    info = code_info(code)
    out: dict[int, tuple[int, ...]] = {}
    for ins in instrs:
        at = ins.offset // 2
        if at in info.resume and ins.opname == "YIELD_VALUE" and ins.offset in state:
            out[at] = state[ins.offset][:-1]  # the yielded value is popped
    return out


def _local_indexes(code: types.CodeType, ins: dis.Instruction) -> tuple[int, ...]:
    """localsplus indexes an instruction reads or writes (super-instructions: two)."""
    arg = ins.arg or 0
    if ins.opname in _PAIRED_LOCALS:
        return (arg >> 4, arg & 15)
    return (arg,)


def _must_bind(code: types.CodeType) -> dict[int, frozenset[int]]:
    if not _UNCHECKED_LOADS:
        return {}
    instrs, depth = stack_depths(code)
    index = {ins.offset: i for i, ins in enumerate(instrs)}
    succ: list[list[int]] = [[] for _ in instrs]
    handlers = [(e.start, e.end, e.target)
                for e in dis.Bytecode(code).exception_entries]  # type: ignore[attr-defined]
    terminal = {"RETURN_VALUE", "RETURN_CONST", "RAISE_VARARGS", "RERAISE"}
    unconditional = {"JUMP_FORWARD", "JUMP_BACKWARD", "JUMP_BACKWARD_NO_INTERRUPT",
                     "JUMP_ABSOLUTE", "JUMP", "JUMP_NO_INTERRUPT"}
    reads: list[frozenset[int]] = []
    writes: list[frozenset[int]] = []
    for i, ins in enumerate(instrs):
        name = ins.opname
        locs = _local_indexes(code, ins)
        if name == "STORE_FAST_LOAD_FAST":
            writes.append(frozenset(locs[:1]))
            reads.append(frozenset(locs[1:]))
        elif name in _UNCHECKED_LOADS:
            writes.append(frozenset())
            reads.append(frozenset(locs))
        elif name.startswith("STORE_FAST"):
            writes.append(frozenset(locs))
            reads.append(frozenset())
        else:
            writes.append(frozenset())
            reads.append(frozenset())
        for start, end, target in handlers:
            if start <= ins.offset < end:
                succ[i].append(index[target])
        if name in terminal:
            continue
        if ins.opcode in _JUMPS:
            succ[i].append(index[ins.argval])
            if name in unconditional:
                continue
        if i + 1 < len(instrs):
            succ[i].append(i + 1)
    need: list[frozenset[int]] = [frozenset()] * len(instrs)
    changed = True
    while changed:
        changed = False
        for i in range(len(instrs) - 1, -1, -1):
            out: frozenset[int] = frozenset().union(*(need[j] for j in succ[i]))
            new = (out - writes[i]) | reads[i]
            if new != need[i]:
                need[i] = new
                changed = True
    info = code_info(code)
    result: dict[int, frozenset[int]] = {}
    for i, ins in enumerate(instrs):
        at = ins.offset // 2
        if at in info.resume and ins.opname == "YIELD_VALUE" and i + 1 < len(instrs):
            result[at] = need[i + 1]
    result[CREATED] = need[0] if instrs else frozenset()
    return result


class SlotRules:
    """Per-resume-point rules for one code object (see the module docstring)."""

    __slots__ = ("stack", "bound", "ok")

    def __init__(self, code: types.CodeType) -> None:
        try:
            self.stack = _kinds(code)
            self.ok = True
        except (ValueError, KeyError, IndexError):
            self.stack = {}
            self.ok = False
        self.bound = _must_bind(code)

    def stack_kinds(self, offset: int, depth: int) -> tuple[int, ...]:
        kinds = self.stack.get(offset)
        if kinds is None or len(kinds) != depth:
            return (ANY,) * depth  # no information: every slot still must be non-NULL
        return kinds


_cache: dict[int, tuple[types.CodeType, SlotRules]] = {}


def slot_rules(code: types.CodeType) -> SlotRules:
    """Cached :class:`SlotRules` for ``code`` (keyed by identity)."""
    hit = _cache.get(id(code))
    if hit is not None and hit[0] is code:
        return hit[1]
    rules = SlotRules(code)
    _cache[id(code)] = (code, rules)
    return rules


__all__ = ["ANY", "EXC", "EXC_OR_NONE", "ITER", "KIND_NAMES", "LASTI", "LIST", "NULLABLE",
           "SET", "SlotRules", "slot_names", "slot_rules"]
