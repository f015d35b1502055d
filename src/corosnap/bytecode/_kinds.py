"""Slot kinds: what the interpreter takes for granted about each stack slot.

What lives here: the per-version facts about how instructions create, move and
consume value-stack slots whose contents the interpreter uses *without
checking*, written as small tables and rules keyed by instruction name, each
commented with the versions it applies to.  ``_analysis`` runs them over a code
object's bytecode; nothing here touches a frame.

Why it matters: restoring writes values into a frame that the interpreter then
trusts.  A NULL where it expects an object, an object where it expects one of
3.14+'s *tagged integers* (or the reverse), a non-list where LIST_APPEND
appends, a non-iterator where FOR_ITER calls tp_iternext: each of these
crashes CPython instead of raising.  The analysis labels every stack slot at
every resume point with one of the kinds below, and the restore path checks
each decoded value against its slot's kind before the frame is written.

Theory of operation: an abstract interpretation over stacks of kinds.  Most
instructions are described by ``dis.stack_effect`` alone, read through three
generic classes (no stack effect at all, pops only, or "pops its inputs and
pushes one result"); the instructions that push, move or consume a kind other
than OBJ have explicit rules.  Where two paths meet with different kinds, the
kinds join (OBJ and OPT give OPT; anything else gives MIXED, which the restore
path refuses: conservative, never unsafe).
"""

from __future__ import annotations

import dis
import sys
from collections.abc import Callable

V = sys.version_info[:2]

OBJ = "object"
"""Any object; never NULL, never a tagged integer."""
OPT = "object or NULL"
"""A NULL-or-callable/self slot (PUSH_NULL, LOAD_GLOBAL/LOAD_ATTR method forms)."""
LASTI = "handler lasti"
"""The offset an exception handler with ``lasti`` pushed: an int object up to
3.13, a tagged integer from 3.14 (the interpreter untags it without a check)."""
EXC = "exception"
"""The exception an exception handler is handling."""
PREV = "None or exception"
"""The previously handled exception PUSH_EXC_INFO saved (POP_EXCEPT puts it
back into the thread state), or the "rest" of an ``except*`` match."""
ITER = "iterator"
"""A for-loop iterator (up to 3.14): FOR_ITER calls its tp_iternext without
checking that the type has one."""
RECV = "awaited iterator"
"""The sub-iterator of a yield from / await (SEND's receiver): a generator,
coroutine or iterator.  SEND and gen.throw()/close() look up what they call,
so any object is safe here; the check keeps blobs honest."""
SRC = "iterable or iterator"
"""3.15: first slot of a for-loop pair: an iterator when the next slot is
NULL, a sequence walked in place when the next slot is an index."""
RSRC = "awaited iterable or iterator"
"""3.15: first slot of a yield from / await pair (SEND): as RECV when the next
slot is NULL, a sequence walked in place when it is an index."""
IDX = "NULL or index"
"""3.15: second slot of such a pair: NULL, or a tagged integer index."""
LIST = "list"
SET = "set"
DICT = "dict"
"""Comprehension / display accumulators: LIST_APPEND, LIST_EXTEND, MAP_ADD,
SET_UPDATE and CALL_INTRINSIC_1(LIST_TO_TUPLE) cast them without a check."""
MIXED = "unknown"
"""Two paths disagree: the restore path refuses to write this slot."""
SAVED_PREFIX = "saved local@"
"""``saved local@<offset>``: the value LOAD_FAST_AND_CLEAR at that offset took
out of a local (3.12+ inlined comprehensions) to put back afterwards; NULL when
the local was unbound (see ``_analysis`` for when it may not be NULL)."""

Kinds = tuple[str, ...]
Rule = Callable[[Kinds, int, int], Kinds]
"""(stack kinds before, oparg, stack effect) -> stack kinds after."""

TAGGED_KINDS = frozenset({LASTI, IDX}) if V >= (3, 14) else frozenset({IDX})
"""Kinds whose integer values live as tagged integers in the frame (3.14+)."""


def _names(*names: str) -> frozenset[int]:
    return frozenset(dis.opmap[n] for n in names if n in dis.opmap)


