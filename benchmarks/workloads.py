"""The benchmark workloads: ordinary generators and coroutines, suspended.

Everything in this module is written the way a user of corosnap would write
it: ordinary names, ordinary control flow, nothing shaped to make a snapshot
smaller.  The names of the functions and of this module end up inside every
snapshot (a snapshot refers to its code by module and qualified name), so they
are deliberately ordinary, neither padded nor shortened.

Each :class:`Workload` knows how to build its generator or coroutine and drive
it to the *measurement point* (``prepare``), and what the outside world sends
back for each value it yields (``reply``), so the benchmark can drive an
original and its restored copy to the end and compare what they did.

The module is imported as ``workloads`` (``benchmarks/`` is on ``sys.path``
when ``benchmarks/run.py`` runs), so the pickle floor can refer to
``workloads.Request`` by name, as corosnap does.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

# ---------------------------------------------------------------------------
# 1. counter: ``for i in range(n)`` after 3 yields


def counter(n):
    for i in range(n):  # noqa: UP028 - the workload *is* a for loop (a range iterator on the stack)
        yield i


# ---------------------------------------------------------------------------
# 2. a loop over 100 ints with a running total and a dict of results


def running_totals(numbers):
    total = 0
    totals = {}
    for number in numbers:
        total += number
        totals[number] = total
        yield total
    return totals


# ---------------------------------------------------------------------------
# 3. a chain of 5 generators, each of the outer four delegating to the next
#    with ``yield from``.  Five ordinary functions (the layers of a pipeline),
#    not one recursive function: that is what delegation looks like in real
#    code, and it makes every frame refer to different code.


def read_rows(n):
    for row in range(n):  # noqa: UP028 - a for loop, as users write it
        yield row
    return n


def parse(n):
    count = yield from read_rows(n)
    return count


def validate(n):
    count = yield from parse(n)
    return count


def transform(n):
    count = yield from validate(n)
    return count


def pipeline(n):
    count = yield from transform(n)
    return count


# ---------------------------------------------------------------------------
# 4. a 3-level ``async def`` chain awaiting a custom awaitable: the way a
#    framework hands a request to its scheduler and gets the answer back.


@dataclass
class Request:
    kind: str
    arg: Any

    def __await__(self):
        reply = yield self
        return reply


async def fetch_price(item):
    price = await Request("price", item)
    return price


async def price_order(items):
    total = 0
    for item in items:
        total += await fetch_price(item)
    return total


async def checkout(customer, items):
    total = await price_order(items)
    return {"customer": customer, "total": total}


PRICES = {"apple": 3, "pear": 4, "fig": 7, "plum": 2}


def answer_request(request):
    return PRICES[request.arg]


# 4b. the bare shape: three ``async def`` levels awaiting a
#     custom awaitable that carries one value.  The ``checkout`` chain above
#     carries real data (a customer, an item list, a dataclass request) and is
#     judged against its pickle floor instead.


class Ticket:
    def __init__(self, number):
        self.number = number

    def __eq__(self, other):
        return type(other) is Ticket and other.number == self.number

    __hash__ = None

    def __await__(self):
        answer = yield self
        return answer


async def lookup(number):
    answer = await Ticket(number)
    return answer


async def fetch(number):
    answer = await lookup(number)
    return answer + 1


async def handle(number):
    answer = await fetch(number)
    return answer * 2


def answer_ticket(ticket):
    return ticket.number * 10


# ---------------------------------------------------------------------------
# 5. a workflow-like loop with ``enumerate`` over 50 dict records


def review_orders(orders):
    approved = []
    total = 0.0
    for position, order in enumerate(orders):
        decision = yield ("review", position, order["id"])
        if decision == "approve":
            approved.append(order["id"])
            total += order["amount"]
    return {"approved": approved, "total": round(total, 2)}


def make_orders(count=50):
    rng = random.Random(5)
    return [
        {
            "id": 1000 + i,
            "customer": f"customer-{rng.randrange(1, 30)}",
            "amount": round(rng.uniform(5, 500), 2),
            "quantity": rng.randrange(1, 10),
            "status": "pending",
        }
        for i in range(count)
    ]


def decide(request):
    _, _, order_id = request
    return "reject" if order_id % 3 == 0 else "approve"


# ---------------------------------------------------------------------------
# 6. locals holding a 10,000-int list and 1 MB of bytes


def send_chunks(numbers, payload, chunk_size=65536):
    sent = 0
    for start in range(0, len(payload), chunk_size):
        yield payload[start : start + chunk_size]
        sent += chunk_size
    return min(sent, len(payload)), sum(numbers)


def make_payload(size=1_000_000):
    # Random bytes (from a fixed seed), so that compression cannot flatter anyone.
    return random.Random(6).randbytes(size)


# ---------------------------------------------------------------------------
# 7. an agent/workflow state: ~200 small frozen dataclass instances and enums


class Status(Enum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class Role(Enum):
    USER = 1
    ASSISTANT = 2
    TOOL = 3


@dataclass(frozen=True)
class Step:
    number: int
    name: str
    status: Status
    attempts: int


@dataclass(frozen=True)
class Message:
    role: Role
    text: str
    tokens: int


def run_agent(steps, history):
    results = []
    for step in steps:
        reply = yield ("run", step.number, step.name)
        results.append(Step(step.number, step.name, Status.DONE if reply else Status.FAILED,
                            step.attempts + 1))
        history.append(Message(Role.TOOL, f"{step.name}: {reply}", 12))
    return results


def make_agent_state(count=100):
    rng = random.Random(7)
    steps = [Step(i, f"step-{i}", Status.PENDING, 0) for i in range(count)]
    history = [
        Message(rng.choice(list(Role)), f"message {i}", rng.randrange(5, 200))
        for i in range(count)
    ]
    return run_agent(steps, history)


def answer_step(request):
    _, number, _ = request
    return number % 4 != 0


# ---------------------------------------------------------------------------
# 8. a token stream: a coroutine collecting what an async generator yields,
#    the generator awaiting each chunk from its source.  Measured while the
#    coroutine's ``async for`` has an ``__anext__()`` in flight.


async def stream_tokens(prompt, max_chunks):
    sent = 0
    while sent < max_chunks:
        chunk = await Request("chunk", (prompt, sent))
        sent += 1
        for token in chunk.split():
            yield token


async def summarize(prompt):
    tokens = []
    async for token in stream_tokens(prompt, 6):
        tokens.append(token)
    return " ".join(tokens)


def answer_chunk(request):
    prompt, n = request.arg
    return f"{prompt} part {n}"


# ---------------------------------------------------------------------------
# The registry


def no_reply(_value):
    return None


@dataclass(frozen=True)
class Workload:
    """One benchmark workload.

    ``start`` creates the generator/coroutine (not yet started); ``steps`` is
    how many values it yields before the measurement point; ``reply`` maps a
    yielded value to what is sent back in (the same rule for the original and
    the restored copy).
    """

    name: str
    description: str
    start: Callable[[], Any]
    steps: int
    reply: Callable[[Any], Any] = no_reply
    large: bool = False

    def prepare(self):
        """Return ``(obj, last)``: the object suspended at the measurement
        point and the last value it yielded (needed to resume it)."""
        obj = self.start()
        last = obj.send(None)
        for _ in range(self.steps - 1):
            last = obj.send(self.reply(last))
        return obj, last

    def make(self):
        """The suspended generator/coroutine at the measurement point."""
        return self.prepare()[0]

    def finish(self, obj, last):
        """Drive ``obj`` (suspended right after yielding ``last``) to the end.

        Returns ``(yielded, returned)``: every value yielded from here on and
        the return value.
        """
        yielded = []
        value = last
        while True:
            try:
                value = obj.send(self.reply(value))
            except StopIteration as stop:
                return yielded, stop.value
            yielded.append(value)


WORKLOADS = [
    Workload(
        "counter",
        "`for i in range(n)` counter (n=100) after 3 yields",
        lambda: counter(100),
        steps=3,
    ),
    Workload(
        "running_totals",
        "loop over 100 ints with a running total and a dict of results, after 50 yields",
        lambda: running_totals([(i * 7919) % 1009 for i in range(100)]),
        steps=50,
    ),
    Workload(
        "chain",
        "chain of 5 generators (4 nested `yield from`), after 3 yields",
        lambda: pipeline(100),
        steps=3,
    ),
    Workload(
        "coroutine_chain",
        "3-level `async def` chain awaiting a custom awaitable (one int inside)",
        lambda: handle(7),
        steps=1,
        reply=answer_ticket,
    ),
    Workload(
        "checkout",
        "3-level `async def` checkout awaiting a dataclass request, at the 2nd of 4 requests",
        lambda: checkout("alice", ["apple", "pear", "fig", "plum"]),
        steps=2,
        reply=answer_request,
    ),
    Workload(
        "records",
        "workflow-like loop with `enumerate` over 50 dict records, at record 20",
        lambda: review_orders(make_orders(50)),
        steps=20,
        reply=decide,
    ),
    Workload(
        "token_stream",
        "`async for` over an async generator awaiting each chunk, 3rd chunk in flight",
        lambda: summarize("weather report"),
        steps=3,
        reply=answer_chunk,
    ),
    Workload(
        "large",
        "locals holding a 10,000-int list and 1 MB of bytes, after 3 chunks",
        lambda: send_chunks(list(range(10_000)), make_payload()),
        steps=3,
        large=True,
    ),
    Workload(
        "dataclasses",
        "agent state: 100 frozen dataclass steps and 100 messages holding enums, at step 40",
        make_agent_state,
        steps=40,
        reply=answer_step,
    ),
]

BY_NAME = {workload.name: workload for workload in WORKLOADS}
