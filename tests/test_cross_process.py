"""Hand-written cross-process tests: snapshot in one interpreter, resume in another.

The functions live in ``_xp_funcs.py``; the other interpreter is the session's
worker (``conftest.worker``).  Each test compares against the same actions run
uninterrupted in this process.  The last section tests the worker itself
(crash, timeout and error reporting) and needs no core.
"""

from __future__ import annotations

import signal
from typing import Any

import pytest

import _driver
import _xp_funcs as xp
from _worker import WorkerClient, WorkerCrashed, WorkerError, WorkerTimeout, _script_step

MOD = "_xp_funcs"

_NO_CORE = _driver.core_unavailable()
requires_core = pytest.mark.skipif(_NO_CORE is not None, reason=_NO_CORE or "")


def _send(*values: Any) -> list[list[Any]]:
    return [["send", v] for v in values]


def run_here(fn: str, args: list[Any], actions: list[list[Any]]) -> tuple[list[str], list[str]]:
    """The reference: all ``actions`` on a fresh object in this process."""
    xp.LOG.clear()
    obj = getattr(xp, fn)(*args)
    results = [_script_step(obj, a) for a in actions]
    log = [repr(x) for x in xp.LOG]
    xp.LOG.clear()
    return results, log


def split_here_then_worker(
    worker: WorkerClient, fixture_dir: str, fn: str, args: list[Any], actions: list[Any], k: int
) -> tuple[list[str], list[str]]:
    import corosnap

    xp.LOG.clear()
    obj = getattr(xp, fn)(*args)
    results = [_script_step(obj, a) for a in actions[:k]]
    blob = corosnap.dumps(obj)
    log = [repr(x) for x in xp.LOG]
    _driver.discard(obj, xp)
    reply = worker.script(fixture_dir, MOD, actions[k:], blob=blob)
    return results + reply["results"], log + reply["log"]


def split_worker_then_here(
    worker: WorkerClient, fixture_dir: str, fn: str, args: list[Any], actions: list[Any], k: int
) -> tuple[list[str], list[str]]:
    import corosnap

    reply = worker.script(fixture_dir, MOD, actions[:k], fn=fn, args=args, dump=True)
    xp.LOG.clear()
    obj = corosnap.loads(reply["blob"])
    results = [_script_step(obj, a) for a in actions[k:]]
    log = [repr(x) for x in xp.LOG]
    xp.LOG.clear()
    return reply["results"] + results, reply["log"] + log


# 3-deep chain: top -> middle -> leaf; 6 steps, the last one returns
TOP_ACTIONS = _send(None, "a", 1, 2, "b", "y")
# coroutine chain: workflow -> step -> fetch -> Sleep.__await__; 2 * 2 sleeps
WORKFLOW_ACTIONS = _send(None, "r0", "r1", "r2", "r3")


@requires_core
def test_readme_example(worker: WorkerClient, fixture_dir: str) -> None:
    import corosnap

    g = xp.job([1, 2])
    assert next(g) == 1
    blob = corosnap.dumps(g)
    assert isinstance(blob, bytes)
    reply = worker.script(fixture_dir, MOD, _send("hi", None), blob=blob)
    assert reply["results"] == ["yield 3", "return 3"]


@requires_core
def test_readme_example_back_from_the_worker(worker: WorkerClient, fixture_dir: str) -> None:
    import corosnap

    reply = worker.script(fixture_dir, MOD, _send(None), fn="job", args=[[1, 2]], dump=True)
    assert reply["results"] == ["yield 1"]
    g = corosnap.loads(reply["blob"])
    assert g.send("hi") == 3
    with pytest.raises(StopIteration) as info:
        g.send(None)
    assert info.value.value == 3


@requires_core
@pytest.mark.parametrize("k", range(len(TOP_ACTIONS)))
def test_yield_from_chain_3_deep(worker: WorkerClient, fixture_dir: str, k: int) -> None:
    want = run_here("top", [2], TOP_ACTIONS)
    assert want[0][-1].startswith("return ")
    assert split_here_then_worker(worker, fixture_dir, "top", [2], TOP_ACTIONS, k) == want


@requires_core
@pytest.mark.parametrize("k", range(len(TOP_ACTIONS)))
def test_yield_from_chain_3_deep_from_the_worker(
    worker: WorkerClient, fixture_dir: str, k: int
) -> None:
    want = run_here("top", [2], TOP_ACTIONS)
    assert split_worker_then_here(worker, fixture_dir, "top", [2], TOP_ACTIONS, k) == want


