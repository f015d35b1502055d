"""Async generators, and the awaitables between them and whoever awaits them.

What lives here: how an async generator is stored (its frame, exactly as a
generator's, behind a tag that carries the generator's own state), how the
objects standing between it and its awaiter are stored (``__anext__()`` /
``asend(v)``, ``athrow(...)`` / ``aclose()``, the ``coroutine_wrapper``
``coro.__await__()`` returns, and the ``anext_awaitable`` of ``anext(it,
default)``), and the rule that ties them together.
What must never leak out: struct layouts.  ``frames`` reads and writes
them (``frames/_asyncgen.h``), after checking its restatement of CPython's
private structs against the running interpreter.

Engines.  All of this is Python on both engines: the C engine declines an
async generator's frame (capture: it takes only generators and coroutines;
restore: it leaves every ``CO_ASYNC_GENERATOR`` code to the Python engine),
so ``FrameEncoder.encode`` / ``FrameDecoder.decode`` do those frames, while
the coroutines around them and the ones they await go through the C engine
as usual.  The blobs and outcomes are the same either way
(``tests/test_engines.py``).

The rule.  While an ``__anext__()``/``asend()``/``athrow()``/``aclose()`` is
in flight, the async generator is suspended inside an ``await`` with
``ag_running_async`` set, and where that operation stands (started or not,
``aclose`` or ``athrow``) is the awaitable's state, held by whoever awaits
it, typically a coroutine in ``async for``.  So such a generator is captured
with that awaitable, through its awaiter: ``dumps(coro)`` works, and
``dumps(agen)`` of the bare generator is refused, as is any snapshot that
holds a generator in flight without the awaitable driving it
(``Encoder.finish``).  A generator suspended at a ``yield`` (or not started)
has nothing in flight and is captured on its own.

Hooks.  ``sys.set_asyncgen_hooks`` (an event loop's ``firstiter`` and
``finalizer``) are taken from the running thread by a generator's first
``asend``/``athrow``/``aclose``/``__anext__``.  They belong to a process, so
they are never stored, and making the restored awaitables runs none of them.
A restored generator takes the restoring thread's hooks as a fresh one
does: at its next operation.  One with an operation in flight may never
get a next operation (its awaiter may stop iterating right after the one in
flight), so it takes them when ``loads`` returns, if that thread has hooks
then (``loads`` called inside a running event loop); otherwise at its next
operation.  So asyncio's loop tracks restored generators and its
``shutdown_asyncgens`` closes them.

Blob format (docs/format.md):
``T_ASYNCGEN``: ``[tag, flags, frame fields...]``, flags bit 0 ``ag_closed``,
bit 1 ``ag_running_async``; a blob whose root is an async generator has the
tag and the flags right after its header.  The generator is registered in
the memo right after its code reference, like any frame.
``T_ASEND``: ``[tag, agen, state]`` (``__anext__()``) or ``[tag, agen, state,
value]`` (``asend(value)``); ``T_ATHROW``: ``[tag, agen, state]``
(``aclose()``) or ``[tag, agen, state, typ, val?, tb?]``; state 0 not
started, 1 in flight, 2 done.  ``T_CORO_WRAPPER``: ``[tag, coroutine]``;
``T_ANEXT``: ``[tag, awaitable, default]``.  These four are registered after
their parts.
"""

from __future__ import annotations

import functools
import sys
import types
from typing import Any

from .._errors import CorruptSnapshot, SnapshotError, UnsupportedInterpreter
from ..codec import Decoder, Encoder, _decoder, _encoder
from ..codec._encoder import ref_ext
from ..codec._markers import register_tags
from ..codec._tags import (
    T_ANEXT,
    T_ASEND,
    T_ASYNCGEN,
    T_ATHROW,
    T_CORO_WRAPPER,
    T_DONE,
    TAGS,
)
from ..frames import backend

AsyncGeneratorType = types.AsyncGeneratorType

CLOSED = 1
"""Flag bit: ag_closed (aclose() started, or the generator ended)."""
RUNNING = 2
"""Flag bit: ag_running_async (an asend/athrow is in flight)."""

ASEND, ATHROW, WRAPPER, ANEXT = 0, 1, 2, 3
"""Kinds of ``frames.aw_read`` / ``frames.aw_new``."""
INIT, ITER, DONE = 0, 1, 2
"""States of an asend/athrow: not started, in flight, finished."""

_TAG = TAGS[T_ASYNCGEN]
_TAG_DONE = TAGS[T_DONE]
_AW_TAGS = {ASEND: TAGS[T_ASEND], ATHROW: TAGS[T_ATHROW]}
_KIND_OF_TAG = {T_ASEND: ASEND, T_ATHROW: ATHROW}
_STATE_NAMES = ("not started", "in flight", "finished")

