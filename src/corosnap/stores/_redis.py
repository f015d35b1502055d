"""The Redis store: a hash per record and a sorted set of keys, changed only by Lua scripts.

What lives here: :class:`RedisStore`, its two scripts, and the check that the
server keeps writes as durably as the caller asked.  What must never leak
out: a resent command.  redis-py can retry a command on a connection error;
this store sends its commands itself on a connection from the client's pool,
exactly once, so a write whose answer is lost is reported as
:class:`OutcomeUnknown` and never run twice.

Theory of operation
-------------------
* **Layout**, under a namespace ``ns`` (``namespace=``, default
  ``"corosnap"``): each record is a hash ``ns:r:<key>`` with fields ``v`` (the
  version, decimal) and ``b`` (the blob); the sorted set ``ns:i`` holds every
  key with score 0, so ``ZRANGEBYLEX`` lists keys in byte order, which for
  UTF-8 is code point order.  Namespaces contain no ``:``, so two namespaces
  never share a Redis key.
* **Compare-and-set** is a Lua script: Redis runs a script to completion
  before any other command, so reading the version, comparing it, writing the
  hash and the index happen as one step, and the append-only file records the
  script's effects as one ``MULTI``/``EXEC`` block, replayed all or nothing.
  Scripts are sent by ``EVALSHA``; a server that does not know the script
  (restarted, ``SCRIPT FLUSH``) answers ``NOSCRIPT`` without running
  anything, and the script is then sent whole with ``EVAL``.
* **One attempt per command.**  A connection that cannot be made raises
  :class:`StoreUnavailable` (nothing was sent).  Once a write has been sent,
  a broken connection or a timeout raises :class:`OutcomeUnknown`; for a read,
  :class:`StoreUnavailable`.
* **Durability** depends on the server, so the store checks it when it opens
  (``CONFIG GET``): ``durability="fsync"`` (default) needs ``appendonly yes``
  and ``appendfsync always``, where Redis writes and fsyncs the append-only
  file before it sends the replies; ``"everysec"`` accepts ``appendfsync
  everysec`` (up to about two seconds of acknowledged writes can be lost);
  ``"none"`` accepts anything.  Any level but ``"none"`` also refuses an
  ``allkeys-*`` eviction policy, which deletes records when memory runs out.
  A server that refuses ``CONFIG`` (managed services often do) cannot be
  checked: the store then emits a :class:`DurabilityWarning`, unless ``INFO``
  shows the append-only file is off, which is refused.
"""

from __future__ import annotations

import hashlib
import re
import threading
import warnings
from collections.abc import Iterator
from typing import Any, Literal

