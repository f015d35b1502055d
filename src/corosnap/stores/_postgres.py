"""The PostgreSQL store: one table, one statement per write, on psycopg 3.

What lives here: :class:`PostgresStore` and the mapping of psycopg's errors
onto the store errors.  What must never leak out: a retried write.  A write
is sent once; if its answer is lost, :class:`OutcomeUnknown` says so and the
caller decides (see ``docs/stores.md``).

Theory of operation
-------------------
* **Table.**  ``<schema>.corosnap_records(key text COLLATE "C" PRIMARY KEY,
  version bigint, blob bytea)``.  The "C" collation compares keys byte by
  byte, and UTF-8 byte order is code point order, so ``ORDER BY key`` is the
  order of Python's ``sorted``.  The schema (``schema=``, default ``public``)
  and the table are created when the store opens, if missing, under an
  advisory lock: ``CREATE ... IF NOT EXISTS`` run by several processes at
  once can otherwise fail on a duplicate catalog entry.  A user without the
  right to create them can have them created beforehand (``docs/stores.md``
  shows the statements); the store then only checks the table is usable.
* **Compare-and-set in one statement.**  Each write is a single statement in
  autocommit mode, so it is its own transaction and one round trip:
  ``INSERT ... ON CONFLICT DO NOTHING`` to create (``expected_version=0``),
  ``UPDATE ... WHERE key = %s AND version = %s`` to replace,
  ``INSERT ... ON CONFLICT DO UPDATE SET version = version + 1`` for an
  unconditional put, ``DELETE ... WHERE version = %s``; each ``RETURNING``
  the version.  PostgreSQL's row lock makes the check and the write atomic
  against every other writer.  When a compare-and-set matched no row a second
  query reads the actual version for the :class:`Conflict`; if that shows
  the expected version after all (the record was deleted and re-created in
  between), the statement is simply run again, which is safe because the
  first one changed nothing.
* **Connections** come from a ``psycopg_pool.ConnectionPool``: the store's
  own when given a connection string (closed by :meth:`close`), or the
  caller's (left open).  Before a pooled connection is used the store checks,
  without a round trip, that the server has not closed it meanwhile (an idle
  socket that is readable means the server hung up or is about to); such a
  connection is discarded, so a server restart does not turn the next writes
  into "outcome unknown" for nothing.
* **Errors.**  Getting no connection within ``timeout`` raises
  :class:`StoreUnavailable`.  A connection that breaks during a statement
  raises :class:`OutcomeUnknown` for a write (the statement may have
  committed before the answer was lost) and :class:`StoreUnavailable` for a
  read.  A statement the server refused (lock timeout, cancel) changed
  nothing: :class:`StoreUnavailable`.  Anything else is :class:`StoreError`.
* **Durability.**  ``durable=True`` (default) sets ``synchronous_commit=on``
  on the store's connections, so a put returns only once its commit record
  is flushed to disk, and refuses a server running with ``fsync=off``.
  ``durable=False`` sets ``synchronous_commit=off``: a crash of the server's
  machine may lose the last commits (never half of one).  With a pool the
  caller passes, the store does not change its connections' settings; it
  checks one connection at open and refuses ``durable=True`` if
  ``synchronous_commit`` is ``off`` there.
"""

from __future__ import annotations

