"""What ``corosnap.inspect`` returns: plain dataclasses and their JSON form.

What lives here: the result types and nothing that reads a blob.  The JSON
form (``to_dict`` / ``to_json``) is a documented, stable schema
(docs/inspect.md, "JSON schema"): keys are only ever added, never renamed or
given another meaning, and ``schema_version`` changes if that rule is ever
broken.  ``from_dict`` reads it back, so a benchmark harness can store the
JSON and ``diff`` it later.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

SCHEMA_VERSION = 1

SLOT_KINDS = ("local", "cell", "stack", "unknown")
"""``SlotInfo.kind``: an argument or local variable, a cell or free variable,
a value-stack entry, or ``unknown`` when the frame's code was not found (then
the blob alone cannot tell locals from stack entries)."""


@dataclasses.dataclass
class SlotInfo:
    """One local, cell or value-stack entry of a frame."""

    name: str
    """The variable name; ``stack[j]`` for a value-stack entry (bottom first);
    ``#i`` (the i-th field) when the frame's code was not found."""
    kind: str
    """One of SLOT_KINDS."""
    type: str
    """The value's type name, read from the blob (``<empty>`` for an unbound
    local or a NULL stack entry)."""
    bytes: int
    """The exact number of blob bytes this slot takes (a sub-frame included)."""
    summary: str = ""
    """A short, human description of the value (``'alice'``, ``4 items``)."""
    role: str | None = None
    """For a stack entry, what the bytecode keeps there (``an iterator``,
    ``the awaited sub-frame``), when the code is known."""
    frame: int | None = None
    """The index in ``SnapshotInfo.frames`` of the sub-frame this slot holds
    (the ``yield from`` / ``await`` target)."""
    shared: int | None = None
    """When the slot is a back-reference: the index of the shared object
    (``SnapshotInfo.shared[*].id``) it refers to."""


@dataclasses.dataclass
class ValueInfo:
    """A value that is not a slot: a frame's handled exception."""

    type: str
    bytes: int
    summary: str = ""


@dataclasses.dataclass
class FrameInfo:
    """One captured frame (generator or coroutine)."""

    index: int
    module: str
    qualname: str
    """The code's qualified name (``outer.<locals>.inner``); when the code was
    not found and the frame is nested code, the importable function it lives
    in followed by its ``co_consts`` path (``outer<3>``)."""
    fingerprint: str
    """The code fingerprint the blob carries, 16 hex digits."""
    offset: int
    """The resume offset in code units (-1: created, never started)."""
    bytes: int
    """All bytes of this frame, its sub-frames included."""
    overhead_bytes: int
    """Bytes that are not slots or the handled exception: the frame's array
    header, the code reference and the position."""
    code_bytes: int
    """Of ``overhead_bytes``, the code reference (module, qualname, fingerprint)."""
    slots: list[SlotInfo]
    parent: int | None = None
    children: list[int] = dataclasses.field(default_factory=list)
    depth: int = 0
    via: str = "root"
    """``root``; ``delegate`` (the ``yield from`` / ``await`` target of its
    parent); or ``value`` (a generator or coroutine held in a value)."""
    path: str | None = None
    """For ``via == "value"``: where in the parent frame it is held."""
    type: str | None = None
    """``generator``, ``coroutine`` or ``async_generator``; None when the code
    was not found."""
    code_found: str | None = None
    """How the code was found: ``loaded`` (already imported), ``source``
    (compiled from its source file, not imported), ``import`` (imported,
    only with ``resolve=True``), or None."""
    line: int | None = None
    """The source line number of the resume point (the ``def`` line of a
    created frame), when the code was found."""
    source: str | None = None
    """That line's text, stripped."""
    exception: ValueInfo | None = None
    """The exception being handled when suspended inside an ``except`` block."""

    @property
    def name(self) -> str:
        return f"{self.module}.{self.qualname}"


