"""The rules the server fixtures follow when a server is missing (tests/servers.py)."""

from __future__ import annotations

import pytest

from .. import servers


def test_a_missing_server_skips_with_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(servers.REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception) as info:
        servers.unavailable("no PostgreSQL server for the tests", servers.PG_HOW)
    assert "apt-get install postgresql" in str(info.value)


def test_a_missing_server_fails_when_servers_are_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(servers.REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception) as info:
        servers.unavailable("no Redis server for the tests", servers.REDIS_HOW)
    assert "apt-get install redis-server" in str(info.value)
    assert servers.REQUIRE_ENV in str(info.value)


def test_postgres_binaries_are_found() -> None:
    """On a machine with PostgreSQL installed (CI's), initdb and pg_ctl are found."""
    bindir = servers.find_pg_bin()
    if bindir is None:
        servers.unavailable("PostgreSQL's initdb and pg_ctl were not found", servers.PG_HOW)
    assert bindir is not None and (bindir / "initdb").exists() and (bindir / "pg_ctl").exists()
