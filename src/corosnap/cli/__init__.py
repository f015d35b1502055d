"""The ``corosnap`` command (also ``python -m corosnap``).

What lives here: the table of subcommands and the error policy, nothing
else.  Each subcommand is one module of this package with

* ``add_arguments(parser)``: its options (an ``argparse`` subparser), and
* ``run(args) -> int``: the work; returns the exit status.

Adding a subcommand is one module plus one line in ``COMMANDS``; only the
module of the command being run is imported, so a slow or optional
dependency of one command never slows down or breaks another.

Exit status: 0 done; 1 the command ran and its answer is "no" (a command
may use it, e.g. a check that failed); 2 the input could not be used (a
damaged or unreadable blob, a wrong key, a missing file, bad usage).  A
corosnap error is printed as one line, ``corosnap CMD: error: ...``, never
as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from .._errors import CorosnapError


@dataclass(frozen=True)
class Command:
    name: str
    module: str
    help: str


COMMANDS: tuple[Command, ...] = (
    Command("inspect", "corosnap.cli._inspect", "show what a snapshot blob holds and where its "
            "bytes go (reads it without restoring anything)"),
    Command("diff", "corosnap.cli._diff", "compare two snapshots frame by frame and slot by "
            "slot (size regressions)"),
)
"""The subcommands, in the order ``corosnap --help`` lists them."""

EXIT_OK, EXIT_NO, EXIT_BAD_INPUT = 0, 1, 2


def _parser(chosen: str | None) -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="corosnap",
        description="Snapshots of suspended generators and coroutines: tools for the blobs.")
    parser.add_argument("--version", action="version", version=f"corosnap {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for cmd in COMMANDS:
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        if cmd.name == chosen:
            importlib.import_module(cmd.module).add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``corosnap`` command line; returns the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    names = {cmd.name: cmd for cmd in COMMANDS}
    chosen = next((a for a in args_list if not a.startswith("-")), None)
    parser = _parser(chosen if chosen in names else None)
    args = parser.parse_args(args_list)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_BAD_INPUT
    cmd = names[args.command]
    try:
        status: int = importlib.import_module(cmd.module).run(args)
    except CorosnapError as exc:
        print(f"corosnap {cmd.name}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:
        if isinstance(exc, BrokenPipeError):
            return _broken_pipe()
        name = f" {exc.filename!r}" if exc.filename else ""
        print(f"corosnap {cmd.name}: error: cannot read{name}: {exc.strerror or exc}",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        return _broken_pipe()
    return status


def _broken_pipe() -> int:
    # The reader went away (``corosnap inspect x | head``): point stdout at
    # devnull so the interpreter's final flush does not complain.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return EXIT_OK


__all__ = ["COMMANDS", "EXIT_BAD_INPUT", "EXIT_NO", "EXIT_OK", "Command", "main"]
