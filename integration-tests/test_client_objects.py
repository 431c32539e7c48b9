"""Every ``S3Client`` method over real HTTP: GET streams and ranges, uploads of every shape,
head, list, delete, copy, and the writer's publish/abort semantics."""

from __future__ import annotations

import array
import math
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from support import PART, RecordedRequest, Rule, S3TestEnv, is_multipart_etag, md5_etag, object_gets, payload

from s3torch.client import GetObjectStream, ListObjectResult, ObjectInfo, S3Exception
from s3torch_test_support import RANGES_AROUND_PARTS, THREE_PART_SIZE

SIZE = THREE_PART_SIZE
RANGES = RANGES_AROUND_PARTS


def read_all(stream: GetObjectStream, how: str) -> bytes:
    if how == "iterate":
        return b"".join(bytes(chunk) for chunk in stream)
    out = bytearray()
    buffer = bytearray(1_000_003)  # odd size: reads straddle part boundaries
    while count := stream.readinto(buffer):
        out += buffer[:count]
    return bytes(out)


@pytest.mark.parametrize("how", ["iterate", "readinto"])
def test_get_object_stream_returns_every_range_exactly(s3: S3TestEnv, how: str) -> None:
    key = s3.key("ranges.bin")
    data = payload(SIZE, seed=1)
    s3.put(key, data)
    client = s3.new_client(part_size=PART)
    for start, end in RANGES:
        stream = client.get_object_stream(s3.bucket, key, start, end)
        assert stream.tell() == (start or 0)
        got = read_all(stream, how)
        expected = data[start or 0 : end]
        assert len(got) == len(expected), f"range [{start}, {end})"
        assert got == expected, f"range [{start}, {end})"
        assert stream.tell() == (start or 0) + len(expected), f"range [{start}, {end})"


def test_get_object_stream_reports_size_and_etag_and_reads_once(s3: S3TestEnv) -> None:
    key = s3.key("once.bin")
    data = payload(PART + 10, seed=2)
    etag = s3.put(key, data)
    stream = s3.new_client(part_size=PART).get_object_stream(s3.bucket, key)
    assert bytes(next(stream)) == data[:PART]
    assert stream.size == len(data)
    assert stream.etag == etag
    assert b"".join(bytes(c) for c in stream) == data[PART:]
    with pytest.raises(StopIteration):
        next(stream)
    with pytest.raises(StopIteration):
        next(stream)


def test_get_object_stream_of_empty_object(s3: S3TestEnv) -> None:
    key = s3.key("empty")
    s3.put(key, b"")
    stream = s3.client.get_object_stream(s3.bucket, key)
    assert list(stream) == []
    assert stream.size == 0
    assert s3.client.get_object_stream(s3.bucket, key).readinto(bytearray(10)) == 0


def test_get_object_stream_close_stops_reading(s3: S3TestEnv) -> None:
    key = s3.key("closed.bin")
    s3.put(key, payload(SIZE, seed=3))
    with s3.new_client(part_size=PART).get_object_stream(s3.bucket, key) as stream:
        assert len(next(stream)) == PART
    with pytest.raises(StopIteration):
        next(stream)
    with pytest.raises(ValueError, match="closed"):
        stream.readinto(bytearray(10))


# ---- uploads ------------------------------------------------------------------------------


def test_get_object_stream_widens_its_window_on_slow_connections(faulty_s3: S3TestEnv) -> None:
    """Every GET answered after 200 ms (S3's first-byte latency, exaggerated): each connection
    delivers a part at well under the 100 MB/s ``concurrency`` assumes, so the stream widens its
    window from ``concurrency`` (2 at 0.8 Gb/s) to the part pool's threads (4), and still
    returns exactly the object's bytes."""
    key = faulty_s3.key("slow.bin")
    data = payload(5 * PART + 3, seed=31)
    faulty_s3.put(key, data)
    assert faulty_s3.proxy is not None
    first_consumed = threading.Event()

    def latency(_: RecordedRequest) -> None:
        time.sleep(0.2)  # emulated latency, not a wait for an event

    def held_then_latency(request: RecordedRequest) -> None:
        # The stream widens when it has to wait for the next part. Parts are held until the first
        # part has been consumed, so the part after it is still unanswered (by at least the latency)
        # when the stream turns to it, however slowly a loaded machine delivered the first part.
        first_consumed.wait(30)
        latency(request)

    faulty_s3.proxy.add(Rule(object_gets(faulty_s3.bucket, key, 1), before=latency))
    faulty_s3.proxy.add(Rule(object_gets(faulty_s3.bucket, key), before=held_then_latency, times=None))
    client = faulty_s3.new_client(part_size=PART, throughput_target_gbps=0.8)
    stream = client.get_object_stream(faulty_s3.bucket, key)
    windows, in_flight = [], []
    out = bytearray()
    for chunk in stream:
        out += chunk
        windows.append(stream._window)
        in_flight.append(len(stream._parts))
        first_consumed.set()
    assert out == data
    assert (windows[0], in_flight[0]) == (2, 2)  # after the first part: concurrency parts queued
    assert windows[-1] == 4  # 100 MB/s wanted, < 25 MB/s per connection: 5 wanted, the pool has 4
    assert max(in_flight) == 4, in_flight  # more than concurrency at once, never more than the pool


