"""Which locals a frame could read before assigning them, from a given point.

What lives here: two dataflow questions about the locals of one code object,
asked by migration (``corosnap.snapshot._migrate``) when an old frame is
moved onto new code and some of the new code's locals have no value:

* ``read_before_assigned(code, start, tracked)``: may some path from the
  suspension at ``start`` read one of the ``tracked`` locals before it is
  assigned?  Answered with the first such read (its name and source line), or
  None.  A local the old snapshot does not have must not be read this way,
  or the migrated frame would raise ``UnboundLocalError`` (or, from 3.12 on,
  read an empty slot the compiler proved bound) where the new code never
  could.
* ``maybe_unbound(code, start)``: the locals that *may* be unbound at the
  suspension at ``start`` in a run of the code from its start: a local that is
  unbound in an old snapshot may stay unbound on the new code only if the new
  code itself can be there with it unbound.

Theory of operation: both are the classic "may be unassigned" forward
analysis over the instruction graph, with an edge to the handler from every
instruction an exception table entry covers (any of them may raise, and the
state that reaches the handler is the state *before* the raising
instruction).  A store assigns; ``DELETE_FAST`` / ``DELETE_DEREF`` read (they
raise on an unbound local) and then unassign; a load reads.  What counts as
a load follows each version's instruction set (the table below): 3.12+'s
``LOAD_FAST_CHECK``, 3.13+'s super-instructions, 3.14+'s borrowed loads.

Comprehensions inlined into the function (3.12+) save a name's outer value
with ``LOAD_FAST_AND_CLEAR`` and put it back with a ``STORE_FAST`` after the
loop; the value put back may be "unbound", so both count as unassigning the
local here (the ``STORE_FAST`` that puts it back is the one whose value is
labelled "saved" by the label analysis of ``_identity``).  That is
conservative: a read after the comprehension of a local only the
comprehension assigned is reported.  ``LOAD_CLOSURE`` (making a closure) is
not a read: the cell is shared, its content is read when the closure runs,
which is a ``LOAD_DEREF`` in *its* code.

Nothing here knows about snapshots; slot indexes are ``localsplus`` indexes
(``_analysis.slot_names``).
"""

from __future__ import annotations

import dis
import types
from dataclasses import dataclass

from .._weak import IdentityCache
from . import _identity
from ._analysis import CREATED, JUMPS, TERMINAL, UNCONDITIONAL, slot_names

_READS = frozenset({"LOAD_FAST", "LOAD_FAST_CHECK", "LOAD_FAST_BORROW", "LOAD_DEREF",
                    "LOAD_FROM_DICT_OR_DEREF"})
_READ_PAIRS = frozenset({"LOAD_FAST_LOAD_FAST", "LOAD_FAST_BORROW_LOAD_FAST_BORROW"})
_WRITES = frozenset({"STORE_FAST", "STORE_DEREF"})
_DELETES = frozenset({"DELETE_FAST", "DELETE_DEREF"})
_YIELD_VALUE = dis.opmap["YIELD_VALUE"]
_RETURN_GENERATOR = dis.opmap.get("RETURN_GENERATOR", -1)


@dataclass(frozen=True, slots=True)
class Read:
    """A read of a possibly unassigned local."""

    slot: int
    name: str
    line: int | None


