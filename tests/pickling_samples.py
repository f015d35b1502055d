"""Generators, coroutines and worker tasks for the buffer and pickling tests.

Importable by name (as ``pickling_samples``, the tests directory is on the
path here and in every worker process), because corosnap finds code again by
module and qualified name, and pickle finds the worker tasks the same way.
"""

from __future__ import annotations

import types
from typing import Any

SHARED: list[Any] = []
"""A module-level list: a frame holding it is stored by reference to it."""


def holds(*values):
    got = yield "ready"
    yield values, got


def chunks(data, size):
    """Streams a buffer in slices of a memoryview (what streaming code does)."""
    view = memoryview(data)
    sent = 0
    while sent < len(view):
        ack = yield bytes(view[sent:sent + size])
        sent += size if ack is None else ack
    return sent


def accumulate(start):
    """A running total over what is sent in; yields the total and a step count."""
    total = start
    steps = 0
    while True:
        x = yield total, steps
        total += x
        steps += 1


def outer(blob):
    """A yield from chain whose inner frame holds a large buffer."""
    head = blob[:4]
    tail = yield from inner(blob)
    return head, tail


def inner(blob):
    n = yield len(blob)
    return blob[-n:]


def uses_shared():
    SHARED.append("start")
    x = yield len(SHARED)
    SHARED.append(x)
    yield len(SHARED)


class Ready:
    """A module-level awaitable that suspends once and returns what is sent."""

    def __init__(self, value):
        self.value = value

    def __await__(self):
        got = yield self.value
        return got


async def compute(a, payload):
    """A coroutine with a large local, suspended inside an await chain."""
    b = await Ready(a + 1)
    c = await Ready(b * 2)
    return a, b, c, len(payload)


def advance(gen, sends):
    """Worker task: send each value in turn; return the generator and what it yielded."""
    out = [gen.send(v) for v in sends]
    return gen, out


def advance_graph(graph):
    """Worker task: advance every generator and coroutine of a graph by one step."""
    out = []
    for job in graph["jobs"]:
        out.append(job.send(len(out) + 1))
    out.append(graph["coro"].send(7))
    graph["results"] = out
    return graph


def installed_here():
    """Worker task: is the corosnap reducer registered in this process?"""
    import copyreg

    import corosnap.pickling

    return (corosnap.pickling.installed() is not None
            and copyreg.dispatch_table.get(types.GeneratorType) is not None)
