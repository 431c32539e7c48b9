"""What the dataset integration tests run in other processes: transforms and child functions,
at module level of an importable module so that ``spawn`` DataLoader workers and spawned test
processes can unpickle them."""

from __future__ import annotations

import hashlib
from typing import Any

import torch.utils.data

from s3torch.client import S3ClientConfig
from s3torch.datasets import S3IterableDataset, S3MapDataset
from s3torch.readers import S3Reader, SequentialS3Reader

from .s3env import S3Location


def key_and_digest(reader: S3Reader) -> tuple[str, str]:
    """The object's key and the SHA-256 of every byte of it."""
    return reader.key, hashlib.sha256(reader.read()).hexdigest()


def key_only(reader: S3Reader) -> str:
    """The key, without reading a byte."""
    return reader.key


def read_some(reader: S3Reader) -> S3Reader:
    """Read the first 100 bytes of the object and hand the reader on, 100 bytes in."""
    reader.read(100)
    return reader


def reader_over_closures(bucket: str, key: str, get_object_info: Any, get_stream: Any) -> S3Reader:
    """A reader constructor that wraps the client's callables in local functions: its readers
    work but cannot be pickled."""

    def info() -> Any:
        return get_object_info()

    def stream(*args: Any) -> Any:
        return get_stream(*args)

    return SequentialS3Reader(bucket, key, info, stream)


def default_transform_dataset(kind: str, location: S3Location, prefix: str, **options: Any) -> Any:
    """An ``S3MapDataset`` or ``S3IterableDataset`` (``kind``) of the prefix, with the default
    transform unless ``options`` say otherwise: its items are readers."""
    dataset_class = {"map": S3MapDataset, "iterable": S3IterableDataset}[kind]
    return dataset_class.from_prefix(
        prefix_uri(location, prefix),
        region=location.region,
        endpoint=location.endpoint,
        s3client_config=client_config(location),
        **options,
    )


def prefix_uri(location: S3Location, name: str) -> str:
    return f"s3://{location.bucket}/{location.key(name)}"


def client_config(location: S3Location) -> S3ClientConfig:
    return S3ClientConfig(force_path_style=location.endpoint is not None)


def iterable_dataset(location: S3Location, prefix: str, **options: Any) -> S3IterableDataset:
    options.setdefault("transform", key_and_digest)
    return S3IterableDataset.from_prefix(
        prefix_uri(location, prefix),
        region=location.region,
        endpoint=location.endpoint,
        s3client_config=client_config(location),
        **options,
    )


def map_dataset(location: S3Location, prefix: str, **options: Any) -> S3MapDataset:
    options.setdefault("transform", key_and_digest)
    return S3MapDataset.from_prefix(
        prefix_uri(location, prefix),
        region=location.region,
        endpoint=location.endpoint,
        s3client_config=client_config(location),
        **options,
    )


def keys(loader: Any) -> list[str]:
    return [key for key, _ in loader]


# ---- run in spawned processes -----------------------------------------------------------------


def ranks_epochs(rank: int, world_size: int, location: S3Location, prefix: str) -> dict[str, list[list[str]]]:
    """One rank of a DDP job: what it reads in two epochs, each way. DataLoaders have 2 workers,
    forked, except for ``shuffled_spawn`` (persistent spawn workers: new interpreters, without the
    rank's process group)."""
    result: dict[str, list[list[str]]] = {name: [] for name in ("sharded", "shuffled", "shuffled_spawn", "full", "map")}
    sharded = iterable_dataset(location, prefix, enable_sharding=True)
    shuffled = iterable_dataset(location, prefix, enable_sharding=True, shuffle=True, seed=13)
    spawned = torch.utils.data.DataLoader(
        iterable_dataset(location, prefix, enable_sharding=True, shuffle=True, seed=13),
        num_workers=2,
        batch_size=None,
        multiprocessing_context="spawn",
        persistent_workers=True,
    )
    whole = iterable_dataset(location, prefix, shuffle=True, seed=13)
    mapped = map_dataset(location, prefix)
    sampler = torch.utils.data.DistributedSampler(mapped, shuffle=True, seed=3)
    for epoch in range(2):
        for name, dataset in (("sharded", sharded), ("shuffled", shuffled)):
            dataset.set_epoch(epoch)
            loader = torch.utils.data.DataLoader(
                dataset, num_workers=2, batch_size=None, multiprocessing_context="fork"
            )
            result[name].append(keys(loader))
        result["shuffled_spawn"].append(keys(spawned))
        whole.set_epoch(epoch)
        result["full"].append(keys(whole))  # no sharding: this rank's view of the whole order
        sampler.set_epoch(epoch)
        loader = torch.utils.data.DataLoader(
            mapped, sampler=sampler, num_workers=2, batch_size=4, collate_fn=list, multiprocessing_context="fork"
        )
        result["map"].append([key for batch in loader for key, _ in batch])
    torch.distributed.barrier()
    return result


def stateful_loader_half(location: S3Location, prefix: str, state: dict[str, Any] | None, take: int) -> dict[str, Any]:
    """Read ``take`` objects (all, for 0) through torchdata's ``StatefulDataLoader`` with 2
    workers, after loading ``state``; return the keys and the loader's state."""
    from torchdata.stateful_dataloader import StatefulDataLoader

    loader = StatefulDataLoader(
        iterable_dataset(location, prefix, enable_sharding=True, shuffle=True, seed=21),
        num_workers=2,
        batch_size=None,
        multiprocessing_context="fork",
    )
    if state is not None:
        loader.load_state_dict(state)
    read = _take(loader, take)
    return {"keys": read, "state": loader.state_dict()}


def dataset_half(location: S3Location, prefix: str, state: dict[str, Any] | None, take: int) -> dict[str, Any]:
    """Read ``take`` objects (all, for 0) of a dataset shuffled through a buffer, in epoch 2 or
    from ``state``; return the keys and the dataset's state."""
    dataset = iterable_dataset(location, prefix, shuffle=True, shuffle_buffer_size=5, seed=21)
    if state is not None:
        dataset.load_state_dict(state)
    else:
        dataset.set_epoch(2)
    read = _take(dataset, take)
    return {"keys": read, "state": dataset.state_dict()}


def _take(items: Any, count: int) -> list[str]:
    read: list[str] = []
    for key, _ in items:
        read.append(key)
        if len(read) == count:
            break
    return read
