"""``S3Writer``: the upstream file semantics, and publish-once / abort-on-failure."""

from __future__ import annotations

import io
import threading

import pytest
from client_unit_support import PART, MockS3, payload

from s3torch.client import S3Writer


def count_closes(writer: S3Writer) -> list[int]:
    calls: list[int] = []
    original = writer.stream.close

    def counting() -> None:
        calls.append(1)
        original()

    writer.stream.close = counting  # type: ignore[method-assign]
    return calls


def test_file_protocol(s3: MockS3) -> None:
    writer = s3.client.put_object(s3.bucket, "file")
    assert isinstance(writer, io.BufferedIOBase)
    assert writer.writable()
    assert not writer.readable()
    assert not writer.seekable()
    assert not writer.closed
    assert writer.write(b"hello ") == 6
    assert writer.write(memoryview(b"world")) == 5
    writer.writelines([b"!", b"?"])
    assert writer.tell() == 13
    writer.flush()  # a no-op: nothing is published yet
    assert not s3.exists("file")
    writer.close()
    assert writer.closed
    assert not writer.writable()
    assert s3.read("file") == b"hello world!?"


def test_tell_matches_bytesio(s3: MockS3) -> None:
    writer, reference = s3.client.put_object(s3.bucket, "tell"), io.BytesIO()
    for chunk in (b"", b"a", payload(PART - 1), payload(PART + 3), b"z"):
        assert writer.write(chunk) == reference.write(chunk)
        assert writer.tell() == reference.tell()
    writer.close()
    assert s3.read("tell") == reference.getvalue()


def test_write_after_close_is_a_value_error(s3: MockS3) -> None:
    writer = s3.client.put_object(s3.bucket, "closed")
    writer.close()
    with pytest.raises(ValueError, match="closed"):
        writer.write(b"late")
    assert s3.read("closed") == b""


def test_close_is_idempotent(s3: MockS3) -> None:
    writer = s3.client.put_object(s3.bucket, "thrice")
    closes = count_closes(writer)
    writer.write(b"data")
    for _ in range(3):
        writer.close()
    assert closes == [1]
    assert s3.read("thrice") == b"data"


@pytest.mark.parametrize("size", [4, PART + 4], ids=["single", "multipart"])
def test_close_from_five_threads_completes_once(s3: MockS3, size: int) -> None:
    writer = s3.client.put_object(s3.bucket, "threads")
    closes = count_closes(writer)
    data = payload(size)
    writer.write(data)
    start = threading.Barrier(5)
    errors: list[BaseException] = []

    def close() -> None:
        start.wait()
        try:
            writer.close()
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=close) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert closes == [1]
    assert writer.closed
    assert s3.read("threads") == data


def test_with_block_publishes_on_normal_exit(s3: MockS3) -> None:
    with s3.client.put_object(s3.bucket, "with") as writer:
        assert writer.tell() == 0
        writer.write(b"inside")
        assert not s3.exists("with")
    assert writer.closed
    assert s3.read("with") == b"inside"


@pytest.mark.parametrize("size", [1000, int(2.5 * PART)], ids=["single", "multipart"])
def test_exception_inside_with_aborts(s3: MockS3, size: int) -> None:
    with pytest.raises(KeyError), s3.client.put_object(s3.bucket, "aborted") as writer:
        writer.write(payload(size))
        assert len(s3.uploads()) == (1 if size > PART else 0)
        raise KeyError("boom")
    assert writer.closed
    assert not s3.exists("aborted")
    assert s3.uploads() == []
    with pytest.raises(ValueError, match="closed"):
        writer.write(b"x")


@pytest.mark.parametrize("size", [1000, int(2.5 * PART)], ids=["single", "multipart"])
def test_garbage_collected_writer_publishes_nothing(s3: MockS3, size: int) -> None:
    writer = s3.client.put_object(s3.bucket, "dropped")
    writer.write(payload(size))
    assert len(s3.uploads()) == (1 if size > PART else 0)
    del writer  # the last reference: CPython finalizes it now
    assert not s3.exists("dropped")
    assert s3.uploads() == []


def test_closed_writer_is_collected_quietly(s3: MockS3) -> None:
    writer = s3.client.put_object(s3.bucket, "kept")
    writer.write(b"kept")
    writer.close()
    del writer  # the last reference: CPython finalizes it now
    assert s3.read("kept") == b"kept"


def test_explicit_abort(s3: MockS3) -> None:
    writer = s3.client.put_object(s3.bucket, "abort")
    writer.write(payload(PART + 1))
    writer.abort()
    assert writer.closed
    writer.close()  # after an abort, close publishes nothing
    assert not s3.exists("abort")
    assert s3.uploads() == []


class _HandMadeStream:
    """Only write() and close(), as a stream given to the upstream's S3Writer may be."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.closed = 0

    def write(self, data: bytes) -> None:
        self.data += data

    def close(self) -> None:
        self.closed += 1


def test_s3writer_over_a_hand_made_stream_with_only_write_and_close() -> None:
    from s3torch.client import S3Writer

    stream = _HandMadeStream()
    with S3Writer(stream) as writer:
        assert writer.write(b"abc") == 3
        writer.write(memoryview(b"defg"))
        assert writer.tell() == 7
    assert bytes(stream.data) == b"abcdefg"
    assert stream.closed == 1


def test_s3writer_over_a_hand_made_stream_does_not_close_it_on_an_exception() -> None:
    from s3torch.client import S3Writer

    stream = _HandMadeStream()
    with pytest.raises(RuntimeError), S3Writer(stream) as writer:
        writer.write(b"abc")
        raise RuntimeError("boom")
    assert stream.closed == 0
    assert writer.closed
