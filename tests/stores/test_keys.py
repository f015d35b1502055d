"""Key validation, and the directory store's key -> file name mapping.

The mapping must be safe (no path syntax survives it, so no key reaches
outside the store's directory) and injective (distinct keys never share a
file), also on a case-insensitive file system.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corosnap import CorosnapError
from corosnap.stores import (
    MAX_KEY_BYTES,
    Conflict,
    DirectoryStore,
    InvalidKey,
    NotFound,
    StoreError,
    validate_key,
)
from corosnap.stores._directory import MAX_NAME_LENGTH, key_to_name, name_to_key
from corosnap.testing import AWKWARD_KEYS

legal_keys = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"),
    min_size=1,
    max_size=60,
).filter(lambda k: len(k.encode()) <= MAX_KEY_BYTES)


# -- validation ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "words"),
    [
        ("", "empty"),
        ("a\0b", "NUL"),
        ("x" * (MAX_KEY_BYTES + 1), "at most 1024 UTF-8 bytes"),
        ("é" * 513, "this one has 1026"),
        ("\ud83d", "UTF-8"),
    ],
)
def test_invalid_key_messages_say_what_is_wrong(key: str, words: str) -> None:
    with pytest.raises(InvalidKey, match=words) as info:
        validate_key(key)
    assert len(str(info.value)) < 300


def test_a_key_of_exactly_max_bytes_is_valid() -> None:
    assert validate_key("x" * MAX_KEY_BYTES) == "x" * MAX_KEY_BYTES
    assert validate_key("é" * (MAX_KEY_BYTES // 2))


def test_non_str_key_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="bytes"):
        validate_key(b"key")


@pytest.mark.parametrize(
    "error",
    [Conflict("k", 1, 2), NotFound("k", "MemoryStore()"), InvalidKey("bad"), StoreError("x")],
)
def test_errors_pickle_and_keep_their_message(error: Exception) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert isinstance(copy, CorosnapError)


def test_error_classes() -> None:
    assert issubclass(InvalidKey, ValueError)
    assert issubclass(NotFound, KeyError)
    assert str(Conflict("k", 0, 3)) == (
        "conflict on key 'k': expected version 0 (must not exist), actual version 3"
    )
    assert str(Conflict("k", 2, 0)) == (
        "conflict on key 'k': expected version 2, actual version 0 (no record)"
    )


# -- file names --------------------------------------------------------------


def _assert_safe(name: str) -> None:
    assert name not in ("", ".", "..")
    assert not name.startswith(".")
    assert "/" not in name and "\0" not in name and "\\" not in name
    assert len(name) <= MAX_NAME_LENGTH or (name.startswith("+") and len(name) == 65)
    assert set(name) <= set("abcdefghijklmnopqrstuvwxyz0123456789_-%ABCDEF+")


@pytest.mark.parametrize("key", AWKWARD_KEYS)
def test_awkward_keys_map_to_safe_names(key: str) -> None:
    name = key_to_name(key)
    _assert_safe(name)
    if not name.startswith("+"):
        assert name_to_key(name) == key


@settings(max_examples=300, deadline=None)
@given(legal_keys)
def test_short_keys_round_trip_through_file_names(key: str) -> None:
    name = key_to_name(key)
    _assert_safe(name)
    if not name.startswith("+"):
        assert name_to_key(name) == key


@settings(max_examples=300, deadline=None)
@given(legal_keys, legal_keys)
def test_distinct_keys_get_names_distinct_even_ignoring_case(a: str, b: str) -> None:
    if a != b:
        assert key_to_name(a).lower() != key_to_name(b).lower()


def test_case_and_escape_look_alikes_get_distinct_names() -> None:
    keys = ["A", "a", "%41", "%61", "%2541", "Ab", "aB", "ab", "AB", "K", "k", "\u212a"]
    names = [key_to_name(k).casefold() for k in keys]
    assert len(set(names)) == len(keys)


def test_long_keys_are_hashed_and_distinct() -> None:
    base = "a" * (MAX_KEY_BYTES - 1)
    names = {key_to_name(base + c) for c in "abcdefghij"}
    assert len(names) == 10
    assert all(name.startswith("+") for name in names)


def test_names_that_are_not_canonical_encodings_are_not_keys() -> None:
    for name in ["README.md", "%4a", "%41%", "%zz", "A", "é", "%C3", "+abc", ".lock-00", "%2b"]:
        assert name_to_key(name) is None, name


# -- the directory store on disk -----------------------------------------------


def test_no_key_reaches_outside_the_store_directory(tmp_path: Path) -> None:
    root = tmp_path / "store"
    keys = [
        "../escaped",
        "../../escaped",
        "/etc/passwd",
        "/tmp/escaped",
        "a/b/c",
        "..",
        ".",
        "~",
        "~/x",
        "..\\..\\windows",
        "sub/../../escaped",
        "x/" * 300,
    ]
    with DirectoryStore(root, durable=False) as store:
        for key in keys:
            store.put(key, b"data")
        assert sorted(store.keys()) == sorted(keys)
        for key in keys:
            assert store.get(key) is not None
    assert sorted(os.listdir(tmp_path)) == ["store"]
    for entry in os.scandir(root):
        assert entry.is_file(follow_symlinks=False), entry.name


def test_keys_ignores_files_that_are_not_records(tmp_path: Path) -> None:
    with DirectoryStore(tmp_path, durable=False) as store:
        store.put("real", b"x")
        store.put("r" * 300, b"long")
        (tmp_path / "README.md").write_text("not a record")
        (tmp_path / "%4a").write_text("not canonical")
        (tmp_path / ("+" + "0" * 64)).write_bytes(b"not a record file")
        (tmp_path / ".tmp-00").write_bytes(b"left by a killed writer")
        assert list(store.keys()) == ["real", "r" * 300]


def test_a_hashed_file_holding_another_key_is_refused(tmp_path: Path) -> None:
    """Stands in for a SHA-256 collision or a file copied by hand: the stored key is checked."""
    one, two = "1" * 300, "2" * 300
    with DirectoryStore(tmp_path, durable=False) as store:
        store.put(one, b"first")
        os.replace(tmp_path / key_to_name(one), tmp_path / key_to_name(two))
        with pytest.raises(StoreError, match="holds key"):
            store.get(two)
        with pytest.raises(StoreError, match="holds key"):
            store.put(two, b"x")
        assert list(store.keys()) == []
