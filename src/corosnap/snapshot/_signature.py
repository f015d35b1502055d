"""Signatures: what migration needs to know about a code object that is gone.

What lives here: the description of one *old* code object that migration
compares with the new code (``CodeSig``, with a ``PointSig`` per suspension
point), how it is built from a live code object, and its two serialised forms:
the compact arrays a migratable blob carries (``docs/format.md``, format
version 2) and the JSON objects of a manifest (``corosnap.migrate``).  Both
forms are untrusted input: the readers check every field's type and range and
raise ``CorruptSnapshot`` naming the field.  A forged signature can make
migration *choose* a wrong (but real) resume point of the new code; it can
never get a frame past the checks a normal restore applies, because the
migrated frame goes through those same checks (``_restore.write_frame``).

A signature holds no offsets of the new code and nothing that identifies the
old code beyond its fingerprint (which the blob or the manifest key gives):
local names in frame order, which slots are cells, how many free variables
there are, the code's flags (generator / coroutine / async generator), for nested code its
qualified name and its ordinal among same-named nested code of its function,
and per resume offset the point's identity (``bytecode._identity``).
"""

from __future__ import annotations

import inspect
import types
from dataclasses import dataclass, field
from typing import Any

from .._errors import CorruptSnapshot
from .._weak import IdentityCache
from ..bytecode import CREATED, CodeRef, code_info
from ..bytecode._identity import KIND_NAMES, Point, UnsupportedShape, shape
from ..bytecode._locate import _describe_cache, _root_function
from ..codec import Encoder

RESUMABLE_FLAGS = (inspect.CO_GENERATOR | inspect.CO_COROUTINE | inspect.CO_ITERABLE_COROUTINE
                   | inspect.CO_ASYNC_GENERATOR)
MAX_NAMES = 1 << 16
MAX_STACK = 1 << 16
MAX_POINTS = 1 << 16
MAX_TEXT = 1000
U32 = 1 << 32
_AGEN_TYPE = types.AsyncGeneratorType


@dataclass(frozen=True, slots=True)
class PointSig:
    """One suspension point of the old code (see ``bytecode._identity.Point``)."""

    line: int | None
    kind: int
    key: int
    site: int
    """32-bit hash of the kind and what is suspended on (for messages)."""
    stack: tuple[int, ...]
    ordinal: int
    count: int
    text: str | None = None
    context: tuple[str, ...] = ()
    conditions: tuple[str, ...] = ()

    def describe(self) -> str:
        """How messages name this point: "`yield total` (line 41 in the old code)"."""
        where = f"line {self.line} in the old code" if self.line is not None else "the old code"
        if self.text:
            return f"`{self.text}` ({where})"
        return f"the `{KIND_NAMES.get(self.kind, '?')}` at {where}"


@dataclass(frozen=True, slots=True)
class CodeSig:
    """One old code object, as migration needs it."""

    qualname: str | None
    """The code's ``co_qualname`` (None in a blob: the code reference names it)."""
    nested: tuple[int, int] | None
    """For code nested in an importable function: (ordinal, count) among the
    nested code objects of that function with the same qualified name."""
    names: tuple[str, ...]
    cells: frozenset[int]
    nfree: int
    flags: int
    points: dict[int, PointSig] = field(default_factory=dict)

    @property
    def free(self) -> tuple[str, ...]:
        return self.names[len(self.names) - self.nfree:] if self.nfree else ()


def point_sig(p: Point, text: bool) -> PointSig:
    if text:
        return PointSig(p.line, p.kind, p.key, p.site, p.stack, p.ordinal, p.count, p.text,
                        p.context, p.conditions)
    return PointSig(p.line, p.kind, p.key, p.site, p.stack, p.ordinal, p.count)


def _nested_ordinal(code: types.CodeType, ref: CodeRef | None,
                    root: types.CodeType | None) -> tuple[int, int] | None:
    if ref is None or not ref.path or root is None:
        return None
    same = [c for c in nested_codes(root) if c.co_qualname == code.co_qualname]
    for i, c in enumerate(same):
        if c is code:
            return (i, len(same))
    return None


