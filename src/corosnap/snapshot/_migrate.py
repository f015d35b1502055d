"""Migration: restore a frame captured on old code onto the edited code.

What lives here: what ``loads(migrate=True)`` does for a frame whose code's
fingerprint no longer matches.  ``Session.entry`` (called by
``FrameDecoder.coderef`` when the fingerprint check fails) finds the new
code and the description of the old one (the blob's signature table or a
manifest); ``MigratingEntry.decode_frame`` (called by ``FrameDecoder.decode``)
decodes the old frame's fields, proves a correspondence or applies an explicit
migration, and hands the new frame to ``_restore.write_frame``, the very
function that validates and writes every frame the Python engine restores.
A migration runs on the Python engine only: the C engine restores what did
not change, and a blob with a changed code is restored again, wholly in
Python, by a session (``Snapshotter.loads``), with the same results.  So a migration can
choose a resume point and values, but it cannot write anything a normal
restore would refuse.  No I/O here; manifests arrive as objects.

What must never leak out: a frame whose correspondence is not proven.  Each
refusal is a ``NeedsMigration`` whose message says why, in the user's terms
(the ``yield`` / ``await``, its line, the loop or ``with`` block, the local).

Theory of operation, for one frame suspended at old point P:

1. **The point maps.**  The new code's suspension points are computed by
   ``bytecode._identity``; the new point is the one with P's identity key and
   P's ordinal among the points alike to it, and the old and the new code
   must have the same number of alike points.  The key covers the kind of
   suspension, what it is suspended on, the labels of the live value stack
   (enclosing ``for`` loops' iterators, ``with`` blocks, ``except`` state,
   half-evaluated operands, the delegated-to iterator) and the path
   conditions, so an equal key *is* the "same live context" requirement;
   the stacks are then compared slot by slot as well.
2. **Locals map by name.**  A local the new code lacks is dropped; cells must
   stay cells and free variables must exist on both sides.  A new parameter
   of an importable function that the new code does not assign before the
   point gets its default (the value a call without it would have given).
   Any other new local is left unbound, and ``bytecode._assign`` must show
   that no path from the point (exception edges included) reads it before
   assigning it.  A local the old frame had *unbound* may stay unbound only
   where the new code can itself be with it unbound, or if it is assigned
   before any read.
3. **The stack carries over** slot by slot (equal labels mean equal
   meaning), except an exception handler's ``lasti`` (an instruction offset
   of the *old* code), which becomes an offset its handler covers in the new
   code.
4. ``write_frame`` applies every check of a normal restore.

An async generator's frame goes the same way (``FrameDecoder.decode`` passes
its flags, read from its tag by ``_asyncgen``): it must stay an async
generator, one with an operation in flight must resume inside an ``await``
(as a normal restore requires), and its flags are set once the frame is
written (never by a check, which writes nothing).

Explicit migrations (registered per function and old fingerprint) replace
steps 1-3 with user code that gets the old point and the old locals by name
and returns the new point (by source line or ordinal) and the new locals.
"""

from __future__ import annotations

import inspect
import sys
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .._errors import CodeMismatch, CorruptSnapshot, NeedsMigration
from .._weak import IdentityCache, ModuleCache
from ..bytecode import CREATED, CodeRef, fingerprint
from ..bytecode._analysis import DELEGATE
from ..bytecode._assign import maybe_unbound, maybe_written, read_before_assigned
from ..bytecode._identity import (
    KIND_AWAIT,
    KIND_NAMES,
    KIND_START,
    KIND_YIELD_FROM,
    OPAQUE,
    ROLE_EXCEPT,
    ROLE_FOR,
    ROLE_LASTI,
    ROLE_NAMES,
    ROLE_WITH,
    Point,
    Shape,
    UnsupportedShape,
    shape,
)
from ..bytecode._locate import _find_path, _root_function, locate
from ..codec import Tag
from ..frames import NULL, backend
from . import _asyncgen
from ._restore import decode_exception, fresh, make_plan, write_frame
from ._signature import RESUMABLE_FLAGS, CodeSig, PointSig, nested_codes, table_from_blob

_FLAG_KIND = {inspect.CO_ASYNC_GENERATOR: "async generator", inspect.CO_COROUTINE: "coroutine",
              inspect.CO_ITERABLE_COROUTINE: "generator-based coroutine",
              inspect.CO_GENERATOR: "generator"}


def _hint() -> str:
    return "register an explicit migration for it (see docs/evolution.md)"


# -- explicit migrations -------------------------------------------------------------

@dataclass(frozen=True)
class OldFrame:
    """What an explicit migration is given: the frame as the old code left it."""

    function: str
    """``module.qualname`` of the function (the same in the old and the new code)."""
    fingerprint: int
    """The old code's fingerprint (``corosnap inspect`` shows it as 16 hex digits)."""
    offset: int
    """The old resume offset (code units; -1: the frame never started)."""
    line: int | None
    """Source line of the old suspension (the ``yield`` / ``await``), when known."""
    kind: str
    """``"yield"``, ``"yield from"``, ``"await"``, or ``"start"`` (never started)."""
    text: str | None
    """The old suspension rendered (``"yield total"``), when a manifest gave it."""
    ordinal: int
    """The old point's ordinal among the points alike to it (usually 0)."""
    locals: dict[str, Any]
    """The old locals by name (unbound ones are absent; cells are unwrapped)."""
    stack: list[Any]
    """The old value stack, bottom first (loop iterators, with exits, ...)."""
    exception: BaseException | None
    """The exception being handled when suspended in an ``except`` block."""


