"""The package as a whole: its public surface, no torch import, and ``S3Client.get_object``
building readers over moto's in-process S3 (``mock_aws``) with the HEADs it should (not) send."""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

import s3torch.client
import s3torch.readers
from s3torch.client import HeadObjectResult, ObjectChangedError, ObjectInfo, S3Client, S3ClientConfig, S3Exception
from s3torch.readers import (
    DCPOptimizedS3Reader,
    RangedS3Reader,
    S3Reader,
    S3ReaderConstructor,
    SequentialS3Reader,
)

REGION = "us-east-1"
BUCKET = "s3torch-readers-unit"
DATA = bytes(range(256)) * 40 + b"tail"


# ---- the package ---------------------------------------------------------------------------


def test_public_surface() -> None:
    assert sorted(s3torch.readers.__all__) == [
        "DCPOptimizedConstructor",
        "DCPOptimizedS3Reader",
        "DCPS3ReaderConstructorProtocol",
        "DEFAULT_BUFFER_SIZE",
        "DEFAULT_MAX_GAP_SIZE",
        "GetStreamCallable",
        "ItemRange",
        "ItemStream",
        "ItemStreamReader",
        "ObjectInfoCallable",
        "ObjectSize",
        "RangeGroup",
        "RangedS3Reader",
        "S3Reader",
        "S3ReaderConstructor",
        "S3ReaderConstructorProtocol",
        "SequentialS3Reader",
        "check_reader_constructor",
        "coalesce",
    ]
    for name in s3torch.readers.__all__:
        assert getattr(s3torch.readers, name) is not None
    assert "ObjectChangedError" in s3torch.client.__all__
    assert issubclass(ObjectChangedError, S3Exception)


def test_s3reader_is_abstract() -> None:
    # (Instantiation is not refused: io.BufferedIOBase's C constructor skips the ABC check,
    # exactly as upstream's S3Reader(ABC, io.BufferedIOBase).)
    assert S3Reader.__abstractmethods__ == frozenset({"read", "readinto", "seek", "tell"})
    for reader_class in (SequentialS3Reader, RangedS3Reader, DCPOptimizedS3Reader):
        assert issubclass(reader_class, S3Reader)
        assert issubclass(reader_class, io.BufferedIOBase)


def test_readers_never_import_torch() -> None:
    code = "import s3torch.readers, sys; assert 'torch' not in sys.modules, 'torch was imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_readers_work_where_torch_cannot_be_imported(tmp_path: Path) -> None:
    poisoned = tmp_path / "torch"
    poisoned.mkdir()
    (poisoned / "__init__.py").write_text("raise ImportError('s3torch.readers must not import torch')\n")
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from s3torch.readers import S3ReaderConstructor, SequentialS3Reader;"
        "S3ReaderConstructor.dcp_optimized(); S3ReaderConstructor.range_based();"
        "import s3torch.client; assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, timeout=60)


# ---- S3Client.get_object over mock_aws ------------------------------------------------------


@dataclass
class Moto:
    boto: Any
    client: S3Client
    heads: list[str]


@pytest.fixture
def moto(aws_environment: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Moto]:
    with mock_aws():
        boto = boto3.client("s3", region_name=REGION)
        boto.create_bucket(Bucket=BUCKET)
        boto.put_object(Bucket=BUCKET, Key="data.bin", Body=DATA)
        boto.put_object(Bucket=BUCKET, Key="empty.bin", Body=b"")
        client = S3Client(REGION, s3client_config=S3ClientConfig(part_size=5 * 1024 * 1024))
        heads: list[str] = []
        head_object = client.head_object

        def counting_head_object(bucket: str, key: str) -> HeadObjectResult:
            heads.append(key)
            return head_object(bucket, key)

        monkeypatch.setattr(client, "head_object", counting_head_object)
        yield Moto(boto, client, heads)


def listed(moto: Moto, key: str) -> ObjectInfo:
    infos = [info for page in moto.client.list_objects(BUCKET, prefix=key) for info in page.object_info]
    (info,) = [info for info in infos if info.key == key]
    return info


