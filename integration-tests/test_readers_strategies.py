"""Every reader strategy over real HTTP, on objects around the part size: full reads, readinto
in chunks and random seeks return exactly the object's bytes (``io.BytesIO`` is the model)."""

from __future__ import annotations

import io
import itertools
import random
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import MIB, PART, S3TestEnv, force_get_mode, payload

from s3torch.client import S3Client
from s3torch.readers import (
    DCPOptimizedS3Reader,
    ItemRange,
    RangedS3Reader,
    S3Reader,
    S3ReaderConstructor,
    SequentialS3Reader,
)

SIZES = [0, 1, PART - 1, PART + 1, 3 * PART + 7]
SIZE_IDS = ["0B", "1B", "part-1", "part+1", "3parts+7"]
GENERIC = {
    "sequential": S3ReaderConstructor.sequential(),
    "ranged-default": S3ReaderConstructor.range_based(),
    "ranged-unbuffered": S3ReaderConstructor.range_based(0),
}
READER_TYPES = {"sequential": SequentialS3Reader, "ranged-default": RangedS3Reader, "ranged-unbuffered": RangedS3Reader}


def upload(env: S3TestEnv, size: int, seed: int) -> tuple[str, bytes]:
    key = env.key(f"object-{size}.bin")
    data = payload(size, seed=seed)
    env.put(key, data)
    return key, data


def open_reader(client: S3Client, env: S3TestEnv, key: str, constructor: Any) -> S3Reader:
    return client.get_object(env.bucket, key, reader_constructor=constructor)


def read_in_chunks(reader: S3Reader, chunk: int) -> bytes:
    out = bytearray()
    buffer = bytearray(chunk)
    while count := reader.readinto(buffer):
        out += buffer[:count]
    return bytes(out)


def random_walk(reader: S3Reader, data: bytes, rng: random.Random, steps: int) -> None:
    """Random seeks (every whence, past the end too) and reads, checked against BytesIO."""
    model = io.BytesIO(data)
    size = len(data)
    for _ in range(steps):
        whence = rng.choice([io.SEEK_SET, io.SEEK_CUR, io.SEEK_END])
        base = {io.SEEK_SET: 0, io.SEEK_CUR: model.tell(), io.SEEK_END: size}[whence]
        offset = rng.randint(-base, size + 100 - base)
        position = reader.seek(offset, whence)
        assert position == model.seek(min(base + offset, size))
        count = rng.choice([1, 17, 4096, MIB + 3, 2 * MIB, rng.randint(0, size + 1)])
        if rng.random() < 0.5:
            assert reader.read(count) == model.read(count), (position, count)
        else:
            got, expected = bytearray(count), bytearray(count)
            assert reader.readinto(got) == model.readinto(expected), (position, count)
            assert got == expected, (position, count)
        assert reader.tell() == model.tell()


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
@pytest.mark.parametrize("strategy", list(GENERIC))
def test_generic_strategies_return_the_object(s3: S3TestEnv, strategy: str, size: int) -> None:
    key, data = upload(s3, size, seed=size % 251)
    client = s3.new_client(part_size=PART)
    constructor = GENERIC[strategy]

    reader = open_reader(client, s3, key, constructor)
    assert type(reader) is READER_TYPES[strategy]
    assert reader.read() == data
    assert reader.read() == b""
    assert reader.tell() == size

    # Odd chunks straddle part boundaries; chunks of a MiB and more take the sequential
    # reader's pass-through path.
    for chunk in (1_000_003, MIB + 5):
        assert read_in_chunks(open_reader(client, s3, key, constructor), chunk) == data

    reader = open_reader(client, s3, key, constructor)
    random_walk(reader, data, random.Random(size), steps=14)
    reader.seek(0)
    assert reader.read() == data  # whatever the walk left behind, it all reads back


@pytest.mark.parametrize("mode", ["serial", "parallel"])
@pytest.mark.parametrize("strategy", ["sequential", "ranged-default"])
def test_pass_through_and_backward_seeks_in_both_get_modes(
    s3: S3TestEnv, monkeypatch: pytest.MonkeyPatch, strategy: str, mode: str
) -> None:
    settings = force_get_mode(monkeypatch, mode)
    key, data = upload(s3, 3 * PART + 7, seed=3)
    client = s3.new_client(part_size=PART, **settings)
    reader = open_reader(client, s3, key, GENERIC[strategy])
    assert reader.read(10) == data[:10]
    big = bytearray(PART + 3 * MIB)  # from the stream's front, straight into this buffer
    assert reader.readinto(big) == len(big)
    assert big == data[10 : 10 + len(big)]
    reader.seek(5)
    assert reader.read(PART) == data[5 : 5 + PART]  # back over the pass-through gap
    reader.seek(-7, io.SEEK_END)
    assert reader.read() == data[-7:]
    reader.seek(0)
    assert reader.read() == data


# ---- the range-based reader's adaptive read-ahead, against a real object ----------------------

