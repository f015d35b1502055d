"""Reading a blob for inspection: every value's type and exact byte range.

What lives here: ``Walker``, which walks an unsigned blob's bytes (after
``msgpack.unpackb`` has validated them) in the decoder's order and records
frames, slots, the objects registered in the memo (so back-references can be
followed to what they share) and a node for every value worth naming.  What
must never happen here: decoding a value into a live object.  Nothing is
imported, called, unpickled or restored; a pickled payload is *read* with
``pickletools.genops`` (which parses opcodes and executes none) to name the
class it holds.

Theory of operation.  ``docs/format.md`` is the contract; the decoder
(``codec/_decoder.py``, ``snapshot/_restore.py``) is the reference for the
order of side effects, which the walker must repeat exactly: the string
table (module names, qualnames, method names, appended on first occurrence),
the code table (one entry per full code reference), the memo (one entry per
registered object, each at the point the decoder registers it: before a
list's items, after a global's names, right after a frame's code reference)
and the dict shapes (every map of two or more str keys).  Each tag kind is
one line of ``TAGS``, a small layout language read by ``Walker.tagged``:

====  ==================================================================
``v``  one value                    ``a``  an array of values (not registered)
``s``  an interned string           ``c``  a code reference
``i``  a raw scalar, kept for the type namer
``^``  the object is registered in the memo here (done even when the
       trailing fields were dropped)
``*``  repeat the previous field to the end of the array
``F``  frame fields (the rest; after raw scalars only: an async generator's flags)
``S``  values of a shaped dict
====  ==================================================================

A tag kind not in the table is shown as ``unknown tag N``: its items are
walked as values (their bytes still add up), and since the walker cannot
know whether it registered in the memo, later back-references are marked
as approximate.  Ext types work the same way (``EXTS``).

Frames: a frame's fields are ``coderef, position, slots..., stack...``
(an async generator's frame is behind its tag and flags, also at the root:
``Walker.root``); how
many are slots is a property of the code, not stored in the blob.  When the
code is found (``_code.CodeFinder``), the slots get their names, kinds and
the stack its depth check; when it is not, fields are named ``#i`` with kind
``unknown``, and the ``yield from`` / ``await`` sub-frame is recognised by its
place (the last field, or the one before a trailing nil from CPython 3.15 on)
and its shape (a code reference then a position).

Byte accounting: every frame's ``bytes`` is its whole msgpack extent; its
slots' extents and its handled exception are measured, and the rest is its
overhead (array header, tag, code reference, position).  So the parts add
up to the blob by construction, which the tests check on every blob of the
construct zoo.
"""

from __future__ import annotations

