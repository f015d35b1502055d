"""Real database servers for the tests, started by the tests themselves.

The server-backed stores (PostgreSQL, Redis, S3) are tested against real
servers, never mocks.  This module starts each one in a private temporary
directory on a free port of 127.0.0.1, for one pytest session:

* **PostgreSQL**: the system's ``initdb`` and ``pg_ctl`` (found on ``PATH`` or
  under ``/usr/lib/postgresql/*/bin``).  PostgreSQL refuses to run as root, so
  when the tests run as root the cluster is created and run by the
  unprivileged ``postgres`` user in a directory it owns.  Trust
  authentication on 127.0.0.1 only; ``fsync`` stays on, so ``durable=True``
  stores are really durable.
* **Redis**: ``redis-server`` (the distribution's package), with the
  append-only file on and ``appendfsync always``, so the default
  ``RedisStore(durability="fsync")`` is satisfied.
* **S3**: moto's server in a child process (``tests/moto_server.py``).

``conftest.py`` turns these into session fixtures (``postgres_server``,
``redis_server``, ``s3_server``).  Where a server or its client library is
missing the tests that need it are skipped with a message that says how to
get it, unless ``COROSNAP_REQUIRE_SERVERS=1`` is set (``.ci/run`` sets it):
then a missing server fails the test, so CI never passes by skipping.

The child processes of the crash and contention tests get a server as a
*spec*: a JSON string naming the backend and how to reach it, which
:func:`open_store` turns into a store.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REQUIRE_ENV = "COROSNAP_REQUIRE_SERVERS"
HERE = Path(__file__).parent
STARTUP_TIMEOUT = 60.0


def servers_required() -> bool:
    return os.environ.get(REQUIRE_ENV, "") not in ("", "0")


def unavailable(what: str, how: str) -> None:
    """Skip the test (or fail it, when servers are required) because ``what`` is missing."""
    message = f"{what}; {how}"
    if servers_required():
        pytest.fail(f"{message} ({REQUIRE_ENV}=1: server tests must not be skipped)")
    pytest.skip(message)


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """``preexec_fn``: the child gets SIGTERM when the test process dies (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _wait_port(port: int, proc: subprocess.Popen[Any] | None, log: Path, what: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{_tail(log)}")
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise RuntimeError(
        f"{what} did not listen on port {port} in {STARTUP_TIMEOUT} s:\n{_tail(log)}"
    )


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# -- PostgreSQL -----------------------------------------------------------

PG_HOW = (
    "install the PostgreSQL server (Debian/Ubuntu: apt-get install postgresql; "
    "macOS: brew install postgresql@15) or put the directory holding initdb and pg_ctl "
    "on PATH, and the client library with pip install -e '.[dev]'"
)


def find_pg_bin() -> Path | None:
    """The directory of ``initdb`` and ``pg_ctl``: on PATH, else the newest Debian install."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(os.path.realpath(found)).parent
    candidates = glob.glob("/usr/lib/postgresql/*/bin/pg_ctl") + glob.glob(
        "/usr/local/pgsql/bin/pg_ctl"
    )

    def major(path: str) -> float:
        part = Path(path).parent.parent.name
        return float(part) if part.replace(".", "", 1).isdigit() else 0.0

    for candidate in sorted(candidates, key=major, reverse=True):
        if os.access(Path(candidate).with_name("initdb"), os.X_OK):
            return Path(candidate).parent
    return None


@dataclass
class PostgresServer:
    """A throw-away PostgreSQL cluster; ``dsn`` connects as its superuser ``corosnap``."""

    bindir: Path
    root: Path
    port: int
    run_as: str | None
    user: str = "corosnap"
    database: str = "postgres"

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    @property
    def dsn(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, LC_ALL="C", LANG="C")
        env.pop("PGDATA", None)
        kwargs: dict[str, Any] = {}
        if self.run_as is not None:
            entry = pwd.getpwnam(self.run_as)
            kwargs.update(user=entry.pw_uid, group=entry.pw_gid, extra_groups=[])
            env["HOME"] = entry.pw_dir
        result = subprocess.run(
            args, env=env, cwd=self.root, capture_output=True, text=True, timeout=120, **kwargs
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
                f"\n{_tail(self.log)}"
            )
        return result

    def initdb(self) -> None:
        self._run(
            str(self.bindir / "initdb"),
            "-D", str(self.datadir),
            "-U", self.user,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",  # a throw-away cluster: no need to fsync initdb's files
        )  # fmt: skip

    def start(self) -> None:
        options = " ".join(
            [
                f"-p {self.port}",
                "-c listen_addresses=127.0.0.1",
                f"-c unix_socket_directories={self.root}",
                "-c max_connections=300",
                "-c shared_buffers=32MB",
            ]
        )
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D", str(self.datadir),
            "-l", str(self.log),
            "-o", options,
            "-w", "-t", str(int(STARTUP_TIMEOUT)),
            "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", mode, "-w", "stop",
            check=False,
        )  # fmt: skip

    def running(self) -> bool:
        status = self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "status", check=False
        )
        return status.returncode == 0


def start_postgres() -> PostgresServer:
    bindir = find_pg_bin()
    if bindir is None:
        raise LookupError("PostgreSQL's initdb and pg_ctl were not found")
    run_as = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise LookupError(
                "the tests run as root and PostgreSQL refuses to; no unprivileged "
                "'postgres' user exists to run it (the postgresql package creates one)"
            ) from None
        run_as = "postgres"
    root = Path(tempfile.mkdtemp(prefix="corosnap-pg-"))
    if run_as is not None:
        entry = pwd.getpwnam(run_as)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    last: Exception | None = None
    for _ in range(3):  # a free port can be taken by someone else before the server binds it
        server = PostgresServer(bindir, root, free_port(), run_as)
        try:
            if not server.datadir.exists():
                server.initdb()
            server.start()
            return server
        except RuntimeError as exc:
            last = exc
    shutil.rmtree(root, ignore_errors=True)
    raise RuntimeError(f"could not start PostgreSQL: {last}")


def stop_postgres(server: PostgresServer) -> None:
    server.stop("fast")
    shutil.rmtree(server.root, ignore_errors=True)


# -- Redis ------------------------------------------------------------------

REDIS_HOW = (
    "install redis-server (Debian/Ubuntu: apt-get install redis-server; macOS: brew install "
    "redis) and the client library with pip install -e '.[dev]'"
)


def find_redis_server() -> str | None:
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.access("/usr/bin/redis-server", os.X_OK) else None
    )


@dataclass
class RedisServer:
    """A private ``redis-server``: AOF on with ``appendfsync always``, no RDB snapshots."""

    binary: str
    root: Path
    port: int
    extra: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log(self) -> Path:
        return self.root / "redis.log"

    def start(self) -> None:
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.root),
            "--logfile", str(self.log),
            "--daemonize", "no",
            "--save", "",
            "--appendonly", "yes",
            "--appendfsync", "always",
            *self.extra,
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        _wait_port(self.port, self.proc, self.log, "redis-server")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_redis(extra: list[str] | None = None) -> RedisServer:
    binary = find_redis_server()
    if binary is None:
        raise LookupError("redis-server was not found")
    root = Path(tempfile.mkdtemp(prefix="corosnap-redis-"))
    last: Exception | None = None
    for _ in range(3):
        server = RedisServer(binary, root, free_port(), list(extra or []))
        try:
            server.start()
            return server
        except RuntimeError as exc:
            server.stop()
            last = exc
    shutil.rmtree(root, ignore_errors=True)
    raise RuntimeError(f"could not start redis-server: {last}")


def stop_redis(server: RedisServer) -> None:
    server.stop()
    shutil.rmtree(server.root, ignore_errors=True)


# -- S3 (moto) --------------------------------------------------------------

S3_HOW = "install moto's server and boto3 with pip install -e '.[dev]' (or 'moto[server]' boto3)"

#: Fixed credentials: moto accepts any, and a real endpoint is never contacted.
S3_CREDENTIALS = {
    "aws_access_key_id": "corosnap-test",
    "aws_secret_access_key": "corosnap-test",
    "region_name": "us-east-1",
}


@dataclass
class S3Server:
    """moto's S3 server in a child process (see ``tests/moto_server.py``)."""

    port: int
    proc: subprocess.Popen[str]
    bucket: str = "corosnap-tests"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, **config: Any) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3", endpoint_url=self.endpoint, config=Config(**config), **S3_CREDENTIALS
        )

    def stop(self) -> None:
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_s3() -> S3Server:
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "moto_server.py")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_die_with_parent,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("port "):
        proc.kill()
        _, err = proc.communicate()
        raise RuntimeError(f"moto's server did not start: {line!r}\n{err}")
    server = S3Server(int(line.split()[1]), proc)
    server.client().create_bucket(Bucket=server.bucket)
    return server


