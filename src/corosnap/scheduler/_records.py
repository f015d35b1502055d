"""What the scheduler keeps in the store, and how it is encoded.

Rules of this file: every byte the scheduler writes is produced here and every
byte it reads is parsed here.  No store calls, no clocks: functions from
records to bytes and back.

Store layout
------------
``run/<run_id>``
    One record per run, rewritten (compare-and-set on its version) at every
    checkpoint, and whenever its owner records a step outcome, renews or
    gives up its lease.  A msgpack map, readable with any msgpack tool::

        {"format": 2, "workflow": "billing.billing", "state": "running",
         "snapshot": <corosnap blob>, "next_seq": 7, "checkpoints": 3,
         "waiting": {"gather": true, "return_exceptions": false,
                     "ops": [[4, "step", null], [5, "sleep", 1718000000.5],
                             [6, "child", null]],
                     "calls": <pickled [(fn, args, kwargs) of op 4, ... of op 6]>},
         "outcomes": [[4, true, <pickled value>]],
         "history": [["billing.charge", "host:4242:9f1c.a01b2c"],
                     [[3, 0, true, 1, 1, 1718000000.1, 1718000000.2], ...]],
         "chunks": 0,
         "owner": "host:4242:9f1c", "lease": 1718000030.2, "wake": null,
         "outcome": null, "parent": null, "marker": "18f0c2a41b7d",
         "created": ..., "updated": ..., "pid": 4242}

    ``snapshot`` is the workflow coroutine suspended at the ``await`` that
    produced ``waiting``.  ``outcomes`` holds the final outcome of every step
    op of ``waiting`` recorded so far (a gather records them as they come);
    the snapshot and the outcomes it was resumed with are therefore always
    written together, in one write: the checkpoint that consumes an outcome
    is the write that records it.  ``history`` lists the steps recorded so
    far (sequence number, function, ok, attempts, worker, first start,
    finish), oldest first, minus the ``chunks`` full chunks moved out to
    ``steplog/`` records; function names and worker ids are stored once, in
    the list before the rows, and the rows give their index.

    ``owner`` / ``lease`` are the lease: the worker that may advance the run
    and the wall-clock time its claim ends unless renewed.  ``owner`` null
    means nobody holds it; ``wake`` (with no owner) is the earliest time the
    run has anything to do (a long durable timer), so workers leave it alone
    until then.

    ``state`` is ``running`` until the coroutine returns (``done``,
    ``outcome`` is its pickled return value) or raises (``failed``,
    ``outcome`` is the pickled exception); then ``snapshot``, ``waiting``
    and ``outcomes`` are dropped and the lease is released.

``steplog/<run_id>/<n>``
    Chunk ``n`` of the run's step history: a msgpack list of exactly
    :data:`HISTORY_CHUNK` history entries, written once before the run record
    that drops them from its ``history``.  Its content is a function of the
    run's committed history, so writing it twice (two owners, a crash between
    the two writes) writes the same bytes.

``live/<run_id>@<marker>``
    An empty record that exists while a top-level run is unfinished: the
    index workers list to find runs to claim, so that finished runs cost
    nothing.  ``marker`` is a random token chosen at ``start``, so a run
    that is forgotten and started again under the same id gets a new key,
    and deleting an old marker can never delete the new one.  Child runs
    have no marker: they are found through their parent.

``step/<run_id>/<seq>`` (format 1 only)
    The stores written by the first version of the scheduler kept one record
    per step outcome.  They are still read: a format-1 run resumes (its
    pending steps are looked up there) and its steps are listed; new runs
    never write them.

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

import operator
import pickle
import re
import time
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import msgpack

from .._errors import CorruptSnapshot
from ..codec._speedups import ACTIVE
from ._directives import Call
from ._errors import UnrecordableError

FORMAT = 2
RUN_PREFIX = "run/"
STEP_PREFIX = "step/"  # format 1 step records: read, never written
STEPLOG_PREFIX = "steplog/"
LIVE_PREFIX = "live/"

#: History entries per ``steplog/`` chunk.  A run record carries at most this
#: many (plus the ones recorded since its last write), so it stays small
#: however long the run; a chunk costs one extra write per this many steps.
HISTORY_CHUNK = 32

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
    """The format-1 record of one step's outcome (read for runs written by that format)."""
    return f"{STEP_PREFIX}{run_id}/{seq}"


