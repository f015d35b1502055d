"""The job the demo snapshots: an ordinary generator, nothing corosnap-specific."""

from __future__ import annotations

import os


def word_report(lines):
    """Count words line by line, yielding progress; receives commands via send()."""
    counts: dict[str, int] = {}
    for number, line in enumerate(lines, 1):
        for word in line.lower().split():
            counts[word] = counts.get(word, 0) + 1
        command = yield {"line": number, "pid": os.getpid(), "distinct": len(counts)}
        if command == "stop":
            break
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
    return {"lines": number, "top": top}
