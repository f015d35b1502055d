"""The SQLite store: one table in a WAL-mode database, the embedded default.

Rules of this file: every write is one ``BEGIN IMMEDIATE`` transaction that
reads the current version, compares it and writes; every read is a single
``SELECT``.  Nothing else touches the table.

Theory of operation
-------------------
* **Connections.**  A sqlite3 connection must not be used by two threads at
  once, so each thread gets its own, opened on first use and remembered in a
  ``threading.local``; when the thread ends, its connection is garbage and
  closes itself.  The store keeps weak references to all of them so
  :meth:`close` can close those still open.  A connection must not cross
  ``fork`` either: the store remembers the process that opened it and refuses
  to run in another one.
* **WAL mode** lets readers run while one writer commits; readers see the
  last committed state of a record, never a half-written one.
* **Compare-and-set.**  ``BEGIN IMMEDIATE`` takes the database's write lock
  up front, so between reading the version and writing the new row no other
  writer (thread or process) can commit.  A deferred ``BEGIN`` would take the
  lock only at the first write and could then fail with ``SQLITE_BUSY``
  without waiting, which is why it is not used.
* **Busy database.**  ``busy_timeout`` makes SQLite itself wait and retry
  while another connection holds the lock.  A few situations return
  ``SQLITE_BUSY`` without consulting it (e.g. while another connection runs
  WAL recovery), so every operation is also retried here, with a growing
  pause, until ``timeout`` seconds have passed; then :class:`StoreError` is
  raised.
* **Durability.**  ``durable=True`` sets ``synchronous=FULL``: each commit
  fsyncs the WAL before returning.  ``durable=False`` sets ``NORMAL``: still
  atomic and consistent after a crash of the process, but the last commits can
  be lost if the machine goes down.

Schema: ``corosnap_records(key TEXT PRIMARY KEY, version INTEGER, blob BLOB)``.
Keys are compared with SQLite's default BINARY collation, i.e. by UTF-8 bytes,
which orders exactly like Python orders ``str`` (by code point).
"""

from __future__ import annotations