# -- stores from specs (for child processes) --------------------------------


def spec_for(backend: str, server: Any, namespace: str) -> str:
    """A JSON spec from which :func:`open_store` opens a store on ``server``."""
    if backend == "postgres":
        return json.dumps({"backend": backend, "dsn": server.dsn, "schema": namespace})
    if backend == "redis":
        return json.dumps({"backend": backend, "url": server.url, "namespace": namespace})
    if backend == "s3":
        return json.dumps(
            {
                "backend": backend,
                "endpoint": server.endpoint,
                "bucket": server.bucket,
                "prefix": namespace,
            }
        )
    raise ValueError(backend)


def open_store(spec: str, *, durable: bool = True) -> Any:
    """Open the store a :func:`spec_for` spec names; ``durable=False`` asks for less."""
    config = json.loads(spec)
    backend = config["backend"]
    if backend == "postgres":
        from corosnap.stores import PostgresStore

        return PostgresStore(config["dsn"], schema=config["schema"], durable=durable)
    if backend == "redis":
        from corosnap.stores import RedisStore

        return RedisStore(
            config["url"],
            namespace=config["namespace"],
            durability="fsync" if durable else "none",
        )
    if backend == "s3":
        import boto3

        from corosnap.stores import S3Store

        client = boto3.client("s3", endpoint_url=config["endpoint"], **S3_CREDENTIALS)
        return S3Store(config["bucket"], config["prefix"], client=client)
    raise ValueError(backend)


