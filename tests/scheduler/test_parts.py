"""The scheduler's pure parts on their own: directives, retry policy, record encoding."""

from __future__ import annotations

import dataclasses
import pickle
import random
import threading
from typing import Any

import msgpack
import pytest

import corosnap
from corosnap import CorruptSnapshot
from corosnap.scheduler import (
    Call,
    FunctionOptions,
    Gather,
    PermanentError,
    Sleep,
    StepTimeout,
    UnrecordableError,
    call,
    gather,
    sleep,
)
from corosnap.scheduler._records import (
    HistoryEntry,
    Op,
    Outcome,
    RunRecord,
    StepRecord,
    Waiting,
    decode_run,
    decode_step,
    dump_exception,
    encode_history,
    encode_run,
    encode_step,
    evolve,
    validate_run_id,
)

from . import workflows as wf

# -- directives -----------------------------------------------------------------


def test_awaiting_a_directive_yields_the_directive_and_returns_what_is_sent() -> None:
    coro = wf.one(4)
    directive = coro.send(None)
    assert directive == Call(wf.double, (4,), None)
    with pytest.raises(StopIteration) as stop:
        coro.send(8)
    assert stop.value.value == 8


def test_a_directive_failure_is_raised_at_the_await() -> None:
    coro = wf.catches("x")
    coro.send(None)
    with pytest.raises(StopIteration) as stop:
        coro.throw(ValueError("nope"))
    assert stop.value.value == "caught nope"


def test_directives_pickle_and_snapshot() -> None:
    for d in (call(wf.double, 1, k=2), sleep(3), gather(call(wf.double, 1), sleep(0))):
        assert pickle.loads(pickle.dumps(d)) == d
    coro = wf.fan_out([1, 2])
    coro.send(None)
    restored = corosnap.loads(corosnap.dumps(coro))
    with pytest.raises(StopIteration) as stop:
        restored.send([2, 4])
    assert stop.value.value == [2, 4]


def test_call_keeps_args_and_kwargs_and_stores_no_empty_dict() -> None:
    assert call(wf.double, 1) == Call(wf.double, (1,), None)
    assert call(wf.double, x=1).kwargs == {"x": 1}
    assert call(wf.double, 1).describe() == "double(1)"
    assert call(wf.double, "x" * 100).describe().endswith("...)")
    with pytest.raises(TypeError):
        call(42)  # type: ignore[call-overload]


def test_sleep_refuses_negative_and_nan() -> None:
    assert sleep(0) == Sleep(0.0)
    for bad in (-1, float("nan")):
        with pytest.raises(ValueError):
            sleep(bad)


def test_gather_takes_only_calls_and_sleeps() -> None:
    g = gather(call(wf.double, 1), sleep(1), return_exceptions=True)
    assert isinstance(g, Gather) and g.return_exceptions and len(g.items) == 2
    coro = wf.one(1)
    with pytest.raises(TypeError, match="register it"):
        gather(coro)  # type: ignore[arg-type]
    coro.close()
    with pytest.raises(TypeError):
        gather(gather())  # type: ignore[arg-type]


# -- policy ----------------------------------------------------------------------


def opts(**kw: object) -> FunctionOptions:
    return FunctionOptions(wf.double, "double", **kw)  # type: ignore[arg-type]


def test_backoff_doubles_up_to_the_cap_without_jitter() -> None:
    o = opts(backoff=0.5, max_backoff=3, jitter=False)
    assert [o.retry_delay(n) for n in range(1, 7)] == [0.5, 1, 2, 3, 3, 3]
    assert o.retry_delay(10_000) == 3  # no overflow on huge attempt numbers


def test_jitter_draws_from_the_upper_half_of_the_delay() -> None:
    o = opts(backoff=1, max_backoff=100)
    rng = random.Random(1)
    for n in range(1, 8):
        full = min(100, 2 ** (n - 1))
        draws = [o.retry_delay(n, rng) for _ in range(200)]
        assert all(full / 2 <= d <= full for d in draws)
        assert max(draws) - min(draws) > full / 4  # actually spread out


def test_attempts_and_permanence() -> None:
    o = opts(retries=2)
    assert o.max_attempts == 3
    assert o.should_retry(ConnectionError(), 1) and o.should_retry(ConnectionError(), 2)
    assert not o.should_retry(ConnectionError(), 3)
    assert not o.should_retry(PermanentError(), 1)
    assert o.should_retry(StepTimeout(), 1)
    p = opts(permanent=(KeyError,))
    assert p.is_permanent(KeyError()) and not p.is_permanent(ValueError())
    t = opts(transient=(ConnectionError,), permanent=(ConnectionResetError,))
    assert not t.is_permanent(ConnectionRefusedError())
    assert t.is_permanent(ConnectionResetError())  # permanent wins over transient
    assert t.is_permanent(ValueError())
    assert not t.is_permanent(StepTimeout())  # the scheduler's own error stays transient
    assert opts(permanent=(StepTimeout,)).is_permanent(StepTimeout())


