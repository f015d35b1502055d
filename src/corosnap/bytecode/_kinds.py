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
  to a list: LIST (from ``BUILD_LIST``); ``SET_UPDATE`` to a set: SET;
  ``MAP_ADD`` to a dict: DICT (from ``BUILD_MAP``; 3.12+ inlined dict
  comprehensions hold it across an ``await``).
- ``RERAISE``, ``WITH_EXCEPT_START``, ``POP_EXCEPT`` and ``sys.exc_info`` read
  exception slots as exception objects: EXC for the exception an exception
  handler pushes, EXC_OR_NONE for the previous exception ``PUSH_EXC_INFO``
  saves below it.
- ``RERAISE oparg`` jumps to the instruction offset stored in the handler's
  ``lasti`` slot: LASTI (an int inside the code).
- ``except*``: ``PREP_RERAISE_STAR`` (3.11; ``CALL_INTRINSIC_2
  INTRINSIC_PREP_RERAISE_STAR`` from 3.12) reads the items of the list the
  clauses' results are appended to as exceptions, unchecked (a naked
  exception's result is even raised as is): EXC_LIST for the list, whose
  ``BUILD_LIST`` is found by following list labels to that consumer.  The
  unmatched rest ``CHECK_EG_MATCH`` leaves below its match is appended to
  that list before the consumer runs: EXC_OR_NONE (when the value it split
  was an exception).
- 3.14+ keeps the handler's ``lasti`` as a *tagged integer* (not an object)
  and ``RERAISE`` untags it unchecked; 3.15 also walks sequences "virtually":
  ``GET_ITER`` leaves the sequence and an index slot (NULL for a real
  iterator, else a tagged integer), and ``FOR_ITER`` / ``SEND`` call the
  sequence type's ``_tp_iteritem`` unchecked when the index is tagged: INDEX
  for that slot.  Tagged integers are plain ints in the blob; the snapshot
  layer converts at the frame boundary, for the kinds in ``TAGGED``.
- 3.13 only: ``CALL_LIST_APPEND`` (what ``CALL 1`` followed by ``POP_TOP``
  becomes once it has met ``lst.append(x)``) reads the self-or-NULL slot
  above ``list.append`` without checking it for NULL (3.14 added the check;
  plain 3.13.0 code crashes with it too: ``x.append(v)`` after ``x`` was a
  list and then the ``list`` type).  CALL1_SELF marks a NULLABLE slot that a
  one-argument ``CALL`` consumes as its self-or-NULL: restore refuses it
  empty above ``list.append``.  The NULLs ``PUSH_NULL`` and the pair loads
  push carry their instruction as an origin, like lists (below), so the
  ``CALL`` that consumes one can mark it; two origins meeting give a shared
  one that every such ``CALL`` marks (conservative).
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

from .._weak import IdentityCache
from ._analysis import (
    CREATED,
    JUMPS,
    TERMINAL,
    UNCONDITIONAL,
    code_info,
    slot_names,
    stack_depths,
)

V = sys.version_info[:2]

ANY = 0
ITER = 1
LIST = 2
SET = 3
EXC = 4
EXC_OR_NONE = 5
LASTI = 6
INDEX = 7
"""3.15: the index slot above a sequence walked in place (NULL, or a tagged
integer; the slot below must then support virtual iteration)."""
DICT = 8
"""3.12+ inlined dict comprehensions keep their dict on the stack across an
await; MAP_ADD casts it to a dict unchecked (from BUILD_MAP)."""
EXC_LIST = 9
"""The list of an ``except*`` block's results: a list whose items are
exceptions or None (PREP_RERAISE_STAR reads them unchecked)."""
CALL1_SELF = 10
"""3.13: the self-or-NULL slot of a one-argument CALL (see the docstring)."""
NULLABLE = 16
"""Flag: the slot may be empty (NULL)."""
_ORIGIN = 32
_MANY = 1 << 24
"""The origin of a NULL slot reached from two NULL-pushing instructions (3.13)."""
_NULL_ORIGINS = V == (3, 13)
"""Whether NULL slots carry their origin (CALL1_SELF, 3.13 only)."""
"""Inside the analysis only: a LIST label also carries ``(offset + 1) *
_ORIGIN``, the BUILD_LIST that made it, so the lists reaching the except*
consumer can be told apart; labels leave ``_kinds`` without it."""