# -- after killing a client -------------------------------------------------


def server_port(spec: str) -> int:
    """The TCP port of the server a spec points at."""
    config = json.loads(spec)
    address = config.get("dsn") or config.get("url") or config["endpoint"]
    return int(address.rsplit(":", 1)[1].split("/", 1)[0])


def wait_until_dead_clients_are_gone(port: int, timeout: float = 30.0) -> None:
    """Wait until the server on ``port`` has closed every connection whose client died.

    A client killed while its request was on the wire leaves the server
    holding the request: the server may still carry it out (PostgreSQL runs
    and commits the statement, then finds nobody to answer).  Such a "ghost"
    write can land after the client is dead.  The kernel answers the dead
    client's end with a FIN, which leaves the server's socket in CLOSE_WAIT
    until the server closes it, which it does only once it is done with what
    it read.  So: no CLOSE_WAIT socket on the server's port means no ghost
    write is still to come.
    """
    deadline = time.monotonic() + timeout
    while True:
        waiting = _close_wait_sockets(port)
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the server on port {port} kept {waiting} dead connection(s)")
        time.sleep(0.002)


def _close_wait_sockets(port: int) -> int:
    """How many TCP sockets with local port ``port`` are in CLOSE_WAIT."""
    tables = [Path("/proc/net/tcp"), Path("/proc/net/tcp6")]
    if not tables[0].exists():  # not Linux: psutil reads the same, more slowly
        import psutil

        return sum(
            1
            for conn in psutil.net_connections(kind="tcp")
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_CLOSE_WAIT
        )
    count = 0
    for table in tables:
        with contextlib.suppress(OSError):
            for line in table.read_text().splitlines()[1:]:
                fields = line.split()
                # fields[1] is "ADDRESS:PORT" in hex, fields[3] the state (08 = CLOSE_WAIT)
                if fields[3] == "08" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    count += 1
    return count
