"""Datasets across processes: DataLoader workers (fork and spawn), a torch.distributed job of 2
ranks x 2 workers, and resuming mid-epoch in a new process."""

from __future__ import annotations

import gc
import hashlib
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import torch.utils.data
from support import S3TestEnv, payload
from support.datasets import (
    dataset_half,
    iterable_dataset,
    keys,
    map_dataset,
    ranks_epochs,
    stateful_loader_half,
)
from support.distributed import run_ranks, run_spawned

OBJECTS = 24  # a multiple of 2 ranks x 2 workers: every worker gets the same number


def put_objects(s3: S3TestEnv, prefix: str, count: int = OBJECTS) -> dict[str, str]:
    objects = {s3.key(f"{prefix}{index:03d}.bin"): payload(500 + index, seed=index) for index in range(count)}
    s3.put_many(objects)
    return {key: hashlib.sha256(data).hexdigest() for key, data in objects.items()}


def loader(
    dataset: torch.utils.data.Dataset[object], start_method: str, **options: object
) -> torch.utils.data.DataLoader:  # type: ignore[type-arg]
    options.setdefault("batch_size", None)
    return torch.utils.data.DataLoader(dataset, num_workers=2, multiprocessing_context=start_method, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_iterable_dataset_in_dataloader_workers(s3: S3TestEnv, start_method: str) -> None:
    objects = put_objects(s3, "loader/")
    reference = iterable_dataset(s3.location, "loader/", enable_sharding=True, shuffle=True, seed=5)
    # Iterated here first: the workers inherit (fork) or unpickle (spawn) a dataset whose client
    # has connections and threads in this process; they must make their own.
    assert sorted(reference) == sorted(objects.items())
    epochs = []
    if start_method == "fork":
        for epoch in range(2):
            reference.set_epoch(epoch)  # non-persistent workers start from this object's epoch
            epochs.append([tuple(item) for item in loader(reference, start_method)])
    else:
        dataset = iterable_dataset(s3.location, "loader/", enable_sharding=True, shuffle=True, seed=5)
        persistent = loader(dataset, start_method, persistent_workers=True)
        # The workers move to the next epoch themselves.
        epochs = [[tuple(item) for item in persistent] for _ in range(2)]
    for items in epochs:
        assert Counter(items) == Counter(objects.items())  # every object once, with its own bytes
    assert [key for key, _ in epochs[0]] != [key for key, _ in epochs[1]]
    # Both ways give the same per-epoch order (set_epoch, or persistent workers counting epochs).
    single = iterable_dataset(s3.location, "loader/", shuffle=True, seed=5)
    for epoch, items in enumerate(epochs):
        single.set_epoch(epoch)
        assert sorted(keys(single)) == sorted(key for key, _ in items)


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_map_dataset_in_dataloader_workers(s3: S3TestEnv, start_method: str) -> None:
    objects = put_objects(s3, "map-loader/")
    dataset = map_dataset(s3.location, "map-loader/")
    assert len(dataset) == OBJECTS  # listed here, once: the workers get the list with the dataset
    batches = loader(dataset, start_method, batch_size=5, shuffle=True, collate_fn=list)
    assert len(batches) == 5
    items = [item for batch in batches for item in batch]
    assert Counter(items) == Counter(objects.items())


def test_forked_workers_leave_their_inherited_objects_to_the_parent(s3: S3TestEnv) -> None:
    # A forked worker's first full garbage collection would walk (and copy, page by page) the
    # whole heap it inherited; the datasets freeze it when the worker starts iterating.
    put_objects(s3, "frozen/", count=4)
    frozen_counts = {
        "iterable": list(
            loader(iterable_dataset(s3.location, "frozen/", transform=lambda _: gc.get_freeze_count()), "fork")
        ),
        "map": list(loader(map_dataset(s3.location, "frozen/", transform=lambda _: gc.get_freeze_count()), "fork")),
    }
    for kind, counts in frozen_counts.items():
        assert len(counts) == (8 if kind == "iterable" else 4), kind  # unsharded iterable: both workers read all 4
        assert all(count > 0 for count in counts), kind
    assert gc.get_freeze_count() == 0  # and the main process is left as it was


def test_distributed_two_ranks_two_workers(s3: S3TestEnv) -> None:
    objects = put_objects(s3, "ddp/")
    ranks = run_ranks(ranks_epochs, 2, s3.location, "ddp/")
    everything = Counter(list(objects))
    for epoch in range(2):
        # Sharded over ranks and workers: each object once per epoch.
        for name in ("sharded", "shuffled", "shuffled_spawn", "map"):
            assert Counter(ranks[0][name][epoch] + ranks[1][name][epoch]) == everything, (name, epoch)
        # The shuffled order is the same on both ranks...
        full = ranks[0]["full"][epoch]
        assert full == ranks[1]["full"][epoch]
        assert sorted(full) == sorted(objects)
        # ...and the shards of the two ranks' 2 workers are exactly that order: object i went to
        # rank i % 2, worker (i // 2) % 2, and the DataLoader alternates between its workers.
        for name in ("shuffled", "shuffled_spawn"):
            shards = [ranks[rank][name][epoch] for rank in range(2)]
            rebuilt = [shards[index % 2][2 * (index // 4) + (index // 2) % 2] for index in range(OBJECTS)]
            assert rebuilt == full, name
    assert ranks[0]["full"][0] != ranks[0]["full"][1]  # a different order per epoch
    assert ranks[0]["sharded"][0] == ranks[0]["sharded"][1]  # not shuffled: the same each epoch


def dataset_states(state: object) -> Iterator[dict[str, Any]]:
    """The S3IterableDataset states inside a StatefulDataLoader state."""
    if isinstance(state, dict):
        if {"epoch", "seed", "position"} <= state.keys():
            yield state
        for value in state.values():
            yield from dataset_states(value)


def test_dataset_state_resumes_in_a_new_process(s3: S3TestEnv) -> None:
    objects = put_objects(s3, "resume/")
    first = dataset_half(s3.location, "resume/", None, 9)  # here; the rest in a new process
    assert len(first["keys"]) == 9 and first["state"]["position"] == 9
    second = run_spawned(dataset_half, s3.location, "resume/", first["state"], 0)
    assert Counter(first["keys"] + second["keys"]) == Counter(list(objects))
    assert second["state"]["epoch"] == first["state"]["epoch"] == 2
    assert second["state"]["position"] == OBJECTS


@pytest.mark.filterwarnings("ignore:'set_vital' is deprecated")  # torchdata 0.11 on recent torch
def test_stateful_dataloader_resumes_in_a_new_process(s3: S3TestEnv) -> None:
    pytest.importorskip("torchdata.stateful_dataloader", reason="torchdata is an optional test dependency")
    objects = put_objects(s3, "stateful/")
    first = stateful_loader_half(s3.location, "stateful/", None, 9)  # here; the rest in a new process
    assert len(first["keys"]) == 9
    # The loader saved each worker's dataset state (not a count of batches to fast-forward).
    worker_states = list(dataset_states(first["state"]))
    assert len(worker_states) == 2 and sum(state["position"] for state in worker_states) == 9
    second = run_spawned(stateful_loader_half, s3.location, "stateful/", first["state"], 0)
    assert Counter(first["keys"] + second["keys"]) == Counter(list(objects))
