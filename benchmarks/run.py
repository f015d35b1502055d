"""The corosnap size/speed benchmark.

    python benchmarks/run.py [--quick] [--time SECONDS] [--only NAMES] [--json PATH] [--check]

(``make bench`` runs it in the project's venv; ``make bench BENCH_ARGS=--quick``.)

For every workload in ``workloads.py`` it reports, for the same suspended
frames:

* corosnap: the size of ``corosnap.dumps(obj)`` and the median time of
  ``dumps`` and ``loads``;
* the msgpack floor: ``msgpack.packb`` of the values of the locals of every
  frame in the chain (one flat list), timed with ``msgpack.unpackb`` too;
* the pickle floor: ``pickle.dumps(..., protocol=5)`` of the locals dict (a
  list of the dicts, outermost frame first, for a chain), timed with
  ``pickle.loads`` too;

then checks the targets and prints PASS/FAIL.  Before timing anything it checks
that ``loads(dumps(obj))`` really resumes: the restored object has the same
locals in every frame, and driving it and a twin of the original to the end
yields the same values and returns the same result.  If ``corosnap.dumps`` does
not exist yet (or the interpreter is unsupported) the corosnap columns say so
and the floors are still measured.

Theory of operation (timing):  each measured function is calibrated to a batch
size that takes about ``time / 20`` (``--quick``: ``time / 5``); then all the
functions of one workload are run in interleaved rounds, one batch each per
round, until every function has run for ``time`` seconds in total (20 rounds at
least; 5 with ``--quick``).  A batch's time divided by its size is one sample;
the reported figure is the median of the samples.  Interleaving means a burst
of load on the machine hits corosnap and its floors alike, so the ratios are
steadier than the absolute numbers.  As in ``timeit``, the garbage collector
is off inside a batch, and each result is discarded as soon as it is made,
inside the clock: the floors' results are freed, restored generators and
coroutines are ``close()``d (what freeing them would do anyway).  Keeping the
results alive until the clock stops was tried and rejected: every call then
builds its result in fresh memory, which added 20-40% to ``pickle.loads`` on
the small workloads and 3.5x on the large one (page faults) and flattered the
ratios.

Exit status: 0 normally (whatever the targets say), 1 if a round trip is
broken or corosnap raised, or with ``--check`` if any target FAILs.
"""

from __future__ import annotations

import argparse
import enum
import gc
import itertools
import json
import os
import pickle
import platform
import statistics
import subprocess
import sys
import time
import types
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import workloads

ROOT = Path(__file__).resolve().parent.parent

# Targets (docs/benchmarks.md, "Targets").
SIZE_LIMITS = {"counter": 40, "chain": 150, "coroutine_chain": 150}
SIZE_AT_MOST_PICKLE_FLOOR = ("records",)
# corosnap time / pickle time, dumps and loads each: value-heavy frames, tiny
# frames, the large one and the dataclass-and-enum state.
TIME_LIMITS = {
    "running_totals": 1.5, "records": 1.5, "checkout": 1.5,
    "counter": 5.0, "chain": 5.0, "coroutine_chain": 5.0,
    "large": 1.0,
    "dataclasses": 2.0,
}
TIME_LIMIT_OTHER = 10.0  # a workload not named above

PICKLE_PROTOCOL = 5

warnings.filterwarnings(
    "ignore", category=RuntimeWarning, message=r"coroutine .* was never awaited"
)


# ---------------------------------------------------------------------------
# Frames and floors


def chain_of(obj: Any) -> list[Any]:
    """The generators/coroutines of a chain, outermost first, following
    ``gi_yieldfrom`` / ``cr_await`` / ``ag_await`` while they lead to a
    generator, coroutine or async generator, and an ``__anext__()`` in
    flight to its async generator."""
    chain = []
    while True:
        if isinstance(obj, types.GeneratorType):
            chain.append(obj)
            obj = obj.gi_yieldfrom
        elif isinstance(obj, types.CoroutineType):
            chain.append(obj)
            obj = obj.cr_await
        elif isinstance(obj, types.AsyncGeneratorType):
            chain.append(obj)
            obj = obj.ag_await
        elif type(obj).__name__ == "async_generator_asend":
            obj = next(x for x in gc.get_referents(obj) if isinstance(x, types.AsyncGeneratorType))
        else:
            return chain


