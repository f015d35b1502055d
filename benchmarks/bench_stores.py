"""Put and get throughput of each store, for small and large blobs.

    python benchmarks/bench_stores.py [--seconds 1.0] [--repeat 3] [--dir PATH]

Each measurement writes (or reads) 100 keys round-robin for ``--seconds``
and reports operations per second, the median of ``--repeat`` runs; puts
overwrite existing records, as a checkpointing workflow does.  One thread,
one process: this is the latency of a single caller, not the store's
throughput under concurrency.  The persistent stores live in a temporary
directory under ``--dir`` (default: the system's temporary directory); the
disk behind it decides the durable numbers, so say which disk you measured.
Prints a markdown table.
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
            for key in KEYS:
                store.put(key, blob)
            puts = [rate(lambda k: store.put(k, blob), seconds) for _ in range(repeat)]
            gets = [rate(store.get, seconds) for _ in range(repeat)]
        return statistics.median(puts), statistics.median(gets)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="per measurement (default 1)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (median)")
    parser.add_argument("--dir", default=None, help="where the persistent stores are created")
    args = parser.parse_args()
    root = args.dir or tempfile.gettempdir()

    print(
        f"Python {platform.python_version()} on {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs; stores under {root}; "
        f"{args.repeat} x {args.seconds} s per cell, median; "
        f"fsync of a small file there: {fsync_latency(root) * 1000:.2f} ms (median); "
        f"load average {os.getloadavg()[0]:.1f}\n"
    )
    print("| store | blob | put ops/s | get ops/s |")
    print("|---|---|---:|---:|")
    for name, factory in BACKENDS.items():
        for label, size in SIZES.items():
            put, get = measure(factory, size, args.seconds, args.repeat, root)
            print(f"| {name} | {label} | {put:,.0f} | {get:,.0f} |")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
