"""A corpus of (old code, new code) pairs and what must happen to a snapshot.

Each ``Case`` is one user story of deploying an edited function while work is
suspended in it: the old module source, the new one, the call and the number
of steps before the snapshot, how the old code's description travels
(``migratable`` blob, a ``manifest`` beside a plain blob, or ``plain`` with
neither), and the expected outcome on the new code in a fresh interpreter:

* ``resumes`` / ``migrates``: the exact trace of the run finished on the new
  code (yielded values and the return value, as ``repr`` strings);
* ``needs-migration`` / ``refused``: a regular expression the reason matches.

In sources, ``{OLD_FP}`` is replaced by the old version's fingerprint of
``ENTRY`` (so a new version can register an explicit migration for it).
``test_evolution_corpus.py`` runs them.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Case:
    name: str
    old: str
    new: str
    entry: str
    args: tuple = ()
    steps: int = 1
    sends_before: tuple = ()
    sends_after: tuple = ()
    mode: str = "migratable"
    expect: str = "migrates"
    trace: tuple = ()
    reason: str = ""
    how: tuple = ("automatic",)
    chain_entry: str = ""
    tags: tuple = field(default=())



COUNT = """
def job(items):
    total = 0
    for x in items:
        total += x
        got = yield total
    return total
"""

STEP = """
class Step:
    def __init__(self, v):
        self.v = v

    def __await__(self):
        return (yield self.v)
"""

CHAIN = STEP + """

async def leaf(x):
    got = await Step(x)
    return got * 2


async def middle(x):
    a = await leaf(x)
    return a + 1


async def top(x):
    r = await middle(x)
    return ("top", r)
"""

WORKFLOW = STEP + """

async def charge(customer):
    return await Step(("charge", customer))


async def ship(order):
    receipt = await charge(order["customer"])
    label = await Step(("label", order["id"]))
    return {"receipt": receipt, "label": label, "total": order["qty"] * 10}
"""

CASES: list[Case] = [
    # -- changes that migrate ------------------------------------------------------------
    Case("fix_after_resume_point", COUNT, COUNT.replace("return total", "return total * 10"),
         "job", ([1, 2, 3],), steps=2, trace=("6", "return 60")),
    Case("change_before_resume_point", """
def job(items):
    note = "v1"
    for x in items:
        got = yield (x, len(note))
    return got
""", """
def job(items):
    note = "version two"
    for x in items:
        got = yield (x, len(note))
    return got
""", "job", ([1, 2],), trace=("(2, 2)", "return None")),
    Case("logging_line_at_top", COUNT, """
import logging

LOG = logging.getLogger("corpus")


def job(items):
    LOG.info("job %r", items)
    total = 0
    for x in items:
        total += x
        got = yield total
    return total
""", "job", ([1, 2, 3],), trace=("3", "6", "return 6")),
    Case("constant_changed_in_code_already_run", """
def job():
    limit = 3
    n = 0
    while True:
        n += 1
        yield n
        if n >= limit:
            return ("stopped at", n)
""", """
def job():
    limit = 5
    n = 0
    while True:
        n += 1
        yield n
        if n >= limit:
            return ("stopped at", n)
""", "job", (), trace=("2", "3", "return ('stopped at', 3)")),
    Case("new_local_assigned_after_resume_point", COUNT, """
def job(items):
    total = 0
    for x in items:
        total += x
        got = yield total
        bonus = 100 if got else 0
        total += bonus
    return total
""", "job", ([1, 2, 3],), sends_after=(1, 0), trace=("103", "106", "return 106")),
    Case("dead_local_added_before_resume_point", COUNT, """
def job(items):
    unused = "not read anywhere"
    total = 0
    for x in items:
        total += x
        got = yield total
    return total
""", "job", ([1, 2, 3],), trace=("3", "6", "return 6")),
    Case("yield_added_earlier", COUNT, """
def job(items):
    yield "hello"
    total = 0
    for x in items:
        total += x
        got = yield total
    return total
""", "job", ([1, 2, 3],), steps=2, trace=("6", "return 6")),
    Case("loop_body_edited_while_in_the_loop", """
def job(items):
    out = []
    for x in items:
        out.append(x)
        got = yield len(out)
    return out
""", """
def job(items):
    out = []
    for x in items:
        out.append(x * 100)
        got = yield len(out)
        out.append("checked")
    return out
""", "job", ([1, 2, 3],), steps=2,
         trace=("4", "return [1, 2, 'checked', 300, 'checked']")),
    Case("try_added_around_resume_point", COUNT, """
def job(items):
    total = 0
    for x in items:
        total += x
        try:
            got = yield total
        except KeyError:
            got = None
    return total
