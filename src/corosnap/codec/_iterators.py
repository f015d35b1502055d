"""Builtin iterators with their position: itertools, map, filter, reversed and
``iter(callable, sentinel)``, as tagged arrays.

What lives here: one table row per iterator type (``KINDS``): its tag, how
to read its state, how to make a fresh one to restore into, and which of its
fields it calls.  The encoder and decoder hooks below are driven by that
table; they are registered into the codec's dispatch tables when the codec is
imported.
What must never leak out: nothing here knows a struct layout.  A state is
read through the type's public API where it has one (``__reduce__`` of map,
filter, reversed and callable_iterator, which no CPython deprecates), and
otherwise through ``frames.iter_read``; it is written by
``frames.iter_write``, which checks every field against the rest of the state
before it touches the object.  itertools' own ``__reduce__``/``__setstate__``
are never called: CPython 3.12 and 3.13 deprecate them (a DeprecationWarning
per call) and 3.14 removed them.

How it works.  The fields of a kind are exactly the tuple ``frames.iter_read``
returns (documented at the top of ``frames/_itertools.h``): an exhausted
iterator has fewer fields than a live one, so absent state costs nothing.
Each field is an ordinary value; the only fields that may be NULL (an
exhausted input of ``zip_longest``, the missing next buffer of a tee) are
stored as ``nil``, with a real ``None`` there stored as ``ext(7)``, the frame
slots' convention.

Memo (object identity): an iterator is registered *before* its fields.  The
decoder makes a fresh one through the type's public constructor with inert
arguments (``itertools.chain()``), registers it, decodes the fields and only
then writes them, so cycles through an iterator (a tee whose source
generator holds the tee, ``m235`` style) restore like any other cycle.  A
tee's buffer (``_tee_dataobject``) is written in three steps, values, next
buffer, then source, so that a tee met while decoding the source already
finds the values it points into.

Recursion: CPython's C iterators advance their inputs and call their
functions without a recursion guard.  Each restored iterator joins the
decoder's graph of such objects (``Decoder.follows``, with the reduce-built
partials, enumerates, zips...) once its fields are written, and one that
reaches itself is refused (``Decoder._check_no_unguarded_cycle``); a chain and
a starmap, whose inputs come from the items they read, get them through
Python relays instead (``_Relay``).

Safe mode: every kind may be restored; a function an iterator calls (map's,
filter's, a key function...) must be one safe mode lets a blob call
(``_globals.check_callable_allowed``), since iterating it calls it.
"""

from __future__ import annotations

import builtins
import itertools
from collections.abc import Callable
from typing import Any

from .._errors import CorruptSnapshot
from ..frames import backend
from . import _decoder, _encoder
from ._globals import check_callable_allowed
from ._markers import NONE_MARK, register_tags
from ._tags import (
    NONE_EXT,
    T_ACCUMULATE,
    T_BATCHED,
    T_CALL_ITER,
    T_CHAIN,
    T_COMBINATIONS,
    T_COMPRESS,
    T_COUNT,
    T_CWR,
    T_CYCLE,
    T_DROPWHILE,
    T_FILTER,
    T_FILTERFALSE,
    T_GROUPBY,
    T_GROUPER,
    T_ISLICE,
    T_MAP,
    T_PAIRWISE,
    T_PERMUTATIONS,
    T_PRODUCT,
    T_REPEAT,
    T_REVERSED,
    T_STARMAP,
    T_TAKEWHILE,
    T_TEE,
    T_TEE_DATA,
    T_ZIP_LONGEST,
    TAGS,
)


def _read_map(v: Any) -> tuple[Any, ...]:
    rv: Any = map.__reduce__(v)  # (map, (func, *iters)) [, True]: 3.14+ strict
    return (rv[1][0], True, *rv[1][1:]) if len(rv) > 2 and rv[2] else tuple(rv[1])


def _read_filter(v: Any) -> tuple[Any, ...]:
    rv: Any = filter.__reduce__(v)  # (filter, (func, it))
    return tuple(rv[1])


def _read_reversed(v: Any) -> tuple[Any, ...]:
    rv: Any = reversed.__reduce__(v)  # (reversed, (seq,), index); exhausted: (reversed, ((),))
    return () if len(rv) == 2 else (rv[1][0], rv[2])