def frame_of(obj: Any) -> types.FrameType:
    if isinstance(obj, types.AsyncGeneratorType):
        return obj.ag_frame
    return obj.gi_frame if isinstance(obj, types.GeneratorType) else obj.cr_frame


def chain_locals(obj: Any) -> list[dict[str, Any]]:
    """A plain dict of the locals of every frame in the chain.

    ``f_locals`` is a dict snapshot on 3.11/3.12 and a write-through proxy
    (PEP 667) from 3.13 on; ``dict()`` gives a plain copy in both cases.
    Unbound locals are absent.
    """
    return [dict(frame_of(link).f_locals) for link in chain_of(obj)]


def msgpack_default(value: Any) -> Any:
    """For the msgpack floor only: what msgpack cannot encode natively is
    replaced by its bare data (a set by a list, an enum member by its value,
    an instance by its ``__dict__``, with no class reference), so the floor
    stays a lower bound."""
    if isinstance(value, (set, frozenset)):
        return list(value)
    if isinstance(value, enum.Enum):
        return value.value
    if hasattr(value, "__dict__"):
        return vars(value)
    raise TypeError(f"msgpack floor: cannot encode {type(value).__qualname__}")


def msgpack_floor_value(frames: list[dict[str, Any]]) -> list[Any]:
    return [value for frame in frames for value in frame.values()]


def pickle_floor_value(frames: list[dict[str, Any]]) -> Any:
    return frames[0] if len(frames) == 1 else frames


def packb(value: Any) -> bytes:
    return msgpack.packb(value, default=msgpack_default)


def unpackb(blob: bytes) -> Any:
    return msgpack.unpackb(blob, strict_map_key=False)


def pickle_dumps(value: Any) -> bytes:
    return pickle.dumps(value, protocol=PICKLE_PROTOCOL)


# ---------------------------------------------------------------------------
# corosnap, if its core exists


@dataclass
class Corosnap:
    dumps: Any = None
    loads: Any = None
    version: str = "?"
    reason: str = ""  # why it is unavailable

    @property
    def available(self) -> bool:
        return self.dumps is not None

    def load_and_close(self, blob: bytes) -> None:
        """What the loads timing runs: the restored generator or coroutine is
        discarded at once, like the floors' results, but explicitly closed, so
        no coroutine is left to the garbage collector (or to a warning)."""
        self.loads(blob).close()


def find_corosnap() -> Corosnap:
    try:
        import corosnap
    except Exception as exc:
        return Corosnap(reason=f"cannot import corosnap: {type(exc).__name__}: {exc}")
    version = getattr(corosnap, "__version__", "?")
    dumps = getattr(corosnap, "dumps", None)
    loads = getattr(corosnap, "loads", None)
    if dumps is None or loads is None:
        return Corosnap(version=version, reason="corosnap.dumps/loads do not exist yet")
    unsupported = getattr(corosnap, "UnsupportedInterpreter", ())
    probe = workloads.WORKLOADS[0].make()
    try:
        dumps(probe)
    except unsupported as exc:
        return Corosnap(version=version, reason=f"UnsupportedInterpreter: {exc}")
    except Exception:  # reported per workload later
        pass
    finally:
        probe.close()
    return Corosnap(dumps=dumps, loads=loads, version=version)


def close(obj: Any) -> None:
    close_method = getattr(obj, "close", None)
    if close_method is not None:
        close_method()


# ---------------------------------------------------------------------------
# Round-trip sanity


