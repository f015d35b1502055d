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

import dis
import inspect
import sys
import types
from typing import Any

from .._errors import CodeMismatch, CorruptSnapshot, LimitExceeded, RestoreError
from ..bytecode import CodeRef, code_info, fingerprint, locate
from ..bytecode._analysis import DELEGATE
from ..bytecode._kinds import (
    ANY,
    DICT,
    EXC,
    EXC_LIST,
    EXC_OR_NONE,
    INDEX,
    ITER,
    KIND_NAMES,
    LASTI,
    LIST,
    NULLABLE,
    SET,
    TAGGED,
    slot_rules,
)
from ..codec import NONE_MARK, Decoder, Deferred, Tag, is_exception
from ..codec._globals import check_allowed
from . import _fast

_WALK = frozenset({list, dict, Deferred})
V = sys.version_info[:2]

_RESUMABLE = inspect.CO_GENERATOR | inspect.CO_COROUTINE | inspect.CO_ITERABLE_COROUTINE


class CodeEntry:
    """Everything restore needs about one code object, found and checked once."""

    __slots__ = ("module", "code", "globals", "info", "rules", "ncodeunits", "dot0_iter", "fn",
                 "args", "kwargs", "label", "n", "plans", "fast", "fast_plans")

    def __init__(self, module: types.ModuleType | None, code: types.CodeType,
                 globals_: dict[str, Any]) -> None:
        self.module = module
        self.code = code
        self.globals = globals_
        self.info = code_info(code)
        self.rules = slot_rules(code)
        self.ncodeunits = len(code.co_code) // 2
        self.dot0_iter = _dot0_is_iterated(code)
        self.label = f"{globals_.get('__name__')}.{code.co_qualname}()"
        self.n = self.info.nlocalsplus
        self.plans: dict[int, Plan] = {}
        # What the C fast path (frames.restore) reads: set by enable_fast()
        # once the code is resolved and checked; plans it may use, by offset.
        self.fast: tuple[Any, ...] | None = None
        self.fast_plans: dict[int, tuple[Any, ...]] = {}
        self.fn: types.FunctionType | None = None
        self.args: tuple[Any, ...] = ()
        self.kwargs: dict[str, Any] = {}

    def plan(self, pos: Any) -> Plan:
        """The restore plan for resume offset ``pos`` (CorruptSnapshot if it is
        not a resume point of this code)."""
        depth = self.info.resume.get(pos) if type(pos) is int else None
        if depth is None:
            raise CorruptSnapshot(f"{self.label}: offset {pos!r} is not a resume point of "
                                  "its code")
        plan = Plan(self, pos, depth)
        self.plans[pos] = plan
        fast = _plan_fast(plan, self, pos)
        if fast is not None:
            self.fast_plans[pos] = fast
        return plan

    def slot_error(self, index: int, exc: BaseException) -> BaseException:
        """``exc``, raised while decoding the value of slot ``index``, as an
        error of the same class whose message says which local or value stack
        slot of this frame held the value (the codec only knows the value).
        Called by decode_frame and by the C fast path (frames/_fastpath.h);
        anything but a RestoreError is returned as it is."""
        if not isinstance(exc, RestoreError):
            return exc
        n = self.n
        names = self.info.slot_names
        where = (f"local {names[index]!r}" if 0 <= index < n and index < len(names)
                 else f"value stack slot {index - n}")
        msg = str(exc)
        if msg.startswith(f"{self.label}: "):  # already names this frame (the C path's own checks)
            msg = msg[len(self.label) + 2:]
        try:
            named = type(exc)(f"{self.label}: {where}: {msg}")
        except Exception:  # noqa: BLE001 - a subclass with another signature
            return exc
        named.__cause__ = exc.__cause__
        named.__suppress_context__ = True
        return named

    def enable_fast(self, key: tuple[str, str, int]) -> None:
        """Let the C fast path restore frames of this code (named by ``key``)."""
        try:
            self.prepare()
        except CorruptSnapshot:
            return  # not a generator function: the Python path says so
        if self.kwargs or self.fn is None:
            return  # keyword-only arguments: the Python path calls fn(**kwargs)
        self.fast = (self, self.module, self.fn, self.args, self.fast_plans, self.n, self.label)
        _fast_entries[key] = self.fast

    def prepare(self) -> None:
        """Build the function and placeholder arguments ``fresh`` calls."""
        if self.fn is None:
            code = self.code
            flags = code.co_flags
            if not flags & _RESUMABLE or flags & inspect.CO_ASYNC_GENERATOR:
                raise CorruptSnapshot(f"{self.label} is not a generator or coroutine function")
            closure = tuple(types.CellType() for _ in code.co_freevars) or None
            self.fn = types.FunctionType(code, self.globals, code.co_name, None, closure)
            argc = code.co_argcount
            # 3.15: a generator expression's prologue runs iter(.0) before
            # RETURN_GENERATOR, so that argument gets an inert iterable.
            iterable = self.info.iterable_args
            self.args = tuple(() if i in iterable else None for i in range(argc))
            self.kwargs = dict.fromkeys(code.co_varnames[argc : argc + code.co_kwonlyargcount])

    def fresh(self) -> Any:
        """A new, created generator/coroutine of this code; runs no user code.

        The function is made from the code with placeholder cells and called
        with placeholder arguments: CPython runs only the prologue (argument
        binding, MAKE_CELL, COPY_FREE_VARS) up to RETURN_GENERATOR.  Every slot
        is overwritten by the restore right after.
        """
        if self.fn is None:
            self.prepare()
        assert self.fn is not None
        return self.fn(*self.args, **self.kwargs)


