"""Frame access: the only layer that knows CPython's struct layouts.

One C module per CPython minor version (``_cpython311``, ``_cpython312``, ...),
each compiled against that interpreter's own internal headers, behind one
small interface:

``read(gen) -> FrameState(state, lasti, localsplus, stack, exc_value, globals)``
    A named tuple.  ``state`` is one of CREATED, SUSPENDED, RUNNING, FINISHED.  For CREATED and
    SUSPENDED frames, ``lasti`` is the code-unit offset of the ``YIELD_VALUE``
    the frame is suspended on (or that version's created-frame position),
    ``localsplus`` and ``stack`` are lists with :data:`NULL` for empty slots
    and, from 3.14, ``TaggedInt`` for the stack slots the interpreter keeps
    as tagged integers (a handler's ``lasti``; on 3.15 also the index of a
    sequence walked in place), and ``exc_value`` is the exception being
    handled (or None).  A created frame's stack is empty, except on 3.15 for
    generator expressions (``iter(.0)`` runs before ``RETURN_GENERATOR``).

``write(gen, lasti, localsplus, stack, exc_value)``
    Overwrites a freshly created generator's frame (``localsplus`` and
    ``stack``: lists or tuples; the C API's ``write`` takes the two as one
    list).  ``lasti == -1`` keeps it
    in the created state (with the stack shape its prologue gave it).  Any
    other ``lasti`` leaves it suspended exactly as ``YIELD_VALUE`` would,
    including 3.13+'s separate yield-from state.  ``TaggedInt`` values are
    written as tagged integers (3.14+ only).  The C side re-checks shapes
    and the opcode at ``lasti``; the caller must already have validated
    everything against the bytecode (``corosnap.bytecode``: resume points,
    depths and slot kinds).

``iter_read(it) -> tuple`` / ``iter_write(it, fields)``
    The state of a builtin iterator (itertools' iterators, ``map``,
    ``filter``, ``reversed``, ``iter(callable, sentinel)``), which CPython keeps
    in private structs only: the same abstract fields on every version
    (documented at the top of ``_itertools.h``), read from and written into
    each version's restated struct (``_itertools3XX.h``).  ``iter_write``
    fills a fresh iterator and checks every field against the rest of the
    state first.  ``iter_layouts()`` gives ``sizeof`` of each restated struct,
    for the layout probe (``tests/test_iter_layouts.py``).

``range_reduce(it)``
    A range iterator's ``__reduce__`` as four numbers read from its struct,
    ``(start, stop, step, consumed)`` (``consumed`` None on 3.12+), or None
    for anything else: what the C value codec reads for a ``for`` loop over
    a range (its C API's ``range_reduce``), without building the reduce.

``seqiter_reduce(it)``
    A list or tuple iterator's ``__reduce__`` read from its struct,
    ``(seq, index)`` (the very sequence), or None for anything else and for
    an exhausted one (whose reduce makes a fresh empty sequence): what the C
    value codec reads for a ``for`` loop over a list or tuple (its C API's
    ``seqiter_reduce``).

Async generators (``_asyncgen.h``): ``read``/``write`` take them like
generators (same frame, same head).  Beside the frame: ``ag_flags(agen)``
(bit 0 ``ag_closed``, bit 1 ``ag_running_async``, bit 2 hooks taken),
``ag_set_flags(agen, flags)`` (a freshly restored one only) and
``ag_take_hooks(agen, finalizer)`` (what its first operation does before
calling ``firstiter``).  Their awaitables, whose structs are private to
CPython and restated there (checked by a probe at first use):
``aw_types()`` (asend, athrow, coroutine_wrapper, anext_awaitable types),
``aw_read(obj) -> (kind, target, state, payload)`` and
``aw_new(kind, target, state, payload)``.

Constants: ``NULL``, ``TaggedInt``, ``TAGGED_INTS`` (whether this version has
tagged slots), the four states.  3.15 adds ``virtual_iterable(obj) -> bool``:
whether the interpreter can walk ``obj`` by index (its type's
``_tp_iteritem``), which a (sequence, index) stack pair requires.

Which files serve which version: every module includes ``_asyncgen.h``
(3.15's athrow differs, selected there); ``_cpython311.c`` and ``_cpython312.c`` share
``_prev_instr_frames.h`` (same layout and meaning), ``_cpython313.c`` stands
alone (``instr_ptr`` semantics, yield-from state), ``_cpython314.c`` and
``_cpython315.c`` share ``_stackref_frames.h`` (tagged stack references) and
differ only in the frame-state enum.  ``_common.h`` holds what is layout-free.

The same operations are offered to corosnap's other C code (the snapshot
layer's C engine) without Python calls, as the C API declared in ``_capi.h``:
each frame module exports it as the capsule ``_C_API``, re-exported here as
``corosnap.frames._C_API`` (the way ``datetime`` offers ``PyDateTime_CAPI``).
Nothing but struct layouts lives in this package: the codec's and the
snapshot layer's C engines sit beside the layers they speed up.

Importing this package never fails: on an interpreter without a matching
module, :func:`backend` raises ``UnsupportedInterpreter`` with the reason.
"""

