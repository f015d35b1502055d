"""Plain-text reports for ``corosnap inspect`` and ``corosnap diff``.

What lives here: formatting only, for an 80-column terminal (``width``);
no colour (pipes, logs and CI output stay clean).  Everything shown comes
from ``SnapshotInfo`` / ``SnapshotDiff``, whose JSON form carries the same
facts for programs.
"""

from __future__ import annotations

import textwrap

from ._diff import SnapshotDiff
from ._model import FrameInfo, SnapshotInfo

MAX_INDENT = 12
"""Frames deeper than this are not indented further (a long recursive chain)."""


def _fit(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters (with ``...`` when cut)."""
    if width <= 0:
        return ""
    if len(text) <= width:
        return text
    return text[: width - 3] + "..." if width > 3 else text[:width]


def _type(name: str, width: int) -> str:
    """A type name for a column: ``module.Class`` loses its module if too wide."""
    if len(name) > width and "." in name:
        name = name.rsplit(".", 1)[1]
    return _fit(name, width)


def _b(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def _frame_title(f: FrameInfo) -> str:
    state = "created" if f.offset == -1 else f"offset {f.offset}"
    kind = f.type or "frame"
    return f"#{f.index} {f.module}.{f.qualname} ({kind}, {state})"


def render(info: SnapshotInfo, width: int = 80) -> str:
    """The ``corosnap inspect`` report."""
    out: list[str] = []
    add = out.append
    signed = "signed" + ("" if info.signed is False else
                         ", signature verified" if info.verified else ", not verified")
    picklers = ", ".join(f"{name} ({n} value{'s' if n != 1 else ''})"
                         for name, n in info.picklers.items()) or "not used"
    add(f"corosnap snapshot: {_b(info.size)} bytes")
    add(f"  format {info.format_version}, CPython {info.python}, "
        f"{signed if info.signed else 'unsigned'}")
    add(_fit(f"  fallback pickler: {picklers}", width))
    parts = [f"header {_b(info.header_bytes)}"]
    if info.envelope_bytes:
        parts.append(f"envelope {_b(info.envelope_bytes)}")  # the signature's
    if info.unread_bytes:
        parts.append(f"body (not read) {_b(info.unread_bytes)}")
    if info.frames:
        parts.append(f"frames {_b(info.frames[0].bytes)}")
    # One line when it fits the width, else continued under the first part
    # (a signed blob of a megabyte or more, not verified, needs two).
    line = "  bytes: "
    for i, part in enumerate(parts):
        piece = part if i == 0 else f" + {part}"
        if i and len(line) + len(piece) > width:
            add(line)
            line = f"         + {part}"
        else:
            line += piece
    total = f" = {_b(info.size)}"
    if len(line) + len(total) > width:
        add(line)
        line = "       "
    add(line + total)
    if info.frames:
        add("")
        add("frames, outermost first")
        for f in info.frames:
            _render_frame(out, f, info.size, width)
    if info.shared:
        add("")
        add("shared objects (stored once, referred to again)")
        for s in info.shared:
            first = str(s.first) if s.first is not None else "the root frame"
            refs = ", ".join(str(loc) for loc in s.referenced_from)
            hidden = s.refs - len(s.referenced_from)
            more = f", +{hidden}" if hidden > 0 else ""
            add(_fit(f"  #{s.id} {s.type}, {_b(s.bytes)} B, at {first}", width))
            add(_fit(f"      {s.refs} reference{'s' if s.refs != 1 else ''} "
                     f"({_b(s.ref_bytes)} B): {refs}{more}", width))
    if info.contributors:
        add("")
        add("largest values")
        add(f"  {'bytes':>9} {'share':>6}  where / type")
        for c in info.contributors:
            text = f"{c.location} {c.type}" + (f" ({c.summary})" if c.summary else "")
            add(_fit(f"  {_b(c.bytes):>9} {_pct(c.bytes, info.size):>6}  {text}", width))
    if info.warnings:
        add("")
        for w in info.warnings:
            add(textwrap.fill(f"warning: {w}", width, subsequent_indent="  ",
                              break_on_hyphens=False))
    return "\n".join(out) + "\n"


def _render_frame(out: list[str], f: FrameInfo, size: int, width: int) -> None:
    ind = "  " * min(f.depth, MAX_INDENT // 2)
    title = _frame_title(f)
    right = f"{_b(f.bytes)} B {_pct(f.bytes, size):>6}"
    room = width - len(ind) - len(right) - 1
    out.append(f"{ind}{_fit(title, room):<{room}} {right}")
    sub = ind + "   "
    held = ""
    if f.via == "value" and f.path:
        held = f", held in #{f.parent} {f.path}"
    found = {"loaded": "loaded module", "source": "source file, not imported",
             "import": "imported"}.get(f.code_found or "", "not found")
    out.append(_fit(f"{sub}fingerprint {f.fingerprint}, code: {found}{held}", width))
    if f.line is not None:
        out.append(_fit(f"{sub}line {f.line}: {f.source or ''}", width))
    # slot table: name, kind, type, value, bytes
    name_w, kind_w, type_w, bytes_w = 14, 8, 18, 11  # 11: up to "268,435,456"
    value_w = width - len(sub) - name_w - kind_w - type_w - bytes_w - 4
    if value_w < 8:
        value_w = 8
    for s in f.slots:
        value = s.summary
        if s.role and s.frame is None:
            value = f"{value} [{s.role}]" if value else f"[{s.role}]"
        out.append(f"{sub}{_fit(s.name, name_w):<{name_w}} {s.kind:<{kind_w}}"
                   f"{_type(s.type, type_w):<{type_w}} {_fit(value, value_w):<{value_w}} "
                   f"{_b(s.bytes):>{bytes_w}}")
    if f.exception is not None:
        e = f.exception
        out.append(f"{sub}{'(handling)':<{name_w}} {'':<{kind_w}}"
                   f"{_type(e.type, type_w):<{type_w}} {_fit(e.summary, value_w):<{value_w}} "
                   f"{_b(e.bytes):>{bytes_w}}")
    label = f"(frame overhead: header, code reference {_b(f.code_bytes)} B, position)"
    room = width - len(sub) - bytes_w - 1
    out.append(f"{sub}{_fit(label, room):<{room}} {_b(f.overhead_bytes):>{bytes_w}}")


def render_diff(d: SnapshotDiff, name_a: str = "A", name_b: str = "B", width: int = 80,
                all_slots: bool = False) -> str:
    """The ``corosnap diff`` report: changed frames and slots (all with ``all_slots``)."""
    out: list[str] = []
    add = out.append
    pct = f" ({'+' if d.delta >= 0 else ''}{_pct(d.delta, d.size_a)})" if d.size_a else ""
    add(_fit(f"{name_a}: {_b(d.size_a)} bytes   {name_b}: {_b(d.size_b)} bytes   "
             f"change: {d.delta:+,}{pct}", width))
    if d.envelope_delta:
        add(f"  header and envelope: {d.envelope_delta:+,}")
    num_w = 9
    head_w = width - 3 * (num_w + 1)
    add("")
    add(f"{'frame / slot':<{head_w}}{'before':>{num_w}} {'after':>{num_w}} {'change':>{num_w}}")
    shown = 0
    for f in d.frames:
        slots = [s for s in f.slots if all_slots or s.status != "same"]
        over = (f.overhead_b or 0) - (f.overhead_a or 0)
        if f.status == "same" and not slots and not all_slots:
            continue
        shown += 1
        ind = "  " * min(f.depth, MAX_INDENT // 2)
        where = f"#{f.index_a if f.index_a is not None else '-'}/" \
                f"{f.index_b if f.index_b is not None else '-'}"
        title = f"{ind}{where} {f.name}" + ("" if f.status in ("same", "grown", "shrunk")
                                           else f" ({f.status})")
        add(f"{_fit(title, head_w - 1):<{head_w}}{_b(f.bytes_a):>{num_w}} "
            f"{_b(f.bytes_b):>{num_w}} {f.delta:>+{num_w},}")
        for s in slots:
            types = s.type_a if s.type_a == s.type_b or s.type_b is None else (
                s.type_b if s.type_a is None else f"{s.type_a}->{s.type_b}")
            label = f"{ind}   {s.name} ({s.kind}, {types})"
            if s.status in ("added", "removed"):
                label += f" {s.status}"
            add(f"{_fit(label, head_w - 1):<{head_w}}{_b(s.bytes_a):>{num_w}} "
                f"{_b(s.bytes_b):>{num_w}} {s.delta:>+{num_w},}")
        if over and f.overhead_a is not None and f.overhead_b is not None:
            add(f"{_fit(f'{ind}   (frame overhead)', head_w - 1):<{head_w}}"
                f"{_b(f.overhead_a):>{num_w}} {_b(f.overhead_b):>{num_w}} {over:>+{num_w},}")
    if not shown:
        add("(no frame or slot changed size)")
    return "\n".join(out) + "\n"


__all__ = ["render", "render_diff"]