_CALL_ITER = type(iter(int, 0))


def _read_call_iter(v: Any) -> tuple[Any, ...]:
    rv: Any = _CALL_ITER.__reduce__(v)  # (iter, (callable, sentinel)); exhausted: (iter, ((),))
    return () if len(rv[1]) == 1 else tuple(rv[1])


def _at(i: int) -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
    return lambda fields: fields[i:i + 1]


class _Relay:
    """An iterator passing ``next()`` on to ``it``, through a Python frame.

    Why: CPython's C iterators call each other's ``next()`` without any
    recursion check, so one that ends up calling itself recurses until the C
    stack overflows (``c = chain.from_iterable(l); l.append(c); next(c)``
    segfaults every CPython).  A blob must not be able to build that.  The
    inputs an iterator gets when it is created (islice's, zip_longest's, ...)
    are known when it is restored and checked for such a cycle
    (``Decoder._check_no_unguarded_cycle``); but a chain takes its next input from what its source
    yields, and starmap turns each item into a tuple (consuming it if it is an
    iterator), which no check can see ahead.  A restored chain or starmap
    therefore gets its inputs through relays: every call passes through a
    Python frame, and a cycle ends in RecursionError instead.  Capture
    unwraps them (``_unrelay``): the blob holds the real iterators."""

    __slots__ = ("it",)

    def __init__(self, it: Any) -> None:
        if not hasattr(type(it), "__next__"):
            raise TypeError(f"{type(it).__name__} is not an iterator")
        self.it = it

    def __iter__(self) -> _Relay:
        return self

    def __next__(self) -> Any:
        return next(self.it)

    def __reduce__(self) -> Any:
        return (iter, (self.it,))  # the iterator itself: iter() of an iterator


class _ChainSource(_Relay):
    """A chain's source: each iterable it yields comes relayed (the chain's
    next input; chain_next calls ``iter()`` on it, which gives back the relay)."""

    __slots__ = ()

    def __next__(self) -> Any:
        return _Relay(iter(next(self.it)))


class _StarmapInput(_Relay):
    """A starmap's input: each item comes as a tuple, made here (starmap_next
    makes it in C otherwise, consuming an item that may be an iterator)."""

    __slots__ = ()

    def __next__(self) -> Any:
        item = next(self.it)
        return item if type(item) is tuple else tuple(item)


_RELAYS = (_Relay, _ChainSource, _StarmapInput)


