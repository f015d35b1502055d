"""PostgresStore against a real PostgreSQL server that the test session starts.

The conformance suite, then what is specific to PostgreSQL: the schema and
table it creates, a pool passed in, durability checks, and what happens when
the connection or the server goes away (``OutcomeUnknown`` for a write whose
answer was lost, ``StoreUnavailable`` when nothing was sent).
"""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from corosnap.stores import (
    Conflict,
    OutcomeUnknown,
    Record,
    Store,
    StoreError,
    StoreUnavailable,
)
from corosnap.testing import StoreConformance

from ..proxy import CuttingProxy
from ..servers import PostgresServer, free_port


def schema_for(tmp_path: Path) -> str:
    """A schema per test (the same one when a test reopens its store)."""
    return "t_" + hashlib.sha1(str(tmp_path).encode()).hexdigest()[:16]


def admin(server: PostgresServer) -> Any:
    import psycopg

    return psycopg.connect(server.dsn, autocommit=True)


class TestPostgresStore(StoreConformance):
    @pytest.fixture(autouse=True)
    def _server(self, postgres_server: PostgresServer) -> None:
        self.server = postgres_server

    def make_store(self, tmp_path: Path) -> Store:
        from corosnap.stores import PostgresStore

        return PostgresStore(self.server.dsn, schema=schema_for(tmp_path))


@pytest.fixture
def pg(postgres_server: PostgresServer) -> PostgresServer:
    return postgres_server


def test_records_live_in_the_documented_table_of_the_chosen_schema(
    pg: PostgresServer, tmp_path: Path
) -> None:
    from corosnap.stores import PostgresStore

    schema = schema_for(tmp_path)
    with PostgresStore(pg.dsn, schema=schema) as store:
        store.put("run/1", b"\x00blob\xff")
        store.put("run/1", b"second")
    with admin(pg) as conn:
        rows = conn.execute(
            f'SELECT key, version, blob FROM "{schema}".corosnap_records'
        ).fetchall()
        assert rows == [("run/1", 2, b"second")]
        columns = conn.execute(
            "SELECT column_name, data_type, collation_name FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = 'corosnap_records' ORDER BY ordinal_position",
            (schema,),
        ).fetchall()
        assert columns == [
            ("key", "text", "C"),
            ("version", "bigint", None),
            ("blob", "bytea", None),
        ]


def test_a_schema_name_that_needs_quoting_works(pg: PostgresServer, tmp_path: Path) -> None:
    from corosnap.stores import PostgresStore

    schema = 'Odd "Schema"; DROP TABLE x; ' + schema_for(tmp_path)
    with PostgresStore(pg.dsn, schema=schema) as store:
        store.put("k", b"v")
        assert store.get("k") == Record(b"v", 1)
    with admin(pg) as conn:
        assert conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = %s", (schema,)
        ).fetchone() == (1,)


def test_stores_opened_at_once_by_many_threads_create_the_table_once(
    pg: PostgresServer, tmp_path: Path
) -> None:
    """Concurrent CREATE TABLE IF NOT EXISTS can fail in PostgreSQL; a lock prevents it."""
    from corosnap.stores import PostgresStore

    schema = schema_for(tmp_path)
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def open_and_write(i: int) -> None:
        try:
            barrier.wait()
            with PostgresStore(pg.dsn, schema=schema, max_connections=1) as store:
                store.put(f"k{i}", b"x")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_and_write, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    with PostgresStore(pg.dsn, schema=schema) as store:
        assert list(store.keys()) == [f"k{i}" for i in range(6)]


def test_a_pool_passed_in_is_used_and_left_open(pg: PostgresServer, tmp_path: Path) -> None:
    import psycopg_pool

    from corosnap.stores import PostgresStore

    with psycopg_pool.ConnectionPool(pg.dsn, min_size=1, max_size=2, open=True) as pool:
        # The pool's connections are not in autocommit mode: the store commits itself.
        store = PostgresStore(pool, schema=schema_for(tmp_path))
        assert store.put("k", b"a") == 1
        with pytest.raises(Conflict):
            store.put("k", b"b", expected_version=0)
        assert store.put("k", b"b", expected_version=1) == 2
        store.close()
        with pytest.raises(StoreError, match="closed"):
            store.get("k")
        with pool.connection() as conn:  # still open, and the writes were committed
            table = f'"{schema_for(tmp_path)}".corosnap_records'
            assert conn.execute(f"SELECT version FROM {table}").fetchone() == (2,)


def test_durable_false_turns_synchronous_commit_off(pg: PostgresServer, tmp_path: Path) -> None:
    from corosnap.stores import PostgresStore

    for durable, setting in ((True, "on"), (False, "off")):
        with PostgresStore(pg.dsn, schema=schema_for(tmp_path), durable=durable) as store:
            with store._pool.connection() as conn:
                assert conn.execute("SHOW synchronous_commit").fetchone() == (setting,)


