"""What durability costs the scheduler: checkpoint overhead per await, and workflow throughput.

    python benchmarks/bench_scheduler.py [--quick] [--dir PATH]    # or: make bench-scheduler

Part 1, **overhead per await**: one workflow awaits a trivial step
(``noop(i)``) ``--awaits`` times in a row, steps inline (``workers=0``), on
each store.  Each await costs one checkpoint (``corosnap.dumps`` of the
suspended workflow + encoding and writing its run record) and one step record
(pickling the result + writing it).  The table gives the wall time per await
and its parts as the scheduler measured them, next to calling ``noop``
directly.

Part 2, **throughput**: ``--workflows`` workflows are started, then one
``run_until_complete`` drives them all at once.  Each is the shape of the
tests' pipeline: a two-way fan-out, two sequential steps, a zero-length
durable timer and a child workflow with one step: 6 checkpoints, 5 step
records and 2 runs per workflow.  Measured on SQLite with and without an
fsync per commit, with steps in a thread pool and inline.

Prints markdown tables, with the machine's load average: this runs on shared
machines, so read the numbers as orders of magnitude and compare rows of one
run with each other.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from corosnap.scheduler import Scheduler, Stats, call, gather, sleep
from corosnap.stores import DirectoryStore, MemoryStore, SQLiteStore, Store


def noop(i: int) -> int:
    return i


def double(x: int) -> int:
    return 2 * x


async def awaits(n: int) -> int:
    total = 0
    for i in range(n):
        total += await call(noop, i)
    return total


async def child(x: int) -> int:
    return await call(double, x)


async def pipeline(xs: list[int]) -> dict[str, Any]:
    doubled = await gather(*(call(double, x) for x in xs))
    total = 0
    for d in doubled:
        total += await call(double, d)
    await sleep(0)
    return {"doubled": doubled, "total": total, "child": await call(child, total)}


def scheduler(store: Store, workers: int) -> Scheduler:
    s = Scheduler(store, workers=workers)
    for fn in (noop, double):
        s.function(fn)
    for wf in (awaits, child, pipeline):
        s.workflow(wf)
    return s


STORES: dict[str, Callable[[str], Store]] = {
    "MemoryStore": lambda d: MemoryStore(),
    "SQLiteStore(durable=False)": lambda d: SQLiteStore(os.path.join(d, "f.db"), durable=False),
    "SQLiteStore (fsync per commit)": lambda d: SQLiteStore(os.path.join(d, "d.db")),
    "DirectoryStore(durable=False)": lambda d: DirectoryStore(os.path.join(d, "f"), durable=False),
    "DirectoryStore (fsync per write)": lambda d: DirectoryStore(os.path.join(d, "d")),
}


def per_await(root: str, awaits_fast: int, awaits_durable: int, repeat: int) -> None:
    n = awaits_fast
    direct = min(_direct(n) for _ in range(repeat))
    print(f"\n### Overhead per await ({awaits_fast} sequential awaits of a trivial step, "
          f"{awaits_durable} on the stores that fsync; steps inline)\n")  # fmt: skip
    print("| store | per await | corosnap.dumps | run record write | step record write "
          "| rest (engine, pickling) | snapshot | run record |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, make in STORES.items():
        n = awaits_durable if "fsync" in name else awaits_fast
        samples = []
        for _ in range(repeat):
            path = os.path.join(root, f"await-{len(os.listdir(root))}")
            os.makedirs(path)
            store = make(path)
            s = scheduler(store, workers=0)
            run_id = s.start(awaits, n)
            t0 = time.perf_counter()
            stats = s.run_until_complete()
            elapsed = time.perf_counter() - t0
            assert s.result(run_id) == n * (n - 1) // 2
            store.close()
            samples.append((elapsed, stats))
        elapsed, stats = sorted(samples, key=lambda x: x[0])[len(samples) // 2]
        per = elapsed / n
        dumps = stats.snapshot_seconds / stats.checkpoints
        write = stats.write_seconds / stats.checkpoints
        step = stats.step_write_seconds / stats.steps_recorded
        rest = per - dumps - write - step
        snapshot, record = stats.snapshot_bytes, stats.record_bytes
        print(f"| {name} | {_us(per)} | {_us(dumps)} | {_us(write)} | {_us(step)} "
              f"| {_us(rest)} | {snapshot // stats.checkpoints} B "
              f"| {record // stats.checkpoints} B |")  # fmt: skip
    print(f"| (calling the step directly, no scheduler) | {_us(direct / awaits_fast)} "
          "| | | | | | |")  # fmt: skip


def _direct(n: int) -> float:
    t0 = time.perf_counter()
    total = 0
    for i in range(n):
        total += noop(i)
    return time.perf_counter() - t0


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:,.0f} µs" if seconds >= 1e-6 else f"{seconds * 1e9:.0f} ns"


def throughput(root: str, count: int, durable_count: int) -> None:
    print("\n### Throughput: workflows started together, then one run_until_complete\n")
    print("| store | steps | workflows | time | workflows/s | checkpoints/s "
          "| share in dumps | share in store writes |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    cases = [
        ("SQLiteStore(durable=False)", False, 4, count),
        ("SQLiteStore(durable=False)", False, 0, count),
        ("SQLiteStore (fsync per commit)", True, 4, durable_count),
    ]
    for i, (name, durable, workers, n) in enumerate(cases):
        store = SQLiteStore(os.path.join(root, f"tp-{i}.db"), durable=durable)
        s = scheduler(store, workers)
        ids = [s.start(pipeline, [k, k + 1]) for k in range(n)]
        t0 = time.perf_counter()
        stats: Stats = s.run_until_complete()
        elapsed = time.perf_counter() - t0
        assert stats.runs_done == 2 * n and stats.checkpoints == 6 * n
        assert s.result(ids[-1])["child"] == 8 * (2 * (n - 1) + 1)
        store.close()
        writes = stats.write_seconds + stats.step_write_seconds
        where = f"{workers} threads" if workers else "inline"
        print(f"| {name} | {where} | {n} | {elapsed:.2f} s | {n / elapsed:,.0f} "
              f"| {stats.checkpoints / elapsed:,.0f} | {stats.snapshot_seconds / elapsed:.0%} "
              f"| {writes / elapsed:.0%} |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts, one repetition")
    parser.add_argument("--awaits", type=int, default=2000)
    parser.add_argument("--durable-awaits", type=int, default=300)
    parser.add_argument("--workflows", type=int, default=1000)
    parser.add_argument("--durable-workflows", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", default=None, help="where the stores go (default: temp dir)")
    args = parser.parse_args()
    if args.quick:
        args.awaits, args.durable_awaits = 200, 50
        args.workflows, args.durable_workflows, args.repeat = 100, 20, 1
    root = tempfile.mkdtemp(prefix="bench-scheduler-", dir=args.dir)
    try:
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"corosnap scheduler benchmark: Python {platform.python_version()} on "
              f"{platform.machine()}, {os.cpu_count()} CPUs, load average {load}, "
              f"stores in {root}")  # fmt: skip
        per_await(root, args.awaits, args.durable_awaits, args.repeat)
        throughput(root, args.workflows, args.durable_workflows)
        print(f"\nload average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
