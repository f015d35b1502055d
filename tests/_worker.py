"""A persistent second interpreter for cross-process tests, and its client.

Run as a script (``python tests/_worker.py``) this is the *worker*: a loop that
reads requests from stdin and writes replies to stdout, one per request.
Imported, it provides :class:`WorkerClient`, which the session fixture in
``conftest.py`` uses to start one worker per test session.

Wire format: each message is a 4-byte big-endian length followed by a msgpack
map.  Requests carry an ``op`` (see ``_OPS``); replies carry ``ok`` and either
the result or ``phase`` + ``error`` (the remote traceback).  Traces travel as
lists of ``repr`` strings (``_driver.Trace``), so nothing is lost in transit.

Robustness rules:

* The worker's real stdout is kept for the protocol only: fd 1 is pointed at
  stderr, so a stray ``print`` (or a C-level write) cannot corrupt a reply.
* The worker exits when stdin closes, so it never outlives the test session.
* ``faulthandler`` is on: a segfault writes the Python stack to stderr, which
  the client keeps in a temporary file and quotes in :class:`WorkerCrashed`.
* Every request has a timeout; on timeout the worker is killed.  After a crash
  or a timeout the next request starts a fresh worker (``restarts`` counts).
"""

from __future__ import annotations

import os
import select
import signal
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from typing import Any

import msgpack

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import _driver  # noqa: E402

_HEADER = struct.Struct(">I")
DEFAULT_TIMEOUT = 60.0


def _pack(obj: Any) -> bytes:
    body = msgpack.packb(obj, use_bin_type=True)
    return _HEADER.pack(len(body)) + body


# --------------------------------------------------------------------------
# server side
# --------------------------------------------------------------------------


def _read_exact(fd: int, n: int) -> bytes | None:
    chunks = []
    while n:
        chunk = os.read(fd, n)
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _script_step(obj: Any, action: list[Any]) -> str:
    """Perform one scripted action on a generator/coroutine; describe the outcome."""
    op = action[0]
    try:
        if op == "send":
            value = obj.send(action[1])
        elif op == "throw":
            exc_type = {"ValueError": ValueError, "KeyError": KeyError}[action[1]]
            value = obj.throw(exc_type(*action[2]))
        elif op == "close":
            obj.close()
            return "closed"
        else:
            raise ValueError(f"unknown action {op!r}")
    except Exception as exc:
        return _driver.outcome_of(exc)
    return f"yield {value!r}"


def _op_ping(req: dict[str, Any]) -> dict[str, Any]:
    return {"pid": os.getpid(), "version": list(sys.version_info[:3]), "path": sys.path}


def _op_run(req: dict[str, Any]) -> dict[str, Any]:
    mod = _driver.import_from(req["dir"], req["module"])
    return {"trace": _driver.run_uninterrupted(mod, req["fn"], req["args"]).to_wire()}


def _op_resume(req: dict[str, Any]) -> dict[str, Any]:
    mod = _driver.import_from(req["dir"], req["module"])
    trace = _driver.resume(mod, req["blob"], req["start_step"], bool(req.get("migrate")))
    return {"trace": trace.to_wire()}


def _op_script(req: dict[str, Any]) -> dict[str, Any]:
    """Get an object (``loads(blob)``, or ``fn(*args)``), run ``actions``, maybe ``dumps``."""
    mod = _driver.import_from(req["dir"], req["module"])
    log = _driver.module_log(mod)
    log.clear()
    if req.get("blob") is not None:
        import corosnap

        obj = corosnap.loads(req["blob"])
    else:
        obj = getattr(mod, req["fn"])(*req["args"])
    results = [_script_step(obj, a) for a in req["actions"]]
    reply: dict[str, Any] = {"results": results, "log": [repr(x) for x in log]}
    if req.get("dump"):
        import corosnap

        reply["blob"] = corosnap.dumps(obj)
    log.clear()
    return reply


def _op_crash(req: dict[str, Any]) -> dict[str, Any]:
    os.kill(os.getpid(), req["signal"])
    time.sleep(5)  # a signal that does not kill: the client will time out
    return {}


def _op_exit(req: dict[str, Any]) -> dict[str, Any]:
    os._exit(req["code"])


def _op_sleep(req: dict[str, Any]) -> dict[str, Any]:
    time.sleep(req["seconds"])
    return {}


_OPS = {
    "ping": _op_ping,
    "run": _op_run,
    "resume": _op_resume,
    "script": _op_script,
    "crash": _op_crash,
    "exit": _op_exit,
    "sleep": _op_sleep,
}


def serve() -> None:
    import faulthandler

    faulthandler.enable(file=sys.stderr, all_threads=True)
    # keep the real stdout for replies; everything else written to fd 1 goes to stderr
    out_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    in_fd = os.dup(0)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    while True:
        header = _read_exact(in_fd, _HEADER.size)
        if header is None:
            return  # the test session is over
        body = _read_exact(in_fd, _HEADER.unpack(header)[0])
        if body is None:
            return
        req = msgpack.unpackb(body, raw=False)
        op = req.get("op")
        try:
            reply = {"ok": True, **_OPS[op](req)}
        except BaseException as exc:  # noqa: B036 - report everything, keep serving
            reply = {
                "ok": False,
                "phase": op,
                "exc_type": type(exc).__qualname__,
                "error": traceback.format_exc(),
            }
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                os.write(out_fd, _pack(reply))
                raise
        data = _pack(reply)
        while data:
            data = data[os.write(out_fd, data) :]


