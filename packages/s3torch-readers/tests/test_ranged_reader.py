"""``RangedS3Reader``: the size first, seeks that never fetch, small reads through a read-ahead
buffer that grows on sequential access up to ``buffer_size`` and shrinks on jumps, large reads
straight into the destination, and forward overlaps served partly from the buffer (upstream
tst/unit/test_s3reader_range_based.py, with the adaptive read-ahead in place of the fixed one)."""

from __future__ import annotations

import io
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from readers_fakes import FakeObject

from s3torch.client import S3Exception
from s3torch.readers import DEFAULT_BUFFER_SIZE, RangedS3Reader
from s3torch.readers._ranged import INITIAL_READAHEAD, MIN_READAHEAD

MIB = 1024 * 1024
KIB = 1024
DATA = random.Random(11).randbytes(1000)


def read_in_chunks(reader: RangedS3Reader, chunk: int) -> bytes:
    out = bytearray()
    buffer = bytearray(chunk)
    while count := reader.readinto(buffer):
        out += buffer[:count]
    return bytes(out)


def test_default_buffer_size_is_eight_mebibytes() -> None:
    assert DEFAULT_BUFFER_SIZE == 8 * MIB


@pytest.mark.parametrize("buffer_size", [None, DEFAULT_BUFFER_SIZE], ids=["none", "explicit"])
def test_none_means_the_default_buffer(buffer_size: int | None) -> None:
    data = random.Random(12).randbytes(30 * MIB)
    obj = FakeObject(data)
    reader = obj.ranged(buffer_size)
    assert reader.read(1) == data[:1]
    assert obj.ranges == [(0, MIB)]  # the initial read-ahead
    # Sequential reads grow the read-ahead fourfold per GET, up to the 8 MiB cap.
    assert read_in_chunks(reader, 64 * 1024) == data[1:]
    assert obj.ranges == [
        (0, MIB),
        (MIB, 5 * MIB),
        (5 * MIB, 13 * MIB),
        (13 * MIB, 21 * MIB),
        (21 * MIB, 29 * MIB),
        (29 * MIB, 30 * MIB),
    ]


def test_zero_disables_the_buffer() -> None:
    obj = FakeObject(DATA)
    reader = obj.ranged(0)
    assert reader.read(1) == DATA[:1]
    assert reader.read(1) == DATA[1:2]
    reader.seek(0)
    assert reader.read(2) == DATA[:2]
    buffer = bytearray(3)
    assert reader.readinto(buffer) == 3
    assert buffer == DATA[2:5]
    assert obj.ranges == [(0, 1), (1, 2), (0, 2), (2, 5)]


@pytest.mark.parametrize("buffer_size", [-1, -DEFAULT_BUFFER_SIZE])
def test_negative_buffer_size_raises(buffer_size: int) -> None:
    obj = FakeObject(DATA)
    with pytest.raises(ValueError, match="buffer_size"):
        obj.ranged(buffer_size)


@pytest.mark.parametrize("buffer_size", [1.5, "8", True])
def test_non_integer_buffer_size_raises(buffer_size: object) -> None:
    obj = FakeObject(DATA)
    with pytest.raises(TypeError, match="buffer_size"):
        obj.ranged(buffer_size)  # type: ignore[arg-type]


@pytest.mark.parametrize("first", ["read", "readinto", "read-all"])
def test_size_is_obtained_before_the_first_read(first: str) -> None:
    obj = FakeObject(DATA)
    reader = obj.ranged(100)
    assert obj.events == []
    if first == "read":
        reader.read(5)
    elif first == "readinto":
        reader.readinto(bytearray(5))
    else:
        reader.read()
    assert obj.events[0] == "info"
    assert obj.events.count("info") == 1
    reader.read(5)
    reader.seek(0, io.SEEK_END)
    assert obj.events.count("info") == 1


@pytest.mark.parametrize("buffer_size", [None, 0, 10])
def test_seek_never_fetches(buffer_size: int | None) -> None:
    obj = FakeObject(DATA)
    reader = obj.ranged(buffer_size)
    assert reader.seek(10) == 10
    assert reader.seek(5, io.SEEK_CUR) == 15
    assert reader.seek(-5, io.SEEK_END) == 995
    assert reader.seek(5000) == 1000
    assert reader.seek(5000, io.SEEK_CUR) == 1000
    assert reader.seek(0) == 0
    assert obj.streams == []
    assert obj.info_calls == 1


