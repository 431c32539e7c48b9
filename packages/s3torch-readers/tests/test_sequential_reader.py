"""``SequentialS3Reader``: one stream, started lazily (or by ``prefetch``), what is read is kept so
backward seeks are free, and ``readinto`` of at least ``PASS_THROUGH_BYTES`` at the stream's
front goes straight into the caller's buffer (a later backward seek fetches that gap once)."""

from __future__ import annotations

import io
import random

import pytest
from readers_fakes import FakeObject

from s3torch.client import S3Exception
from s3torch.readers import SequentialS3Reader, _sequential

MIB = 1024 * 1024
KIB = 1024
DATA = random.Random(7).randbytes(1000)


def test_pass_through_threshold_is_one_mebibyte() -> None:
    assert _sequential.PASS_THROUGH_BYTES == MIB


def test_nothing_is_fetched_until_the_first_read() -> None:
    obj = FakeObject(DATA)
    reader = obj.sequential()
    assert reader.tell() == 0
    assert reader.seek(0) == 0
    assert reader.seek(0, io.SEEK_CUR) == 0
    assert obj.streams == []
    assert obj.info_calls == 0
    assert reader.read(3) == DATA[:3]
    assert obj.ranges == [(None, None)]
    assert obj.info_calls == 0  # the size comes from the stream itself


def test_prefetch_starts_the_stream_once() -> None:
    obj = FakeObject(DATA)
    reader = obj.sequential()
    reader.prefetch()
    assert obj.ranges == [(None, None)]
    assert obj.streams[0].started
    reader.prefetch()
    reader.prefetch()
    assert len(obj.streams) == 1
    assert reader.read() == DATA
    reader.prefetch()
    assert len(obj.streams) == 1
    assert obj.info_calls == 0


def test_prefetch_on_a_closed_reader_raises() -> None:
    reader = FakeObject(DATA).sequential()
    reader.close()
    with pytest.raises(ValueError):
        reader.prefetch()


def test_backward_seeks_after_small_reads_are_free() -> None:
    obj = FakeObject(DATA, chunk_size=7)
    reader = obj.sequential()
    assert reader.read(100) == DATA[:100]
    reader.seek(0)
    assert reader.read(100) == DATA[:100]
    reader.seek(-50, io.SEEK_CUR)
    assert reader.read(60) == DATA[50:110]
    reader.seek(3)
    buffer = bytearray(200)
    assert reader.readinto(buffer) == 200
    assert buffer == DATA[3:203]
    assert reader.read() == DATA[203:]
    for position in (999, 500, 0, 250):
        reader.seek(position)
        assert reader.read(10) == DATA[position : position + 10]
    assert obj.ranges == [(None, None)]
    assert obj.info_calls == 0


def test_read_to_the_end_learns_the_size() -> None:
    obj = FakeObject(DATA)
    reader = obj.sequential()
    assert reader.read() == DATA
    assert reader.seek(0, io.SEEK_END) == len(DATA)
    assert reader.seek(10, io.SEEK_END) == len(DATA)
    assert obj.info_calls == 0
    assert len(obj.streams) == 1


def test_seek_end_first_sends_no_get_then_one_stream_reads() -> None:
    obj = FakeObject(DATA, listed=True)
    reader = obj.sequential()
    assert reader.seek(-10, io.SEEK_END) == len(DATA) - 10
    assert obj.streams == []
    assert obj.info_calls == 1
    assert reader.read() == DATA[-10:]
    assert obj.ranges == [(None, None)]
    reader.seek(0)
    assert reader.read() == DATA
    assert len(obj.streams) == 1
    assert obj.info_calls == 1


def test_seek_past_the_end_learns_the_size_from_the_stream() -> None:
    obj = FakeObject(b"hello")
    reader = obj.sequential()
    assert reader.seek(10) == 5
    assert obj.info_calls == 0
    assert reader.seek(0, io.SEEK_END) == 5
    assert obj.info_calls == 0
    assert reader.seek(1) == 1
    assert reader.read() == b"ello"
    assert len(obj.streams) == 1


def test_pass_through_readinto_then_backward_seek_refetches_exactly_the_gap_once() -> None:
    size = 3 * MIB + 123
    data = random.Random(1).randbytes(size)
    obj = FakeObject(data, chunk_size=256 * KIB)
    reader = obj.sequential()
    assert reader.read(10) == data[:10]  # keeps the first chunk [0, 256 KiB)
    big = bytearray(2 * MIB)
    assert reader.readinto(big) == 2 * MIB
    assert big == data[10 : 10 + 2 * MIB]
    assert obj.ranges == [(None, None)]
    after_pass_through = 10 + 2 * MIB
    assert obj.streams[0].bytes_served == after_pass_through  # nothing beyond was fetched ahead

    reader.seek(0)
    assert reader.read() == data
    assert obj.ranges == [(None, None), (256 * KIB, after_pass_through)]
    reader.seek(100_000)
    assert reader.read(MIB) == data[100_000 : 100_000 + MIB]
    reader.seek(0)
    assert reader.read() == data
    assert len(obj.streams) == 2  # the gap, once fetched, is kept


