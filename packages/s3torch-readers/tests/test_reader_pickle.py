"""Readers pickle their settings, what they know of the object and their position, never a
stream or fetched bytes, and read lazily after unpickling (DataLoader workers hand them over)."""

from __future__ import annotations

import functools
import io
import pickle
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto import mock_aws
from readers_fakes import FakeObject

from s3torch.client import ObjectChangedError, ObjectInfo, S3Client, S3ClientConfig, UserAgent
from s3torch.readers import (
    DCPOptimizedS3Reader,
    ItemRange,
    RangedS3Reader,
    S3Reader,
    S3ReaderConstructor,
    SequentialS3Reader,
)

REGION = "us-east-1"
BUCKET = "s3torch-readers-pickle"
KEY = "data.bin"
DATA = bytes(range(256)) * 64  # 16 KiB
ITEMS = [ItemRange(0, 100), ItemRange(200, 300), ItemRange(8000, 8100), ItemRange(16000, 16384)]


def copy_of(reader: S3Reader) -> Any:
    return pickle.loads(pickle.dumps(reader))


# ---- over moto's in-process S3, through S3Client.get_object ----------------------------------


@dataclass
class Moto:
    boto: Any
    client: S3Client


@pytest.fixture
def moto(aws_environment: None) -> Iterator[Moto]:
    with mock_aws():
        boto = boto3.client("s3", region_name=REGION)
        boto.create_bucket(Bucket=BUCKET)
        boto.put_object(Bucket=BUCKET, Key=KEY, Body=DATA)
        config = S3ClientConfig(part_size=5 * 1024 * 1024, max_attempts=2)
        yield Moto(boto, S3Client(REGION, user_agent=UserAgent(["pickle-test"]), s3client_config=config))


STRATEGIES: dict[str, Callable[[], Any]] = {
    "sequential": S3ReaderConstructor.sequential,
    "ranged": S3ReaderConstructor.range_based,
    "ranged-small-buffer": functools.partial(S3ReaderConstructor.range_based, 1000),
    "ranged-unbuffered": functools.partial(S3ReaderConstructor.range_based, 0),
}


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_a_copy_continues_at_the_position_with_the_right_bytes(moto: Moto, strategy: str) -> None:
    reader = moto.client.get_object(BUCKET, KEY, reader_constructor=STRATEGIES[strategy]())
    assert reader.read(3000) == DATA[:3000]
    copy = copy_of(reader)
    assert type(copy) is type(reader) and (copy.bucket, copy.key) == (BUCKET, KEY)
    assert copy.tell() == 3000
    assert copy.read(5000) == DATA[3000:8000]
    buffer = bytearray(2000)
    assert copy.readinto(buffer) == 2000 and buffer == DATA[8000:10000]
    assert copy.seek(10) == 10 and copy.read(100) == DATA[10:110]  # before where it was unpickled
    assert copy.seek(0, io.SEEK_END) == len(DATA)
    assert copy.seek(-4, io.SEEK_END) == len(DATA) - 4 and copy.read() == DATA[-4:]
    assert reader.read(10) == DATA[3000:3010]  # the original is untouched


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_the_copy_pickles_settings_not_bytes_nor_streams(moto: Moto, strategy: str) -> None:
    reader = moto.client.get_object(BUCKET, KEY, reader_constructor=STRATEGIES[strategy]())
    reader.read(len(DATA) - 1)
    blob = pickle.dumps(reader)
    assert len(blob) < 2048 and DATA[1000:1032] not in blob
    copy = pickle.loads(blob)
    for name in ("_stream", "_buffer"):
        assert getattr(copy, name, None) is None
    client = copy._get_stream.func.__self__  # the client's settings travel with the reader
    assert (client.region, client.endpoint, client.s3client_config) == (REGION, None, moto.client.s3client_config)
    assert client.user_agent_prefix == moto.client.user_agent_prefix
    assert copy.read() == DATA[-1:]


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_a_copy_made_before_any_read_reads_everything(moto: Moto, strategy: str) -> None:
    copy = copy_of(moto.client.get_object(BUCKET, KEY, reader_constructor=STRATEGIES[strategy]()))
    assert copy.tell() == 0
    assert copy.read() == DATA


def test_a_copy_at_the_end_reads_nothing_then_seeks_back(moto: Moto) -> None:
    reader = moto.client.get_object(BUCKET, KEY)
    assert reader.read() == DATA and reader.read(1) == b""
    copy = copy_of(reader)
    assert copy.read() == b"" and copy.readinto(bytearray(5)) == 0
    copy.prefetch()  # nothing left to fetch: no GET of an empty range
    assert copy.seek(100) == 100 and copy.read(50) == DATA[100:150]


def test_a_copy_stays_on_the_version_it_started_reading(moto: Moto) -> None:
    for constructor in (S3ReaderConstructor.sequential(), S3ReaderConstructor.range_based(0)):
        moto.boto.put_object(Bucket=BUCKET, Key=KEY, Body=DATA)
        reader = moto.client.get_object(BUCKET, KEY, reader_constructor=constructor)
        assert reader.read(10) == DATA[:10]
        copy = copy_of(reader)
        moto.boto.put_object(Bucket=BUCKET, Key=KEY, Body=DATA[::-1])  # replaced in between
        with pytest.raises(ObjectChangedError):
            copy.read(10)