def test_small_read_loads_the_buffer_from_the_position() -> None:
    data = random.Random(13).randbytes(250)
    obj = FakeObject(data)
    reader = obj.ranged(100)
    reader.seek(10)
    assert reader.read(5) == data[10:15]
    assert obj.ranges == [(10, 110)]
    assert reader.read(5) == data[15:20]  # from the buffer
    reader.seek(50)
    assert reader.read(60) == data[50:110]  # the rest of the buffer, exactly
    reader.seek(10)
    buffer = bytearray(99)
    assert reader.readinto(buffer) == 99
    assert buffer == data[10:109]
    assert len(obj.streams) == 1
    reader.seek(200)
    assert reader.read(5) == data[200:205]
    assert obj.ranges == [(10, 110), (200, 250)]  # clamped to the size


@pytest.mark.parametrize(
    ("back_to", "second_get"),
    [(300, (300, 400)), (450, (450, 500))],
    ids=["far-before-loads-it-again", "just-before-fetches-only-the-gap"],
)
def test_read_before_the_buffer(back_to: int, second_get: tuple[int, int]) -> None:
    obj = FakeObject(DATA)
    reader = obj.ranged(100)
    reader.seek(500)
    assert reader.read(10) == DATA[500:510]
    reader.seek(back_to)
    assert reader.read(80) == DATA[back_to : back_to + 80]  # near: the gap, then the kept buffer
    assert obj.ranges == [(500, 600), second_get]


@pytest.mark.parametrize("how", ["read", "readinto"])
@pytest.mark.parametrize("count", [100, 101, 350])
def test_large_read_goes_direct(how: str, count: int) -> None:
    obj = FakeObject(DATA)
    reader = obj.ranged(100)
    reader.seek(3)
    if how == "read":
        assert reader.read(count) == DATA[3 : 3 + count]
    else:
        buffer = bytearray(count)
        assert reader.readinto(buffer) == count
        assert buffer == DATA[3 : 3 + count]
    assert obj.ranges == [(3, 3 + count)]
    # The buffer was not filled: the next small read loads it.
    assert reader.read(1) == DATA[3 + count : 4 + count]
    assert obj.ranges[1] == (3 + count, 103 + count)


def test_read_to_the_end_is_one_range() -> None:
    obj = FakeObject(DATA)
    reader = obj.ranged(100)
    reader.seek(10)
    assert reader.read() == DATA[10:]
    assert obj.ranges == [(10, 1000)]


def test_read_to_the_end_smaller_than_the_buffer_goes_through_it() -> None:
    obj = FakeObject(DATA)
    reader = obj.ranged(100)
    reader.seek(950)
    assert reader.read() == DATA[950:]
    assert obj.ranges == [(950, 1000)]
    reader.seek(960)
    assert reader.read(10) == DATA[960:970]
    assert len(obj.streams) == 1


def test_reads_back_and_forth_around_the_end_are_served_from_the_buffer() -> None:
    data = random.Random(24).randbytes(5 * MIB)
    obj = FakeObject(data)
    reader = obj.ranged()
    reader.seek(0)
    assert reader.read(4) == data[:4]
    # A zip reader's search for the end of central directory, as torch.load does it.
    for offset, count in ((-4096, 4096), (-22, 22), (-42, 42), (-98, 98)):
        reader.seek(offset, io.SEEK_END)
        assert reader.read(count) == data[len(data) + offset :][:count]
    assert obj.ranges == [(0, MIB), (len(data) - 4096, len(data))]


def test_forward_overlap_serves_the_overlap_and_requests_only_the_rest() -> None:
    obj = FakeObject(DATA)
    reader = obj.ranged(100)
    assert reader.read(10) == DATA[:10]  # buffer [0, 100)
    reader.seek(90)
    assert reader.read(30) == DATA[90:120]  # 10 from the buffer, 20 < 100: buffer [100, 200)
    assert obj.ranges == [(0, 100), (100, 200)]
    reader.seek(190)
    assert reader.read(150) == DATA[190:340]  # 10 from the buffer, 140 >= 100: direct
    assert obj.ranges == [(0, 100), (100, 200), (200, 340)]
    reader.seek(195)
    buffer = bytearray(10)
    assert reader.readinto(buffer) == 10  # the buffer [100, 200) still serves its part
    assert buffer == DATA[195:205]
    assert obj.ranges[3] == (200, 300)


def test_forward_overlap_at_the_end_of_the_object() -> None:
    obj = FakeObject(DATA)
    reader = obj.ranged(100)
    reader.seek(880)
    assert reader.read(10) == DATA[880:890]  # buffer [880, 980)
    reader.seek(970)
    assert reader.read(100) == DATA[970:]  # 10 from the buffer, then [980, 1000)
    assert obj.ranges == [(880, 980), (980, 1000)]