KEEP: Any = type("_Keep", (), {"__repr__": lambda self: "KEEP"})()
"""``Resume(stack=KEEP)``: carry the old value stack over unchanged (it must fit)."""
EMPTY: Any = type("_Empty", (), {"__repr__": lambda self: "EMPTY"})()
"""In ``Resume(stack=[...])``: an empty (NULL) stack slot, as CPython leaves below
a function called without ``self``; the new code's checks say where one may be."""


@dataclass
class Resume:
    """Where an explicitly migrated frame resumes in the new code, and with what.

    Name the new suspension point by the source ``line`` of its ``yield`` /
    ``await`` (absolute line in the new file), by ``index`` (its ordinal among
    all the new code's suspension points in code order, from 0), or by both
    (``index`` among the points on that ``line``).  ``start=True`` resumes a
    frame that never started.  ``locals`` are the new frame's locals by name
    (absent ones are unbound; cell variables get a cell holding the value).
    ``stack``: the new value stack, or ``KEEP`` to carry the old one over.
    ``exception``: the exception being handled at the new point, or ``KEEP``.
    """

    line: int | None = None
    index: int | None = None
    locals: Mapping[str, Any] = field(default_factory=dict)
    stack: Any = KEEP
    exception: Any = KEEP
    start: bool = False


MigrationFunction = Callable[[OldFrame], Resume]


def _function_key(func: Any) -> tuple[str, str]:
    if isinstance(func, str):
        module, sep, qualname = func.partition(":")
        if not sep or not module or not qualname:
            raise ValueError(f"name a function as 'module:qualname', not {func!r}")
        return module, qualname
    while isinstance(func, (staticmethod, classmethod, types.MethodType)):
        func = func.__func__
    func = inspect.unwrap(func)
    if not isinstance(func, types.FunctionType):
        raise TypeError(f"migrations are registered for functions, not {func!r}")
    return func.__module__, func.__code__.co_qualname


def _fingerprint_value(fp: Any) -> int:
    if isinstance(fp, str):
        text = fp.strip().lower().removeprefix("0x")
        try:
            value = int(text, 16)
        except ValueError:
            raise ValueError(f"a fingerprint is 16 hex digits, not {fp!r}") from None
    elif type(fp) is int:
        value = fp
    else:
        raise TypeError(f"a fingerprint is an int or 16 hex digits, not {fp!r}")
    if not 0 <= value < 1 << 64:
        raise ValueError(f"a fingerprint is a 64-bit value, not {fp!r}")
    return value


class Migrations:
    """A registry of explicit migrations, keyed by function and old fingerprint.

    ``loads(blob, migrate=True)`` consults the default registry
    (``corosnap.migrate.migrations``); pass ``migrations=`` for another one.
    """

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, str, int], MigrationFunction] = {}

    def register(self, func: Any, old_fingerprint: Any) -> Callable[[MigrationFunction],
                                                                      MigrationFunction]:
        """Decorator: ``@migrations.register(job, "9f3c2a1b4d5e6f70")``.

        ``func``: the function (its new version, or ``"module:qualname"``);
        ``old_fingerprint``: the fingerprint of the version the snapshots
        were taken on (an int, or hex digits as ``corosnap inspect`` shows).
        """
        key = (*_function_key(func), _fingerprint_value(old_fingerprint))

        def add(fn: MigrationFunction) -> MigrationFunction:
            if not callable(fn):
                raise TypeError(f"a migration is a callable taking an OldFrame, not {fn!r}")
            self._by_key[key] = fn
            return fn

        return add

    def add(self, func: Any, old_fingerprint: Any, fn: MigrationFunction) -> None:
        """``register`` without the decorator."""
        self.register(func, old_fingerprint)(fn)

    def find(self, module: str, qualname: str, fp: int) -> MigrationFunction | None:
        return self._by_key.get((module, qualname, fp))

    def __len__(self) -> int:
        return len(self._by_key)


migrations = Migrations()
"""The default registry (``corosnap.migrate.migration`` registers into it)."""


# -- manifests, as the restore side sees them --------------------------------------------

class SignatureSource:
    """Where descriptions of old code come from, besides the blob itself."""

    def lookup(self, module: str, qualname: str, path: tuple[int, ...],
               fp: int) -> CodeSig | None:
        raise NotImplementedError


class NoSignatures(SignatureSource):
    def lookup(self, module: str, qualname: str, path: tuple[int, ...],
               fp: int) -> CodeSig | None:
        return None


class Migrator:
    """The migration options of ``loads`` (and of the scheduler): where old
    code descriptions come from (``manifests``) and the explicit migrations."""

    __slots__ = ("manifests", "migrations")

    def __init__(self, manifests: SignatureSource | None = None,
                 migrations_: Migrations | None = None) -> None:
        self.manifests = manifests if manifests is not None else NoSignatures()
        self.migrations = migrations_ if migrations_ is not None else migrations


@dataclass(frozen=True)
class FrameOutcome:
    """How one frame of a snapshot was (or would be) restored."""

    function: str
    how: str
    """``"automatic"`` or ``"explicit"`` (frames on unchanged code are not listed)."""
    detail: str


