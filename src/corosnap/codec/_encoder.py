"""Values -> msgpack-ready trees (blob format version 1).

Rules of this file:
- The encoder produces a tree of msgpack-native values and ``ExtType``s; the
  caller packs it once.  It never does I/O.
- Object identity is kept across the whole snapshot with a memo: every
  mutable or identity-bearing object gets the next index when it is *registered*,
  and a later occurrence becomes ``EXT_REF(index)``.  When an object is
  registered (before its children, after them, or between constructor
  arguments and state) is fixed per kind and mirrored exactly by the decoder;
  the table in docs/format.md lists it.  Tuples, frozensets, ranges and
  scalars are values: they are not memoised.
- Every memoised object is kept alive until the encoder is dropped, so an
  ``id()`` can never be reused by a temporary created during encoding.
- The memo is ``{id(obj): index}``, and so is ``codes`` (``{id(code): its
  index in the blob}``).  Here they are dicts; the C engine's Encoder holds
  C tables of addresses instead (``_ccodec.Memo``, codec/_memo.h), which this
  file's methods use through the same mapping operations (get, [], in, del,
  len, clear, items): nothing here may rely on more, not even on their order.
- Anything not handled natively goes through the reduce protocol (like
  pickle, with ``copyreg.dispatch_table`` first); if that needs something not
  importable by name, the object is handed whole to the fallback pickler.  A
  failed attempt is rolled back so memo indexes stay in step with the output.
- Buffers (large bytes and bytearrays, every memoryview) are not encoded on
  the spot: the encoder leaves an ``Offered`` placeholder and, once the whole
  graph is encoded (nothing can be rolled back any more), ``finish_buffers``
  asks the caller's ``buffer_callback`` about each, in order, as pickle does
  with protocol 5's ``PickleBuffer``: in band (the data goes in the blob) or
  out of band (the blob holds only its index).  Asking at the end means a
  rolled-back attempt never hands the caller a buffer the blob does not use.
"""

from __future__ import annotations

import copyreg
import gc
import struct
import sys
import types
from collections.abc import Callable, MutableMapping
from pickle import PickleBuffer
from typing import Any
from weakref import KeyedRef

from msgpack import ExtType

from .._errors import SnapshotError
from ..bytecode import CodeRef, describe, fingerprint
from ._globals import WELLKNOWN_INDEX, global_name, resolve_method
from ._picklers import dumps_with
from ._speedups import ACTIVE as _HELPERS
from ._tags import (
    BUFFER_BYTEARRAY,
    BUFFER_BYTES,
    BUFFER_IN_BAND,
    BUFFER_MIN_SIZE,
    BUFFER_VIEW_READONLY,
    BUFFER_VIEW_WRITABLE,
    EXT_BIGINT,
    EXT_BUFFER,
    EXT_BYTEARRAY,
    EXT_COMPLEX,
    EXT_INTLIST,
    EXT_PICKLE,
    EXT_REF,
    EXT_SURROGATE_STR,
    EXT_WELLKNOWN,
    INTLIST_MIN,
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
    TAGS,
)

_MIN_INT = -(2**63)
_MAX_INT = 2**64
_NONE_TYPE = type(None)
_PASS_FAST = frozenset({str, int, float, bool, _NONE_TYPE, bytes})
_PASS_STRICT = frozenset({float, bool, _NONE_TYPE, bytes})
# With a buffer_callback, bytes go through enc() (Encoder._bytes: a large one
# is offered as a buffer).
_PASS_FAST_BUFFERS = _PASS_FAST - {bytes}
_PASS_STRICT_BUFFERS = _PASS_STRICT - {bytes}
BY_REFERENCE: set[type] = {list, dict, set, bytearray}
"""Types whose module-level values are stored by reference (_iterators adds the
builtin iterators)."""
_MAP_KEYS = frozenset({str, int, float, bool, _NONE_TYPE, bytes})
_FLAT_MIN = 16
_NEWOBJ = copyreg.__newobj__  # type: ignore[attr-defined]
_REFS = [ExtType(EXT_REF, bytes([i])) for i in range(256)]
_WELLKNOWN_EXT = {i: ExtType(EXT_WELLKNOWN, bytes([i])) for i in set(WELLKNOWN_INDEX.values())}

_TAG_TUPLE = TAGS[T_TUPLE]
_TAG_FLAT = TAGS[T_FLATLIST]
_TAG_FRAME = TAGS[T_FRAME]
_TAG_SHAPED = TAGS[T_SHAPED]
_TAG_DONE = TAGS[T_DONE]
_TAG_RANGEITER = TAGS[T_RANGEITER]


def _same(x: Any) -> Any:
    return x

FrameHook = Callable[["Encoder", Any], list[Any]]
"""The snapshot layer's frame encoder (``FrameEncoder.hook``): a generator or
coroutine -> the fields of its frame."""


_module_indexes: dict[int, tuple[KeyedRef, int, ModuleIndex]] = {}
"""id(a module's globals) -> (weak reference to the module, its number of names
when indexed, the index).  Weak: a module that goes away takes its entry (and
the values the index holds) with it.  While the entry exists its module is
alive, and so is the module's dict (a module's __dict__ cannot be replaced):
the id cannot have been reused."""


