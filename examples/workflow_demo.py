"""corosnap durable-workflow demo: kill the worker half-way, resume in a new process.

    python examples/workflow_demo.py            # or: make demo

A workflow prices 20 items through a flaky simulated API (slow, failing a
quarter of the time, one item missing for good), five at a time with a pause
between batches, then publishes a report.  Process 1 runs it and is killed
with SIGKILL part-way through.  Process 2, a fresh interpreter running the
same code, resumes the run from its last checkpoint in the SQLite store and
finishes it.  Then the demo prints the result, the checkpoint sizes and what
ran where.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from typing import Any

from corosnap.scheduler import PermanentError, Scheduler, call, current_step, gather, sleep
from corosnap.stores import SQLiteStore

ITEMS = [f"item-{i:02d}" for i in range(1, 21)]
KILL_AFTER_STEPS = 8  # process 1 is killed once this many steps are recorded

# The first process makes a scratch directory; the workers it starts inherit it.
if "COROSNAP_DEMO_DIR" not in os.environ:
    os.environ["COROSNAP_DEMO_DIR"] = tempfile.mkdtemp(prefix="corosnap-demo-")
DEMO_DIR = os.environ["COROSNAP_DEMO_DIR"]
DB = os.path.join(DEMO_DIR, "runs.db")  # the store: one record per run, steps included
CALL_LOG = os.path.join(DEMO_DIR, "calls.log")  # one line per API call, for the summary
EVENTS = os.path.join(DEMO_DIR, "events.jsonl")  # checkpoint events from the scheduler's log

sched = Scheduler(SQLiteStore(DB), workers=4)


# -- the steps: ordinary functions ------------------------------------------------


@sched.function(retries=6, backoff=0.05, concurrency=4, timeout=5)
def fetch_quote(item: str) -> float:
    """The flaky simulated API: 30-120 ms per call, 25% transient failures, one 404."""
    step = current_step()
    with open(CALL_LOG, "a") as log:
        log.write(f"{step.idempotency_key} {item} {step.attempt} {os.getpid()}\n")
    time.sleep(random.uniform(0.03, 0.12))
    if item == "item-13":
        raise PermanentError(f"{item}: 404 not found")
    if random.random() < 0.25:
        raise ConnectionError(f"{item}: 503 service unavailable")
    digest = hashlib.blake2b(item.encode(), digest_size=2).digest()
    return round(int.from_bytes(digest, "big") / 100, 2)


@sched.function(retries=3)
def publish_report(prices: dict[str, float]) -> str:
    """Side effect with an idempotency key: a retried publish must not publish twice."""
    key = current_step().idempotency_key
    return f"report {key} ({len(prices)} prices)"


# -- the workflow: an ordinary async def ------------------------------------------


@sched.workflow
async def price_report(items: list[str]) -> dict[str, Any]:
    prices: dict[str, float] = {}
    missing: list[str] = []
    for start in range(0, len(items), 5):
        batch = items[start : start + 5]
        quotes = await gather(*(call(fetch_quote, i) for i in batch), return_exceptions=True)
        for item, quote in zip(batch, quotes, strict=True):
            if isinstance(quote, Exception):
                missing.append(item)
            else:
                prices[item] = quote
        await sleep(0.3)  # a durable timer: be gentle with the API between batches
    report = await call(publish_report, prices)
    return {
        "priced": len(prices),
        "missing": missing,
        "total": round(sum(prices.values()), 2),
        "report": report,
    }


# -- process 1 and process 2 ---------------------------------------------------------


class _Events(logging.Handler):
    """Keeps the scheduler's structured events (checkpoint sizes) in a JSON-lines file."""

    def __init__(self, path: str) -> None:
        super().__init__(logging.DEBUG)
        self.path = path

    def emit(self, record: logging.LogRecord) -> None:
        event = getattr(record, "scheduler_event", None)
        if event is not None:
            with open(self.path, "a") as f:
                f.write(json.dumps(event) + "\n")


