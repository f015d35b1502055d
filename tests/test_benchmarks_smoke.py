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