def steplog_key(run_id: str, chunk: int) -> str:
    return f"{STEPLOG_PREFIX}{run_id}/{chunk}"


def marker_key(run_id: str, marker: str) -> str:
    return f"{LIVE_PREFIX}{run_id}@{marker}"


def parse_marker_key(key: str) -> tuple[str, str] | None:
    """``(run_id, marker)`` of a ``live/`` key, or None if it is not one of ours."""
    if not key.startswith(LIVE_PREFIX) or "@" not in key:
        return None
    run_id, marker = key[len(LIVE_PREFIX) :].rsplit("@", 1)
    if not marker or not _RUN_ID.fullmatch(run_id):
        return None
    return run_id, marker


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


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One recorded step, as ``Scheduler.steps`` reports it."""

    seq: int
    fn: str
    ok: bool
    attempts: int  #: attempts made by the worker that recorded it
    worker: str  #: the id of the worker that recorded it
    started: float  #: wall-clock time of its first attempt in that worker
    finished: float



# The last history encoded: a run's record is rewritten at every checkpoint
# with the same history plus the steps since, so its rows are encoded once.
_same = operator.is_

# The cache is (entries, names, rows), replaced whole and never mutated
# (rows is a tuple, which msgpack writes as an array, as it does a list).
_last_history: tuple[tuple[HistoryEntry, ...], dict[str, int], tuple[list[Any], ...]] = (
    (), {}, ())


def encode_history(entries: tuple[HistoryEntry, ...] | list[HistoryEntry]) -> list[Any]:
    """``[names, rows]``: function names and worker ids are stored once, rows index them.

    A row is ``[seq, fn index, ok, attempts, worker index, started, finished]``,
    about 25 bytes, where spelling the names out would take about 75.
    """
    global _last_history
    entries = tuple(entries)
    done, names, rows = _last_history
    # The same entry objects (frozen) encode to the same rows.  Identity, not
    # equality: equal entries may still be written differently (-0.0 and 0.0,
    # 1 and True).
    if not done or len(entries) < len(done) or not all(map(_same, done, entries)):
        names, rows = {}, ()
        done = ()
    if len(entries) > len(done):
        names = dict(names)
        more = []
        for h in entries[len(done):]:
            fn = names.setdefault(h.fn, len(names))
            worker = names.setdefault(h.worker, len(names))
            more.append([h.seq, fn, h.ok, h.attempts, worker, h.started, h.finished])
        rows += tuple(more)
    if entries:
        _last_history = (entries, names, rows)
    return [list(names), rows]


def decode_history(raw: list[Any]) -> tuple[HistoryEntry, ...]:
    names, rows = raw
    return tuple(
        HistoryEntry(int(seq), str(names[fn]), bool(ok), int(attempts), str(names[worker]),
                     float(started), float(finished))
        for seq, fn, ok, attempts, worker, started, finished in rows
    )  # fmt: skip


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
    #: Step outcomes of ``waiting``'s ops recorded so far, by sequence number.
    outcomes: dict[int, Outcome] = field(default_factory=dict)
    #: Recorded steps not yet moved to a ``steplog/`` chunk, oldest first.
    history: tuple[HistoryEntry, ...] = ()
    chunks: int = 0  #: full history chunks written under ``steplog/<run_id>/``
    owner: str | None = None  #: the worker holding the lease, if any
    lease: float = 0.0  #: wall-clock time the owner's lease ends
    wake: float | None = None  #: with no owner: nothing to do before this time
    marker: str | None = None  #: the token of a top-level run's ``live/`` key
    format: int = FORMAT  #: 1 for records written by the first scheduler (step records)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def steps_recorded(self) -> int:
        """How many steps of this run are recorded (history entries, chunks included)."""
        return self.chunks * HISTORY_CHUNK + len(self.history)


_RUN_FIELDS = tuple(f.name for f in fields(RunRecord))
_run_values = operator.attrgetter(*_RUN_FIELDS)
_RUN_INDEX = {name: i for i, name in enumerate(_RUN_FIELDS)}


def evolve(rec: RunRecord, **changes: Any) -> RunRecord:
    """``dataclasses.replace(rec, **changes)`` at about half its cost: a run's
    record is made anew at every checkpoint.  Every field of RunRecord is an
    ``__init__`` argument, in field order, with no ``__post_init__``
    (``tests/scheduler`` holds it to ``replace``)."""
    values = list(_run_values(rec))
    for name, value in changes.items():
        index = _RUN_INDEX.get(name)
        if index is None:
            raise TypeError(f"RunRecord has no field {name!r}")
        values[index] = value
    return RunRecord(*values)


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
    """The record's bytes, always in the current format (a format-1 run is upgraded)."""
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
        "outcomes": [[seq, o.ok, o.data] for seq, o in rec.outcomes.items()],
        "history": encode_history(rec.history),
        "chunks": rec.chunks,
        "owner": rec.owner,
        "lease": rec.lease,
        "wake": rec.wake,
        "outcome": outcome,
        "parent": rec.parent,
        "marker": rec.marker,
        "created": rec.created,
        "updated": rec.updated,
        "pid": rec.pid,
        **rec.extra,
    }
    try:
        return _pack(body)
    except TypeError:
        # A value the codec's writer does not write and msgpack's Packer does:
        # a msgpack Timestamp that a newer record format stored in a field
        # this version keeps in ``extra`` (decode_run reads ext -1 as one).
        # Anything msgpack cannot write either raises its TypeError here.
        return msgpack.packb(body, use_bin_type=True)


