"""A minimal HTTP/1.1 client for the data path: keep-alive sockets, one request at a time each.

GETs of objects and parts and part uploads are the requests a training job sends by the
thousand. Through urllib3 and http.client each costs about 0.2 ms of CPU in request building and
``email``-based header parsing before a byte of the body moves; here a request is one formatted
string and one ``sendall``, the response head is split by hand, and bodies are read with
``recv_into`` straight into the caller's memory. It speaks only what S3 needs: one request per
connection at a time, ``Content-Length`` or chunked bodies, no redirects, no compression.

Proxies and client certificates are not handled here: the transport sends through botocore's
urllib3 pool when the endpoint has a proxy or a client certificate is configured.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
from typing import Any

_MAX_HEAD_BYTES = 64 * 1024
_RECV_BYTES = 64 * 1024


class HTTPError(OSError):
    """The peer broke the protocol or the connection (retryable, like a reset)."""


class Headers(dict[str, str]):
    """Response headers; names are stored lower-case and looked up case-insensitively."""

    def get(self, name: str, default: Any = None) -> Any:
        return dict.get(self, name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return dict.__getitem__(self, name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and dict.__contains__(self, name.lower())


class Connection:
    """One socket, with the bytes received beyond what has been consumed."""

    __slots__ = ("buffer", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def is_dropped(self) -> bool:
        # An idle keep-alive socket that is readable has been closed by the server (or has
        # junk on it): either way it must not carry a request.
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def read_head(self) -> tuple[int, Headers]:
        data = self.buffer
        end = data.find(b"\r\n\r\n")
        while end < 0:
            if len(data) > _MAX_HEAD_BYTES:
                raise HTTPError("response head larger than 64 KiB")
            more = self.sock.recv(_RECV_BYTES)
            if not more:
                raise HTTPError("connection closed before a response")
            data += more
            end = data.find(b"\r\n\r\n", max(0, len(data) - len(more) - 3))
        self.buffer = data[end + 4 :]
        lines = data[:end].decode("latin-1").split("\r\n")
        status_line = lines[0].split(" ", 2)
        if len(status_line) < 2 or not status_line[0].startswith("HTTP/1.") or not status_line[1].isdigit():
            raise HTTPError(f"malformed status line {lines[0]!r}")
        headers = Headers()
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            value = value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        return int(status_line[1]), headers

    def read_line(self) -> bytes:
        data = self.buffer
        end = data.find(b"\r\n")
        while end < 0:
            if len(data) > _MAX_HEAD_BYTES:
                raise HTTPError("chunk header line too long")
            more = self.sock.recv(_RECV_BYTES)
            if not more:
                raise HTTPError("connection closed inside a chunked body")
            data += more
            end = data.find(b"\r\n")
        self.buffer = data[end + 2 :]
        return data[:end]

    def recv_into(self, view: memoryview) -> int:
        """Up to ``len(view)`` bytes, buffered ones first; 0 when the peer closed."""
        if self.buffer:
            count = min(len(view), len(self.buffer))
            view[:count] = self.buffer[:count]
            self.buffer = self.buffer[count:]
            return count
        return self.sock.recv_into(view)


class Body:
    """A response body on its connection. ``readinto`` fills the caller's buffer from the socket
    (fewer bytes only at the end of the body, or when the connection is cut: the bytes that
    arrived, and the error on the next call); ``release_conn`` hands a fully read connection
    back to the pool; ``close`` drops it."""

    __slots__ = ("_chunked", "_connection", "_cut", "_keep_alive", "_pool", "_remaining")

    def __init__(self, pool: ConnectionPool, connection: Connection, length: int | None, keep_alive: bool) -> None:
        self._pool = pool
        self._connection: Connection | None = connection
        self._chunked = length is None
        self._remaining = 0 if length is None else length
        self._keep_alive = keep_alive
        self._cut: OSError | None = None  # a cut noticed after some bytes: raised by the next read
        if self._chunked:
            self._next_chunk()

    def _next_chunk(self) -> None:
        assert self._connection is not None
        line = self._connection.read_line()
        try:
            self._remaining = int(line.split(b";", 1)[0], 16)
        except ValueError:
            raise HTTPError(f"malformed chunk size {line[:40]!r}") from None
        if self._remaining == 0:
            while self._connection.read_line():  # trailers, up to the empty line
                pass
            self._chunked = False

    def readinto(self, view: memoryview) -> int:
        if self._cut is not None:
            raise self._cut
        connection = self._connection
        if connection is None:
            return 0
        filled = 0
        wanted = len(view)
        while filled < wanted and self._remaining:
            try:
                count = connection.recv_into(view[filled : filled + min(wanted - filled, self._remaining)])
                if count == 0:
                    raise HTTPError(f"connection closed with {self._remaining} bytes of the body missing")
            except OSError as error:
                self.close()
                if not filled:
                    raise
                # Return what did arrive, so that a resume starts after it; report the cut next.
                self._cut = error
                return filled
            filled += count
            self._remaining -= count
            if self._remaining == 0 and self._chunked:
                if connection.read_line():
                    raise HTTPError("chunk not followed by CRLF")
                self._next_chunk()
        return filled

    def read(self) -> bytes:
        parts: list[bytes] = []
        while True:
            block = bytearray(max(self._remaining, 1) if self._remaining else _RECV_BYTES)
            count = self.readinto(memoryview(block))
            if count == 0:
                return b"".join(parts)
            parts.append(bytes(block[:count]))

    def release_conn(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if self._remaining or self._chunked or not self._keep_alive or connection.buffer:
            connection.close()
        else:
            self._pool.put(connection)

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()


class Response:
    __slots__ = ("body", "headers", "sends", "status")

    def __init__(self, status: int, headers: Headers, body: Body, sends: int = 1) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        # How many times the request went out: 2 after a transparent retry on a new connection,
        # when the first sending may have reached the server (its answer was lost).
        self.sends = sends


class ConnectionPool:
    """Keep-alive connections to one ``scheme://host:port``; idle ones are reused last-in first-out
    and at most ``max_idle`` are kept. Thread-safe; not to be shared across ``fork``."""

    def __init__(
        self,
        scheme: str,
        host: str,
        port: int,
        *,
        connect_timeout: float,
        read_timeout: float,
        ssl_context: ssl.SSLContext | None,
        max_idle: int,
    ) -> None:
        self._address = (host, port)
        self._host = host
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._ssl_context = ssl_context if scheme == "https" else None
        self._max_idle = max_idle
        self._idle: list[Connection] = []
        self._lock = threading.Lock()

    def _connect(self) -> Connection:
        sock = socket.create_connection(self._address, timeout=self._connect_timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            if self._ssl_context is not None:
                sock = self._ssl_context.wrap_socket(sock, server_hostname=self._host)
            sock.settimeout(self._read_timeout)
        except BaseException:
            sock.close()
            raise
        return Connection(sock)

    def _get(self) -> tuple[Connection, bool]:
        while True:
            with self._lock:
                connection = self._idle.pop() if self._idle else None
            if connection is None:
                return self._connect(), False
            if not connection.is_dropped():
                return connection, True
            connection.close()

    def put(self, connection: Connection) -> None:
        with self._lock:
            if len(self._idle) < self._max_idle:
                self._idle.append(connection)
                return
        connection.close()

    def request(self, method: str, target: str, headers: dict[str, str], body: Any = None) -> Response:
        """Send one request and read the response head. A reused connection the server had
        closed is replaced once, transparently; other failures raise ``OSError``."""
        head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        payload = (head + "\r\n").encode("latin-1")
        fresh = False  # after a failure on a reused connection: one more try, on a new one
        while True:
            connection, reused = (self._connect(), False) if fresh else self._get()
            try:
                if body is not None and len(body) <= _RECV_BYTES:
                    connection.sock.sendall(payload + bytes(body))
                else:
                    connection.sock.sendall(payload)
                    if body is not None:
                        connection.sock.sendall(body)
                status, response_headers = connection.read_head()
            except TimeoutError:
                connection.close()  # a slow server, not a stale connection: the caller's retries decide
                raise
            except (OSError, HTTPError):
                connection.close()
                if reused:
                    fresh = True
                    continue  # the server dropped an idle connection: try a fresh one
                raise
            break
        keep_alive = response_headers.get("connection", "").lower() != "close"
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            length: int | None = 0
        elif "chunked" in response_headers.get("transfer-encoding", "").lower():
            length = None
        else:
            declared = response_headers.get("content-length")
            if declared is None or not declared.isdigit():
                connection.close()
                raise HTTPError(f"response without a usable Content-Length ({declared!r})")
            length = int(declared)
        return Response(status, response_headers, Body(self, connection, length, keep_alive), 2 if fresh else 1)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()
