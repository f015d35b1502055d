"""``corosnap inspect BLOB``: what a snapshot holds and where its bytes go."""

from __future__ import annotations

import argparse
import sys

from ._common import add_code_arguments, add_key_arguments, inspector_options, read_input


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("blob", metavar="BLOB", help="the snapshot file; - reads standard input")
    parser.add_argument("--json", action="store_true",
                        help="write the documented JSON form (docs/inspect.md) instead of text")
    parser.add_argument("--top", metavar="N", type=int, default=10,
                        help="how many of the largest values to list (default 10)")
    add_key_arguments(parser)
    add_code_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from ..inspection import Inspector, render

    info = Inspector(top=args.top, **inspector_options(args)).inspect(read_input(args.blob))
    sys.stdout.write(info.to_json() + "\n" if args.json else render(info))
    return 0