def test_get_object_defaults_to_the_sequential_reader(moto: Moto) -> None:
    reader = moto.client.get_object(BUCKET, "data.bin")
    assert type(reader) is SequentialS3Reader
    assert (reader.bucket, reader.key) == (BUCKET, "data.bin")
    assert reader.read() == DATA
    reader.seek(100)
    assert reader.read(10) == DATA[100:110]
    assert moto.heads == []


def test_get_object_with_a_listing_sends_no_head(moto: Moto) -> None:
    info = listed(moto, "data.bin")
    assert info.size == len(DATA)
    reader = moto.client.get_object(BUCKET, "data.bin", object_info=info)
    assert reader.seek(0, io.SEEK_END) == len(DATA)
    assert reader.seek(-4, io.SEEK_END) == len(DATA) - 4
    assert reader.read() == b"tail"
    reader.seek(0)
    assert reader.read() == DATA
    assert moto.heads == []


def test_get_object_seek_end_without_info_sends_one_head(moto: Moto) -> None:
    reader = moto.client.get_object(BUCKET, "data.bin")
    assert reader.seek(0, io.SEEK_END) == len(DATA)
    assert reader.seek(-1, io.SEEK_END) == len(DATA) - 1
    assert moto.heads == ["data.bin"]


@pytest.mark.parametrize("buffer_size", [None, 0, 100])
def test_ranged_reader_heads_once_without_info_and_never_with_it(moto: Moto, buffer_size: int | None) -> None:
    constructor = S3ReaderConstructor.range_based(buffer_size)
    reader = moto.client.get_object(BUCKET, "data.bin", reader_constructor=constructor)
    assert isinstance(reader, RangedS3Reader)
    assert reader.read(10) == DATA[:10]
    reader.seek(5000)
    assert reader.read() == DATA[5000:]
    assert moto.heads == ["data.bin"]

    moto.heads.clear()
    reader = moto.client.get_object(
        BUCKET, "data.bin", object_info=listed(moto, "data.bin"), reader_constructor=constructor
    )
    reader.seek(-4, io.SEEK_END)
    assert reader.read() == b"tail"
    reader.seek(0)
    assert reader.read() == DATA
    assert moto.heads == []


@pytest.mark.parametrize("constructor", [S3ReaderConstructor.sequential(), S3ReaderConstructor.range_based()])
def test_get_object_of_an_empty_object(moto: Moto, constructor: Any) -> None:
    reader = moto.client.get_object(BUCKET, "empty.bin", reader_constructor=constructor)
    assert reader.read() == b""
    assert reader.tell() == 0
    assert reader.readinto(bytearray(5)) == 0


def test_get_object_with_the_dcp_constructor(moto: Moto) -> None:
    @dataclass
    class Item:
        storage_index: int

    @dataclass
    class Storage:
        relative_path: str
        offset: int
        length: int

    constructor = S3ReaderConstructor.dcp_optimized(max_gap_size=0)
    storage = {0: Storage("data.bin", 10, 20), 1: Storage("data.bin", 1000, 24)}
    constructor.set_item_ranges_by_file([Item(0), Item(1)], storage, f"s3://{BUCKET}")
    reader = moto.client.get_object(BUCKET, "data.bin", reader_constructor=constructor)
    assert isinstance(reader, DCPOptimizedS3Reader)
    assert [(g.start, g.end) for g in reader.groups] == [(10, 30), (1000, 1024)]
    reader.seek(10)
    assert reader.read(20) == DATA[10:30]
    buffer = bytearray(24)
    reader.seek(1000)
    assert reader.readinto(buffer) == 24
    assert buffer == DATA[1000:1024]
    assert moto.heads == []


def test_get_object_checks_names(moto: Moto) -> None:
    with pytest.raises(ValueError, match="Bucket should be specified"):
        moto.client.get_object("", "data.bin")
    with pytest.raises(ValueError, match="Key should be specified"):
        moto.client.get_object(BUCKET, "")


def test_get_object_of_a_missing_key_fails_on_first_read(moto: Moto) -> None:
    reader = moto.client.get_object(BUCKET, "missing.bin")
    with pytest.raises(S3Exception, match="The key does not exist"):
        reader.read()
