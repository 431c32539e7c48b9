"""``RangedS3Reader``: the size first, seeks that never fetch, small reads through a buffer of
``[start, min(start + buffer_size, size))``, large reads straight into the destination, and
forward overlaps served partly from the buffer (upstream tst/unit/test_s3reader_range_based.py)."""

from __future__ import annotations

import io
import random

import pytest
from readers_fakes import FakeObject

from s3torch.client import S3Exception
from s3torch.readers import DEFAULT_BUFFER_SIZE, RangedS3Reader

MIB = 1024 * 1024
DATA = random.Random(11).randbytes(1000)


def test_default_buffer_size_is_eight_mebibytes() -> None:
    assert DEFAULT_BUFFER_SIZE == 8 * MIB


@pytest.mark.parametrize("buffer_size", [None, DEFAULT_BUFFER_SIZE], ids=["none", "explicit"])
def test_none_means_the_default_buffer(buffer_size: int | None) -> None:
    data = random.Random(12).randbytes(10 * MIB)
    obj = FakeObject(data)
    reader = obj.ranged(buffer_size)
    assert reader.read(1) == data[:1]
    assert obj.ranges == [(0, 8 * MIB)]
    reader.seek(8 * MIB - 1)
    assert reader.read(1) == data[8 * MIB - 1 : 8 * MIB]
    assert len(obj.streams) == 1
    reader.seek(9 * MIB)
    assert reader.read(5) == data[9 * MIB : 9 * MIB + 5]
    assert obj.ranges[1] == (9 * MIB, 10 * MIB)


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


def test_read_before_the_buffer_loads_it_again() -> None:
    obj = FakeObject(DATA)
    reader = obj.ranged(100)
    reader.seek(500)
    assert reader.read(10) == DATA[500:510]
    reader.seek(450)
    assert reader.read(10) == DATA[450:460]
    assert obj.ranges == [(500, 600), (450, 550)]


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
