"""The command-line worker: ``python -m corosnap.scheduler worker --store URL module:scheduler``.

What lives here: turning a store *spec* (a URL, a directory, or
``module:attr``) into a :class:`~corosnap.stores.Store`, finding the user's
:class:`~corosnap.scheduler.Scheduler`, and running it as a long-lived
worker that stops gracefully on SIGTERM or SIGINT.  The server-backed stores
(and their client libraries) are imported only when their URL is used.

Store specs
-----------
============================== ============================================
``sqlite:///runs.db``          ``SQLiteStore("runs.db")`` (relative path)
``sqlite:////var/lib/runs.db`` ``SQLiteStore("/var/lib/runs.db")``
``/var/lib/runs`` or ``dir:…`` ``DirectoryStore(path)``
``postgresql://user@host/db``  ``PostgresStore(url)`` (``corosnap[postgres]``)
``redis://host:6379/0``        ``RedisStore(url)`` (``corosnap[redis]``)
``s3://bucket/prefix``         ``S3Store("bucket", "prefix")`` with boto3's
                               default client (``AWS_*`` environment
                               variables, ``AWS_ENDPOINT_URL`` for an
                               S3-compatible server) (``corosnap[s3]``)
``package.module:attr``        that object: a ``Store``, or a function
                               returning one
============================== ============================================

``--store-option name=value`` (repeatable) passes keyword arguments to the
store's constructor: ``durable=false``, ``schema=jobs``, ``namespace=prod``,
...  Values ``true``/``false``, integers and floats are converted.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from ..stores import DirectoryStore, SQLiteStore, Store
from ._errors import SchedulerError

_TARGET = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")

log = logging.getLogger("corosnap.scheduler")


def _server_store(name: str, extra: str) -> Any:
    """``corosnap.stores.<name>``, or a SchedulerError saying which extra to install."""
    stores = importlib.import_module("corosnap.stores")
    try:
        return getattr(stores, name)
    except (AttributeError, ImportError) as exc:
        raise SchedulerError(
            f"{name} is not available ({exc}); install it with: pip install 'corosnap[{extra}]'"
        ) from exc


def _option_value(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_options(pairs: Sequence[str]) -> dict[str, Any]:
    options = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.isidentifier():
            raise SchedulerError(f"a store option is name=value, not {pair!r}")
        options[name] = _option_value(value)
    return options


def load_object(target: str) -> Any:
    """The object named ``package.module:attr`` (attributes may be dotted)."""
    module_name, _, attr = target.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise SchedulerError(
            f"cannot import module {module_name!r} (from {target!r}): {exc}"
        ) from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise SchedulerError(f"module {module_name!r} has no attribute {attr!r}") from None
    return obj


def open_store(spec: str, options: dict[str, Any] | None = None) -> Store:
    """The store a spec names (see the module docstring for the forms)."""
    options = dict(options or {})
    if "://" in spec:
        scheme = spec.split("://", 1)[0].lower()
        if scheme == "sqlite":
            path = spec[len("sqlite:///") :] if spec.lower().startswith("sqlite:///") else ""
            if not path:
                raise SchedulerError(
                    f"a SQLite store is sqlite:///relative/path or sqlite:////absolute/path, "
                    f"not {spec!r}"
                )
            return SQLiteStore(path, **options)
        if scheme in ("postgresql", "postgres"):
            return _server_store("PostgresStore", "postgres")(spec, **options)
        if scheme in ("redis", "rediss", "unix"):
            return _server_store("RedisStore", "redis")(spec, **options)
        if scheme == "s3":
            bucket, _, prefix = spec[len("s3://") :].partition("/")
            if not bucket:
                raise SchedulerError(f"an S3 store is s3://bucket/prefix, not {spec!r}")
            return _server_store("S3Store", "s3")(bucket, prefix, **options)
        if scheme in ("dir", "file"):
            return DirectoryStore(spec.split("://", 1)[1], **options)
        raise SchedulerError(
            f"unknown store URL scheme {scheme!r} in {spec!r}: use sqlite:///, postgresql://, "
            "redis://, s3://, a directory, or module:attr"
        )
    if spec.startswith("dir:"):
        return DirectoryStore(spec[len("dir:") :], **options)
    if _TARGET.fullmatch(spec) and not os.path.exists(spec):
        obj = load_object(spec)
        if callable(obj) and not isinstance(obj, Store):
            obj = obj(**options)
        elif options:
            raise SchedulerError(f"{spec} is a store already: it takes no --store-option")
        if not isinstance(obj, Store):
            raise SchedulerError(f"{spec} is a {type(obj).__name__}, not a corosnap Store")
        return obj
    if spec in ("memory:", ":memory:"):
        raise SchedulerError("a memory store lives in one process: a worker needs a shared store")
    return DirectoryStore(spec, **options)


def load_scheduler(target: str) -> Any:
    from ._scheduler import Scheduler

    if not _TARGET.fullmatch(target):
        raise SchedulerError(f"name the scheduler as package.module:attribute, not {target!r}")
    obj = load_object(target)
    if callable(obj) and not isinstance(obj, Scheduler):
        obj = obj()
    if not isinstance(obj, Scheduler):
        raise SchedulerError(f"{target} is a {type(obj).__name__}, not a corosnap Scheduler")
    return obj


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m corosnap.scheduler",
        description="Durable workflow workers for corosnap.scheduler.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    worker = commands.add_parser(
        "worker",
        help="run a long-lived worker (stops gracefully on SIGTERM / SIGINT)",
        description=(
            "Claim runs from the store and drive them until SIGTERM or SIGINT; then finish "
            "or release what is held and exit 0.  Any number of workers, on any number of "
            "machines, may share one store (docs/scaling.md)."
        ),
    )
    worker.add_argument("scheduler", help="the Scheduler, as package.module:attribute")
    worker.add_argument(
        "--store", help="store URL, directory or module:attr (default: the scheduler's own)"
    )
    worker.add_argument(
        "--store-option", action="append", default=[], metavar="NAME=VALUE",
        help="keyword argument for the store's constructor (repeatable)",
    )  # fmt: skip
    worker.add_argument("--threads", type=int, help="threads running steps (scheduler's workers=)")
    worker.add_argument("--lease", type=float, help="lease length in seconds")
    worker.add_argument("--clock-skew", type=float, help="largest clock difference, seconds")
    worker.add_argument("--poll", type=float, help="seconds between looks for new runs")
    worker.add_argument("--max-runs", type=int, help="top-level runs held at once")
    worker.add_argument("--grace", type=float, help="seconds to let steps finish when stopping")
    worker.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # A SIGTERM that arrives while the application is still being imported stops
    # the worker as soon as it starts, gracefully, rather than killing it.
    early = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: early.set()) for sig in _STOP_SIGNALS}
    try:
        return _main(argv, early)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _main(argv: Sequence[str] | None, early: threading.Event) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format=f"%(asctime)s %(levelname)s [worker {os.getpid()}] %(message)s",
        stream=sys.stderr,
    )
    try:
        sched = load_scheduler(args.scheduler)
        if args.store is not None:
            sched.store = open_store(args.store, parse_options(args.store_option))
        elif args.store_option:
            raise SchedulerError("--store-option needs --store")
        settings = {
            "workers": args.threads, "lease": args.lease, "clock_skew": args.clock_skew,
            "poll": args.poll, "max_runs": args.max_runs, "grace": args.grace,
        }  # fmt: skip
        changed = {k: v for k, v in settings.items() if v is not None}
        if changed:
            sched.configure(**changed)
        if sched.store is None:
            raise SchedulerError(f"{args.scheduler} has no store: pass --store")
    except (SchedulerError, ValueError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    log.info("worker starting on %r (lease %g s, poll %g s)", sched.store, sched.lease, sched.poll)
    stats = sched.serve(handle_signals=True, stop=early)
    log.info(
        "worker stopped: %d claims, %d runs done, %d failed, %d checkpoints, %d steps recorded, "
        "%d released, %d leases lost",
        stats.claims, stats.runs_done, stats.runs_failed, stats.checkpoints,
        stats.steps_recorded, stats.releases, stats.leases_lost,
    )  # fmt: skip
    sched.store.close()
    running = [t for t in threading.enumerate() if t is not threading.main_thread() and t.is_alive()
               and not t.daemon]  # fmt: skip
    if running:
        # Step attempts still running after the grace: their runs were released and
        # will run them again elsewhere.  Do not let the interpreter wait for them.
        log.warning("exiting with %d step thread(s) still running; their runs were released",
                    len(running))  # fmt: skip
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0
