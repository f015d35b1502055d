"""The public entry points: dumps, loads, dump, load.  No I/O beyond the file
object a caller hands to dump/load."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterable
from functools import partial
from pickle import PickleBuffer
from types import CoroutineType, GeneratorType
from typing import IO, Any, Literal

import msgpack

from .._errors import CorosnapError, CorruptSnapshot, LimitExceeded, RestoreError, SnapshotError
from ..codec import BufferDecisions, Decoder, Encoder, pack_offered, pickler_id
from ..codec._decoder import printable_cause
from . import _fast
from ._blob import DEFAULT_MAX_SIZE, HEADER, open_blob, sign
from ._capture import check_target, describe_target, encode_frame
from ._restore import _fast_entries, adopt, decode_coderef, decode_frame

_local = threading.local()
_DEFAULT_PICKLER = pickler_id(None)


def _packer() -> msgpack.Packer:
    """A reusable Packer per thread: msgpack.packb builds a new one per call,
    which costs more than packing a small snapshot."""
    packer = getattr(_local, "packer", None)
    if packer is None:
        packer = _local.packer = msgpack.Packer(use_bin_type=True, autoreset=True)
    return packer


def _blob_ext_hook(frames: Any) -> Any:
    """This thread's ext_hook for parsing blobs: ``frames.ext_hook`` (the
    constant exts in C) bound to a state dict (hash counts of the blob's big
    numbers, see codec ext_hook_for), which loads empties before each blob.
    One per thread is enough: the state is only used while msgpack parses,
    which runs no code that could load another blob in this thread."""
    hook = _local.ext_hook = partial(frames.ext_hook, {})
    return hook


Pickler = Literal["pickle", "cloudpickle", "dill"]
"""The fallback picklers ``dumps(pickler=)`` accepts (None means cloudpickle)."""


def _encode(obj: Any, pid: int, strict: bool,
            decisions: BufferDecisions | None = None,
            buffer_callback: Callable[[PickleBuffer], Any] | None = None) -> bytes:
    enc = Encoder(pid, encode_frame, strict, buffer_callback)
    enc.memo[id(obj)] = 0  # the root is memo entry 0 (enc.register)
    enc.keep.append(obj)
    try:
        fields = encode_frame(enc, obj)
    finally:
        enc.ctx = None  # it refers back to enc (see _capture.encode_frame)
    fields.insert(0, HEADER)
    if enc.offered:  # buffers: decided now that nothing can be rolled back
        try:
            enc.finish_buffers(decisions or BufferDecisions())
        except SnapshotError as err:
            raise SnapshotError(f"in {describe_target(obj)}: {err}") from None
        return msgpack.Packer(use_bin_type=True, default=pack_offered).pack(fields)
    packer = getattr(_local, "packer", None) or _packer()
    try:
        return packer.pack(fields)
    except BaseException:
        _local.packer = None  # a failed pack may leave data in the buffer
        raise


def dumps(
    obj: Any,
    *,
    key: bytes | None = None,
    pickler: Pickler | None = None,
    buffer_callback: Callable[[PickleBuffer], Any] | None = None,
) -> bytes:
    """Capture a suspended or not-yet-started generator/coroutine as bytes.

    ``key``: sign the blob with HMAC-SHA256 (``loads(..., key=)`` verifies it).
    ``pickler``: the fallback pickler for values corosnap cannot store natively:
    ``"cloudpickle"`` (default), ``"pickle"`` or ``"dill"``.
    ``buffer_callback``: as pickle's (protocol 5): called, once the snapshot is
    encoded, with a ``pickle.PickleBuffer`` of every bytes or bytearray value of
    at least 4 KiB and every memoryview, in order; a false result (e.g.
    ``list.append``'s None) leaves the buffer out of the blob, which then holds
    only its index, and ``loads(..., buffers=)`` must be given those buffers.
    Raises SnapshotError naming the function, the slot and the type at fault.
    """
    if type(obj) is not GeneratorType and type(obj) is not CoroutineType:
        check_target(obj)  # raises, naming what it got
    _fast._frames or _fast.frames()  # UnsupportedInterpreter, before anything else
    pid = _DEFAULT_PICKLER if pickler is None else pickler_id(pickler)
    decisions = None if buffer_callback is None else BufferDecisions()
    try:
        body = _encode(obj, pid, False, decisions, buffer_callback)
    except (OverflowError, UnicodeEncodeError):
        # An int outside msgpack's 64-bit range, or a str with a lone
        # surrogate, slipped through the fast path: encode again, checking.
        body = _encode(obj, pid, True, decisions, buffer_callback)
    if key is not None:
        return sign(body, key, () if decisions is None else decisions.out)
    return body


def loads(
    data: bytes,
    *,
    key: bytes | None = None,
    safe: bool = False,
    allow: tuple[str, ...] | list[str] = (),
    max_size: int = DEFAULT_MAX_SIZE,
    buffers: Iterable[Any] | None = None,
) -> Any:
    """Rebuild the generator/coroutine captured in ``data``.

    Only give the default (``safe=False``) mode trusted input: like pickle, it
    can import modules and call the reduce callables the blob names, and the
    fallback pickler can run arbitrary code.  ``safe=True`` refuses pickled
    payloads and any global outside the modules in ``allow``.  ``key``: verify
    the blob's HMAC-SHA256 signature (which covers ``buffers`` too) before
    anything is decoded.  ``buffers``: the out-of-band buffers ``dumps``'s
    ``buffer_callback`` set aside, in order (any bytes-like objects; the
    restored values share their memory where the type allows, as pickle's do).
    """
    frames = _fast._frames or _fast.frames()  # UnsupportedInterpreter, before anything else
    if buffers is not None:
        buffers = _check_buffers(buffers)
    tree = None
    if key is None and type(data) is bytes and len(data) <= max_size:
        # The common case inline: an unsigned blob of this version.
        hook = getattr(_local, "ext_hook", None) or _blob_ext_hook(frames)
        state = hook.args[0]
        if state:
            state.clear()
        try:
            tree = msgpack.unpackb(data, strict_map_key=False, ext_hook=hook)
        except Exception:  # noqa: BLE001 - open_blob parses again and says what is wrong
            tree = None
        if type(tree) is not list or not tree or tree[0] is not HEADER:
            tree = None
    if tree is None:
        tree = open_blob(data, key, max_size, buffers)
    ctx: list[Any]
    if buffers is None:
        # The decoding state, without a Decoder: the C fast path makes one (adopt)
        # only if a frame needs Python to decode a value (see Decoder.make_ctx).
        ctx = [None, [], [], [], set(), None, True if safe else False, [],
               allow if type(allow) is tuple else tuple(allow)]
    else:
        ctx = Decoder(decode_frame, decode_coderef, safe, tuple(allow), buffers).make_ctx()
    try:
        gen = frames.restore(ctx, tree, 1, _fast_entries, sys.modules, True)
        if gen is not None:
            return gen
        if ctx[0] is None:
            adopt(ctx)
        return decode_frame(ctx[0], tree, 1, root=True, fast=False)
    except CorosnapError:
        raise
    except RecursionError:
        raise LimitExceeded("blob nested too deeply") from None
    except MemoryError:
        raise LimitExceeded("blob asks for more memory than is available") from None
    except (TypeError, ValueError, IndexError, KeyError, AttributeError, OverflowError) as exc:
        raise CorruptSnapshot(f"malformed blob: {exc!r}") from printable_cause(exc)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # user code run by a reduce callable, an import, ...
        raise RestoreError(f"restoring the snapshot failed: {exc!r}") from printable_cause(exc)
    finally:
        if ctx[0] is not None:  # ctx and its decoder refer to each other
            ctx[0].ctx = None
            ctx[0] = ctx[5] = None


def _check_buffers(buffers: Iterable[Any]) -> list[Any]:
    out = list(buffers)
    for i, buf in enumerate(out):
        if type(buf) not in (bytes, bytearray, memoryview, PickleBuffer):
            try:
                memoryview(buf).release()
            except TypeError:
                raise TypeError(f"loads(): buffers[{i}] is a {type(buf).__name__}, not a "
                                "bytes-like object") from None
    return out


def dump(obj: Any, file: IO[bytes], **kwargs: Any) -> None:
    """``file.write(dumps(obj, **kwargs))``."""
    file.write(dumps(obj, **kwargs))


def load(file: IO[bytes], **kwargs: Any) -> Any:
    """``loads(file.read(), **kwargs)``."""
    return loads(file.read(), **kwargs)