def test_a_copy_of_a_listed_object_sends_no_head(moto: Moto, monkeypatch: pytest.MonkeyPatch) -> None:
    (info,) = [info for page in moto.client.list_objects(BUCKET) for info in page.object_info]
    assert isinstance(info, ObjectInfo)
    reader = moto.client.get_object(BUCKET, KEY, object_info=info, reader_constructor=S3ReaderConstructor.range_based())
    copy = copy_of(reader)
    monkeypatch.setattr(S3Client, "head_object", lambda *args: pytest.fail("HEAD sent"))
    assert copy.seek(0, io.SEEK_END) == len(DATA)
    copy.seek(50)
    assert copy.read(10) == DATA[50:60]


def test_a_closed_reader_pickles_closed(moto: Moto) -> None:
    reader = moto.client.get_object(BUCKET, KEY)
    reader.read(10)
    reader.close()
    copy = copy_of(reader)
    assert copy.closed
    with pytest.raises(ValueError, match="closed"):
        copy.read(1)


def test_the_dcp_reader_copy_continues_inside_its_item_and_stays_forward_only(moto: Moto) -> None:
    reader = moto.client.get_object(
        BUCKET,
        KEY,
        reader_constructor=lambda **kwargs: DCPOptimizedS3Reader(item_ranges=ITEMS, max_gap_size=0, **kwargs),
    )
    reader.seek(200)
    assert reader.read(40) == DATA[200:240]
    copy = copy_of(reader)
    assert isinstance(copy, DCPOptimizedS3Reader) and copy.tell() == 240
    assert [(g.start, g.end) for g in copy.groups] == [(g.start, g.end) for g in reader.groups]
    assert copy.read(60) == DATA[240:300]
    copy.seek(210)  # still inside the current item
    assert copy.read(5) == DATA[210:215]
    with pytest.raises(ValueError, match="only supports sequentially accessing"):
        copy.seek(0)
        copy.read(10)  # an earlier item: forward-only, as the original
    copy.seek(16000)
    assert copy.read(384) == DATA[16000:]


# ---- directly built readers: the callables decide ------------------------------------------


def test_the_copy_asks_for_the_stream_from_its_position() -> None:
    obj = FakeObject(DATA, chunk_size=100)
    reader = obj.sequential()
    assert reader.read(250) == DATA[:250]
    copy = copy_of(reader)
    assert obj.ranges == [(None, None)]  # pickling sent nothing
    assert copy.read(50) == DATA[250:300]
    source = copy._get_stream.__self__
    assert source.ranges == [(250, None)]  # one stream, from where the original was
    assert copy.seek(100) == 100 and copy.read(10) == DATA[100:110]
    assert source.ranges == [(250, None), (0, 250)]  # the bytes before, fetched on demand


@pytest.mark.parametrize(
    "build",
    [
        lambda obj: obj.sequential(),
        lambda obj: obj.ranged(64),
        lambda obj: obj.dcp(ITEMS),
    ],
    ids=["sequential", "ranged", "dcp"],
)
def test_readers_over_picklable_callables_pickle(build: Callable[[FakeObject], S3Reader]) -> None:
    reader = build(FakeObject(DATA))
    reader.seek(8000)
    assert reader.read(10) == DATA[8000:8010]
    copy = copy_of(reader)
    assert copy.read(20) == DATA[8010:8030]


def _info() -> Any:
    raise AssertionError("not called")


@pytest.mark.parametrize(
    "build",
    [
        lambda info, stream: SequentialS3Reader("bucket-a", "key/a", info, stream),
        lambda info, stream: RangedS3Reader("bucket-a", "key/a", info, stream, buffer_size=10),
        lambda info, stream: DCPOptimizedS3Reader("bucket-a", "key/a", ITEMS, info, stream),
    ],
    ids=["sequential", "ranged", "dcp"],
)
def test_readers_over_closures_refuse_to_pickle_with_a_clear_type_error(build: Any) -> None:
    def local_stream(start: int | None = None, end: int | None = None) -> Any:
        raise AssertionError("not called")

    for info, stream in ((_info, local_stream), (lambda: None, FakeObject(DATA).get_stream)):
        reader = build(info, stream)
        with pytest.raises(TypeError, match=r"cannot pickle \w+S3Reader of s3://bucket-a/key/a: its get_object_info"):
            pickle.dumps(reader)


def test_a_reader_class_of_another_library_pickles_as_python_objects_do() -> None:
    class Whole(S3Reader):
        def read(self, size: int | None = None) -> bytes:
            return b""

        def readinto(self, buf: Any) -> int:
            return 0

        def seek(self, offset: int, whence: int = io.SEEK_SET, /) -> int:
            return 0

        def tell(self) -> int:
            return 0

    reader = Whole("bucket-a", "key", _info, _info)
    assert reader.__reduce_ex__(pickle.DEFAULT_PROTOCOL)[0] is not None  # the default object protocol
    with pytest.raises((AttributeError, pickle.PicklingError)):
        pickle.dumps(reader)  # a local class: Python's own error, as before