WALK_SIZE = 2 * MIB + 13
WALK_STEPS = st.lists(
    st.tuples(
        st.integers(0, WALK_SIZE + 5),  # seek target (past the end too)
        st.sampled_from([0, 1, 8, 4096, 70_000, 300_000, MIB + 1, WALK_SIZE]),
        st.booleans(),  # seek first, or read on from where the last read ended
        st.booleans(),  # readinto instead of read
    ),
    min_size=1,
    max_size=12,
)


@pytest.fixture
def walk_object(s3: S3TestEnv) -> tuple[S3Client, str, bytes]:
    """One object for every example of the walk (hypothesis reuses the test's fixtures)."""
    key, data = upload(s3, WALK_SIZE, seed=41)
    return s3.new_client(part_size=PART), key, data


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(buffer_size=st.sampled_from([None, 0, 100_000]), steps=WALK_STEPS)
def test_ranged_reader_returns_the_bytes_on_any_access_pattern(
    walk_object: tuple[S3Client, str, bytes],
    s3: S3TestEnv,
    buffer_size: int | None,
    steps: list[tuple[int, int, bool, bool]],
) -> None:
    client, key, data = walk_object
    reader = open_reader(client, s3, key, S3ReaderConstructor.range_based(buffer_size))
    model = io.BytesIO(data)
    for target, count, seek, into in steps:
        if seek:
            assert reader.seek(target) == model.seek(min(target, WALK_SIZE))
        if into:
            got, expected = bytearray(count), bytearray(count)
            assert reader.readinto(got) == model.readinto(expected), (model.tell(), count)
            assert got == expected, (model.tell(), count)
        else:
            assert reader.read(count) == model.read(count), (model.tell(), count)
        assert reader.tell() == model.tell()


# ---- DCP-optimized -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanItem:
    """What range injection uses of a DCP ``ReadItem``."""

    storage_index: int


@dataclass(frozen=True)
class StorageInfo:
    """What it uses of a DCP ``_StorageInfo``."""

    relative_path: str
    offset: int
    length: int


def inject_ranges(constructor: Any, bucket: str, key: str, items: list[ItemRange]) -> None:
    """What ``S3StorageReader.prepare_local_plan`` does: the plan's ranges of ``s3://bucket/key``."""
    storage = {index: StorageInfo(key, item.start, item.end - item.start) for index, item in enumerate(items)}
    constructor.set_item_ranges_by_file([PlanItem(index) for index in storage], storage, f"s3://{bucket}")


def dcp_items(size: int) -> list[ItemRange]:
    """A few sorted, disjoint item ranges with gaps, inside an object of ``size`` bytes."""
    candidates = [
        (0, min(size, 10)),
        (size // 3, size // 3 + size // 5),
        (size // 2 + 1, size // 2 + 2),
        (size - size // 10 - 1, size),
    ]
    items: list[ItemRange] = []
    for first, last in candidates:
        start, end = max(0, first), min(size, last)
        if end > start and (not items or start >= items[-1].end):
            items.append(ItemRange(start, end))
    return items


DCP_SIZES = [size for size in SIZES if size > 0]  # an empty object has no item to read


@pytest.mark.parametrize("size", DCP_SIZES, ids=SIZE_IDS[1:])
@pytest.mark.parametrize("gap", [0, None, float("inf")], ids=["gap-0", "gap-default", "gap-inf"])
def test_dcp_optimized_returns_the_items(s3: S3TestEnv, size: int, gap: float | None) -> None:
    key, data = upload(s3, size, seed=size % 241)
    client = s3.new_client(part_size=PART)
    items = dcp_items(size)
    assert items

    def new_reader() -> DCPOptimizedS3Reader:
        constructor = S3ReaderConstructor.dcp_optimized() if gap is None else S3ReaderConstructor.dcp_optimized(gap)
        inject_ranges(constructor, s3.bucket, key, items)
        reader = client.get_object(s3.bucket, key, reader_constructor=constructor)
        assert isinstance(reader, DCPOptimizedS3Reader)
        return reader

    # Whole items with readinto, the way torch.distributed.checkpoint loads tensors.
    reader = new_reader()
    for item in items:
        reader.seek(item.start)
        buffer = bytearray(item.end - item.start)
        assert reader.readinto(buffer) == len(buffer)
        assert buffer == data[item.start : item.end]

    # Random access inside each item, forward across items, skipping some.
    rng = random.Random(size)
    reader = new_reader()
    for item in items:
        if rng.random() < 0.3 and item is not items[-1]:
            continue
        for _ in range(3):
            start = rng.randrange(item.start, item.end)
            end = rng.randint(start + 1, item.end)
            reader.seek(start)
            assert reader.read(end - start) == data[start:end]
        reader.seek(item.start)
        assert reader.read(item.end - item.start) == data[item.start : item.end]
    reader.close()
    assert reader.closed


def test_dcp_items_are_sorted_disjoint_and_inside_the_object() -> None:
    for size in DCP_SIZES:
        items = dcp_items(size)
        assert items
        assert all(a.end <= b.start for a, b in itertools.pairwise(items))
        assert items[-1].end <= size
