"""The command-line worker's URLs for the server-backed stores open those stores.

The servers are the test suite's own (``tests/servers.py``); the S3 URL uses
boto3's default client, configured the way a deployment would: through the
``AWS_*`` environment variables (``AWS_ENDPOINT_URL`` for an S3-compatible
server).
"""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from corosnap.scheduler import Scheduler
from corosnap.scheduler._cli import open_store

from . import workflows as wf


def server(request: pytest.FixtureRequest, name: str) -> Any:
    """The test suite's server fixture ``name`` (tests/conftest.py starts the server)."""
    try:
        return request.getfixturevalue(name)
    except pytest.FixtureLookupError:
        pytest.skip(f"this build has no {name} fixture (no server-backed stores)")


def check(store: Any) -> None:
    """The store works, and a scheduler runs a workflow on it."""
    try:
        s = wf.register(Scheduler(store, workers=2, poll=0.05))
        wf.reset()
        run_id = s.start(wf.pipeline, [3])
        s.run_until_complete(timeout=60)
        assert s.result(run_id)["child"] == 24
    finally:
        store.close()


def test_a_postgresql_url_opens_a_postgres_store(request: pytest.FixtureRequest) -> None:
    postgres_server = server(request, "postgres_server")
    from corosnap.stores import PostgresStore  # type: ignore[attr-defined]

    store = open_store(postgres_server.dsn, {"schema": "cli_" + secrets.token_hex(3)})
    assert isinstance(store, PostgresStore)
    check(store)


def test_a_redis_url_opens_a_redis_store(request: pytest.FixtureRequest) -> None:
    redis_server = server(request, "redis_server")
    from corosnap.stores import RedisStore  # type: ignore[attr-defined]

    store = open_store(redis_server.url, {"namespace": "cli-" + secrets.token_hex(3)})
    assert isinstance(store, RedisStore)
    check(store)


def test_an_s3_url_opens_an_s3_store(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3_server = server(request, "s3_server")
    from corosnap.stores import S3Store  # type: ignore[attr-defined]

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "corosnap-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "corosnap-test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    prefix = "cli-" + secrets.token_hex(3)
    store = open_store(f"s3://{s3_server.bucket}/{prefix}")
    assert isinstance(store, S3Store) and store.prefix == prefix + "/"
    check(store)