def nested_codes(root: types.CodeType) -> list[types.CodeType]:
    """Every code object nested in ``root`` (depth first, in co_consts order)."""
    out: list[types.CodeType] = []
    todo = [c for c in reversed(root.co_consts) if type(c) is types.CodeType]
    while todo:
        c = todo.pop()
        out.append(c)
        todo.extend(x for x in reversed(c.co_consts) if type(x) is types.CodeType)
    return out


def code_sig(code: types.CodeType, ref: CodeRef | None, root: types.CodeType | None,
             offsets: Any = None, text: bool = False) -> CodeSig:
    """The signature of ``code`` (named ``ref``, nested in ``root`` if ``ref.path``),
    with the points at ``offsets`` (all of them when None).  ``text``: include
    the rendered texts (manifests do, blobs do not)."""
    info = code_info(code)
    points: dict[int, PointSig] = {}
    if code.co_flags & RESUMABLE_FLAGS:
        try:
            sh = shape(code)
        except UnsupportedShape:
            sh = None  # migration will say the old code could not be analysed
        if sh is not None:
            wanted = sh.points if offsets is None else offsets
            for off in wanted:
                p = sh.points.get(off)
                if p is not None:
                    points[off] = point_sig(p, text)
    return CodeSig(code.co_qualname if ref is None or ref.path or text else None,
                   _nested_ordinal(code, ref, root), info.slot_names,
                   frozenset(i for i in info.cell_slots
                             if i < info.nlocalsplus - len(code.co_freevars)),
                   len(code.co_freevars), code.co_flags & RESUMABLE_FLAGS, points)


# -- the blob form (arrays; docs/format.md, format version 2) -----------------------

def point_to_blob(p: PointSig) -> list[Any]:
    return [p.line, p.kind, p.key, p.site, list(p.stack), p.ordinal, p.count]


def code_to_blob(s: CodeSig) -> list[Any]:
    mask = 0
    for i in s.cells:
        mask |= 1 << i
    nested = None if s.nested is None else [s.qualname, *s.nested]
    return [nested, list(s.names), mask, s.nfree, s.flags,
            {off: point_to_blob(p) for off, p in s.points.items()}]


def _bad(what: str) -> CorruptSnapshot:
    return CorruptSnapshot(f"malformed migration signature: {what}")


def _u32(v: Any, what: str) -> int:
    if type(v) is not int or not 0 <= v < U32:
        raise _bad(f"{what} must be a 32-bit unsigned int")
    return v


def _small(v: Any, what: str, limit: int = MAX_POINTS) -> int:
    if type(v) is not int or not 0 <= v <= limit:
        raise _bad(f"{what} must be an int in [0, {limit}]")
    return v


def _line(v: Any) -> int | None:
    if v is None:
        return None
    if type(v) is not int or not 0 <= v < 1 << 31:
        raise _bad("line must be an int or nil")
    return v


def point_from_blob(v: Any) -> PointSig:
    if type(v) is not list or len(v) != 7:
        raise _bad("a point must be an array of 7")
    line, kind, key, site, stack, ordinal, count = v
    if kind not in KIND_NAMES:
        raise _bad("unknown suspension kind")
    if type(stack) is not list or len(stack) > MAX_STACK:
        raise _bad("stack must be an array")
    count = _small(count, "count")
    ordinal = _small(ordinal, "ordinal")
    if ordinal >= max(count, 1):
        raise _bad("ordinal must be below count")
    return PointSig(_line(line), kind, _u32(key, "key"), _u32(site, "site"),
                    tuple(_u32(x, "a stack label") for x in stack), ordinal, count)


def _names(v: Any) -> tuple[str, ...]:
    if type(v) is not list or len(v) > MAX_NAMES or not all(
            type(n) is str and 0 < len(n) <= MAX_TEXT for n in v):
        raise _bad("local names must be an array of non-empty strings")
    if len(set(v)) != len(v):
        raise _bad("local names repeat")
    return tuple(v)