class Plan:
    """What restoring a frame of one code at one resume offset must check,
    worked out once from the bytecode analysis and reused by every restore.

    ``checks`` lists ``(slot index, kind, nullable)`` for every stack slot
    (every stack slot must at least be non-empty unless the bytecode may
    leave it NULL); ``general`` is set when a slot needs the full rules of
    ``_check_slots`` (3.14+ tagged ints, 3.15 sequence/index pairs, an
    except* result list, which is checked item by item and copied).
    """

    __slots__ = ("depth", "sub_at", "checks", "bound", "general", "delegating")

    def __init__(self, entry: CodeEntry, pos: int, depth: int) -> None:
        n = entry.n
        self.depth = depth
        kinds = entry.rules.stack_kinds(pos, depth)
        self.general = any(k & ~NULLABLE in (INDEX, EXC_LIST) or k & ~NULLABLE in TAGGED
                           for k in kinds)
        self.checks = tuple((n + j, k & ~NULLABLE, bool(k & NULLABLE))
                            for j, k in enumerate(kinds) if k != NULLABLE)
        self.bound = tuple(i for i in entry.rules.bound.get(pos, ()) if i < n)
        self.delegating = pos in entry.info.delegating
        sub_at = n + depth + DELEGATE
        self.sub_at = sub_at if self.delegating and sub_at >= n else -1



_FAST_KINDS = {ANY: 0, ITER: 1, LIST: 2, SET: 3, DICT: 4, EXC: 5, EXC_OR_NONE: 6, LASTI: 7}
"""Slot kinds the C fast path checks itself (codes of frames/_fastpath.h)."""
_FAST_INDEX = 8
"""FP_INDEX: a 3.15 index slot (NULL, or an index over a sequence CPython walks in place)."""


def _plan_fast(plan: Plan, entry: CodeEntry, pos: int) -> tuple[Any, ...] | None:
    """The plan as the C fast path reads it, or None where only Python applies
    the rules (3.14+ tagged lasti slots, an except* result list, a created
    comprehension's '.0', a kind the C side does not know)."""
    if pos == -1 and entry.dot0_iter:
        return None
    checks = []
    for index, kind, nullable in plan.checks:
        if kind == INDEX:
            # 3.15: the index above a sequence walked in place (or NULL above
            # an iterator); the C path applies _check_slots' rule for it.
            checks.append((index, _FAST_INDEX, True, KIND_NAMES[kind]))
            continue
        code = _FAST_KINDS.get(kind)
        if code is None or kind in TAGGED:
            return None  # 3.14+ tagged lasti, except* lists, kinds C does not know
        checks.append((index, code, nullable, KIND_NAMES[kind]))
    names = entry.info.slot_names
    n = entry.n
    return (plan.depth, plan.sub_at, tuple(checks),
            tuple((i, names[i]) for i in plan.bound),
            tuple((i, names[i]) for i in entry.info.cell_slots),
            n + plan.depth + DELEGATE if plan.delegating else -1, entry.ncodeunits)


def _dot0_is_iterated(code: types.CodeType) -> bool:
    """A comprehension/genexpr whose '.0' argument goes straight to FOR_ITER
    (CPython 3.11-3.14; 3.15 passes an already-iterated pair)."""
    if sys.version_info >= (3, 15) or not code.co_argcount or code.co_varnames[0] != ".0":
        return False
    instrs = [ins for ins in dis.get_instructions(code) if ins.opname != "CACHE"]
    return any(a.opname == "LOAD_FAST" and a.arg == 0 and b.opname == "FOR_ITER"
               for a, b in zip(instrs, instrs[1:], strict=False))


