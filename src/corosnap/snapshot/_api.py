"""The public entry points: dumps, loads, dump, load.  No I/O beyond the file
object a caller hands to dump/load."""

from __future__ import annotations

from typing import IO, Any

import msgpack

from .._errors import CorosnapError, CorruptSnapshot, LimitExceeded, RestoreError
from ..codec import Decoder, Encoder, pickler_id
from ._blob import DEFAULT_MAX_SIZE, HEADER, open_blob, sign
from ._capture import check_target, encode_frame
from ._restore import decode_coderef, decode_frame


def _encode(obj: Any, pid: int, strict_ints: bool) -> bytes:
    enc = Encoder(pid, encode_frame, strict_ints)
    enc.register(obj)
    fields = encode_frame(enc, obj)
    return msgpack.packb([HEADER, *fields], use_bin_type=True)


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
        body = _encode(obj, pid, strict_ints=False)
    except OverflowError:
        # An int outside msgpack's 64-bit range slipped through the fast path.
        body = _encode(obj, pid, strict_ints=True)
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
        return decode_frame(dec, tree, 1)
    except CorosnapError:
        raise
    except RecursionError:
        raise LimitExceeded("blob nested too deeply") from None
    except (TypeError, ValueError, IndexError, KeyError, AttributeError, OverflowError) as exc:
        raise CorruptSnapshot(f"malformed blob: {exc!r}") from exc
    except Exception as exc:  # user code run by a reduce callable, an import, ...
        raise RestoreError(f"restoring the snapshot failed: {exc!r}") from exc


def dump(obj: Any, file: IO[bytes], **kwargs: Any) -> None:
    """``file.write(dumps(obj, **kwargs))``."""
    file.write(dumps(obj, **kwargs))


def load(file: IO[bytes], **kwargs: Any) -> Any:
    """``loads(file.read(), **kwargs)``."""
    return loads(file.read(), **kwargs)
