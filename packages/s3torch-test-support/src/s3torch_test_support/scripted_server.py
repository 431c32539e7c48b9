"""A raw-socket HTTP/1.1 server on 127.0.0.1 whose answers each test scripts byte for byte.

The fault proxy (``fault_proxy.py``) breaks a real S3 server's answers; this server answers
what no well-behaved S3 server would, so a test can show the client refuses it: interim
``1xx`` responses, ``200`` to a ranged GET, odd ``Content-Range`` values, bodies longer or
shorter than their framing, ``HTTP/1.0``, early answers to uploads. A test passes a handler
that is called with each request's ``Exchange`` and writes the answer itself; ``ObjectStore``
builds S3-like GET/HEAD/PUT answers the handler can send as they are or bend.
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

from .local_tcp import ConnectionClosed, LocalTCPServer, read_exact, read_request_head


@dataclass
class Request:
    """One request head as received. Header names are lower-cased."""

    method: str
    target: str
    version: str
    headers: dict[str, str]
    connection: int  # serial number of the connection it came on (0, 1, ...)
    body: bytes | None = None  # once the handler (or the server) read it

    @property
    def path(self) -> str:
        return unquote(urlsplit(self.target).path)

    @property
    def range(self) -> tuple[int, int | None] | None:
        """``Range: bytes=a-b`` as (a, b) (b inclusive, None when open), or None."""
        value = self.headers.get("range")
        if not value or not value.startswith("bytes="):
            return None
        first, _, last = value[6:].partition("-")
        return int(first), int(last) if last else None


class Exchange:
    """One request on its connection: read the body (or not), send any bytes, close."""

    def __init__(self, server: ScriptedServer, sock: socket.socket, stream: BinaryIO, request: Request) -> None:
        self.server = server
        self.request = request
        self._sock = sock
        self._stream = stream
        self.body: bytes | None = None  # set once read
        self.closed = False

    def read_body(self) -> bytes:
        """The request body, by its Content-Length (chunked request bodies are not used by S3
        clients). A client that sent ``Expect: 100-continue`` is told to go on first, as a real
        server does when it reads the body; ``read_exact`` does not."""
        if self.body is None:
            if self.request.headers.get("expect", "").lower() == "100-continue":
                self.send(b"HTTP/1.1 100 Continue\r\n\r\n")
            length = int(self.request.headers.get("content-length", "0"))
            self.body = self.request.body = read_exact(self._stream, length)
        return self.body

    def read_exact(self, count: int) -> bytes:
        """``count`` raw bytes from the connection: part of a body, for a handler that answers
        before the client has sent all of it."""
        return read_exact(self._stream, count)

    def send(self, data: bytes) -> None:
        self._sock.sendall(data)

    def trickle(self, data: bytes, interval: float) -> bool:
        """Send ``data`` one byte every ``interval`` seconds (a server that stalls without going
        silent). False when the client went away or the server stopped before the end."""
        for index in range(len(data)):
            if self.server.stopping.wait(interval):
                return False
            try:
                self._sock.sendall(data[index : index + 1])
            except OSError:
                return False
        return True

    def close(self) -> None:
        """Close the connection after what was sent (the client sees EOF)."""
        self.closed = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)


Handler = Callable[[Exchange], None]


class ScriptedServer(LocalTCPServer[Request]):
    """Serves each request by calling ``handler``; records requests (``requests``) and counts
    connections (``connections``).

    Use as a context manager. ``endpoint`` is ``http://127.0.0.1:<port>``.
    """

    def __init__(self, handler: Handler) -> None:
        super().__init__("scripted")
        self.handler = handler
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def serve_connection(self, sock: socket.socket, number: int) -> None:
        stream = sock.makefile("rb")
        try:
            while not self.stopping.is_set():
                head = read_request_head(stream)
                if head is None:
                    return
                first, fields = head
                method, target, version = first.split(" ", 2)
                request = Request(method, target, version, {name.lower(): value for name, value in fields}, number)
                with self._lock:
                    self._record(request)
                exchange = Exchange(self, sock, stream, request)
                self.handler(exchange)
                if exchange.closed:
                    return
                if exchange.body is None and request.headers.get("expect", "").lower() != "100-continue":
                    exchange.read_body()  # the handler ignored the body: keep the connection in step
        except (OSError, ValueError, ConnectionClosed):
            return
        finally:
            with contextlib.suppress(OSError):
                stream.close()


def response(
    status: int,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    *,
    version: str = "HTTP/1.1",
    length: int | None = None,
    reason: str = "Scripted",
) -> bytes:
    """One response's bytes. ``Content-Length`` is ``len(body)``, or ``length`` when given (a
    lie, for framing tests); ``length=-1`` leaves it out. Chunked bodies: see ``chunked``."""
    fields = dict(headers or {})
    if length != -1 and "Transfer-Encoding" not in fields:
        fields.setdefault("Content-Length", str(len(body) if length is None else length))
    head = f"{version} {status} {reason}\r\n" + "".join(f"{name}: {value}\r\n" for name, value in fields.items())
    return head.encode("latin-1") + b"\r\n" + body


def chunked(body: bytes, chunk_size: int = 7_000) -> bytes:
    """``body`` in chunked transfer coding (pass with ``Transfer-Encoding: chunked``)."""
    out = bytearray()
    for offset in range(0, len(body), chunk_size):
        piece = body[offset : offset + chunk_size]
        out += f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    return bytes(out + b"0\r\n\r\n")


def s3_error(status: int, code: str, *, close: bool = False, extra: dict[str, str] | None = None) -> bytes:
    """An S3 error response with an XML body naming ``code`` (``extra``: more headers)."""
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
        "<Message>scripted</Message><RequestId>scripted-request</RequestId></Error>"
    ).encode()
    headers = {"Content-Type": "application/xml", "x-amz-request-id": "scripted-request", **(extra or {})}
    if close:
        headers["Connection"] = "close"
    return response(status, body, headers)


class ObjectStore:
    """Objects by path (``/bucket/key``) with S3's GET/HEAD/PUT answers, for handlers to send or bend."""

    def __init__(self, objects: dict[str, bytes] | None = None) -> None:
        self.objects: dict[str, bytes] = dict(objects or {})

    @staticmethod
    def etag(data: bytes) -> str:
        return f'"{hashlib.md5(data).hexdigest()}"'

    def answer(self, request: Request, body: bytes | None = None) -> bytes:
        """What a correct S3 sends for ``request`` (``body``: the PUT body the handler read)."""
        if request.method == "PUT":
            self.objects[request.path] = body or b""
            return response(200, b"", {"ETag": self.etag(body or b"")})
        data = self.objects.get(request.path)
        if data is None:
            return s3_error(404, "NoSuchKey")
        headers = {"ETag": self.etag(data), "Accept-Ranges": "bytes", "Last-Modified": "Mon, 07 Dec 2026 00:00:00 GMT"}
        wanted = request.range
        if wanted is None:
            return response(200, b"" if request.method == "HEAD" else data, headers, length=len(data))
        first, last = wanted
        if first >= len(data):
            headers["Content-Range"] = f"bytes */{len(data)}"
            return s3_error(416, "InvalidRange", extra={"Content-Range": headers["Content-Range"]})
        last = len(data) - 1 if last is None else min(last, len(data) - 1)
        headers["Content-Range"] = f"bytes {first}-{last}/{len(data)}"
        piece = data[first : last + 1]
        return response(206, b"" if request.method == "HEAD" else piece, headers, length=len(piece))

    def serve(self, exchange: Exchange) -> None:
        """The plain handler: answer every request correctly."""
        body = exchange.read_body() if exchange.request.method == "PUT" else None
        exchange.send(self.answer(exchange.request, body))