@pytest.mark.parametrize(
    "bad",
    [
        {"retries": -1}, {"retries": 1.5}, {"retries": True}, {"backoff": -1},
        {"max_backoff": float("nan")}, {"timeout": 0}, {"concurrency": 0},
        {"concurrency": True},
    ],
)  # fmt: skip
def test_bad_options_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        opts(**bad)


def test_exception_classes_are_checked() -> None:
    with pytest.raises(TypeError):
        opts(permanent=(ValueError, "nope"))


# -- records ---------------------------------------------------------------------


def test_run_records_round_trip() -> None:
    waiting = Waiting(
        [
            Op(4, "step", call=call(wf.double, 1, k={"a": 1})),
            Op(5, "sleep", until=1718000000.5),
            Op(6, "child", call=call(wf.one, 2)),
            Op(7, "step", call=call(wf.double, 3)),
        ],
        gather=True,
        return_exceptions=True,
    )
    rec = RunRecord(
        "r1", "m.wf", snapshot=b"\x01\x02", waiting=waiting, next_seq=8, checkpoints=3,
        parent="p", created=1.5, updated=2.5, pid=7,
    )  # fmt: skip
    blob = encode_run(rec)
    assert decode_run("r1", blob) == rec
    body = msgpack.unpackb(blob)  # readable with any msgpack tool
    assert body["waiting"]["ops"] == [
        [4, "step", None], [5, "sleep", 1718000000.5], [6, "child", None], [7, "step", None],
    ]  # fmt: skip
    assert body["state"] == "running" and body["snapshot"] == b"\x01\x02"
    done = RunRecord("r2", "m.wf", state="done", outcome=Outcome.success([1, 2]))
    assert decode_run("r2", encode_run(done)).outcome.load() == [1, 2]  # type: ignore[union-attr]


def test_run_record_bytes_are_msgpacks_own() -> None:
    """encode_run packs with the codec's writer (C on the C engine): its bytes
    are exactly what msgpack's Packer makes of the same body, history rows,
    outcomes, floats, bytes and unknown fields included, so any msgpack tool
    reads a record and re-packing it changes nothing."""
    history = tuple(HistoryEntry(seq, f"m.fn{seq % 3}", seq % 2 == 0, 1 + seq % 4,
                                 "host:1:w" if seq % 5 else "other:2:w", 1718000000.25 + seq,
                                 1718000000.5 + seq)
                    for seq in range(1, 30))
    rec = RunRecord(
        "r1", "m.wf", snapshot=bytes(range(256)) * 3, next_seq=30, checkpoints=2**40,
        outcomes={29: Outcome.success({"a": [1.5, None, True]})}, history=history,
        owner="host:1:w", lease=1718000030.125, wake=-0.0, marker="18f0c2a41b7d",
        created=1.0, updated=2.0, pid=4242, extra={"future": {"x": [2**63, -(2**63)]}},
    )  # fmt: skip
    blob = encode_run(rec)
    assert blob == msgpack.packb(msgpack.unpackb(blob), use_bin_type=True)
    assert decode_run("r1", blob) == rec
    with pytest.raises(TypeError, match="can not serialize 'object' object"):
        encode_run(dataclasses.replace(rec, extra={"bad": object()}))
    # A field a newer format wrote as a msgpack timestamp (ext -1) is read as
    # a Timestamp and written back as it came.
    body = msgpack.unpackb(blob)
    body["since"] = msgpack.Timestamp(1718000000, 5)
    newer = msgpack.packb(body, use_bin_type=True)
    kept = decode_run("r1", newer)
    assert kept.extra["since"] == msgpack.Timestamp(1718000000, 5)
    assert encode_run(kept) == newer


def _history_uncached(entries: tuple[HistoryEntry, ...]) -> list[Any]:
    names: dict[str, int] = {}
    rows = [[h.seq, names.setdefault(h.fn, len(names)), h.ok, h.attempts,
             names.setdefault(h.worker, len(names)), h.started, h.finished] for h in entries]
    return [list(names), rows]


