"""The file semantics every generic reader shares (upstream tst/unit/test_s3reader_common.py):
sequential, ranged with the default buffer, with small buffers, and without a buffer."""

from __future__ import annotations

import array
import io
from collections.abc import Callable

import pytest
from readers_fakes import BUCKET, GENERIC_READERS, KEY, FakeObject

from s3torch.readers import RangedS3Reader, S3Reader, SequentialS3Reader

DATA16 = b"0123456789ABCDEF"
FIVE = b"hello"

MakeReader = Callable[[FakeObject], S3Reader]


@pytest.fixture(params=list(GENERIC_READERS), ids=list(GENERIC_READERS))
def make(request: pytest.FixtureRequest) -> MakeReader:
    return GENERIC_READERS[request.param]


# ---- construction -------------------------------------------------------------------------


@pytest.mark.parametrize("bucket", ["", None])
@pytest.mark.parametrize("reader_class", [SequentialS3Reader, RangedS3Reader])
def test_bucket_must_be_specified(reader_class: type[S3Reader], bucket: str | None) -> None:
    obj = FakeObject(DATA16)
    with pytest.raises(ValueError, match=r"^Bucket should be specified$"):
        reader_class(bucket, KEY, obj.get_object_info, obj.get_stream)  # type: ignore[arg-type]


def test_bucket_key_and_io_flags(make: MakeReader) -> None:
    obj = FakeObject(DATA16)
    reader = make(obj)
    assert isinstance(reader, io.BufferedIOBase)
    assert reader.bucket == BUCKET
    assert reader.key == KEY
    assert reader.readable() is True
    assert reader.writable() is False
    assert reader.seekable() is True
    assert reader.closed is False
    assert reader.tell() == 0
    assert obj.streams == []
    assert BUCKET in repr(reader)
    assert KEY in repr(reader)


# ---- read sizes -----------------------------------------------------------------------------


@pytest.mark.parametrize("size", [None, -1, -5], ids=["none", "minus-1", "minus-5"])
def test_read_none_or_negative_reads_to_the_end(make: MakeReader, size: int | None) -> None:
    reader = make(FakeObject(DATA16))
    assert reader.read(3) == b"012"
    assert reader.read(size) == DATA16[3:]
    assert reader.tell() == 16
    assert reader.read(size) == b""


def test_read_without_argument_reads_everything(make: MakeReader) -> None:
    reader = make(FakeObject(DATA16))
    assert reader.read() == DATA16
    assert reader.read() == b""
    assert reader.tell() == 16


def test_read_beyond_the_end_returns_the_remainder(make: MakeReader) -> None:
    reader = make(FakeObject(DATA16))
    reader.seek(12)
    assert reader.read(100) == b"CDEF"
    assert reader.tell() == 16
    assert reader.read(100) == b""


@pytest.mark.parametrize(
    ("size", "type_text"), [(1.5, "<class 'float'>"), ("1", "<class 'str'>"), (b"1", "<class 'bytes'>")]
)
def test_read_size_must_be_an_integer(make: MakeReader, size: object, type_text: str) -> None:
    reader = make(FakeObject(DATA16))
    with pytest.raises(TypeError) as error:
        reader.read(size)  # type: ignore[arg-type]
    assert str(error.value) == f"argument should be integer or None, not {type_text}"
    assert reader.tell() == 0


# ---- seek -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "type_text"), [(1.0, "<class 'float'>"), ("1", "<class 'str'>"), (None, "<class 'NoneType'>")]
)
def test_seek_offset_must_be_an_integer(make: MakeReader, offset: object, type_text: str) -> None:
    reader = make(FakeObject(DATA16))
    with pytest.raises(TypeError) as error:
        reader.seek(offset)  # type: ignore[arg-type]
    assert str(error.value) == f"integer argument expected, got {type_text}"


@pytest.mark.parametrize("whence", [3, -1, 42])
def test_seek_rejects_unknown_whence(make: MakeReader, whence: int) -> None:
    obj = FakeObject(DATA16)
    reader = make(obj)
    with pytest.raises(ValueError) as error:
        reader.seek(0, whence)
    assert str(error.value) == "Seek must be passed SEEK_CUR, SEEK_SET, or SEEK_END"
    assert reader.tell() == 0
    assert obj.streams == []


