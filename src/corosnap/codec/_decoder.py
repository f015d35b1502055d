"""msgpack trees -> values (blob format version 1); the mirror of _encoder.

Rules of this file:
- ``msgpack.unpackb`` has already parsed the bytes; this walk turns tagged
  arrays and exts back into objects, top-down, so that an object can be
  registered in the memo *before* its children when the encoder did so (that
  is what makes cycles work).  The registration point of every kind matches
  the encoder exactly (docs/format.md has the table).
- Lists and dicts from the unpacker are reused in place: a list of plain
  values costs one scan, a flat list (``T_FLATLIST``) costs none.
- Nothing here trusts the input.  Every malformed shape raises
  CorruptSnapshot; globals are resolved through the safe-mode gate; the
  fallback pickler is refused in safe mode.
- Registering an object before its contents is what lets a back-reference
  close a cycle.  Cycles through lists, dicts, sets and Python code are what
  real code makes and come back; objects CPython calls, advances or hashes
  without its recursion guard (partials, C iterators, slices, tuples) are
  tracked instead: chains of them are bounded (``depth``, MAX_NESTING) and
  one that reaches itself is refused (``_check_no_unguarded_cycle``).
"""

from __future__ import annotations

import functools
import itertools
import sys
import types
from array import array
from collections import Counter
from collections.abc import Callable, MutableMapping
from typing import Any, Protocol

from msgpack import ExtType

from .._errors import CorruptSnapshot, LimitExceeded, RestoreError, UnsafeSnapshot
from ._globals import (
    NEVER_CALLED,
    SAFE_CALLABLES,
    check_method_allowed,
    load_global,
    module_allowed,
    resolve_method,
)
from ._markers import NONE_MARK, Deferred, Tag, ext_hook_for, register_tags
from ._picklers import loads_with
from ._speedups import ACTIVE as _HELPERS
from ._tags import (
    BUFFER_BYTEARRAY,
    BUFFER_BYTES,
    BUFFER_IN_BAND,
    BUFFER_VIEW_READONLY,
    BUFFER_VIEW_WRITABLE,
    EXT_BUFFER,
    EXT_BYTEARRAY,
    EXT_INTLIST,
    EXT_PICKLE,
    EXT_REF,
    INT_TYPECODES,
    MAX_EQUAL_HASHES,
    SEQITER_TYPES,
    SHAPE_MIN,
    T_CELL,
    T_DICT,
    T_DICTITER,
    T_DICTVIEW,
    T_DONE,
    T_EXCEPTION,
    T_FLATLIST,
    T_FRAME,
    T_FROZENSET,
    T_FUNCTION,
    T_GLOBAL,
    T_METHOD,
    T_MODULE,
    T_NEWOBJ,
    T_RANGE,
    T_RANGEITER,
    T_REDUCE,
    T_SEQITER,
    T_SET,
    T_SHAPED,
    T_TUPLE,
)

MAX_NESTING = 2_000
"""The deepest chain of recursion-unguarded objects a blob may build (iterators
of iterators, partials of partials, slices in tuples in slices...): CPython
frees, calls, advances and hashes such chains recursively, without its guard."""

MAX_CYCLE_WALK = 1_000_000
"""Steps the unguarded-cycle check (``Decoder._check_no_unguarded_cycle``) may
take over one blob.  Real blobs take a few per rebuilt iterator or partial
(every finished part of the graph is walked once); only a graph built to
make the check slow gets near it, and is refused with LimitExceeded."""

MAX_EXCEPTION_CHAIN = 1_000
"""The longest ``__cause__`` / ``__context__`` chain a blob's exceptions may
form.  CPython 3.11's traceback printer recurses in C once per link, without
a guard (300,000 links overflow the C stack); a chain that long never comes
from real code, whose handlers nest no deeper than the recursion limit."""


_CHAIN = itertools.chain  # restored with relays (Decoder._reduce)
_STARMAP = itertools.starmap
_TYPE_FLAGS = type.__dict__["__flags__"].__get__
_MRO = type.__dict__["__mro__"].__get__
_TYPE_DICT = type.__dict__["__dict__"].__get__


def follows_unguarded(cls: type) -> bool:
    """Whether CPython's C code calls or advances an object of ``cls`` by
    following the references it was built from, without its recursion guard.

    That is the case when ``__call__`` or ``__next__`` is C code (a slot
    wrapper, not a Python function): ``functools.partial`` calls its
    ``func`` (``partial_vectorcall``, every version 3.11-3.15), a bound
    method its ``__func__``, ``iter(f, sentinel)`` calls ``f``,
    ``enumerate``/``zip``/``map``/``itertools.chain``... advance the
    iterators they hold.  A Python ``__call__``/``__next__`` runs in a new
    Python frame, which counts against the recursion limit.  Found on the
    MRO's dicts, running no code."""
    for name in ("__call__", "__next__"):
        for klass in _MRO(cls):
            attr = _TYPE_DICT(klass).get(name)
            if attr is not None:
                if type(attr) is not types.FunctionType:
                    return True
                break
    return False
_BASE_EXC_SUBCLASS = 1 << 30  # Py_TPFLAGS_BASE_EXC_SUBCLASS


_CAUSE = BaseException.__dict__["__cause__"].__get__
_CONTEXT = BaseException.__dict__["__context__"].__get__


