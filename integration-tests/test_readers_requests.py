"""The requests readers send, counted by the fault proxy: no HEAD when the listing's object info
is given, one HEAD for the ranged reader without it, one GET per coalesced range group of the
DCP-optimized reader; and a reader pinned to the version it first saw raises
``ObjectChangedError`` when the object is overwritten between two of its reads."""

from __future__ import annotations

import io
import random
from dataclasses import dataclass
from typing import Any

import pytest
from support import MIB, PART, RecordedRequest, S3TestEnv, force_get_mode, payload

import s3torch.client
from s3torch.client import ObjectChangedError, ObjectInfo, S3Client, S3Exception
from s3torch.readers import (
    DEFAULT_MAX_GAP_SIZE,
    DCPOptimizedS3Reader,
    ItemRange,
    RangedS3Reader,
    S3ReaderConstructor,
    SequentialS3Reader,
)

SIZE = 3 * PART + 7


def object_requests(env: S3TestEnv, key: str, method: str) -> list[RecordedRequest]:
    assert env.proxy is not None
    return [r for r in env.proxy.requests if r.method == method and r.is_object(env.bucket, key)]


def listed_info(client: S3Client, env: S3TestEnv, key: str) -> ObjectInfo:
    infos = [info for page in client.list_objects(env.bucket, prefix=key) for info in page.object_info]
    (info,) = [info for info in infos if info.key == key]
    return info


@pytest.fixture
def stored(faulty_s3: S3TestEnv) -> tuple[str, bytes]:
    key = faulty_s3.key("counted.bin")
    data = payload(SIZE, seed=5)
    faulty_s3.put(key, data)
    return key, data


# ---- HEADs ------------------------------------------------------------------------------------


def test_sequential_full_read_with_listing_info_sends_no_head(faulty_s3: S3TestEnv, stored: tuple[str, bytes]) -> None:
    key, data = stored
    client = faulty_s3.new_client(part_size=PART)
    info = listed_info(client, faulty_s3, key)
    assert info.size == SIZE

    reader = client.get_object(faulty_s3.bucket, key, object_info=info)
    assert isinstance(reader, SequentialS3Reader)
    assert reader.read() == data
    assert object_requests(faulty_s3, key, "HEAD") == []
    assert object_requests(faulty_s3, key, "GET")


def test_sequential_seek_end_with_listing_info_sends_nothing(faulty_s3: S3TestEnv, stored: tuple[str, bytes]) -> None:
    key, data = stored
    client = faulty_s3.new_client(part_size=PART)
    info = listed_info(client, faulty_s3, key)
    reader = client.get_object(faulty_s3.bucket, key, object_info=info)
    assert reader.seek(0, io.SEEK_END) == SIZE
    assert reader.seek(-7, io.SEEK_END) == SIZE - 7
    assert object_requests(faulty_s3, key, "HEAD") == []
    assert object_requests(faulty_s3, key, "GET") == []
    assert reader.read() == data[-7:]
    assert object_requests(faulty_s3, key, "HEAD") == []


def test_sequential_without_info_heads_only_for_seek_end(faulty_s3: S3TestEnv, stored: tuple[str, bytes]) -> None:
    key, data = stored
    client = faulty_s3.new_client(part_size=PART)
    reader = client.get_object(faulty_s3.bucket, key)
    assert reader.read() == data  # the size comes from the GET itself
    assert object_requests(faulty_s3, key, "HEAD") == []

    reader = client.get_object(faulty_s3.bucket, key)
    assert reader.seek(0, io.SEEK_END) == SIZE
    assert len(object_requests(faulty_s3, key, "HEAD")) == 1
    assert object_requests(faulty_s3, key, "GET")  # only those of the first reader
    gets_before = len(object_requests(faulty_s3, key, "GET"))
    assert reader.seek(-1, io.SEEK_END) == SIZE - 1
    assert len(object_requests(faulty_s3, key, "GET")) == gets_before


@pytest.mark.parametrize("buffer_size", [None, 0, 1000], ids=["default", "unbuffered", "1000"])
@pytest.mark.parametrize("with_info", [False, True], ids=["head", "listing"])
def test_ranged_reader_heads_once_without_info_and_never_with_it(
    faulty_s3: S3TestEnv, stored: tuple[str, bytes], buffer_size: int | None, with_info: bool
) -> None:
    key, data = stored
    client = faulty_s3.new_client(part_size=PART)
    info = listed_info(client, faulty_s3, key) if with_info else None
    reader = client.get_object(
        faulty_s3.bucket, key, object_info=info, reader_constructor=S3ReaderConstructor.range_based(buffer_size)
    )
    assert isinstance(reader, RangedS3Reader)
    assert reader.read(100) == data[:100]
    reader.seek(2 * PART)
    assert reader.read(10) == data[2 * PART : 2 * PART + 10]
    reader.seek(-3, io.SEEK_END)
    assert reader.read() == data[-3:]
    assert len(object_requests(faulty_s3, key, "HEAD")) == (0 if with_info else 1)


