"""The many-workers crash test on PostgreSQL and on Redis (see test_many_workers.py).

Four command-line workers share one server-backed store while a driver
SIGKILLs one every 0.2-1 s and restarts it: 500 workflows and 100 kills on
PostgreSQL, 200 workflows and 40 kills on Redis.  The servers are started by
the test suite itself (``tests/servers.py``).  These run for minutes, so they
are marked ``heavy``: CI runs them (``COROSNAP_HEAVY_TESTS=1``, set by
``.ci/run`` for the 3.11 run); elsewhere ``-m heavy`` does.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest

from .test_many_workers import crash_run

pytestmark = pytest.mark.heavy


def server(request: pytest.FixtureRequest, name: str) -> Any:
    """The test suite's server fixture ``name`` (tests/conftest.py starts the server)."""
    try:
        return request.getfixturevalue(name)
    except pytest.FixtureLookupError:
        pytest.skip(f"this build has no {name} fixture (no server-backed stores)")


def test_four_workers_on_postgres_survive_a_hundred_kills(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    postgres_server = server(request, "postgres_server")
    from corosnap.stores import PostgresStore  # type: ignore[attr-defined]

    schema = "crash_" + secrets.token_hex(4)
    dsn = postgres_server.dsn
    with PostgresStore(dsn, schema=schema) as store:
        report = crash_run(
            store, dsn, tmp_path, workflows=500, kills=100, seed=20240612,
            extra=("--lease", "10", "--poll", "0.1", "--max-runs", "40",
                   "--store-option", f"schema={schema}"),
        )  # fmt: skip
    print("\nPostgreSQL:", report.line())
    assert report.kills >= 100 and report.wasted > 0


def test_four_workers_on_redis_survive_kills(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    redis_server = server(request, "redis_server")
    from corosnap.stores import RedisStore  # type: ignore[attr-defined]

    namespace = "crash-" + secrets.token_hex(4)
    url = redis_server.url
    with RedisStore(url, namespace=namespace) as store:
        report = crash_run(
            store, url, tmp_path, workflows=200, kills=40, seed=20240613,
            extra=("--lease", "10", "--poll", "0.1", "--max-runs", "40",
                   "--store-option", f"namespace={namespace}"),
        )  # fmt: skip
    print("\nRedis:", report.line())
    assert report.kills >= 40 and report.wasted > 0
