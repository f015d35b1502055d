"""Several worker processes share one store while a driver keeps killing them.

Each worker is the real command-line worker (``python -m corosnap.scheduler
worker``) running ``many_workers.py``: fan-out with ``gather``, flaky steps
with retries, a durable timer and a child workflow per run.  The driver
starts the workflows a few at a time while it SIGKILLs a random worker every
0.2-1 s and starts it again; then it lets the workers finish, stops them
with SIGTERM (they must exit 0) and checks:

* every run finished with the result computed directly;
* no step started after its outcome was recorded (each step checks the
  store as it starts);
* every step that ran has exactly one recorded outcome, recorded by a
  process that ran it;
* **step executions are bounded by recorded steps plus those in flight at
  each kill**: every execution whose outcome its process did not record
  belongs to a process that was killed (an execution is an attempt 1
  start; retries continue it);
* no ``live/`` marker is left.

The SQLite variant runs with the suite; the PostgreSQL and Redis variants
(more workflows and kills) are in ``test_many_workers_servers.py``.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from corosnap.scheduler import Scheduler
from corosnap.stores import Store

from . import many_workers as app

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Report:
    kills: int = 0
    workflows: int = 0
    runs: int = 0
    recorded: int = 0
    executions: int = 0
    attempts: int = 0
    wasted: int = 0  # executions whose process was killed before recording them
    killed_in_flight: list[int] = field(default_factory=list)
    seconds: float = 0.0
    kill_phase_seconds: float = 0.0

    def line(self) -> str:
        return (
            f"{self.kills} kills, {self.workflows} workflows ({self.runs} runs), "
            f"{self.recorded} steps recorded, {self.executions} step executions "
            f"({self.attempts} attempts), {self.wasted} executions lost to kills, "
            f"0 recorded steps run again; {self.seconds:.1f} s "
            f"({self.kill_phase_seconds:.1f} s of kills)"
        )


class Workers:
    def __init__(self, url: str, log: Path, err_dir: Path, count: int, extra: list[str]) -> None:
        self.url, self.log, self.err_dir, self.extra = url, log, err_dir, extra
        self.procs: list[subprocess.Popen[bytes]] = []
        self.killed: set[int] = set()
        self.stopped: set[int] = set()
        self.started = 0
        self.numbers: list[int] = []
        for _ in range(count):
            self.procs.append(self.spawn())
            self.numbers.append(self.started)

    def spawn(self) -> subprocess.Popen[bytes]:
        self.started += 1
        err = (self.err_dir / f"worker-{self.started}.err").open("wb")
        return subprocess.Popen(
            [sys.executable, "-m", "corosnap.scheduler", "worker", "--store", self.url,
             "tests.scheduler.many_workers:sched", "--log-level", "INFO", *self.extra],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
            env={**os.environ, "PYTHONPATH": str(ROOT), "MANY_WORKERS_LOG": str(self.log)},
        )  # fmt: skip

    def kill_one(self, rng: random.Random) -> None:
        i = rng.randrange(len(self.procs))
        proc = self.procs[i]
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        self.killed.add(proc.pid)
        self.procs[i] = self.spawn()
        self.numbers[i] = self.started

    def stop_all(self) -> list[int]:
        for i, proc in enumerate(self.procs):  # each has started (it said so), then SIGTERM
            err = self.err_dir / f"worker-{self.numbers[i]}.err"
            deadline = time.monotonic() + 60
            while "worker starting" not in err.read_text() and proc.poll() is None:
                assert time.monotonic() < deadline, f"worker {proc.pid} never started"
                time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
        codes = []
        for proc in self.procs:
            try:
                codes.append(proc.wait(timeout=60))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes.append(proc.wait())
            self.stopped.add(proc.pid)
        return codes

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def crash_run(
    store: Store,
    url: str,
    tmp_path: Path,
    *,
    workflows: int,
    kills: int,
    seed: int,
    workers: int = 4,
    extra: tuple[str, ...] = ("--lease", "10", "--poll", "0.1", "--max-runs", "40"),
    finish_timeout: float = 300.0,
) -> Report:
    """Run the whole crash scenario against ``store`` (reached by workers through ``url``)."""
    log = tmp_path / "steps.log"
    log.touch()
    rng = random.Random(seed)
    s = Scheduler(store)
    for fn in (app.price, app.charge, app.receipt):
        s.function(fn)
    for wf in (app.order, app.paperwork):
        s.workflow(wf)
    report = Report(workflows=workflows)
    t0 = time.monotonic()
    pool = Workers(url, log, tmp_path, workers, list(extra))
    try:
        started = 0
        # Start the workflows a few at a time, spread over the kills.
        per_kill = max(1, -(-workflows // kills))
        while report.kills < kills or started < workflows:
            for _ in range(per_kill):
                if started < workflows:
                    s.start(app.order, started, run_id=app.run_id(started))
                    started += 1
            time.sleep(rng.uniform(0.2, 1.0))
            if report.kills < kills:
                pool.kill_one(rng)
                report.kills += 1
        report.kill_phase_seconds = time.monotonic() - t0
        deadline = time.monotonic() + finish_timeout
        ids = [app.run_id(n) for n in range(workflows)]
        while time.monotonic() < deadline:
            if all(s.status(i).state == "done" for i in ids):
                break
            time.sleep(0.2)
        codes = pool.stop_all()
    finally:
        pool.kill_all()
    report.seconds = time.monotonic() - t0
    errors = "\n".join(p.read_text()[-3000:] for p in sorted(tmp_path.glob("worker-*.err")))
    assert codes == [0] * workers, f"workers did not stop cleanly: {codes}\n{errors}"

    for n in range(workflows):
        assert s.result(app.run_id(n)) == app.expected(n), f"workflow {n}"
    assert list(s.run_ids(state="running")) == []
    assert list(store.keys("live/")) == []

    lines = log.read_text().splitlines()
    violations = [line for line in lines if line.startswith("VIOLATION")]
    assert not violations, f"recorded steps ran again: {violations[:10]}"
    starts = [line.split() for line in lines if line.startswith("start ")]
    report.attempts = len(starts)
    executions = Counter((key, int(pid)) for _, key, attempt, pid in starts if attempt == "1")
    assert set(executions.values()) == {1}, "a process started one step twice"
    report.executions = len(executions)

    recorder: dict[str, int] = {}
    run_ids = list(s.run_ids())
    report.runs = len(run_ids)
    for run_id in run_ids:
        for step in s.steps(run_id):
            key = f"{run_id}/{step.seq}"
            assert key not in recorder, f"step {key} recorded twice"
            recorder[key] = step.pid
    report.recorded = len(recorder)
    ran = {key for key, _ in executions}
    assert ran == set(recorder), "steps that ran without a recorded outcome, or the reverse"
    wasted: dict[int, int] = defaultdict(int)
    for key, pid in executions:
        if recorder[key] == pid:
            continue
        assert pid in pool.killed, (
            f"step {key} ran in process {pid}, which was not killed, yet another "
            f"process ({recorder[key]}) recorded it"
        )
        wasted[pid] += 1
    for key, pid in recorder.items():
        assert (key, pid) in executions, f"step {key} was recorded by {pid}, which never ran it"
    report.wasted = sum(wasted.values())
    report.killed_in_flight = sorted(wasted.values())
    # The bound: executions = recorded + those lost in flight to a kill, and no more.
    assert report.executions == report.recorded + report.wasted
    return report


def test_four_workers_on_sqlite_survive_kills(tmp_path: Path) -> None:
    from corosnap.stores import SQLiteStore

    db = tmp_path / "runs.db"
    with SQLiteStore(db, durable=False) as store:
        report = crash_run(
            store, f"sqlite:///{db}", tmp_path, workflows=150, kills=20, seed=20240611,
            extra=("--lease", "10", "--poll", "0.1", "--max-runs", "20",
                   "--store-option", "durable=false"),
        )  # fmt: skip
    print("\nSQLite:", report.line())
    assert report.kills == 20 and report.wasted > 0