@pytest.mark.parametrize(
    ("size", "parts"),
    [(0, 0), (1, 0), (PART - 1, 0), (PART, 0), (PART + 1, 2), (int(3.5 * PART), 4)],
    ids=["0B", "1B", "part-1", "part", "part+1", "3.5parts"],
)
def test_put_object_sizes(s3: S3TestEnv, size: int, parts: int) -> None:
    """Up to one part: a single PutObject (MD5 ETag). Past it: a multipart upload ("-N" ETag)."""
    key = s3.key(f"size-{size}")
    data = payload(size, seed=size)
    client = s3.new_client(part_size=PART)
    with client.put_object(s3.bucket, key) as writer:
        assert writer.write(data) == size
        assert writer.tell() == size
    assert s3.read(key) == data
    etag = s3.boto.head_object(Bucket=s3.bucket, Key=key)["ETag"]
    if parts:
        assert is_multipart_etag(etag)
        assert etag.endswith(f'-{parts}"')
    else:
        assert etag == md5_etag(data)
    head = client.head_object(s3.bucket, key)
    assert (head.size, head.etag) == (size, etag)
    assert s3.uploads() == []


def test_put_object_in_uneven_writes(s3: S3TestEnv) -> None:
    key = s3.key("uneven.bin")
    data = payload(int(3.5 * PART), seed=4)
    step = 1024 * 1024 + 7
    with s3.new_client(part_size=PART).put_object(s3.bucket, key) as writer:
        for offset in range(0, len(data), step):
            assert writer.write(data[offset : offset + step]) == len(data[offset : offset + step])
        assert writer.tell() == len(data)
    assert s3.read(key) == data


