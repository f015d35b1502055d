"""What the conformance suite cannot see in a DirectoryStore: its files on disk."""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from corosnap.stores import DirectoryStore, Record, StoreError
from corosnap.stores._directory import LOCK_STRIPES, key_to_name


def test_the_directory_is_created(tmp_path: Path) -> None:
    with DirectoryStore(tmp_path / "a" / "b") as store:
        store.put("k", b"x")
    assert (tmp_path / "a" / "b" / "k").is_file()


def test_record_file_holds_header_key_and_blob(tmp_path: Path) -> None:
    with DirectoryStore(tmp_path) as store:
        store.put("ключ", b"one")
        store.put("ключ", b"blob")
    data = (tmp_path / key_to_name("ключ")).read_bytes()
    magic, version, key_len, blob_len, _crc = struct.unpack_from(">8sQIQI", data)
    assert (magic, version, key_len, blob_len) == (b"CSNREC\x00\x01", 2, 8, 4)
    assert data[32:] == "ключ".encode() + b"blob"


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda data: data[:-1], "has .* bytes, its header says"),
        (lambda data: data[:20], "truncated"),
        (lambda data: b"", "truncated"),
        (lambda data: b"XXXXXXXX" + data[8:], "bad magic"),
        (lambda data: data[:-1] + bytes([data[-1] ^ 1]), "CRC mismatch"),
        (lambda data: data[:9] + bytes([data[9] ^ 1]) + data[10:], "CRC mismatch"),
    ],
    ids=["short", "truncated", "empty", "magic", "blob-bit", "version-bit"],
)
def test_damaged_files_are_reported_not_returned(
    tmp_path: Path, damage: Callable[[bytes], bytes], message: str
) -> None:
    with DirectoryStore(tmp_path, durable=False) as store:
        store.put("k", b"some blob")
        file = tmp_path / "k"
        file.write_bytes(damage(file.read_bytes()))
        with pytest.raises(StoreError, match=message):
            store.get("k")
        with pytest.raises(StoreError, match=message):
            store.put("k", b"new", expected_version=1)
        store.delete("k")  # an unconditional delete still clears the damage
        assert store.put("k", b"fresh") == 1


def test_a_leftover_temporary_file_is_invisible_and_reused(tmp_path: Path) -> None:
    with DirectoryStore(tmp_path, durable=False) as store:
        for stripe in range(LOCK_STRIPES):
            (tmp_path / f".tmp-{stripe:02x}").write_bytes(b"torn write of a killed process")
        assert list(store.keys()) == []
        store.put("k", b"x")
        assert store.get("k") == Record(b"x", 1)
        assert list(store.keys()) == ["k"]


def test_lock_and_temporary_files_are_bounded(tmp_path: Path) -> None:
    with DirectoryStore(tmp_path, durable=False) as store:
        for i in range(300):
            store.put(f"key-{i}", b"x")
        for i in range(300):
            store.delete(f"key-{i}")
    internal = [name for name in os.listdir(tmp_path) if name.startswith(".")]
    assert len(internal) <= LOCK_STRIPES
    assert all(name.startswith(".lock-") for name in internal)


def test_not_durable_store_writes_the_same_files(tmp_path: Path) -> None:
    with DirectoryStore(tmp_path / "a", durable=False) as fast:
        fast.put("k", b"x")
    with DirectoryStore(tmp_path / "b") as durable:
        durable.put("k", b"x")
    assert (tmp_path / "a" / "k").read_bytes() == (tmp_path / "b" / "k").read_bytes()
