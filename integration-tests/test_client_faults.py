"""Faults injected on real TCP connections by the fault proxy: bodies cut mid-way are resumed,
throttling is retried, retries are bounded by ``max_attempts``, a failed part aborts the whole
upload, and an object replaced mid-read raises ``ObjectChangedError``."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any, NamedTuple

import pytest
from support import (
    PART,
    FaultProxy,
    RecordedRequest,
    Rule,
    S3TestEnv,
    force_get_mode,
    object_gets,
    part_uploads,
    payload,
)

from s3torch.client import GetObjectStream, ObjectChangedError, S3Client, S3Exception

SIZE = 2 * PART + 345_678


class GetMode(NamedTuple):
    name: str
    config: dict[str, Any]


@pytest.fixture(params=["serial", "parallel"])
def get_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> GetMode:
    """Both paths of the adaptive GET: one request for the rest, or part-size requests."""
    return GetMode(request.param, force_get_mode(monkeypatch, request.param))


def client_for(env: S3TestEnv, get_mode: GetMode | None = None, **config: Any) -> S3Client:
    settings = get_mode.config if get_mode is not None else {}
    return env.new_client(part_size=PART, max_attempts=3, **settings, **config)


def proxy_of(env: S3TestEnv) -> FaultProxy:
    assert env.proxy is not None
    return env.proxy


def gets(env: S3TestEnv, key: str) -> list[RecordedRequest]:
    return [r for r in proxy_of(env).requests if r.method == "GET" and r.is_object(env.bucket, key)]


def wait_for_gets(env: S3TestEnv, key: str, count: int) -> list[RecordedRequest]:
    """The GETs of ``key`` once the proxy has read ``count`` of them: its thread may read a request
    after the client gave up on it."""
    return proxy_of(env).wait_for_requests(count, lambda r: r.method == "GET" and r.is_object(env.bucket, key))


def range_start(request: RecordedRequest) -> int:
    return int(request.headers["range"].removeprefix("bytes=").split("-")[0])


def consume(stream: GetObjectStream) -> bytes:
    return b"".join(bytes(chunk) for chunk in stream)


@pytest.fixture
def big(faulty_s3: S3TestEnv) -> tuple[str, bytes, str]:
    key = "big.bin"
    data = payload(SIZE, seed=11)
    etag = faulty_s3.put(key, data)
    return key, data, etag


# ---- GET: cut connections ----------------------------------------------------------------


@pytest.mark.parametrize(("nth", "after"), [(1, 1_000_003), (1, 0), (2, 777)], ids=["first-1MB", "first-0B", "second"])
def test_cut_response_is_resumed_from_the_last_byte(
    faulty_s3: S3TestEnv, big: tuple[str, bytes, str], get_mode: GetMode, nth: int, after: int
) -> None:
    key, data, etag = big
    rule = proxy_of(faulty_s3).add(Rule(object_gets(faulty_s3.bucket, key, nth), cut_after=after))
    assert consume(client_for(faulty_s3, get_mode).get_object_stream(faulty_s3.bucket, key)) == data
    assert rule.fired.is_set()
    requests = gets(faulty_s3, key)
    cut = requests[nth - 1]
    resumed = [r for r in requests if range_start(r) == range_start(cut) + after and r is not cut]
    assert len(resumed) == 1
    assert resumed[0].headers["if-match"] == etag  # pinned to the version being read
    assert resumed[0].status == 206


def test_readinto_survives_a_cut(faulty_s3: S3TestEnv, big: tuple[str, bytes, str]) -> None:
    key, data, _ = big
    proxy_of(faulty_s3).add(Rule(object_gets(faulty_s3.bucket, key, 1), cut_after=PART // 2 + 1))
    stream = client_for(faulty_s3).get_object_stream(faulty_s3.bucket, key, 1000, SIZE - 1000)
    buffer = bytearray(SIZE)
    view = memoryview(buffer)
    filled = 0
    while count := stream.readinto(view[filled : filled + 999_999]):
        filled += count
    assert bytes(buffer[:filled]) == data[1000 : SIZE - 1000]


def test_resume_gives_up_after_max_attempts_without_progress(
    faulty_s3: S3TestEnv, big: tuple[str, bytes, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    key, _, _ = big
    settings = force_get_mode(monkeypatch, "serial")
    proxy_of(faulty_s3).add(Rule(object_gets(faulty_s3.bucket, key), cut_after=0, times=None))
    stream = faulty_s3.new_client(part_size=PART, max_attempts=3, **settings).get_object_stream(faulty_s3.bucket, key)
    with pytest.raises(S3Exception, match="not resumed after 3 attempts") as caught:
        consume(stream)
    assert (caught.value.bucket, caught.value.key) == (faulty_s3.bucket, key)
    assert len(gets(faulty_s3, key)) == 3


# ---- GET: the object changes under the reader ---------------------------------------------


def overwrite(env: S3TestEnv, key: str) -> Any:
    def before(_: RecordedRequest) -> None:
        env.put(key, payload(SIZE, seed=99))  # straight to moto, not through the proxy

    return before


def test_object_replaced_between_two_gets_of_a_stream_raises(
    faulty_s3: S3TestEnv, big: tuple[str, bytes, str], get_mode: GetMode
) -> None:
    key, _, etag = big
    proxy_of(faulty_s3).add(Rule(object_gets(faulty_s3.bucket, key, 2), before=overwrite(faulty_s3, key)))
    stream = client_for(faulty_s3, get_mode).get_object_stream(faulty_s3.bucket, key)
    with pytest.raises(ObjectChangedError) as caught:
        consume(stream)
    stream.close()
    assert isinstance(caught.value, S3Exception)
    assert caught.value.code == "PreconditionFailed"
    assert (caught.value.bucket, caught.value.key) == (faulty_s3.bucket, key)
    # Every GET after the first is pinned to the ETag, and the store refused one. Which one is
    # not fixed: in parallel mode several parts are in flight when the object is replaced, and
    # those still unanswered when the stream fails are cut (no status recorded).
    later = gets(faulty_s3, key)[1:]
    assert [request.headers["if-match"] for request in later] == [etag] * len(later)
    assert 412 in [request.status for request in later]


def test_object_replaced_between_cut_and_resume_raises(
    faulty_s3: S3TestEnv, big: tuple[str, bytes, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    key, _, _ = big
    settings = force_get_mode(monkeypatch, "serial")  # the second GET is then the resume
    proxy = proxy_of(faulty_s3)
    proxy.add(Rule(object_gets(faulty_s3.bucket, key, 1), cut_after=123_456))
    proxy.add(Rule(object_gets(faulty_s3.bucket, key, 2), before=overwrite(faulty_s3, key)))
    stream = faulty_s3.new_client(part_size=PART, **settings).get_object_stream(faulty_s3.bucket, key)
    with pytest.raises(ObjectChangedError):
        consume(stream)
    resume = gets(faulty_s3, key)[1]
    assert (range_start(resume), resume.status) == (123_456, 412)


def test_stream_pinned_to_an_etag_refuses_another_version(faulty_s3: S3TestEnv, big: tuple[str, bytes, str]) -> None:
    key, _, _ = big
    stream = faulty_s3.client.get_object_stream(faulty_s3.bucket, key, etag='"0123456789abcdef0123456789abcdef"')
    with pytest.raises(ObjectChangedError):
        consume(stream)


# ---- GET: the adaptive plan ---------------------------------------------------------------


def test_get_plan_of_each_mode(faulty_s3: S3TestEnv, big: tuple[str, bytes, str], get_mode: GetMode) -> None:
    """The first GET asks for one part; then one GET for the rest (serial) or part-size GETs
    (parallel). Every GET after the first carries If-Match with the first response's ETag."""
    key, data, etag = big
    assert consume(client_for(faulty_s3, get_mode).get_object_stream(faulty_s3.bucket, key)) == data
    requests = gets(faulty_s3, key)
    ranges = sorted(r.headers["range"] for r in requests)
    if get_mode.name == "serial":
        expected = [f"bytes=0-{PART - 1}", f"bytes={PART}-{SIZE - 1}"]
    else:
        expected = [f"bytes=0-{PART - 1}", f"bytes={PART}-{2 * PART - 1}", f"bytes={2 * PART}-{SIZE - 1}"]
    assert ranges == sorted(expected)
    assert "if-match" not in requests[0].headers
    assert all(r.headers["if-match"] == etag for r in requests[1:])


