"""Generators, coroutines and async generators through pickle, cloudpickle,
dill and the frameworks built on them (multiprocessing, ``concurrent.futures``,
Dask, Ray).

What lives here: a reducer that turns a suspended generator, coroutine or
async generator into ``(rebuild, (blob, buffers))``, ``install()`` / ``uninstall()`` to
register it process-wide (``copyreg``, and dill's own table when dill is
loaded), and
``rebuild``, the importable function a pickle calls to restore it.  Nothing
here knows about frames or the blob format: it is ``corosnap.dumps`` and
``corosnap.loads`` seen from a pickler.

Opt-in, because a process-wide registration changes what other code sees:
``copy.deepcopy(gen)`` and ``copy.copy(gen)`` stop raising ``TypeError`` and
return an independent fork.

Theory of operation
-------------------
pickle asks a reducer about an object's type only, never about the pickler:
the reducer cannot know the protocol or whether the pickler has a
``buffer_callback``.  So the reducer always asks ``corosnap.dumps`` to set
buffers aside (large bytes and bytearrays, every memoryview), and hands them
to the pickler wrapped in ``_Buffers``, a tuple whose ``__reduce_ex__`` does
know the protocol: from protocol 5 it reduces to ``pickle.PickleBuffer``
objects, which the pickler sends out of band when its ``buffer_callback``
asks for them (zero-copy in Dask and Ray) and writes in band otherwise;
below protocol 5 it reduces to plain bytes / bytearray copies.

Options.  The capturing side's options (``pickler``, ``key``) belong to a
:class:`Reducer`: one per private ``Pickler.dispatch_table``, or the one
``install()`` registers.  The restoring side's options (``key``, ``safe``,
``allow``) cannot travel in the pickle (a key must not, and a pickle's
author must not choose how it is checked), and ``rebuild`` is a plain
module-level function called by the unpickler, so they are this process's:
set by ``install()``.  A process that unpickles a generator without having
called ``install()`` or ``uninstall()`` installs the defaults on the spot,
so that a pool worker or a Dask worker can pickle the generator back.

Identity.  The generator's snapshot is one opaque ``bytes`` to the outer
pickler: an object that both the generator and the rest of the pickled graph
refer to comes back as two separate copies (see docs/pickling.md).
"""

from __future__ import annotations

import copyreg
import sys
import threading
import types
from collections.abc import Callable, Iterable, Sequence
from pickle import PickleBuffer
from typing import Any

from .codec import pickler_id
from .snapshot import dumps, loads
from .snapshot._api import Pickler

__all__ = ["Reducer", "install", "installed", "rebuild", "uninstall"]

_TYPES: tuple[type, ...] = (types.GeneratorType, types.CoroutineType, types.AsyncGeneratorType)


class _Buffers(tuple[PickleBuffer, ...]):
    """The out-of-band buffers of one snapshot, as ``PickleBuffer`` objects.

    Pickled from protocol 5 as the ``PickleBuffer`` objects themselves (the
    pickler's ``buffer_callback`` decides in band or out of band), below it
    as copies; restored as a plain tuple of whatever buffers the unpickler
    hands back.
    """

    __slots__ = ()

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        if isinstance(protocol, int) and protocol >= 5:
            return tuple, (list(self),)
        return tuple, ([_detached(pb) for pb in self],)


def _detached(pb: PickleBuffer) -> bytes | bytearray:
    """A buffer's contents as an object of its own: the bytes object itself
    when it is one (immutable, so sharing it is safe), else a copy."""
    with pb.raw() as view:
        whole = view.obj
        if type(whole) is bytes and view.nbytes == len(whole):
            return whole
        return view.tobytes() if view.readonly else bytearray(view)


class Reducer:
    """A reducer for generators, coroutines and async generators, with
    ``corosnap.dumps`` options.

    ``reducer(gen)`` returns ``(corosnap.pickling.rebuild, (blob,))``, or
    ``(rebuild, (blob, buffers))`` when the snapshot set large buffers aside.
    Use it in a private dispatch table, leaving every other pickler as it is::

        p = pickle.Pickler(file, protocol=5)
        p.dispatch_table = copyreg.dispatch_table.copy()
        p.dispatch_table.update(Reducer(key=secret).dispatch_table())

    ``pickler``: the fallback pickler for values corosnap does not store
    natively (``"cloudpickle"`` by default, ``"pickle"``, ``"dill"``).
    ``key``: sign each snapshot with HMAC-SHA256; the restoring process
    verifies it with the key its ``install(key=)`` set.
    """

    __slots__ = ("pickler", "key")

    def __init__(self, *, pickler: Pickler | None = None, key: bytes | None = None) -> None:
        if pickler is not None:
            pickler_id(pickler)  # ValueError now rather than at the first pickle
        self.pickler = pickler
        self.key = key

    def __call__(self, obj: Any) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        buffers: list[PickleBuffer] = []
        blob = dumps(obj, key=self.key, pickler=self.pickler, buffer_callback=buffers.append)
        if buffers:
            return rebuild, (blob, _Buffers(buffers))
        return rebuild, (blob,)

    def dispatch_table(self) -> dict[type, Callable[[Any], Any]]:
        """``{GeneratorType: self, CoroutineType: self, AsyncGeneratorType:
        self}``, to merge into a pickler's private ``dispatch_table``."""
        return dict.fromkeys(_TYPES, self)

    def __repr__(self) -> str:
        key = "<key>" if self.key is not None else None
        return f"corosnap.pickling.Reducer(pickler={self.pickler!r}, key={key})"


