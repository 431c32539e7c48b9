"""``SequentialS3Reader``: one stream, started lazily (or by ``prefetch``), what is read is kept so
backward seeks are free, and ``readinto`` of at least ``PASS_THROUGH_BYTES`` at the stream's
front goes straight into the caller's buffer (a later backward seek fetches that gap once); a read far
ahead opens a stream there instead of fetching what lies between."""

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


def test_thresholds() -> None:
    # torch.load reads each tensor with one readinto: tensors of 128 KiB and more go straight
    # into their memory; the other thresholds are what the tests below are written against.
    assert _sequential.PASS_THROUGH_BYTES == 128 * KIB
    assert _sequential.SMALL_READ_CHUNK_BYTES == 64 * KIB
    assert _sequential.SKIP_THROUGH_BYTES == 8 * MIB


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


def test_read_of_everything_keeps_what_it_read_from_wherever_it_starts() -> None:
    # read() with nothing kept yet takes the stream's chunks whole (the datasets' common case):
    # what it returns stays kept, from the start, from a later position or after prefetch().
    obj = FakeObject(DATA, chunk_size=[7, 300, 1])
    reader = obj.sequential()
    reader.prefetch()
    assert reader.read() == DATA
    assert reader.tell() == len(DATA)
    assert reader.read() == b""
    for position in (999, 0, 123):
        reader.seek(position)
        assert reader.read(50) == DATA[position : position + 50]
    assert obj.ranges == [(None, None)]

    obj = FakeObject(DATA, chunk_size=64)
    reader = obj.sequential()
    reader.seek(600)  # the size is unknown: the seek opens the stream to learn it
    assert reader.read() == DATA[600:]  # the stream reads on to 600, keeping what it passes
    reader.seek(0)
    assert reader.read() == DATA
    assert obj.ranges == [(None, None)]


def test_a_stream_whose_chunk_runs_into_kept_bytes_is_not_read_on_from_a_wrong_offset() -> None:
    # Found by the fault soak: a stream reading on cut its chunk where kept bytes start, stayed
    # open, and a later read took its next bytes as if they came from the cut: wrong bytes. A
    # far readinto passes 2 MiB through and keeps what lies before it; the long read then runs
    # the first stream into those kept bytes and on past them.
    data = random.Random(3).randbytes(20 * MIB)
    obj = FakeObject(data, chunk_size=70_000)
    reader = obj.sequential()
    reader.seek(17_320_462)
    buffer = bytearray(2_097_152)
    assert reader.readinto(buffer) == len(buffer)
    assert buffer == data[17_320_462:19_417_614]
    reader.seek(3_169_781)
    assert reader.read(20_707_648 - 3_169_781) == data[3_169_781:20_707_648]


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
    assert reader.read(10) == data[:10]  # a small read keeps a small chunk: [0, 64 KiB)
    big = bytearray(2 * MIB)
    assert reader.readinto(big) == 2 * MIB
    assert big == data[10 : 10 + 2 * MIB]
    assert obj.ranges == [(None, None)]
    after_pass_through = 10 + 2 * MIB
    assert obj.streams[0].bytes_served == after_pass_through  # nothing beyond was fetched ahead

    reader.seek(0)
    assert reader.read() == data
    assert obj.ranges == [(None, None), (64 * KIB, after_pass_through)]
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
    buffer = bytearray(_sequential.PASS_THROUGH_BYTES - 1)
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


def test_a_read_far_ahead_opens_a_stream_there_and_fetches_nothing_in_between() -> None:
    """torch.load's pattern: the zip's first bytes, its end (the directory), then each record
    from the start: the bytes in between are neither fetched nor kept for the far read, and
    records then go from the first stream straight into the caller's buffers."""
    size = 40 * MIB
    data = random.Random(8).randbytes(size)
    obj = FakeObject(data, chunk_size=256 * KIB)
    reader = obj.sequential()
    assert reader.read(4) == data[:4]
    assert reader.seek(-22, io.SEEK_END) == size - 22
    assert reader.read(22) == data[-22:]
    # The far read keeps 64 KiB before it too (a zip's directory is read backwards from its end).
    assert obj.ranges == [(None, None), (size - 22 - 64 * KIB, size)]
    assert obj.streams[0].bytes_served == 64 * KIB  # one small chunk, not the 40 MiB up to the end
    reader.seek(100)
    header = bytearray(30)
    assert reader.readinto(header) == 30
    assert header == data[100:130]
    record = bytearray(20 * MIB)
    assert reader.readinto(record) == len(record)
    assert record == data[130 : 130 + 20 * MIB]
    assert len(obj.streams) == 2
    kept = sum(len(chunk) for chunk in reader._chunks)
    assert kept == 64 * KIB + 64 * KIB + 22  # the record went straight into its buffer, not kept
    reader.seek(0)
    assert reader.read() == data
    assert obj.ranges[2:] == [(64 * KIB, 130 + 20 * MIB)]


def test_a_small_readinto_keeps_a_small_chunk_not_a_whole_part() -> None:
    data = random.Random(9).randbytes(20 * MIB)
    obj = FakeObject(data, chunk_size=8 * MIB)
    reader = obj.sequential()
    header = bytearray(30)
    assert reader.readinto(header) == 30
    assert obj.streams[0].bytes_served == _sequential.SMALL_READ_CHUNK_BYTES
    record = bytearray(10 * MIB)
    assert reader.readinto(record) == len(record)
    assert record == data[30 : 30 + 10 * MIB]
    assert obj.streams[0].bytes_served == 30 + 10 * MIB
    assert sum(len(chunk) for chunk in reader._chunks) == _sequential.SMALL_READ_CHUNK_BYTES


def test_a_far_read_then_reading_on_into_it_uses_what_was_kept() -> None:
    size = 30 * MIB
    data = random.Random(10).randbytes(size)
    obj = FakeObject(data, chunk_size=MIB)
    reader = obj.sequential()
    assert reader.read(10) == data[:10]
    reader.seek(20 * MIB)
    assert reader.read(10) == data[20 * MIB : 20 * MIB + 10]  # a second stream, far ahead
    reader.seek(0)
    assert reader.read() == data  # the first stream stops where the second one's bytes begin
    assert obj.ranges == [(None, None), (20 * MIB - 64 * KIB, size)]
    served = sum(stream.bytes_served for stream in obj.streams)
    # Nothing twice but what the first stream's last chunk (1 MiB, from 64 KiB on) has of the
    # 64 KiB kept before the far read: the first stream was opened to the end of the object.
    assert served == size + 128 * KIB


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
