"""Test helpers for code built on corosnap; import this module from tests only.

:class:`StoreConformance` is the test suite every :class:`corosnap.stores.Store`
passes.  To test a backend of your own, subclass it in a pytest test module
and say how to open your store::

    from corosnap.testing import StoreConformance

    class TestMyStore(StoreConformance):
        def make_store(self, tmp_path):
            return MyStore(tmp_path / "data")

Every ``test_*`` method of the base class then runs against ``MyStore``.
``make_store`` is called once per test, and a second time with the same
``tmp_path`` by the tests that check records survive reopening; set
``persistent = False`` on a store that keeps nothing (like ``MemoryStore``) to
skip those.  A test that does not apply to your store can be switched off by
overriding it with a method that calls ``pytest.skip``, so the report still
shows it.

This module is a pytest suite: install it with ``pip install 'corosnap[testing]'``
(pytest is not a dependency of corosnap itself, and the library never imports
this module).  Without pytest, importing it raises ImportError saying so.
"""

from __future__ import annotations

import random
import sys
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar

try:
    import pytest
except ImportError as exc:  # pragma: no cover - exercised in a process without pytest
    raise ImportError(
        "corosnap.testing is a pytest suite and needs pytest: "
        "pip install 'corosnap[testing]'"
    ) from exc

from corosnap import CorosnapError
from corosnap.stores import (
    MAX_KEY_BYTES,
    Conflict,
    InvalidKey,
    NotFound,
    Record,
    Store,
    StoreError,
)