# ---- retries ------------------------------------------------------------------------------


def _do_get(env: S3TestEnv, client: S3Client) -> None:
    env.put("small", b"small object")
    assert consume(client.get_object_stream(env.bucket, "small")) == b"small object"


def _do_put(env: S3TestEnv, client: S3Client) -> None:
    with client.put_object(env.bucket, "small") as writer:
        writer.write(b"small object")
    assert env.read("small") == b"small object"


def _do_multipart(env: S3TestEnv, client: S3Client) -> None:
    data = payload(PART + 10)
    with client.put_object(env.bucket, "multi") as writer:
        writer.write(data)
    assert env.read("multi") == data


def _do_head(env: S3TestEnv, client: S3Client) -> None:
    env.put("small", b"small object")
    assert client.head_object(env.bucket, "small").size == len(b"small object")


def _do_list(env: S3TestEnv, client: S3Client) -> None:
    env.put("small", b"small object")
    assert [i.key for page in client.list_objects(env.bucket) for i in page.object_info] == ["small"]


OPERATIONS = {
    "get": (_do_get, lambda r: r.method == "GET" and r.path.endswith("/small")),
    "put": (_do_put, lambda r: r.method == "PUT" and r.path.endswith("/small")),
    "upload-part": (_do_multipart, part_uploads(2)),
    "create-multipart": (_do_multipart, lambda r: r.method == "POST" and "uploads" in r.query),
    "complete-multipart": (_do_multipart, lambda r: r.method == "POST" and "uploadId" in r.query),
    "head": (_do_head, lambda r: r.method == "HEAD"),
    "list": (_do_list, lambda r: r.method == "GET" and r.query.get("list-type") == "2"),
}


