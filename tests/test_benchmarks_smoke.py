"""The benchmark runs, and every workload survives a round trip.

``benchmarks/run.py --quick`` is run once in a subprocess (as ``make bench``
would run it).  Nothing here asserts a time: times depend on the machine.
Snapshot sizes are deterministic, so the size targets are asserted; the limits
are restated here on purpose rather than read from the benchmark's output.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import corosnap

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / "benchmarks" / "run.py"
WORKLOADS = [
    "counter", "running_totals", "chain", "coroutine_chain", "checkout", "records",
    "token_stream", "large", "dataclasses",
]
# 3.15 keeps a second stack slot per for loop (NULL, or the index of a
# sequence walked in place): one more byte (nil) in the counter's blob.
SIZE_LIMITS = {"counter": 40 + (sys.version_info >= (3, 15)), "chain": 150,
               "coroutine_chain": 150}

CORE = hasattr(corosnap, "dumps") and hasattr(corosnap, "loads")


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(RUN), "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"benchmark failed:\n{proc.stdout}\n{proc.stderr}"
    report = json.loads(out.read_text())
    report["stdout"] = proc.stdout
    report["by_name"] = {w["name"]: w for w in report["workloads"]}
    return report


def test_benchmark_runs_every_workload_and_prints_a_table(bench):
    assert list(bench["by_name"]) == WORKLOADS
    assert "| workload |" in bench["stdout"]
    assert bench["environment"]["python_version"] in bench["stdout"]
    for workload in bench["workloads"]:
        assert workload["size"]["pickle_floor"] > 0
        assert workload["size"]["msgpack_floor"] > 0
        for label in ("pickle_dumps", "pickle_loads", "msgpack_packb", "msgpack_unpackb"):
            assert workload["time"][label]["median_us"] > 0


def require_core(bench):
    """Skip before the core exists or on an interpreter it refuses; otherwise
    the benchmark must have found it too."""
    if not CORE:
        pytest.skip("corosnap.dumps/loads are not implemented yet")
    env = bench["environment"]
    if env["corosnap_reason"].startswith("UnsupportedInterpreter"):
        pytest.skip(env["corosnap_reason"])
    assert env["corosnap_available"], env["corosnap_reason"]


def test_benchmark_finds_the_core(bench):
    require_core(bench)


@pytest.mark.parametrize("name", WORKLOADS)
def test_workload_round_trips(bench, name):
    require_core(bench)
    workload = bench["by_name"][name]
    assert workload["errors"] == []
    assert workload["round_trip"]["ok"] is True, workload["round_trip"]["detail"]
    assert workload["size"]["corosnap"] > 0
    for label in ("corosnap_dumps", "corosnap_loads"):
        assert workload["time"][label]["median_us"] > 0


@pytest.mark.parametrize("name", sorted(SIZE_LIMITS))
def test_snapshot_size_target(bench, name):
    require_core(bench)
    size = bench["by_name"][name]["size"]["corosnap"]
    assert size <= SIZE_LIMITS[name], f"{name}: {size} B > {SIZE_LIMITS[name]} B"


def test_records_snapshot_is_no_larger_than_the_pickle_floor(bench):
    require_core(bench)
    size = bench["by_name"]["records"]["size"]
    assert size["corosnap"] <= size["pickle_floor"], size


def test_the_loads_time_is_split_into_making_and_teardown(bench):
    """Every workload but `large` times the end of its results' lives alone, on
    both sides, and reports loads without it (the "Making the object" table)."""
    require_core(bench)
    for workload in bench["workloads"]:
        times, ratios = workload["time"], workload["ratio"]
        if workload["large"]:
            assert "corosnap_teardown" not in times and ratios["loads_making"] is None
            continue
        for label in ("corosnap_teardown", "pickle_teardown"):
            assert times[label]["median_us"] > 0, (workload["name"], label)
        # loads_making is None only when no round had a floor part left (noise)
        assert ratios["loads_making"] is None or ratios["loads_making"] > 0
        assert ratios["teardown"] > 0
    assert "## Making the object, and the end of its life" in bench["stdout"]


def _bench_module():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import run
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return run


def test_a_teardown_measurement_times_close_and_free_and_not_the_making():
    run = _bench_module()
    made, closed, freed = [], [], []

    class Result:
        def __init__(self):
            made.append(self)

        def close(self):
            closed.append(1)

        def __del__(self):
            freed.append(1)

    def make(_argument):
        return Result()

    m = run.TeardownMeasurement("t", make, None, close=True)
    assert m.batch(run.TEARDOWN_POOL + 5) > 0
    assert len(made) == len(closed) == run.TEARDOWN_POOL + 5
    made.clear()
    assert len(freed) == run.TEARDOWN_POOL + 5
    # what is made outside the clock is not timed: a slow maker, a fast close
    import time

    def slow(_argument):
        time.sleep(0.002)
        return Result()

    m = run.TeardownMeasurement("t", slow, None, close=True)
    assert m.batch(10) < 10 * 2_000_000 / 4
    made.clear()


@pytest.mark.parametrize("close", [True, False])
def test_a_teardown_measurement_times_freeing_the_results(close):
    """Freeing is inside the clock on both sides: with close() too, whose
    bound methods hold the results until they are cleared."""
    run = _bench_module()
    import time

    class SlowToFree:
        def close(self):
            pass

        def __del__(self):
            time.sleep(0.001)

    elapsed = run.TeardownMeasurement("t", lambda _: SlowToFree(), None, close=close).batch(8)
    assert elapsed >= 8 * 1_000_000


def test_paired_ratio_skips_rounds_without_a_floor_part():
    run = _bench_module()
    mine, mine_end = run.Measurement("a", None, None), run.Measurement("b", None, None)
    floor, floor_end = run.Measurement("c", None, None), run.Measurement("d", None, None)
    mine.samples, mine_end.samples = [30.0, 40.0], [10.0, 10.0]
    floor.samples, floor_end.samples = [12.0, 2.0], [2.0, 2.5]
    assert run.paired_ratio(mine, floor, mine_end, floor_end) == 2.0
    floor.samples = [2.0, 2.0]
    assert run.paired_ratio(mine, floor, mine_end, floor_end) is None


def test_paired_ratio_without_the_teardowns():
    run = _bench_module()
    mine, mine_end = run.Measurement("a", None, None), run.Measurement("b", None, None)
    floor, floor_end = run.Measurement("c", None, None), run.Measurement("d", None, None)
    mine.samples, mine_end.samples = [30.0, 40.0, 50.0], [10.0, 10.0, 20.0]
    floor.samples, floor_end.samples = [12.0, 12.0, 12.0], [2.0, 2.0, 2.0]
    assert run.paired_ratio(mine, floor) == 40.0 / 12.0
    assert run.paired_ratio(mine, floor, mine_end, floor_end) == 3.0


def test_the_scheduler_benchmark_checks_its_targets(capsys):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_scheduler
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    store = bench_scheduler.TARGET_STORE
    assert bench_scheduler.check_targets({store: {"per await": 39e-6, "corosnap.dumps": 9e-6}})
    assert "| per await | 39 µs | <= 40 µs | PASS |" in capsys.readouterr().out
    assert not bench_scheduler.check_targets(
        {store: {"per await": 41e-6, "corosnap.dumps": 9e-6}}
    )
    assert "| per await | 41 µs | <= 40 µs | FAIL |" in capsys.readouterr().out
    assert bench_scheduler.check_targets({})  # nothing measured: SKIP, not a failure
    assert "| corosnap.dumps | n/a | <= 10 µs | SKIP |" in capsys.readouterr().out
