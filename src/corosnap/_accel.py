"""Which engine runs: the C accelerators, or the pure-Python reference.

Every layer's Python code is its complete reference implementation.  Two
layers have an optional C accelerator beside them, with the same behaviour:
the codec (``codec/_ccodec.c``: list and dict scans, msgpack's ext hook) and
the snapshot layer (``snapshot/_csnapshot.c``: capture and restore of a known
frame).  The frames layer has no Python twin: reading and writing a frame
needs its C module whatever the engine.

``COROSNAP_PUREPYTHON=1`` in the environment, read once at import (as
msgpack's ``MSGPACK_PUREPYTHON``), selects the pure-Python engine
everywhere; the test suite runs both ways.  Otherwise the accelerators must
load: a missing or stale one is an ImportError naming it, never a silent
fallback to the slower path.  On an interpreter corosnap does not support
(no frame module) the engine is moot: ``dumps``/``loads`` raise
UnsupportedInterpreter either way, so nothing is loaded.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

from . import frames

PURE_PYTHON = os.environ.get("COROSNAP_PUREPYTHON", "") not in ("", "0")
"""Whether ``COROSNAP_PUREPYTHON`` asked for the pure-Python engine."""


def _usable() -> bool:
    try:
        frames.backend()
    except Exception:  # noqa: BLE001 - UnsupportedInterpreter: nothing to accelerate
        return False
    return True


ENGINE = "python" if PURE_PYTHON or not _usable() else "c"
"""The engine this process runs: ``"c"`` or ``"python"``."""


def accelerator(name: str) -> ModuleType | None:
    """The C accelerator module ``name``, or None when the Python engine runs."""
    if ENGINE == "python":
        return None
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ImportError(
            f"corosnap's C accelerator {name} cannot be loaded ({exc}): reinstall corosnap "
            "with a C compiler available, or set COROSNAP_PUREPYTHON=1 to run the (slower) "
            "pure-Python engine"
        ) from exc


__all__ = ["ENGINE", "PURE_PYTHON", "accelerator"]