@dataclasses.dataclass
class Location:
    """Where a value sits: frame index, slot name and a path inside the slot
    (``[2]``, ``['key']``, ``.attr``; empty for the slot itself)."""

    frame: int
    slot: str
    path: str = ""

    def __str__(self) -> str:
        return f"#{self.frame} {self.slot}{self.path}"


@dataclasses.dataclass
class SharedObject:
    """An object stored once and referred to again (a back-reference)."""

    id: int
    """Its memo index in the blob."""
    type: str
    bytes: int
    """Bytes of its one full copy."""
    refs: int
    """How many back-references point at it."""
    ref_bytes: int
    """Bytes all those back-references take."""
    first: Location | None
    """Where the full copy is (None for the root frame's generator itself)."""
    referenced_from: list[Location]
    """Where the back-references are (the first 8)."""
    summary: str = ""


@dataclasses.dataclass
class Contributor:
    """One of the largest values in the blob."""

    location: Location
    type: str
    bytes: int
    share: float
    """``bytes / size``."""
    summary: str = ""


@dataclasses.dataclass
class SnapshotInfo:
    """Everything ``corosnap.inspect`` learned about one blob.

    Byte attribution is exact: ``size == header_bytes + envelope_bytes +
    unread_bytes + frames[0].bytes`` (no frames: without it), and every frame's
    ``bytes == overhead_bytes + exception.bytes + sum(slot.bytes)``, where a
    slot holding a sub-frame counts that frame's ``bytes``.
    """

    size: int
    format_version: int
    python: str
    """``3.N``: the CPython version that made the frames."""
    signed: bool
    verified: bool | None
    """Signed blobs: whether the signature was checked (a key was given);
    None for unsigned blobs."""
    picklers: dict[str, int]
    """Values stored with the fallback pickler, by pickler name."""
    header_bytes: int
    envelope_bytes: int
    """Signed blobs: the signature and the wrapping around the body."""
    unread_bytes: int
    """A signed blob inspected without its key: the body, not read."""
    frames: list[FrameInfo]
    shared: list[SharedObject]
    contributors: list[Contributor]
    warnings: list[str]
    """Things a restore would refuse or that the inspector could not follow
    (the blob is still readable)."""
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        """The documented JSON form (plain dicts, lists, str, int, float, bool, None)."""
        return dataclasses.asdict(self)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SnapshotInfo:
        """Read back what ``to_dict`` (or ``corosnap inspect --json``) wrote;
        keys a newer version added are ignored."""
        return _build(cls, d)


def _build(cls: Any, d: Any) -> Any:
    """Construct a dataclass from its ``asdict`` form (nested types by annotation)."""
    if not isinstance(d, dict):
        raise ValueError(f"expected an object for {cls.__name__}, got {type(d).__name__}")
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in d:
            continue
        v = d[f.name]
        sub = _NESTED.get((cls.__name__, f.name))
        if sub is not None and v is not None:
            kind, typ = sub
            v = [_build(typ, x) for x in v] if kind == "list" else _build(typ, v)
        kwargs[f.name] = v
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ValueError(f"not a {cls.__name__}: {exc}") from None


_NESTED: dict[tuple[str, str], tuple[str, Any]] = {
    ("SnapshotInfo", "frames"): ("list", FrameInfo),
    ("SnapshotInfo", "shared"): ("list", SharedObject),
    ("SnapshotInfo", "contributors"): ("list", Contributor),
    ("FrameInfo", "slots"): ("list", SlotInfo),
    ("FrameInfo", "exception"): ("one", ValueInfo),
    ("SharedObject", "first"): ("one", Location),
    ("SharedObject", "referenced_from"): ("list", Location),
    ("Contributor", "location"): ("one", Location),
}

__all__ = ["SCHEMA_VERSION", "SLOT_KINDS", "Contributor", "FrameInfo", "Location",
           "SharedObject", "SlotInfo", "SnapshotInfo", "ValueInfo"]
