"""The application of the many-workers crash test: ``tests.scheduler.many_workers:sched``.

Worker processes run it through the command-line worker (``python -m
corosnap.scheduler worker --store URL tests.scheduler.many_workers:sched``).
Every step appends to the file named by ``$MANY_WORKERS_LOG`` (one
``os.write`` on an ``O_APPEND`` file, so lines of different processes never
mix):

* ``start <run>/<seq> <attempt> <pid>`` as it starts;
* ``VIOLATION <run>/<seq> <pid>`` if its outcome is already recorded in the
  store (a recorded step must never run again).

``expected(n)`` is the result of workflow ``n`` computed directly.
"""

from __future__ import annotations

import hashlib
import os
import time
from typing import Any

from corosnap.scheduler import Scheduler, call, current_step, gather, sleep

FAN_OUT = 3
SLEEP = 0.2

sched = Scheduler(workers=4)
_fd = -1


def _h(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "big")


def _log(line: str) -> None:
    global _fd
    if _fd < 0:
        _fd = os.open(os.environ["MANY_WORKERS_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(_fd, line.encode() + b"\n")


def _start() -> Any:
    ctx = current_step()
    _log(f"start {ctx.idempotency_key} {ctx.attempt} {os.getpid()}")
    if any(s.seq == ctx.seq for s in sched.steps(ctx.run_id)):
        _log(f"VIOLATION {ctx.idempotency_key} {os.getpid()}")
    time.sleep(0.02 + (_h(ctx.idempotency_key) % 50) / 1000)  # kills land inside steps
    return ctx


@sched.function(retries=4, backoff=0.02)
def price(item: str) -> int:
    """Fails its first attempt for a third of the items (transient: retried)."""
    ctx = _start()
    if _h(item) % 3 == 0 and ctx.attempt == 1:
        raise ConnectionError(f"price service busy for {item}")
    return _h(item) % 1000


@sched.function
def charge(amount: int) -> int:
    _start()
    return amount * 2


@sched.function
def receipt(n: int, total: int) -> str:
    _start()
    return f"receipt-{n}-{total}"


@sched.workflow
async def order(n: int) -> dict[str, Any]:
    prices = await gather(*(call(price, f"{n}-{i}") for i in range(FAN_OUT)))
    before = time.time()
    await sleep(SLEEP)
    slept = time.time() - before >= SLEEP
    total = 0
    for p in prices[:2]:
        total += await call(charge, p)
    note = await call(paperwork, n, total)
    return {"prices": prices, "total": total, "note": note, "slept": slept}


@sched.workflow
async def paperwork(n: int, total: int) -> str:
    r = await call(receipt, n, total)
    return r.upper()


def expected(n: int) -> dict[str, Any]:
    prices = [_h(f"{n}-{i}") % 1000 for i in range(FAN_OUT)]
    total = sum(2 * p for p in prices[:2])
    return {"prices": prices, "total": total, "note": f"RECEIPT-{n}-{total}", "slept": True}


def run_id(n: int) -> str:
    return f"order-{n}"
