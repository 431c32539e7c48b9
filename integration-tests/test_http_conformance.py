"""The data path's HTTP/1.1 core against what servers and proxies really send, over 127.0.0.1:
interim ``1xx`` answers, ``Connection: close`` and HTTP/1.0, bodies framed by chunking or by the
end of the connection, bodies longer or shorter than declared, early answers to large uploads,
oversized error bodies, a process with more than 1,024 descriptors, CR/LF in header values, and
a server trickling a body. Every read is checked byte for byte; "not pooled" is checked by the
number of connections the server saw. (Ranged-GET validation is in its own file.)"""

from __future__ import annotations

import contextlib
import os
import resource
from collections.abc import Callable, Iterator

import pytest
from support import MOTO_REGION

from s3torch.client import S3Client, S3ClientConfig, S3Exception, UserAgent
from s3torch_test_support.scripted_server import Exchange, ObjectStore, ScriptedServer, chunked, response, s3_error

BUCKET = "conformance"
OBJECTS = {f"/{BUCKET}/object-{number}": bytes([65 + number]) * (1000 + number) for number in range(4)}
INTERIM = {
    "100": b"HTTP/1.1 100 Continue\r\n\r\n",
    "103": b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n",
    "100+103": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
}


@pytest.fixture
def store() -> ObjectStore:
    return ObjectStore(OBJECTS)


@contextlib.contextmanager
def serving(handler: Callable[[Exchange], None], **config: object) -> Iterator[tuple[ScriptedServer, S3Client]]:
    with ScriptedServer(handler) as server:
        settings = S3ClientConfig(force_path_style=True, **config)  # type: ignore[arg-type]
        yield server, S3Client(MOTO_REGION, endpoint=server.endpoint, s3client_config=settings)


def read_all(client: S3Client, key: str) -> bytes:
    return b"".join(client.get_object_stream(BUCKET, key))


def read_every_object(client: S3Client, rounds: int = 2) -> None:
    for _ in range(rounds):
        for path, data in OBJECTS.items():
            assert read_all(client, path.rsplit("/", 1)[1]) == data, path


def gets(server: ScriptedServer) -> int:
    return sum(request.method == "GET" for request in server.requests)


@pytest.mark.parametrize("interim", list(INTERIM))
def test_interim_answers_are_skipped_and_the_connection_stays_in_step(store: ObjectStore, interim: str) -> None:
    def handler(exchange: Exchange) -> None:
        exchange.send(INTERIM[interim] + store.answer(exchange.request))

    with serving(handler) as (server, client):
        read_every_object(client, rounds=3)
        assert server.connections == 1  # every request on the one connection, every answer its own
        assert gets(server) == 3 * len(OBJECTS)


def test_a_process_holding_more_than_1024_descriptors_reuses_one_connection(store: ObjectStore) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 2048
    if soft < wanted:
        assert hard == resource.RLIM_INFINITY or hard >= wanted, f"RLIMIT_NOFILE hard limit {hard} is too low"
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    held: list[int] = []
    try:
        with serving(store.serve) as (server, client):
            anchor = os.open(os.devnull, os.O_RDONLY)
            held.append(anchor)
            while held[-1] < 1100:  # every descriptor below 1,100 taken: the next socket's is above
                held.append(os.dup(anchor))
            for number in range(20):
                key = f"object-{number % len(OBJECTS)}"
                assert read_all(client, key) == OBJECTS[f"/{BUCKET}/{key}"]
            assert gets(server) == 20
            assert server.connections == 1
    finally:
        for descriptor in held:
            os.close(descriptor)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# ---- early answers to large uploads -------------------------------------------------------------

BIG = 64 * 1024 * 1024
ONE_PUT = S3ClientConfig(part_size=80 * 1024 * 1024).part_size  # the 64 MiB go as one PutObject


def put(client: S3Client, key: str, data: memoryview) -> None:
    with client.put_object(BUCKET, key) as writer:
        writer.write(data)


def assert_refused_once(server: ScriptedServer, caught: pytest.ExceptionInfo[S3Exception]) -> None:
    assert (caught.value.code, caught.value.status) == ("AccessDenied", 403)
    assert [request.method for request in server.requests] == ["PUT"]  # reported, not retried


