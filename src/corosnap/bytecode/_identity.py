"""The structural identity of suspension points: what stays put when a function is edited.

What lives here: for every resume point of a code object, an identity that
survives edits *elsewhere* in the function (a line added at the top, a fix
after the point, another ``yield`` added earlier), derived from the bytecode
alone, so that a snapshot taken on the old code can find "the same"
suspension in the new code with nothing but the new code object and a few
bytes describing the old point.  Offsets and line numbers are not part of
it: they move with every edit.  Nothing here touches frames or values; the
migration that uses these answers lives in ``corosnap.snapshot._migrate``.

An identity has four parts:

1. **The kind of suspension**: ``yield``, ``yield from`` or ``await`` (the
   location bits of the ``RESUME`` after the ``YIELD_VALUE``), or the start
   of a never-started frame.
2. **What is suspended on**: the expression that produced the yielded value
   (for ``yield``) or the iterator delegated to (``yield from`` / ``await``).
3. **The live context**: one label per value-stack slot at that point.  The
   stack is where CPython keeps the state of the enclosing constructs: a
   ``for`` loop's iterator, a ``with`` block's bound ``__exit__``, the
   exception an ``except`` block saved, the half-evaluated operands of the
   expression around the suspension (``f(a, (yield b))``).  So "moved out of
   the ``for`` loop over ``items``" is a different stack.
4. **The path conditions**: the branch outcomes every path from the function
   start to the point passes through: the tests of the enclosing ``if`` /
   ``while`` / ``elif``, a guard that ``return``s or ``break``s earlier, the
   ``except`` clause that matched, "an exception was raised" for handler
   bodies, "the loop has a next item" for loop bodies.  A state inside
   ``if x > 3:`` is not a state the new code reaches if the test became
   ``x > 4``.

Points whose four parts are equal are *alike* (two ``yield x`` in the same
loop, say); they are told apart by their **ordinal** among the alike points,
in code order, and a match requires the old and the new code to have the
same number of them (``count``): otherwise an alike point was added or
removed and no one can say which is which, so the match is refused.

Theory of operation: a forward abstract interpretation of the bytecode over
*symbolic labels*, one per stack slot.  A label is a 63-bit hash of an
expression tree (operation, its argument by value or name, and the labels of
its operands): ``LOAD_FAST x`` is ``local x`` whatever its slot number,
``LOAD_CONST`` is the constant's value, not its index in ``co_consts``, a
nested code object is its qualified name.  Instruction forms the compiler
chooses from facts about the *whole* function are folded into one form, so an
edit elsewhere cannot change a label: ``LOAD_FAST_CHECK`` (3.12+, chosen by a
whole-function boundness analysis) and ``LOAD_FAST_BORROW`` (3.14+, by a
whole-function lifetime analysis) are ``LOAD_FAST``; the super-instructions
``LOAD_FAST_LOAD_FAST`` & co. (3.13+, formed when two loads are adjacent) are
split; 3.11's forward and backward jump forms are one; ``TO_BOOL`` (3.13+)
is transparent.  At a join the labels of a slot meet: equal labels stay, a
few different ones form a set (a conditional expression), more become TOP;
an operation on a set gives the set of its results (``(a if c else b) + 1``
is ``{a + 1, b + 1}``), on TOP gives TOP.  Sets only grow along the work
list and are capped, so the transfer functions are monotone and the fixpoint
does not depend on the order the work list visits instructions in, i.e. on
code elsewhere in the function.

Path conditions are computed on the instruction graph (exception edges
included) with every conditional edge labelled by its test: for each test
label ``c``, the points that cannot be reached from the entry once every
edge labelled ``c`` is removed are exactly those whose every path evaluates
``c`` to that outcome.  Grouping edges by label (rather than per edge) is
what makes a ``while`` test count once, although 3.11+ compiles it twice
(at the loop's entry and at its bottom).

Everything is hashed with BLAKE2b, never with ``hash()`` (randomised per
process).  Identities are only ever compared within one CPython minor
version (a blob only loads on the minor version that wrote it), so version
differences in the instruction set do not need to be bridged; each version's
quirks that matter are explained where they are handled below.
"""

from __future__ import annotations

import dis
import hashlib
import sys
import types
from dataclasses import dataclass
from typing import Any

from .._weak import IdentityCache
from ._analysis import CREATED, DELEGATE, JUMPS, TERMINAL, UNCONDITIONAL, code_info, effect
from ._analysis import stack_depths as _stack_depths

V = sys.version_info[:2]

KIND_START, KIND_YIELD, KIND_YIELD_FROM, KIND_AWAIT = 0, 1, 2, 3
KIND_NAMES = {KIND_START: "start", KIND_YIELD: "yield", KIND_YIELD_FROM: "yield from",
              KIND_AWAIT: "await"}

# The role of a value-stack slot, kept in the low 3 bits of its 32-bit label
# in a signature, so that messages can say "the for loop" even when the old
# loop's expression is not in the new code.
ROLE_VALUE, ROLE_FOR, ROLE_WITH, ROLE_EXCEPT, ROLE_EXC, ROLE_LASTI, ROLE_DELEGATE, ROLE_AUX = (
    range(8))
