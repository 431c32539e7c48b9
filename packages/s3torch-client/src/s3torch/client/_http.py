"""A minimal HTTP/1.1 client for the data path: keep-alive sockets, one request at a time each.

GETs of objects and parts and part uploads are the requests a training job sends by the
thousand. Through urllib3 and http.client each costs about 0.2 ms of CPU in request building and
``email``-based header parsing before a byte of the body moves; here a request is one formatted
string and one ``sendall``, the response head is split by hand, and bodies are read with
``recv_into`` straight into the caller's memory. It speaks only what S3 needs: one request per
connection at a time, bodies framed by ``Content-Length``, chunking or the end of the
connection, no redirects, no compression.

It follows http.client and urllib3 where they are right: interim ``1xx`` responses are skipped,
a connection is pooled only after its response was read to the end of its framing and only when
the server keeps it open (HTTP/1.1 without ``Connection: close``), a body without length is read
to EOF, idle connections are checked with ``poll`` (``_http_wait``), header values with CR or
LF are refused. Where they fall short it does more: ``103 Early Hints`` is skipped too (http.client
skips only ``100``), large bodies are sent with ``Expect: 100-continue`` and an answer that comes
before or during the upload (a 403, say) is read and returned instead of a broken pipe, and a
body delivered slower than a minimum rate is cut (``BodyStalledError``).

Proxies and client certificates are not handled here: the transport sends through botocore's
urllib3 pool when the endpoint has a proxy or a client certificate is configured.
"""

from __future__ import annotations

import socket
import ssl
import sys
import threading
from time import monotonic
from typing import Any

from ._http_connection import RECV_BYTES, Connection, Headers, HTTPError

#: Bodies from this size on are sent with ``Expect: 100-continue`` (botocore's threshold too).
EXPECT_CONTINUE_BYTES = 1024 * 1024
#: How long to wait for ``100 Continue`` before sending the body anyway (curl's and botocore's
#: wait: servers that ignore ``Expect`` cost this once per request).
CONTINUE_WAIT_SECONDS = 1.0
#: Large bodies go out in slices of this size, checking between them for an early answer.
_SEND_SLICE_BYTES = 1024 * 1024
_UNTIL_EOF = sys.maxsize  # the "remaining" of a body framed by the end of the connection


class BodyStalledError(HTTPError):
    """A response body arrived slower than the configured minimum rate (retryable: a resume or a
    retry goes to a new connection)."""


class StallLimit:
    """A body must deliver at least ``min_rate`` bytes/s, measured over ``window`` seconds of
    waiting for it (time the consumer spends elsewhere does not count); ``min_rate=0``: no limit."""

    __slots__ = ("min_bytes", "window")

    def __init__(self, window: float, min_rate: int) -> None:
        self.window = window
        self.min_bytes = min_rate * window