def _relay_chain(fields: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(_ChainSource(x) if n == 0 else _Relay(x) for n, x in enumerate(fields))


def _relay_starmap(fields: tuple[Any, ...]) -> tuple[Any, ...]:
    return (fields[0], _StarmapInput(fields[1]), *fields[2:]) if len(fields) >= 2 else fields


def _unrelay(fields: tuple[Any, ...]) -> tuple[Any, ...]:
    for x in fields:
        if type(x) in _RELAYS:
            return tuple(x.it if type(x) in _RELAYS else x for x in fields)
    return fields


class Kind:
    """One builtin iterator type, as the codec stores it."""

    __slots__ = ("tag", "tag_ext", "type", "name", "inert", "read", "calls", "nullable_rest",
                 "inputs", "relay")

    def edges(self, fields: tuple[Any, ...]) -> list[Any]:
        """The fields it advances or calls, in C, when it is advanced."""
        out = list(self.inputs(fields)) if self.inputs is not None else []
        out.extend(fields[n] for n in self.calls if n < len(fields))
        return out

    def __init__(self, tag: int, type_: type, name: str, inert: Callable[[], Any],
                 read: Callable[[Any], tuple[Any, ...]] | None = None,
                 calls: tuple[int, ...] = (), nullable_rest: int = -1,
                 inputs: Callable[[tuple[Any, ...]], Any] | None = None,
                 relay: Callable[[tuple[Any, ...]], tuple[Any, ...]] | None = None) -> None:
        self.tag = tag
        self.tag_ext = TAGS[tag]
        self.type = type_
        self.name = name
        # A fresh object to restore into, through the public constructor and
        # with arguments that run no code and hold nothing.
        self.inert = inert
        # None: read through the frames layer (no public API has the state).
        self.read = read
        # Positions of the fields the iterator calls (safe mode checks them).
        self.calls = calls
        # From this position on, fields may be NULL (nil), and None is ext(7).
        self.nullable_rest = nullable_rest
        # The fields it calls next() on, from its fields (see edges()).
        self.inputs = inputs
        # The fields to write, with the relays it needs (see _Relay).
        self.relay = relay


def _kinds() -> list[Kind]:
    it: Any = itertools  # constructors called with inert arguments stubs do not expect
    bi: Any = builtins
    kinds = [
        Kind(T_COUNT, it.count, "itertools.count", it.count),
        Kind(T_REPEAT, it.repeat, "itertools.repeat", lambda: it.repeat(None, 0)),
        Kind(T_CYCLE, it.cycle, "itertools.cycle", lambda: it.cycle(()), inputs=_at(2)),
        Kind(T_ISLICE, it.islice, "itertools.islice", lambda: it.islice((), 0), inputs=_at(0)),
        Kind(T_CHAIN, it.chain, "itertools.chain", it.chain, relay=_relay_chain),
        Kind(T_ZIP_LONGEST, it.zip_longest, "itertools.zip_longest", it.zip_longest,
             nullable_rest=1, inputs=lambda f: f[1:]),
        Kind(T_ACCUMULATE, it.accumulate, "itertools.accumulate", lambda: it.accumulate(()),
             calls=(2,), inputs=_at(0)),
        Kind(T_PAIRWISE, it.pairwise, "itertools.pairwise", lambda: it.pairwise(()),
             inputs=_at(0)),
        Kind(T_COMPRESS, it.compress, "itertools.compress", lambda: it.compress((), ()),
             inputs=lambda f: f[:2]),
        Kind(T_DROPWHILE, it.dropwhile, "itertools.dropwhile",
             lambda: it.dropwhile(None, ()), calls=(0,), inputs=_at(1)),
        Kind(T_TAKEWHILE, it.takewhile, "itertools.takewhile",
             lambda: it.takewhile(None, ()), calls=(0,), inputs=_at(1)),
        Kind(T_FILTERFALSE, it.filterfalse, "itertools.filterfalse",
             lambda: it.filterfalse(None, ()), calls=(0,), inputs=_at(1)),
        Kind(T_STARMAP, it.starmap, "itertools.starmap", lambda: it.starmap(None, ()),
             calls=(0,), relay=_relay_starmap),
        Kind(T_TEE, it._tee, "itertools.tee", lambda: it._tee(())),
        Kind(T_TEE_DATA, it._tee_dataobject, "itertools._tee_dataobject",
             lambda: it._tee_dataobject(iter(()), [], None)),
        Kind(T_GROUPBY, it.groupby, "itertools.groupby", lambda: it.groupby(()), calls=(1,),
             inputs=_at(0)),
        Kind(T_GROUPER, it._grouper, "itertools._grouper",
             lambda: it._grouper(it.groupby(()), None),
             inputs=_at(0)),  # next() steps its groupby
        Kind(T_PRODUCT, it.product, "itertools.product", it.product),
        Kind(T_PERMUTATIONS, it.permutations, "itertools.permutations",
             lambda: it.permutations((), 0)),
        Kind(T_COMBINATIONS, it.combinations, "itertools.combinations",
             lambda: it.combinations((), 0)),
        Kind(T_CWR, it.combinations_with_replacement,
             "itertools.combinations_with_replacement",
             lambda: it.combinations_with_replacement((), 0)),
        Kind(T_MAP, map, "map", lambda: bi.map(None, ()), read=_read_map, calls=(0,),
             inputs=lambda f: [x for x in f[1:] if x is not True]),
        Kind(T_FILTER, filter, "filter", lambda: bi.filter(None, ()), read=_read_filter,
             calls=(0,), inputs=_at(1)),
        Kind(T_REVERSED, reversed, "reversed", lambda: reversed(()), read=_read_reversed),
        Kind(T_CALL_ITER, _CALL_ITER, "callable_iterator", lambda: iter(int, 0),
             read=_read_call_iter, calls=(0,), inputs=_at(0)),
    ]
    batched = getattr(it, "batched", None)  # 3.12+
    if batched is not None:
        kinds.append(Kind(T_BATCHED, batched, "itertools.batched", lambda: batched((), 1),
                          inputs=_at(0)))
    return kinds


KINDS: tuple[Kind, ...] = tuple(_kinds())
BY_TYPE: dict[type, Kind] = {k.type: k for k in KINDS}
BY_TAG: dict[int, Kind] = {k.tag: k for k in KINDS}
_TEE_DATA = BY_TAG[T_TEE_DATA]

_frames: Any = None


def _layer() -> Any:
    global _frames
    if _frames is None:
        _frames = backend()
    return _frames


# -- encoding -----------------------------------------------------------------

def encode(enc: Any, v: Any) -> Any:
    """``[tag, *fields]`` for a builtin iterator (or a back-reference)."""
    i = enc.memo.get(id(v))
    if i is not None:
        return _encoder.ref_ext(i)
    if enc.global_ids and id(v) in enc.global_ids:
        out = enc._module_value(v)
        if out is not None:
            return out
    kind = BY_TYPE[type(v)]
    try:
        fields = _unrelay(kind.read(v) if kind.read is not None else _layer().iter_read(v))
    except (TypeError, ValueError) as exc:
        # Final: the fallback pickler would only call the deprecated (3.12,
        # 3.13) or missing (3.14+) itertools pickling on it.
        raise _encoder.final_error(f"cannot capture a {kind.name}: {exc}") from None
    if kind is _TEE_DATA:
        return _encode_tee_data(enc, v, kind, fields)
    if kind.tag == T_TEE:
        _check_tee(enc, fields)
    enc.register(v)
    out = [kind.tag_ext]
    rest = kind.nullable_rest
    null = _layer().NULL
    for n, x in enumerate(fields):
        if n >= rest >= 0:
            out.append(None if x is null else NONE_EXT if x is None else enc.enc(x))
        else:
            out.append(enc.enc(x))
    return out


def _encode_tee_data(enc: Any, v: Any, kind: Kind, fields: tuple[Any, ...]) -> Any:
    """``[tag, *values, next buffer or nil, source]``, in the order the decoder
    writes them; while the values are encoded the buffer is *filling*."""
    enc.register(v)
    filling = enc.filling
    filling.add(id(v))
    try:
        values = [enc.enc(x) for x in fields[:-2]]
    finally:
        filling.discard(id(v))
    link = fields[-2]
    return [kind.tag_ext, *values, None if link is _layer().NULL else enc.enc(link),
            enc.enc(fields[-1])]


def _check_tee(enc: Any, fields: tuple[Any, ...]) -> None:
    # The decoder checks a tee's position against the values of its buffer
    # when it writes the tee.  A buffer met again while its own values are
    # being encoded (one of its values holds a tee reading it) has none yet.
    dataobj, index = fields
    if index and id(dataobj) in enc.filling:
        raise _encoder.final_error("cannot capture an itertools.tee whose buffered values "
                                   "hold a tee on that same buffer")


# -- decoding -----------------------------------------------------------------

def decode(dec: Any, v: list[Any]) -> Any:
    kind = BY_TAG[v[0].kind]
    if kind is _TEE_DATA:
        return _decode_tee_data(dec, v, kind)
    obj = kind.inert()
    dec.memo.append(obj)
    # A C iterator: in the decoder's graph of objects CPython advances or
    # calls without its recursion guard (Decoder._check_no_unguarded_cycle),
    # still being built until its fields are written.
    edges: list[Any] = []
    dec.follows[id(obj)] = edges
    dec.building.add(id(obj))
    rest = kind.nullable_rest
    null = _layer().NULL
    mark = NONE_MARK
    fields = []
    for n, x in enumerate(v[1:]):
        if n >= rest >= 0:
            fields.append(null if x is None else None if x is mark else dec.dec(x))
        else:
            fields.append(dec.dec(x))
    if dec.safe:
        for n in kind.calls:
            if n < len(fields):
                check_callable_allowed(fields[n], dec.allow, f"a {kind.name}")
    _write(kind, obj, tuple(fields))
    dec.building.discard(id(obj))
    dec._add_edges(edges, kind.edges(tuple(fields)))
    dec._check_no_unguarded_cycle(obj)
    dec.depth[id(obj)] = dec._nest(fields)
    return obj


def _decode_tee_data(dec: Any, v: list[Any], kind: Kind) -> Any:
    if len(v) < 3:
        raise CorruptSnapshot("malformed itertools._tee_dataobject")
    obj = kind.inert()
    dec.memo.append(obj)
    values = tuple(dec.dec_items(v[1:-2]))
    _write(kind, obj, (0, values))
    link = v[-2]
    _write(kind, obj, (1, _layer().NULL if link is None else dec.dec(link)))
    source = dec.dec(v[-1])
    _write(kind, obj, (2, source))
    # The chain of next buffers is freed in a loop, not recursively.
    dec.depth[id(obj)] = dec._nest((*values, source))
    return obj


def _write(kind: Kind, obj: Any, fields: tuple[Any, ...]) -> None:
    try:
        _layer().iter_write(obj, fields if kind.relay is None else kind.relay(fields))
    except (TypeError, ValueError, OverflowError) as exc:
        raise CorruptSnapshot(f"malformed {kind.name}: {exc}") from None


# -- inside a fallback-pickled value -----------------------------------------------

def rebuild(tag: int) -> Any:
    """A fresh iterator of the kind with this tag: the reconstructor the
    fallback picklers use for a builtin iterator inside a value they pickle
    (an instance of a class defined in a function, holding a ``count``)."""
    kind = BY_TAG.get(tag) if type(tag) is int else None
    if kind is None:
        raise ValueError(f"no builtin iterator has the tag {tag!r}")
    return kind.inert()


def set_state(obj: Any, fields: tuple[Any, ...]) -> None:
    """The fallback picklers' state setter for ``rebuild``: write ``fields``
    (NULL travels as None, in the only positions that may hold it)."""
    kind = BY_TYPE[type(obj)]
    null = _layer().NULL
    if type(fields) is not tuple:
        raise TypeError(f"the state of a {kind.name} must be a tuple")
    if kind is _TEE_DATA and len(fields) >= 2:
        _layer().iter_write(obj, (0, fields[:-2]))
        _layer().iter_write(obj, (1, null if fields[-2] is None else fields[-2]))
        _layer().iter_write(obj, (2, fields[-1]))
        return
    rest = kind.nullable_rest
    if rest >= 0:
        fields = fields[:rest] + tuple(null if x is None else x for x in fields[rest:])
    _layer().iter_write(obj, fields if kind.relay is None else kind.relay(fields))


def reduce_for_pickle(v: Any) -> tuple[Any, ...]:
    """``copyreg``-style reducer of a builtin iterator for the fallback
    picklers (their own reduce would be itertools' deprecated one): rebuilt
    fresh, then ``set_state`` writes its fields (which makes cycles work)."""
    kind = BY_TYPE[type(v)]
    fields = _unrelay(kind.read(v) if kind.read is not None else _layer().iter_read(v))
    null = _layer().NULL
    state = tuple(None if x is null else x for x in fields)
    return (rebuild, (kind.tag,), state, None, None, set_state)


PICKLE_REDUCERS: dict[type, Callable[[Any], tuple[Any, ...]]] = {
    k.type: reduce_for_pickle for k in KINDS}


# -- wiring -------------------------------------------------------------------

def install() -> None:
    """Register the kinds in the codec's dispatch tables (idempotent)."""
    _encoder.NO_REDUCE = tuple(k.type for k in KINDS if k.type.__module__ == "itertools")
    for kind in KINDS:
        _encoder._DISPATCH[kind.type] = encode
        _encoder.BY_REFERENCE.add(kind.type)
        _decoder._TAGGED[kind.tag] = decode
    register_tags(k.tag for k in KINDS)


install()

__all__ = ["BY_TAG", "BY_TYPE", "KINDS", "PICKLE_REDUCERS", "Kind", "decode", "encode",
           "install", "rebuild", "reduce_for_pickle", "set_state"]