def test_early_403_on_a_large_put_honouring_expect_is_reported_not_retried() -> None:
    def handler(exchange: Exchange) -> None:
        assert exchange.request.headers.get("expect") == "100-continue"
        exchange.send(s3_error(403, "AccessDenied"))  # before a byte of the body

    with serving(handler, part_size=ONE_PUT) as (server, client), pytest.raises(S3Exception) as caught:
        put(client, "big", memoryview(bytearray(BIG)))
    assert_refused_once(server, caught)
    assert server.requests[0].body is None


def test_early_403_mid_upload_from_a_server_ignoring_expect_is_reported_not_retried() -> None:
    def handler(exchange: Exchange) -> None:
        exchange.read_exact(2 * 1024 * 1024)  # no 100 Continue: the client sends after its wait
        exchange.send(s3_error(403, "AccessDenied", close=True))
        exchange.close()  # with most of the 64 MiB unread: the client's sends fail

    with serving(handler, part_size=ONE_PUT) as (server, client), pytest.raises(S3Exception) as caught:
        put(client, "big", memoryview(bytearray(BIG)))
    assert_refused_once(server, caught)


def test_large_put_goes_through_after_100_continue(store: ObjectStore) -> None:
    data = os.urandom(3 * 1024 * 1024)
    with serving(store.serve) as (server, client):
        put(client, "three-mib", memoryview(data))
        assert store.objects[f"/{BUCKET}/three-mib"] == data
        assert server.requests[0].headers.get("expect") == "100-continue"
        read_every_object(client, rounds=1)
        assert server.connections == 1


# ---- framing and keep-alive ---------------------------------------------------------------------


def _rewrite(store: ObjectStore, exchange: Exchange, body: bytes | None = None) -> tuple[int, bytes, dict[str, str]]:
    """The store's answer taken apart: status, body, headers (for a handler to reframe)."""
    head, _, body = store.answer(exchange.request, body).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split(" ")[1]), body, headers


