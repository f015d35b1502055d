"""The writers that tests/stores/test_crash.py kills with SIGKILL.

Run as ``python crash_child.py BACKEND PATH``, this is a small fork server
(for a server-backed store, PATH is a JSON spec from ``servers.spec_for``):
it imports everything once, then for each seed it reads on stdin it forks a
writer, prints ``pid PID``, waits for the writer to die and prints
``dead PID STATUS``.  Forking a warm process takes about a millisecond where
starting an interpreter takes tens, which is what makes hundreds of kills
affordable.  The server itself never opens a store, so nothing store-related
crosses the fork.

A writer opens the store, prints ``ready`` and writes forever: round-robin
over :data:`KEYS`, each put a compare-and-set on the version it just read,
each blob self-verifying (a header with the counter, the payload length and
a SHA-256 of key + counter + payload).  After every put returns it prints
``ack INDEX VERSION``.  One ``os.write`` of a short line to a pipe is atomic,
and the pipe's content outlives the writer, so the parent learns exactly
which puts were acknowledged; the server's ``dead`` line comes after all of
them.

The parent imports this module too, for the blob format and the key list.
"""

from __future__ import annotations

import hashlib
import os
import random
import struct
import sys
import traceback

from corosnap.stores import DirectoryStore, SQLiteStore, Store

if __name__ == "__main__":  # run as a script: make tests/servers.py importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import servers  # noqa: E402

#: Backends reached through a server; their PATH argument is a spec from
#: ``servers.spec_for``.
SERVER_BACKENDS = ("postgres", "redis", "s3")

#: Short, path-like and long: the last one is too long for a file name, so
#: the directory store files it under its hash.
KEYS = ("plain", "../nested/key with spaces", "long-" + "é" * 300)

#: Payload sizes, from empty to large enough that writing takes a while.
SIZES = (0, 10, 1_000, 20_000, 200_000)

MAGIC = b"CRASHv1\0"
HEADER = struct.Struct(">8sQQ32s")  # magic, counter, payload length, sha256


def digest(key: str, counter: int, payload: bytes) -> bytes:
    return hashlib.sha256(key.encode() + counter.to_bytes(8, "big") + payload).digest()


def make_blob(key: str, counter: int, payload: bytes) -> bytes:
    return HEADER.pack(MAGIC, counter, len(payload), digest(key, counter, payload)) + payload


def check_blob(key: str, blob: bytes) -> int:
    """Return the blob's counter; raise AssertionError if the blob is not intact."""
    assert len(blob) >= HEADER.size, f"{key!r}: blob of {len(blob)} bytes is torn"
    magic, counter, length, sha = HEADER.unpack_from(blob)
    assert magic == MAGIC, f"{key!r}: bad magic {magic!r}"
    payload = blob[HEADER.size :]
    assert len(payload) == length, f"{key!r}: payload {len(payload)} bytes, header says {length}"
    assert sha == digest(key, counter, payload), f"{key!r}: hash mismatch (torn or mixed)"
    return int(counter)


def open_store(backend: str, path: str) -> Store:
    if backend == "directory":
        return DirectoryStore(path)
    if backend == "sqlite":
        return SQLiteStore(path)
    if backend in SERVER_BACKENDS:
        store: Store = servers.open_store(path)
        return store
    raise ValueError(backend)


def preload(backend: str) -> None:
    """Import the backend's client library now, so each forked writer starts warm."""
    if backend in SERVER_BACKENDS:
        import corosnap.stores

        getattr(
            corosnap.stores,
            {"postgres": "PostgresStore", "redis": "RedisStore"}.get(backend, "S3Store"),
        )
        if backend == "s3":
            import boto3

            # The first client of a process loads botocore's service model
            # (about 0.1 s); do it here, once, rather than in every writer.
            boto3.client("s3", region_name="us-east-1").close()


def write_forever(backend: str, path: str, seed: int, out: int) -> None:
    rng = random.Random(seed)
    store = open_store(backend, path)
    os.write(out, b"ready\n")
    for i in range(10**9):
        index = i % len(KEYS)
        key = KEYS[index]
        record = store.get(key)
        version = record.version if record is not None else 0
        blob = make_blob(key, version + 1, rng.randbytes(rng.choice(SIZES)))
        new_version = store.put(key, blob, expected_version=version)
        assert new_version == version + 1
        os.write(out, b"ack %d %d\n" % (index, new_version))


def main() -> None:
    backend, path = sys.argv[1], sys.argv[2]
    preload(backend)
    out = sys.stdout.fileno()
    while line := sys.stdin.buffer.readline():
        pid = os.fork()
        if pid == 0:
            try:
                write_forever(backend, path, int(line), out)
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(70)  # never fall back into the server's loop
        os.write(out, b"pid %d\n" % pid)
        _, status = os.waitpid(pid, 0)
        os.write(out, b"dead %d %d\n" % (pid, status))


if __name__ == "__main__":
    main()