#: Keys that are awkward for some storage medium: path syntax, names special
#: to file systems, case and encoding look-alikes, non-ASCII, long.  All are
#: legal and must come back as themselves.
AWKWARD_KEYS: tuple[str, ...] = (
    "../x",
    "../../../../../../etc/passwd",
    "/etc/passwd",
    "a/b",
    "a/b/",
    "a\\b",
    "C:\\Windows",
    ".",
    "..",
    "...",
    ".hidden",
    ".lock-00",
    ".tmp-00",
    "+abc",
    "~",
    " ",
    " leading and trailing ",
    "tab\tnew\nline\rcr",
    "\x01\x1f\x7f",
    "%41",
    "%2e%2e",
    "A",
    "a",
    "Straße",
    "STRASSE",
    "con",
    "NUL.txt",
    "ключ",
    "鍵/値",
    "😀",
    unicodedata.normalize("NFC", "café"),
    unicodedata.normalize("NFD", "café"),
    "\u0301",
    "\uffff",
    "\U0010ffff",
    "a" * 200,
    "a" * 199 + "b",
    "x" * MAX_KEY_BYTES,
    "é" * (MAX_KEY_BYTES // 2),
    "é" * (MAX_KEY_BYTES // 2 - 1) + "f",
)


def increment_counter(store: Store, key: str, times: int, *, pause: bool = False) -> int:
    """Add 1 to the decimal counter under ``key``, ``times`` times; return the conflicts met.

    Each increment reads the record and writes it back with
    ``expected_version``, retrying on :class:`Conflict`: the loop a correct
    compare-and-set must make lossless however many threads or processes run
    it at once.  ``pause`` yields to other threads between the read and the
    write, so that threads of one process really interleave there.
    """
    conflicts = 0
    for _ in range(times):
        while True:
            record = store.get(key)
            value = int(record.blob) if record is not None else 0
            version = record.version if record is not None else 0
            if pause:
                time.sleep(0)
            try:
                store.put(key, b"%d" % (value + 1), expected_version=version)
                break
            except Conflict:
                conflicts += 1
    return conflicts


def _run_threads(count: int, target: Callable[[int], object]) -> None:
    """Run ``target(i)`` in ``count`` threads started together; re-raise the first failure."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(count)

    def body(i: int) -> None:
        try:
            barrier.wait()
            target(i)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    # Switch threads every microsecond instead of every 5 ms, so that a store
    # whose operations are not atomic is caught between two steps.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
            assert not thread.is_alive(), "a store operation hung for two minutes"
    finally:
        sys.setswitchinterval(interval)
    if errors:
        raise errors[0]


class StoreConformance:
    """The behaviour every Store must have.  Subclass and implement :meth:`make_store`."""

    #: False for stores whose records do not outlive ``close()``.
    persistent: ClassVar[bool] = True

    def make_store(self, tmp_path: Path) -> Store:
        """Open the store under test.  Called again with the same path to reopen it."""
        raise NotImplementedError("subclasses of StoreConformance implement make_store")

    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[Store]:
        store = self.make_store(tmp_path)
        try:
            yield store
        finally:
            store.close()

    # -- reading and writing ---------------------------------------------

    def test_get_missing_key_returns_none(self, store: Store) -> None:
        assert store.get("missing") is None

    def test_first_put_returns_version_1(self, store: Store) -> None:
        assert store.put("k", b"one") == 1
        assert store.get("k") == Record(b"one", 1)

    def test_each_put_increments_the_version(self, store: Store) -> None:
        for version in range(1, 6):
            assert store.put("k", b"v%d" % version) == version
        assert store.get("k") == Record(b"v5", 5)

    def test_record_holds_bytes_and_int(self, store: Store) -> None:
        store.put("k", b"blob")
        record = store.get("k")
        assert record is not None
        assert type(record.blob) is bytes
        assert type(record.version) is int

    def test_keys_are_independent(self, store: Store) -> None:
        store.put("a", b"1")
        store.put("a", b"2")
        store.put("b", b"3")
        assert store.get("a") == Record(b"2", 2)
        assert store.get("b") == Record(b"3", 1)

    def test_bytes_like_blobs_are_copied(self, store: Store) -> None:
        buffer = bytearray(b"mutable")
        store.put("ba", buffer)
        store.put("mv", memoryview(buffer)[1:4])
        buffer[:] = b"changed"
        assert store.get("ba") == Record(b"mutable", 1)
        assert store.get("mv") == Record(b"uta", 1)

    @pytest.mark.parametrize("blob", ["text", None, 42, [1, 2]])
    def test_non_bytes_blob_is_refused(self, store: Store, blob: object) -> None:
        with pytest.raises(TypeError):
            store.put("k", blob)  # type: ignore[arg-type]
        assert store.get("k") is None

    def test_empty_blob_is_a_record(self, store: Store) -> None:
        assert store.put("k", b"") == 1
        assert store.get("k") == Record(b"", 1)
        assert list(store.keys()) == ["k"]

    def test_every_byte_value_round_trips(self, store: Store) -> None:
        blob = bytes(range(256)) * 4
        store.put("k", blob)
        assert store.get("k") == Record(blob, 1)

    def test_large_blob_round_trips(self, store: Store) -> None:
        blob = random.Random(7).randbytes(3 * 1024 * 1024)
        store.put("k", blob)
        record = store.get("k")
        assert record is not None and record.blob == blob

    # -- compare-and-set -------------------------------------------------

    def test_expected_version_0_creates(self, store: Store) -> None:
        assert store.put("k", b"new", expected_version=0) == 1
        assert store.get("k") == Record(b"new", 1)

    def test_expected_version_0_conflicts_if_record_exists(self, store: Store) -> None:
        store.put("k", b"a")
        store.put("k", b"b")
        with pytest.raises(Conflict) as info:
            store.put("k", b"c", expected_version=0)
        assert (info.value.key, info.value.expected, info.value.actual) == ("k", 0, 2)
        assert store.get("k") == Record(b"b", 2)

    def test_matching_expected_version_writes(self, store: Store) -> None:
        store.put("k", b"a")
        assert store.put("k", b"b", expected_version=1) == 2
        assert store.put("k", b"c", expected_version=2) == 3
        assert store.get("k") == Record(b"c", 3)

    def test_stale_expected_version_conflicts_and_changes_nothing(self, store: Store) -> None:
        store.put("k", b"a")
        store.put("k", b"b")
        for stale in (1, 3, 100):
            with pytest.raises(Conflict) as info:
                store.put("k", b"lost", expected_version=stale)
            assert (info.value.expected, info.value.actual) == (stale, 2)
        assert store.get("k") == Record(b"b", 2)

    def test_expected_version_of_missing_record_conflicts_with_actual_0(self, store: Store) -> None:
        with pytest.raises(Conflict) as info:
            store.put("k", b"x", expected_version=1)
        assert (info.value.expected, info.value.actual) == (1, 0)
        assert store.get("k") is None

    def test_conflict_message_names_key_and_both_versions(self, store: Store) -> None:
        store.put("workflow/42", b"a")
        with pytest.raises(Conflict) as info:
            store.put("workflow/42", b"b", expected_version=7)
        message = str(info.value)
        assert "'workflow/42'" in message and "7" in message and "1" in message
        assert isinstance(info.value, StoreError)
        assert isinstance(info.value, CorosnapError)

    @pytest.mark.parametrize(
        ("bad", "error"),
        [(-1, ValueError), ("1", TypeError), (1.0, TypeError), (True, TypeError)],
    )
    def test_invalid_expected_version_is_refused(
        self, store: Store, bad: object, error: type[Exception]
    ) -> None:
        with pytest.raises(error):
            store.put("k", b"x", expected_version=bad)  # type: ignore[arg-type]
        assert store.get("k") is None

    # -- delete ----------------------------------------------------------

    def test_delete_removes_the_record(self, store: Store) -> None:
        store.put("k", b"x")
        store.put("other", b"y")
        store.delete("k")
        assert store.get("k") is None
        assert list(store.keys()) == ["other"]
        assert store.get("other") == Record(b"y", 1)

    def test_delete_missing_raises_not_found(self, store: Store) -> None:
        with pytest.raises(NotFound) as info:
            store.delete("nothing/here")
        assert isinstance(info.value, KeyError)
        assert isinstance(info.value, CorosnapError)
        assert info.value.key == "nothing/here"
        assert "'nothing/here'" in str(info.value)

    def test_delete_with_matching_expected_version(self, store: Store) -> None:
        store.put("k", b"a")
        store.put("k", b"b")
        store.delete("k", expected_version=2)
        assert store.get("k") is None

    def test_delete_with_stale_expected_version_conflicts(self, store: Store) -> None:
        store.put("k", b"a")
        store.put("k", b"b")
        with pytest.raises(Conflict) as info:
            store.delete("k", expected_version=1)
        assert (info.value.expected, info.value.actual) == (1, 2)
        assert store.get("k") == Record(b"b", 2)

    def test_delete_missing_with_expected_version_conflicts(self, store: Store) -> None:
        with pytest.raises(Conflict) as info:
            store.delete("k", expected_version=3)
        assert (info.value.expected, info.value.actual) == (3, 0)

    def test_delete_with_expected_version_0_is_refused(self, store: Store) -> None:
        store.put("k", b"a")
        with pytest.raises(ValueError):
            store.delete("k", expected_version=0)
        assert store.get("k") == Record(b"a", 1)

    def test_put_after_delete_starts_again_at_version_1(self, store: Store) -> None:
        store.put("k", b"a")
        store.put("k", b"b")
        store.delete("k")
        assert store.put("k", b"c", expected_version=0) == 1
        assert store.get("k") == Record(b"c", 1)

    # -- keys ----------------------------------------------------------

    def test_keys_of_empty_store(self, store: Store) -> None:
        assert list(store.keys()) == []

    def test_keys_returns_an_iterator(self, store: Store) -> None:
        store.put("a", b"")
        keys = store.keys()
        assert iter(keys) is keys
        assert next(keys) == "a"

    def test_keys_are_sorted_by_code_point(self, store: Store) -> None:
        keys = ["b", "a", "B", "a/b", "a0", "é", "~", "😀", "\uffff", "ab", "a b"]
        for key in keys:
            store.put(key, b"")
        assert list(store.keys()) == sorted(keys)

    def test_keys_filters_by_prefix(self, store: Store) -> None:
        for key in ["run/1", "run/2", "run/10", "runner", "ru", "other/run/1", "é/1", "é", "f"]:
            store.put(key, b"")
        assert list(store.keys("run/")) == ["run/1", "run/10", "run/2"]
        assert list(store.keys("run")) == ["run/1", "run/10", "run/2", "runner"]
        assert list(store.keys("ru")) == ["ru", "run/1", "run/10", "run/2", "runner"]
        assert list(store.keys("é")) == ["é", "é/1"]
        assert list(store.keys("runner")) == ["runner"]
        assert list(store.keys("runners")) == []
        assert list(store.keys("zzz")) == []
        assert list(store.keys("\U0010ffff")) == []

    def test_keys_prefix_must_be_a_str(self, store: Store) -> None:
        with pytest.raises(TypeError):
            store.keys(b"a")  # type: ignore[arg-type]

    def test_keys_survive_writes_during_iteration(self, store: Store) -> None:
        names = [f"k{i:02d}" for i in range(30)]
        for name in names:
            store.put(name, b"")
        seen = []
        for key in store.keys():
            seen.append(key)
            if key.startswith("k"):
                store.delete(key)
                store.put("z-added-" + key, b"")
        # Keys that existed throughout were yielded once each, in order; the
        # added ones may or may not have been.
        assert seen[: len(names)] == names
        assert len(seen) == len(set(seen))
        assert set(seen[len(names) :]) <= {"z-added-" + name for name in names}
        assert list(store.keys("k")) == []

    # -- key validation ----------------------------------------------------

    @pytest.mark.parametrize(
        "key",
        [
            "",
            "\0",
            "a\0b",
            "x" * (MAX_KEY_BYTES + 1),
            "é" * (MAX_KEY_BYTES // 2) + "x",
            "\ud800",
            "a\udfffb",
        ],
        ids=["empty", "nul", "inner-nul", "too-long", "too-many-bytes", "surrogate", "surrogate2"],
    )
    def test_invalid_keys_are_refused_everywhere(self, store: Store, key: str) -> None:
        with pytest.raises(InvalidKey) as info:
            store.put(key, b"x")
        assert isinstance(info.value, ValueError)
        assert isinstance(info.value, CorosnapError)
        assert len(str(info.value)) < 300  # a 1 KB key is not pasted whole
        with pytest.raises(InvalidKey):
            store.get(key)
        with pytest.raises(InvalidKey):
            store.delete(key)
        assert list(store.keys()) == []

    @pytest.mark.parametrize("key", [b"bytes", 1, None, ("a",)])
    def test_non_str_keys_are_a_type_error(self, store: Store, key: object) -> None:
        with pytest.raises(TypeError):
            store.put(key, b"x")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            store.get(key)  # type: ignore[arg-type]

    def test_awkward_keys_round_trip(self, store: Store) -> None:
        assert len(set(AWKWARD_KEYS)) == len(AWKWARD_KEYS)
        for i, key in enumerate(AWKWARD_KEYS):
            assert store.put(key, b"%d" % i, expected_version=0) == 1
        for i, key in enumerate(AWKWARD_KEYS):
            assert store.get(key) == Record(b"%d" % i, 1), key
        assert list(store.keys()) == sorted(AWKWARD_KEYS)
        for key in AWKWARD_KEYS:
            store.delete(key, expected_version=1)
        assert list(store.keys()) == []

    def test_keys_at_the_length_limit_are_accepted(self, store: Store) -> None:
        ascii_key = "k" * MAX_KEY_BYTES
        wide_key = "€" * (MAX_KEY_BYTES // 3) + "x" * (MAX_KEY_BYTES % 3)  # 3-byte characters
        assert len(wide_key.encode()) == MAX_KEY_BYTES
        for key in (ascii_key, wide_key, ascii_key[:-1] + "j"):
            store.put(key, key.encode()[-10:])
        for key in (ascii_key, wide_key, ascii_key[:-1] + "j"):
            assert store.get(key) == Record(key.encode()[-10:], 1)

    # -- lifecycle -------------------------------------------------------

    def test_context_manager_returns_the_store_and_closes_it(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        with store as entered:
            assert entered is store
            store.put("k", b"x")
        with pytest.raises(StoreError):
            store.get("k")

    def test_every_operation_on_a_closed_store_raises(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        store.put("k", b"x")
        store.close()
        with pytest.raises(StoreError):
            store.get("k")
        with pytest.raises(StoreError):
            store.put("k", b"y")
        with pytest.raises(StoreError):
            store.delete("k")
        with pytest.raises(StoreError):
            store.keys()
        store.close()  # a second close is harmless

    def test_records_survive_reopening(self, tmp_path: Path) -> None:
        if not self.persistent:
            pytest.skip("the store is not persistent")
        with self.make_store(tmp_path) as store:
            store.put("k", b"a")
            store.put("k", b"b")
            store.put("gone", b"x")
            store.delete("gone")
        with self.make_store(tmp_path) as store:
            assert store.get("k") == Record(b"b", 2)
            assert store.get("gone") is None
            assert list(store.keys()) == ["k"]
            assert store.put("k", b"c", expected_version=2) == 3

    def test_two_handles_on_one_store_see_each_other(self, tmp_path: Path) -> None:
        if not self.persistent:
            pytest.skip("the store is not persistent")
        with self.make_store(tmp_path) as one, self.make_store(tmp_path) as two:
            one.put("k", b"a")
            assert two.get("k") == Record(b"a", 1)
            two.put("k", b"b", expected_version=1)
            with pytest.raises(Conflict):
                one.put("k", b"c", expected_version=1)
            assert one.get("k") == Record(b"b", 2)

    # -- concurrency -------------------------------------------------------

    def test_threads_incrementing_with_compare_and_set_lose_nothing(self, store: Store) -> None:
        threads, increments = 8, 25
        _run_threads(threads, lambda i: increment_counter(store, "counter", increments, pause=True))
        assert store.get("counter") == Record(
            str(threads * increments).encode(), threads * increments
        )

    def test_concurrent_puts_get_distinct_versions(self, store: Store) -> None:
        threads, puts = 8, 10
        versions: list[int] = []
        lock = threading.Lock()

        def put_many(i: int) -> None:
            for j in range(puts):
                version = store.put("k", b"%d-%d" % (i, j))
                with lock:
                    versions.append(version)

        _run_threads(threads, put_many)
        assert sorted(versions) == list(range(1, threads * puts + 1))

    def test_only_one_concurrent_create_wins(self, store: Store) -> None:
        winners: list[int] = []

        def create(i: int) -> None:
            try:
                store.put("k", b"%d" % i, expected_version=0)
                winners.append(i)
            except Conflict:
                pass

        _run_threads(8, create)
        assert len(winners) == 1
        assert store.get("k") == Record(b"%d" % winners[0], 1)

    # -- against a model -------------------------------------------------

    def test_random_operations_match_a_dict(self, store: Store) -> None:
        """Seeded random puts, CAS puts and deletes, checked step by step against a dict."""
        rng = random.Random(2024)
        keys = ["a", "a/b", "B", "ключ", "x" * 300]
        model: dict[str, tuple[bytes, int]] = {}
        for step in range(150):
            key = rng.choice(keys)
            current = model.get(key)
            version = current[1] if current else 0
            action = rng.random()
            if action < 0.45:
                blob = rng.randbytes(rng.choice([0, 1, 50, 3000]))
                guess = rng.choice([None, version, version, version + 1, max(version - 1, 0)])
                if guess is not None and guess != version:
                    with pytest.raises(Conflict):
                        store.put(key, blob, expected_version=guess)
                else:
                    assert store.put(key, blob, expected_version=guess) == version + 1
                    model[key] = (blob, version + 1)
            elif action < 0.6:
                if current is None:
                    with pytest.raises(NotFound):
                        store.delete(key)
                else:
                    store.delete(key, expected_version=rng.choice([None, version]))
                    del model[key]
            else:
                expected = Record(*current) if current else None
                assert store.get(key) == expected, f"step {step}"
            assert list(store.keys()) == sorted(model), f"step {step}"