from ._base import (
    BytesLike,
    Conflict,
    DurabilityWarning,
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
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry
except ImportError as _exc:  # pragma: no cover - exercised only without the extra
    redis = None  # type: ignore[assignment]
    _IMPORT_ERROR: ImportError | None = _exc
else:
    _IMPORT_ERROR = None

Durability = Literal["fsync", "everysec", "none"]
_DURABILITIES = ("fsync", "everysec", "none")

#: Keys fetched per ``ZRANGEBYLEX`` by :meth:`RedisStore.keys`.
_KEYS_PAGE = 500

_NAMESPACE = re.compile(r"[A-Za-z0-9_./\-]{1,200}")

# KEYS[1]: the record's hash, KEYS[2]: the key index.
# ARGV[1]: expected version ("" for none), ARGV[2]: blob, ARGV[3]: the store key.
# Returns {1, new version} or {0, actual version}.  Versions are written with
# %d: Lua 5.1 prints numbers of 1e14 and more in exponent form otherwise.
_PUT = b"""
local current = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if ARGV[1] ~= '' and tonumber(ARGV[1]) ~= current then
    return {0, current}
end
local new = current + 1
redis.call('HSET', KEYS[1], 'v', string.format('%d', new), 'b', ARGV[2])
if current == 0 then
    redis.call('ZADD', KEYS[2], 0, ARGV[3])
end
return {1, new}
"""

# Same KEYS; ARGV[1]: expected version ("" for none), ARGV[2]: the store key.
# Returns {1, deleted version}, {0, actual version} on a mismatch, {2, 0} if missing.
_DELETE = b"""
local current = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if ARGV[1] ~= '' and tonumber(ARGV[1]) ~= current then
    return {0, current}
end
if current == 0 then
    return {2, 0}
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[2])
return {1, current}
"""

_SCRIPTS = {
    name: (source, hashlib.sha1(source).hexdigest().encode())
    for name, source in (("put", _PUT), ("delete", _DELETE))
}

_CONNECTION_ERRORS: tuple[type[BaseException], ...] = ()
if redis is not None:
    _CONNECTION_ERRORS = (redis.ConnectionError, redis.TimeoutError, OSError)


def _need_redis() -> None:
    if _IMPORT_ERROR is not None:
        raise ImportError(
            "RedisStore needs redis-py: pip install 'corosnap[redis]'"
        ) from _IMPORT_ERROR


class RedisStore(Store):
    """A store in a Redis server; safe across threads, processes and machines.

    ``client`` is a ``redis://`` / ``rediss://`` / ``unix://`` URL (the store
    makes and closes its own client) or a ``redis.Redis`` you own (the store
    uses its connection pool and leaves it open; its retry settings do not
    matter, the store never retries a write).  ``namespace`` separates stores
    sharing one database.  ``durability`` is what the server must guarantee
    (checked at open, see the module docs and ``docs/stores.md``).
    ``timeout`` bounds connecting and each command when the store makes the
    client.  Redis Cluster is not supported (a store's keys would need a hash
    tag to live on one shard).
    """

    def __init__(
        self,
        client: str | Any,
        *,
        namespace: str = "corosnap",
        durability: Durability = "fsync",
        timeout: float = 10.0,
    ) -> None:
        _need_redis()
        if not isinstance(namespace, str) or not _NAMESPACE.fullmatch(namespace):
            raise ValueError(
                "namespace must be 1 to 200 characters among A-Z a-z 0-9 _ . / - "
                f"(no ':'), not {namespace!r}"
            )
        if durability not in _DURABILITIES:
            raise ValueError(f"durability must be one of {_DURABILITIES}, not {durability!r}")
        self.namespace = namespace
        self.durability = durability
        self._lock = threading.Lock()
        self._closed = False
        if isinstance(client, str):
            self._client = redis.Redis.from_url(
                client,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                retry=Retry(NoBackoff(), 0),
            )
            self._own_client = True
        elif isinstance(client, redis.Redis):
            self._client = client
            self._own_client = False
        else:
            raise TypeError(
                "RedisStore needs a redis:// URL or a redis.Redis client, "
                f"not {type(client).__name__}"
            )
        kwargs = self._client.connection_pool.connection_kwargs
        where = (
            kwargs.get("path") or f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"
        )
        self._where = f"{where}/{kwargs.get('db', 0)}"
        self._index = f"{namespace}:i".encode()
        self._record_prefix = f"{namespace}:r:".encode()
        try:
            self._check_durability()
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"RedisStore({self._where!r}, namespace={self.namespace!r})"

    # -- talking to the server -----------------------------------------------

    def _call(
        self,
        operation: str,
        key: str | None,
        write: bool,
        *args: Any,
        expected: int | None = None,
    ) -> Any:
        """Send one command on a pooled connection, once, and return its raw reply."""
        if self._closed:
            raise StoreError(f"{self!r} is closed")
        pool = self._client.connection_pool
        try:
            conn = pool.get_connection()
        except _CONNECTION_ERRORS as exc:
            raise StoreUnavailable(
                f"{self!r}: could not connect during {operation}; nothing was sent, "
                f"retrying is safe: {exc}",
                operation=operation,
                key=key,
            ) from exc
        try:
            conn.send_command(*args)
            return conn.read_response(disable_decoding=True)
        except redis.BusyLoadingError as exc:
            # The server answered "still loading its data": it ran nothing.
            raise StoreUnavailable(
                f"{self!r}: the server is loading its data set; nothing was changed: {exc}",
                operation=operation,
                key=key,
            ) from exc
        except redis.ResponseError:
            raise  # the server answered: the connection is fine
        except _CONNECTION_ERRORS as exc:
            conn.disconnect()
            if write:
                assert key is not None
                raise OutcomeUnknown(
                    f"{self!r}: the connection was lost or timed out during {operation} of key "
                    f"{key!r} (expected_version={expected}); Redis may or may not have applied "
                    f"it, and it was not retried: {exc}",
                    operation=operation,
                    key=key,
                    expected_version=expected,
                ) from exc
            raise StoreUnavailable(
                f"{self!r}: the connection was lost during {operation}; nothing was changed: {exc}",
                operation=operation,
                key=key,
            ) from exc
        except BaseException:
            conn.disconnect()  # e.g. KeyboardInterrupt mid-reply: the stream is out of step
            raise
        finally:
            pool.release(conn)

    def _script(
        self, name: str, key: str, keys: list[bytes], args: list[Any], expected: int | None
    ) -> Any:
        source, sha = _SCRIPTS[name]
        try:
            return self._call(
                name, key, True, "EVALSHA", sha, len(keys), *keys, *args, expected=expected
            )
        except redis.exceptions.NoScriptError:
            pass
        except redis.ResponseError as exc:
            raise StoreError(f"{self!r}: {name} of key {key!r} failed: {exc}") from exc
        # The server did not know the script and ran nothing: send it whole.
        try:
            return self._call(
                name, key, True, "EVAL", source, len(keys), *keys, *args, expected=expected
            )
        except redis.ResponseError as exc:
            raise StoreError(f"{self!r}: {name} of key {key!r} failed: {exc}") from exc

    def _read(self, operation: str, key: str | None, *args: Any) -> Any:
        try:
            return self._call(operation, key, False, *args)
        except redis.ResponseError as exc:
            raise StoreError(f"{self!r}: {operation} failed: {exc}") from exc

    # -- durability ------------------------------------------------------------

    def _config(self, name: str) -> str:
        reply = self._call("open", None, False, "CONFIG", "GET", name)
        if isinstance(reply, dict):  # RESP3
            values = list(reply.values())
        else:
            values = list(reply)[1::2]
        if not values:
            raise StoreError(f"{self!r}: the server has no {name!r} setting")
        value = values[0]
        return value.decode() if isinstance(value, bytes) else str(value)

    def _check_durability(self) -> None:
        try:
            appendonly = self._config("appendonly")
            appendfsync = self._config("appendfsync")
            policy = self._config("maxmemory-policy")
        except redis.ResponseError as exc:
            self._durability_unknown(exc)
            return
        self.server_settings = {
            "appendonly": appendonly,
            "appendfsync": appendfsync,
            "maxmemory-policy": policy,
        }
        if self.durability == "none":
            return
        fix = (
            "CONFIG SET appendonly yes, CONFIG SET appendfsync always (and CONFIG REWRITE to keep "
            "it), or open the store with durability='everysec' or 'none' to accept less"
            if self.durability == "fsync"
            else "CONFIG SET appendonly yes and appendfsync everysec or always, or open the "
            "store with durability='none' to accept less"
        )
        if appendonly != "yes":
            raise StoreError(
                f"{self!r}: durability={self.durability!r} needs the append-only file, but the "
                f"server has appendonly {appendonly}: acknowledged puts would live in memory (and "
                f"in occasional snapshots) and be lost when Redis stops; {fix}"
            )
        if self.durability == "fsync" and appendfsync != "always":
            raise StoreError(
                f"{self!r}: durability='fsync' needs appendfsync always, but the server has "
                f"appendfsync {appendfsync}: it replies before the write is on disk, so a power "
                f"cut or OS crash can lose acknowledged puts; {fix}"
            )
        if self.durability == "everysec" and appendfsync not in ("always", "everysec"):
            raise StoreError(
                f"{self!r}: durability='everysec' needs appendfsync everysec or always, but the "
                f"server has appendfsync {appendfsync}; {fix}"
            )
        if policy.startswith("allkeys-"):
            raise StoreError(
                f"{self!r}: the server's maxmemory-policy is {policy}, which deletes any key "
                "when memory runs out, records included; use noeviction or a volatile-* policy, "
                "or open the store with durability='none'"
            )

    def _durability_unknown(self, exc: Exception) -> None:
        self.server_settings = {}
        if self.durability == "none":
            return
        info = self._read("open", None, "INFO", "persistence")
        text = info.decode(errors="replace") if isinstance(info, bytes) else str(info)
        if "aof_enabled:0" in text:
            raise StoreError(
                f"{self!r}: durability={self.durability!r} needs the append-only file, but the "
                "server reports aof_enabled:0; enable appendonly, or open the store with "
                "durability='none' to accept that acknowledged puts can be lost"
            )
        warnings.warn(
            f"{self!r}: cannot check that the server provides durability="
            f"{self.durability!r}: CONFIG GET was refused ({exc}); the append-only file is on, "
            "but appendfsync and the eviction policy are unknown. Make sure the server runs "
            "with appendfsync always (for 'fsync') and a non-evicting maxmemory-policy.",
            DurabilityWarning,
            stacklevel=3,
        )

    # -- the interface ---------------------------------------------------------

    def _record(self, key: str) -> bytes:
        return self._record_prefix + key.encode("utf-8")

    def get(self, key: str) -> Record | None:
        key = validate_key(key)
        reply = self._read("get", key, "HMGET", self._record(key), "v", "b")
        version, blob = reply
        if version is None:
            return None
        if blob is None:
            raise StoreError(f"{self!r}: record {key!r} has a version but no blob")
        return Record(bytes(blob), int(version))

    def put(self, key: str, blob: BytesLike, *, expected_version: int | None = None) -> int:
        key = validate_key(key)
        blob = validate_blob(blob)
        expected = validate_expected_version(expected_version)
        done, version = self._script(
            "put",
            key,
            [self._record(key), self._index],
            [b"" if expected is None else str(expected).encode(), blob, key.encode("utf-8")],
            expected,
        )
        if done != 1:
            assert expected is not None
            raise Conflict(key, expected, int(version))
        return int(version)

    def delete(self, key: str, *, expected_version: int | None = None) -> None:
        key = validate_key(key)
        expected = validate_delete_version(expected_version)
        done, version = self._script(
            "delete",
            key,
            [self._record(key), self._index],
            [b"" if expected is None else str(expected).encode(), key.encode("utf-8")],
            expected,
        )
        if done == 0:
            assert expected is not None
            raise Conflict(key, expected, int(version))
        if done == 2:
            raise NotFound(key, repr(self))

    def keys(self, prefix: str = "") -> Iterator[str]:
        prefix = validate_prefix(prefix)
        raw = prefix.encode("utf-8")
        # Every key starting with the prefix sorts at or after it and before
        # prefix + 0xFF, a byte that never occurs in UTF-8.
        low = b"[" + raw if raw else b"-"
        high = b"(" + raw + b"\xff" if raw else b"+"
        first = self._page(low, high)
        return self._iter_keys(first, high)

    def _page(self, low: bytes, high: bytes) -> list[bytes]:
        reply = self._read(
            "keys", None, "ZRANGEBYLEX", self._index, low, high, "LIMIT", 0, _KEYS_PAGE
        )
        return list(reply)

    def _iter_keys(self, page: list[bytes], high: bytes) -> Iterator[str]:
        while page:
            for raw in page:
                yield raw.decode("utf-8")
            if len(page) < _KEYS_PAGE:
                return
            page = self._page(b"(" + page[-1], high)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._own_client:
            self._client.close()