def _drop_index(wr: KeyedRef) -> None:  # the module is being freed
    hit = _module_indexes.get(wr.key)
    if hit is not None and hit[0] is wr:
        del _module_indexes[wr.key]


class ModuleIndex(dict[int, tuple[str, str, Any]]):
    """A module's index (see _module_index), never changed once built.

    ``addresses`` is the C engine's: the index's ids as a C table
    (``_ccodec.Memo``), made on first use, so that asking whether a
    container is some module value needs no int object for its id.  The
    Python engine leaves it unset."""

    __slots__ = ("addresses",)


def _module_index(globals_: dict[str, Any], module: str) -> ModuleIndex:
    """id -> (module, name, value) for a module's top-level mutable values.

    Built once per module and rebuilt when its number of names changes, so
    dumps() does not scan a large module on every call.  A hit is checked
    against the live dict before use (a name may have been rebound since).
    Globals that are not an imported module's dict are indexed every time.
    An index is never changed once returned (the C engine keeps a table of
    its ids beside it).
    """
    hit = _module_indexes.get(id(globals_))
    if hit is not None and hit[1] == len(globals_):
        return hit[2]
    index = ModuleIndex()
    for name, value in list(globals_.items()):
        if (type(value) in BY_REFERENCE or _is_plain_instance(value)) and not \
                name.startswith("__"):
            index.setdefault(id(value), (module, name, value))
    owner = sys.modules.get(module)
    if getattr(owner, "__dict__", None) is globals_:
        try:
            wr = KeyedRef(owner, _drop_index, id(globals_))
        except TypeError:  # a module-like object without weak references: not cached
            return index
        _module_indexes[id(globals_)] = (wr, len(globals_), index)
    return index


class _Everything:
    """A container holding everything: more than one module index to look in."""

    __slots__ = ()

    def __contains__(self, item: object) -> bool:
        return True

    def __bool__(self) -> bool:
        return True


_EVERYTHING = _Everything()


def _is_plain_instance(value: Any) -> bool:
    """An instance of a user class (not a function, class, module or builtin)."""
    t = type(value)
    return (
        t.__module__ not in ("builtins", "types", "typing", "abc")
        and not isinstance(value, type | types.FunctionType | types.ModuleType
                           | types.BuiltinFunctionType)
        and hasattr(value, "__dict__")
    )


def type_name(obj: object) -> str:
    t = type(obj)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


NO_REDUCE: tuple[type, ...] = ()
"""Types whose subclasses must not go through the reduce protocol (the
itertools types; set by _iterators)."""


def _base_name(v: Any) -> str:
    """The NO_REDUCE type ``v`` is an instance of: by its type, or else by its
    ``__class__`` (an object posing as one, which isinstance() believes)."""
    for cls in (type(v), v.__class__):
        base = next((t for t in getattr(cls, "__mro__", ()) if t in NO_REDUCE), None)
        if base is not None:
            return f"{base.__module__}.{base.__qualname__}"
    return type_name(v)


def final_error(message: str) -> SnapshotError:
    """A SnapshotError no fallback can fix: the encoder does not hand the
    object, or any object holding it, to the fallback pickler."""
    err = SnapshotError(message)
    err.final = True  # type: ignore[attr-defined]
    return err


class Offered:
    """A buffer in the encoded tree, decided by ``Encoder.finish_buffers``:
    ``ext`` is then its EXT_BUFFER, which the packer's ``default`` writes
    (``pack_offered``)."""

    __slots__ = ("obj", "kind", "ext")

    def __init__(self, obj: bytes | bytearray | memoryview, kind: int) -> None:
        self.obj = obj
        self.kind = kind
        self.ext: ExtType | None = None


def pack_offered(obj: Any) -> ExtType:
    """msgpack ``default`` for a tree with buffers: a decided placeholder's ext."""
    if type(obj) is Offered and obj.ext is not None:
        return obj.ext
    if type(obj) is int:  # msgpack asks default about an int past 64 bits
        raise OverflowError("Integer value out of range")
    raise TypeError(f"cannot pack a {type(obj).__name__}")


class BufferDecisions:
    """What ``buffer_callback`` answered, kept across the two encodings of
    one ``dumps`` (a fast one and, if packing overflows, a strict one), so the
    callback is asked about each buffer once.  ``order``: the ids of the
    buffers sent out of band, in index order."""

    __slots__ = ("in_band", "order", "out")

    def __init__(self) -> None:
        self.in_band: dict[int, tuple[Any, bool]] = {}
        self.order: list[int] | None = None
        self.out: list[PickleBuffer] = []  # the last encoding's out-of-band buffers


def ref_ext(index: int) -> ExtType:
    if index < 256:
        return _REFS[index]
    return ExtType(EXT_REF, index.to_bytes(2 if index < 65536 else 4, "big"))