class Session:
    """The migration state of one ``loads``: the blob's signature table, the
    options, and what happened to each migrated frame."""

    __slots__ = ("migrator", "raw_table", "table", "outcomes", "dry_run", "fresh")

    def __init__(self, migrator: Migrator, raw_table: Any, dry_run: bool = False) -> None:
        self.migrator = migrator
        self.raw_table = raw_table
        self.table: list[CodeSig | None] | None = None
        self.outcomes: list[FrameOutcome] = []
        self.dry_run = dry_run  # a check: frames are validated, never written
        self.fresh: list[Any] = []

    def checked(self, gen: Any) -> None:
        """A dry run validated ``gen``'s frame and did not write it."""
        self.fresh.append(gen)

    def close_fresh(self) -> None:
        """Close the generators a dry run made (created, nothing written: no code runs)."""
        for gen in self.fresh:
            if type(gen) is types.AsyncGeneratorType:
                continue  # a created async generator has no close() and needs none
            gen.close()
        self.fresh.clear()

    def sig(self, k: int, ref: CodeRef, fp: int) -> CodeSig | None:
        """The old code's description: the blob's table entry for code ``k``, or a manifest's."""
        if self.raw_table is not None:
            if self.table is None:
                self.table = table_from_blob(self.raw_table)
            if 0 <= k < len(self.table):
                found = self.table[k]
                if found is not None:
                    return found
        return self.migrator.manifests.lookup(ref.module, ref.qualname, ref.path, fp)

    def entry(self, dec: Any, ref: CodeRef, fp: int, mismatch: CodeMismatch) -> Any:
        """What FrameDecoder.coderef gets for a code whose fingerprint did not match:
        a normal entry if the very code is still there under another path, else
        a MigratingEntry; CodeMismatch if the function itself is gone."""
        sig = self.sig(len(dec.codes), ref, fp)
        key = (ref, fp, None if sig is None else (sig.qualname, sig.nested))
        module = sys.modules.get(ref.module)
        hit = _resolved.get(key)
        if hit is not None and module is not None and module is hit[0]():
            kind, entry, root_function, note = hit[1:]
            if note is not None:
                self.outcomes.append(note)
            if kind == "same":
                return entry
            return MigratingEntry(self, entry, ref, fp, sig, root_function)
        result = self._resolve(dec, ref, fp, sig, mismatch)
        module = sys.modules.get(ref.module)
        module_ref = _resolved.ref(module) if module is not None else None
        if module_ref is not None:
            _resolved.put(module, key, (module_ref, *result))
        kind, entry, root_function, note = result
        if note is not None:
            self.outcomes.append(note)
        if kind == "same":
            return entry
        return MigratingEntry(self, entry, ref, fp, sig, root_function)

    def _resolve(self, dec: Any, ref: CodeRef, fp: int, sig: CodeSig | None,
                 mismatch: CodeMismatch) -> tuple[str, Any, Any, FrameOutcome | None]:
        try:
            code, _globals = locate(CodeRef(ref.module, ref.qualname))
        except CodeMismatch:
            raise mismatch from None
        root = code
        if ref.path:
            # Nested code (an inner generator, a generator expression): its
            # co_consts path moves with edits of the enclosing function, so it
            # is found again by fingerprint (unchanged code) or by name.
            nested = nested_codes(root)
            for c in nested:
                if fingerprint(c) == fp:
                    path = _find_path(root, c)
                    assert path is not None
                    note = FrameOutcome(
                        str(ref), "automatic", f"{c.co_qualname}: the same code, found at its "
                        f"new place in {ref.module}.{ref.qualname}")
                    same_ref = CodeRef(ref.module, ref.qualname, path)
                    return ("same", dec.frames.entry_for(same_ref, fp), None, note)
            if sig is None or sig.qualname is None:
                raise NeedsMigration(
                    f"{mismatch}; the code nested in {ref.module}.{ref.qualname} changed and "
                    "there is no description of the old code to find its counterpart (dump "
                    "with migratable=True or pass the old version's manifest)") from None
            same = [c for c in nested if c.co_qualname == sig.qualname]
            old_count = sig.nested[1] if sig.nested else 1
            if not same:
                raise NeedsMigration(f"{ref.module}.{sig.qualname}: the new code of "
                                     f"{ref.module}.{ref.qualname} has no such nested code")
            if len(same) != old_count:
                raise NeedsMigration(
                    f"{ref.module}.{sig.qualname}: {old_count} nested code object(s) of that "
                    f"name in the old code, {len(same)} in the new one: which is which cannot "
                    "be told")
            code = same[sig.nested[0] if sig.nested else 0]
            path = _find_path(root, code)
            assert path is not None
            new_ref = CodeRef(ref.module, ref.qualname, path)
        else:
            new_ref = CodeRef(ref.module, ref.qualname)
        new = dec.frames.entry_for(new_ref, fingerprint(code))
        return ("migrating", new, None if ref.path else _root_function(ref.module, ref.qualname),
                None)


_resolved: ModuleCache[tuple[Any, ...]] = ModuleCache()
"""(old code reference, fingerprint, nested name) -> (weak reference to the
module, how it resolves): the new code found for an old one, reused while the
module is the same object, dropped with the module."""
_plans: IdentityCache[dict[Any, Any]] = IdentityCache()
"""new code -> {(old fingerprint, offset, the old code's description, ...):
an automatic migration plan, or the message of the refusal} (pure functions
of those), held as long as the new code lives."""


