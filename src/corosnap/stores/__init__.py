"""Pluggable storage for snapshots: a small key -> (blob, version) interface.

``Store`` is the interface; ``MemoryStore``, ``DirectoryStore`` and
``SQLiteStore`` implement it, and so do the server-backed ``PostgresStore``,
``RedisStore`` and ``S3Store`` (optional extras ``corosnap[postgres]``,
``corosnap[redis]``, ``corosnap[s3]``; their modules, and the client
libraries, are imported on first use of the name); ``save`` and ``restore`` snapshot into a store
and back in one call.  Every store supports compare-and-set through
``expected_version``, so concurrent workers can detect that someone else
advanced a snapshot first.  ``docs/stores.md`` documents the semantics and how
to write and test a backend of your own (``corosnap.testing.StoreConformance``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._base import (
    MAX_KEY_BYTES,
    BytesLike,
    Conflict,
    DurabilityWarning,
    InvalidKey,
    NotFound,
    OutcomeUnknown,
    Record,
    Store,
    StoreError,
    StoreUnavailable,
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

if TYPE_CHECKING:
    from ._postgres import PostgresStore
    from ._redis import RedisStore
    from ._s3 import S3Store

# The server-backed stores import their client libraries (psycopg, redis-py,
# boto3) at module level; importing them only when the name is used keeps
# `import corosnap.stores` fast and working without the extras.
_LAZY = {"PostgresStore": "._postgres", "RedisStore": "._redis", "S3Store": "._s3"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "MAX_KEY_BYTES",
    "BytesLike",
    "Conflict",
    "DirectoryStore",
    "DurabilityWarning",
    "InvalidKey",
    "MemoryStore",
    "NotFound",
    "OutcomeUnknown",
    "PostgresStore",
    "Record",
    "RedisStore",
    "S3Store",
    "SQLiteStore",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "restore",
    "save",
    "validate_blob",
    "validate_delete_version",
    "validate_expected_version",
    "validate_key",
    "validate_prefix",
]