def _shown(record: logging.LogRecord) -> bool:
    """On the console: INFO lines (starts, retries, ends) and the DEBUG line of each checkpoint."""
    event = getattr(record, "scheduler_event", None)
    return record.levelno >= logging.INFO or (event is not None and event["event"] == "checkpoint")


def worker(label: str) -> None:
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(logging.Formatter(f"  [{label}] %(message)s"))
    console.addFilter(_shown)
    logger = logging.getLogger("corosnap.scheduler")
    logger.setLevel(logging.DEBUG)
    logger.addHandler(console)
    logger.addHandler(_Events(EVENTS))
    sched.start(price_report, ITEMS, run_id="price-report")  # idempotent: started once
    sched.run_until_complete()


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "worker":
        worker(sys.argv[2])
        return
    try:
        run_demo()
    finally:
        if "--keep" in sys.argv:
            print(f"\nthe store and logs are in {DEMO_DIR}")
        else:
            shutil.rmtree(DEMO_DIR, ignore_errors=True)


def run_demo() -> None:
    command = [sys.executable, os.path.abspath(__file__), "worker"]
    print(f"== process 1: price {len(ITEMS)} items; SIGKILL after {KILL_AFTER_STEPS} steps ==")
    p1 = subprocess.Popen([*command, "process 1"])
    while recorded_steps() < KILL_AFTER_STEPS and p1.poll() is None:
        time.sleep(0.02)  # the demo watches the store; the scheduler itself never polls
    p1.send_signal(signal.SIGKILL)
    p1.wait()
    status = sched.status("price-report")
    waiting = len(status.waiting_on)
    print(f"== killed process 1 (pid {p1.pid}): the run is {status.state!r} after "
          f"{status.checkpoints} checkpoints, waiting on {waiting} op(s) ==")  # fmt: skip
    print("== process 2: a new interpreter resumes the run from the store ==")
    subprocess.run([*command, "process 2"], check=True)
    summarize(p1.pid)


def recorded_steps() -> int:
    try:
        return len(sched.steps("price-report"))
    except KeyError:
        return 0  # not started yet


def summarize(pid1: int) -> None:
    def where(pid: int) -> str:
        return "process 1" if pid == pid1 else "process 2"

    print("\n== summary ==")
    print(f"result: {sched.result('price-report')}")
    sizes: dict[str, list[tuple[int, int]]] = {"process 1": [], "process 2": []}
    with open(EVENTS) as f:
        for event in map(json.loads, f):
            if event["event"] == "checkpoint":
                sizes[where(event["pid"])].append((event["snapshot_bytes"], event["record_bytes"]))
    for proc, written in sizes.items():
        print(f"checkpoints by {proc}: {len(written)}; snapshot sizes (bytes): "
              f"{', '.join(str(s) for s, _ in written)}; run record with its metadata: "
              f"{min(r for _, r in written)}-{max(r for _, r in written)} bytes")  # fmt: skip
    steps = sched.steps("price-report")
    ran = Counter(where(s.pid) for s in steps)
    print(f"steps recorded: {len(steps)}: {ran['process 1']} by process 1, "
          f"{ran['process 2']} by process 2")  # fmt: skip
    with open(CALL_LOG) as f:
        calls = [line.split() for line in f]  # idempotency key, item, attempt, pid
    recorded_by = {f"price-report/{s.seq}": s.pid for s in steps}
    again = sorted({item for key, item, _, pid in calls
                    if int(pid) == pid1 and recorded_by[key] != pid1})  # fmt: skip
    retried = sum(1 for n in Counter(key for key, *_ in calls).values() if n > 1)
    print(f"API calls: {len(calls)} for {len(ITEMS)} items; {retried} items needed retries")
    print(f"started by process 1 but not recorded before the kill, so called again by "
          f"process 2 (at-least-once): {', '.join(again) or 'none'}")  # fmt: skip
    print(f"recorded by process 1 and never called again: {ran['process 1']} steps")


if __name__ == "__main__":
    main()