@requires_core
@pytest.mark.parametrize("action", [["throw", "ValueError", ["boom", 1]], ["close"]])
def test_yield_from_chain_throw_and_close_after_restore(
    worker: WorkerClient, fixture_dir: str, action: list[Any]
) -> None:
    """Suspended in the leaf: throw()/close() must unwind leaf, middle, the with and finally."""
    actions = [*TOP_ACTIONS[:3], action]
    want = run_here("top", [2], actions)
    assert split_here_then_worker(worker, fixture_dir, "top", [2], actions, 3) == want


@requires_core
def test_snapshot_of_a_restored_chain(worker: WorkerClient, fixture_dir: str) -> None:
    """here -> worker -> here: a restored object can be snapshotted again."""
    import corosnap

    want = run_here("top", [2], TOP_ACTIONS)
    xp.LOG.clear()
    g = xp.top(2)
    results = [_script_step(g, a) for a in TOP_ACTIONS[:2]]
    log = [repr(x) for x in xp.LOG]
    blob = corosnap.dumps(g)
    _driver.discard(g, xp)
    reply = worker.script(fixture_dir, MOD, TOP_ACTIONS[2:4], blob=blob, dump=True)
    xp.LOG.clear()
    g2 = corosnap.loads(reply["blob"])
    rest = [_script_step(g2, a) for a in TOP_ACTIONS[4:]]
    got = (results + reply["results"] + rest, log + reply["log"] + [repr(x) for x in xp.LOG])
    assert got == want


@requires_core
@pytest.mark.parametrize("k", range(len(WORKFLOW_ACTIONS)))
def test_coroutine_chain(worker: WorkerClient, fixture_dir: str, k: int) -> None:
    want = run_here("workflow", [2], WORKFLOW_ACTIONS)
    assert want[0][-1].startswith("return ")
    got = split_here_then_worker(worker, fixture_dir, "workflow", [2], WORKFLOW_ACTIONS, k)
    assert got == want


@requires_core
@pytest.mark.parametrize("k", range(len(WORKFLOW_ACTIONS)))
def test_coroutine_chain_from_the_worker(worker: WorkerClient, fixture_dir: str, k: int) -> None:
    want = run_here("workflow", [2], WORKFLOW_ACTIONS)
    got = split_worker_then_here(worker, fixture_dir, "workflow", [2], WORKFLOW_ACTIONS, k)
    assert got == want


# ---------------------------------------------------------------------------
# the worker itself (no core needed)
# ---------------------------------------------------------------------------


def test_worker_is_a_separate_interpreter(worker: WorkerClient) -> None:
    import os
    import sys

    info = worker.ping()
    assert info["pid"] != os.getpid()
    assert info["version"] == list(sys.version_info[:3])


def test_worker_runs_the_same_trace(worker: WorkerClient, fixture_dir: str) -> None:
    here = _driver.run_uninterrupted(xp, "top", [2])
    assert worker.run(fixture_dir, MOD, "top", [2]) == here
    assert here.outcome is not None and here.outcome.startswith("return ")


def test_stray_output_does_not_corrupt_the_protocol(worker: WorkerClient, fixture_dir: str) -> None:
    trace = worker.run(fixture_dir, MOD, "noisy", [3])
    assert trace.yields == ["0", "1", "2"]
    assert trace.outcome == "return 'quiet'"


def test_remote_exception_is_reported(worker: WorkerClient, fixture_dir: str) -> None:
    with pytest.raises(WorkerError) as info:
        worker.run(fixture_dir, "corosnap_no_such_module", "main", [])
    assert info.value.exc_type == "ModuleNotFoundError"
    assert "corosnap_no_such_module" in info.value.remote_traceback
    worker.ping()  # still serving


@pytest.fixture
def own_worker() -> Any:
    client = WorkerClient(timeout=30)
    yield client
    client.close()


def test_worker_crash_is_reported_with_the_signal(own_worker: WorkerClient) -> None:
    own_worker.ping()
    with pytest.raises(WorkerCrashed, match="SIGSEGV") as info:
        own_worker.request("crash", signal=int(signal.SIGSEGV))
    assert "Fatal Python error" in str(info.value)  # faulthandler's report is quoted
    assert own_worker.ping()["pid"]  # a fresh worker took over
    assert own_worker.restarts == 1


def test_worker_exit_is_reported(own_worker: WorkerClient) -> None:
    with pytest.raises(WorkerCrashed, match="exited with status 3"):
        own_worker.request("exit", code=3)
    own_worker.ping()


def test_worker_hang_is_a_timeout_not_a_hang(own_worker: WorkerClient) -> None:
    with pytest.raises(WorkerTimeout, match="in time"):
        own_worker.request("sleep", timeout=0.5, seconds=30)
    own_worker.ping()
