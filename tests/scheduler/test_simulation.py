"""The lease protocol under a deterministic simulation: thousands of seeded interleavings.

``sim.py`` runs the real engine, several workers at once, over a simulated
store, clock and executor, with crashes (between and inside store calls),
pauses past the lease, store errors before and after a write lands, graceful
stops and restarts; it checks the protocol's invariants at every action (its
docstring lists them).  Each seed is one interleaving.

* ``COROSNAP_SIM_SEEDS``: how many seeds (default 1500); ``COROSNAP_SIM_FIRST``:
  the first one (default 0), to explore others.
* ``COROSNAP_SIM_SEED=N``: replay seed N only.  ``python -m tests.scheduler.sim N -v``
  replays it with a trace of every action and store write.

The last tests break the engine on purpose (ignore leases, keep acting after
losing one, skip self-fencing, forget recorded outcomes) and check that the
simulation catches each break: the invariants are not vacuous.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from typing import Any

import pytest

from corosnap.scheduler import _engine, _lease

from .sim import Counters, Violation, simulate

SEEDS = int(os.environ.get("COROSNAP_SIM_SEEDS", "1500"))
FIRST = int(os.environ.get("COROSNAP_SIM_FIRST", "0"))
ONE = os.environ.get("COROSNAP_SIM_SEED")


def sweep(seeds: range, stop_after: int = 3) -> tuple[list[str], Counters, float]:
    failures: list[str] = []
    totals = Counters()
    t0 = time.perf_counter()
    for seed in seeds:
        try:
            world = simulate(seed)
        except Violation as exc:
            failures.append(str(exc))
            if len(failures) >= stop_after:
                break
            continue
        for f in dataclasses.fields(Counters):
            setattr(totals, f.name, getattr(totals, f.name) + getattr(world.counts, f.name))
    return failures, totals, time.perf_counter() - t0


def test_the_lease_protocol_holds_in_every_simulated_interleaving() -> None:
    seeds = range(int(ONE), int(ONE) + 1) if ONE else range(FIRST, FIRST + SEEDS)
    failures, totals, elapsed = sweep(seeds)
    print(
        f"\n{len(seeds)} interleavings in {elapsed:.1f} s ({len(seeds) / elapsed:.0f}/s): "
        f"{totals.actions} actions, {totals.steps} engine steps, {totals.claims} claims, "
        f"{totals.crashes} kills + {totals.crashes_in_op} deaths at a store call, "
        f"{totals.pauses} pauses, {totals.faults} store errors, {totals.stops} graceful stops, "
        f"{totals.attempts_finished} step attempts, {totals.resumes} workflow resumptions"
    )
    assert not failures, (
        "lease protocol violated:\n" + "\n".join(failures)
        + "\nreplay one with COROSNAP_SIM_SEED=<seed>, or with a trace: "
        "python -m tests.scheduler.sim <seed> -v"
    )
    if not ONE:
        # The sweep really exercised the failure modes it is about.
        assert totals.crashes and totals.crashes_in_op and totals.pauses and totals.faults
        assert totals.stops and totals.claims > len(seeds)


def test_a_seed_replays_exactly() -> None:
    a, b = simulate(7, verbose=True), simulate(7, verbose=True)
    assert a.trace == b.trace and a.counts == b.counts
    assert simulate(8, verbose=True).trace != a.trace


# -- the simulation catches a broken protocol ---------------------------------------


def catches(monkeypatch: pytest.MonkeyPatch, patch: Callable[[], None], *expect: str) -> None:
    patch()
    failures, _, _ = sweep(range(200), stop_after=1)
    monkeypatch.undo()
    assert failures, "the simulation did not notice the broken engine"
    assert any(e in failures[0] for e in expect), failures[0]


def test_it_catches_claims_that_ignore_a_valid_lease(monkeypatch: pytest.MonkeyPatch) -> None:
    def greedy(rec: Any, me: str, now: float, skew: float) -> tuple[bool, float | None]:
        return rec.state == "running", None

    catches(monkeypatch, lambda: monkeypatch.setattr(_engine, "claimable", greedy),
            "lease was valid")  # fmt: skip


def test_it_catches_a_stale_owner_that_carries_on(monkeypatch: pytest.MonkeyPatch) -> None:
    def patch() -> None:
        monkeypatch.setattr(_engine.Engine, "lose", lambda self, run, why: None)
        monkeypatch.setattr(_engine.Engine, "lease_ok", lambda self, run: True)

    catches(monkeypatch, patch, "without a valid lease", "at once")


def test_it_catches_an_owner_that_never_lets_go(monkeypatch: pytest.MonkeyPatch) -> None:
    # Self-fencing alone keeps it from acting; it then holds its runs forever.
    catches(
        monkeypatch,
        lambda: monkeypatch.setattr(_engine.Engine, "lose", lambda self, run, why: None),
        "runs unfinished",
    )


def test_it_catches_an_owner_that_does_not_fence_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    catches(
        monkeypatch,
        lambda: monkeypatch.setattr(_engine.Engine, "lease_ok", lambda self, run: True),
        "without a valid lease",
    )


def test_it_catches_lost_step_outcomes(monkeypatch: pytest.MonkeyPatch) -> None:
    real = _engine.Engine.record_of

    def forgetful(self: Any, run: Any, **changes: Any) -> Any:
        rec = real(self, run, **changes)
        return dataclasses.replace(rec, outcomes={})

    catches(monkeypatch, lambda: monkeypatch.setattr(_engine.Engine, "record_of", forgetful),
            "lost the recorded outcome", "recorded step", "twice")  # fmt: skip


def test_it_catches_a_claim_rule_without_the_clock_skew(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = _lease.claimable

    def no_skew(rec: Any, me: str, now: float, skew: float) -> tuple[bool, float | None]:
        return real(rec, me, now, 0.0)

    catches(monkeypatch, lambda: monkeypatch.setattr(_engine, "claimable", no_skew),
            "lease was valid")  # fmt: skip