def test_durable_store_refuses_a_server_without_fsync(pg: PostgresServer, tmp_path: Path) -> None:
    from corosnap.stores import PostgresStore

    with admin(pg) as conn:
        conn.execute("ALTER SYSTEM SET fsync = off")
        conn.execute("SELECT pg_reload_conf()")
    try:
        _wait_setting(pg, "fsync", "off")
        with pytest.raises(StoreError, match="fsync=off") as info:
            PostgresStore(pg.dsn, schema=schema_for(tmp_path))
        assert "durable=False" in str(info.value)
        with PostgresStore(pg.dsn, schema=schema_for(tmp_path), durable=False) as store:
            store.put("k", b"v")  # what the caller chose
    finally:
        with admin(pg) as conn:
            conn.execute("ALTER SYSTEM RESET fsync")
            conn.execute("SELECT pg_reload_conf()")
        _wait_setting(pg, "fsync", "on")


def test_durable_store_refuses_a_pool_with_synchronous_commit_off(
    pg: PostgresServer, tmp_path: Path
) -> None:
    import psycopg_pool

    from corosnap.stores import PostgresStore

    def configure(conn: Any) -> None:
        conn.autocommit = True
        conn.execute("SET synchronous_commit = off")

    with psycopg_pool.ConnectionPool(pg.dsn, min_size=1, configure=configure) as pool:
        with pytest.raises(StoreError, match="synchronous_commit=off"):
            PostgresStore(pool, schema=schema_for(tmp_path))
        PostgresStore(pool, schema=schema_for(tmp_path), durable=False).close()


def _wait_setting(pg: PostgresServer, name: str, value: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with admin(pg) as conn:
            if conn.execute(f"SHOW {name}").fetchone() == (value,):
                return
        time.sleep(0.05)
    raise AssertionError(f"{name} did not become {value}")


# -- losing the connection ------------------------------------------------------


@pytest.mark.parametrize("expected", [None, 0, 1])
def test_a_put_whose_answer_is_lost_raises_outcome_unknown_and_is_not_resent(
    pg: PostgresServer, tmp_path: Path, expected: int | None
) -> None:
    """The server commits the put, the answer never arrives: OutcomeUnknown, and no second write."""
    from corosnap.stores import PostgresStore

    schema = schema_for(tmp_path)
    direct = PostgresStore(pg.dsn, schema=schema)
    if expected == 1:
        direct.put("k", b"before")
    with CuttingProxy(pg.port) as proxy:
        store = PostgresStore(
            f"postgresql://{pg.user}@127.0.0.1:{proxy.port}/{pg.database}", schema=schema
        )
        proxy.cut_next_answer()
        with pytest.raises(OutcomeUnknown) as info:
            store.put("k", b"landed", expected_version=expected)
        assert proxy.cuts == 1
        error = info.value
        assert (error.operation, error.key, error.expected_version) == ("put", "k", expected)
        assert "may or may not" in str(error) and "'k'" in str(error)
        assert isinstance(error, StoreError) and not isinstance(error, StoreUnavailable)
        # The write landed exactly once: the reason a silent retry would be wrong.
        landed = 2 if expected == 1 else 1
        assert direct.get("k") == Record(b"landed", landed)
        # The store recovers: the next operation takes a fresh connection.
        assert store.get("k") == Record(b"landed", landed)
        assert store.put("k", b"after", expected_version=landed) == landed + 1
        store.close()
    direct.close()


def test_a_delete_whose_answer_is_lost_raises_outcome_unknown(
    pg: PostgresServer, tmp_path: Path
) -> None:
    from corosnap.stores import PostgresStore

    schema = schema_for(tmp_path)
    with PostgresStore(pg.dsn, schema=schema) as direct, CuttingProxy(pg.port) as proxy:
        direct.put("k", b"x")
        store = PostgresStore(
            f"postgresql://{pg.user}@127.0.0.1:{proxy.port}/{pg.database}", schema=schema
        )
        proxy.cut_next_answer()
        with pytest.raises(OutcomeUnknown) as info:
            store.delete("k", expected_version=1)
        assert info.value.operation == "delete"
        assert direct.get("k") is None
        store.close()


def test_a_read_whose_answer_is_lost_is_store_unavailable(
    pg: PostgresServer, tmp_path: Path
) -> None:
    from corosnap.stores import PostgresStore

    schema = schema_for(tmp_path)
    with PostgresStore(pg.dsn, schema=schema) as direct, CuttingProxy(pg.port) as proxy:
        direct.put("k", b"x")
        store = PostgresStore(
            f"postgresql://{pg.user}@127.0.0.1:{proxy.port}/{pg.database}", schema=schema
        )
        proxy.cut_next_answer()
        with pytest.raises(StoreUnavailable) as info:
            store.get("k")
        assert info.value.operation == "get"
        assert store.get("k") == Record(b"x", 1)
        store.close()


def test_a_put_whose_connection_is_terminated_while_it_waits_is_outcome_unknown(
    pg: PostgresServer, tmp_path: Path
) -> None:
    """pg_terminate_backend on the store's connection while its UPDATE waits for a row lock."""
    from corosnap.stores import PostgresStore

    schema = schema_for(tmp_path)
    table = f'"{schema}".corosnap_records'
    with PostgresStore(pg.dsn, schema=schema) as store, admin(pg) as locker, admin(pg) as killer:
        store.put("k", b"v1")
        locker.execute("BEGIN")
        locker.execute(f"SELECT * FROM {table} WHERE key = 'k' FOR UPDATE")
        outcome: list[BaseException | int] = []

        def put() -> None:
            try:
                outcome.append(store.put("k", b"v2", expected_version=1))
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=put)
        thread.start()
        pid = None
        deadline = time.monotonic() + 10
        while pid is None and time.monotonic() < deadline:
            row = killer.execute(
                "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE 'UPDATE%%corosnap_records%%'"
            ).fetchone()
            pid = row[0] if row else None
            time.sleep(0.01)
        assert pid is not None, "the put never waited for the row lock"
        killer.execute("SELECT pg_terminate_backend(%s)", (pid,))
        thread.join(10)
        locker.execute("ROLLBACK")
        assert len(outcome) == 1 and isinstance(outcome[0], OutcomeUnknown), outcome
        # Terminated before it could commit: the record is unchanged, and was not rewritten.
        assert store.get("k") == Record(b"v1", 1)
        assert store.put("k", b"v2", expected_version=1) == 2


