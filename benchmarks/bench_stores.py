"""Put and get throughput of each store, for small and large blobs.

    python benchmarks/bench_stores.py [--seconds 1.0] [--repeat 3] [--dir PATH]
        [--servers postgres,redis,s3 | none] [--postgres DSN] [--redis URL] [--only TEXT]

Each measurement writes (or reads) 100 keys round-robin for ``--seconds``
and reports operations per second and the mean time of one operation, the
median of ``--repeat`` runs; puts overwrite existing records, as a
checkpointing workflow does, with compare-and-set on the version just
written (``expected_version``), as the scheduler does.  One thread, one
process: this is the latency of a single caller, not the store's throughput
under concurrency.  The persistent stores live in a temporary directory
under ``--dir`` (default: the system's temporary directory); the disk behind
it decides the durable numbers, so say which disk you measured.

The server-backed stores run against servers started for the run, as the
test suite starts them (``benchmarks/_servers.py``): PostgreSQL on
127.0.0.1 (``fsync`` on), redis-server (measured with ``appendfsync always``
and ``everysec``), and moto's S3 server (a simulator, far slower than S3 per
request and far faster in latency; its row shows the store's client-side
cost, not S3's).  ``--postgres DSN`` / ``--redis URL`` measure existing
servers instead; ``--servers none`` skips them.  ``--only TEXT`` keeps the
rows whose name contains TEXT.  Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

from corosnap.stores import DirectoryStore, MemoryStore, SQLiteStore, Store

KEYS = [f"workflow/{i:03d}" for i in range(100)]
SIZES = {"100 B": 100, "100 KB": 100 * 1024}

Factory = Callable[[str], Store]
BACKENDS: dict[str, Factory] = {
    "MemoryStore": lambda d: MemoryStore(),
    "DirectoryStore": lambda d: DirectoryStore(os.path.join(d, "dir")),
    "DirectoryStore(durable=False)": lambda d: DirectoryStore(
        os.path.join(d, "dir-fast"), durable=False
    ),
    "SQLiteStore": lambda d: SQLiteStore(os.path.join(d, "s.db")),
    "SQLiteStore(durable=False)": lambda d: SQLiteStore(
        os.path.join(d, "s-fast.db"), durable=False
    ),
}


def rate(operation: Callable[[str], object], seconds: float) -> float:
    """Operations per second of ``operation(key)`` over the keys, run for ``seconds``."""
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for key in KEYS:
            operation(key)
        count += len(KEYS)
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start)


def fsync_latency(root: str, count: int = 50) -> float:
    """Median seconds to write and fsync a small file under ``root``: what durable puts wait for."""
    fd, path = tempfile.mkstemp(dir=root)
    try:
        times = []
        for _ in range(count):
            start = time.perf_counter()
            os.pwrite(fd, b"x" * 100, 0)
            os.fsync(fd)
            times.append(time.perf_counter() - start)
        return statistics.median(times)
    finally:
        os.close(fd)
        os.unlink(path)


def measure(
    factory: Factory, size: int, seconds: float, repeat: int, root: str
) -> tuple[float, float]:
    workdir = tempfile.mkdtemp(prefix="bench-stores-", dir=root)
    try:
        with factory(workdir) as store:
            blob = os.urandom(size)
            versions = {key: store.put(key, blob) for key in KEYS}

            def put(key: str) -> None:
                versions[key] = store.put(key, blob, expected_version=versions[key])

            puts = [rate(put, seconds) for _ in range(repeat)]
            gets = [rate(store.get, seconds) for _ in range(repeat)]
        return statistics.median(puts), statistics.median(gets)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def latency(ops_per_second: float) -> str:
    seconds = 1 / ops_per_second
    return f"{seconds * 1e6:,.0f} µs" if seconds < 1e-3 else f"{seconds * 1e3:,.2f} ms"


def server_backends(found: object) -> dict[str, Factory]:
    """Rows for the servers' stores; each measurement gets its own schema/namespace/prefix."""
    from _servers import store_factories

    rows = {}
    for name, make in store_factories(found).items():  # type: ignore[arg-type]
        rows[name] = lambda d, make=make: make(os.path.basename(d))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="per measurement (default 1)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (median)")
    parser.add_argument("--dir", default=None, help="where the persistent stores are created")
    parser.add_argument(
        "--servers",
        default="postgres,redis,s3",
        help="server-backed stores to measure, comma-separated, or 'none' (default: all three)",
    )
    parser.add_argument("--postgres", default=None, help="DSN of an existing PostgreSQL")
    parser.add_argument("--redis", default=None, help="URL of an existing Redis")
    parser.add_argument("--only", default="", help="only the rows whose name contains this")
    args = parser.parse_args()
    root = args.dir or tempfile.gettempdir()
    kinds = () if args.servers == "none" else tuple(k for k in args.servers.split(",") if k)

    from _servers import running

    with running(kinds, postgres=args.postgres, redis=args.redis) as found:
        table(args, root, {**BACKENDS, **(server_backends(found) if kinds else {})})


def table(args: argparse.Namespace, root: str, backends: dict[str, Factory]) -> None:
    print(
        f"Python {platform.python_version()} on {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs; stores under {root}; "
        f"{args.repeat} x {args.seconds} s per cell, median; "
        f"fsync of a small file there: {fsync_latency(root) * 1000:.2f} ms (median); "
        f"load average {os.getloadavg()[0]:.1f}\n"
    )
    print("| store | blob | put ops/s | put, mean | get ops/s | get, mean |")
    print("|---|---|---:|---:|---:|---:|")
    for name, factory in backends.items():
        if args.only not in name:
            continue
        for label, size in SIZES.items():
            put, get = measure(factory, size, args.seconds, args.repeat, root)
            print(
                f"| {name} | {label} | {put:,.0f} | {latency(put)} | {get:,.0f} | {latency(get)} |"
            )
            sys.stdout.flush()


if __name__ == "__main__":
    main()
