"""``S3Checkpoint`` over moto's in-process S3: torch.save / torch.load round trips."""

from __future__ import annotations

import io
import pickle
from typing import Any

import pytest
import torch
from dcp_support import CONFIG, REGION, MockBucket

import s3torch.dcp
from s3torch.client import S3Exception, S3Writer
from s3torch.dcp import S3Checkpoint
from s3torch.readers import RangedS3Reader, S3ReaderConstructor, SequentialS3Reader


def checkpoint(**kwargs: Any) -> S3Checkpoint:
    kwargs.setdefault("s3client_config", CONFIG)
    return S3Checkpoint(REGION, **kwargs)


def test_public_surface() -> None:
    assert sorted(s3torch.dcp.__all__) == [
        "BinaryPrefixStrategy",
        "CheckpointNotFoundError",
        "DefaultPrefixStrategy",
        "HexPrefixStrategy",
        "IncompleteSaveError",
        "NumericPrefixStrategy",
        "RoundRobinPrefixStrategy",
        "S3Checkpoint",
        "S3FileSystem",
        "S3PrefixStrategyBase",
        "S3StorageReader",
        "S3StorageWriter",
        "__version__",
    ]
    for name in s3torch.dcp.__all__:
        assert getattr(s3torch.dcp, name) is not None


def test_attributes() -> None:
    ckpt = S3Checkpoint(REGION)
    assert ckpt.region == REGION
    assert ckpt.endpoint is None
    ckpt = S3Checkpoint(REGION, endpoint="http://127.0.0.1:1", s3client_config=CONFIG)
    assert ckpt.endpoint == "http://127.0.0.1:1"
    assert ckpt._client.endpoint == "http://127.0.0.1:1"
    assert ckpt._client.s3client_config is CONFIG


VALUES: list[Any] = [
    1,
    2.5,
    "text",
    None,
    [1, 2, 3],
    {"a": 1, "b": [True, False]},
    torch.arange(10),
    torch.randn(3, 4, generator=torch.Generator().manual_seed(0)),
    torch.tensor([1.5, 2.5], dtype=torch.bfloat16),
    torch.zeros(0),
]


@pytest.mark.parametrize("value", VALUES, ids=lambda value: type(value).__name__)
def test_round_trip(s3: MockBucket, value: Any) -> None:
    ckpt = checkpoint()
    with ckpt.writer(s3.uri("value.pt")) as writer:
        torch.save(value, writer)
    loaded = torch.load(ckpt.reader(s3.uri("value.pt")), weights_only=True)
    if isinstance(value, torch.Tensor):
        assert torch.equal(loaded, value) and loaded.dtype == value.dtype
    else:
        assert loaded == value


@pytest.mark.filterwarnings("ignore:TypedStorage is deprecated")
def test_untyped_storage_round_trip(s3: MockBucket) -> None:
    storage = torch.arange(16, dtype=torch.uint8).untyped_storage()
    ckpt = checkpoint()
    with ckpt.writer(s3.uri("storage.pt")) as writer:
        torch.save(storage, writer)
    loaded = torch.load(ckpt.reader(s3.uri("storage.pt")), weights_only=True)
    assert loaded.tolist() == list(range(16))  # torch.load gives it back as a TypedStorage


@pytest.mark.parametrize(
    ("constructor", "reader_type"),
    [
        (None, SequentialS3Reader),
        (S3ReaderConstructor.sequential(), SequentialS3Reader),
        (S3ReaderConstructor.range_based(), RangedS3Reader),
        (S3ReaderConstructor.range_based(0), RangedS3Reader),
    ],
)
def test_reader_strategies(s3: MockBucket, constructor: Any, reader_type: type) -> None:
    value = {"weights": torch.randn(64, 64), "step": 9}
    ckpt = checkpoint()
    with ckpt.writer(s3.uri("model.pt")) as writer:
        torch.save(value, writer)
    per_call = ckpt.reader(s3.uri("model.pt"), reader_constructor=constructor)
    assert type(per_call) is reader_type
    loaded = torch.load(per_call, weights_only=True)
    assert torch.equal(loaded["weights"], value["weights"]) and loaded["step"] == 9
    default = checkpoint(reader_constructor=constructor).reader(s3.uri("model.pt"))
    assert type(default) is reader_type


def test_writer_is_an_s3_writer_and_publishes_on_close(s3: MockBucket) -> None:
    writer = checkpoint().writer(s3.uri("a/b.pt"))
    assert isinstance(writer, S3Writer)
    torch.save(torch.ones(2), writer)
    assert s3.list_keys() == []
    writer.close()
    assert s3.list_keys() == ["a/b.pt"]


def test_an_exception_during_save_publishes_nothing(s3: MockBucket) -> None:
    class Unpicklable:
        def __reduce__(self) -> Any:
            raise RuntimeError("cannot pickle this")

    big = torch.zeros(3 * 1024 * 1024)  # 12 MiB: a multipart upload is under way
    with pytest.raises(RuntimeError, match="cannot pickle"), checkpoint().writer(s3.uri("bad.pt")) as writer:
        torch.save({"big": big, "bad": Unpicklable()}, writer)
    assert s3.list_keys() == []
    assert s3.uploads() == []


def test_missing_object(s3: MockBucket) -> None:
    with pytest.raises(S3Exception, match="Service error: The key does not exist"):
        torch.load(checkpoint().reader(s3.uri("missing.pt")), weights_only=True)


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("bucket/key", "Only s3:// URIs are supported"),
        ("", "Only s3:// URIs are supported"),
        ("s3://", "Bucket name must be non-empty"),
        ("s3:///key", "Bucket name must be non-empty"),
        ("s3://bucket", "Key must be non-empty"),
        ("s3://bucket/", "Key must be non-empty"),
    ],
)
def test_uri_validation(uri: str, message: str) -> None:
    ckpt = checkpoint()
    with pytest.raises(ValueError, match=message):
        ckpt.reader(uri)
    with pytest.raises(ValueError, match=message):
        ckpt.writer(uri)


def test_reader_seeks_so_torch_load_needs_no_copy(s3: MockBucket) -> None:
    s3.put("x.pt", b"0123456789")
    reader = checkpoint().reader(s3.uri("x.pt"))
    assert reader.seekable() and reader.readable()
    assert reader.seek(0, io.SEEK_END) == 10


def test_pickles() -> None:
    copy = pickle.loads(pickle.dumps(checkpoint(endpoint="http://127.0.0.1:1")))
    assert copy.region == REGION and copy.endpoint == "http://127.0.0.1:1"