ROLE_NAMES = {ROLE_VALUE: "a value of the expression around the suspension",
              ROLE_FOR: "a for loop's iterator", ROLE_WITH: "a with block's __exit__",
              ROLE_EXCEPT: "an except block's saved exception", ROLE_EXC: "an exception",
              ROLE_LASTI: "an exception handler's instruction offset",
              ROLE_DELEGATE: "the iterator delegated to", ROLE_AUX: "an interpreter slot"}

TOP = -1
"""The label of a slot whose value depends on more ways through the code than
the analysis tells apart (a set of alternatives larger than _PHI_MAX)."""
_PHI_MAX = 16
_RESUME = dis.opmap["RESUME"]
_YIELD_VALUE = dis.opmap["YIELD_VALUE"]
_RETURN_GENERATOR = dis.opmap.get("RETURN_GENERATOR", -1)
_RESUME_LOCATION_MASK = 0x7 if V >= (3, 15) else 0x3

# Skipped: no stack effect and nothing to label (3.14+ NOT_TAKEN marks the
# fall-through of a branch for sys.monitoring; 3.11's PRECALL is a no-op for
# the stack shape here).
_SKIP = frozenset({"NOP", "NOT_TAKEN", "CACHE", "EXTENDED_ARG", "RESUME", "RESUME_CHECK",
                   "KW_NAMES", "TO_BOOL", "ENTER_EXECUTOR"})
_LOADS = frozenset({"LOAD_FAST", "LOAD_FAST_CHECK", "LOAD_FAST_BORROW"})
_LOAD_PAIRS = frozenset({"LOAD_FAST_LOAD_FAST", "LOAD_FAST_BORROW_LOAD_FAST_BORROW"})
_CONSTS = frozenset({"LOAD_CONST", "LOAD_SMALL_INT", "LOAD_CONST_IMMORTAL",
                     "LOAD_CONST_MORTAL"})
_PUSH_TWO = frozenset({"BEFORE_WITH", "BEFORE_ASYNC_WITH", "PUSH_EXC_INFO", "LOAD_METHOD",
                       "CHECK_EG_MATCH", "LOAD_SPECIAL", "CLEANUP_THROW", "CHECK_EXC_MATCH"})
_NULL_PAIRS = frozenset({"LOAD_GLOBAL", "LOAD_ATTR", "LOAD_SUPER_ATTR", "LOAD_METHOD"})
_UNPACK = frozenset({"UNPACK_SEQUENCE", "UNPACK_EX"})
_CONST_ARGS = frozenset(dis.hasconst)
_NAME_ARGS = frozenset(set(dis.hasname) | set(dis.haslocal) | set(dis.hasfree))
_TRUTH = {"POP_JUMP_IF_FALSE": False, "POP_JUMP_IF_TRUE": True,
          "JUMP_IF_FALSE_OR_POP": False, "JUMP_IF_TRUE_OR_POP": True}
"""Conditional jumps on truth: the outcome their *jump* edge stands for."""
_NONE = {"POP_JUMP_IF_NONE": True, "POP_JUMP_IF_NOT_NONE": False}
"""Conditional jumps on ``is None``: the outcome their jump edge stands for."""


def _norm(name: str) -> str:
    # 3.11 spells branch direction into the opcode (POP_JUMP_FORWARD_IF_FALSE,
    # POP_JUMP_BACKWARD_IF_NONE, ...); which one is used follows the layout.
    return name.replace("FORWARD_", "").replace("BACKWARD_", "")


def _digest(data: bytes, size: int = 8) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=size).digest(), "little")


def _const_key(value: Any) -> bytes:
    """A constant by value (nested code by qualified name, see the header)."""
    if type(value) is types.CodeType:
        return b"code:" + value.co_qualname.encode("utf-8", "surrogatepass")
    if type(value) is tuple:
        return b"(" + b",".join(_const_key(v) for v in value) + b")"
    if type(value) is frozenset:
        return b"{" + b",".join(sorted(_const_key(v) for v in value)) + b"}"
    if type(value) is str:
        return b"s" + value.encode("utf-8", "surrogatepass")
    if type(value) is bytes:
        return b"b" + value
    return f"{type(value).__name__}:{value!r}".encode()


def _const_text(value: Any) -> str:
    if type(value) is types.CodeType:
        return f"<{value.co_qualname}>"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class _Labels:
    """Makes labels and remembers how to render them (one per analysis)."""

    __slots__ = ("made", "render_info", "text", "shown")

    def __init__(self) -> None:
        self.made: dict[tuple[Any, ...], int] = {}
        self.render_info: dict[int, tuple[str, Any, tuple[int, ...]]] = {}
        self.text: dict[int, str] = {}  # constants: their repr
        self.shown: dict[int, str] = {}  # other operations: their argument as dis shows it

    def make(self, op: str, arg: Any = None, inputs: tuple[Any, ...] = ()) -> Any:
        """The label of ``op(arg, *inputs)``.  An input that is a set of
        alternatives (a conditional expression) gives the set of the
        results, up to _PHI_MAX of them (more: TOP); a TOP input gives TOP."""
        if any(type(x) is frozenset for x in inputs):
            results: set[Any] = {()}
            for x in inputs:
                choices = x if type(x) is frozenset else (x,)
                results = {r + (c,) for r in results for c in choices}
                if len(results) > _PHI_MAX:
                    return TOP
            made = frozenset(self._make(op, arg, r) for r in results)
            if TOP in made:
                return TOP
            return next(iter(made)) if len(made) == 1 else made
        return self._make(op, arg, inputs)

    def _make(self, op: str, arg: Any, inputs: tuple[Any, ...]) -> int:
        for x in inputs:
            if x == TOP:
                return TOP
        key = (op, arg, inputs)
        h = self.made.get(key)
        if h is None:
            raw = arg if type(arg) is bytes else repr(arg).encode("utf-8", "backslashreplace")
            h = _digest(b"\0".join([op.encode(), raw, *(x.to_bytes(8, "little")
                                                            for x in inputs)])) >> 1
            self.made[key] = h
            self.render_info[h] = (op, arg, inputs)
        return h


