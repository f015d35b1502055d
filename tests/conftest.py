"""Shared test setup.

The test directory is also put on ``sys.path``: the core tests import their
sample generators as the top-level module ``samples`` (corosnap finds code by
module name, also in the child processes the cross-process tests start, which
get the same directory on their path), while ``tests`` itself is a package so
the store tests can use relative imports.  The differential harness's helper
modules (``_driver``, ``_gensrc``, ``_worker``, ``_xp_funcs``) are imported the
same way.

Fixtures of the cross-process / differential tests:

* ``worker``: one second interpreter (``tests/_worker.py``) for the whole session,
  restarted on demand after a crash; cross-process tests send it blobs.
* ``gen_dir``: a directory on ``sys.path`` (here and in the worker) where
  generated modules are written, one file per distinct source.
* ``load_generated``: writes a ``_gensrc.GenModule`` there and imports it.
* ``fixture_dir``: ``tests/`` itself, where ``_xp_funcs`` lives.

Real servers for the server-backed stores (``tests/servers.py`` starts them;
each is started once per session, on first use, and stopped at the end):

* ``postgres_server``: a PostgreSQL cluster made by ``initdb`` and run by
  ``pg_ctl`` (as the ``postgres`` user when the tests run as root);
* ``redis_server``: a ``redis-server`` with ``appendfsync always``;
* ``s3_server``: moto's S3 server, with a bucket ``corosnap-tests``.

Without the server or its client library the test is skipped with a message
saying how to get it; with ``COROSNAP_REQUIRE_SERVERS=1`` (as in CI) it fails.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
if TESTS_DIR not in sys.path:
    sys.path.insert(0, TESTS_DIR)

import _driver  # noqa: E402
import servers  # noqa: E402
from _worker import WorkerClient  # noqa: E402


@pytest.fixture(scope="session")
def worker() -> Iterator[WorkerClient]:
    """The session's worker process (same interpreter as the tests)."""
    client = WorkerClient()
    client.ping()
    yield client
    client.close()


@pytest.fixture(scope="session")
def gen_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    path = str(tmp_path_factory.mktemp("corosnap_gen"))
    sys.path.insert(0, path)
    yield path
    sys.path.remove(path)


@pytest.fixture(scope="session")
def load_generated(gen_dir: str) -> Callable[[Any], ModuleType]:
    """``load_generated(gen_module) -> module``: write the source to ``gen_dir``, import it."""

    def load(gm: Any) -> ModuleType:
        name = _driver.write_module(gen_dir, gm.source, gm.name)
        return _driver.import_from(gen_dir, name)

    return load


@pytest.fixture(scope="session")
def fixture_dir() -> str:
    """The directory of hand-written modules used by cross-process tests (``tests/``)."""
    return TESTS_DIR


def _need_module(name: str, how: str) -> None:
    try:
        __import__(name)
    except ImportError as exc:
        servers.unavailable(f"the Python package {name!r} is not installed ({exc})", how)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[servers.PostgresServer]:
    _need_module("psycopg", servers.PG_HOW)
    _need_module("psycopg_pool", servers.PG_HOW)
    try:
        server = servers.start_postgres()
    except LookupError as exc:
        servers.unavailable(f"no PostgreSQL server for the tests: {exc}", servers.PG_HOW)
    yield server
    servers.stop_postgres(server)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[servers.RedisServer]:
    _need_module("redis", servers.REDIS_HOW)
    try:
        server = servers.start_redis()
    except LookupError as exc:
        servers.unavailable(f"no Redis server for the tests: {exc}", servers.REDIS_HOW)
    yield server
    servers.stop_redis(server)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[servers.S3Server]:
    _need_module("boto3", servers.S3_HOW)
    _need_module("moto.server", servers.S3_HOW)
    _need_module("flask", servers.S3_HOW)
    server = servers.start_s3()
    yield server
    server.stop()


SERVER_FIXTURES = frozenset({"postgres_server", "redis_server", "s3_server"})


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """With ``COROSNAP_REQUIRE_SERVERS=1``, a skipped server test is reported as failed.

    The fixtures above already fail instead of skipping; this catches any other
    skip of a test that uses a server (an ``importorskip`` added later, ...),
    except the ``slow`` ones, left out unless ``-m slow`` asks for them.
    """
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if not (report.skipped and servers.servers_required()):
        return
    if not SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if reason.startswith("slow:"):
        return
    report.outcome = "failed"
    report.longrepr = f"skipped although {servers.REQUIRE_ENV}=1 (server tests must run): {reason}"
