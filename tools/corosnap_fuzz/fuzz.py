"""The fuzzing campaign for ``corosnap.loads``: a developer tool, kept out of the wheel.

Usage::

    python -m corosnap_fuzz --inputs N [--seed S] [--jobs J] [--report PATH]
                            [--crash-dir DIR] [--minimize] [--timeout SECONDS]
    python -m corosnap_fuzz --replay FILE [--minimize]

The promise under test: *any* bytes given to ``loads`` end in a
``CorosnapError`` subclass or in a correct restore; never a crash (signal), a
hang, a ``MemoryError`` from a length the blob declares, another exception
escaping ``loads``, or a generator that crashes the interpreter later when it
is resumed, closed or collected.

Theory of operation
-------------------
1. *Corpus*: every scenario of ``corosnap_fuzz.zoo`` is driven through its
   script and captured at each suspension point (and once more unstarted):
   a few hundred real blobs covering every construct the zoo has.
2. *Inputs*: input ``i`` of a campaign with seed ``S`` is a pure function of
   ``(S, i)`` and the corpus (``make_input``): a corpus blob put through one
   to three mutators drawn from a table (byte-level: truncation, bit flips,
   byte insert/delete, random runs, splicing two blobs; structure-aware: the
   blob is unpacked with msgpack, its tree mutated and repacked: a slot gets a
   value of another type, a position moves to a nearby offset or to another
   resume point with a stack of the matching depth, stack values come and go,
   frames move between blobs, ext types, tags and back-reference indexes
   change, a length header lies, values nest deeply or chain through
   back-references), or a blob generated from scratch in the blob's shape
   around a real code reference.  One input in four is loaded in safe mode.
   The same index always gives the same input, so a campaign is reproducible
   and a crash is reported by index as well as by its bytes.
3. *Execution*: inputs run in forked children, many per child: the parent
   sends an index (or raw bytes) down a pipe and reads back one outcome.  When
   a child dies by a signal, the input it was running is the crash; the
   parent saves it and forks a new child.  A child runs ``loads``; when that
   restores something it is *resumed*: a short script derived from the input
   sends values, throws, closes and introspects it, because a bad frame often
   crashes only when it runs again.  Then the garbage collector runs, so a
   crash in a finalizer is charged to the input that caused it.  An interval
   timer turns a hang into an outcome (the parent kills a child that stops
   answering altogether) and ``RLIMIT_AS`` turns an absurd allocation into a
   ``MemoryError``.  Children are recycled every few thousand inputs so state
   a blob changed in a module cannot drift into later results.
4. *Outcomes*: rejected (a CorosnapError), restored (loaded, resumed without
   crashing; ordinary exceptions while resuming are the generator's own
   business), other (a non-corosnap exception escaped ``loads``), crash,
   hang, memoryerror.  Failures are bucketed (signal and the Python line the
   crash happened under; exception type; phase) and each bucket keeps its
   smallest input.  ``--minimize`` shrinks one input per crash bucket, first on
   the msgpack tree, then on the bytes (delta debugging).
"""

from __future__ import annotations

import argparse
import builtins
import collections
import contextlib
import dataclasses
import faulthandler
import functools
import gc
import itertools
import json
import os
import pickle
import random
import re
import reprlib
import resource
import select
import signal
import struct
import sys
import tempfile
import time
import types
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import msgpack
from msgpack import ExtType

