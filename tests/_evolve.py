"""Helpers for the code-evolution tests: one module name, several versions of its source.

``install(name, source)`` replaces ``sys.modules[name]`` with a fresh module
executed from ``source`` (no file, no bytecode cache: two versions written in
the same second cannot be confused).  ``drive(gen, sends)`` runs a generator
or a coroutine whose awaits yield plain values, collecting what it yields and
how it ends (``step`` takes one step of any of them, an async generator too).
"""

from __future__ import annotations

import sys
import textwrap
import types
from typing import Any


def install(name: str, source: str) -> types.ModuleType:
    """Make ``source`` the module ``name`` (replacing any earlier version)."""
    module = types.ModuleType(name)
    module.__file__ = f"<{name}>"
    code = compile(textwrap.dedent(source), f"<{name}>", "exec", dont_inherit=True)
    sys.modules[name] = module
    exec(code, module.__dict__)
    return module


def drop(name: str) -> None:
    sys.modules.pop(name, None)


def step(gen: Any, value: Any) -> Any:
    """One step of a generator, a coroutine or an async generator: what it
    yields.  An async generator steps by ``asend(value)``: what the awaitable
    yields (an await inside it suspended) or returns (it yielded); its end is
    ``StopAsyncIteration``."""
    if type(gen) is types.AsyncGeneratorType:
        try:
            return gen.asend(value).send(None)
        except StopIteration as stop:
            return stop.value
    return gen.send(value)


def close(gen: Any) -> None:
    """Close a generator, a coroutine or an async generator (one suspended at a
    yield or not started: its aclose() completes without awaiting)."""
    if type(gen) is types.AsyncGeneratorType:
        try:
            gen.aclose().send(None)
        except StopIteration:
            pass
        return
    gen.close()


def drive(gen: Any, sends: list[Any] | None = None, limit: int = 1000) -> list[Any]:
    """Send ``sends`` (then None) until the generator ends: [yielded..., ("return", v)]
    or [..., ("raise", type name, args)]; an async generator's end is ("end",)."""
    out: list[Any] = []
    sends = list(sends or [])
    for _ in range(limit):
        value = sends.pop(0) if sends else None
        try:
            out.append(step(gen, value))
        except StopIteration as stop:
            out.append(("return", stop.value))
            return out
        except StopAsyncIteration:
            out.append(("end",))
            return out
        except Exception as exc:  # noqa: BLE001 - the outcome is part of the trace
            out.append(("raise", type(exc).__name__, exc.args))
            return out
    raise AssertionError("generator did not finish")


def advance(gen: Any, steps: int) -> Any:
    """``next`` ``steps`` times (the first starts it), returning the last value."""
    value = None
    for _ in range(steps):
        value = gen.send(None)
    return value
