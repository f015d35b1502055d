"""``Inspector``: a blob's bytes -> ``SnapshotInfo``, without restoring anything.

What lives here: the outer shape of a blob (header, signature envelope),
limits, and the summaries built from the walk (shared objects, largest
contributors).  The walk itself is ``_walk``; finding code is ``_code``.

Order of work: refuse what is too large; let ``msgpack.unpackb`` validate
the whole document (its C parser rejects truncation, reserved bytes, trailing
data and nesting deeper than 1024, so the walker only ever sees well-formed
msgpack); read the header; verify the signature if a key was given; walk.
Every failure is a ``CorruptSnapshot`` (``SignatureError`` for a signature,
``LimitExceeded`` for a limit) that says what is wrong.
"""

from __future__ import annotations

import hashlib
import hmac
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import msgpack

from .._errors import CorruptSnapshot, LimitExceeded, SignatureError
from ..codec._tags import EXT_HEADER, EXT_SIGNED
from . import _msgpack as mp
from ._code import CodeFinder
from ._model import Contributor, SharedObject, SnapshotInfo
from ._walk import Node, Walker

FORMAT_VERSION = 1
DEFAULT_MAX_SIZE = 256 * 1024 * 1024
"""Blobs larger than this are refused before parsing (as ``loads`` does)."""

DOMINANT = 0.9
"""A value is not listed among the largest contributors when one of its parts
takes at least this share of it: the part (or a part of it) is listed instead."""

_RECURSION_NEEDED = 8_000
"""msgpack nests at most 1024 levels; the walker uses at most three Python
frames per level."""
_recursion_lock = threading.Lock()
_recursion_users = 0
_recursion_saved = 0


@contextmanager
def _deep_enough() -> Iterator[None]:
    """Raise the recursion limit while any inspection runs (pure-Python
    recursion: CPython 3.11+ does not use the C stack for it)."""
    global _recursion_users, _recursion_saved
    with _recursion_lock:
        if _recursion_users == 0:
            _recursion_saved = sys.getrecursionlimit()
            if _recursion_saved < _RECURSION_NEEDED:
                sys.setrecursionlimit(_RECURSION_NEEDED)
        _recursion_users += 1
    try:
        yield
    finally:
        with _recursion_lock:
            _recursion_users -= 1
            if _recursion_users == 0:
                sys.setrecursionlimit(_recursion_saved)


def _header(buf: bytes, pos: int) -> tuple[int, int, int, int]:
    """(ext code, format version, python minor, end) of the header at ``pos``."""
    family, code, start, end = mp.head(buf, pos)
    if family != mp.EXT or code not in (EXT_HEADER, EXT_SIGNED) or end - start != 1:
        raise CorruptSnapshot("not a corosnap blob (no header)")
    version, minor = buf[start] >> 5, buf[start] & 31
    if version != FORMAT_VERSION:
        raise CorruptSnapshot(f"blob format version {version} is not supported by this "
                              f"corosnap (it reads version {FORMAT_VERSION})")
    return code, version, minor, end