KIND_NAMES = {ANY: "any object", ITER: "an iterator", LIST: "a list", SET: "a set",
              EXC: "an exception", EXC_OR_NONE: "an exception or None",
              LASTI: "an instruction offset", INDEX: "NULL or a sequence index",
              DICT: "a dict", EXC_LIST: "a list of exceptions or None",
              CALL1_SELF: "a call's self, or NULL where the callable allows it"}

TAGGED = frozenset({LASTI, INDEX}) if V >= (3, 14) else frozenset()
"""Kinds whose values are tagged integers in a 3.14+ frame (ints in the blob)."""

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
    if a % _ORIGIN == b % _ORIGIN == ANY | NULLABLE and (a >= _ORIGIN or b >= _ORIGIN):
        return ANY | NULLABLE | _ORIGIN * _MANY  # NULLs of two origins: marked together
    if a % _ORIGIN == b % _ORIGIN:
        return a % _ORIGIN  # lists from two BUILD_LISTs: still a list, origin unknown
    return ANY | ((a | b) & NULLABLE)


def _prep_reraise_star(ins: dis.Instruction) -> bool:
    """The except* consumer: (orig, list -- exception or None)."""
    return ins.opname == "PREP_RERAISE_STAR" or (
        ins.opname == "CALL_INTRINSIC_2" and ins.argrepr == "INTRINSIC_PREP_RERAISE_STAR")


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
        if V >= (3, 15):
            # (iterable -- iter_or_sequence, index_or_null).  A nonzero oparg
            # marks yield from, whose receiver SEND may also be a coroutine.
            return labels[:-1] + (ANY if ins.arg else ITER, INDEX | NULLABLE)
        return labels[:-1] + (ITER,)
    if name == "SEND" and V >= (3, 15):
        # (receiver, index_or_null, value -- receiver, index_or_null, result):
        # after GET_AWAITABLE the index slot comes from PUSH_NULL.
        return labels[:-2] + (INDEX | NULLABLE, ANY)
    if name == "BUILD_LIST":
        return labels[: len(labels) - (ins.arg or 0)] + (LIST + _ORIGIN * (ins.offset + 1),)
    if name == "BUILD_SET":
        return labels[: len(labels) - (ins.arg or 0)] + (SET,)
    if name == "BUILD_MAP":
        return labels[: len(labels) - 2 * (ins.arg or 0)] + (DICT,)
    if name == "LOAD_SPECIAL":
        # 3.14+: (owner -- attr, self_or_null): NULL when the special method
        # is not a plain method (a staticmethod, a callable object, ...).
        return labels[:-1] + (ANY, ANY | NULLABLE)
    if name == "PUSH_EXC_INFO":
        return labels[:-1] + (EXC_OR_NONE, EXC)
    if name == "CHECK_EG_MATCH":
        # (exc_value, match_type -- rest, match): rest is the unmatched part
        # of an exception group, the exception itself, or None.
        rest = EXC_OR_NONE if labels[-2] in (EXC, EXC_OR_NONE) else ANY
        return labels[:-2] + (rest, ANY)
    if name == "PUSH_NULL" or name == "LOAD_FAST_AND_CLEAR":
        if name == "PUSH_NULL" and _NULL_ORIGINS:
            return labels + (ANY | NULLABLE | _ORIGIN * (ins.offset + 1),)
        return labels + (ANY | NULLABLE,)
    if name == "FOR_ITER" and not jump:
        if V < (3, 15):
            # Peeks at the iterator and pushes the next value.  Whatever pushed
            # the slot (GET_ITER, or LOAD_FAST .0 in a comprehension), FOR_ITER
            # calls its tp_iternext unchecked, so the loop body sees ITER.
            return labels[:-1] + (ITER, ANY)
        return labels + (ANY,)
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
    if name == "LOAD_METHOD":
        # 3.11: [method, self] or [NULL, attribute] (a module function, a
        # classmethod); dis does not mark it in argrepr.  CALL treats a NULL
        # in the lower slot as "no self", so only the lower slot may be NULL.
        return out + (ANY | NULLABLE, ANY)
    if pushes == 2 and name in _NULL_PAIRS and "NULL" in ins.argrepr:
        before, _, after = ins.argrepr.partition("+")
        low = ANY | NULLABLE if "NULL" in before else ANY
        high = ANY | NULLABLE if "NULL" in after else ANY
        if high != ANY and _NULL_ORIGINS:
            high |= _ORIGIN * (ins.offset + 1)
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
    exc_lists: set[int] = set()  # labels of the lists PREP_RERAISE_STAR reads
    call1_selfs: set[int] = set()  # labels of the NULLs a one-argument CALL reads (3.13)

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

    flow(instrs[0].offset, ())
    while work:
        offset, labels = work.pop()
        if state.get(offset) != labels:
            continue
        ins = by_offset[offset]
        if len(labels) != depth.get(offset, -1):
            raise ValueError("label depth disagrees with the depth analysis")
        if _prep_reraise_star(ins) and labels[-1] >= _ORIGIN:
            exc_lists.add(labels[-1])
        if (_NULL_ORIGINS and ins.opname == "CALL" and ins.arg == 1 and len(labels) >= 2
                and labels[-2] >= _ORIGIN and labels[-2] % _ORIGIN == ANY | NULLABLE):
            call1_selfs.add(labels[-2])
        for start, end, target, hdepth, lasti in handlers:
            # 3.15 generator expressions: the outer handler (depth 2, for the
            # iterator pair) also covers END_FOR / POP_ITER / RETURN_VALUE
            # after the loop, where the stack is shallower.  Those cannot
            # raise, so no exception edge leaves them.
            if start <= offset < end and len(labels) >= hdepth:
                flow(target, labels[:hdepth] + ((LASTI,) if lasti else ()) + (EXC,))
        if ins.opcode in TERMINAL:
            continue
        if ins.opcode in JUMPS:
            flow(ins.argval, _step(ins, labels, True))
            if ins.opcode in UNCONDITIONAL:
                continue
        nxt = following.get(offset)
        if nxt is not None:
            flow(nxt, _step(ins, labels, False))
    info = code_info(code)

    def final(labels: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(EXC_LIST if x in exc_lists else CALL1_SELF | NULLABLE
                     if x in call1_selfs else x % _ORIGIN for x in labels)

    out: dict[int, tuple[int, ...]] = {}
    for ins in instrs:
        at = ins.offset // 2
        if at in info.resume and ins.opname == "YIELD_VALUE" and ins.offset in state:
            out[at] = final(state[ins.offset][:-1])  # the yielded value is popped
        elif ins.opcode == _RETURN_GENERATOR and ins.offset in state and CREATED not in out:
            out[CREATED] = final(state[ins.offset])  # what the generator is created with
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
    reads: list[frozenset[int]] = []
    writes: list[frozenset[int]] = []
    for i, ins in enumerate(instrs):
        name = ins.opname
        locs = _local_indexes(code, ins)
        if name == "STORE_FAST_LOAD_FAST":
            # 3.13+: stores the first local, then loads the second; `for v in
            # ...: f(v)` stores and loads the same one, which is then no read
            # of a possibly unbound local.
            writes.append(frozenset(locs[:1]))
            reads.append(frozenset(locs[1:]) - frozenset(locs[:1]))
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
        if ins.opcode in TERMINAL:
            continue
        if ins.opcode in JUMPS:
            succ[i].append(index[ins.argval])
            if ins.opcode in UNCONDITIONAL:
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
    # A created frame starts right after RETURN_GENERATOR (3.15 generator
    # expressions read their argument before it, and never again).
    start = next((i + 1 for i, ins in enumerate(instrs) if ins.opcode == _RETURN_GENERATOR), 0)
    result[CREATED] = need[start] if start < len(instrs) else frozenset()
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


_cache: IdentityCache[SlotRules] = IdentityCache()


def slot_rules(code: types.CodeType) -> SlotRules:
    """Cached :class:`SlotRules` for ``code`` (keyed by identity, holding it weakly)."""
    rules = _cache.get(code)
    if rules is None:
        rules = _cache.put(code, SlotRules(code))
    return rules


__all__ = ["ANY", "CALL1_SELF", "DICT", "EXC", "EXC_LIST", "EXC_OR_NONE", "INDEX", "ITER",
           "KIND_NAMES", "LASTI", "LIST", "NULLABLE", "SET", "TAGGED", "SlotRules", "slot_names",
           "slot_rules"]