def make_migrator(migrate: bool, manifests: Any, migrations_: Any) -> Migrator | None:
    """The migration options of a Snapshotter, checked (None: ``migrate=False``).
    ``manifests``: anything ``_manifest.as_source`` takes, read once here."""
    if not migrate:
        if manifests is not None or migrations_ is not None:
            raise TypeError("manifests= and migrations= are options of migrate=True")
        return None
    if migrations_ is not None and not isinstance(migrations_, Migrations):
        raise TypeError(f"migrations= takes a corosnap.migrate.Migrations registry, not "
                        f"{type(migrations_).__name__}")
    source = None
    if manifests is not None:
        from ._manifest import as_source

        source = as_source(manifests)
    return Migrator(source, migrations_)


def new_session(migrate: bool, manifests: Any, migrations_: Any,
                dry_run: bool = False) -> Session:
    """The session of ``loads(migrate=True, manifests=..., migrations=...)``."""
    migrator = make_migrator(migrate, manifests, migrations_)
    if migrator is None:
        raise TypeError("a migration session needs migrate=True")
    return Session(migrator, None, dry_run)


# -- one frame ------------------------------------------------------------------------

_NULL_MARK = object()


@dataclass
class _Plan:
    """How the old frame's slots become the new frame's (automatic migration)."""

    new_pos: int
    new_point: Point
    sources: list[tuple[str, Any]]
    """Per new localsplus slot: ("old", i), ("new", None), ("default", value),
    ("cell", None) (a fresh empty cell), ("cell-default", value)."""
    new_names: frozenset[int]
    """New slots whose name the old code did not have (strictly checked)."""
    dropped: tuple[str, ...]
    added: tuple[str, ...]


