"""Kill the worker with SIGKILL at random instants; every run must still finish the same.

The workload (crash_workflows.py) has fan-out with retries, a durable timer,
sequential steps, a failure caught by try/except and a generator child
workflow, on SQLite.  Each cycle forks a worker that resumes whatever is in
the store, and kills it after a random delay; when a worker finishes before
its kill, the next cycle adds a batch of new runs, so kills keep landing on
live work until ``KILLS`` of them have.  Then one last worker finishes
everything and the test checks:

* every run's result equals the one computed directly from the steps;
* no step ran after its outcome was recorded (each step checks the store as
  it starts);
* the kills landed at many different points (the store changed between most
  of them), some during a step (a step ran again: the at-least-once window),
  and retries happened.

``SCHED_CRASH_KILLS`` (default 60) sets the number of kills; try 1000 for a soak.
"""

from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from corosnap.stores import SQLiteStore

from . import crash_workflows as cw

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork and SIGKILL")

ROOT = Path(__file__).resolve().parents[2]
KILLS = int(os.environ.get("SCHED_CRASH_KILLS", "60"))
MAX_DELAY = 0.15  # seconds a worker may live before its kill
TIMEOUT = 60.0


class Server:
    def __init__(self, db: Path, log: Path, err: Path) -> None:
        self.err = err
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.scheduler.crash_workflows", str(db), str(log)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err.open("wb"),
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        self.buffer = b""

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def line(self, timeout: float) -> str | None:
        """The next line, or None if none arrives within ``timeout`` seconds."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.proc.stdout], [], [], left)[0]:
                return None
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            if not chunk:
                pytest.fail(f"fork server died:\n{self.err.read_text()}")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode()

    def expect(self, prefix: str, timeout: float = TIMEOUT) -> str:
        line = self.line(timeout)
        if line is None or not line.startswith(prefix):
            pytest.fail(f"expected {prefix!r} from the fork server, got {line!r}\n"
                        f"{self.err.read_text()}")  # fmt: skip
        return line

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def progress(db: Path) -> tuple[int, ...]:
    """A fingerprint of how far the store has got: every record's version."""
    with SQLiteStore(db) as store:
        return tuple(store.get(k).version for k in store.keys())  # type: ignore[union-attr]


def test_sigkill_at_random_instants_loses_nothing_and_reruns_no_recorded_step(
    tmp_path: Path,
) -> None:
    crash_loop(tmp_path, KILLS, seed=20240607)


@pytest.mark.slow
def test_sigkill_soak(tmp_path: Path) -> None:
    crash_loop(tmp_path, 10 * KILLS, seed=int(time.time()))


def crash_loop(tmp_path: Path, wanted: int, seed: int) -> None:
    db, log, err = tmp_path / "runs.db", tmp_path / "steps.log", tmp_path / "server.err"
    rng = random.Random(seed)
    server = Server(db, log, err)
    kills = finished = batches = moved = 0
    last = progress(db) if db.exists() else ()
    try:
        while kills < wanted:
            server.send(f"run {batches}")
            pid = int(server.expect("pid ").split()[1])
            status_line = server.line(rng.uniform(0.0, MAX_DELAY))
            if status_line is None:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                status_line = server.expect("exit ")
            status = int(status_line.split()[1])
            if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
                kills += 1
                now = progress(db)
                moved += now != last
                last = now
            elif os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
                finished += 1
                batches += 1  # all runs so far are done: give the next worker new ones
            else:
                pytest.fail(f"worker failed with status {status}:\n{err.read_text()}")
        server.send(f"run {batches}")  # the last worker is left alone to finish everything
        server.expect("pid ")
        assert server.expect("exit ") == "exit 0", err.read_text()
    finally:
        server.close()

    from corosnap.scheduler import Scheduler

    check = cw.make_scheduler(str(db))
    assert isinstance(check, Scheduler)
    for batch in range(batches + 1):
        assert check.result(cw.run_id(batch)) == cw.expected(batch), f"batch {batch}"
    assert sorted(check.run_ids(state="running")) == []

    lines = log.read_text().splitlines()
    violations = [line for line in lines if line.startswith("VIOLATION")]
    assert not violations, f"recorded steps ran again: {violations[:10]}"
    attempts = Counter(tuple(line.split()[1:3]) for line in lines if line.startswith("start"))
    steps = {key for key, _ in attempts}
    rerun = {key for (key, _), n in attempts.items() if n > 1}  # same attempt again: a kill
    retried = sum(1 for _, attempt in attempts if attempt != "1")
    recorded = sum(len(check.steps(run_id)) for run_id in check.run_ids())
    print(
        f"\n{kills} kills ({moved} after progress), {finished} workers finished, "
        f"{batches + 1} batches, {recorded} steps recorded, {sum(attempts.values())} step "
        f"attempts started, {len(rerun)} steps re-run after a kill, {retried} retry attempts"
    )
    assert kills >= 50
    print(f"seed {seed}")
    assert moved >= wanted // 4, "most kills landed before the worker did anything"
    assert retried > 0
    assert rerun, "no kill landed inside a step"
    assert recorded == len(steps)  # every step that ran has exactly one outcome recorded
