"""moto's S3 server for the tests, in its own process: ``python tests/moto_server.py``.

It prints ``port N`` once it listens on 127.0.0.1:N, and exits when its
standard input closes (so it never outlives the test session that started it).

This is moto's ``ThreadedMotoServer`` (the same WSGI application, request
handler and threaded werkzeug server) with one addition: a lock around each
request.  moto checks ``If-Match`` / ``If-None-Match`` and then writes, in two
steps, so two threads of its server can both pass the check for the same
object (rarely: the interpreter must switch threads between the two steps,
but nothing prevents it).  Amazon S3 performs a conditional write atomically
(the losers get 412 Precondition Failed or 409 ConditionalRequestConflict).
Serialising the requests gives the test server the atomicity the real
service has, so that a lost increment in the contention test can only be
the store's fault.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server


class Serialised:
    """A WSGI middleware that runs one request at a time, body included."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        with self.lock:
            return list(self.app(environ, start_response))


class QuietHandler(MotoRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


def main() -> None:
    app = Serialised(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    print(f"port {server.server_address[1]}", flush=True)
    sys.stdin.read()  # until the parent closes our stdin or dies
    server.shutdown()


if __name__ == "__main__":
    main()