def _join(a: Any, b: Any) -> Any:
    if a == b:
        return a
    if a == TOP or b == TOP:
        return TOP
    sa = a if type(a) is frozenset else frozenset((a,))
    sb = b if type(b) is frozenset else frozenset((b,))
    u = sa | sb
    return TOP if len(u) > _PHI_MAX else u


def _label_bytes(x: Any) -> bytes:
    if type(x) is frozenset:
        return b"phi" + b"".join(sorted(v.to_bytes(8, "little") for v in x))
    if x == TOP:
        return b"top"
    return int(x).to_bytes(8, "little")


@dataclass(frozen=True, slots=True)
class Point:
    """One suspension point of a code object, as migration sees it."""

    offset: int
    """Resume offset in code units (``CREATED`` for a frame that never ran)."""
    line: int | None
    """Source line of the suspension (the ``yield`` / ``await``), or the ``def``."""
    kind: int
    key: int
    """32-bit identity: kind, what is suspended on, stack labels, path conditions."""
    site: int
    """32-bit hash of the kind and what is suspended on (for messages)."""
    stack: tuple[int, ...]
    """32-bit label per value-stack slot, bottom first; the low 3 bits are its role."""
    ordinal: int
    count: int
    text: str
    """``yield total``, ``await call(charge, c)``: for messages, never compared."""
    context: tuple[str, ...]
    """The enclosing constructs the stack holds, outermost first, rendered."""
    conditions: tuple[str, ...]
    lasti: tuple[int, ...]
    """Per stack slot: for a handler's ``lasti`` slot, an offset of this code
    that the slot may hold here (the first instruction its handler covers);
    -1 elsewhere."""

    @property
    def depth(self) -> int:
        return len(self.stack)

    def describe(self) -> str:
        """``yield total`` (line 41), for messages."""
        where = f" (line {self.line})" if self.line is not None else ""
        return f"`{self.text}`{where}"


@dataclass(frozen=True, slots=True)
class Shape:
    """The suspension points of one code object (see the module docstring)."""

    points: dict[int, Point]
    """By resume offset, ``CREATED`` included."""
    alike: dict[int, tuple[int, ...]]
    """Identity key -> the offsets with that key, in code order."""
    labels: frozenset[int]
    """Every 32-bit stack label that occurs at some point (for messages)."""
    renders: dict[int, str]
    """32-bit stack label -> its rendering, for every label in ``labels``."""

    def by_line(self, line: int) -> list[Point]:
        return sorted((p for p in self.points.values() if p.line == line
                       and p.offset != CREATED), key=lambda p: p.offset)

    def in_order(self) -> list[Point]:
        """The suspension points (not the start), in code order."""
        return sorted((p for p in self.points.values() if p.offset != CREATED),
                      key=lambda p: p.offset)


class UnsupportedShape(ValueError):
    """The code has a shape this analysis does not follow (migration refuses it)."""


def _instructions(code: types.CodeType) -> list[dis.Instruction]:
    return list(dis.get_instructions(code))


def _kw_names(code: types.CodeType, ins: dis.Instruction) -> Any:
    # 3.11's KW_NAMES shows no argval: its oparg indexes co_consts.
    if isinstance(ins.argval, tuple):
        return ins.argval
    consts = code.co_consts
    arg = ins.arg or 0
    return consts[arg] if 0 <= arg < len(consts) else None


