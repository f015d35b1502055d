"""The in-memory store: a dict behind one lock.

For tests, for single-process programs that do not need a snapshot to outlive
the process, and as the reference the other backends are compared with.  One
lock guards everything: every operation is a few dict accesses, so finer locks
would cost more than they save.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from ._base import (
    BytesLike,
    Conflict,
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


class MemoryStore(Store):
    """A thread-safe store that keeps records in a dict; nothing survives the process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[str, Record] = {}
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._records)} records"
        return f"MemoryStore(<{state}>)"

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"{self!r} is closed")

    def get(self, key: str) -> Record | None:
        key = validate_key(key)
        with self._lock:
            self._check_open()
            return self._records.get(key)

    def put(self, key: str, blob: BytesLike, *, expected_version: int | None = None) -> int:
        key = validate_key(key)
        blob = validate_blob(blob)
        expected = validate_expected_version(expected_version)
        with self._lock:
            self._check_open()
            current = self._records.get(key)
            actual = current.version if current is not None else 0
            if expected is not None and expected != actual:
                raise Conflict(key, expected, actual)
            self._records[key] = Record(blob, actual + 1)
            return actual + 1

    def delete(self, key: str, *, expected_version: int | None = None) -> None:
        key = validate_key(key)
        expected = validate_delete_version(expected_version)
        with self._lock:
            self._check_open()
            current = self._records.get(key)
            actual = current.version if current is not None else 0
            if expected is not None and expected != actual:
                raise Conflict(key, expected, actual)
            if current is None:
                raise NotFound(key, repr(self))
            del self._records[key]

    def keys(self, prefix: str = "") -> Iterator[str]:
        prefix = validate_prefix(prefix)
        with self._lock:
            self._check_open()
            # Copy under the lock: the caller iterates at its own pace while
            # other threads keep writing.
            found = sorted(k for k in self._records if k.startswith(prefix))
        return iter(found)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._records.clear()
