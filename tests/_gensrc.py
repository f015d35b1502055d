"""Hypothesis strategies that write small random generator / coroutine modules.

Theory of operation
-------------------
``gen_modules()`` and ``coro_modules()`` draw a whole Python module as *source
text* (a :class:`GenModule`): module-level helpers (pure functions, helper
generators or coroutines, context-manager classes, an awaitable) and one entry
point ``main(p0, p1)`` that the differential driver (``_driver.py``) runs.

Rules every generated module obeys, so traces are exact and comparable:

* **It terminates.** ``for`` loops walk at most 3 items (``range`` bounds are
  reduced ``% 4``), ``while`` loops count a private counter up to at most 3,
  loop nesting is bounded, helpers only call helpers defined before them (no
  recursion).  The driver additionally caps the number of steps.
* **It is deterministic** in any process: values are ints, strings, tuples and
  lists (no sets, no ids, no floats), dicts are only iterated in insertion
  order, nothing reads the clock or the environment.
* **It does not fail by accident.** Variables are tracked per block, so a name
  is only read where it is definitely bound; ``//`` and ``%`` are guarded with
  ``(d or 1)``; ints and strings are only mixed through ``str()`` / f-strings.
  The only exceptions raised are ``ValueError('LN', int)`` on purpose, which an
  enclosing handler (``except ValueError``, or the ``Quiet`` context manager)
  usually catches; a few are left uncaught so the trace ends in an exception.
* **Side effects are visible.** Statements append to the module-level list
  ``LOG`` (context managers, ``finally`` blocks, closures, handlers and
  plain ``LOG.append`` statements); the driver compares ``LOG`` too.
* **Send protocol.** Every yield receives an int: the driver's step 0 is
  ``send(None)`` (== ``next``) and step ``k >= 1`` sends ``k * 7 % 5``.  So a
  ``(yield)`` result is always an int and can be used in arithmetic.

The source only uses syntax valid on CPython 3.11 and later (f-strings never
nest quotes; no ``break``/``continue``/``return`` inside ``finally``, which 3.14
warns about).

Generated constructs
--------------------
* Statements: assignments, augmented assignments (also to ``acc[-1]``,
  ``d['p']`` and ``box.v``), tuple and starred unpacking, ``del`` (the name
  must stay unbound across a snapshot), ``if``/``elif``/``else``, ``for`` (over
  ``range``, list and tuple literals, local lists that may shrink while being
  walked, ``dict.items()``/``.keys()``/``.values()`` with values changed
  mid-loop, ``enumerate``, ``zip``, ``reversed``, ``map``, ``filter``,
  ``iter``, a partly consumed local iterator, a string), bounded ``while``,
  ``for``/``while`` ... ``else``, conditional ``break``/``continue``/early
  ``return``, ``try``/``except``/``else``/``finally`` with yields in every part,
  bare ``raise`` after a yield in a handler, ``raise ... from``, exceptions
  raised while another is handled (``__context__``/``__cause__`` logged),
  ``with`` (one or two managers, one suppressing ``ValueError``).
* Delegation: ``x = yield from helper(a, b, acc)`` (helpers share the caller's
  list, so identity across frames matters) also inside expressions, helpers
  calling earlier helpers, a helper kept unstarted in a local, a generator
  started with ``next()`` and suspended in a local, ``yield from`` a generator
  expression, nested generator closures using ``nonlocal``.
* Values: small, negative and beyond-64-bit ints, non-ASCII / NUL / lone
  surrogate strings, bytes, bools, None, tuples, lists, dicts, ``Box``
  instances and aliases of them and of lists, bound methods (``ap =
  acc.append``), closures (inner ``def`` with ``nonlocal``, lambdas), list
  comprehensions.
* Half-evaluated expressions at a suspension: ``a + (yield b)``, ``f(a,
  (yield), c)``, keyword / ``*`` / ``**`` calls, ``acc.append((yield x))``,
  ``[a, (yield b), c]``, ``{'p': a, 'q': (yield b)}``, chained comparisons,
  f-strings (with conversions and format specs) containing a yield.
* Signatures: defaults, ``*rest``, keyword-only, ``**extra``.

The coroutine flavour replaces ``yield X`` by ``await Val(X)`` (``Val`` is a
module-level awaitable whose ``__await__`` is a generator) and ``yield from
h()`` by ``await h()``, and adds ``async with`` / ``async for`` on module
classes whose ``__aenter__``/``__aexit__``/``__anext__`` themselves await, and
async comprehensions (a suspended comprehension frame of its own).  It also
writes async generator helpers (``ag0``, ...: bodies like a coroutine
helper's, with ``yield <int>`` statements among the awaits, a bare
``return`` for an early exit and a last ``yield`` instead of a return
value), which ``main`` and later helpers iterate with ``async for`` (so a
snapshot often lands while an ``__anext__()`` is in flight inside one), or
hold in a local and drive with ``await anext(g, -1)`` and ``await
g.aclose()``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from _driver import module_name_for

ENTRY = "main"

# Constructs that the core is known to get wrong (see KNOWN_FAILURES in
# test_differential.py).  While a name is listed here the strategy steers
# around it, so the differential tests keep finding *other* bugs; remove it
# once the core handles it.  ``COROSNAP_GENSRC_AVOID`` overrides the set
# (comma separated; empty string = generate everything).
# Names the strategy knows how to steer around (for COROSNAP_GENSRC_AVOID):
# global_on_stack, finished_in_local, traceback_in_local, surrogate_str,
# exc_chain, dict_iter_identity (see FIXED in test_differential.py for each).
# All fixed since (still generated, and kept as regression tests in FIXED):
# global_on_stack, finished_in_local, traceback_in_local, surrogate_str,
# exc_chain, dict_iter_identity.
KNOWN_ISSUES: frozenset[str] = frozenset()


def _avoid_from_env() -> frozenset[str]:
    env = os.environ.get("COROSNAP_GENSRC_AVOID")
    if env is None:
        return KNOWN_ISSUES
    return frozenset(x.strip() for x in env.split(",") if x.strip())


AVOID = _avoid_from_env()

# ---------------------------------------------------------------------------
# module prelude: the fixed classes every generated module defines
# ---------------------------------------------------------------------------

_PRELUDE = '''\
# Generated by tests/_gensrc.py ({kind}). Deterministic, terminating.
LOG = []


class CM:
    """A context manager that records enter/exit (and the exception seen)."""

    def __init__(self, tag):
        self.tag = tag

    def __enter__(self):
        LOG.append(('enter', self.tag))
        return self.tag

    def __exit__(self, et, ev, tb):
        LOG.append(('exit', self.tag, None if et is None else et.__name__))
        return False


class Box:
    """A plain object with one int attribute (pickled by the fallback pickler)."""

    def __init__(self, v):
        self.v = v


def counter(n):
    """A generator that tolerates None being sent (it is started with next())."""
    total = 0
    for i in range(n):
        got = yield ('c', i)
        total += 0 if got is None else got
    return total


class Quiet:
    """A context manager that records and suppresses ValueError."""

    def __init__(self, tag):
        self.tag = tag

    def __enter__(self):
        LOG.append(('qenter', self.tag))
        return self.tag

    def __exit__(self, et, ev, tb):
        LOG.append(('qexit', self.tag, None if ev is None else ev.args))
        return et is ValueError
'''

_CORO_PRELUDE = '''

class Val:
    """An awaitable whose __await__ is a generator: yields value, returns the sent one."""

    def __init__(self, value):
        self.value = value

    def __await__(self):
        return (yield self.value)


class ACM:
    """An async context manager whose __aenter__/__aexit__ themselves await."""

    def __init__(self, tag):
        self.tag = tag

    async def __aenter__(self):
        got = await Val(('aenter', self.tag))
        LOG.append(('aenter', self.tag, got))
        return self.tag + got

    async def __aexit__(self, et, ev, tb):
        {drop_tb}got = await Val(('aexit', self.tag))
        LOG.append(('aexit', self.tag, got, None if et is None else et.__name__))
        return False


class ARange:
    """An async iterator over range(n) whose __anext__ awaits."""

    def __init__(self, n):
        self.i = 0
        self.n = n

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self.i >= self.n:
            raise StopAsyncIteration
        got = await Val(('anext', self.i))
        self.i += 1
        return self.i * 10 + got
'''


@dataclass(frozen=True)
class GenModule:
    """One generated module: its source, the entry function and its arguments."""

    source: str
    kind: str  # "gen" or "coro"
    args: tuple[int, ...]
    entry: str = ENTRY

    def __repr__(self) -> str:  # the source itself is shown by note() in the tests
        return f"GenModule({self.name}, kind={self.kind!r}, args={self.args!r})"

    @property
    def name(self) -> str:
        """A module name unique to this source (same source -> same name)."""
        return module_name_for(self.source)


# ---------------------------------------------------------------------------
# scopes
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """What a statement or expression may use at this point of the function."""

    is_async: bool
    ints: tuple[str, ...] = ()  # int-valued names definitely bound (assignable)
    ro_ints: tuple[str, ...] = ()  # int-valued, read-only: loop counters, ``e.args[1]``
    strs: tuple[str, ...] = ()  # str-valued names definitely bound
    seqs: tuple[str, ...] = ()  # local lists of ints; only ever shrink (``pop``)
    dicts: tuple[str, ...] = ()  # local dicts str -> int, never mutated
    boxes: tuple[str, ...] = ()  # local Box objects (attribute ``v``: int)
    lists: tuple[str, ...] = ("acc",)  # lists to append to (a helper's ``out`` is its caller's)
    appenders: tuple[str, ...] = ()  # bound ``append`` methods of those lists
    iters: tuple[str, ...] = ()  # local iterators over ints (maybe partly consumed)
    iter_dicts: tuple[str, ...] = ()  # dicts that an enclosing loop is iterating
    helpers: tuple[str, ...] = ()  # delegatable helpers, each taking (x, y)
    agens: tuple[str, ...] = ()  # async generator helpers, each taking (x, y, out)
    closures: tuple[str, ...] = ()  # plain callables taking one int, returning int
    gclosures: tuple[str, ...] = ()  # nested generator/coroutine closures taking one int
    pures: tuple[str, ...] = ()  # module-level pure functions taking 3 ints
    can_yield: bool = True
    in_loop: bool = False  # break / continue allowed
    in_finally: bool = False
    in_handler: str | None = None  # name bound by the innermost ``except ... as``
    catches: bool = False  # a ValueError raised here is caught by an enclosing handler
    loop_depth: int = 0
    max_loop_depth: int = 2
    depth: int = 0
    is_main: bool = True
    in_fstr: bool = False  # inside an f-string field: no nested f-string
    can_exit: bool = True  # break / continue / return / raise allowed

    @property
    def readable(self) -> tuple[str, ...]:
        return self.ints + self.ro_ints

    def with_(self, **kw: Any) -> Scope:
        return dataclasses.replace(self, **kw)

    def add(self, kind: str, name: str) -> Scope:
        cur: tuple[str, ...] = getattr(self, kind)
        if name in cur:
            return self
        return dataclasses.replace(self, **{kind: (*cur, name)})


def _indent(lines: list[str], n: int = 1) -> list[str]:
    pad = "    " * n
    return [pad + ln if ln else ln for ln in lines]


@dataclass
class _Builder:
    """Draws one module.  All randomness goes through ``draw`` so hypothesis shrinks it."""

    draw: Callable[[st.SearchStrategy[Any]], Any]
    is_async: bool
    avoid: frozenset[str] = AVOID
    counter: int = 0
    budget: int = 0  # statements left in the current function
    has_yield: bool = False
    helper_defs: list[str] = field(default_factory=list)
    in_agen: bool = False  # building an async generator: ``yield <int>`` statements too

    # -- primitive draws ---------------------------------------------------
    def n(self, lo: int, hi: int) -> int:
        return int(self.draw(st.integers(lo, hi)))

    def chance(self, percent: int) -> bool:
        # integers shrink towards 0, so the shrunk answer is "no"
        return self.n(0, 99) >= 100 - percent

    def pick(self, options: list[tuple[str, int]]) -> str:
        """Weighted choice; shrinks towards the first option with weight > 0."""
        live = [(name, w) for name, w in options if w > 0]
        total = sum(w for _, w in live)
        x = self.n(0, total - 1)
        for name, w in live:
            if x < w:
                return name
            x -= w
        raise AssertionError("unreachable")

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def tag(self) -> str:
        self.counter += 1
        return f"'L{self.counter}'"

    # -- yield spellings ---------------------------------------------------
    def y_expr(self, value: str | None) -> str:
        """A yield used as an expression (parenthesised)."""
        self.has_yield = True
        if self.is_async:
            return f"(await Val({value if value is not None else 'None'}))"
        return "(yield)" if value is None else f"(yield {value})"

    def y_stmt(self, value: str | None) -> str:
        self.has_yield = True
        if self.is_async:
            return f"await Val({value if value is not None else 'None'})"
        return "yield" if value is None else f"yield {value}"

    def delegate(self, call: str) -> str:
        self.has_yield = True
        return f"await {call}" if self.is_async else f"yield from {call}"

    # -- expressions -------------------------------------------------------
    def iexpr(self, sc: Scope, d: int = 2) -> str:
        """An int-valued expression.  Contains no string literal (f-string safe)."""
        can_y = sc.can_yield
        kind = self.pick(
            [
                ("lit", 3),
                ("biglit", 1),
                ("var", 7 if sc.readable else 0),
                ("attr", 2 if sc.boxes else 0),
                ("nextit", 1 if sc.iters else 0),
                ("add", 3 if d else 0),
                ("sub", 2 if d else 0),
                ("mul", 1 if d else 0),
                ("floordiv", 1 if d else 0),
                ("mod", 1 if d else 0),
                ("cond", 1 if d else 0),
                ("pure", 1 if d and sc.pures else 0),
                ("closure", 1 if d and sc.closures else 0),
                ("builtin", 1 if d else 0),
                ("comp", 1 if d else 0),
                ("len", 1 if d and (sc.strs or sc.seqs) else 0),
                ("yield", 3 if d and can_y else 0),
                ("yield_bare", 1 if d and can_y else 0),
                ("delegate", 1 if d and can_y and sc.helpers else 0),
                ("gdelegate", 1 if d and can_y and sc.gclosures else 0),
                ("acomp", 1 if d and can_y and self.is_async else 0),
            ]
        )
        if kind == "lit":
            return str(self.n(0, 9))
        if kind == "biglit":  # negative, and beyond 64 bits
            return self.draw(
                st.sampled_from(["(-3)", "(2 ** 70)", "(-(2 ** 64) - 1)", "(1 << 63)"])
            )
        if kind == "attr":
            return self.draw(st.sampled_from(sc.boxes)) + ".v"
        if kind == "nextit":
            return f"next({self.draw(st.sampled_from(sc.iters))}, -1)"
        if kind == "var":
            return self.draw(st.sampled_from(sc.readable))
        a = lambda: self.iexpr(sc, d - 1)  # noqa: E731
        if kind == "add":
            return f"({a()} + {a()})"
        if kind == "sub":
            return f"({a()} - {a()})"
        if kind == "mul":
            return f"(({a()} * {a()}) % 97)"
        if kind == "floordiv":
            return f"({a()} // ({a()} or 1))"
        if kind == "mod":
            return f"({a()} % ({a()} or 7))"
        if kind == "cond":
            return f"({a()} if {self.cond(sc, d - 1)} else {a()})"
        if kind == "pure":
            f = self.draw(st.sampled_from(sc.pures))
            return f"{f}({a()}, {a()}, {a()})"
        if kind == "closure":
            f = self.draw(st.sampled_from(sc.closures))
            return f"{f}({a()})"
        if kind == "builtin":
            b = self.pick([("abs", 1), ("max", 1), ("min", 1), ("sum", 1)])
            if b == "abs":
                return f"abs({a()})"
            if b == "sum":
                return f"sum([{a()}, {a()}])"
            return f"{b}({a()}, {a()})"
        if kind == "comp":
            inner = sc.with_(can_yield=False)
            body = self.iexpr(inner.add("ints", "t"), 1)
            src = self.iter_source(inner, d - 1)
            return f"sum([{body} for t in {src}])"
        if kind == "len":
            pool = [*sc.strs, *sc.seqs]
            return f"len({self.draw(st.sampled_from(pool))})"
        if kind == "yield":
            return self.y_expr(self.yvalue(sc, d - 1))
        if kind == "yield_bare":
            return self.y_expr(None)
        if kind == "delegate":
            return f"({self.delegate(self.helper_call(sc, d - 1))})"
        if kind == "gdelegate":
            g = self.draw(st.sampled_from(sc.gclosures))
            return f"({self.delegate(f'{g}({a()})')})"
        if kind == "acomp":  # a comprehension that suspends: its own nested frame
            self.has_yield = True
            inner = sc.with_(can_yield=False).add("ints", "t")
            if self.chance(50):
                return f"sum([{self.iexpr(inner, 0)} async for t in ARange({a()} % 3)])"
            return f"sum([(await Val(t)) for t in range({a()} % 3)])"
        raise AssertionError(kind)

    def iter_source(self, sc: Scope, d: int) -> str:
        """An iterable of at most 3 ints, without yields (used by comprehensions)."""
        kind = self.pick(
            [
                ("range", 4),
                ("list", 2),
                ("seq", 2 if sc.seqs else 0),
                ("tuple", 1),
                ("reversed", 1),
                ("map", 1),
                ("filter", 1),
                ("iter", 1),
            ]
        )
        if kind == "range":
            return f"range({self.iexpr(sc, d)} % 4)"
        if kind == "list":
            return f"[{', '.join(self.iexpr(sc, 0) for _ in range(self.n(0, 3)))}]"
        if kind == "seq":
            return self.draw(st.sampled_from(sc.seqs))
        if kind == "tuple":
            items = [self.iexpr(sc, 0) for _ in range(self.n(0, 3))]
            return f"({', '.join(items)},)" if items else "()"
        base = self.simple_source(sc, d)
        if kind == "reversed":
            return f"reversed({base})"
        if kind == "map":
            return f"map(abs, {base})"
        if kind == "filter":
            return f"filter(None, {base})"
        return f"iter({base})"

    def simple_source(self, sc: Scope, d: int) -> str:
        """A reversible sequence of at most 3 ints: a range, a list literal or a local list."""
        kind = self.pick([("range", 2), ("list", 1), ("seq", 1 if sc.seqs else 0)])
        if kind == "range":
            return f"range({self.iexpr(sc, d)} % 4)"
        if kind == "list":
            return f"[{', '.join(self.iexpr(sc, 0) for _ in range(self.n(0, 3)))}]"
        return self.draw(st.sampled_from(sc.seqs))

    def helper_call(self, sc: Scope, d: int) -> str:
        h = self.draw(st.sampled_from(sc.helpers))
        out = self.draw(st.sampled_from(sc.lists))  # shared with the helper's frame
        return f"{h}({self.iexpr(sc, d)}, {self.iexpr(sc, d)}, {out})"

    def sexpr(self, sc: Scope, d: int = 2) -> str:
        """A str-valued expression (uses single-quoted literals only)."""
        kind = self.pick(
            [
                ("lit", 2),
                ("var", 4 if sc.strs else 0),
                ("str", 2),
                ("fstr", 3 if d and not sc.in_fstr else 0),
                ("concat", 1 if d else 0),
            ]
        )
        if kind == "lit":
            # includes non-ASCII, a NUL and a lone surrogate (valid str, not UTF-8)
            lits = ["a", "bc", "xyz", "", "é", "日本", "\x00", "\udc80", 'q"q']
            if sc.in_fstr:  # 3.11: no backslash and no double quote inside a field
                lits = lits[:6]
            elif "surrogate_str" in self.avoid:
                lits.remove("\udc80")
            return repr(self.draw(st.sampled_from(lits)))
        if kind == "var":
            return self.draw(st.sampled_from(sc.strs))
        if kind == "str":
            return f"str({self.iexpr(sc, max(d - 1, 0))})"
        if kind == "fstr":
            sc = sc.with_(in_fstr=True)
            parts = []
            for _ in range(self.n(1, 3)):
                spec = self.draw(st.sampled_from(["", "", "!r", ":>4", ":^5"]))
                if sc.strs and self.chance(30):
                    parts.append("{" + self.draw(st.sampled_from(sc.strs)) + spec + "}")
                else:
                    spec = spec or self.draw(st.sampled_from(["", ":03d", ":x"]))
                    parts.append("{" + self.iexpr(sc, d - 1) + spec + "}")
            sep = self.draw(st.sampled_from(["-", ":", "", "/"]))
            return 'f"' + sep.join(parts) + '"'
        if kind == "concat":
            return f"({self.sexpr(sc, d - 1)} + {self.sexpr(sc, d - 1)})"
        raise AssertionError(kind)

    def cond(self, sc: Scope, d: int = 1) -> str:
        kind = self.pick(
            [
                ("cmp", 5),
                ("chain", 1),
                ("parity", 2),
                ("in", 1 if sc.seqs else 0),
                ("not", 1 if d else 0),
                ("and", 1 if d else 0),
                ("or", 1 if d else 0),
                ("str", 1 if sc.strs else 0),
            ]
        )
        dd = max(d, 1)
        if kind == "cmp":
            op = self.draw(st.sampled_from(["<", "<=", ">", ">=", "==", "!="]))
            return f"{self.iexpr(sc, dd)} {op} {self.iexpr(sc, dd)}"
        if kind == "chain":  # a < b <= c keeps b on the stack across the first test
            return f"{self.iexpr(sc, dd)} < {self.iexpr(sc, dd)} <= {self.iexpr(sc, dd)}"
        if kind == "parity":
            return f"{self.iexpr(sc, dd)} % 2 == {self.n(0, 1)}"
        if kind == "in":
            return f"{self.iexpr(sc, dd)} in {self.draw(st.sampled_from(sc.seqs))}"
        if kind == "not":
            return f"not ({self.cond(sc, d - 1)})"
        if kind == "and":
            return f"({self.cond(sc, d - 1)}) and ({self.cond(sc, d - 1)})"
        if kind == "or":
            return f"({self.cond(sc, d - 1)}) or ({self.cond(sc, d - 1)})"
        if kind == "str":
            s = self.draw(st.sampled_from(sc.strs))
            return f"len({s}) > {self.n(0, 3)}"
        raise AssertionError(kind)

    def yvalue(self, sc: Scope, d: int = 1) -> str | None:
        """A value to yield: int, str, tuple, list, None."""
        kind = self.pick(
            [
                ("int", 5),
                ("str", 2),
                ("tuple", 2),
                ("list", 1),
                ("acc", 1),
                ("const", 1),
                ("none", 1),
            ]
        )
        if kind == "const":
            consts = ["True", "False", "()", "[]", "(None,)", "b'\\x00b'"]
            return self.draw(st.sampled_from(consts[:-1] if sc.in_fstr else consts))
        dd = max(d, 0)
        if kind == "int":
            return self.iexpr(sc, dd)
        if kind == "str":
            return self.sexpr(sc, dd)
        if kind == "tuple":
            return f"({self.iexpr(sc, dd)}, {self.sexpr(sc, 0)})"
        if kind == "list":
            return f"[{self.iexpr(sc, dd)}, {self.iexpr(sc, dd)}]"
        if kind == "acc":
            return "tuple(acc)"
        return None

    # -- statements --------------------------------------------------------
    def statements(self, sc: Scope, lo: int, hi: int, ypct: int = 0) -> list[list[str]]:
        """Statements of one block (each a list of lines); their names stay in the block.

        With probability ``ypct`` percent a plain yield is put between two of them
        (compound statements use this so that most have a suspension point inside).
        """
        out: list[list[str]] = []
        start = sc
        for i in range(hi):
            # one "another statement?" draw per statement (not a count up front), so
            # the shrinker can delete a statement by deleting its own draws
            if self.budget <= 0 or (i >= lo and self.n(0, 99) < 22):
                break
            self.budget -= 1
            stmt, sc = self.stmt(sc)
            out.append(stmt)
        if start.can_yield and ypct and self.chance(ypct):
            out.insert(self.n(0, len(out)), [self.y_stmt(self.yvalue(start))])
        return out

    def block(self, sc: Scope, lo: int = 1, hi: int = 4, ypct: int = 50) -> list[str]:
        """A block of statements as lines (``pass`` if empty)."""
        lines = [ln for stmt in self.statements(sc, lo, hi, ypct) for ln in stmt]
        return lines or ["pass"]

    def stmt(self, sc: Scope) -> tuple[list[str], Scope]:
        deep = sc.depth < 3
        loops_ok = deep and sc.loop_depth < sc.max_loop_depth
        y = sc.can_yield
        ex = sc.can_exit and not sc.in_finally
        kind = self.pick(
            [
                ("assign", 6),
                ("augassign", 3 if sc.ints else 0),
                ("sassign", 2),
                ("log", 3),
                ("append", 2),
                ("yield", 6 if y else 0),
                ("yassign", 4 if y else 0),
                ("delegate", 3 if y and sc.helpers else 0),
                ("unstarted", 1 if y and deep and (sc.helpers or not self.is_async) else 0),
                ("genexp", 1 if y and not self.is_async else 0),
                ("gclosure", 1 if y and sc.gclosures else 0),
                ("seq", 2),
                ("dict", 2),
                ("unpack", 1),
                ("bind", 1),
                ("iterlocal", 1),
                ("dset", 2 if sc.dicts else 0),
                ("box", 1),
                ("boxset", 2 if sc.boxes else 0),
                ("alias", 1 if sc.boxes or sc.seqs else 0),
                ("pop", 1 if sc.seqs else 0),
                ("subaug", 1),
                ("unbound", 1 if y else 0),
                ("if", 3 if deep else 0),
                ("for", 3 if loops_ok else 0),
                ("while", 1 if loops_ok else 0),
                ("try", 3 if deep else 0),
                ("with", 2 if deep else 0),
                ("async_with", 1 if deep and self.is_async else 0),
                ("async_for", 1 if loops_ok and self.is_async else 0),
                ("agen_for", 6 if loops_ok and sc.agens else 0),
                ("agen_anext", 2 if y and deep and sc.agens else 0),
                ("raise", 3 if sc.catches and ex else 0),
                ("raise_uncaught", 2 if not sc.catches and ex else 0),
                ("reraise", 3 if sc.in_handler and ex else 0),
                ("nested_exc", 2 if sc.in_handler and sc.depth < 5 else 0),
                ("break", 1 if sc.in_loop and ex else 0),
                ("continue", 1 if sc.in_loop and ex else 0),
                ("return", 1 if sc.depth > 0 and ex else 0),
            ]
        )
        method = getattr(self, f"s_{kind}")
        out: tuple[list[str], Scope] = method(sc)
        return out

    def s_assign(self, sc: Scope) -> tuple[list[str], Scope]:
        if sc.ints and self.chance(40):
            name = self.draw(st.sampled_from(sc.ints))
        else:
            name = self.fresh("v")
        return [f"{name} = {self.iexpr(sc)}"], sc.add("ints", name)

    def s_augassign(self, sc: Scope) -> tuple[list[str], Scope]:
        name = self.draw(st.sampled_from(sc.ints))
        op = self.draw(st.sampled_from(["+=", "-="]))
        return [f"{name} {op} {self.iexpr(sc)}"], sc

    def s_sassign(self, sc: Scope) -> tuple[list[str], Scope]:
        name = self.draw(st.sampled_from(sc.strs)) if sc.strs and self.chance(40) else None
        name = name or self.fresh("s")
        return [f"{name} = {self.sexpr(sc)}"], sc.add("strs", name)

    def s_log(self, sc: Scope) -> tuple[list[str], Scope]:
        if "global_on_stack" in self.avoid:
            sc = sc.with_(can_yield=False)
        value = self.sexpr(sc) if self.chance(25) else self.iexpr(sc)
        return [f"LOG.append(({self.tag()}, {value}))"], sc

    def s_append(self, sc: Scope) -> tuple[list[str], Scope]:
        lst = self.draw(st.sampled_from(sc.lists))
        kind = self.pick([("append", 4), ("extend", 1), ("bound", 2 if sc.appenders else 0)])
        if kind == "extend":
            return [f"{lst}.extend([{self.iexpr(sc, 1)}, {self.iexpr(sc, 1)}])"], sc
        if kind == "bound":  # a bound method in a local: its __self__ is the list
            return [f"{self.draw(st.sampled_from(sc.appenders))}({self.iexpr(sc)})"], sc
        return [f"{lst}.append({self.iexpr(sc)})"], sc

    def s_bind(self, sc: Scope) -> tuple[list[str], Scope]:
        name = self.fresh("ap")
        return [f"{name} = {self.draw(st.sampled_from(sc.lists))}.append"], sc.add(
            "appenders", name
        )

    def s_iterlocal(self, sc: Scope) -> tuple[list[str], Scope]:
        name = self.fresh("it")
        lines = [f"{name} = iter({self.simple_source(sc, 1)})"]
        if self.chance(50):
            lines.append(f"LOG.append(({self.tag()}, next({name}, -1)))")
        return lines, sc.add("iters", name)

    def s_dset(self, sc: Scope) -> tuple[list[str], Scope]:
        """Change a value of a dict (every generated dict has key 'p'), maybe mid-iteration."""
        pool = sc.dicts
        if "dict_iter_identity" in self.avoid:
            pool = tuple(d for d in pool if d not in sc.iter_dicts)
        if not pool:
            return self.s_log(sc)
        return [f"{self.draw(st.sampled_from(pool))}['p'] = {self.iexpr(sc)}"], sc

    def s_yield(self, sc: Scope) -> tuple[list[str], Scope]:
        if self.in_agen and self.chance(50):
            # the async generator's own yield: an int for the consumer's loop
            return [f"yield {self.iexpr(sc, 1)}"], sc
        return [self.y_stmt(self.yvalue(sc))], sc

    def s_yassign(self, sc: Scope) -> tuple[list[str], Scope]:
        name = self.fresh("v")
        kind = self.pick(
            [
                ("plain", 3),
                ("half", 2),
                ("call", 1),
                ("kwcall", 1 if sc.pures else 0),
                ("fstr", 1),
                ("list", 1),
                ("dict", 1),
            ]
        )
        if kind == "kwcall":  # keyword / star / double-star calls, half evaluated
            f = self.draw(st.sampled_from(sc.pures))
            vals = [self.iexpr(sc, 1), self.iexpr(sc, 1), self.iexpr(sc, 1)]
            vals[self.n(0, 2)] = self.y_expr(self.yvalue(sc, 0) if self.chance(50) else None)
            shape = self.pick([("kw", 1), ("star", 1), ("dstar", 1)])
            if shape == "kw":
                call = f"{f}({vals[0]}, z={vals[2]}, y={vals[1]})"
            elif shape == "star":
                call = f"{f}({vals[0]}, *[{vals[1]}, {vals[2]}])"
            else:
                call = f"{f}(**{{'x': {vals[0]}, 'y': {vals[1]}, 'z': {vals[2]}}})"
            return [f"{name} = {call}"], sc.add("ints", name)
        if kind == "dict":  # a dict display half built when suspended
            dname = self.fresh("d")
            rhs = f"{{'p': {self.iexpr(sc, 1)}, 'q': {self.y_expr(self.iexpr(sc, 1))}}}"
            return [f"{dname} = {rhs}"], sc.add("dicts", dname)
        if kind == "plain":
            rhs = self.y_stmt(self.yvalue(sc))
            return [f"{name} = {rhs}"], sc.add("ints", name)
        if kind == "half":  # a + (yield b)
            op = self.draw(st.sampled_from(["+", "-"]))
            rhs = f"{self.iexpr(sc, 1)} {op} {self.y_expr(self.yvalue(sc, 1))}"
            return [f"{name} = {rhs}"], sc.add("ints", name)
        if kind == "call":  # f(a, (yield), c)
            if sc.pures:
                f = self.draw(st.sampled_from(sc.pures))
                args = [self.iexpr(sc, 1), self.y_expr(None), self.iexpr(sc, 1)]
                return [f"{name} = {f}({', '.join(args)})"], sc.add("ints", name)
            return [f"acc.append({self.y_expr(self.yvalue(sc, 1))})"], sc
        if kind == "fstr":
            sname = self.fresh("s")
            fsc = sc.with_(in_fstr=True)
            rhs = f'f"{{{self.iexpr(fsc, 1)}}}<{{{self.y_expr(self.iexpr(fsc, 1))}}}>"'
            return [f"{sname} = {rhs}"], sc.add("strs", sname)
        # a list display that is half built when suspended
        seq = self.fresh("q")
        rhs = f"[{self.iexpr(sc, 1)}, {self.y_expr(self.iexpr(sc, 1))}, {self.iexpr(sc, 1)}]"
        return [f"{seq} = {rhs}"], sc.add("seqs", seq)

    def s_unpack(self, sc: Scope) -> tuple[list[str], Scope]:
        a, b = self.fresh("v"), self.fresh("v")
        if self.chance(50):
            return [f"{a}, {b} = {self.iexpr(sc, 1)}, {self.iexpr(sc, 1)}"], sc.add("ints", a).add(
                "ints", b
            )
        q = self.fresh("q")
        items = ", ".join(self.iexpr(sc, 1) for _ in range(self.n(1, 3)))
        return [f"{a}, *{q} = [{items}]"], sc.add("ints", a).add("seqs", q)

    def s_box(self, sc: Scope) -> tuple[list[str], Scope]:
        name = self.fresh("b")
        return [f"{name} = Box({self.iexpr(sc)})"], sc.add("boxes", name)

    def s_boxset(self, sc: Scope) -> tuple[list[str], Scope]:
        name = self.draw(st.sampled_from(sc.boxes))
        op = self.draw(st.sampled_from(["=", "+=", "-="]))
        return [f"{name}.v {op} {self.iexpr(sc)}"], sc

    def s_alias(self, sc: Scope) -> tuple[list[str], Scope]:
        """A second name for the same object: identity must survive the snapshot."""
        kind = "boxes" if sc.boxes and (not sc.seqs or self.chance(50)) else "seqs"
        src = self.draw(st.sampled_from(getattr(sc, kind)))
        name = self.fresh("b" if kind == "boxes" else "q")
        return [f"{name} = {src}"], sc.add(kind, name)

    def s_pop(self, sc: Scope) -> tuple[list[str], Scope]:
        # shrinking a list (maybe one a loop is walking) keeps every loop bounded
        q = self.draw(st.sampled_from(sc.seqs))
        return [f"if {q}:", f"    LOG.append(({self.tag()}, {q}.pop()))"], sc

    def s_subaug(self, sc: Scope) -> tuple[list[str], Scope]:
        """Augmented assignment to a subscript: container and key stay on the stack."""
        if self.chance(50):
            return ["if acc:", f"    acc[-1] += {self.iexpr(sc)}"], sc
        d = self.fresh("d")
        return [f"{d} = {{'p': {self.iexpr(sc, 0)}}}", f"{d}['p'] += {self.iexpr(sc)}"], sc.add(
            "dicts", d
        )

    def s_unbound(self, sc: Scope) -> tuple[list[str], Scope]:
        """A deleted local stays unbound (not None) across a snapshot."""
        u = self.fresh("u")
        return [
            f"{u} = {self.iexpr(sc, 1)}",
            f"del {u}",
            self.y_stmt(self.yvalue(sc)),
            "try:",
            f"    LOG.append(('bound', {u}))",
            "except NameError:",
            f"    LOG.append(('unbound', {self.tag()}))",
        ], sc

    def s_delegate(self, sc: Scope) -> tuple[list[str], Scope]:
        call = self.helper_call(sc, 1)
        if self.chance(30):
            return [self.delegate(call)], sc
        name = self.fresh("v")
        return [f"{name} = {self.delegate(call)}"], sc.add("ints", name)

    def s_unstarted(self, sc: Scope) -> tuple[list[str], Scope]:
        # a helper generator/coroutine object held unstarted in a local across yields
        # (or, for generators, started by next() and so suspended in a local)
        g = self.fresh("g")
        name = self.fresh("v")
        started = not self.is_async and (not sc.helpers or self.chance(40))
        if started:  # then `yield from` resumes it with None: only counter() copes with that
            lines = [f"{g} = counter({self.iexpr(sc, 1)} % 3 + 1)"]  # next() cannot finish it
            lines.append(f"LOG.append(('first', next({g}, -1)))")
        else:
            lines = [f"{g} = {self.helper_call(sc, 1)}"]
        # no early exit in between, so the object is always delegated to
        lines += self.block(sc.with_(depth=sc.depth + 1, can_exit=False), 1, 2)
        if "finished_in_local" in self.avoid:  # also when the helper raises
            lines += ["try:", f"    {name} = {self.delegate(g)}", "finally:", f"    del {g}"]
        else:
            lines.append(f"{name} = {self.delegate(g)}")
        return lines, sc.add("ints", name)

    def s_genexp(self, sc: Scope) -> tuple[list[str], Scope]:
        inner = sc.with_(can_yield=False).add("ints", "t")
        body = self.iexpr(inner, 1)
        src = self.iter_source(sc.with_(can_yield=False), 1)
        return [self.delegate(f"({body} for t in {src})")], sc

    def s_gclosure(self, sc: Scope) -> tuple[list[str], Scope]:
        g = self.draw(st.sampled_from(sc.gclosures))
        name = self.fresh("v")
        return [f"{name} = {self.delegate(f'{g}({self.iexpr(sc, 1)})')}"], sc.add("ints", name)

    def s_seq(self, sc: Scope) -> tuple[list[str], Scope]:
        name = self.fresh("q")
        items = ", ".join(self.iexpr(sc, 1) for _ in range(self.n(0, 3)))
        return [f"{name} = [{items}]"], sc.add("seqs", name)

    def s_dict(self, sc: Scope) -> tuple[list[str], Scope]:
        name = self.fresh("d")
        keys = self.draw(st.lists(st.sampled_from("qrs"), max_size=2, unique=True))
        keys.insert(self.n(0, len(keys)), "p")
        items = ", ".join(f"'{k}': {self.iexpr(sc, 1)}" for k in keys)
        return [f"{name} = {{{items}}}"], sc.add("dicts", name)

    def s_if(self, sc: Scope) -> tuple[list[str], Scope]:
        inner = sc.with_(depth=sc.depth + 1)
        lines = [f"if {self.cond(sc)}:"] + _indent(self.block(inner))
        shape = self.pick([("if", 2), ("else", 2), ("elif", 1)])
        if shape == "elif":
            lines += [f"elif {self.cond(sc)}:"] + _indent(self.block(inner))
        if shape in ("else", "elif"):
            lines += ["else:"] + _indent(self.block(inner))
        return lines, sc

    def s_for(self, sc: Scope) -> tuple[list[str], Scope]:
        inner = sc.with_(
            depth=sc.depth + 1,
            loop_depth=sc.loop_depth + 1,
            in_loop=True,
            in_finally=False,
        )
        kind = self.pick(
            [
                ("range", 4),
                ("literal", 2),
                ("seq", 2 if sc.seqs else 0),
                ("items", 2),
                ("keys", 1),
                ("values", 1),
                ("enumerate", 2),
                ("zip", 2),
                ("iter", 2),
                ("iterlocal", 1 if sc.iters else 0),
                ("chars", 1 if sc.strs else 0),
            ]
        )
        pre: list[str] = []
        if kind in ("items", "keys", "values") and (not sc.dicts or self.chance(30)):
            pre, sc = self.s_dict(sc)
            inner = inner.add("dicts", pre[0].split(" = ")[0])
        i = self.fresh("i")
        if kind == "range":
            shape = self.pick([("n", 2), ("expr", 2), ("lohi", 1)])
            if shape == "n":
                head, inner = f"for {i} in range({self.n(0, 3)}):", inner.add("ints", i)
            elif shape == "expr":
                head = f"for {i} in range({self.iexpr(sc, 1)} % 4):"
                inner = inner.add("ints", i)
            else:
                lo = self.n(-2, 2)
                head, inner = f"for {i} in range({lo}, {lo + self.n(0, 3)}):", inner.add("ints", i)
        elif kind == "literal":
            items = ", ".join(self.iexpr(sc, 1) for _ in range(self.n(0, 3)))
            head, inner = f"for {i} in [{items}]:", inner.add("ints", i)
        elif kind == "seq":
            head = f"for {i} in {self.draw(st.sampled_from(sc.seqs))}:"
            inner = inner.add("ints", i)
        elif kind in ("items", "keys", "values"):
            dname = pre[0].split(" = ")[0] if pre else self.draw(st.sampled_from(sc.dicts))
            inner = inner.add("iter_dicts", dname)
            if kind == "items":
                k = self.fresh("k")
                head = f"for {k}, {i} in {dname}.items():"
                inner = inner.add("strs", k).add("ints", i)
            elif kind == "keys":
                head, inner = f"for {i} in {dname}.keys():", inner.add("strs", i)
            else:
                head, inner = f"for {i} in {dname}.values():", inner.add("ints", i)
        elif kind == "iter":  # tuple, reversed, map, filter, iter(...)
            head = f"for {i} in {self.iter_source(sc, 1)}:"
            inner = inner.add("ints", i)
        elif kind == "iterlocal":  # the same iterator object as a local: identity
            head = f"for {i} in {self.draw(st.sampled_from(sc.iters))}:"
            inner = inner.add("ints", i)
        elif kind == "chars":
            head = f"for {i} in {self.draw(st.sampled_from(sc.strs))}[:3]:"
            inner = inner.add("strs", i)
        elif kind == "enumerate":
            j = self.fresh("j")
            src = self.iter_source(sc, 1)
            head = f"for {j}, {i} in enumerate({src}):"
            inner = inner.add("ints", j).add("ints", i)
        else:
            j = self.fresh("j")
            a = self.iter_source(sc, 1)
            b = self.iter_source(sc, 1)
            head = f"for {j}, {i} in zip({a}, {b}):"
            inner = inner.add("ints", j).add("ints", i)
        stmts = self.statements(inner, 1, 4, ypct=50)
        if inner.iter_dicts != sc.iter_dicts and "dict_iter_identity" not in self.avoid:
            if self.chance(50):  # change a value the rest of this loop will read
                dset = f"{inner.iter_dicts[-1]}['p'] = {self.iexpr(sc)}"
                stmts.insert(self.n(0, len(stmts)), [dset])
        body = [ln for stmt in stmts for ln in stmt] or ["pass"]
        return pre + [head] + _indent(body) + self.loop_else(sc), sc

    def loop_else(self, sc: Scope) -> list[str]:
        """Sometimes an ``else:`` after a loop (runs when the loop did not break)."""
        if not self.chance(15):
            return []
        return ["else:"] + _indent(self.block(sc.with_(depth=sc.depth + 1), 1, 2))

    def s_while(self, sc: Scope) -> tuple[list[str], Scope]:
        w = self.fresh("w")  # never added to the scope: nothing else may write it
        inner = sc.with_(
            depth=sc.depth + 1, loop_depth=sc.loop_depth + 1, in_loop=True, in_finally=False
        )
        # w is read-only for the body: an assignment to it could loop forever
        lines = [f"{w} = 0", f"while {w} < {self.n(0, 3)}:", f"    {w} += 1"]
        body = _indent(self.block(inner.add("ro_ints", w)))
        return lines + body + self.loop_else(sc), sc

    def s_try(self, sc: Scope) -> tuple[list[str], Scope]:
        inner = sc.with_(depth=sc.depth + 1)
        shape = self.pick([("except", 3), ("finally", 2), ("full", 2)])
        body_sc = inner.with_(catches=True) if shape in ("except", "full") else inner
        lines = ["try:"] + _indent(self.block(body_sc))
        if shape in ("except", "full") and self.chance(80):
            # make sure the handler can actually run
            lines += _indent(
                [
                    f"if {self.cond(body_sc)}:",
                    f"    raise ValueError({self.tag()}, {self.iexpr(body_sc, 1)})",
                ]
            )
        if shape in ("except", "full"):
            e = self.fresh("e")
            hsc = inner.with_(in_handler=e).add("ro_ints", f"{e}.args[1]")
            hlines = [f"LOG.append(('caught', {e}.args))"]
            if hsc.can_yield and self.chance(60):
                hlines.append(f"{self.fresh('v')} = {self.y_stmt(f'{e}.args[1]')}")
            if "exc_chain" not in self.avoid and self.chance(50):
                hlines.append(f"LOG.append(('chain', repr({e}.__context__), repr({e}.__cause__)))")
            hlines += self.block(hsc, 0, 3)
            lines += [f"except ValueError as {e}:"] + _indent(hlines)
        if shape == "full" and self.chance(50):
            lines += ["else:"] + _indent(self.block(inner, 1, 2))
        if shape in ("finally", "full"):
            fsc = inner.with_(in_finally=True, in_loop=False)
            flines = [f"LOG.append(('finally', {self.tag()}))"] + self.block(fsc, 0, 2)
            lines += ["finally:"] + _indent(flines)
        return lines, sc

    def s_with(self, sc: Scope) -> tuple[list[str], Scope]:
        inner = sc.with_(depth=sc.depth + 1)
        t = self.fresh("t")
        kind = self.pick([("cm", 3), ("quiet", 2), ("two", 1)])
        if kind == "cm":
            head = f"with CM({self.iexpr(sc, 1)}) as {t}:"
        elif kind == "quiet":
            head = f"with Quiet({self.iexpr(sc, 1)}) as {t}:"
            inner = inner.with_(catches=True)
        else:
            t2 = self.fresh("t")
            head = f"with CM({self.iexpr(sc, 1)}) as {t}, Quiet({self.iexpr(sc, 1)}) as {t2}:"
            inner = inner.with_(catches=True).add("ints", t2)
        return [head] + _indent(self.block(inner.add("ints", t))), sc

    def s_async_with(self, sc: Scope) -> tuple[list[str], Scope]:
        t = self.fresh("t")
        inner = sc.with_(depth=sc.depth + 1).add("ints", t)
        head = f"async with ACM({self.iexpr(sc, 1)}) as {t}:"
        return [head] + _indent(self.block(inner)), sc

    def s_async_for(self, sc: Scope) -> tuple[list[str], Scope]:
        i = self.fresh("i")
        inner = sc.with_(
            depth=sc.depth + 1, loop_depth=sc.loop_depth + 1, in_loop=True, in_finally=False
        ).add("ints", i)
        head = f"async for {i} in ARange({self.iexpr(sc, 1)} % 3):"
        return [head] + _indent(self.block(inner)), sc

    def agen_call(self, sc: Scope) -> str:
        ag = self.draw(st.sampled_from(sc.agens))
        out = self.draw(st.sampled_from(sc.lists))  # shared with the generator's frame
        return f"{ag}({self.iexpr(sc, 1)}, {self.iexpr(sc, 1)}, {out})"

    def s_agen_for(self, sc: Scope) -> tuple[list[str], Scope]:
        i = self.fresh("i")
        inner = sc.with_(
            depth=sc.depth + 1, loop_depth=sc.loop_depth + 1, in_loop=True, in_finally=False
        ).add("ints", i)
        self.has_yield = True
        head = f"async for {i} in {self.agen_call(sc)}:"
        return [head] + _indent(self.block(inner)), sc

    def s_agen_anext(self, sc: Scope) -> tuple[list[str], Scope]:
        # an async generator held in a local: created, then suspended at a yield
        # between the statements, then closed (its finally may await)
        g, a, b = self.fresh("g"), self.fresh("v"), self.fresh("v")
        self.has_yield = True
        lines = [f"{g} = {self.agen_call(sc)}"]
        inner = sc.with_(depth=sc.depth + 1, can_exit=False)
        lines += self.block(inner, 0, 1)
        lines.append(f"{a} = await anext({g}, -1)")
        lines += self.block(inner.add("ints", a), 0, 2)
        lines.append(f"{b} = await anext({g}, -1)")
        lines.append(f"await {g}.aclose()")
        return lines, sc.add("ints", a).add("ints", b)

    def _raise(self, sc: Scope) -> list[str]:
        cause = f" from {sc.in_handler}" if sc.in_handler and self.chance(40) else ""
        exc = f"ValueError({self.tag()}, {self.iexpr(sc, 1)}){cause}"
        return [f"if {self.cond(sc)}:", f"    raise {exc}"]

    def s_raise(self, sc: Scope) -> tuple[list[str], Scope]:
        return self._raise(sc), sc

    def s_raise_uncaught(self, sc: Scope) -> tuple[list[str], Scope]:
        if not self.chance(60):  # keep most runs going to the end
            return self.s_log(sc)
        return self._raise(sc), sc

    def s_nested_exc(self, sc: Scope) -> tuple[list[str], Scope]:
        """An exception raised and caught while another one is being handled."""
        e = self.fresh("e")
        cause = f" from {sc.in_handler}" if self.chance(40) else ""
        hsc = sc.with_(in_handler=e, depth=sc.depth + 1).add("ro_ints", f"{e}.args[1]")
        hlines = [f"{self.fresh('v')} = {self.y_stmt(f'{e}.args[1]')}"] if sc.can_yield else []
        if "exc_chain" not in self.avoid:
            hlines.append(f"LOG.append(('chain', repr({e}.__context__), repr({e}.__cause__)))")
        hlines += self.block(hsc, 0, 2)
        return [
            "try:",
            f"    raise ValueError({self.tag()}, {self.iexpr(sc, 1)}){cause}",
            f"except ValueError as {e}:",
            *_indent(hlines),
        ], sc

    def s_reraise(self, sc: Scope) -> tuple[list[str], Scope]:
        return [f"if {self.cond(sc)}:", "    raise"], sc

    def s_break(self, sc: Scope) -> tuple[list[str], Scope]:
        return [f"if {self.cond(sc)}:", "    break"], sc

    def s_continue(self, sc: Scope) -> tuple[list[str], Scope]:
        return [f"if {self.cond(sc)}:", "    continue"], sc

    def s_return(self, sc: Scope) -> tuple[list[str], Scope]:
        if self.in_agen:  # an async generator returns no value
            return [f"if {self.cond(sc)}:", "    return"], sc
        if sc.is_main:
            value = f"({self.iexpr(sc, 1)}, 'early', acc)"
        else:
            value = self.iexpr(sc, 1)
        return [f"if {self.cond(sc)}:", f"    return {value}"], sc

    # -- functions ---------------------------------------------------------
    def closures(self, sc: Scope, owner_ints: list[str]) -> tuple[list[str], Scope]:
        """Inner functions and lambdas closing over the owner's locals."""
        lines: list[str] = []
        if not owner_ints:
            return lines, sc
        for _ in range(self.n(0, 2)):
            kind = self.pick([("def", 2), ("lambda", 1), ("gen", 1)])
            target = self.draw(st.sampled_from(owner_ints))
            csc = sc.with_(can_yield=False, ints=(target, "t"), closures=(), gclosures=())
            if kind == "def":
                name = self.fresh("inner")
                lines += [
                    f"def {name}(t):",
                    f"    nonlocal {target}",
                    f"    {target} = ({self.iexpr(csc, 1)}) % 1000",
                    f"    LOG.append(('{name}', {target}))",
                    f"    return {self.iexpr(csc, 1)}",
                ]
                sc = sc.add("closures", name)
            elif kind == "lambda":
                name = self.fresh("lam")
                lines.append(f"{name} = lambda t: {self.iexpr(csc, 1)}")
                sc = sc.add("closures", name)
            else:
                name = self.fresh("sub")
                gsc = csc.with_(can_yield=True)
                lsc = csc if "global_on_stack" in self.avoid else gsc
                saved = self.has_yield
                head = f"async def {name}(t):" if self.is_async else f"def {name}(t):"
                lines += [
                    head,
                    f"    nonlocal {target}",
                    f"    {target} = {target} + {self.y_expr(f'(t, {target})')}",
                    f"    LOG.append(('{name}', {target}, {self.iexpr(lsc, 1)}))",
                    f"    return {self.iexpr(csc, 1)}",
                ]
                self.has_yield = saved  # the owner's own body still needs a yield
                sc = sc.add("gclosures", name)
        return lines, sc

    def function(
        self,
        name: str,
        params: list[str],
        sc: Scope,
        budget: int,
        is_main: bool,
        lists: list[str] | None = None,
    ) -> list[str]:
        self.budget = budget
        self.has_yield = False
        locals_ = [self.fresh("v") for _ in range(self.n(1, 2))]
        init = [f"{v} = {params[i % len(params)]} + {self.n(0, 5)}" for i, v in enumerate(locals_)]
        init += ["acc = []", f"s0 = {repr(self.draw(st.sampled_from(['s', 'go', ''])))}"]
        # callers always pass two positional ints; the rest of the signature varies
        # (restoring builds a frame for the code: defaults, *args, kw-only, **kwargs)
        extra = self.pick([("", 4), ("default", 1), ("star", 1), ("kwonly", 1), ("all", 1)])
        sig = [*params, *(lists or [])]
        ints = list(params)
        if extra == "default":
            sig[-1] += f"={self.n(0, 5)}"
        elif extra == "star":
            sig.append("*rest")
        elif extra == "kwonly":
            sig += ["*", f"kw={self.n(0, 5)}"]
            ints.append("kw")
        elif extra == "all":
            sig += ["*rest", f"kw={self.n(0, 5)}", "**extra"]
            ints.append("kw")
        sc = sc.with_(
            ints=(*ints, *locals_), strs=("s0",), is_main=is_main, lists=("acc", *(lists or []))
        )
        clines: list[str] = []
        if self.chance(35):
            clines, sc = self.closures(sc, locals_)
        stmts = self.statements(sc, 1, 8 if is_main else 4)
        # make sure it is a generator / yields at least once on most paths: a yield
        # between two top-level statements, using only names bound before the body
        if not self.has_yield or self.chance(30):
            at = self.n(0, len(stmts))
            stmts.insert(at, [self.y_stmt(self.yvalue(sc))])
        body = [ln for stmt in stmts for ln in stmt]
        if is_main:
            ret = f"return ({self.iexpr(sc, 1)}, s0, acc)"
        elif self.in_agen:
            ret = f"yield {self.iexpr(sc, 1)}"  # (and it is an async generator for sure)
        else:
            ret = f"return {self.iexpr(sc, 1)}"
        head = f"async def {name}({', '.join(sig)}):" if self.is_async else None
        head = head or f"def {name}({', '.join(sig)}):"
        return [head] + _indent(init + clines + body + [ret])


