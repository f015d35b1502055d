"""Inspection: what a snapshot blob holds, where its bytes go, how two differ.

``inspect(blob)`` reads a blob without restoring it (nothing is imported,
called or unpickled) and returns a ``SnapshotInfo``: the header, the frame
tree, every slot's type and exact size, shared objects and the largest
values.  ``diff(a, b)`` compares two blobs (or two ``SnapshotInfo``) frame by
frame and slot by slot.  ``render``/``render_diff`` give the plain-text
report the ``corosnap inspect`` / ``corosnap diff`` commands print.
docs/inspect.md documents the JSON form.
"""

from __future__ import annotations

from ._diff import FrameDiff, SlotDiff, SnapshotDiff, diff
from ._inspector import Inspector, inspect
from ._model import (
    SCHEMA_VERSION,
    Contributor,
    FrameInfo,
    Location,
    SharedObject,
    SlotInfo,
    SnapshotInfo,
    ValueInfo,
)
from ._text import render, render_diff

__all__ = [
    "SCHEMA_VERSION",
    "Contributor",
    "FrameDiff",
    "FrameInfo",
    "Inspector",
    "Location",
    "SharedObject",
    "SlotDiff",
    "SlotInfo",
    "SnapshotDiff",
    "SnapshotInfo",
    "ValueInfo",
    "diff",
    "inspect",
    "render",
    "render_diff",
]