def test_no_server_listening_is_store_unavailable_quickly() -> None:
    from corosnap.stores import PostgresStore

    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as info:
        PostgresStore(f"postgresql://nobody@127.0.0.1:{free_port()}/x", timeout=1)
    assert time.monotonic() - started < 10
    assert "could not connect" in str(info.value)


def test_a_server_restart_is_unavailable_while_down_and_invisible_after(
    pg: PostgresServer, tmp_path: Path
) -> None:
    """Stop the real server under an open store, then start it again."""
    from corosnap.stores import PostgresStore

    with PostgresStore(pg.dsn, schema=schema_for(tmp_path), timeout=2) as store:
        store.put("k", b"v1")
        pg.stop("immediate")  # like a crash: no goodbye to the clients
        try:
            with pytest.raises(StoreUnavailable):
                store.get("k")
            # Its pooled connection is dead, a new one cannot be made: the put
            # was never sent, so this is "unavailable", not "unknown".
            with pytest.raises(StoreUnavailable) as info:
                store.put("k", b"v2", expected_version=1)
            assert "nothing was sent" in str(info.value)
        finally:
            pg.start()
        # After the restart the store comes back (its pool reconnects with a
        # back-off of a few seconds), and no stale connection is used for a
        # write: StoreUnavailable, never OutcomeUnknown, until it is back.
        deadline = time.monotonic() + 60
        while True:
            try:
                assert store.put("k", b"v2", expected_version=1) == 2
                break
            except StoreUnavailable:
                assert time.monotonic() < deadline, "the store did not reconnect in 60 s"
        assert store.get("k") == Record(b"v2", 2)


def test_a_user_who_may_not_create_the_table_is_told_how_to_create_it(
    pg: PostgresServer, tmp_path: Path
) -> None:
    from corosnap.stores import PostgresStore

    schema = schema_for(tmp_path)
    role = "limited_" + schema
    with admin(pg) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN')
        conn.execute(f'REVOKE CREATE ON DATABASE {pg.database} FROM "{role}"')
    dsn = f"postgresql://{role}@127.0.0.1:{pg.port}/{pg.database}"
    with pytest.raises(StoreError, match="may not create it") as info:
        PostgresStore(dsn, schema=schema)
    statements = str(info.value).split("with: ", 1)[1]
    with admin(pg) as conn:  # what the message says, run by someone who may
        for statement in statements.split("; "):
            conn.execute(statement)
        conn.execute(f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"')
        conn.execute(
            f'GRANT SELECT, INSERT, UPDATE, DELETE ON "{schema}".corosnap_records TO "{role}"'
        )
    with PostgresStore(dsn, schema=schema) as store:
        store.put("k", b"v")
        assert store.get("k") == Record(b"v", 1)
