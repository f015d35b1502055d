"""corosnap: portable snapshots of suspended generators and coroutines.

``dumps`` captures a suspended (or not yet started) generator or ``async def``
coroutine, recursively through ``yield from`` / ``await`` chains, into a compact
msgpack blob; ``loads`` rebuilds a real generator/coroutine from it, here or in
another process that can import the same code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._errors import (
    CodeMismatch,
    CorosnapError,
    CorruptSnapshot,
    LimitExceeded,
    RestoreError,
    SignatureError,
    SnapshotError,
    UnsafeSnapshot,
    UnsupportedInterpreter,
)
from .snapshot import Pickler, Snapshotter, dump, dumps, load, loads

if TYPE_CHECKING:  # for type checkers; at run time __getattr__ imports them on first use
    from .stores._helpers import restore, save

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # save/restore live with the stores; importing them lazily keeps
    # ``import corosnap`` from loading every storage backend.
    if name in ("save", "restore"):
        from .stores import _helpers

        return getattr(_helpers, name)
    if name in ("inspect", "diff"):
        # Inspection (corosnap.inspection) is loaded on first use.
        from . import inspection

        return getattr(inspection, name)
    raise AttributeError(f"module 'corosnap' has no attribute {name!r}")

__all__ = [
    "CodeMismatch",
    "CorosnapError",
    "CorruptSnapshot",
    "LimitExceeded",
    "RestoreError",
    "Pickler",
    "SignatureError",
    "SnapshotError",
    "Snapshotter",
    "UnsafeSnapshot",
    "UnsupportedInterpreter",
    "__version__",
    "diff",
    "dump",
    "dumps",
    "inspect",
    "load",
    "loads",
    "restore",
    "save",
]
