"""What the scheduler keeps in the store, and how it is encoded.

Rules of this file: every byte the scheduler writes is produced here and every
byte it reads is parsed here.  No store calls, no clocks: functions from
records to bytes and back.

Store layout
------------
``run/<run_id>``
    One record per run, rewritten (compare-and-set on its version) at every
    checkpoint.  A msgpack map, readable with any msgpack tool::

        {"format": 1, "workflow": "billing.billing", "state": "running",
         "snapshot": <corosnap blob>, "next_seq": 7, "checkpoints": 3,
         "waiting": {"gather": true, "return_exceptions": false,
                     "ops": [[4, "step", null], [5, "sleep", 1718000000.5],
                             [6, "child", null]],
                     "calls": <pickled [(fn, args, kwargs) of op 4, ... of op 6]>},
         "outcome": null, "parent": null, "created": ..., "updated": ..., "pid": 4242}

    ``snapshot`` is the workflow coroutine suspended at the ``await`` that
    produced ``waiting``.  ``state`` is ``running`` until the coroutine
    returns (``done``, ``outcome`` is its pickled return value) or raises
    (``failed``, ``outcome`` is the pickled exception); then ``snapshot`` and
    ``waiting`` are dropped.

``step/<run_id>/<seq>``
    The final outcome of one step, written once (compare-and-set on "must not
    exist"): ``{"ok": bool, "data": <pickled value or exception>,
    "fn": name, "attempts": n, "pid": pid, "started": t, "finished": t}``.

A child workflow started by op ``seq`` of run ``R`` is the run ``R/<seq>``;
its outcome lives in its own run record.  Run ids chosen by users therefore
may not contain ``/``.

Values (step results, workflow results, exceptions, call arguments) are
pickled with the standard library's pickle: like corosnap's default mode, a
store must only hold data the scheduler itself wrote.  An exception that
cannot be pickled *and unpickled* is recorded as an
:class:`~corosnap.scheduler.UnrecordableError` naming its type and message.
"""

from __future__ import annotations

import pickle
import re
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import msgpack

from .._errors import CorruptSnapshot
from ._directives import Call
from ._errors import UnrecordableError

FORMAT = 1
RUN_PREFIX = "run/"
STEP_PREFIX = "step/"

State = Literal["running", "done", "failed"]
OpKind = Literal["step", "sleep", "child"]

_RUN_ID = re.compile(r"[A-Za-z0-9_.:@=+-]{1,200}")


def validate_run_id(run_id: object) -> str:
    """Return ``run_id`` if it is a legal user-chosen run id, else raise ValueError/TypeError."""
    if not isinstance(run_id, str):
        raise TypeError(f"a run id must be a str, not {type(run_id).__name__}")
    if not _RUN_ID.fullmatch(run_id):
        raise ValueError(
            f"a run id must be 1-200 characters from A-Z a-z 0-9 _ . : @ = + - "
            f"(no '/', which separates child runs), not {run_id!r}"
        )
    return run_id


def run_key(run_id: str) -> str:
    return RUN_PREFIX + run_id


def step_key(run_id: str, seq: int) -> str:
    return f"{STEP_PREFIX}{run_id}/{seq}"


def child_run_id(parent: str, seq: int) -> str:
    return f"{parent}/{seq}"


# -- values ------------------------------------------------------------------


def dump_value(value: Any) -> bytes:
    """Pickle a result; raise UnrecordableError if it cannot be pickled."""
    try:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        raise UnrecordableError(
            type(value).__qualname__, f"the value cannot be recorded (pickled): {exc}"
        ) from exc


