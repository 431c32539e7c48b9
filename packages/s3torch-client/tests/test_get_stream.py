"""``GetObjectStream`` over moto in process: exact bytes for every range, both paths of the
adaptive plan, the bounded window, ETag pinning, resumption of cut bodies."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from client_unit_support import PART, GetMode, MockS3, payload
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from s3torch.client import GetObjectStream, ObjectChangedError, S3Exception
from s3torch.client._before_send import BytesBody
from s3torch.client._body import RawResponse
from s3torch.client._transport import Transport
from s3torch_test_support import RANGES_AROUND_PARTS, THREE_PART_SIZE

SIZE = THREE_PART_SIZE
RANGES = RANGES_AROUND_PARTS


@dataclass
class GetCall:
    start: int
    end: int | None
    etag: str | None


@pytest.fixture
def gets(monkeypatch: pytest.MonkeyPatch) -> list[GetCall]:
    """Every ranged GET the transport sends, in order."""
    calls: list[GetCall] = []
    original = Transport.get_range

    def recording(
        self: Transport, bucket: str, key: str, start: int, end: int | None, etag: str | None, **options: Any
    ) -> Any:
        calls.append(GetCall(start, end, etag))
        return original(self, bucket, key, start, end, etag, **options)

    monkeypatch.setattr(Transport, "get_range", recording)
    return calls


@pytest.fixture
def big(s3: MockS3) -> Iterator[tuple[str, bytes, str]]:
    data = payload(SIZE, seed=7)
    yield "big.bin", data, s3.put("big.bin", data)


def read_all(stream: GetObjectStream, how: str) -> bytes:
    if how == "iterate":
        chunks = list(stream)  # the consumer may keep chunks: none is reused
        assert all(len(chunk) <= PART for chunk in chunks)
        return b"".join(chunks)
    out = bytearray()
    buffer = bytearray(1_000_003)
    while count := stream.readinto(buffer):
        out += buffer[:count]
    return bytes(out)


@pytest.mark.parametrize("how", ["iterate", "readinto"])
def test_every_range_is_exact(s3: MockS3, big: tuple[str, bytes, str], get_mode: GetMode, how: str) -> None:
    key, data, _ = big
    client = s3.new_client(**get_mode.config)
    for start, end in RANGES:
        stream = client.get_object_stream(s3.bucket, key, start, end)
        assert stream.tell() == (start or 0)
        got = read_all(stream, how)
        expected = data[start or 0 : end]
        assert got == expected, f"range [{start}, {end})"
        assert stream.tell() == (start or 0) + len(expected), f"range [{start}, {end})"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    start=st.one_of(st.none(), st.integers(0, SIZE + 10)),
    end=st.one_of(st.none(), st.integers(0, SIZE + 10)),
    buffer_size=st.integers(1, 3 * PART),
)
def test_any_range_any_buffer(s3: MockS3, big: tuple[str, bytes, str], start: int, end: int, buffer_size: int) -> None:
    key, data, _ = big
    if buffer_size < 65536:  # tiny reads of megabytes take long: keep their ranges short
        end = min(SIZE + 10 if end is None else end, (start or 0) + 100_000)
    stream = s3.client.get_object_stream(s3.bucket, key, start, end)
    out = bytearray()
    buffer = bytearray(buffer_size)
    while count := stream.readinto(buffer):
        assert count == buffer_size or stream.readinto(bytearray(1)) == 0  # short reads only at the end
        out += buffer[:count]
    assert bytes(out) == data[start or 0 : end]


def test_serial_plan(s3: MockS3, big: tuple[str, bytes, str], gets: list[GetCall], monkeypatch: Any) -> None:
    from s3torch.client import _get_stream

    monkeypatch.setattr(_get_stream, "LATENCY_THRESHOLD_SECONDS", float("inf"))
    key, data, etag = big
    client = s3.new_client(throughput_target_gbps=0.001)
    assert b"".join(client.get_object_stream(s3.bucket, key)) == data
    assert gets == [GetCall(0, PART, None), GetCall(PART, SIZE, etag)]


def test_parallel_plan(s3: MockS3, big: tuple[str, bytes, str], gets: list[GetCall], monkeypatch: Any) -> None:
    from s3torch.client import _get_stream

    monkeypatch.setattr(_get_stream, "LATENCY_THRESHOLD_SECONDS", 0.0)
    key, data, etag = big
    assert b"".join(s3.client.get_object_stream(s3.bucket, key)) == data
    assert gets[0] == GetCall(0, PART, None)
    assert sorted(gets[1:], key=lambda call: call.start) == [
        GetCall(PART, 2 * PART, etag),
        GetCall(2 * PART, SIZE, etag),
    ]


def test_slow_first_part_switches_to_parallel(
    s3: MockS3, big: tuple[str, bytes, str], gets: list[GetCall], monkeypatch: Any
) -> None:
    """No first-byte latency, but a rate below half the target: the rest comes in parts."""
    from s3torch.client import _get_stream

    monkeypatch.setattr(_get_stream, "LATENCY_THRESHOLD_SECONDS", float("inf"))
    key, data, _ = big
    client = s3.new_client(throughput_target_gbps=100_000.0)  # no connection is that fast
    assert b"".join(client.get_object_stream(s3.bucket, key)) == data
    assert sorted((call.start, call.end) for call in gets) == [(0, PART), (PART, 2 * PART), (2 * PART, SIZE)]


def test_ranged_plan_stays_inside_the_range(s3: MockS3, big: tuple[str, bytes, str], gets: list[GetCall]) -> None:
    key, data, _ = big
    start, end = 3, PART + 5
    assert b"".join(s3.client.get_object_stream(s3.bucket, key, start, end)) == data[start:end]
    assert gets[0].start == start
    assert gets[0].end == start + PART
    assert all(call.end is not None and call.end <= end for call in gets)


@pytest.mark.parametrize(("gbps", "window"), [(0.8, 2), (10.0, 13)])
def test_parts_in_flight_are_bounded_by_the_window(s3: MockS3, monkeypatch: Any, gbps: float, window: int) -> None:
    from s3torch.client import _get_stream

    monkeypatch.setattr(_get_stream, "LATENCY_THRESHOLD_SECONDS", 0.0)
    data = payload(int(4.5 * PART), seed=8)
    s3.put("wide.bin", data)
    stream = s3.new_client(throughput_target_gbps=gbps).get_object_stream(s3.bucket, "wide.bin")
    assert stream._window == window  # the start; it may widen up to the part pool's threads
    assert stream._max_window == 2 * window
    chunks, in_flight = [], []
    for chunk in stream:
        chunks.append(chunk)
        in_flight.append(len(stream._parts))
        assert window <= stream._window <= stream._max_window
    assert b"".join(chunks) == data
    assert min(window, 4) <= max(in_flight) <= min(stream._max_window, 4)  # 4 parts follow the first


@pytest.mark.parametrize(
    ("part_rate", "expected"),
    [
        (500e6, 13),  # 13 connections at 500 MB/s already exceed 10 Gb/s: no change
        (100e6, 13),  # what concurrency assumes
        (67e6, 19),  # S3-like: 80 MB/s per connection and 20 ms to the first byte per 8 MiB part
        (1e6, 26),  # far too slow: the part pool's threads are the limit
    ],
)
def test_window_widens_to_what_the_rate_per_connection_needs(
    s3: MockS3, big: tuple[str, bytes, str], part_rate: float, expected: int
) -> None:
    key, _, _ = big
    stream = s3.client.get_object_stream(s3.bucket, key)
    assert (stream._window, stream._max_window) == (13, 26)
    stream._part_bytes, stream._part_seconds = int(part_rate), 1.0
    stream._widen()
    assert stream._window == expected
    stream._part_bytes = int(1000e6)  # a faster estimate later never narrows the window
    stream._widen()
    assert stream._window == expected
    stream.close()


def test_object_replaced_mid_stream_raises(
    s3: MockS3, big: tuple[str, bytes, str], get_mode: GetMode, monkeypatch: Any
) -> None:
    key, _, etag = big
    original = Transport.get_range
    calls = []

    def replacing(
        self: Transport, bucket: str, key_: str, start: int, end: int | None, etag_: str | None, **options: Any
    ) -> Any:
        calls.append(etag_)
        if len(calls) == 2:
            s3.put(key, payload(SIZE, seed=9))
        return original(self, bucket, key_, start, end, etag_, **options)

    monkeypatch.setattr(Transport, "get_range", replacing)
    stream = s3.new_client(**get_mode.config).get_object_stream(s3.bucket, key)
    with pytest.raises(ObjectChangedError) as caught:
        b"".join(stream)
    stream.close()
    assert caught.value.code == "PreconditionFailed"
    assert calls[1] == etag


def test_explicit_etag_pins_the_first_request(s3: MockS3, big: tuple[str, bytes, str]) -> None:
    key, data, etag = big
    assert b"".join(s3.client.get_object_stream(s3.bucket, key, etag=etag)) == data
    with pytest.raises(ObjectChangedError):
        b"".join(s3.client.get_object_stream(s3.bucket, key, etag='"not-the-etag"'))


def _truncating(monkeypatch: Any, keep: int, times: int | None) -> list[GetCall]:
    """Make the first ``times`` responses (None: all) deliver only ``keep`` body bytes."""
    original = Transport.get_range
    calls: list[GetCall] = []
    lock = threading.Lock()

    def truncating(
        self: Transport, bucket: str, key: str, start: int, end: int | None, etag: str | None, **options: Any
    ) -> Any:
        with lock:
            calls.append(GetCall(start, end, etag))
            cut = times is None or len(calls) <= times
        response = original(self, bucket, key, start, end, etag, **options)
        if not cut:
            return response
        body = response.body.read()
        return RawResponse(response.status, response.headers, BytesBody(body[:keep]), response.request_id)

    monkeypatch.setattr(Transport, "get_range", truncating)
    return calls


def test_cut_body_is_resumed(s3: MockS3, big: tuple[str, bytes, str], get_mode: GetMode, monkeypatch: Any) -> None:
    key, data, etag = big
    calls = _truncating(monkeypatch, keep=12345, times=1)
    assert b"".join(s3.new_client(**get_mode.config).get_object_stream(s3.bucket, key)) == data
    resumed = [call for call in calls if call.start == 12345]
    assert resumed == [GetCall(12345, PART, etag)]


def test_cut_without_progress_gives_up_after_max_attempts(
    s3: MockS3, big: tuple[str, bytes, str], monkeypatch: Any
) -> None:
    key, _, _ = big
    calls = _truncating(monkeypatch, keep=0, times=None)
    stream = s3.new_client(max_attempts=3).get_object_stream(s3.bucket, key, 0, 1000)
    with pytest.raises(S3Exception, match="not resumed after 3 attempts"):
        stream.readinto(bytearray(1000))
    assert len(calls) == 3


def _answer(monkeypatch: Any, status: int, headers: dict[str, str], body: bytes) -> None:
    monkeypatch.setattr(
        Transport, "get_range", lambda *args, **options: RawResponse(status, headers, BytesBody(body), "request-id")
    )


def test_store_ignoring_range_serves_whole_object_reads(s3: MockS3, monkeypatch: Any) -> None:
    data = payload(PART + 100)
    _answer(monkeypatch, 200, {"Content-Length": str(len(data)), "ETag": '"e"'}, data)
    stream = s3.client.get_object_stream(s3.bucket, "k")
    assert b"".join(stream) == data
    assert stream.size == len(data)


def test_store_ignoring_range_is_an_error_for_an_offset(s3: MockS3, monkeypatch: Any) -> None:
    _answer(monkeypatch, 200, {"Content-Length": "10"}, b"0123456789")
    with pytest.raises(S3Exception, match="ignored the Range header"):
        b"".join(s3.client.get_object_stream(s3.bucket, "k", 5))


def test_wrong_content_range_is_an_error(s3: MockS3, monkeypatch: Any) -> None:
    _answer(monkeypatch, 206, {"Content-Range": "bytes 3-9/10"}, b"3456789")
    with pytest.raises(S3Exception, match="another range than the one asked for"):
        b"".join(s3.client.get_object_stream(s3.bucket, "k"))


def test_stream_attributes_and_single_pass(s3: MockS3, big: tuple[str, bytes, str]) -> None:
    key, data, etag = big
    stream = s3.client.get_object_stream(s3.bucket, key)
    assert (stream.bucket, stream.key, stream.size, stream.tell()) == (s3.bucket, key, None, 0)
    first = next(stream)
    assert bytes(first) == data[:PART]
    assert (stream.size, stream.etag, stream.tell()) == (SIZE, etag, PART)
    assert b"".join(stream) == data[PART:]
    for _ in range(2):
        with pytest.raises(StopIteration):
            next(stream)
    assert stream.readinto(bytearray(10)) == 0


def test_past_the_end_reads_nothing(s3: MockS3, big: tuple[str, bytes, str]) -> None:
    key, _, _ = big
    stream = s3.client.get_object_stream(s3.bucket, key, SIZE + 1)
    assert list(stream) == []
    assert stream.tell() == SIZE + 1


def test_empty_object(s3: MockS3) -> None:
    s3.put("empty", b"")
    stream = s3.client.get_object_stream(s3.bucket, "empty")
    assert list(stream) == []
    assert stream.size == 0


def test_close_drops_what_is_in_flight(s3: MockS3, big: tuple[str, bytes, str], monkeypatch: Any) -> None:
    from s3torch.client import _get_stream

    monkeypatch.setattr(_get_stream, "LATENCY_THRESHOLD_SECONDS", 0.0)
    key, _, _ = big
    with s3.client.get_object_stream(s3.bucket, key) as stream:
        next(stream)
        assert stream._parts
    assert not stream._parts
    with pytest.raises(StopIteration):
        next(stream)
    with pytest.raises(ValueError, match="closed"):
        stream.readinto(bytearray(1))
    stream.close()  # again: nothing happens
