"""The S3 store: one object per record, compare-and-set by conditional writes.

What lives here: :class:`S3Store`, the mapping of keys to object names, the
object format, and the reading of botocore's outcomes.  What must never leak
out: a write that may have landed twice, or a "conflict" that was our own
earlier attempt.

Theory of operation
-------------------
* **Versions stay integers.**  S3 gives every object an ETag, and a
  conditional write (``If-None-Match: *`` to create, ``If-Match: <etag>`` to
  replace or delete) is atomic.  But an ETag is a hash of the content: two
  writes of the same bytes get the same ETag, so "the ETag I read" does not
  identify "the version I read" (the ABA problem).  The store therefore keeps
  the version number *inside* the object, at the start of its body: two
  objects with different versions always differ, and a write conditioned on
  the ETag of version ``n`` succeeds only while the record is at version
  ``n``.  (After a delete, versions restart at 1 as in every store, so an
  object can again be byte-identical to an older one; the write then really
  is on a record at the version the caller expected, the same ABA case every
  backend has and ``docs/stores.md`` describes.)  The ``Store`` interface is
  unchanged: no opaque version tokens.
* **Object body**: ``CSNS3\\0\\0\\1``, the version (8 bytes, big-endian), the
  key's length (4 bytes) and UTF-8 bytes, then the blob.  The version is also
  in the metadata ``x-amz-meta-corosnap-version``, so ``HEAD`` reads it.
* **A write** needs the current ETag.  The store remembers the ETag of each
  version it read or wrote (a bounded cache, per store object), so the usual
  ``get`` then ``put(expected_version=...)`` costs no extra request; without
  a remembered ETag it first sends ``HEAD``.  A 412 Precondition Failed (or
  409 ConditionalRequestConflict, or 404 for ``If-Match`` on a vanished
  object) means nothing was written: the store reads the current version and
  either raises :class:`Conflict` or, for an unconditional put or a record
  that came back to the expected version, tries again.
* **Object names**: ``<prefix>r/<escaped key>``.  Escaping keeps names safe
  for any S3-compatible server (no ``.`` or ``..`` path segments, no control
  characters) and keeps their byte order the order of the keys, so one
  paginated ``ListObjectsV2`` lists keys in order: bytes 0x00-0x2E become
  ``!`` and two hex digits, 0x7E-0x7F become ``~`` and two hex digits, and
  every other character stays itself.  ``!`` sorts below every character that
  stays and ``~`` above every ASCII one that stays and below all non-ASCII
  ones, and the escapes are fixed-width, so comparing escaped names compares
  the keys.  A name longer than S3's 1024 bytes goes to
  ``<prefix>h/<sha256 of key>`` instead; ``keys()`` reads the few such
  objects' headers to learn their keys and merges them in order.
* **Retries.**  botocore may resend a request.  For reads that is harmless;
  for a write it can turn our own landed write into a 412 on the resend.
  The store listens to botocore's ``needs-retry`` event to learn how each
  attempt of its write ended: if an attempt that may have reached the server
  was followed by another, or the last one ended without an answer (or with
  a 5xx), the outcome is :class:`OutcomeUnknown`; if every attempt failed to
  connect, :class:`StoreUnavailable`.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import heapq
import os
import re
import struct
import threading
from collections.abc import Callable, Iterator
from typing import Any

from ._base import (
    MAX_KEY_BYTES,
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
    import botocore.exceptions as boto_errors
except ImportError as _exc:  # pragma: no cover - exercised only without the extra
    boto_errors = None
    _IMPORT_ERROR: ImportError | None = _exc
else:
    _IMPORT_ERROR = None

MAGIC = b"CSNS3\x00\x00\x01"
_HEADER = struct.Struct(">8sQI")  # magic, version, key length
_META = "corosnap-version"

#: Longest object name S3 accepts, in UTF-8 bytes.
MAX_NAME_BYTES = 1024

#: How many (key -> version, ETag) pairs a store remembers.
ETAG_CACHE_SIZE = 4096

_ESCAPES = {c: f"!{c:02X}" for c in range(0x00, 0x2F)} | {0x7E: "~7E", 0x7F: "~7F"}
_UNESCAPE = re.compile(r"[!~]([0-9A-F]{2})")


def escape_key(key: str) -> str:
    """The object-name form of a key: order-preserving, no dots, no control characters."""
    return key.translate(_ESCAPES)


def unescape_key(name: str) -> str:
    return _UNESCAPE.sub(lambda m: chr(int(m.group(1), 16)), name)


def _need_boto() -> None:
    if _IMPORT_ERROR is not None:
        raise ImportError("S3Store needs boto3: pip install 'corosnap[s3]'") from _IMPORT_ERROR


class _ConditionFailed(Exception):
    """A conditional write was refused by the server: nothing was written."""


class S3Store(Store):
    """A store in an S3 bucket (or any S3-compatible server with conditional writes).

    ``bucket`` must exist.  ``prefix`` places the store's objects under
    ``prefix/`` (a ``/`` is added if missing), so stores can share a bucket.
    ``client`` is a boto3 S3 client (``boto3.client("s3", ...)``); by default
    the store makes one from the environment's configuration.  The store
    never closes a client it was given.  The server must support
    ``If-Match`` and ``If-None-Match`` on ``PutObject`` and ``If-Match`` on
    ``DeleteObject`` (Amazon S3 does); the credentials need ``GetObject``,
    ``PutObject``, ``DeleteObject`` and ``ListBucket``.
    """

    def __init__(self, bucket: str, prefix: str = "", client: Any = None) -> None:
        _need_boto()
        if not isinstance(bucket, str) or not bucket:
            raise ValueError(f"bucket must be a non-empty str, not {bucket!r}")
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, not {type(prefix).__name__}")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        if len(prefix.encode("utf-8")) > 512:
            raise ValueError("prefix must be at most 512 UTF-8 bytes")
        self.bucket = bucket
        self.prefix = prefix
        self._own_client = client is None
        if client is None:
            import boto3

            client = boto3.client("s3")
        self._client = client
        self._lock = threading.Lock()
        self._closed = False
        self._pid = os.getpid()
        # key -> (version, ETag), or (0, None) for a key known to be absent.
        self._etags: collections.OrderedDict[str, tuple[int, str | None]] = (
            collections.OrderedDict()
        )
        self._local = threading.local()
        self._handler_id = f"corosnap-s3store-{id(self)}"
        # botocore keeps one handler per unique_id across all events: one id each.
        for operation in ("PutObject", "DeleteObject"):
            client.meta.events.register(
                f"needs-retry.s3.{operation}",
                self._note_attempt,
                unique_id=f"{self._handler_id}-{operation}",
            )
        try:
            self._request("open", None, lambda: client.head_bucket(Bucket=bucket))
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"S3Store({self.bucket!r}, {self.prefix!r})"

    # -- names and bodies -----------------------------------------------------

    def _name(self, key: str) -> str:
        name = f"{self.prefix}r/{escape_key(key)}"
        if len(name.encode("utf-8")) <= MAX_NAME_BYTES:
            return name
        return f"{self.prefix}h/{hashlib.sha256(key.encode('utf-8')).hexdigest()}"

    @staticmethod
    def _pack(version: int, key: str, blob: bytes) -> bytes:
        raw = key.encode("utf-8")
        return _HEADER.pack(MAGIC, version, len(raw)) + raw + blob

    def _unpack(self, name: str, body: bytes, key: str | None) -> tuple[int, str, bytes]:
        """(version, key, blob) of an object body; StoreError if it is not one of ours."""
        if len(body) < _HEADER.size:
            raise StoreError(
                f"{self!r}: object {name!r} is not a corosnap record "
                f"({len(body)} bytes, shorter than the header)"
            )
        magic, version, size = _HEADER.unpack_from(body)
        end = _HEADER.size + size
        if magic != MAGIC or version < 1 or size > MAX_KEY_BYTES or len(body) < end:
            raise StoreError(f"{self!r}: object {name!r} is not a corosnap record")
        try:
            stored = body[_HEADER.size : end].decode("utf-8")
        except UnicodeDecodeError:
            raise StoreError(f"{self!r}: object {name!r} has a damaged key") from None
        if key is not None and stored != key:
            raise StoreError(f"{self!r}: object {name!r} holds key {stored!r}, not {key!r}")
        return version, stored, body[end:]

    # -- the ETag cache -------------------------------------------------------

    def _remember(self, key: str, version: int, etag: str | None) -> None:
        with self._lock:
            self._etags[key] = (version, etag)
            self._etags.move_to_end(key)
            while len(self._etags) > ETAG_CACHE_SIZE:
                self._etags.popitem(last=False)

    def _forget(self, key: str) -> None:
        with self._lock:
            self._etags.pop(key, None)

    def _cached(self, key: str, expected: int | None) -> tuple[int, str | None] | None:
        with self._lock:
            state = self._etags.get(key)
        if state is None or (expected is not None and state[0] != expected):
            return None
        return state

    # -- requests -------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"{self!r} is closed")
        if os.getpid() != self._pid:
            # botocore's connection pool would share sockets with the parent.
            raise StoreError(
                f"{self!r} was opened in process {self._pid} and cannot be used after fork; "
                "open a new S3Store in this process"
            )

    def _note_attempt(self, caught_exception: BaseException | None = None, **_: Any) -> None:
        """botocore's ``needs-retry`` handler: record whether an attempt may have reached S3."""
        log = getattr(self._local, "log", None)
        if log is not None:
            log.append(not isinstance(caught_exception, _CONNECT_ERRORS))
        return None

    def _request(self, operation: str, key: str | None, call: Callable[[], Any]) -> Any:
        """A read: connection failures are StoreUnavailable, a 404 returns None."""
        self._check_open()
        try:
            return call()
        except boto_errors.ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            code = exc.response.get("Error", {}).get("Code")
            if status == 404 and operation != "open":
                return None
            if operation == "open":
                raise StoreError(
                    f"{self!r}: bucket {self.bucket!r} cannot be used ({code}, HTTP {status}); "
                    "it must exist, and the credentials need access to it"
                ) from exc
            if status is not None and status >= 500:
                raise StoreUnavailable(
                    f"{self!r}: S3 answered {code} (HTTP {status}) to {operation}; "
                    "nothing was changed",
                    operation=operation,
                    key=key,
                ) from exc
            raise StoreError(f"{self!r}: {operation} failed: {code} (HTTP {status})") from exc
        except (boto_errors.ConnectionError, boto_errors.HTTPClientError) as exc:
            raise StoreUnavailable(
                f"{self!r}: could not reach S3 during {operation}; nothing was changed: {exc}",
                operation=operation,
                key=key,
            ) from exc

    def _write(
        self, operation: str, key: str, expected: int | None, call: Callable[[], Any]
    ) -> Any:
        """A conditional write, sent by botocore with whatever retries its client allows.

        Returns the response, raises :class:`_ConditionFailed` when S3 refused
        the condition (nothing written), and :class:`OutcomeUnknown` or
        :class:`StoreUnavailable` as the module docstring explains.
        """
        self._check_open()
        log: list[bool] = []
        self._local.log = log
        try:
            return call()
        except boto_errors.ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            code = exc.response.get("Error", {}).get("Code")
            earlier = any(log[:-1])  # an attempt before the last may have landed
            if status is not None and status >= 500:
                raise self._unknown(operation, key, expected, f"{code} (HTTP {status})") from exc
            if earlier:
                raise self._unknown(
                    operation, key, expected, f"{code} after a resent request"
                ) from exc
            if status in (409, 412) or (status == 404 and code in ("NoSuchKey", "404")):
                raise _ConditionFailed() from exc
            raise StoreError(
                f"{self!r}: {operation} of key {key!r} failed: {code} (HTTP {status})"
            ) from exc
        except (boto_errors.ConnectionError, boto_errors.HTTPClientError) as exc:
            if any(log) or not isinstance(exc, _CONNECT_ERRORS):
                raise self._unknown(operation, key, expected, str(exc)) from exc
            raise StoreUnavailable(
                f"{self!r}: could not connect to S3 during {operation} of key {key!r}; "
                f"nothing was sent, retrying is safe: {exc}",
                operation=operation,
                key=key,
            ) from exc
        finally:
            self._local.log = None

    def _unknown(self, operation: str, key: str, expected: int | None, why: str) -> OutcomeUnknown:
        self._forget(key)
        return OutcomeUnknown(
            f"{self!r}: {operation} of key {key!r} (expected_version={expected}) got no usable "
            f"answer ({why}); S3 may or may not have applied it, and it was not retried",
            operation=operation,
            key=key,
            expected_version=expected,
        )

    def _head(self, key: str, operation: str) -> tuple[int, str | None]:
        """(version, ETag) of the record now, (0, None) if absent; remembered for the next write."""
        name = self._name(key)
        response = self._request(
            operation, key, lambda: self._client.head_object(Bucket=self.bucket, Key=name)
        )
        if response is None:
            self._remember(key, 0, None)
            return (0, None)
        raw = response.get("Metadata", {}).get(_META)
        try:
            version = int(raw)
        except (TypeError, ValueError):
            raise StoreError(f"{self!r}: object {name!r} has no valid {_META} metadata") from None
        etag: str = response["ETag"]
        self._remember(key, version, etag)
        return (version, etag)

    # -- the interface --------------------------------------------------------

    def get(self, key: str) -> Record | None:
        key = validate_key(key)
        name = self._name(key)
        response = self._request(
            "get", key, lambda: self._client.get_object(Bucket=self.bucket, Key=name)
        )
        if response is None:
            self._remember(key, 0, None)
            return None
        body = self._request("get", key, lambda: response["Body"].read())
        version, _, blob = self._unpack(name, body, key)
        self._remember(key, version, response["ETag"])
        return Record(blob, version)

    def put(self, key: str, blob: BytesLike, *, expected_version: int | None = None) -> int:
        key = validate_key(key)
        blob = validate_blob(blob)
        expected = validate_expected_version(expected_version)
        name = self._name(key)
        while True:
            state: tuple[int, str | None] = (0, None)
            if expected != 0:
                state = self._cached(key, expected) or self._head(key, "put")
                if expected is not None and state[0] != expected:
                    raise Conflict(key, expected, state[0])
            version = state[0] + 1
            condition = {"IfMatch": state[1]} if state[1] else {"IfNoneMatch": "*"}
            body = self._pack(version, key, blob)
            try:
                response = self._write(
                    "put",
                    key,
                    expected,
                    functools.partial(
                        self._client.put_object,
                        Bucket=self.bucket,
                        Key=name,
                        Body=body,
                        Metadata={_META: str(version)},
                        **condition,
                    ),
                )
            except _ConditionFailed:
                # Someone else wrote (or deleted) first, or the remembered ETag
                # was stale.  Nothing was written: look again.
                self._forget(key)
                if expected == 0:
                    actual = self._head(key, "put")[0]
                    if actual != 0:
                        raise Conflict(key, 0, actual) from None
                continue
            self._remember(key, version, response["ETag"])
            return version

    def delete(self, key: str, *, expected_version: int | None = None) -> None:
        key = validate_key(key)
        expected = validate_delete_version(expected_version)
        name = self._name(key)
        while True:
            actual, etag = self._cached(key, expected) or self._head(key, "delete")
            if expected is not None and actual != expected:
                raise Conflict(key, expected, actual)
            if etag is None:
                raise NotFound(key, repr(self))
            try:
                self._write(
                    "delete",
                    key,
                    expected,
                    functools.partial(
                        self._client.delete_object, Bucket=self.bucket, Key=name, IfMatch=etag
                    ),
                )
            except _ConditionFailed:
                self._forget(key)
                continue
            self._remember(key, 0, None)
            return

    def keys(self, prefix: str = "") -> Iterator[str]:
        prefix = validate_prefix(prefix)
        self._check_open()
        start = f"{self.prefix}r/{escape_key(prefix)}"
        plain: Iterator[str] = iter(())
        if len(start.encode("utf-8")) <= MAX_NAME_BYTES:
            first = self._list(start, None)
            plain = self._iter_plain(start, first)
        hashed = self._hashed_keys(prefix)
        return heapq.merge(plain, iter(hashed)) if hashed else plain

    def _list(self, prefix: str, after: str | None) -> tuple[list[str], bool]:
        """One page of object names under ``prefix`` after ``after``, and whether more follow."""
        kwargs = {"Bucket": self.bucket, "Prefix": prefix, "MaxKeys": 1000}
        if after is not None:
            kwargs["StartAfter"] = after
        response = self._request("keys", None, lambda: self._client.list_objects_v2(**kwargs))
        if response is None:
            raise StoreError(f"{self!r}: bucket {self.bucket!r} no longer exists")
        names = [entry["Key"] for entry in response.get("Contents", ())]
        return names, bool(response.get("IsTruncated")) and bool(names)

    def _names(self, prefix: str, first: tuple[list[str], bool]) -> Iterator[str]:
        page, more = first
        while True:
            yield from page
            if not more:
                return
            page, more = self._list(prefix, page[-1])

    def _iter_plain(self, start: str, first: tuple[list[str], bool]) -> Iterator[str]:
        strip = len(self.prefix) + 2  # "<prefix>r/"
        for name in self._names(start, first):
            yield unescape_key(name[strip:])

    def _hashed_keys(self, prefix: str) -> list[str]:
        """The keys stored under hashed names that start with ``prefix``, sorted."""
        keys = []
        area = f"{self.prefix}h/"
        names = list(self._names(area, self._list(area, None)))
        for name in names:
            response = self._request(
                "keys",
                None,
                functools.partial(
                    self._client.get_object,
                    Bucket=self.bucket,
                    Key=name,
                    Range=f"bytes=0-{_HEADER.size + MAX_KEY_BYTES}",
                ),
            )
            if response is None:
                continue  # deleted since it was listed
            head = self._request("keys", None, response["Body"].read)
            magic, _, size = _HEADER.unpack_from(head) if len(head) >= _HEADER.size else (b"", 0, 0)
            if magic != MAGIC or len(head) < _HEADER.size + size:
                raise StoreError(f"{self!r}: object {name!r} is not a corosnap record")
            key = head[_HEADER.size : _HEADER.size + size].decode("utf-8")
            if key.startswith(prefix):
                keys.append(key)
        return sorted(keys)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for operation in ("PutObject", "DeleteObject"):
            self._client.meta.events.unregister(
                f"needs-retry.s3.{operation}", unique_id=f"{self._handler_id}-{operation}"
            )
        if self._own_client:
            self._client.close()


_CONNECT_ERRORS: tuple[type[BaseException], ...] = ()
if boto_errors is not None:
    # Failures to open a connection: the request was not sent.
    _CONNECT_ERRORS = (
        boto_errors.EndpointConnectionError,
        boto_errors.ConnectTimeoutError,
        boto_errors.ProxyConnectionError,
    )
