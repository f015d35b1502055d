"""Pluggable storage for snapshots: a small key -> (blob, version) interface.

``Store`` is the interface; ``MemoryStore``, ``DirectoryStore`` and
``SQLiteStore`` implement it; ``save`` and ``restore`` snapshot into a store
and back in one call.  Every store supports compare-and-set through
``expected_version``, so concurrent workers can detect that someone else
advanced a snapshot first.  ``docs/stores.md`` documents the semantics and how
to write and test a backend of your own (``corosnap.testing.StoreConformance``).
"""

from __future__ import annotations

from ._base import (
    MAX_KEY_BYTES,
    BytesLike,
    Conflict,
    InvalidKey,
    NotFound,
    Record,
    Store,
    StoreError,
    validate_blob,
    validate_delete_version,
    validate_expected_version,
    validate_key,
    validate_prefix,
)
from ._directory import DirectoryStore
from ._helpers import restore, save
from ._memory import MemoryStore
from ._sqlite import SQLiteStore

__all__ = [
    "MAX_KEY_BYTES",
    "BytesLike",
    "Conflict",
    "DirectoryStore",
    "InvalidKey",
    "MemoryStore",
    "NotFound",
    "Record",
    "SQLiteStore",
    "Store",
    "StoreError",
    "restore",
    "save",
    "validate_blob",
    "validate_delete_version",
    "validate_expected_version",
    "validate_key",
    "validate_prefix",
]