class _Analysis:
    """One run of the label analysis over one code object."""

    def __init__(self, code: types.CodeType) -> None:
        self.code = code
        self.labels = _Labels()
        L = self.labels
        self.SENT = L.make("SENT")
        self.NULL = L.make("NULL")
        self.LASTI = L.make("LASTI")
        self.EXC = L.make("EXC")
        instrs, depth = _stack_depths(code)
        self.instrs = instrs
        self.depth = depth
        self.by_offset = {ins.offset: ins for ins in instrs}
        self.following = {ins.offset: instrs[i + 1].offset for i, ins in enumerate(instrs[:-1])}
        self.handlers = [(e.start, e.end, e.target, e.depth, e.lasti)
                         for e in dis.Bytecode(code).exception_entries]  # type: ignore[attr-defined]
        self.async_for_ends = {ins.offset for ins in instrs if ins.opname == "END_ASYNC_FOR"}
        self.kw: dict[int, Any] = {}  # CALL offset -> pending KW_NAMES (3.11, 3.12)
        pending = None
        for ins in instrs:
            if ins.opname == "KW_NAMES":
                pending = _kw_names(code, ins)
            elif ins.opname == "CALL" and pending is not None:
                self.kw[ins.offset] = pending
                pending = None

    # -- transfer ------------------------------------------------------------
    def step(self, ins: dis.Instruction, st: tuple[Any, ...], jump: bool) -> tuple[Any, ...]:
        """The labels after ``ins`` along its jump (``jump``) or fall-through edge."""
        L = self.labels
        name = _norm(ins.opname)
        if name in _SKIP:
            return st
        if ins.opcode == _RETURN_GENERATOR:
            return st + (L.make("SENT0"),)
        if name in _LOADS:
            return st + (L.make("local", ins.argval),)
        if name in _LOAD_PAIRS:
            a, b = ins.argval
            return st + (L.make("local", a), L.make("local", b))
        if name == "STORE_FAST_LOAD_FAST":
            return st[:-1] + (L.make("local", ins.argval[1]),)
        if name in _CONSTS:
            h = L.make("const", _const_key(ins.argval))
            L.text.setdefault(h, _const_text(ins.argval))
            return st + (h,)
        if name == "LOAD_COMMON_CONSTANT":
            return st + (L.make("const", ins.argrepr),)
        if name == "LOAD_FAST_AND_CLEAR":
            return st + (L.make("saved", ins.argval),)
        if name in ("LOAD_DEREF", "LOAD_CLOSURE", "LOAD_GLOBAL", "LOAD_NAME"):
            kind = "global" if name in ("LOAD_GLOBAL", "LOAD_NAME") else "local"
            if name == "LOAD_GLOBAL" and "NULL" in ins.argrepr:
                g = L.make(kind, ins.argval)
                # 3.11/3.12: "NULL + name"; 3.13+: "name + NULL".
                if ins.argrepr.startswith("NULL"):
                    return st + (self.NULL, g)
                return st + (g, self.NULL)
            return st + (L.make(kind, ins.argval),)
        if name == "SWAP":
            n = ins.arg or 0
            out = list(st)
            out[-1], out[-n] = out[-n], out[-1]
            return tuple(out)
        if name == "COPY":
            return st + (st[-(ins.arg or 0)],)
        if ins.opcode == _YIELD_VALUE:
            return st[:-1] + (self.SENT,)
        if name == "GET_ITER":
            if V >= (3, 15):
                # (iterable -- iterator or sequence, NULL or index): the
                # pair a for loop (or yield from) walks.
                return st[:-1] + (L.make("iter", None, st[-1:]), L.make("iter.index", None,
                                                                        st[-1:]))
            return st[:-1] + (L.make("iter", None, st[-1:]),)
        if name == "GET_ANEXT":
            return st + (L.make("anext", None, st[-1:]),)
        if name == "FOR_ITER" and not jump:
            it = st[-2] if V >= (3, 15) else st[-1]
            return st + (L.make("next", None, (it,)),)
        if name == "SEND" and not jump:
            return st[:-1] + (L.make("sent-result", None, (st[-3 if V >= (3, 15) else -2],)),)
        if name == "PUSH_EXC_INFO":
            return st[:-1] + (L.make("except", None, st[-1:]), st[-1])
        if name in ("BEFORE_WITH", "BEFORE_ASYNC_WITH"):
            return st[:-1] + (L.make("with", name, st[-1:]),
                              L.make("with.enter", name, st[-1:]))
        if name == "LOAD_SPECIAL":
            # 3.14+: (owner -- attr, self_or_null): with blocks keep
            # __exit__ / __aexit__ and its self on the stack.
            special = ins.argrepr
            return st[:-1] + (L.make("special", special, st[-1:]),
                              L.make("special.self", special, st[-1:]))
        if name == "PRECALL":
            # 3.11: dis books CALL's pops in two parts (PRECALL -argc, CALL
            # -1).  The callable pair and the arguments are folded into two
            # labels here, which CALL then consumes, so no operand is lost.
            # (The second label is a constant: two labels made from the same
            # alternatives would multiply them when CALL combines the two.)
            n = (ins.arg or 0) + 2
            parts = st[len(st) - n:]
            return st[:len(st) - n] + (L.make("precall", None, parts), L.make("precall.pad"))
        if name == "END_SEND":
            # 3.12-3.14: (receiver, value -- value); 3.15: (receiver,
            # index_or_null, value -- value).
            net = effect(ins.opcode, ins.arg, jump)
            return st[:len(st) + net - 1] + (st[-1],)
        if name == "CHECK_EXC_MATCH":
            return st[:-1] + (L.make("exc-match", None, st[-1:]),)
        if name == "SET_FUNCTION_ATTRIBUTE":
            # 3.13+: (attribute, function -- function).
            return st[:-2] + (st[-1],)
        net = effect(ins.opcode, ins.arg, jump)
        if name in _TRUTH or name in _NONE:
            return st[:len(st) + net]
        pushes = 2 if name in _PUSH_TWO else 1
        if name.startswith(("STORE_", "DELETE_", "POP_", "RETURN_", "JUMP", "RAISE_",
                            "LIST_", "SET_", "MAP_", "DICT_", "END_", "RERAISE",
                            "SETUP_", "IMPORT_STAR", "PRINT_EXPR", "INTERPRETER_EXIT",
                            "COPY_FREE_VARS", "MAKE_CELL")):
            pushes = 0
        if name in _NULL_PAIRS and "NULL" in ins.argrepr:
            pushes = 2
        if name in _UNPACK:
            pushes = net + 1
        if jump and name in ("FOR_ITER", "SEND"):
            pushes = 0
        pops = pushes - net
        if pops < 0:
            pushes, pops = net, 0
        if pops > len(st):
            raise UnsupportedShape(f"{name} pops below the stack bottom")
        inputs = st[len(st) - pops:]
        if name in ("LIST_APPEND", "SET_ADD", "MAP_ADD", "LIST_EXTEND", "SET_UPDATE",
                    "DICT_UPDATE", "DICT_MERGE"):
            return st[:len(st) - pops]  # the container below keeps its label
        # The argument by meaning: a name or a constant by value (their indexes
        # into co_names / co_consts move with edits elsewhere), a plain number
        # (an operator, a count, flags) as is, a jump target not at all.
        op = ins.opcode
        arg: Any
        if op in _CONST_ARGS:
            arg = _const_key(ins.argval)
        elif op in _NAME_ARGS:
            arg = ins.argval
        elif op in dis.hasjrel or op in dis.hasjabs:
            arg = None
        else:
            arg = ins.arg
        if name == "CALL" and ins.offset in self.kw:
            arg = ("kw", self.kw[ins.offset], ins.arg)
        base = st[:len(st) - pops]
        if pushes == 0:
            return base
        made = tuple(L.make(f"{name}#{i}" if pushes > 1 else name, arg, inputs)
                     for i in range(pushes))
        for h in made:  # the operator as dis shows it, for messages
            for one in (h if type(h) is frozenset else (h,)):
                if one != TOP:
                    L.shown.setdefault(one, ins.argrepr)
        return base + made

    # -- fixpoint ------------------------------------------------------------
    def run(self) -> dict[int, tuple[Any, ...]]:
        state: dict[int, tuple[Any, ...]] = {}
        work: list[int] = []

        def flow(offset: int, labels: tuple[Any, ...]) -> None:
            old = state.get(offset)
            if old is None:
                state[offset] = labels
                work.append(offset)
                return
            if len(old) != len(labels):
                raise UnsupportedShape("stack depths disagree at a join")
            if old == labels:
                return
            merged = tuple(_join(a, b) for a, b in zip(old, labels, strict=True))
            if merged != old:
                state[offset] = merged
                work.append(offset)

        flow(self.instrs[0].offset, ())
        while work:
            offset = work.pop()
            st = state[offset]
            if len(st) != self.depth.get(offset, -1):
                raise UnsupportedShape("label depth disagrees with the depth analysis")
            for target, labels, _cond in self.edges(offset, st):
                flow(target, labels)
        self.state = state
        return state

    def edges(self, offset: int, st: tuple[Any, ...]) -> list[tuple[int, tuple[Any, ...], Any]]:
        """(target, labels there, condition label or None) for every edge out of ``offset``."""
        ins = self.by_offset[offset]
        out: list[tuple[int, tuple[Any, ...], Any]] = []
        for start, end, target, hdepth, lasti in self.handlers:
            # 3.15 generator expressions: the outer handler (depth 2) also
            # covers END_FOR / POP_ITER / RETURN_VALUE after the loop, where
            # the stack is shallower; those cannot raise (see _kinds).
            if start <= offset < end and len(st) >= hdepth:
                labels = st[:hdepth] + ((self.LASTI,) if lasti else ()) + (self.EXC,)
                # An `async for` ends by StopAsyncIteration reaching its
                # END_ASYNC_FOR handler: that is the loop's normal exit (like
                # FOR_ITER's exhausted edge), not a path condition.
                cond = None if target in self.async_for_ends else ("raised", hdepth, bool(lasti))
                out.append((target, labels, cond))
        op = ins.opcode
        if op in TERMINAL:
            return out
        name = _norm(ins.opname)
        cond_jump: Any = None
        cond_fall: Any = None
        if name in _TRUTH:
            t = _label_bytes(st[-1])
            cond_jump, cond_fall = ("truth", t, _TRUTH[name]), ("truth", t, not _TRUTH[name])
        elif name in _NONE:
            t = _label_bytes(st[-1])
            cond_jump, cond_fall = ("none", t, _NONE[name]), ("none", t, not _NONE[name])
        elif name == "FOR_ITER":
            cond_fall = ("next", _label_bytes(st[-2] if V >= (3, 15) else st[-1]))
        elif name == "SEND":
            cond_fall = ("send", _label_bytes(st[-3] if V >= (3, 15) else st[-2]))
        if op in JUMPS:
            out.append((ins.argval, self.step(ins, st, True), cond_jump))
            if op in UNCONDITIONAL:
                return out
        nxt = self.following.get(offset)
        if nxt is not None:
            out.append((nxt, self.step(ins, st, False), cond_fall))
        return out


