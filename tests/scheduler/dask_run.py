"""Run workflows with their steps on a Dask LocalCluster, in a process of its own.

``python -m tests.scheduler.dask_run`` prints one JSON line: the results, the
process ids the steps ran in, and those of the cluster's workers.  Importing
``distributed`` changes how exceptions pickle for the whole process (it
installs tblib's pickling support), so the test runs this in a subprocess
and keeps its own process as the other tests expect it.
"""

from __future__ import annotations

import json
import os

from corosnap.scheduler import Scheduler
from corosnap.stores import MemoryStore

from . import workflows as wf


def main() -> None:
    import distributed

    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=2, processes=True, dashboard_address=None
    ) as cluster, distributed.Client(cluster) as client:
        s = wf.register(Scheduler(MemoryStore(), executor=client.get_executor()))
        ids = [s.start(wf.spread, 3) for _ in range(3)]
        stats = s.run_until_complete(timeout=120)
        dask_pids = sorted(set(client.run(os.getpid).values()))
    print(json.dumps({
        "ids": ids, "results": [s.result(i) for i in ids], "dask_pids": dask_pids,
        "pid": os.getpid(), "retries": stats.retries,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
