"""The workload of the SIGKILL crash test, and the fork server that runs it.

Run as ``python -m tests.scheduler.crash_workflows DB LOG`` from the repository
root: the server imports everything once, then for each line ``run N`` on
stdin forks a worker that starts batches ``0..N`` (idempotently: fixed run
ids) and calls ``run_until_complete()``.  It prints ``pid P`` when the worker
is forked and ``exit S`` (the raw wait status) when it is gone, so the test
can kill the worker at a random instant and know when it is dead.

Every step appends a line to LOG when it starts (``start <key> <attempt>
<pid>``), and a ``VIOLATION <key>`` line if its outcome is already recorded in
the store: a step whose outcome was recorded must never run again.  Lines
are written with one ``os.write`` on an ``O_APPEND`` file, so lines from
different processes never interleave.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from typing import Any

from corosnap.scheduler import PermanentError, Scheduler, call, current_step, gather, sleep
from corosnap.stores import SQLiteStore

ITEMS = 6  # fan-out width per batch
SLEEP = 0.05  # the durable timer in each batch, seconds

sched: Scheduler | None = None
_log_fd = -1


def _h(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "big")


def _start() -> Any:
    ctx = current_step()
    line = f"start {ctx.idempotency_key} {ctx.attempt} {os.getpid()}\n"
    os.write(_log_fd, line.encode())
    assert sched is not None
    if any(s.seq == ctx.seq for s in sched.steps(ctx.run_id)):
        os.write(_log_fd, f"VIOLATION {ctx.idempotency_key}\n".encode())
    time.sleep(0.002 + (_h(ctx.idempotency_key) % 8) / 1000)  # a few ms: kills land inside steps
    return ctx


# -- steps (pure functions of their arguments, apart from the flakiness) ----------------


def price(item: str) -> int:
    """Fails on its first attempt for a third of the items (transient, retried)."""
    ctx = _start()
    if _h(item) % 3 == 0 and ctx.attempt == 1:
        raise ConnectionError(f"price service busy for {item}")
    return _h(item) % 1000


def charge(amount: int) -> int:
    _start()
    return amount * 2


def declined(batch: int) -> None:
    """Always refuses odd batches for good, and fails even ones until retries run out."""
    _start()
    if batch % 2:
        raise PermanentError(f"card declined for batch {batch}")
    raise ConnectionError(f"gateway down for batch {batch}")


def receipt(batch: int, total: int) -> str:
    _start()
    return f"receipt-{batch}-{total}"


# -- workflows ---------------------------------------------------------------------


async def order(batch: int) -> dict[str, Any]:
    items = [f"{batch}-{i}" for i in range(ITEMS)]
    prices = await gather(*(call(price, item) for item in items))
    before = time.time()
    await sleep(SLEEP)
    slept_enough = time.time() - before >= SLEEP
    total = 0
    for p in prices[:3]:
        total += await call(charge, p)
    try:
        await call(declined, batch)
        outcome = "charged"
    except (PermanentError, ConnectionError) as exc:
        outcome = type(exc).__name__
    note = await call(paperwork, batch, total)
    return {"prices": prices, "total": total, "declined": outcome, "note": note,
            "slept_enough": slept_enough}  # fmt: skip


def paperwork(batch: int, total: int):  # type: ignore[no-untyped-def]
    """A generator workflow, run as a child of `order`."""
    r = yield call(receipt, batch, total)
    return r.upper()


def expected(batch: int) -> dict[str, Any]:
    prices = [_h(f"{batch}-{i}") % 1000 for i in range(ITEMS)]
    total = sum(2 * p for p in prices[:3])
    return {
        "prices": prices,
        "total": total,
        "declined": "PermanentError" if batch % 2 else "ConnectionError",
        "note": f"RECEIPT-{batch}-{total}",
        "slept_enough": True,
    }


def make_scheduler(db: str) -> Scheduler:
    s = Scheduler(SQLiteStore(db, durable=False), workers=4)
    s.function(retries=3, backoff=0.01)(price)
    s.function(charge)
    s.function(retries=2, backoff=0.01)(declined)
    s.function(receipt)
    s.workflow(order)
    s.workflow(paperwork)
    return s


def run_id(batch: int) -> str:
    return f"order-{batch}"


def worker(db: str, log_path: str, batches: int) -> None:
    global sched, _log_fd
    _log_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    sched = make_scheduler(db)
    for batch in range(batches + 1):
        sched.start(order, batch, run_id=run_id(batch))
    sched.run_until_complete(timeout=60)


def serve(db: str, log_path: str) -> None:
    """The fork server loop (see the module docstring)."""
    for line in sys.stdin:
        cmd, arg = line.split()
        assert cmd == "run"
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                worker(db, log_path, int(arg))
            except BaseException:
                import traceback

                traceback.print_exc()
                code = 1
            finally:
                os._exit(code)
        print(f"pid {pid}", flush=True)
        _, status = os.waitpid(pid, 0)
        print(f"exit {status}", flush=True)


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2])
