"""The directory store: one file per key, replaced atomically on every write.

Rules of this file: a record file is never modified in place.  Every write
builds the complete new file under a temporary name, makes it durable, and
renames it over the old one; ``rename`` is atomic on POSIX file systems, so a
reader (or a process that was killed mid-write) sees the old file or the new
one, never a mix.  Readers take no lock.

Theory of operation
-------------------
``put(key, blob)``:

1. take the lock that covers ``key`` (``flock`` on a lock file, exclusive);
2. read the current version from the record file's header (0 if absent) and
   compare it with ``expected_version``;
3. write header + key + blob to the temporary file of that lock, ``fsync`` it;
4. ``rename`` it over the record file, then ``fsync`` the directory so the
   rename itself survives a power cut;
5. release the lock (closing the lock file does it, also when the process
   dies, so a killed writer never leaves a lock behind).

Steps 2-4 happen under the lock, which is what makes compare-and-set hold
across threads and processes.  Each lock has its own fixed temporary file
name: only the holder of the lock writes it, so a temporary file left by a
killed writer is simply truncated and reused by the next one, and garbage is
bounded by the number of locks.

Locks are striped: a key's lock is one of :data:`LOCK_STRIPES` lock files,
chosen by a CRC of its file name.  One store-wide lock serialises every
writer behind every other writer's fsyncs; a lock file per key would never be
safe to delete (a waiter can hold a lock on an unlinked inode while a newcomer
locks a fresh one).  Stripes give writers of different keys parallel fsyncs
with a fixed set of lock files.  ``docs/stores.md`` has the measurement.

File names
----------
A key becomes a file name by keeping ``a-z``, ``0-9``, ``_`` and ``-`` and
writing every other UTF-8 byte as ``%XX`` (upper-case hex).  The result never
contains ``/``, never starts with ``.``, is never ``.`` or ``..``, and is
unique even on a case-insensitive file system (upper-case letters are
escaped, and hex digits only ever follow ``%``).  If the encoded name would be
longer than :data:`MAX_NAME_LENGTH` the file is named ``+`` and the SHA-256 of
the key instead; the key is stored in every file anyway and is checked on
read, so the two kinds of names never have to be trusted blindly.
Internal files (locks, temporary files) start with ``.``, which no encoded
name does.

Record file layout (all integers big-endian)::

    magic     8 bytes   b"CSNREC\\x00\\x01"
    version   8 bytes   unsigned
    key_len   4 bytes   unsigned, UTF-8 bytes of the key
    blob_len  8 bytes   unsigned
    crc32     4 bytes   of the 28 bytes above, the key and the blob
    key       key_len bytes
    blob      blob_len bytes
"""

from __future__ import annotations

import hashlib
import os
import struct
import sys
import threading
import zlib
from collections.abc import Iterator