@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_throttling_once_is_retried_transparently(faulty_s3: S3TestEnv, operation: str) -> None:
    run, match = OPERATIONS[operation]
    proxy = proxy_of(faulty_s3)
    rule = proxy.add(Rule(match, respond=503, code="SlowDown"))
    run(faulty_s3, client_for(faulty_s3))
    assert rule.hits == 1
    statuses = [r.status for r in proxy.requests_for(faulty_s3.bucket) if match(r)]
    assert statuses[0] == 503
    assert statuses[1] in (200, 206)


@pytest.mark.parametrize("operation", ["get", "head", "list"])
def test_retries_are_bounded_by_max_attempts(faulty_s3: S3TestEnv, operation: str) -> None:
    run, match = OPERATIONS[operation]
    proxy = proxy_of(faulty_s3)
    proxy.add(Rule(match, respond=500, code="InternalError", times=None))
    with pytest.raises(S3Exception) as caught:
        run(faulty_s3, faulty_s3.new_client(max_attempts=2))
    assert caught.value.status == 500
    assert len([r for r in proxy.requests_for(faulty_s3.bucket) if match(r)]) == 2


# ---- uploads: a failed part aborts everything ----------------------------------------------


@pytest.mark.parametrize("failure", ["500", "connection-dropped"])
def test_failed_part_aborts_the_upload(faulty_s3: S3TestEnv, failure: str) -> None:
    proxy = proxy_of(faulty_s3)
    if failure == "500":
        rule = Rule(part_uploads(2), respond=500, times=None)
    else:
        rule = Rule(part_uploads(2), drop=True, times=None)
    proxy.add(rule)
    key = "never-published.bin"
    client = faulty_s3.new_client(part_size=PART, max_attempts=2)
    with pytest.raises(S3Exception) as caught, client.put_object(faulty_s3.bucket, key) as writer:
        writer.write(payload(int(3.5 * PART)))
    assert caught.value.key == key
    if failure == "500":
        assert rule.hits == 2  # max_attempts
    else:  # a connection dropped on a reused keep-alive connection is tried once more on a new one
        assert 2 <= rule.hits <= 4
    assert not faulty_s3.exists(key)
    assert faulty_s3.uploads() == []
    aborts = [r for r in proxy.requests_for(faulty_s3.bucket) if r.method == "DELETE" and "uploadId" in r.query]
    assert len(aborts) == 1
    assert not any(r.method == "POST" and "uploadId" in r.query for r in proxy.requests_for(faulty_s3.bucket))