""", "job", ([1, 2, 3],), trace=("3", "6", "return 6")),
    Case("new_parameter_with_default", COUNT, """
def job(items, scale=10):
    total = 0
    for x in items:
        total += x
        got = yield total
    return total * scale
""", "job", ([1, 2],), trace=("3", "return 30")),
    Case("suspended_in_except_block", """
def job():
    try:
        raise ValueError("boom")
    except ValueError as e:
        got = yield str(e)
        return got
""", """
def job():
    try:
        raise ValueError("boom")
    except ValueError as e:
        got = yield str(e)
        return (got, type(e).__name__)
""", "job", (), sends_after=("x",), trace=("return ('x', 'ValueError')",)),
    Case("closure_cells_migrate", """
def job():
    n = 1

    def bump():
        nonlocal n
        n += 1

    bump()
    got = yield n
    bump()
    return n
""", """
def job():
    n = 1

    def bump():
        nonlocal n
        n += 1

    bump()
    got = yield n
    bump()
    return n * 100
""", "job", (), trace=("return 300",)),
    Case("await_chain_leaf_changed", CHAIN, CHAIN.replace("got * 2", "got * 3"), "top", (5,),
         sends_after=(7,), trace=("return ('top', 22)",)),
    Case("await_chain_middle_changed", CHAIN, CHAIN.replace("a + 1", "a + 1000"), "top", (5,),
         sends_after=(7,), trace=("return ('top', 1014)",)),
    Case("await_chain_top_changed", CHAIN, CHAIN.replace('("top", r)', '("TOP", r, "v2")'),
         "top", (5,), sends_after=(7,), trace=("return ('TOP', 15, 'v2')",)),
    Case("await_chain_all_changed", CHAIN, CHAIN.replace("got * 2", "got * 3")
         .replace("a + 1", "a + 1000").replace('("top", r)', '("TOP", r)'), "top", (5,),
         sends_after=(7,), trace=("return ('TOP', 1021)",)),
    Case("workflow_bug_fixed_after_the_step", WORKFLOW, WORKFLOW.replace(
        '"total": order["qty"] * 10', '"total": order["qty"] * 12'), "ship",
         ({"id": 7, "customer": "ann", "qty": 3},), sends_after=("r-1", "L-7"),
         trace=("('label', 7)", "return {'receipt': 'r-1', 'label': 'L-7', 'total': 36}")),
    Case("manifest_beside_a_plain_blob", CHAIN, CHAIN.replace("a + 1", "a + 1000"), "top", (5,),
         mode="manifest", sends_after=(7,), trace=("return ('top', 1014)",)),
    Case("never_started_frame", COUNT, """
def job(items, start=100):
    total = start
    for x in items:
        total += x
        got = yield total
    return total
""", "job", ([1, 2],), steps=0, trace=("101", "103", "return 103")),
    Case("nested_generator_moved_in_its_function", """
def outer(n):
    def inner():
        for i in range(n):
            got = yield i
    return inner()
""", """
def outer(n):
    label = "a new constant"
    key = lambda v: v
    def inner():
        for i in range(n):
            got = yield i
    return inner()
""", "outer", (3,), trace=("1", "2", "return None")),
    Case("generator_expression_in_an_edited_function", """
def outer(items):
    return (x * 2 for x in items)
""", """
def outer(items):
    items = list(items) or ["a new constant"]
    return (x * 2 for x in items)
""", "outer", ([1, 2, 3],), trace=("4", "6", "return None")),
    Case("yield_from_helper_edited", """
def helper(n):
    for i in range(n):
        got = yield i
    return "helper done"


def job():
    r = yield from helper(3)
    return r
""", """
def helper(n):
    for i in range(n):
        got = yield i
        if got == "stop":
            return "stopped"
    return "helper v2"


def job():
    r = yield from helper(3)
    return r
""", "job", (), trace=("1", "2", "return 'helper v2'")),
    Case("comments_and_blank_lines_only", COUNT, """
# A header comment.


def job(items):
    # Sum the items, yielding the running total.
    total = 0

    for x in items:
        total += x  # add
        got = yield total
    return total
""", "job", ([1, 2, 3],), expect="resumes", trace=("3", "6", "return 6"), how=()),
    Case("explicit_migration_for_a_renamed_local", """
def job(items):
    lim = 2
    total = 0
    for x in items:
        total += x
        got = yield total
        if total > lim:
            return "over"
    return total
""", """
from corosnap.migrate import Resume, migration


def job(items):
    limit = 2
    total = 0
    for x in items:
        total += x
        got = yield total
        if total > limit:
            return "over"
    return total


