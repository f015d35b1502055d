"""Frame access: the only layer that knows CPython's struct layouts.

One C module per CPython minor version (``_cpython311``, ``_cpython312``, ...),
each compiled against that interpreter's own internal headers, behind one
small interface:

``read(gen) -> (state, lasti, localsplus, stack, exc_value, globals)``
    ``state`` is one of CREATED, SUSPENDED, RUNNING, FINISHED.  For CREATED and
    SUSPENDED frames, ``lasti`` is the code-unit offset of the ``YIELD_VALUE``
    the frame is suspended on (or that version's created-frame position),
    ``localsplus`` and ``stack`` are lists with :data:`NULL` for empty slots,
    and ``exc_value`` is the exception being handled (or None).

``write(gen, lasti, localsplus, stack, exc_value)``
    Overwrites a freshly created generator's frame.  ``lasti == -1`` keeps it
    in the created state.  The C side re-checks shapes and the opcode at
    ``lasti``; the caller must already have validated everything against the
    bytecode (``corosnap.bytecode``).

``is_flat(list) -> bool``: the codec's fast path (only exact scalars inside).

Importing this package never fails: on an interpreter without a matching
module, :func:`backend` raises ``UnsupportedInterpreter`` with the reason.
"""

from __future__ import annotations

import importlib
import platform
import sys
import sysconfig
from types import ModuleType

from .._errors import UnsupportedInterpreter

SUPPORTED = ((3, 11),)
"""CPython minor versions with a frame module."""

PY_MINOR = sys.version_info[1]

_backend: ModuleType | None = None
_reason: str | None = None


def _load() -> None:
    global _backend, _reason
    impl = platform.python_implementation()
    version = sys.version_info[:2]
    if impl != "CPython":
        _reason = f"corosnap needs CPython; this is {impl}"
    elif version not in SUPPORTED:
        supported = ", ".join(f"{a}.{b}" for a, b in SUPPORTED)
        _reason = (
            f"corosnap supports CPython {supported}; this is {version[0]}.{version[1]} "
            "(frame layouts and bytecode differ between minor versions)"
        )
    elif sysconfig.get_config_var("Py_GIL_DISABLED"):
        _reason = "free-threaded CPython builds are not supported"
    else:
        try:
            _backend = importlib.import_module(f"{__name__}._cpython{version[0]}{version[1]}")
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

__all__ = ["SUPPORTED", "PY_MINOR", "backend"]
