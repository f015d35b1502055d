"""The application the command-line worker tests point at: ``tests.scheduler.cli_app:sched``.

A scheduler with the test workflows registered and no store: the worker
gets it from ``--store``.
"""

from __future__ import annotations

from corosnap.scheduler import Scheduler
from corosnap.stores import MemoryStore

from . import workflows as wf

sched = wf.register(Scheduler(workers=2, poll=0.05))

not_a_scheduler = 42
a_memory_store = MemoryStore()


def make_scheduler() -> Scheduler:
    return wf.register(Scheduler(workers=1))