from ._base import (
    MAX_KEY_BYTES,
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

if sys.platform == "win32":  # pragma: no cover - the project targets POSIX only
    fcntl = None
else:
    import fcntl

#: Number of lock files (and temporary files) a directory store uses.
LOCK_STRIPES = 64

#: Longest file name produced by key encoding; longer ones are hashed.  Far
#: below the usual 255-byte NAME_MAX, to leave room on file systems with
#: shorter limits (eCryptfs: 143).
MAX_NAME_LENGTH = 140

_MAGIC = b"CSNREC\x00\x01"
_HEADER = struct.Struct(">8sQIQ")  # magic, version, key_len, blob_len
_CRC = struct.Struct(">I")
_PREFIX_SIZE = _HEADER.size + _CRC.size  # 32 bytes before the key

_SAFE = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789_-")
_ENCODE_TABLE = [chr(b) if b in _SAFE else f"%{b:02X}" for b in range(256)]


def key_to_name(key: str) -> str:
    """The file name of ``key``'s record (see "File names" above)."""
    raw = key.encode("utf-8")
    name = "".join([_ENCODE_TABLE[b] for b in raw])
    if len(name) <= MAX_NAME_LENGTH:
        return name
    return "+" + hashlib.sha256(raw).hexdigest()


def name_to_key(name: str) -> str | None:
    """The key an encoded (not hashed) file name stands for, or None if it is not one.

    Only canonical encodings are accepted, so a stray file that happens to
    decode (``README.md``) is not mistaken for a record.
    """
    if name.startswith((".", "+")):
        return None
    first, *escaped = name.split("%")
    try:
        raw = bytearray(first.encode("ascii"))
        for part in escaped:
            raw.append(int(part[:2], 16))
            raw += part[2:].encode("ascii")
        key = raw.decode("utf-8")
    except ValueError:  # not ASCII, bad hex, a byte > 255 or not UTF-8
        return None
    if not key or "\0" in key or key_to_name(key) != name:
        return None
    return key


def _fsync(fd: int) -> None:
    """Flush ``fd`` to stable storage.

    On macOS ``fsync`` only reaches the drive's cache; ``F_FULLFSYNC`` asks
    the drive to flush it, which is what SQLite's ``fullfsync`` does too.
    """
    full = getattr(fcntl, "F_FULLFSYNC", None)
    if full is not None:  # pragma: no cover - macOS only
        try:
            fcntl.fcntl(fd, full)
            return
        except OSError:
            pass  # not supported by this file system: fall back to fsync
    os.fsync(fd)


def _make_dirs(path: str, durable: bool) -> None:
    """``os.makedirs(path)``; if durable, also make the new directory entries durable.

    A record fsynced into a directory whose own entry in its parent was never
    fsynced could still vanish with the directory after a power cut.
    """
    created = []
    parent = path
    while not os.path.isdir(parent):
        created.append(parent)
        parent = os.path.dirname(parent)
    os.makedirs(path, exist_ok=True)
    if durable:
        for directory in created:
            fd = os.open(os.path.dirname(directory), os.O_RDONLY | os.O_DIRECTORY)
            try:
                _fsync(fd)
            finally:
                os.close(fd)


def _encode_record(key_bytes: bytes, version: int, blob: bytes) -> bytes:
    header = _HEADER.pack(_MAGIC, version, len(key_bytes), len(blob))
    crc = zlib.crc32(blob, zlib.crc32(key_bytes, zlib.crc32(header)))
    return b"".join((header, _CRC.pack(crc), key_bytes, blob))


class DirectoryStore(Store):
    """A store keeping one file per key in a directory; safe across processes.

    ``durable=True`` (the default) fsyncs every record file and the directory
    before ``put``/``delete`` return, so an acknowledged write survives a
    power cut or kernel crash.  With ``durable=False`` writes are still atomic
    (a killed process never leaves a torn record) but the last writes may be
    lost if the machine itself goes down.

    The directory is created if needed.  It must be on a local POSIX file
    system: network file systems do not give ``rename`` and ``flock`` the
    guarantees this store relies on.
    """

    def __init__(self, path: str | os.PathLike[str], *, durable: bool = True) -> None:
        if fcntl is None:  # pragma: no cover
            raise StoreError("DirectoryStore needs fcntl.flock (POSIX); use SQLiteStore")
        self.path = os.path.abspath(os.fspath(path))
        self.durable = durable
        _make_dirs(self.path, durable)
        self._dir_fd: int | None = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        self._close_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"DirectoryStore({self.path!r})"

    # -- paths and locks -------------------------------------------------

    def _check_open(self) -> int:
        fd = self._dir_fd
        if fd is None:
            raise StoreError(f"{self!r} is closed")
        return fd

    def _stripe(self, name: str) -> int:
        return zlib.crc32(name.encode("ascii")) % LOCK_STRIPES

    def _lock(self, stripe: int) -> int:
        """Open and exclusively lock the stripe's lock file; close the fd to unlock.

        A fresh open file description per call is what makes ``flock``
        exclude other threads of this process as well as other processes.
        """
        fd = os.open(os.path.join(self.path, f".lock-{stripe:02x}"), os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        return fd

    # -- reading -------------------------------------------------------

    def _read(self, name: str) -> tuple[str, Record] | None:
        """Read and verify the record file ``name``: (its key, its record), or None."""
        path = os.path.join(self.path, name)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        if len(data) < _PREFIX_SIZE:
            raise StoreError(f"record file {path!r} is truncated ({len(data)} bytes)")
        magic, version, key_len, blob_len = _HEADER.unpack_from(data)
        (crc,) = _CRC.unpack_from(data, _HEADER.size)
        if magic != _MAGIC:
            raise StoreError(f"{path!r} is not a corosnap record file (bad magic {magic!r})")
        if len(data) != _PREFIX_SIZE + key_len + blob_len:
            raise StoreError(
                f"record file {path!r} has {len(data)} bytes, its header says "
                f"{_PREFIX_SIZE + key_len + blob_len}"
            )
        key_bytes = data[_PREFIX_SIZE : _PREFIX_SIZE + key_len]
        blob = data[_PREFIX_SIZE + key_len :]
        if zlib.crc32(blob, zlib.crc32(key_bytes, zlib.crc32(data[: _HEADER.size]))) != crc:
            raise StoreError(f"record file {path!r} is corrupt (CRC mismatch)")
        return key_bytes.decode("utf-8"), Record(blob, version)

    def _read_key(self, name: str) -> str | None:
        """The key stored in hashed file ``name``, reading only the header; None if invalid."""
        try:
            with open(os.path.join(self.path, name), "rb") as f:
                header = f.read(_PREFIX_SIZE)
                if len(header) < _PREFIX_SIZE:
                    return None
                magic, _version, key_len, _blob_len = _HEADER.unpack_from(header)
                if magic != _MAGIC or key_len > MAX_KEY_BYTES:
                    return None
                key = f.read(key_len).decode("utf-8")
        except (FileNotFoundError, UnicodeDecodeError):
            return None
        return key if key_to_name(key) == name else None

    def _current_version(self, key: str, name: str) -> int:
        """The version of ``key``'s record, 0 if absent.  Called under the key's lock."""
        found = self._read(name)
        if found is None:
            return 0
        self._check_key(key, name, found[0])
        return found[1].version

    def _check_key(self, key: str, name: str, stored: str) -> None:
        if stored != key:
            # Only possible for a SHA-256 collision or a file put there by hand.
            raise StoreError(
                f"record file {os.path.join(self.path, name)!r} holds key {stored!r}, not {key!r}"
            )

    def get(self, key: str) -> Record | None:
        key = validate_key(key)
        self._check_open()
        name = key_to_name(key)
        found = self._read(name)
        if found is None:
            return None
        self._check_key(key, name, found[0])
        return found[1]

    # -- writing -------------------------------------------------------

    def put(self, key: str, blob: BytesLike, *, expected_version: int | None = None) -> int:
        key = validate_key(key)
        blob = validate_blob(blob)
        expected = validate_expected_version(expected_version)
        dir_fd = self._check_open()
        name = key_to_name(key)
        stripe = self._stripe(name)
        lock_fd = self._lock(stripe)
        try:
            actual = self._current_version(key, name)
            if expected is not None and expected != actual:
                raise Conflict(key, expected, actual)
            version = actual + 1
            data = _encode_record(key.encode("utf-8"), version, blob)
            tmp = os.path.join(self.path, f".tmp-{stripe:02x}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                if self.durable:
                    _fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, os.path.join(self.path, name))
            if self.durable:
                _fsync(dir_fd)
            return version
        finally:
            os.close(lock_fd)

    def delete(self, key: str, *, expected_version: int | None = None) -> None:
        key = validate_key(key)
        expected = validate_delete_version(expected_version)
        dir_fd = self._check_open()
        name = key_to_name(key)
        lock_fd = self._lock(self._stripe(name))
        try:
            if expected is not None:
                actual = self._current_version(key, name)
                if expected != actual:
                    raise Conflict(key, expected, actual)
            try:
                os.unlink(os.path.join(self.path, name))
            except FileNotFoundError:
                raise NotFound(key, repr(self)) from None
            if self.durable:
                _fsync(dir_fd)
        finally:
            os.close(lock_fd)

    # -- listing -------------------------------------------------------

    def keys(self, prefix: str = "") -> Iterator[str]:
        prefix = validate_prefix(prefix)
        self._check_open()
        found = []
        for name in os.listdir(self.path):
            if name.startswith("+"):
                key: str | None = self._read_key(name)
            else:
                key = name_to_key(name)
            if key is not None and key.startswith(prefix):
                found.append(key)
        found.sort()
        return iter(found)

    def close(self) -> None:
        with self._close_lock:
            fd, self._dir_fd = self._dir_fd, None
        if fd is not None:
            os.close(fd)
