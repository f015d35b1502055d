"""DirectoryStore: one store-wide lock against striped locks, with several writer processes.

    python benchmarks/bench_directory_locks.py [--puts 300] [--repeat 3] [--dir PATH]

The measurement behind ``LOCK_STRIPES`` (docs/stores.md, "Per-key lock or
store-wide lock?").  Each of N processes makes ``--puts`` durable puts, either
to keys of its own or all to one shared key, with the store using 1 lock
file (store-wide) or 64 (striped).  Prints total puts per second, the median
of ``--repeat`` runs, as a markdown table.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import statistics
import tempfile
import time
from typing import Any

SETUPS = [(1, False), (2, False), (4, False), (4, True)]  # (processes, one shared key)
SIZES = {"100 B": 100, "100 KB": 100 * 1024}


def _writer(
    path: str, stripes: int, worker: int, puts: int, shared: bool, size: int, go: Any
) -> None:
    from corosnap.stores import _directory

    _directory.LOCK_STRIPES = stripes  # this process only
    store = _directory.DirectoryStore(path)
    blob = os.urandom(size)
    go.wait()
    for i in range(puts):
        store.put("shared" if shared else f"worker-{worker}/{i % 10}", blob)
    store.close()


def run(root: str, stripes: int, processes: int, shared: bool, size: int, puts: int) -> float:
    path = tempfile.mkdtemp(prefix="bench-locks-", dir=root)
    try:
        context = multiprocessing.get_context("spawn")
        go = context.Barrier(processes + 1)
        workers = [
            context.Process(target=_writer, args=(path, stripes, w, puts, shared, size, go))
            for w in range(processes)
        ]
        for worker in workers:
            worker.start()
        go.wait()
        start = time.perf_counter()
        for worker in workers:
            worker.join()
        return processes * puts / (time.perf_counter() - start)
    finally:
        shutil.rmtree(path, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--puts", type=int, default=300, help="puts per process")
    parser.add_argument("--repeat", type=int, default=3, help="runs per cell (median)")
    parser.add_argument("--dir", default=None, help="where the stores are created")
    args = parser.parse_args()
    root = args.dir or tempfile.gettempdir()
    print(f"{os.cpu_count()} CPUs; stores under {root}; load average {os.getloadavg()[0]:.1f}\n")
    print("| processes | keys | blob | 1 store-wide lock | 64 striped locks |")
    print("|---:|---|---|---:|---:|")
    for processes, shared in SETUPS:
        for label, size in SIZES.items():
            rates = [
                statistics.median(
                    run(root, stripes, processes, shared, size, args.puts)
                    for _ in range(args.repeat)
                )
                for stripes in (1, 64)
            ]
            keys = "one shared" if shared else "own"
            print(f"| {processes} | {keys} | {label} | {rates[0]:,.0f}/s | {rates[1]:,.0f}/s |")


if __name__ == "__main__":
    main()
