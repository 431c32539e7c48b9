"""Uploads over moto in process: one PutObject up to a part, concurrent multipart past it, any
bytes-like input, bounded in-flight parts, and nothing published when anything fails."""

from __future__ import annotations

import array
import itertools
import math
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from client_unit_support import PART, MockS3, payload
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from s3torch.client import PutObjectStream, S3Exception
from s3torch.client._part_buffers import PartBuffers
from s3torch.client._transport import Transport


@pytest.fixture
def puts(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str | None, int]]:
    """(partNumber or None for PutObject, size) of every body the transport uploads."""
    sent: list[tuple[str | None, int]] = []
    lock = threading.Lock()
    original = Transport.put_bytes

    def recording(self: Transport, bucket: str, key: str, body: memoryview, **kwargs: Any) -> str:
        with lock:
            sent.append(((kwargs.get("query") or {}).get("partNumber"), body.nbytes))
        return original(self, bucket, key, body, **kwargs)

    monkeypatch.setattr(Transport, "put_bytes", recording)
    return sent


@pytest.mark.parametrize(
    "size", [0, 1, PART - 1, PART, PART + 1, int(3.5 * PART)], ids=["0B", "1B", "part-1", "part", "part+1", "3.5parts"]
)
def test_sizes(s3: MockS3, puts: list[tuple[str | None, int]], size: int) -> None:
    data = payload(size, seed=size)
    with s3.client.put_object(s3.bucket, "obj") as writer:
        assert writer.write(data) == size
        assert writer.tell() == size
    assert s3.read("obj") == data
    etag = s3.etag("obj")
    if size <= PART:  # a single PutObject, with the MD5 ETag
        assert puts == [(None, size)]
        assert "-" not in etag
    else:
        parts = math.ceil(size / PART)
        assert sorted(puts) == sorted(
            [(str(n), PART) for n in range(1, parts)] + [(str(parts), size - (parts - 1) * PART)]
        )
        assert etag.endswith(f'-{parts}"')
    assert s3.uploads() == []


def _buffers() -> Iterator[Any]:
    raw = payload(3000, seed=5)
    yield pytest.param(raw, raw, id="bytes")
    yield pytest.param(bytearray(raw), raw, id="bytearray")
    yield pytest.param(memoryview(raw)[100:2100], raw[100:2100], id="memoryview-slice")
    yield pytest.param(memoryview(bytearray(raw)).cast("I"), raw, id="memoryview-of-ints")
    doubles = array.array("d", (i / 3 for i in range(500)))
    yield pytest.param(doubles, doubles.tobytes(), id="array.array")
    ints = array.array("q", range(PART // 8 + 100))
    yield pytest.param(ints, ints.tobytes(), id="array.array-multipart")
    try:
        import numpy
    except ImportError:  # numpy is not a dependency: array.array covers typed buffers
        return
    matrix = numpy.arange(3000, dtype=numpy.float32).reshape(30, 100)
    yield pytest.param(matrix, matrix.tobytes(), id="numpy")


@pytest.mark.parametrize(("buffer", "expected"), list(_buffers()))
def test_bytes_like_inputs(s3: MockS3, buffer: Any, expected: bytes) -> None:
    with s3.client.put_object(s3.bucket, "buffer") as writer:
        assert writer.write(buffer) == len(expected)
        assert writer.tell() == len(expected)
    assert s3.read("buffer") == expected


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(0, 2 * PART + 7), max_size=6))
def test_any_write_pattern(s3: MockS3, cuts: list[int]) -> None:
    data = payload(2 * PART + 7, seed=len(cuts))
    bounds = sorted({0, len(data), *cuts})
    with s3.client.put_object(s3.bucket, "pattern") as writer:
        for start, end in itertools.pairwise(bounds):
            assert writer.write(data[start:end]) == end - start
    assert s3.read("pattern") == data


@pytest.mark.parametrize("size", [10, PART + 10], ids=["single", "multipart"])
def test_storage_class(s3: MockS3, size: int) -> None:
    with s3.client.put_object(s3.bucket, "ia", storage_class="STANDARD_IA") as writer:
        writer.write(payload(size))
    assert s3.boto.head_object(Bucket=s3.bucket, Key="ia")["StorageClass"] == "STANDARD_IA"
    assert s3.client.head_object(s3.bucket, "ia").storage_class == "STANDARD_IA"


def test_overwrite_and_empty_object(s3: MockS3) -> None:
    for data in (payload(PART + 1), b"", b"small"):
        with s3.client.put_object(s3.bucket, "same") as writer:
            writer.write(data)
        assert s3.read("same") == data


@pytest.mark.parametrize(("gbps", "bound"), [(0.8, 2), (10.0, 13)])
def test_parts_in_flight_are_bounded(s3: MockS3, gbps: float, bound: int) -> None:
    writer = s3.new_client(throughput_target_gbps=gbps).put_object(s3.bucket, "bounded")
    stream = writer.stream
    in_flight = []
    chunk = payload(PART, seed=1)
    for _ in range(6):
        writer.write(chunk)
        assert stream._in_flight_bytes <= stream._max_in_flight_bytes
        in_flight.append(len(stream._in_flight))
    writer.write(b"tail")
    writer.close()
    # The sixth full part is only sent when more bytes arrive: five went up during the writes.
    assert max(in_flight) == min(bound, 5)
    assert s3.read("bounded") == chunk * 6 + b"tail"