class MigratingEntry:
    """A code reference whose code changed: frames of it are migrated."""

    def __init__(self, session: Session, new: Any, ref: CodeRef, fp: int,
                 sig: CodeSig | None, root_function: types.FunctionType | None) -> None:
        self.session = session
        self.new = new
        self.ref = ref
        self.fp = fp
        self.sig = sig
        self.root_function = root_function
        self.label = new.label

    # -- as a code reference of a value (codec tags 9 and 17) ---------------------
    @property
    def code(self) -> types.CodeType:
        """A function value's code: the new code, if its closure matches the old one."""
        sig = self.sig
        free = self.new.code.co_freevars
        if sig is None or sig.free != free:
            raise NeedsMigration(
                f"{self.label}: a function value of this code is held by the snapshot, and its "
                "code changed" + ("" if sig is None else
                                  f" (free variables {sig.free} -> {free})") +
                "; a function value can only move to new code with the same free variables "
                "and a description of the old code")
        self.session.outcomes.append(FrameOutcome(
            str(self.ref), "automatic", "a function value now runs the new code"))
        return self.new.code

    @property
    def globals(self) -> dict[str, Any]:
        return self.new.globals

    # A finished generator of this code (the codec's tag 17, which
    # FrameDecoder.fresh makes from these and closes at once): the code
    # does not matter, so the new code's function makes it.
    @property
    def fn(self) -> Any:
        return self.new.fn

    @property
    def args(self) -> tuple[Any, ...]:
        return self.new.args

    @property
    def kwargs(self) -> dict[str, Any]:
        return self.new.kwargs

    # -- frames ---------------------------------------------------------------------
    def _mismatch_head(self) -> str:
        return (f"{self.label}: its code changed since the snapshot was taken (fingerprint "
                f"{self.fp:016x} in the snapshot, {fingerprint(self.new.code):016x} now)")

    def decode_frame(self, dec: Any, v: list[Any], i: int, root: bool,
                     agflags: int = -1) -> Any:
        """The old frame at v[i:] moved onto the new code (or NeedsMigration).
        ``agflags``: the frame is an async generator's, with these flags
        (``_asyncgen``), set once the frame is written, as
        ``FrameDecoder.decode`` does; -1: a generator's or a coroutine's."""
        new = self.new
        if i >= len(v):
            raise CorruptSnapshot(f"{self.label}: truncated frame")
        pos = v[i]
        exc_f = None
        # [offset, exception]: suspended in an except block; a nil there is
        # None, which decode_exception refuses (as FrameDecoder.decode does).
        handling = type(pos) is list
        if handling:
            if len(pos) != 2:
                raise CorruptSnapshot(f"{self.label}: malformed position")
            pos, exc_f = pos
        if type(pos) is not int:
            raise CorruptSnapshot(f"{self.label}: offset {pos!r} is not a resume point")
        sig = self.sig
        old = sig.points.get(pos) if sig is not None else None
        explicit = self.session.migrator.migrations.find(
            self.ref.module, new.code.co_qualname, self.fp)
        if sig is None or old is None:
            what = ("the snapshot carries no description of the old code" if sig is None else
                    f"the description of the old code has no suspension at offset {pos}")
            raise NeedsMigration(
                f"{self._mismatch_head()}, and {what}: dump with migratable=True, or pass the "
                "old version's manifest (corosnap manifest) with manifests=" +
                (" (the explicit migration registered for it needs it too)" if explicit
                 else ""))
        self._check_flags(agflags >= 0)
        plan = None if explicit is not None else self._plan(pos, old, handling)
        nold = len(sig.names)
        raw = v[i + 1:]
        if len(raw) != nold + len(old.stack):
            raise CorruptSnapshot(
                f"{self.label}: {len(raw)} slot and stack values, but the old code's "
                f"description has {nold} locals and {len(old.stack)} stack values there")
        delegating = old.kind in (KIND_YIELD_FROM, KIND_AWAIT)
        running = agflags > 0 and bool(agflags & _asyncgen.RUNNING)
        if running and not delegating:
            raise CorruptSnapshot(f"{self.label}: an async generator with an operation "
                                  "in flight is suspended inside an await, not at a yield")
        sub_at = nold + len(old.stack) + DELEGATE if delegating else -1
        if sub_at < nold:
            sub_at = -1
        fresh_sub = bool(sub_at >= 0 and type(raw[sub_at]) is list and raw[sub_at]
                         and type(raw[sub_at][0]) is not Tag)
        gen = fresh(new)
        dec.memo.append(gen)
        key = id(gen)
        dec.active.add(key)
        try:
            exc = decode_exception(dec, new, exc_f) if handling else None
            slots = dec.frames.decode_slots(dec, new, raw, sub_at if fresh_sub else -1)
            if explicit is not None:
                new_pos, new_slots, exc, detail = self._explicit(
                    explicit, pos, old, slots, exc, NULL)
                how = "explicit"
                fresh_sub = False  # the user may have put another iterator there
            else:
                assert plan is not None
                new_pos, new_slots = plan.new_pos, self._build(plan, old, slots, NULL)
                # The text is only read by check(): loads does not format it.
                detail = self._detail(old, plan) if self.session.dry_run else ""
                how = "automatic"
            new_plan = new.plans.get(new_pos) or make_plan(new, new_pos)
            if running and new_plan.delegate_at < 0:
                # (an explicit migration chose a yield: the awaitable in
                # flight would resume a frame that is not awaiting anything)
                raise NeedsMigration(
                    f"{self.label}: an async generator with an __anext__()/asend()/athrow() "
                    "in flight must resume inside an await, and the migration moves it to "
                    f"offset {new_pos}, which is not one")
            write_frame(dec, new, new_plan, new_pos, new_slots, exc, gen, root, fresh_sub)
            if agflags > 0 and not self.session.dry_run:
                backend().ag_set_flags(gen, agflags)  # checked by _asyncgen
            self.session.outcomes.append(FrameOutcome(str(self.ref), how, detail))
            return gen
        except BaseException:
            # Refused: the fresh generator is still created (nothing was
            # written): closing it runs no code.  A created async generator
            # has no close() and needs none (see FrameDecoder.decode).
            if agflags < 0:
                gen.close()
            raise
        finally:
            dec.active.discard(key)

    def _detail(self, old: PointSig, plan: _Plan) -> str:
        new_point = plan.new_point
        parts = [f"{old.describe()} -> {new_point.describe()} in the new code"]
        if plan.dropped:
            parts.append("drops " + ", ".join(plan.dropped))
        if plan.added:
            parts.append("new " + ", ".join(plan.added))
        return "; ".join(parts)

    # -- automatic --------------------------------------------------------------------
    def _shape(self) -> Shape:
        try:
            return shape(self.new.code)
        except UnsupportedShape as exc:
            raise NeedsMigration(f"{self._mismatch_head()}, and corosnap cannot analyse the new "
                                 f"code's suspension points ({exc}); {_hint()}") from None

    def _plan(self, pos: int, old: PointSig, in_except: bool) -> _Plan:
        assert self.sig is not None
        sig = self.sig
        code = self.new.code
        key = (self.fp, pos, in_except, sig.names, sig.cells, sig.nfree, sig.flags,
               old, self.root_function is not None)
        known = _plans.get(code)
        if known is None:
            known = _plans.put(code, {})
        hit = known.get(key)
        if hit is not None:
            if type(hit) is str:
                raise NeedsMigration(hit)
            return hit
        try:
            plan = self._plan_uncached(pos, old, in_except)
        except NeedsMigration as exc:
            known[key] = str(exc)
            raise
        known[key] = plan
        return plan

    def _check_flags(self, agen: bool) -> None:
        """A generator stays a generator, a coroutine a coroutine, an async
        generator an async generator.  ``agen``: the blob stores the frame
        as an async generator's."""
        assert self.sig is not None
        sig = self.sig
        if sig.flags and bool(sig.flags & inspect.CO_ASYNC_GENERATOR) != agen:
            raise CorruptSnapshot(
                f"{self.label}: the old code's description says it was "
                f"{_a(_kind_of(sig.flags))}, where the blob stores "
                f"{'an async generator' if agen else 'a generator or coroutine'}")
        new_flags = self.new.code.co_flags & RESUMABLE_FLAGS
        if sig.flags and new_flags != sig.flags:
            raise NeedsMigration(
                f"{self._mismatch_head()}: it was {_a(_kind_of(sig.flags))} and is now "
                f"{_a(_kind_of(new_flags))}")
        if bool(new_flags & inspect.CO_ASYNC_GENERATOR) != agen:
            was = "an async generator" if agen else "a generator or coroutine"
            raise NeedsMigration(
                f"{self._mismatch_head()}: it was {was} and is now {_a(_kind_of(new_flags))}")

    def _plan_uncached(self, pos: int, old: PointSig, in_except: bool) -> _Plan:
        sh = self._shape()
        point = self._match(sh, pos, old)
        if in_except and ROLE_EXCEPT not in (s & 7 for s in point.stack):
            raise NeedsMigration(f"{self._mismatch_head()}: {old.describe()} was in an `except` "
                                 "block, its counterpart is not")
        sources, new_names, dropped, added = self._map_locals(point)
        return _Plan(point.offset, point, sources, new_names, dropped, added)

    def _match(self, sh: Shape, pos: int, old: PointSig) -> Point:
        if pos == CREATED or old.kind == KIND_START:
            point = sh.points[CREATED]
            if len(point.stack) != len(old.stack):
                raise NeedsMigration(f"{self._mismatch_head()}: a frame that never started, "
                                     "but the new code's prologue differs")
            return point
        same = sh.alike.get(old.key, ())
        if not same:
            raise NeedsMigration(f"{self._mismatch_head()}: {self._why_no_counterpart(sh, old)}")
        if len(same) != old.count:
            raise NeedsMigration(
                f"{self._mismatch_head()}: the suspension at {old.describe()} is one of "
                f"{old.count} alike suspension(s) in the old code (the same expression, "
                f"enclosing constructs and path conditions), and the new code has {len(same)}: "
                f"which one it became cannot be told; {_hint()}")
        point = sh.points[same[old.ordinal]]
        if point.stack != old.stack or point.kind != old.kind:
            raise NeedsMigration(f"{self._mismatch_head()}: the live context at "
                                 f"{old.describe()} differs in the new code")
        if OPAQUE.intersection(point.stack):
            raise NeedsMigration(
                f"{self._mismatch_head()}: the value stack at {old.describe()} holds a value "
                "whose origin the analysis cannot tell apart (an operation on a conditional "
                "expression, pending across the suspension), so the old and the new code are "
                f"not known to mean the same by it; {_hint()}")
        return point

    def _why_no_counterpart(self, sh: Shape, old: PointSig) -> str:
        same_site = [p for p in sh.in_order() if p.site == old.site]
        if not same_site:
            listing = ", ".join(p.describe() for p in sh.in_order()[:8])
            more = " ..." if len(sh.in_order()) > 8 else ""
            return (f"the suspension at {old.describe()} has no counterpart in the new code "
                    f"(no `{KIND_NAMES.get(old.kind, '?')}` on the same expression; the new code "
                    f"suspends at {listing or 'no point at all'}{more}); {_hint()}")
        best = min(same_site, key=lambda p: _distance(p.stack, old.stack))
        if best.stack == old.stack:
            now = " and ".join(best.conditions) or "unconditionally"
            was = " and ".join(old.conditions) if old.conditions else None
            return (f"the conditions on every path to {old.describe()} changed (in the new code "
                    f"{best.describe()} is reached {'when ' if best.conditions else ''}{now}"
                    + (f"; in the old code when {was}" if was else "") +
                    "): a frame resumed there may hold values the new code would not have there;"
                    f" {_hint()}")
        reasons = _stack_diff(old.stack, best.stack, sh)
        return (f"{'; '.join(reasons)} (the suspension at {old.describe()}, now "
                f"{best.describe()}); {_hint()}")

    def _map_locals(self, point: Point) -> tuple[list[tuple[str, Any]], frozenset[int],
                                                  tuple[str, ...], tuple[str, ...]]:
        assert self.sig is not None
        sig = self.sig
        code = self.new.code
        info = self.new.info
        names = info.slot_names
        nfree = len(code.co_freevars)
        n = len(names)
        old_n = len(sig.names)
        old_local = {name: i for i, name in enumerate(sig.names[: old_n - sig.nfree])}
        old_free = {name: i for i, name in enumerate(sig.names) if i >= old_n - sig.nfree}
        cells = set(info.cell_slots)
        defaults = self._defaults()
        written = None
        sources: list[tuple[str, Any]] = []
        new_names: set[int] = set()
        added = []
        for j, name in enumerate(names):
            if j >= n - nfree:
                oi = old_free.get(name)
                if oi is None:
                    raise NeedsMigration(
                        f"{self._mismatch_head()}: {name!r} is a new free variable (a variable "
                        "of the enclosing function it now uses): the snapshot has no value for "
                        f"it; {_hint()}")
                sources.append(("old", oi))
                continue
            oi = old_local.get(name)
            is_cell = j in cells
            if oi is not None:
                if (oi in sig.cells) != is_cell:
                    old_kind = "a cell variable (shared with an inner function)" if not is_cell \
                        else "a plain local"
                    new_kind = "a cell variable" if is_cell else "a plain local"
                    raise NeedsMigration(
                        f"{self._mismatch_head()}: {name!r} was {old_kind} in the old code and is "
                        f"{new_kind} in the new code; {_hint()}")
                sources.append(("old", oi))
                continue
            added.append(name)
            if name in defaults:
                if written is None:
                    written = maybe_written(code, point.offset)
                if j not in written:
                    sources.append(("cell-default" if is_cell else "default", defaults[name]))
                    continue
            new_names.add(j)
            sources.append(("cell", None) if is_cell else ("new", None))
        dropped = tuple(name for name in old_local if name not in set(names))
        return sources, frozenset(new_names), dropped, tuple(added)

    def _defaults(self) -> dict[str, Any]:
        """Default values of the new function's parameters (importable functions only)."""
        fn = self.root_function
        if fn is None or fn.__code__ is not self.new.code:
            return {}
        code = fn.__code__
        argc = code.co_argcount
        out: dict[str, Any] = {}
        defaults = fn.__defaults__ or ()
        for name, value in zip(code.co_varnames[argc - len(defaults):argc], defaults,
                               strict=True):
            out[name] = value
        kwonly = code.co_varnames[argc:argc + code.co_kwonlyargcount]
        for name, value in (fn.__kwdefaults__ or {}).items():
            if name in kwonly:
                out[name] = value
        at = argc + code.co_kwonlyargcount
        if code.co_flags & inspect.CO_VARARGS:
            out[code.co_varnames[at]] = ()
            at += 1
        if code.co_flags & inspect.CO_VARKEYWORDS:
            out[code.co_varnames[at]] = {}
        return out

    def _build(self, plan: _Plan, old: PointSig, slots: list[Any], null: Any) -> list[Any]:
        assert self.sig is not None
        nold = len(self.sig.names)
        old_locals, old_stack = slots[:nold], slots[nold:]
        out: list[Any] = []
        for kind, arg in plan.sources:
            if kind == "old":
                out.append(old_locals[arg])
            elif kind == "default":
                out.append(arg)
            elif kind == "cell":
                out.append(types.CellType())
            elif kind == "cell-default":
                out.append(types.CellType(arg))
            else:
                out.append(null)
        code = self.new.code
        unbound = frozenset(j for j, x in enumerate(out)
                            if x is null or (type(x) is types.CellType and _empty(x)))
        strict = unbound & plan.new_names
        if strict:
            r = read_before_assigned(code, plan.new_pos, strict)
            if r is not None:
                raise NeedsMigration(
                    f"{self._mismatch_head()}: new local {r.name!r} is read"
                    f"{_at(r.line)} after the resume point ({plan.new_point.describe()}) "
                    f"before it is assigned; {_hint()}")
        loose = unbound - plan.new_names
        if loose:
            need = loose - maybe_unbound(code, plan.new_pos)
            if need:
                r = read_before_assigned(code, plan.new_pos, need)
                if r is not None:
                    raise NeedsMigration(
                        f"{self._mismatch_head()}: local {r.name!r} is unbound in the snapshot "
                        f"(the old code had not assigned it at {old.describe()}), but the new "
                        "code always has it assigned at that point and reads it"
                        f"{_at(r.line)}; {_hint()}")
        for j, x in enumerate(old_stack):
            lasti = plan.new_point.lasti[j]
            out.append(lasti if lasti >= 0 and plan.new_point.stack[j] & 7 == ROLE_LASTI
                       and type(x) is int else x)
        return out

    # -- explicit ---------------------------------------------------------------------
    def _explicit(self, fn: MigrationFunction, pos: int, old: PointSig, slots: list[Any],
                  exc: Any, null: Any) -> tuple[int, list[Any], Any, str]:
        assert self.sig is not None
        sig = self.sig
        nold = len(sig.names)
        old_locals: dict[str, Any] = {}
        for i, name in enumerate(sig.names):
            x = slots[i]
            if x is null:
                continue
            if i in sig.cells or i >= nold - sig.nfree:
                if type(x) is not types.CellType or _empty(x):
                    continue
                x = x.cell_contents
            old_locals[name] = x
        frame = OldFrame(f"{self.ref.module}.{self.new.code.co_qualname}", self.fp, pos,
                         old.line, KIND_NAMES.get(old.kind, "?"), old.text, old.ordinal,
                         old_locals, list(slots[nold:]), exc)
        try:
            result = fn(frame)
        except CodeMismatch:
            raise
        except Exception as err:
            raise NeedsMigration(f"{self.label}: the explicit migration "
                                 f"{getattr(fn, '__qualname__', fn)!r} raised {err!r}") from err
        if not isinstance(result, Resume):
            raise NeedsMigration(f"{self.label}: the explicit migration returned "
                                 f"{type(result).__name__}, not a corosnap.migrate.Resume")
        sh = self._shape()
        point = self._resolve_point(sh, result)
        new_slots = self._explicit_locals(result, slots[:nold], null)
        if result.stack is KEEP:
            if point.stack != old.stack:
                raise NeedsMigration(
                    f"{self.label}: the explicit migration keeps the old value stack, but "
                    f"{point.describe()} holds a different one "
                    f"({'; '.join(_stack_diff(old.stack, point.stack, sh))}); return "
                    "Resume(stack=[...]) with the values the new point needs")
            stack = list(slots[nold:])
            for j, x in enumerate(stack):
                if point.lasti[j] >= 0 and point.stack[j] & 7 == ROLE_LASTI and type(x) is int:
                    stack[j] = point.lasti[j]
        else:
            stack = list(result.stack)
            if len(stack) != len(point.stack):
                raise NeedsMigration(f"{self.label}: the explicit migration gives "
                                     f"{len(stack)} stack values, {point.describe()} has "
                                     f"{len(point.stack)}")
            stack = [null if x is EMPTY else x for x in stack]
        new_exc = exc if result.exception is KEEP else result.exception
        detail = f"{old.describe()} -> {point.describe()} in the new code (explicit)"
        return point.offset, new_slots + stack, new_exc, detail

    def _resolve_point(self, sh: Shape, r: Resume) -> Point:
        label = self.label
        if r.start:
            return sh.points[CREATED]
        pts = sh.in_order()
        if r.line is not None:
            pts = sh.by_line(r.line)
            if not pts:
                listing = ", ".join(p.describe() for p in sh.in_order()[:12])
                raise NeedsMigration(f"{label}: the explicit migration names line {r.line}, "
                                     f"where the new code does not suspend (it suspends at "
                                     f"{listing})")
        if r.index is not None:
            if type(r.index) is not int or not 0 <= r.index < len(pts):
                raise NeedsMigration(f"{label}: the explicit migration names suspension "
                                     f"#{r.index}, but there are {len(pts)}")
            return pts[r.index]
        if len(pts) != 1:
            raise NeedsMigration(f"{label}: the explicit migration must name one suspension "
                                 f"(line= and/or index=); it names {len(pts)}")
        return pts[0]

    def _explicit_locals(self, r: Resume, old_slots: list[Any], null: Any) -> list[Any]:
        info = self.new.info
        names = info.slot_names
        code = self.new.code
        nfree = len(code.co_freevars)
        n = len(names)
        if not isinstance(r.locals, Mapping):
            raise NeedsMigration(f"{self.label}: Resume.locals must be a mapping")
        unknown = set(r.locals) - set(names)
        if unknown:
            raise NeedsMigration(f"{self.label}: the explicit migration sets "
                                 f"{sorted(unknown)}, which the new code has no local for")
        assert self.sig is not None
        old_free = {name: old_slots[i] for i, name in enumerate(self.sig.names)
                    if i >= len(self.sig.names) - self.sig.nfree}
        cells = set(info.cell_slots)
        out: list[Any] = []
        for j, name in enumerate(names):
            if j >= n - nfree:
                # Free variables are the enclosing function's cells: they come
                # from the snapshot (a value given for one fills the cell).
                cell = old_free.get(name)
                if cell is None:
                    raise NeedsMigration(f"{self.label}: free variable {name!r} has no cell in "
                                         "the snapshot")
                if name in r.locals and type(cell) is types.CellType:
                    cell.cell_contents = r.locals[name]
                out.append(cell)
            elif name in r.locals:
                x = r.locals[name]
                out.append(types.CellType(x) if j in cells and type(x) is not types.CellType
                           else x)
            else:
                out.append(types.CellType() if j in cells else null)
        return out


