"""``corosnap manifest MODULE...``: the description of the current code version.

Prints the manifest (JSON, ``corosnap.migrate.Manifest``) of each module: the
local names and suspension points' identities of every function, which lets
snapshots taken on this version migrate to later ones without carrying the
description themselves (``loads(blob, migrate=True, manifests=...)``).  Keep
one per deployed version::

    corosnap manifest billing > manifests/billing-v1.json
"""

from __future__ import annotations

import argparse
import os
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("modules", nargs="+", metavar="MODULE",
                        help="the modules to describe (imported: their top-level code runs)")
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="write to FILE instead of standard output")
    parser.add_argument("--path", metavar="DIR", action="append", default=[],
                        help="put DIR on sys.path first (repeatable; the current directory "
                             "is always there)")


def run(args: argparse.Namespace) -> int:
    from ..migrate import Manifest

    for p in reversed(args.path):
        sys.path.insert(0, p)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    out = Manifest()
    for name in args.modules:
        try:
            out.update(Manifest.of_module(name))
        except ImportError as exc:
            print(f"corosnap manifest: error: cannot import {name!r}: {exc}", file=sys.stderr)
            return 2
    text = out.dumps() + "\n"
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0