@migration(job, "{OLD_FP}")
def _from_lim(old):
    new_locals = dict(old.locals)
    new_locals["limit"] = new_locals.pop("lim")
    return Resume(index=0, locals=new_locals)
""", "job", ([1, 1, 5],), trace=("2", "7", "return 'over'"), how=("explicit",)),
    Case("explicit_migration_moves_the_resume_point", """
def job():
    a = yield "first"
    b = yield "second"
    return a, b
""", """
from corosnap.migrate import Resume, migration


def job():
    a = yield "first"
    b = yield "second"
    c = yield "third"
    return a, b, c


@migration(job, "{OLD_FP}")
def _skip_to_the_third(old):
    # Suspended at "second": resume at the third yield instead, with b given.
    return Resume(index=2, locals={**old.locals, "b": "skipped"})
""", "job", (), steps=2, sends_before=(None, "A"), sends_after=("C",),
         trace=("return ('A', 'skipped', 'C')",), how=("explicit",)),
    Case("async_for_body_edited", STEP + """

class Ticks:
    def __init__(self, n):
        self.i, self.n = 0, n

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self.i >= self.n:
            raise StopAsyncIteration
        self.i += 1
        return self.i


async def job():
    seen = []
    async for t in Ticks(3):
        got = await Step(t)
        seen.append(got)
    return seen
""", STEP + """

class Ticks:
    def __init__(self, n):
        self.i, self.n = 0, n

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self.i >= self.n:
            raise StopAsyncIteration
        self.i += 1
        return self.i


async def job():
    seen = []
    async for t in Ticks(3):
        got = await Step(t)
        seen.append((t, got))
    return seen
""", "job", (), sends_after=("a", "b", "c"),
         trace=("2", "3", "return [(1, 'a'), (2, 'b'), (3, 'c')]")),
    Case("method_of_a_class", """
class Job:
    def run(self, items):
        for x in items:
            got = yield x
        return "v1"
""", """
class Job:
    def run(self, items):
        for x in items:
            got = yield x
        return "v2"
""", "Job", ([1, 2],), chain_entry="run", steps=1, trace=("2", "return 'v2'")),
    # -- refusals --------------------------------------------------------------------
    Case("new_local_read_before_assignment", COUNT, """
def job(items, scale=1):
    total = 0
    factor = scale * 2
    for x in items:
        total += x
        got = yield total
        total *= factor
    return total
""", "job", ([1, 2, 3],), expect="needs-migration",
         reason=r"new local 'factor' is read at line 8 after the resume point"),
    Case("yielded_expression_changed", """
def job(n):
    for i in range(n):
        got = yield i
""", """
def job(n):
    for i in range(n):
        got = yield i * 10
""", "job", (3,), expect="needs-migration",
         reason=r"the `yield` at line 4 in the old code has no counterpart.*`yield i \* 10`"),
    Case("renamed_local_without_a_migration", """
def job(items):
    lim = 2
    for x in items:
        got = yield x
        if x > lim:
            return "over"
""", """
def job(items):
    limit = 2
    for x in items:
        got = yield x
        if x > limit:
            return "over"
""", "job", ([1, 5],), expect="needs-migration", reason=r"new local 'limit' is read"),
    Case("resume_yield_removed", """
def job(a):
    first = yield a
    second = yield a + 1
    return first, second
""", """
def job(a):
    first = yield a
    return first, None
""", "job", (1,), steps=2, mode="manifest", expect="needs-migration",
         reason=r"`yield a \+ 1` \(line 4 in the old code\) has no counterpart"),
    Case("with_block_added_around_resume_point", """
def job(path):
    got = yield path
    return got
""", """
import contextlib


def job(path):
    with contextlib.nullcontext(path):
        got = yield path
    return got
""", "job", ("p",), expect="needs-migration",
         reason=r"inside the `with` block on `contextlib.nullcontext\(path\)`, which the old "
                r"frame never entered"),
    Case("moved_out_of_the_loop", """
def job(items):
    for x in items:
        got = yield x
    return None
""", """
def job(items):
    for x in items:
        pass
    got = yield x
    return None
""", "job", ([1, 2],), expect="needs-migration",
         reason=r"moved from inside the `for` loop over `items` to outside it"),
    Case("loop_bound_changed_while_in_the_loop", """
def job():
    for i in range(3):
        got = yield i
""", """
def job():
    for i in range(5):
        got = yield i
""", "job", (), expect="needs-migration", reason=r"a `for` loop that the new code changed"),
    Case("condition_on_the_path_changed", """
def job(x):
    if x > 3:
        got = yield x
        return got
    return None
""", """
def job(x):
    if x > 4:
        got = yield x
        return got
    return None
