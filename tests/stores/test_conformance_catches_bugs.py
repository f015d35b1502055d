"""The conformance suite must fail for broken stores, or it proves nothing.

Each mutant below is a MemoryStore with one deliberate bug.  The tests of the
suite named in MUST_FAIL run on them in a child pytest, and must all fail.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

MUTANTS = '''
import time
from corosnap.stores import MemoryStore, NotFound, Record
from corosnap.testing import StoreConformance


class IgnoresExpectedVersion(MemoryStore):
    def put(self, key, blob, *, expected_version=None):
        return super().put(key, blob)


class SkipsKeyValidation(MemoryStore):
    def put(self, key, blob, *, expected_version=None):
        if key == "" or (isinstance(key, str) and "\\0" in key):
            self._records[key] = Record(bytes(blob), 1)
            return 1
        return super().put(key, blob, expected_version=expected_version)


class UnsortedKeys(MemoryStore):
    def keys(self, prefix=""):
        return iter([k for k in self._records if k.startswith(prefix)])


class DeleteMissingIsSilent(MemoryStore):
    def delete(self, key, *, expected_version=None):
        try:
            super().delete(key, expected_version=expected_version)
        except NotFound:
            pass


class CheckThenWriteRace(MemoryStore):
    """Checks the version under the lock, writes after releasing it."""

    def put(self, key, blob, *, expected_version=None):
        with self._lock:
            current = self._records.get(key)
            actual = current.version if current else 0
        if expected_version is not None and expected_version != actual:
            return super().put(key, blob, expected_version=expected_version)  # raises
        time.sleep(0)
        with self._lock:
            self._records[key] = Record(bytes(blob), actual + 1)
        return actual + 1


class VersionSurvivesDelete(MemoryStore):
    def __init__(self):
        super().__init__()
        self._graveyard = {}

    def delete(self, key, *, expected_version=None):
        record = self.get(key)
        super().delete(key, expected_version=expected_version)
        self._graveyard[key] = record.version

    def put(self, key, blob, *, expected_version=None):
        version = super().put(key, blob, expected_version=expected_version)
        version += self._graveyard.get(key, 0)
        self._records[key] = Record(bytes(blob), version)
        return version


def _suite(store_class):
    class Suite(StoreConformance):
        persistent = False

        def make_store(self, tmp_path):
            return store_class()

    return Suite


for _cls in [IgnoresExpectedVersion, SkipsKeyValidation, UnsortedKeys,
             DeleteMissingIsSilent, CheckThenWriteRace, VersionSurvivesDelete]:
    globals()["Test" + _cls.__name__] = _suite(_cls)
'''

MUST_FAIL = {
    "IgnoresExpectedVersion": [
        "test_expected_version_0_conflicts_if_record_exists",
        "test_stale_expected_version_conflicts_and_changes_nothing",
        "test_only_one_concurrent_create_wins",
    ],
    "SkipsKeyValidation": ["test_invalid_keys_are_refused_everywhere[empty]"],
    "UnsortedKeys": ["test_keys_are_sorted_by_code_point"],
    "DeleteMissingIsSilent": ["test_delete_missing_raises_not_found"],
    "CheckThenWriteRace": [
        "test_threads_incrementing_with_compare_and_set_lose_nothing",
        "test_concurrent_puts_get_distinct_versions",
    ],
    "VersionSurvivesDelete": ["test_put_after_delete_starts_again_at_version_1"],
}


def test_the_suite_fails_each_broken_store(tmp_path: Path) -> None:
    module = tmp_path / "test_mutants.py"
    module.write_text(textwrap.dedent(MUTANTS))
    # Only the tests that must fail: the whole suite on six stores is slow.
    wanted = [
        f"{module}::Test{mutant}::{test}" for mutant, tests in MUST_FAIL.items() for test in tests
    ]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", *wanted, "-q", "-rf", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    failed = {
        line.split()[1].split("::", 1)[1]
        for line in result.stdout.splitlines()
        if line.startswith("FAILED ")
    }
    missing = [
        f"Test{mutant}::{test}"
        for mutant, tests in MUST_FAIL.items()
        for test in tests
        if f"Test{mutant}::{test}" not in failed
    ]
    assert not missing, f"the suite let these bugs through: {missing}\n{result.stdout[-3000:]}"
