"""Drive generators/coroutines with a fixed send protocol and record exact traces.

Shared by the test process and the worker process (``_worker.py``), so both
sides drive the same way.  Nothing here imports ``corosnap`` at module level.

Send protocol
-------------
Step 0 is ``obj.send(None)`` (the same as ``next(obj)``, and the only way to
start a coroutine); step ``k >= 1`` sends ``send_value(k) == k * 7 % 5``.  A run
split at ``k`` drives steps ``0 .. k-1`` here (``k`` yields), snapshots, and the
other side continues at step ``k``.  ``k == 0`` snapshots a not-yet-started
object.

Traces
------
A :class:`Trace` holds ``repr()`` strings only: the yielded values, the
outcome (``"return <repr>"`` or ``"raise <Type><args repr>"``) and the entries
appended to the module's ``LOG``.  Generated values are ints, strings, tuples
and lists, so ``repr`` is exact and identical in every process.
"""

from __future__ import annotations

import gc
import hashlib
import importlib
import os
import sys
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

MAX_STEPS = 5_000  # a generated program never gets near this; more means a runaway


def send_value(step: int) -> int | None:
    """The value sent at ``step`` (None at step 0, which starts the object)."""
    return None if step == 0 else step * 7 % 5


class Runaway(AssertionError):
    """The object yielded more than ``MAX_STEPS`` times."""


@dataclass
class Trace:
    yields: list[str] = field(default_factory=list)
    outcome: str | None = None  # None while still suspended
    log: list[str] = field(default_factory=list)

    def to_wire(self) -> dict[str, Any]:
        return {"yields": self.yields, "outcome": self.outcome, "log": self.log}

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> Trace:
        return cls(list(d["yields"]), d["outcome"], list(d["log"]))

    def __add__(self, later: Trace) -> Trace:
        """This (a first part, still suspended) followed by ``later``."""
        return Trace(self.yields + later.yields, later.outcome, self.log + later.log)

    def describe(self) -> str:
        ys = "\n".join(f"    [{i}] {y}" for i, y in enumerate(self.yields))
        lg = "\n".join(f"    {x}" for x in self.log)
        return f"  yields:\n{ys}\n  outcome: {self.outcome}\n  LOG:\n{lg}"


def outcome_of(exc: BaseException) -> str:
    if isinstance(exc, StopIteration):
        return f"return {exc.value!r}"
    return f"raise {type(exc).__qualname__}{exc.args!r}"


def drive(
    obj: Any, start_step: int = 0, max_yields: int | None = None
) -> tuple[list[str], str | None]:
    """Send the protocol values to ``obj`` from ``start_step`` on.

    Stops after ``max_yields`` yields (outcome None: still suspended) or when
    ``obj`` returns or raises.  Returns (yield reprs, outcome).
    """
    yields: list[str] = []
    step = start_step
    while max_yields is None or len(yields) < max_yields:
        try:
            value = obj.send(send_value(step))
        except StopIteration as exc:
            return yields, outcome_of(exc)
        except Exception as exc:  # the program's own exception is part of the trace
            return yields, outcome_of(exc)
        yields.append(repr(value))
        step += 1
        if step > MAX_STEPS:
            raise Runaway(f"more than {MAX_STEPS} steps")
    return yields, None


def module_log(module: ModuleType) -> list[Any]:
    log: list[Any] | None = getattr(module, "LOG", None)
    return log if log is not None else []


def run_uninterrupted(module: ModuleType, fn: str, args: tuple[Any, ...] | list[Any]) -> Trace:
    """Run ``module.fn(*args)`` to the end in this process."""
    log = module_log(module)
    log.clear()
    obj = getattr(module, fn)(*args)
    yields, outcome = drive(obj)
    if outcome is None:  # pragma: no cover - drive(max_yields=None) always finishes
        raise AssertionError("did not finish")
    trace = Trace(yields, outcome, [repr(x) for x in log])
    log.clear()
    return trace


def run_first_part(module: ModuleType, fn: str, args: Any, k: int) -> tuple[Any, Trace]:
    """Create ``module.fn(*args)`` and take ``k`` yields from it; return (object, trace)."""
    log = module_log(module)
    log.clear()
    obj = getattr(module, fn)(*args)
    yields, outcome = drive(obj, 0, max_yields=k)
    if outcome is not None:
        raise AssertionError(f"finished after {len(yields)} yields, before k={k}: {outcome}")
    return obj, Trace(yields, None, [repr(x) for x in log])