def _buffers() -> Iterator[Any]:
    raw = payload(3000, seed=5)
    yield pytest.param(raw, raw, id="bytes")
    yield pytest.param(bytearray(raw), raw, id="bytearray")
    yield pytest.param(memoryview(raw)[100:2100], raw[100:2100], id="memoryview-slice")
    doubles = array.array("d", (i / 3 for i in range(500)))
    yield pytest.param(doubles, doubles.tobytes(), id="array.array")
    ints = array.array("i", range(PART // 4 + 1000))  # more than a part: a multipart upload
    yield pytest.param(ints, ints.tobytes(), id="array.array-multipart")
    try:
        import numpy
    except ImportError:  # numpy is not a dependency: array.array covers typed buffers
        return
    floats = numpy.arange(1000, dtype=numpy.float32).reshape(10, 100)
    yield pytest.param(floats, floats.tobytes(), id="numpy")


@pytest.mark.parametrize(("buffer", "expected"), list(_buffers()))
def test_put_object_accepts_buffers(s3: S3TestEnv, buffer: Any, expected: bytes) -> None:
    key = s3.key("buffer.bin")
    with s3.new_client(part_size=PART).put_object(s3.bucket, key) as writer:
        assert writer.write(buffer) == len(expected)
    assert s3.read(key) == expected


@pytest.mark.parametrize("size", [10, PART + 10], ids=["single", "multipart"])
def test_put_object_storage_class(s3: S3TestEnv, size: int) -> None:
    key = s3.key("ia.bin")
    client = s3.new_client(part_size=PART)
    with client.put_object(s3.bucket, key, storage_class="STANDARD_IA") as writer:
        writer.write(payload(size))
    assert s3.boto.head_object(Bucket=s3.bucket, Key=key)["StorageClass"] == "STANDARD_IA"
    assert client.head_object(s3.bucket, key).storage_class == "STANDARD_IA"


def test_put_object_overwrites(s3: S3TestEnv) -> None:
    key = s3.key("again.bin")
    for data in (b"first version", b"", b"third"):
        with s3.client.put_object(s3.bucket, key) as writer:
            writer.write(data)
        assert s3.read(key) == data


# ---- the writer over HTTP -----------------------------------------------------------------


@pytest.mark.parametrize("size", [1000, int(2.5 * PART)], ids=["single", "multipart"])
def test_exception_inside_with_publishes_nothing(s3: S3TestEnv, size: int) -> None:
    key = s3.key("aborted.bin")
    client = s3.new_client(part_size=PART)
    with pytest.raises(RuntimeError, match="boom"), client.put_object(s3.bucket, key) as writer:
        writer.write(payload(size))
        if size > PART:
            assert [u["Key"] for u in s3.uploads()] == [key]  # parts were on their way
        raise RuntimeError("boom")
    assert writer.closed
    assert not s3.exists(key)
    assert s3.uploads() == []


@pytest.mark.parametrize("size", [1000, int(2.5 * PART)], ids=["single", "multipart"])
def test_writer_dropped_without_close_publishes_nothing(s3: S3TestEnv, size: int) -> None:
    key = s3.key("dropped.bin")
    writer = s3.new_client(part_size=PART).put_object(s3.bucket, key)
    writer.write(payload(size))
    if size > PART:
        assert [u["Key"] for u in s3.uploads()] == [key]
    del writer  # the last reference: CPython finalizes it now
    assert not s3.exists(key)
    assert s3.uploads() == []


def test_writer_close_is_idempotent(s3: S3TestEnv) -> None:
    key = s3.key("closed-thrice.bin")
    writer = s3.new_client(part_size=PART).put_object(s3.bucket, key)
    writer.write(payload(PART + 1))
    for _ in range(3):
        writer.close()
    assert writer.closed
    assert s3.read(key) == payload(PART + 1)


# ---- head, list, delete, copy --------------------------------------------------------------


def test_head_object(s3: S3TestEnv) -> None:
    key = s3.key("head.bin")
    data = payload(12345)
    before = time.time()
    s3.put(key, data)
    head = s3.client.head_object(s3.bucket, key)
    assert head.size == len(data)
    assert head.etag == md5_etag(data)
    assert head.storage_class is None
    assert head.restore_status is None
    assert before - 300 <= head.last_modified <= time.time() + 300
    assert not hasattr(head, "key")


def _create_keys(s3: S3TestEnv, names: list[str]) -> None:
    s3.put_many({s3.key(name): name.encode() for name in names})


def test_list_objects_pages(s3: S3TestEnv) -> None:
    names = [f"many/{i:05d}" for i in range(2500)]
    _create_keys(s3, names)
    expected = {s3.key(name) for name in names}
    pages = list(s3.client.list_objects(s3.bucket, s3.key("many/")))
    assert len(pages) == math.ceil(len(names) / 1000) == 3
    assert all(isinstance(page, ListObjectResult) for page in pages)
    assert [len(page.object_info) for page in pages] == [1000, 1000, 500]
    keys = [info.key for page in pages for info in page.object_info]
    assert keys == sorted(expected)
    info = pages[0].object_info[0]
    assert isinstance(info, ObjectInfo)
    name = info.key[len(s3.key("")) :]
    assert (info.size, info.etag, info.storage_class) == (len(name), md5_etag(name.encode()), None)
    assert info.last_modified > 0


def test_list_objects_with_delimiter_and_prefixes(s3: S3TestEnv) -> None:
    names = ["a/1", "a/2", "b/x/1", "c", "d/"]
    _create_keys(s3, names)
    base = s3.location.prefix  # "" on moto: the empty prefix lists the whole (fresh) bucket
    pages = list(s3.client.list_objects(s3.bucket, base, delimiter="/"))
    assert len(pages) == 1
    assert [info.key for info in pages[0].object_info] == [s3.key("c")]
    assert pages[0].common_prefixes == [s3.key("a/"), s3.key("b/"), s3.key("d/")]

    everything = [info.key for page in s3.client.list_objects(s3.bucket, base) for info in page.object_info]
    assert everything == sorted(s3.key(name) for name in names)

    inner = list(s3.client.list_objects(s3.bucket, s3.key("b/"), delimiter="/"))
    assert inner[0].object_info == []
    assert inner[0].common_prefixes == [s3.key("b/x/")]


def test_list_objects_of_unknown_prefix_is_one_empty_page(s3: S3TestEnv) -> None:
    stream = s3.client.list_objects(s3.bucket, s3.key("nothing-here/"))
    page = next(stream)
    assert (page.object_info, page.common_prefixes) == ([], [])
    assert stream.complete
    with pytest.raises(StopIteration):
        next(stream)


def test_delete_object(s3: S3TestEnv) -> None:
    key = s3.key("deleted.bin")
    s3.put(key, b"x")
    s3.client.delete_object(s3.bucket, key)
    assert not s3.exists(key)
    s3.client.delete_object(s3.bucket, key)  # a missing key is not an error


def test_copy_object(s3: S3TestEnv) -> None:
    source, target = s3.key("source.bin"), s3.key("target.bin")
    data = payload(PART + 3, seed=6)
    s3.put(source, data)
    s3.put(target, b"to be replaced")
    s3.client.copy_object(s3.bucket, source, s3.bucket, target)
    assert s3.read(target) == data
    assert s3.read(source) == data


def test_get_object_without_readers_names_the_distribution(s3: S3TestEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "s3torch.readers", None)
    s3.put(s3.key("k"), b"data")
    with pytest.raises(ImportError, match="s3torch-readers"):
        s3.client.get_object(s3.bucket, s3.key("k"))


def test_errors_name_the_object(s3: S3TestEnv) -> None:
    key = s3.key("missing.bin")
    with pytest.raises(S3Exception) as caught:
        s3.client.head_object(s3.bucket, key)
    assert f"s3://{s3.bucket}/{key}" in str(caught.value)