def _links(exc: Any) -> list[Any]:
    """The exceptions ``exc`` is chained to (read through BaseException's own
    descriptors: a subclass's properties could run code or lie)."""
    return [x for x in (_CAUSE(exc), _CONTEXT(exc)) if x is not None]


def longest_exception_chain(roots: list[Any], limit: int = MAX_EXCEPTION_CHAIN) -> int:
    """An upper bound on the longest chain of exceptions, linked by
    ``__cause__`` or ``__context__``, that starts at one of ``roots``
    (exceptions); stops counting once past ``limit``.

    Exact when the links form no cycle.  Cycles are legal (CPython's printers
    stop at an exception they have seen), so a walk's length is bounded by
    counting every exception of a strongly connected component: Tarjan's
    algorithm, iterative, then the longest path between components, which it
    yields sinks first.  Linear in the number of exceptions reached."""
    index: dict[int, int] = {}
    low: dict[int, int] = {}
    height: dict[int, int] = {}
    on_stack: set[int] = set()
    stack: list[Any] = []
    longest = 0
    for root in roots:
        if id(root) in index:
            continue
        index[id(root)] = low[id(root)] = len(index)
        stack.append(root)
        on_stack.add(id(root))
        work = [(root, iter(_links(root)))]
        while work:
            node, links = work[-1]
            for nxt in links:
                if id(nxt) not in index:
                    index[id(nxt)] = low[id(nxt)] = len(index)
                    stack.append(nxt)
                    on_stack.add(id(nxt))
                    work.append((nxt, iter(_links(nxt))))
                    break
                if id(nxt) in on_stack and index[id(nxt)] < low[id(node)]:
                    low[id(node)] = index[id(nxt)]
            else:
                work.pop()
                if work and low[id(node)] < low[id(work[-1][0])]:
                    low[id(work[-1][0])] = low[id(node)]
                if low[id(node)] != index[id(node)]:
                    continue
                component: list[Any] = []
                while True:
                    x = stack.pop()
                    on_stack.discard(id(x))
                    component.append(x)
                    if x is node:
                        break
                members = {id(x) for x in component}
                below = max((height[id(y)] for x in component for y in _links(x)
                             if id(y) not in members), default=0)
                h = len(component) + below
                if h > limit:
                    return h
                for x in component:
                    height[id(x)] = h
                longest = max(longest, h)
    return longest


def check_exception_chains(roots: list[Any]) -> None:
    """LimitExceeded when an exception chain from ``roots`` is too long to print."""
    if roots and longest_exception_chain(roots) > MAX_EXCEPTION_CHAIN:
        raise LimitExceeded(
            f"an exception's __cause__/__context__ chain is longer than {MAX_EXCEPTION_CHAIN} "
            "exceptions (CPython's traceback printer recurses once per link)"
        )


def printable_cause(exc: BaseException) -> BaseException | None:
    """``exc`` as the cause of a corosnap error, unless its chain is too long to
    print (a reduce callable can raise an exception the blob built)."""
    return exc if longest_exception_chain([exc]) <= MAX_EXCEPTION_CHAIN else None


def is_exception(v: Any) -> bool:
    """CPython's own test (``PyExceptionInstance_Check``): the flag a type
    inherits from its C base.  ``isinstance(v, BaseException)`` can be fooled
    by a ``__class__`` property (``unittest.mock``'s ``spec=`` does it), and
    CPython would then read the object as an exception struct."""
    return bool(_TYPE_FLAGS(type(v)) & _BASE_EXC_SUBCLASS)


_WALK = frozenset({list, dict, Deferred})


def _unpack_ints(data: bytes) -> list[int]:
    """Inverse of the encoder's _pack_ints (EXT_INTLIST)."""
    width = data[0] if data else 0
    typecode = INT_TYPECODES.get(width)
    if typecode is None or (len(data) - 1) % width:
        raise CorruptSnapshot("malformed int list")
    packed = array(typecode)
    packed.frombytes(memoryview(data)[1:])
    if _BIG_ENDIAN:
        packed.byteswap()
    return packed.tolist()


_BIG_ENDIAN = sys.byteorder == "big"


class FrameHooks(Protocol):
    """What the decoder asks the snapshot layer for (its FrameDecoder): the
    codec knows values, not frames."""

    def hook(self, dec: Decoder, v: list[Any], i: int) -> Any:
        """The generator or coroutine of the frame at ``v[i:]``."""

    def coderef(self, dec: Decoder, v: list[Any], i: int) -> tuple[Any, int]:
        """The code named at ``v[i:]`` (an entry with ``code`` and ``globals``)
        and the index after its fields."""

    def fresh(self, entry: Any) -> Any:
        """A new, created generator/coroutine of an entry's code."""

    def finished(self, entry: Any) -> Any:
        """A finished generator/coroutine/async generator of an entry's code."""