_entries: dict[tuple[Any, ...], CodeEntry] = {}
_fast_entries: dict[tuple[str, str, int], tuple[Any, ...]] = {}
"""(module, qualname, fingerprint) -> CodeEntry.fast, for frames.restore."""


def decode_coderef(dec: Decoder, v: list[Any], i: int) -> tuple[CodeEntry, int]:
    """Read the code fields at v[i:], returning (entry, next index)."""
    if i >= len(v):
        raise CorruptSnapshot("truncated code reference")
    first = v[i]
    if type(first) is int and first < 0:
        k = -1 - first
        if k >= len(dec.codes):
            raise CorruptSnapshot(f"code reference {k} points past the codes read so far")
        return dec.codes[k], i + 1
    if i + 3 > len(v):
        raise CorruptSnapshot("truncated code reference")
    qual_f, fp = v[i + 1], v[i + 2]
    strings = dec.strings
    if type(fp) is int and not dec.safe:
        # Fast path: a code seen before, named by a plain module + qualname
        # (each a new string or an index into the string table).
        tf, tq = type(first), type(qual_f)
        module_s = (first if tf is str else strings[first] if tf is int
                    and 0 <= first < len(strings) else None)
        qual_s = (qual_f if tq is str else strings[qual_f] if tq is int
                  and 0 <= qual_f < len(strings) else None)
        entry = _entries.get((module_s, qual_s, (), fp))
        if entry is not None and sys.modules.get(module_s or "") is entry.module:
            if tf is str:
                strings.append(first)
            if tq is str:
                strings.append(qual_f)
            dec.codes.append(entry)
            return entry, i + 3
    if type(first) is str:
        strings.append(first)
        module = first
    else:
        module = dec.string(first)
    path: tuple[int, ...] = ()
    if type(qual_f) is str:
        strings.append(qual_f)
        qual = qual_f
    elif type(qual_f) is list:
        if not qual_f or not all(type(p) is int and 0 <= p < 1 << 16 for p in qual_f[1:]):
            raise CorruptSnapshot("malformed nested code path")
        qual = dec.string(qual_f[0])
        path = tuple(qual_f[1:])
    else:
        qual = dec.string(qual_f)
    if type(fp) is not int:
        raise CorruptSnapshot("malformed code fingerprint")
    if dec.safe:
        check_allowed(module, qual, dec.allow, "code of")
    key = (module, qual, path, fp)
    entry = _entries.get(key)
    if entry is None or sys.modules.get(module) is not entry.module:
        ref = CodeRef(module, qual, path)
        code, globals_ = locate(ref)
        now = fingerprint(code)
        if now != fp:
            raise CodeMismatch(
                f"{module}.{code.co_qualname}(): its code changed since the snapshot was "
                f"taken (fingerprint {fp:016x} in the snapshot, {now:016x} now); a changed "
                "function cannot resume an old frame"
            )
        entry = CodeEntry(sys.modules.get(module), code, globals_)
        _entries[key] = entry
        if not path:
            entry.enable_fast((module, qual, fp))
    dec.codes.append(entry)
    return entry, i + 3


def adopt(ctx: list[Any]) -> None:
    """The decoder of a restore context built without one (``loads``), made
    the first time a frame needs it (frames/_fastpath.h, fp_decoder)."""
    Decoder(decode_frame, decode_coderef, ctx[6], ctx[8]).adopt(ctx)


MAX_CHAIN = 10_000
"""The longest yield-from/await chain a blob may hold (frame-chain depth limit)."""


def _check_no_delegation_cycle(dec: Decoder, entry: CodeEntry, gen: Any, sub: Any) -> None:
    """close()/throw() follow the delegation chain in C without a recursion
    guard: a chain that comes back to a frame (itself, or one still being
    decoded above it) would overflow the C stack."""
    x = sub
    for _ in range(MAX_CHAIN):
        if x is None:
            return
        if x is gen or id(x) in dec.active:
            raise CorruptSnapshot(f"{entry.label}: its yield from / await chain loops back "
                                  "to itself")
        t = type(x)
        if t is types.GeneratorType:
            x = x.gi_yieldfrom
        elif t is types.CoroutineType:
            x = x.cr_await
        else:
            return
    raise LimitExceeded(f"{entry.label}: yield from / await chain longer than {MAX_CHAIN}")