from __future__ import annotations

import importlib
import platform
import sys
import sysconfig
from types import ModuleType
from typing import Any

from .._errors import UnsupportedInterpreter

SUPPORTED = ((3, 11), (3, 12), (3, 13), (3, 14), (3, 15))
"""CPython minor versions with a frame module."""

PY_MINOR = sys.version_info[1]

_backend: ModuleType | None = None
_reason: str | None = None


def probe(impl: str, version: tuple[int, int], gil_disabled: object) -> str | None:
    """Why an interpreter cannot be supported, or None if it can.

    ``impl`` is ``platform.python_implementation()``, ``version`` the
    ``(major, minor)`` pair and ``gil_disabled`` the ``Py_GIL_DISABLED`` config
    variable.  Free-threaded builds (3.13+) keep frame slots with different
    reference tags and let other threads touch a generator while we write
    it; corosnap refuses them rather than guess.
    """
    if impl != "CPython":
        return f"corosnap needs CPython; this is {impl}"
    if version not in SUPPORTED:
        supported = ", ".join(f"{a}.{b}" for a, b in SUPPORTED)
        return (
            f"corosnap supports CPython {supported}; this is {version[0]}.{version[1]} "
            "(frame layouts and bytecode differ between minor versions)"
        )
    if gil_disabled:
        return (
            "free-threaded CPython builds (Py_GIL_DISABLED) are not supported: their frames "
            "hold references tagged differently and other threads may run a generator while "
            "it is captured or restored; use the default (GIL) build"
        )
    return None


def _load() -> None:
    global _backend, _reason
    version = sys.version_info[:2]
    _reason = probe(
        platform.python_implementation(), version, sysconfig.get_config_var("Py_GIL_DISABLED")
    )
    if _reason is None:
        try:
            _backend = importlib.import_module(f"{__name__}._cpython{version[0]}{version[1]}")
            globals()["_C_API"] = _backend._C_API  # the capsule the C engines import
        except ImportError as exc:
            _reason = (
                f"the frame extension for CPython {version[0]}.{version[1]} is not built "
                f"({exc}); reinstall corosnap with a C compiler available"
            )


def backend() -> ModuleType:
    """The frame module for this interpreter, or UnsupportedInterpreter."""
    if _backend is None:
        raise UnsupportedInterpreter(_reason or "frame backend unavailable")
    return _backend


_load()

# The frame module's functions and constants, for the Python engine (None on
# an interpreter without a frame module: dumps/loads call backend() first and
# raise UnsupportedInterpreter before anything reads these).
CREATED, SUSPENDED, RUNNING, FINISHED = 0, 1, 2, 3
"""Frame states (the same numbers on every version; _capi.h's CS_*)."""
read: Any = getattr(_backend, "read", None)
write: Any = getattr(_backend, "write", None)
NULL: Any = getattr(_backend, "NULL", None)
TaggedInt: Any = getattr(_backend, "TaggedInt", None)
TAGGED_INTS: bool = bool(getattr(_backend, "TAGGED_INTS", False))
virtual_iterable: Any = getattr(_backend, "virtual_iterable", None)
"""3.15 only (None before): whether the interpreter walks an object by index."""

__all__ = ["CREATED", "FINISHED", "NULL", "PY_MINOR", "RUNNING", "SUPPORTED", "SUSPENDED",
           "TAGGED_INTS", "TaggedInt", "backend", "probe", "read", "virtual_iterable", "write"]
