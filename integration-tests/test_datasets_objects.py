"""S3IterableDataset and S3MapDataset against a real HTTP server (moto, or the bucket of
``S3TORCH_TEST_BUCKET``): prefixes, object lists across buckets, indexing, transforms, readers."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from support import S3TestEnv, payload
from support.datasets import client_config, iterable_dataset, key_and_digest, map_dataset, prefix_uri
from support.s3env import S3Location

from s3torch.client import S3Exception
from s3torch.datasets import S3IterableDataset, S3MapDataset
from s3torch.readers import S3Reader, S3ReaderConstructor

DATASETS = [S3IterableDataset, S3MapDataset]


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def put_objects(s3: S3TestEnv, prefix: str, count: int, size: int = 1000) -> dict[str, str]:
    """``count`` objects under ``prefix``; returns their digests by key."""
    objects = {s3.key(f"{prefix}{index:03d}.bin"): payload(size + index, seed=index) for index in range(count)}
    s3.put_many(objects)
    return {key: digest(data) for key, data in objects.items()}


def all_items(dataset: Any) -> list[Any]:
    if isinstance(dataset, S3MapDataset):
        return [dataset[index] for index in range(len(dataset))]
    return list(dataset)


def build(kind: Any, s3: S3TestEnv, uri: str, **options: Any) -> Any:
    options.setdefault("transform", key_and_digest)
    return kind.from_prefix(
        uri,
        region=s3.location.region,
        endpoint=s3.location.endpoint,
        s3client_config=client_config(s3.location),
        **options,
    )


@pytest.mark.parametrize("kind", DATASETS)
def test_from_prefix_with_and_without_trailing_slash(s3: S3TestEnv, kind: Any) -> None:
    images = put_objects(s3, "images/", 5)
    siblings = put_objects(s3, "images-extra/", 2)
    with_slash = build(kind, s3, prefix_uri(s3.location, "images/"))
    without = build(kind, s3, prefix_uri(s3.location, "images"))
    assert all_items(with_slash) == sorted(images.items())
    assert all_items(without) == sorted({**images, **siblings}.items())
    assert with_slash.region == s3.location.region and with_slash.endpoint == s3.location.endpoint


@pytest.mark.parametrize("kind", DATASETS)
def test_from_objects_one_uri(s3: S3TestEnv, kind: Any) -> None:
    objects = put_objects(s3, "one/", 2)
    key = next(iter(objects))
    dataset = kind.from_objects(
        f"s3://{s3.bucket}/{key}",
        region=s3.location.region,
        endpoint=s3.location.endpoint,
        s3client_config=client_config(s3.location),
        transform=key_and_digest,
    )
    assert all_items(dataset) == [(key, objects[key])]


@pytest.fixture
def second_bucket(s3: S3TestEnv) -> Iterator[str]:
    if not s3.on_moto:
        pytest.skip("needs a second bucket: only on the local moto server")
    name = f"s3torch-test-{uuid.uuid4().hex[:20]}"
    s3.boto.create_bucket(Bucket=name)
    yield name
    for entry in s3.boto.list_objects_v2(Bucket=name).get("Contents", []):
        s3.boto.delete_object(Bucket=name, Key=entry["Key"])
    s3.boto.delete_bucket(Bucket=name)


@pytest.mark.parametrize("kind", DATASETS)
def test_from_objects_across_two_buckets(s3: S3TestEnv, second_bucket: str, kind: Any) -> None:
    first = put_objects(s3, "mixed/", 3)
    other = {"mixed/elsewhere-0.bin": payload(300, seed=40), "mixed/elsewhere-1.bin": payload(301, seed=41)}
    for key, data in other.items():
        s3.boto.put_object(Bucket=second_bucket, Key=key, Body=data)
    one, two, three = first
    uris = [
        f"s3://{s3.bucket}/{one}",
        f"s3://{second_bucket}/mixed/elsewhere-0.bin",
        f"s3://{s3.bucket}/{three}",
        f"s3://{second_bucket}/mixed/elsewhere-1.bin",
        f"s3://{s3.bucket}/{two}",
    ]

    def bucket_key_digest(reader: S3Reader) -> tuple[str, str, str]:
        return reader.bucket, reader.key, digest(reader.read())

    dataset = kind.from_objects(
        uris,
        region=s3.location.region,
        endpoint=s3.location.endpoint,
        s3client_config=client_config(s3.location),
        transform=bucket_key_digest,
    )
    assert all_items(dataset) == [
        (s3.bucket, one, first[one]),
        (second_bucket, "mixed/elsewhere-0.bin", digest(other["mixed/elsewhere-0.bin"])),
        (s3.bucket, three, first[three]),
        (second_bucket, "mixed/elsewhere-1.bin", digest(other["mixed/elsewhere-1.bin"])),
        (s3.bucket, two, first[two]),
    ]


def test_map_len_getitem_negative_and_out_of_range(s3: S3TestEnv) -> None:
    objects = put_objects(s3, "map/", 6)
    keys = sorted(objects)
    dataset = map_dataset(s3.location, "map/")
    assert len(dataset) == 6
    assert dataset[0] == (keys[0], objects[keys[0]])
    assert dataset[5] == dataset[-1] == (keys[5], objects[keys[5]])
    assert dataset[-6] == dataset[0]
    for index in (6, -7):
        with pytest.raises(IndexError, match="out of range for 6 objects"):
            dataset[index]


@pytest.mark.parametrize("kind", DATASETS)
def test_transform_gets_a_reader_of_the_object(s3: S3TestEnv, kind: Any) -> None:
    data = payload(5000, seed=7)
    s3.put(s3.key("t/object.bin"), data)

    def header_and_size(reader: S3Reader) -> tuple[bytes, int, int]:
        header = reader.read(16)
        reader.seek(-8, 2)
        tail_position = reader.tell()
        return header + reader.read(), tail_position, reader.seek(0, 2)

    dataset = build(kind, s3, prefix_uri(s3.location, "t/"), transform=header_and_size)
    assert all_items(dataset) == [(data[:16] + data[-8:], 4992, 5000)]
    readers = build(kind, s3, prefix_uri(s3.location, "t/"), transform=lambda reader: reader)
    (reader,) = all_items(readers)
    assert isinstance(reader, S3Reader) and reader.read() == data


def _dcp_constructor(location: S3Location, objects: dict[str, bytes]) -> Any:
    constructor = S3ReaderConstructor.dcp_optimized()
    storage = {
        index: SimpleNamespace(relative_path=key, offset=0, length=len(data))
        for index, (key, data) in enumerate(objects.items())
    }
    plan = [SimpleNamespace(storage_index=index) for index in storage]
    constructor.set_item_ranges_by_file(plan, storage, f"s3://{location.bucket}")
    return constructor


@pytest.mark.parametrize("kind", DATASETS)
@pytest.mark.parametrize("reader", ["sequential", "range_based", "range_based_unbuffered", "dcp_optimized"])
def test_each_reader_constructor(s3: S3TestEnv, kind: Any, reader: str) -> None:
    objects = {s3.key(f"readers/{index}.bin"): payload(20_000 + index, seed=index) for index in range(4)}
    s3.put_many(objects)
    constructor = {
        "sequential": S3ReaderConstructor.sequential(),
        "range_based": S3ReaderConstructor.range_based(buffer_size=4096),
        "range_based_unbuffered": S3ReaderConstructor.range_based(buffer_size=0),
        "dcp_optimized": _dcp_constructor(s3.location, objects),
    }[reader]

    def read_in_pieces(reader: S3Reader) -> tuple[str, str]:
        size = len(objects[reader.key])  # the DCP reader reads only what the plan asked, in order
        pieces = [reader.read(1000), reader.read(5000), reader.read(size - 6000)]
        return reader.key, digest(b"".join(pieces))

    dataset = build(
        kind, s3, prefix_uri(s3.location, "readers/"), transform=read_in_pieces, reader_constructor=constructor
    )
    assert all_items(dataset) == sorted((key, digest(data)) for key, data in objects.items())


@pytest.mark.parametrize("kind", DATASETS)
def test_empty_prefix_is_an_empty_dataset(s3: S3TestEnv, kind: Any) -> None:
    assert all_items(build(kind, s3, prefix_uri(s3.location, f"empty-{uuid.uuid4().hex}/"))) == []


@pytest.mark.parametrize("kind", DATASETS)
def test_missing_bucket_raises_naming_it(s3: S3TestEnv, kind: Any) -> None:
    name = f"s3torch-missing-{uuid.uuid4().hex[:16]}"
    dataset = build(kind, s3, f"s3://{name}/prefix/")
    with pytest.raises(S3Exception, match="Service error: The bucket does not exist") as error:
        all_items(dataset)
    assert error.value.bucket == name and name in str(error.value)


@pytest.mark.parametrize("kind", DATASETS)
def test_missing_key_raises_naming_it(s3: S3TestEnv, kind: Any) -> None:
    objects = put_objects(s3, "holes/", 3)
    missing = s3.key("holes/missing.bin")
    uris = [f"s3://{s3.bucket}/{key}" for key in objects]
    uris.insert(2, f"s3://{s3.bucket}/{missing}")
    dataset = kind.from_objects(
        uris,
        region=s3.location.region,
        endpoint=s3.location.endpoint,
        s3client_config=client_config(s3.location),
        transform=key_and_digest,
    )
    with pytest.raises(S3Exception, match="Service error: The key does not exist") as error:
        all_items(dataset)
    assert error.value.key == missing and f"s3://{s3.bucket}/{missing}" in str(error.value)


@pytest.mark.parametrize("uri", ["s3://", "s3:///key", "http://bucket/key", "bucket/key"])
def test_malformed_uris_raise_value_error_naming_them(uri: str) -> None:
    for kind in DATASETS:
        with pytest.raises(ValueError) as error:
            kind.from_prefix(uri, region="us-east-1")
        assert repr(uri) in str(error.value)
        with pytest.raises(ValueError) as error:
            kind.from_objects(["s3://bucket/fine", uri], region="us-east-1")
        assert repr(uri) in str(error.value)


def test_iterable_dataset_prefetch_does_not_change_the_data(s3: S3TestEnv) -> None:
    objects = put_objects(s3, "prefetch/", 40, size=3000)
    expected = sorted(objects.items())
    for prefetch in (0, 1, 16):
        assert list(iterable_dataset(s3.location, "prefetch/", prefetch=prefetch)) == expected
