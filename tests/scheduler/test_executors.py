"""Steps on an executor the application already has: a process pool, a Dask cluster.

``Scheduler(store, executor=...)`` takes any ``concurrent.futures.Executor``.
The step function, its arguments and ``run_step`` (which sets
``current_step()``) are pickled to wherever the executor runs them, so steps
and their arguments must be importable there, as they must be for the
snapshots anyway.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor

import pytest

from corosnap.scheduler import Scheduler, SchedulerError
from corosnap.stores import MemoryStore

from . import workflows as wf


@pytest.fixture
def store() -> Iterator[MemoryStore]:
    s = MemoryStore()
    wf.reset()
    yield s
    wf.reset()


def check_spread(s: Scheduler, run_ids: list[str], n: int) -> set[int]:
    pids: set[int] = set()
    for run_id in run_ids:
        places, last = s.result(run_id)
        assert last == f"ok-{n}"
        assert [key for _, key in places] == [f"{run_id}/{i}" for i in range(1, n + 1)]
        pids.update(pid for pid, _ in places)
    return pids


def test_steps_run_on_a_process_pool(store: MemoryStore) -> None:
    with ProcessPoolExecutor(2) as pool:
        s = wf.register(Scheduler(store, executor=pool))
        ids = [s.start(wf.spread, 4) for _ in range(3)]
        stats = s.run_until_complete(timeout=60)
    pids = check_spread(s, ids, 4)
    assert os.getpid() not in pids and len(pids) >= 1
    assert stats.retries == 3 and stats.runs_done == 3
    assert all(st.pid == os.getpid() for st in s.steps(ids[0]))  # recorded by this worker


def test_a_broken_process_pool_stops_the_worker_and_leaves_the_runs(store: MemoryStore) -> None:
    with ProcessPoolExecutor(1) as pool:
        s = wf.register(Scheduler(store, executor=pool))
        run_id = s.start(wf.breaks_pool)
        with pytest.raises(SchedulerError, match="executor running the steps is broken"):
            s.run_until_complete(timeout=60)
    assert s.status(run_id).state == "running"  # still there for a worker with a good pool


def test_the_scheduler_does_not_shut_down_an_executor_it_was_given(store: MemoryStore) -> None:
    with ProcessPoolExecutor(1) as pool:
        s = wf.register(Scheduler(store, executor=pool))
        s.start(wf.one, 2)
        s.run_until_complete(timeout=60)
        assert pool.submit(abs, -3).result(timeout=30) == 3


def test_steps_run_on_a_dask_cluster(store: MemoryStore) -> None:
    distributed = pytest.importorskip(
        "distributed", reason="pip install 'dask[distributed]' (a test dependency)"
    )
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=2, processes=True, dashboard_address=None
    ) as cluster, distributed.Client(cluster) as client:
        s = wf.register(Scheduler(store, executor=client.get_executor()))
        ids = [s.start(wf.spread, 3) for _ in range(3)]
        s.run_until_complete(timeout=120)
        dask_pids = set(client.run(os.getpid).values())
    pids = check_spread(s, ids, 3)
    assert pids <= dask_pids and os.getpid() not in dask_pids