def discard(obj: Any, module: ModuleType) -> None:
    """Close the original object without letting its cleanup pollute ``LOG``."""
    log = module_log(module)
    saved = list(log)
    hook = sys.unraisablehook
    with warnings.catch_warnings():
        # closing drops unstarted helper coroutines held in locals: "never awaited";
        # a helper whose finally yields is finalized with "ignored GeneratorExit"
        warnings.simplefilter("ignore", RuntimeWarning)
        sys.unraisablehook = lambda unraisable: None
        try:
            # a finally that yields makes close() raise RuntimeError and leaves the
            # object suspended (its finalizer would complain later): close again
            for _ in range(MAX_STEPS):
                try:
                    obj.close()
                    break
                except RuntimeError:
                    continue
        except BaseException:  # noqa: B036 - whatever the program does on close: not tested
            pass
        try:
            # What closing left in reference cycles (an async generator the
            # coroutine was iterating, held through a traceback) is finalized
            # now, not by a later collection in the middle of the resumed
            # run, where its cleanup would reach LOG.  The young generations
            # only: the run's objects are there, and a full collection per
            # split doubles the suite's time.
            gc.collect(1)
        except BaseException:  # noqa: B036, S110 - the program's finalizers: not tested
            pass
        finally:
            sys.unraisablehook = hook
    log[:] = saved


def resume(module: ModuleType, blob: bytes, start_step: int, migrate: bool = False) -> Trace:
    """``corosnap.loads(blob)`` and drive it from ``start_step`` to the end.

    ``LOG`` is cleared before ``loads``: anything ``loads`` itself appended
    (it must not run user code) shows up in the trace.  ``migrate``:
    ``loads(blob, migrate=True)`` (the module may be a newer version).
    """
    import corosnap

    log = module_log(module)
    log.clear()
    obj = corosnap.loads(blob, migrate=True) if migrate else corosnap.loads(blob)
    yields, outcome = drive(obj, start_step)
    trace = Trace(yields, outcome, [repr(x) for x in log])
    log.clear()
    return trace


def run_split_local(module: ModuleType, fn: str, args: Any, k: int) -> Trace:
    """Take ``k`` yields, ``dumps``, close the original, ``loads`` here and finish."""
    import corosnap

    obj, first = run_first_part(module, fn, args, k)
    blob = corosnap.dumps(obj)
    first.log = [repr(x) for x in module_log(module)]
    discard(obj, module)
    return first + resume(module, blob, k)


def run_split(module: ModuleType, fn: str, args: Any, k: int, worker: Any) -> Trace:
    """Take ``k`` yields here, ``dumps``, and let another process ``loads`` and finish.

    ``worker`` is a ``_worker.WorkerClient``: a separate interpreter that imports
    the same module file (from the same directory) and drives the restored
    object from step ``k``.  Returns the combined trace.
    """
    import corosnap

    obj, first = run_first_part(module, fn, args, k)
    blob = corosnap.dumps(obj)
    first.log = [repr(x) for x in module_log(module)]
    discard(obj, module)
    directory = os.path.dirname(os.path.abspath(module.__file__ or ""))
    return first + worker.resume(directory, module.__name__, blob, k)


def core_unavailable() -> str | None:
    """Why split runs cannot work here (a skip reason), or None when they can.

    Probes with the public API only: ``dumps`` and ``loads`` must exist, and
    ``dumps`` of a trivial generator must not raise ``UnsupportedInterpreter``.
    """
    try:
        import corosnap
    except ImportError as exc:
        return f"corosnap cannot be imported: {exc}"
    if not (hasattr(corosnap, "dumps") and hasattr(corosnap, "loads")):
        return "corosnap.dumps/loads are not implemented on this branch yet"

    def probe() -> Any:
        yield

    try:
        corosnap.dumps(probe())
    except corosnap.UnsupportedInterpreter as exc:
        return f"corosnap does not support this interpreter: {exc}"
    return None


def core_available() -> bool:
    return core_unavailable() is None


# --- generated modules on disk -------------------------------------------------


def module_name_for(source: str) -> str:
    return GENERATED_PREFIX + hashlib.sha256(source.encode()).hexdigest()[:16]


def write_module(directory: str, source: str, name: str | None = None) -> str:
    """Write ``source`` as ``<directory>/<name>.py`` (atomically) and return the name."""
    name = name or module_name_for(source)
    path = os.path.join(directory, name + ".py")
    if not os.path.exists(path):
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(source)
        os.replace(tmp, path)
    return name


GENERATED_PREFIX = "corosnap_gen_"
KEEP_GENERATED = 200  # generated modules kept in sys.modules (least recently used go)
_recent: OrderedDict[str, None] = OrderedDict()


def import_from(directory: str, name: str) -> ModuleType:
    """Import module ``name`` from ``directory`` (added to ``sys.path`` if needed).

    Generated modules are evicted from ``sys.modules`` least recently used
    first, so a long run (many examples, shrinking) does not grow without
    bound; one example only ever uses its own module.
    """
    if directory not in sys.path:
        sys.path.insert(0, directory)
    mod = sys.modules.get(name)
    if mod is None:
        importlib.invalidate_caches()  # the file may be newer than the finder's listing
        mod = importlib.import_module(name)
    if name.startswith(GENERATED_PREFIX):
        _recent[name] = None
        _recent.move_to_end(name)
        while len(_recent) > KEEP_GENERATED:
            old, _ = _recent.popitem(last=False)
            sys.modules.pop(old, None)
    return mod