class _Graph:
    """The instruction graph of one code object, with per-instruction local effects."""

    def __init__(self, code: types.CodeType) -> None:
        labels = _identity.label_states(code)
        names = slot_names(code)
        index = {name: i for i, name in enumerate(names)}
        instrs = list(dis.get_instructions(code))
        self.instrs = instrs
        self.memo: dict[tuple[int, frozenset[int]], Read | None] = {}
        self.unbound_at: dict[int, frozenset[int]] = {}
        self.at = {ins.offset: i for i, ins in enumerate(instrs)}
        self.names = names
        handlers = [(e.start, e.end, self.at[e.target])
                    for e in dis.Bytecode(code).exception_entries]  # type: ignore[attr-defined]
        self.succ: list[list[int]] = []
        self.exc: list[list[int]] = []
        # (reads, kills, writes) per instruction, applied in that order.
        self.effects: list[tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = []
        for i, ins in enumerate(instrs):
            name = ins.opname
            reads: tuple[int, ...] = ()
            kills: tuple[int, ...] = ()
            writes: tuple[int, ...] = ()
            argval = ins.argval
            if name in _READS:
                reads = (index[argval],) if argval in index else ()
            elif name in _READ_PAIRS:
                reads = tuple(index[a] for a in argval if a in index)
            elif name == "STORE_FAST_LOAD_FAST":
                # 3.13+: store the first, then load the second.
                first, second = argval
                writes = (index[first],)
                reads = (index[second],) if second != first else ()
            elif name == "STORE_FAST_STORE_FAST":
                writes = tuple(index[a] for a in argval)
            elif name in _WRITES:
                slot = index.get(argval)
                if slot is not None:
                    if name == "STORE_FAST" and labels.restores(ins.offset):
                        kills = (slot,)
                    else:
                        writes = (slot,)
            elif name in _DELETES:
                slot = index.get(argval)
                if slot is not None:
                    reads = kills = (slot,)
            elif name == "LOAD_FAST_AND_CLEAR":
                slot = index.get(argval)
                if slot is not None:
                    kills = (slot,)
            self.effects.append((reads, kills, writes))
            out: list[int] = []
            exc = [h for start, end, h in handlers if start <= ins.offset < end]
            self.exc.append(exc)
            if ins.opcode not in TERMINAL:
                if ins.opcode in JUMPS:
                    out.append(self.at[ins.argval])
                if ins.opcode not in UNCONDITIONAL and i + 1 < len(instrs):
                    out.append(i + 1)
            self.succ.append(out)

    def run(self, starts: list[int], unassigned: frozenset[int], stop_at_read: bool,
            tracked: frozenset[int] | None = None,
            ) -> tuple[list[frozenset[int] | None], Read | None]:
        """Propagate "may be unassigned" sets of the ``tracked`` locals (default:
        ``unassigned``) from ``starts`` (instruction indexes, each beginning
        with ``unassigned``).  With ``stop_at_read``, return the first read of a
        local in the set."""
        follow = unassigned if tracked is None else tracked
        state: list[frozenset[int] | None] = [None] * len(self.instrs)
        work: list[int] = []
        for s in starts:
            state[s] = unassigned if state[s] is None else state[s] | unassigned  # type: ignore
            work.append(s)
        while work:
            i = work.pop()
            cur = state[i]
            assert cur is not None
            reads, kills, writes = self.effects[i]
            if stop_at_read:
                for r in reads:
                    if r in cur:
                        ins = self.instrs[i]
                        line = ins.positions.lineno if ins.positions else None
                        return state, Read(r, self.names[r], line)
            # Only the tracked locals are followed: a `del` of another local
            # is the program's own business (its state comes from the frame).
            after = (cur | (frozenset(kills) & follow)) - frozenset(writes) \
                if kills or writes else cur
            for j in self.exc[i]:
                self._flow(state, work, j, cur)
            for j in self.succ[i]:
                self._flow(state, work, j, after)
        return state, None

    @staticmethod
    def _flow(state: list[frozenset[int] | None], work: list[int], j: int,
              value: frozenset[int]) -> None:
        old = state[j]
        if old is None:
            state[j] = value
            work.append(j)
        elif not value <= old:
            state[j] = old | value
            work.append(j)

    def resume_starts(self, offset: int) -> list[int]:
        """Where a frame suspended at resume offset ``offset`` continues: the
        instruction after its ``YIELD_VALUE`` (``send``), and the handler of
        the ``YIELD_VALUE`` (``throw``)."""
        if offset == CREATED:
            for i, ins in enumerate(self.instrs):
                if ins.opcode == _RETURN_GENERATOR:
                    return [i + 1] if i + 1 < len(self.instrs) else []
            return [0]
        i = self.at[offset * 2]
        return [j for j in (i + 1,) if j < len(self.instrs)] + self.exc[i]


# Theory of operation: one _Graph per code object (with its memo of answers),
# keyed by identity and holding the code weakly (corosnap._weak.IdentityCache):
# an entry goes when its code dies, so code of modules created and dropped at
# run time is freed after migrating their frames.  A _Graph refers to no code
# object but nested ones (constants in its instructions), never its own.
_cache: IdentityCache[_Graph] = IdentityCache()


def _graph(code: types.CodeType) -> _Graph:
    g = _cache.get(code)
    if g is None:
        g = _cache.put(code, _Graph(code))
    return g


def read_before_assigned(code: types.CodeType, offset: int,
                         tracked: frozenset[int]) -> Read | None:
    """The first read, on some path from resume offset ``offset``, of a local
    in ``tracked`` before it is assigned; None if every path assigns first."""
    if not tracked:
        return None
    g = _graph(code)
    key = (offset, tracked)
    if key in g.memo:
        return g.memo[key]
    found = g.run(g.resume_starts(offset), tracked, True)[1]
    if len(g.memo) < 256:
        g.memo[key] = found
    return found


def maybe_unbound(code: types.CodeType, offset: int) -> frozenset[int]:
    """The locals that may be unbound at resume offset ``offset`` in a run of
    ``code`` from its start (arguments and free variables are bound there;
    every other local, cell variables' contents included, starts unbound)."""
    g = _graph(code)
    hit = g.unbound_at.get(offset)
    if hit is not None:
        return hit
    nargs = code.co_argcount + code.co_kwonlyargcount + bool(
        code.co_flags & 0x04) + bool(code.co_flags & 0x08)
    nfree = len(code.co_freevars)
    n = len(g.names)
    unbound = frozenset(i for i in range(nargs, n - nfree))
    if offset == CREATED:
        return unbound
    state, _ = g.run([0], unbound, False, frozenset(range(n)))
    for i, ins in enumerate(g.instrs):  # one run answers every resume offset
        if ins.opname == "YIELD_VALUE" and state[i] is not None:
            g.unbound_at[ins.offset // 2] = state[i]  # type: ignore[assignment]
    at = state[g.at[offset * 2]]
    return frozenset() if at is None else at


def maybe_written(code: types.CodeType, offset: int) -> frozenset[int]:
    """The locals some path from the start of ``code`` to resume offset
    ``offset`` assigns or deletes (a parameter not among them still holds the
    value it was called with)."""
    if offset == CREATED:
        return frozenset()
    g = _graph(code)
    state: list[frozenset[int] | None] = [None] * len(g.instrs)
    state[0] = frozenset()
    work = [0]
    while work:
        i = work.pop()
        cur = state[i]
        assert cur is not None
        _reads, kills, writes = g.effects[i]
        after = cur | frozenset(kills) | frozenset(writes) if kills or writes else cur
        for j in g.exc[i]:
            _Graph._flow(state, work, j, cur)
        for j in g.succ[i]:
            _Graph._flow(state, work, j, after)
    at = state[g.at[offset * 2]]
    return frozenset() if at is None else at