try:
    ASEND_TYPE, ATHROW_TYPE, WRAPPER_TYPE, ANEXT_TYPE = backend().aw_types()
    AWAITABLE_TYPES: tuple[type, ...] = (ASEND_TYPE, ATHROW_TYPE, WRAPPER_TYPE, ANEXT_TYPE)
except UnsupportedInterpreter:  # nothing can be captured here anyway
    ASEND_TYPE = ATHROW_TYPE = WRAPPER_TYPE = ANEXT_TYPE = None
    AWAITABLE_TYPES = ()


def describe(agen: Any) -> str:
    return f"async generator {agen.ag_code.co_qualname}()"


def _read(aw: Any) -> tuple[int, Any, int, tuple[Any, ...]]:
    """frames.aw_read, with a refused layout as a SnapshotError."""
    try:
        kind, target, state, payload = backend().aw_read(aw)
    except SystemError as exc:
        raise SnapshotError(f"cannot capture a {type(aw).__name__}: {exc}") from None
    return kind, target, state, payload


# -- capture -------------------------------------------------------------------

def encode_root(enc: Encoder, agen: Any) -> list[Any]:
    """The fields of a blob whose root is ``agen`` (already registered as memo
    entry 0): refused while an operation is in flight (see the rule above)."""
    frames = backend()
    if frames.ag_flags(agen) & RUNNING and frames.read(agen)[0] != frames.RUNNING:
        # (one executing right now is refused as running, by encode_frame)
        raise SnapshotError(
            f"{_where(agen)} is awaiting inside an __anext__()/asend()/athrow()/aclose() "
            "that is still in flight; that operation's state belongs to the coroutine "
            "awaiting it: snapshot that coroutine instead (it captures this generator "
            "with it)"
        )
    return _fields(enc, agen)


def encode_value(enc: Encoder, agen: Any) -> Any:
    """An async generator met as a value (a local, an item, an awaitable's)."""
    i = enc.memo.get(id(agen))
    if i is not None:
        return ref_ext(i)
    enc.register(agen)
    return _fields(enc, agen)


def _fields(enc: Encoder, agen: Any) -> list[Any]:
    flags = backend().ag_flags(agen) & (CLOSED | RUNNING)
    fields = enc.frame_hook(enc, agen)
    if fields and fields[0] is _TAG_DONE:
        return fields  # finished: its code only (restored finished)
    if flags & RUNNING:
        _in_flight(enc).running.append(agen)
    return [_TAG, flags, *fields]


def encode_awaitable(enc: Encoder, aw: Any) -> Any:
    """An asend/athrow (with its generator), a coroutine_wrapper (with its
    coroutine) or an anext_awaitable (with what it wraps), registered after
    its parts."""
    i = enc.memo.get(id(aw))
    if i is not None:
        return ref_ext(i)
    kind, target, state, payload = _read(aw)
    if kind == WRAPPER:
        out = [TAGS[T_CORO_WRAPPER], enc.enc(target)]
    elif kind == ANEXT:
        out = [TAGS[T_ANEXT], enc.enc(target), enc.enc(payload[0])]
    else:
        if state == ITER:
            _in_flight(enc).driven.add(id(target))
        out = [_AW_TAGS[kind], enc.enc(target), state, *enc.enc_items(payload)]
    enc.register(aw)
    return out


class _InFlight:
    """The check that every async generator captured with an operation in
    flight comes with the awaitable driving it (``Encoder.finish`` runs it
    once all is encoded): the generators seen in flight, and the ids of the
    generators whose in-flight awaitable was encoded."""

    __slots__ = ("running", "driven")

    def __init__(self) -> None:
        self.running: list[Any] = []
        self.driven: set[int] = set()

    def __call__(self, enc: Encoder) -> None:
        for agen in self.running:
            if id(agen) not in self.driven:
                raise SnapshotError(
                    f"{_where(agen)} has an __anext__()/asend()/athrow()/aclose() in flight, "
                    "but the snapshot does not hold the awaitable driving it (its awaiter is "
                    "elsewhere); without it the restored generator could never resume: "
                    "snapshot the coroutine that awaits it"
                )


def _in_flight(enc: Encoder) -> _InFlight:
    for check in enc.after:
        if type(check) is _InFlight:
            return check
    check = _InFlight()
    enc.after.append(check)
    return check


def _where(agen: Any) -> str:
    frame = agen.ag_frame
    module = frame.f_globals.get("__name__") if frame is not None else None
    return f"{describe(agen)} (module {module or '?'})"


# -- restore -------------------------------------------------------------------