def test_encoding_a_history_again_gives_what_encoding_it_afresh_gives() -> None:
    """encode_history keeps the last history's rows and encodes only the
    entries added since: across runs taking turns, histories that lose their
    oldest chunk, equal entries that are other objects and entries that
    differ in one field, its output (and the record's bytes) is what encoding
    from nothing gives.  (Equal entries may be written differently: -0.0 and
    0.0 are equal, so are True and 1, and 3 and 3.0.)"""
    rng = random.Random(7)

    def entry(seq: int) -> HistoryEntry:
        return HistoryEntry(seq, rng.choice(["m.a", "m.b", "m.c"]), rng.random() < 0.8,
                            rng.randrange(1, 4), rng.choice(["w1", "w2"]), float(seq), seq + 0.5)

    runs: list[tuple[HistoryEntry, ...]] = [(), (), ()]
    for _ in range(600):
        i = rng.randrange(len(runs))
        h = runs[i]
        roll = rng.random()
        if roll < 0.6:
            h = h + (entry(len(h) + 1),)
        elif roll < 0.7 and len(h) > 4:
            h = h[4:]  # a chunk moved out
        elif roll < 0.8 and h:
            # Equal, not identical, and written differently: 0.0 and -0.0,
            # True and 1, an int time and a float one.
            h = tuple(dataclasses.replace(e, ok=int(e.ok), started=int(e.started))
                      for e in h)
        elif roll < 0.9 and h:
            k = rng.randrange(len(h))  # one entry differs
            h = h[:k] + (dataclasses.replace(h[k], ok=not h[k].ok),) + h[k + 1:]
        runs[i] = h
        got = encode_history(h)
        assert [got[0], list(got[1])] == _history_uncached(h)
        assert msgpack.packb(got) == msgpack.packb(_history_uncached(h))
    zero = HistoryEntry(1, "m.a", True, 1, "w1", -0.0, 1.0)
    encode_history((zero,))
    again = (dataclasses.replace(zero, started=0.0), entry(2))
    assert msgpack.packb(encode_history(again)) == msgpack.packb(_history_uncached(again))


def test_evolve_is_dataclasses_replace() -> None:
    """The engine's fast replace of a run record, field by field against
    dataclasses.replace: every field (a field added to RunRecord with
    init=False or a __post_init__ would break evolve, and this test)."""
    rec = RunRecord("r1", "m.wf", snapshot=b"x", next_seq=3, outcomes={1: Outcome.success(2)},
                    extra={"k": 1})
    changes = {f.name: object() for f in dataclasses.fields(RunRecord)}
    for name, value in changes.items():
        assert evolve(rec, **{name: value}) == dataclasses.replace(rec, **{name: value}), name
    assert evolve(rec, **changes) == dataclasses.replace(rec, **changes)
    assert evolve(rec) == rec and evolve(rec) is not rec
    assert all(f.init for f in dataclasses.fields(RunRecord))
    assert not hasattr(RunRecord, "__post_init__")
    with pytest.raises(TypeError, match="no field 'nope'"):
        evolve(rec, nope=1)


def test_unknown_fields_are_kept_and_damage_is_reported() -> None:
    body = msgpack.unpackb(encode_run(RunRecord("r", "w")))
    body["future_field"] = 1
    assert decode_run("r", msgpack.packb(body)).extra == {"future_field": 1}
    body["format"] = 99
    with pytest.raises(CorruptSnapshot, match="format"):
        decode_run("r", msgpack.packb(body))
    with pytest.raises(CorruptSnapshot):
        decode_run("r", b"\xc1garbage")
    with pytest.raises(CorruptSnapshot):
        decode_step("step/r/1", b"\x90")


def test_step_records_round_trip() -> None:
    rec = StepRecord(Outcome.failure(ValueError("v")), "m.f", 3, 42, 1.0, 2.0)
    back = decode_step("step/r/1", encode_step(rec))
    assert back == rec
    exc = back.outcome.load()
    assert type(exc) is ValueError and exc.args == ("v",)


def test_exceptions_that_do_not_round_trip_are_recorded_by_name() -> None:
    class Local(Exception):
        pass

    for exc, name in [
        (Local("x"), "test_parts.test_exceptions_that_do_not_round_trip_are_recorded_by_name"),
        (wf.OddError("a", "b"), "tests.scheduler.workflows.OddError"),
    ]:
        back = pickle.loads(dump_exception(exc))
        assert isinstance(back, UnrecordableError)
        assert name in back.args[0] and str(exc) == back.args[1]
    with pytest.raises(UnrecordableError):
        Outcome.success(threading.Lock())


def test_run_ids() -> None:
    assert validate_run_id("order-1.2_a:b@c=d+e") == "order-1.2_a:b@c=d+e"
    for bad in ("", "a/b", "a b", "x" * 201):
        with pytest.raises(ValueError):
            validate_run_id(bad)
    with pytest.raises(TypeError):
        validate_run_id(1)
