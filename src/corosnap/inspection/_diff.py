"""``diff(a, b)``: which frames and slots of a snapshot grew or shrank.

What lives here: matching two ``SnapshotInfo`` frame by frame and slot by
slot, for size regressions.  A frame is matched by its place in the tree
(the chain of ``module.qualname`` from the root, how it is held: as the
``yield from`` / ``await`` target or in a value at a path) so the same
workload captured by two versions of a program lines up even when the resume
offsets differ; a slot by its name within the frame (``stack[j]`` and ``#i``
are names too).  Nothing here reads a blob: both sides are inspected first.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from ._inspector import Inspector
from ._model import FrameInfo, SnapshotInfo


def _status(a: int | None, b: int | None) -> str:
    if a is None:
        return "added"
    if b is None:
        return "removed"
    return "grown" if b > a else "shrunk" if b < a else "same"


@dataclasses.dataclass
class SlotDiff:
    name: str
    kind: str
    type_a: str | None
    type_b: str | None
    bytes_a: int | None
    """None: the slot is not in A."""
    bytes_b: int | None
    delta: int
    status: str
    """``grown``, ``shrunk``, ``same``, ``added`` (only in B) or ``removed``."""


@dataclasses.dataclass
class FrameDiff:
    module: str
    qualname: str
    index_a: int | None
    """The frame's index in A's ``frames`` (None: only in B)."""
    index_b: int | None
    depth: int
    bytes_a: int | None
    bytes_b: int | None
    delta: int
    status: str
    overhead_a: int | None
    overhead_b: int | None
    offset_a: int | None
    offset_b: int | None
    slots: list[SlotDiff]

    @property
    def name(self) -> str:
        return f"{self.module}.{self.qualname}"


@dataclasses.dataclass
class SnapshotDiff:
    """A frame-by-frame, slot-by-slot comparison of two snapshots.

    ``frames`` lists every frame of A in A's order (matched or removed),
    then the frames only B has; each frame lists all its slots (``status``
    says which changed).
    """

    size_a: int
    size_b: int
    delta: int
    envelope_delta: int
    """Change in header, signature envelope and unread bytes together."""
    frames: list[FrameDiff]

    def changed(self) -> list[tuple[FrameDiff, SlotDiff | None]]:
        """Every changed frame (with ``None``) and slot, largest change first."""
        out: list[tuple[FrameDiff, SlotDiff | None]] = []
        for f in self.frames:
            if f.status != "same":
                out.append((f, None))
            out.extend((f, s) for s in f.slots if s.status != "same")
        out.sort(key=lambda fs: -abs(fs[1].delta if fs[1] is not None else fs[0].delta))
        return out

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)


def _keys(info: SnapshotInfo) -> list[tuple[Any, ...]]:
    """A place-in-the-tree key per frame (see the module docstring)."""
    keys: list[tuple[Any, ...]] = []
    seen: dict[tuple[Any, ...], int] = {}
    for f in info.frames:
        parent = keys[f.parent] if f.parent is not None and f.parent < len(keys) else ()
        where = f.path if f.via == "value" else ""
        key: tuple[Any, ...] = (*parent, (f.via, where, f.module, f.qualname))
        n = seen.get(key, 0)
        seen[key] = n + 1
        keys.append((*key, n) if n else key)
    return keys


def _slot_diffs(a: FrameInfo | None, b: FrameInfo | None) -> list[SlotDiff]:
    slots_a = {s.name: s for s in a.slots} if a is not None else {}
    slots_b = {s.name: s for s in b.slots} if b is not None else {}
    names = list(slots_a) + [n for n in slots_b if n not in slots_a]
    out = []
    for name in names:
        sa, sb = slots_a.get(name), slots_b.get(name)
        ba = sa.bytes if sa is not None else None
        bb = sb.bytes if sb is not None else None
        kind = (sb or sa).kind  # type: ignore[union-attr]
        out.append(SlotDiff(name, kind, sa.type if sa else None, sb.type if sb else None,
                            ba, bb, (bb or 0) - (ba or 0), _status(ba, bb)))
    return out


def _as_info(x: Any, inspector: Inspector) -> SnapshotInfo:
    if isinstance(x, SnapshotInfo):
        return x
    if isinstance(x, dict):
        return SnapshotInfo.from_dict(x)
    return inspector.inspect(x)


def diff(a: Any, b: Any, **options: Any) -> SnapshotDiff:
    """Compare two snapshots: each a blob (bytes), a ``SnapshotInfo`` or its
    ``to_dict()`` form.  ``options`` are ``Inspector``'s (one inspector reads
    both blobs)."""
    inspector = Inspector(**options)
    ia, ib = _as_info(a, inspector), _as_info(b, inspector)
    keys_a, keys_b = _keys(ia), _keys(ib)
    index_b = {k: i for i, k in enumerate(keys_b)}
    matched_b: set[int] = set()
    frames: list[FrameDiff] = []
    order: list[tuple[int | None, int | None]] = [
        (i, index_b.get(k)) for i, k in enumerate(keys_a)]
    for _, j in order:
        if j is not None:
            matched_b.add(j)
    order += [(None, j) for j in range(len(keys_b)) if j not in matched_b]
    for i, j in order:
        fa = ia.frames[i] if i is not None else None
        fb = ib.frames[j] if j is not None else None
        f = fb or fa
        assert f is not None
        ba = fa.bytes if fa else None
        bb = fb.bytes if fb else None
        frames.append(FrameDiff(
            module=f.module, qualname=f.qualname, index_a=i, index_b=j, depth=f.depth,
            bytes_a=ba, bytes_b=bb, delta=(bb or 0) - (ba or 0), status=_status(ba, bb),
            overhead_a=fa.overhead_bytes if fa else None,
            overhead_b=fb.overhead_bytes if fb else None,
            offset_a=fa.offset if fa else None, offset_b=fb.offset if fb else None,
            slots=_slot_diffs(fa, fb)))

    def envelope(info: SnapshotInfo) -> int:
        return info.header_bytes + info.envelope_bytes + info.unread_bytes

    return SnapshotDiff(size_a=ia.size, size_b=ib.size, delta=ib.size - ia.size,
                        envelope_delta=envelope(ib) - envelope(ia), frames=frames)


__all__ = ["FrameDiff", "SlotDiff", "SnapshotDiff", "diff"]