def _op_of(info: dict[int, tuple[str, Any, tuple[int, ...]]], x: Any) -> str:
    """The operation that made a label (of all alternatives of a set, if they agree)."""
    if type(x) is frozenset:
        ops = {info[e][0] for e in x if e in info}
        return ops.pop() if len(ops) == 1 else ""
    return info[x][0] if type(x) is int and x in info else ""


def _roles(an: _Analysis, labels: tuple[Any, ...], delegate_at: int) -> list[int]:
    info = an.labels.render_info
    roles = []
    for j, x in enumerate(labels):
        op = _op_of(info, x)
        if j == delegate_at:
            roles.append(ROLE_DELEGATE)
        elif op == "iter" or op == "GET_AITER":
            roles.append(ROLE_FOR)
        elif op in ("with", "special", "special.self"):
            roles.append(ROLE_WITH)
        elif op == "except":
            roles.append(ROLE_EXCEPT)
        elif x == an.EXC:
            roles.append(ROLE_EXC)
        elif x == an.LASTI:
            roles.append(ROLE_LASTI)
        elif x == an.NULL or op in ("iter.index", "with.enter"):
            roles.append(ROLE_AUX)
        else:
            roles.append(ROLE_VALUE)
    return roles


_BINARY = {"BINARY_SUBSCR": "{0}[{1}]"}
_UNARY = {"UNARY_NEGATIVE": "-{0}", "UNARY_NOT": "not {0}", "UNARY_INVERT": "~{0}",
          "UNARY_POSITIVE": "+{0}"}