class Decoder:
    """One snapshot's worth of decoding state (memo, string and code tables)."""

    __slots__ = ("memo", "strings", "codes", "shapes", "safe", "allow", "frames", "active",
                 "depth", "pinned", "follows", "building", "settled", "walk_budget",
                 "follower_types", "exceptions", "cstate", "buffers", "after", "migration")

    def __init__(
        self,
        frames: FrameHooks,
        safe: bool = False,
        allow: tuple[str, ...] = (),
        buffers: list[Any] | None = None,
    ) -> None:
        self.memo: list[Any] = []
        self.strings: list[str] = []
        self.codes: list[Any] = []
        self.shapes: list[tuple[str, ...]] = []
        self.active: set[int] = set()  # frames being decoded (delegation cycle check)
        # Nesting depth of rebuilt objects that CPython frees without its
        # recursion guard (iterators, slices, partials, cells, ...): a chain of
        # them built through back-references would overflow the C stack when
        # freed.  Lists and dicts have the guard (and are never hashed) and
        # reset the count.  Tuples do not: up to 3.13 CPython hashes a tuple's
        # items without the guard (3.12+ hash a slice's fields the same way),
        # so a tuple counts one more than its deepest item, and is pinned
        # while it is counted (it is not in the memo; its id must stay its own).
        self.depth: MutableMapping[int, int] = {}  # the C engine's: a _ccodec.Memo
        self.pinned: list[Any] = []
        # The unguarded-cycle check (_check_no_unguarded_cycle): for each
        # rebuilt object whose type follows_unguarded(), the rebuilt objects
        # of that kind among its arguments and state; the ones whose state is
        # being decoded; the ones known to reach none of those.
        self.follows: dict[int, list[Any]] = {}
        self.building: set[int] = set()
        self.settled: set[int] = set()
        self.walk_budget = MAX_CYCLE_WALK
        self.follower_types: dict[type, bool] = {}
        self.exceptions: list[BaseException] = []  # built by reduces: chains checked at the end
        self.safe = safe
        self.allow = allow
        self.frames = frames
        # The snapshot layer's C engine's view of this decoding (a RestoreState
        # sharing these tables), or None; it refers back to the decoder, so the
        # snapshot layer drops it when the loads is over.
        self.cstate: Any = None
        self.buffers = buffers  # loads(buffers=): the out-of-band buffers, by index
        # Steps to take once the whole blob is restored, added while decoding
        # (restored async generators in flight take the event loop's hooks).
        self.after: list[Callable[[], None]] = []
        # loads(migrate=True): the snapshot layer's migration session (the
        # codec only carries it to the frame and code hooks).
        self.migration: Any = None

    # The scan of the engine this process runs (codec/_speedups.py).
    is_flat = staticmethod(_HELPERS.is_flat)

    def string(self, field: Any) -> str:
        """Inverse of Encoder.string: a new string is appended to the table."""
        if type(field) is str:
            self.strings.append(field)
            return field
        if type(field) is int and 0 <= field < len(self.strings):
            return self.strings[field]
        raise CorruptSnapshot(f"bad string reference {field!r}")

    def dec(self, v: Any) -> Any:
        t = type(v)
        if t is list:
            if v and type(v[0]) is Tag:
                return _TAGGED[v[0].kind](self, v)
            self.memo.append(v)
            walk = _WALK
            dec = self.dec
            for i, x in enumerate(v):
                if type(x) in walk:
                    v[i] = dec(x)
            return v
        if t is dict:
            self.memo.append(v)
            if len(v) >= SHAPE_MIN:
                keys = tuple(v)
                for k in keys:
                    if type(k) is not str:
                        break
                else:
                    self.shapes.append(keys)
            walk = _WALK
            dec = self.dec
            for k, x in v.items():
                if type(x) in walk:
                    v[k] = dec(x)
            return v
        if t is Deferred:
            return self._deferred(v)
        if t is ExtType:
            raise CorruptSnapshot(f"unknown ext type {v.code}")
        return v

    def finish(self) -> None:
        """Checks that need the whole object graph: run once, when the root
        frame's values are decoded, before that frame is written."""
        check_exception_chains(self.exceptions)

    def dec_items(self, items: Any) -> list[Any]:
        if type(items) is not list:
            raise CorruptSnapshot("expected an array")
        walk = _WALK
        dec = self.dec
        return [dec(x) if type(x) in walk else x for x in items]

    def _nest(self, parts: Any) -> int:
        """1 + the deepest unguarded chain among ``parts`` (LimitExceeded past MAX_NESTING)."""
        depth = self.depth
        deepest = 0
        for part in parts:
            d = depth.get(id(part), 0)
            if d > deepest:
                deepest = d
        if deepest >= MAX_NESTING:
            raise LimitExceeded(f"objects nested more than {MAX_NESTING} deep through "
                                "back-references")
        return deepest + 1

    # -- context-dependent exts -----------------------------------------
    def _deferred(self, v: Deferred) -> Any:
        code, data = v.code, v.data
        if code == EXT_REF:
            index = int.from_bytes(data, "big")
            if not 0 < len(data) <= 4 or index >= len(self.memo):
                raise CorruptSnapshot(f"back-reference {index} points past the objects read so far")
            return self.memo[index]
        if code == EXT_BYTEARRAY:
            out = bytearray(data)
            self.memo.append(out)
            return out
        if code == EXT_INTLIST:
            ints = _unpack_ints(data)
            self.memo.append(ints)
            return ints
        if code == EXT_BUFFER:
            obj = self._buffer(data)
            self.memo.append(obj)
            return obj
        if code == EXT_PICKLE:
            if self.safe:
                raise UnsafeSnapshot(
                    "safe mode refused a value serialized with the fallback pickler "
                    "(loading it could run arbitrary code)"
                )
            try:
                obj = loads_with(data)
            except MemoryError:
                # a damaged payload's length or size field (as anywhere else
                # in a blob that asks for too much: LimitExceeded)
                raise LimitExceeded("the fallback pickler asked for more memory than is "
                                    "available") from None
            except Exception as exc:
                raise RestoreError(f"the fallback pickler could not load a value: {exc!r}") from exc
            self.memo.append(obj)
            return obj
        raise CorruptSnapshot("a frame-slot None marker outside a frame slot")

    def _buffer(self, data: bytes) -> Any:
        """An EXT_BUFFER: a bytes, bytearray or memoryview, from the blob (in
        band) or from ``loads(buffers=)`` (out of band)."""
        kind = data[0] if data else 0xFF
        if BUFFER_IN_BAND <= kind <= BUFFER_IN_BAND | BUFFER_VIEW_WRITABLE:
            kind ^= BUFFER_IN_BAND
            if kind == BUFFER_BYTES:
                return data[1:]
            body = memoryview(data)[1:]
            if kind == BUFFER_BYTEARRAY:
                return bytearray(body)
            if kind == BUFFER_VIEW_READONLY:
                return body  # a read-only view of the blob's own copy
            return memoryview(bytearray(body))
        if not 0 <= kind <= BUFFER_VIEW_WRITABLE or len(data) not in (2, 3, 5):
            raise CorruptSnapshot(f"malformed buffer reference {data[:5]!r}")
        index = int.from_bytes(data[1:], "big")
        buffers = self.buffers
        if buffers is None:
            raise CorruptSnapshot(
                f"the blob refers to out-of-band buffer {index}, but loads() was given no "
                "buffers= (a blob made with dumps(..., buffer_callback=) needs the buffers "
                "the callback set aside, in the order it received them)"
            )
        if index >= len(buffers):
            raise CorruptSnapshot(f"the blob refers to out-of-band buffer {index}, but loads() "
                                  f"was given {len(buffers)} buffers")
        return from_buffer(buffers[index], kind)

    # -- tagged arrays ----------------------------------------------------
    def _flat(self, v: list[Any]) -> Any:
        del v[0]
        if not self.is_flat(v):
            raise CorruptSnapshot("a flat list holds a non-scalar")
        self.memo.append(v)
        return v

    def _tuple(self, v: list[Any]) -> Any:
        items = self.dec_items(v[1:])
        out = tuple(items)
        if self.depth:
            # Hashed without CPython's recursion guard (see __init__).
            nest = self._nest(items)
            if nest > 1:
                self.depth[id(out)] = nest
                self.pinned.append(out)
        return out

    def _set(self, v: list[Any]) -> Any:
        out: set[Any] = set()
        self.memo.append(out)
        try:
            out.update(_not_flooding(self.dec_items(v[1:])))
        except TypeError as exc:
            raise CorruptSnapshot(f"unhashable set item: {exc}") from exc
        return out

    def _frozenset(self, v: list[Any]) -> Any:
        try:
            return frozenset(_not_flooding(self.dec_items(v[1:])))
        except TypeError as exc:
            raise CorruptSnapshot(f"unhashable frozenset item: {exc}") from exc

    def _dict_pairs(self, v: list[Any]) -> Any:
        if len(v) % 2 != 1:
            raise CorruptSnapshot("dict pairs of odd length")
        out: dict[Any, Any] = {}
        self.memo.append(out)
        # Keys and values in the encoder's order (memo indexes follow it),
        # then checked for hash flooding, then inserted (as pickle's SETITEMS).
        flat = self.dec_items(v[1:])
        keys = flat[0::2]
        try:
            out.update(zip(_not_flooding(keys), flat[1::2], strict=True))
        except TypeError as exc:
            raise CorruptSnapshot(f"unhashable dict key: {exc}") from exc
        return out

    def _shaped(self, v: list[Any]) -> Any:
        index = v[1] if len(v) > 1 else None
        if type(index) is not int or not 0 <= index < len(self.shapes):
            raise CorruptSnapshot("dict shape reference points past the shapes read so far")
        keys = self.shapes[index]
        if len(v) - 2 != len(keys):
            raise CorruptSnapshot("dict shape and values differ in length")
        out: dict[str, Any] = {}
        self.memo.append(out)
        walk = _WALK
        dec = self.dec
        for k, x in zip(keys, v[2:], strict=True):
            out[k] = dec(x) if type(x) in walk else x
        return out

    def _global(self, v: list[Any]) -> Any:
        if len(v) != 3:
            raise CorruptSnapshot("malformed global reference")
        obj = load_global(self.string(v[1]), self.string(v[2]), self.safe, self.allow)
        self.memo.append(obj)
        return obj

    def _method(self, v: list[Any]) -> Any:
        if len(v) != 3:
            raise CorruptSnapshot("malformed method")
        obj = self.dec(v[1])
        name = self.string(v[2])
        try:
            method, func = resolve_method(obj, name)
        except LookupError as exc:
            raise CorruptSnapshot(f"a method that is not one: {exc}") from None
        if self.safe:
            check_method_allowed(obj, name, func, self.allow)
        self.memo.append(method)
        self.depth[id(method)] = self._nest((obj,))
        return method

    def _module(self, v: list[Any]) -> Any:
        if len(v) != 2:
            raise CorruptSnapshot("malformed module reference")
        name = self.string(v[1])
        obj = load_global(name.rpartition(".")[0] or name, name.rpartition(".")[2], self.safe,
                          self.allow) if "." in name else self._import(name)
        if not isinstance(obj, types.ModuleType):
            raise CorruptSnapshot(f"{name} is not a module")
        self.memo.append(obj)
        return obj

    def _import(self, name: str) -> Any:
        import importlib

        from ._globals import check_allowed

        if self.safe:
            check_allowed(name, "", self.allow, "module")
        try:
            return importlib.import_module(name)
        except Exception as exc:
            raise RestoreError(f"cannot import module {name!r}: {exc!r}") from exc

    def _cell(self, v: list[Any]) -> Any:
        if len(v) > 2:
            raise CorruptSnapshot("malformed cell")
        cell = types.CellType()
        self.memo.append(cell)
        if len(v) == 2:
            contents = self.dec(v[1])
            if type(contents) is types.CellType:
                # Cells are freed without CPython's recursion guard: a long
                # chain of cells in cells would overflow the C stack.
                raise CorruptSnapshot("a cell holding a cell")
            cell.cell_contents = contents
            self.depth[id(cell)] = self._nest((contents,))
        return cell

    def _function(self, v: list[Any]) -> Any:
        entry, i = self.frames.coderef(self, v, 1)
        code, globals_ = entry.code, entry.globals
        tail = v[i:] + [None] * (5 - len(v[i:]))
        if len(tail) != 5:
            raise CorruptSnapshot("malformed function")
        closure_f, defaults_f, kwdefaults_f, qualname, fdict_f = tail
        closure = tuple(self.dec_items(closure_f)) if closure_f is not None else None
        if len(closure or ()) != len(code.co_freevars) or not all(
            type(c) is types.CellType for c in closure or ()
        ):
            raise CorruptSnapshot(f"closure of {code.co_qualname} does not match its code")
        defaults = tuple(self.dec_items(defaults_f)) if defaults_f is not None else None
        fn = types.FunctionType(code, globals_, code.co_name, defaults, closure)
        if kwdefaults_f is not None:
            kw = self.dec(kwdefaults_f)
            if type(kw) is not dict:
                raise CorruptSnapshot("function keyword defaults must be a dict")
            fn.__kwdefaults__ = kw
        if qualname is not None:
            if type(qualname) is not str:
                raise CorruptSnapshot("function qualname must be a string")
            fn.__qualname__ = qualname
        if fdict_f is not None:
            fdict = self.dec(fdict_f)
            if type(fdict) is not dict:
                raise CorruptSnapshot("function __dict__ must be a dict")
            fn.__dict__.update(fdict)
        self.memo.append(fn)
        return fn

    def _frame(self, v: list[Any]) -> Any:
        return self.frames.hook(self, v, 1)

    def _done(self, v: list[Any]) -> Any:
        entry, i = self.frames.coderef(self, v, 1)
        if i != len(v):
            raise CorruptSnapshot("malformed finished generator")
        gen = self.frames.finished(entry)  # made and closed without running any of its code
        self.memo.append(gen)
        return gen

    # A reduce is decoded in three stages, each a method: the C decoder
    # (codec/_ccodec.c) runs the common case of each itself and hands a
    # value to the stage it does not handle, before it has decoded anything
    # that stage decodes.
    def _reduce(self, v: list[Any]) -> Any:
        if not 3 <= len(v) <= 6:
            raise CorruptSnapshot("malformed reduce")
        return self._reduce_with(v, self.dec(v[1]))

    def _reduce_with(self, v: list[Any], func: Any) -> Any:
        """The reduce at ``v`` whose callable, ``func``, is decoded: checks,
        arguments, the call; then ``_reduce_state``."""
        if id(func) in NEVER_CALLED:
            raise CorruptSnapshot(f"a blob never rebuilds a {func.__name__} by calling it")
        if self.safe and id(func) not in SAFE_CALLABLES and not (
                isinstance(func, type | types.FunctionType)
                and module_allowed(getattr(func, "__module__", "") or "", self.allow)):
            # Only classes and functions of the allowed modules, and the vetted
            # builtins: no descriptors, bound methods or other builtins.
            raise UnsafeSnapshot(f"safe mode refused to call {func!r}")
        args = self.dec_items(v[2])
        if self.safe:
            _no_huge_ints(func, args)
        if func is _STARMAP and len(args) >= 2:
            # starmap_next makes a tuple of each item, advancing an item that
            # is an iterator, unguarded: its input comes relayed, as the
            # native starmap's (codec/_iterators.py).
            from . import _iterators  # it imports this module

            args = [*_iterators._relay_starmap(tuple(args))]
        if v[0].kind == T_NEWOBJ:
            if not isinstance(func, type):
                raise CorruptSnapshot("object constructor is not a class")
            make: Any = func.__new__
            args = [func, *args]
        else:
            if not callable(func):
                raise CorruptSnapshot("reduce callable is not callable")
            make = func
        nest = self._nest(args)
        try:
            obj = make(*args)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # SystemExit, GeneratorExit too: never escape loads
            raise RestoreError(f"rebuilding a {getattr(func, '__qualname__', func)!r} failed: "
                               f"{exc!r}") from printable_cause(exc)
        self.memo.append(obj)
        self.depth[id(obj)] = nest
        if is_exception(obj):
            self.exceptions.append(obj)
        return self._reduce_state(v, obj, args)

    def _reduce_state(self, v: list[Any], obj: Any, args: list[Any]) -> Any:
        """The state, list items and dict items of the reduce at ``v``, built
        (``obj``, in the memo) from ``args``."""
        rest = v[3:] + [None] * (6 - len(v))
        state_f, list_f, dict_f = rest
        cls = type(obj)
        follower = self.follower_types.get(cls)
        if follower is None:
            follower = self.follower_types[cls] = follows_unguarded(cls)
        edges: list[Any] | None = None
        if follower:
            # Its arguments were built before it: they cannot lead back to it.
            # Its state, list and dict items are decoded after it is in the
            # memo, so a back-reference there can close a cycle.
            edges = self.follows[id(obj)] = []
            self._add_edges(edges, args)
            if state_f is not None or list_f is not None or dict_f is not None:
                self.building.add(id(obj))
        try:
            if state_f is not None:
                state = self.dec(state_f)
                parts = state if type(state) is tuple else (state,)
                self.depth[id(obj)] = max(self.depth[id(obj)], self._nest(
                    [x for p in parts for x in (p.values() if type(p) is dict else
                                                p if type(p) is tuple else (p,))]))
                if edges is not None:
                    self._add_edges(edges, parts)
                if cls is _CHAIN and type(state) is tuple:
                    # chain_next calls iter() and next() on whatever its source
                    # yields, which no check can see ahead (a source yielding
                    # the chain made it advance itself in C: SIGSEGV on 3.11,
                    # found by the fuzzing campaign).  As the native chain
                    # (codec/_iterators.py), it gets its inputs through Python
                    # relays, so such a loop ends in RecursionError.
                    from . import _iterators  # it imports this module

                    state = _iterators._relay_chain(state)
                _set_state(obj, state)
            if list_f is not None:
                items = self.dec_items(list_f)
                if edges is not None:
                    self._add_edges(edges, items)
                if hasattr(obj, "extend"):
                    obj.extend(items)
                else:
                    for item in items:
                        obj.append(item)
            if dict_f is not None:
                flat = self.dec_items(dict_f)
                if edges is not None:
                    self._add_edges(edges, flat)
                for k in range(0, len(flat) - 1, 2):
                    obj[flat[k]] = flat[k + 1]
        except (CorruptSnapshot, RestoreError, KeyboardInterrupt):
            raise
        except BaseException as exc:
            raise RestoreError(f"restoring the state of a {type(obj).__qualname__} failed: "
                               f"{exc!r}") from printable_cause(exc)
        if edges is not None and id(obj) in self.building:
            self.building.discard(id(obj))
            self._check_no_unguarded_cycle(obj)
        return obj

    def _add_edges(self, edges: list[Any], values: Any) -> None:
        """Append to ``edges`` the rebuilt objects that follow references
        unguarded among ``values``, looking inside tuples (a partial's
        ``args``, a state tuple) but not inside lists, dicts or sets, which
        CPython only walks, never calls or advances through.  Every such
        object is registered in ``follows`` when it is built, before any
        back-reference can name it."""
        follows = self.follows
        for x in values:
            if type(x) is tuple:
                self._add_edges(edges, x)
            elif id(x) in follows:
                edges.append(x)

    def _check_no_unguarded_cycle(self, obj: Any) -> None:
        """Refuse ``obj`` if, through the objects it follows without CPython's
        recursion guard (its ``follows`` edges, then theirs...), it reaches
        itself.

        A blob decodes an object's reduce state after registering the object
        in the memo, so a back-reference in that state can name the object
        itself or an ancestor still being built: ``partial.__setstate__((p,
        ...))`` makes a partial that calls itself, and CPython's
        ``partial_vectorcall`` recurses in C until the stack overflows (every
        version 3.11-3.15; so do ``itertools.chain``'s ``__setstate__`` and a
        ``map`` or ``iter(f, sentinel)`` built around such a partial).  Real
        code never builds such a loop: it could not call or advance it.

        Every cycle of such edges is closed by a late edge (state decoded
        after the memo entry), so checking each object once its state is set
        finds every cycle, when its last member completes.  Objects whose
        walk meets no object still being built can never join a later cycle:
        they are ``settled`` and not walked again.  The total walk of a blob
        is bounded by MAX_CYCLE_WALK (LimitExceeded)."""
        follows, settled, building = self.follows, self.settled, self.building
        target = id(obj)
        parent: dict[int, tuple[int, Any]] = {}
        seen: set[int] = set()
        stack = [(target, x) for x in follows[target]]
        open_ = False
        budget = self.walk_budget
        while stack:
            frm, x = stack.pop()
            k = id(x)
            if k == target:
                path = [x]
                while frm != target:
                    frm, y = parent[frm]
                    path.append(y)
                path.append(obj)
                names = " -> ".join(_type_name(y) for y in reversed(path))
                raise CorruptSnapshot(
                    f"an object that reaches itself ({names}): CPython calls "
                    "or advances such objects through one another without its recursion "
                    "guard, so using it could overflow the C stack")
            if k in seen or k in settled:
                continue
            budget -= 1
            if budget < 0:
                raise LimitExceeded(
                    f"checking the blob's partials and iterators for cycles took more than "
                    f"{MAX_CYCLE_WALK} steps")
            seen.add(k)
            parent[k] = (frm, x)
            if k in building:
                open_ = True
            stack.extend((k, y) for y in follows[k])
        self.walk_budget = budget
        if not open_:
            settled.update(seen)
            settled.add(target)

    def _exception(self, v: list[Any]) -> Any:
        if len(v) != 5 or type(v[4]) is not bool:
            raise CorruptSnapshot("malformed exception")
        exc = self.dec(v[1])
        if not is_exception(exc):
            raise CorruptSnapshot("an exception record that rebuilds a non-exception")
        cause = self.dec(v[2])
        context = self.dec(v[3])
        for link in (cause, context):
            if link is not None and not is_exception(link):
                raise CorruptSnapshot("an exception chained to a non-exception")
        exc.__cause__ = cause
        exc.__context__ = context
        exc.__suppress_context__ = v[4]
        return exc

    def _dictiter(self, v: list[Any]) -> Any:
        if len(v) != 4 or type(v[2]) is not int or type(v[3]) is not int:
            raise CorruptSnapshot("malformed dict iterator")
        target = self.dec(v[1])
        if type(target) is not dict or v[2] not in (0, 1, 2) or not 0 <= v[3] <= len(target):
            raise CorruptSnapshot("malformed dict iterator")
        it = iter((target, target.values(), target.items())[v[2]])
        for _ in range(v[3]):
            next(it)
        self.memo.append(it)
        return it

    def _dictview(self, v: list[Any]) -> Any:
        if len(v) != 3 or v[2] not in (0, 1, 2):
            raise CorruptSnapshot("malformed dict view")
        target = self.dec(v[1])
        if type(target) is not dict:
            raise CorruptSnapshot("a dict view of a non-dict")
        view = (target.keys, target.values, target.items)[v[2]]()
        self.memo.append(view)
        return view

    def _range(self, v: list[Any]) -> Any:
        if len(v) != 4:
            raise CorruptSnapshot("malformed range")
        try:
            return range(self.dec(v[1]), self.dec(v[2]), self.dec(v[3]))
        except (TypeError, ValueError) as exc:
            raise CorruptSnapshot(f"malformed range: {exc}") from exc

    def _rangeiter(self, v: list[Any]) -> Any:
        if len(v) == 3 and type(v[1]) is int and type(v[2]) is int:
            # The common shape, iter(range(stop)) advanced by index.
            try:
                it = iter(range(v[1]))
                it.__setstate__(v[2])  # type: ignore[attr-defined]
            except (TypeError, ValueError, OverflowError) as exc:
                raise CorruptSnapshot(f"malformed range iterator: {exc}") from exc
            self.memo.append(it)
            return it
        fields = [self.dec(x) for x in v[1:]]
        if not 2 <= len(fields) <= 4 or not all(type(f) is int for f in fields):
            raise CorruptSnapshot("malformed range iterator")
        index = fields.pop()
        if len(fields) == 1:
            fields.insert(0, 0)
        try:
            it = iter(range(*fields))
            it.__setstate__(index)  # type: ignore[attr-defined]
        except (TypeError, ValueError) as exc:
            raise CorruptSnapshot(f"malformed range iterator: {exc}") from exc
        self.memo.append(it)
        return it

    def _seqiter(self, v: list[Any]) -> Any:
        if len(v) != 3 or type(v[2]) is not int:
            raise CorruptSnapshot("malformed sequence iterator")
        seq = self.dec(v[1])
        if type(seq) not in SEQITER_TYPES:
            raise CorruptSnapshot(f"a sequence iterator over a {type(seq).__name__}")
        it = iter(seq)
        it.__setstate__(v[2])
        self.memo.append(it)
        return it


