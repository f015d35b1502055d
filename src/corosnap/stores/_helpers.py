"""Snapshot straight into a store, and restore straight out of one.

These are the two calls most programs need: ``save`` is ``dumps`` then
``put``, ``restore`` is ``get`` then ``loads``.  ``corosnap.dumps`` and
``corosnap.loads`` are looked up when called, not when this module is
imported, so that whatever ``corosnap.dumps``/``loads`` are at that moment
(the C entries, or a stand-in a test puts there) do the work.

Their keywords are those of ``dumps`` and ``loads``, spelt out (same names,
types and defaults: ``snapshot/_api.py``), so that a type checker sees a
wrong option or value and a misspelt keyword is a TypeError naming it at the
call.  Only the options given a value other than their default are passed
on, so ``save(store, store_key, gen)`` is ``dumps(gen)``, the C engine's fast
entry.

``store``, the store key and the generator are positional-only: ``dumps``
and ``loads`` take a ``key=`` of their own (the HMAC key), and
``save(store, "wf/1", gen, key=secret)`` passes it through rather than
collide with the store key (named ``store_key`` here for that reason).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import Any

from ..snapshot._api import BufferCallback, Pickler
from ..snapshot._blob import DEFAULT_MAX_SIZE
from ..snapshot._migrate import Migrations
from ._base import NotFound, Store


def save(
    store: Store,
    store_key: str,
    gen: object,
    /,
    *,
    expected_version: int | None = None,
    key: bytes | None = None,
    pickler: Pickler | None = None,
    buffer_callback: BufferCallback | None = None,
    migratable: bool = False,
) -> int:
    """Snapshot ``gen`` with ``corosnap.dumps`` and put it under ``store_key``.

    Returns the record's new version.  With ``expected_version`` the write is
    a compare-and-set (see :meth:`Store.put`): pass the version you restored
    from, so that two workers resuming the same snapshot cannot both save
    their progress; the second gets :class:`~corosnap.stores.Conflict`.
    ``key``, ``pickler``, ``buffer_callback`` and ``migratable`` are
    ``corosnap.dumps``'s (``key`` signs the blob with HMAC-SHA256; it is not
    the store key); those given a value other than their default are passed
    on to it.  The snapshot is taken before the store is touched, so a
    snapshot error leaves the store unchanged.
    """
    options = {name: value for name, value, default in (
        ("key", key, None), ("pickler", pickler, None),
        ("buffer_callback", buffer_callback, None), ("migratable", migratable, False),
    ) if value is not default}
    blob = importlib.import_module("corosnap").dumps(gen, **options)
    return store.put(store_key, blob, expected_version=expected_version)


def restore(
    store: Store,
    store_key: str,
    /,
    *,
    key: bytes | None = None,
    safe: bool = False,
    allow: Iterable[str] = (),
    max_size: int = DEFAULT_MAX_SIZE,
    buffers: Iterable[Any] | None = None,
    migrate: bool = False,
    manifests: Any = None,
    migrations: Migrations | None = None,
) -> Any:
    """Rebuild the generator or coroutine saved under ``store_key`` with ``corosnap.loads``.

    Raises :class:`~corosnap.stores.NotFound` (a ``KeyError``) if there is no
    record.  ``key``, ``safe``, ``allow``, ``max_size``, ``buffers``,
    ``migrate``, ``manifests`` and ``migrations`` are ``corosnap.loads``'s
    (``key`` verifies the blob's HMAC-SHA256 signature; it is not the store
    key), e.g. ``safe=True`` for a store that others can write to; those
    given a value other than their default are passed on to it.  Use
    ``store.get`` and ``corosnap.loads`` directly when you also need the
    record's version.
    """
    record = store.get(store_key)
    if record is None:
        raise NotFound(store_key, repr(store))
    options = {name: value for name, value, default in (
        ("key", key, None), ("safe", safe, False), ("allow", allow, ()),
        ("max_size", max_size, DEFAULT_MAX_SIZE), ("buffers", buffers, None),
        ("migrate", migrate, False), ("manifests", manifests, None),
        ("migrations", migrations, None),
    ) if value is not default}
    return importlib.import_module("corosnap").loads(record.blob, **options)
