"""The public entry points: dumps, loads, dump, load.  No I/O beyond the file
object a caller hands to dump/load."""

from __future__ import annotations

import threading
from typing import IO, Any

import msgpack

from .._errors import CorosnapError, CorruptSnapshot, LimitExceeded, RestoreError
from ..codec import Decoder, Encoder, pickler_id
from ..codec._decoder import printable_cause
from ._blob import DEFAULT_MAX_SIZE, HEADER, open_blob, sign
from ._capture import check_target, encode_frame
from ._restore import decode_coderef, decode_frame

_local = threading.local()


def _packer() -> msgpack.Packer:
    """A reusable Packer per thread: msgpack.packb builds a new one per call,
    which costs more than packing a small snapshot."""
    packer = getattr(_local, "packer", None)
    if packer is None:
        packer = _local.packer = msgpack.Packer(use_bin_type=True, autoreset=True)
    return packer


def _encode(obj: Any, pid: int, strict: bool) -> bytes:
    enc = Encoder(pid, encode_frame, strict)
    enc.register(obj)
    fields = encode_frame(enc, obj)
    fields.insert(0, HEADER)
    try:
        return _packer().pack(fields)
    except BaseException:
        _local.packer = None  # a failed pack may leave data in the buffer
        raise


def dumps(obj: Any, *, key: bytes | None = None, pickler: Any = None) -> bytes:
    """Capture a suspended or not-yet-started generator/coroutine as bytes.

    ``key``: sign the blob with HMAC-SHA256 (``loads(..., key=)`` verifies it).
    ``pickler``: the fallback pickler for values corosnap cannot store natively:
    ``"cloudpickle"`` (default), ``"pickle"`` or ``"dill"``.
    Raises SnapshotError naming the function, the slot and the type at fault.
    """
    check_target(obj)
    pid = pickler_id(pickler)
    try:
        body = _encode(obj, pid, strict=False)
    except (OverflowError, UnicodeEncodeError):
        # An int outside msgpack's 64-bit range, or a str with a lone
        # surrogate, slipped through the fast path: encode again, checking.
        body = _encode(obj, pid, strict=True)
    if key is not None:
        return sign(body, key)
    return body


def loads(
    data: bytes,
    *,
    key: bytes | None = None,
    safe: bool = False,
    allow: tuple[str, ...] | list[str] = (),
    max_size: int = DEFAULT_MAX_SIZE,
) -> Any:
    """Rebuild the generator/coroutine captured in ``data``.

    Only give the default (``safe=False``) mode trusted input: like pickle, it
    can import modules and call the reduce callables the blob names, and the
    fallback pickler can run arbitrary code.  ``safe=True`` refuses pickled
    payloads and any global outside the modules in ``allow``.  ``key``: verify
    the blob's HMAC-SHA256 signature before anything is decoded.
    """
    tree = open_blob(data, key, max_size)
    dec = Decoder(decode_frame, decode_coderef, safe, tuple(allow))
    try:
        return decode_frame(dec, tree, 1, root=True)
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


def dump(obj: Any, file: IO[bytes], **kwargs: Any) -> None:
    """``file.write(dumps(obj, **kwargs))``."""
    file.write(dumps(obj, **kwargs))


def load(file: IO[bytes], **kwargs: Any) -> Any:
    """``loads(file.read(), **kwargs)``."""
    return loads(file.read(), **kwargs)
