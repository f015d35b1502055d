"""Kill a writer with SIGKILL at random moments; no acknowledged write may be lost or torn.

Each cycle: a writer process (forked by ``crash_child.py``) opens the store
and writes in a loop, reporting every acknowledged put through a pipe; the
test kills it after a random delay, collects the acknowledgements, and checks
the store:

* every key that was ever acknowledged has a record (nothing lost);
* its blob is intact: the child's header, length and SHA-256 all agree
  (nothing torn, nothing empty, no mix of two writes);
* its version is the last acknowledged one, or one more (the put that was in
  flight when the kill landed completed but had not been reported), and
  never goes backwards from what an earlier check saw;
* ``keys()`` lists exactly the keys written (temporary files stay invisible).

The server-backed stores (PostgreSQL, Redis, S3 on moto) run the same test
against the servers the session started: there a killed writer leaves a
request half-sent, or sent and unanswered, on a connection the server then
sees close, and may still carry out (a "ghost" write, which the check waits
for: ``servers.wait_until_dead_clients_are_gone``).  ``CRASH_CYCLES`` (default
200 for the local stores, 100 for PostgreSQL and Redis, 50 for S3) sets the
number of kills per backend; try ``CRASH_CYCLES=3000`` for a soak.

SIGKILL tests atomicity: what a reader or the next process sees after a
writer dies at any instant.  It cannot test what fsync adds (survival of a
power cut or kernel crash): after SIGKILL the kernel still holds the
written pages.  docs/stores.md says what each backend does for that.
"""

from __future__ import annotations

import collections
import hashlib
import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from corosnap.stores import DirectoryStore, SQLiteStore
from corosnap.stores._directory import key_to_name

from .. import servers
from .crash_child import KEYS, SERVER_BACKENDS, check_blob, open_store

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")

CHILD = Path(__file__).with_name("crash_child.py")
CYCLES = int(os.environ.get("CRASH_CYCLES", "200"))
#: Kills per server-backed store.  Fewer on S3: moto answers a request in 5-30 ms,
#: so a cycle there takes about 0.25 s.  CRASH_CYCLES sets them all.
SERVER_CYCLES = {
    backend: int(os.environ.get("CRASH_CYCLES", default))
    for backend, default in (("postgres", "100"), ("redis", "100"), ("s3", "50"))
}
TIMEOUT = 30.0  # seconds any one step may take before the test fails


