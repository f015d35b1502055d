"""Restore: frame fields -> a live generator/coroutine/async generator, validated first.

Order of work for one frame, and why:
1. Resolve the code by name and compare fingerprints (CodeMismatch).
2. Check the position is a resume point of that code and the number of stack
   values equals what the bytecode implies there (CorruptSnapshot).
3. Build a fresh generator by calling a function made from the code with
   placeholder arguments: only the prologue up to RETURN_GENERATOR runs, no
   user code.  Register it in the memo (its own locals may refer to it).
4. Decode the slots, check the kinds the interpreter relies on without
   checking (``check_frame``: the stack slots' kinds, the locals that must be
   bound, cells where the code has cells, the delegated-to iterator), and
   only then write the frame in one C call.
A failure at any step leaves no half-written frame behind: the fresh
generator is closed and dropped.

This module is the Python engine and the reference.  Everything it works
out once per code and offset (a ``RestoreCode``, its ``Plan``s and their
``Check``s, records of ``_contract``) is also what the C engine
(``_csnapshot.restore``) reads, and ``check_frame`` is the one Python copy
of the checks the C engine makes with the same messages.

Async generators: their frames are restored here, by the Python engine
only (the C engine declines every code with ``CO_ASYNC_GENERATOR``), with
the flags ``_asyncgen`` read from their tag (``decode(..., agflags=)``).  A
frame of an async generator's code without that tag, or the tag on any
other code, is refused.
"""

from __future__ import annotations

import dis
import inspect
import sys
import types
from collections.abc import Callable
from typing import Any
from weakref import ref as ref_to