def check_round_trip(workload: workloads.Workload, snap: Corosnap) -> tuple[bool, str]:
    """``loads(dumps(obj))`` resumes like ``obj``: same kind of object, same
    locals in every frame, same values yielded and same result to the end."""
    try:
        original, last = workload.prepare()
        blob = snap.dumps(original)
        restored = snap.loads(blob)
    except Exception as exc:
        return False, f"raised {type(exc).__name__}: {exc}"
    notes = []
    try:
        if type(restored) is not type(original):
            return False, f"restored a {type(restored).__name__}, not a {type(original).__name__}"
        if restored is original:
            return False, "loads returned the original object"
        before, after = chain_locals(original), chain_locals(restored)
        if len(before) != len(after):
            return False, f"chain of {len(after)} frames restored, expected {len(before)}"
        for depth, (want, got) in enumerate(zip(before, after, strict=True)):
            if want != got:
                names = sorted(set(want) | set(got))
                wrong = [n for n in names if want.get(n, "<unbound>") != got.get(n, "<unbound>")]
                return False, f"frame {depth}: locals differ: {', '.join(wrong)}"
        if snap.dumps(original) != blob:
            notes.append("dumps is not deterministic")
        expected = workload.finish(original, last)
        try:
            got = workload.finish(restored, last)
        except Exception as exc:
            return False, f"restored object raised {type(exc).__name__} while resuming: {exc}"
        if got != expected:
            return False, (
                f"restored object yielded {len(got[0])} values and returned {got[1]!r}; "
                f"original yielded {len(expected[0])} and returned {expected[1]!r}"
            )
    except Exception as exc:
        return False, f"check raised {type(exc).__name__}: {exc}"
    finally:
        close(original)
        close(restored)
    detail = f"same locals in {len(before)} frame(s), {len(expected[0])} more values, same result"
    if notes:
        detail += f" ({'; '.join(notes)})"
    return True, detail


# ---------------------------------------------------------------------------
# Timing


@dataclass
class Measurement:
    label: str
    function: Any
    argument: Any
    number: int = 0
    total_ns: int = 0
    samples: list[float] = field(default_factory=list)  # ns per call, one per batch

    def batch(self, number: int) -> int:
        function, argument = self.function, self.argument
        loop = itertools.repeat(None, number)
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            start = time.perf_counter_ns()
            for _ in loop:
                function(argument)
            elapsed = time.perf_counter_ns() - start
        finally:
            if gc_was_enabled:
                gc.enable()
        return max(elapsed, 1)

    def whole_ns(self, elapsed: int) -> int:
        """What the last batch cost the run (``elapsed``: its clocked part)."""
        return elapsed

    def calibrate(self, batch_ns: int) -> None:
        self.batch(1)  # warm up
        number = 1
        while True:
            whole = self.whole_ns(self.batch(number))
            if whole >= batch_ns:
                break
            number = max(number * 2, int(number * batch_ns * 1.2 / max(whole, 1)))
        self.number = number

    def stats(self) -> dict[str, Any]:
        us = sorted(sample / 1000 for sample in self.samples)
        quartiles = statistics.quantiles(us, n=4) if len(us) > 1 else [us[0]] * 3
        return {
            "median_us": statistics.median(us),
            "min_us": us[0],
            "q1_us": quartiles[0],
            "q3_us": quartiles[2],
            "max_us": us[-1],
            "batches": len(us),
            "calls_per_batch": self.number,
        }


# How many results a teardown measurement makes before it times freeing them:
# few enough that they are still in the CPU caches (and reuse the memory the
# previous pool freed), enough to amortise the clock reads.
TEARDOWN_POOL = 32


@dataclass
class TeardownMeasurement(Measurement):
    """The end of a result's life, alone: the part of a loads timing that runs
    after the result is made.  ``function(argument)`` makes the results, in
    pools of ``TEARDOWN_POOL``, outside the clock; the clock runs while each is
    ``close()``d (with ``close``: CPython's close of a restored generator or
    coroutine, what ``corosnap_loads`` runs) and the pool is freed.

    ``corosnap_loads`` minus ``corosnap_teardown`` is what ``loads`` spends
    making the object; ``pickle_loads`` minus ``pickle_teardown`` is the same
    for the floor."""

    close: bool = False
    wall_ns: int = 0  # the last batch's whole time, making the results included

    def whole_ns(self, elapsed: int) -> int:
        """The batch's whole time, making the results included: it sizes the
        batches and counts against the budget, so that the benchmark's time
        per round does not grow by what is made outside the clock (9x the
        teardown for ``dataclasses``)."""
        return self.wall_ns

    def batch(self, number: int) -> int:
        make, argument = self.function, self.argument
        gc_was_enabled = gc.isenabled()
        gc.disable()
        elapsed = 0
        began = time.perf_counter_ns()
        try:
            left = number
            while left > 0:
                pool = [make(argument) for _ in range(min(left, TEARDOWN_POOL))]
                left -= len(pool)
                closers = [obj.close for obj in pool] if self.close else []
                start = time.perf_counter_ns()
                for closer in closers:
                    closer()
                closer = None  # the bound methods hold the objects too
                closers.clear()
                pool.clear()  # the last references: each result is freed here
                elapsed += time.perf_counter_ns() - start
        finally:
            if gc_was_enabled:
                gc.enable()
        self.wall_ns = time.perf_counter_ns() - began
        return max(elapsed, 1)