""", "job", (5,), expect="needs-migration", reason=r"conditions on every path"),
    Case("except_clause_changed", """
def job():
    try:
        raise KeyError("k")
    except KeyError:
        got = yield "handling"
        return got
""", """
def job():
    try:
        raise KeyError("k")
    except (KeyError, ValueError):
        got = yield "handling"
        return got
""", "job", (), expect="needs-migration", reason=r"conditions on every path"),
    Case("alike_yield_added_earlier", """
def job():
    a = yield None
    return a
""", """
def job():
    warmup = yield None
    a = yield None
    return a
""", "job", (), expect="needs-migration", reason=r"one of 1 alike suspension"),
    Case("await_removed_in_the_middle_of_a_chain", CHAIN, CHAIN.replace(
        "    a = await leaf(x)\n    return a + 1", "    return 1"), "top", (5,),
         expect="needs-migration", reason=r"middle\(\).*has no counterpart"),
    Case("local_became_a_cell", """
def job():
    n = 1
    got = yield n
    return got
""", """
def job():
    n = 1
    got = yield n
    return (lambda: n + got)()
""", "job", (), expect="needs-migration",
         reason=r"was a plain local in the old code and is a cell variable"),
    Case("generator_became_a_coroutine", """
def job():
    got = yield 1
    return got
""", """
import types


@types.coroutine
def job():
    got = yield 1
    return got
""", "job", (), expect="needs-migration", reason=r"was a generator and is now a generator-based"),
    Case("plain_blob_without_a_manifest", COUNT, COUNT.replace("return total", "return -total"),
         "job", ([1, 2],), mode="plain", expect="needs-migration",
         reason=r"carries no description of the old code"),
    Case("function_deleted", COUNT, """
def other():
    yield 1
""", "job", ([1],), expect="refused", reason=r"has no function 'job'"),
]

ACOUNT = """
async def job(items):
    total = 0
    for x in items:
        total += x
        got = yield total
    yield ("done", total)
"""

AGEN_CHAIN = STEP + """

async def ticks(n):
    for i in range(n):
        got = await Step(("tick", i))
        yield got


async def job(n):
    seen = []
    async for t in ticks(n):
        seen.append(t)
    return seen
"""

AGEN_CASES = [
    Case("async_generator_fix_after_resume_point", ACOUNT,
         ACOUNT.replace('("done", total)', '("done", total * 10)'), "job", ([1, 2, 3],),
         trace=("3", "6", "('done', 60)", "end")),
    Case("async_generator_logging_line_at_top", ACOUNT, """
import logging

LOG = logging.getLogger("corpus")


async def job(items):
    LOG.info("job %r", items)
    total = 0
    for x in items:
        total += x
        got = yield total
    yield ("done", total)
""", "job", ([1, 2, 3],), trace=("3", "6", "('done', 6)", "end")),
    Case("async_generator_manifest_beside_a_plain_blob", ACOUNT,
         ACOUNT.replace('("done", total)', '("done", -total)'), "job", ([1, 2],),
         mode="manifest", trace=("3", "('done', -3)", "end")),
    Case("async_generator_in_flight_under_async_for", AGEN_CHAIN,
         AGEN_CHAIN.replace("yield got", "yield (got, 'v2')"), "job", (2,),
         sends_after=("a", "b"), trace=("('tick', 1)", "return [('a', 'v2'), ('b', 'v2')]")),
    Case("async_generator_new_local_read_before_assignment", ACOUNT, """
async def job(items, scale=1):
    total = 0
    factor = scale * 2
    for x in items:
        total += x
        got = yield total
        total *= factor
    yield ("done", total)
""", "job", ([1, 2, 3],), expect="needs-migration",
         reason=r"new local 'factor' is read at line 8 after the resume point"),
    Case("async_generator_resume_yield_removed", """
async def job(a):
    first = yield a
    second = yield a + 1
    yield (first, second)
""", """
async def job(a):
    first = yield a
    yield (first, None)
""", "job", (1,), steps=2, mode="manifest", expect="needs-migration",
         reason=r"`yield a \+ 1` \(line 4 in the old code\) has no counterpart"),
    Case("async_generator_became_a_generator", ACOUNT, ACOUNT.replace("async def", "def"),
         "job", ([1, 2],), expect="needs-migration",
         reason=r"was an async generator and is now a generator"),
    Case("async_generator_plain_blob_without_a_manifest", ACOUNT,
         ACOUNT.replace('("done", total)', '("done", -total)'), "job", ([1, 2],),
         mode="plain", expect="needs-migration",
         reason=r"carries no description of the old code"),
]

CASES += AGEN_CASES
