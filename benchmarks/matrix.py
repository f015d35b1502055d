"""The benchmark on several CPython versions, summed up in one table.

    python benchmarks/matrix.py PYTHON [PYTHON ...] [--quick] [--time S] [--out PATH]

(``make bench-matrix`` runs it with every ``.venv-3.X`` the Makefile has made;
make them with ``make venv PYTHON=...`` or ``make test-matrix``.)

Each interpreter runs ``benchmarks/run.py --json`` in its own process, one
after the other (never in parallel: the timings would disturb each other).
The table gives, per version and workload, the snapshot size, the median
``dumps``/``loads`` times and their ratios to the pickle floor measured in the
same run, the ``loads`` ratio without the end of both results' lives (CPython's
``close()`` of the restored object and freeing it; freeing the floor's result:
run.py's "Making the object" table; not a target) and the ratio of those ends,
and the number of targets met.  Absolute times move with the machine's load; compare the ratios.

Exit status: 1 if any interpreter's run failed (a broken round trip included).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def run_one(python: str, extra: list[str]) -> dict[str, Any] | None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.json"
        proc = subprocess.run([python, str(HERE / "run.py"), "--json", str(out), *extra],
                              capture_output=True, text=True)
        if proc.returncode != 0 or not out.exists():
            sys.stderr.write(f"{python}: benchmark failed (exit {proc.returncode})\n"
                             f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}\n")
            return None
        result: dict[str, Any] = json.loads(out.read_text())
        return result


def version_of(result: dict[str, Any]) -> str:
    env = result.get("environment", {})
    return str(env.get("python_version") or "?")


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| CPython | workload | size (B) | dumps (µs) | loads (µs) | dumps / pickle.dumps "
        "| loads / pickle.loads | loads making / pickle's making "
        "| teardown / pickle's teardown |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for result in results:
        version = version_of(result)
        for w in result["workloads"]:
            t = w["time"]

            def median(key: str, t: dict[str, Any] = t) -> float | None:
                entry = t.get(key)
                return entry["median_us"] if entry else None

            dumps, loads = median("corosnap_dumps"), median("corosnap_loads")
            ratios = w.get("ratio") or {}
            rd = ratios.get("dumps")
            rl = ratios.get("loads")
            rm, rt = ratios.get("loads_making"), ratios.get("teardown")
            lines.append(
                f"| {version} | {w['name']} | {w['size']['corosnap']:,} | "
                f"{_num(dumps)} | {_num(loads)} | {_ratio(rd)} | {_ratio(rl)} | {_ratio(rm)} "
                f"| {_ratio(rt)} |"
            )
    lines.append("")
    lines.append("| CPython | targets met |")
    lines.append("|---|---|")
    for result in results:
        targets = result.get("targets", [])
        passed = sum(1 for t in targets if t.get("result") == "PASS")
        failed = [t["target"] for t in targets if t.get("result") == "FAIL"]
        tail = f" (not met: {'; '.join(failed)})" if failed else ""
        lines.append(f"| {version_of(result)} | {passed} of {len(targets)}{tail} |")
    return "\n".join(lines)


def _num(x: float | None) -> str:
    if x is None:
        return "n/a"
    return f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def _ratio(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}x"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pythons", nargs="+", help="interpreters with corosnap installed")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--time", default=None)
    parser.add_argument("--out", type=Path, default=None, help="also write the table here")
    args = parser.parse_args()
    extra = ["--quick"] if args.quick else []
    if args.time:
        extra += ["--time", args.time]
    results = []
    failed = False
    for python in args.pythons:
        result = run_one(python, extra)
        if result is None:
            failed = True
        else:
            results.append(result)
    text = table(results)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
