"""What migratable snapshots cost: bytes added, and time, on the benchmark workloads.

For every workload of ``workloads.py`` at its measurement point:

* size of ``dumps(obj)`` (format 1) and of ``dumps(obj, migratable=True)``
  (format 2: the same frames plus the signature table), and the bytes added;
* time of ``dumps`` both ways, and of ``loads`` of a migratable blob with and
  without ``migrate=True`` on unchanged code (the cost of asking for
  migration when nothing changed), as ratios to the plain ``dumps`` /
  ``loads`` measured in the same run;
* time of the first ``loads(migrate=True)`` onto an *edited* copy of the
  workload's module (a line added at the top of every function): the
  analysis of the new code's suspension points included, then warm.

Usage: ``python benchmarks/bench_migration.py [--json PATH] [--rounds N]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import workloads  # noqa: E402

import corosnap  # noqa: E402


def timed(fn: Any, rounds: int) -> float:
    """Median seconds of one call of ``fn`` (calls batched to beat timer resolution)."""
    batch = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(batch):
            fn()
        if time.perf_counter() - t0 > 0.002 or batch >= 1 << 16:
            break
        batch *= 2
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(batch):
            fn()
        samples.append((time.perf_counter() - t0) / batch)
    return statistics.median(samples)


def close(obj: Any) -> None:
    try:
        obj.close()
    except Exception:  # noqa: BLE001
        pass


def edited_module(path: str) -> None:
    """Load an edited copy of workloads.py as ``workloads`` (a line added at the
    top of every function body)."""
    src = open(os.path.join(HERE, "workloads.py"), encoding="utf-8").read()
    lines = src.split("\n")
    out = []
    for i, line in enumerate(lines):
        out.append(line)
        stripped = line.lstrip()
        if (stripped.startswith(("def ", "async def ")) and line.endswith(":")
                and not line.startswith(" " * 8)):
            body = lines[i + 1] if i + 1 < len(lines) else ""
            indent = len(body) - len(body.lstrip())
            if body.lstrip().startswith(('"""', "'''")):
                continue
            out.append(" " * indent + "_deployed = 2")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(out))
    spec = importlib.util.spec_from_file_location("workloads", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["workloads"] = module
    spec.loader.exec_module(module)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    rows = []
    blobs = {}
    for w in workloads.WORKLOADS:
        obj, _last = w.prepare()
        plain = corosnap.dumps(obj)
        rich = corosnap.dumps(obj, migratable=True)
        blobs[w.name] = rich
        row: dict[str, Any] = {"workload": w.name, "plain_bytes": len(plain),
                               "migratable_bytes": len(rich), "added": len(rich) - len(plain)}
        if not w.large:
            t_plain = timed(lambda o=obj: corosnap.dumps(o), args.rounds)
            t_rich = timed(lambda o=obj: corosnap.dumps(o, migratable=True), args.rounds)
            l_plain = timed(lambda b=plain: close(corosnap.loads(b)), args.rounds)
            l_rich = timed(lambda b=rich: close(corosnap.loads(b, migrate=True)), args.rounds)
            row.update(dumps_us=t_plain * 1e6, dumps_migratable_ratio=t_rich / t_plain,
                       loads_us=l_plain * 1e6, loads_migrate_ratio=l_rich / l_plain)
        rows.append(row)
        close(obj)
    # Migration onto an edited module: first (cold analysis) and warm.
    with tempfile.TemporaryDirectory() as tmp:
        original = sys.modules["workloads"]
        try:
            edited_module(os.path.join(tmp, "workloads.py"))
            for row in rows:
                rich = blobs[row["workload"]]
                t0 = time.perf_counter()
                close(corosnap.loads(rich, migrate=True))
                row["migrate_first_us"] = (time.perf_counter() - t0) * 1e6
                row["migrate_warm_us"] = timed(
                    lambda b=rich: close(corosnap.loads(b, migrate=True)), args.rounds) * 1e6
        finally:
            sys.modules["workloads"] = original
    v = sys.version_info
    print(f"migratable snapshots, CPython {v[0]}.{v[1]}.{v[2]}")
    head = (f"{'workload':16} {'plain B':>8} {'migr. B':>8} {'added':>6} {'dumps x':>8} "
            f"{'loads x':>8} {'migrate 1st':>12} {'warm':>9}")
    print(head)
    for r in rows:
        dx = f"{r['dumps_migratable_ratio']:.2f}" if "dumps_us" in r else "-"
        lx = f"{r['loads_migrate_ratio']:.2f}" if "loads_us" in r else "-"
        print(f"{r['workload']:16} {r['plain_bytes']:>8} {r['migratable_bytes']:>8} "
              f"{r['added']:>6} {dx:>8} {lx:>8} {r['migrate_first_us']:>10.0f}us "
              f"{r['migrate_warm_us']:>7.1f}us")
    print("dumps x: dumps(migratable=True) / dumps; loads x: loads(migrate=True) / loads, "
          "unchanged code; migrate: loads(migrate=True) onto an edited module "
          "(first call analyses the new code)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"python": f"{v[0]}.{v[1]}.{v[2]}", "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
