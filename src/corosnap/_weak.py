"""Caches that never keep code objects or modules alive.

Every cache in corosnap is keyed by, or tied to, a code object or a module,
and a process that creates code at run time (plugins loaded and unloaded,
notebooks, tests that build modules) must get that memory back when it drops
them.  Two shapes cover every cache:

``IdentityCache``
    Keyed by an object's identity (``id``), holding the object weakly: the
    entry goes when the object dies.  Identity, not equality: two code objects
    compiled from the same source in two modules compare equal, and must not
    share an entry (their globals, names and modules differ).  ``data`` is the
    plain ``{id(obj): value}`` dict, for a C engine to read: a value that
    must be checked against the object carries the weak reference
    ``cache.ref(obj)`` itself.

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
from typing import Generic, TypeVar
from weakref import KeyedRef

V = TypeVar("V")


class IdentityCache(Generic[V]):
    """{object: value} by identity, holding the objects weakly (see the module docstring)."""

    __slots__ = ("data", "_refs", "_drop", "__weakref__")

    def __init__(self) -> None:
        self.data: dict[int, V] = {}
        self._refs: dict[int, KeyedRef] = {}
        refs, data = self._refs, self.data

        def drop(wr: KeyedRef) -> None:  # the object is being freed
            key = wr.key
            if refs.get(key) is wr:
                del refs[key]
                data.pop(key, None)

        self._drop = drop

    def get(self, obj: object) -> V | None:
        key = id(obj)
        wr = self._refs.get(key)
        if wr is not None and wr() is obj:
            return self.data.get(key)
        return None

    def ref(self, obj: object) -> KeyedRef | None:
        """The weak reference this cache drops ``obj``'s entry by (None if
        ``obj`` cannot be weakly referenced)."""
        key = id(obj)
        wr = self._refs.get(key)
        if wr is None or wr() is not obj:
            try:
                wr = KeyedRef(obj, self._drop, key)
            except TypeError:
                return None
            self._refs[key] = wr
            self.data.pop(key, None)
        return wr

    def put(self, obj: object, value: V) -> V:
        if self.ref(obj) is not None:
            self.data[id(obj)] = value
        return value

    def clear(self) -> None:
        self._refs.clear()
        self.data.clear()

    def __len__(self) -> int:
        return len(self.data)


class ModuleCache(Generic[V]):
    """{key: value}, each entry tied to a module held weakly (see the module docstring)."""

    __slots__ = ("data", "_modules", "_owner", "__weakref__")

    def __init__(self) -> None:
        self.data: dict[Hashable, V] = {}
        self._owner: dict[Hashable, KeyedRef] = {}  # key -> its module's weak reference
        self._modules: IdentityCache[set[Hashable]] = IdentityCache()  # module -> its keys
        modules, data, owner = self._modules, self.data, self._owner
        forget = modules._drop

        def drop(wr: KeyedRef) -> None:  # the module is being freed
            if modules._refs.get(wr.key) is wr:
                for k in modules.data.get(wr.key, ()):
                    if owner.get(k) is wr:  # not since taken over by a reloaded module
                        del owner[k]
                        data.pop(k, None)
            forget(wr)

        modules._drop = drop

    def ref(self, module: object) -> KeyedRef | None:
        """The weak reference to ``module`` whose death drops its entries."""
        return self._modules.ref(module)

    def put(self, module: object, key: Hashable, value: V) -> V:
        wr = self._modules.ref(module)
        if wr is None:
            return value
        owned = self._modules.data.get(id(module))
        if owned is None:
            owned = self._modules.data[id(module)] = set()
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


__all__ = ["IdentityCache", "ModuleCache"]
