"""One of the processes of tests/stores/test_contention.py.

``python counter_worker.py BACKEND PATH DURABLE INCREMENTS``: open the store,
print ``ready``, wait for a line on stdin (so all workers start together),
then add 1 to the counter record INCREMENTS times with compare-and-set and
retry, and print ``done CONFLICTS``.
"""

from __future__ import annotations

import sys

from corosnap.stores import Conflict, DirectoryStore, SQLiteStore, Store


def increment(store: Store, key: str, times: int) -> int:
    """Add 1 to the decimal counter under ``key`` ``times`` times; return the conflicts seen."""
    conflicts = 0
    for _ in range(times):
        while True:
            record = store.get(key)
            value = int(record.blob) if record is not None else 0
            version = record.version if record is not None else 0
            try:
                store.put(key, b"%d" % (value + 1), expected_version=version)
                break
            except Conflict:
                conflicts += 1
    return conflicts


def main() -> None:
    backend, path, durable, times = sys.argv[1], sys.argv[2], sys.argv[3] == "1", int(sys.argv[4])
    store: Store
    if backend == "directory":
        store = DirectoryStore(path, durable=durable)
    else:
        store = SQLiteStore(path, durable=durable)
    print("ready", flush=True)
    sys.stdin.readline()
    conflicts = increment(store, "counter", times)
    store.close()
    print(f"done {conflicts}", flush=True)


if __name__ == "__main__":
    main()