# ---- GETs of the range-based reader's adaptive read-ahead --------------------------------------


def requested_ranges(env: S3TestEnv, key: str) -> list[tuple[int, int]]:
    """``[start, end)`` of every GET of ``key`` the proxy saw, from its Range header."""
    ranges = []
    for request in object_requests(env, key, "GET"):
        first, last = request.headers["range"].removeprefix("bytes=").split("-")
        ranges.append((int(first), int(last) + 1))
    return ranges


def test_ranged_reader_coalesces_small_sequential_reads(faulty_s3: S3TestEnv, stored: tuple[str, bytes]) -> None:
    key, data = stored
    # A part size above every read-ahead: each fetch of the reader is exactly one GET.
    client = faulty_s3.new_client(part_size=64 * MIB)
    reader = client.get_object(faulty_s3.bucket, key, reader_constructor=S3ReaderConstructor.range_based())
    out = bytearray()
    while chunk := reader.read(64 * 1024):
        out += chunk
    assert out == data
    # 1 MiB first, then fourfold, up to the 8 MiB buffer: four GETs for 2,000-odd reads.
    assert requested_ranges(faulty_s3, key) == [(0, MIB), (MIB, 5 * MIB), (5 * MIB, 13 * MIB), (13 * MIB, SIZE)]


def test_ranged_reader_random_reads_request_only_their_bytes(faulty_s3: S3TestEnv, stored: tuple[str, bytes]) -> None:
    key, data = stored
    client = faulty_s3.new_client(part_size=64 * MIB)
    reader = client.get_object(faulty_s3.bucket, key, reader_constructor=S3ReaderConstructor.range_based())
    rng = random.Random(7)
    offsets = [rng.randrange(0, SIZE - MIB) for _ in range(12)]
    before = client.metrics()
    for offset in offsets:
        reader.seek(offset)
        buffer = bytearray(MIB)
        assert reader.readinto(buffer) == MIB
        assert buffer == data[offset : offset + MIB]
    assert requested_ranges(faulty_s3, key) == [(offset, offset + MIB) for offset in offsets]
    assert client.metrics().bytes_received - before.bytes_received == len(offsets) * MIB


def test_torch_load_through_the_ranged_reader_fetches_the_archive_about_once(faulty_s3: S3TestEnv) -> None:
    """torch.load's pattern: the archive's start, small reads back and forth around its end (the
    central directory), then the records front to back. The read-ahead follows it: few GETs, and
    about the archive's bytes (a fixed 8 MiB read-ahead fetches twice the archive here)."""
    import torch

    generator = torch.Generator().manual_seed(3)
    state = {f"small.{i}": torch.rand(1000, generator=generator) for i in range(300)}
    state |= {f"mid.{i}": torch.rand(100_000, generator=generator) for i in range(20)}
    state |= {f"large.{i}": torch.rand(1_000_000, generator=generator) for i in range(2)}
    archive = io.BytesIO()
    torch.save(state, archive)
    key = faulty_s3.key("state.pt")
    faulty_s3.put(key, archive.getvalue())
    size = len(archive.getvalue())

    client = faulty_s3.new_client(part_size=64 * MIB)
    reader = client.get_object(faulty_s3.bucket, key, reader_constructor=S3ReaderConstructor.range_based())
    loaded = torch.load(reader, weights_only=True)
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[name], tensor) for name, tensor in state.items())
    ranges = requested_ranges(faulty_s3, key)
    assert len(ranges) <= 16
    assert sum(end - start for start, end in ranges) <= size + 2 * MIB


# ---- GETs of the DCP-optimized reader ------------------------------------------------------------

# Gaps: 900 B, ~5 MiB, ~5 MiB, ~5 MiB.
DCP_ITEMS = [
    ItemRange(0, 100),
    ItemRange(1000, 2000),
    ItemRange(PART, PART + 500),
    ItemRange(2 * PART + 10, 2 * PART + 20),
    ItemRange(3 * PART, 3 * PART + 7),
]


@dataclass(frozen=True)
class PlanItem:
    storage_index: int


@dataclass(frozen=True)
class StorageInfo:
    relative_path: str
    offset: int
    length: int


def dcp_constructor(gap: float | None, bucket: str, key: str) -> Any:
    constructor = S3ReaderConstructor.dcp_optimized() if gap is None else S3ReaderConstructor.dcp_optimized(gap)
    storage = {i: StorageInfo(key, item.start, item.end - item.start) for i, item in enumerate(DCP_ITEMS)}
    constructor.set_item_ranges_by_file([PlanItem(i) for i in storage], storage, f"s3://{bucket}")
    return constructor


def range_header(start: int, end: int) -> str:
    return f"bytes={start}-{end - 1}"