import functools
import os
import random
import sqlite3
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

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

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS corosnap_records (
    key     TEXT PRIMARY KEY NOT NULL,
    version INTEGER NOT NULL,
    blob    BLOB NOT NULL
)
"""

#: How many keys :meth:`SQLiteStore.keys` fetches per query.  Paging keeps a
#: long listing from holding a read transaction (and so blocking WAL
#: checkpoints) while the caller works through it.
_KEYS_PAGE = 500

_BUSY_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})


class _Connection(sqlite3.Connection):
    """A plain connection; subclassing only adds weak-reference support (absent in 3.11)."""


# Keyword arguments of sqlite3.connect that leave transactions to us (we
# issue BEGIN IMMEDIATE / COMMIT).  On 3.12+ `autocommit=True` is explicit,
# because the default of `autocommit` is announced to change; `isolation_level`
# is then ignored.
_MANUAL_TRANSACTIONS: dict[str, Any]
if sys.version_info >= (3, 12):
    _MANUAL_TRANSACTIONS = {"autocommit": True}
else:
    _MANUAL_TRANSACTIONS = {"isolation_level": None}


def _is_busy(exc: sqlite3.Error) -> bool:
    """True for "database is locked / busy", the errors worth retrying."""
    # Errors raised by the sqlite3 module itself, not by SQLite, have no code.
    code = getattr(exc, "sqlite_errorcode", None)
    # Extended codes (SQLITE_BUSY_SNAPSHOT, ...) carry the primary code in the low byte.
    return code is not None and code & 0xFF in _BUSY_CODES


class SQLiteStore(Store):
    """A store in one SQLite database file (WAL mode); safe across threads and processes.

    ``timeout`` bounds how long an operation waits for another writer before
    raising :class:`StoreError`.  ``durable`` chooses ``synchronous=FULL``
    (default: an acknowledged write survives a power cut) or ``NORMAL``.  The
    database file is created if needed; it must be on a local file system
    (WAL needs shared memory between the processes using it).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        timeout: float = 10.0,
        durable: bool = True,
    ) -> None:
        path = os.fspath(path)
        if path == ":memory:" or path == "":
            # Each thread's connection would see its own private database.
            raise ValueError("SQLiteStore needs a file path; use MemoryStore for a store in memory")
        self.path = os.path.abspath(path)
        self.timeout = timeout
        self.durable = durable
        self._pid = os.getpid()
        self._local = threading.local()
        self._connections: weakref.WeakSet[_Connection] = weakref.WeakSet()
        self._lock = threading.Lock()  # guards _connections and _closed
        self._closed = False
        # Create the schema and switch to WAL now, so errors (bad path, not a
        # database) surface here rather than at the first operation.
        self._retry(self._setup)

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"

    # -- connections and retries ----------------------------------------

    def _connect(self) -> _Connection:
        conn = sqlite3.connect(
            self.path,
            timeout=self.timeout,  # sets sqlite3_busy_timeout
            factory=_Connection,
            check_same_thread=False,  # only so close() may close it from any thread
            **_MANUAL_TRANSACTIONS,
        )
        try:
            conn.execute(f"PRAGMA synchronous={'FULL' if self.durable else 'NORMAL'}")
        except BaseException:
            conn.close()
            raise
        return conn

    def _conn(self) -> sqlite3.Connection:
        if os.getpid() != self._pid:
            raise StoreError(
                f"{self!r} was opened in process {self._pid} and cannot be used after fork; "
                "open a new SQLiteStore in this process"
            )
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        with self._lock:
            if self._closed:
                raise StoreError(f"{self!r} is closed")
            conn = self._connect()
            self._connections.add(conn)
        self._local.conn = conn
        return conn

    def _retry(self, operation: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``operation`` with this thread's connection, retrying while the database is busy."""
        deadline = time.monotonic() + self.timeout
        pause = 0.001
        while True:
            if self._closed:
                raise StoreError(f"{self!r} is closed")
            try:
                return operation(self._conn())
            except sqlite3.Error as exc:
                if not _is_busy(exc):
                    raise StoreError(f"{self!r}: {exc}") from exc
                if time.monotonic() >= deadline:
                    raise StoreError(
                        f"{self!r}: database stayed locked for more than {self.timeout} s"
                    ) from exc
            # Jitter keeps processes that collided from colliding again in step.
            time.sleep(pause * random.uniform(0.5, 1.5))
            pause = min(pause * 2, 0.05)

    def _setup(self, conn: sqlite3.Connection) -> None:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"{self!r}: could not switch the database to WAL mode (got {mode!r})")
        conn.execute(_SCHEMA)

    def _write(self, conn: sqlite3.Connection, step: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``step`` inside BEGIN IMMEDIATE ... COMMIT; roll back if it raises."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = step(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return result

    @staticmethod
    def _version(conn: sqlite3.Connection, key: str) -> int:
        row = conn.execute("SELECT version FROM corosnap_records WHERE key = ?", (key,)).fetchone()
        return 0 if row is None else int(row[0])

    # -- the interface -------------------------------------------------

    def get(self, key: str) -> Record | None:
        key = validate_key(key)

        def read(conn: sqlite3.Connection) -> Record | None:
            row = conn.execute(
                "SELECT blob, version FROM corosnap_records WHERE key = ?", (key,)
            ).fetchone()
            return None if row is None else Record(bytes(row[0]), int(row[1]))

        return self._retry(read)

    def put(self, key: str, blob: BytesLike, *, expected_version: int | None = None) -> int:
        key = validate_key(key)
        blob = validate_blob(blob)
        expected = validate_expected_version(expected_version)

        def step(conn: sqlite3.Connection) -> int:
            actual = self._version(conn, key)
            if expected is not None and expected != actual:
                raise Conflict(key, expected, actual)
            if actual == 0:
                conn.execute(
                    "INSERT INTO corosnap_records (key, version, blob) VALUES (?, 1, ?)",
                    (key, blob),
                )
            else:
                conn.execute(
                    "UPDATE corosnap_records SET version = ?, blob = ? WHERE key = ?",
                    (actual + 1, blob, key),
                )
            return actual + 1

        return self._retry(lambda conn: self._write(conn, step))

    def delete(self, key: str, *, expected_version: int | None = None) -> None:
        key = validate_key(key)
        expected = validate_delete_version(expected_version)

        def step(conn: sqlite3.Connection) -> None:
            actual = self._version(conn, key)
            if expected is not None and expected != actual:
                raise Conflict(key, expected, actual)
            if actual == 0:
                raise NotFound(key, repr(self))
            conn.execute("DELETE FROM corosnap_records WHERE key = ?", (key,))

        self._retry(lambda conn: self._write(conn, step))

    def keys(self, prefix: str = "") -> Iterator[str]:
        prefix = validate_prefix(prefix)
        first = self._retry(functools.partial(self._page, op=">=", start=prefix))
        return self._iter_keys(prefix, first)

    @staticmethod
    def _page(conn: sqlite3.Connection, op: str, start: str) -> list[str]:
        rows = conn.execute(
            f"SELECT key FROM corosnap_records WHERE key {op} ? ORDER BY key LIMIT {_KEYS_PAGE}",
            (start,),
        ).fetchall()
        return [row[0] for row in rows]

    def _iter_keys(self, prefix: str, page: list[str]) -> Iterator[str]:
        # Keys with a common prefix are contiguous in sorted order and the
        # first one is >= prefix, so scan from there and stop at the first
        # key without the prefix.  The index on `key` makes each page a seek.
        while page:
            for key in page:
                if not key.startswith(prefix):
                    return
                yield key
            if len(page) < _KEYS_PAGE:
                return
            page = self._retry(functools.partial(self._page, op=">", start=page[-1]))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            connections = list(self._connections)
            self._connections.clear()
        if os.getpid() != self._pid:
            return  # never close a connection inherited through fork
        for conn in connections:
            conn.close()
