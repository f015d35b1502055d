"""What would happen to a snapshot on the current code, without resuming it.

What lives here: ``check(blob)``, the heart of ``corosnap check``.  It runs the
whole restore of ``loads(blob, migrate=True)`` as a *dry run*: every frame is
decoded, matched, migrated and validated by the very checks a restore applies
(``_restore.write_frame``), and then *not* written: the fresh generators
are closed in their created state, so no user code of the frames runs (no
``finally`` block, no ``__exit__``).  Decoding values may still import modules
and call the reduce callables a blob names, as ``loads`` does: check trusted
blobs, or pass ``safe=True``.

The verdict is one of:

* ``resumes``: the code of every frame is unchanged;
* ``migrates``: some frames changed, and each has a proven correspondence or
  an explicit migration that passes validation;
* ``needs-migration``: a frame changed and no correspondence could be proven
  (``reason`` says why); an explicit migration, or the old code, resolves it;
* ``refused``: the blob cannot be restored at all (damaged, another CPython
  minor version, a function that no longer exists, ...).

The last two strand the snapshot: ``corosnap check`` exits with status 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .._errors import CorosnapError, NeedsMigration
from ..frames import backend
from ._blob import DEFAULT_MAX_SIZE, open_blob
from ._migrate import FrameOutcome, Session

RESUMES, MIGRATES, NEEDS_MIGRATION, REFUSED = "resumes", "migrates", "needs-migration", "refused"
STRANDED = frozenset({NEEDS_MIGRATION, REFUSED})


@dataclass(frozen=True)
class Verdict:
    """The outcome of :func:`check` for one snapshot."""

    status: str
    reason: str = ""
    frames: tuple[FrameOutcome, ...] = field(default=())
    error: str = ""
    """For ``needs-migration`` and ``refused``: the name of the exception a
    restore raises (``NeedsMigration``, ``CodeMismatch``, ``CorruptSnapshot``, ...)."""

    @property
    def code_changed(self) -> bool:
        """Stranded because of the code (changed or gone), not a damaged blob."""
        return self.error in ("NeedsMigration", "CodeMismatch")

    @property
    def stranded(self) -> bool:
        """Would this snapshot stay unresumable on the current code?"""
        return self.status in STRANDED

    def describe(self) -> str:
        if self.status == RESUMES:
            return "resumes as is"
        if self.status == MIGRATES:
            how = {f.how for f in self.frames}
            kind = "explicitly" if how == {"explicit"} else (
                "automatically" if how == {"automatic"} else "automatically and explicitly")
            return f"migrates {kind}: " + "; ".join(f"{f.function}: {f.detail}"
                                                     for f in self.frames)
        if self.status == NEEDS_MIGRATION:
            return f"needs an explicit migration: {self.reason}"
        return f"refused: {self.reason}"

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "reason": self.reason, "error": self.error,
                "frames": [{"function": f.function, "how": f.how, "detail": f.detail}
                           for f in self.frames]}


def check(data: bytes, *, manifests: Any = None, migrations: Any = None,
          key: bytes | None = None, safe: bool = False, allow: Any = (),
          max_size: int = DEFAULT_MAX_SIZE, buffers: Any = None) -> Verdict:
    """What ``loads(data, migrate=True, ...)`` would do on the current code.
    ``buffers``: the out-of-band buffers of a blob dumped with ``buffer_callback``."""
    from ._api import _check_buffers, _split_table, default

    try:
        snap = default().replace(key=key, safe=safe, allow=allow, max_size=max_size,
                                 migrate=True, manifests=manifests, migrations=migrations)
        backend()  # UnsupportedInterpreter, before anything else
        if buffers is not None:
            buffers = _check_buffers(buffers)
        tree = open_blob(data, snap.key, snap.max_size, buffers)
        table = _split_table(tree)
        assert snap._migrator is not None
        session = Session(snap._migrator, table, dry_run=True)
    except CorosnapError as exc:
        return Verdict(REFUSED, str(exc), (), type(exc).__name__)
    try:
        snap._restore(tree, buffers, session)
    except NeedsMigration as exc:
        return Verdict(NEEDS_MIGRATION, str(exc), tuple(session.outcomes), type(exc).__name__)
    except CorosnapError as exc:
        return Verdict(REFUSED, f"{type(exc).__name__}: {exc}", tuple(session.outcomes),
                       type(exc).__name__)
    finally:
        session.close_fresh()
    if session.outcomes:
        return Verdict(MIGRATES, "", tuple(session.outcomes))
    return Verdict(RESUMES)
