"""The plumbing of the tests' raw-socket servers (the scripted server, the fault proxy): a
listener on 127.0.0.1 with a thread per connection, and the reading of HTTP/1.1 request heads.

``LocalTCPServer`` records the requests a subclass reads (``_record``) and lets a test wait for
them (``wait_for_requests``: a client may be done with a request, after a timeout say, before
the server's thread has read it). It owns every socket it accepted (and any a subclass ``track``s, such as a
proxy's upstream connections): ``stop()`` closes the listener and all of them, so a handler
blocked in a read returns, and joins the threads. Heads are read from a buffered file of the
socket, one line at a time, so what follows a head (a body, the next request) stays buffered for
the caller.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from typing import Any, BinaryIO, Generic, TypeVar

__all__ = ["ConnectionClosed", "LocalTCPServer", "close_socket", "read_exact", "read_request_head"]

_Server = TypeVar("_Server", bound="LocalTCPServer[Any]")
_Request = TypeVar("_Request")
#: How long ``stop()`` waits for each thread.
_JOIN_SECONDS = 10.0


class ConnectionClosed(Exception):
    """The peer closed the connection in the middle of a head or a body."""


def read_request_head(stream: BinaryIO) -> tuple[str, list[tuple[str, str]]] | None:
    """The next head on ``stream``: its first line and its header fields in order (names as sent,
    values stripped); None when the peer closed before a new head began."""
    first = stream.readline()
    if not first:
        return None
    if not first.endswith(b"\r\n"):
        raise ConnectionClosed
    headers: list[tuple[str, str]] = []
    while True:
        line = stream.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionClosed
        if line == b"\r\n":
            return first.decode("latin-1").rstrip("\r\n"), headers
        name, _, value = line.decode("latin-1").partition(":")
        headers.append((name.strip(), value.strip()))


def read_exact(stream: BinaryIO, count: int) -> bytes:
    """Exactly ``count`` bytes of ``stream``, or ``ConnectionClosed``."""
    data = stream.read(count)
    if len(data) != count:
        raise ConnectionClosed
    return data


def close_socket(sock: socket.socket) -> None:
    """Shut down and close ``sock``, whatever state it is in."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


class LocalTCPServer(Generic[_Request]):
    """A listener on a free port of 127.0.0.1 that serves each connection on a thread of its own
    by calling ``serve_connection(sock, number)`` (connections are numbered 0, 1, ...). The
    connection is closed when that returns. ``start()`` starts accepting; ``stop()`` ends it all.
    ``requests`` are what the subclass recorded, in the order its threads read them."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.connections = 0  # accepted so far
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._recorded = threading.Condition(self._lock)  # notified as each request is recorded
        self._requests: list[_Request] = []
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, name=f"{name}-accept", daemon=True)

    def serve_connection(self, sock: socket.socket, number: int) -> None:
        raise NotImplementedError

    @property
    def requests(self) -> list[_Request]:
        with self._lock:
            return list(self._requests)

    def wait_for_requests(
        self, count: int, match: Callable[[_Request], bool] | None = None, timeout: float = 30.0
    ) -> list[_Request]:
        """The recorded requests (those that ``match``), once there are at least ``count`` of
        them; AssertionError after ``timeout`` seconds."""

        def matching() -> list[_Request]:
            return self._requests if match is None else [r for r in self._requests if match(r)]

        with self._recorded:
            if not self._recorded.wait_for(lambda: len(matching()) >= count, timeout):
                raise AssertionError(f"{len(matching())} requests arrived in {timeout} s, expected {count}")
            return list(matching())

    def _record(self, request: _Request) -> None:
        """Record ``request``; the caller holds ``self._lock`` (``self._recorded``)."""
        self._requests.append(request)
        self._recorded.notify_all()

    def start(self: _Server) -> _Server:
        self._acceptor.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            close_socket(sock)
        if self._acceptor.is_alive():
            self._acceptor.join(timeout=_JOIN_SECONDS)
        for thread in list(self._threads):
            thread.join(timeout=_JOIN_SECONDS)

    def track(self, sock: socket.socket) -> None:
        """Have ``stop()`` close ``sock`` too (an outgoing connection of a handler)."""
        with self._lock:
            self._sockets.add(sock)

    def forget(self, sock: socket.socket) -> None:
        """Close ``sock`` and stop tracking it."""
        close_socket(sock)
        with self._lock:
            self._sockets.discard(sock)

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                number = self.connections
                self.connections += 1
                self._sockets.add(sock)
                self._threads = [thread for thread in self._threads if thread.is_alive()]
            thread = threading.Thread(target=self._run, args=(sock, number), name=f"{self.name}-conn", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _run(self, sock: socket.socket, number: int) -> None:
        try:
            self.serve_connection(sock, number)
        finally:
            self.forget(sock)
