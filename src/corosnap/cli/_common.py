"""Options and input handling shared by the subcommands."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from .._errors import CorosnapError


def read_input(path: str) -> bytes:
    """The bytes of ``path``; ``-`` reads standard input."""
    if path == "-":
        return sys.stdin.buffer.read()
    with open(path, "rb") as f:
        return f.read()


def add_key_arguments(parser: argparse.ArgumentParser) -> None:
    """``--key`` / ``--key-file`` / ``--key-env``: the HMAC key of signed blobs."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--key", metavar="TEXT",
                       help="HMAC key of signed blobs, as text (UTF-8); visible to other "
                            "users in the process list: prefer --key-file or --key-env")
    group.add_argument("--key-file", metavar="PATH",
                       help="read the key from a file (its raw bytes, exactly)")
    group.add_argument("--key-env", metavar="VAR",
                       help="read the key from an environment variable (UTF-8)")


def key_from(args: argparse.Namespace) -> bytes | None:
    if args.key is not None:
        return str(args.key).encode()
    if args.key_file is not None:
        return read_input(args.key_file)
    if args.key_env is not None:
        value = os.environ.get(args.key_env)
        if value is None:
            raise CorosnapError(f"environment variable {args.key_env} is not set")
        return value.encode()
    return None


def add_code_arguments(parser: argparse.ArgumentParser) -> None:
    """How frames' code is looked for (``corosnap.inspection.Inspector``)."""
    parser.add_argument("--resolve", action="store_true",
                        help="import the modules whose code was not found otherwise, to name "
                             "slots and show source lines (runs their top-level code: only "
                             "for blobs you trust)")
    parser.add_argument("--no-code", action="store_true",
                        help="do not look for the frames' code at all: slots are named by "
                             "position (#0, #1, ...) and no file is read")
    parser.add_argument("--path", metavar="DIR", action="append", default=[],
                        help="also look for modules' source in DIR (before sys.path; "
                             "repeatable)")


def inspector_options(args: argparse.Namespace) -> dict[str, Any]:
    return {"key": key_from(args), "resolve": args.resolve, "find_code": not args.no_code,
            "path": tuple(args.path)}


__all__ = ["add_code_arguments", "add_key_arguments", "inspector_options", "key_from",
           "read_input"]
