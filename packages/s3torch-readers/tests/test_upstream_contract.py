"""Readers built directly take what the upstream's take: a ``get_stream`` returning any iterator
of byte chunks, and object info with only ``size``."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from s3torch.client import S3Exception
from s3torch.readers import DCPOptimizedS3Reader, ItemRange, RangedS3Reader, SequentialS3Reader

DATA = bytes(range(256)) * 40  # 10,240 bytes
CHUNK = 1000


@dataclass(frozen=True)
class SizeOnly:
    size: int


class PlainObject:
    """``get_stream`` as a generator of ``bytes`` chunks, ``get_object_info`` with only ``size``."""

    def __init__(self, data: bytes = DATA) -> None:
        self.data = data
        self.calls: list[tuple[int | None, int | None]] = []
        self.closed_generators = 0

    def get_object_info(self) -> SizeOnly:
        return SizeOnly(len(self.data))

    def get_stream(self, start: int | None = None, end: int | None = None) -> Iterator[bytes]:
        self.calls.append((start, end))
        return self._chunks(start or 0, len(self.data) if end is None else end)

    def _chunks(self, start: int, end: int) -> Iterator[bytes]:
        try:
            for offset in range(start, end, CHUNK):
                yield b""  # empty chunks are skipped
                yield self.data[offset : min(offset + CHUNK, end)]
        finally:
            self.closed_generators += 1


def test_sequential_reader_reads_a_generator_of_bytes() -> None:
    obj = PlainObject()
    reader = SequentialS3Reader("bucket", "key", obj.get_object_info, obj.get_stream)
    assert reader.read(10) == DATA[:10]
    buffer = bytearray(3000)
    assert reader.readinto(buffer) == 3000
    assert bytes(buffer) == DATA[10:3010]
    assert reader.read() == DATA[3010:]
    assert reader.seek(0, io.SEEK_END) == len(DATA)
    assert reader.seek(5) == 5
    assert reader.read(5) == DATA[5:10]


def test_sequential_reader_size_from_size_only_info() -> None:
    obj = PlainObject()
    reader = SequentialS3Reader("bucket", "key", obj.get_object_info, obj.get_stream)
    assert reader.seek(0, io.SEEK_END) == len(DATA)
    assert obj.calls == []


def test_sequential_reader_large_readinto_from_a_generator() -> None:
    data = bytes(range(251)) * 9000  # over the pass-through threshold
    obj = PlainObject(data)
    reader = SequentialS3Reader("bucket", "key", obj.get_object_info, obj.get_stream)
    buffer = bytearray(len(data) + 10)
    assert reader.readinto(buffer) == len(data)
    assert bytes(buffer[: len(data)]) == data
    reader.close()
    assert obj.closed_generators == 1


@pytest.mark.parametrize("buffer_size", [0, 100, None])
def test_ranged_reader_reads_a_generator_of_bytes(buffer_size: int | None) -> None:
    obj = PlainObject()
    reader = RangedS3Reader("bucket", "key", obj.get_object_info, obj.get_stream, buffer_size)
    reader.seek(2500)
    assert reader.read(3000) == DATA[2500:5500]
    assert reader.read(7) == DATA[5500:5507]
    assert reader.seek(-10, io.SEEK_END) == len(DATA) - 10
    assert reader.read() == DATA[-10:]


def test_ranged_reader_short_generator_raises_s3exception_naming_the_object() -> None:
    obj = PlainObject()
    reader = RangedS3Reader("bucket", "key", lambda: SizeOnly(len(DATA) + 50), obj.get_stream, 0)
    reader.seek(len(DATA) - 10)
    with pytest.raises(S3Exception, match=r"^Client error: returned 10 bytes for range") as error:
        reader.read(60)
    assert (error.value.bucket, error.value.key) == ("bucket", "key")


def test_dcp_optimized_reader_reads_a_generator_of_bytes() -> None:
    obj = PlainObject()
    ranges = [ItemRange(100, 200), ItemRange(5000, 7000)]
    reader = DCPOptimizedS3Reader("bucket", "key", ranges, obj.get_object_info, obj.get_stream)
    reader.seek(100)
    assert reader.read(100) == DATA[100:200]
    reader.seek(5000)
    buffer = bytearray(2000)
    assert reader.readinto(buffer) == 2000
    assert bytes(buffer) == DATA[5000:7000]


def test_dcp_optimized_unsorted_ranges_keep_the_upstream_text() -> None:
    obj = PlainObject()
    with pytest.raises(ValueError, match=r"^Unsorted ranges: 10-20 and 5-10$"):
        DCPOptimizedS3Reader(
            "bucket", "key", [ItemRange(10, 20), ItemRange(5, 10)], obj.get_object_info, obj.get_stream
        )


def test_known_size_sends_nothing() -> None:
    obj = PlainObject()
    sequential = SequentialS3Reader("bucket", "key", obj.get_object_info, obj.get_stream)
    assert sequential.known_size() is None
    sequential.seek(0, io.SEEK_END)  # from the object info
    assert sequential.known_size() == len(DATA)
    ranged = RangedS3Reader("bucket", "key", obj.get_object_info, obj.get_stream)
    assert ranged.known_size() is None
    ranged.read(1)
    assert ranged.known_size() == len(DATA)
    dcp = DCPOptimizedS3Reader("bucket", "key", [ItemRange(0, 1)], obj.get_object_info, obj.get_stream)
    assert dcp.known_size() is None
    assert obj.calls == [(0, len(DATA))]  # only the ranged read's GET (its buffer, up to the size)
