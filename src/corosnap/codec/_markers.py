"""What msgpack's ext hook makes of a blob's exts, before the decoder walks it.

What lives here: the marker objects the parse leaves in the tree (``Tag``,
one shared instance per tag kind; ``Deferred`` for the exts whose meaning
depends on the walk; ``NONE_MARK``, a frame slot's None; one shared header
ext per payload byte), and ``ext_hook_for``, the Python ext hook.  Its C
twin is ``ExtHook`` in ``_ccodec.c``, which reads these very objects by name
when it is imported (so this module must never import ``_ccodec``, nor the
decoder): the two engines hand the walk identical markers.

Theory of operation: msgpack calls the ext hook for every ext while it
parses, so it is kept to a dict lookup or two; msgpack's own ExtType
constructor costs several times more.  Exts that need no context are decoded
right away (big ints, complex numbers, well-known globals, surrogate
strings); the others become markers the decoder resolves in memo order.

msgpack builds a map's dict itself, before the decoder sees it, and a map
key may be an ext: big ints (equal modulo 2**61 - 1) and complex numbers
whose hashes collide would make that dict quadratic to build.  So a blob's
big ints and complex numbers are counted by hash as they are read (the
``by_hash`` state of one hook, one blob): no more than MAX_EQUAL_HASHES
distinct ones may share one.
"""

from __future__ import annotations

import struct
from typing import Any

from msgpack import ExtType

from .._errors import CorruptSnapshot
from ._globals import WELLKNOWN
from ._tags import (
    EXT_BIGINT,
    EXT_BUFFER,
    EXT_BYTEARRAY,
    EXT_COMPLEX,
    EXT_HEADER,
    EXT_INTLIST,
    EXT_NONE,
    EXT_PICKLE,
    EXT_REF,
    EXT_SURROGATE_STR,
    EXT_TAG,
    EXT_WELLKNOWN,
    MAX_EQUAL_HASHES,
    NONE_EXT,
)


class Tag:
    """The decoded form of an EXT_TAG: one shared instance per kind."""

    __slots__ = ("kind",)

    def __init__(self, kind: int) -> None:
        self.kind = kind


class Deferred:
    """An ext whose meaning depends on the walk (memo order) or its place: REF,
    BYTEARRAY, PICKLE, INTLIST, BUFFER, frame-slot None.  Resolved by Decoder.dec."""

    __slots__ = ("code", "data")

    def __init__(self, code: int, data: bytes) -> None:
        self.code = code
        self.data = data


NONE_MARK = Deferred(EXT_NONE, b"\0")
"""The decoded frame-slot None (in frame slots nil means NULL); only frame slots
may hold it."""

TAG_BY_DATA: dict[bytes, Tag] = {}
"""The shared Tag of every kind the decoder knows, by EXT_TAG payload (filled by
the decoder, which owns the kinds; a tag not in here is refused while parsing)."""

TAG_OF_KIND: dict[int, Tag] = {}
"""The same Tags, by kind (filled with TAG_BY_DATA)."""

HEADERS = {bytes([b]): ExtType(EXT_HEADER, bytes([b])) for b in range(256)}
"""One shared ExtType per header byte (building one costs more than unpacking a small blob)."""


def register_tags(kinds: Any) -> None:
    """Give each tag kind the decoder handles its one shared Tag."""
    for kind in kinds:
        tag = TAG_OF_KIND.setdefault(kind, Tag(kind))
        TAG_BY_DATA[bytes([kind])] = tag


def shared_header(byte: int) -> ExtType:
    """The header ext the ext hook returns for this payload byte (always the same object)."""
    return HEADERS[bytes([byte])]


def _bigint(data: bytes) -> int:
    return int.from_bytes(data, "little", signed=True)


def _complex(data: bytes) -> complex:
    if len(data) != 16:
        raise CorruptSnapshot("complex payload must be 16 bytes")
    re, im = struct.unpack("<dd", data)
    return complex(re, im)


def _wellknown(data: bytes) -> Any:
    if len(data) != 1 or data[0] >= len(WELLKNOWN):
        raise CorruptSnapshot("unknown well-known global")
    return WELLKNOWN[data[0]]


def _counted(by_hash: dict[int, Any], v: Any) -> Any:
    """Count a decoded big int / complex by hash (see the module docstring)."""
    h = hash(v)
    old = by_hash.get(h)
    if old is None:
        by_hash[h] = v
    elif type(old) is set:
        old.add(v)
        if len(old) > MAX_EQUAL_HASHES:
            raise CorruptSnapshot(f"more than {MAX_EQUAL_HASHES} distinct numbers share "
                                  "one hash: refusing a hash-flooding blob")
    elif old != v:
        by_hash[h] = {old, v}
    return v


def ext_hook_for(by_hash: dict[int, Any], code: int, data: bytes) -> Any:
    """msgpack ext_hook, with one blob's state ``by_hash``: decode what needs
    no context right away, mark the rest (see the module docstring)."""
    if code == EXT_TAG:
        tag = TAG_BY_DATA.get(data)
        if tag is None:
            raise CorruptSnapshot(f"unknown tag {data!r}")
        return tag
    if (code == EXT_REF or code == EXT_BYTEARRAY or code == EXT_PICKLE or code == EXT_INTLIST
            or code == EXT_BUFFER):
        return Deferred(code, data)
    if code == EXT_NONE:
        return NONE_MARK
    if code == EXT_BIGINT:
        return _counted(by_hash, _bigint(data))
    if code == EXT_WELLKNOWN:
        return _wellknown(data)
    if code == EXT_COMPLEX:
        return _counted(by_hash, _complex(data))
    if code == EXT_SURROGATE_STR:
        try:
            return data.decode("utf-8", "surrogatepass")
        except UnicodeDecodeError as exc:
            raise CorruptSnapshot(f"malformed string: {exc}") from None
    if code == EXT_HEADER:
        header = HEADERS.get(data)
        if header is not None:
            return header
    return ExtType(code, data)  # a header; anything else is refused by the walk


__all__ = ["HEADERS", "NONE_EXT", "NONE_MARK", "TAG_BY_DATA", "TAG_OF_KIND", "Deferred", "Tag",
           "ext_hook_for", "register_tags", "shared_header"]