def test_stream_refuses_use_after_close(s3: MockS3) -> None:
    writer = s3.client.put_object(s3.bucket, "k")  # dropping the writer would abort its stream
    stream = writer.stream
    assert isinstance(stream, PutObjectStream)
    stream.write(b"abc")
    stream.close()
    with pytest.raises(S3Exception, match=r"^Cannot write to closed object$"):
        stream.write(b"more")
    with pytest.raises(S3Exception, match=r"^Cannot close object more than once$"):
        stream.close()
    stream.abort()  # after publishing: nothing to discard
    assert s3.read("k") == b"abc"


@pytest.mark.parametrize("size", [10, int(2.5 * PART)], ids=["single", "multipart"])
def test_abort_publishes_nothing_and_is_idempotent(s3: MockS3, size: int) -> None:
    writer = s3.client.put_object(s3.bucket, "aborted")
    stream = writer.stream
    stream.write(payload(size))
    assert len(s3.uploads()) == (1 if size > PART else 0)
    stream.abort()
    stream.abort()
    assert not s3.exists("aborted")
    assert s3.uploads() == []
    with pytest.raises(S3Exception, match="closed"):
        stream.write(b"x")


@pytest.mark.parametrize("failing_part", ["1", "2", "4"])
def test_failed_part_aborts_the_upload(s3: MockS3, monkeypatch: pytest.MonkeyPatch, failing_part: str) -> None:
    original = Transport.put_bytes

    def failing(self: Transport, bucket: str, key: str, body: memoryview, **kwargs: Any) -> str:
        if (kwargs.get("query") or {}).get("partNumber") == failing_part:
            raise S3Exception("Service error: InternalError: injected", bucket=bucket, key=key, code="InternalError")
        return original(self, bucket, key, body, **kwargs)

    monkeypatch.setattr(Transport, "put_bytes", failing)
    with pytest.raises(S3Exception, match="injected"), s3.client.put_object(s3.bucket, "failed") as writer:
        writer.write(payload(int(3.5 * PART)))
    assert not s3.exists("failed")
    assert s3.uploads() == []


def test_failed_single_put_publishes_nothing(s3: MockS3, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(*args: Any, **kwargs: Any) -> str:
        raise S3Exception("Service error: SlowDown: injected", code="SlowDown")

    monkeypatch.setattr(Transport, "put_bytes", failing)
    with pytest.raises(S3Exception, match="injected"), s3.client.put_object(s3.bucket, "failed") as writer:
        writer.write(b"small")
    assert writer.closed
    assert not s3.exists("failed")


def test_large_writes_are_not_copied_whole(s3: MockS3) -> None:
    """A write of many parts goes through part-size buffers (memory stays bounded)."""
    writer = s3.client.put_object(s3.bucket, "big")
    writer.write(payload(4 * PART + 1))
    stream = writer.stream
    assert len(stream._buffer) == PART
    assert stream._filled == 1
    writer.close()
    assert s3.etag("big").endswith('-5"')
    assert len(s3.read("big")) == 4 * PART + 1


def test_part_buffers_are_reused_across_uploads_and_never_leak_old_bytes(s3: MockS3) -> None:
    """An upload's part buffers go back to its transport and serve the next upload (fresh
    memory costs page faults); only the bytes written to an upload are ever sent."""
    transport = s3.client._transport
    first = payload(int(3.5 * PART), seed=1)
    with s3.client.put_object(s3.bucket, "first") as writer:
        writer.write(first)
    idle = transport.part_buffers.idle_bytes()
    assert 0 < idle <= transport.concurrency * PART
    reused = {id(buffer) for buffer in transport.part_buffers._idle}

    second = payload(PART + 3, seed=2)  # shorter: the buffers hold the first upload's bytes
    with s3.client.put_object(s3.bucket, "second") as writer:
        writer.write(second)
        assert id(writer.stream._buffer) in reused
    small = b"tiny"
    with s3.client.put_object(s3.bucket, "small") as writer:
        writer.write(small)
        assert id(writer.stream._buffer) in reused
    assert s3.read("first") == first
    assert s3.read("second") == second
    assert s3.read("small") == small
    assert transport.part_buffers.idle_bytes() <= transport.concurrency * PART


def test_part_buffers_keep_at_most_their_byte_limit() -> None:
    buffers = PartBuffers(limit_bytes=100)
    buffers.give(bytearray(101))  # larger than the limit: not kept
    assert buffers.idle_bytes() == 0
    first, second, third = bytearray(40), bytearray(40), bytearray(30)
    for buffer in (first, second, third):
        buffers.give(buffer)
    assert buffers.idle_bytes() == 110 - 40  # the oldest went
    assert buffers.take(40) is second
    assert len(buffers.take(40)) == 40  # none idle of that size: a new one
    assert buffers.take(30) is third
    assert buffers.idle_bytes() == 0


def test_part_buffers_of_an_aborted_upload_are_reused(s3: MockS3) -> None:
    transport = s3.client._transport
    writer = s3.client.put_object(s3.bucket, "aborted")
    writer.write(payload(int(2.5 * PART)))
    writer.abort()
    assert transport.part_buffers.idle_bytes() >= 2 * PART
    data = payload(10, seed=3)
    with s3.client.put_object(s3.bucket, "after") as writer:
        writer.write(data)
    assert s3.read("after") == data
    assert not s3.exists("aborted")
