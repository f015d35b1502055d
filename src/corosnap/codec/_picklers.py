"""The fallback picklers: cloudpickle (default), pickle and dill.

The codec stores natively everything it knows and uses a pickler only for the
rest (objects whose reduction needs something not importable by name, such
as a class or lambda defined at runtime).  A pickled payload records which
pickler made it (one byte), so ``loads`` needs no argument to read it.
"""

from __future__ import annotations

import importlib
import pickle
from types import ModuleType
from typing import Any

from .._errors import SnapshotError
from ._tags import PICKLER_IDS, PICKLERS

_modules: dict[str, ModuleType] = {}


def pickler_module(name: str) -> ModuleType:
    mod = _modules.get(name)
    if mod is None:
        try:
            mod = importlib.import_module(name)
        except ImportError as exc:
            raise SnapshotError(
                f"pickler {name!r} is not installed (pip install corosnap[{name}])"
            ) from exc
        _modules[name] = mod
    return mod


def pickler_id(pickler: Any) -> int:
    """Validate a ``pickler=`` argument: None, "cloudpickle", "pickle" or "dill"."""
    if pickler is None:
        return PICKLER_IDS["cloudpickle"]
    name = pickler if isinstance(pickler, str) else getattr(pickler, "__name__", None)
    if name not in PICKLER_IDS:
        raise ValueError(
            f"pickler must be one of {sorted(PICKLER_IDS)} or None, got {pickler!r}"
        )
    return PICKLER_IDS[name]


def dumps_with(pid: int, obj: Any) -> bytes:
    return bytes([pid]) + pickler_module(PICKLERS[pid]).dumps(obj, protocol=5)


def loads_with(payload: bytes) -> Any:
    if not payload or payload[0] not in PICKLERS:
        raise ValueError("unknown pickler id")
    name = PICKLERS[payload[0]]
    if name == "cloudpickle":  # cloudpickle streams are plain pickle streams
        return pickle.loads(payload[1:])
    return pickler_module(name).loads(payload[1:])
