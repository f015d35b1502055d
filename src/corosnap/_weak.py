"""Caches that never keep code objects or modules alive.

Every cache in corosnap is keyed by, or tied to, a code object or a module,
and a process that creates code at run time (plugins loaded and unloaded,
notebooks, tests that build modules) must get that memory back when it drops
them.  Three shapes cover every cache:

``IdentityCache``
    Keyed by an object's identity (``id``), holding the object weakly: the
    entry goes when the object dies.  Identity, not equality: two code objects
    compiled from the same source in two modules compare equal, and must not
    share an entry (their globals, names and modules differ).

``RecordCache``
    The same, plus ``data``, a plain ``{id(obj): value}`` dict for a C engine
    to read; each value carries ``cache.ref(obj)`` itself, so that a reader
    checks the object's identity through it.

``ModuleCache``
    Keyed by anything (a ``(module, qualname, path, fingerprint)`` tuple),
    each entry tied to one module held weakly: the module's entries go when
    it dies, with whatever they hold (its code, globals, functions).

How: a weak reference per object, whose callback removes the object's
entries.  CPython calls it while the object is being freed (also when the
garbage collector frees a cycle), before its memory, and so its ``id``, can
be reused; so an entry found under ``id(obj)`` while ``obj`` is alive is
``obj``'s own.  Lookups still check identity through the weak reference,
which costs a call and keeps the rule local.  An object that cannot be
weakly referenced is simply not cached (``put`` returns the value uncached).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, Generic, TypeVar
from weakref import KeyedRef

V = TypeVar("V")


class IdentityCache(Generic[V]):
    """{object: value} by identity, holding the objects weakly (see the module docstring)."""

    __slots__ = ("_entries", "_drop", "__weakref__")

    def __init__(self) -> None:
        # id(obj) -> (weak reference to obj, value or None: a reference only)
        self._entries: dict[int, tuple[KeyedRef, Any]] = {}
        self._drop = self._dropper()

    def _dropper(self) -> Any:
        entries = self._entries

        def drop(wr: KeyedRef) -> None:  # the object is being freed
            hit = entries.get(wr.key)
            if hit is not None and hit[0] is wr:
                del entries[wr.key]

        return drop

    def get(self, obj: object) -> V | None:
        hit = self._entries.get(id(obj))
        if hit is not None and hit[0]() is obj:
            value: V | None = hit[1]
            return value
        return None

    def ref(self, obj: object) -> KeyedRef | None:
        """The weak reference this cache drops ``obj``'s entry by (None if
        ``obj`` cannot be weakly referenced)."""
        key = id(obj)
        hit = self._entries.get(key)
        if hit is not None and hit[0]() is obj:
            return hit[0]
        try:
            wr = KeyedRef(obj, self._drop, key)
        except TypeError:
            return None
        self._entries[key] = (wr, None)
        return wr

    def put(self, obj: object, value: V) -> V:
        wr = self.ref(obj)
        if wr is not None:
            self._entries[id(obj)] = (wr, value)
        return value

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return sum(1 for _, value in self._entries.values() if value is not None)


class RecordCache(IdentityCache[V]):
    """An IdentityCache whose values are also in ``data`` ({id(obj): value}),
    for a C engine to read; each value carries ``ref(obj)`` (see the module
    docstring)."""

    __slots__ = ("data",)

    def __init__(self) -> None:
        self.data: dict[int, V] = {}
        super().__init__()

    def _dropper(self) -> Any:
        entries, data = self._entries, self.data

        def drop(wr: KeyedRef) -> None:  # the object is being freed
            hit = entries.get(wr.key)
            if hit is not None and hit[0] is wr:
                del entries[wr.key]
                data.pop(wr.key, None)

        return drop

    def put(self, obj: object, value: V) -> V:
        wr = self.ref(obj)
        if wr is not None:
            self._entries[id(obj)] = (wr, value)
            self.data[id(obj)] = value
        return value

    def clear(self) -> None:
        super().clear()
        self.data.clear()


class ModuleCache(Generic[V]):
    """{key: value}, each entry tied to a module held weakly (see the module docstring)."""

    __slots__ = ("data", "_modules", "_owner", "__weakref__")

    def __init__(self) -> None:
        self.data: dict[Hashable, V] = {}
        self._owner: dict[Hashable, KeyedRef] = {}  # key -> its module's weak reference
        self._modules: IdentityCache[set[Hashable]] = IdentityCache()  # module -> its keys
        modules, data, owner = self._modules, self.data, self._owner
        entries = modules._entries

        def drop(wr: KeyedRef) -> None:  # the module is being freed
            hit = entries.get(wr.key)
            if hit is None or hit[0] is not wr:
                return
            del entries[wr.key]
            for k in hit[1] or ():
                if owner.get(k) is wr:  # not since taken over by a reloaded module
                    del owner[k]
                    data.pop(k, None)

        modules._drop = drop

    def ref(self, module: object) -> KeyedRef | None:
        """The weak reference to ``module`` whose death drops its entries."""
        return self._modules.ref(module)

    def put(self, module: object, key: Hashable, value: V) -> V:
        wr = self._modules.ref(module)
        if wr is None:
            return value
        owned = self._modules.get(module)
        if owned is None:
            owned = self._modules.put(module, set())
        owned.add(key)
        self._owner[key] = wr
        self.data[key] = value
        return value

    def get(self, key: Hashable) -> V | None:
        return self.data.get(key)

    def clear(self) -> None:
        self._modules.clear()
        self._owner.clear()
        self.data.clear()

    def __len__(self) -> int:
        return len(self.data)


__all__ = ["IdentityCache", "ModuleCache", "RecordCache"]