class Encoder:
    """One snapshot's worth of encoding state (memo, string and code tables)."""

    __slots__ = ("memo", "keep", "strings", "codes", "shapes", "busy", "pid", "frame_hook",
                 "passthrough", "strict", "globals_seen",
                 "global_values", "global_ids", "modules", "cstate", "pending_globals",
                 "buffer_callback", "offered", "filling", "after")

    def __init__(self, pid: int, frame_hook: FrameHook, strict: bool = False,
                 buffer_callback: Callable[[PickleBuffer], Any] | None = None) -> None:
        self.memo: MutableMapping[int, int] = {}  # the C engine's: a _ccodec.Memo
        self.keep: list[Any] = []
        self.strings: dict[str, int] = {}
        self.codes: MutableMapping[int, int] = {}  # the C engine's: a _ccodec.Memo
        self.shapes: dict[tuple[str, ...], int] = {}
        self.busy: set[int] = set()
        self.filling: set[int] = set()  # tee buffers whose values are being encoded
        self.pid = pid
        self.frame_hook = frame_hook
        # In strict mode ints and strs always go through enc() (range check,
        # UTF-8 check); the fast mode lets msgpack see them directly and is
        # retried strictly if packing overflows or meets a lone surrogate.
        self.strict = strict
        self.passthrough = _PASS_STRICT if strict else _PASS_FAST
        # Buffers met so far (see Offered); with a callback, large bytes are
        # among them, so they are no longer passed through.
        self.buffer_callback = buffer_callback
        self.offered: list[Offered] = []
        if buffer_callback is not None:
            self.passthrough = _PASS_STRICT_BUFFERS if strict else _PASS_FAST_BUFFERS
        # Mutable module-level values (a module's registry list, its LOG) are
        # stored by reference, so a restored frame shares them with the module
        # instead of holding a copy.  Indexed lazily per globals dict.
        self.globals_seen: set[int] = set()
        self.modules: list[str] = []
        self.pending_globals: list[dict[str, Any]] = []
        self.global_values: list[tuple[dict[str, Any], dict[int, tuple[str, str, Any]]]] = []
        # Whether a value may be some noted module's global: that module's
        # index (id -> (module, name, value)) when there is one, _EVERYTHING
        # when there are more, empty when none.
        self.global_ids: Any = {}
        # Checks that need the whole snapshot, added while encoding (an async
        # generator with an operation in flight needs its awaitable): finish().
        self.after: list[Callable[[Encoder], None]] = []
        # The snapshot layer's C engine's view of this encoding (a CaptureState
        # sharing these tables), or None; it refers back to the encoder, so the
        # snapshot layer drops it when the dumps is over.
        self.cstate: Any = None

    def clear(self) -> None:
        """Empty every table in place, so that this encoder can encode another
        snapshot (as ``pickle.Pickler.clear_memo``): the Snapshotter reuses
        its encoders instead of making one per ``dumps``.  ``pid``,
        ``frame_hook``, ``strict``, ``buffer_callback`` and ``passthrough``
        stay; so does ``cstate``, a view of these very tables.  ``global_ids``
        is replaced, not emptied: it may be a module's cached index."""
        for table in (self.memo, self.keep, self.strings, self.codes, self.shapes, self.busy,
                      self.filling, self.offered, self.globals_seen, self.modules,
                      self.pending_globals, self.global_values, self.after):
            table.clear()
        self.global_ids = {}

    # The scans of the engine this process runs (codec/_speedups.py).
    is_flat = staticmethod(_HELPERS.is_flat)
    pack_ints = staticmethod(_HELPERS.pack_ints)
    str_keys = staticmethod(_HELPERS.str_keys)

    def finish(self) -> None:
        """Run the checks that need the whole snapshot, once it is encoded."""
        for check in self.after:
            check(self)

    # -- tables -----------------------------------------------------------
    def register(self, obj: Any) -> None:
        self.memo[id(obj)] = len(self.keep)
        self.keep.append(obj)

    def string(self, text: str) -> str | int:
        """A string stored once per blob: the text the first time, its index later."""
        index = self.strings.get(text)
        if index is None:
            self.strings[text] = len(self.strings)
            return text
        return index

    def coderef(self, code: types.CodeType, ref: CodeRef, fp: int | None = None) -> list[Any]:
        """The fields naming ``code``: [module, qualname(+path), fingerprint] or [-1-k]."""
        k = self.codes.get(id(code))
        if k is not None:
            return [-1 - k]
        self.codes[id(code)] = len(self.codes)
        strings = self.strings
        module: str | int = ref.module
        index = strings.get(ref.module)
        if index is None:
            strings[ref.module] = len(strings)
        else:
            module = index
        qual: str | int = ref.qualname
        index = strings.get(ref.qualname)
        if index is None:
            strings[ref.qualname] = len(strings)
        else:
            qual = index
        return [module, [qual, *ref.path] if ref.path else qual,
                fingerprint(code) if fp is None else fp]

    def _checkpoint(self) -> tuple[int, int, int, int, int]:
        return (len(self.keep), len(self.strings), len(self.codes), len(self.shapes),
                len(self.offered))

    def _rollback(self, cp: tuple[int, int, int, int, int]) -> None:
        nkeep, nstrings, ncodes, nshapes, noffered = cp
        del self.offered[noffered:]
        memo = self.memo
        for obj in self.keep[nkeep:]:
            # an object may be in keep twice (an iterator met again inside its
            # own sequence is registered by both visits): its entry goes once
            if id(obj) in memo:
                del memo[id(obj)]
        del self.keep[nkeep:]
        for text in list(self.strings)[nstrings:]:
            del self.strings[text]
        for code_id, k in list(self.codes.items()):  # the C engine's codes keep no order
            if k >= ncodes:
                del self.codes[code_id]
        for shape in list(self.shapes)[nshapes:]:
            del self.shapes[shape]

    # -- dispatch ---------------------------------------------------------
    def enc(self, v: Any) -> Any:
        t = type(v)
        if t in self.passthrough:
            return v
        if t is int:
            if _MIN_INT <= v < _MAX_INT:
                return v
            return ExtType(EXT_BIGINT, v.to_bytes((v.bit_length() + 8) // 8, "little", signed=True))
        if t is str:  # strict mode only
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                return ExtType(EXT_SURROGATE_STR, v.encode("utf-8", "surrogatepass"))
            return v
        handler = _DISPATCH.get(t)
        if handler is not None:
            return handler(self, v)
        return self._other(v)

    def enc_items(self, items: Any) -> list[Any]:
        p = self.passthrough
        enc = self.enc
        return [x if type(x) in p else enc(x) for x in items]

    # The C engine's Encoder replaces enc and enc_items with their C twins
    # (codec/_ccodec.c), which hand back to these what they leave to Python:
    # the strict re-encoding (every int and str checked) and the kinds in
    # _DISPATCH past the containers (functions, classes, frames, buffers...).
    _enc_python = enc

    def _enc_other(self, v: Any) -> Any:
        handler = _DISPATCH.get(type(v))
        if handler is not None:
            return handler(self, v)
        return self._other(v)

    # -- module-level values ---------------------------------------------
    def note_globals(self, globals_: dict[str, Any]) -> None:
        """Note a frame's module; the index of its mutable values (see
        _module_index) is looked up only when a value may need it."""
        key = id(globals_)
        if key in self.globals_seen:
            return
        self.globals_seen.add(key)
        self.pending_globals.append(globals_)
        self.global_ids = _EVERYTHING  # resolved on first use

    def resolve_globals(self) -> None:
        """Look up the module indexes of the globals noted so far."""
        pending = self.pending_globals
        for globals_ in pending:
            module = globals_.get("__name__")
            if not isinstance(module, str):
                continue
            self.modules.append(module)
            index = _module_index(globals_, module)
            if index:
                self.global_values.append((globals_, index))
        pending.clear()
        # One module (the common case): its cached index itself answers "is
        # this some module's value?"; with more, every container asks
        # _module_value, which looks in each.
        n = len(self.global_values)
        self.global_ids = self.global_values[0][1] if n == 1 else _EVERYTHING if n else {}

    def _module_value(self, v: Any) -> Any:
        """A global reference if ``v`` is a mutable value of a frame's module."""
        if self.pending_globals:
            self.resolve_globals()
        for globals_, index in self.global_values:
            hit = index.get(id(v))
            # The index may be older than the module's last assignment: the
            # name must still be bound to this very object.
            if hit is not None and hit[2] is v and globals_.get(hit[1]) is v:
                self.register(v)
                return [TAGS[T_GLOBAL], self.string(hit[0]), self.string(hit[1])]
        return None

    # -- containers -------------------------------------------------------
    def _list(self, v: list[Any]) -> Any:
        i = self.memo.get(id(v))
        if i is not None:
            return ref_ext(i)
        if self.global_ids and id(v) in self.global_ids:
            out = self._module_value(v)
            if out is not None:
                return out
        self.register(v)
        if len(v) >= INTLIST_MIN:
            packed = self.pack_ints(v)
            if packed is not None:
                return ExtType(EXT_INTLIST, packed)
            if self.is_flat(v) and (self.buffer_callback is None or not any(
                    type(x) is bytes and len(x) >= BUFFER_MIN_SIZE for x in v)):
                return [_TAG_FLAT, *v]
        return self.enc_items(v)

    def _dict(self, v: dict[Any, Any]) -> Any:
        memo = self.memo
        i = memo.get(id(v))
        if i is not None:
            return ref_ext(i)
        if self.global_ids and id(v) in self.global_ids:
            out = self._module_value(v)
            if out is not None:
                return out
        memo[id(v)] = len(self.keep)
        self.keep.append(v)
        p = self.passthrough
        enc = self.enc
        keys = self.str_keys(v)
        if keys is not None and not self.strict:
            if len(keys) >= SHAPE_MIN:
                # Records repeat their keys: the first dict with these keys
                # defines a shape, later ones store only the shape index and
                # the values.
                shape = self.shapes.get(keys)
                if shape is not None:
                    return [_TAG_SHAPED, shape, *[x if type(x) in p else enc(x)
                                                  for x in v.values()]]
                self.shapes[keys] = len(self.shapes)
            return {k: (x if type(x) in p else enc(x)) for k, x in v.items()}
        scalar_keys = True
        str_keys = True
        strict = self.strict
        for k in v:
            tk = type(k)
            if strict and tk is str and not k.isascii():
                try:
                    k.encode("utf-8")
                except UnicodeEncodeError:
                    str_keys = scalar_keys = False
                    break
            if tk is not str:
                str_keys = False
                if tk not in _MAP_KEYS or (tk is int and not _MIN_INT <= k < _MAX_INT):
                    scalar_keys = False
                    break
        if str_keys and len(v) >= SHAPE_MIN:
            keys = tuple(v)
            shape = self.shapes.get(keys)
            if shape is not None:
                return [_TAG_SHAPED, shape, *[x if type(x) in p else enc(x) for x in v.values()]]
            self.shapes[keys] = len(self.shapes)
        if scalar_keys:
            return {k: (x if type(x) in p else enc(x)) for k, x in v.items()}
        pairs: list[Any] = [TAGS[T_DICT]]
        for k, x in v.items():
            pairs.append(enc(k))
            pairs.append(x if type(x) in p else enc(x))
        return pairs

    def _tuple(self, v: tuple[Any, ...]) -> Any:
        return [_TAG_TUPLE, *self.enc_items(v)]

    def _set(self, v: set[Any]) -> Any:
        i = self.memo.get(id(v))
        if i is not None:
            return ref_ext(i)
        if self.global_ids and id(v) in self.global_ids:
            out = self._module_value(v)
            if out is not None:
                return out
        self.register(v)
        return [TAGS[T_SET], *self.enc_items(v)]

    def _frozenset(self, v: frozenset[Any]) -> Any:
        return [TAGS[T_FROZENSET], *self.enc_items(v)]

    def _bytearray(self, v: bytearray) -> Any:
        i = self.memo.get(id(v))
        if i is not None:
            return ref_ext(i)
        if self.buffer_callback is not None and len(v) >= BUFFER_MIN_SIZE:
            return self._offer(v, BUFFER_BYTEARRAY)
        self.register(v)
        return ExtType(EXT_BYTEARRAY, bytes(v))

    # -- buffers ----------------------------------------------------------
    def _bytes(self, v: bytes) -> Any:
        """Only with a buffer_callback (bytes are passed through otherwise)."""
        if len(v) < BUFFER_MIN_SIZE:
            return v
        i = self.memo.get(id(v))
        if i is not None:
            return ref_ext(i)
        return self._offer(v, BUFFER_BYTES)

    def _memoryview(self, v: memoryview) -> Any:
        i = self.memo.get(id(v))
        if i is not None:
            return ref_ext(i)
        try:
            shape_ok = v.ndim == 1 and v.format == "B" and v.c_contiguous
        except ValueError:
            raise SnapshotError("a released memoryview cannot be captured") from None
        if not shape_ok:
            raise SnapshotError(
                f"a memoryview of format {v.format!r} and shape {v.shape}: only contiguous "
                "one-dimensional byte views are captured (make one with view.cast('B'))"
            )
        return self._offer(v, BUFFER_VIEW_READONLY if v.readonly else BUFFER_VIEW_WRITABLE)

    def _offer(self, v: bytes | bytearray | memoryview, kind: int) -> Offered:
        self.register(v)  # registered like a bytearray: when met
        out = Offered(v, kind)
        self.offered.append(out)
        return out

    def finish_buffers(self, decisions: BufferDecisions) -> list[PickleBuffer]:
        """Decide every buffer met (the whole graph is encoded by now), in
        the order met, and return those sent out of band, in index order.

        Without a buffer_callback every buffer stays in band.  With one, it
        is called with a ``PickleBuffer`` of each: a true result keeps the
        buffer in band, a false one (``list.append`` returns None) sends it
        out of band, as pickle's ``buffer_callback`` does.
        """
        self._check_views()
        callback = self.buffer_callback
        known = decisions.in_band
        out: list[PickleBuffer] = []
        order: list[int] = []
        for o in self.offered:
            obj = o.obj
            in_band = True
            if callback is not None:
                hit = known.get(id(obj))
                if hit is None or hit[0] is not obj:
                    in_band = bool(callback(PickleBuffer(obj)))
                    known[id(obj)] = (obj, in_band)
                else:
                    in_band = hit[1]
            if in_band:
                o.ext = ExtType(EXT_BUFFER, bytes([o.kind | BUFFER_IN_BAND]) + bytes(obj))
                continue
            k = len(out)
            out.append(PickleBuffer(obj))
            order.append(id(obj))
            o.ext = ExtType(EXT_BUFFER, bytes([o.kind]) + k.to_bytes(
                1 if k < 256 else 2 if k < 65536 else 4, "big"))
        decisions.out = out
        if decisions.order is None:
            decisions.order = order
        elif decisions.order != order:
            # A second (strict) encoding met the out-of-band buffers in
            # another order than the first: the caller already has them in
            # the first order, so the indexes would be wrong.
            raise SnapshotError("out-of-band buffers were met in a different order when the "
                                "snapshot was encoded again; please report this")
        return out

    def _check_views(self) -> None:
        """A memoryview comes back viewing a buffer of its own: refuse one
        whose memory the snapshot also holds in another object (the exporting
        bytearray, or another view of it), where writes through one would no
        longer show through the other."""
        exporters: dict[int, memoryview] = {}
        for o in self.offered:
            if o.kind < BUFFER_VIEW_READONLY:
                continue
            view = o.obj
            assert type(view) is memoryview
            exporter = view.obj
            if type(exporter) is bytes:
                continue  # immutable: nothing to see through the view
            if id(exporter) in self.memo or id(exporter) in exporters:
                what = (f"another memoryview of the same {type_name(exporter)}"
                        if id(exporter) in exporters
                        else f"a {type_name(exporter)} the snapshot also holds")
                raise SnapshotError(
                    f"a memoryview of {len(view)} bytes shares its memory with {what}: "
                    "restored, the two would no longer share it (capture only one of them, "
                    "or copy the view with bytes(view))"
                )
            exporters[id(exporter)] = view

    def _complex(self, v: complex) -> Any:
        return ExtType(EXT_COMPLEX, struct.pack("<dd", v.real, v.imag))

    def _range(self, v: range) -> Any:
        return [TAGS[T_RANGE], self.enc(v.start), self.enc(v.stop), self.enc(v.step)]

    # -- iterators --------------------------------------------------------
    def _rangeiter(self, v: Any) -> Any:
        memo = self.memo
        i = memo.get(id(v))
        if i is not None:
            return ref_ext(i)
        # 3.11 reduces to (iter, (the whole range,), items consumed); 3.12+
        # to (iter, (the remaining range,), None).  Both decode as
        # iter(range) advanced by index.  A remaining range(k, stop) is stored
        # as range(stop) advanced by k: the same iterator, in 3.11's (shorter)
        # shape.
        _, (r,), index = v.__reduce__()
        if index is None:
            if r.step == 1 and r.start >= 0:
                r, index = range(r.stop), r.start
            else:
                index = 0
        memo[id(v)] = len(self.keep)  # register(v)
        self.keep.append(v)
        # Range fields are ints: msgpack takes them as they are, except in
        # strict mode (an int beyond 64 bits needs enc()).
        if r.step == 1 and r.start == 0 and not self.strict:
            return [_TAG_RANGEITER, r.stop, index]
        enc = self.enc if self.strict else _same
        if r.step == 1:
            if r.start == 0:
                return [_TAG_RANGEITER, enc(r.stop), enc(index)]
            return [_TAG_RANGEITER, enc(r.start), enc(r.stop), enc(index)]
        return [_TAG_RANGEITER, enc(r.start), enc(r.stop), enc(r.step), enc(index)]

    def _seqiter(self, v: Any) -> Any:
        i = self.memo.get(id(v))
        if i is not None:
            return ref_ext(i)
        rv = v.__reduce__()
        seq = rv[1][0]
        if type(seq) not in SEQITER_TYPES:
            # over a subclass of list, tuple, str or bytes: the reduce
            # protocol (the decoder takes T_SEQITER over the four types only)
            return self._other(v)
        index = rv[2] if len(rv) > 2 else 0
        encoded = self.enc(seq)
        self.register(v)
        return [TAGS[T_SEQITER], encoded, index]

    def _dictiter(self, v: Any) -> Any:
        i = self.memo.get(id(v))
        if i is not None:
            return ref_ext(i)
        target = next((r for r in gc.get_referents(v) if type(r) is dict), None)
        if target is None:  # exhausted: nothing left to walk
            return self._other(v)
        position = len(target) - v.__length_hint__()
        encoded = self.enc(target)
        self.register(v)
        return [TAGS[T_DICTITER], encoded, _DICT_ITER_KINDS[type(v)], position]

    def _dictview(self, v: Any) -> Any:
        i = self.memo.get(id(v))
        if i is not None:
            return ref_ext(i)
        # The live dict itself (``view.mapping`` is only a read-only proxy of it).
        target = next(r for r in gc.get_referents(v) if type(r) is dict)
        encoded = self.enc(target)
        self.register(v)
        return [TAGS[T_DICTVIEW], encoded, _DICT_VIEW_KINDS[type(v)]]

    # -- code-bearing objects --------------------------------------------
    def _frame(self, v: Any) -> Any:
        i = self.memo.get(id(v))
        if i is not None:
            return ref_ext(i)
        self.memo[id(v)] = len(self.keep)
        self.keep.append(v)
        fields = self.frame_hook(self, v)
        if fields and fields[0] is _TAG_DONE:
            return fields  # a finished generator: [T_DONE, coderef...]
        return [_TAG_FRAME, *fields]

    def delegated_frame(self, v: Any) -> Any:
        """A sub-generator on top of a delegating frame's stack: an untagged
        array (that slot can never hold a plain list, so no tag is needed)."""
        i = self.memo.get(id(v))
        if i is not None:
            return ref_ext(i)
        self.memo[id(v)] = len(self.keep)
        self.keep.append(v)
        return self.frame_hook(self, v)

    def _cell(self, v: types.CellType) -> Any:
        i = self.memo.get(id(v))
        if i is not None:
            return ref_ext(i)
        self.register(v)
        try:
            contents = v.cell_contents
        except ValueError:
            return [TAGS[T_CELL]]
        if type(contents) is types.CellType:
            raise SnapshotError("a cell holding a cell is not supported (cells have no "
                                "recursion guard when freed, so loads refuses them)")
        return [TAGS[T_CELL], self.enc(contents)]

    def _global_or_none(self, v: Any) -> Any:
        wk = WELLKNOWN_INDEX.get(id(v))
        if wk is not None:
            return _WELLKNOWN_EXT[wk]
        i = self.memo.get(id(v))
        if i is not None:
            return ref_ext(i)
        name = global_name(v)
        if name is None:
            return None
        self.register(v)
        return [TAGS[T_GLOBAL], self.string(name[0]), self.string(name[1])]

    def _function(self, v: types.FunctionType) -> Any:
        out = self._global_or_none(v)
        if out is not None:
            return out
        code = v.__code__
        try:
            ref = describe(code, v.__globals__.get("__name__"))
        except SnapshotError as exc:
            return self._pickle(v, exc)
        key = id(v)
        if key in self.busy:
            raise SnapshotError(
                f"function {v.__qualname__} refers to itself through its defaults"
            )
        cp = self._checkpoint()
        self.busy.add(key)
        try:
            fields = self.coderef(code, ref)
            closure = v.__closure__
            fdict = v.__dict__
            tail = [
                self.enc_items(closure) if closure else None,
                self.enc_items(v.__defaults__) if v.__defaults__ else None,
                self.enc(v.__kwdefaults__) if v.__kwdefaults__ else None,
                v.__qualname__ if v.__qualname__ != code.co_qualname else None,
                self.enc(fdict) if fdict else None,
            ]
        except SnapshotError as exc:
            self._rollback(cp)
            return self._pickle(v, exc)
        finally:
            self.busy.discard(key)
        while tail and tail[-1] is None:
            tail.pop()
        self.register(v)
        return [TAGS[T_FUNCTION], *fields, *tail]

    def _class(self, v: type) -> Any:
        out = self._global_or_none(v)
        if out is not None:
            return out
        return self._pickle(v, SnapshotError(f"class {v.__qualname__} is not importable by name"))

    def _module(self, v: types.ModuleType) -> Any:
        i = self.memo.get(id(v))
        if i is not None:
            return ref_ext(i)
        self.register(v)
        return [TAGS[T_MODULE], self.string(v.__name__)]

    def _builtin(self, v: Any) -> Any:
        out = self._global_or_none(v)
        if out is not None:
            return out
        bound_to = v.__self__
        if bound_to is not None and type(bound_to) is not types.ModuleType:
            return self._method(v)  # a C method bound to an object: [].append
        return self._other(v)

    def _method(self, v: Any) -> Any:
        """A method found by name on a type, as [T_METHOD, obj, name] when
        ``resolve_method`` finds this very method again (what safe mode can
        check); otherwise through its reduce (``getattr(obj, name)``, which
        safe mode refuses).  A bound method (Python or C): ``obj`` is its
        ``__self__``; a C method descriptor: its class."""
        i = self.memo.get(id(v))
        if i is not None:
            return ref_ext(i)
        if self.global_values:
            out = self._module_value(v)
            if out is not None:
                return out
        obj = v.__objclass__ if type(v) is types.MethodDescriptorType else v.__self__
        name = getattr(v, "__name__", None)
        try:
            if type(name) is not str:
                raise LookupError(name)
            resolved, _ = resolve_method(obj, name)
        except LookupError:
            return self._other(v)
        if not (resolved is v or resolved == v):
            return self._other(v)
        if id(v) in self.busy:
            raise SnapshotError(f"the method {name} refers to itself through its object")
        self.busy.add(id(v))
        try:
            encoded = self.enc(obj)
        finally:
            self.busy.discard(id(v))
        self.register(v)
        return [TAGS[T_METHOD], encoded, self.string(name)]

    # -- everything else --------------------------------------------------
    def _other(self, v: Any) -> Any:
        if isinstance(v, type):
            return self._class(v)
        i = self.memo.get(id(v))
        if i is not None:
            return ref_ext(i)
        if self.global_ids and id(v) in self.global_ids:
            out = self._module_value(v)
            if out is not None:
                return out
        if id(v) in self.busy:
            raise SnapshotError(
                f"a {type_name(v)} refers to itself through its own constructor arguments"
            )
        if NO_REDUCE and isinstance(v, NO_REDUCE):
            # A subclass of an itertools type: its reduce is itertools' own,
            # deprecated by 3.12 and 3.13 and gone in 3.14 (the fallback
            # picklers would call it too).
            raise final_error(f"cannot serialize {type_name(v)}: a subclass of "
                              f"{_base_name(v)} (only the itertools types themselves are "
                              "captured)")
        cp = self._checkpoint()
        try:
            if isinstance(v, BaseException):
                return self._exception(v)
            return self._reduce(v)
        except SnapshotError as exc:
            self._rollback(cp)
            return self._pickle(v, exc)

    def _exception(self, v: BaseException) -> Any:
        """An exception with its chain (the reduce protocol drops __cause__ and
        __context__; the traceback is dropped, as pickle does)."""
        reduced = self._reduce(v)
        return [TAGS[T_EXCEPTION], reduced, self.enc(v.__cause__), self.enc(v.__context__),
                v.__suppress_context__]

    def _reduce(self, v: Any) -> Any:
        t = type(v)
        reducer = copyreg.dispatch_table.get(t)
        try:
            rv = reducer(v) if reducer is not None else v.__reduce_ex__(4)
        except Exception as exc:
            raise SnapshotError(f"{type_name(v)} cannot be reduced: {exc}") from None
        if isinstance(rv, str):
            module = getattr(v, "__module__", None)
            name = global_name(v)
            if name is None:
                raise SnapshotError(f"{type_name(v)} reduces to the name {module}.{rv}, "
                                    "which does not resolve back to it")
            self.register(v)
            return [TAGS[T_GLOBAL], self.string(name[0]), self.string(name[1])]
        if not isinstance(rv, tuple) or not 2 <= len(rv) <= 6:
            raise SnapshotError(f"{type_name(v)}.__reduce_ex__ returned {rv!r}")
        func, args = rv[0], rv[1]
        rest = list(rv[2:]) + [None] * (6 - len(rv))
        state, listitems, dictitems, setter = rest
        if setter is not None:
            raise SnapshotError(f"{type_name(v)} uses a state setter, not supported natively")
        if not isinstance(args, tuple):
            raise SnapshotError(f"{type_name(v)}.__reduce_ex__ gave non-tuple arguments")
        self.busy.add(id(v))
        try:
            if func is _NEWOBJ and args and isinstance(args[0], type):
                head = [TAGS[T_NEWOBJ], self._class_ref(args[0]), self.enc_items(args[1:])]
            else:
                head = [TAGS[T_REDUCE], self._callable_ref(func), self.enc_items(args)]
        finally:
            self.busy.discard(id(v))
        self.register(v)
        tail = [
            None if state is None else self.enc(state),
            None if listitems is None else self.enc_items(list(listitems)),
            None if dictitems is None else self.enc_items(
                [x for pair in dictitems for x in pair]
            ),
        ]
        while tail and tail[-1] is None:
            tail.pop()
        return [*head, *tail]

    def _class_ref(self, cls: type) -> Any:
        out = self._global_or_none(cls)
        if out is None:
            raise SnapshotError(f"class {cls.__module__}.{cls.__qualname__} is not importable "
                                "by name")
        return out

    def _callable_ref(self, func: Any) -> Any:
        out = self._global_or_none(func)
        if out is None:
            raise SnapshotError(f"reduce callable {func!r} is not importable by name")
        return out

    def _pickle(self, v: Any, why: Exception) -> Any:
        i = self.memo.get(id(v))
        if i is not None:
            return ref_ext(i)
        if getattr(why, "final", False):
            # A value inside v was refused for good (the fallback pickler
            # already failed on it): pickling v would meet it again.
            raise final_error(f"cannot serialize {type_name(v)}: {why}") from None
        try:
            payload = dumps_with(self.pid, v)
        except Exception as exc:
            raise final_error(
                f"cannot serialize {type_name(v)}: {why}; the fallback pickler failed too: {exc}"
            ) from None
        self.register(v)
        return ExtType(EXT_PICKLE, payload)


_DICT_ITER_KINDS: dict[type, int] = {
    type(iter({})): 0, type(iter({}.values())): 1, type(iter({}.items())): 2,
}

_DICT_VIEW_KINDS: dict[type, int] = {type({}.keys()): 0, type({}.values()): 1, type({}.items()): 2}

_DISPATCH: dict[type, Callable[[Encoder, Any], Any]] = {
    list: Encoder._list,
    dict: Encoder._dict,
    tuple: Encoder._tuple,
    set: Encoder._set,
    frozenset: Encoder._frozenset,
    bytearray: Encoder._bytearray,
    bytes: Encoder._bytes,
    memoryview: Encoder._memoryview,
    complex: Encoder._complex,
    range: Encoder._range,
    type(iter(range(1))): Encoder._rangeiter,
    type(iter(range(2**64))): Encoder._rangeiter,
    type(iter([])): Encoder._seqiter,
    type(iter(())): Encoder._seqiter,
    type(iter("")): Encoder._seqiter,
    type(iter("\u20ac")): Encoder._seqiter,
    type(iter(b"")): Encoder._seqiter,
    types.CellType: Encoder._cell,
    type(iter({})): Encoder._dictiter,
    type({}.keys()): Encoder._dictview,
    type({}.values()): Encoder._dictview,
    type({}.items()): Encoder._dictview,
    type(iter({}.values())): Encoder._dictiter,
    type(iter({}.items())): Encoder._dictiter,
    types.FunctionType: Encoder._function,
    types.ModuleType: Encoder._module,
    types.GeneratorType: Encoder._frame,
    types.CoroutineType: Encoder._frame,
    types.BuiltinFunctionType: Encoder._builtin,
    types.MethodType: Encoder._method,
    types.MethodDescriptorType: Encoder._method,
    types.TracebackType: lambda self, v: None,  # dropped, as pickle drops __traceback__
    type: Encoder._class,
}