def code_from_blob(v: Any) -> CodeSig:
    if type(v) is not list or len(v) != 6:
        raise _bad("a code signature must be an array of 6")
    nested_f, names_f, mask, nfree, flags, points_f = v
    qualname = None
    nested = None
    if nested_f is not None:
        if (type(nested_f) is not list or len(nested_f) != 3 or type(nested_f[0]) is not str
                or not nested_f[0] or len(nested_f[0]) > MAX_TEXT):
            raise _bad("nested code must be [qualname, ordinal, count]")
        ordinal, count = _small(nested_f[1], "ordinal"), _small(nested_f[2], "count")
        if ordinal >= count:
            raise _bad("ordinal must be below count")
        qualname, nested = nested_f[0], (ordinal, count)
    names = _names(names_f)
    if type(mask) is not int or mask < 0 or mask >> len(names):
        raise _bad("cell mask must name local slots")
    nfree = _small(nfree, "free variable count", len(names))
    if type(flags) is not int or flags & ~RESUMABLE_FLAGS:
        raise _bad("unknown code flags")
    if type(points_f) is not dict or len(points_f) > MAX_POINTS:
        raise _bad("points must be a map")
    points = {}
    for off, p in points_f.items():
        if type(off) is not int or not CREATED <= off < 1 << 31:
            raise _bad("a point offset must be an int >= -1")
        points[off] = point_from_blob(p)
    cells = frozenset(i for i in range(len(names)) if mask >> i & 1)
    return CodeSig(qualname, nested, names, cells, nfree, flags, points)


def table_from_blob(v: Any) -> list[CodeSig | None]:
    """The signature table of a format-2 blob: one entry per code it names."""
    if type(v) is not list or len(v) > MAX_POINTS:
        raise _bad("the signature table must be an array")
    return [None if x is None else code_from_blob(x) for x in v]


# -- the manifest form (JSON objects) ---------------------------------------------

def point_to_json(p: PointSig) -> dict[str, Any]:
    out: dict[str, Any] = {"line": p.line, "kind": KIND_NAMES[p.kind], "key": p.key,
                           "site": p.site, "stack": list(p.stack), "ordinal": p.ordinal,
                           "count": p.count}
    if p.text is not None:
        out["text"] = p.text
    if p.context:
        out["context"] = list(p.context)
    if p.conditions:
        out["conditions"] = list(p.conditions)
    return out