@pytest.mark.parametrize("whence", ["0", 1.0, None])
def test_seek_rejects_a_whence_that_is_not_an_integer(make: MakeReader, whence: object) -> None:
    reader = make(FakeObject(DATA16))
    with pytest.raises(TypeError):
        reader.seek(0, whence)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("before", "offset", "whence", "negative"),
    [
        (0, -1, io.SEEK_SET, -1),
        (5, -100, io.SEEK_SET, -100),
        (2, -3, io.SEEK_CUR, -1),
        (0, -1, io.SEEK_CUR, -1),
        (7, -17, io.SEEK_END, -1),
        (3, -20, io.SEEK_END, -4),
    ],
)
def test_negative_position_raises_and_keeps_the_position(
    make: MakeReader, before: int, offset: int, whence: int, negative: int
) -> None:
    reader = make(FakeObject(DATA16))
    reader.seek(before)
    with pytest.raises(ValueError) as error:
        reader.seek(offset, whence)
    assert str(error.value) == f"negative seek value {negative}"
    assert reader.tell() == before
    assert reader.read(2) == DATA16[before : before + 2]


@pytest.mark.parametrize("whence", [io.SEEK_SET, io.SEEK_CUR, io.SEEK_END])
def test_seek_beyond_the_end_clamps_to_the_size_and_back_works(make: MakeReader, whence: int) -> None:
    reader = make(FakeObject(FIVE))
    assert reader.seek(2) == 2
    assert reader.seek(10, whence) == 5
    assert reader.tell() == 5
    assert reader.read() == b""
    assert reader.seek(1) == 1
    assert reader.read() == FIVE[1:]
    assert reader.seek(-2, io.SEEK_CUR) == 3
    assert reader.read(1) == b"l"


def test_seek_beyond_the_end_after_reading_everything(make: MakeReader) -> None:
    reader = make(FakeObject(FIVE))
    assert reader.read() == FIVE
    assert reader.seek(100) == 5
    assert reader.seek(3, io.SEEK_CUR) == 5
    assert reader.seek(0) == 0
    assert reader.read() == FIVE


@pytest.mark.parametrize("listed", [False, True], ids=["head", "listing"])
@pytest.mark.parametrize("offset", [0, 1, 1000])
def test_seek_end_asks_the_object_info_and_starts_no_get(make: MakeReader, listed: bool, offset: int) -> None:
    obj = FakeObject(DATA16, listed=listed)
    reader = make(obj)
    assert reader.seek(offset, io.SEEK_END) == 16
    assert reader.tell() == 16
    assert obj.info_calls == 1
    assert obj.streams == []
    assert reader.read() == b""
    assert reader.seek(-4, io.SEEK_END) == 12
    assert obj.info_calls == 1
    assert reader.read() == b"CDEF"


def test_seek_end_minus_k(make: MakeReader) -> None:
    reader = make(FakeObject(DATA16))
    assert reader.seek(-16, io.SEEK_END) == 0
    assert reader.seek(-1, io.SEEK_END) == 15
    assert reader.read() == b"F"


def test_seek_returns_the_new_position_for_every_whence(make: MakeReader) -> None:
    reader = make(FakeObject(DATA16))
    assert reader.seek(4) == 4
    assert reader.seek(3, io.SEEK_CUR) == 7
    assert reader.seek(-2, io.SEEK_CUR) == 5
    assert reader.seek(0, io.SEEK_CUR) == 5
    assert reader.read(3) == b"567"
    assert reader.seek(-10, io.SEEK_END) == 6
    assert reader.read(2) == b"67"


# ---- end of the object, edge table ---------------------------------------------------------


def test_at_the_end_read_is_empty_and_readinto_is_zero(make: MakeReader) -> None:
    reader = make(FakeObject(DATA16))
    assert reader.read() == DATA16
    assert reader.read() == b""
    assert reader.read(1) == b""
    buffer = bytearray(b"xxxx")
    assert reader.readinto(buffer) == 0
    assert buffer == b"xxxx"
    assert reader.tell() == 16


def test_readinto_empty_buffer_returns_zero(make: MakeReader) -> None:
    obj = FakeObject(DATA16)
    reader = make(obj)
    reader.seek(3)
    assert reader.readinto(bytearray()) == 0
    assert reader.readinto(memoryview(bytearray(4))[:0]) == 0
    assert reader.tell() == 3


EDGE_TABLE = [
    # start, size, data, position after
    (10, 10, b"ABCDEF", 16),
    (16, 10, b"", 16),
    (20, 10, b"", 16),
    (0, 0, b"", 0),
    (7, 0, b"", 7),
    (16, 0, b"", 16),
    (20, 0, b"", 16),
]