def _kind_ok(v: Any, kind: int, ncodeunits: int) -> bool:
    if kind == ITER:
        return hasattr(type(v), "__next__")
    if kind == LIST:
        return type(v) is list
    if kind == SET:
        return type(v) is set
    if kind == DICT:
        return type(v) is dict
    if kind == EXC:
        return is_exception(v)
    if kind == EXC_OR_NONE:
        return v is None or is_exception(v)
    if kind == EXC_LIST:
        return type(v) is list and all(x is None or is_exception(x) for x in v)
    if kind == LASTI:
        return type(v) is int and 0 <= v < ncodeunits
    return True


def _describe(v: Any) -> str:
    if type(v) is list:
        bad = next((x for x in v if x is not None and not is_exception(x)), None)
        if bad is not None:
            return f"a list holding a value of type {type(bad).__name__}"
    return type(v).__name__


def _check_slots(entry: CodeEntry, pos: int, slots: list[Any], n: int, frames: Any) -> None:
    """Refuse values the interpreter would use unchecked (see bytecode._kinds);
    turn the ints of 3.14+ tagged slots into ``frames.TaggedInt`` (in place)."""
    null = frames.NULL
    rules = entry.rules
    if pos == -1 and entry.dot0_iter and not hasattr(type(slots[0]), "__next__"):
        raise CorruptSnapshot(f"{entry.label}: its '.0' argument must be an iterator "
                              f"(the first FOR_ITER advances it), got {type(slots[0]).__name__}")
    kinds = rules.stack_kinds(pos, len(slots) - n)
    for j, kind in enumerate(kinds):
        v = slots[n + j]
        if kind & ~NULLABLE == INDEX and v is not null:
            # 3.15: a sequence walked in place; FOR_ITER / SEND call its
            # type's _tp_iteritem without checking the type has one.
            if type(v) is not int or v < 0 or j == 0 or not frames.virtual_iterable(
                    slots[n + j - 1]):
                raise CorruptSnapshot(
                    f"{entry.label}: value stack slots {j - 1}, {j} must be a sequence CPython "
                    f"walks by index and its index, got {type(slots[n + j - 1]).__name__}, {v!r}"
                )
            slots[n + j] = frames.TaggedInt(v)
            continue
        if (j + 1 < len(kinds) and kinds[j + 1] & ~NULLABLE == INDEX
                and slots[n + j + 1] is not null):
            continue  # walked by index: checked with the index slot above
        if v is null:
            if not kind & NULLABLE:
                raise CorruptSnapshot(
                    f"{entry.label}: value stack slot {j} is empty where the bytecode always "
                    "has a value"
                )
        elif kind & ~NULLABLE and not _kind_ok(v, kind & ~NULLABLE, entry.ncodeunits):
            raise CorruptSnapshot(
                f"{entry.label}: value stack slot {j} must be {KIND_NAMES[kind & ~NULLABLE]}, "
                f"got {_describe(v)}"
            )
        elif kind & ~NULLABLE in TAGGED and v is not null:
            slots[n + j] = frames.TaggedInt(v)  # 3.14+: the handler's lasti
        elif kind & ~NULLABLE == EXC_LIST:
            # Checked, then copied: only the stack holds this list in a real
            # frame, while a blob could alias it with a list the code appends
            # to (``errors.append((yield))``) before PREP_RERAISE_STAR reads it.
            slots[n + j] = list(v)
    bound = rules.bound.get(pos)
    if bound:
        for index in bound:
            if index < n and slots[index] is null:
                raise CorruptSnapshot(
                    f"{entry.label}: local {entry.info.slot_names[index]!r} is read without a "
                    "check after this point, so it cannot be unbound"
                )