def _build(draw: Callable[[st.SearchStrategy[Any]], Any], kind: str) -> GenModule:
    b = _Builder(draw=draw, is_async=(kind == "coro"))
    parts: list[str] = [_PRELUDE.format(kind=kind)]
    if b.is_async:
        drop_tb = "tb = None  # steer around a known issue\n        "
        parts.append(
            _CORO_PRELUDE.replace("{drop_tb}", drop_tb if "traceback_in_local" in b.avoid else "")
        )
    pures: list[str] = []
    for i in range(b.n(1, 2)):
        name = f"pure{i}"
        k1, k2 = b.n(1, 5), b.n(0, 5)
        parts.append(f"\n\ndef {name}(x, y, z):\n    return (x * {k1} + y * {k2} - z) % 101\n")
        pures.append(name)
    helpers: list[str] = []
    base = Scope(is_async=b.is_async, pures=tuple(pures))
    for i in range(b.n(0, 3)):
        name = f"co{i}" if b.is_async else f"helper{i}"
        hsc = base.with_(helpers=tuple(helpers), max_loop_depth=1)
        lines = b.function(name, ["x", "y"], hsc, budget=b.n(1, 8), is_main=False, lists=["out"])
        parts.append("\n\n" + "\n".join(lines) + "\n")
        helpers.append(name)
    agens: list[str] = []
    for i in range(b.n(0, 2) if b.is_async else 0):
        name = f"ag{i}"
        hsc = base.with_(helpers=tuple(helpers), agens=tuple(agens), max_loop_depth=1)
        b.in_agen = True
        lines = b.function(name, ["x", "y"], hsc, budget=b.n(1, 8), is_main=False, lists=["out"])
        b.in_agen = False
        parts.append("\n\n" + "\n".join(lines) + "\n")
        agens.append(name)
    msc = base.with_(helpers=tuple(helpers), agens=tuple(agens))
    lines = b.function(ENTRY, ["p0", "p1"], msc, budget=b.n(2, 30), is_main=True)
    parts.append("\n\n" + "\n".join(lines) + "\n")
    args = (b.n(0, 5), b.n(0, 5))
    return GenModule(source="".join(parts), kind=kind, args=args)


