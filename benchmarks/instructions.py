"""Instructions per call of ``corosnap.loads`` / ``corosnap.dumps``, counted by valgrind.

    python benchmarks/instructions.py [WORKLOAD ...] [--calls N] [--mode loads|dumps|both]

(``make bench-instructions``; needs ``valgrind`` on the PATH.)

Timings on a shared 2-core machine move by 5% from run to run, which hides
the changes a C fast path makes (1-3% each).  The number of instructions a
call executes does not move: this counts them with valgrind's callgrind tool
(``Ir``, instructions executed), for the workloads of ``workloads.py`` named
(by default counter, chain, coroutine_chain, checkout and records) at their
measurement point, and prints instructions per call.

Theory of operation: a child process (this file, ``--child``) makes the
suspended object and its blob, then runs the measured call N times with the
garbage collector off: ``loads(blob).close()`` (what ``run.py`` times as
``loads``) or ``dumps(obj)``, 100 times to warm the caches, then N times.
The child runs twice under callgrind, with N calls and with none; the
difference over N is the cost of one call in the steady state, start-up,
set-up and the first calls cancelling out.  The count is for the interpreter and corosnap
code running under this Python (``PYTHONPATH`` selects the corosnap copy),
so two copies compare call for call: run it once per copy.  The child runs
with PYTHONHASHSEED=0: with random str hashes, dict probes (and so the
count) differ by a few percent from run to run.  It is a count, not a time:
a cache miss and an add count the same.
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
WARM_UP = 100


def child(name: str, mode: str, calls: int) -> None:
    sys.path.insert(0, str(HERE))
    import workloads

    import corosnap

    found = {w.name: w for w in workloads.WORKLOADS}
    obj = found[name].make()
    blob = corosnap.dumps(obj)
    loads, dumps = corosnap.loads, corosnap.dumps
    gc.disable()
    # WARM_UP calls first, in both runs: the first ones fill the caches
    for _ in range(WARM_UP + calls):
        if mode == "loads":
            restored = loads(blob)
            restored.close()
        else:
            dumps(obj)


def count(name: str, mode: str, calls: int) -> int:
    """Instructions of one run of the child (all of it, start-up included)."""
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
           sys.executable, __file__, "--child", name, "--mode", mode, "--calls", str(calls)]
    env = {**os.environ, "PYTHONHASHSEED": "0"}  # the same str hashes, so the same probes
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    found = re.search(r"Collected : (\d+)", proc.stderr)
    if proc.returncode != 0 or found is None:
        raise SystemExit(f"valgrind failed on {name} {mode}:\n{proc.stderr[-2000:]}")
    return int(found.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("workloads", nargs="*", help="workload names (default: the small ones)")
    parser.add_argument("--calls", type=int, default=5000, help="calls counted (default 5000)")
    parser.add_argument("--mode", choices=["loads", "dumps", "both"], default="both")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.workloads[0], args.mode, args.calls)
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed", file=sys.stderr)
        return 2
    names = args.workloads or ["counter", "chain", "coroutine_chain", "checkout", "records"]
    modes = ["dumps", "loads"] if args.mode == "both" else [args.mode]
    print(f"# instructions per call, CPython {sys.version.split()[0]}, {args.calls} calls")
    print("| workload | " + " | ".join(modes) + " |")
    print("|---|" + "--:|" * len(modes))
    for name in names:
        per = [(count(name, m, args.calls) - count(name, m, 0)) // args.calls for m in modes]
        print(f"| {name} | " + " | ".join(f"{n:,}" for n in per) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
