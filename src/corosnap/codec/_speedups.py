"""The codec's hot helpers, in both engines.

What lives here: the Python reference of the four scans the encoder and the
decoder run on every blob (``is_flat``, ``pack_ints``, ``str_keys`` and the
msgpack ext hook), and the choice between them and their C twins in
``_ccodec.c`` (see ``corosnap._accel``).  The functions below are the
Python engine's; ``ACTIVE`` is the set of the engine this process runs, which
the encoder and decoder use, and ``PYTHON`` and ``C`` (None under the
pure-Python engine) hold each engine's set, for the tests that hold one
against the other.

Both engines give the same answer for every input (``tests/test_engines.py``
checks it), so the encoder produces the same bytes whichever runs.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Callable
from functools import partial
from itertools import compress, repeat
from operator import is_
from typing import Any, NamedTuple

import msgpack

from .._accel import accelerator
from ._markers import ext_hook_for

_NONE_TYPE = type(None)
_MIN64 = -(2**63)
_MAX64 = 2**63


def _flat_kind(kind: type) -> bool:
    return (kind is int or kind is str or kind is float or kind is bytes or kind is bool
            or kind is _NONE_TYPE)


def is_flat(v: Any) -> bool:
    """True when ``v`` is exactly a list whose every item is exactly an int
    (fitting in 64 signed bits), float, str, bytes, bool or None: msgpack packs
    it as it is, with no identity bookkeeping."""
    if type(v) is not list:
        return False
    # Scans by builtins (map, set, compress, min, max) iterate in C: a few
    # times slower than _ccodec's one pass, several times faster than a loop.
    # Types are decided by identity, as the C scan does.  The six flat types'
    # metaclass is type itself; an item whose class has another metaclass is
    # not flat, and is ruled out before the types are hashed into a set (its
    # metaclass's __hash__ and __eq__ could say anything, or be missing).
    types = list(map(type, v))
    if not all(map(is_, map(type, types), repeat(type))):
        return False
    kinds = set(types)
    if not all(map(_flat_kind, kinds)):
        return False
    if int in kinds:
        ints = v if len(kinds) == 1 else list(compress(v, map(is_, types, repeat(int))))
        return _MIN64 <= min(ints) and max(ints) < _MAX64
    return True


# struct's standard sizes ("<"): little-endian on every host, 1, 2, 4 and 8
# bytes whatever the platform's C types, so no byteswap and no typecode table.
_WIDTHS = ((1, "b"), (2, "h"), (4, "i"), (8, "q"))
_PACK = struct.pack


def pack_ints(v: Any) -> bytes | None:
    """The EXT_INTLIST payload of ``v`` (one width byte, then every item as a
    signed little-endian integer of the narrowest of 1, 2, 4 or 8 bytes that
    holds them all), or None unless ``v`` is exactly a list of exact ints that
    fit in 64 bits."""
    if type(v) is not list:
        return None
    n = len(v)
    # Exact ints only (a bool, an IntEnum or another int subclass is not one),
    # by identity: comparing types with == or hashing them would run the
    # __eq__ or __hash__ of a metaclass, which may say anything.  The check
    # comes first, so that no __index__ of a user's class runs either.
    if not n:
        return b"\x01"
    if not all(map(is_, map(type, v), repeat(int))):
        return None
    # The first and last items bound the narrowest width from below (lists of
    # ids and ranges are often sorted: then they decide it); struct.pack
    # refuses an item out of its width's range, and the next width is tried.
    bits = max((v[0] if v[0] >= 0 else ~v[0]).bit_length(),
               (v[-1] if v[-1] >= 0 else ~v[-1]).bit_length())
    for width, code in _WIDTHS:
        if bits >= 8 * width:
            continue
        try:
            return bytes((width,)) + _PACK(f"<{n}{code}", *v)
        except struct.error:
            continue
    return None


def str_keys(v: Any) -> tuple[str, ...] | None:
    """The keys of ``v`` as a tuple when ``v`` is exactly a dict whose every key
    is exactly a str (a record's shape), else None."""
    if type(v) is not dict:
        return None
    keys = tuple(v)
    for k in keys:
        if type(k) is not str:
            return None
    return keys


def new_ext_hook() -> Callable[[int, bytes], Any]:
    """A msgpack ext hook for one blob (``ext_hook_for`` with fresh state)."""
    return partial(ext_hook_for, {})


def unpack(data: bytes) -> Any:
    """The tree of a blob's bytes: ``msgpack.unpackb`` with this engine's ext
    hook, or None when the bytes do not parse (the caller parses them again
    through ``snapshot/_blob.py``, which says what is wrong).  The C twin
    reads the bytes itself and declines (None) whatever it is not sure to
    read as msgpack does."""
    try:
        return msgpack.unpackb(data, strict_map_key=False, ext_hook=new_ext_hook())
    except Exception:  # noqa: BLE001 - the caller parses again and reports
        return None


_local = threading.local()


def pack(tree: Any, default: Callable[[Any], Any] | None = None) -> bytes:
    """A blob's bytes: ``msgpack.Packer(use_bin_type=True,
    default=default).pack(tree)``.  Without a default, this thread's Packer is
    reused (``msgpack.packb`` builds one per call, which costs more than
    packing a small snapshot).  The C twin also packs the ``Packed`` nodes its
    encoder writes."""
    if default is not None:
        return msgpack.Packer(use_bin_type=True, default=default).pack(tree)
    packer = getattr(_local, "packer", None)
    if packer is None:
        packer = _local.packer = msgpack.Packer(use_bin_type=True, autoreset=True)
    try:
        return packer.pack(tree)
    except BaseException:
        _local.packer = None  # a failed pack may leave data behind
        raise


class Helpers(NamedTuple):
    """One engine's set of the codec's helpers."""

    engine: str
    is_flat: Callable[[Any], bool]
    pack_ints: Callable[[Any], bytes | None]
    str_keys: Callable[[Any], tuple[str, ...] | None]
    new_ext_hook: Callable[[], Callable[[int, bytes], Any]]
    unpack: Callable[[bytes], Any]
    pack: Callable[..., bytes]


PYTHON = Helpers("python", is_flat, pack_ints, str_keys, new_ext_hook, unpack, pack)

_c = accelerator("corosnap.codec._ccodec")
C = None if _c is None else Helpers("c", _c.is_flat, _c.pack_ints, _c.str_keys, _c.ExtHook,
                                   _c.unpack, _c.pack)
"""The C engine's helpers (None when the pure-Python engine runs)."""

ACTIVE = PYTHON if C is None else C
"""The helpers of the engine this process runs."""

__all__ = ["ACTIVE", "C", "PYTHON", "Helpers", "is_flat", "new_ext_hook", "pack", "pack_ints",
           "str_keys", "unpack"]
