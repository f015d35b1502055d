"""The conformance suite (corosnap.testing.StoreConformance) on every bundled backend."""

from __future__ import annotations

from pathlib import Path

from corosnap.stores import DirectoryStore, MemoryStore, SQLiteStore, Store
from corosnap.testing import StoreConformance


class TestMemoryStore(StoreConformance):
    persistent = False

    def make_store(self, tmp_path: Path) -> Store:
        return MemoryStore()


class TestDirectoryStore(StoreConformance):
    def make_store(self, tmp_path: Path) -> Store:
        return DirectoryStore(tmp_path / "store")


class TestSQLiteStore(StoreConformance):
    def make_store(self, tmp_path: Path) -> Store:
        return SQLiteStore(tmp_path / "store.db")