class ForkServer:
    """The ``crash_child.py`` process, and a line reader over its stdout."""

    def __init__(self, backend: str, path: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(CHILD), backend, path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.pending = b""

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def lines_until(self, prefix: str) -> list[str]:
        """Read lines up to and including the first that starts with ``prefix``."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + TIMEOUT
        lines: list[str] = []
        while True:
            while b"\n" in self.pending:
                line, self.pending = self.pending.split(b"\n", 1)
                lines.append(line.decode())
                if lines[-1].startswith(prefix):
                    return lines
            left = deadline - time.monotonic()
            if left <= 0:
                self.fail(f"no {prefix!r} line within {TIMEOUT} s; got {lines}")
            if select.select([fd], [], [], left)[0]:
                chunk = os.read(fd, 65536)
                if not chunk:
                    self.fail(f"the fork server exited before a {prefix!r} line; got {lines}")
                self.pending += chunk

    def fail(self, why: str) -> None:
        self.close()
        assert self.proc.stderr is not None
        pytest.fail(f"{why}\nstderr:\n{self.proc.stderr.read().decode()}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def _acks(lines: list[str]) -> list[tuple[int, int]]:
    found = []
    for line in lines:
        if line.startswith("ack "):
            _, index, version = line.split()
            found.append((int(index), int(version)))
    return found


def store_location(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """The PATH argument of crash_child.py: a path, or a spec for a server-backed store."""
    if backend == "directory":
        return str(tmp_path / "store")
    if backend == "sqlite":
        return str(tmp_path / "store.db")
    server = request.getfixturevalue(f"{backend}_server")
    namespace = "crash-" + hashlib.sha1(str(tmp_path).encode()).hexdigest()[:12]
    return servers.spec_for(backend, server, namespace)


@pytest.mark.parametrize("backend", ["directory", "sqlite", *SERVER_BACKENDS])
def test_sigkill_never_loses_or_tears_an_acknowledged_put(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    path = store_location(backend, tmp_path, request)
    cycles = SERVER_CYCLES.get(backend, CYCLES)
    rng = random.Random(20240601)
    last = [0] * len(KEYS)  # highest version acknowledged or observed, per key
    stats: collections.Counter[str] = collections.Counter()
    put_time = 0.002  # running estimate of one get + put, in seconds
    server = ForkServer(backend, path)
    try:
        for cycle in range(cycles):
            server.send(str(cycle))
            lines = server.lines_until("pid ")
            pid = int(lines[-1].split()[1])
            if rng.random() < 0.1:
                # Kill while the store is being opened (or just after).
                time.sleep(rng.uniform(0, 0.003))
                stats["killed around open"] += 1
            else:
                # Let a few puts through, then kill at a random point of a
                # put: the delay is scaled by the measured put time, so the
                # kills land across whole puts on a fast disk and a slow one.
                if "ready" not in lines:
                    lines += server.lines_until("ready")
                acks_wanted = rng.randrange(4)
                delay = rng.uniform(0, 1.5)
                started = time.monotonic()
                while len(_acks(lines)) < acks_wanted:
                    lines += server.lines_until("ack ")
                if acks_wanted:
                    put_time = 0.8 * put_time + 0.2 * (time.monotonic() - started) / acks_wanted
                time.sleep(delay * put_time)
            os.kill(pid, signal.SIGKILL)
            lines += server.lines_until("dead ")
            status = int(lines[-1].split()[2])
            if not (os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL):
                server.fail(f"cycle {cycle}: the writer died on its own (status {status})")
            if backend in SERVER_BACKENDS:
                # Let the server finish (or drop) what the dead writer sent.
                servers.wait_until_dead_clients_are_gone(servers.server_port(path))
            acks = _acks(lines)
            stats["acknowledged puts"] += len(acks)
            for index, version in acks:
                # Each put bumps its key by exactly one, and acknowledged
                # versions continue from the last one acknowledged or seen.
                assert version == last[index] + 1, (
                    f"cycle {cycle}: version {version} of {KEYS[index][:30]!r} acknowledged "
                    f"after version {last[index]}"
                )
                last[index] = version
            _check_store(backend, path, last, stats, cycle)
    finally:
        server.close()
    print(f"\n{backend}: {cycles} kills, {dict(stats)}, put time {put_time * 1000:.1f} ms")
    # Guaranteed by the waits above (about 1.35 acknowledged puts per cycle).
    assert stats["acknowledged puts"] >= cycles
    if backend == "sqlite":
        with SQLiteStore(path) as store:
            conn = store._conn()
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def _check_store(
    backend: str, path: str, last: list[int], stats: collections.Counter[str], cycle: int
) -> None:
    # A fresh store each time: what the next process to open it would see.
    with open_store(backend, path) as store:
        present = []
        for index, key in enumerate(KEYS):
            record = store.get(key)
            if record is None:
                assert last[index] == 0, (
                    f"cycle {cycle}: {key[:30]!r} lost (version {last[index]} was acknowledged)"
                )
                continue
            present.append(key)
            counter = check_blob(key, record.blob)
            assert counter == record.version, (
                f"cycle {cycle}: blob of version {counter} stored as version {record.version}"
            )
            assert last[index] <= record.version <= last[index] + 1, (
                f"cycle {cycle}: {key[:30]!r} at version {record.version}, "
                f"last acknowledged or seen {last[index]}"
            )
            if record.version == last[index] + 1:
                stats["in-flight put found complete"] += 1
            last[index] = record.version
        assert sorted(store.keys()) == sorted(present), f"cycle {cycle}"
    if backend == "directory":
        names = {name for name in os.listdir(path) if not name.startswith(".")}
        assert names == {key_to_name(key) for key in present}, f"cycle {cycle}: {names}"
        stats["temporary files left"] = sum(n.startswith(".tmp-") for n in os.listdir(path))


def test_the_check_detects_a_torn_blob(tmp_path: Path) -> None:
    """The verification above would notice a torn write: cut a valid blob short."""
    from .crash_child import make_blob

    blob = make_blob("k", 3, b"payload" * 100)
    assert check_blob("k", blob) == 3
    for cut in (0, 10, len(blob) - 1):
        with pytest.raises(AssertionError):
            check_blob("k", blob[:cut])
    with pytest.raises(AssertionError):
        check_blob("k", blob[:60] + b"X" + blob[61:])
    with DirectoryStore(tmp_path / "d") as store:  # and the store refuses a torn file
        store.put("k", blob)
        file = tmp_path / "d" / key_to_name("k")
        file.write_bytes(file.read_bytes()[:-5])
        with pytest.raises(Exception, match="has .* bytes, its header says"):
            store.get("k")
