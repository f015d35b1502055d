"""What the conformance suite cannot see in a SQLiteStore: its database and connections."""

from __future__ import annotations

import gc
import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from corosnap.stores import MemoryStore, Record, SQLiteStore, StoreError, _sqlite


def test_database_is_in_wal_mode_with_one_table(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "s.db") as store:
        store.put("k", b"x")
    conn = sqlite3.connect(tmp_path / "s.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    assert tables == [("corosnap_records",)]
    assert conn.execute("SELECT key, version, blob FROM corosnap_records").fetchall() == [
        ("k", 1, b"x")
    ]
    conn.close()


@pytest.mark.parametrize(("durable", "level"), [(True, 2), (False, 1)])
def test_durable_chooses_synchronous_full_or_normal(
    tmp_path: Path, durable: bool, level: int
) -> None:
    with SQLiteStore(tmp_path / "s.db", durable=durable) as store:
        assert store._conn().execute("PRAGMA synchronous").fetchone()[0] == level


def test_in_memory_database_is_refused() -> None:
    with pytest.raises(ValueError, match="MemoryStore"):
        SQLiteStore(":memory:")


def test_a_file_that_is_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="not a database"):
        SQLiteStore(path)


def test_keys_pages_through_large_listings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_sqlite, "_KEYS_PAGE", 3)
    keys = [f"{p}/{i}" for p in ("a", "b", "c") for i in range(7)] + ["b", "b0", "a/"]
    model = MemoryStore()
    with SQLiteStore(tmp_path / "s.db") as store:
        for key in keys:
            store.put(key, b"")
            model.put(key, b"")
        for prefix in ["", "a", "a/", "b", "b/", "b/6", "c/1", "d", "b0"]:
            assert list(store.keys(prefix)) == list(model.keys(prefix)), prefix


def test_a_writer_waits_for_a_busy_database(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with SQLiteStore(path) as store:
        store.put("k", b"a")
        other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")  # holds the write lock
        timer = threading.Timer(0.3, lambda: other.execute("COMMIT"))
        timer.start()
        started = time.monotonic()
        assert store.put("k", b"b", expected_version=1) == 2
        assert time.monotonic() - started >= 0.25
        timer.join()
        other.close()
        assert store.get("k") == Record(b"b", 2)


def test_a_database_locked_too_long_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with SQLiteStore(path, timeout=0.2) as store:
        store.put("k", b"a")
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(StoreError, match="locked"):
                store.put("k", b"b")
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert store.get("k") == Record(b"a", 1)  # readers were never blocked
        assert store.put("k", b"c") == 2


def test_connections_of_finished_threads_are_closed(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "s.db") as store:
        threads = [threading.Thread(target=store.put, args=(f"k{i}", b"x")) for i in range(5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        gc.collect()
        assert len(store._connections) == 1  # only the one opened by __init__ in this thread
        assert sorted(store.keys()) == [f"k{i}" for i in range(5)]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_store_cannot_be_used_after_fork(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "s.db") as store:
        store.put("k", b"x")
        pid = os.fork()
        if pid == 0:  # the child: report through the exit code, never return into pytest
            code = 1
            try:
                store.get("k")
            except StoreError as exc:
                code = 0 if "after fork" in str(exc) else 2
            except BaseException:
                code = 3
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert store.get("k") == Record(b"x", 1)  # the parent's store is unharmed


def test_busy_errors_that_bypass_the_busy_timeout_are_retried(tmp_path: Path) -> None:
    """SQLite reports some SQLITE_BUSY cases (e.g. during WAL recovery) without waiting."""
    with SQLiteStore(tmp_path / "s.db", timeout=5) as store:
        attempts = []

        def flaky(conn: sqlite3.Connection) -> str:
            attempts.append(time.monotonic())
            if len(attempts) < 4:
                busy = sqlite3.OperationalError("database is locked")
                busy.sqlite_errorcode = sqlite3.SQLITE_BUSY  # type: ignore[misc]
                raise busy
            return "done"

        assert store._retry(flaky) == "done"
        assert len(attempts) == 4

        def broken(conn: sqlite3.Connection) -> None:
            raise sqlite3.OperationalError("no such table: nothing")

        with pytest.raises(StoreError, match="no such table"):
            store._retry(broken)
