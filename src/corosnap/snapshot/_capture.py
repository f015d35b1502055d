"""Capture: a suspended generator/coroutine/async generator -> the fields of one frame.

A frame is encoded as ``[coderef..., position, *localsplus, *stack]``:
``coderef`` names the code (see Encoder.coderef), ``position`` is the resume
offset (``-1`` for a created frame), or ``[offset, exception]`` when the frame
is suspended inside an ``except`` block.  The number of stack values is not
stored: it is implied by the code and the offset, and checked on restore.
An async generator's frame is encoded here too, by the Python engine (the C
engine declines it); the tag and state around it are ``_asyncgen``'s.
"""

from __future__ import annotations

import sys
import types
from typing import Any
from weakref import ref as ref_to

from .._errors import SnapshotError
from .._weak import RecordCache
from ..bytecode import CREATED, CodeRef, code_info, describe, fingerprint
from ..bytecode._analysis import DELEGATE
from ..bytecode._kinds import NULLABLE, TAGGED, slot_rules
from ..codec import NONE_EXT, Encoder
from ..codec._encoder import FrameHook
from ..codec._tags import T_DONE, TAGS
from ..frames import CREATED as CREATED_STATE
from ..frames import FINISHED, NULL, RUNNING, SUSPENDED, TAGGED_INTS, TaggedInt, backend
from . import _contract
from ._contract import CaptureCode, CaptureState, Where

_GENERATOR_TYPES = (types.GeneratorType, types.CoroutineType)


_KIND_NAMES = {types.GeneratorType: "generator", types.CoroutineType: "coroutine",
               types.AsyncGeneratorType: "async generator"}


def _code_of(obj: Any) -> types.CodeType:
    t = type(obj)
    return (obj.gi_code if t is types.GeneratorType else obj.cr_code
            if t is types.CoroutineType else obj.ag_code)


def _a(noun: str) -> str:
    return f"{'an' if noun[:1] in 'aeiou' else 'a'} {noun}"


def describe_target(obj: Any) -> str:
    kind = _KIND_NAMES.get(type(obj))
    if kind is None:
        return _a(type(obj).__qualname__)
    return f"{kind} {_code_of(obj).co_qualname}()"


def check_target(obj: Any) -> None:
    t = type(obj)
    if t in _KIND_NAMES:
        return
    raise SnapshotError(
        "corosnap snapshots generators, coroutines and async generators; got "
        f"{t.__module__}.{t.__qualname__}"
    )


def describe_code(codes: RecordCache[Any], code: types.CodeType,
                  module: str | None) -> Any:
    """The CaptureCode of ``code`` (run by globals named ``module``): its
    analysis, name and fingerprint, and per suspension offset the stack
    depth, which stack slot holds the delegated-to sub-generator and which
    slots may hold a 3.14+ tagged integer.  Computed once per code (and
    ``__name__``), kept in ``codes`` as long as the code lives; both engines
    read it."""
    info = code_info(code)
    ref = describe(code, module)
    fp = fingerprint(code)
    rules = slot_rules(code) if TAGGED else None
    where = {}
    for lasti, depth in info.resume.items():
        sub_at = depth + DELEGATE
        tagged = () if rules is None else tuple(
            j for j, kind in enumerate(rules.stack_kinds(lasti, depth))
            if kind & ~NULLABLE in TAGGED)
        where[lasti] = Where(depth=depth, sub_at=sub_at if lasti in info.delegating
                             and sub_at >= 0 else -1, tagged=tagged)
    weak = codes.ref(code)
    meta = CaptureCode(code=weak if weak is not None else ref_to(code), module=module,
                       nlocals=info.nlocalsplus, where=where, ref=ref, name_module=ref.module,
                       name_qualname=None if ref.path else ref.qualname, fingerprint=fp,
                       slot_names=info.slot_names)
    return codes.put(code, meta)


