"""The one contract between the snapshot layer's two engines.

What lives here: the named structures ("records") the Python engine
(``_capture.py``, ``_restore.py``) builds and the C engine
(``_csnapshot.c``) reads, and the choice of engine.  They are, with their
fields:

- ``CaptureCode`` / ``Where``: capture's per-code facts, per suspension offset;
- ``RestoreCode`` / ``Plan`` / ``Check``: restore's per-code facts, its plans
  per resume offset and the check of each stack slot;
- ``CaptureState`` / ``RestoreState``: one dumps / one loads as the C engine
  sees it (every table it reads or fills, by name);
- ``CaptureRoot``: what ``capture_root`` needs of a Snapshotter's caches;
- ``Loads`` / ``Dumps``: the C entries of the module functions ``loads`` and
  ``dumps`` (entry points, not records: each Python function is its entry's
  reference, see ``ENTRIES``).

Both engines use the same records: the Python engine reads the very plans
and checks the C engine reads, so there is no second, "fast" copy of any
decision to keep in step.  Under the C engine the records are the C types of
``_csnapshot`` (typed fields, checked at construction, read-only); under the
pure-Python engine, plain classes with the same fields.  Every record is
built through this module, by keyword, every field exactly once; the one
exception is the C engine's ``restore_root`` (and ``load_root``, which calls
it), which makes the RestoreState of a whole blob itself (the same record,
with empty tables, kept between calls) to save ``loads`` building them in
Python.

What must never happen: a field added on one side only.  ``FIELDS`` below
names every field once more; at import each C record's ``__fields__`` must
equal it, or the import fails (and ``tests/test_engines.py`` says which).  A
C record refuses a missing or unknown field at construction.  So a mismatch
is an error, never a path that silently declines and runs slower.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._accel import ENGINE, accelerator

FIELDS: dict[str, tuple[str, ...]] = {
    "Where": ("depth", "sub_at", "tagged"),
    "CaptureCode": ("code", "module", "nlocals", "where", "ref", "name_module",
                    "name_qualname", "fingerprint", "slot_names"),
    "Check": ("slot", "kind", "nullable", "index_above", "name"),
    "Plan": ("depth", "sub_at", "delegate_at", "checks", "bound", "dot0"),
    "RestoreCode": ("module", "code", "globals", "label", "nlocals", "ncodeunits", "slot_names",
                    "cells", "plans", "fn", "args", "kwargs", "dot0_iter", "info", "rules"),
    "CaptureState": ("encoder", "memo", "keep", "strings", "codes", "globals_seen",
                     "passthrough", "code_cache", "frames"),
    "CaptureRoot": ("spare", "frames", "code_cache", "encoder_class", "hook"),
    "RestoreState": ("decoder", "memo", "strings", "codes", "active", "exceptions", "shapes",
                     "depth", "safe", "allow", "code_cache", "frames"),
}
"""Every record's fields, in order: the Python side of the contract."""


def python_record(name: str, fields: tuple[str, ...]) -> type:
    """The pure-Python engine's version of record ``name``: a class with these
    slots, built by keyword, every field exactly once (as the C records)."""

    def __init__(self: Any, **values: Any) -> None:
        if len(values) != len(fields) or not values.keys() <= set(fields):
            missing = [f for f in fields if f not in values]
            unknown = [f for f in values if f not in fields]
            raise TypeError(f"{name}() is missing fields {missing} or got unknown {unknown}")
        for field, value in values.items():
            setattr(self, field, value)

    def __repr__(self: Any) -> str:
        inner = ", ".join(f"{f}={getattr(self, f)!r}" for f in fields)
        return f"{name}({inner})"

    return type(name, (), {"__slots__": fields, "__fields__": fields, "__init__": __init__,
                           "__repr__": __repr__, "__module__": __name__,
                           "__doc__": f"{name}: a record of the snapshot layer's contract "
                                      "(pure-Python engine)."})


