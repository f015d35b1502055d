"""A TCP proxy in front of a real server that can lose an answer on purpose.

The server-backed stores must report a write whose answer was lost as
"outcome unknown", and must not resend it.  To test that for real, the store
talks to the server through this proxy; :meth:`CuttingProxy.cut_next_answer`
arms it so that the next bytes the *server* sends on any connection are
dropped and both sides of that connection are closed (an HTTP ``100 Continue``
is let through: it comes before the request body, not after the request).  The server has then
received, and carried out, the request; the client sees its connection die
while waiting for the answer: exactly a network failure at the worst moment.

Each accepted connection gets two pump threads; everything is on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import socket
import threading


class CuttingProxy:
    """Forward 127.0.0.1:``port`` to ``upstream``; see the module docstring."""

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = int(self.listener.getsockname()[1])
        self._armed = threading.Event()
        self._cut_done = threading.Event()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._closed = False
        self.cuts = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def cut_next_answer(self) -> None:
        """Drop the next server-to-client bytes and close that connection."""
        self._cut_done.clear()
        self._armed.set()

    def wait_cut(self, timeout: float = 10.0) -> bool:
        return self._cut_done.wait(timeout)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            sockets = list(self._sockets)
        # shutdown() wakes the thread blocked in accept(); close() alone would
        # leave the socket listening until that accept() returned.
        _close(self.listener)
        for sock in sockets:
            _close(sock)

    def __enter__(self) -> CuttingProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals --------------------------------------------------------

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=10)
                server.settimeout(None)
            except OSError:
                _close(client)
                continue
            with self._lock:
                if self._closed:
                    _close(client)
                    _close(server)
                    return
                self._sockets.update((client, server))
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, from_server: bool) -> None:
        cut = False
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                # An HTTP "100 Continue" only invites the client to send its
                # body: pass it on, and lose the real answer that follows.
                # Under load the interim answer and the real one can arrive in
                # the same read: pass the interim part on and cut the rest.
                # (Some servers send the interim answer twice.)
                interim = b""
                while data.startswith(b"HTTP/1.1 100 ") and b"\r\n\r\n" in data:
                    end = data.index(b"\r\n\r\n") + 4
                    interim, data = interim + data[:end], data[end:]
                if from_server and self._armed.is_set() and data:
                    with self._lock:
                        if self._armed.is_set():
                            self._armed.clear()
                            self.cuts += 1
                            cut = True
                            if interim:
                                sink.sendall(interim)
                            break  # drop `data`; close both sides below
                if interim:
                    sink.sendall(interim)
                if not data:
                    continue
                sink.sendall(data)
        except OSError:
            pass
        finally:
            _close(source)
            _close(sink)
            if cut:
                self._cut_done.set()


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
