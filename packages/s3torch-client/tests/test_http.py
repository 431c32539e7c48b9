"""The data path's minimal HTTP/1.1 client, against a scripted server on 127.0.0.1: keep-alive
reuse, Content-Length and chunked bodies, cut connections, stale idle connections."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from s3torch.client._http import ConnectionPool, Headers, HTTPError


@dataclass
class Reply:
    data: bytes
    close: bool = False  # close the connection after sending ``data``


@dataclass
class ScriptedServer:
    """Answers the nth request it receives with ``replies[n]``; records requests and connections."""

    replies: list[Reply]
    requests: list[tuple[bytes, bytes]] = field(default_factory=list)
    connections: int = 0

    def __post_init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            thread = threading.Thread(target=self._serve, args=(sock,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket) -> None:
        with sock, sock.makefile("rb") as stream:
            while True:
                head = b""
                while not head.endswith(b"\r\n\r\n"):
                    line = stream.readline()
                    if not line:
                        return
                    head += line
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = stream.read(length)
                with self._lock:
                    self.requests.append((head, body))
                    reply = self.replies[len(self.requests) - 1]
                sock.sendall(reply.data)
                if reply.close:
                    sock.shutdown(socket.SHUT_RDWR)
                    return

    def stop(self) -> None:
        self._listener.close()
        for thread in self._threads:
            thread.join(timeout=10)


def ok(body: bytes, *extra: str) -> bytes:
    headers = "".join(f"{line}\r\n" for line in extra)
    return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{headers}\r\n".encode() + body


@pytest.fixture
def serve() -> Iterator[object]:
    servers: list[ScriptedServer] = []

    def start(*replies: Reply) -> tuple[ScriptedServer, ConnectionPool]:
        server = ScriptedServer(list(replies))
        servers.append(server)
        pool = ConnectionPool(
            "http", "127.0.0.1", server.port, connect_timeout=5, read_timeout=10, ssl_context=None, max_idle=4
        )
        return server, pool

    yield start
    for server in servers:
        server.stop()


def read_body(response: object) -> bytes:
    out = bytearray()
    buffer = memoryview(bytearray(7))  # small reads: bodies span many calls
    while count := response.body.readinto(buffer):  # type: ignore[attr-defined]
        out += buffer[:count]
    response.body.release_conn()  # type: ignore[attr-defined]
    return bytes(out)


def test_keep_alive_reuses_one_connection(serve: object) -> None:
    server, pool = serve(Reply(ok(b"first body")), Reply(ok(b"second")))  # type: ignore[operator]
    first = pool.request("GET", "/b/k", {"Host": "h"})
    assert (first.status, first.headers["Content-Length"]) == (200, "10")
    assert read_body(first) == b"first body"
    assert read_body(pool.request("GET", "/b/k2", {"Host": "h"})) == b"second"
    assert server.connections == 1
    assert server.requests[0][0].startswith(b"GET /b/k HTTP/1.1\r\nHost: h\r\n")


def test_chunked_body(serve: object) -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-T: 1\r\n\r\n"
    )
    server, pool = serve(Reply(chunked), Reply(ok(b"next")))  # type: ignore[operator]
    assert read_body(pool.request("GET", "/c", {})) == b"hello world"
    assert read_body(pool.request("GET", "/d", {})) == b"next"
    assert server.connections == 1


def test_cut_body_returns_what_arrived_then_raises(serve: object) -> None:
    head = b"HTTP/1.1 206 Partial Content\r\nContent-Length: 100\r\n\r\n"
    _, pool = serve(Reply(head + b"x" * 40, close=True))  # type: ignore[operator]
    response = pool.request("GET", "/cut", {})
    view = memoryview(bytearray(100))
    filled = 0
    with pytest.raises(HTTPError, match="60 bytes of the body missing"):
        while True:
            count = response.body.readinto(view[filled:])
            assert count > 0
            filled += count
    assert filled == 40  # nothing that arrived is lost: a resume starts at byte 40
    assert bytes(view[:40]) == b"x" * 40


def test_cut_before_any_body_byte_raises_at_once(serve: object) -> None:
    _, pool = serve(Reply(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", close=True))  # type: ignore[operator]
    response = pool.request("GET", "/cut", {})
    with pytest.raises(HTTPError):
        response.body.readinto(memoryview(bytearray(10)))


def test_head_has_no_body_and_keeps_the_connection(serve: object) -> None:
    server, pool = serve(  # type: ignore[operator]
        Reply(b'HTTP/1.1 200 OK\r\nContent-Length: 12345\r\nETag: "e"\r\n\r\n'), Reply(ok(b"after head"))
    )
    response = pool.request("HEAD", "/h", {})
    assert response.headers.get("etag") == '"e"'
    assert read_body(response) == b""
    assert read_body(pool.request("GET", "/g", {})) == b"after head"
    assert server.connections == 1


def test_connection_close_is_honoured(serve: object) -> None:
    server, pool = serve(Reply(ok(b"bye", "Connection: close"), close=True), Reply(ok(b"new")))  # type: ignore[operator]
    assert read_body(pool.request("GET", "/a", {})) == b"bye"
    assert read_body(pool.request("GET", "/b", {})) == b"new"
    assert server.connections == 2


def test_idle_connection_closed_by_the_server_is_replaced(serve: object) -> None:
    # The server closes after answering, without saying so: the pooled socket is stale.
    server, pool = serve(Reply(ok(b"one"), close=True), Reply(ok(b"two")))  # type: ignore[operator]
    assert read_body(pool.request("GET", "/a", {})) == b"one"
    assert read_body(pool.request("GET", "/b", {})) == b"two"
    assert server.connections == 2
    assert len(server.requests) == 2


def test_response_without_length_is_refused(serve: object) -> None:
    _, pool = serve(Reply(b"HTTP/1.1 200 OK\r\n\r\nbody", close=True))  # type: ignore[operator]
    with pytest.raises(HTTPError, match="Content-Length"):
        pool.request("GET", "/x", {})


def test_malformed_status_line_is_refused(serve: object) -> None:
    _, pool = serve(Reply(b"SPDY/3 200 OK\r\nContent-Length: 0\r\n\r\n", close=True))  # type: ignore[operator]
    with pytest.raises(HTTPError, match="malformed status line"):
        pool.request("GET", "/x", {})


@pytest.mark.parametrize("size", [10, 70_000, 3 * 1024 * 1024 + 1])
def test_request_bodies_arrive_whole(serve: object, size: int) -> None:
    server, pool = serve(Reply(ok(b"", 'ETag: "abc"')))  # type: ignore[operator]
    data = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
    response = pool.request("PUT", "/b/k", {"Content-Length": str(size)}, memoryview(data))
    assert response.headers["ETag"] == '"abc"'
    assert read_body(response) == b""
    assert server.requests[0][1] == data


def test_headers_are_case_insensitive_and_repeated_ones_joined(serve: object) -> None:
    _, pool = serve(Reply(ok(b"", "X-Amz-Meta-A: 1", "x-amz-meta-a: 2")))  # type: ignore[operator]
    response = pool.request("GET", "/", {})
    assert isinstance(response.headers, Headers)
    assert response.headers["X-AMZ-META-A"] == "1, 2"
    assert "content-length" in response.headers
    assert response.headers.get("missing", "default") == "default"


def test_request_dropped_on_a_reused_connection_is_sent_once_more_on_a_new_one(serve: object) -> None:
    server, pool = serve(Reply(ok(b"a")), Reply(b"", close=True), Reply(ok(b"b")))  # type: ignore[operator]
    assert read_body(pool.request("GET", "/1", {})) == b"a"
    assert read_body(pool.request("GET", "/2", {})) == b"b"
    assert [head.split(b" ")[1] for head, _ in server.requests] == [b"/1", b"/2", b"/2"]
    assert server.connections == 2


def test_a_second_drop_is_raised_not_retried_on_other_idle_connections(serve: object) -> None:
    server, pool = serve(  # type: ignore[operator]
        Reply(ok(b"a")), Reply(ok(b"b")), Reply(b"", close=True), Reply(b"", close=True), Reply(ok(b"late"))
    )
    first, second = pool.request("GET", "/a", {}), pool.request("GET", "/b", {})  # two connections
    assert (read_body(first), read_body(second)) == (b"a", b"b")  # both idle in the pool now
    with pytest.raises(OSError):
        pool.request("GET", "/c", {})
    assert len(server.requests) == 4  # one reused connection, then one new one: the caller retries


def test_read_timeout_on_a_reused_connection_is_not_retried(serve: object) -> None:
    server = ScriptedServer([Reply(ok(b"a")), Reply(b"")])  # the second request is never answered
    pool = ConnectionPool(
        "http", "127.0.0.1", server.port, connect_timeout=5, read_timeout=0.2, ssl_context=None, max_idle=4
    )
    try:
        assert read_body(pool.request("GET", "/a", {})) == b"a"
        with pytest.raises(TimeoutError):
            pool.request("GET", "/slow", {})
        assert len(server.requests) == 2
    finally:
        pool.close()
        server.stop()