class _LoadOptions:
    __slots__ = ("key", "safe", "allow")

    def __init__(self, key: bytes | None = None, safe: bool = False,
                 allow: tuple[str, ...] = ()) -> None:
        self.key = key
        self.safe = safe
        self.allow = allow


_lock = threading.Lock()
_reducer: Reducer | None = None  # the installed one
_load = _LoadOptions()
_chosen = False  # install() or uninstall() was called here: rebuild installs nothing
_saved: dict[str, dict[type, Any]] = {}  # what install() replaced, per table
_MISSING = object()


def install(
    *,
    pickler: Pickler | None = None,
    key: bytes | None = None,
    safe: bool = False,
    allow: Iterable[str] = (),
) -> Reducer:
    """Let pickle, cloudpickle, dill, ``copy`` and everything built on them
    (multiprocessing, ``concurrent.futures``, Dask, Ray) carry generators and
    coroutines, in this process; returns the registered :class:`Reducer`.

    ``pickler`` and ``key`` are how this process captures (see Reducer);
    ``key``, ``safe`` and ``allow`` are how it restores (``corosnap.loads``'s
    options; a key given here must be the one the sending process used).
    Calling it again replaces the options.  ``safe`` and ``allow`` matter
    only behind an unpickler that restricts globals: a pickle stream can run
    any code by itself.
    """
    global _chosen
    with _lock:
        _chosen = True
        return _install(Reducer(pickler=pickler, key=key),
                        _LoadOptions(key, bool(safe), tuple(allow)))


def _install(reducer: Reducer, load: _LoadOptions) -> Reducer:
    global _reducer, _load
    tables = _tables(reducer)
    for name, (table, entry) in tables.items():
        saved = _saved.setdefault(name, {})
        for t in _TYPES:
            if t not in saved:  # keep what was there before the first install
                saved[t] = table.get(t, _MISSING)
            table[t] = entry
    _reducer, _load = reducer, load
    return reducer


def _tables(reducer: Reducer) -> dict[str, tuple[dict[type, Any], Any]]:
    """The tables to register in, with the entry each takes.  copyreg's is
    read by pickle, cloudpickle, multiprocessing, ``copy`` and (through the
    stock pickler it extends) dill; dill's own table, which dill reads first,
    too when dill is imported already (importing it here would change the
    stock pure-Python pickler, which dill extends on import)."""
    tables: dict[str, tuple[dict[type, Any], Any]] = {
        "copyreg": (copyreg.dispatch_table, reducer),
    }
    dill = sys.modules.get("dill")
    if dill is None:
        return tables

    def save(pickler: Any, obj: Any) -> None:
        pickler.save_reduce(*reducer(obj), obj=obj)

    tables["dill"] = (dill.Pickler.dispatch, save)
    return tables


def uninstall() -> None:
    """Undo ``install()``: generators and coroutines are refused by pickle
    and ``copy`` again, and this process restores with the default options.
    Unpickling a generator no longer installs anything here."""
    global _reducer, _load, _chosen
    with _lock:
        _chosen = True
        for name, saved in _saved.items():
            table = _table(name)
            if table is None:
                continue
            for t, old in saved.items():
                if old is _MISSING:
                    table.pop(t, None)
                else:
                    table[t] = old
        _saved.clear()
        _reducer, _load = None, _LoadOptions()


def _table(name: str) -> dict[type, Any] | None:
    if name == "copyreg":
        return copyreg.dispatch_table
    dill = sys.modules.get("dill")
    if dill is None:
        return None
    table: dict[type, Any] = dill.Pickler.dispatch
    return table


def installed() -> Reducer | None:
    """The reducer ``install()`` registered in this process, or None."""
    return _reducer


def rebuild(blob: bytes, buffers: Sequence[Any] | None = None) -> Any:
    """Restore a generator or coroutine from a pickle: the reconstructor
    ``Reducer`` names.  ``corosnap.loads(blob, buffers=buffers)`` with this
    process's restore options (``install()``).

    In a process that has not called ``install()`` or ``uninstall()``, the
    default reducer is installed first, so the restored object can be
    pickled back (a pool worker returning the generator it advanced).
    """
    global _chosen
    if not _chosen:
        with _lock:
            if not _chosen:
                _chosen = True
                _install(Reducer(), _LoadOptions())
    if type(buffers) is _Buffers:
        # Not through a pickler (copy.copy): the original objects' buffers.
        # A fork must not share a mutable buffer with the original.
        buffers = [_detached(pb) for pb in buffers]
    load = _load
    return loads(blob, key=load.key, safe=load.safe, allow=load.allow, buffers=buffers)
