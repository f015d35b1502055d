"""Shrink a failing generated module by deleting statements (a developer tool).

Hypothesis shrinks the *choices* that built a module; with dumps/loads run for
every ``k`` that can stop at its five-minute limit with filler left over.  This
reducer works on the source instead: it deletes one statement (a line and the
block under it) at a time, keeps the deletion when the module still compiles
and still fails the same way (same exception type, or a trace mismatch), and
repeats until nothing more can go.  Checks are in-process split runs.

    python tests/_reduce.py failing.py            # prints the reduced source
    python tests/_reduce.py failing.py --args 3,1 --out small.py

``failing.py`` is the module hypothesis printed (the ``main`` entry point).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import _driver  # noqa: E402


def failure(directory: str, source: str, args: tuple[int, ...]) -> str | None:
    """How ``source`` fails a split run (``"mismatch"`` or an exception type), or None."""
    try:
        compile(source, "<reduce>", "exec")
    except SyntaxError:
        return None
    name = _driver.write_module(directory, source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = _driver.import_from(directory, name)
            want = _driver.run_uninterrupted(module, "main", args)
            if not (want.outcome or "").startswith(("return ", "raise ValueError(")):
                return None  # a deletion broke the program itself (NameError, ...)
            for k in range(len(want.yields) + 1):
                if _driver.run_split_local(module, "main", args, k) != want:
                    return "mismatch"
    except Exception as exc:
        return type(exc).__qualname__
    return None


def _indent_of(line: str) -> int:
    return len(line) - len(line.lstrip())


def _delete(lines: list[str], i: int) -> list[str] | None:
    """``lines`` without statement ``i`` and its block (``pass`` if a block empties)."""
    ind = _indent_of(lines[i])
    j = i + 1
    while j < len(lines) and (not lines[j].strip() or _indent_of(lines[j]) > ind):
        j += 1
    out = lines[:i] + lines[j:]
    prev = lines[i - 1] if i else ""
    nxt = out[i] if i < len(out) else ""
    if prev.rstrip().endswith(":") and (not nxt.strip() or _indent_of(nxt) <= _indent_of(prev)):
        out.insert(i, " " * ind + "pass")
        if out == lines:
            return None
    return out


def reduce_source(source: str, args: tuple[int, ...], directory: str) -> str:
    want = failure(directory, source, args)
    if want is None:
        raise SystemExit("this source does not fail a split run")
    lines = source.splitlines()
    changed = True
    while changed:
        changed = False
        for i in range(len(lines) - 1, -1, -1):
            if i >= len(lines) or _indent_of(lines[i]) == 0 or not lines[i].strip():
                continue  # keep module-level definitions and the prelude
            if lines[i].lstrip().startswith(("def ", "async def ", "return ")):
                continue
            cand = _delete(lines, i)
            if cand is None:
                continue
            if failure(directory, "\n".join(cand) + "\n", args) == want:
                lines, changed = cand, True
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("file")
    ap.add_argument("--args", default="0,0", help="main's arguments, comma separated")
    ap.add_argument("--out")
    ns = ap.parse_args()
    with open(ns.file, encoding="utf-8") as f:
        source = f.read()
    args = tuple(int(x) for x in ns.args.split(","))
    with tempfile.TemporaryDirectory() as d:
        small = reduce_source(source, args, d)
    if ns.out:
        with open(ns.out, "w", encoding="utf-8") as f:
            f.write(small)
    print(small)


if __name__ == "__main__":
    main()