def test_read_inside_the_buffer_after_a_direct_read_does_not_fetch() -> None:
    obj = FakeObject(DATA)
    reader = obj.ranged(100)
    assert reader.read(5) == DATA[:5]  # buffer [0, 100)
    reader.seek(300)
    assert reader.read(200) == DATA[300:500]  # direct, the buffer stays [0, 100)
    reader.seek(20)
    assert reader.read(50) == DATA[20:70]
    assert obj.ranges == [(0, 100), (300, 500)]


def test_listing_info_is_used_for_the_size() -> None:
    obj = FakeObject(DATA, listed=True)
    reader = obj.ranged()
    assert reader.read() == DATA
    assert obj.info_calls == 1


def test_a_stream_shorter_than_the_size_raises() -> None:
    obj = FakeObject(DATA, stream_limit=500)
    reader = obj.ranged(100)
    reader.seek(450)
    with pytest.raises(S3Exception, match=r"returned 50 bytes for range 450-549"):
        reader.read(10)


def test_close_drops_the_buffer() -> None:
    obj = FakeObject(DATA)
    reader = obj.ranged(100)
    assert reader.read(10) == DATA[:10]
    reader.close()
    assert reader.closed
    with pytest.raises(ValueError, match="closed"):
        reader.readinto(bytearray(1))


def test_constructor_signature() -> None:
    obj = FakeObject(DATA)
    reader = RangedS3Reader(
        bucket=obj.bucket,
        key=obj.key,
        get_object_info=obj.get_object_info,
        get_stream=obj.get_stream,
        buffer_size=16,
    )
    assert reader.read(4) == DATA[:4]
    assert obj.ranges == [(0, 16)]


# ---- the adaptive read-ahead ------------------------------------------------------------------


def test_initial_and_minimum_read_ahead() -> None:
    assert INITIAL_READAHEAD == MIB
    assert MIN_READAHEAD == 64 * KIB