def from_buffer(buf: Any, kind: int) -> Any:
    """The value an out-of-band buffer stands for, sharing its memory where
    the type allows (as pickle does with ``buffers=``): a ``bytes`` that is
    (or whose view covers) a whole bytes object is that object; a bytearray
    likewise, when writable; a memoryview views ``buf`` itself.  Otherwise
    (a bytes from a bytearray, a writable view of read-only memory) a copy."""
    view = memoryview(buf)
    if kind == BUFFER_BYTES or kind == BUFFER_BYTEARRAY:
        want = bytes if kind == BUFFER_BYTES else bytearray
        if type(buf) is want:
            return buf
        whole = view.obj
        if (type(whole) is want and view.nbytes == len(whole) and view.contiguous
                and (want is bytes or not view.readonly)):
            return whole
        return view.tobytes() if want is bytes else bytearray(view)
    if view.ndim != 1 or view.format != "B" or not view.c_contiguous:
        view = view.cast("B") if view.c_contiguous else memoryview(view.tobytes())
    if kind == BUFFER_VIEW_READONLY:
        return view if view.readonly else view.toreadonly()
    return view if not view.readonly else memoryview(bytearray(view))


def _no_huge_ints(func: Any, args: list[Any]) -> None:
    """Safe mode: refuse to pass a constructor an int longer than CPython's own
    bound for quadratic int conversions (``sys.get_int_max_str_digits()``,
    4,300 digits by default; 0 turns it off).  Decoding a big int is linear,
    but a constructor may convert it quadratically: ``decimal.Decimal`` of a
    200 KB int takes about 10 s.  Ints inside a tuple argument count too."""
    limit = sys.get_int_max_str_digits()
    if not limit:
        return
    bits = int(limit * 3.3219280948873626) + 1  # log2(10)
    for a in args:
        for x in (a if type(a) is tuple else (a,)):
            if type(x) is int and x.bit_length() > bits:
                raise UnsafeSnapshot(
                    f"safe mode refused to call {getattr(func, '__qualname__', func)!r} with "
                    f"an int of {x.bit_length()} bits (more than "
                    f"sys.get_int_max_str_digits() = {limit} digits; constructors may "
                    "convert it in quadratic time)")


