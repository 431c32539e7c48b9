"""The data path's minimal HTTP/1.1 client, against the shared scripted server on 127.0.0.1:
keep-alive reuse, Content-Length and chunked bodies, cut connections, stale idle connections.
The conformance cases (1xx, framing, early answers, many descriptors) are in
``integration-tests/test_http_conformance.py``."""

from __future__ import annotations

import select
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from s3torch.client import _http_wait
from s3torch.client._http import BodyStalledError, ConnectionPool, Headers, HTTPError
from s3torch_test_support.scripted_server import Exchange, ScriptedServer


@dataclass
class Reply:
    data: bytes
    close: bool = False  # close the connection after sending ``data``


def scripted(replies: list[Reply]) -> ScriptedServer:
    """A server answering its nth request with ``replies[n]``."""

    def handler(exchange: Exchange) -> None:
        reply = replies[len(exchange.server.requests) - 1]
        exchange.read_body()
        exchange.send(reply.data)
        if reply.close:
            exchange.close()

    return ScriptedServer(handler).__enter__()


def ok(body: bytes, *extra: str) -> bytes:
    headers = "".join(f"{line}\r\n" for line in extra)
    return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{headers}\r\n".encode() + body


def pool_for(server: ScriptedServer, **options: Any) -> ConnectionPool:
    settings = {"connect_timeout": 5, "read_timeout": 10, "ssl_context": None, "max_idle": 4, **options}
    return ConnectionPool("http", "127.0.0.1", server.port, **settings)


@pytest.fixture
def serve() -> Iterator[object]:
    servers: list[ScriptedServer] = []

    def start(*replies: Reply) -> tuple[ScriptedServer, ConnectionPool]:
        server = scripted(list(replies))
        servers.append(server)
        return server, pool_for(server)

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
    assert (server.requests[0].method, server.requests[0].target, server.requests[0].headers["host"]) == (
        "GET",
        "/b/k",
        "h",
    )


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


def test_response_without_length_is_read_to_the_end_of_the_connection(serve: object) -> None:
    server, pool = serve(Reply(b"HTTP/1.1 200 OK\r\n\r\nbody to eof", close=True), Reply(ok(b"next")))  # type: ignore[operator]
    assert read_body(pool.request("GET", "/x", {})) == b"body to eof"
    assert read_body(pool.request("GET", "/y", {})) == b"next"
    assert server.connections == 2  # a body framed by the close is never followed by another


def test_unusable_content_length_is_refused(serve: object) -> None:
    _, pool = serve(Reply(b"HTTP/1.1 200 OK\r\nContent-Length: -3\r\n\r\nbody", close=True))  # type: ignore[operator]
    with pytest.raises(HTTPError, match="Content-Length"):
        pool.request("GET", "/x", {})


def test_interim_responses_are_skipped(serve: object) -> None:
    interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s>; rel=preload\r\n\r\n"
    server, pool = serve(Reply(interim + ok(b"one")), Reply(interim + ok(b"two")))  # type: ignore[operator]
    first = pool.request("GET", "/1", {})
    assert first.status == 200
    assert read_body(first) == b"one"
    assert read_body(pool.request("GET", "/2", {})) == b"two"
    assert server.connections == 1


def test_switching_protocols_is_refused(serve: object) -> None:
    _, pool = serve(Reply(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n", close=True))  # type: ignore[operator]
    with pytest.raises(HTTPError, match="101"):
        pool.request("GET", "/x", {})


@pytest.mark.parametrize("value", ["a\r\nX-Injected: 1", "a\nb", "a\rb"])
def test_header_values_with_cr_or_lf_are_refused_before_sending(serve: object, value: str) -> None:
    server, pool = serve(Reply(ok(b"")))  # type: ignore[operator]
    with pytest.raises(ValueError, match=r"'x-amz-storage-class'.*CR or LF"):
        pool.request("PUT", "/b/k", {"Host": "h", "x-amz-storage-class": value}, memoryview(b"data"))
    assert server.connections == 0


def test_error_body_is_read_bounded_and_its_connection_closed(serve: object) -> None:
    big = b"<Error>" + b"x" * 200_000
    server, pool = serve(Reply(ok(big)), Reply(ok(b"short")), Reply(ok(b"after")))  # type: ignore[operator]
    response = pool.request("GET", "/big", {})
    assert response.body.read_bounded(1000) == big[:1000]
    response.body.release_conn()  # not at the end of its body: closed, not pooled
    short = pool.request("GET", "/short", {})
    assert short.body.read_bounded(1000) == b"short"
    short.body.release_conn()  # read to its end: pooled
    assert read_body(pool.request("GET", "/after", {})) == b"after"
    assert server.connections == 2


def test_a_stalled_body_is_cut_after_what_arrived() -> None:
    def trickle(exchange: Exchange) -> None:
        exchange.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nfast")
        exchange.trickle(b"y" * 996, interval=0.05)

    with ScriptedServer(trickle) as server:
        # 300 bytes per 0.3 s of waiting; the server sends about 6
        pool = pool_for(server, stall_window=0.3, stall_min_rate=1000)
        response = pool.request("GET", "/slow", {})
        view = memoryview(bytearray(1000))
        filled = 0
        with pytest.raises(BodyStalledError, match="stalled"):
            while True:
                count = response.body.readinto(view[filled:])
                assert count > 0
                filled += count
        assert bytes(view[:4]) == b"fast"
        assert 4 <= filled < 100
        pool.close()


WAITS = [_http_wait._select_readable] + ([_http_wait._poll_readable] if hasattr(select, "poll") else [])


@pytest.mark.parametrize("wait", WAITS)
def test_wait_for_read_sees_data_and_closes(wait: object) -> None:
    left, right = socket.socketpair()
    with left, right:
        assert not wait(left, 0)  # type: ignore[operator]
        right.sendall(b"x")
        assert wait(left, 0)  # type: ignore[operator]
        left.recv(1)
        right.close()
        assert wait(left, 0)  # type: ignore[operator]  # EOF is readable


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
    assert server.requests[0].body == data


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
    assert [request.target for request in server.requests] == ["/1", "/2", "/2"]
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
    server = scripted([Reply(ok(b"a")), Reply(b"")])  # the second request is never answered
    pool = pool_for(server, read_timeout=0.2)
    try:
        assert read_body(pool.request("GET", "/a", {})) == b"a"
        with pytest.raises(TimeoutError):
            pool.request("GET", "/slow", {})
        # The client gave up on its second request: exactly two reached the server (its thread
        # may read the second only now, on a busy machine).
        assert len(server.wait_for_requests(2)) == 2
    finally:
        pool.close()
        server.stop()