def dump_exception(exc: BaseException) -> bytes:
    """Pickle an exception so that it loads again as an equal exception.

    Checked by loading it back: exception classes whose ``__init__`` takes
    other arguments than ``args`` pickle fine and then fail to unpickle.
    Those, and unpicklable ones, are recorded as UnrecordableError.
    """
    try:
        data = pickle.dumps(exc, protocol=pickle.HIGHEST_PROTOCOL)
        pickle.loads(data)
        return data
    except Exception:
        stand_in = UnrecordableError(f"{type(exc).__module__}.{type(exc).__qualname__}", str(exc))
        return pickle.dumps(stand_in, protocol=pickle.HIGHEST_PROTOCOL)


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a step, a timer or a child run ended, as recorded: a pickled value or exception."""

    ok: bool
    data: bytes

    @classmethod
    def success(cls, value: Any) -> Outcome:
        return cls(True, dump_value(value))

    @classmethod
    def failure(cls, exc: BaseException) -> Outcome:
        return cls(False, dump_exception(exc))

    def load(self) -> Any:
        """The value, or the exception object (not raised) for a failure."""
        return pickle.loads(self.data)


#: The outcome of every timer: ``await sleep(...)`` evaluates to None.
SLEPT = Outcome.success(None)


# -- runs ----------------------------------------------------------------------


@dataclass(slots=True)
class Op:
    """One thing a suspended run waits for: a step call, a timer or a child run."""

    seq: int
    kind: OpKind
    call: Call[Any] | None = None  # step and child
    until: float | None = None  # sleep: wall-clock due time

    def describe(self) -> str:
        if self.kind == "sleep":
            assert self.until is not None
            clock = time.strftime("%H:%M:%S", time.localtime(self.until))
            return f"#{self.seq} sleep until {clock}.{int(self.until % 1 * 1000):03d}"
        assert self.call is not None
        return f"#{self.seq} {'workflow ' if self.kind == 'child' else ''}{self.call.describe()}"


@dataclass(slots=True)
class Waiting:
    """What a suspended run waits for, and how to turn the outcomes into the ``await``'s value.

    ``gather`` False: a single op; resume with its value or raise its error.
    ``gather`` True: resume with the list of values; raise the first error in
    op order unless ``return_exceptions``.
    """

    ops: list[Op]
    gather: bool = False
    return_exceptions: bool = False
    #: The calls pickled, once known to pickle (see ``pickle_calls``); not compared.
    calls_blob: bytes | None = field(default=None, compare=False)

    def pickle_calls(self) -> bytes | None:
        """Pickle the ops' functions and arguments; UnrecordableError if they do not pickle.

        One pickle for all the calls, so a function called by many ops of a
        gather is named once (pickle's memo).  Cached in ``calls_blob``.
        """
        if self.calls_blob is None:
            calls = [(op.call.fn, op.call.args, op.call.kwargs) for op in self.ops if op.call]
            if not calls:
                return None
            try:
                self.calls_blob = pickle.dumps(calls, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as exc:
                raise UnrecordableError(
                    "call arguments", f"the arguments cannot be recorded (pickled): {exc}"
                ) from exc
        return self.calls_blob

    def describe(self) -> str:
        return ", ".join(op.describe() for op in self.ops) or "nothing"


@dataclass(slots=True)
class RunRecord:
    """The decoded ``run/<id>`` record."""

    run_id: str
    workflow: str
    state: State = "running"
    snapshot: bytes | None = None
    waiting: Waiting | None = None
    next_seq: int = 1
    checkpoints: int = 0
    outcome: Outcome | None = None
    parent: str | None = None
    created: float = 0.0
    updated: float = 0.0
    pid: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def _encode_waiting(waiting: Waiting) -> dict[str, Any]:
    return {
        "gather": waiting.gather,
        "return_exceptions": waiting.return_exceptions,
        "ops": [[op.seq, op.kind, op.until] for op in waiting.ops],
        "calls": waiting.pickle_calls(),
    }


def _decode_waiting(raw: dict[str, Any]) -> Waiting:
    calls = iter(pickle.loads(raw["calls"]) if raw["calls"] is not None else ())
    ops = []
    for seq, kind, until in raw["ops"]:
        if kind == "sleep":
            ops.append(Op(seq, kind, until=float(until)))
        elif kind in ("step", "child"):
            fn, args, kwargs = next(calls)
            ops.append(Op(seq, kind, call=Call(fn, tuple(args), kwargs)))
        else:
            raise CorruptSnapshot(f"unknown op kind {kind!r}")
    return Waiting(ops, bool(raw["gather"]), bool(raw["return_exceptions"]), raw["calls"])


def encode_run(rec: RunRecord) -> bytes:
    waiting = None if rec.waiting is None else _encode_waiting(rec.waiting)
    outcome = None if rec.outcome is None else [rec.outcome.ok, rec.outcome.data]
    body = {
        "format": FORMAT,
        "workflow": rec.workflow,
        "state": rec.state,
        "snapshot": rec.snapshot,
        "next_seq": rec.next_seq,
        "checkpoints": rec.checkpoints,
        "waiting": waiting,
        "outcome": outcome,
        "parent": rec.parent,
        "created": rec.created,
        "updated": rec.updated,
        "pid": rec.pid,
        **rec.extra,
    }
    return msgpack.packb(body, use_bin_type=True)


def decode_run(run_id: str, blob: bytes) -> RunRecord:
    try:
        body = msgpack.unpackb(blob, raw=False)
        if body.pop("format") != FORMAT:
            raise CorruptSnapshot(f"run {run_id!r}: unknown record format")
        raw_waiting = body.pop("waiting")
        waiting = None if raw_waiting is None else _decode_waiting(raw_waiting)
        raw_outcome = body.pop("outcome")
        outcome = None if raw_outcome is None else Outcome(bool(raw_outcome[0]), raw_outcome[1])
        known = {k: body.pop(k) for k in _RUN_FIELDS if k in body}
        return RunRecord(run_id, waiting=waiting, outcome=outcome, extra=body, **known)
    except CorruptSnapshot:
        raise
    except Exception as exc:
        raise CorruptSnapshot(f"run record {run_id!r} cannot be decoded: {exc!r}") from exc


_RUN_FIELDS = (
    "workflow", "state", "snapshot", "next_seq", "checkpoints", "parent", "created", "updated",
    "pid",
)  # fmt: skip


# -- steps ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StepRecord:
    """The decoded ``step/<run>/<seq>`` record: the outcome and where it came from."""

    outcome: Outcome
    fn: str
    attempts: int
    pid: int
    started: float
    finished: float


def encode_step(rec: StepRecord) -> bytes:
    return msgpack.packb(
        {
            "ok": rec.outcome.ok,
            "data": rec.outcome.data,
            "fn": rec.fn,
            "attempts": rec.attempts,
            "pid": rec.pid,
            "started": rec.started,
            "finished": rec.finished,
        },
        use_bin_type=True,
    )


def decode_step(key: str, blob: bytes) -> StepRecord:
    try:
        body = msgpack.unpackb(blob, raw=False)
        return StepRecord(
            Outcome(bool(body["ok"]), body["data"]),
            body["fn"],
            body["attempts"],
            body["pid"],
            body["started"],
            body["finished"],
        )
    except Exception as exc:
        raise CorruptSnapshot(f"step record {key!r} cannot be decoded: {exc!r}") from exc