def _type_name(x: Any) -> str:
    t = type(x)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def _not_flooding(items: list[Any]) -> list[Any]:
    """Refuse hashed-container items crafted to collide (O(n**2) to insert).

    Ints equal modulo 2**61 - 1 share a hash, and a blob can hold any int (or a
    tuple of ints chosen to collide, or an object of an allowed class).
    Inserting a group of ``g`` items with one hash costs ``g**2 / 2``
    comparisons, so the largest group is bounded, not the number of distinct
    hashes (which padding with distinct items would satisfy).  A container of
    at most MAX_EQUAL_HASHES items passes unchecked; a bigger one costs one
    hash per item and a set of them, plus a count only when two collide.
    """
    n = len(items)
    if n > MAX_EQUAL_HASHES:
        try:
            hashes = list(map(hash, items))
        except TypeError as exc:
            raise CorruptSnapshot(f"unhashable item: {exc}") from exc
        if len(set(hashes)) != n:
            h, group = Counter(hashes).most_common(1)[0]
            if group > MAX_EQUAL_HASHES:
                raise CorruptSnapshot(
                    f"{group} of {n} items share the hash {h}: refusing a hash-flooding "
                    f"container (at most {MAX_EQUAL_HASHES} may)"
                )
    return items


def _set_state(obj: Any, state: Any) -> None:
    """Apply reduce state exactly as pickle's BUILD opcode does."""
    setstate = getattr(obj, "__setstate__", None)
    if setstate is not None:
        if isinstance(obj, functools.partial):
            check_partial_state(state)
        setstate(state)
        return
    slotstate = None
    if isinstance(state, tuple) and len(state) == 2:
        state, slotstate = state
    if state:
        obj.__dict__.update(state)
    if slotstate:
        for k, x in slotstate.items():
            setattr(obj, k, x)