class FrameEncoder:
    """Frames -> fields, for one Snapshotter: its per-code cache and its engine.

    ``hook`` is what the codec's Encoder calls for every generator it meets
    (the root, a delegated sub-generator, one held in a value): ``encode``
    under the pure-Python engine, ``encode_accelerated`` under the C engine,
    which lets the C capture do the frame and falls back to ``encode`` when it
    declines.  The C capture calls ``encode`` itself for a sub-frame it
    declines, so no frame is offered to it twice.
    """

    __slots__ = ("codes", "hook", "capture")

    def __init__(self, codes: RecordCache[Any], engine: str) -> None:
        self.codes = codes
        self.capture = _contract.capture if engine == "c" else None
        self.hook: FrameHook = self.encode if self.capture is None else self.encode_accelerated

    def encode_accelerated(self, enc: Encoder, gen: Any) -> list[Any]:
        """The C engine first (``_csnapshot.capture``), then ``encode``."""
        state = enc.cstate
        if state is None:
            # The encoder's tables, by name; it refers back to the encoder,
            # which drops it when the dumps is over (Snapshotter.dumps).
            state = enc.cstate = CaptureState(
                encoder=enc, memo=enc.memo, keep=enc.keep, strings=enc.strings, codes=enc.codes,
                globals_seen=enc.globals_seen, passthrough=enc.passthrough,
                code_cache=self.codes.data, frames=self)
        assert self.capture is not None
        try:
            fields = self.capture(state, gen)
        except SnapshotError as err:
            raise _name_failure(enc, gen, err) from None
        except RecursionError:
            raise SnapshotError(f"in {describe_target(gen)}: values nested too deeply") from None
        if fields is not None:
            return fields
        return self.encode(enc, gen)

    def encode(self, enc: Encoder, gen: Any) -> list[Any]:
        """Encode one generator/coroutine/async generator frame (its
        sub-generators recursively, through ``enc``): the Python engine."""
        state, lasti, localsplus, stack, exc, globals_ = backend().read(gen)
        code = _code_of(gen)
        if state != SUSPENDED and state != CREATED_STATE:
            if state == FINISHED and enc.keep and enc.keep[0] is not gen:
                # A finished generator held as a value (a helper kept in a local):
                # its frame is gone, so only its code is stored.
                return [TAGS[T_DONE], *enc.coderef(code, _describe_finished(enc, gen, code))]
            _refuse_state(gen, state, globals_)
        if id(globals_) not in enc.globals_seen:
            enc.note_globals(globals_)
        module = globals_.get("__name__")
        meta = self.codes.data.get(id(code))
        if meta is None or meta.code() is not code or meta.module != module:
            meta = describe_code(self.codes, code, module)
        if state == CREATED_STATE:
            lasti = CREATED
        where = meta.where.get(lasti)
        if where is None or len(localsplus) != meta.nlocals or len(stack) != where.depth:
            raise SnapshotError(
                f"{_where(gen, globals_)} is suspended at offset {lasti} with {len(stack)} "
                f"stack values, which its bytecode does not explain "
                f"(expected {where.depth if where else None})"
            )
        if TAGGED_INTS:
            stack = _untag(where, stack, gen, globals_)
        fields = enc.coderef(code, meta.ref, meta.fingerprint)
        null = NULL
        passthrough = enc.passthrough
        value = enc.enc
        try:
            fields.append(lasti if exc is None else [lasti, value(exc)])
            # In frame slots nil stands for an empty slot (an unbound local is
            # more common in a suspended frame than a None), and None gets an ext.
            fields += [None if x is null else NONE_EXT if x is None
                       else x if type(x) in passthrough else _slot(value(x)) for x in localsplus]
            sub_at = where.sub_at
            if sub_at >= 0 and type(stack[sub_at]) in _GENERATOR_TYPES:
                # The sub-generator a delegating frame sends to is stored
                # untagged, in its slot (the top of the stack; on 3.15 the slot
                # below the top).
                fields += [None if x is null else NONE_EXT if x is None
                           else x if type(x) in passthrough else _slot(value(x))
                           for x in stack[:sub_at]]
                fields.append(enc.delegated_frame(stack[sub_at]))
                fields += [None if x is null else NONE_EXT if x is None
                           else x if type(x) in passthrough else _slot(value(x))
                           for x in stack[sub_at + 1:]]
            else:
                fields += [None if x is null else NONE_EXT if x is None
                           else x if type(x) in passthrough else _slot(value(x)) for x in stack]
        except SnapshotError as err:
            what, _ = _failing_slot(enc, exc, localsplus, stack, meta.slot_names, null)
            raise SnapshotError(f"in {_where(gen, globals_)}, {what}: {err}") from None
        except RecursionError:
            raise SnapshotError(f"in {_where(gen, globals_)}: values nested too deeply") from None
        return fields


