"""Snapshot straight into a store, and restore straight out of one.

These are the two calls most programs need: ``save`` is ``dumps`` then
``put``, ``restore`` is ``get`` then ``loads``.  ``corosnap.dumps`` and
``corosnap.loads`` are looked up when called, not when this module is
imported, so the stores never import the snapshot machinery (and the C frame
extension) unless a snapshot is actually taken.

``store``, ``key`` and the generator are positional-only: ``dumps`` and
``loads`` take a ``key=`` of their own (the HMAC key), and
``save(store, "wf/1", gen, key=secret)`` must pass it through rather than
collide with the store key.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._base import NotFound, Store


def save(
    store: Store,
    key: str,
    gen: object,
    /,
    *,
    expected_version: int | None = None,
    **dumps_kwargs: Any,
) -> int:
    """Snapshot ``gen`` with ``corosnap.dumps(gen, **dumps_kwargs)`` and put it under ``key``.

    Returns the record's new version.  With ``expected_version`` the write is
    a compare-and-set (see :meth:`Store.put`): pass the version you restored
    from, so that two workers resuming the same snapshot cannot both save
    their progress; the second gets :class:`~corosnap.stores.Conflict`.
    The snapshot is taken before the store is touched, so a snapshot error
    leaves the store unchanged.
    """
    blob = importlib.import_module("corosnap").dumps(gen, **dumps_kwargs)
    return store.put(key, blob, expected_version=expected_version)


def restore(store: Store, key: str, /, **loads_kwargs: Any) -> Any:
    """Rebuild the generator or coroutine saved under ``key`` with ``corosnap.loads``.

    Raises :class:`~corosnap.stores.NotFound` (a ``KeyError``) if there is no
    record.  ``loads_kwargs`` go to ``corosnap.loads`` unchanged, e.g.
    ``safe=True`` for a store that others can write to.  Use ``store.get``
    and ``corosnap.loads`` directly when you also need the record's version.
    """
    record = store.get(key)
    if record is None:
        raise NotFound(key, repr(store))
    return importlib.import_module("corosnap").loads(record.blob, **loads_kwargs)