def _empty(cell: types.CellType) -> bool:
    try:
        cell.cell_contents  # noqa: B018
    except ValueError:
        return True
    return False


def _at(line: int | None) -> str:
    return f" at line {line}" if line is not None else ""


def _a(noun: str) -> str:
    return f"an {noun}" if noun[0] in "aeiou" else f"a {noun}"


def _kind_of(flags: int) -> str:
    for flag, name in _FLAG_KIND.items():
        if flags & flag:
            return name
    return "plain function"


def _distance(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    sa, sb = list(a), list(b)
    common = 0
    for x in sa:
        if x in sb:
            sb.remove(x)
            common += 1
    return len(a) + len(b) - 2 * common


def _stack_diff(old: tuple[int, ...], new: tuple[int, ...], sh: Shape) -> list[str]:
    """Why the live context differs, in terms of loops / with / except blocks.

    ``sh.renders`` names a stack label when the new code has that construct
    somewhere (then the point moved out of it); a structural slot of the old
    frame the new code does not have at all is named by its role (a changed
    loop: another slot with the same role stands where it was).
    """
    rest = list(new)
    missing = []
    for x in old:
        if x in rest:
            rest.remove(x)
        else:
            missing.append(x)
    out: list[str] = []
    structural = (ROLE_FOR, ROLE_WITH, ROLE_EXCEPT)
    kinds = {ROLE_FOR: "a `for` loop", ROLE_WITH: "a `with` block",
             ROLE_EXCEPT: "an `except` block"}
    for x in missing:
        role = x & 7
        if role not in structural:
            continue
        name = sh.renders.get(x)
        if name is not None:
            out.append(f"the resume point moved from inside {name} to outside it")
            continue
        replacement = next((y for y in rest if y & 7 == role), None)
        if replacement is None:
            out.append(f"the resume point was inside {kinds[role]} that the new code does "
                       "not have")
            continue
        # The same kind of construct stands where the old one was: it changed.
        rest.remove(replacement)
        now = sh.renders.get(replacement, ROLE_NAMES[role])
        out.append(f"the resume point was inside {kinds[role]} that the new code changed "
                   f"(now {now})")
    for x in rest:
        role = x & 7
        if role == ROLE_WITH and x in sh.renders:
            out.append(f"the new code has it inside {sh.renders[x]}, which the old frame "
                       "never entered (its `__enter__` never ran)")
        elif role in structural:
            out.append(f"the new code has it inside {sh.renders.get(x, ROLE_NAMES[role])}, "
                       "which the old frame was not in")
    if not out:
        out.append("the expression around the suspension changed (its pending operands "
                   "differ)")
    # One with block is two slots on 3.14+ (__exit__ and its self): say it once.
    return list(dict.fromkeys(out))