def _name_failure(enc: Encoder, gen: Any, err: SnapshotError) -> SnapshotError:
    """The C engine's error, with the frame and the slot named."""
    _state, _lasti, localsplus, stack, exc, globals_ = backend().read(gen)
    code = _code_of(gen)
    what, again = _failing_slot(enc, exc, localsplus, stack, code_info(code).slot_names, NULL)
    # The error met again by encoding that slot alone names the frames below
    # this one (the C path recursed into them without naming them).
    return SnapshotError(f"in {_where(gen, globals_)}, {what}: {again or err}")


def _failing_slot(enc: Encoder, exc: Any, localsplus: list[Any], stack: list[Any],
                  names: tuple[str, ...], null: Any) -> tuple[str, SnapshotError | None]:
    """Name the slot whose value could not be encoded (for the error message),
    with the error encoding it alone gives.

    The slots are encoded in bulk, so the failing one is found
    again by encoding each slot's value on its own, in a scratch encoder
    that knows the same modules (a failure does not depend on the memo).
    """
    candidates: list[tuple[str, Any]] = []
    if exc is not None:
        candidates.append(("the exception being handled", exc))
    candidates += [(f"local {names[i]!r}" if i < len(names) else f"slot {i}", x)
                   for i, x in enumerate(localsplus)]
    candidates += [(f"value stack slot {j}", x) for j, x in enumerate(stack)]
    enc.resolve_globals()
    for what, x in candidates:
        if x is null or x is None:
            continue
        scratch = type(enc)(enc.pid, enc.frame_hook, enc.strict, enc.buffer_callback)
        if enc.keep:
            scratch.register(enc.keep[0])  # the root: a finished generator elsewhere is a value
        for globals_, _index in enc.global_values:
            scratch.note_globals(globals_)
        try:
            scratch.enc(x)
        except SnapshotError as err:
            return what, err
        except RecursionError:
            return what, None
        finally:
            scratch.cstate = None
    return "a value in the frame", None


def _untag(where: Any, stack: list[Any], gen: Any, globals_: Any) -> list[Any]:
    """3.14+: the stack with its tagged integers (a handler's lasti, 3.15's
    sequence indexes) as plain ints, after checking they sit exactly where
    the bytecode analysis expects tagged slots (``where.tagged``; the restore
    side re-tags the same slots)."""
    if not any(type(x) is TaggedInt for x in stack):
        return stack
    out = list(stack)
    for j, x in enumerate(stack):
        if type(x) is TaggedInt:
            if j not in where.tagged:
                raise SnapshotError(
                    f"{_where(gen, globals_)}: value stack slot {j} holds a tagged integer "
                    "where the bytecode analysis expects an object; corosnap does not know "
                    "this code shape (please report it)"
                )
            out[j] = int(x)
    return out


def _describe_finished(enc: Encoder, gen: Any, code: types.CodeType) -> CodeRef:
    """Name the code of a finished generator, whose frame (and globals) are
    gone: it was made by code of one of the modules being captured."""
    enc.resolve_globals()
    for module in enc.modules:
        try:
            return describe(code, module)
        except SnapshotError:
            continue
    raise SnapshotError(
        f"{describe_target(gen)} has finished, and its code is not found in the modules of "
        "the frames being captured"
    )


def _slot(encoded: Any) -> Any:
    """A value encoded as nil (a dropped traceback) is None, not an empty slot."""
    return NONE_EXT if encoded is None else encoded


def _where(gen: Any, globals_: dict[str, Any] | None) -> str:
    module = globals_.get("__name__") if globals_ else _module_of(_code_of(gen))
    return f"{describe_target(gen)} (module {module})"


def _module_of(code: types.CodeType) -> str:
    """The module a finished generator's code comes from (its frame, and so
    its globals, are gone): a loaded module of its file where the code is
    found by name (``describe``), else the first module loaded from its file."""
    by_file = None
    for name, module in list(sys.modules.items()):
        if getattr(module, "__file__", None) != code.co_filename:
            continue
        by_file = by_file or name
        try:
            describe(code, name)
        except SnapshotError:
            continue
        return name
    return by_file or "?"


def _refuse_state(gen: Any, state: int, globals_: dict[str, Any] | None) -> None:
    check_target(gen)
    if state == RUNNING:
        raise SnapshotError(
            f"{_where(gen, globals_)} is running: {_a(_KIND_NAMES[type(gen)])} cannot be "
            "captured while it executes (dumps() must be called from outside it)"
        )
    raise SnapshotError(f"{_where(gen, globals_)} has finished or was closed: there is "
                        "nothing to resume")