_INTRINSIC_1 = list(getattr(dis, "_intrinsic_1_descs", ()))
_AGEN_WRAP = (_INTRINSIC_1.index("INTRINSIC_ASYNC_GEN_WRAP")
              if "INTRINSIC_ASYNC_GEN_WRAP" in _INTRINSIC_1 else -1)
"""CALL_INTRINSIC_1's operand for an async generator's yield wrap (3.12+)."""


class _Renderer:
    """Best-effort source-like text for labels (messages and manifests only)."""

    def __init__(self, an: _Analysis) -> None:
        self.info = an.labels.render_info
        self.text = an.labels.text
        self.shown = an.labels.shown
        self.null = an.NULL

    def __call__(self, x: Any, depth: int = 0) -> str:
        if type(x) is frozenset:
            return " | ".join(sorted(self(v, depth + 1) for v in x))
        if type(x) is not int or x == TOP or x not in self.info or depth > 12:
            return "…"
        op, number, inputs = self.info[x]
        arg = self.shown.get(x) or number
        r = [self(i, depth + 1) for i in inputs]
        if op in ("local", "global"):
            return str(arg)
        if op == "const":
            return self.text.get(x, "…")
        if op == "MAKE_FUNCTION" and inputs:
            return self(inputs[-1] if V < (3, 13) else inputs[0], depth + 1)
        if op == "anext":
            return f"anext({r[0]})"
        if op == "ASYNC_GEN_WRAP" or (op == "CALL_INTRINSIC_1" and number == _AGEN_WRAP):
            # An async generator's `yield v` wraps v before YIELD_VALUE
            # (3.11: ASYNC_GEN_WRAP; 3.12+: CALL_INTRINSIC_1
            # INTRINSIC_ASYNC_GEN_WRAP): the text is v's.
            return r[0] if r else "…"
        if op in ("iter", "iter.index", "GET_AITER", "GET_AWAITABLE", "GET_YIELD_FROM_ITER",
                  "with", "with.enter", "special", "special.self", "except", "TO_BOOL"):
            return r[0] if r else "…"
        if op.startswith(("LOAD_ATTR", "LOAD_METHOD", "LOAD_SUPER_ATTR")):
            return f"{r[-1] if r else '…'}.{arg}"
        if op in ("CALL", "CALL_KW", "CALL_FUNCTION_EX"):
            first = self.info.get(inputs[0]) if inputs and type(inputs[0]) is int else None
            if first is not None and first[0] == "precall":  # 3.11
                inputs = first[2]
                r = [self(i, depth + 1) for i in inputs]
            items = list(zip(inputs, r, strict=True))
            if op == "CALL_KW":
                items = items[:-1]
            head = [t for x_, t in items[:2] if x_ != self.null]
            args = [t for _, t in items[2:]]
            return f"{head[0] if head else '…'}({', '.join(args)})"
        if op == "BINARY_OP" and len(r) == 2:
            return f"{r[0]} {str(arg).rstrip('=') or arg} {r[1]}"
        if op == "COMPARE_OP" and len(r) == 2:
            sym = str(arg)
            if sym.startswith("bool(") and sym.endswith(")"):
                sym = sym[5:-1]
            return f"{r[0]} {sym} {r[1]}"
        if op in ("IS_OP", "CONTAINS_OP") and len(r) == 2:
            word = "is" if op == "IS_OP" else "in"
            neg = number == 1
            word = f"{word} not" if neg and word == "is" else f"not {word}" if neg else word
            return f"{r[0]} {word} {r[1]}"
        if op in _BINARY and len(r) == 2:
            return _BINARY[op].format(*r)
        if op in _UNARY and len(r) == 1:
            return _UNARY[op].format(*r)
        if op == "BUILD_TUPLE":
            return f"({', '.join(r)}{',' if len(r) == 1 else ''})"
        if op == "BUILD_LIST":
            return f"[{', '.join(r)}]"
        if op == "exc-match":
            return f"except {r[0]}" if r else "except"
        return "…"


def _hash32(parts: list[bytes]) -> int:
    return _digest(b"\0".join(parts), 4)


def _stack_label(x: Any, role: int) -> int:
    return (_hash32([b"slot", _label_bytes(x)]) & ~7) | role