@st.composite
def gen_modules(draw: Callable[[st.SearchStrategy[Any]], Any]) -> GenModule:
    """A module whose ``main(p0, p1)`` is a generator function."""
    return _build(draw, "gen")


@st.composite
def coro_modules(draw: Callable[[st.SearchStrategy[Any]], Any]) -> GenModule:
    """A module whose ``main(p0, p1)`` is an ``async def`` coroutine function."""
    return _build(draw, "coro")


def modules(kind: str) -> st.SearchStrategy[GenModule]:
    return gen_modules() if kind == "gen" else coro_modules()


# ---------------------------------------------------------------------------
# behaviour-preserving edits (the differential tests' migration mode)
# ---------------------------------------------------------------------------
#
# ``edited(source)`` draws a new version of a generated module that behaves
# exactly like the old one: what a deploy of an unrelated change looks like
# from inside a suspended frame.  Every edit keeps the suspension points,
# their expressions, enclosing constructs and path conditions, so a snapshot
# of the old module must migrate onto the new one automatically and finish
# with the very trace of the uninterrupted old run.  The edits:
#
# * an unrelated statement inserted before or after any statement of any
#   function (``pass``, a call of a new module-level no-op, ``LOG``-free);
# * a dead local (assigned, never read) inserted likewise;
# * a docstring added to a function (it changes the code's constants);
# * module-level definitions after the prelude reordered (functions only
#   refer to each other at call time);
# * comments and blank lines added anywhere between statements.
#
# Statements are located with ``ast``, so an insertion always lands at a
# statement boundary with the indentation of its neighbour.

