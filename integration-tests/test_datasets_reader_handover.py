"""DataLoader workers hand readers to the main process (the default transform): 2 workers,
fork and spawn, both datasets, real HTTP to the moto server. Every reader arrives, reads the
object's bytes, and continues where a worker left it; a reader that cannot be pickled raises
in the main process instead of leaving it waiting.

Each DataLoader has a ``timeout``: before readers pickled, a worker's item was dropped and the
main process waited forever; here that fails the test instead."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable
from typing import Any

import pytest
import torch.utils.data
from support import S3TestEnv
from support.datasets import default_transform_dataset, read_some, reader_over_closures

from s3torch.readers import RangedS3Reader, S3Reader, S3ReaderConstructor, SequentialS3Reader

START_METHODS = ["fork", "spawn"]
KINDS = ["map", "iterable"]
#: Seconds a DataLoader waits for one item from a worker (a spawned worker imports torch first).
ITEM_TIMEOUT = 120


def put_objects(s3: S3TestEnv, prefix: str) -> dict[str, bytes]:
    """Eight objects from empty to 1.5 MiB (several response chunks), random bytes."""
    generator = random.Random(prefix)
    sizes = [0, 1, 100, 4096, 65_537, 300_000, 1_000_000, 1_500_000]
    objects = {s3.key(f"{prefix}{index}.bin"): generator.randbytes(size) for index, size in enumerate(sizes)}
    s3.put_many(objects)
    return objects


def loader(dataset: Any, start_method: str, **options: Any) -> Iterable[Any]:
    options.setdefault("batch_size", None)
    options.setdefault("num_workers", 2)
    return torch.utils.data.DataLoader(  # type: ignore[no-any-return]
        dataset, multiprocessing_context=start_method, timeout=ITEM_TIMEOUT, **options
    )


def sharding(kind: str) -> dict[str, Any]:
    # The iterable dataset splits its objects over the workers only when asked to.
    return {"enable_sharding": True} if kind == "iterable" else {}


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("start_method", START_METHODS)
def test_every_reader_arrives_and_reads_the_object(s3: S3TestEnv, start_method: str, kind: str) -> None:
    objects = put_objects(s3, f"handover-{kind}/")
    dataset = default_transform_dataset(kind, s3.location, f"handover-{kind}/", **sharding(kind))
    readers = list(loader(dataset, start_method))
    assert all(isinstance(reader, SequentialS3Reader) for reader in readers)
    assert sorted(reader.key for reader in readers) == sorted(objects)  # each object once
    for reader in readers:
        assert reader.bucket == s3.bucket
        assert digest(reader.read()) == digest(objects[reader.key])
        reader.seek(0)
        assert reader.read(10) == objects[reader.key][:10]


@pytest.mark.parametrize("start_method", START_METHODS)
def test_batches_of_readers_arrive(s3: S3TestEnv, start_method: str) -> None:
    # A batched DataLoader over the map dataset goes through __getitems__.
    objects = put_objects(s3, "handover-batches/")
    dataset = default_transform_dataset("map", s3.location, "handover-batches/")
    batches = list(loader(dataset, start_method, batch_size=3, collate_fn=list))
    readers = [reader for batch in batches for reader in batch]
    assert sorted(reader.key for reader in readers) == sorted(objects)
    assert all(reader.read() == objects[reader.key] for reader in readers)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("start_method", START_METHODS)
@pytest.mark.parametrize("strategy", ["sequential", "range_based"])
def test_a_reader_read_in_a_worker_continues_at_its_position(
    s3: S3TestEnv, start_method: str, kind: str, strategy: str
) -> None:
    objects = put_objects(s3, f"position-{kind}-{strategy}/")
    constructor = getattr(S3ReaderConstructor, strategy)()
    dataset = default_transform_dataset(
        kind,
        s3.location,
        f"position-{kind}-{strategy}/",
        transform=read_some,
        reader_constructor=constructor,
        **sharding(kind),
    )
    readers: list[S3Reader] = list(loader(dataset, start_method))
    assert sorted(reader.key for reader in readers) == sorted(objects)
    expected_type = RangedS3Reader if strategy == "range_based" else SequentialS3Reader
    for reader in readers:
        data = objects[reader.key]
        assert type(reader) is expected_type
        assert reader.tell() == min(100, len(data))  # where the worker left it
        assert reader.read(5000) == data[100:5100]
        buffer = bytearray(len(data))
        count = reader.readinto(buffer)
        assert buffer[:count] == data[5100:]
        assert reader.seek(0) == 0 and digest(reader.read()) == digest(data)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("start_method", START_METHODS)
def test_a_reader_that_cannot_be_pickled_raises_in_the_main_process(
    s3: S3TestEnv, start_method: str, kind: str
) -> None:
    put_objects(s3, f"unpicklable-{kind}/")
    dataset = default_transform_dataset(
        kind, s3.location, f"unpicklable-{kind}/", reader_constructor=reader_over_closures, **sharding(kind)
    )
    # One worker: with two, the error can reach this process while the second spawned worker
    # is still starting, and torch's clean-up then reports that worker's failed start.
    with pytest.raises(TypeError, match=r"cannot pickle SequentialS3Reader of s3://"):
        list(loader(dataset, start_method, num_workers=1))
