"""The ``corosnap manifest`` and ``corosnap check`` commands.

``corosnap manifest MODULE [MODULE ...]`` prints the manifest (JSON) of the
current version of each module: the description of its code that lets
snapshots taken now migrate later (``loads(blob, migrate=True,
manifests=...)``).  Keep one per deployed version::

    corosnap manifest billing > manifests/billing-v1.json

``corosnap check TARGET`` says, for every snapshot in TARGET, what the current
code would do with it: ``resumes as is``, ``migrates automatically``,
``needs an explicit migration (why)`` or ``refused (why)``, without resuming
anything; ``--json`` for machines; exit status 1 if any snapshot would be
stranded, so it can gate a deploy.  TARGET is

* a directory of blob files (every file, recursively; hidden ones skipped);
* a store: ``sqlite:PATH`` (or a path ending in ``.db`` / ``.sqlite``),
  ``dir:PATH`` (a DirectoryStore), or ``module:attribute`` naming a Store
  instance or a function returning one (any backend, yours included).

In a store, a value that is a corosnap blob is checked, and so is the
snapshot of every unfinished scheduler run (``run/...`` records); the
manifests the scheduler keeps (``manifest/...``) are used automatically.
``--manifest FILE`` adds manifests; ``--import MODULE`` imports modules that
register explicit migrations (``corosnap.migrate.migration``).

The two entry points, ``manifest_command(argv)`` and ``check_command(argv)``,
return an exit status; ``main(argv)`` dispatches on the first word.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Iterator
from typing import Any

_PROG = "corosnap"


def manifest_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog=f"{_PROG} manifest",
        description="Print the manifest (JSON) of the current version of MODULE(s): what "
                    "snapshots taken now need to migrate to later versions.")
    parser.add_argument("modules", nargs="+", metavar="MODULE")
    parser.add_argument("-o", "--output", help="write to this file instead of stdout")
    parser.add_argument("--path", action="append", default=[],
                        help="a directory to put on sys.path first (repeatable)")
    args = parser.parse_args(argv)
    for p in reversed(args.path):
        sys.path.insert(0, p)
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    from .migrate import Manifest

    out = Manifest()
    for name in args.modules:
        try:
            out.update(Manifest.of_module(name))
        except ImportError as exc:
            print(f"{_PROG} manifest: cannot import {name!r}: {exc}", file=sys.stderr)
            return 2
    text = out.dumps() + "\n"
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


def _is_blob(raw: bytes) -> bool:
    """Does ``raw`` start like a corosnap blob (a msgpack array, then a header ext)?"""
    if not raw:
        return False
    first = raw[0]
    at = 1 if 0x90 <= first <= 0x9F else 3 if first == 0xDC else 5 if first == 0xDD else -1
    return at > 0 and raw[at:at + 2] in (b"\xd4\x43", b"\xd4\x53")


def open_target(target: str) -> tuple[Any, str]:
    """(a Store or a directory path, a description) for a TARGET argument."""
    from .stores import DirectoryStore, SQLiteStore, Store

    if target.startswith("sqlite:"):
        return SQLiteStore(target[len("sqlite:"):]), target
    if target.startswith("dir:"):
        return DirectoryStore(target[len("dir:"):]), target
    if os.path.isdir(target):
        return target, f"directory {target}"
    if target.endswith((".db", ".sqlite", ".sqlite3")) and os.path.exists(target):
        return SQLiteStore(target), target
    module, sep, attr = target.partition(":")
    if sep and module and attr and "/" not in module:
        try:
            obj: Any = importlib.import_module(module)
        except ImportError as exc:
            raise SystemExit(f"{_PROG} check: cannot import {module!r}: {exc}") from None
        for part in attr.split("."):
            try:
                obj = getattr(obj, part)
            except AttributeError:
                raise SystemExit(f"{_PROG} check: {module} has no attribute {attr!r}") from None
        if not isinstance(obj, Store) and callable(obj):
            obj = obj()
        if not isinstance(obj, Store):
            raise SystemExit(f"{_PROG} check: {target} is a {type(obj).__name__}, not a "
                             "corosnap Store (or a function returning one)")
        return obj, target
    raise SystemExit(f"{_PROG} check: {target!r} is neither a directory, a store "
                     "(sqlite:PATH, dir:PATH) nor a module:attribute naming a Store")


def _snapshots(source: Any) -> Iterator[tuple[str, bytes | None, str]]:
    """(name, blob or None, why not) for every snapshot in a directory or store."""
    if isinstance(source, str):
        for root, dirs, files in os.walk(source):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if name.startswith("."):
                    continue
                path = os.path.join(root, name)
                with open(path, "rb") as f:
                    raw = f.read()
                rel = os.path.relpath(path, source)
                if _is_blob(raw):
                    yield rel, raw, ""
                else:
                    yield rel, None, "not a corosnap blob"
        return
    from .scheduler._records import RUN_PREFIX, decode_run

    for key in sorted(source.keys("")):
        record = source.get(key)
        if record is None:
            continue
        raw = record.blob
        if _is_blob(raw):
            yield key, raw, ""
        elif key.startswith(RUN_PREFIX):
            try:
                rec = decode_run(key[len(RUN_PREFIX):], raw)
            except Exception as exc:  # noqa: BLE001 - reported as refused
                yield key, None, f"unreadable run record: {exc}"
                continue
            if rec.snapshot is not None and rec.state != "done" and rec.state != "failed":
                yield key, rec.snapshot, ""


def check_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog=f"{_PROG} check",
        description="Say what the current code does with every snapshot in TARGET: resumes "
                    "as is / migrates automatically / needs an explicit migration / refused. "
                    "Exit status 1 if any snapshot would be stranded.")
    parser.add_argument("target", metavar="TARGET",
                        help="a directory of blobs, sqlite:PATH, dir:PATH, or module:attribute "
                             "naming a Store")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--manifest", action="append", default=[], metavar="FILE",
                        help="a manifest of an old code version (repeatable)")
    parser.add_argument("--import", dest="imports", action="append", default=[],
                        metavar="MODULE", help="import MODULE first, e.g. the module that "
                        "registers explicit migrations (repeatable)")
    parser.add_argument("--path", action="append", default=[],
                        help="a directory to put on sys.path first (repeatable)")
    parser.add_argument("--safe", action="store_true",
                        help="decode like loads(safe=True): no pickle, globals from --allow only")
    parser.add_argument("--allow", action="append", default=[], metavar="MODULE",
                        help="with --safe: a module (prefix) whose globals blobs may name")
    parser.add_argument("--key-file", help="HMAC key of signed blobs, read from this file")
    args = parser.parse_args(argv)
    for p in reversed(args.path):
        sys.path.insert(0, p)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for name in args.imports:
        importlib.import_module(name)
    from .migrate import Manifest, Manifests, check
    from .scheduler._manifests import StoreManifests

    source, description = open_target(args.target)
    manifests: list[Any] = [Manifest.load(path) for path in args.manifest]
    if not isinstance(source, str):
        manifests.append(StoreManifests(source))
    key = None
    if args.key_file:
        with open(args.key_file, "rb") as f:
            key = f.read().strip()
    results: list[dict[str, Any]] = []
    counts: dict[str, int] = {}
    try:
        for name, blob, why in _snapshots(source):
            if blob is None:
                if why == "not a corosnap blob":
                    continue
                results.append({"key": name, "status": "refused", "reason": why, "frames": []})
                counts["refused"] = counts.get("refused", 0) + 1
                continue
            verdict = check(blob, manifests=Manifests(list(manifests)), key=key,
                            safe=args.safe, allow=tuple(args.allow))
            results.append({"key": name, **verdict.to_json(), "text": verdict.describe()})
            counts[verdict.status] = counts.get(verdict.status, 0) + 1
    finally:
        if not isinstance(source, str):
            source.close()
    stranded = counts.get("needs-migration", 0) + counts.get("refused", 0)
    if args.json:
        json.dump({"target": description, "snapshots": results, "summary": counts,
                   "stranded": stranded}, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        for r in results:
            print(f"{r['key']}: {r.get('text') or r['status'] + ': ' + r['reason']}")
        total = len(results)
        parts = [f"{counts.get(s, 0)} {label}" for s, label in (
            ("resumes", "resume as is"), ("migrates", "migrate"),
            ("needs-migration", "need an explicit migration"), ("refused", "refused"))]
        print(f"{total} snapshot(s) in {description}: " + ", ".join(parts))
    return 1 if stranded else 0


COMMANDS = {"manifest": manifest_command, "check": check_command}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: {_PROG} {{{','.join(COMMANDS)}}} ...", file=sys.stderr)
        return 2
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
