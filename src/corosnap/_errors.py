"""The exception hierarchy of corosnap.

Every error the library raises on purpose derives from :class:`CorosnapError`,
so a caller can catch one class.  Messages name the thing at fault: the
function (module and qualname), the local variable or stack slot, and the type
that could not be handled, so a user knows what to change.
"""

from __future__ import annotations


class CorosnapError(Exception):
    """Base class of every error raised by corosnap."""


class UnsupportedInterpreter(CorosnapError):
    """This interpreter (implementation, version or build) cannot be snapshotted."""


class SnapshotError(CorosnapError):
    """The object, or a value it holds, cannot be captured."""


class RestoreError(CorosnapError):
    """A snapshot cannot be turned back into a live object."""


class CodeMismatch(RestoreError):
    """The code named by the snapshot is missing or behaves differently now."""


class NeedsMigration(CodeMismatch):
    """The code changed and no correspondence could be proven (``loads(migrate=True)``).

    The message says why (a suspension point with no counterpart, a new local
    read before it is assigned, ...).  An explicit migration registered for
    the function and the old fingerprint (``corosnap.migrate.migration``), or
    the old code, resolves it.
    """


class CorruptSnapshot(RestoreError):
    """The blob is truncated, damaged, forged or not a corosnap blob at all."""


class SignatureError(CorruptSnapshot):
    """The blob's HMAC tag is missing, or does not match the key."""


class UnsafeSnapshot(RestoreError):
    """Safe mode refused the blob: it needs the pickler or a global outside ``allow``."""


class LimitExceeded(CorruptSnapshot):
    """The blob exceeds a configured limit on untrusted input (size, depth, length)."""


__all__ = [
    "CorosnapError",
    "UnsupportedInterpreter",
    "SnapshotError",
    "RestoreError",
    "CodeMismatch",
    "NeedsMigration",
    "CorruptSnapshot",
    "SignatureError",
    "UnsafeSnapshot",
    "LimitExceeded",
]