OPAQUE = frozenset(_stack_label(TOP, role) for role in range(8))
"""Stack labels that say nothing about the value: a slot whose value depends
on more ways through the code than a label tells apart (an operation on a
conditional expression's result, say).  Two such slots are not known to mean
the same, so an automatic migration refuses a point that has one (4391
points of the 3.11 standard library have 2)."""


def _compute(code: types.CodeType) -> Shape:
    info = code_info(code)
    an = _Analysis(code)
    state = an.run()
    render = _Renderer(an)
    # Conditional edges, and the graph without labels, for the dominance test.
    succ: dict[int, list[tuple[int, Any]]] = {}
    for offset, st in state.items():
        succ[offset] = [(t, c) for t, _labels, c in an.edges(offset, st)]
    entry = an.instrs[0].offset
    groups = {c for edges in succ.values() for _t, c in edges if c is not None}
    yields = [ins.offset for ins in an.instrs
              if ins.offset // 2 in info.resume and ins.opcode == _YIELD_VALUE
              and ins.offset in state]
    conds: dict[int, list[Any]] = {y: [] for y in yields}
    for c in sorted(groups, key=repr):
        seen = {entry}
        todo = [entry]
        while todo:
            o = todo.pop()
            for t, cc in succ.get(o, ()):
                if cc != c and t not in seen:
                    seen.add(t)
                    todo.append(t)
        for y in yields:
            if y not in seen:
                conds[y].append(c)
    # The first instruction each handler covers: what its lasti slot may hold.
    first_covered: dict[int, int] = {}
    for start, _end, target, _d, lasti in an.handlers:
        if lasti:
            first_covered[target] = min(first_covered.get(target, start), start)
    points: list[Point] = []
    lines = {ins.offset: (ins.positions.lineno if ins.positions else None) for ins in an.instrs}
    for ins in an.instrs:
        at = ins.offset // 2
        if ins.opcode != _YIELD_VALUE or at not in info.resume or ins.offset not in state:
            continue
        st = state[ins.offset]
        nxt = an.by_offset.get(an.following.get(ins.offset, -1))
        location = (nxt.arg or 0) & _RESUME_LOCATION_MASK if nxt is not None else 1
        kind = {2: KIND_YIELD_FROM, 3: KIND_AWAIT}.get(location, KIND_YIELD)
        stack = st[:-1]
        delegating = at in info.delegating
        delegate_at = len(stack) + DELEGATE if delegating else -1
        what = stack[delegate_at] if delegating and delegate_at >= 0 else st[-1]
        roles = _roles(an, stack, delegate_at)
        slots = tuple(_stack_label(x, role) for x, role in zip(stack, roles, strict=True))
        cond_bytes = sorted(repr(c).encode() for c in conds[ins.offset])
        key = _hash32([b"point", bytes([kind]), _label_bytes(what), *cond_bytes, b"|",
                       *(s.to_bytes(4, "little") for s in slots)])
        site = _hash32([b"site", bytes([kind]), _label_bytes(what)])
        shown = render(what)
        what_info = an.labels.render_info.get(what) if type(what) is int else None
        if what_info is not None and what_info[0] == "GET_AWAITABLE" and what_info[2]:
            inner = an.labels.render_info.get(what_info[2][0])
            if inner is not None and inner[0] == "anext":
                # 3.11-3.13 async for: GET_ANEXT; GET_AWAITABLE (3.14+: the same).
                what_info = inner
        if what_info is not None and what_info[0] == "anext":
            text = f"async for … in {render(what_info[2][0])}"
        elif kind == KIND_YIELD:
            text = "yield" if shown == "None" else f"yield {shown}"
        else:
            text = f"{KIND_NAMES[kind]} {shown}"
        context = tuple(_describe_slot(render, x, role) for x, role in zip(stack, roles,
                                                                           strict=True)
                        if role in (ROLE_FOR, ROLE_WITH, ROLE_EXCEPT)
                        and not (role == ROLE_WITH and _is_self_half(an, x)))
        cond_text = tuple(t for t in (_describe_condition(render, an, c)
                                      for c in conds[ins.offset]) if t)
        lasti = _lasti_values(an, ins.offset, stack, first_covered)
        points.append(Point(at, lines.get(ins.offset), kind, key, site, slots, 0, 0, text,
                            context, cond_text, lasti))
    # A frame that never ran: what its prologue pushed (3.15 genexprs).
    start_depth = info.resume.get(CREATED, 0)
    start_key = _hash32([b"start", start_depth.to_bytes(4, "little")])
    start_slots = tuple(_stack_label(an.labels.make("prologue", j), ROLE_AUX)
                        for j in range(start_depth))
    points.append(Point(CREATED, code.co_firstlineno, KIND_START, start_key, start_key,
                        start_slots, 0, 1, "start", (), (), (-1,) * start_depth))
    alike: dict[int, list[int]] = {}
    for p in points:
        if p.offset != CREATED:
            alike.setdefault(p.key, []).append(p.offset)
    final: dict[int, Point] = {}
    for p in points:
        if p.offset == CREATED:
            final[CREATED] = p
            continue
        group = sorted(alike[p.key])
        final[p.offset] = Point(p.offset, p.line, p.kind, p.key, p.site, p.stack,
                                group.index(p.offset), len(group), p.text, p.context,
                                p.conditions, p.lasti)
    # Renderings of every label a point's stack holds, and of every loop /
    # with / except state anywhere in the code: messages about an old point
    # can then name a construct the old frame was in, when the new code
    # still has it somewhere.
    renders: dict[int, str] = {}
    for st in state.values():
        for x, role in zip(st, _roles(an, st, -1), strict=True):
            if role in (ROLE_FOR, ROLE_WITH, ROLE_EXCEPT):
                renders.setdefault(_stack_label(x, role), _describe_slot(render, x, role))
    for y in yields:
        stack = state[y][:-1]
        at = y // 2
        delegate_at = len(stack) + DELEGATE if at in info.delegating else -1
        for x, role in zip(stack, _roles(an, stack, delegate_at), strict=True):
            renders.setdefault(_stack_label(x, role), _describe_slot(render, x, role))
    return Shape(final, {k: tuple(sorted(v)) for k, v in alike.items()},
                 frozenset(renders), renders)


