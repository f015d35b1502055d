"""Deploys do not strand suspended work: move snapshots onto edited code.

``corosnap.loads(blob, migrate=True)`` restores a frame whose function changed
since the snapshot when a correspondence between the old and the new code
can be proven, and raises :class:`corosnap.NeedsMigration` saying why when it
cannot.  What is proven, what is refused and how to write an explicit
migration is explained in ``docs/evolution.md``.  This module holds the parts
users touch:

* :class:`Manifest`: the description of one version of a module's code
  (``corosnap manifest mymodule > v1.json``), for snapshots that do not carry
  one (``dumps(obj, migratable=True)`` embeds it instead);
* :func:`migration`, :class:`Migrations`, :class:`Resume`, :class:`OldFrame`:
  explicit migrations for what cannot be proven (a renamed local, a moved
  suspension point, a value the new code needs);
* :func:`check`: what would happen to a snapshot on the current code, without
  resuming anything (the ``corosnap check`` command).
"""

from __future__ import annotations

from typing import Any

from .snapshot._check import Verdict, check
from .snapshot._manifest import Manifest, Manifests
from .snapshot._migrate import (
    EMPTY,
    KEEP,
    FrameOutcome,
    Migrations,
    OldFrame,
    Resume,
    SignatureSource,
    migrations,
)


def migration(func: Any, old_fingerprint: Any) -> Any:
    """Decorator registering an explicit migration in the default registry.

    ``func`` is the function (its new version, or ``"module:qualname"``),
    ``old_fingerprint`` the fingerprint of the version the snapshots were
    taken on (``corosnap inspect`` and ``corosnap check`` show it).  The
    decorated function gets an :class:`OldFrame` and returns a
    :class:`Resume`; the result is validated like any restored frame::

        @corosnap.migrate.migration(job, "9f3c2a1b4d5e6f70")
        def job_v1(old):
            new_locals = dict(old.locals, limit=old.locals.pop("lim"))
            return Resume(line=old.line, locals=new_locals)
    """
    return migrations.register(func, old_fingerprint)


__all__ = [
    "EMPTY",
    "KEEP",
    "FrameOutcome",
    "Manifest",
    "Manifests",
    "Migrations",
    "OldFrame",
    "Resume",
    "SignatureSource",
    "Verdict",
    "check",
    "migration",
    "migrations",
]
