"""Workflows that iterate async generators whose steps are scheduler calls.

Module level, so snapshots name them.  ``LOG`` records each step execution
by its idempotency key, as ``workflows.LOG`` does.
"""

from __future__ import annotations

from typing import Any

from corosnap.scheduler import Scheduler, call, current_step, gather

LOG: list[str] = []


def fetch_page(page: int) -> list[int]:
    LOG.append(current_step().idempotency_key)
    return [page * 10 + i for i in range(3)]


def score(x: int) -> int:
    LOG.append(current_step().idempotency_key)
    return x * x


async def pages(n: int) -> Any:
    """A paginated reader: every page is a step, awaited inside the generator."""
    try:
        for page in range(n):
            items = await call(fetch_page, page)
            for item in items:
                yield item
    finally:
        LOG.append("pages finally")


async def scored(n: int) -> Any:
    """async for over another async generator, with a gather per item."""
    async for item in pages(n):
        a, b = await gather(call(score, item), call(score, item + 1))
        yield a + b


async def total_of(n: int) -> dict[str, Any]:
    total, seen = 0, 0
    async for value in scored(n):
        total += value
        seen += 1
        if seen == 4:
            break  # leaves both generators suspended: closed when dropped
    rest = pages(n)
    first = await anext(rest, None)
    await rest.aclose()
    return {"total": total, "seen": seen, "first": first}


def register(sched: Scheduler) -> Scheduler:
    sched.function()(fetch_page)
    sched.function()(score)
    sched.workflow(total_of)
    return sched
