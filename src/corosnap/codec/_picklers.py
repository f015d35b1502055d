"""The fallback picklers: cloudpickle (default), pickle and dill.

The codec stores natively everything it knows and uses a pickler only for the
rest (objects whose reduction needs something not importable by name, such
as a class or lambda defined at runtime).  A pickled payload records which
pickler made it (one byte), so ``loads`` needs no argument to read it.
"""

from __future__ import annotations

import copyreg
import importlib
import io
import pickle
from collections import ChainMap
from collections.abc import Mapping
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


_pickler_classes: dict[str, type] = {}


def _pickler_class(name: str) -> type:
    """The pickler's Pickler with builtin iterators (itertools.count, map,
    ...) reduced through corosnap's own state access: itertools' reduce warns
    on 3.12 and 3.13 and is gone from 3.14.  A subclass with a class-level
    ``dispatch_table``, which every pickler reads (the C pickler only when it
    is created, so an instance attribute would not reach CloudPickler)."""
    cls = _pickler_classes.get(name)
    if cls is None:
        from ._iterators import PICKLE_REDUCERS

        base = pickler_module(name).Pickler
        inherited = getattr(base, "dispatch_table", None)
        if not isinstance(inherited, Mapping):  # the C pickler's member descriptor
            inherited = copyreg.dispatch_table
        table: Any = ChainMap(PICKLE_REDUCERS, inherited)  # type: ignore[arg-type]
        cls = type(f"Corosnap{base.__name__}", (base,), {"dispatch_table": table})
        _pickler_classes[name] = cls
    return cls


def dumps_with(pid: int, obj: Any) -> bytes:
    buf = io.BytesIO()
    _pickler_class(PICKLERS[pid])(buf, protocol=5).dump(obj)
    return bytes([pid]) + buf.getvalue()


def loads_with(payload: bytes) -> Any:
    if not payload or payload[0] not in PICKLERS:
        raise ValueError("unknown pickler id")
    name = PICKLERS[payload[0]]
    if name == "cloudpickle":  # cloudpickle streams are plain pickle streams
        return pickle.loads(payload[1:])
    return pickler_module(name).loads(payload[1:])