# --------------------------------------------------------------------------
# client side
# --------------------------------------------------------------------------


class WorkerError(AssertionError):
    """The worker ran the request and it raised: ``phase``, ``exc_type``, remote traceback."""

    def __init__(self, phase: str, exc_type: str, remote_tb: str) -> None:
        self.phase = phase
        self.exc_type = exc_type
        self.remote_traceback = remote_tb
        super().__init__(f"in the worker process, {phase!r} raised:\n{remote_tb}")


class WorkerCrashed(AssertionError):
    """The worker process died (or hung) while handling a request."""


class WorkerTimeout(WorkerCrashed):
    """The worker did not answer in time and was killed."""


def describe_returncode(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"killed by {name} (exit status {code})"
    return f"exited with status {code}"


class WorkerClient:
    """Owns one worker process; starts it on demand and again after it dies."""

    def __init__(
        self,
        python: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        env: dict[str, str] | None = None,
    ) -> None:
        self.python = python or sys.executable
        self.timeout = timeout
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self._stderr: Any = None
        self.starts = 0

    @property
    def restarts(self) -> int:
        return max(self.starts - 1, 0)

    # -- process management ------------------------------------------------
    def start(self) -> None:
        self.close()
        env = dict(os.environ if self.env is None else self.env)
        env["PYTHONFAULTHANDLER"] = "1"
        self._stderr = tempfile.TemporaryFile(prefix="corosnap-worker-", suffix=".stderr")
        self.proc = subprocess.Popen(
            [self.python, os.path.join(HERE, "_worker.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
            close_fds=True,
        )
        self.starts += 1

    def close(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            try:
                assert proc.stdin is not None
                proc.stdin.close()  # the worker exits on EOF
                proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def stderr_tail(self, limit: int = 4000) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0, os.SEEK_END)
        size = self._stderr.tell()
        self._stderr.seek(max(0, size - limit))
        return self._stderr.read().decode("utf-8", "replace")

    def _died(self, what: str, exc_cls: type[WorkerCrashed] = WorkerCrashed) -> WorkerCrashed:
        proc = self.proc
        assert proc is not None
        if exc_cls is WorkerTimeout:
            proc.kill()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            proc.kill()
            proc.wait()
        msg = (
            f"worker pid {proc.pid} {what}: {describe_returncode(proc.returncode)}\n"
            f"--- worker stderr (tail) ---\n{self.stderr_tail()}"
        )
        self.close()
        return exc_cls(msg)

    # -- requests ----------------------------------------------------------
    def request(self, op: str, timeout: float | None = None, **fields: Any) -> dict[str, Any]:
        """Send one request, wait for its reply; raise on crash, timeout or remote error."""
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        proc = self.proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        try:
            proc.stdin.write(_pack({"op": op, **fields}))
            proc.stdin.flush()
        except BrokenPipeError:
            raise self._died(f"was gone before request {op!r}") from None
        fd = proc.stdout.fileno()

        def read(n: int) -> bytes:
            buf = b""
            while len(buf) < n:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([fd], [], [], left)[0]:
                    raise self._died(f"gave no answer to {op!r} in time", WorkerTimeout)
                chunk = os.read(fd, n - len(buf))
                if not chunk:
                    raise self._died(f"died during {op!r}")
                buf += chunk
            return buf

        (length,) = _HEADER.unpack(read(_HEADER.size))
        reply: dict[str, Any] = msgpack.unpackb(read(length), raw=False)
        if not reply.get("ok"):
            raise WorkerError(reply["phase"], reply.get("exc_type", "?"), reply["error"])
        return reply

    def ping(self) -> dict[str, Any]:
        return self.request("ping")

    def run(self, directory: str, module: str, fn: str, args: Any) -> _driver.Trace:
        """Run ``module.fn(*args)`` uninterrupted in the worker."""
        reply = self.request("run", dir=directory, module=module, fn=fn, args=list(args))
        return _driver.Trace.from_wire(reply["trace"])

    def resume(self, directory: str, module: str, blob: bytes, start_step: int,
               migrate: bool = False) -> _driver.Trace:
        """``loads(blob)`` in the worker and drive it from ``start_step`` to the end
        (``migrate``: ``loads(blob, migrate=True)``)."""
        reply = self.request(
            "resume", dir=directory, module=module, blob=blob, start_step=start_step,
            migrate=migrate,
        )
        return _driver.Trace.from_wire(reply["trace"])

    def script(
        self,
        directory: str,
        module: str,
        actions: list[list[Any]],
        *,
        blob: bytes | None = None,
        fn: str | None = None,
        args: Any = (),
        dump: bool = False,
    ) -> dict[str, Any]:
        """Run ``actions`` (``["send", v]``, ``["throw", name, args]``, ``["close"]``)."""
        return self.request(
            "script",
            dir=directory,
            module=module,
            actions=actions,
            blob=blob,
            fn=fn,
            args=list(args),
            dump=dump,
        )


if __name__ == "__main__":
    serve()