def code_to_json(s: CodeSig, path: tuple[int, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {"qualname": s.qualname, "path": list(path), "names": list(s.names),
                           "cells": sorted(s.cells), "free": s.nfree, "flags": s.flags,
                           "points": {str(off): point_to_json(p)
                                      for off, p in sorted(s.points.items())}}
    if s.nested is not None:
        out["nested"] = list(s.nested)
    return out


_KINDS_BY_NAME = {v: k for k, v in KIND_NAMES.items()}


def _text(v: Any, what: str) -> str:
    if type(v) is not str or len(v) > MAX_TEXT:
        raise _bad(f"{what} must be a string")
    return v


def _texts(v: Any, what: str) -> tuple[str, ...]:
    if v is None:
        return ()
    if type(v) is not list or len(v) > MAX_STACK:
        raise _bad(f"{what} must be an array of strings")
    return tuple(_text(x, what) for x in v)


def point_from_json(v: Any) -> PointSig:
    if type(v) is not dict:
        raise _bad("a point must be an object")
    kind = _KINDS_BY_NAME.get(v.get("kind"))  # type: ignore[arg-type]
    if kind is None:
        raise _bad("unknown suspension kind")
    stack = v.get("stack")
    if type(stack) is not list or len(stack) > MAX_STACK:
        raise _bad("stack must be an array")
    count = _small(v.get("count"), "count")
    ordinal = _small(v.get("ordinal"), "ordinal")
    if ordinal >= max(count, 1):
        raise _bad("ordinal must be below count")
    text = v.get("text")
    return PointSig(_line(v.get("line")), kind, _u32(v.get("key"), "key"),
                    _u32(v.get("site"), "site"),
                    tuple(_u32(x, "a stack label") for x in stack), ordinal, count,
                    None if text is None else _text(text, "text"),
                    _texts(v.get("context"), "context"), _texts(v.get("conditions"),
                                                                "conditions"))


def code_from_json(v: Any) -> tuple[CodeSig, tuple[int, ...]]:
    """A manifest's code entry and the nested-code path it gives."""
    if type(v) is not dict:
        raise _bad("a code entry must be an object")
    qualname = _text(v.get("qualname"), "qualname")
    path_f = v.get("path", [])
    if type(path_f) is not list or len(path_f) > 64 or not all(
            type(p) is int and 0 <= p < 1 << 16 for p in path_f):
        raise _bad("path must be an array of small ints")
    names = _names(v.get("names"))
    cells_f = v.get("cells", [])
    if type(cells_f) is not list or not all(type(c) is int and 0 <= c < len(names)
                                            for c in cells_f):
        raise _bad("cells must be slot indexes")
    nfree = _small(v.get("free", 0), "free", len(names))
    flags = v.get("flags", 0)
    if type(flags) is not int or flags & ~RESUMABLE_FLAGS:
        raise _bad("unknown code flags")
    nested_f = v.get("nested")
    nested = None
    if nested_f is not None:
        if type(nested_f) is not list or len(nested_f) != 2:
            raise _bad("nested must be [ordinal, count]")
        ordinal, count = _small(nested_f[0], "ordinal"), _small(nested_f[1], "count")
        if ordinal >= count:
            raise _bad("ordinal must be below count")
        nested = (ordinal, count)
    points_f = v.get("points", {})
    if type(points_f) is not dict or len(points_f) > MAX_POINTS:
        raise _bad("points must be an object")
    points = {}
    for off_s, p in points_f.items():
        try:
            off = int(off_s)
        except (TypeError, ValueError):
            raise _bad("a point offset must be an int") from None
        if not CREATED <= off < 1 << 31:
            raise _bad("a point offset must be >= -1")
        points[off] = point_from_json(p)
    return CodeSig(qualname, nested, names, frozenset(cells_f), nfree, flags, points), tuple(
        path_f)


# -- writing migratable blobs ---------------------------------------------------------

_table_cache: IdentityCache[dict[tuple[tuple[int, ...], CodeRef], list[Any]]] = IdentityCache()
"""code -> {(offsets, name): the code's entry in a signature table} (never
mutated: msgpack only reads it), so a workflow checkpointed again and again
costs two dictionary lookups per frame for its signature; held as long as
the code lives."""


def signature_table(enc: Encoder, frames: Any) -> list[Any]:
    """The signature table of a migratable blob: one entry per code it names,
    in the order the blob names them (docs/format.md).

    Built after the blob's fields, from the encoder's tables: every code the
    blob names is the code of a generator, coroutine or function the encoder
    registered (``enc.keep``), and ``enc.codes`` gives its index; each frame's
    resume offset is read again from the frame.  An async generator's frame is
    read as a generator's (``frames.read`` takes all three kinds).  So capture itself is the same
    as for any blob (the C engine included).
    """
    n = len(enc.codes)
    codes: list[types.CodeType | None] = [None] * n
    offsets: list[set[int]] = [set() for _ in range(n)]
    for obj in enc.keep:
        t = type(obj)
        if t is types.GeneratorType or t is types.CoroutineType or t is _AGEN_TYPE:
            code = (obj.gi_code if t is types.GeneratorType else
                    obj.cr_code if t is types.CoroutineType else obj.ag_code)
            k = enc.codes.get(id(code))
            if k is None:
                continue
            codes[k] = code
            state, lasti = frames.read(obj)[:2]
            if state == frames.CREATED:
                offsets[k].add(CREATED)
            elif state == frames.SUSPENDED:
                offsets[k].add(lasti)
        elif t is types.FunctionType:
            code = obj.__code__
            k = enc.codes.get(id(code))
            if k is not None:
                codes[k] = code
    out: list[Any] = []
    for k, code in enumerate(codes):
        ref = _describe_cache.get(code) if code is not None else None
        if code is None or ref is None:
            out.append(None)  # not found again: this code has no signature
            continue
        key = (tuple(sorted(offsets[k])), ref)
        known = _table_cache.get(code)
        if known is None:
            known = _table_cache.put(code, {})
        hit = known.get(key)
        if hit is not None:
            out.append(hit)
            continue
        root = None
        if ref.path:
            fn = _root_function(ref.module, ref.qualname)
            root = fn.__code__ if fn is not None else None
        entry = code_to_blob(code_sig(code, ref, root, key[0]))
        known[key] = entry
        out.append(entry)
    return out
