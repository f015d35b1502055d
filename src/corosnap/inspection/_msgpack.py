"""Where each msgpack object starts and ends: a header walker over raw bytes.

What lives here: the msgpack *format table* (the first byte of an object says
its family and, with the bytes after it, its length), and nothing else.  The
inspector needs the exact byte range of every value in a blob, which
``msgpack.unpackb`` does not give: msgpack-python exposes only
``Unpacker.tell()``, the offset after a whole top-level object, and none of the
other msgpack libraries for Python exposes per-object offsets either.  So the
inspector first lets ``msgpack.unpackb`` validate the document (truncation,
nesting, reserved bytes: its C parser is the authority), then walks the same
bytes with this module, which decodes headers only and never builds a value it
was not asked for.

Theory of operation: ``head(buf, pos)`` reads the header at ``pos`` and returns
``(family, arg, start, end)``:

* ``NIL BOOL INT FLOAT``: ``arg`` is the value, ``end`` is the end;
* ``STR BIN``: ``start:end`` is the payload (decoded on demand by ``text``);
* ``EXT``: ``arg`` is the ext type (a signed byte), ``start:end`` the payload;
* ``ARRAY MAP``: ``arg`` is the number of items (pairs for a map), ``start``
  the first item; ``end`` is -1 (known only once the items are walked).

``skip(buf, pos)`` returns the end of the whole object at ``pos``, iteratively
(no recursion, whatever the nesting).  Every read is bounds-checked: a header
or payload running past the buffer raises ``Malformed``, never IndexError.
"""

from __future__ import annotations

import struct
from typing import Any

NIL, BOOL, INT, FLOAT, STR, BIN, ARRAY, MAP, EXT = range(9)
FAMILY_NAMES = ("nil", "bool", "int", "float", "str", "bin", "array", "map", "ext")


class Malformed(ValueError):
    """The bytes at an offset are not a msgpack object."""


_U8 = struct.Struct(">B")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_I8 = struct.Struct(">b")
_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")
_F32 = struct.Struct(">f")
_F64 = struct.Struct(">d")

# Fixed-size scalars by first byte: (family, decoder, header length).
_FIXED: dict[int, tuple[int, struct.Struct, int]] = {
    0xCA: (FLOAT, _F32, 1), 0xCB: (FLOAT, _F64, 1),
    0xCC: (INT, _U8, 1), 0xCD: (INT, _U16, 1), 0xCE: (INT, _U32, 1), 0xCF: (INT, _U64, 1),
    0xD0: (INT, _I8, 1), 0xD1: (INT, _I16, 1), 0xD2: (INT, _I32, 1), 0xD3: (INT, _I64, 1),
}
# Length-prefixed payloads: first byte -> (family, length struct).
_SIZED: dict[int, tuple[int, struct.Struct]] = {
    0xC4: (BIN, _U8), 0xC5: (BIN, _U16), 0xC6: (BIN, _U32),
    0xD9: (STR, _U8), 0xDA: (STR, _U16), 0xDB: (STR, _U32),
}
_CONTAINERS: dict[int, tuple[int, struct.Struct]] = {
    0xDC: (ARRAY, _U16), 0xDD: (ARRAY, _U32), 0xDE: (MAP, _U16), 0xDF: (MAP, _U32),
}
_FIXEXT = {0xD4: 1, 0xD5: 2, 0xD6: 4, 0xD7: 8, 0xD8: 16}
_EXT = {0xC7: _U8, 0xC8: _U16, 0xC9: _U32}


def _read(fmt: struct.Struct, buf: bytes, pos: int) -> Any:
    if pos + fmt.size > len(buf):
        raise Malformed(f"truncated at byte {pos}")
    return fmt.unpack_from(buf, pos)[0]


def head(buf: bytes, pos: int) -> tuple[int, Any, int, int]:
    """The header of the object at ``pos`` (see the module docstring)."""
    if pos >= len(buf):
        raise Malformed(f"truncated at byte {pos}")
    b = buf[pos]
    if b <= 0x7F:
        return INT, b, pos + 1, pos + 1
    if b >= 0xE0:
        return INT, b - 0x100, pos + 1, pos + 1
    if b <= 0x8F:
        return MAP, b & 0x0F, pos + 1, -1
    if b <= 0x9F:
        return ARRAY, b & 0x0F, pos + 1, -1
    if b <= 0xBF:
        end = pos + 1 + (b & 0x1F)
        if end > len(buf):
            raise Malformed(f"string at byte {pos} runs past the end")
        return STR, None, pos + 1, end
    if b == 0xC0:
        return NIL, None, pos + 1, pos + 1
    if b == 0xC2 or b == 0xC3:
        return BOOL, b == 0xC3, pos + 1, pos + 1
    fixed = _FIXED.get(b)
    if fixed is not None:
        family, fmt, _ = fixed
        return family, _read(fmt, buf, pos + 1), pos + 1 + fmt.size, pos + 1 + fmt.size
    sized = _SIZED.get(b)
    if sized is not None:
        family, fmt = sized
        n = _read(fmt, buf, pos + 1)
        start = pos + 1 + fmt.size
        if start + n > len(buf):
            raise Malformed(f"{FAMILY_NAMES[family]} at byte {pos} runs past the end")
        return family, None, start, start + n
    container = _CONTAINERS.get(b)
    if container is not None:
        family, fmt = container
        return family, _read(fmt, buf, pos + 1), pos + 1 + fmt.size, -1
    n = _FIXEXT.get(b)
    if n is not None:
        code = _read(_I8, buf, pos + 1)
        start = pos + 2
    elif b in _EXT:
        fmt = _EXT[b]
        n = _read(fmt, buf, pos + 1)
        code = _read(_I8, buf, pos + 1 + fmt.size)
        start = pos + 2 + fmt.size
    else:
        raise Malformed(f"byte 0x{b:02x} at {pos} is not a msgpack type")
    if start + n > len(buf):
        raise Malformed(f"ext at byte {pos} runs past the end")
    return EXT, code, start, start + n


def skip(buf: bytes, pos: int) -> int:
    """The end of the object that starts at ``pos`` (containers included)."""
    pending = 1
    while pending:
        family, arg, start, end = head(buf, pos)
        pending -= 1
        if family == ARRAY:
            pending += arg
            pos = start
        elif family == MAP:
            pending += 2 * arg
            pos = start
        else:
            pos = end
    return pos


def text(buf: bytes, start: int, end: int) -> str:
    """A str payload; Malformed if it is not UTF-8."""
    try:
        return bytes(buf[start:end]).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Malformed(f"string at byte {start} is not UTF-8: {exc.reason}") from None


def scalar(buf: bytes, pos: int) -> tuple[Any, int]:
    """``(value, end)`` of a scalar (nil, bool, int, float, str, bin); a
    container or ext gives ``(Ellipsis, end)`` without decoding it."""
    family, arg, start, end = head(buf, pos)
    if family <= FLOAT:
        return arg, end
    if family == STR:
        return text(buf, start, end), end
    if family == BIN:
        return bytes(buf[start:end]), end
    return ..., (end if family == EXT else skip(buf, pos))


__all__ = ["ARRAY", "BIN", "BOOL", "EXT", "FAMILY_NAMES", "FLOAT", "INT", "MAP", "Malformed",
           "NIL", "STR", "head", "scalar", "skip", "text"]
