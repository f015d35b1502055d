"""The scheduler's behaviour in one process: directives, failures, retries, timers, children.

Every test runs twice: with steps in a thread pool (``workers=4``) and inline
in the loop (``workers=0``), except where threads are the point.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from corosnap import SnapshotError
from corosnap.scheduler import (
    PermanentError,
    RunNotFinished,
    RunNotFound,
    Scheduler,
    StepTimeout,
    UnrecordableError,
    current_step,
)
from corosnap.stores import MemoryStore

from . import workflows as wf


@pytest.fixture(params=[4, 0], ids=["threads", "inline"])
def sched(request: pytest.FixtureRequest) -> Iterator[Scheduler]:
    store = MemoryStore()
    wf.reset(store)
    yield wf.register(Scheduler(store, workers=request.param))
    wf.reset()


def run(sched: Scheduler, workflow: Any, *args: Any, **kwargs: Any) -> Any:
    run_id = sched.start(workflow, *args, **kwargs)
    sched.run_until_complete(timeout=30)
    return sched.result(run_id)


def test_a_call_returns_the_step_result(sched: Scheduler) -> None:
    assert run(sched, wf.one, 21) == 42
    assert wf.LOG == [(wf.LOG[0][0], 1)]


def test_gather_returns_results_in_argument_order(sched: Scheduler) -> None:
    assert run(sched, wf.fan_out, list(range(10))) == [2 * x for x in range(10)]


def test_pipeline_with_fan_out_loop_timer_and_child(sched: Scheduler) -> None:
    result = run(sched, wf.pipeline, [1, 2, 3])
    assert result == {"doubled": [2, 4, 6], "total": 24, "child": 48}
    assert not wf.VIOLATIONS


def test_a_failure_is_raised_at_the_await_and_try_except_works(sched: Scheduler) -> None:
    assert run(sched, wf.catches, "x") == "caught broken x"
    assert [attempt for _, attempt in wf.LOG] == [1, 2, 3]  # retries=2: three attempts


def test_gather_raises_the_first_failure_in_argument_order(sched: Scheduler) -> None:
    with pytest.raises(ValueError, match="broken a"):
        run(sched, wf.gather_fails)
    # Every item ran to its end before the workflow resumed.
    keys = {k for k, _ in wf.LOG}
    assert len(keys) == 3


def test_gather_return_exceptions_returns_them_in_the_list(sched: Scheduler) -> None:
    assert run(sched, wf.gather_collects) == [2, "ValueError", None]


def test_empty_gather_resumes_with_an_empty_list(sched: Scheduler) -> None:
    assert run(sched, wf.gather_nothing) == []


def test_generator_workflows_yield_directives(sched: Scheduler) -> None:
    # sum(2*i for i<4) = 12, + 200 from `yield from`, + 2 + 4 from the gather
    assert run(sched, wf.generator_flow, 4) == 12 + 200 + 6


def test_an_unregistered_coroutine_awaited_directly_runs_inside_the_caller(
    sched: Scheduler,
) -> None:
    assert run(sched, wf.inline_helper, 5) == 10 + 20 + 1
    assert list(sched.run_ids()) and all("/" not in r for r in sched.run_ids())


def test_workflows_call_workflows_as_child_runs(sched: Scheduler) -> None:
    run_id = sched.start(wf.parent, 1)
    sched.run_until_complete(timeout=30)
    assert sched.result(run_id) == [2, 4, 20]
    children = sorted(r for r in sched.run_ids() if r.startswith(run_id + "/"))
    assert children == [f"{run_id}/1", f"{run_id}/2", f"{run_id}/3", f"{run_id}/3/1"]
    status = sched.status(f"{run_id}/3/1")
    assert (status.state, status.parent, status.workflow) == (
        "done", f"{run_id}/3", "tests.scheduler.workflows.one",
    )  # fmt: skip
    assert sched.result(f"{run_id}/3") == 20


def test_a_failed_child_run_raises_in_the_parent(sched: Scheduler) -> None:
    assert run(sched, wf.child_fails) == "child failed with KeyError('lost')"


def test_a_failed_run_records_its_exception_and_result_raises_it(sched: Scheduler) -> None:
    run_id = sched.start(wf.fails, 7)
    sched.run_until_complete(timeout=30)
    assert sched.status(run_id).state == "failed"
    with pytest.raises(ValueError, match="workflow failed 7"):
        sched.result(run_id)


def test_transient_errors_are_retried_until_success(sched: Scheduler) -> None:
    wf.FAIL_TIMES["a"] = 2
    assert run(sched, wf.flaky_flow, "a") == "ok-a"
    assert [attempt for _, attempt in wf.LOG] == [1, 2, 3]


def test_exhausted_retries_raise_the_last_error(sched: Scheduler) -> None:
    wf.FAIL_TIMES["a"] = 99
    with pytest.raises(ConnectionError, match="attempt 4"):
        run(sched, wf.flaky_flow, "a")
    assert len(wf.LOG) == 4  # retries=3


def test_permanent_errors_are_not_retried(sched: Scheduler) -> None:
    assert run(sched, wf.refused_flow, "b") == "permanent: refused b"
    assert len(wf.LOG) == 1


def test_permanent_and_transient_classes_per_function() -> None:
    store = MemoryStore()
    wf.reset(store)
    s = wf.register(Scheduler(store), broken={"permanent": (ValueError,)})
    assert run(s, wf.catches, 1) == "caught broken 1"
    assert len(wf.LOG) == 1
    wf.reset(store := MemoryStore())
    s = wf.register(Scheduler(store), flaky={"transient": (TimeoutError,)})
    wf.FAIL_TIMES["z"] = 1
    with pytest.raises(ConnectionError):  # not in `transient`, so permanent
        run(s, wf.flaky_flow, "z")
    assert len(wf.LOG) == 1


def test_retries_wait_with_exponential_backoff() -> None:
    store = MemoryStore()
    wf.reset(store)
    s = wf.register(Scheduler(store), flaky={"backoff": 0.05, "jitter": False, "retries": 3})
    wf.FAIL_TIMES["a"] = 3
    start = time.monotonic()
    assert run(s, wf.flaky_flow, "a") == "ok-a"
    assert time.monotonic() - start >= 0.05 + 0.1 + 0.2


def test_a_slow_attempt_times_out_and_is_retried_then_raised() -> None:
    store = MemoryStore()
    wf.reset(store)
    options = {"timeout": 0.05, "retries": 1, "backoff": 0.01}
    s = wf.register(Scheduler(store, workers=4), slow=options)
    start = time.monotonic()
    with pytest.raises(StepTimeout):
        run(s, wf.slow_flow, 0.5)
    assert time.monotonic() - start < 0.45  # did not wait for the slow attempts
    assert [a for _, a in wf.LOG] == [1, 2]


def test_concurrency_limit_per_function() -> None:
    store = MemoryStore()
    wf.reset(store)
    s = wf.register(Scheduler(store, workers=8), slow={"concurrency": 2})
    run_id = s.start(wf.many_slow, 6, 0.05)
    s.run_until_complete(timeout=30)
    assert s.result(run_id) == [0.05] * 6
    assert wf.MAX_RUNNING[run_id] == 2


def test_steps_run_concurrently_in_the_thread_pool() -> None:
    store = MemoryStore()
    wf.reset(store)
    s = wf.register(Scheduler(store, workers=8))
    start = time.monotonic()
    run_id = s.start(wf.many_slow, 8, 0.2)
    s.run_until_complete(timeout=30)
    assert time.monotonic() - start < 0.2 * 4
    assert wf.MAX_RUNNING[run_id] > 1


def test_sleep_waits_without_polling(sched: Scheduler) -> None:
    cpu = time.process_time()
    slept = run(sched, wf.sleeper, 0.3)
    assert 0.3 <= slept < 2
    assert time.process_time() - cpu < 0.15  # a busy loop would burn the whole 0.3 s


def test_a_timer_survives_a_restart_and_keeps_its_due_time() -> None:
    store = MemoryStore()
    s = wf.register(Scheduler(store))
    run_id = s.start(wf.sleeper, 0.5)
    with pytest.raises(TimeoutError):
        s.run_until_complete(timeout=0.2)
    assert s.status(run_id).waiting_on[0].startswith("#1 sleep until ")
    s2 = wf.register(Scheduler(store))  # a new scheduler: only the store carries over
    s2.run_until_complete(timeout=5)
    slept = s2.result(run_id)
    assert 0.5 <= slept < 0.7  # measured from the first checkpoint, not from the restart


def test_awaiting_something_else_raises_type_error_in_the_workflow(sched: Scheduler) -> None:
    assert run(sched, wf.awaits_foreign).startswith("refused: workflow ")


def test_calling_an_unregistered_function_raises_type_error(sched: Scheduler) -> None:
    assert "not registered" in run(sched, wf.calls_unregistered)


def test_a_workflow_that_cannot_be_snapshotted_fails_with_the_reason(sched: Scheduler) -> None:
    with pytest.raises(SnapshotError, match="lock"):
        run(sched, wf.holds_lock)


def test_an_unpicklable_result_becomes_an_unrecordable_error(sched: Scheduler) -> None:
    assert run(sched, wf.unpicklable_flow) == "UnrecordableError"


def test_an_exception_that_does_not_unpickle_is_recorded_by_name(sched: Scheduler) -> None:
    assert run(sched, wf.odd_flow) == (
        "UnrecordableError: tests.scheduler.workflows.OddError: x/y"
    )


def test_steps_get_a_stable_distinct_idempotency_key(sched: Scheduler) -> None:
    run_id = sched.start(wf.keys)
    sched.run_until_complete(timeout=30)
    assert sched.result(run_id) == [f"{run_id}/1", f"{run_id}/2"]
    with pytest.raises(RuntimeError):
        current_step()


def test_start_with_a_run_id_is_idempotent(sched: Scheduler) -> None:
    assert sched.start(wf.one, 1, run_id="order-1") == "order-1"
    assert sched.start(wf.one, 2, run_id="order-1") == "order-1"
    sched.run_until_complete(timeout=30)
    assert sched.result("order-1") == 2
    assert sched.start(wf.one, 3, run_id="order-1") == "order-1"
    stats = sched.run_until_complete(timeout=30)
    assert stats.runs_resumed == 0
    assert sched.result("order-1") == 2


@pytest.mark.parametrize("bad", ["", "a/b", "x" * 201, "é", "a b"])
def test_bad_run_ids_are_refused(sched: Scheduler, bad: str) -> None:
    with pytest.raises(ValueError):
        sched.start(wf.one, 1, run_id=bad)


def test_start_refuses_an_unregistered_workflow(sched: Scheduler) -> None:
    with pytest.raises(TypeError):
        sched.start(wf._helper, 1)


def test_registration_checks_the_kind_of_function() -> None:
    s = Scheduler(MemoryStore())
    with pytest.raises(TypeError):
        s.function(wf.one)
    with pytest.raises(TypeError):
        s.workflow(wf.double)
    with pytest.raises(ValueError):
        s.function(retries=-1)(wf.double)
    assert s.function(wf.double) is wf.double  # bare decorator, function unchanged


def test_result_and_status_of_unknown_and_unfinished_runs(sched: Scheduler) -> None:
    with pytest.raises(RunNotFound):
        sched.result("nope")
    with pytest.raises(KeyError):
        sched.status("nope")
    run_id = sched.start(wf.one, 1)
    with pytest.raises(RunNotFinished):
        sched.result(run_id)
    status = sched.status(run_id)
    assert (status.state, status.checkpoints, status.waiting_on) == ("running", 0, ())


def test_status_describes_what_a_run_waits_on() -> None:
    s = wf.register(Scheduler(MemoryStore()))
    run_id = s.start(wf.sleeper, 60)
    deadline = time.monotonic() + 10
    while True:  # until it reaches its sleep (a loaded machine may take more than one slice)
        with pytest.raises(TimeoutError):
            s.run_until_complete(timeout=0.05)
        status = s.status(run_id)
        if status.checkpoints or time.monotonic() > deadline:
            break
    assert status.state == "running" and status.checkpoints == 1
    assert len(status.waiting_on) == 1 and "sleep until" in status.waiting_on[0]
    assert list(s.run_ids(state="running")) == [run_id]


def test_run_until_complete_returns_stats(sched: Scheduler) -> None:
    wf.FAIL_TIMES["s"] = 1
    sched.start(wf.pipeline, [1, 2])
    sched.start(wf.flaky_flow, "s")
    stats = sched.run_until_complete(timeout=30)
    assert stats.runs_done == 3  # two runs and a child
    assert stats.checkpoints == 5 + 1 + 1
    assert stats.steps_recorded == 2 + 2 + 1 + 1
    assert stats.retries == 1 and stats.attempts == 7
    assert 0 < stats.snapshot_bytes < stats.record_bytes


def test_logging_says_what_happens(sched: Scheduler, caplog: pytest.LogCaptureFixture) -> None:
    wf.FAIL_TIMES["q"] = 1
    with caplog.at_level(logging.DEBUG, logger="corosnap.scheduler"):
        run(sched, wf.flaky_flow, "q")
    text = caplog.text
    assert "started: tests.scheduler.workflows.flaky_flow" in text
    assert "checkpoint 1: snapshot" in text and "waiting on #1 flaky('q')" in text
    assert "attempt 1/4 failed (ConnectionError: flaky q attempt 1); retrying in" in text
    assert "done after 2 attempt(s)" in text
    assert "(tests.scheduler.workflows.flaky_flow) done after 1 checkpoints" in text
    events = [r.scheduler_event for r in caplog.records if hasattr(r, "scheduler_event")]
    assert [e["event"] for e in events] == ["checkpoint", "step"]


def test_importing_corosnap_does_not_import_the_scheduler() -> None:
    code = "import sys, corosnap; assert 'corosnap.scheduler' not in sys.modules, sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_permanent_error_is_an_exception_users_can_subclass() -> None:
    class CardDeclined(PermanentError):
        pass

    from corosnap.scheduler import FunctionOptions

    opts = FunctionOptions(wf.double, "double")
    assert opts.is_permanent(CardDeclined())
    assert isinstance(UnrecordableError("T", "m"), Exception)


def test_steps_lists_what_ran_where(sched: Scheduler) -> None:
    import os

    wf.FAIL_TIMES["s"] = 1
    run_id = sched.start(wf.pipeline, [1, 2])
    sched.run_until_complete(timeout=30)
    steps = sched.steps(run_id)
    assert [s.seq for s in steps] == [1, 2, 3, 4]  # op 5 is the sleep, 6 the child run
    assert {s.function for s in steps} == {"tests.scheduler.workflows.double"}
    assert all(s.ok and s.attempts == 1 and s.pid == os.getpid() for s in steps)
    assert all(s.started <= s.finished for s in steps)
    assert [s.seq for s in sched.steps(f"{run_id}/6")] == [1]


def test_forget_deletes_a_finished_run_with_its_children_and_steps(sched: Scheduler) -> None:
    keep = sched.start(wf.one, 1, run_id="keep")
    gone = sched.start(wf.parent, 1, run_id="gone")
    sched.run_until_complete(timeout=30)
    sched.forget(gone)
    assert list(sched.run_ids()) == [keep]
    assert all(k.startswith("step/keep/") for k in sched.store.keys("step/"))
    with pytest.raises(RunNotFound):
        sched.result(gone)
    running = sched.start(wf.one, 1)
    with pytest.raises(RunNotFinished):
        sched.forget(running)


def test_arguments_that_cannot_be_recorded_raise_at_the_await(sched: Scheduler) -> None:
    assert run(sched, wf.lambda_argument) == "UnrecordableError"


def test_runs_that_cannot_be_restored_are_left_alone_and_reported() -> None:
    from dataclasses import replace

    from corosnap.scheduler import SchedulerError
    from corosnap.scheduler._records import decode_run, encode_run

    store = MemoryStore()
    wf.reset(store)  # not the workflows' state an earlier test left
    s = wf.register(Scheduler(store))
    parent = s.start(wf.waits_for_child, 2.0)
    other = s.start(wf.one, 5)
    child_key = f"run/{parent}/1"
    for _ in range(50):  # until the parent waits on its sleeping child (slow on a busy machine)
        with pytest.raises(TimeoutError):
            s.run_until_complete(timeout=0.1)
        if store.get(child_key) is not None:
            break
    raw = store.get(child_key)
    assert raw is not None
    damaged = replace(decode_run(f"{parent}/1", raw.blob), snapshot=b"not a snapshot")
    store.put(child_key, encode_run(damaged))
    with pytest.raises(SchedulerError, match=f"could not be resumed.*{parent}/1"):
        wf.register(Scheduler(store)).run_until_complete(timeout=10)
    assert s.result(other) == 10  # everything else finished
    assert s.status(parent).state == "running" and s.status(f"{parent}/1").state == "running"
    assert store.get(child_key) == (encode_run(damaged), raw.version + 1)  # left as it was


def test_awaits_inside_except_finally_and_async_with(sched: Scheduler) -> None:
    assert run(sched, wf.awaits_in_handlers, 1) == ["broken 1: 2", 4, 6, 200, 120, [0, 2]]


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_stopping_early_closes_the_dropped_coroutines_quietly(
    capfd: pytest.CaptureFixture[str],
) -> None:
    import gc

    store = MemoryStore()
    wf.reset(store)
    s = wf.register(Scheduler(store, workers=0))
    run_id = s.start(wf.awaits_in_handlers, 1)
    wf.INTERRUPT_ON.add(2)  # stops the engine while the run waits inside `try: ... finally: await`
    with pytest.raises(KeyboardInterrupt):
        s.run_until_complete(timeout=30)
    gc.collect()
    assert "ignored GeneratorExit" not in capfd.readouterr().err
    wf.INTERRUPT_ON.clear()
    wf.register(Scheduler(store)).run_until_complete(timeout=30)
    assert s.result(run_id) == ["broken 1: 2", 4, 6, 200, 120, [0, 2]]