def paired_ratio(
    mine: Measurement,
    floor: Measurement,
    mine_minus: Measurement | None = None,
    floor_minus: Measurement | None = None,
) -> float | None:
    """The median over rounds of (mine / floor) within the same round.

    Both ran back to back in every round, so a change of machine speed
    between rounds (frequency scaling, a noisy neighbour: steps of 2x were seen
    on the development VM) cancels out of each round's ratio.  With the
    ``_minus`` measurements, the ratio of ``mine - mine_minus`` to ``floor -
    floor_minus``, each from the samples of the same round."""
    if mine_minus is None or floor_minus is None:
        return statistics.median(a / b for a, b in zip(mine.samples, floor.samples, strict=True))
    rounds = zip(mine.samples, mine_minus.samples, floor.samples, floor_minus.samples, strict=True)
    # A round whose floor part is not positive (a noisy round, a floor whose
    # teardown is most of it) has no ratio; with none left there is no answer.
    ratios = [(a - am) / (b - bm) for a, am, b, bm in rounds if b - bm > 0]
    return statistics.median(ratios) if ratios else None


def measure(measurements: list[Measurement], budget_s: float, min_rounds: int) -> None:
    budget_ns = int(budget_s * 1e9)
    for m in measurements:
        m.calibrate(max(1, budget_ns // min_rounds))
    rounds = 0
    while True:
        for m in measurements:
            elapsed = m.batch(m.number)
            m.samples.append(elapsed / m.number)
            m.total_ns += m.whole_ns(elapsed)
        rounds += 1
        if rounds >= min_rounds and all(m.total_ns >= budget_ns for m in measurements):
            return
        if rounds >= 100 * min_rounds:
            return


# ---------------------------------------------------------------------------
# One workload


def bench_workload(
    workload: workloads.Workload, snap: Corosnap, budget_s: float, min_rounds: int
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "name": workload.name,
        "description": workload.description,
        "large": workload.large,
        "frames": None,
        "round_trip": {"ok": None, "detail": snap.reason or "n/a"},
        "size": {"corosnap": None, "msgpack_floor": None, "pickle_floor": None},
        "time": {},
        # corosnap / pickle floor, paired by round.  Not targets: loads_making,
        # loads without the end of the result's life on both sides; teardown,
        # that end (CPython's close and freeing / freeing the floor's result)
        "ratio": {"dumps": None, "loads": None, "loads_making": None, "teardown": None},
        "errors": [],  # corosnap raised: the run exits 1
        "notes": [],  # e.g. a floor that cannot be computed
    }

    # The floors, from their own instance: reading f_locals materialises a
    # dict on the frame on 3.11/3.12, and corosnap should not see that.
    floor_obj = workload.make()
    frames = chain_locals(floor_obj)
    result["frames"] = len(frames)
    measurements = []
    try:
        packed = packb(msgpack_floor_value(frames))
    except TypeError as exc:
        result["notes"].append(str(exc))
    else:
        result["size"]["msgpack_floor"] = len(packed)
        measurements += [
            Measurement("msgpack_packb", packb, msgpack_floor_value(frames)),
            Measurement("msgpack_unpackb", unpackb, packed),
        ]
    pickled = pickle_dumps(pickle_floor_value(frames))
    result["size"]["pickle_floor"] = len(pickled)
    measurements += [
        Measurement("pickle_dumps", pickle_dumps, pickle_floor_value(frames)),
        Measurement("pickle_loads", pickle.loads, pickled),
    ]
    if not workload.large:
        measurements.append(TeardownMeasurement("pickle_teardown", pickle.loads, pickled))

    timed_obj = None
    if snap.available:
        ok, detail = check_round_trip(workload, snap)
        result["round_trip"] = {"ok": ok, "detail": detail}
        timed_obj = workload.make()
        try:
            blob = snap.dumps(timed_obj)
            snap.loads(blob).close()
        except Exception as exc:
            result["errors"].append(f"corosnap raised {type(exc).__name__}: {exc}")
        else:
            result["size"]["corosnap"] = len(blob)
            measurements += [
                Measurement("corosnap_dumps", snap.dumps, timed_obj),
                Measurement("corosnap_loads", snap.load_and_close, blob),
            ]
            if not workload.large:
                measurements.append(
                    TeardownMeasurement("corosnap_teardown", snap.loads, blob, close=True)
                )

    measure(measurements, budget_s, min_rounds)
    by_label = {m.label: m for m in measurements}
    for m in measurements:
        result["time"][m.label] = m.stats()
    for direction in ("dumps", "loads"):
        mine, floor = by_label.get(f"corosnap_{direction}"), by_label.get(f"pickle_{direction}")
        if mine is not None and floor is not None:
            result["ratio"][direction] = paired_ratio(mine, floor)
    if "corosnap_teardown" in by_label and "pickle_teardown" in by_label:
        result["ratio"]["loads_making"] = paired_ratio(
            by_label["corosnap_loads"],
            by_label["pickle_loads"],
            mine_minus=by_label["corosnap_teardown"],
            floor_minus=by_label["pickle_teardown"],
        )
        result["ratio"]["teardown"] = paired_ratio(
            by_label["corosnap_teardown"], by_label["pickle_teardown"]
        )
    close(floor_obj)
    if timed_obj is not None:
        close(timed_obj)
    return result


# ---------------------------------------------------------------------------
# Targets


def median(result: dict[str, Any], label: str) -> float | None:
    stats = result["time"].get(label)
    return None if stats is None else stats["median_us"]


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def targets(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []

    def row(name, workload, kind, measured, limit, unit, limit_note=""):
        if measured is None or limit is None:
            verdict = "SKIP"
        else:
            verdict = "PASS" if measured <= limit else "FAIL"
        rows.append(
            {
                "target": name,
                "workload": workload,
                "kind": kind,
                "measured": measured,
                "limit": limit,
                "unit": unit,
                "limit_note": limit_note,
                "result": verdict,
            }
        )

    for result in results:
        name, size = result["name"], result["size"]
        if name in SIZE_LIMITS:
            row(f"{name}: snapshot size", name, "size", size["corosnap"], SIZE_LIMITS[name], "B")
        if name in SIZE_AT_MOST_PICKLE_FLOOR:
            row(
                f"{name}: snapshot size <= pickle floor",
                name,
                "size",
                size["corosnap"],
                size["pickle_floor"],
                "B",
                "(pickle floor)",
            )
    for result in results:
        name = result["name"]
        limit = TIME_LIMITS.get(name, TIME_LIMIT_OTHER)
        for direction in ("dumps", "loads"):
            measured = result["ratio"][direction]
            row(
                f"{name}: {direction} time / pickle.{direction}",
                name,
                "time",
                measured,
                limit,
                "x",
            )
    return rows


# ---------------------------------------------------------------------------
# Report


def fmt_us(value: float | None) -> str:
    if value is None:
        return "n/a"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def fmt_bytes(value: int | None) -> str:
    return "n/a" if value is None else f"{value:,}"


def fmt_ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def git_describe() -> str:
    try:

        def git(*args: str) -> str:
            return subprocess.run(
                ["git", "-C", str(ROOT), *args],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout.strip()

        commit = git("rev-parse", "--short", "HEAD")
        branch = git("rev-parse", "--abbrev-ref", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "not a git checkout"
    return f"{commit} on {branch}{' (uncommitted changes)' if dirty else ''}"


def _engine() -> str:
    """Which corosnap engine runs: "c", or "python" (COROSNAP_PUREPYTHON=1)."""
    try:
        from corosnap import _accel
    except ImportError:
        return "n/a"
    return getattr(_accel, "ENGINE", "c")


def environment(snap: Corosnap, args: argparse.Namespace, min_rounds: int) -> dict[str, Any]:
    return {
        "python": sys.version.replace("\n", " "),
        "implementation": platform.python_implementation(),
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "corosnap_version": snap.version,
        "corosnap_available": snap.available,
        "corosnap_reason": snap.reason,
        "git": git_describe(),
        "engine": _engine(),
        "msgpack_version": ".".join(map(str, msgpack.version)),
        "pickle_protocol": PICKLE_PROTOCOL,
        "quick": args.quick,
        "seconds_per_measurement": args.time,
        "min_batches": min_rounds,
    }


def markdown(env: dict[str, Any], results: list[dict[str, Any]], rows: list[dict[str, Any]]) -> str:
    out = []
    add = out.append
    add("# corosnap benchmark")
    add("")
    add(f"- Python: {env['implementation']} {env['python']}")
    add(f"- Platform: {env['platform']} ({env['machine']}, {env['cpus']} CPUs)")
    corosnap_line = (f"corosnap {env['corosnap_version']}, git {env['git']}, "
                     f"{env.get('engine', 'c')} engine")
    if not env["corosnap_available"]:
        corosnap_line += f"; corosnap columns n/a: {env['corosnap_reason']}"
    add(f"- {corosnap_line}")
    add(f"- msgpack {env['msgpack_version']}, pickle protocol {env['pickle_protocol']}")
    add(
        f"- Method: median of >= {env['min_batches']} interleaved batches, "
        f"~{env['seconds_per_measurement']:g} s per measurement"
        + (" (--quick: smoke run, times are rough)" if env["quick"] else "")
    )
    add(
        "- Time ratios are medians of per-round ratios (corosnap and the floors run back to"
        " back in every round)"
    )
    add("")
    add("## Sizes (bytes)")
    add("")
    add("| workload | frames | corosnap | msgpack floor | pickle floor | corosnap / pickle |")
    add("|---|--:|--:|--:|--:|--:|")
    for r in results:
        s = r["size"]
        size_ratio = ratio(s["corosnap"], s["pickle_floor"])
        add(
            f"| {r['name']} | {r['frames']} | {fmt_bytes(s['corosnap'])} | "
            f"{fmt_bytes(s['msgpack_floor'])} | {fmt_bytes(s['pickle_floor'])} | "
            f"{fmt_ratio(size_ratio)} |"
        )
    add("")
    add("## Times (median µs per call)")
    add("")
    add(
        "| workload | dumps | loads | msgpack packb | msgpack unpackb | pickle.dumps | "
        "pickle.loads | dumps / pickle.dumps | loads / pickle.loads |"
    )
    add("|---|--:|--:|--:|--:|--:|--:|--:|--:|")
    for r in results:
        m = {
            label: median(r, label)
            for label in (
                "corosnap_dumps",
                "corosnap_loads",
                "msgpack_packb",
                "msgpack_unpackb",
                "pickle_dumps",
                "pickle_loads",
            )
        }
        add(
            f"| {r['name']} | {fmt_us(m['corosnap_dumps'])} | {fmt_us(m['corosnap_loads'])} | "
            f"{fmt_us(m['msgpack_packb'])} | {fmt_us(m['msgpack_unpackb'])} | "
            f"{fmt_us(m['pickle_dumps'])} | {fmt_us(m['pickle_loads'])} | "
            f"{fmt_ratio(r['ratio']['dumps'])} | "
            f"{fmt_ratio(r['ratio']['loads'])} |"
        )
    add("")
    add("## Making the object, and the end of its life, inside the loads times")
    add("")
    add(
        "`loads` above times `loads(blob).close()` and `pickle.loads(data)`, each"
        " result freed at once. Here that time is split: the teardown (CPython's"
        " `close()` of the restored generator or coroutine, which throws"
        " `GeneratorExit` into every frame suspended in an `await`, then freeing"
        " it; freeing the floor's result) timed alone, and the rest, making the"
        " object. Not targets."
    )
    add("")
    add(
        "| workload | loads | of it teardown | pickle.loads | of it teardown |"
        " making / pickle's making | teardown / pickle's teardown |"
    )
    add("|---|--:|--:|--:|--:|--:|--:|")
    for r in results:
        mine, floor = median(r, "corosnap_teardown"), median(r, "pickle_teardown")
        if mine is None or floor is None:
            continue
        add(
            f"| {r['name']} | {fmt_us(median(r, 'corosnap_loads'))} | {fmt_us(mine)} | "
            f"{fmt_us(median(r, 'pickle_loads'))} | {fmt_us(floor)} | "
            f"{fmt_ratio(r['ratio'].get('loads_making'))} | "
            f"{fmt_ratio(r['ratio'].get('teardown'))} |"
        )
    add("")
    add("## Targets")
    add("")
    add("| target | measured | limit | result |")
    add("|---|--:|--:|---|")
    for t in rows:
        if t["unit"] == "B":
            measured, limit = fmt_bytes(t["measured"]), f"<= {fmt_bytes(t['limit'])} B"
            measured = measured if t["measured"] is None else f"{measured} B"
            if t["limit_note"]:
                limit += f" {t['limit_note']}"
        else:
            measured, limit = fmt_ratio(t["measured"]), f"<= {t['limit']:g}x"
        add(f"| {t['target']} | {measured} | {limit} | {t['result']} |")
    counts = {
        verdict: sum(t["result"] == verdict for t in rows) for verdict in ("PASS", "FAIL", "SKIP")
    }
    add("")
    add(f"**Targets: {counts['PASS']} PASS, {counts['FAIL']} FAIL, {counts['SKIP']} SKIP.**")
    add("")
    add("## Round trips")
    add("")
    add("| workload | description | round trip |")
    add("|---|---|---|")
    for r in results:
        ok = r["round_trip"]["ok"]
        verdict = {True: "OK", False: "BROKEN", None: "n/a"}[ok]
        detail = r["round_trip"]["detail"]
        extra = "".join(f"; {text}" for text in r["errors"] + r["notes"])
        add(f"| {r['name']} | {r['description']} | {verdict}: {detail}{extra} |")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fast smoke run; times are rough")
    parser.add_argument(
        "--time",
        type=float,
        default=None,
        help="seconds per measurement (default 0.2; --quick 0.01)",
    )
    parser.add_argument("--only", default="", help="comma-separated workload names")
    parser.add_argument("--json", type=Path, default=None, help="also write results as JSON here")
    parser.add_argument("--check", action="store_true", help="exit 1 if any target FAILs")
    args = parser.parse_args(argv)
    if args.time is None:
        args.time = 0.01 if args.quick else 0.2
    min_rounds = 5 if args.quick else 20

    chosen = workloads.WORKLOADS
    if args.only:
        names = [name.strip() for name in args.only.split(",") if name.strip()]
        unknown = [name for name in names if name not in workloads.BY_NAME]
        if unknown:
            parser.error(f"unknown workload(s) {unknown}; known: {list(workloads.BY_NAME)}")
        chosen = [workloads.BY_NAME[name] for name in names]

    snap = find_corosnap()
    env = environment(snap, args, min_rounds)
    results = []
    for workload in chosen:
        print(f"benchmarking {workload.name} ...", file=sys.stderr, flush=True)
        results.append(bench_workload(workload, snap, args.time, min_rounds))
    rows = targets(results)
    sys.stdout.write(markdown(env, results, rows))

    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        document = {"environment": env, "workloads": results, "targets": rows}
        args.json.write_text(json.dumps(document, indent=2) + "\n")

    broken = any(r["round_trip"]["ok"] is False or r["errors"] for r in results)
    failed = any(t["result"] == "FAIL" for t in rows)
    return 1 if broken or (args.check and failed) else 0


if __name__ == "__main__":
    sys.exit(main())