_EDIT_KINDS = ["statement", "dead_local", "docstring", "reorder", "comment"]


def _statement_sites(source: str) -> list[tuple[int, int, int]]:
    """(first line, last line, column) of every statement inside a function."""
    import ast

    tree = ast.parse(source)
    lines = source.split("\n")
    sites: list[tuple[int, int, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for sub in ast.walk(node):
                if isinstance(sub, ast.stmt) and sub is not node and sub.end_lineno is not None:
                    elif_ = lines[sub.lineno - 1].lstrip().startswith("elif")
                    if isinstance(sub, ast.If) and elif_:
                        continue  # an elif: a statement before it would end the if
                    sites.append((sub.lineno, sub.end_lineno, sub.col_offset))
    return sorted(set(sites))


def _function_heads(source: str) -> list[tuple[int, int]]:
    """(line of the first body statement, its column) of every function."""
    import ast

    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            out.append((first.lineno, first.col_offset))
    return sorted(out)


def _top_level_defs(source: str, after_line: int) -> list[tuple[int, int]]:
    """(first line, last line) of module-level function definitions after ``after_line``."""
    import ast

    out = []
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.lineno > after_line:
            out.append((node.lineno, node.end_lineno or node.lineno))
    return out


@st.composite
def edited(draw: Callable[[st.SearchStrategy[Any]], Any], source: str) -> str:
    """A behaviour-preserving edit of a generated module's ``source`` (see above)."""
    lines = source.split("\n")
    kinds = draw(st.lists(st.sampled_from(_EDIT_KINDS), min_size=1, max_size=3))
    counter = [0]

    def fresh() -> str:
        counter[0] += 1
        return f"_edit{counter[0]}"

    for kind in kinds:
        text = "\n".join(lines)
        if kind in ("statement", "dead_local"):
            sites = _statement_sites(text)
            first, last, col = draw(st.sampled_from(sites))
            after = draw(st.booleans())
            if kind == "statement":
                stmt = draw(st.sampled_from(["pass", "_noop()", "_noop(len('unrelated'))"]))
            else:
                stmt = f"{fresh()} = {draw(st.integers(0, 99))}"
            at = last if after else first - 1
            lines.insert(at, " " * col + stmt)
        elif kind == "docstring":
            heads = _function_heads(text)
            line, col = draw(st.sampled_from(heads))
            lines.insert(line - 1, " " * col + f'"""Edited: {fresh()}."""')
        elif kind == "comment":
            sites = _statement_sites(text)
            first, _last, col = draw(st.sampled_from(sites))
            lines[first - 1:first - 1] = [" " * col + f"# {fresh()}", ""]
        else:  # reorder two module-level definitions after the prelude
            start = next(i for i, ln in enumerate(lines) if ln.startswith("def pure0"))
            defs = _top_level_defs(text, start)
            if len(defs) < 2:
                continue
            i = draw(st.integers(0, len(defs) - 2))
            (a0, a1), (b0, b1) = defs[i], defs[i + 1]
            block_a, block_b = lines[a0 - 1:a1], lines[b0 - 1:b1]
            lines[a0 - 1:b1] = block_b + [""] * 2 + block_a
    text = "\n".join(lines)
    if "_noop(" in text and "\ndef _noop(" not in text:
        text += "\n\ndef _noop(*args):\n    return None\n"
    return text