def _is_self_half(an: _Analysis, x: Any) -> bool:
    return _op_of(an.labels.render_info, x) == "special.self"


def _describe_slot(render: _Renderer, x: Any, role: int) -> str:
    if role == ROLE_FOR:
        loop = "async for" if _op_of(render.info, x) == "GET_AITER" else "for"
        return f"the `{loop}` loop over `{render(x)}`"
    if role == ROLE_WITH:
        return f"the `with` block on `{render(x)}`"
    if role == ROLE_EXCEPT:
        return "an `except` (or `finally`) block handling an exception"
    if role == ROLE_DELEGATE:
        return f"the delegation to `{render(x)}`"
    if role == ROLE_VALUE:
        return f"the pending value `{render(x)}`"
    return ROLE_NAMES[role]


def _describe_condition(render: _Renderer, an: _Analysis, c: Any) -> str:
    kind = c[0]
    if kind == "raised":
        return "an exception was raised"
    if kind in ("next", "send"):
        return ""  # the loop / delegation is on the stack already
    label = int.from_bytes(c[1], "little") if len(c[1]) == 8 else TOP
    text = render(label)
    if kind == "truth":
        if text.startswith("except "):
            return f"`{text}` matched" if c[2] else f"`{text}` did not match"
        return f"`{text}` is {'true' if c[2] else 'false'}"
    return f"`{text}` is {'None' if c[2] else 'not None'}"


def _lasti_values(an: _Analysis, offset: int, stack: tuple[Any, ...],
                  first_covered: dict[int, int]) -> tuple[int, ...]:
    """For each lasti slot at ``offset``, the first instruction its handler
    covers; found by replaying which handler pushed each lasti slot."""
    out = [-1] * len(stack)
    if an.LASTI not in stack:
        return tuple(out)
    # The handler whose entry depth puts its lasti at slot j: among the
    # handlers that push lasti, the one with hdepth == j whose range covers a
    # path to here.  Several may qualify (nested try at the same depth); any
    # instruction any of them covers is a value the frame could hold, so the
    # innermost-first (latest start) is as good as any.
    for j, x in enumerate(stack):
        if x != an.LASTI:
            continue
        cands = [(start, target) for start, _end, target, hdepth, lasti in an.handlers
                 if lasti and hdepth == j]
        if cands:
            target = max(cands)[1]
            out[j] = first_covered.get(target, max(cands)[0]) // 2
    return tuple(out)


class LabelStates:
    """The label analysis' answer per instruction, for ``_assign``."""

    __slots__ = ("state", "info")

    def __init__(self, code: types.CodeType) -> None:
        an = _Analysis(code)
        self.state = an.run()
        self.info = an.labels.render_info

    def restores(self, offset: int) -> bool:
        """Does the instruction at byte ``offset`` store a value a 3.12+
        inlined comprehension saved with LOAD_FAST_AND_CLEAR?"""
        st = self.state.get(offset)
        if not st:
            return False
        top = st[-1]
        tops = top if type(top) is frozenset else (top,)
        return any(type(x) is int and self.info.get(x, ("",))[0] == "saved" for x in tops)


def label_states(code: types.CodeType) -> LabelStates:
    """The labels before each instruction (uncached; UnsupportedShape as :func:`shape`)."""
    try:
        return LabelStates(code)
    except (KeyError, IndexError) as exc:
        raise UnsupportedShape(f"{code.co_qualname}: {exc!r}") from exc


# Theory of operation: one Shape per code object, keyed by identity and
# holding the code weakly (corosnap._weak.IdentityCache): migration asks for
# the shape of every old and new code it meets, and a process that creates
# and drops modules at run time must get their code back, so an entry goes
# when its code dies.  A Shape refers to no code object (only offsets, hashes
# and strings), so the entry cannot keep its own key alive.
_cache: IdentityCache[Shape] = IdentityCache()


def shape(code: types.CodeType) -> Shape:
    """The suspension points of ``code`` (cached by identity, holding it weakly).

    Raises UnsupportedShape for code this analysis cannot follow.
    """
    hit = _cache.get(code)
    if hit is not None:
        return hit
    try:
        result = _compute(code)
    except (KeyError, IndexError) as exc:
        raise UnsupportedShape(f"{code.co_qualname}: {exc!r}") from exc
    except ValueError as exc:
        if isinstance(exc, UnsupportedShape):
            raise
        raise UnsupportedShape(f"{code.co_qualname}: {exc}") from exc
    return _cache.put(code, result)
