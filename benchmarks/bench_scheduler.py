"""What durability costs the scheduler: overhead per await, and throughput with many workers.

    python benchmarks/bench_scheduler.py [--quick] [--dir PATH]    # or: make bench-scheduler
        [--postgres DSN] [--redis URL]     # use these servers instead of starting our own
        [--part await|throughput|all] [--check]   # --check: exit 1 if a target FAILs

Part 1, **overhead per await**: one workflow awaits a trivial step
(``noop(i)``) ``--awaits`` times in a row, steps inline (``workers=0``), on
each store.  Each await costs one checkpoint: ``corosnap.dumps`` of the
suspended workflow, and one compare-and-set write of the run record, which
holds the snapshot *and* the outcome of the step it was resumed with (plus,
once every 32 steps, a chunk of step history).  The table gives the wall time
per await and its parts as the scheduler measured them, the store writes per
await, and next to the stores that fsync, the floor: one commit of a record
of the same size on that store, measured in the same run.  The target is a
per-await time within 1.2x of the floor on SQLite with an fsync per commit;
on MemoryStore, a per-await overhead of at most 40 µs, of which
``corosnap.dumps`` at most 10 µs (the Targets table).

Part 2, **throughput with 1, 2 and 4 workers**: ``--workflows`` workflows
are started, then that many worker processes (each ``run_until_complete``
with 4 step threads) share the store until every run is done.  Each workflow
is a two-way fan-out, two sequential steps, a zero-length durable timer and
a child workflow with one step: 6 checkpoints, 5 steps and 2 runs.

PostgreSQL and Redis are started by the benchmark itself (with the test
suite's helpers: ``initdb``/``pg_ctl``, ``redis-server``) unless given, and
run on the same machine as the workers: on a 2-core machine, more workers
compete with the server for the same cores.  Prints markdown tables, with
the machine's load average: read the numbers as orders of magnitude and
compare rows of one run with each other.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corosnap.scheduler import Scheduler, call, gather, sleep
from corosnap.stores import DirectoryStore, MemoryStore, SQLiteStore, Store

ROOT = Path(__file__).resolve().parents[1]


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


def scheduler(store: Store | None, workers: int) -> Scheduler:
    s = Scheduler(store, workers=workers, poll=0.05, max_runs=200)
    for fn in (noop, double):
        s.function(fn)
    for wf in (awaits, child, pipeline):
        s.workflow(wf)
    return s


# -- stores -------------------------------------------------------------------------


@dataclass
class Backend:
    """A store to measure: how to make one here, and the spec worker processes open."""

    name: str
    make: Callable[[], Store]
    spec: str | None = None  # for worker processes (None: not shareable between processes)
    options: tuple[str, ...] = ()  # --store-option values for the workers
    fsyncs: bool = False


class Servers:
    """PostgreSQL and Redis for the benchmark: given ones, or our own (tests/servers.py)."""

    def __init__(self, postgres: str | None, redis: str | None) -> None:
        self.postgres, self.redis = postgres, redis
        self.notes: list[str] = []
        self._stop: list[Callable[[], None]] = []

    def start(self) -> None:
        if self.postgres and self.redis:
            return
        sys.path.insert(0, str(ROOT / "tests"))
        try:
            import servers  # type: ignore[import-not-found]
        except ImportError as exc:
            self.notes.append(f"no test server helpers ({exc}): PostgreSQL and Redis skipped")
            return
        if not self.postgres:
            try:
                pg = servers.start_postgres()
                self.postgres = pg.dsn
                self._stop.append(lambda: servers.stop_postgres(pg))
            except BaseException as exc:  # pytest.skip is a BaseException
                self.notes.append(f"PostgreSQL not started: {exc}")
        if not self.redis:
            try:
                rd = servers.start_redis()
                self.redis = rd.url
                self._stop.append(lambda: servers.stop_redis(rd))
            except BaseException as exc:
                self.notes.append(f"Redis not started: {exc}")

    def stop(self) -> None:
        for stop in reversed(self._stop):
            with contextlib.suppress(Exception):
                stop()


def backends(root: str, servers: Servers, shared: bool) -> list[Backend]:
    """The stores to measure; ``shared``: only those several processes can open."""

    def fresh(prefix: str) -> str:
        return os.path.join(root, f"{prefix}-{secrets.token_hex(3)}")

    found = []
    if not shared:
        found.append(Backend("MemoryStore", MemoryStore))
    path = fresh("fast") + ".db"
    found.append(Backend("SQLiteStore(durable=False)", lambda p=path: SQLiteStore(p, durable=False),
                         f"sqlite:///{path}", ("durable=false",)))  # fmt: skip
    path = fresh("durable") + ".db"
    found.append(Backend("SQLiteStore (fsync per commit)", lambda p=path: SQLiteStore(p),
                         f"sqlite:///{path}", fsyncs=True))  # fmt: skip
    if not shared:
        path = fresh("dir")
        found.append(Backend("DirectoryStore (fsync per write)", lambda p=path: DirectoryStore(p),
                             fsyncs=True))  # fmt: skip
    if servers.postgres:
        from corosnap.stores import PostgresStore  # type: ignore[attr-defined]

        schema = "bench_" + secrets.token_hex(3)
        dsn = servers.postgres
        found.append(Backend(
            "PostgresStore (synchronous commit)", lambda: PostgresStore(dsn, schema=schema),
            dsn, (f"schema={schema}",), fsyncs=True,
        ))  # fmt: skip
    if servers.redis:
        from corosnap.stores import RedisStore  # type: ignore[attr-defined]

        namespace = "bench-" + secrets.token_hex(3)
        url = servers.redis
        found.append(Backend(
            "RedisStore (appendfsync always)", lambda: RedisStore(url, namespace=namespace),
            url, (f"namespace={namespace}",), fsyncs=True,
        ))  # fmt: skip
    return found


# -- part 1: per await ----------------------------------------------------------------


def floor(store: Store, size: int, n: int) -> float:
    """Seconds for one compare-and-set put of a ``size``-byte record on ``store``."""
    blob = os.urandom(size)
    version = store.put("bench/floor", blob)
    t0 = time.perf_counter()
    for _ in range(n):
        version = store.put("bench/floor", blob, expected_version=version)
    return (time.perf_counter() - t0) / n


# The targets (docs/scheduler.md), on MemoryStore: the whole overhead of one
# await, and the corosnap.dumps of the workflow inside it (seconds).
TARGETS = {"per await": 40e-6, "corosnap.dumps": 10e-6}
TARGET_STORE = "MemoryStore"


def per_await(
    root: str, servers: Servers, n_fast: int, n_durable: int, repeat: int
) -> dict[str, dict[str, float]]:
    """Prints the table; returns each store's per-await time and dumps share."""
    measured: dict[str, dict[str, float]] = {}
    direct = min(_direct(n_fast) for _ in range(repeat))
    print(f"\n### Overhead per await ({n_fast} sequential awaits of a trivial step, "
          f"{n_durable} on the stores that fsync; steps inline)\n")  # fmt: skip
    print("| store | per await | corosnap.dumps | run record write | rest (engine, pickling) "
          "| writes per await | snapshot | run record | one commit (floor) | per await / floor |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for backend in backends(root, servers, shared=False):
        n = n_durable if backend.fsyncs else n_fast
        samples = []
        for _ in range(repeat):
            store = backend.make()
            s = scheduler(store, workers=0)
            run_id = s.start(awaits, n)
            t0 = time.perf_counter()
            stats = s.run_until_complete()
            elapsed = time.perf_counter() - t0
            assert s.result(run_id) == n * (n - 1) // 2
            record = stats.record_bytes // stats.checkpoints
            base = floor(store, record, n) if backend.fsyncs else None
            s.forget(run_id)
            store.close()
            samples.append((elapsed, stats, base))
        elapsed, stats, _ = sorted(samples, key=lambda x: x[0])[len(samples) // 2]
        # The floor's median over the repetitions: fsync times wander on a shared machine.
        floors = sorted(f for _, _, f in samples if f is not None)
        base = floors[len(floors) // 2] if floors else None
        per = elapsed / n
        dumps = stats.snapshot_seconds / stats.checkpoints
        write = stats.write_seconds / stats.checkpoints
        rest = per - dumps - write
        measured[backend.name] = {"per await": per, "corosnap.dumps": dumps}
        writes = (stats.writes + stats.history_writes) / n
        ratio = f"{per / base:.2f}x" if base else ""
        print(f"| {backend.name} | {_us(per)} | {_us(dumps)} | {_us(write)} | {_us(rest)} "
              f"| {writes:.2f} | {stats.snapshot_bytes // stats.checkpoints} B "
              f"| {stats.record_bytes // stats.checkpoints} B | {_us(base) if base else ''} "
              f"| {ratio} |")  # fmt: skip
    print(f"| (calling the step directly, no scheduler) | {_us(direct / n_fast)} "
          "| | | | | | | | |")  # fmt: skip
    return measured


def check_targets(measured: dict[str, dict[str, float]]) -> bool:
    """Prints the targets table; True when every target is met."""
    print(f"\n### Targets ({TARGET_STORE})\n")
    print("| target | measured | limit | result |")
    print("|---|---:|---:|---|")
    ok = True
    for name, limit in TARGETS.items():
        value = measured.get(TARGET_STORE, {}).get(name)
        verdict = "SKIP" if value is None else ("PASS" if value <= limit else "FAIL")
        ok = ok and verdict != "FAIL"
        shown = "n/a" if value is None else _us(value)
        print(f"| {name} | {shown} | <= {_us(limit)} | {verdict} |")
    return ok


def _direct(n: int) -> float:
    t0 = time.perf_counter()
    total = 0
    for i in range(n):
        total += noop(i)
    return time.perf_counter() - t0


def _us(seconds: float) -> str:
    if seconds >= 1e-3:
        return f"{seconds * 1e3:,.2f} ms"
    return f"{seconds * 1e6:,.0f} µs" if seconds >= 1e-6 else f"{seconds * 1e9:.0f} ns"


# -- part 2: throughput with several worker processes -----------------------------------


def worker_main(spec: str, options: list[str], threads: int) -> None:
    """A worker process: open the store, say ready, wait for "go", drive runs, print stats."""
    from corosnap.scheduler._cli import open_store, parse_options

    store = open_store(spec, parse_options(options))
    s = scheduler(store, threads)
    print("ready", flush=True)
    assert sys.stdin.readline().strip() == "go"
    stats = s.run_until_complete(timeout=600)
    print(json.dumps({"claims": stats.claims, "runs_done": stats.runs_done,
                      "checkpoints": stats.checkpoints, "writes": stats.writes}), flush=True)
    store.close()


def throughput(root: str, servers: Servers, count: int, durable_count: int) -> None:
    print("\n### Throughput: workflows started together, then 1, 2 or 4 worker processes\n")
    print("| store | workers | workflows | time | workflows/s | checkpoints/s "
          "| runs claimed per worker |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for backend in backends(root, servers, shared=True):
        for workers in (1, 2, 4):
            n = durable_count if "SQLite" in backend.name and backend.fsyncs else count
            store = backend.make()
            s = scheduler(store, 4)
            ids = [s.start(pipeline, [k, k + 1]) for k in range(n)]
            procs = [
                subprocess.Popen(
                    [sys.executable, __file__, "--worker", str(backend.spec), "4",
                     *backend.options],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
                    env={**os.environ, "PYTHONPATH": str(ROOT)},
                )  # fmt: skip
                for _ in range(workers)
            ]
            for p in procs:
                assert p.stdout is not None and p.stdout.readline().strip() == "ready"
            t0 = time.perf_counter()
            for p in procs:
                assert p.stdin is not None
                p.stdin.write("go\n")
                p.stdin.flush()
            results = []
            for p in procs:
                out, _ = p.communicate(timeout=900)
                assert p.returncode == 0, f"worker failed: {p.returncode}"
                results.append(json.loads(out.strip().splitlines()[-1]))
            elapsed = time.perf_counter() - t0
            assert sum(r["runs_done"] for r in results) == 2 * n
            assert s.result(ids[-1])["child"] == 8 * (2 * (n - 1) + 1)
            for run_id in ids:
                s.forget(run_id)
            store.close()
            checkpoints = sum(r["checkpoints"] for r in results)
            claims = "/".join(str(r["claims"]) for r in results)
            print(f"| {backend.name} | {workers} | {n} | {elapsed:.2f} s | {n / elapsed:,.0f} "
                  f"| {checkpoints / elapsed:,.0f} | {claims} |")  # fmt: skip


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker_main(sys.argv[2], sys.argv[4:], int(sys.argv[3]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts, one repetition")
    parser.add_argument("--awaits", type=int, default=2000)
    parser.add_argument("--durable-awaits", type=int, default=300)
    parser.add_argument("--workflows", type=int, default=400)
    parser.add_argument("--durable-workflows", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", default=None, help="where the stores go (default: temp dir)")
    parser.add_argument("--postgres", help="DSN of a PostgreSQL server to use")
    parser.add_argument("--redis", help="URL of a Redis server to use")
    parser.add_argument("--part", choices=["await", "throughput", "all"], default="all")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target FAILs")
    args = parser.parse_args()
    met = True
    if args.quick:
        args.awaits, args.durable_awaits = 200, 50
        args.workflows, args.durable_workflows, args.repeat = 40, 10, 1
    root = tempfile.mkdtemp(prefix="bench-scheduler-", dir=args.dir)
    servers = Servers(args.postgres, args.redis)
    try:
        servers.start()
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"corosnap scheduler benchmark: Python {platform.python_version()} on "
              f"{platform.machine()}, {os.cpu_count()} CPUs, load average {load}, "
              f"stores in {root}")  # fmt: skip
        for note in servers.notes:
            print(f"note: {note}")
        if args.part in ("await", "all"):
            measured = per_await(root, servers, args.awaits, args.durable_awaits, args.repeat)
            met = check_targets(measured)
        if args.part in ("throughput", "all"):
            throughput(root, servers, args.workflows, args.durable_workflows)
        print(f"\nload average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        servers.stop()
        shutil.rmtree(root, ignore_errors=True)
    return 1 if args.check and not met else 0


if __name__ == "__main__":
    sys.exit(main())



