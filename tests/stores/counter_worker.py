"""One of the processes of tests/stores/test_contention.py.

``python counter_worker.py BACKEND PATH DURABLE INCREMENTS``: open the store
(for a server-backed store PATH is a spec from ``servers.spec_for``),
print ``ready``, wait for a line on stdin (so all workers start together),
then add 1 to the counter record INCREMENTS times with compare-and-set and
retry, and print ``done CONFLICTS``.
"""

from __future__ import annotations

import os
import sys

from corosnap.stores import DirectoryStore, SQLiteStore, Store
from corosnap.testing import increment_counter

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import servers  # noqa: E402


def main() -> None:
    backend, path, durable, times = sys.argv[1], sys.argv[2], sys.argv[3] == "1", int(sys.argv[4])
    store: Store
    if backend == "directory":
        store = DirectoryStore(path, durable=durable)
    elif backend == "sqlite":
        store = SQLiteStore(path, durable=durable)
    else:
        store = servers.open_store(path, durable=durable)
    print("ready", flush=True)
    sys.stdin.readline()
    conflicts = increment_counter(store, "counter", times)
    store.close()
    print(f"done {conflicts}", flush=True)


if __name__ == "__main__":
    main()