class Inspector:
    """Options for reading blobs, and the code it found (kept for the
    inspector's lifetime: inspecting many blobs of the same code with one
    inspector compiles each module once).

    ``key``: the HMAC key of signed blobs; without it a signed blob shows its
    header only.  ``find_code``: look for each frame's code, without importing
    (already imported modules, or the source file compiled but not run), to
    name the slots; False names them by position and touches no file.
    ``resolve``: also import modules whose code was not found otherwise (runs
    their top-level code: only for blobs you trust).  ``path``: directories
    searched for source before ``sys.path``.  ``top``: how many largest
    contributors to list.
    """

    def __init__(self, *, key: bytes | None = None, find_code: bool = True,
                 resolve: bool = False, path: tuple[str, ...] | list[str] = (),
                 max_size: int = DEFAULT_MAX_SIZE, top: int = 10) -> None:
        if key is not None and not isinstance(key, bytes):
            raise TypeError(f"key must be bytes, got {type(key).__name__}")
        self.key = key
        self.find_code = find_code
        self.resolve = resolve
        self.path = tuple(path)
        self.max_size = max_size
        self.top = top
        self._finders: dict[int, CodeFinder] = {}

    def finder(self, minor: int) -> CodeFinder:
        f = self._finders.get(minor)
        if f is None:
            f = self._finders[minor] = CodeFinder(minor, self.find_code, self.resolve, self.path)
        return f

    def inspect(self, blob: bytes | bytearray | memoryview) -> SnapshotInfo:
        """Read ``blob``; CorruptSnapshot (or a subclass) if it cannot be read."""
        if not isinstance(blob, bytes | bytearray | memoryview):
            raise TypeError(f"inspect() takes bytes, got {type(blob).__name__}")
        buf = bytes(blob)
        if len(buf) > self.max_size:
            raise LimitExceeded(f"blob of {len(buf)} bytes exceeds max_size={self.max_size}")
        _validate(buf)
        family, count, pos, _ = mp.head(buf, 0)
        if family != mp.ARRAY or count < 1:
            raise CorruptSnapshot("not a corosnap blob (not an array with a header)")
        code, version, minor, end = _header(buf, pos)
        header_bytes = end - pos
        if code == EXT_HEADER:
            if self.key is not None:
                raise SignatureError("blob is not signed, but a key was given")
            return self._unsigned(buf, count, end, minor, header_bytes)
        # [SIGNED_HEADER, tag, body]
        if count != 3:
            raise CorruptSnapshot("malformed signed blob")
        family, _, tag_start, tag_end = mp.head(buf, end)
        body_family, _, body_start, body_end = mp.head(buf, tag_end)
        if family != mp.BIN or body_family != mp.BIN:
            raise CorruptSnapshot("malformed signed blob")
        body = buf[body_start:body_end]
        if self.key is None:
            return SnapshotInfo(
                size=len(buf), format_version=version, python=f"3.{minor}", signed=True,
                verified=False, picklers={}, header_bytes=header_bytes,
                envelope_bytes=len(buf) - header_bytes - len(body), unread_bytes=len(body),
                frames=[], shared=[], contributors=[],
                warnings=["signed: the body was not read (give the key to verify and "
                          "inspect it)"])
        expected = hmac.new(self.key, body, hashlib.sha256).digest()
        if not hmac.compare_digest(expected, buf[tag_start:tag_end]):
            raise SignatureError("signature does not match: wrong key or tampered blob")
        try:
            _validate(body)
            family, inner_count, pos, _ = mp.head(body, 0)
            if family != mp.ARRAY or inner_count < 1:
                raise CorruptSnapshot("the signed body is not a corosnap blob")
            inner_code, _, inner_minor, inner_end = _header(body, pos)
        except CorruptSnapshot as exc:
            raise CorruptSnapshot(f"signed body: {exc}") from None
        if inner_code != EXT_HEADER:
            raise CorruptSnapshot("nested signed blob")
        info = self._unsigned(body, inner_count, inner_end, inner_minor, inner_end - pos)
        # The signature, the body's wrapping and its own header are the envelope.
        info.size, info.header_bytes = len(buf), header_bytes
        info.envelope_bytes = len(buf) - header_bytes - info.frames[0].bytes
        info.signed, info.verified = True, True
        if inner_minor != minor:
            info.warnings.insert(0, f"the signed header says CPython 3.{minor}, the body "
                                    f"3.{inner_minor}")
        return info

    def _unsigned(self, buf: bytes, count: int, pos: int, minor: int,
                  header_bytes: int) -> SnapshotInfo:
        finder = self.finder(minor)
        walker = Walker(buf, minor, finder)
        root = Node(0, "generator", None, "")
        try:
            with _deep_enough():
                walker.root(pos, count - 1, root)
        except mp.Malformed as exc:  # msgpack validated it: only a walker bug gets here
            raise CorruptSnapshot(f"malformed blob: {exc}") from None
        # The root frame's extent includes the outer array header (and, the
        # header being the array's first item, the header too): take it out.
        frames = walker.frames
        frames[0].bytes -= header_bytes
        frames[0].overhead_bytes = frames[0].bytes - sum(s.bytes for s in frames[0].slots) - (
            frames[0].exception.bytes if frames[0].exception else 0)
        warnings = []
        why = finder.why_not()
        if why:
            warnings.append(why)
        by_note: dict[str, list[str]] = {}
        for name, note in walker.notes.items():
            by_note.setdefault(note, []).append(name)
        for note, names in by_note.items():
            more = f" and {len(names) - 3} more" if len(names) > 3 else ""
            warnings.append(f"code of {', '.join(names[:3])}{more} not found: {note}")
        warnings.extend(walker.warnings)
        if walker.approximate:
            warnings.append("the blob has ext types or tags this corosnap does not know: "
                            "back-references after them may point at the wrong object")
        return SnapshotInfo(
            size=len(buf), format_version=FORMAT_VERSION, python=f"3.{minor}", signed=False,
            verified=None, picklers=dict(sorted(walker.picklers.items())),
            header_bytes=header_bytes, envelope_bytes=0, unread_bytes=0,
            frames=frames, shared=_shared(walker),
            contributors=self._contributors(walker, len(buf)), warnings=warnings)

    def _contributors(self, walker: Walker, size: int) -> list[Contributor]:
        candidates = [n for n in walker.nodes
                      if n.size * 100 >= size and n.ref is None and n.type != "<empty>"
                      and n.biggest < DOMINANT * n.size]
        candidates.sort(key=lambda n: (-n.size, n.start))
        out = []
        for n in candidates[: self.top]:
            loc = walker.location(n)
            if loc is None:
                continue
            out.append(Contributor(loc, n.type, n.size, round(n.size / size, 4) if size else 0.0,
                                   n.summary))
        return out


def _validate(buf: bytes) -> None:
    """msgpack's own parser on the whole document: CorruptSnapshot if it is not one."""
    try:
        msgpack.unpackb(buf, strict_map_key=False)
    except (ValueError, msgpack.UnpackException, TypeError) as exc:
        raise CorruptSnapshot(f"not a valid msgpack document: {exc or type(exc).__name__}") \
            from None
    except RecursionError:
        raise LimitExceeded("msgpack nesting too deep") from None


def _shared(walker: Walker) -> list[SharedObject]:
    out = []
    for index in sorted(walker.refs):
        refs: list[Node] = walker.refs[index]
        target = walker.memo[index]
        where = [loc for loc in (walker.location(r) for r in refs[:8]) if loc is not None]
        out.append(SharedObject(
            id=index, type=target.type, bytes=target.size, refs=len(refs),
            ref_bytes=sum(r.size for r in refs), first=walker.location(target),
            referenced_from=where, summary=target.summary))
    return out


def inspect(blob: bytes | bytearray | memoryview, **options: Any) -> SnapshotInfo:
    """What ``blob`` holds, without restoring it: ``Inspector(**options).inspect(blob)``.

    Nothing in the blob is imported, called, unpickled or restored (unless
    ``resolve=True``, which may import the modules of its frames' code).
    Raises CorruptSnapshot for a blob that cannot be read.
    """
    return Inspector(**options).inspect(blob)


__all__ = ["DEFAULT_MAX_SIZE", "Inspector", "inspect"]