@pytest.mark.parametrize("chunk", [1, 4 * KIB, 100 * KIB + 3])
def test_small_sequential_reads_coalesce_into_few_gets(chunk: int) -> None:
    data = random.Random(14).randbytes(20 * MIB + 11)
    obj = FakeObject(data)
    reader = obj.ranged()
    out = bytearray()
    for _ in range(2000 if chunk == 1 else len(data) // chunk + 1):
        out += reader.read(chunk)
    assert bytes(out) == data[: len(out)]
    assert len(obj.ranges) <= 5  # 1 + 4 + 8 + 8 MiB cover the object
    assert sum(end - start for start, end in obj.ranges) <= len(data)  # no byte fetched twice


@pytest.mark.parametrize("how", ["read", "readinto"])
def test_random_reads_fetch_only_what_they_ask_for(how: str) -> None:
    data = random.Random(15).randbytes(64 * MIB)
    obj = FakeObject(data)
    reader = obj.ranged()
    rng = random.Random(16)
    offsets = [rng.randrange(0, len(data) - MIB) for _ in range(40)]
    for offset in offsets:
        reader.seek(offset)
        if how == "read":
            assert reader.read(MIB) == data[offset : offset + MIB]
        else:
            buffer = bytearray(MIB)
            assert reader.readinto(buffer) == MIB
            assert buffer == data[offset : offset + MIB]
    assert obj.ranges == [(offset, offset + MIB) for offset in offsets]  # one GET each, nothing more


def test_small_random_reads_fetch_at_most_the_minimum_read_ahead() -> None:
    data = random.Random(17).randbytes(64 * MIB)
    obj = FakeObject(data)
    reader = obj.ranged()
    rng = random.Random(18)
    for _ in range(50):
        offset = rng.randrange(0, len(data) - 4 * KIB)
        reader.seek(offset)
        assert reader.read(4 * KIB) == data[offset : offset + 4 * KIB]
    first, *rest = obj.ranges
    assert first[1] - first[0] == INITIAL_READAHEAD  # before the reader saw a jump
    assert len(rest) == 49
    assert all(end - start == MIN_READAHEAD for start, end in rest)


def test_a_jump_shrinks_the_read_ahead_and_sequential_reads_grow_it_back() -> None:
    data = random.Random(19).randbytes(40 * MIB)
    obj = FakeObject(data)
    reader = obj.ranged()
    assert reader.read(10) == data[:10]
    reader.seek(30 * MIB)
    assert read_in_chunks(reader, 16 * KIB) == data[30 * MIB :]
    start = 30 * MIB
    expected = [(0, MIB)]
    for size in (64 * KIB, 256 * KIB, MIB, 4 * MIB, 8 * MIB):
        expected.append((start, min(start + size, len(data))))
        start += size
    assert obj.ranges[: len(expected)] == expected
    assert all(end - start <= DEFAULT_BUFFER_SIZE for start, end in obj.ranges)


def test_a_record_header_and_body_after_a_jump_come_in_one_get() -> None:
    data = random.Random(20).randbytes(16 * MIB)
    obj = FakeObject(data)
    reader = obj.ranged()
    reader.seek(3 * MIB)
    reader.read(10)  # the first read: initial read-ahead
    for offset in (9 * MIB, 2 * MIB, 12 * MIB):
        reader.seek(offset)
        header = reader.read(8)
        body = reader.read(30 * KIB)
        assert header + body == data[offset : offset + 8 + 30 * KIB]
    assert obj.ranges[1:] == [(offset, offset + MIN_READAHEAD) for offset in (9 * MIB, 2 * MIB, 12 * MIB)]


def test_a_short_forward_skip_counts_as_sequential() -> None:
    data = random.Random(21).randbytes(20 * MIB)
    obj = FakeObject(data)
    reader = obj.ranged()
    position = 0
    while position + 100 * KIB <= len(data):
        reader.seek(position)
        assert reader.read(100 * KIB) == data[position : position + 100 * KIB]
        position += 100 * KIB + 64  # padding between items, as in archives and checkpoints
    assert len(obj.ranges) <= 5


def test_archives_read_trailer_first_are_fetched_in_few_gets() -> None:
    # torch.load of each item of a DCP file (torch's read_data on a range-based reader): the
    # zip trailer at the item's end first, then back to its records and data, item after item.
    item, items = 200 * KIB, 100
    data = random.Random(24).randbytes(item * items)
    obj = FakeObject(data)
    reader = obj.ranged()
    for start in range(0, len(data), item):
        reader.seek(start + item - 4 * KIB)
        assert reader.read(4 * KIB) == data[start + item - 4 * KIB : start + item]
        reader.seek(start)
        assert reader.read(64) == data[start : start + 64]
        assert reader.read(item - 64) == data[start + 64 : start + item]
    assert len(obj.ranges) <= 8
    assert sum(end - start for start, end in obj.ranges) <= len(data) + 2 * DEFAULT_BUFFER_SIZE


@pytest.mark.parametrize("buffer_size", [1, 1000, 64 * KIB, 3 * MIB])
def test_the_read_ahead_never_exceeds_buffer_size(buffer_size: int) -> None:
    data = random.Random(22).randbytes(12 * MIB)
    obj = FakeObject(data)
    reader = obj.ranged(buffer_size)
    assert read_in_chunks(reader, 333) == data
    assert all(end - start <= max(buffer_size, 333) for start, end in obj.ranges)
    assert sum(end - start for start, end in obj.ranges) == len(data)


WALK_DATA = random.Random(23).randbytes(3 * MIB + 17)
WALK_STEP = st.tuples(
    st.sampled_from([io.SEEK_SET, io.SEEK_CUR, io.SEEK_END, None]),  # None: read on from here
    st.integers(-len(WALK_DATA) - 10, len(WALK_DATA) + 10),
    st.one_of(st.integers(0, 300), st.integers(0, 2 * MIB), st.sampled_from([None, -1])),
    st.booleans(),  # readinto instead of read
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    buffer_size=st.sampled_from([None, 0, 1, 1000, 64 * KIB, 200 * KIB, 2 * MIB]),
    steps=st.lists(WALK_STEP, max_size=25),
)
def test_any_seek_and_read_sequence_returns_the_objects_bytes(
    buffer_size: int | None, steps: list[tuple[int | None, int, int | None, bool]]
) -> None:
    obj = FakeObject(WALK_DATA)
    reader = obj.ranged(buffer_size)
    model = io.BytesIO(WALK_DATA)
    largest_read = 0
    for whence, offset, count, into in steps:
        if whence is not None:
            base = {io.SEEK_SET: 0, io.SEEK_CUR: model.tell(), io.SEEK_END: len(WALK_DATA)}[whence]
            target = max(0, base + offset)
            assert reader.seek(target - base, whence) == model.seek(min(target, len(WALK_DATA)))
        if into:
            size = len(WALK_DATA) if count is None or count < 0 else count
            got, expected = bytearray(size), bytearray(size)
            assert reader.readinto(got) == model.readinto(expected)
            assert got == expected
        else:
            size = len(WALK_DATA) if count is None or count < 0 else count
            assert reader.read(count) == model.read(count)
        largest_read = max(largest_read, size)
        assert reader.tell() == model.tell()
    cap = DEFAULT_BUFFER_SIZE if buffer_size is None else buffer_size
    for start, end in obj.ranges:
        assert 0 <= start < end <= len(WALK_DATA)
        assert end - start <= max(cap, largest_read)
