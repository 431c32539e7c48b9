"""One socket speaking HTTP/1.1, client side: the bytes received beyond what was consumed, and
the reading of response heads (interim ``1xx`` ones included), chunk lines and body bytes from
them. What a body's framing means, and when a connection may be reused, is ``_http``'s job."""

from __future__ import annotations

import contextlib
import socket
from typing import Any

from ._http_wait import wait_for_read

_MAX_HEAD_BYTES = 64 * 1024
RECV_BYTES = 64 * 1024


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
            return bool(self.buffer) or wait_for_read(self.sock, 0)
        except (OSError, ValueError):
            return True

    def readable(self, timeout: float) -> bool:
        return bool(self.buffer) or wait_for_read(self.sock, timeout)

    def read_head(self) -> tuple[str, int, Headers]:
        """The final response's (version, status, headers); interim ``1xx`` ones are skipped."""
        while True:
            version, status, headers = self.read_one_head()
            if status >= 200:
                return version, status, headers

    def read_one_head(self) -> tuple[str, int, Headers]:
        """The next response head, interim (``1xx``) or final; ``101`` raises (we never ask for
        an upgrade: the connection would speak something else from then on)."""
        head = self._read_through(b"\r\n\r\n", "response head larger than 64 KiB", "before a response")
        lines = head.decode("latin-1").split("\r\n")
        status_line = lines[0].split(" ", 2)
        if (
            len(status_line) < 2
            or status_line[0] not in ("HTTP/1.1", "HTTP/1.0")
            or len(status_line[1]) != 3
            or not status_line[1].isdigit()
        ):
            raise HTTPError(f"malformed status line {lines[0][:100]!r}")
        headers = Headers()
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            value = value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        status = int(status_line[1])
        if status == 101:
            raise HTTPError("unexpected 101 Switching Protocols")
        return status_line[0], status, headers

    def read_line(self) -> bytes:
        return self._read_through(b"\r\n", "chunk header line too long", "inside a chunked body")

    def _read_through(self, delimiter: bytes, too_long: str, closed_where: str) -> bytes:
        """The bytes before the next ``delimiter``, which is consumed too; receives more while it
        has not come, up to 64 KiB (``too_long`` says what was too long)."""
        data = self.buffer
        end = data.find(delimiter)
        while end < 0:
            if len(data) > _MAX_HEAD_BYTES:
                raise HTTPError(too_long)
            more = self.sock.recv(RECV_BYTES)
            if not more:
                raise HTTPError(f"connection closed {closed_where}")
            data += more
            # Only the new bytes, and the end of the old ones a delimiter may start in, are new.
            end = data.find(delimiter, max(0, len(data) - len(more) - len(delimiter) + 1))
        self.buffer = data[end + len(delimiter) :]
        return data[:end]

    def recv_into(self, view: memoryview) -> int:
        """Up to ``len(view)`` bytes, buffered ones first; 0 when the peer closed."""
        if self.buffer:
            count = min(len(view), len(self.buffer))
            view[:count] = self.buffer[:count]
            self.buffer = self.buffer[count:]
            return count
        return self.sock.recv_into(view)