@pytest.mark.parametrize(
    ("gap", "groups"),
    [
        (0, [(i.start, i.end) for i in DCP_ITEMS]),
        (MIB, [(0, 2000), (PART, PART + 500), (2 * PART + 10, 2 * PART + 20), (3 * PART, 3 * PART + 7)]),
        (None, [(0, 3 * PART + 7)]),
        (float("inf"), [(0, 3 * PART + 7)]),
    ],
    ids=["gap-0", "gap-1MiB", "gap-default", "gap-inf"],
)
def test_dcp_reader_sends_one_get_per_range_group(
    faulty_s3: S3TestEnv, stored: tuple[str, bytes], gap: float | None, groups: list[tuple[int, int]]
) -> None:
    key, data = stored
    # A part size larger than any group: each group's stream is exactly one GET.
    client = faulty_s3.new_client(part_size=64 * MIB)
    reader = client.get_object(faulty_s3.bucket, key, reader_constructor=dcp_constructor(gap, faulty_s3.bucket, key))
    assert isinstance(reader, DCPOptimizedS3Reader)
    assert [(g.start, g.end) for g in reader.groups] == groups
    if gap is None:
        assert reader.groups[0].end - reader.groups[0].start <= DEFAULT_MAX_GAP_SIZE
    for item in DCP_ITEMS:
        reader.seek(item.start)
        buffer = bytearray(item.end - item.start)
        assert reader.readinto(buffer) == len(buffer)
        assert buffer == data[item.start : item.end]
    reader.close()
    gets = object_requests(faulty_s3, key, "GET")
    assert [r.headers.get("range") for r in gets] == [range_header(start, end) for start, end in groups]
    assert object_requests(faulty_s3, key, "HEAD") == []


# ---- version pinning ---------------------------------------------------------------------------


def test_object_changed_error_is_exported() -> None:
    assert "ObjectChangedError" in s3torch.client.__all__
    assert s3torch.client.ObjectChangedError is ObjectChangedError
    assert issubclass(ObjectChangedError, S3Exception)


@pytest.mark.parametrize("buffer_size", [0, 1000, None], ids=["unbuffered", "1000", "default"])
@pytest.mark.parametrize("with_info", [False, True], ids=["head", "listing"])
def test_ranged_reader_raises_when_the_object_is_overwritten_between_reads(
    s3: S3TestEnv, buffer_size: int | None, with_info: bool
) -> None:
    key = s3.key("overwritten.bin")
    data = payload(SIZE, seed=6)
    s3.put(key, data)
    client = s3.new_client(part_size=PART)
    info = listed_info(client, s3, key) if with_info else None
    constructor = S3ReaderConstructor.range_based(buffer_size)
    reader = client.get_object(s3.bucket, key, object_info=info, reader_constructor=constructor)
    assert reader.read(10) == data[:10]
    new_data = payload(SIZE + with_info, seed=7)  # same size, or not
    s3.put(key, new_data)
    reader.seek(2 * PART)  # beyond even the default 8 MiB buffer
    with pytest.raises(ObjectChangedError):
        reader.read(10)
    # A new reader reads the new version.
    fresh = client.get_object(s3.bucket, key, reader_constructor=constructor)
    fresh.seek(2 * PART)
    assert fresh.read(10) == new_data[2 * PART : 2 * PART + 10]
    assert fresh.seek(0, io.SEEK_END) == len(new_data)


def test_sequential_reader_raises_when_the_object_is_overwritten_mid_read(
    s3: S3TestEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = force_get_mode(monkeypatch, "serial")  # the rest of the object: one GET, sent later
    key = s3.key("overwritten.bin")
    data = payload(SIZE, seed=8)
    s3.put(key, data)
    reader = s3.new_client(part_size=PART, **settings).get_object(s3.bucket, key)
    assert reader.read(10) == data[:10]  # the first part
    s3.put(key, payload(SIZE, seed=9))
    with pytest.raises(ObjectChangedError):
        reader.read()


def test_sequential_gap_refetch_is_pinned_to_the_first_version(s3: S3TestEnv) -> None:
    key = s3.key("overwritten.bin")
    data = payload(SIZE, seed=10)
    s3.put(key, data)
    reader = s3.new_client(part_size=PART).get_object(s3.bucket, key)
    big = bytearray(2 * MIB)
    assert reader.readinto(big) == len(big)  # passed through, not kept
    assert big == data[: len(big)]
    s3.put(key, payload(SIZE, seed=11))
    reader.seek(0)
    with pytest.raises(ObjectChangedError):
        reader.read(10)  # the gap [0, 2 MiB) must come from the version first read


def test_dcp_reader_raises_when_the_object_is_overwritten_between_groups(s3: S3TestEnv) -> None:
    key = s3.key("overwritten.bin")
    data = payload(SIZE, seed=12)
    s3.put(key, data)
    client = s3.new_client(part_size=PART)
    reader = client.get_object(s3.bucket, key, reader_constructor=dcp_constructor(0, s3.bucket, key))
    first = DCP_ITEMS[0]
    assert reader.read(first.end - first.start) == data[first.start : first.end]
    s3.put(key, payload(SIZE, seed=13))
    reader.seek(DCP_ITEMS[2].start)
    with pytest.raises(ObjectChangedError):
        reader.read(10)