def decode(dec: Decoder, v: list[Any], i: int, root: bool = False) -> Any:
    """The async generator whose tag is at ``v[i]`` (its flags follow, then
    its frame fields)."""
    if i + 2 >= len(v):
        raise CorruptSnapshot("truncated async generator")
    flags = v[i + 1]
    if type(flags) is not int or not 0 <= flags <= CLOSED | RUNNING:
        raise CorruptSnapshot(f"malformed async generator flags {flags!r}")
    if root and flags & RUNNING:
        raise CorruptSnapshot("the root async generator of a blob cannot have an operation "
                              "in flight (its awaiter would hold that)")
    # The Python engine's decode itself: the C engine declines async generators.
    frames: Any = dec.frames  # snapshot/_restore.py's FrameDecoder
    agen = frames.decode(dec, v, i + 2, root=root, agflags=flags)
    if flags & RUNNING:
        dec.after.append(functools.partial(take_hooks, agen))
    return agen


def take_hooks(agen: Any) -> None:
    """Give ``agen`` this thread's event-loop hooks, as its first operation
    would (async_gen_init_hooks): keep the finalizer, call firstiter."""
    firstiter, finalizer = sys.get_asyncgen_hooks()
    if firstiter is None and finalizer is None:
        return  # none here: its next operation takes them
    if backend().ag_take_hooks(agen, finalizer) and firstiter is not None:
        firstiter(agen)


def decode_value(dec: Decoder, v: list[Any]) -> Any:
    return decode(dec, v, 0)


def decode_awaitable(dec: Decoder, v: list[Any]) -> Any:
    kind_tag = v[0].kind
    if kind_tag == T_CORO_WRAPPER:
        if len(v) != 2:
            raise CorruptSnapshot("malformed coroutine_wrapper")
        coro = dec.dec(v[1])
        if type(coro) is not types.CoroutineType:
            raise CorruptSnapshot(f"a coroutine_wrapper wraps a coroutine, not a "
                                  f"{type(coro).__name__}")
        wrapper = coro.__await__()  # runs none of the coroutine's code
        dec.memo.append(wrapper)
        return wrapper
    if kind_tag == T_ANEXT:
        if len(v) != 3:
            raise CorruptSnapshot("malformed anext_awaitable")
        wrapped, default = dec.dec(v[1]), dec.dec(v[2])
        aw = backend().aw_new(ANEXT, wrapped, 0, (default,))
        dec.memo.append(aw)
        dec.depth[id(aw)] = dec._nest((wrapped, default))
        return aw
    kind = _KIND_OF_TAG[kind_tag]
    name = "async_generator_asend" if kind == ASEND else "async_generator_athrow"
    if len(v) < 3:
        raise CorruptSnapshot(f"malformed {name}")
    agen = dec.dec(v[1])
    if type(agen) is not AsyncGeneratorType:
        raise CorruptSnapshot(f"an {name} belongs to an async generator, not a "
                              f"{type(agen).__name__}")
    state = v[2]
    if type(state) is not int or not INIT <= state <= DONE:
        raise CorruptSnapshot(f"malformed {name} state {state!r}")
    payload = tuple(dec.dec_items(v[3:]))
    try:
        aw = backend().aw_new(kind, agen, state, payload)
    except (TypeError, ValueError) as exc:
        raise CorruptSnapshot(f"malformed {name}: {exc}") from None
    dec.memo.append(aw)
    # Its sent value or exception may head a chain CPython frees without its
    # recursion guard (see Decoder.depth).
    dec.depth[id(aw)] = dec._nest(payload)
    return aw


def finished(agen: Any) -> None:
    """Close a freshly made (created) async generator, running none of its
    code and none of the event loop's hooks: an aclose() started on a
    generator that never ran ends it at once."""
    aw = backend().aw_new(ATHROW, agen, INIT, ())
    try:
        aw.send(None)
    except StopIteration:
        return
    raise CorruptSnapshot(f"{describe(agen)} did not close")  # pragma: no cover - CPython ends it


def delegate_of(x: Any) -> Any:
    """What ``x`` passes close()/throw() on to, or None: the next link of a
    delegation chain through async generators and their awaitables."""
    t = type(x)
    if t is AsyncGeneratorType:
        return x.ag_await
    if t in AWAITABLE_TYPES:
        return _read(x)[1]
    return None


# -- wiring --------------------------------------------------------------------

def install() -> None:
    """Register the kinds in the codec's dispatch tables (idempotent)."""
    _encoder._DISPATCH[AsyncGeneratorType] = encode_value
    _decoder._TAGGED[T_ASYNCGEN] = decode_value
    for t in AWAITABLE_TYPES:
        _encoder._DISPATCH[t] = encode_awaitable
    for kind in (T_ASEND, T_ATHROW, T_CORO_WRAPPER, T_ANEXT):
        _decoder._TAGGED[kind] = decode_awaitable
    for kind in (T_ASYNCGEN, T_ASEND, T_ATHROW, T_CORO_WRAPPER, T_ANEXT):
        register_tags((kind,))


install()

__all__ = ["AWAITABLE_TYPES", "decode", "delegate_of", "encode_awaitable", "encode_root",
           "encode_value", "finished", "install"]