import os
import select
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from ._base import (
    BytesLike,
    Conflict,
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

try:
    import psycopg
    import psycopg_pool
    from psycopg import sql
except ImportError as _exc:  # pragma: no cover - exercised only without the extra
    psycopg = None  # type: ignore[assignment]
    _IMPORT_ERROR: ImportError | None = _exc
else:
    _IMPORT_ERROR = None

T = TypeVar("T")

#: The table's name, in the schema given by ``schema=``.
TABLE = "corosnap_records"

#: Keys fetched per query by :meth:`PostgresStore.keys`.
_KEYS_PAGE = 500

#: First half of the advisory lock key taken while creating the schema (the
#: second half is a hash of the schema name).  Any constant works; this one
#: spells "coro".
_DDL_LOCK = 0x636F726F


def _need_psycopg() -> None:
    if _IMPORT_ERROR is not None:
        raise ImportError(
            "PostgresStore needs psycopg 3 and psycopg_pool: pip install 'corosnap[postgres]'"
        ) from _IMPORT_ERROR


def _server_hung_up(conn: Any) -> bool:
    """True if an idle connection's socket is readable: the server closed it or sent an error.

    An idle connection in autocommit mode expects nothing from the server, so
    anything to read means a FATAL message and end-of-file (server shutdown,
    ``pg_terminate_backend``, idle timeout) or an asynchronous notice; either
    way the connection is not worth sending a write on.
    """
    if conn.closed or conn.broken:
        return True
    try:
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _check_idle(conn: Any) -> None:
    """``check=`` callback of the store's own pool: refuse a connection the server closed."""
    if _server_hung_up(conn):
        conn.close()  # so the pool discards it and makes a new one
        raise psycopg.OperationalError("the server closed this idle connection")


class PostgresStore(Store):
    """A store in one PostgreSQL table, ``<schema>.corosnap_records``; safe across machines.

    ``conninfo`` is a libpq connection string or URL
    (``"postgresql://user@host/db"``), or a ``psycopg_pool.ConnectionPool``
    you own (the store uses it and leaves it open).  ``schema`` chooses the
    schema of the table (created if missing).  ``durable`` chooses
    ``synchronous_commit=on`` (default: an acknowledged put survives a crash
    of the server's machine) or ``off``.  ``timeout`` bounds the wait for a
    connection (and the connect itself); ``max_connections`` sizes the
    store's own pool.
    """

    def __init__(
        self,
        conninfo: str | Any,
        *,
        schema: str = "public",
        durable: bool = True,
        timeout: float = 10.0,
        max_connections: int = 10,
    ) -> None:
        _need_psycopg()
        if not isinstance(schema, str) or not schema or "\0" in schema:
            raise ValueError(f"schema must be a non-empty str without NUL, not {schema!r}")
        self.schema = schema
        self.durable = durable
        self.timeout = timeout
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._closed = False
        if isinstance(conninfo, psycopg_pool.ConnectionPool):
            self._pool = conninfo
            self._own_pool = False
            self._where = f"pool {conninfo.name!r}"
        elif isinstance(conninfo, str):
            self._where = _describe(conninfo)
            self._pool = psycopg_pool.ConnectionPool(
                conninfo,
                min_size=1,
                max_size=max(1, max_connections),
                kwargs={"autocommit": True, "connect_timeout": max(1, round(timeout))},
                configure=self._configure,
                check=_check_idle,
                timeout=timeout,
                name=f"corosnap-{self._where}",
                open=False,
            )
            self._own_pool = True
            try:
                self._pool.open(wait=True, timeout=timeout)
            except psycopg_pool.PoolTimeout as exc:
                self._pool.close()
                raise StoreUnavailable(
                    f"{self!r}: could not connect within {timeout} s "
                    f"(is the server running and reachable?): {exc}",
                    operation="open",
                ) from exc
        else:
            raise TypeError(
                "PostgresStore needs a connection string or a psycopg_pool.ConnectionPool, "
                f"not {type(conninfo).__name__}"
            )
        try:
            self._queries = self._run("open", None, False, self._setup)
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"PostgresStore({self._where}, schema={self.schema!r})"

    # -- connections ------------------------------------------------------

    def _configure(self, conn: Any) -> None:
        conn.execute(f"SET synchronous_commit = {'on' if self.durable else 'off'}")

    def _run(
        self,
        operation: str,
        key: str | None,
        write: bool,
        body: Callable[[Any], T],
        expected: int | None = None,
    ) -> T:
        """Run ``body(connection)`` and map failures to the store errors.

        ``write`` says whether ``body`` may change the table: then a connection
        lost during it means the outcome is unknown.
        """
        if os.getpid() != self._pid:
            raise StoreError(
                f"{self!r} was opened in process {self._pid} and cannot be used after fork; "
                "open a new PostgresStore in this process"
            )
        if self._closed:
            raise StoreError(f"{self!r} is closed")
        try:
            conn = self._getconn()
        except psycopg_pool.PoolClosed as exc:
            raise StoreError(f"{self!r}: its connection pool is closed") from exc
        except (psycopg_pool.PoolTimeout, psycopg.OperationalError) as exc:
            raise StoreUnavailable(
                f"{self!r}: no connection to the server within {self.timeout} s during "
                f"{operation}; nothing was sent, retrying is safe: {exc}",
                operation=operation,
                key=key,
            ) from exc
        try:
            result = body(conn)
            if not conn.autocommit:  # a caller's pool may hand out transactional connections
                conn.commit()
            return result
        except psycopg.Error as exc:
            self._rollback(conn)
            raise self._failure(exc, conn, operation, key, write, expected) from exc
        except BaseException:
            self._rollback(conn)
            raise
        finally:
            self._pool.putconn(conn)

    @staticmethod
    def _rollback(conn: Any) -> None:
        if conn.autocommit or conn.broken or conn.closed:
            return
        try:
            conn.rollback()
        except psycopg.Error:
            conn.close()  # the pool discards it

    def _getconn(self) -> Any:
        """A pooled connection the server has not hung up on."""
        for _ in range(self._pool.max_size + 1):
            conn = self._pool.getconn(timeout=self.timeout)
            if not _server_hung_up(conn):
                return conn
            conn.close()  # the pool replaces a closed connection when it comes back
            self._pool.putconn(conn)
        return self._pool.getconn(timeout=self.timeout)

    def _failure(
        self,
        exc: Exception,
        conn: Any,
        operation: str,
        key: str | None,
        write: bool,
        expected: int | None,
    ) -> StoreError:
        lost = conn.broken or conn.closed
        if lost and write:
            assert key is not None
            return OutcomeUnknown(
                f"{self!r}: the connection was lost during {operation} of key {key!r} "
                f"(expected_version={expected}); the server may or may not have committed it, "
                f"and it was not retried: {exc}",
                operation=operation,
                key=key,
                expected_version=expected,
            )
        if lost or isinstance(exc, psycopg.OperationalError):
            what = "the connection was lost" if lost else "the server refused the statement"
            return StoreUnavailable(
                f"{self!r}: {what} during {operation}; nothing was changed: {exc}",
                operation=operation,
                key=key,
            )
        return StoreError(f"{self!r}: {operation} failed: {exc}")

    # -- schema -------------------------------------------------------------

    def _setup(self, conn: Any) -> dict[str, str]:
        encoding = conn.execute("SHOW server_encoding").fetchone()[0]
        if str(encoding).upper() not in ("UTF8", "UTF-8"):
            raise StoreError(
                f"{self!r}: the database's encoding is {encoding}, not UTF8; "
                "keys are Unicode text, so create the database with ENCODING 'UTF8'"
            )
        if self.durable:
            fsync = conn.execute("SHOW fsync").fetchone()[0]
            commit = conn.execute("SHOW synchronous_commit").fetchone()[0]
            if fsync != "on":
                raise StoreError(
                    f"{self!r}: durable=True, but the server runs with fsync={fsync}, so a "
                    "committed put can be lost in a crash of its machine; turn fsync on, or "
                    "open the store with durable=False to accept that"
                )
            if commit == "off":
                raise StoreError(
                    f"{self!r}: durable=True, but the pool's connections have "
                    "synchronous_commit=off, so a put can return before its commit is on disk; "
                    "set synchronous_commit=on for them (or let the store open its own pool "
                    "from a connection string), or pass durable=False"
                )
        table = sql.Identifier(self.schema, TABLE)
        exists = conn.execute(
            "SELECT to_regclass(%s) IS NOT NULL", (table.as_string(conn),)
        ).fetchone()[0]
        if not exists:
            try:
                self._create(conn, table)
            except psycopg.errors.InsufficientPrivilege as exc:
                raise StoreError(
                    f"{self!r}: table {table.as_string(conn)} does not exist and this user may "
                    f"not create it ({exc}); have it created once by a user who may, with: "
                    f"{'; '.join(_ddl_statements(self.schema, table.as_string(conn)))}"
                ) from exc
        collation = conn.execute(
            "SELECT collation_name FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = %s AND column_name = 'key'",
            (self.schema, TABLE),
        ).fetchone()
        if collation is None or collation[0] != "C":
            raise StoreError(
                f"{self!r}: table {table.as_string(conn)} exists but its key column is not "
                f'text COLLATE "C" (found {collation}); keys would not sort by code point'
            )

        def q(text: str) -> str:
            return sql.SQL(text).format(t=table).as_string(conn)

        return {
            "get": q("SELECT blob, version FROM {t} WHERE key = %s"),
            "version": q("SELECT version FROM {t} WHERE key = %s"),
            "upsert": q(
                "INSERT INTO {t} AS r (key, version, blob) VALUES (%s, 1, %b) "
                "ON CONFLICT (key) DO UPDATE SET version = r.version + 1, blob = EXCLUDED.blob "
                "RETURNING version"
            ),
            "create": q(
                "INSERT INTO {t} (key, version, blob) VALUES (%s, 1, %b) "
                "ON CONFLICT (key) DO NOTHING RETURNING version"
            ),
            "replace": q(
                "UPDATE {t} SET version = version + 1, blob = %b "
                "WHERE key = %s AND version = %s RETURNING version"
            ),
            "delete": q("DELETE FROM {t} WHERE key = %s RETURNING version"),
            "delete_if": q("DELETE FROM {t} WHERE key = %s AND version = %s RETURNING version"),
            "keys_from": q(
                f"SELECT key FROM {{t}} WHERE key >= %s ORDER BY key LIMIT {_KEYS_PAGE}"
            ),
            "keys_after": q(
                f"SELECT key FROM {{t}} WHERE key > %s ORDER BY key LIMIT {_KEYS_PAGE}"
            ),
        }

    def _create(self, conn: Any, table: Any) -> None:
        """Create the schema and table, once, even when many processes open stores at once."""
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_DDL_LOCK, self.schema))
            for statement in _ddl_statements(self.schema, table.as_string(conn)):
                conn.execute(statement)

    # -- the interface ------------------------------------------------------

    def _version(self, conn: Any, key: str) -> int:
        row = conn.execute(self._queries["version"], (key,)).fetchone()
        return 0 if row is None else int(row[0])

    def get(self, key: str) -> Record | None:
        key = validate_key(key)

        def read(conn: Any) -> Record | None:
            row = conn.execute(self._queries["get"], (key,), binary=True).fetchone()
            return None if row is None else Record(bytes(row[0]), int(row[1]))

        return self._run("get", key, False, read)

    def put(self, key: str, blob: BytesLike, *, expected_version: int | None = None) -> int:
        key = validate_key(key)
        blob = validate_blob(blob)
        expected = validate_expected_version(expected_version)
        queries = self._queries

        def write(conn: Any) -> int:
            while True:
                if expected is None:
                    row = conn.execute(queries["upsert"], (key, blob)).fetchone()
                    return int(row[0])
                if expected == 0:
                    row = conn.execute(queries["create"], (key, blob)).fetchone()
                else:
                    row = conn.execute(queries["replace"], (blob, key, expected)).fetchone()
                if row is not None:
                    return int(row[0])
                # Nothing was written.  Find out why; if the record is at the
                # expected version after all (deleted and re-created since the
                # statement ran), try again: that is the outcome a
                # compare-and-set run now would have.
                actual = self._version(conn, key)
                if actual != expected:
                    raise Conflict(key, expected, actual)

        return self._run("put", key, True, write, expected)

    def delete(self, key: str, *, expected_version: int | None = None) -> None:
        key = validate_key(key)
        expected = validate_delete_version(expected_version)
        queries = self._queries

        def write(conn: Any) -> None:
            while True:
                if expected is None:
                    if conn.execute(queries["delete"], (key,)).fetchone() is None:
                        raise NotFound(key, repr(self))
                    return
                if conn.execute(queries["delete_if"], (key, expected)).fetchone() is not None:
                    return
                actual = self._version(conn, key)
                if actual != expected:
                    raise Conflict(key, expected, actual)

        self._run("delete", key, True, write, expected)

    def keys(self, prefix: str = "") -> Iterator[str]:
        prefix = validate_prefix(prefix)
        first = self._page("keys_from", prefix)
        return self._iter_keys(prefix, first)

    def _page(self, query: str, start: str) -> list[str]:
        def read(conn: Any) -> list[str]:
            return [row[0] for row in conn.execute(self._queries[query], (start,)).fetchall()]

        return self._run("keys", None, False, read)

    def _iter_keys(self, prefix: str, page: list[str]) -> Iterator[str]:
        # Keys with a common prefix are contiguous in key order, from the first
        # key >= prefix; read pages from there and stop at the first key
        # without the prefix.  The primary key index makes each page a seek.
        while page:
            for key in page:
                if not key.startswith(prefix):
                    return
                yield key
            if len(page) < _KEYS_PAGE:
                return
            page = self._page("keys_after", page[-1])

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._own_pool and os.getpid() == self._pid:
            self._pool.close()


def _describe(conninfo: str) -> str:
    """The connection string without its password, for messages and ``repr``."""
    try:
        params = psycopg.conninfo.conninfo_to_dict(conninfo)
    except psycopg.Error:
        return "<unparsable connection string>"
    host = str(params.get("host", "localhost"))
    port = str(params.get("port", "5432"))
    user = str(params.get("user", ""))
    dbname = str(params.get("dbname", ""))
    return f"{user + '@' if user else ''}{host}:{port}/{dbname}"


def _ddl_statements(schema: str, table: str) -> list[str]:
    """The statements that create the store's schema and table (``table`` is quoted)."""
    quoted = '"' + schema.replace('"', '""') + '"'
    return [
        f"CREATE SCHEMA IF NOT EXISTS {quoted}",
        f'CREATE TABLE IF NOT EXISTS {table} (key text COLLATE "C" PRIMARY KEY, '
        "version bigint NOT NULL CHECK (version > 0), blob bytea NOT NULL)",
    ]
