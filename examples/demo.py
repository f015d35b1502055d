"""corosnap demo: start a generator in one process, finish it in another.

    python examples/demo.py            # runs both halves as separate processes

Process 1 runs ``word_report`` for three lines, snapshots the suspended
generator to a file with ``corosnap.dump`` and exits.  Process 2, a fresh
interpreter, loads the file and drives the same generator to the end.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

LINES = [
    "the quick brown fox",
    "jumps over the lazy dog",
    "the dog sleeps",
    "the fox runs over the hill",
    "a quiet night",
]


def first_half(path: str) -> None:
    from demo_jobs import word_report

    import corosnap

    gen = word_report(LINES)
    progress = next(gen)
    print(f"[process 1, pid {os.getpid()}] {progress}")
    for _ in range(2):
        progress = gen.send("continue")
        print(f"[process 1, pid {os.getpid()}] {progress}")
    with open(path, "wb") as f:
        corosnap.dump(gen, f)
    print(f"[process 1] suspended after line {progress['line']}; snapshot: "
          f"{os.path.getsize(path)} bytes -> {path}")


def second_half(path: str) -> None:
    import corosnap

    with open(path, "rb") as f:
        gen = corosnap.load(f)
    print(f"[process 2, pid {os.getpid()}] restored a {type(gen).__name__} "
          f"suspended in {gen.gi_code.co_qualname}()")
    try:
        while True:
            print(f"[process 2, pid {os.getpid()}] {gen.send('continue')}")
    except StopIteration as stop:
        print(f"[process 2] finished: {stop.value}")


def main() -> None:
    if len(sys.argv) == 3:
        {"first": first_half, "second": second_half}[sys.argv[1]](sys.argv[2])
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "word_report.corosnap")
        for half in ("first", "second"):
            subprocess.run([sys.executable, __file__, half, path], check=True)


if __name__ == "__main__":
    main()
