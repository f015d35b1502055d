"""Leases: who may advance a run, and when another worker may take it over.

What lives here: worker identities, the rule that says whether a run record
may be claimed, and the check that a lease holder on this machine is dead.
Pure functions of a record, an identity and a time, plus one process-wide
set of live engines.  No store calls: ``_engine.py`` does the writes.

Theory of operation
-------------------
A run's lease is two fields of its own run record, ``owner`` and ``lease``
(the wall-clock time the claim ends), so taking, renewing and dropping a
lease are ordinary compare-and-set writes of that record, and every write
that advances the run proves, in the same operation, that the writer still
holds it.  There is no lock service and no second record to keep in step.

States of a run record, and the writes that move between them::

                  claim (CAS)                       finish (CAS)
    unowned ---------------------> owned by W ------------------> done/failed
    (owner null,                    |  ^   |
     or lease + skew <= now,         |  |   | checkpoint / record outcome /
     or W's process is dead)        |  +---+ renew: CAS, lease = now + L
       ^   ^                        |
       |   +------------------------+ release (CAS, owner null): graceful stop,
       |      sleep (CAS, owner null, wake = due): a timer longer than the lease
       |
       +-- W dies or stalls: nothing is written; the lease runs out by itself

* **claim**: a worker reads the record at version ``v``, finds it
  *claimable* (:func:`claimable`), and writes it back at ``v`` with itself as
  owner and ``lease = now + L``.  Of two workers that read ``v``, exactly one
  write lands; the other gets ``Conflict`` and leaves the run alone.
* **advance**: every later write by the owner (a checkpoint, a recorded step
  outcome, a renewal) is a compare-and-set on the version the owner itself
  wrote last, and sets ``lease = now + L`` again.  A write that gets
  ``Conflict`` means somebody claimed the run since: the stale owner drops
  the run from memory at once (its in-flight steps' results are discarded)
  and never writes it again.
* **renew**: an owner with nothing to write renews after ``L / 3`` without a
  write, so a long step, a retry pause or a child run does not lose it.
* **self-fencing**: an owner acts on a run (resumes its coroutine, starts a
  step) only while its own clock is inside the lease; past that it renews
  first, by compare-and-set, and stops if that fails.
* **expiry**: a claimer treats a lease as over only ``skew`` seconds after
  ``lease`` by its own clock.  If the clocks of any two workers differ by
  less than ``skew``, the old owner has stopped acting (by its clock) before
  a new owner can claim (by its clock): at no instant do two workers both
  hold a valid lease on one run.
* **local death**: a lease held by a process on this machine that no longer
  exists (or by an engine of this process that has stopped) is claimable at
  once, so a crashed single worker restarted on the same machine carries on
  without waiting for ``L``.  Machines are told apart by host name, boot id
  and PID namespace (Linux); elsewhere only the expiry counts.

Steps are not fenced: a step already running when its worker stalls past the
lease keeps running, and the new owner may start it again.  That is the
at-least-once window the scheduler already documents (idempotency keys).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import socket
import threading

from ._records import RunRecord


def _machine_tag() -> str:
    """A short tag for "this kernel and this PID namespace", or "" where it cannot be known.

    PIDs are only comparable between processes that share a kernel boot and a
    PID namespace: two containers with the same host name are different
    machines as far as ``kill(pid, 0)`` is concerned.
    """
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
        pidns = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return ""
    return hashlib.blake2b(f"{boot}/{pidns}".encode(), digest_size=3).hexdigest()


_HOST = socket.gethostname().replace(":", "_") or "localhost"
_TAG = _machine_tag()
_LIVE: set[str] = set()  # ids of the engines running in this process
_LIVE_LOCK = threading.Lock()


def new_worker_id() -> str:
    """``host:pid:tag.random``: unique per engine, and telling where it runs."""
    return f"{_HOST}:{os.getpid()}:{_TAG}.{secrets.token_hex(3)}"


def register(worker_id: str) -> None:
    with _LIVE_LOCK:
        _LIVE.add(worker_id)


def unregister(worker_id: str) -> None:
    with _LIVE_LOCK:
        _LIVE.discard(worker_id)


def owner_is_dead(owner: str) -> bool:
    """True only if ``owner`` is an engine on this machine that is certainly gone.

    False whenever it cannot be known (another machine, another PID
    namespace, an id in another format, a PID that exists, possibly reused):
    then only the lease's expiry frees the run.
    """
    if not _TAG:
        return False
    host, sep, rest = owner.partition(":")
    pid_text, sep2, token = rest.partition(":")
    if not (sep and sep2) or host != _HOST or not token.startswith(_TAG + "."):
        return False
    try:
        pid = int(pid_text)
    except ValueError:
        return False
    if pid == os.getpid():
        with _LIVE_LOCK:
            return owner not in _LIVE
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # exists, but not ours to signal
    return False


def claimable(rec: RunRecord, me: str, now: float, skew: float) -> tuple[bool, float | None]:
    """May worker ``me`` claim this record now?  Returns ``(yes, look_again_at)``.

    ``look_again_at`` is the earliest time the answer can become yes without
    the record changing (None: only a change of the record can make it yes,
    or it is yes already).  A finished run is never claimable.
    """
    if rec.state != "running":
        return False, None
    if rec.owner is None:
        if rec.wake is not None and rec.wake > now:
            return False, rec.wake
        return True, None
    if rec.owner == me:
        # Our own lease, but the run is not in our memory: a write whose outcome
        # we could not learn (a store error) made us drop it.  The record is the
        # truth; take it back.
        return True, None
    if rec.lease + skew <= now or owner_is_dead(rec.owner):
        return True, None
    return False, rec.lease + skew