def check_partial_state(state: Any) -> None:
    """Refuse the state of a ``functools.partial`` whose instance dict is not a
    dict.  ``partial.__setstate__`` of CPython 3.11-3.13 takes any object as
    the partial's ``__dict__`` (3.14 checks it), and the first attribute
    lookup or assignment on the partial then fails inside CPython, or
    crashes it (3.13: SIGSEGV on ``p.x = 1``; found by the fuzzing campaign).
    The C engine calls this too, before the same ``__setstate__``."""
    if type(state) is tuple and len(state) == 4:
        instance_dict = state[3]
        if instance_dict is not None and not isinstance(instance_dict, dict):
            raise CorruptSnapshot(f"a functools.partial's instance dict must be a dict or "
                                  f"None, got {type(instance_dict).__name__}")


_TAGGED: dict[int, Callable[[Decoder, list[Any]], Any]] = {
    T_TUPLE: Decoder._tuple,
    T_SET: Decoder._set,
    T_SHAPED: Decoder._shaped,
    T_FROZENSET: Decoder._frozenset,
    T_DICT: Decoder._dict_pairs,
    T_FLATLIST: Decoder._flat,
    T_GLOBAL: Decoder._global,
    T_METHOD: Decoder._method,
    T_MODULE: Decoder._module,
    T_CELL: Decoder._cell,
    T_FUNCTION: Decoder._function,
    T_FRAME: Decoder._frame,
    T_DONE: Decoder._done,
    T_EXCEPTION: Decoder._exception,
    T_DICTITER: Decoder._dictiter,
    T_DICTVIEW: Decoder._dictview,
    T_REDUCE: Decoder._reduce,
    T_NEWOBJ: Decoder._reduce,
    T_RANGE: Decoder._range,
    T_RANGEITER: Decoder._rangeiter,
    T_SEQITER: Decoder._seqiter,
}

register_tags(_TAGGED)


def new_ext_hook() -> Callable[[int, bytes], Any]:
    """A msgpack ext hook for one blob, of the engine this process runs."""
    return _HELPERS.new_ext_hook()


def ext_hook(code: int, data: bytes) -> Any:
    """One ext on its own (no hash counts across calls; ``loads`` uses
    ``new_ext_hook()`` per blob)."""
    return ext_hook_for({}, code, data)


__all__ = ["Decoder", "Deferred", "MAX_EXCEPTION_CHAIN", "NONE_MARK", "Tag",
           "check_exception_chains", "ext_hook", "is_exception", "longest_exception_chain",
           "new_ext_hook", "printable_cause"]
