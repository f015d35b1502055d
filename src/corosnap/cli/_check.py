"""``corosnap check TARGET``: what the current code does with every stored snapshot.

For every snapshot in TARGET, without resuming anything (a dry run of
``loads(migrate=True)``, see ``corosnap.snapshot._check``): ``resumes as
is``, ``migrates automatically``, ``needs an explicit migration (why)`` or
``refused (why)``; ``--json`` for machines.  Exit status 1 if any snapshot
would be stranded, so it can gate a deploy.  TARGET is

* a directory of blob files (every file, recursively; hidden ones skipped;
  files that are not corosnap blobs are ignored);
* a store: ``sqlite:PATH`` / ``sqlite:///PATH`` (or a path ending in ``.db``
  / ``.sqlite``), ``dir:PATH`` (a DirectoryStore), ``postgresql://...``,
  ``redis://...``, ``s3://bucket/prefix`` (the server stores, with their
  optional dependencies), or ``module:attribute`` naming a Store instance or
  a function returning one (any backend, yours included).

In a store, a value that is a corosnap blob is checked, and so is the
snapshot of every unfinished scheduler run (``run/...`` records); the
manifests the scheduler keeps (``manifest/...``) are used automatically.
``--manifest FILE`` adds manifests of old versions; ``--import MODULE``
imports a module first (the one that registers explicit migrations).
Decoding values may import modules and call reduce callables, as ``loads``
does: check trusted stores, or pass ``--safe``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Iterator
from typing import Any

from .._errors import CorosnapError
from ._common import add_key_arguments, key_from


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="TARGET",
                        help="a directory of blobs, sqlite:PATH, dir:PATH, or module:attribute "
                             "naming a Store")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--manifest", action="append", default=[], metavar="FILE",
                        help="a manifest of an old code version (repeatable)")
    parser.add_argument("--import", dest="imports", action="append", default=[],
                        metavar="MODULE", help="import MODULE first, e.g. the module that "
                        "registers explicit migrations (repeatable)")
    parser.add_argument("--path", metavar="DIR", action="append", default=[],
                        help="put DIR on sys.path first (repeatable; the current directory "
                             "is always there)")
    parser.add_argument("--safe", action="store_true",
                        help="decode like loads(safe=True): no pickle, globals from --allow only")
    parser.add_argument("--allow", action="append", default=[], metavar="MODULE",
                        help="with --safe: a module whose globals blobs may name (repeatable)")
    add_key_arguments(parser)


NOT_A_BLOB = "not a corosnap blob"


def _is_blob(raw: bytes) -> bool:
    """Does ``raw`` start like a corosnap blob (a msgpack array, then a header ext)?"""
    if not raw:
        return False
    first = raw[0]
    at = 1 if 0x90 <= first <= 0x9F else 3 if first == 0xDC else 5 if first == 0xDD else -1
    return at > 0 and raw[at:at + 2] in (b"\xd4\x43", b"\xd4\x53")


def open_target(target: str) -> tuple[Any, str]:
    """(a Store or a directory path, a description) for a TARGET argument.

    A directory is a directory of blobs (every file read as one), and
    ``sqlite:PATH`` or an existing ``*.db`` file a SQLite store; every other
    form (``sqlite:///``, ``dir:``, ``postgresql://``, ``redis://``,
    ``s3://``, ``module:attribute``) goes through ``corosnap.stores.open_store``,
    the opener the scheduler's worker uses.
    """
    from ..stores import SQLiteStore
    from ..stores._url import is_url, open_store

    if target.startswith("sqlite:") and not target.startswith("sqlite://"):
        return SQLiteStore(target[len("sqlite:"):]), target
    if is_url(target):
        return open_store(target), target
    if os.path.isdir(target):
        return target, f"directory {target}"
    if target.endswith((".db", ".sqlite", ".sqlite3")) and os.path.exists(target):
        return SQLiteStore(target), target
    raise CorosnapError(f"{target!r} is neither a directory of blobs, a store (sqlite:///PATH, "
                        "dir:PATH, postgresql://, redis://, s3://bucket/prefix) nor a "
                        "module:attribute naming a Store")


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
                    yield rel, None, NOT_A_BLOB
        return
    from ..scheduler._records import RUN_PREFIX, decode_run

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



def run(args: argparse.Namespace) -> int:
    from ..migrate import Manifest, Manifests, check
    from ..scheduler._manifests import StoreManifests

    for p in reversed(args.path):
        sys.path.insert(0, p)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for name in args.imports:
        importlib.import_module(name)
    key = key_from(args)
    manifests: list[Any] = [Manifest.load(path) for path in args.manifest]
    source, description = open_target(args.target)
    if not isinstance(source, str):
        manifests.append(StoreManifests(source))
    results: list[dict[str, Any]] = []
    counts: dict[str, int] = {}
    try:
        for name, blob, why in _snapshots(source):
            if blob is None:
                if why == NOT_A_BLOB:
                    continue
                results.append({"key": name, "status": "refused", "reason": why, "frames": [],
                                "text": f"refused: {why}"})
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
            print(f"{r['key']}: {r['text']}")
        parts = [f"{counts.get(s, 0)} {label}" for s, label in (
            ("resumes", "resume as is"), ("migrates", "migrate"),
            ("needs-migration", "need an explicit migration"), ("refused", "refused"))]
        print(f"{len(results)} snapshot(s) in {description}: " + ", ".join(parts)
              + (f"; {stranded} would be stranded" if stranded else ""))
    return 1 if stranded else 0