# The codec's msgpack writer (``codec/_speedups.py``): the same bytes as
# ``msgpack.Packer(use_bin_type=True).pack`` for the plain dicts, lists,
# strings, bytes, numbers, booleans, None and ExtTypes a record holds
# (tests/test_packer.py and test_run_record_bytes_are_msgpacks_own); the C
# engine's is about three times faster than msgpack's on a run record's rows
# of ints and floats, and a run record is packed at every await.
_pack = ACTIVE.pack


def decode_run(run_id: str, blob: bytes) -> RunRecord:
    try:
        body = msgpack.unpackb(blob, raw=False)
        fmt = body.pop("format")
        if fmt not in (1, FORMAT):
            raise CorruptSnapshot(f"run {run_id!r}: unknown record format {fmt!r}")
        raw_waiting = body.pop("waiting")
        waiting = None if raw_waiting is None else _decode_waiting(raw_waiting)
        raw_outcome = body.pop("outcome")
        outcome = None if raw_outcome is None else Outcome(bool(raw_outcome[0]), raw_outcome[1])
        outcomes = {int(seq): Outcome(bool(ok), data) for seq, ok, data in body.pop("outcomes", ())}
        raw_history = body.pop("history", None)
        history = decode_history(raw_history) if raw_history else ()
        known = {k: body.pop(k) for k in _RUN_FIELDS if k in body}
        return RunRecord(
            run_id, waiting=waiting, outcome=outcome, outcomes=outcomes, history=history,
            format=fmt, extra=body, **known,
        )  # fmt: skip
    except CorruptSnapshot:
        raise
    except Exception as exc:
        raise CorruptSnapshot(f"run record {run_id!r} cannot be decoded: {exc!r}") from exc


_RUN_FIELDS = (
    "workflow", "state", "snapshot", "next_seq", "checkpoints", "parent", "created", "updated",
    "pid", "chunks", "owner", "lease", "wake", "marker",
)  # fmt: skip


def encode_chunk(entries: tuple[HistoryEntry, ...]) -> bytes:
    return msgpack.packb(encode_history(entries), use_bin_type=True)


def decode_chunk(key: str, blob: bytes) -> list[HistoryEntry]:
    try:
        return list(decode_history(msgpack.unpackb(blob, raw=False)))
    except Exception as exc:
        raise CorruptSnapshot(f"step history {key!r} cannot be decoded: {exc!r}") from exc


# -- steps ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StepRecord:
    """A format-1 ``step/<run>/<seq>`` record: the outcome and where it came from."""

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
