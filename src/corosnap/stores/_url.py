"""Store specs: the one place a URL, a directory or ``module:attr`` becomes a Store.

What lives here: ``open_store(spec, options)``, shared by every command that
takes a store on its command line (the scheduler's worker,
``corosnap check``), so that each accepts the same forms with the same
messages.  The server-backed stores (and their client libraries) are
imported only when their URL is used; a missing extra is named.

============================== ============================================
``sqlite:///runs.db``          ``SQLiteStore("runs.db")`` (relative path)
``sqlite:////var/lib/runs.db`` ``SQLiteStore("/var/lib/runs.db")``
``/var/lib/runs`` or ``dir:…`` ``DirectoryStore(path)`` (also ``dir://…``)
``postgresql://user@host/db``  ``PostgresStore(url)`` (``corosnap[postgres]``)
``redis://host:6379/0``        ``RedisStore(url)`` (``corosnap[redis]``)
``s3://bucket/prefix``         ``S3Store("bucket", "prefix")`` with boto3's
                               default client (``AWS_*`` environment
                               variables, ``AWS_ENDPOINT_URL`` for an
                               S3-compatible server) (``corosnap[s3]``)
``package.module:attr``        that object: a ``Store``, or a function
                               returning one (called with the options)
============================== ============================================

``options`` are keyword arguments of the store's constructor.  Errors are
``BadStoreSpec`` (a ``StoreError``), saying what is wrong with the spec.
"""

from __future__ import annotations

import importlib
import os
import re
from typing import Any

from ._base import Store, StoreError
from ._directory import DirectoryStore
from ._sqlite import SQLiteStore

TARGET = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")
"""``package.module:attr`` (attributes may be dotted)."""


class BadStoreSpec(StoreError, ValueError):
    """A store spec (URL, path or ``module:attr``) that names no usable store."""


def _server_store(name: str, extra: str) -> Any:
    """``corosnap.stores.<name>``, or BadStoreSpec saying which extra to install."""
    stores = importlib.import_module("corosnap.stores")
    try:
        return getattr(stores, name)
    except (AttributeError, ImportError) as exc:
        raise BadStoreSpec(
            f"{name} is not available ({exc}); install it with: pip install 'corosnap[{extra}]'"
        ) from exc


def load_object(target: str) -> Any:
    """The object named ``package.module:attr`` (attributes may be dotted)."""
    module_name, _, attr = target.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise BadStoreSpec(
            f"cannot import module {module_name!r} (from {target!r}): {exc}"
        ) from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise BadStoreSpec(f"module {module_name!r} has no attribute {attr!r}") from None
    return obj


def is_url(spec: str) -> bool:
    """Does ``spec`` name a store by URL, ``dir:`` or ``module:attr`` (not a bare path)?"""
    return ("://" in spec or spec.startswith("dir:")
            or bool(TARGET.fullmatch(spec)) and not os.path.exists(spec))


def open_store(spec: str, options: dict[str, Any] | None = None) -> Store:
    """The store a spec names (see the module docstring for the forms); a
    bare path is a DirectoryStore."""
    options = dict(options or {})
    if "://" in spec:
        scheme = spec.split("://", 1)[0].lower()
        if scheme == "sqlite":
            path = spec[len("sqlite:///") :] if spec.lower().startswith("sqlite:///") else ""
            if not path:
                raise BadStoreSpec(
                    f"a SQLite store is sqlite:///relative/path or sqlite:////absolute/path, "
                    f"not {spec!r}"
                )
            return SQLiteStore(path, **options)
        if scheme in ("postgresql", "postgres"):
            return _server_store("PostgresStore", "postgres")(spec, **options)
        if scheme in ("redis", "rediss", "unix"):
            return _server_store("RedisStore", "redis")(spec, **options)
        if scheme == "s3":
            bucket, _, prefix = spec[len("s3://") :].partition("/")
            if not bucket:
                raise BadStoreSpec(f"an S3 store is s3://bucket/prefix, not {spec!r}")
            return _server_store("S3Store", "s3")(bucket, prefix, **options)
        if scheme in ("dir", "file"):
            return DirectoryStore(spec.split("://", 1)[1], **options)
        raise BadStoreSpec(
            f"unknown store URL scheme {scheme!r} in {spec!r}: use sqlite:///, postgresql://, "
            "redis://, s3://, a directory, or module:attr"
        )
    if spec.startswith("dir:"):
        return DirectoryStore(spec[len("dir:") :], **options)
    if TARGET.fullmatch(spec) and not os.path.exists(spec):
        obj = load_object(spec)
        if callable(obj) and not isinstance(obj, Store):
            obj = obj(**options)
        elif options:
            raise BadStoreSpec(f"{spec} is a store already: it takes no store options")
        if not isinstance(obj, Store):
            raise BadStoreSpec(f"{spec} is a {type(obj).__name__}, not a corosnap Store")
        return obj
    if spec in ("memory:", ":memory:"):
        raise BadStoreSpec("a memory store lives in one process: name a shared store")
    return DirectoryStore(spec, **options)


__all__ = ["TARGET", "BadStoreSpec", "is_url", "load_object", "open_store"]
