"""``python -m corosnap.scheduler worker``: store specs, and a worker that stops gracefully."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from corosnap.scheduler import Scheduler, SchedulerError
from corosnap.scheduler._cli import load_scheduler, open_store, parse_options
from corosnap.stores import DirectoryStore, SQLiteStore

from . import cli_app
from . import workflows as wf

ROOT = Path(__file__).resolve().parents[2]


def test_store_specs_open_the_stores_they_name(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    relative = open_store("sqlite:///rel.db")
    assert isinstance(relative, SQLiteStore) and (tmp_path / "rel.db").exists()
    relative.close()
    absolute = open_store(f"sqlite:///{tmp_path}/abs.db", {"durable": False})
    assert isinstance(absolute, SQLiteStore) and (tmp_path / "abs.db").exists()
    absolute.close()
    for spec in (str(tmp_path / "d1"), f"dir:{tmp_path / 'd2'}", f"dir://{tmp_path / 'd3'}"):
        store = open_store(spec)
        assert isinstance(store, DirectoryStore)
        store.close()
    assert open_store("tests.scheduler.cli_app:a_memory_store") is cli_app.a_memory_store


def test_bad_store_specs_say_what_is_wrong() -> None:
    cases = {
        "sqlite://x.db": "sqlite:///relative",
        "ftp://host/x": "unknown store URL scheme 'ftp'",
        "memory:": "one process",
        "tests.scheduler.cli_app:not_a_scheduler": "not a corosnap Store",
        "tests.scheduler.cli_app:nothing": "has no attribute 'nothing'",
        "no_such_module_here:store": "cannot import module 'no_such_module_here'",
        "s3:///prefix": "s3://bucket/prefix",
    }
    for spec, message in cases.items():
        with pytest.raises(SchedulerError, match=message):
            open_store(spec)
    with pytest.raises(SchedulerError, match="name=value"):
        parse_options(["durable"])
    assert parse_options(["durable=false", "timeout=2.5", "max_connections=4", "schema=x"]) == {
        "durable": False, "timeout": 2.5, "max_connections": 4, "schema": "x",
    }  # fmt: skip


def test_the_scheduler_target_is_found_and_checked() -> None:
    assert load_scheduler("tests.scheduler.cli_app:sched") is cli_app.sched
    assert isinstance(load_scheduler("tests.scheduler.cli_app:make_scheduler"), Scheduler)
    with pytest.raises(SchedulerError, match="not a corosnap Scheduler"):
        load_scheduler("tests.scheduler.cli_app:not_a_scheduler")
    with pytest.raises(SchedulerError, match="package.module:attribute"):
        load_scheduler("just_a_module")


def worker(db: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "corosnap.scheduler", "worker", "--store", f"sqlite:///{db}",
         "tests.scheduler.cli_app:sched", "--poll", "0.05", *extra],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def wait_for(check: Any, timeout: float = 30.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return
        time.sleep(0.02)
    raise AssertionError("timed out waiting")


def test_a_worker_process_drives_runs_and_exits_cleanly_on_sigterm(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    s = wf.register(Scheduler(SQLiteStore(db)))
    ids = [s.start(wf.pipeline, [i]) for i in range(5)]
    proc = worker(db)
    try:
        wait_for(lambda: all(s.status(i).state == "done" for i in ids))
        later = s.start(wf.one, 21)  # a worker keeps looking for new runs
        wait_for(lambda: s.status(later).state == "done")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "worker stopped: 6 claims, 11 runs done" in err
    assert s.result(later) == 42


@pytest.mark.parametrize("grace", [10.0, 0.1])
def test_sigterm_finishes_or_releases_what_the_worker_holds(tmp_path: Path, grace: float) -> None:
    db = tmp_path / "runs.db"
    s = wf.register(Scheduler(SQLiteStore(db)))
    run_id = s.start(wf.slow_then_double, 1.0, 3)
    proc = worker(db, "--grace", str(grace), "--lease", "600")
    try:
        wait_for(lambda: s.status(run_id).checkpoints == 1)
        t0 = time.time()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        stopped_after = time.time() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    status = s.status(run_id)
    assert status.state == "running" and status.owner is None  # released: no 600 s wait
    recorded = [st.seq for st in s.steps(run_id)]
    if grace > 1:
        assert recorded == [1], "the step finished within the grace and was recorded"
    else:
        assert recorded == [] and stopped_after < 1.0, "released at once, step not recorded"
    wf.reset()
    assert s.run_until_complete(timeout=30).claims == 1
    assert s.result(run_id) == [1.0, 6]
    ran_here = [key for key, _ in wf.LOG]
    assert (f"{run_id}/1" in ran_here) == (grace < 1)


def test_a_worker_with_a_bad_target_exits_with_status_2(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "corosnap.scheduler", "worker", "--store",
         f"sqlite:///{tmp_path}/x.db", "tests.scheduler.cli_app:not_a_scheduler"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2 and "not a corosnap Scheduler" in proc.stderr
