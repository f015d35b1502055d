"""``corosnap diff A B``: which frames and slots grew or shrank."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .._errors import CorruptSnapshot
from ._common import add_code_arguments, add_key_arguments, inspector_options, read_input


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("a", metavar="A", help="the older snapshot: a blob, or the output of "
                                               "'corosnap inspect --json'; - reads stdin")
    parser.add_argument("b", metavar="B", help="the newer snapshot (the same kinds)")
    parser.add_argument("--json", action="store_true", help="write the diff as JSON")
    parser.add_argument("--all", action="store_true",
                        help="list unchanged frames and slots too")
    add_key_arguments(parser)
    add_code_arguments(parser)


def _load(path: str) -> Any:
    data = read_input(path)
    if data[:1] == b"{":
        # A blob is a msgpack array and never starts with '{' (a positive int).
        try:
            return json.loads(data)
        except ValueError as exc:
            raise CorruptSnapshot(f"{path}: not valid JSON: {exc}") from None
    return data


def run(args: argparse.Namespace) -> int:
    from ..inspection import diff, render_diff

    try:
        d = diff(_load(args.a), _load(args.b), **inspector_options(args))
    except ValueError as exc:  # a JSON file that is not an inspect --json output
        raise CorruptSnapshot(str(exc)) from None
    if args.json:
        sys.stdout.write(d.to_json() + "\n")
    else:
        sys.stdout.write(render_diff(d, args.a, args.b, all_slots=args.all))
    return 0
