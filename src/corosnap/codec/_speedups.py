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

import sys
from array import array
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

from .._accel import accelerator
from ._markers import ext_hook_for
from ._tags import INT_TYPECODES

_NONE_TYPE = type(None)
_FLAT_TYPES = frozenset({int, float, str, bytes, bool, _NONE_TYPE})
_MIN64 = -(2**63)
_MAX64 = 2**63
_BIG_ENDIAN = sys.byteorder == "big"


def is_flat(v: Any) -> bool:
    """True when ``v`` is exactly a list whose every item is exactly an int
    (fitting in 64 signed bits), float, str, bytes, bool or None: msgpack packs
    it as it is, with no identity bookkeeping."""
    if type(v) is not list:
        return False
    kinds = set(map(type, v))
    if not kinds <= _FLAT_TYPES:
        return False
    if int in kinds:
        ints = [x for x in v if type(x) is int]
        return _MIN64 <= min(ints) and max(ints) < _MAX64
    return True


def pack_ints(v: Any) -> bytes | None:
    """The EXT_INTLIST payload of ``v`` (one width byte, then every item as a
    signed little-endian integer of the narrowest of 1, 2, 4 or 8 bytes that
    holds them all), or None unless ``v`` is exactly a list of exact ints that
    fit in 64 bits."""
    if type(v) is not list:
        return None
    if v and set(map(type, v)) != {int}:
        return None
    lo = min(min(v, default=0), 0)
    hi = max(max(v, default=0), 0)
    if lo < _MIN64 or hi >= _MAX64:
        return None
    width = (1 if lo >= -128 and hi <= 127 else 2 if lo >= -32768 and hi <= 32767
             else 4 if lo >= -(2**31) and hi < 2**31 else 8)
    packed = array(INT_TYPECODES[width], v)
    if _BIG_ENDIAN:
        packed.byteswap()
    return bytes((width,)) + packed.tobytes()


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


class Helpers(NamedTuple):
    """One engine's set of the codec's helpers."""

    engine: str
    is_flat: Callable[[Any], bool]
    pack_ints: Callable[[Any], bytes | None]
    str_keys: Callable[[Any], tuple[str, ...] | None]
    new_ext_hook: Callable[[], Callable[[int, bytes], Any]]


PYTHON = Helpers("python", is_flat, pack_ints, str_keys, new_ext_hook)

_c = accelerator("corosnap.codec._ccodec")
C = None if _c is None else Helpers("c", _c.is_flat, _c.pack_ints, _c.str_keys, _c.ExtHook)
"""The C engine's helpers (None when the pure-Python engine runs)."""

ACTIVE = PYTHON if C is None else C
"""The helpers of the engine this process runs."""

__all__ = ["ACTIVE", "C", "PYTHON", "Helpers", "is_flat", "new_ext_hook", "pack_ints",
           "str_keys"]