import pickletools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._errors import CorruptSnapshot
from ..bytecode import code_info
from ..bytecode._kinds import ANY, KIND_NAMES, NULLABLE, slot_rules
from ..codec._globals import WELLKNOWN
from ..codec._tags import (
    EXT_BIGINT,
    EXT_BUFFER,
    EXT_BYTEARRAY,
    EXT_COMPLEX,
    EXT_INTLIST,
    EXT_NONE,
    EXT_PICKLE,
    EXT_REF,
    EXT_SURROGATE_STR,
    EXT_TAG,
    EXT_WELLKNOWN,
    PICKLERS,
    SHAPE_MIN,
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
from . import _msgpack as mp
from ._code import CodeFinder, Found
from ._model import FrameInfo, Location, SlotInfo, ValueInfo

BIG_SCALAR = 64
"""Scalars (strings, bytes) at least this large get a node of their own, so
they can be named as large contributors; smaller ones inside containers are
counted in their container only."""

_INFLAGS_COROUTINE = 0x80  # inspect.CO_COROUTINE
_INFLAGS_GENERATOR = 0x20  # inspect.CO_GENERATOR
_INFLAGS_ITERABLE_COROUTINE = 0x100  # inspect.CO_ITERABLE_COROUTINE (types.coroutine)
_INFLAGS_ASYNC_GENERATOR = 0x200  # inspect.CO_ASYNC_GENERATOR


class Node:
    """One value of the blob: its byte range, type and place."""

    __slots__ = ("start", "end", "type", "summary", "parent", "label", "owner", "biggest",
                 "name", "ref", "memo", "transparent", "attrs", "frame")

    def __init__(self, start: int, type_: str, parent: Node | None, label: str,
                 owner: tuple[int, str] | None = None) -> None:
        self.start = start
        self.end = start
        self.type = type_
        self.summary = ""
        self.parent = parent
        self.label = label
        self.owner = owner  # (frame index, slot name) for a slot's value
        self.biggest = 0  # bytes of its largest child
        self.name: str | None = None  # qualified name of a global (for type names)
        self.ref: int | None = None  # memo index when a back-reference
        self.memo: int | None = None  # memo index when registered
        self.transparent = False  # its label is left out of paths (a reduce state)
        self.attrs = False  # a map whose keys read as attributes (a reduce state)
        self.frame: int | None = None  # the frame it holds (T_FRAME)

    @property
    def size(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class TagSpec:
    """How to read one tag kind (see the module docstring for ``layout``)."""

    type: str
    layout: str
    labels: tuple[str, ...] = ()
    """Path labels of the fields, in layout order (``{i}``: the index of an
    item under ``*`` or inside an ``a`` array)."""
    namer: Callable[[Walker, Node, list[Any]], None] | None = None
    """Sets the node's type and summary from the fields read."""


@dataclass(frozen=True)
class ExtSpec:
    """How to read one leaf ext type."""

    type: str
    memo: bool
    namer: Callable[[Walker, Node, bytes], None] | None = None


@dataclass
class CodeRec:
    """One entry of the blob's code table."""

    module: str
    qualname: str
    path: tuple[int, ...]
    fingerprint: int
    found: Found | None
    note: str

    @property
    def display(self) -> str:
        if self.found is not None:
            return self.found.code.co_qualname
        return self.qualname + "".join(f"<{i}>" for i in self.path)

    @property
    def kind(self) -> str | None:
        if self.found is None:
            return None
        flags = self.found.code.co_flags
        if flags & _INFLAGS_ASYNC_GENERATOR:
            return "async_generator"
        if flags & _INFLAGS_COROUTINE:
            return "coroutine"
        if flags & (_INFLAGS_GENERATOR | _INFLAGS_ITERABLE_COROUTINE):
            return "generator"
        return None


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _qualified(module: str, qualname: str) -> str:
    return qualname if module == "builtins" else f"{module}.{qualname}"


# -- type namers: (walker, node, fields) -> None ------------------------------
# ``fields`` holds, per layout field read: a Node, a raw scalar (``i``), a str
# (``s``), a CodeRec (``c``) or a list of Nodes (``a``).


def _items_summary(w: Walker, node: Node, fields: list[Any]) -> None:
    node.summary = f"{len(fields)} items"


def _pairs_summary(w: Walker, node: Node, fields: list[Any]) -> None:
    node.summary = f"{len(fields) // 2} items"


def _shaped_summary(w: Walker, node: Node, fields: list[Any]) -> None:
    node.summary = f"{max(len(fields) - 1, 0)} items"


def _global_name(w: Walker, node: Node, fields: list[Any]) -> None:
    if len(fields) >= 2 and isinstance(fields[0], str) and isinstance(fields[1], str):
        node.name = _qualified(fields[0], fields[1])
        node.summary = node.name


def _module_name(w: Walker, node: Node, fields: list[Any]) -> None:
    if fields and isinstance(fields[0], str):
        node.name = node.summary = fields[0]


def _cell_summary(w: Walker, node: Node, fields: list[Any]) -> None:
    node.summary = f"holds {fields[0].type}" if fields and isinstance(fields[0], Node) \
        else "empty"


def _code_summary(prefix: str) -> Callable[[Walker, Node, list[Any]], None]:
    def namer(w: Walker, node: Node, fields: list[Any]) -> None:
        if fields and isinstance(fields[0], CodeRec):
            rec = fields[0]
            node.summary = f"{prefix}{rec.module}.{rec.display}"
            if rec.kind and node.type == "generator":
                node.type = rec.kind
    return namer


_ITERATOR_MAKERS = {"iter": "{}_iterator", "reversed": "{}_reverseiterator"}
_RECONSTRUCTORS = frozenset({"copyreg._reconstructor", "copyreg.__newobj__",
                             "copyreg.__newobj_ex__"})


def _reduce_type(w: Walker, node: Node, fields: list[Any]) -> None:
    callable_ = fields[0] if fields and isinstance(fields[0], Node) else None
    name = callable_.name if callable_ is not None else None
    args = fields[1] if len(fields) > 1 and isinstance(fields[1], list) else []
    if name in _RECONSTRUCTORS and args and args[0].name:
        name = args[0].name
    elif name in _ITERATOR_MAKERS:
        # iter(x) / reversed(x): the reduce of a builtin iterator over x.
        name = _ITERATOR_MAKERS[name].format(args[0].type if args else "?")
        node.summary = "at an index"
    node.type = name or "object"
    node.name = None


def _exception_type(w: Walker, node: Node, fields: list[Any]) -> None:
    if fields and isinstance(fields[0], Node):
        node.type = fields[0].type
        node.summary = "exception with its chain"


def _seqiter_type(w: Walker, node: Node, fields: list[Any]) -> None:
    seq = fields[0] if fields else None
    if isinstance(seq, Node):
        node.type = f"{seq.type}_iterator"
    elif isinstance(seq, str):
        node.type = "str_ascii_iterator" if seq.isascii() else "str_iterator"
    elif isinstance(seq, bytes):
        node.type = "bytes_iterator"
    if len(fields) > 1 and type(fields[1]) is int:
        node.summary = f"at {fields[1]}"


_DICT_KINDS = ("keys", "values", "items")


def _dictiter_type(w: Walker, node: Node, fields: list[Any]) -> None:
    kind = fields[1] if len(fields) > 1 else None
    if type(kind) is int and 0 <= kind < 3:
        node.type = f"dict_{_DICT_KINDS[kind][:-1]}iterator"
    if len(fields) > 2 and type(fields[2]) is int:
        node.summary = f"at {fields[2]}"


def _dictview_type(w: Walker, node: Node, fields: list[Any]) -> None:
    kind = fields[1] if len(fields) > 1 else None
    if type(kind) is int and 0 <= kind < 3:
        node.type = f"dict_{_DICT_KINDS[kind]}"


def _range_summary(w: Walker, node: Node, fields: list[Any]) -> None:
    values = [w.scalar_of(f) for f in fields]
    if all(type(v) is int for v in values):
        node.summary = f"range({', '.join(map(str, values))})"


def _rangeiter_summary(w: Walker, node: Node, fields: list[Any]) -> None:
    values = [w.scalar_of(f) for f in fields]
    if values and all(type(v) is int for v in values):
        node.summary = f"at {values[-1]} of range({', '.join(map(str, values[:-1]))})"


_AG_FLAGS = {0: "", 1: "closed", 2: "in flight", 3: "closing, in flight"}
_AW_STATES = {0: "not started", 1: "in flight", 2: "finished"}


def _asyncgen_summary(w: Walker, node: Node, fields: list[Any]) -> None:
    flags = _AG_FLAGS.get(fields[0]) if fields and type(fields[0]) is int else None
    if flags is None:
        w.warn(f"{w.where(node)}: malformed async generator flags")
    elif flags:
        node.summary += f", {flags}"


def _awaitable_summary(w: Walker, node: Node, fields: list[Any]) -> None:
    state = _AW_STATES.get(fields[1]) if len(fields) > 1 and type(fields[1]) is int else None
    target = fields[0] if fields and isinstance(fields[0], Node) else None
    of = f"of {target.summary or target.type}" if target is not None else ""
    node.summary = ", ".join(x for x in (state, of) if x)


def _method_summary(w: Walker, node: Node, fields: list[Any]) -> None:
    if len(fields) >= 2 and isinstance(fields[0], Node) and isinstance(fields[1], str):
        owner = fields[0].name or fields[0].type
        node.summary = f"{owner}.{fields[1]}"


TAGS: dict[int, TagSpec] = {
    T_TUPLE: TagSpec("tuple", "v*", ("[{i}]",), _items_summary),
    T_SET: TagSpec("set", "^v*", ("{{{i}}}",), _items_summary),
    T_FROZENSET: TagSpec("frozenset", "v*", ("{{{i}}}",), _items_summary),
    T_DICT: TagSpec("dict", "^v*", ("<item {i}>",), _pairs_summary),
    T_FLATLIST: TagSpec("list", "^v*", ("[{i}]",), _items_summary),
    T_GLOBAL: TagSpec("global", "ss^", (), _global_name),
    T_MODULE: TagSpec("module", "s^", (), _module_name),
    T_CELL: TagSpec("cell", "^v", ("<cell>",), _cell_summary),
    T_FUNCTION: TagSpec("function", "caavi v^", ("", "<closure>[{i}]", "<defaults>[{i}]",
                                                 "<kwdefaults>", "", "<dict>"),
                        _code_summary("")),
    T_FRAME: TagSpec("generator", "F"),
    T_REDUCE: TagSpec("object", "va^vaa", ("<callable>", "<args>[{i}]", "<state>",
                                           "<listitems>[{i}]", "<dictitems>[{i}]"), _reduce_type),
    T_NEWOBJ: TagSpec("object", "va^vaa", ("<class>", "<args>[{i}]", "<state>",
                                           "<listitems>[{i}]", "<dictitems>[{i}]"), _reduce_type),
    T_RANGE: TagSpec("range", "v*", ("<{i}>",), _range_summary),
    T_RANGEITER: TagSpec("range_iterator", "v*^", ("<{i}>",), _rangeiter_summary),
    T_SEQITER: TagSpec("iterator", "vi^", ("<seq>",), _seqiter_type),
    T_SHAPED: TagSpec("dict", "i^S", (), _shaped_summary),
    T_DONE: TagSpec("generator", "c^", (), _code_summary("finished ")),
    T_EXCEPTION: TagSpec("exception", "vvvi", ("", "<cause>", "<context>"), _exception_type),
    T_DICTITER: TagSpec("dict_iterator", "vii^", ("<dict>",), _dictiter_type),
    T_DICTVIEW: TagSpec("dict_view", "vi^", ("<dict>",), _dictview_type),
    T_METHOD: TagSpec("method", "vs^", ("<self>",), _method_summary),
    T_ASYNCGEN: TagSpec("async_generator", "iF", (), _asyncgen_summary),
    T_ASEND: TagSpec("async_generator_asend", "viv*^", ("<agen>", "", "<value>"),
                     _awaitable_summary),
    T_ATHROW: TagSpec("async_generator_athrow", "viv*^", ("<agen>", "", "<args>[{i}]"),
                      _awaitable_summary),
    T_CORO_WRAPPER: TagSpec("coroutine_wrapper", "v^", ("<coroutine>",), _awaitable_summary),
    T_ANEXT: TagSpec("anext_awaitable", "vv^", ("<awaitable>", "<default>"), _awaitable_summary),
}
"""Tag kinds, one line each (docs/format.md section 3 has the table)."""


def _iterator_summary(w: Walker, node: Node, fields: list[Any]) -> None:
    if not fields:
        node.summary = "exhausted"


def _count_summary(w: Walker, node: Node, fields: list[Any]) -> None:
    values = [w.scalar_of(f) for f in fields]
    if len(values) == 1:
        node.summary = f"at {values[0]!r}"
    elif len(values) == 2:
        node.summary = f"at {values[0]!r}, step {values[1]!r}"


def _tee_data_summary(w: Walker, node: Node, fields: list[Any]) -> None:
    node.summary = f"{max(len(fields) - 2, 0)} values buffered"


# Builtin iterators (tags 64-89): registered before their fields; an
# exhausted one is its tag alone.  (kind: type, layout, labels)
_ITERATOR_SPECS: dict[int, tuple[str, str, tuple[str, ...]]] = {
    64: ("itertools.count", "^vv", ("<count>", "<step>")),
    65: ("itertools.repeat", "^vv", ("<element>", "<times>")),
    66: ("itertools.cycle", "^vvvv", ("<saved>", "<index>", "<it>", "<first pass>")),
    67: ("itertools.islice", "^vvvvv", ("<it>", "<next>", "<stop>", "<step>", "<count>")),
    68: ("itertools.chain", "^vv", ("<source>", "<active>")),
    69: ("itertools.zip_longest", "^vv*", ("<fillvalue>", "<it {i}>")),
    70: ("itertools.accumulate", "^vvvv", ("<it>", "<initial>", "<func>", "<total>")),
    71: ("itertools.pairwise", "^vv", ("<it>", "<old>")),
    72: ("itertools.batched", "^vvv", ("<it>", "<n>", "<strict>")),
    73: ("itertools.compress", "^vv", ("<data>", "<selectors>")),
    74: ("itertools.dropwhile", "^vvv", ("<func>", "<it>", "<done>")),
    75: ("itertools.takewhile", "^vvv", ("<func>", "<it>", "<done>")),
    76: ("itertools.filterfalse", "^vv", ("<func>", "<it>")),
    77: ("itertools.starmap", "^vv", ("<func>", "<it>")),
    78: ("itertools._tee", "^vv", ("<buffer>", "<index>")),
    79: ("itertools._tee_dataobject", "^v*", ("<{i}>",)),
    80: ("itertools.groupby", "^vvvvv", ("<it>", "<key>", "<target>", "<currkey>",
                                       "<currvalue>")),
    81: ("itertools._grouper", "^vvv", ("<groupby>", "<target>", "<current>")),
    82: ("itertools.product", "^vv*", ("<pools>", "<index {i}>")),
    83: ("itertools.permutations", "^vvv*", ("<pool>", "<r>", "<index {i}>")),
    84: ("itertools.combinations", "^vvv*", ("<pool>", "<r>", "<index {i}>")),
    85: ("itertools.combinations_with_replacement", "^vvv*", ("<pool>", "<r>", "<index {i}>")),
    86: ("map", "^vv*", ("<func>", "<it {i}>")),
    87: ("filter", "^vv", ("<func>", "<it>")),
    88: ("reversed", "^vv", ("<sequence>", "<index>")),
    89: ("callable_iterator", "^vv", ("<callable>", "<sentinel>")),
}
TAGS.update({kind: TagSpec(name, layout, labels, _count_summary if kind == 64 else
                           _tee_data_summary if kind == 79 else _iterator_summary)
             for kind, (name, layout, labels) in _ITERATOR_SPECS.items()})


# -- leaf exts -----------------------------------------------------------------


def _bigint_summary(w: Walker, node: Node, data: bytes) -> None:
    if len(data) <= 16:
        node.summary = str(int.from_bytes(data, "little", signed=True))
    else:
        node.summary = f"{len(data) * 8}-bit int"


def _intlist_summary(w: Walker, node: Node, data: bytes) -> None:
    width = data[0] if data else 0
    if width in (1, 2, 4, 8) and (len(data) - 1) % width == 0:
        node.summary = f"{(len(data) - 1) // width:,} ints, {width} bytes each"
    else:
        w.warn(f"{w.where(node)}: malformed packed int list")


def _bytearray_summary(w: Walker, node: Node, data: bytes) -> None:
    node.summary = f"{len(data):,} bytes"


_BUFFER_TYPES = ("bytes", "bytearray", "memoryview", "memoryview")


def _buffer_summary(w: Walker, node: Node, data: bytes) -> None:
    """EXT_BUFFER: in band (kind | 0x80, then the data) or out of band (kind, index)."""
    kind = data[0] if data else 0xFF
    if 0x80 <= kind <= 0x83:
        node.type = _BUFFER_TYPES[kind - 0x80]
        node.summary = f"{len(data) - 1:,} bytes" + (" (read-only)" if kind == 0x82 else "")
    elif kind <= 3 and len(data) in (2, 3, 5):
        node.type = _BUFFER_TYPES[kind]
        node.summary = f"out-of-band buffer {int.from_bytes(data[1:], 'big')}"
    else:
        w.warn(f"{w.where(node)}: malformed buffer reference")


def _wellknown_name(w: Walker, node: Node, data: bytes) -> None:
    if len(data) == 1 and data[0] < len(WELLKNOWN):
        obj = WELLKNOWN[data[0]]
        node.name = _qualified(obj.__module__, obj.__qualname__)
        node.type = type(obj).__name__
        node.summary = node.name
    else:
        w.warn(f"{w.where(node)}: unknown well-known global")


def _pickled_type(w: Walker, node: Node, data: bytes) -> None:
    pickler = PICKLERS.get(data[0]) if data else None
    if pickler is None:
        w.warn(f"{w.where(node)}: pickled value with an unknown pickler id")
        pickler = "unknown pickler"
    w.picklers[pickler] = w.picklers.get(pickler, 0) + 1
    node.type = pickled_class(data[1:]) or "object"
    node.summary = f"pickled by {pickler}"


_PICKLE_HELPERS = ("copyreg", "cloudpickle", "dill", "_codecs", "builtins.getattr")


def pickled_class(stream: bytes) -> str | None:
    """The class a pickle stream rebuilds, read from its opcodes (nothing is
    executed): the first global it names that is not a pickler's helper.

    Only strings are followed (pushed, memoised, fetched back), which is what
    ``STACK_GLOBAL`` takes its module and name from."""
    pushed: list[Any] = []
    memo: dict[int, Any] = {}
    first: str | None = None
    try:
        for count, (op, arg, _pos) in enumerate(pickletools.genops(stream)):
            if count > 512:
                break
            name = op.name
            if name in ("GLOBAL", "INST"):
                module, _, qual = str(arg).partition(" ")
            elif name == "STACK_GLOBAL":
                if len(pushed) < 2 or not all(isinstance(x, str) for x in pushed[-2:]):
                    continue
                module, qual = pushed[-2], pushed[-1]
            else:
                if name == "MEMOIZE":
                    memo[len(memo)] = pushed[-1] if pushed else None
                elif name in ("PUT", "BINPUT", "LONG_BINPUT") and type(arg) is int:
                    memo[arg] = pushed[-1] if pushed else None
                elif name in ("GET", "BINGET", "LONG_BINGET") and type(arg) is int:
                    pushed.append(memo.get(arg))
                elif "UNICODE" in name:
                    pushed.append(arg)
                elif op.stack_after:
                    pushed.append(None)
                continue
            pushed.append(None)
            full = _qualified(module, qual)
            if not full.startswith(_PICKLE_HELPERS):
                return full
            first = first or full
            for helper, shown in _PICKLE_HELPER_TYPES.items():
                if helper in full:
                    return shown
    except Exception:  # noqa: BLE001 - a damaged stream: say what was read so far
        pass
    return first


_PICKLE_HELPER_TYPES = {"_make_function": "function", "_make_skeleton_class": "type",
                        "_make_skeleton_enum": "enum type", "_create_function": "function",
                        "_create_type": "type", "_make_cell": "cell"}


EXTS: dict[int, ExtSpec] = {
    EXT_BIGINT: ExtSpec("int", False, _bigint_summary),
    EXT_COMPLEX: ExtSpec("complex", False),
    EXT_BYTEARRAY: ExtSpec("bytearray", True, _bytearray_summary),
    EXT_WELLKNOWN: ExtSpec("global", False, _wellknown_name),
    EXT_PICKLE: ExtSpec("object", True, _pickled_type),
    EXT_SURROGATE_STR: ExtSpec("str", False),
    EXT_INTLIST: ExtSpec("list", True, _intlist_summary),
    EXT_BUFFER: ExtSpec("buffer", True, _buffer_summary),
}
"""Leaf ext types, one line each; EXT_REF, EXT_TAG and EXT_NONE are read by
the walker itself."""


# -- the walker ------------------------------------------------------------------


class Walker:
    """Walks one unsigned blob (see the module docstring)."""

    def __init__(self, buf: bytes, minor: int, finder: CodeFinder) -> None:
        self.buf = buf
        self.minor = minor
        self.finder = finder
        # 3.15 keeps a NULL-or-index slot above the delegated-to iterator.
        self.delegate = -2 if minor >= 15 else -1
        self.strings: list[str] = []
        self.codes: list[CodeRec] = []
        self.memo: list[Node] = []
        self.shapes: list[tuple[str, ...]] = []
        self.frames: list[FrameInfo] = []
        self.nodes: list[Node] = []  # value nodes, for the largest contributors
        self.refs: dict[int, list[Node]] = {}
        self.picklers: dict[str, int] = {}
        self.warnings: list[str] = []
        self.notes: dict[str, str] = {}  # code -> why it was not found
        self.approximate = False  # an unknown tag or ext: memo indexes may drift

    # -- helpers -------------------------------------------------------------
    def warn(self, message: str) -> None:
        if len(self.warnings) < 100:
            self.warnings.append(message)
        elif len(self.warnings) == 100:
            self.warnings.append("(more warnings left out)")

    def location(self, node: Node) -> Location | None:
        labels = []
        n: Node | None = node
        while n is not None and n.owner is None:
            # A reduce state is left out of its items' paths: ``obj.attr``.
            if not n.transparent or n is node:
                labels.append(n.label)
            n = n.parent
        if n is None or n.owner is None:
            return None
        return Location(n.owner[0], n.owner[1], "".join(reversed(labels)))

    def where(self, node: Node) -> str:
        loc = self.location(node)
        if loc is None:
            return "the root frame"
        f = self.frames[loc.frame]
        return f"frame #{loc.frame} {f.module}.{f.qualname}, {loc.slot}{loc.path}"

    def scalar_of(self, field: Any) -> Any:
        """The raw value a layout field read, when it was a scalar."""
        if isinstance(field, Node):
            return None
        return field

    def register(self, node: Node) -> None:
        node.memo = len(self.memo)
        self.memo.append(node)

    def string(self, pos: int, what: str) -> tuple[str, int]:
        family, arg, start, end = mp.head(self.buf, pos)
        if family == mp.STR:
            s = mp.text(self.buf, start, end)
            self.strings.append(s)
            return s, end
        if family == mp.INT and 0 <= arg < len(self.strings):
            return self.strings[arg], end
        raise CorruptSnapshot(f"{what}: bad string reference at byte {pos}")

    # -- code references ------------------------------------------------------
    def coderef(self, pos: int, count: int, what: str) -> tuple[CodeRec, int, int]:
        """Read a code reference at ``pos`` (``count`` fields left)."""
        family, arg, _, end = mp.head(self.buf, pos)
        if family == mp.INT and arg < 0:
            k = -1 - arg
            if k >= len(self.codes):
                raise CorruptSnapshot(f"{what}: code reference {k} points past the codes "
                                      "read so far")
            return self.codes[k], end, 1
        if count < 3:
            raise CorruptSnapshot(f"{what}: truncated code reference")
        module, pos = self.string(pos, what)
        family, arg, start, _ = mp.head(self.buf, pos)
        path: list[int] = []
        if family == mp.ARRAY:
            if arg < 1:
                raise CorruptSnapshot(f"{what}: malformed nested code path")
            qualname, p = self.string(start, what)
            for _ in range(arg - 1):
                v, p = mp.scalar(self.buf, p)
                if type(v) is not int or not 0 <= v < 1 << 16:
                    raise CorruptSnapshot(f"{what}: malformed nested code path")
                path.append(v)
            pos = p
        else:
            qualname, pos = self.string(pos, what)
        fp, pos = mp.scalar(self.buf, pos)
        if type(fp) is not int:
            raise CorruptSnapshot(f"{what}: malformed code fingerprint")
        found, note = self.finder.find(module, qualname, tuple(path), fp)
        rec = CodeRec(module, qualname, tuple(path), fp, found, note)
        if found is None and note:
            self.notes.setdefault(f"{module}.{rec.display}", note)
        self.codes.append(rec)
        return rec, pos, 3

    def _looks_like_frame(self, pos: int) -> bool:
        """Without the code: is the array at ``pos`` shaped as frame fields
        (a code reference, then a position)?  Reads only; changes no table."""
        buf = self.buf
        family, count, p, _ = mp.head(buf, pos)
        if family != mp.ARRAY or count < 2:
            return False
        fam, arg, _, end = mp.head(buf, p)
        if fam == mp.INT and arg < 0:
            if -1 - arg >= len(self.codes):
                return False
            p = end
        else:
            if count < 4:
                return False
            for field in ("module", "qualname", "fingerprint"):
                fam, arg, _, _ = mp.head(buf, p)
                if field == "fingerprint":
                    ok = fam == mp.INT
                else:
                    ok = fam == mp.STR or (fam == mp.INT and 0 <= arg < len(self.strings) + 2)
                    ok = ok or (field == "qualname" and fam == mp.ARRAY and arg >= 1)
                if not ok:
                    return False
                p = mp.skip(buf, p)
        fam, arg, _, _ = mp.head(buf, p)
        return fam == mp.INT or (fam == mp.ARRAY and arg == 2)

    def _is_subframe(self, pos: int) -> bool:
        """An untagged, non-empty array: a delegate sub-frame (as restore tells)."""
        family, count, start, _ = mp.head(self.buf, pos)
        if family != mp.ARRAY or count == 0:
            return False
        fam, code, _, _ = mp.head(self.buf, start)
        return not (fam == mp.EXT and code == EXT_TAG)

    # -- frames ---------------------------------------------------------------
    def root(self, pos: int, count: int, holder: Node) -> int:
        """Walk the root frame's ``count`` fields at ``pos`` (after the
        header), behind its tag and flags when it is an async generator's.
        Returns the end."""
        family, code, start, end = mp.head(self.buf, pos)
        if count >= 2 and family == mp.EXT and code == EXT_TAG and end - start == 1:
            if self.buf[start] != T_ASYNCGEN:
                raise CorruptSnapshot(f"the root is a tag {self.buf[start]}, not a frame")
            fields: list[Any] = []
            pos, _ = self._field(holder, "i", end, "", fields, TAGS[T_ASYNCGEN], count - 1)
            pos, _ = self.frame(pos, count - 2, 0, holder, "root", None, None)
            _asyncgen_summary(self, holder, fields)
            return pos
        pos, _ = self.frame(pos, count, 0, holder, "root", None, None)
        return pos

    def frame(self, pos: int, count: int, start: int, holder: Node, via: str,
              parent: int | None, path: str | None) -> tuple[int, int]:
        """Walk frame fields at ``pos`` (``count`` of them; the frame's
        container starts at ``start``).  Returns (end, frame index)."""
        index = len(self.frames)
        depth = 0 if parent is None else self.frames[parent].depth + 1
        fr = FrameInfo(index=index, module="?", qualname="?", fingerprint="", offset=-1,
                       bytes=0, overhead_bytes=0, code_bytes=0, slots=[], parent=parent,
                       depth=depth, via=via, path=path)
        self.frames.append(fr)
        if parent is not None:
            self.frames[parent].children.append(index)
        what = f"frame #{index}"
        if count < 1:
            raise CorruptSnapshot(f"{what}: truncated (no code reference)")
        code_start = pos
        rec, pos, used = self.coderef(pos, count, what)
        count -= used
        fr.code_bytes = pos - code_start
        fr.module, fr.qualname = rec.module, rec.display
        fr.fingerprint = f"{rec.fingerprint & 0xFFFF_FFFF_FFFF_FFFF:016x}"
        fr.type = rec.kind
        fr.code_found = rec.found.how if rec.found is not None else None
        holder.type = rec.kind or "generator"
        holder.frame = index
        holder.summary = f"frame #{index}"
        self.register(holder)  # right after the code reference, as restore does
        what = f"frame #{index} {fr.module}.{fr.qualname}"
        if count < 1:
            raise CorruptSnapshot(f"{what}: no position")
        family, arg, inner, end = mp.head(self.buf, pos)
        exc_bytes = 0
        if family == mp.INT:
            fr.offset = arg
            pos = end
        elif family == mp.ARRAY and arg == 2:
            offset, p = mp.scalar(self.buf, inner)
            if type(offset) is not int:
                raise CorruptSnapshot(f"{what}: malformed position")
            fr.offset = offset
            end, node = self.value(p, None, "", owner=(index, "<handled exception>"),
                                   force=True)
            assert node is not None
            fr.exception = ValueInfo(node.type, end - p, node.summary)
            exc_bytes = end - p
            pos = end
        else:
            raise CorruptSnapshot(f"{what}: malformed position")
        count -= 1
        if rec.found is not None:
            lineno, text = rec.found.line(fr.offset)
            fr.line, fr.source = lineno, text
        pos = self._slots(fr, rec, pos, count, what)
        fr.bytes = pos - start
        fr.overhead_bytes = fr.bytes - exc_bytes - sum(s.bytes for s in fr.slots)
        holder.end = pos
        holder.biggest = max((s.bytes for s in fr.slots), default=0)
        return pos, index

    def _slots(self, fr: FrameInfo, rec: CodeRec, pos: int, m: int, what: str) -> int:
        names: tuple[str, ...] = ()
        cells: frozenset[int] = frozenset()
        roles: tuple[int, ...] = ()
        sub_at = -1
        n = -1
        if rec.found is not None:
            info = code_info(rec.found.code)
            names = info.slot_names
            cells = frozenset(info.cell_slots)
            n = len(names)
            if m < n:
                self.warn(f"{what}: {m} slots where its code has {n}")
                n = m
            depth = m - n
            expected = info.resume.get(fr.offset)
            if expected is None:
                self.warn(f"{what}: offset {fr.offset} is not a resume point of its code")
            elif expected != depth:
                self.warn(f"{what}: {depth} stack values at offset {fr.offset}, but its "
                          f"bytecode has {expected} there")
            else:
                try:
                    roles = slot_rules(rec.found.code).stack_kinds(fr.offset, depth)
                except Exception:  # noqa: BLE001 - roles are a nicety
                    roles = ()
                if fr.offset in info.delegating and depth + self.delegate >= 0:
                    sub_at = n + depth + self.delegate
        for j in range(m):
            if n >= 0:
                if j < n:
                    name, kind = names[j], "cell" if j in cells else "local"
                else:
                    name, kind = f"stack[{j - n}]", "stack"
            else:
                name, kind = f"#{j}", "unknown"
            role = None
            if n >= 0 and j >= n and j - n < len(roles):
                k = roles[j - n] & ~NULLABLE
                role = KIND_NAMES.get(k) if k != ANY else None
            is_sub = False
            if j == sub_at:
                is_sub = self._is_subframe(pos)
            elif n < 0 and j == m + self.delegate:
                # No code: the delegate's place, if the frame delegates at all.
                after_ok = self.delegate == -1 or mp.head(
                    self.buf, mp.skip(self.buf, pos))[0] == mp.NIL
                is_sub = after_ok and self._is_subframe(pos) and self._looks_like_frame(pos)
                if is_sub:
                    kind = "stack"
            if is_sub:
                _, count, inner, _ = mp.head(self.buf, pos)
                holder = Node(pos, "generator", None, "", owner=(fr.index, name))
                end, child = self.frame(inner, count, pos, holder, "delegate", fr.index, None)
                child_fr = self.frames[child]
                fr.slots.append(SlotInfo(name, kind, child_fr.type or "generator", end - pos,
                                         f"frame #{child}", role or "the delegated-to frame",
                                         frame=child))
            else:
                end, node = self.value(pos, None, "", owner=(fr.index, name), force=True,
                                       slot_kind=kind)
                assert node is not None
                fr.slots.append(SlotInfo(name, kind, node.type, end - pos, node.summary, role,
                                         shared=node.ref))
            pos = end
        return pos

    # -- values ---------------------------------------------------------------
    def value(self, pos: int, parent: Node | None, label: str,
              owner: tuple[int, str] | None = None, force: bool = False,
              slot_kind: str | None = None, attrs: bool = False) -> tuple[int, Node | None]:
        """Walk the value at ``pos``; returns (end, its node or None for a
        small scalar inside a container)."""
        buf = self.buf
        if not force and pos < len(buf):
            # Fast path: a small scalar inside a container needs no node (most
            # of a big blob's values: ints, short strings, nil, bools).
            b = buf[pos]
            if b <= 0x7F or b >= 0xE0 or b == 0xC0 or b == 0xC2 or b == 0xC3:
                end = pos + 1
            elif 0xA0 <= b <= 0xBF:
                end = pos + 1 + (b & 0x1F)
            else:
                end = 0
            if end and end <= len(buf):
                if parent is not None and end - pos > parent.biggest:
                    parent.biggest = end - pos
                return end, None
        family, arg, start, end = mp.head(buf, pos)
        node: Node | None = None
        if family == mp.ARRAY:
            node = Node(pos, "list", parent, label, owner)
            node.attrs = node.transparent = attrs
            end = self._array(node, arg, start)
        elif family == mp.MAP:
            node = Node(pos, "dict", parent, label, owner)
            node.attrs = node.transparent = attrs
            end = self._map(node, arg, start)
        elif family == mp.EXT:
            node = Node(pos, f"unknown ext {arg}", parent, label, owner)
            self._ext(node, arg, bytes(buf[start:end]), slot_kind)
        elif force or end - pos >= BIG_SCALAR:
            node = Node(pos, "", parent, label, owner)
            self._scalar(node, family, arg, start, end, slot_kind)
        if node is not None:
            node.end = end
            self.nodes.append(node)
        if parent is not None and end - pos > parent.biggest:
            parent.biggest = end - pos
        return end, node

    def _scalar(self, node: Node, family: int, arg: Any, start: int, end: int,
                slot_kind: str | None) -> None:
        if family == mp.NIL:
            if slot_kind is None:
                node.type, node.summary = "NoneType", "None"
            else:
                node.type = "<empty>"
                node.summary = "NULL" if slot_kind == "stack" else (
                    "unbound" if slot_kind in ("local", "cell") else "empty")
        elif family == mp.STR:
            node.type = "str"
            if end - start <= 64:
                node.summary = _short(repr(mp.text(self.buf, start, end)), 32)
            else:
                node.summary = f"{end - start} bytes of UTF-8"
        elif family == mp.BIN:
            node.type, node.summary = "bytes", f"{end - start:,} bytes"
        else:
            node.type = type(arg).__name__
            node.summary = _short(repr(arg), 32)

    def _ext(self, node: Node, code: int, data: bytes, slot_kind: str | None) -> None:
        if code == EXT_REF:
            index = int.from_bytes(data, "big")
            if not 0 < len(data) <= 4 or index >= len(self.memo):
                self.warn(f"{self.where(node)}: back-reference {index} points past the objects "
                          "read so far")
                node.type, node.summary = "back-reference", f"to #{index} (dangling)"
                return
            target = self.memo[index]
            node.type, node.name, node.ref = target.type, target.name, index
            node.summary = f"shared #{index}" + (" (approximate)" if self.approximate else "")
            self.refs.setdefault(index, []).append(node)
            return
        if code == EXT_NONE:
            node.type, node.summary = "NoneType", "None"
            if slot_kind is None:
                self.warn(f"{self.where(node)}: a frame-slot None marker outside a frame slot")
            return
        if code == EXT_TAG:
            self.warn(f"{self.where(node)}: a tag outside a tagged array")
            node.type = "stray tag"
            return
        spec = EXTS.get(code)
        if spec is None:
            self.approximate = True
            node.summary = f"{len(data):,} bytes"
            return
        node.type = spec.type
        if spec.memo:
            self.register(node)
        if spec.namer is not None:
            spec.namer(self, node, data)

    def _array(self, node: Node, count: int, pos: int) -> int:
        buf = self.buf
        if count:
            family, code, start, end = mp.head(buf, pos)
            if family == mp.EXT and code == EXT_TAG:
                kind = buf[start] if end - start == 1 else -1
                return self.tagged(node, kind, count - 1, end)
        self.register(node)  # a list: before its items
        value = self.value
        for i in range(count):
            pos, _ = value(pos, node, f"[{i}]")
        node.summary = f"{count:,} items"
        return pos

    def _map(self, node: Node, count: int, pos: int) -> int:
        self.register(node)  # before its values
        buf = self.buf
        keys: list[Any] = []
        value = self.value
        for _ in range(count):
            key, kend = mp.scalar(buf, pos)
            keys.append(key)
            pos, _ = value(kend, node, self.key_label(node, key, len(keys) - 1))
        if count >= SHAPE_MIN and all(type(k) is str for k in keys):
            self.shapes.append(tuple(keys))
        node.summary = f"{count:,} items"
        return pos

    def tagged(self, node: Node, kind: int, count: int, pos: int) -> int:
        """Walk a tagged array's ``count`` items at ``pos`` by its TagSpec."""
        spec = TAGS.get(kind)
        if spec is None:
            self.approximate = True
            node.type = f"unknown tag {kind}"
            for i in range(count):
                pos, _ = self.value(pos, node, f"<{i}>")
            node.summary = f"{count:,} items"
            return pos
        node.type = spec.type
        fields: list[Any] = []
        if spec.layout.endswith("F"):
            for code in spec.layout[:-1]:  # raw scalars first: an async generator's flags
                if count < 1:
                    raise CorruptSnapshot(f"{self.where(node)}: truncated {spec.type}")
                pos, used = self._field(node, code, pos, "", fields, spec, count)
                count -= used
            loc = self.location(node)
            parent = loc.frame if loc is not None else None
            path = f"{loc.slot}{loc.path}" if loc is not None else None
            pos, _ = self.frame(pos, count, node.start, node, "value", parent, path)
            if spec.namer is not None:
                spec.namer(self, node, fields)
            return pos
        left = count
        for code, star, label in _steps(spec):
            if code == "^":
                self.register(node)
                continue
            i = 0
            while left and (star or i == 0):
                pos, used = self._field(node, code, pos, label.replace("{i}", str(i)), fields,
                                        spec, left)
                left -= used
                i += 1
        if left > 0:
            self.warn(f"{self.where(node)}: {left} more fields than a {spec.type} has")
            for i in range(left):
                pos, _ = self.value(pos, node, f"<extra {i}>")
        if spec.namer is not None:
            spec.namer(self, node, fields)
        return pos

    def _field(self, node: Node, code: str, pos: int, label: str, fields: list[Any],
               spec: TagSpec, left: int) -> tuple[int, int]:
        """Read one layout field at ``pos``; returns (end, items used)."""
        buf = self.buf
        if code == "v":
            state = label == "<state>"  # a reduce state: its keys read as attributes
            end, child = self.value(pos, node, label, attrs=state)
            if child is None:
                fields.append(mp.scalar(buf, pos)[0])
            else:
                fields.append(child)
            return end, 1
        if code == "i":
            value, end = mp.scalar(buf, pos)
            fields.append(value)
            return end, 1
        if code == "s":
            s, end = self.string(pos, f"{self.where(node)}: {spec.type}")
            fields.append(s)
            return end, 1
        if code == "c":
            rec, end, used = self.coderef(pos, left, f"{self.where(node)}: {spec.type}")
            fields.append(rec)
            return end, used
        if code == "a":
            family, count, start, _ = mp.head(buf, pos)
            base = label.split("[")[0]
            if family == mp.NIL:  # a part that is not there (no closure, no defaults)
                fields.append([])
                return start, 1
            if family != mp.ARRAY:
                self.warn(f"{self.where(node)}: a {spec.type} field that should be an array")
                end, child = self.value(pos, node, base)
                fields.append([child] if child is not None else [])
                return end, 1
            items: list[Node] = []
            p = start
            for i in range(count):
                p, child = self.value(p, node, f"{base}[{i}]")
                if child is not None:
                    items.append(child)
            fields.append(items)
            return p, 1
        if code == "S":
            index = fields[-1] if fields else None
            keys = self.shapes[index] if type(index) is int and 0 <= index < len(
                self.shapes) else None
            if keys is None:
                self.warn(f"{self.where(node)}: dict shape reference points past the shapes "
                          "read so far")
            elif len(keys) != left:
                self.warn(f"{self.where(node)}: dict shape and values differ in length")
            p = pos
            for i in range(left):
                k = keys[i] if keys is not None and i < len(keys) else None
                p, child = self.value(p, node, self.key_label(node, k, i))
                fields.append(child)
            return p, left
        raise AssertionError(f"unknown layout code {code!r}")

    @staticmethod
    def key_label(node: Node, key: Any, i: int) -> str:
        """The path label of a dict item with key ``key`` (the i-th)."""
        if key is ...:
            return f"[{i}?]"
        if node.attrs and type(key) is str and key.isidentifier():
            return f".{key}"
        return f"[{_short(repr(key), 24)}]"


_STEPS: dict[str, tuple[tuple[str, bool, str], ...]] = {}


def _steps(spec: TagSpec) -> tuple[tuple[str, bool, str], ...]:
    """A layout as (code, starred, label) steps (cached per layout and labels)."""
    key = spec.layout + "\0" + "\0".join(spec.labels)
    steps = _STEPS.get(key)
    if steps is None:
        out = []
        labels = iter(spec.labels)
        layout = spec.layout.replace(" ", "")
        for i, code in enumerate(layout):
            if code == "*":
                continue
            star = i + 1 < len(layout) and layout[i + 1] == "*"
            label = "" if code == "^" else next(labels, "<{i}>")
            out.append((code, star, label))
        steps = _STEPS[key] = tuple(out)
    return steps


__all__ = ["EXTS", "TAGS", "CodeRec", "ExtSpec", "Node", "TagSpec", "Walker", "pickled_class"]