# Instructions that leave the stack alone (stack effect 0, nothing replaced).
NO_STACK = _names(
    "NOP", "NOT_TAKEN", "RESUME", "EXTENDED_ARG", "CACHE", "JUMP_FORWARD", "JUMP_BACKWARD",
    "JUMP_BACKWARD_NO_INTERRUPT", "JUMP", "JUMP_NO_INTERRUPT", "KW_NAMES", "MAKE_CELL",
    "COPY_FREE_VARS", "DELETE_FAST", "DELETE_DEREF", "DELETE_NAME", "DELETE_GLOBAL",
    "SETUP_ANNOTATIONS", "ENTER_EXECUTOR", "RETURN_GENERATOR",
)
# Instructions that only pop (their stack effect is minus the pops).
# JUMP_IF_TRUE_OR_POP / JUMP_IF_FALSE_OR_POP: 3.11 only; pop when not jumping.
POP_ONLY = _names(
    "POP_TOP", "STORE_FAST", "STORE_NAME", "STORE_GLOBAL", "STORE_DEREF", "STORE_ATTR",
    "STORE_SUBSCR", "STORE_SLICE", "DELETE_ATTR", "DELETE_SUBSCR", "STORE_FAST_STORE_FAST",
    "STORE_FAST_MAYBE_NULL", "POP_JUMP_IF_FALSE", "POP_JUMP_IF_TRUE", "POP_JUMP_IF_NONE",
    "POP_JUMP_IF_NOT_NONE", "POP_JUMP_FORWARD_IF_FALSE", "POP_JUMP_FORWARD_IF_TRUE",
    "POP_JUMP_FORWARD_IF_NONE", "POP_JUMP_FORWARD_IF_NOT_NONE", "POP_JUMP_BACKWARD_IF_FALSE",
    "POP_JUMP_BACKWARD_IF_TRUE", "POP_JUMP_BACKWARD_IF_NONE", "POP_JUMP_BACKWARD_IF_NOT_NONE",
    "JUMP_IF_TRUE_OR_POP", "JUMP_IF_FALSE_OR_POP", "LIST_APPEND", "SET_ADD", "MAP_ADD",
    "LIST_EXTEND", "SET_UPDATE", "DICT_UPDATE", "DICT_MERGE", "END_FOR", "POP_ITER",
    "POP_EXCEPT", "END_ASYNC_FOR", "RETURN_VALUE", "RETURN_CONST", "RAISE_VARARGS", "RERAISE",
    "IMPORT_STAR", "PRINT_EXPR", "INTERPRETER_EXIT", "EXIT_INIT_CHECK",
)
# Instructions that pop one value and push stack-effect + 1 new ones.
POP_ONE = _names("UNPACK_SEQUENCE", "UNPACK_EX", "BEFORE_WITH", "BEFORE_ASYNC_WITH")


def _method_pair() -> Kinds:
    # 3.11/3.12 push NULL (or the unbound method) *below* the callable/self;
    # 3.13+ push the callable first and NULL-or-self after it.
    return (OPT, OBJ) if V <= (3, 12) else (OBJ, OPT)


def _push_null(st: Kinds, arg: int, e: int) -> Kinds:
    return (*st, OPT)


def _load_global(st: Kinds, arg: int, e: int) -> Kinds:
    # 3.11+: the low bit of the oparg also pushes a NULL for the call.
    return (*st, *_method_pair()) if arg & 1 else (*st, OBJ)


def _load_attr(st: Kinds, arg: int, e: int) -> Kinds:
    # 3.12+: the low bit selects the method form (LOAD_METHOD folded in).
    if V >= (3, 12) and arg & 1:
        return (*st[:-1], *_method_pair())
    return (*st[:-1], OBJ)


def _load_method(st: Kinds, arg: int, e: int) -> Kinds:  # 3.11
    return (*st[:-1], OPT, OBJ)


def _load_super_attr(st: Kinds, arg: int, e: int) -> Kinds:  # 3.12+: pops 3
    return (*st[:-3], *(_method_pair() if arg & 1 else (OBJ,)))


def _load_special(st: Kinds, arg: int, e: int) -> Kinds:  # 3.14+: (owner -- attr, self_or_null)
    return (*st[:-1], OBJ, OPT)


def _copy(st: Kinds, arg: int, e: int) -> Kinds:
    return (*st, st[-arg])


def _swap(st: Kinds, arg: int, e: int) -> Kinds:
    out = list(st)
    out[-1], out[-arg] = out[-arg], out[-1]
    return tuple(out)


def _push_exc_info(st: Kinds, arg: int, e: int) -> Kinds:  # (exc -- prev_exc, exc)
    return (*st[:-1], PREV, st[-1])


def _check_eg_match(st: Kinds, arg: int, e: int) -> Kinds:  # (exc, type -- rest, match)
    return (*st[:-2], PREV, OBJ)


def _iter_slots() -> Kinds:
    # 3.15: iteration keeps two slots: (iterator, NULL) or (sequence, index).
    return (SRC, IDX) if V >= (3, 15) else (ITER,)


