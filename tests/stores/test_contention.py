"""Many writers, one counter: compare-and-set with retry must not lose an increment.

Eight processes (threads for the memory store) each add 1 to the same record
200 times: read, put with ``expected_version``, retry on Conflict.  The
server-backed stores run it against the servers the session started
(``durable=False``: PostgreSQL with ``synchronous_commit=off``, Redis without
the durability check; the Redis test server fsyncs every write regardless).  A lost
update (two writers both succeeding from the same version) would leave the
count short; the final count and version must both be exactly 1600.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from corosnap.stores import DirectoryStore, MemoryStore, Record, SQLiteStore, Store
from corosnap.testing import increment_counter

from .. import servers

WORKERS = 8
INCREMENTS = 200
TOTAL = WORKERS * INCREMENTS
#: moto answers a request in 5-30 ms, one at a time: fewer increments there.
INCREMENTS_PER_BACKEND = {"s3": 20}
TIMEOUT = 120.0
WORKER = Path(__file__).with_name("counter_worker.py")


def _run_processes(backend: str, path: str, durable: bool, increments: int) -> list[int]:
    """Start the workers, release them together, return each one's conflict count."""
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(WORKER),
                backend,
                path,
                "1" if durable else "0",
                str(increments),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(WORKERS)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        conflicts = []
        deadline = time.monotonic() + TIMEOUT
        for proc in procs:
            out, err = proc.communicate(timeout=max(deadline - time.monotonic(), 1))
            assert proc.returncode == 0, err
            conflicts.append(int(out.split()[-1]))
        return conflicts
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _location(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if backend == "directory":
        return str(tmp_path / "store")
    if backend == "sqlite":
        return str(tmp_path / "store.db")
    server = request.getfixturevalue(f"{backend}_server")
    namespace = "count-" + hashlib.sha1(str(tmp_path).encode()).hexdigest()[:12]
    return servers.spec_for(backend, server, namespace)


def _open(backend: str, location: str) -> Store:
    if backend == "directory":
        return DirectoryStore(location)
    if backend == "sqlite":
        return SQLiteStore(location)
    store: Store = servers.open_store(location)
    return store


@pytest.mark.parametrize("backend", ["directory", "sqlite", "postgres", "redis", "s3"])
def test_processes_incrementing_with_compare_and_set_lose_nothing(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """``durable=False``: fsync changes what survives a power cut, not who holds the lock.

    The locking and compare-and-set code is the same either way; without the
    fsyncs the 1600 serialised writes take a second or two rather than
    1600 fsync latencies (10+ s on a busy disk).  The durable variant is
    marked slow (``pytest -m slow`` runs it).
    """
    location = _location(backend, tmp_path, request)
    increments = INCREMENTS_PER_BACKEND.get(backend, INCREMENTS)
    conflicts = _run_processes(backend, location, durable=False, increments=increments)
    total = WORKERS * increments
    with _open(backend, location) as store:
        assert store.get("counter") == Record(b"%d" % total, total)
    # The test means something only if the writers really collided.
    assert sum(conflicts) > 0, conflicts


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["directory", "sqlite", "postgres", "redis"])
def test_durable_processes_incrementing_with_compare_and_set_lose_nothing(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    location = _location(backend, tmp_path, request)
    _run_processes(backend, location, durable=True, increments=INCREMENTS)
    with _open(backend, location) as store:
        assert store.get("counter") == Record(b"%d" % TOTAL, TOTAL)


def test_threads_incrementing_a_memory_store_lose_nothing() -> None:
    store = MemoryStore()
    barrier = threading.Barrier(WORKERS)
    conflicts: list[int] = []

    def work() -> None:
        barrier.wait()
        conflicts.append(increment_counter(store, "counter", INCREMENTS, pause=True))

    threads = [threading.Thread(target=work) for _ in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    assert len(conflicts) == WORKERS
    assert store.get("counter") == Record(b"%d" % TOTAL, TOTAL)
    assert sum(conflicts) > 0, conflicts