@pytest.mark.parametrize(("start", "size", "expected", "after"), EDGE_TABLE)
def test_edge_table_read(make: MakeReader, start: int, size: int, expected: bytes, after: int) -> None:
    reader = make(FakeObject(DATA16))
    reader.seek(start)
    assert reader.read(size) == expected
    assert reader.tell() == after


@pytest.mark.parametrize(("start", "size", "expected", "after"), EDGE_TABLE)
def test_edge_table_readinto(make: MakeReader, start: int, size: int, expected: bytes, after: int) -> None:
    reader = make(FakeObject(DATA16))
    reader.seek(start)
    buffer = bytearray(size)
    assert reader.readinto(buffer) == len(expected)
    assert bytes(buffer[: len(expected)]) == expected
    assert reader.tell() == after


def test_empty_object(make: MakeReader) -> None:
    reader = make(FakeObject(b""))
    assert reader.read() == b""
    assert reader.tell() == 0
    assert reader.read(10) == b""
    assert reader.readinto(bytearray(10)) == 0
    assert reader.seek(5) == 0
    assert reader.seek(0, io.SEEK_END) == 0
    assert reader.tell() == 0


def test_mixed_read_and_readinto(make: MakeReader) -> None:
    reader = make(FakeObject(DATA16))
    buffer = bytearray(4)
    assert reader.read(3) == b"012"
    assert reader.readinto(buffer) == 4
    assert buffer == b"3456"
    assert reader.read(2) == b"78"
    assert reader.readinto(buffer) == 4
    assert buffer == b"9ABC"
    assert reader.readinto(buffer) == 3
    assert buffer[:3] == b"DEF"


# ---- readinto buffers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argument", "type_name"),
    [(b"0123", "bytes"), (memoryview(b"0123"), "memoryview"), ("0123", "str"), (1234, "int"), (None, "NoneType")],
)
def test_readinto_needs_a_writable_buffer(make: MakeReader, argument: object, type_name: str) -> None:
    obj = FakeObject(DATA16)
    reader = make(obj)
    with pytest.raises(TypeError) as error:
        reader.readinto(argument)
    assert str(error.value) == f"argument must be a writable bytes-like object, not {type_name}"
    assert reader.tell() == 0


def test_readinto_accepts_any_writable_buffer(make: MakeReader) -> None:
    reader = make(FakeObject(DATA16))
    words = array.array("i", [0, 0])  # 8 bytes, items of 4: filled byte-wise like BytesIO does
    assert reader.readinto(words) == 8
    assert words.tobytes() == DATA16[:8]
    backing = bytearray(10)
    assert reader.readinto(memoryview(backing)[2:6]) == 4
    assert backing[2:6] == b"89AB"


# ---- close ----------------------------------------------------------------------------------


def test_closed_reader_raises_value_error(make: MakeReader) -> None:
    obj = FakeObject(DATA16)
    reader = make(obj)
    assert reader.read(4) == b"0123"
    reader.close()
    assert reader.closed is True
    with pytest.raises(ValueError):
        reader.read(1)
    with pytest.raises(ValueError):
        reader.read()
    with pytest.raises(ValueError):
        reader.readinto(bytearray(1))
    with pytest.raises(ValueError):
        reader.seek(0)
    reader.close()  # a second close is fine
    assert reader.closed is True


def test_context_manager_closes(make: MakeReader) -> None:
    obj = FakeObject(DATA16)
    with make(obj) as reader:
        assert reader.read(2) == b"01"
    assert reader.closed is True


def test_lines_and_iteration_come_from_io_base(make: MakeReader) -> None:
    text = b"line one\nline two\n\nlast"
    reader = make(FakeObject(text, chunk_size=3))
    assert reader.readline() == b"line one\n"
    assert list(reader) == [b"line two\n", b"\n", b"last"]
    reader.seek(0)
    assert reader.readlines() == io.BytesIO(text).readlines()


def test_text_mode_reads_lines_through_read1(make: MakeReader) -> None:
    reader = make(FakeObject(b"epoch,loss\n0,1.5\n1,0.75\n"))
    text = io.TextIOWrapper(reader, encoding="utf-8")
    assert text.readlines() == ["epoch,loss\n", "0,1.5\n", "1,0.75\n"]
    assert reader.tell() == 24