def check_fields(record: type, fields: tuple[str, ...]) -> None:
    """ImportError unless ``record`` has exactly ``fields``, in order."""
    have = tuple(getattr(record, "__fields__", ()))
    if have != fields:
        raise ImportError(
            f"the C engine's {record.__name__} has fields {have}, the Python engine expects "
            f"{fields}: the two sides of the contract differ (rebuild corosnap, or update "
            "both snapshot/_csnapshot.c and snapshot/_contract.py)"
        )


C = accelerator("corosnap.snapshot._csnapshot")
"""The C engine (``capture``, ``restore`` and the record types), or None."""

RECORDS: dict[str, type] = {}
for _name, _fields in FIELDS.items():
    if C is None:
        RECORDS[_name] = python_record(_name, _fields)
    else:
        RECORDS[_name] = getattr(C, _name)
        check_fields(RECORDS[_name], _fields)

Where: Any = RECORDS["Where"]
CaptureCode: Any = RECORDS["CaptureCode"]
Check: Any = RECORDS["Check"]
Plan: Any = RECORDS["Plan"]
RestoreCode: Any = RECORDS["RestoreCode"]
CaptureState: Any = RECORDS["CaptureState"]
CaptureRoot: Any = RECORDS["CaptureRoot"]
RestoreState: Any = RECORDS["RestoreState"]

ENTRIES: dict[str, tuple[str, ...]] = {
    "Loads": ("frames", "code_cache", "max_size", "reference", "finish", "failure"),
    "Dumps": ("root", "pid", "reference", "finish"),
}
"""The C engine's entry points that are made by keyword, with their fields in
order.  They have no pure-Python twin: each stands in for a Python function,
which is the reference (``Loads``, ``Dumps``: the module functions ``loads``
and ``dumps``)."""

Loads: Any = None
"""``Loads(frames=, code_cache=, max_size=, reference=, finish=, failure=)``: the C
entry of ``corosnap.loads`` (snapshot/_api.py puts it in the function's place),
or None (pure Python)."""
Dumps: Any = None
"""``Dumps(root=, pid=, reference=, finish=)``: the C entry of ``corosnap.dumps``,
or None (pure Python)."""
if C is not None:
    check_fields(C.Loads, ENTRIES["Loads"])
    check_fields(C.Dumps, ENTRIES["Dumps"])
    Loads, Dumps = C.Loads, C.Dumps

capture: Callable[..., Any] | None = None if C is None else C.capture
"""``capture(state, gen)``: the C engine's frame capture (None: pure Python)."""
capture_root: Callable[..., Any] | None = None if C is None else C.capture_root
"""``capture_root(root: CaptureRoot, pid, gen)``: ``dumps``'s common case in one call
(a reused encoder, the root registered and captured, the blob packed), with the
encoder's CaptureState (made once per encoder, kept as its ``cstate``) (None: pure
Python)."""
restore: Callable[..., Any] | None = None if C is None else C.restore
"""``restore(state, v, i, root)``: the C engine's frame restore (None: pure Python)."""
restore_root: Callable[..., Any] | None = None if C is None else C.restore_root
"""``restore_root(frames, code_cache, tree)``: a blob's root frame in the default mode,
with a RestoreState the C engine makes itself (None: pure Python)."""
load_root: Callable[..., Any] | None = None if C is None else C.load_root
"""``load_root(frames, code_cache, data)``: ``loads``'s common case in one call (the
bytes parsed, the header checked, the root restored as ``restore_root`` does).  It
returns the restored object, the parsed tree (a list: Python restores it) or None
(Python opens the blob and says what is wrong) (None: pure Python)."""

__all__ = ["C", "ENGINE", "ENTRIES", "FIELDS", "RECORDS", "CaptureCode", "CaptureRoot",
           "CaptureState", "Check", "Dumps", "Loads", "Plan",
           "RestoreCode", "RestoreState", "Where", "capture", "capture_root", "check_fields",
           "load_root", "python_record", "restore", "restore_root"]