import corosnap
from corosnap.bytecode import CodeRef, code_info, locate
from corosnap.bytecode._analysis import DELEGATE
from corosnap.codec._tags import (
    EXT_BIGINT,
    EXT_BYTEARRAY,
    EXT_COMPLEX,
    EXT_HEADER,
    EXT_INTLIST,
    EXT_NONE,
    EXT_PICKLE,
    EXT_REF,
    EXT_SIGNED,
    EXT_TAG,
    EXT_WELLKNOWN,
    T_ANEXT,
    T_ASEND,
    T_ASYNCGEN,
    T_ATHROW,
    T_CELL,
    T_CORO_WRAPPER,
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

from . import zoo

OUTCOMES = ("rejected", "restored", "other", "crash", "hang", "memoryerror", "differ",
            "deep")
FAILURES = ("other", "crash", "hang", "memoryerror", "differ")

DEEP_LIMIT = 8000
"""The recursion limit an input whose engines differ only by running out of
recursion is loaded again with (``deep``, below).  A blob's tree nests at most
1,024 levels (msgpack's own limit); the Python engine spends at most about
six frames a level, the C engine one C call."""

ENGINES: dict[str, dict[str, str]] = {
    "c": {},
    "python": {"COROSNAP_PUREPYTHON": "1"},
}
"""Engines an input can be loaded through (``--engines c,python``): the
environment a fresh worker interpreter is started with.  ``COROSNAP_PUREPYTHON=1``
selects corosnap's pure-Python engine when it is imported; an input loaded
through several engines must end the same way in each (same outcome and
exception class, or the same behaviour when resumed), else it is a ``differ``
failure.

One difference is by design: nesting.  The C engine spends one level of the
recursion limit per container, the Python engine two to six Python frames, so
a blob nested some hundreds of levels deep can be refused as "nested too
deeply" by one and load in the other, and a restored value so deep re-dumped
by one and not the other (docs/architecture.md).  When two engines end an
input differently (short of a crash, hang or MemoryError), it is loaded again
in both with a recursion limit of DEEP_LIMIT, which either engine's walk of
any blob fits in: the same outcome then is a ``deep`` input (counted, not a
failure: the engines differed only in how deep they could recurse); a
different one is a ``differ`` failure."""

METHOD_NAMES = ("append", "__exit__", "__enter__", "read", "close", "send", "throw", "format",
                "join", "get", "__reduce_ex__", "__getattribute__", "__init__", "__class__",
                "missing", "name", 0, 3)
"""Names a generated bound method (tag 21) asks for."""

SAFE_ALLOW = ("corosnap_fuzz.zoo", "builtins", "datetime", "decimal", "itertools")
"""The allow list for inputs loaded in safe mode (what the zoo's blobs name)."""

SIGN_KEY = b"corosnap-fuzz"

# ---------------------------------------------------------------------------
# Corpus
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Seed:
    name: str
    blob: bytes


def _advance(obj: Any, steps: Any) -> bool:
    """Run a scenario's steps; False when the object finished on the way."""
    for kind, value in steps:
        try:
            if kind == "send":
                obj.send(value)
            else:
                obj.throw(value)
        except BaseException:  # noqa: BLE001 - finished, in whatever way
            return False
    return True


def build_corpus() -> list[Seed]:
    """Real blobs of every zoo scenario at each of its suspension points."""
    seeds: list[Seed] = []
    hook = sys.unraisablehook
    sys.unraisablehook = lambda _unraisable: None  # zoo generators complaining on close
    try:
        _capture_all(seeds)
    finally:
        sys.unraisablehook = hook
    return seeds


def _capture_all(seeds: list[Seed]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for sc in zoo.SCENARIOS:
            for k in range(len(sc.steps) + 1):
                obj = sc.make()
                try:
                    if not _advance(obj, sc.steps[:k]):
                        break
                    try:
                        blob = corosnap.dumps(obj)
                    except corosnap.SnapshotError:
                        continue
                    seeds.append(Seed(f"{sc.name}@{k}", blob))
                    if k == 1 and len(seeds) % 4 == 0:
                        seeds.append(Seed(f"{sc.name}@{k}/signed",
                                          corosnap.dumps(obj, key=SIGN_KEY)))
                    if k >= 1 and len(seeds) % 3 == 0:
                        # A migratable blob (format 2, a signature table after
                        # the header), loaded with migrate=True (run_one).
                        try:
                            seeds.append(Seed(f"{sc.name}@{k}/migratable",
                                              corosnap.dumps(obj, migratable=True)))
                        except corosnap.SnapshotError:
                            pass
                finally:
                    try:
                        obj.close()
                    except BaseException:  # noqa: BLE001, S110 - zoo quirks on close
                        pass
        gc.collect()


# ---------------------------------------------------------------------------
# msgpack trees: walking, frames, interning
# ---------------------------------------------------------------------------

HEADER = ExtType(EXT_HEADER, bytes([1 << 5 | sys.version_info[1]]))
NONE_EXT = ExtType(EXT_NONE, b"\0")


def tag(kind: int) -> ExtType:
    return ExtType(EXT_TAG, bytes([kind & 0xFF]))


def ref(index: int) -> ExtType:
    if index < 256:
        return ExtType(EXT_REF, bytes([index]))
    if index < 65536:
        return ExtType(EXT_REF, index.to_bytes(2, "big"))
    return ExtType(EXT_REF, (index & 0xFFFFFFFF).to_bytes(4, "big"))


def unpack(data: bytes) -> Any:
    """The raw msgpack tree (ext types kept as ExtType), or raise ValueError."""
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False, use_list=True)
    except Exception as exc:  # noqa: BLE001 - any parse failure
        raise ValueError(f"not msgpack: {exc!r}") from None


def pack(tree: Any) -> bytes:
    return msgpack.packb(tree, use_bin_type=True)


def is_migratable(header: Any) -> bool:
    """A format-2 header: the blob's second item is the migration signature
    table, and the root frame's fields start at index 2."""
    return (type(header) is ExtType and header.code == EXT_HEADER and len(header.data) == 1
            and header.data[0] >> 5 == 2)


def root_at(tree: list[Any]) -> int:
    """Where the root frame's fields start in a blob's tree."""
    return 2 if tree and is_migratable(tree[0]) else 1


def migratable_data(data: bytes) -> bool:
    """Does ``data`` start like a format-2 blob (array head, then its header)?
    Such inputs are loaded with ``migrate=True``."""
    return bytes([0xD4, EXT_HEADER, 2 << 5 | sys.version_info[1]]) in data[:8]


def _jiggle(r: random.Random, v: Any, depth: int = 0) -> Any:
    """A hostile edit somewhere inside a signature table (lists, ints, strings)."""
    if type(v) is list and v and depth < 6 and r.random() < 0.8:
        i = r.randrange(len(v))
        c = r.random()
        if c < 0.1:
            del v[i]
        elif c < 0.2:
            v.insert(i, r.choice((None, 0, -1, 1 << 20, "x", [], [0, 0])))
        else:
            v[i] = _jiggle(r, v[i], depth + 1)
        return v
    return r.choice((None, 0, -1, 1, 2, 255, 1 << 16, -(1 << 40), "", "total", ".0",
                     [], [None], [[]], True, b"\x00", 3.5, [v, v]))


def tag_kind(v: Any) -> int | None:
    """The tag kind when ``v`` is a tagged array."""
    if type(v) is list and v and type(v[0]) is ExtType and v[0].code == EXT_TAG \
            and len(v[0].data) == 1:
        return v[0].data[0]
    return None


def frame_start(v: list[Any], i: int) -> int:
    """Where the frame fields at ``v[i]`` begin: after an async generator's
    tag and flags when ``v[i]`` is that tag (a blob whose root is one)."""
    if i < len(v) and type(v[i]) is ExtType and v[i].code == EXT_TAG \
            and v[i].data == bytes([T_ASYNCGEN]):
        return i + 2
    return i


def nodes(tree: Any, limit: int = 4000) -> list[tuple[Any, Any]]:
    """(container, key) for every value inside ``tree`` (document order, capped)."""
    out: list[tuple[Any, Any]] = []
    stack: list[Any] = [tree]
    while stack and len(out) < limit:
        c = stack.pop()
        if type(c) is list:
            keys: Any = range(len(c))
        elif type(c) is dict:
            keys = list(c)
        else:
            continue
        for k in keys:
            out.append((c, k))
            x = c[k]
            if type(x) in (list, dict):
                stack.append(x)
    return out


_code_cache: dict[tuple[Any, ...], Any] = {}


def lookup_code(module: Any, qual: Any, path: tuple[int, ...]) -> types.CodeType | None:
    """The code a coderef names, for modules already imported (no imports here)."""
    key = (module, qual, path)
    if key in _code_cache:
        return _code_cache[key]
    code = None
    if type(module) is str and type(qual) is str and module in sys.modules:
        try:
            code = locate(CodeRef(module, qual, path))[0]
        except Exception:  # noqa: BLE001 - unknown names are just unknown
            code = None
    _code_cache[key] = code
    return code


@dataclasses.dataclass
class FrameRef:
    """One frame's fields inside a tree: ``lst[start:]`` from the coderef on."""

    lst: list[Any]
    start: int
    pos_i: int
    code: types.CodeType | None
    fields: tuple[Any, Any, Any] | None  # literal (module, qualfield, fingerprint)

    @property
    def info(self) -> Any:
        return code_info(self.code) if self.code is not None else None

    def stack_start(self) -> int | None:
        info = self.info
        if info is None:
            return None
        return self.pos_i + 1 + info.nlocalsplus

    def position(self) -> Any:
        return self.lst[self.pos_i] if self.pos_i < len(self.lst) else None


def sub_frame_index(info: Any, pos: Any, v: list[Any], j: int) -> int | None:
    """Index in ``v`` of the untagged sub-frame a frame delegates to (its fields
    start at ``v[j]``, the position), as ``_restore.FrameDecoder.decode`` finds it:
    stack slot ``depth + DELEGATE`` (the top before 3.15; 3.15 keeps a NULL or
    an index above it)."""
    if info is None or type(pos) is not int or pos not in info.delegating:
        return None
    depth = info.resume.get(pos)
    if depth is None:
        return None
    k = j + 1 + info.nlocalsplus + depth + DELEGATE
    if j < k < len(v) and type(v[k]) is list and v[k] and tag_kind(v[k]) is None:
        return k
    return None


class TreeWalk:
    """Walk a tree in the decoder's order, tracking its string and code tables.

    Finds the frames (root, tagged, delegated) and can de-intern the tree:
    every string-table index becomes its literal string and every ``-1-k``
    code reference becomes its three literal fields, so subtrees can move
    between blobs without changing meaning.
    """

    def __init__(self, deintern: bool = False) -> None:
        self.strings: list[str] = []
        self.codes: list[tuple[types.CodeType | None, tuple[Any, Any, Any] | None]] = []
        self.frames: list[FrameRef] = []
        self.deintern = deintern
        self.steps = 0

    def string(self, c: list[Any], i: int) -> Any:
        f = c[i] if i < len(c) else None
        if type(f) is str:
            self.strings.append(f)
            return f
        if type(f) is int and 0 <= f < len(self.strings):
            s = self.strings[f]
            if self.deintern:
                c[i] = s
                self.strings.append(s)
            return s
        return None

    def coderef(self, v: list[Any], i: int) -> tuple[types.CodeType | None, Any, int]:
        first = v[i] if i < len(v) else None
        if type(first) is int and first < 0:
            k = -1 - first
            code, fields = self.codes[k] if k < len(self.codes) else (None, None)
            if self.deintern and fields is not None:
                v[i:i + 1] = list(fields)
                self.strings.append(fields[0])
                q = fields[1]
                self.strings.append(q[0] if type(q) is list else q)
                self.codes.append((code, fields))
                return code, fields, i + 3
            return code, fields, i + 1
        if i + 3 > len(v):
            return None, None, len(v)
        module = self.string(v, i)
        qf = v[i + 1]
        path: tuple[int, ...] = ()
        if type(qf) is list and qf:
            qual = self.string(qf, 0)
            if all(type(p) is int and 0 <= p < 1 << 16 for p in qf[1:]):
                path = tuple(qf[1:])
            qfield: Any = [qual, *path]
        else:
            qual = self.string(v, i + 1)
            qfield = qual
        code = lookup_code(module, qual, path)
        fields = (module, qfield, v[i + 2]) if type(module) is str and type(qual) is str \
            else None
        self.codes.append((code, fields))
        return code, fields, i + 3

    def frame(self, v: list[Any], i: int) -> None:
        i = frame_start(v, i)
        code, fields, j = self.coderef(v, i)
        fr = FrameRef(v, i, j, code, fields)
        self.frames.append(fr)
        if j >= len(v):
            return
        pos = v[j]
        if type(pos) is list:
            for x in pos[1:]:
                self.value(x)
            pos = pos[0] if pos else None
        sub = sub_frame_index(fr.info, pos, v, j)
        for k in range(j + 1, len(v)):
            if k == sub:
                self.frame(v[k], 0)
            else:
                self.value(v[k])

    def value(self, x: Any) -> None:
        self.steps += 1
        if self.steps > 20000:
            return
        t = type(x)
        if t is dict:
            for y in x.values():
                self.value(y)
            return
        if t is not list:
            return
        kind = tag_kind(x)
        if kind is None:
            for y in x:
                self.value(y)
        elif kind == T_FRAME:
            self.frame(x, 1)
        elif kind == T_ASYNCGEN:
            self.frame(x, 2)  # after its flags
        elif kind == T_FUNCTION:
            _, _, j = self.coderef(x, 1)
            for y in x[j:]:
                self.value(y)
        elif kind == T_GLOBAL:
            self.string(x, 1)
            self.string(x, 2)
        elif kind == T_MODULE:
            self.string(x, 1)
        else:
            for y in x[1:]:
                self.value(y)


_MEMO_EXTS = frozenset({EXT_BYTEARRAY, EXT_INTLIST, EXT_PICKLE})
_MEMO_AFTER = frozenset({T_GLOBAL, T_MODULE, T_FLATLIST, T_RANGEITER, T_SEQITER, T_DICTITER,
                         T_DICTVIEW, T_DONE, T_METHOD, T_ASEND, T_ATHROW, T_CORO_WRAPPER,
                         T_ANEXT})
"""Tags the decoder registers in the memo once their fields are read."""


class MemoWalk(TreeWalk):
    """A TreeWalk that also follows the decoder's memo: which index each object
    gets and which objects are still being built (registered, their contents
    not yet read) at each place in the tree.

    Registration order, as in ``codec._decoder`` and ``snapshot._restore``:
    plain lists and dicts, sets, dict pairs, shaped dicts, cells and builtin
    iterators (``codec._iterators``) before their contents; a frame's
    generator after its code reference, before its slots; a reduce's object
    after its callable and arguments, before its state, list and dict items;
    a function once it is complete; tuples, frozensets and ranges never.
    ``sites`` lists, for every value read while something is being built,
    ``(container, key, open indexes, in_reduce)``: the places a
    back-reference can close a cycle.
    """

    def __init__(self) -> None:
        super().__init__()
        self.memo = 0
        self.open: list[int] = []
        self.reduce_depth = 0
        self.sites: list[tuple[Any, Any, tuple[int, ...], bool]] = []
        self.state_sites: list[tuple[Any, int, int]] = []

    def _site(self, c: Any, k: Any) -> None:
        if self.open and len(self.sites) < 4000:
            self.sites.append((c, k, tuple(self.open[-6:]), self.reduce_depth > 0))

    def _items(self, c: Any, lo: int = 0) -> None:
        if type(c) is list:
            for k in range(lo, len(c)):
                self._site(c, k)
                self.value(c[k])

    def _at(self, c: list[Any], k: int) -> None:
        if k < len(c):
            self._site(c, k)
            self.value(c[k])

    def _opened(self) -> None:
        self.open.append(self.memo)
        self.memo += 1

    def frame(self, v: list[Any], i: int) -> None:
        i = frame_start(v, i)
        code, fields, j = self.coderef(v, i)
        fr = FrameRef(v, i, j, code, fields)
        self.frames.append(fr)
        self._opened()  # the fresh generator
        try:
            if j >= len(v):
                return
            pos = v[j]
            if type(pos) is list and len(pos) > 1:
                self._at(pos, 1)
            pos0 = pos[0] if type(pos) is list and pos else pos
            sub = sub_frame_index(fr.info, pos0, v, j)
            for k in range(j + 1, len(v)):
                if k == sub:
                    self.frame(v[k], 0)
                else:
                    self._at(v, k)
        finally:
            self.open.pop()

    def value(self, x: Any) -> None:
        self.steps += 1
        if self.steps > 20000:
            return
        t = type(x)
        if t is ExtType:
            if x.code in _MEMO_EXTS:
                self.memo += 1
            return
        if t is dict:
            self._opened()
            for key in list(x):
                self._site(x, key)
                self.value(x[key])
            self.open.pop()
            return
        if t is not list:
            return
        kind = tag_kind(x)
        if kind is None:
            self._opened()
            self._items(x)
            self.open.pop()
        elif kind == T_FRAME:
            self.frame(x, 1)
        elif kind == T_ASYNCGEN:
            self.frame(x, 2)  # after its flags
        elif kind in (T_SET, T_DICT, T_CELL):
            self._opened()
            self._items(x, 1)
            self.open.pop()
        elif kind == T_SHAPED:
            self._opened()
            self._items(x, 2)
            self.open.pop()
        elif kind in (T_TUPLE, T_FROZENSET, T_RANGE, T_EXCEPTION):
            self._items(x, 1)
        elif kind in ITERATOR_KINDS:
            # a builtin iterator: registered before its fields (a fresh one
            # from its constructor, written once they are decoded)
            self._opened()
            self._items(x, 1)
            self.open.pop()
        elif kind in (T_REDUCE, T_NEWOBJ):
            self.reduce_depth += 1
            self._at(x, 1)
            if len(x) > 2:
                self._items(x[2])
            self._opened()
            state: Any = x[3] if len(x) > 3 else None
            if tag_kind(state) == T_TUPLE:
                # Direct parts of the state (a partial's func, args, keywords):
                # where a reference back to the object itself is set by C code.
                self.state_sites.extend((state, k, self.memo - 1)
                                        for k in range(1, len(state)))
                args: Any = state[2] if len(state) > 2 else None
                if tag_kind(args) == T_TUPLE:
                    self.state_sites.extend((args, k, self.memo - 1)
                                            for k in range(1, len(args)))
            self._at(x, 3)
            for k in (4, 5):
                if k < len(x):
                    self._items(x[k])
            self.open.pop()
            self.reduce_depth -= 1
        elif kind == T_FUNCTION:
            _, _, j = self.coderef(x, 1)
            for k in range(j, len(x)):
                if k - j < 2:
                    self._items(x[k])  # closure, defaults: read item by item
                else:
                    self._at(x, k)
            self.memo += 1
        elif kind in _MEMO_AFTER:
            if kind == T_GLOBAL:
                self.string(x, 1)
                self.string(x, 2)
            elif kind == T_MODULE:
                self.string(x, 1)
            elif kind == T_DONE:
                self.coderef(x, 1)
            elif kind == T_METHOD:
                self._at(x, 1)
                self.string(x, 2)
            elif kind != T_FLATLIST:
                self._items(x, 1)
            self.memo += 1


def memo_walk(tree: Any) -> MemoWalk:
    w = MemoWalk()
    if type(tree) is list and len(tree) > root_at(tree):
        try:
            w.frame(tree, root_at(tree))
        except RecursionError:
            pass
    return w


def walk(tree: Any, deintern: bool = False) -> TreeWalk:
    w = TreeWalk(deintern)
    if type(tree) is list and len(tree) > root_at(tree):
        try:
            w.frame(tree, root_at(tree))
        except RecursionError:
            pass
    return w


# ---------------------------------------------------------------------------
# Random values in the blob's vocabulary
# ---------------------------------------------------------------------------

INTS = (0, 1, -1, 2, 7, 127, 128, 255, 256, -32, -33, 65535, 65536, 2**31 - 1, 2**31,
        2**32, 2**62, 2**63 - 1, -(2**63), 2**64 - 1, -(2**31))
SAFE_GLOBALS = (
    ("corosnap_fuzz.zoo", "Point"), ("corosnap_fuzz.zoo", "Color"),
    ("corosnap_fuzz.zoo", "double"), ("corosnap_fuzz.zoo", "Ready"),
    ("corosnap_fuzz.zoo", "Widget.static"), ("corosnap_fuzz.zoo", "Resource"),
    ("corosnap_fuzz.zoo", "loop_range"), ("corosnap_fuzz.zoo", "Slotted"),
    ("corosnap_fuzz.zoo", "Counter"), ("corosnap_fuzz.zoo", "LOG"),
    ("builtins", "len"), ("builtins", "ValueError"), ("builtins", "KeyError"),
    ("builtins", "StopIteration"), ("builtins", "GeneratorExit"), ("builtins", "object"),
    ("builtins", "list"), ("builtins", "max"), ("builtins", "BaseException"),
    ("datetime", "datetime"), ("datetime", "timedelta"), ("decimal", "Decimal"),
    ("itertools", "count"), ("itertools", "repeat"), ("builtins", "nosuchname"),
    ("nosuchmodule", "x"), ("corosnap_fuzz.zoo", "Point.nosuch"),
)
WELLKNOWN_COUNT = 27
ITERATOR_KINDS = tuple(range(64, 90))
"""Tags of the builtin iterators (codec/_iterators.py)."""
STRINGS = ("", "a", "ready", "__init__", "x" * 40, "\u20ac", "samples", "corosnap_fuzz.zoo",
           "loop_range", "__next__", "\x00", "é" * 3)


class Gen:
    """Random values for one input: an RNG plus what the corpus offers."""

    def __init__(self, rng: random.Random, corpus: Corpus) -> None:
        self.rng = rng
        self.corpus = corpus
        self.splices: dict[bytes, bytes] = {}

    def splice(self, raw: bytes) -> bytes:
        """A placeholder value that ``pack_spliced`` replaces by ``raw`` bytes (for
        shapes msgpack-python will not pack: lying lengths, very deep nesting)."""
        marker = b"\xfe\xfd" + self.rng.randbytes(14)
        self.splices[b"\xc4\x10" + marker] = raw
        return marker

    def pack_spliced(self, tree: Any) -> bytes:
        data = pack(tree)
        for marker, raw in self.splices.items():
            data = data.replace(marker, raw, 1)
        return data

    def int_(self) -> int:
        r = self.rng
        c = r.random()
        if c < 0.5:
            return r.choice(INTS)
        if c < 0.8:
            return r.randint(-300, 300)
        return r.randint(-(2**63), 2**64 - 1)

    def ext(self) -> Any:
        r = self.rng
        code = r.choice((EXT_TAG, EXT_REF, EXT_REF, EXT_BIGINT, EXT_COMPLEX, EXT_BYTEARRAY,
                         EXT_WELLKNOWN, EXT_PICKLE, EXT_NONE, EXT_HEADER, EXT_SIGNED, 8, 9,
                         -1, 127))
        if code == EXT_REF:
            return ref(r.choice((0, 0, 1, 2, 3, r.randint(0, 40), r.randint(0, 2**32 - 1))))
        if code == EXT_TAG:
            return tag(r.randint(0, 22))
        if code == EXT_BIGINT:
            n = r.choice((0, 1, 8, 9, 16, 64, 4096))
            return ExtType(code, r.randbytes(n))
        if code == EXT_COMPLEX:
            return ExtType(code, r.randbytes(r.choice((16, 16, 0, 8, 17))))
        if code == EXT_WELLKNOWN:
            return ExtType(code, bytes([r.randint(0, WELLKNOWN_COUNT + 3)]))
        if code == EXT_PICKLE:
            payload = bytes([r.choice((1, 2, 3, 0, 9))]) + pickle.dumps(
                r.choice((1, "s", [1, 2], {"a": 1}, (1,), zoo.Point(1, [2]), None)), 4)
            if r.random() < 0.5:
                b = bytearray(payload)
                for _ in range(r.randint(1, 3)):
                    i = r.randrange(len(b))
                    b[i] = r.randrange(256)
                payload = bytes(b)
            return ExtType(code, payload)
        if code == EXT_NONE:
            return NONE_EXT if r.random() < 0.8 else ExtType(code, r.randbytes(r.randint(0, 2)))
        return ExtType(code & 0x7F if code >= 0 else code, r.randbytes(r.randint(0, 4)))

    def value(self, depth: int = 0) -> Any:
        r = self.rng
        c = r.random()
        if depth > 3 or c < 0.45:
            return self.scalar()
        if c < 0.55:
            return self.ext()
        if c < 0.65:
            return [self.value(depth + 1) for _ in range(r.randint(0, 4))]
        if c < 0.7:
            return {r.choice(STRINGS + (1, 2, None)): self.value(depth + 1)
                    for _ in range(r.randint(0, 3))}
        return self.tagged(depth)

    def scalar(self) -> Any:
        r = self.rng
        c = r.random()
        if c < 0.1:
            return None
        if c < 0.45:
            return self.int_()
        if c < 0.55:
            return r.choice((0.0, -0.0, 1.5, float("nan"), float("inf"), 1e308))
        if c < 0.7:
            return r.choice(STRINGS)
        if c < 0.8:
            return r.randbytes(r.randint(0, 8))
        if c < 0.9:
            return r.choice((True, False))
        return NONE_EXT

    def global_(self) -> list[Any]:
        m, q = self.rng.choice(SAFE_GLOBALS)
        return [tag(T_GLOBAL), m, q]

    def callable_(self) -> Any:
        r = self.rng
        if r.random() < 0.6:
            return ExtType(EXT_WELLKNOWN, bytes([r.randrange(WELLKNOWN_COUNT)]))
        return self.global_()

    def tagged(self, depth: int) -> Any:
        r = self.rng
        kind = r.choice((T_TUPLE, T_SET, T_FROZENSET, T_DICT, T_FLATLIST, T_GLOBAL, T_MODULE,
                         T_CELL, T_FUNCTION, T_FRAME, T_REDUCE, T_NEWOBJ, T_RANGE, T_RANGEITER,
                         T_SEQITER, T_SHAPED, T_METHOD, 0, 17, *ITERATOR_KINDS))
        items = [self.value(depth + 1) for _ in range(r.randint(0, 4))]
        if kind in ITERATOR_KINDS:
            # a builtin iterator (tags 64-89): fields drawn from iterators
            # (list iterators, back-references) and small or edge ints
            pool = ([tag(T_SEQITER), [1, 2], 0], ref(r.randint(0, 12)), r.randint(-2, 60),
                    self.int_(), self.value(depth + 1), [tag(T_TUPLE), "a", "b"])
            return [tag(kind), *[r.choice(pool) for _ in range(r.randint(0, 6))]]
        if kind == T_METHOD:
            # a bound method: of a value, of a zoo class or object, by a name
            # that may or may not be a method of it (tag 21)
            obj = r.choice((self.value(depth + 1), self.global_(), ref(r.randint(0, 12)),
                            [tag(T_NEWOBJ), [tag(T_GLOBAL), "corosnap_fuzz.zoo", "Resource"],
                             [], {"name": "r"}]))
            return [tag(kind), obj, r.choice(METHOD_NAMES)]
        if kind == T_GLOBAL:
            return self.global_()
        if kind == T_MODULE:
            return [tag(kind), r.choice(("corosnap_fuzz.zoo", "datetime", "nosuch", "builtins",
                                         "corosnap_fuzz.zoo.itertools", 0, 5))]
        if kind == T_CELL:
            return [tag(kind)] + items[:1]
        if kind in (T_REDUCE, T_NEWOBJ):
            args = [r.choice((self.int_(), self.scalar(), r.choice((2**31, 2**36, 2**40, 2**62)),
                              self.value(depth + 1))) for _ in range(r.randint(0, 3))]
            return [tag(kind), self.callable_(), args, *items[:r.randint(0, 3)]]
        if kind == T_RANGE:
            return [tag(kind), self.int_(), self.int_(), r.choice((1, -1, 0, self.int_()))]
        if kind == T_RANGEITER:
            return [tag(kind), *[self.int_() for _ in range(r.randint(1, 5))]]
        if kind == T_SEQITER:
            return [tag(kind), self.value(depth + 1), self.int_()]
        if kind == T_SHAPED:
            return [tag(kind), r.randint(-1, 4), *items]
        if kind == T_FUNCTION:
            code = self.corpus.random_coderef(r)
            return [tag(kind), *code, *items[:5]]
        if kind == T_FRAME:
            return [tag(kind), *self.frame_fields(depth + 1)]
        return [tag(kind), *items]

    def frame_fields(self, depth: int = 0) -> list[Any]:
        """A frame in the blob's shape around a real code reference."""
        r = self.rng
        fields = list(self.corpus.random_coderef(r))
        code = lookup_code(fields[0], fields[1][0] if type(fields[1]) is list else fields[1],
                           tuple(fields[1][1:]) if type(fields[1]) is list else ())
        if code is None:
            return fields + [self.int_()]
        info = code_info(code)
        if r.random() < 0.8:
            pos = r.choice(sorted(info.resume))
        else:
            pos = self.int_()
        depth_ = info.resume.get(pos, r.randint(0, 3))
        nslots = info.nlocalsplus + depth_ + r.choice((0, 0, 0, 0, 1, -1))
        out: list[Any] = [*fields, pos if r.random() < 0.9 else [pos, self.value(depth + 1)]]
        for _ in range(max(nslots, 0)):
            c = r.random()
            if c < 0.15:
                out.append(None)
            elif c < 0.25:
                out.append([tag(T_CELL), self.scalar()])
            elif c < 0.3 and depth < 2:
                out.append([tag(T_FRAME), *self.frame_fields(depth + 1)])
            else:
                out.append(self.value(depth + 1))
        if pos in info.delegating and out and depth < 2 and r.random() < 0.5:
            out[-1] = self.frame_fields(depth + 1) if r.random() < 0.7 else ref(r.randint(0, 3))
        return out


# ---------------------------------------------------------------------------
# The corpus with what mutators need from it
# ---------------------------------------------------------------------------


class Corpus:
    def __init__(self, seeds: list[Seed]) -> None:
        self.seeds = seeds
        self.blobs = [s.blob for s in seeds]
        self.coderefs: list[tuple[Any, Any, Any]] = []
        self.root_fields: list[list[Any]] = []
        self.stateful: list[int] = []
        """Seeds holding objects rebuilt from reduce state (partials, iterators
        with state): where a back-reference can make an object reach itself."""
        seen = set()
        for i, blob in enumerate(self.blobs):
            tree = unpack(blob)
            if type(tree[0]) is ExtType and tree[0].code == EXT_SIGNED:
                continue
            if memo_walk(tree).state_sites:
                self.stateful.append(i)
            w = walk(tree, deintern=True)
            self.root_fields.append(tree[root_at(tree):])
            for fr in w.frames:
                if fr.fields is not None:
                    key = repr(fr.fields)
                    if key not in seen:
                        seen.add(key)
                        self.coderefs.append(fr.fields)

    def random_coderef(self, r: random.Random) -> list[Any]:
        m, q, fp = r.choice(self.coderefs)
        return [m, list(q) if type(q) is list else q, fp]

    def frame_copy(self, r: random.Random) -> list[Any]:
        """The root frame fields of a random blob, de-interned (a fresh copy)."""
        fields = r.choice(self.root_fields)
        return unpack(pack(fields))


# ---------------------------------------------------------------------------
# Mutators
# ---------------------------------------------------------------------------

INTERESTING_BYTES = (0x00, 0xFF, 0xC0, 0xC1, 0x7F, 0x80, 0x90, 0x9F, 0xD4, 0xD5, 0xC7, 0xC9,
                     0xDC, 0xDD, 0xDE, 0xDF, 0xDB, 0xC6, 0xCF, 0xD3, 0xE0, 0x0A, 0x01)
LYING_HEADERS = (
    b"\xdd\xff\xff\xff\xff", b"\xdd\x7f\xff\xff\xff", b"\xdf\xff\xff\xff\xff",
    b"\xdb\xff\xff\xff\xff", b"\xc6\xff\xff\xff\xff", b"\xc9\xff\xff\xff\xff\x00",
    b"\xc9\x7f\xff\xff\xff\x02", b"\xdc\xff\xff", b"\xde\xff\xff", b"\xda\xff\xff",
    b"\xd9\xff", b"\xc5\xff\xff", b"\xc8\xff\xff\x01", b"\xc7\xff\x06",
)

ByteMutator = Callable[[random.Random, bytes, Corpus], bytes]
TreeMutator = Callable[[random.Random, Any, Gen], bool]


def b_truncate(r: random.Random, data: bytes, corpus: Corpus) -> bytes:
    return data[:r.randrange(max(len(data), 1))]


def b_bitflip(r: random.Random, data: bytes, corpus: Corpus) -> bytes:
    b = bytearray(data)
    for _ in range(r.choice((1, 1, 2, 3, 8))):
        if b:
            i = r.randrange(len(b))
            b[i] ^= 1 << r.randrange(8)
    return bytes(b)


def b_byteset(r: random.Random, data: bytes, corpus: Corpus) -> bytes:
    b = bytearray(data)
    for _ in range(r.randint(1, 3)):
        if b:
            b[r.randrange(len(b))] = r.choice(INTERESTING_BYTES) if r.random() < 0.7 \
                else r.randrange(256)
    return bytes(b)


def b_insert(r: random.Random, data: bytes, corpus: Corpus) -> bytes:
    i = r.randint(0, len(data))
    ins = r.randbytes(r.randint(1, 8)) if r.random() < 0.5 else \
        bytes(r.choice(INTERESTING_BYTES) for _ in range(r.randint(1, 4)))
    return data[:i] + ins + data[i:]


def b_delete(r: random.Random, data: bytes, corpus: Corpus) -> bytes:
    if not data:
        return data
    i = r.randrange(len(data))
    return data[:i] + data[i + r.randint(1, 8):]


def b_randrun(r: random.Random, data: bytes, corpus: Corpus) -> bytes:
    if not data:
        return data
    i = r.randrange(len(data))
    n = r.randint(1, 16)
    return data[:i] + r.randbytes(n) + data[i + n:]


def b_splice(r: random.Random, data: bytes, corpus: Corpus) -> bytes:
    other = r.choice(corpus.blobs)
    return data[:r.randint(0, len(data))] + other[r.randint(0, len(other)):]


def b_dupe(r: random.Random, data: bytes, corpus: Corpus) -> bytes:
    if not data:
        return data
    i = r.randrange(len(data))
    j = min(len(data), i + r.randint(1, 32))
    k = r.randint(0, len(data))
    return data[:k] + data[i:j] + data[k:]


BYTE_MUTATORS: dict[str, ByteMutator] = {
    "truncate": b_truncate, "bitflip": b_bitflip, "byteset": b_byteset, "insert": b_insert,
    "delete": b_delete, "randrun": b_randrun, "splice": b_splice, "dupe": b_dupe,
}


def _pick(r: random.Random, tree: Any, pred: Callable[[Any], bool] | None = None) \
        -> tuple[Any, Any] | None:
    ns = nodes(tree)
    if pred is not None:
        ns = [(c, k) for c, k in ns if pred(c[k])]
    if type(tree) is list:
        ns = [(c, k) for c, k in ns if not (c is tree and k == 0)] or ns  # keep the header
    return r.choice(ns) if ns else None


def t_replace(r: random.Random, tree: Any, g: Gen) -> bool:
    hit = _pick(r, tree)
    if hit is None:
        return False
    c, k = hit
    c[k] = g.value()
    return True


def t_int(r: random.Random, tree: Any, g: Gen) -> bool:
    hit = _pick(r, tree, lambda x: type(x) is int)
    if hit is None:
        return False
    c, k = hit
    v = c[k]
    choice = r.random()
    if choice < 0.5:
        v = v + r.choice((-3, -2, -1, 1, 2, 3))
    elif choice < 0.7:
        v = -v - 1
    else:
        v = g.int_()
    c[k] = max(-(2**63), min(v, 2**64 - 1))
    return True


def t_ext(r: random.Random, tree: Any, g: Gen) -> bool:
    hit = _pick(r, tree, lambda x: type(x) is ExtType)
    if hit is None:
        return False
    c, k = hit
    e: ExtType = c[k]
    choice = r.random()
    if choice < 0.3:
        c[k] = ExtType(r.choice((0, 1, 2, 3, 4, 5, 6, 7, 8, 0x43, 0x53, r.randint(-128, 127))),
                       e.data)
    elif choice < 0.6 and e.data:
        b = bytearray(e.data)
        i = r.randrange(len(b))
        b[i] = r.choice((b[i] + 1, b[i] - 1, 0, 255, r.randrange(256))) & 0xFF
        c[k] = ExtType(e.code, bytes(b))
    elif choice < 0.8:
        c[k] = ExtType(e.code, e.data + r.randbytes(r.randint(1, 3)))
    else:
        c[k] = ExtType(e.code, e.data[:-1])
    return True


def t_tag(r: random.Random, tree: Any, g: Gen) -> bool:
    hit = _pick(r, tree, lambda x: tag_kind(x) is not None)
    if hit is None:
        return False
    c, k = hit
    lst = c[k]
    choice = r.random()
    if choice < 0.5:
        lst[0] = tag(r.choice((r.randint(0, 22), r.choice(ITERATOR_KINDS), tag_kind(lst) or 0)))
    elif choice < 0.75 and len(lst) > 1:
        del lst[r.randrange(1, len(lst))]
    else:
        lst.insert(r.randint(1, len(lst)), g.value())
    return True


def t_ref(r: random.Random, tree: Any, g: Gen) -> bool:
    """Point a value (often the delegated sub-frame) at an existing memo entry."""
    w = walk(tree)
    deleg = [fr for fr in w.frames if fr.info is not None and fr.position() in fr.info.delegating
             and len(fr.lst) > fr.pos_i + 1]
    index = r.choice((0, 0, 1, 1, 2, 3, r.randint(0, 12), r.randint(0, 300)))
    if deleg and r.random() < 0.5:
        fr = r.choice(deleg)
        # the delegated slot: the top of the stack, below 3.15's NULL-or-index
        fr.lst[len(fr.lst) + DELEGATE] = ref(index)
        return True
    hit = _pick(r, tree)
    if hit is None:
        return False
    c, k = hit
    c[k] = ref(index)
    return True


def t_cycle(r: random.Random, tree: Any, g: Gen) -> bool:
    """Retarget a value inside a reduce's state or arguments, or inside a
    container, at an object still being built there: the reduce object itself,
    the container, or one of their ancestors (a partial whose func is itself,
    an iterator advancing itself, a list holding itself...).  Usually a
    replacement; sometimes the back-reference is added beside the value."""
    w = memo_walk(tree)
    if w.state_sites and r.random() < 0.4:
        # The reported shape: a reduce's own state names the object itself.
        c, k, target = r.choice(w.state_sites)
        if k < len(c):
            c[k] = ref(target)
            return True
    sites = [s for s in w.sites if s[3]] if r.random() < 0.7 else w.sites
    sites = sites or w.sites
    if not sites:
        return False
    c, k, open_, _ = r.choice(sites)
    # The nearest open object most often: the one whose contents these are.
    target = open_[-1] if r.random() < 0.6 else r.choice(open_)
    if type(c) is list and r.random() < 0.25 and not (k == 0 and tag_kind(c) is not None):
        c.insert(k + 1, ref(target))
    else:
        c[k] = ref(target)
    return True


def t_delete(r: random.Random, tree: Any, g: Gen) -> bool:
    hit = _pick(r, tree)
    if hit is None:
        return False
    c, k = hit
    del c[k]
    return True


def t_insert(r: random.Random, tree: Any, g: Gen) -> bool:
    hit = _pick(r, tree, lambda x: type(x) is list)
    if hit is None:
        return False
    c, k = hit
    c[k].insert(r.randint(0, len(c[k])), g.value())
    return True


def t_copy(r: random.Random, tree: Any, g: Gen) -> bool:
    """Copy a subtree elsewhere in the same tree (memo indexes shift)."""
    ns = nodes(tree)
    if len(ns) < 2:
        return False
    (c1, k1), (c2, k2) = r.choice(ns), r.choice(ns)
    if c2 is tree and k2 == 0:
        return False
    c2[k2] = unpack(pack(c1[k1]))
    return True


def _frames(tree: Any, known: bool = True) -> list[FrameRef]:
    frs = walk(tree).frames
    return [fr for fr in frs if fr.info is not None] if known else frs


def t_position(r: random.Random, tree: Any, g: Gen) -> bool:
    """Move a frame to a nearby or random offset, or to another resume point of its
    code with a stack of the matching depth (so only the kind checks stand in the way)."""
    frs = _frames(tree, known=False)
    if not frs:
        return False
    fr = r.choice(frs)
    if fr.pos_i >= len(fr.lst):
        return False
    info = fr.info
    pos = fr.lst[fr.pos_i]
    base = pos[0] if type(pos) is list and pos else pos
    choice = r.random()
    if info is not None and choice < 0.6:
        new = r.choice(sorted(info.resume))
        start = fr.pos_i + 1 + info.nlocalsplus
        old_stack = fr.lst[start:]
        depth = info.resume[new]
        stack = []
        for i in range(depth):
            c = r.random()
            if i < len(old_stack) and c < 0.4:
                stack.append(old_stack[i])
            elif c < 0.6 and fr.pos_i + 1 < start:
                stack.append(fr.lst[r.randrange(fr.pos_i + 1, start)])  # a local's value
            elif c < 0.7:
                stack.append(None)
            else:
                stack.append(g.value())
        del fr.lst[start:]
        fr.lst.extend(stack)
        base = new
    elif choice < 0.8 and type(base) is int:
        base = base + r.choice((-2, -1, 1, 2, 3, -3, 4, 8))
    else:
        base = r.choice((-1, 0, -2, g.int_(), "x", None, 1.0, [], [1, 2, 3]))
    if r.random() < 0.15:
        fr.lst[fr.pos_i] = [base, r.choice((g.value(), [tag(T_REDUCE), g.global_(), ["e"]]))]
    elif type(pos) is list and r.random() < 0.7:
        fr.lst[fr.pos_i] = [base, *pos[1:]]
    else:
        fr.lst[fr.pos_i] = base
    return True


def t_stack(r: random.Random, tree: Any, g: Gen) -> bool:
    """Add or remove a value at the end of a frame, or retype one of its slots."""
    frs = _frames(tree, known=False)
    if not frs:
        return False
    fr = r.choice(frs)
    choice = r.random()
    if choice < 0.3:
        fr.lst.append(g.value() if r.random() < 0.7 else None)
    elif choice < 0.55 and len(fr.lst) > fr.pos_i + 1:
        del fr.lst[r.randrange(fr.pos_i + 1, len(fr.lst))]
    elif len(fr.lst) > fr.pos_i + 1:
        i = r.randrange(fr.pos_i + 1, len(fr.lst))
        j = r.randrange(fr.pos_i + 1, len(fr.lst))
        c = r.random()
        if c < 0.3:
            fr.lst[i], fr.lst[j] = fr.lst[j], fr.lst[i]
        elif c < 0.5:
            fr.lst[i] = None  # an empty (NULL) slot
        elif c < 0.6:
            fr.lst[i] = NONE_EXT
        else:
            fr.lst[i] = g.value()
    else:
        return False
    return True


def t_swap_frames(r: random.Random, tree: Any, g: Gen) -> bool:
    """Put another blob's root frame in place of a frame, a slot or the root."""
    walk(tree, deintern=True)
    other = g.corpus.frame_copy(r)
    frs = _frames(tree, known=False)
    choice = r.random()
    if choice < 0.3:
        del tree[1:]
        tree.extend(other)
        return True
    if choice < 0.7 and len(frs) > 1:
        fr = r.choice(frs[1:])
        del fr.lst[fr.start:]
        fr.lst.extend(other)
        return True
    hit = _pick(r, tree)
    if hit is None:
        return False
    c, k = hit
    c[k] = [tag(T_FRAME), *other] if r.random() < 0.7 else other
    return True


def t_generate(r: random.Random, tree: Any, g: Gen) -> bool:
    """Replace the whole blob by a frame generated in the blob's shape."""
    del tree[1:]
    tree.extend(g.frame_fields())
    return True


def t_deep(r: random.Random, tree: Any, g: Gen) -> bool:
    """Nest a value deeply: arrays, tuples, cells, dicts or frozensets.  msgpack-python
    refuses to pack past 511 levels, so the nesting is spliced in as bytes."""
    hit = _pick(r, tree)
    if hit is None:
        return False
    c, k = hit
    depth = r.choice((30, 200, 900, 1100, 3000, 20000))
    prefix = r.choice((b"\x91", b"\x92\xd4\x00\x01", b"\x92\xd4\x00\x08", b"\x81\xa1k",
                       b"\x92\xd4\x00\x03", b"\x92\xd4\x00\x0a"))
    c[k] = g.splice(prefix * depth + pack(c[k]))
    return True


def t_chain(r: random.Random, tree: Any, g: Gen) -> bool:
    """A long chain of objects built from back-references: flat in msgpack, deep in
    memory.  Placed in the root frame's first slot, where the memo holds exactly the
    root generator, so the indexes are known."""
    if len(tree) < 6 or type(tree[1]) is not str or type(tree[4]) is list:
        return False
    slot = 5
    n = r.choice((1000, 30_000, 100_000))
    kind = r.choice(("cell", "list", "dict", "function", "slice", "enumerate", "calliter"))
    if kind == "slice" and r.random() < 0.5:
        n = 300_000  # deep enough to overflow the C stack when freed
    # memo: 0 = root generator, 1 = the holding list, then the chain
    items: list[Any]
    slice_, enumerate_, iter_, object_ = (ExtType(EXT_WELLKNOWN, bytes([i]))
                                          for i in (13, 1, 0, 10))
    if kind == "slice":
        items = [[tag(T_REDUCE), slice_, [0]]]
        items += [[tag(T_REDUCE), slice_, [ref(1 + i)]] for i in range(1, n)]
    elif kind == "enumerate":
        items = [[tag(T_REDUCE), enumerate_, [ref(0)]]]
        items += [[tag(T_REDUCE), enumerate_, [ref(1 + i)]] for i in range(1, n)]
    elif kind == "calliter":
        items = [[tag(T_REDUCE), iter_, [object_, None]]]
        items += [[tag(T_REDUCE), iter_, [object_, ref(1 + i)]] for i in range(1, n)]
    elif kind == "cell":
        items = [[tag(T_CELL)]] + [[tag(T_CELL), ref(1 + i)] for i in range(1, n)]
    elif kind == "list":
        items = [[]] + [[ref(1 + i)] for i in range(1, n)]
    elif kind == "dict":
        items = [{}] + [{"k": ref(1 + i)} for i in range(1, n)]
    else:
        code = g.corpus.random_coderef(r)
        items = [[tag(T_FUNCTION), *code]]
        items += [[tag(T_FUNCTION), *code, None, [ref(1 + i)]] for i in range(1, n)]
    if r.random() < 0.7:
        # A dict with a repeated key drops the holding list once decoded, so only the
        # chain's last element (kept by the tuple) holds the rest.  The dict takes memo
        # index 1, so everything after it moves up by one.
        tree[slot] = [tag(T_TUPLE), [tag(T_DICT), 0, _shift_refs(items, 1), 0, None],
                      ref(n + 1)]
    else:
        tree[slot] = items
    return True


def _shift_refs(v: Any, by: int) -> Any:
    if type(v) is ExtType and v.code == EXT_REF:
        return ref(int.from_bytes(v.data, "big") + by)
    if type(v) is list:
        return [_shift_refs(x, by) for x in v]
    if type(v) is dict:
        return {k: _shift_refs(x, by) for k, x in v.items()}
    return v


def t_big(r: random.Random, tree: Any, g: Gen) -> bool:
    """A value with a large (real, not lying) size."""
    hit = _pick(r, tree)
    if hit is None:
        return False
    c, k = hit
    choice = r.choice(("list", "bigint", "str", "bytes", "flat", "rangeiter", "reduce"))
    if choice == "list":
        c[k] = [None] * r.choice((10_000, 300_000))
    elif choice == "flat":
        c[k] = [tag(T_FLATLIST)] + [1] * r.choice((16, 100_000))
    elif choice == "bigint":
        c[k] = ExtType(EXT_BIGINT, r.randbytes(r.choice((1000, 200_000))))
    elif choice == "str":
        c[k] = "x" * r.choice((100_000, 1_000_000))
    elif choice == "bytes":
        c[k] = b"\xff" * r.choice((100_000, 1_000_000))
    elif choice == "rangeiter":
        c[k] = [tag(T_RANGEITER), -(2**63), 2**64 - 1, r.choice((1, 7, 2**40)), 2**62]
    else:
        wk = r.choice((19, 25, 14, 21, 18, 16, 11, 20))  # bytearray, bytes, list, str, ...
        c[k] = [tag(T_REDUCE), ExtType(EXT_WELLKNOWN, bytes([wk])),
                [r.choice((2**31, 2**40, 2**62, 10**8))]]
    return True


def t_lying_length(r: random.Random, tree: Any, g: Gen) -> bool:
    """Replace a value by a header declaring a huge length (the rest of the blob
    follows it, so the length lies)."""
    hit = _pick(r, tree)
    if hit is None:
        return False
    c, k = hit
    c[k] = g.splice(r.choice(LYING_HEADERS))
    return True


_M64 = (1 << 64) - 1
_XXP1, _XXP2, _XXP5 = 11400714785074694791, 14029467366897019727, 2870177450012600261


def colliding_pairs(n: int, target: int = 12345) -> list[tuple[int, int]]:
    """``n`` 2-tuples of small ints whose hashes all equal ``target``: CPython's
    tuple hash (xxHash-like, the same on 3.11-3.15) can be solved for its last
    item, and an int below 2**61 - 1 hashes to itself."""
    def rotl(x: int, r: int) -> int:
        return ((x << r) | (x >> (64 - r))) & _M64

    x = (((target - (2 ^ (_XXP5 ^ 3527539))) & _M64) * pow(_XXP1, -1, 1 << 64)) & _M64
    x = rotl(x, 64 - 31)
    inv2 = pow(_XXP2, -1, 1 << 64)
    out: list[tuple[int, int]] = []
    a = 0
    while len(out) < n:
        a += 1
        b = (x - rotl((_XXP5 + a * _XXP2) & _M64, 31) * _XXP1) * inv2 & _M64
        if b < (1 << 61) - 1:
            out.append((a, b))
    return out


def t_collide(r: random.Random, tree: Any, g: Gen) -> bool:
    """A set, frozenset, dict or plain map whose keys share one hash: building it
    costs O(n**2) comparisons.  The keys are ints equal modulo 2**61 - 1 (stored
    as EXT_BIGINT) or 2-tuples of small ints (``colliding_pairs``); half the
    time padded with as many distinct keys (a check counting distinct hashes
    lets that through).  A plain msgpack map is built by msgpack itself."""
    hit = _pick(r, tree)
    if hit is None:
        return False
    c, k = hit
    n = r.choice((500, 5000, 20_000))
    kind = r.choice((T_SET, T_FROZENSET, T_DICT, -1))  # -1: a plain map
    keys: list[Any] = []
    if kind != -1 and r.random() < 0.5:
        keys = [[tag(T_TUPLE), a, b] for a, b in colliding_pairs(n)]
    else:
        m = 2**61 - 1
        for i in range(1, n + 1):
            v = i * m
            keys.append(ExtType(EXT_BIGINT, v.to_bytes((v.bit_length() + 8) // 8, "little",
                                                       signed=True)))
    if r.random() < 0.5:
        keys += list(range(10**6, 10**6 + n))
    if kind == -1:
        c[k] = dict.fromkeys(keys)
    elif kind == T_DICT:
        c[k] = [tag(kind)] + [x for key in keys for x in (key, None)]
    else:
        c[k] = [tag(kind), *keys]
    return True


TREE_MUTATORS: dict[str, tuple[TreeMutator, int]] = {
    "replace": (t_replace, 12),
    "int": (t_int, 10),
    "ext": (t_ext, 8),
    "tag": (t_tag, 6),
    "ref": (t_ref, 6),
    "cycle": (t_cycle, 14),
    "delete": (t_delete, 5),
    "insert": (t_insert, 4),
    "copy": (t_copy, 4),
    "position": (t_position, 14),
    "stack": (t_stack, 10),
    "swap_frames": (t_swap_frames, 5),
    "generate": (t_generate, 6),
    "deep": (t_deep, 2),
    "big": (t_big, 1),
    "lying_length": (t_lying_length, 2),
}
_TREE_NAMES = list(TREE_MUTATORS)
_TREE_WEIGHTS = [w for _, w in TREE_MUTATORS.values()]


# ---------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class Input:
    data: bytes
    safe: bool
    script: int
    origin: str

    def to_json(self) -> dict[str, Any]:
        return {"hex": self.data.hex(), "safe": self.safe, "script": self.script,
                "origin": self.origin, "size": len(self.data)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Input:
        return cls(bytes.fromhex(d["hex"]), bool(d["safe"]), int(d["script"]),
                   str(d.get("origin", "")))


def make_input(seed: int, index: int, corpus: Corpus) -> Input:
    """Input ``index`` of campaign ``seed``: a pure function of both and the corpus."""
    r = random.Random(f"corosnap-fuzz/{seed}/{index}")
    si = r.randrange(len(corpus.seeds))
    if corpus.stateful and r.random() < 0.1:
        si = r.choice(corpus.stateful)
    base = corpus.seeds[si]
    safe = r.random() < 0.5
    script = r.getrandbits(32)
    ops: list[str] = [base.name]
    c = r.random()
    data = base.blob
    if c < 0.003:
        # rare, slow to build and run: long chains through back-references, and
        # hashed containers whose keys all collide
        tree = unpack(data)
        table = _take_table(tree)
        mutator, name = (t_chain, "chain") if c < 0.002 else (t_collide, "collide")
        if mutator(r, tree, Gen(r, corpus)):
            ops.append(name)
            _put_table(r, tree, table, ops)
            data = pack(tree)
    elif c < 0.3:
        for _ in range(r.choice((1, 1, 1, 2, 3))):
            name = r.choice(list(BYTE_MUTATORS))
            data = BYTE_MUTATORS[name](r, data, corpus)
            ops.append(name)
    else:
        tree = unpack(data)
        g = Gen(r, corpus)
        if type(tree[0]) is ExtType and tree[0].code == EXT_SIGNED and r.random() < 0.8:
            # mutate the signed blob's body (loaded without a key: unverified)
            inner = unpack(tree[2])
            _mutate_tree(r, inner, g, ops)
            ops.append("signed-body")
            try:
                tree[2] = g.pack_spliced(inner)
                g.splices.clear()
            except (OverflowError, ValueError, TypeError, RecursionError) as exc:
                ops.append(f"unpackable:{type(exc).__name__}")
        else:
            table = _take_table(tree)
            _mutate_tree(r, tree, g, ops)
            _put_table(r, tree, table, ops)
        try:
            data = g.pack_spliced(tree)
        except (OverflowError, ValueError, TypeError, RecursionError) as exc:
            ops.append(f"unpackable:{type(exc).__name__}")
            data = base.blob
        if r.random() < 0.08:
            name = r.choice(list(BYTE_MUTATORS))
            data = BYTE_MUTATORS[name](r, data, corpus)
            ops.append(name)
    return Input(data, safe, script, "+".join(ops))


_NO_TABLE = object()


def _take_table(tree: Any) -> Any:
    """A migratable blob's signature table, taken out so that the tree
    mutators see ``[header, *root fields]`` as in any other blob."""
    if type(tree) is list and len(tree) > 1 and is_migratable(tree[0]):
        return tree.pop(1)
    return _NO_TABLE


def _put_table(r: random.Random, tree: Any, table: Any, ops: list[str]) -> None:
    """Put the table back (forged one time in three: hostile signatures must
    not make a migration write what a normal restore would refuse)."""
    if table is _NO_TABLE or type(tree) is not list or not tree:
        return
    if r.random() < 0.33:
        table = _jiggle(r, table)
        ops.append("table")
    if len(tree) > 3 and type(tree[3]) is int and r.random() < 0.4:
        # The root code's fingerprint no longer matches: loads(migrate=True)
        # takes the migration path, guided by the (possibly forged) table.
        tree[3] ^= 1 << r.randrange(64)
        ops.append("changed-code")
    tree.insert(1, table)


def _mutate_tree(r: random.Random, tree: Any, g: Gen, ops: list[str]) -> None:
    for _ in range(r.choice((1, 1, 1, 2, 2, 3))):
        name = r.choices(_TREE_NAMES, _TREE_WEIGHTS)[0]
        try:
            done = TREE_MUTATORS[name][0](r, tree, g)
        except (RecursionError, IndexError, ValueError, TypeError, KeyError):
            done = False
        if done:
            ops.append(name)


# ---------------------------------------------------------------------------
# Running one input (in a child)
# ---------------------------------------------------------------------------


class Hang(BaseException):
    """Raised by the interval timer: the input ran past its time budget."""


def _on_alarm(signum: int, frame: Any) -> None:
    raise Hang()


def _memory_in_chain(exc: BaseException | None) -> bool:
    seen = 0
    while exc is not None and seen < 20:
        if isinstance(exc, MemoryError):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


class _ShortRepr(reprlib.Repr):
    """reprlib's short repr, with object addresses blanked before an instance's
    repr is cut to length: cut first, an address's varying number of digits
    moved the cut, and two engines' identical objects read differently."""

    def repr_instance(self, x: Any, level: int) -> str:
        try:
            s = _ADDRESS.sub("0x..", builtins.repr(x))
        except Exception:  # noqa: BLE001 - as reprlib does
            return f"<{x.__class__.__name__} instance at 0x..>"
        if len(s) > self.maxother:
            i = max(0, (self.maxother - 3) // 2)
            j = max(0, self.maxother - 3 - i)
            s = s[:i] + "..." + s[len(s) - j:]
        return s

    # A set's items in the order of their blanked reprs: reprlib sorts them
    # only when they compare, and a set of objects hashed by address (an
    # iterator beside an int) iterates in an order that differs between the
    # two engines' processes.
    def _by_repr(self, x: Any) -> list[Any]:
        try:
            return sorted(x, key=lambda item: _ADDRESS.sub("0x..", builtins.repr(item)))
        except Exception:  # noqa: BLE001 - reprlib's own order then
            return list(x)

    def repr_set(self, x: Any, level: int) -> str:
        if not x:
            return "set()"
        return self._repr_iterable(  # type: ignore[attr-defined]
            self._by_repr(x), level, "{", "}", self.maxset)

    def repr_frozenset(self, x: Any, level: int) -> str:
        if not x:
            return "frozenset()"
        return self._repr_iterable(  # type: ignore[attr-defined]
            self._by_repr(x), level, "frozenset({", "})", self.maxfrozenset)


_short_repr = _ShortRepr()
_short_repr.maxlevel = 3
_short_repr.maxstring = 40
_short_repr.maxother = 40


def _act_send(obj: Any, value: Any) -> Any:
    return obj.send(value)


def _act_throw(obj: Any, exc: BaseException) -> Any:
    return obj.throw(exc)


def _act_close(obj: Any) -> Any:
    return obj.close()


def _act_introspect(obj: Any) -> Any:
    frame = getattr(obj, "gi_frame", None) or getattr(obj, "cr_frame", None)
    return (getattr(obj, "gi_yieldfrom", None) or getattr(obj, "cr_await", None),
            frame.f_lineno if frame is not None else None,
            dict(frame.f_locals) if frame is not None else None)


class RedumpFailed(Exception):
    """dumps() of a restored object raised something other than a CorosnapError."""


def _act_redump(obj: Any) -> Any:
    """Capture the restored object again and restore the copy: the frame must read
    back as it was written."""
    try:
        blob = corosnap.dumps(obj)
    except corosnap.CorosnapError:
        return None
    except Exception as exc:  # noqa: BLE001 - reported as suspicious
        raise RedumpFailed(f"dumps: {type(exc).__name__}: {exc}") from None
    try:
        return corosnap.loads(blob)
    except corosnap.CorosnapError as exc:
        raise RedumpFailed(f"loads(dumps(restored)): {type(exc).__name__}: {exc}") from None


def _act_report(exc: BaseException) -> None:
    """Print an exception the resumed object raised, as an uncaught one would be
    (the child's stderr is /dev/null): CPython's C traceback printer is where a
    malformed exception or chain shows."""
    sys.__excepthook__(type(exc), exc, exc.__traceback__)


def _act_collect() -> None:
    gc.collect()


# -- using what was restored ------------------------------------------------------
#
# A value the blob built may be harmless to hold and fatal to use (a partial
# whose func is itself crashed the interpreter only when called).  So before it
# is resumed, every value reachable from the restored frames' locals is used
# as code would use it: called, iterated, hashed, compared and repr'd.  Each
# use is its own function, so a crash's Python stack names it.

_CONTAINERS = frozenset({list, tuple, dict, set, frozenset, collections.deque})
_WHOLE = frozenset({"repr", "str", "hash", "compare"})

_step = ""
"""What the child is doing, for a hang's report ("use: call functools.partial")."""

_behaviour: list[str] = []
"""What the last resume did (values yielded, exception types raised), for
comparing engines (``--engines``); object addresses are blanked."""
_ADDRESS = re.compile(r"(0x)?[0-9a-f]{6,}|(?<=\.\.\.)[0-9a-f]+(?=>)")
"""An object address, also the tail of one reprlib cut short (``...b20>``)."""

_SAFE_CALL_MODULES = frozenset({"corosnap_fuzz.zoo", "builtins", "functools", "itertools",
                                "datetime", "decimal", "collections", "enum", "dataclasses"})
_SAFE_BUILTINS = frozenset({"len", "max", "min", "abs", "repr", "hash", "iter", "next", "sorted",
                            "sum", "any", "all", "bool", "str", "int", "float", "tuple",
                            "list", "dict", "set", "frozenset", "range", "slice", "enumerate",
                            "zip", "reversed", "map", "filter", "format", "divmod", "round",
                            "object", "type", "isinstance", "id", "ord", "chr", "bytes",
                            "bytearray", "complex"})
"""Builtins the fuzzer may call with a blob's arguments (never ``input``,
``breakpoint``, ``open``, ``exit``: a blob may name any global in default mode)."""


def _zoo_codes() -> frozenset[types.CodeType]:
    """Every code object the zoo's own source defines (functions, methods,
    lambdas and nested code, through co_consts)."""
    found: set[types.CodeType] = set()
    todo: list[Any] = list(vars(zoo).values())
    seen: set[int] = set()
    while todo:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, types.CodeType):
            found.add(obj)
            todo.extend(c for c in obj.co_consts if isinstance(c, types.CodeType))
        elif isinstance(obj, types.FunctionType):
            todo.append(obj.__code__)
        elif isinstance(obj, (staticmethod, classmethod)):
            todo.append(obj.__func__)
        elif isinstance(obj, property):
            todo.extend(f for f in (obj.fget, obj.fset, obj.fdel) if f is not None)
        elif isinstance(obj, type) and obj.__module__ == zoo.__name__:
            todo.extend(vars(obj).values())
    return frozenset(found)


_ZOO_CODES = _zoo_codes()
"""A function the fuzzer calls must run one of these (compared with ==, so a
zoo lambda that went through the fallback pickler still qualifies): a function
rebuilt from a damaged pickle payload carries bytecode of the damage's making,
which CPython executes as it is (default mode runs pickled code by design)."""


def _callable_ok(v: Any) -> bool:
    """Whether calling ``v`` can only run code of the zoo, of data types and of
    the harmless builtins above.  Partials and methods are unwrapped; one that
    does not end within 64 steps (a loop) is called: that is the bug to find."""
    for _ in range(64):
        if isinstance(v, functools.partial):
            v = v.func
        elif type(v) is types.MethodType:
            v = v.__func__
        else:
            break
    else:
        return True
    if type(v) is types.BuiltinFunctionType:
        owner = v.__self__
        if owner is None or type(owner) is types.ModuleType:
            return v.__name__ in _SAFE_BUILTINS and getattr(owner, "__name__", "") in (
                "builtins", "")
        return type(owner).__module__ in _SAFE_CALL_MODULES or isinstance(
            owner, (types.GeneratorType, types.CoroutineType))
    if type(v) in (types.MethodWrapperType, types.WrapperDescriptorType,
                   types.MethodDescriptorType):
        return getattr(v, "__objclass__", type).__module__ in _SAFE_CALL_MODULES
    module = getattr(v, "__module__", None)
    if type(v) is types.FunctionType:
        return module == "corosnap_fuzz.zoo" and v.__code__ in _ZOO_CODES
    if isinstance(v, type):
        if module == "corosnap_fuzz.zoo":  # its methods' code the zoo's own, as above
            return all(f.__code__ in _ZOO_CODES for klass in v.__mro__
                       for f in vars(klass).values() if type(f) is types.FunctionType)
        return module in _SAFE_CALL_MODULES
    return type(v).__module__ in _SAFE_CALL_MODULES and callable(v)


def _act_call(v: Any) -> Any:
    try:
        v()
    except Hang:
        raise
    except BaseException:  # noqa: BLE001, S110 - then with an argument
        pass
    return v(1)


def _act_iterate(v: Any) -> Any:
    it = iter(v)
    out = []
    for _ in range(3):
        out.append(next(it))
    return out


def _act_hash(v: Any) -> Any:
    return hash(v)


def _act_compare(v: Any) -> Any:
    return v == v, v != 0


def _act_repr(v: Any) -> Any:
    if type(v) in _CONTAINERS:
        # Bounded: CPython's repr of n lists, each holding the one before
        # (flat in a blob), is quadratic, n times the recursion limit (10,000
        # on 3.13).  Each item reached is repr'd on its own (_reachable).
        return _short_repr.repr(v)
    return repr(v)


def _act_str(v: Any) -> Any:
    return _short_repr.repr(v) if type(v) in _CONTAINERS else str(v)


_USES: tuple[tuple[str, Callable[[Any], Any]], ...] = (
    ("repr", _act_repr), ("str", _act_str), ("hash", _act_hash), ("compare", _act_compare),
    ("iterate", _act_iterate), ("call", _act_call))


def _frames_of(obj: Any) -> list[Any]:
    """The frames of a restored generator/coroutine and of what it delegates to."""
    out = []
    for _ in range(50):
        frame = getattr(obj, "gi_frame", None) or getattr(obj, "cr_frame", None)
        if frame is None:
            break
        out.append(frame)
        obj = getattr(obj, "gi_yieldfrom", None) or getattr(obj, "cr_await", None)
        if obj is None:
            break
    return out


def _reachable(roots: list[Any], limit: int = 300) -> list[Any]:
    """Values reachable from ``roots`` through containers, partials, methods,
    cells and instance dicts (breadth first, each at most once, a few items per
    container)."""
    seen: set[int] = set()
    out: list[Any] = []
    queue = collections.deque(roots)
    while queue and len(out) < limit:
        v = queue.popleft()
        if id(v) in seen:
            continue
        seen.add(id(v))
        out.append(v)
        t = type(v)
        try:
            if t in (list, tuple, set, frozenset, collections.deque):
                queue.extend(list(v)[:20] if t in (list, tuple) else
                             list(itertools.islice(v, 20)))
            elif t is dict:
                for k, x in list(v.items())[:20]:
                    queue.extend((k, x))
            elif isinstance(v, functools.partial):
                queue.extend((v.func, *v.args[:20], *list(v.keywords.values())[:20]))
            elif t is types.MethodType:
                queue.extend((v.__func__, v.__self__))
            elif t is types.CellType:
                queue.append(v.cell_contents)
            elif t is slice:
                queue.extend((v.start, v.stop, v.step))
            elif isinstance(getattr(v, "__dict__", None), dict) and t.__module__ == \
                    "corosnap_fuzz.zoo":
                queue.extend(list(vars(v).values())[:20])
        except Hang:
            raise
        except BaseException:  # noqa: BLE001, S110 - an empty cell, a property...
            pass
    return out


def _use_values(obj: Any) -> None:
    """Use every value reachable from the restored frames' locals (see above)."""
    global _step
    roots: list[Any] = []
    for frame in _frames_of(obj):
        _step = "use: read f_locals"
        try:
            roots.extend(dict(frame.f_locals).values())
        except Hang:
            raise
        except BaseException:  # noqa: BLE001, S112 - reading locals of a broken frame
            continue
    top = {id(v) for v in roots}
    for v in _reachable(roots):
        name = type(v).__qualname__
        inner = id(v) not in top and type(v) in _CONTAINERS
        for use, act in _USES:
            if inner and use in _WHOLE:
                # The local holding it was repr'd, compared, hashed as a whole:
                # doing it again for each container inside would be quadratic
                # in a chain's depth (a 100,000-deep list takes 0.1 s to refuse
                # repr on 3.13, and is repr'd on 3.14).
                continue
            if use == "call" and not (callable(v) and _callable_ok(v)):
                continue
            if use == "iterate" and isinstance(v, (types.GeneratorType, types.CoroutineType)):
                continue  # resuming is _drive's business
            _step = f"use: {use} {name}"
            try:
                _short_repr.repr(act(v))
            except Hang:
                raise
            except BaseException:  # noqa: BLE001, S110 - the value's own behaviour
                pass
    _step = ""


def _drive(obj: Any, script: int) -> str:
    """Resume a restored generator/coroutine a few times; ordinary exceptions are its
    own business.  Returns a short trace (exception types) for the record.  Each kind
    of action is its own function, so a crash's Python stack names it."""
    global _step
    r = random.Random(script)
    trace: list[str] = []
    _behaviour.clear()
    for _ in range(r.randint(1, 4)):
        c = r.random()
        _step = "resume: " + ("send" if c < 0.62 else "throw" if c < 0.77 else "close"
                              if c < 0.85 else "introspect" if c < 0.93 else "dumps/loads")
        try:
            if c < 0.5:
                v = _act_send(obj, None)
            elif c < 0.62:
                v = _act_send(obj, r.choice((1, "x", [1], None, -1, 2**70)))
            elif c < 0.77:
                v = _act_throw(obj, r.choice((ValueError, KeyError, GeneratorExit,
                                              StopIteration, RuntimeError))("fuzz"))
            elif c < 0.85:
                v = _act_close(obj)
            elif c < 0.93:
                v = _act_introspect(obj)
            else:
                v = _act_redump(obj)
            _behaviour.append("y:" + _ADDRESS.sub("0x..", _short_repr.repr(v)))
        except Hang:
            raise
        except StopIteration:
            trace.append("StopIteration")
            break
        except BaseException as exc:  # noqa: BLE001 - the generator's own behaviour
            trace.append(type(exc).__name__)
            _behaviour.append(type(exc).__name__)
            if len(trace) <= 2:
                _act_report(exc)
            if isinstance(exc, (SystemError, RedumpFailed)):
                return f"{type(exc).__name__}: {str(exc)[:160]}"
    _step = "resume: close"
    try:
        _act_close(obj)
    except Hang:
        raise
    except BaseException as exc:  # noqa: BLE001
        trace.append(type(exc).__name__)
    return ",".join(trace)


def time_budget(inp: Input, timeout: float) -> float:
    """Seconds an input may take: ``timeout`` plus as much again per MB of blob.
    Decoding runs at tens of MB/s, so only a superlinear path (colliding hashes,
    an accidental quadratic walk) or a real hang gets near it."""
    return timeout * (1.0 + len(inp.data) / 1_000_000)


def run_one(inp: Input, timeout: float) -> tuple[str, str, str]:
    """(outcome, phase, detail) for one input, in this process.

    Phases: ``loads``; ``use`` (every value reachable from the restored frames'
    locals called, iterated, hashed, compared, repr'd: _use_values); ``resume``
    (sent to, thrown into, closed: _drive); ``gc``.  A hang's detail says what
    the child was doing when the budget ran out."""
    global _step
    zoo.LOG.clear()
    signal.setitimer(signal.ITIMER_REAL, time_budget(inp, timeout))
    phase = "loads"
    _step = "loads"
    try:
        try:
            obj = corosnap.loads(inp.data, safe=inp.safe, allow=SAFE_ALLOW if inp.safe else (),
                                 migrate=migratable_data(inp.data))
        except corosnap.CorosnapError as exc:
            if _memory_in_chain(exc):
                return "memoryerror", phase, f"{type(exc).__name__}: {str(exc)[:160]}"
            return "rejected", phase, f"{type(exc).__name__}: {str(exc)[:200]}"
        except MemoryError as exc:
            return "memoryerror", phase, f"MemoryError: {str(exc)[:160]}"
        except Hang:
            return "hang", phase, _step
        except BaseException as exc:  # noqa: BLE001 - that is the finding
            return "other", phase, f"{type(exc).__name__}: {str(exc)[:160]}"
        try:
            phase = "use"
            _use_values(obj)
            phase = "resume"
            trace = _drive(obj, inp.script)
            del obj
            phase = "gc"
            _step = "gc"
            _act_collect()
        except Hang:
            return "hang", phase, _step
        if trace.startswith(("SystemError:", "RedumpFailed:")):
            return "restored", "resume", trace  # suspicious: reported separately
        return "restored", phase, ""
    except Hang:
        return "hang", phase, f"late ({_step})"
    except:  # noqa: E722 - only a bare except sees a non-exception raised by a broken frame
        # The interpreter raised an object that is not an exception (a frame put its
        # exception slots in a state CPython never makes): no ``except`` clause can
        # catch it, so it would unwind any program to the top.  Count it as a crash.
        bad = sys.exc_info()[1]
        return "crash", phase, f"corrupt: a {type(bad).__name__} raised as an exception"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        try:
            gc.collect()
        except Hang:
            pass


# ---------------------------------------------------------------------------
# Forked children
# ---------------------------------------------------------------------------


def _write_msg(fd: int, obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    msg = struct.pack("<I", len(data)) + data
    view = memoryview(msg)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _read_exact(fd: int, n: int) -> bytes | None:
    parts = []
    while n:
        chunk = os.read(fd, n)
        if not chunk:
            return None
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


def _read_msg(fd: int) -> Any:
    head = _read_exact(fd, 4)
    if head is None:
        return None
    body = _read_exact(fd, struct.unpack("<I", head)[0])
    return None if body is None else pickle.loads(body)


def _vm_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


class Child:
    """One forked worker: gets inputs down a pipe, answers with outcomes."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.pid = 0
        self.done = 0
        self.busy: Any = None  # the job in flight
        self.deadline = 0.0
        self.fault_path = os.path.join(ctx.workdir, f"fault-{id(self)}.txt")
        self.start()

    def start(self) -> None:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        fault = open(self.fault_path, "w+b")  # noqa: SIM115 - handed to the child
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            try:
                os.close(to_child_w)
                os.close(from_child_r)
                if self.ctx.engine:
                    # A fresh interpreter: an engine is chosen when corosnap is
                    # imported, and this process imported it already.
                    for fd in (to_child_r, from_child_w, fault.fileno()):
                        os.set_inheritable(fd, True)
                    tools = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
                    # The engine's environment exactly: "c" even when this
                    # process runs the pure-Python engine.
                    env = {k: v for k, v in os.environ.items() if k != "COROSNAP_PUREPYTHON"}
                    env.update(ENGINES[self.ctx.engine], PYTHONPATH=os.pathsep.join(
                        [tools, *filter(None, [os.environ.get("PYTHONPATH")])]))
                    os.execve(sys.executable, [
                        sys.executable, "-c", "from corosnap_fuzz.fuzz import _worker_main; "
                        f"_worker_main({to_child_r}, {from_child_w}, {fault.fileno()})"], env)
                _child_main(self.ctx, to_child_r, from_child_w, fault)
            finally:
                os._exit(0)
        os.close(to_child_r)
        os.close(from_child_w)
        fault.close()
        self.pid = pid
        self.w = to_child_w
        self.r = from_child_r
        self.done = 0
        self.busy = None
        if self.ctx.engine:
            _write_msg(self.w, dataclasses.replace(self.ctx, engine=""))

    def send(self, job: Any) -> None:
        self.busy = job
        inp = job[1] if job[0] == "input" else None
        extra = time_budget(inp, self.ctx.timeout) if inp is not None else 0.0
        self.deadline = time.monotonic() + self.ctx.hard_timeout + extra
        try:
            _write_msg(self.w, job)
        except (BrokenPipeError, OSError):
            pass  # the child is dead; the reader sees EOF

    def result(self) -> Any:
        """Read an answer; None when the child died (see ``reap``)."""
        msg = _read_msg(self.r)
        if msg is not None:
            self.busy = None
            self.done += 1
        return msg

    def reap(self, kill: bool = False) -> tuple[int | None, str]:
        """Wait for a dead (or hung, with kill=True) child: (signal, faulthandler text)."""
        if kill:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _, status = os.waitpid(self.pid, 0)
        for fd in (self.w, self.r):
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            with open(self.fault_path, "rb") as f:
                text = f.read().decode(errors="replace")
        except OSError:
            text = ""
        sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        if sig is None and os.WIFEXITED(status) and os.WEXITSTATUS(status) != 0:
            text = f"exit status {os.WEXITSTATUS(status)}\n" + text
            sig = -os.WEXITSTATUS(status)
        return sig, text

    def stop(self) -> None:
        try:
            _write_msg(self.w, None)
        except OSError:
            pass
        self.reap(kill=True)
        try:
            os.unlink(self.fault_path)
        except OSError:
            pass


def _worker_main(rfd: int, wfd: int, fault_fd: int) -> None:  # pragma: no cover
    """A worker started as a fresh interpreter (one engine of ``--engines``):
    reads its Context, then serves inputs as a forked child does."""
    ctx = _read_msg(rfd)
    with open(fault_fd, "w+b", closefd=True) as fault:
        _child_main(ctx, rfd, wfd, fault)
    os._exit(0)


def _child_main(ctx: Context, rfd: int, wfd: int, fault: Any) -> None:  # pragma: no cover
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGALRM, _on_alarm)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    faulthandler.enable(file=fault, all_threads=False)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a core dump per crash is slow
    if ctx.memory_mb:
        limit = _vm_bytes() + ctx.memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    warnings.simplefilter("ignore")
    os.chdir(ctx.workdir)
    # Everything alive now (corpus, caches, modules) is never garbage: keep it out
    # of the per-input collections, which then cost microseconds, not milliseconds.
    gc.collect()
    gc.freeze()
    while True:
        job = _read_msg(rfd)
        if job is None:
            return
        kind, payload = job
        if kind in ("index", "deep"):
            inp = make_input(ctx.seed, payload, ctx.corpus)
        else:
            inp = payload
        _behaviour.clear()
        limit = sys.getrecursionlimit()
        if kind == "deep":
            sys.setrecursionlimit(DEEP_LIMIT)
        try:
            result = run_one(inp, ctx.timeout)
        except Hang:
            result = ("hang", "late", "")
        except MemoryError:
            result = ("memoryerror", "late", "")
        finally:
            sys.setrecursionlimit(limit)
        _write_msg(wfd, (*result, "|".join(_behaviour)))


@dataclasses.dataclass
class Context:
    corpus: Corpus
    seed: int = 0
    timeout: float = 10.0
    hard_timeout: float = 30.0
    memory_mb: int = 1024
    workdir: str = ""
    recycle: int = 3000
    engine: str = ""
    """"" forks children of this process; an ENGINES name starts each child as
    a fresh interpreter with that engine's environment."""


# ---------------------------------------------------------------------------
# Results and buckets
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class Finding:
    outcome: str
    key: str
    count: int
    index: int | None
    input: Input
    detail: str
    reproducible: bool | None = None
    minimized: Input | None = None

    def to_json(self) -> dict[str, Any]:
        d = {"outcome": self.outcome, "bucket": self.key, "count": self.count,
             "index": self.index, "detail": self.detail[-2000:],
             "reproducible": self.reproducible, "input": self.input.to_json()}
        if self.minimized is not None:
            d["minimized"] = self.minimized.to_json()
        return d


@dataclasses.dataclass
class Report:
    seed: int
    inputs: int
    counts: Counter[str]
    corpus_size: int
    corpus_failures: list[str]
    findings: dict[str, Finding]
    suspicious: Counter[str]
    phases: Counter[str]
    rejections: Counter[str]
    seconds: float
    safe_refusals: dict[str, list[str]] = dataclasses.field(default_factory=dict)

    @property
    def failures(self) -> int:
        return sum(self.counts[o] for o in FAILURES)

    def to_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed, "inputs": self.inputs, "seconds": round(self.seconds, 1),
            "counts": {o: self.counts[o] for o in OUTCOMES},
            "corpus": {"size": self.corpus_size, "failures": self.corpus_failures,
                       "refused_in_safe_mode": self.safe_refusals},
            "rejections": dict(self.rejections.most_common()),
            "phases": dict(self.phases.most_common()),
            "suspicious": dict(self.suspicious.most_common(30)),
            "findings": [f.to_json() for f in sorted(self.findings.values(),
                                                     key=lambda f: (f.outcome, -f.count))],
        }

    def table(self) -> str:
        lines = [f"corosnap fuzz: seed {self.seed}, {self.inputs} inputs, "
                 f"{self.seconds:.0f} s ({self.inputs / max(self.seconds, 1e-9):.0f}/s); "
                 f"corpus {self.corpus_size} blobs"
                 + (f", {len(self.corpus_failures)} NOT restored" if self.corpus_failures
                    else ", all restored"),
                 "",
                 f"{'outcome':<14}{'count':>10}{'share':>9}"]
        for o in OUTCOMES:
            n = self.counts[o]
            lines.append(f"{o:<14}{n:>10}{100 * n / max(self.inputs, 1):>8.2f}%")
        if self.findings:
            lines += ["", "failure buckets (count, first index, bucket):"]
            for f in sorted(self.findings.values(), key=lambda f: (f.outcome, -f.count)):
                rep = "" if f.reproducible is None else (
                    " [reproducible]" if f.reproducible else " [not reproducible alone]")
                lines.append(f"  {f.outcome:<12}{f.count:>7}  #{f.index}  {f.key}{rep}")
        if self.corpus_failures:
            lines += ["", "corpus blobs that did NOT restore (default mode):"]
            lines += [f"  {x}" for x in self.corpus_failures[:20]]
        if self.safe_refusals:
            n = sum(len(v) for v in self.safe_refusals.values())
            lines += ["", f"corpus blobs refused in safe mode ({n}; allow={SAFE_ALLOW}):"]
            for why, names in sorted(self.safe_refusals.items(), key=lambda kv: -len(kv[1])):
                lines.append(f"  {len(names):>4}  {why}  (e.g. {names[0]})")
        if self.suspicious:
            lines += ["", "suspicious (restored, but resuming raised SystemError, or the "
                      "restored object did not survive dumps/loads again):"]
            for k, n in self.suspicious.most_common(10):
                lines.append(f"  {n:>7}  {k}")
        return "\n".join(lines)


_FRAME_LINE = re.compile(r'File "([^"]+)", line (\d+) in (\S+)')


def crash_key(sig: int | None, fault: str) -> str:
    """Signal, the harness step (loads, send, throw, close, introspect, collect) and
    the innermost frames above it, by function name (stable across edits)."""
    name = signal.Signals(sig).name if sig and sig > 0 else f"exit {-(sig or 0)}"
    frames = [(os.path.basename(f), fn) for f, _ln, fn in _FRAME_LINE.findall(fault)]
    step = "?"
    above: list[str] = []
    for f, fn in frames:
        if f == "fuzz.py" and fn.startswith("_act_"):
            step = fn[5:]
            break
        if f == "fuzz.py" and fn == "run_one":
            step = "loads"
            break
        above.append(f"{f}:{fn}")
    if step == "?" and len(frames) >= 50 and len(set(frames)) <= 5:
        # faulthandler shows at most 100 frames: the same few, over and over, is
        # an unbounded recursion that ran out of C stack
        return f"{name} in unbounded recursion through " + " < ".join(
            f"{f}:{fn}" for f, fn in sorted(set(frames)))
    where = " < ".join(above[:2])
    return f"{name} in {step}" + (f" at {where}" if where else "")


def other_key(detail: str) -> str:
    return re.sub(r"\d+", "N", detail.split("\n")[0])[:100]


# ---------------------------------------------------------------------------
# The campaign
# ---------------------------------------------------------------------------


class Pool:
    """``jobs`` children; runs jobs and reports (job, outcome tuple or crash)."""

    def __init__(self, ctx: Context, jobs: int) -> None:
        self.ctx = ctx
        self.children = [Child(ctx) for _ in range(max(1, jobs))]
        self.behaviour = ""  # of the result last yielded (see _behaviour)

    def close(self) -> None:
        for c in self.children:
            c.stop()

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def run(self, jobs: Iterator[Any]) -> Iterator[tuple[Any, tuple[str, str, str]]]:
        pending = iter(jobs)
        exhausted = False
        while True:
            for c in self.children:
                if c.busy is None and not exhausted:
                    if c.done >= self.ctx.recycle:
                        c.stop()
                        c.start()
                    job = next(pending, None)
                    if job is None:
                        exhausted = True
                    else:
                        c.send(job)
            busy = [c for c in self.children if c.busy is not None]
            if not busy:
                return
            ready, _, _ = select.select([c.r for c in busy], [], [], 0.5)
            now = time.monotonic()
            for c in busy:
                if c.r in ready:
                    job = c.busy
                    msg = c.result()
                    if msg is not None:
                        self.behaviour = msg[3]
                        yield job, msg[:3]
                        continue
                    sig, text = c.reap()
                    c.start()
                    yield job, ("crash", "", f"{sig}\n{text}")
                elif now > c.deadline:
                    job = c.busy
                    c.reap(kill=True)
                    c.start()
                    yield job, ("hang", "unresponsive", "")

    def run_one(self, inp: Input) -> tuple[str, str, str]:
        for _, res in self.run(iter([("input", inp)])):
            return res
        raise RuntimeError("no result")


def _crash_sig(detail: str) -> int | None:
    head = detail.split("\n", 1)[0]
    try:
        return int(head)
    except ValueError:
        return None


def bucket(outcome: str, phase: str, detail: str) -> str:
    if outcome == "crash" and detail.startswith("corrupt:"):
        return f"{detail[9:]} (in {phase})"
    if outcome == "crash":
        sig = _crash_sig(detail)
        return crash_key(sig, detail.split("\n", 1)[1] if "\n" in detail else "")
    if outcome == "hang":
        return f"hang in {phase}" + (f" ({detail})" if detail else "")
    return f"{phase}: {other_key(detail)}"


_corpus_cache: list[Corpus] = []


def get_corpus() -> Corpus:
    if not _corpus_cache:
        _corpus_cache.append(Corpus(build_corpus()))
    return _corpus_cache[0]


def _signature(outcome: str, phase: str, detail: str, behaviour: str) -> str:
    """What must be the same when one input is loaded through two engines."""
    if outcome in ("rejected", "other"):
        return f"{outcome} in {phase}: {detail.split(':', 1)[0]}"
    if outcome == "restored":
        return f"restored: {behaviour}"
    return outcome


def run_campaign(inputs: int, seed: int = 0, jobs: int = 1, timeout: float = 10.0,
                 memory_mb: int = 1024, crash_dir: str | None = None,
                 minimize: bool = False, progress: bool = False,
                 start: int = 0, engines: tuple[str, ...] = ()) -> Report:
    """Run inputs ``start .. start+inputs-1`` of campaign ``seed``; see the module doc.

    ``engines``: () forks children of this process (the engine it imported);
    one or more ENGINES names run each input in a fresh worker per engine, and
    with two or more, every input through each of them: the first engine's
    outcome is counted, and any other engine ending differently is a
    ``differ`` failure."""
    corpus = get_corpus()
    t0 = time.monotonic()
    counts: Counter[str] = Counter()
    phases: Counter[str] = Counter()
    rejections: Counter[str] = Counter()
    suspicious: Counter[str] = Counter()
    findings: dict[str, Finding] = {}
    corpus_failures: list[str] = []
    safe_refusals: dict[str, list[str]] = collections.defaultdict(list)

    def found(outcome: str, key: str, index: int, detail: str) -> None:
        inp = make_input(seed, index, corpus)
        f = findings.get(key)
        if f is None:
            findings[key] = Finding(outcome, key, 1, index, inp, detail)
        else:
            f.count += 1
            if len(inp.data) < len(f.input.data):
                f.index, f.input, f.detail = index, inp, detail

    with tempfile.TemporaryDirectory(prefix="corosnap-fuzz-") as workdir:
        ctx = Context(corpus, seed, timeout, max(30.0, timeout * 3), memory_mb, workdir,
                      engine=engines[0] if engines else "")
        with contextlib.ExitStack() as stack:
            pool = stack.enter_context(Pool(ctx, jobs))
            others = [(e, stack.enter_context(Pool(dataclasses.replace(ctx, engine=e), jobs)))
                      for e in engines[1:]]
            # The unmutated corpus must restore: a check of the harness itself.
            seeds = (("input", Input(s.blob, False, 0, s.name)) for s in corpus.seeds)
            for job, (outcome, _phase, detail) in pool.run(seeds):
                if outcome != "restored":
                    corpus_failures.append(f"{job[1].origin}: {outcome} {detail[:200]}")
            # ... and in safe mode (allowing the zoo's modules), where a refusal is
            # not a failure but worth knowing: what can a safe-mode user not load?
            seeds = (("input", Input(s.blob, True, 0, s.name)) for s in corpus.seeds)
            for job, (outcome, _phase, detail) in pool.run(seeds):
                if outcome != "restored":
                    safe_refusals[re.sub(r"0x[0-9a-f]+", "0x..", detail)[:160]].append(
                        job[1].origin)
            last = time.monotonic()
            done = 0
            batch = 256 if others else inputs
            for lo in range(start, start + inputs, max(batch, 1)):
                indexes = range(lo, min(lo + batch, start + inputs))
                firsts: dict[int, tuple[str, str, str, str]] = {}
                for job, (outcome, phase, detail) in pool.run(("index", i) for i in indexes):
                    index = job[1]
                    if others:
                        firsts[index] = (outcome, phase, detail, pool.behaviour)
                    done += 1
                    counts[outcome] += 1
                    phases[f"{outcome}/{phase}"] += 1
                    if outcome == "rejected":
                        rejections[detail.split(":", 1)[0]] += 1
                    elif outcome == "restored" and detail:
                        suspicious[other_key(detail)] += 1
                    elif outcome in FAILURES:
                        found(outcome, f"{outcome}: {bucket(outcome, phase, detail)}", index,
                              detail)
                    if progress and time.monotonic() - last > 10:
                        last = time.monotonic()
                        fails = sum(counts[o] for o in FAILURES)
                        print(f"  {done}/{inputs} inputs, {fails} failures, "
                              f"{done / (last - t0):.0f}/s", file=sys.stderr, flush=True)
                for engine, other in others:
                    # Every result of the batch (with the behaviour it came with)
                    # before any "deep" rerun: a rerun on the same workers while
                    # the batch is still running would take the batch's results.
                    batch_results = [(job, res, other.behaviour)
                                     for job, res in other.run(("index", i) for i in indexes)]
                    for job, res, behaviour in batch_results:
                        index = job[1]
                        first = _signature(*firsts[index])
                        second = _signature(*res, behaviour)
                        if first != second and not {firsts[index][0], res[0]} & {
                                "crash", "hang", "memoryerror"}:
                            # Perhaps the nesting difference by design (in
                            # loads, or in the encoder of a re-dump): both
                            # again, with room for either walk (DEEP_LIMIT).
                            (_, deep1), = pool.run(iter([("deep", index)]))
                            first = _signature(*deep1, pool.behaviour)
                            (_, deep2), = other.run(iter([("deep", index)]))
                            second = _signature(*deep2, other.behaviour)
                            if first == second:
                                counts["deep"] += 1
                                continue
                        if first != second:
                            counts["differ"] += 1
                            key = (f"differ: {engines[0]} {first[:60]!r} but {engine} "
                                   f"{second[:60]!r}")
                            found("differ", re.sub(r"0x[0-9a-f]+", "0x..", key), index,
                                  f"{engines[0]}: {first}\n{engine}: {second}\n{res[2]}")
            for f in findings.values():
                if f.outcome == "differ":
                    continue
                res = pool.run_one(f.input)
                f.reproducible = res[0] == f.outcome
                if minimize and f.reproducible and f.outcome in ("crash", "other",
                                                                 "memoryerror"):
                    f.minimized = minimize_input(pool, f.input, f.outcome)
    report = Report(seed, inputs, counts, len(corpus.seeds), corpus_failures, findings,
                    suspicious, phases, rejections, time.monotonic() - t0, dict(safe_refusals))
    if crash_dir:
        save_findings(report, crash_dir)
    return report


def save_findings(report: Report, crash_dir: str) -> None:
    os.makedirs(crash_dir, exist_ok=True)
    for f in sorted(report.findings.values(), key=lambda f: f.key):
        stem = os.path.join(crash_dir, f"{f.outcome}-{report.seed}-{f.index}")
        with open(stem + ".json", "w") as fh:
            json.dump(f.to_json(), fh, indent=1)
        with open(stem + ".bin", "wb") as fb:
            fb.write(f.input.data)
        if f.minimized is not None:
            with open(stem + ".min.bin", "wb") as fb:
                fb.write(f.minimized.data)
            with open(stem + ".min.py", "w") as fh:
                fh.write(repro_snippet(f.minimized, f.outcome))


def repro_snippet(inp: Input, outcome: str) -> str:
    return (
        f"# corosnap fuzz reproduction ({outcome}); origin: {inp.origin}\n"
        "import corosnap, corosnap_fuzz.fuzz  # PYTHONPATH=tools\n"

        "from corosnap_fuzz.fuzz import _drive\n"
        f"blob = bytes.fromhex({inp.data.hex()!r})\n"
        f"obj = corosnap.loads(blob, safe={inp.safe!r}"
        + (", allow=corosnap_fuzz.fuzz.SAFE_ALLOW" if inp.safe else "")
        + (", migrate=True" if migratable_data(inp.data) else "") + ")\n"
        f"_drive(obj, {inp.script})  # send/throw/close as the fuzzer did\n"
    )


# ---------------------------------------------------------------------------
# Minimizing
# ---------------------------------------------------------------------------


def minimize_input(pool: Pool, inp: Input, outcome: str, budget: int = 1500,
                   seconds: float = 180.0) -> Input:
    """Shrink ``inp`` while it keeps producing ``outcome``: tree first, then bytes
    (bytes only below 64 KB: a large input is a long chain or a big container, whose
    shape the tree pass already shows).  Stops after ``budget`` runs or ``seconds``."""
    tries = [0]
    deadline = time.monotonic() + seconds

    def still(data: bytes) -> bool:
        if tries[0] >= budget or time.monotonic() > deadline:
            return False
        tries[0] += 1
        cand = dataclasses.replace(inp, data=data)
        return pool.run_one(cand)[0] == outcome

    data = inp.data
    try:
        tree = unpack(data)
    except ValueError:
        tree = None
    if tree is not None:
        data = _minimize_tree(tree, still) or data
    if len(data) < 65536:
        data = _ddmin(data, still)
    return dataclasses.replace(inp, data=data, origin=inp.origin + "+minimized")


def _minimize_tree(tree: Any, still: Callable[[bytes], bool]) -> bytes | None:
    best = pack(tree)
    changed = True
    while changed:
        changed = False
        for c, k in list(reversed(nodes(tree, limit=600))):
            if type(c) is list and (c is tree and k == 0):
                continue
            try:
                orig = c[k]
            except (IndexError, KeyError):
                continue
            candidates: list[Any] = []
            if type(orig) in (list, dict) and orig:
                candidates += [[], {}, None, 0]
                if type(orig) is list:
                    candidates += [x for x in orig[:4] if type(x) in (list, dict)]
            elif orig not in (None, 0):
                candidates += [None, 0]
            for cand in candidates:
                c[k] = cand
                try:
                    data = pack(tree)
                except Exception:  # noqa: BLE001
                    continue
                if len(data) < len(best) and still(data):
                    best = data
                    changed = True
                    break
            else:
                c[k] = orig
                # try deleting a list element outright
                if type(c) is list:
                    del c[k]
                    try:
                        data = pack(tree)
                        if len(data) < len(best) and still(data):
                            best = data
                            changed = True
                            continue
                    except Exception:  # noqa: BLE001, S110
                        pass
                    c.insert(k, orig)
    return best


def _ddmin(data: bytes, still: Callable[[bytes], bool]) -> bytes:
    n = 2
    while len(data) >= 2:
        chunk = max(1, len(data) // n)
        reduced = False
        for i in range(0, len(data), chunk):
            cand = data[:i] + data[i + chunk:]
            if cand and still(cand):
                data = cand
                n = max(n - 1, 2)
                reduced = True
                break
        if not reduced:
            if chunk == 1:
                break
            n = min(len(data), n * 2)
    return data


# ---------------------------------------------------------------------------
# Hypothesis: blob-shaped trees for property tests
# ---------------------------------------------------------------------------


def blob_strategy(corpus: Corpus | None = None) -> Any:
    """A hypothesis strategy of blob-shaped msgpack documents (bytes): a real code
    reference, a position that is usually a resume point of it, and slots drawn from
    a recursive strategy of msgpack values, exts and tagged arrays."""
    from hypothesis import strategies as st

    corpus = corpus or get_corpus()
    scalars = st.one_of(
        st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1),
        st.floats(allow_nan=True), st.text(max_size=8), st.binary(max_size=8),
        st.just(NONE_EXT),
        st.builds(lambda i: ref(i), st.integers(0, 40)),
        st.builds(lambda b: ExtType(EXT_BIGINT, b), st.binary(max_size=16)),
        st.builds(lambda i: ExtType(EXT_WELLKNOWN, bytes([i])), st.integers(0, 30)),
        st.sampled_from([[tag(T_GLOBAL), m, q] for m, q in SAFE_GLOBALS]),
    )

    def extend(children: Any) -> Any:
        return st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(st.text(max_size=3), children, max_size=3),
            st.builds(lambda k, xs: [tag(k), *xs],
                      st.sampled_from([T_TUPLE, T_SET, T_FROZENSET, T_DICT, T_CELL, T_RANGE,
                                       T_RANGEITER, T_SEQITER, T_SHAPED, T_REDUCE, T_NEWOBJ]),
                      st.lists(children, max_size=4)),
        )

    values = st.recursive(scalars, extend, max_leaves=12)

    @st.composite
    def frame(draw: Any) -> bytes:
        fields = draw(st.sampled_from(corpus.coderefs))
        m, q, fp = fields
        qual, path = (q[0], tuple(q[1:])) if type(q) is list else (q, ())
        code = lookup_code(m, qual, path)
        info = code_info(code) if code is not None else None
        if info is not None:
            pos = draw(st.one_of(st.sampled_from(sorted(info.resume)),
                                 st.integers(-2, 300)))
            n = info.nlocalsplus + info.resume.get(pos, 0) + draw(st.sampled_from([0, 0, 0, 1,
                                                                                   -1]))
        else:
            pos, n = draw(st.integers(-2, 300)), draw(st.integers(0, 6))
        slots = draw(st.lists(values, min_size=max(n, 0), max_size=max(n, 0)))
        tree = [HEADER, m, list(q) if type(q) is list else q, fp, pos, *slots]
        return pack(tree)

    return frame()


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def _reexec_with_fixed_hash_seed() -> None:
    """Input generation never depends on str hashing, but restores and the zoo
    do; a fixed hash seed makes a whole campaign repeatable."""
    if os.environ.get("PYTHONHASHSEED") is None:
        tools = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # tools/
        path = os.environ.get("PYTHONPATH")
        env = dict(os.environ, PYTHONHASHSEED="0",
                   PYTHONPATH=tools + (os.pathsep + path if path else ""))
        os.execve(sys.executable, [sys.executable, "-m", "corosnap_fuzz", *sys.argv[1:]], env)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m corosnap_fuzz", description=__doc__.split(
        "\n\n")[0])
    p.add_argument("--inputs", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--start", type=int, default=0, help="first input index")
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--timeout", type=float, default=10.0,
                   help="seconds an input may take, plus as much again per MB of blob")
    p.add_argument("--memory-mb", type=int, default=1024,
                   help="address space a child may add (RLIMIT_AS); 0: no limit")
    p.add_argument("--report", help="write the JSON report here")
    p.add_argument("--crash-dir", default="fuzz-findings",
                   help="where failing inputs are saved (default: fuzz-findings)")
    p.add_argument("--minimize", action="store_true", help="shrink each failing input")
    p.add_argument("--replay", help="run one saved input (.json or .bin) and print its outcome")
    p.add_argument("--engines", default="",
                   help="comma-separated engines to load every input through, each in "
                        f"fresh worker interpreters ({', '.join(ENGINES)}); two or more "
                        "must agree on every input (default: this interpreter's, forked)")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    if args.replay:
        return _replay(args)
    engines = tuple(e for e in args.engines.split(",") if e)
    unknown = [e for e in engines if e not in ENGINES]
    if unknown:
        p.error(f"unknown engine(s) {unknown}; known: {', '.join(ENGINES)}")
    report = run_campaign(args.inputs, args.seed, args.jobs, args.timeout, args.memory_mb,
                          args.crash_dir, args.minimize, progress=not args.quiet,
                          start=args.start, engines=engines)
    print(report.table())
    if report.findings:
        print(f"\nfailing inputs saved in {args.crash_dir}/")
    if args.report:
        with open(args.report, "w") as fh:
            json.dump(report.to_json(), fh, indent=1)
    return 1 if report.failures else 0


def _replay(args: Any) -> int:
    path = args.replay
    if path.endswith(".json"):
        with open(path) as fh:
            d = json.load(fh)
        inp = Input.from_json(d.get("minimized") or d["input"])
    else:
        with open(path, "rb") as fb:
            inp = Input(fb.read(), False, 0, path)
    with tempfile.TemporaryDirectory(prefix="corosnap-fuzz-") as workdir:
        ctx = Context(get_corpus(), 0, args.timeout, max(30.0, args.timeout * 3),
                      args.memory_mb, workdir)
        with Pool(ctx, 1) as pool:
            res = pool.run_one(inp)
            print(res[0], res[1], res[2][:3000])
            if args.minimize and res[0] in FAILURES:
                small = minimize_input(pool, inp, res[0])
                print(f"minimized to {len(small.data)} bytes:\n{repro_snippet(small, res[0])}")
    return 0