def _recv_slots() -> Kinds:
    # 3.15: SEND takes the same kind of pair (GET_ITER with the yield-from
    # oparg, or GET_AWAITABLE followed by PUSH_NULL).
    return (RSRC, IDX) if V >= (3, 15) else (RECV,)


def _get_iter(st: Kinds, arg: int, e: int) -> Kinds:
    # 3.15's GET_ITER serves yield from too (nonzero oparg); SEND relabels.
    return (*st[:-1], *_iter_slots())


def _get_receiver(st: Kinds, arg: int, e: int) -> Kinds:
    # GET_AWAITABLE; GET_YIELD_FROM_ITER (<= 3.14).  3.15 pushes a NULL after
    # GET_AWAITABLE with PUSH_NULL; SEND relabels the pair.
    return (*st[:-1], RSRC if V >= (3, 15) else RECV)


def _for_iter(st: Kinds, arg: int, e: int) -> Kinds:
    n = len(_iter_slots())
    kept = (*st[:-n], *_iter_slots())
    return (*kept, *(OBJ,) * e) if e >= 0 else kept[:e]


def _send(st: Kinds, arg: int, e: int) -> Kinds:
    # (receiver, [3.15: null_or_index,] value -- receiver, [..,] result); from
    # 3.12 the jump (sub-iterator finished) has the same shape.  3.11's jump
    # also pops the receiver (effect -1).
    if e < 0:
        return (*st[: len(st) + e - 1], OBJ)
    n = len(_recv_slots())
    return (*st[: -n - 1], *_recv_slots(), OBJ)


def _build(kind: str, per_item: int) -> Rule:
    def rule(st: Kinds, arg: int, e: int) -> Kinds:
        return (*st[: len(st) - arg * per_item], kind)

    return rule


def _load_fast_and_clear(st: Kinds, arg: int, e: int) -> Kinds:  # 3.12+
    return (*st, OPT)  # relabelled per offset by the analysis


RULES: dict[int, Rule] = {}
for _name, _rule in (
    ("PUSH_NULL", _push_null),
    ("LOAD_GLOBAL", _load_global),
    ("LOAD_ATTR", _load_attr),
    ("LOAD_METHOD", _load_method),
    ("LOAD_SUPER_ATTR", _load_super_attr),
    ("LOAD_SPECIAL", _load_special),
    ("LOAD_FAST_AND_CLEAR", _load_fast_and_clear),
    ("COPY", _copy),
    ("SWAP", _swap),
    ("PUSH_EXC_INFO", _push_exc_info),
    ("CHECK_EG_MATCH", _check_eg_match),
    ("GET_ITER", _get_iter),
    ("GET_YIELD_FROM_ITER", _get_receiver),
    ("GET_AWAITABLE", _get_receiver),
    ("FOR_ITER", _for_iter),
    ("SEND", _send),
    ("BUILD_LIST", _build(LIST, 1)),
    ("BUILD_SET", _build(SET, 1)),
    ("BUILD_MAP", _build(DICT, 2)),
):
    if _name in dis.opmap:
        RULES[dis.opmap[_name]] = _rule


def transfer(op: int, arg: int, st: Kinds, e: int) -> Kinds:
    """Stack kinds after one instruction whose stack effect (on this edge) is e."""
    rule = RULES.get(op)
    if rule is not None:
        return rule(st, arg, e)
    if op in NO_STACK:
        return st
    if op in POP_ONLY:
        return st[: len(st) + e] if e < 0 else st
    if op in POP_ONE:
        return (*st[:-1], *(OBJ,) * (e + 1))
    if e > 0:
        return (*st, *(OBJ,) * e)
    # Everything else consumes its inputs and pushes one result in the place
    # of the deepest input (BINARY_OP, CALL, COMPARE_OP, TO_BOOL, YIELD_VALUE..).
    return (*st[: len(st) + e - 1], OBJ)


def handler_entry(st: Kinds, depth: int, lasti: bool) -> Kinds:
    """Kinds at an exception handler: the preserved slots, [lasti], exception."""
    return (*st[:depth], *((LASTI,) if lasti else ()), EXC)


def join(a: Kinds, b: Kinds) -> Kinds:
    """Kinds where two paths meet (same depth)."""
    if a == b:
        return a
    out = []
    for x, y in zip(a, b, strict=True):
        if x == y:
            out.append(x)
        elif {x, y} <= {OBJ, OPT} or (x.startswith(SAVED_PREFIX) and y == OPT):
            out.append(OPT)
        elif y.startswith(SAVED_PREFIX) and x == OPT:
            out.append(OPT)
        else:
            out.append(MIXED)
    return tuple(out)