def test_pass_through_from_the_start_and_gap_refetch_from_zero() -> None:
    size = 2 * MIB + 5
    data = random.Random(2).randbytes(size)
    obj = FakeObject(data, chunk_size=256 * KIB)
    reader = obj.sequential()
    first = bytearray(MIB)
    assert reader.readinto(first) == MIB
    assert first == data[:MIB]
    assert obj.streams[0].bytes_served == MIB
    reader.seek(5)
    assert reader.read(10) == data[5:15]
    assert obj.ranges == [(None, None), (0, MIB)]
    reader.seek(MIB)
    assert reader.read() == data[MIB:]
    assert len(obj.streams) == 2


def test_two_pass_through_gaps_are_each_fetched_once() -> None:
    size = 4 * MIB
    data = random.Random(3).randbytes(size)
    obj = FakeObject(data, chunk_size=128 * KIB)
    reader = obj.sequential()
    buffer = bytearray(MIB)
    assert reader.readinto(buffer) == MIB  # gap [0, 1 MiB)
    assert reader.read(10) == data[MIB : MIB + 10]  # keeps [1 MiB, 1 MiB + 128 KiB)
    reader.seek(MIB + 128 * KIB)
    assert reader.readinto(buffer) == MIB  # gap [1 MiB + 128 KiB, 2 MiB + 128 KiB)
    assert buffer == data[MIB + 128 * KIB : 2 * MIB + 128 * KIB]
    reader.seek(0)
    assert reader.read() == data
    assert obj.ranges == [(None, None), (0, MIB), (MIB + 128 * KIB, 2 * MIB + 128 * KIB)]
    reader.seek(0)
    assert reader.read() == data
    assert len(obj.streams) == 3


def test_pass_through_past_the_end_learns_the_size() -> None:
    size = MIB + 10
    data = random.Random(4).randbytes(size)
    obj = FakeObject(data, chunk_size=256 * KIB)
    reader = obj.sequential()
    buffer = bytearray(2 * MIB)
    assert reader.readinto(buffer) == size
    assert buffer[:size] == data
    assert reader.readinto(buffer) == 0
    assert reader.read() == b""
    assert reader.seek(0, io.SEEK_END) == size
    assert obj.info_calls == 0


def test_small_readinto_is_kept_not_passed_through() -> None:
    data = random.Random(5).randbytes(3 * MIB)
    obj = FakeObject(data, chunk_size=256 * KIB)
    reader = obj.sequential()
    buffer = bytearray(MIB - 1)
    while reader.readinto(buffer):
        pass
    reader.seek(0)
    assert reader.read() == data
    assert len(obj.streams) == 1


def test_refetched_gap_shorter_than_before_raises() -> None:
    data = random.Random(6).randbytes(2 * MIB)
    obj = FakeObject(data, chunk_size=256 * KIB)
    reader = obj.sequential()
    assert reader.readinto(bytearray(MIB)) == MIB
    obj.stream_limit = 1000  # the object "shrank": the gap cannot be fetched whole again
    reader.seek(0)
    with pytest.raises(S3Exception, match=r"returned 1000 bytes of range 0-1048575"):
        reader.read(10)


def test_close_closes_the_stream_and_drops_chunks() -> None:
    obj = FakeObject(DATA)
    reader = obj.sequential()
    assert reader.read(10) == DATA[:10]
    reader.close()
    assert obj.streams[0].closed
    assert reader.closed
    with pytest.raises(ValueError, match="closed"):
        reader.read(1)


def test_close_before_any_read_opens_nothing() -> None:
    obj = FakeObject(DATA)
    reader = obj.sequential()
    reader.close()
    assert obj.streams == []
    assert reader.closed


def test_irregular_chunks() -> None:
    obj = FakeObject(DATA, chunk_size=(1, 333, 2, 64))
    reader = obj.sequential()
    out = bytearray()
    while piece := reader.read(37):
        out += piece
    assert out == DATA
    reader.seek(330)
    assert reader.read(10) == DATA[330:340]


def test_is_a_sequential_reader_with_the_upstream_constructor_signature() -> None:
    obj = FakeObject(DATA)
    reader = SequentialS3Reader(
        bucket=obj.bucket, key=obj.key, get_object_info=obj.get_object_info, get_stream=obj.get_stream
    )
    assert reader.read() == DATA