def decode_frame(dec: Decoder, v: list[Any], i: int, root: bool = False,
                 fast: bool = True) -> Any:
    """Rebuild one frame from v[i:] (see the module docstring).  ``root``: the
    blob's outermost frame, decoded last; the checks that need the whole
    object graph (``Decoder.finish``) run just before it is written.

    The C fast path (``frames.restore``) does the whole frame when its code
    and plan are known already; it declines anything else, before any side
    effect, and this function does the work.  ``fast=False``: the C path
    already declined this frame (loads and the C path call back so).
    """
    frames = _fast._frames or _fast.frames()
    if fast:
        gen = frames.restore(dec.ctx or dec.make_ctx(), v, i, _fast_entries, sys.modules, root)
        if gen is not None:
            return gen
    entry, i = decode_coderef(dec, v, i)
    if i >= len(v):
        raise CorruptSnapshot(f"{entry.label}: truncated frame")
    pos = v[i]
    exc_f = None
    if type(pos) is list:
        if len(pos) != 2:
            raise CorruptSnapshot(f"{entry.label}: malformed position")
        pos, exc_f = pos
    plan = entry.plans.get(pos) if type(pos) is int else None
    if plan is None:
        plan = entry.plan(pos)
    i += 1
    n = entry.n
    if len(v) - i - n != plan.depth:
        raise CorruptSnapshot(
            f"{entry.label}: {len(v) - i - n} stack values at offset {pos}, but its bytecode "
            f"has {plan.depth} there"
        )
    fn = entry.fn
    gen = fn(*entry.args) if fn is not None and not entry.kwargs else entry.fresh()
    dec.memo.append(gen)
    active = dec.active
    key = id(gen)
    active.add(key)
    try:
        exc = None
        if exc_f is not None:
            exc = dec.dec(exc_f)
            if not is_exception(exc):
                raise CorruptSnapshot(f"{entry.label}: the handled exception is a "
                                      f"{type(exc).__name__}")
        null = frames.NULL
        decode = dec.dec
        raw = v[i:]
        sub_at = plan.sub_at
        fresh_sub = (sub_at >= 0 and type(raw[sub_at]) is list and raw[sub_at]
                     and type(raw[sub_at][0]) is not Tag)
        # Slots in order, so memo indexes match capture; an error names the
        # slot (len(slots) is the index of the one being decoded).
        slots: list[Any] = []
        append = slots.append
        try:
            if fresh_sub:
                # The sub-frame this frame delegates to, stored untagged (see
                # capture), decoded in its place.
                for x in raw[:sub_at]:
                    append(null if x is None else None if x is NONE_MARK else decode(x)
                           if type(x) in _WALK else x)
                append(decode_frame(dec, raw[sub_at], 0))
                raw = raw[sub_at + 1:]
            for x in raw:
                append(null if x is None else None if x is NONE_MARK else decode(x)
                       if type(x) in _WALK else x)
        except RestoreError as err:
            named = entry.slot_error(len(slots), err)
            raise named from named.__cause__
        if plan.general:
            _check_slots(entry, pos, slots, n, frames)
        else:
            for index, kind, nullable in plan.checks:
                x = slots[index]
                if x is null:
                    if not nullable:
                        raise CorruptSnapshot(
                            f"{entry.label}: value stack slot {index - n} is empty where the "
                            "bytecode always has a value"
                        )
                elif kind and not _kind_ok(x, kind, entry.ncodeunits):
                    raise CorruptSnapshot(
                        f"{entry.label}: value stack slot {index - n} must be "
                        f"{KIND_NAMES[kind]}, got {_describe(x)}"
                    )
            for index in plan.bound:
                if slots[index] is null:
                    raise CorruptSnapshot(
                        f"{entry.label}: local {entry.info.slot_names[index]!r} is read "
                        "without a check after this point, so it cannot be unbound"
                    )
            if pos == -1 and entry.dot0_iter and not hasattr(type(slots[0]), "__next__"):
                raise CorruptSnapshot(
                    f"{entry.label}: its '.0' argument must be an iterator (the first "
                    f"FOR_ITER advances it), got {type(slots[0]).__name__}")
        info = entry.info
        for index in info.cell_slots:
            if type(slots[index]) is not types.CellType:
                raise CorruptSnapshot(
                    f"{entry.label}: slot {info.slot_names[index]!r} must hold a cell, got "
                    f"{type(slots[index]).__name__}"
                )
        if plan.delegating:
            sub = slots[DELEGATE]
            t = type(sub)
            if not (t is types.GeneratorType or t is types.CoroutineType
                    or hasattr(t, "__next__")
                    or (V >= (3, 15) and frames.virtual_iterable(sub))):
                raise CorruptSnapshot(
                    f"{entry.label}: delegates to a {t.__name__}, which is not an iterator"
                )
            if not fresh_sub:
                # A sub-frame decoded just above is new: its own chain was
                # checked against this frame (active then) when it was written.
                _check_no_delegation_cycle(dec, entry, gen, sub)
        if root:
            dec.finish()
        try:
            frames.write(gen, pos, slots[:n], slots[n:], exc)
        except (TypeError, ValueError) as err:
            raise CorruptSnapshot(f"{entry.label}: {err}") from err
        return gen
    except BaseException:
        # Refused: the fresh generator is still in its created state (nothing
        # was written); closing it runs no code and avoids a "coroutine was
        # never awaited" warning.
        gen.close()
        raise
    finally:
        active.discard(key)