@pytest.mark.parametrize(
    ("variant", "connections_per_get"),
    [
        ("connection-close", 1),  # said, but the server keeps it open: still not reused
        ("http-1.0", 1),
        ("chunked", 0),
        ("longer-than-declared", 1),  # extra bytes after the body: never reused
    ],
)
def test_framing_variants_return_the_right_bytes(store: ObjectStore, variant: str, connections_per_get: int) -> None:
    def handler(exchange: Exchange) -> None:
        status, body, headers = _rewrite(store, exchange)
        if variant == "connection-close":
            exchange.send(response(status, body, {**headers, "Connection": "close"}))
        elif variant == "http-1.0":
            exchange.send(response(status, body, headers, version="HTTP/1.0"))
        elif variant == "chunked":
            headers.pop("Content-Length")
            exchange.send(response(status, chunked(body, 333), {**headers, "Transfer-Encoding": "chunked"}))
        else:
            exchange.send(response(status, body, headers) + b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nbad")

    with serving(handler) as (server, client):
        read_every_object(client)
        expected = gets(server) if connections_per_get else 1
        assert server.connections == expected


@pytest.mark.parametrize("version", ["HTTP/1.0", "HTTP/1.1"])
def test_answers_without_length_are_read_to_the_end_of_the_connection(store: ObjectStore, version: str) -> None:
    # As http.client reads them. (A GET answer without Content-Length is refused by the range
    # validation above the HTTP layer: its length could not be checked.)
    def handler(exchange: Exchange) -> None:
        request = exchange.request
        if request.method == "PUT" and request.path.endswith("denied"):
            status, body, headers = 403, s3_error(403, "AccessDenied").partition(b"\r\n\r\n")[2], {}
        else:
            status, body, headers = _rewrite(store, exchange, exchange.read_body())
            headers.pop("Content-Length", None)
        extra = {"Connection": "close"} if version == "HTTP/1.1" else {}
        exchange.send(response(status, body, {**headers, **extra}, version=version, length=-1))
        exchange.close()

    with serving(handler) as (server, client):
        put(client, "accepted", memoryview(b"payload"))
        assert store.objects[f"/{BUCKET}/accepted"] == b"payload"
        with pytest.raises(S3Exception) as caught:
            put(client, "denied", memoryview(b"payload"))
        assert (caught.value.code, caught.value.status) == ("AccessDenied", 403)
        assert server.connections == 2


def test_a_body_shorter_than_declared_is_resumed_never_returned_short(store: ObjectStore) -> None:
    def handler(exchange: Exchange) -> None:
        answer = store.answer(exchange.request)
        if len(server.requests) == 1:
            exchange.send(answer[:-500])  # the last 500 bytes never come
            exchange.close()
        else:
            exchange.send(answer)

    with serving(handler) as (server, client):
        assert read_all(client, "object-3") == OBJECTS[f"/{BUCKET}/object-3"]
        assert [request.range for request in server.requests] == [
            (0, client.s3client_config.part_size - 1),
            (503, 1002),
        ]


def test_a_body_always_cut_short_raises(store: ObjectStore) -> None:
    def handler(exchange: Exchange) -> None:
        exchange.send(store.answer(exchange.request)[:-500])
        exchange.close()

    with serving(handler, max_attempts=3) as (server, client):
        with pytest.raises(S3Exception, match="connection lost"):
            read_all(client, "object-3")
        assert 2 <= len(server.requests) <= 4  # bounded resumes, then the error


def test_an_oversized_error_body_is_not_buffered_and_its_connection_not_reused(store: ObjectStore) -> None:
    huge = b"<?xml version='1.0'?><Error><Code>AccessDenied</Code>" + b" " * (8 * 1024 * 1024)

    def handler(exchange: Exchange) -> None:
        if exchange.request.path.endswith("object-0"):
            exchange.send(response(403, huge))
        else:
            store.serve(exchange)

    with serving(handler) as (server, client):
        with pytest.raises(S3Exception) as caught:
            read_all(client, "object-0")
        assert caught.value.status == 403
        assert read_all(client, "object-1") == OBJECTS[f"/{BUCKET}/object-1"]
        assert server.connections == 2


# ---- header values ------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["a\r\nX-Injected: 1", "a\nX-Injected: 1", "a\rX-Injected: 1"])
@pytest.mark.parametrize("argument", ["storage_class", "etag", "user_agent"])
def test_cr_or_lf_in_header_bound_arguments_never_reaches_the_wire(store: ObjectStore, bad: str, argument: str) -> None:
    with serving(store.serve) as (server, client):
        with pytest.raises(ValueError, match=r"CR or LF|storage_class|etag|comment|user.?agent"):
            if argument == "storage_class":
                with client.put_object(BUCKET, "k", storage_class=bad) as writer:
                    writer.write(b"data")
            elif argument == "etag":
                b"".join(client.get_object_stream(BUCKET, "object-0", etag=bad))
            else:
                agent_client = S3Client(
                    MOTO_REGION,
                    endpoint=server.endpoint,
                    user_agent=UserAgent([bad]),
                    s3client_config=S3ClientConfig(force_path_style=True),
                )
                read_all(agent_client, "object-0")
        assert not any("x-injected" in request.headers for request in server.requests)
        read_every_object(client, rounds=1)  # and the client still works


# ---- time bounds --------------------------------------------------------------------------------


def test_a_trickling_body_is_cut_and_the_read_resumed(store: ObjectStore) -> None:
    def handler(exchange: Exchange) -> None:
        answer = store.answer(exchange.request)
        if len(server.requests) == 1:
            head, _, body = answer.partition(b"\r\n\r\n")
            exchange.send(head + b"\r\n\r\n" + body[:10])
            exchange.trickle(body[10:], interval=0.05)  # 20 bytes/s against a minimum of 200
        else:
            exchange.send(answer)

    with serving(handler, stall_window=0.5, stall_min_rate=200) as (server, client):
        assert read_all(client, "object-2") == OBJECTS[f"/{BUCKET}/object-2"]
    first, resumed = server.requests
    assert first.range == (0, client.s3client_config.part_size - 1)
    assert resumed.range is not None and 10 <= resumed.range[0] < 200