from .._accel import accelerator
from .._errors import CodeMismatch, CorruptSnapshot, LimitExceeded, RestoreError
from .._weak import ModuleCache
from ..bytecode import CodeRef, code_info, fingerprint, locate, types_coroutine_copy
from ..bytecode._analysis import DELEGATE
from ..bytecode._kinds import (
    CALL1_SELF,
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
from ..codec._engines import ENGINES
from ..codec._globals import check_allowed
from ..codec._tags import T_ASYNCGEN
from ..frames import NULL, TaggedInt, backend, virtual_iterable
from . import _asyncgen, _contract
from ._contract import Check, Plan, RestoreCode, RestoreState

_C_MEMO: Any = getattr(accelerator("corosnap.codec._ccodec"), "Memo", None)
"""The C codec's Memo (Decoder.depth under the C engine), or None."""

_WALK = frozenset({list, dict, Deferred})
_LIST_APPEND = list.append
V = sys.version_info[:2]

_RESUMABLE = inspect.CO_GENERATOR | inspect.CO_COROUTINE | inspect.CO_ITERABLE_COROUTINE
_AGEN = inspect.CO_ASYNC_GENERATOR


class _Gone:
    """Stands for a module that cannot be weakly referenced (or is not in
    ``sys.modules``): its weak reference is dead from the start."""


_NO_MODULE = ref_to(_Gone())


def make_entry(codes: ModuleCache[Any], module: Any, code: types.CodeType,
               globals_: dict[str, Any]) -> Any:
    """Everything restore needs about one code object, found and checked once:
    a RestoreCode (see ``_contract``).  ``fn`` is the function ``fresh`` calls
    (None when the code makes no generator: ``fresh`` then says so)."""
    info = code_info(code)
    fn: types.FunctionType | None = None
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = {}
    flags = code.co_flags
    if flags & (_RESUMABLE | _AGEN):
        closure = tuple(types.CellType() for _ in code.co_freevars) or None
        fn = types.FunctionType(code, globals_, code.co_name, None, closure)
        argc = code.co_argcount
        # 3.15: a generator expression's prologue runs iter(.0) before
        # RETURN_GENERATOR, so that argument gets an inert iterable.
        iterable = info.iterable_args
        args = tuple(() if i in iterable else None for i in range(argc))
        kwargs = dict.fromkeys(code.co_varnames[argc : argc + code.co_kwonlyargcount])
    weak = codes.ref(module) if module is not None else None
    return RestoreCode(
        module=weak if weak is not None else _NO_MODULE, code=code, globals=globals_,
        label=f"{globals_.get('__name__')}.{code.co_qualname}()", nlocals=info.nlocalsplus,
        ncodeunits=len(code.co_code) // 2, slot_names=info.slot_names, cells=info.cell_slots,
        plans={}, fn=fn, args=args, kwargs=kwargs, dot0_iter=_dot0_is_iterated(code), info=info,
        rules=slot_rules(code))


def make_plan(entry: Any, pos: Any) -> Any:
    """The restore plan of ``entry``'s code at resume offset ``pos``, made once
    and kept in ``entry.plans`` (CorruptSnapshot if ``pos`` is not a resume
    point of that code): what restoring a frame there must check."""
    depth = entry.info.resume.get(pos) if type(pos) is int else None
    if depth is None:
        raise CorruptSnapshot(f"{entry.label}: offset {pos!r} is not a resume point of "
                              "its code")
    n = entry.nlocals
    kinds = entry.rules.stack_kinds(pos, depth)
    # Every stack slot must at least be non-empty unless the bytecode may
    # leave it NULL: a slot of kind NULLABLE alone needs no check at all.
    checks = tuple(
        Check(slot=n + j, kind=k & ~NULLABLE, nullable=bool(k & NULLABLE),
              index_above=j + 1 < depth and kinds[j + 1] & ~NULLABLE == INDEX,
              name=KIND_NAMES[k & ~NULLABLE])
        for j, k in enumerate(kinds) if k != NULLABLE)
    delegating = pos in entry.info.delegating
    delegate_at = n + depth + DELEGATE if delegating else -1
    plan = Plan(depth=depth, sub_at=delegate_at if delegate_at >= n else -1,
                delegate_at=delegate_at, checks=checks,
                bound=tuple(i for i in entry.rules.bound.get(pos, ()) if i < n),
                dot0=pos == -1 and entry.dot0_iter)
    entry.plans[pos] = plan
    return plan


def fresh(entry: Any) -> Any:
    """A new, created generator/coroutine of ``entry``'s code; runs no user code.

    The function is made from the code with placeholder cells and called
    with placeholder arguments: CPython runs only the prologue (argument
    binding, MAKE_CELL, COPY_FREE_VARS) up to RETURN_GENERATOR.  Every slot
    is overwritten by the restore right after.
    """
    if entry.fn is None:
        raise CorruptSnapshot(f"{entry.label} is not a generator, coroutine or async "
                              "generator function")
    return entry.fn(*entry.args, **entry.kwargs)


def finished(entry: Any) -> Any:
    """A finished generator/coroutine/async generator of ``entry``'s code,
    made and closed without running any of its code."""
    gen = fresh(entry)
    if type(gen) is types.AsyncGeneratorType:
        _asyncgen.finished(gen)
    else:
        gen.close()  # a created generator closes without running any code
    return gen


def slot_error(entry: Any, index: int, exc: BaseException) -> BaseException:
    """``exc``, raised while decoding the value of slot ``index`` of a frame of
    ``entry``'s code, as an error of the same class whose message says which
    local or value stack slot held the value (the codec only knows the
    value): ``pkg.gen(): local 'f': ...``; an error from a sub-frame keeps
    the sub-frame's own label after the slot (``pkg.outer(): value stack slot
    1: pkg.inner(): local 'f': ...``).  Anything but a RestoreError is
    returned as it is, and so is one whose class cannot be built from a
    message.  The C engine's cs_name_slot does the same, with the same
    message."""
    if not isinstance(exc, RestoreError):
        return exc
    n = entry.nlocals
    names = entry.slot_names
    where = (f"local {names[index]!r}" if 0 <= index < n and index < len(names)
             else f"value stack slot {index - n}")
    try:
        named = type(exc)(f"{entry.label}: {where}: {exc}")
    except Exception:  # noqa: BLE001 - a subclass with another signature
        return exc
    if not isinstance(named, BaseException):
        return exc
    named.__cause__ = exc.__cause__
    named.__suppress_context__ = True
    return named


def _dot0_is_iterated(code: types.CodeType) -> bool:
    """A comprehension/genexpr whose '.0' argument goes straight to FOR_ITER
    (CPython 3.11-3.14; 3.15 passes an already-iterated pair)."""
    if sys.version_info >= (3, 15) or not code.co_argcount or code.co_varnames[0] != ".0":
        return False
    instrs = [ins for ins in dis.get_instructions(code) if ins.opname != "CACHE"]
    return any(a.opname == "LOAD_FAST" and a.arg == 0 and b.opname == "FOR_ITER"
               for a, b in zip(instrs, instrs[1:], strict=False))


MAX_CHAIN = 10_000
"""The longest yield-from/await chain a blob may hold (frame-chain depth limit)."""


def check_chain(dec: Decoder, entry: Any, gen: Any, sub: Any) -> None:
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
            # async generators and their awaitables pass it on too
            x = _asyncgen.delegate_of(x)
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


def check_frame(entry: Any, plan: Any, gen: Any, slots: tuple[Any, ...], fresh_sub: bool,
                dec: Decoder) -> bool:
    """Refuse values the interpreter would use unchecked (see bytecode._kinds),
    before the frame is written: the one copy of these checks in Python (the
    C engine's cs_check_frame makes them in the same order, with the same
    messages).  ``slots`` is a tuple, which the code the checks may run (a
    type's ``__getattribute__``) cannot change; ``final_slots`` makes what
    is written from it when this returns True (a slot to convert or copy)."""
    label = entry.label
    n = entry.nlocals
    if plan.dot0 and not hasattr(type(slots[0]), "__next__"):
        raise CorruptSnapshot(f"{label}: its '.0' argument must be an iterator (the first "
                              f"FOR_ITER advances it), got {type(slots[0]).__name__}")
    null = NULL
    converts = False
    for check in plan.checks:
        index = check.slot
        kind = check.kind
        v = slots[index]
        converts = converts or kind in _CONVERTED
        if kind == INDEX and v is not null:
            # 3.15: a sequence walked in place; FOR_ITER / SEND call its
            # type's _tp_iteritem without checking the type has one.
            if (type(v) is not int or v < 0 or index == n or virtual_iterable is None
                    or not virtual_iterable(slots[index - 1])):
                raise CorruptSnapshot(
                    f"{label}: value stack slots {index - n - 1}, {index - n} must be a "
                    "sequence CPython walks by index and its index, got "
                    f"{type(slots[index - 1]).__name__}, {v!r}")
            continue
        if check.index_above and slots[index + 1] is not null:
            continue  # walked by index: checked with the index slot above
        if v is null:
            if not check.nullable:
                raise CorruptSnapshot(f"{label}: value stack slot {index - n} is empty where "
                                      "the bytecode always has a value")
            if kind == CALL1_SELF and index > n and slots[index - 1] is _LIST_APPEND:
                # 3.13's CALL_LIST_APPEND reads this slot without a NULL check.
                raise CorruptSnapshot(
                    f"{label}: value stack slot {index - n} is empty above list.append, "
                    "which CPython 3.13 calls without checking its self slot"
                )
            continue
        if not kind:
            continue
        if not _kind_ok(v, kind, entry.ncodeunits):
            raise CorruptSnapshot(f"{label}: value stack slot {index - n} must be "
                                  f"{check.name}, got {_describe(v)}")
    for index in plan.bound:
        if slots[index] is null:
            raise CorruptSnapshot(f"{label}: local {entry.slot_names[index]!r} is read "
                                  "without a check after this point, so it cannot be unbound")
    for index in entry.cells:
        if type(slots[index]) is not types.CellType:
            raise CorruptSnapshot(f"{label}: slot {entry.slot_names[index]!r} must hold a "
                                  f"cell, got {type(slots[index]).__name__}")
    if plan.delegate_at >= 0:
        sub = slots[plan.delegate_at]
        t = type(sub)
        if not (t is types.GeneratorType or t is types.CoroutineType
                or hasattr(t, "__next__")
                or (virtual_iterable is not None and virtual_iterable(sub))):
            raise CorruptSnapshot(f"{label}: delegates to a {t.__name__}, which is not an "
                                  "iterator")
        if not fresh_sub:
            # A sub-frame decoded just above is new: its own chain was checked
            # against this frame (active then) when it was written.
            check_chain(dec, entry, gen, sub)
    return converts


def final_slots(entry: Any, plan: Any, slots: tuple[Any, ...]) -> list[Any]:
    """What is written into the frame, from checked ``slots``, with no code
    but this function's run in between (as the C engine's cs_copy_exc_lists):
    the ints of 3.14+ tagged slots as TaggedInt, and an except* result list
    copied (only the stack holds this list in a real frame, while a blob
    could alias it with a list the code appends to, ``errors.append((yield))``,
    before PREP_RERAISE_STAR reads it) and checked again, since code run
    after its check (a reduce, a type's ``__getattribute__``) may have
    changed it."""
    out = list(slots)
    null = NULL
    for check in plan.checks:
        kind = check.kind
        if kind not in _CONVERTED:
            continue
        index = check.slot
        v = slots[index]
        if kind == INDEX and v is not null:
            out[index] = TaggedInt(v)
            continue
        if (check.index_above and slots[index + 1] is not null) or v is null:
            continue
        if kind in TAGGED:
            out[index] = TaggedInt(v)  # 3.14+: the handler's lasti
        elif kind == EXC_LIST:
            copy = list(v)
            if not _kind_ok(copy, kind, entry.ncodeunits):
                raise CorruptSnapshot(f"{entry.label}: value stack slot "
                                      f"{index - entry.nlocals} must be {check.name}, "
                                      f"got {_describe(copy)}")
            out[index] = copy
    return out


_CONVERTED = frozenset({INDEX, EXC_LIST, *TAGGED})
"""The slot kinds whose value final_slots converts or copies."""


def decode_exception(dec: Decoder, entry: Any, exc_f: Any) -> Any:
    """The exception a frame suspended in an ``except`` block is handling."""
    exc = dec.dec(exc_f)
    if not is_exception(exc):
        raise CorruptSnapshot(f"{entry.label}: the handled exception is a {type(exc).__name__}")
    return exc


def write_frame(dec: Decoder, entry: Any, plan: Any, pos: int, slots: list[Any], exc: Any,
                gen: Any, root: bool, fresh_sub: bool) -> Any:
    """Every check a restored frame must pass, then the write into ``gen``.

    The one gate into frame memory of the Python engine: a frame decoded
    from a blob and a frame migrated onto new code (snapshot/_migrate.py)
    both end here (``slots``: localsplus then stack).  ``fresh_sub``: the
    delegated-to sub-generator was decoded just before, as this frame's
    sub-frame (its own chain was checked when it was written).  A check
    (``corosnap.migrate.check``, a dry run) stops before the write.
    """
    n = entry.nlocals
    if len(slots) != n + plan.depth:
        raise CorruptSnapshot(f"{entry.label}: {len(slots) - n} stack values at offset {pos}, "
                              f"but its bytecode has {plan.depth} there")
    frozen = tuple(slots)
    converts = check_frame(entry, plan, gen, frozen, fresh_sub, dec)
    if root:
        dec.finish()
    migration = dec.migration
    if migration is not None and migration.dry_run:
        migration.checked(gen)  # a check: everything validated, nothing written
        return gen
    out = final_slots(entry, plan, frozen) if converts else frozen
    try:
        backend().write(gen, pos, out[:n], out[n:], exc)
    except (TypeError, ValueError) as err:
        raise CorruptSnapshot(f"{entry.label}: {err}") from err
    return gen


class FrameDecoder:
    """Fields -> frames, for one Snapshotter: its per-code cache and its engine.

    The codec's Decoder asks it for frames (``hook``), code references
    (``coderef``) and fresh generators (``fresh``).  ``hook`` is ``decode``
    under the pure-Python engine and ``decode_accelerated`` under the C
    engine, which lets the C restore do the frame and falls back to
    ``decode`` when it declines.  The C restore calls ``decode`` itself for a
    sub-frame it declines, so no frame is offered to it twice, and it calls
    ``check_chain``.  When a value needs the codec's Decoder, it makes one as
    ``adopt`` does, with the codec's C twin (``_ccodec.adopt_decoder``).
    """

    __slots__ = ("codes", "hook", "restore_c", "restore_root", "decoder")

    def __init__(self, codes: ModuleCache[Any], engine: str, frames_in_c: bool = True) -> None:
        self.codes = codes
        self.decoder = ENGINES[engine].Decoder
        # frames_in_c=False: the codec of ``engine``, every frame in Python
        # (the migration session's decoder: see Snapshotter.loads).
        use_c = engine == "c" and frames_in_c
        self.restore_c = _contract.restore if use_c else None
        self.restore_root = _contract.restore_root if use_c else None
        self.hook = self.decode if self.restore_c is None else self.decode_accelerated

    fresh = staticmethod(fresh)
    finished = staticmethod(finished)
    check_chain = staticmethod(check_chain)

    # -- one blob ---------------------------------------------------------
    def restore(self, tree: list[Any], safe: bool, allow: tuple[str, ...],
                buffers: list[Any] | None = None, migration: Any = None,
                declined: bool = False) -> Any:
        """The blob's root frame (``tree[1:]``), with its whole object graph.
        ``buffers``: the out-of-band buffers of ``loads(buffers=)``;
        ``migration``: the session of ``loads(migrate=True)`` (snapshot/_migrate.py)
        that a changed code is handed to, on a FrameDecoder with its frames in
        Python; ``declined``: the C engine's ``load_root`` already declined
        the root (it is not offered again)."""
        restore_root = self.restore_root
        if migration is not None:
            dec = self.decoder(self, safe, allow, buffers)
            dec.migration = migration
            return self.decode(dec, tree, 1, root=True)
        if declined:
            hook: Callable[..., Any] = self.decode
        elif restore_root is not None and not safe and buffers is None:
            # The C engine, with a state of its own (its tables made in C; a
            # Decoder only if a value needs Python).  None: it declined, before
            # any side effect, and the Python engine does the root.
            gen = restore_root(self, self.codes.data, tree)
            if gen is not None:
                return gen  # restore_root called done() if it made a Decoder
            hook = self.decode
        elif restore_root is not None and not safe:
            hook = self.hook  # the C engine, with a Decoder that has the buffers
        else:
            hook = self.decode
        dec = self.decoder(self, safe, allow, buffers)
        try:
            gen = hook(dec, tree, 1, root=True)
            self.done(dec)
            return gen
        finally:
            state = dec.cstate  # made by decode_accelerated; they refer to each other
            if state is not None:
                dec.cstate = None
                state.decoder = None

    @staticmethod
    def done(dec: Decoder) -> None:
        """Once the whole blob is restored: the steps decoding left for then
        (``Decoder.after``: restored async generators in flight take the
        event loop's hooks).  The C engine's restore_root calls it too."""
        if dec.after:
            steps, dec.after = dec.after, []
            for step in steps:
                step()

    def adopt(self, state: Any) -> Decoder:
        """The Decoder of a C engine state built without one: it shares the
        state's tables (and becomes ``state.decoder``).  The reference for the
        C engine's ``_ccodec.adopt_decoder``, which the C restore calls
        instead (``tests/test_load_root.py`` holds the two slot by slot)."""
        dec = self.decoder(self, state.safe, state.allow)
        dec.memo, dec.strings, dec.codes = state.memo, state.strings, state.codes
        dec.active, dec.exceptions = state.active, state.exceptions
        dec.shapes, dec.depth = state.shapes, state.depth
        dec.cstate = state
        state.decoder = dec
        return dec

    # -- one frame --------------------------------------------------------
    def decode_accelerated(self, dec: Decoder, v: list[Any], i: int, root: bool = False) -> Any:
        """The C engine first (``_csnapshot.restore``), then ``decode``.  The C
        engine shares the Decoder's tables, its depth table included, which it
        reads as the C codec's ``Memo``: a Decoder of the pure-Python codec
        (whose depth is a dict) has its frames decoded in Python."""
        state = dec.cstate
        if state is None:
            if type(dec.depth) is not _C_MEMO:
                return self.decode(dec, v, i, root)
            state = dec.cstate = RestoreState(
                decoder=dec, memo=dec.memo, strings=dec.strings, codes=dec.codes,
                active=dec.active, exceptions=dec.exceptions, shapes=dec.shapes,
                depth=dec.depth, safe=bool(dec.safe),
                allow=dec.allow, code_cache=self.codes.data, frames=self)
        assert self.restore_c is not None
        gen = self.restore_c(state, v, i, root)
        if gen is not None:
            return gen
        return self.decode(dec, v, i, root)

    def decode(self, dec: Decoder, v: list[Any], i: int, root: bool = False,
               agflags: int = -1) -> Any:
        """Rebuild one frame from v[i:] (see the module docstring): the Python
        engine.  ``root``: the blob's outermost frame, decoded last; the checks
        that need the whole object graph (``Decoder.finish``) run just before
        it is written.  ``agflags``: the frame is an async generator's, with
        these flags (``_asyncgen``); -1: a generator's or a coroutine's."""
        if agflags < 0 and i < len(v) and type(v[i]) is Tag:
            # A blob whose root is an async generator: its tag and flags first.
            if not root or v[i].kind != T_ASYNCGEN:
                raise CorruptSnapshot("malformed frame")
            return _asyncgen.decode(dec, v, i, root=True)
        entry, i = self.coderef(dec, v, i)
        if type(entry) is not RestoreCode:
            # The code changed and loads(migrate=True) found how to move the
            # frame (snapshot/_migrate.py): it decodes the old fields, maps
            # them onto the new code and ends in write_frame, as below (an
            # async generator's flags included).
            return entry.decode_frame(dec, v, i, root, agflags)
        if bool(entry.code.co_flags & _AGEN) != (agflags >= 0):
            raise CorruptSnapshot(f"{entry.label} is {'an' if agflags < 0 else 'not an'} async "
                                  "generator, where the blob has "
                                  f"{'a generator or coroutine' if agflags < 0 else 'one'}")
        if i >= len(v):
            raise CorruptSnapshot(f"{entry.label}: truncated frame")
        pos = v[i]
        # ``[offset, exception]``: suspended inside an except block.  Whether
        # the frame handles an exception is the shape of the position, never
        # the value in it: ``exception`` is a normal value, where msgpack nil
        # is None (docs/format.md), so ``[offset, nil]`` is refused below as
        # "the handled exception is a NoneType", as the C engine does.
        handling = type(pos) is list
        exc_f = None
        if handling:
            if len(pos) != 2:
                raise CorruptSnapshot(f"{entry.label}: malformed position")
            pos, exc_f = pos
        plan = entry.plans.get(pos) if type(pos) is int else None
        if plan is None:
            plan = make_plan(entry, pos)
        i += 1
        n = entry.nlocals
        if len(v) - i - n != plan.depth:
            raise CorruptSnapshot(
                f"{entry.label}: {len(v) - i - n} stack values at offset {pos}, but its "
                f"bytecode has {plan.depth} there"
            )
        fn = entry.fn
        gen = fn(*entry.args) if fn is not None and not entry.kwargs else fresh(entry)
        dec.memo.append(gen)
        active = dec.active
        key = id(gen)
        active.add(key)
        try:
            exc = decode_exception(dec, entry, exc_f) if handling else None
            raw = v[i:]
            sub_at = plan.sub_at
            fresh_sub = bool(sub_at >= 0 and type(raw[sub_at]) is list and raw[sub_at]
                             and type(raw[sub_at][0]) is not Tag)
            if agflags > 0 and agflags & _asyncgen.RUNNING and plan.delegate_at < 0:
                raise CorruptSnapshot(f"{entry.label}: an async generator with an operation "
                                      "in flight is suspended inside an await, not at a yield")
            slots = self.decode_slots(dec, entry, raw, sub_at if fresh_sub else -1)
            write_frame(dec, entry, plan, pos, slots, exc, gen, root, fresh_sub)
            migration = dec.migration
            if agflags > 0 and (migration is None or not migration.dry_run):
                backend().ag_set_flags(gen, agflags)  # checked by _asyncgen; a fresh generator
            return gen
        except BaseException:
            # Refused: the fresh generator is still in its created state
            # (nothing was written); closing it runs no code and avoids a
            # "coroutine was never awaited" warning.  (A created async
            # generator has no close() and needs none: dropped, it closes
            # without running code.)
            if agflags < 0:
                gen.close()
            raise
        finally:
            active.discard(key)

    def decode_slots(self, dec: Decoder, entry: Any, raw: list[Any], sub_at: int) -> list[Any]:
        """A frame's slot and stack fields as values, in field order (so memo
        indexes match capture); ``sub_at``: the index of an untagged
        sub-frame (the frame a delegating frame sends to, see capture), or
        -1.  An error names the slot (``len(slots)`` is the index of the one
        being decoded)."""
        null = NULL
        decode = dec.dec
        slots: list[Any] = []
        append = slots.append
        try:
            if sub_at >= 0:
                # The sub-frame this frame delegates to, stored untagged (see
                # capture), decoded in its place.
                for x in raw[:sub_at]:
                    append(null if x is None else None if x is NONE_MARK else decode(x)
                           if type(x) in _WALK else x)
                append(self.hook(dec, raw[sub_at], 0))
                raw = raw[sub_at + 1:]
            for x in raw:
                append(null if x is None else None if x is NONE_MARK else decode(x)
                       if type(x) in _WALK else x)
        except RestoreError as err:
            named = slot_error(entry, len(slots), err)
            raise named from named.__cause__
        return slots

    def entry_for(self, ref: CodeRef, fp: int) -> Any:
        """The checked RestoreCode of the code ``ref`` names, if its
        fingerprint is ``fp`` (CodeMismatch otherwise, naming the function)."""
        key = (ref.module, ref.qualname, ref.path, fp)
        entry = self.codes.data.get(key)
        if entry is not None and sys.modules.get(ref.module) is entry.module():
            return entry
        code, globals_ = locate(ref)
        now = fingerprint(code)
        if now != fp and ref.path:
            # A generator function decorated with types.coroutine inside the
            # root: its code is a flagged copy of the constant (bytecode/_locate).
            copy = types_coroutine_copy(code)
            if copy is not None and fingerprint(copy) == fp:
                code, now = copy, fp
        if now != fp:
            raise CodeMismatch(
                f"{ref.module}.{code.co_qualname}(): its code changed since the snapshot was "
                f"taken (fingerprint {fp:016x} in the snapshot, {now:016x} now); a "
                "changed function cannot resume an old frame"
            )
        owner = sys.modules.get(ref.module)
        entry = make_entry(self.codes, owner, code, globals_)
        if owner is not None:
            self.codes.put(owner, key, entry)
        return entry

    def coderef(self, dec: Decoder, v: list[Any], i: int) -> tuple[Any, int]:
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
        cache = self.codes.data
        if type(fp) is int and not dec.safe:
            # A code seen before, named by a plain module + qualname (each a
            # new string or an index into the string table).
            tf, tq = type(first), type(qual_f)
            module_s = (first if tf is str else strings[first] if tf is int
                        and 0 <= first < len(strings) else None)
            qual_s = (qual_f if tq is str else strings[qual_f] if tq is int
                      and 0 <= qual_f < len(strings) else None)
            entry = cache.get((module_s, qual_s, (), fp))
            if entry is not None and sys.modules.get(module_s or "") is entry.module():
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
        entry = cache.get((module, qual, path, fp))
        if entry is None or sys.modules.get(module) is not entry.module():
            ref = CodeRef(module, qual, path)
            try:
                entry = self.entry_for(ref, fp)
            except CodeMismatch as exc:
                if dec.migration is None:
                    raise
                # loads(migrate=True): the frame (or value) of this code may
                # still move onto the new code (snapshot/_migrate.py decides,
                # or raises NeedsMigration saying why not).
                entry = dec.migration.entry(dec, ref, fp, exc)
        dec.codes.append(entry)
        return entry, i + 3


__all__ = ["FrameDecoder", "MAX_CHAIN", "check_chain", "check_frame", "decode_exception",
           "finished", "fresh", "make_entry", "make_plan", "slot_error", "write_frame"]