def test_failed_single_put_publishes_nothing(faulty_s3: S3TestEnv) -> None:
    proxy = proxy_of(faulty_s3)
    proxy.add(Rule(lambda r: r.method == "PUT", drop=True, times=None))
    with pytest.raises(S3Exception), faulty_s3.new_client(max_attempts=2).put_object(faulty_s3.bucket, "k") as writer:
        writer.write(b"data")
    assert not faulty_s3.exists("k")


# ---- stalled responses ----------------------------------------------------------------------


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """An event that held requests wait for; set when the test ends."""
    event = threading.Event()
    yield event
    event.set()


def _warm_pool(env: S3TestEnv, client: S3Client, monkeypatch: pytest.MonkeyPatch) -> None:
    """Leave several idle keep-alive connections in the client's pool (parallel part GETs)."""
    force_get_mode(monkeypatch, "parallel")
    env.put("warm", payload(3 * PART + 1))
    assert len(consume(client.get_object_stream(env.bucket, "warm"))) == 3 * PART + 1


def test_stalled_response_times_out_and_is_retried(
    faulty_s3: S3TestEnv, big: tuple[str, bytes, str], release: threading.Event
) -> None:
    key, data, _ = big
    proxy = proxy_of(faulty_s3)
    client = faulty_s3.new_client(part_size=PART, max_attempts=3, read_timeout=0.5)
    # A configuration of its own, so a transport of its own with no idle connection: the first
    # attempt opens the proxy's next connection.
    assert client.metrics().attempts == 0, "the client shares its transport (and its pool) with another"
    first = proxy.connections

    def first_attempt(request: RecordedRequest) -> bool:
        # Not "the first GET the proxy reads": each connection has its own proxy thread, and on a
        # loaded machine the retry's (a new connection) may read its request before the stalled one's.
        return request.connection == first and request.method == "GET" and request.is_object(faulty_s3.bucket, key)

    rule = proxy.add(Rule(first_attempt, hold=release))
    assert consume(client.get_object_stream(faulty_s3.bucket, key, 0, 1000)) == data[:1000]
    assert len(wait_for_gets(faulty_s3, key, 2)) == 2
    assert rule.fired.wait(30)  # the stalled one was the first attempt


@pytest.mark.parametrize("max_attempts", [1, 2])
def test_read_timeouts_are_bounded_by_max_attempts(
    faulty_s3: S3TestEnv,
    big: tuple[str, bytes, str],
    release: threading.Event,
    monkeypatch: pytest.MonkeyPatch,
    max_attempts: int,
) -> None:
    """A server that never answers costs max_attempts requests, whatever the idle connections."""
    key, _, _ = big
    proxy = proxy_of(faulty_s3)
    client = faulty_s3.new_client(part_size=PART, max_attempts=max_attempts, read_timeout=0.3)
    _warm_pool(faulty_s3, client, monkeypatch)
    proxy.add(Rule(object_gets(faulty_s3.bucket, key), hold=release, times=None))
    with pytest.raises(S3Exception, match=r"(?i)timed out") as caught:
        consume(client.get_object_stream(faulty_s3.bucket, key))
    assert caught.value.key == key
    assert len(wait_for_gets(faulty_s3, key, max_attempts)) == max_attempts
