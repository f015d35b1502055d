"""The outer shape of a blob: header, optional signature, msgpack limits.

Unsigned blob: one msgpack array ``[HEADER, *root frame fields]``.
Signed blob:   one msgpack array ``[SIGNED_HEADER, tag, body]`` where ``body``
is the unsigned blob's bytes and ``tag`` its HMAC-SHA256 under the user's key.
The tag is checked (in constant time) before ``body`` is parsed.  When the
blob has out-of-band buffers (``dumps(buffer_callback=)``), the tag covers
them too, in order, each preceded by its length as 8 little-endian bytes.

The header is a 3-byte msgpack fixext: ext type ``C`` (or ``S`` when signed)
and one byte ``format_version << 5 | python_minor``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Sequence
from typing import Any

import msgpack
from msgpack import ExtType

from .._errors import CodeMismatch, CorruptSnapshot, LimitExceeded, SignatureError
from ..codec import EXT_HEADER, EXT_SIGNED, new_ext_hook
from ..codec._markers import shared_header
from ..frames import PY_MINOR

FORMAT_VERSION = 1
HEADER = shared_header(FORMAT_VERSION << 5 | PY_MINOR)
"""The header of this version's unsigned blobs: the very object ext_hook returns
for it, so a parsed blob's header can be checked by identity."""
SIGNED_HEADER = ExtType(EXT_SIGNED, bytes([FORMAT_VERSION << 5 | PY_MINOR]))
TAG_SIZE = 32

DEFAULT_MAX_SIZE = 256 * 1024 * 1024
"""Blobs larger than this are refused before parsing (configurable per call)."""


def check_header(h: Any) -> None:
    if type(h) is not ExtType or h.code not in (EXT_HEADER, EXT_SIGNED) or len(h.data) != 1:
        raise CorruptSnapshot("not a corosnap blob (no header)")
    version, minor = h.data[0] >> 5, h.data[0] & 31
    if version != FORMAT_VERSION:
        raise CorruptSnapshot(
            f"blob format version {version} is not supported by this corosnap "
            f"(it reads version {FORMAT_VERSION})"
        )
    if minor != PY_MINOR:
        raise CodeMismatch(
            f"blob was made by CPython 3.{minor}, this is CPython 3.{PY_MINOR}: bytecode and "
            "frame layouts differ between minor versions, so a frame cannot move between them"
        )


def _tag(key: bytes, body: bytes, buffers: Sequence[Any] = ()) -> bytes:
    mac = hmac.new(key, body, hashlib.sha256)
    for buf in buffers:
        with memoryview(buf) as view:
            mac.update(view.nbytes.to_bytes(8, "little"))
            mac.update(view if view.c_contiguous else view.tobytes())
    return mac.digest()


def sign(body: bytes, key: bytes, buffers: Sequence[Any] = ()) -> bytes:
    return msgpack.packb([SIGNED_HEADER, _tag(key, body, buffers), body], use_bin_type=True)


def unpack(data: bytes, max_size: int = DEFAULT_MAX_SIZE,
           ext_hook: Callable[[], Any] = new_ext_hook) -> list[Any]:
    """Parse msgpack with limits; any parse failure is CorruptSnapshot."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"loads() takes bytes, got {type(data).__name__}")
    if len(data) > max_size:
        raise LimitExceeded(f"blob of {len(data)} bytes exceeds max_size={max_size}")
    try:
        tree = msgpack.unpackb(data, strict_map_key=False, ext_hook=ext_hook())
    except (ValueError, msgpack.UnpackException, TypeError) as exc:
        raise CorruptSnapshot(f"not a valid msgpack document: {exc}") from None
    except RecursionError:
        raise LimitExceeded("msgpack nesting too deep") from None
    if type(tree) is not list or not tree:
        raise CorruptSnapshot("not a corosnap blob (not an array)")
    return tree


def open_blob(data: bytes, key: bytes | None, max_size: int,
              buffers: Sequence[Any] | None = None,
              ext_hook: Callable[[], Any] = new_ext_hook) -> list[Any]:
    """Verify and parse a blob, returning ``[HEADER, *root fields]``.
    ``buffers``: the out-of-band buffers, which a signature also covers;
    ``ext_hook`` makes msgpack's ext hook for one blob (the codec engine's)."""
    tree = unpack(data, max_size, ext_hook)
    if tree[0] == HEADER and key is None:
        return tree  # the common case: an unsigned blob of this version
    check_header(tree[0])
    if tree[0].code == EXT_SIGNED:
        if len(tree) != 3 or type(tree[1]) is not bytes or type(tree[2]) is not bytes:
            raise CorruptSnapshot("malformed signed blob")
        if key is not None:
            expected = _tag(key, tree[2], buffers or ())
            if not hmac.compare_digest(expected, tree[1]):
                raise SignatureError("signature does not match: wrong key or tampered blob")
        tree = unpack(tree[2], max_size, ext_hook)
        check_header(tree[0])
        if tree[0].code != EXT_HEADER:
            raise CorruptSnapshot("nested signed blob")
    elif key is not None:
        raise SignatureError("blob is not signed, but a key was given")
    return tree