class Body:
    """A response body on its connection. ``readinto`` fills the caller's buffer from the socket
    (fewer bytes only at the end of the body, or when the connection is cut: the bytes that
    arrived, and the error on the next call); ``release_conn`` hands a fully read connection
    back to the pool; ``close`` drops it.

    Framing is ``Content-Length``, chunked, or (no length: HTTP/1.0, ``Connection: close`` or a
    bare HTTP/1.1 response, as http.client reads them) the end of the connection. A body that
    ends before its length raises ``HTTPError``; bytes beyond it keep the connection out of the
    pool."""

    __slots__ = (
        "_chunked",
        "_connection",
        "_cut",
        "_keep_alive",
        "_pool",
        "_remaining",
        "_stall",
        "_window_bytes",
        "_window_waited",
    )

    def __init__(
        self, pool: ConnectionPool, connection: Connection, length: int | None, keep_alive: bool, stall: StallLimit
    ) -> None:
        self._pool = pool
        self._connection: Connection | None = connection
        self._chunked = length is None
        self._remaining = 0 if length is None else length
        self._keep_alive = keep_alive and length != _UNTIL_EOF
        self._cut: OSError | None = None  # a cut noticed after some bytes: raised by the next read
        self._stall = stall
        self._window_waited = 0.0  # seconds spent waiting for this body in the current window
        self._window_bytes = 0  # bytes received in the current window
        if self._chunked:
            self._next_chunk()

    def _next_chunk(self) -> None:
        assert self._connection is not None
        line = self._connection.read_line()
        try:
            self._remaining = int(line.split(b";", 1)[0], 16)
        except ValueError:
            raise HTTPError(f"malformed chunk size {line[:40]!r}") from None
        if self._remaining < 0:
            raise HTTPError(f"malformed chunk size {line[:40]!r}")
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
        clock = monotonic()
        while filled < wanted and self._remaining:
            try:
                count = connection.recv_into(view[filled : filled + min(wanted - filled, self._remaining)])
                if count == 0:
                    if self._remaining == _UNTIL_EOF:  # framed by the end of the connection
                        self._remaining = 0
                        break
                    raise HTTPError(f"connection closed with {self._remaining} bytes of the body missing")
                filled += count
                if self._remaining != _UNTIL_EOF:
                    self._remaining -= count
                now = monotonic()
                self._window_waited += now - clock
                self._window_bytes += count
                clock = now
                if self._window_waited >= self._stall.window:
                    self._check_rate()
                if self._remaining == 0 and self._chunked:
                    if connection.read_line():
                        raise HTTPError("chunk not followed by CRLF")
                    self._next_chunk()
            except OSError as error:
                self.close()
                if not filled:
                    raise
                # Return what did arrive, so that a resume starts after it; report the cut next.
                self._cut = error
                return filled
        return filled

    def _check_rate(self) -> None:
        if self._window_bytes < self._stall.min_bytes:
            raise BodyStalledError(
                f"response body stalled: {self._window_bytes} bytes in {self._window_waited:.1f} s, less than"
                f" {self._stall.min_bytes / self._stall.window:.0f} bytes/s (stall_min_rate)"
            )
        self._window_waited = 0.0
        self._window_bytes = 0

    def read_bounded(self, limit: int) -> bytes:
        """The body, or its first ``limit`` bytes when it is longer: the rest is not read, and
        ``release_conn`` then closes the connection instead of buffering what is left."""
        block = bytearray(limit)
        view = memoryview(block)
        filled = 0
        while filled < limit:
            count = self.readinto(view[filled:])
            if count == 0:
                break
            filled += count
        return bytes(view[:filled])

    def release_conn(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if self._remaining or self._chunked or not self._keep_alive or connection.buffer:
            connection.close()  # not at the end of its framing, or more bytes than it declared
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


def _request_head(method: str, target: str, headers: dict[str, str]) -> bytes:
    head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    # One count each instead of a scan per value: a CR or LF inside a value would add a line.
    lines = len(headers) + 1
    if head.count("\n") != lines or head.count("\r") != lines:
        for name, value in headers.items():
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
                raise ValueError(f"refusing to send the HTTP header {name!r}: its value contains CR or LF")
        raise ValueError(f"refusing to send the request target {target[:200]!r}: it contains CR or LF")
    return (head + "\r\n").encode("latin-1")


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
        stall_window: float = 30.0,
        stall_min_rate: int = 0,
    ) -> None:
        self._address = (host, port)
        self._host = host
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._ssl_context = ssl_context if scheme == "https" else None
        self._max_idle = max_idle
        self._stall = StallLimit(stall_window, stall_min_rate)
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
        """Send one request and read the final response head. A reused connection the server had
        closed is replaced once, transparently; other failures raise ``OSError``. A header value
        with CR or LF raises ``ValueError`` before anything is sent."""
        view = None if body is None else memoryview(body).cast("B")
        expect = view is not None and len(view) >= EXPECT_CONTINUE_BYTES
        payload = _request_head(method, target, {**headers, "Expect": "100-continue"} if expect else headers)
        fresh = False  # after a failure on a reused connection: one more try, on a new one
        while True:
            connection, reused = (self._connect(), False) if fresh else self._get()
            try:
                answer = None
                if view is not None and len(view) <= RECV_BYTES:
                    connection.sock.sendall(payload + view)
                else:
                    connection.sock.sendall(payload)
                    if view is not None:
                        answer = self._send_body(connection, view, expect)
                early = answer is not None
                version, status, response_headers = answer or connection.read_head()
            except TimeoutError:
                connection.close()  # a slow server, not a stale connection: the caller's retries decide
                raise
            except OSError:
                connection.close()
                if reused:
                    fresh = True
                    continue  # the server dropped an idle connection: try a fresh one
                raise
            break
        # An answer before the whole body went out leaves the connection mid-request: never reuse it.
        keep_alive = (
            not early and version == "HTTP/1.1" and "close" not in response_headers.get("connection", "").lower()
        )
        length: int | None
        if method == "HEAD" or status in (204, 304):
            length = 0
        elif "chunked" in response_headers.get("transfer-encoding", "").lower():
            length = None
        else:
            declared = response_headers.get("content-length")
            if declared is None:
                length = _UNTIL_EOF
            elif declared.isdigit():
                length = int(declared)
            else:
                connection.close()
                raise HTTPError(f"response with an unusable Content-Length ({declared[:40]!r})")
        body = Body(self, connection, length, keep_alive, self._stall)
        return Response(status, response_headers, body, 2 if fresh else 1)

    @staticmethod
    def _send_body(connection: Connection, view: memoryview, expect: bool) -> tuple[str, int, Headers] | None:
        """Send a large body. Returns the final answer's head when the server answered before all
        of the body was sent (``Expect`` refused, or an error mid-upload); else None."""
        if expect:
            deadline = monotonic() + CONTINUE_WAIT_SECONDS
            while connection.readable(max(0.0, deadline - monotonic())):
                version, status, headers = connection.read_one_head()
                if status >= 200:
                    return version, status, headers  # refused before the body
                if status == 100:
                    break
                # another interim answer (103 Early Hints): keep waiting for 100 or the final one
        for offset in range(0, len(view), _SEND_SLICE_BYTES):
            # Interim answers may keep coming (werkzeug sends two 100s); a final one mid-upload
            # is an error, surely: stop sending and read it.
            while offset and connection.readable(0):
                version, status, headers = connection.read_one_head()
                if status >= 200:
                    return version, status, headers
            try:
                connection.sock.sendall(view[offset : offset + _SEND_SLICE_BYTES])
            except OSError as send_error:
                # A server that answered and closed (403 before the body) resets the upload: its
                # answer may be waiting. If it is not, the send error stands.
                if not connection.readable(0):
                    raise
                try:
                    return connection.read_head()
                except OSError:
                    raise send_error from None
        return None

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()
