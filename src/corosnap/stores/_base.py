"""The storage interface every backend implements, and the rules it enforces.

What lives here: the :class:`Store` abstract base class, the :class:`Record` a
read returns, the store errors, and the validation of keys, blobs and expected
versions.  Backends import these and nothing in this file knows about files,
SQLite or locks.

The contract, in one place (``docs/stores.md`` explains it at length, and
:class:`corosnap.testing.StoreConformance` checks it):

* A key is any ``str`` of 1 to :data:`MAX_KEY_BYTES` UTF-8 bytes without a NUL
  character.  The limits exist so that every backend, including ones that
  embed keys in file names or URLs, can store every legal key the same way.
* Every put gives the record a new version: 1 for a new record, then +1 per
  put.  ``delete`` removes the record entirely, so a put after a delete starts
  again at 1 (no tombstones are kept; see the docs for why and what that
  means for compare-and-set).
* ``expected_version`` turns a write into a compare-and-set: ``0`` means "the
  record must not exist", ``n > 0`` means "the record must be at version n".
  A mismatch raises :class:`Conflict` and changes nothing.
* Stores that talk to a server never resend a write on their own.  A server
  that cannot be reached raises :class:`StoreUnavailable` (nothing changed,
  retry at will); a write whose answer was lost raises :class:`OutcomeUnknown`
  (it may have happened; the caller must find out before acting on it).
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from types import TracebackType
from typing import NamedTuple, Self

from .._errors import CorosnapError

#: What ``put`` accepts as a blob; it is stored (and returned) as ``bytes``.
BytesLike = bytes | bytearray | memoryview

#: Longest key accepted, in UTF-8 bytes.  The same limit as S3 object keys
#: (``S3Store`` files the few keys that do not fit beside its prefix under a
#: hash, so it holds every key the other backends hold).
MAX_KEY_BYTES = 1024


class StoreError(CorosnapError):
    """A store could not carry out an operation (closed, corrupt, locked too long)."""


class InvalidKey(StoreError, ValueError):
    """The key is empty, contains a NUL character, is too long or is not valid UTF-8."""


class Conflict(StoreError):
    """A compare-and-set failed: the record is not at the version the caller expected.

    ``actual`` is 0 when the record does not exist.  Nothing was written.
    """

    def __init__(self, key: str, expected: int, actual: int) -> None:
        super().__init__(key, expected, actual)
        self.key = key
        self.expected = expected
        self.actual = actual

    def __str__(self) -> str:
        expected = f"{self.expected} (must not exist)" if self.expected == 0 else self.expected
        actual = f"{self.actual} (no record)" if self.actual == 0 else self.actual
        return (
            f"conflict on key {_short_repr(self.key)}: "
            f"expected version {expected}, actual version {actual}"
        )


class NotFound(StoreError, KeyError):
    """There is no record under the key.

    It is a :class:`KeyError` too, so ``except KeyError`` works as it does for a
    mapping.
    """

    def __init__(self, key: str, where: str = "") -> None:
        super().__init__(key, where)
        self.key = key
        self.where = where

    def __str__(self) -> str:
        # KeyError.__str__ would print repr(args); say what is missing instead.
        where = f" in {self.where}" if self.where else ""
        return f"no record for key {_short_repr(self.key)}{where}"


class StoreUnavailable(StoreError):
    """The store's server could not be reached, or the connection broke during a read.

    Nothing was changed: either the operation never reached the server, or it
    was one that changes nothing (``get``, ``keys``).  Retrying is safe.
    ``operation`` is the store method (``"get"``, ``"put"``, ...) and ``key``
    the key it was called with (``None`` for ``keys``).
    """

    def __init__(self, message: str, *, operation: str, key: str | None = None) -> None:
        super().__init__(message)
        self.operation = operation
        self.key = key


class OutcomeUnknown(StoreError):
    """A write reached the server, but its answer was lost: it may or may not have happened.

    Raised by ``put`` and ``delete`` of the server-backed stores when the
    connection broke (or timed out) after the request was sent and before the
    answer arrived.  The store never resends such a write by itself: a resent
    compare-and-set whose first copy had landed would fail with a
    :class:`Conflict` against its own write, and a resent unconditional put
    would write twice.  The caller decides: read the record back (its version
    and blob tell whether this write landed, unless another writer wrote an
    identical blob meanwhile) or treat the key's state as unknown, as a
    worker treats a lost lease.

    ``operation`` is ``"put"`` or ``"delete"``; ``key`` and
    ``expected_version`` are what the call was given.  The low-level error is
    chained as ``__cause__``.
    """

    def __init__(
        self, message: str, *, operation: str, key: str, expected_version: int | None
    ) -> None:
        super().__init__(message)
        self.operation = operation
        self.key = key
        self.expected_version = expected_version


class DurabilityWarning(UserWarning):
    """A store could not check that its server keeps acknowledged writes as durably as asked.

    Raised (as a warning) when the server hides its settings, e.g. a managed
    Redis that disables ``CONFIG``.  A server that is known not to provide the
    durability asked for is refused with :class:`StoreError` instead.
    """


class Record(NamedTuple):
    """One stored value: the blob and the version it was written as.

    They are returned together because a compare-and-set needs the version of
    exactly the blob the caller read.  A named tuple, so ``blob, version =
    record`` works too.
    """

    blob: bytes
    version: int


def _short_repr(key: object, limit: int = 80) -> str:
    """``repr(key)``, shortened so a 1 KB key does not flood an error message."""
    text = repr(key)
    if len(text) <= limit:
        return text
    return f"{text[: limit - 20]}...{text[-12:]} ({len(text)} chars)"


def validate_key(key: object) -> str:
    """Return ``key`` if it is a legal key; raise :class:`InvalidKey` (or TypeError) if not.

    Every backend calls this first, so a key that one backend accepts is
    accepted by all of them.  Lone surrogates are refused because they cannot
    be encoded as UTF-8, and so could not be stored in a file name, a SQLite
    TEXT column or a URL.
    """
    if not isinstance(key, str):
        raise TypeError(f"a store key must be a str, not {type(key).__name__}")
    if not key:
        raise InvalidKey("a store key must not be empty")
    if "\0" in key:
        raise InvalidKey(f"a store key must not contain a NUL character: {_short_repr(key)}")
    if len(key) > MAX_KEY_BYTES:  # cheap check first: every character is >= 1 byte
        raise InvalidKey(
            f"a store key must be at most {MAX_KEY_BYTES} UTF-8 bytes; "
            f"this one has {len(key)} characters: {_short_repr(key)}"
        )
    if key.isascii():  # a flag of the str: one byte per character, no surrogate
        return key
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidKey(
            f"a store key must be encodable as UTF-8 (no lone surrogates): {_short_repr(key)}"
        ) from exc
    if size > MAX_KEY_BYTES:
        raise InvalidKey(
            f"a store key must be at most {MAX_KEY_BYTES} UTF-8 bytes; "
            f"this one has {size}: {_short_repr(key)}"
        )
    return key


def validate_prefix(prefix: object) -> str:
    """Check the ``prefix`` argument of :meth:`Store.keys`: any ``str``, even empty."""
    if not isinstance(prefix, str):
        raise TypeError(f"a key prefix must be a str, not {type(prefix).__name__}")
    return prefix


def validate_blob(blob: object) -> bytes:
    """Return ``blob`` as ``bytes``; bytes-like objects are copied, anything else refused.

    The copy matters for ``bytearray`` and ``memoryview``: the caller may
    change them after ``put`` returns, and the stored value must not change.
    """
    if isinstance(blob, bytes):
        return blob
    if isinstance(blob, (bytearray, memoryview)):
        return bytes(blob)
    raise TypeError(f"a blob must be bytes, bytearray or memoryview, not {type(blob).__name__}")


def validate_expected_version(expected_version: object) -> int | None:
    """Check ``expected_version``: ``None`` or an int >= 0 (not a bool)."""
    if expected_version is None:
        return None
    if isinstance(expected_version, bool) or not isinstance(expected_version, int):
        raise TypeError(
            f"expected_version must be None or an int, not {type(expected_version).__name__}"
        )
    if expected_version < 0:
        raise ValueError(f"expected_version must be >= 0, not {expected_version}")
    return expected_version


def validate_delete_version(expected_version: object) -> int | None:
    """Like :func:`validate_expected_version`, but 0 is refused.

    "Delete the record that must not exist" has no meaning; refusing it
    catches a caller that passed the version of a record it never found.
    """
    version = validate_expected_version(expected_version)
    if version == 0:
        raise ValueError(
            "delete() with expected_version=0 makes no sense (0 means 'must not exist'); "
            "pass the version you read, or None"
        )
    return version


class Store(abc.ABC):
    """A key -> (blob, version) store with compare-and-set.

    Implementations must be safe to share between threads; the persistent
    ones must also be safe to use from several processes at once.  Use a
    store as a context manager, or call :meth:`close`, to release its files
    and connections; every operation on a closed store raises
    :class:`StoreError`.
    """

    @abc.abstractmethod
    def get(self, key: str) -> Record | None:
        """Return the record under ``key``, or ``None`` if there is none."""

    @abc.abstractmethod
    def put(self, key: str, blob: BytesLike, *, expected_version: int | None = None) -> int:
        """Store ``blob`` under ``key`` and return its new version.

        With ``expected_version`` the write only happens if the record is at
        that version (``0``: does not exist); otherwise :class:`Conflict` is
        raised and nothing changes.
        """

    @abc.abstractmethod
    def delete(self, key: str, *, expected_version: int | None = None) -> None:
        """Remove the record under ``key``.

        Raises :class:`NotFound` if there is none, and :class:`Conflict` if
        ``expected_version`` is given and does not match.
        """

    @abc.abstractmethod
    def keys(self, prefix: str = "") -> Iterator[str]:
        """Yield the keys that start with ``prefix``, in sorted (code point) order.

        A key that exists for the whole iteration is yielded exactly once;
        keys added or removed meanwhile may or may not be.
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Release resources.  Calling it again does nothing."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
