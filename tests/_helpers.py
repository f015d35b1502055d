"""Shared test helpers: drive a generator with a script of sends, and run a
restore in a real other interpreter."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from typing import Any

import corosnap

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))


def drive(gen: Any, sends: list[Any]) -> list[Any]:
    """Send each value in turn; record ('yield', v), ('return', v) or ('raise', type, args)."""
    out: list[Any] = []
    for value in sends:
        try:
            out.append(("yield", gen.send(value)))
        except StopIteration as stop:
            out.append(("return", stop.value))
            break
        except Exception as exc:  # noqa: BLE001 - the test compares what was raised
            out.append(("raise", type(exc).__name__, exc.args))
            break
    return out


def roundtrip(gen: Any, **kwargs: Any) -> Any:
    return corosnap.loads(corosnap.dumps(gen, **kwargs))


_CHILD = """
import pickle, sys
sys.path.insert(0, {tests!r})
import corosnap, samples
from _helpers import drive
gen = corosnap.loads(sys.stdin.buffer.read())
{body}
sys.stdout.buffer.write(pickle.dumps(result))
"""


def in_child(blob: bytes, body: str = "result = drive(gen, SENDS)", sends: Any = None,
             python: str | None = None) -> Any:
    """Restore ``blob`` in a fresh interpreter, run ``body``, return its ``result``."""
    script = _CHILD.format(tests=TESTS_DIR, body=body.replace("SENDS", repr(sends)))
    proc = subprocess.run(
        [python or sys.executable, "-c", script],
        input=blob,
        capture_output=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": TESTS_DIR},
    )
    if proc.returncode != 0:
        raise AssertionError(f"child failed ({proc.returncode}):\n{proc.stderr.decode()}")
    return pickle.loads(proc.stdout)


def _dill_pickles_code() -> bool:
    """Whether dill can pickle a function by value on this interpreter.

    dill 0.4.1 (the newest release) reads ``code.co_lnotab``, which CPython
    3.15 removed, so on 3.15 the "dill" fallback pickler cannot pickle code
    by value; corosnap itself is unaffected."""
    try:
        import dill

        dill.dumps(lambda: None)
    except Exception:  # noqa: BLE001 - any failure means "not usable here"
        return False
    return True


DILL_PICKLES_CODE = _dill_pickles_code()

