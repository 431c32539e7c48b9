"""``S3IterableDataset`` on moto's in-process S3: content, order, sharding, shuffling, state."""

from __future__ import annotations

import pickle
from collections import Counter
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from s3torch.client import S3Client, S3Exception
from s3torch.datasets import S3IterableDataset
from s3torch.readers import S3Reader, S3ReaderConstructor

REGION = "us-east-1"


def key_and_data(reader: S3Reader) -> tuple[str, bytes]:
    return reader.key, reader.read()


def key_of(reader: S3Reader) -> str:
    return reader.key


def keys_of(dataset: S3IterableDataset) -> list[str]:
    return [key for key, _ in dataset]


def as_rank(monkeypatch: pytest.MonkeyPatch, rank: int, world_size: int, worker: tuple[int, int] | None = None) -> None:
    """Pretend to run as ``rank`` of ``world_size`` (and DataLoader worker ``(id, count)``)."""
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda: rank)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: world_size)
    info = None if worker is None else SimpleNamespace(id=worker[0], num_workers=worker[1])
    monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: info)


def test_from_prefix_yields_every_object_in_listing_order(bucket: Any) -> None:
    objects = bucket.put_many(25)
    bucket.put("elsewhere/x.bin", b"not in the prefix")
    dataset = S3IterableDataset.from_prefix(bucket.uri("data/"), region=REGION, transform=key_and_data)
    assert list(dataset) == sorted(objects.items())
    assert list(dataset) == sorted(objects.items())  # listed again on each iteration


def test_prefix_without_a_trailing_slash_is_a_plain_key_prefix(bucket: Any) -> None:
    bucket.put("data/a", b"1")
    bucket.put("database/b", b"2")
    bucket.put("dat", b"3")
    bucket.put("other", b"4")
    with_slash = S3IterableDataset.from_prefix(bucket.uri("data/"), region=REGION, transform=key_of)
    without = S3IterableDataset.from_prefix(bucket.uri("data"), region=REGION, transform=key_of)
    whole = S3IterableDataset.from_prefix(f"s3://{bucket.bucket}", region=REGION, transform=key_of)
    assert list(with_slash) == ["data/a"]
    assert list(without) == ["data/a", "database/b"]
    assert list(whole) == ["dat", "data/a", "database/b", "other"]


def test_from_objects_keeps_the_given_order(bucket: Any) -> None:
    objects = bucket.put_many(6)
    keys = list(reversed(objects))
    dataset = S3IterableDataset.from_objects([bucket.uri(key) for key in keys], region=REGION, transform=key_and_data)
    assert list(dataset) == [(key, objects[key]) for key in keys]
    single = S3IterableDataset.from_objects(bucket.uri(keys[0]), region=REGION, transform=key_and_data)
    assert list(single) == [(keys[0], objects[keys[0]])]


def test_default_transform_yields_readers(bucket: Any) -> None:
    objects = bucket.put_many(3)
    readers = list(S3IterableDataset.from_prefix(bucket.uri("data/"), region=REGION))
    assert all(isinstance(reader, S3Reader) for reader in readers)
    assert {reader.key: reader.read() for reader in readers} == objects


def test_empty_prefix_is_an_empty_dataset(bucket: Any) -> None:
    assert list(S3IterableDataset.from_prefix(bucket.uri("nothing/here/"), region=REGION)) == []


def test_missing_bucket_raises_when_iterated(bucket: Any) -> None:
    dataset = S3IterableDataset.from_prefix("s3://no-such-bucket-s3torch/x/", region=REGION)
    iterator = iter(dataset)
    with pytest.raises(S3Exception, match="Service error: The bucket does not exist") as error:
        next(iterator)
    assert error.value.bucket == "no-such-bucket-s3torch"


@pytest.mark.parametrize("prefetch", [0, 4])
def test_missing_key_raises_at_its_place_naming_it(bucket: Any, prefetch: int) -> None:
    objects = bucket.put_many(5)
    uris = [bucket.uri(key) for key in objects]
    uris.insert(3, bucket.uri("data/missing.bin"))
    dataset = S3IterableDataset.from_objects(uris, region=REGION, transform=key_and_data, prefetch=prefetch)
    received = []
    with pytest.raises(S3Exception, match="Service error: The key does not exist") as error:
        for key, _ in dataset:
            received.append(key)
    assert error.value.key == "data/missing.bin"
    assert f"s3://{bucket.bucket}/data/missing.bin" in str(error.value)
    assert received == list(objects)[:3]
    assert dataset.state_dict()["position"] == 3  # a resume would try the missing object again


@pytest.mark.parametrize(
    ("constructor", "reader_type"),
    [
        (None, "sequential"),
        (S3ReaderConstructor.sequential(), "sequential"),
        (S3ReaderConstructor.range_based(), "range_based"),
        (S3ReaderConstructor.range_based(buffer_size=0), "range_based"),
    ],
)
def test_reader_constructors_and_user_agent(bucket: Any, constructor: Any, reader_type: str) -> None:
    objects = bucket.put_many(4, size=lambda index: 1000 * (index + 1))
    dataset = S3IterableDataset.from_prefix(
        bucket.uri("data/"), region=REGION, transform=key_and_data, reader_constructor=constructor
    )
    assert dict(dataset) == objects
    client = dataset._client
    assert isinstance(client, S3Client)
    assert client.user_agent_prefix.endswith(f"(md/dataset#iterable md/reader_type#{reader_type})")


def test_rank_and_world_size_are_read_when_iteration_starts(bucket: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    objects = bucket.put_many(10)
    # Built before the process group exists (the upstream's trap): sharding must still apply.
    dataset = S3IterableDataset.from_prefix(
        bucket.uri("data/"), region=REGION, transform=key_and_data, enable_sharding=True
    )
    keys = list(objects)
    as_rank(monkeypatch, 1, 2)
    assert keys_of(dataset) == keys[1::2]
    as_rank(monkeypatch, 0, 2)
    assert keys_of(dataset) == keys[0::2]


def test_objects_are_split_over_ranks_and_workers(bucket: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    objects = bucket.put_many(23)
    dataset = S3IterableDataset.from_prefix(
        bucket.uri("data/"), region=REGION, transform=key_and_data, enable_sharding=True
    )
    seen: Counter[str] = Counter()
    for rank in range(2):
        for worker in range(3):
            as_rank(monkeypatch, rank, 2, (worker, 3))
            seen.update(keys_of(dataset))
    assert seen == Counter(list(objects))


def test_without_sharding_every_worker_reads_everything(bucket: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    objects = bucket.put_many(5)
    dataset = S3IterableDataset.from_prefix(bucket.uri("data/"), region=REGION, transform=key_and_data)
    as_rank(monkeypatch, 1, 2, (1, 2))
    assert keys_of(dataset) == list(objects)


# ---- shuffling ----------------------------------------------------------------------------------


@pytest.mark.parametrize("buffer_size", [None, 4])
def test_shuffle_is_deterministic_per_epoch(bucket: Any, buffer_size: int | None) -> None:
    objects = bucket.put_many(30)

    def build(seed: int = 7) -> S3IterableDataset:
        return S3IterableDataset.from_prefix(
            bucket.uri("data/"),
            region=REGION,
            transform=key_and_data,
            shuffle=True,
            seed=seed,
            shuffle_buffer_size=buffer_size,
        )

    dataset = build()
    dataset.set_epoch(0)
    epoch0 = keys_of(dataset)
    dataset.set_epoch(1)
    epoch1 = keys_of(dataset)
    assert sorted(epoch0) == sorted(epoch1) == list(objects)
    assert epoch0 != epoch1 != list(objects)
    other = build()  # another rank, or another run
    other.set_epoch(1)
    assert keys_of(other) == epoch1
    assert keys_of(build(seed=8)) != epoch0


def test_an_iteration_without_set_epoch_uses_the_next_epoch(bucket: Any) -> None:
    bucket.put_many(20)
    dataset = S3IterableDataset.from_prefix(bucket.uri("data/"), region=REGION, transform=key_of, shuffle=True)
    reference = S3IterableDataset.from_prefix(bucket.uri("data/"), region=REGION, transform=key_of, shuffle=True)
    assert dataset.epoch == 0
    first, second = list(dataset), list(dataset)
    assert dataset.epoch == 2
    reference.set_epoch(1)
    assert second == list(reference) != first
    # An iterator that was made but never started does not count as an epoch.
    iter(dataset)
    dataset.set_epoch(5)
    iter(dataset)
    assert dataset.epoch == 5


def test_shuffle_is_the_same_whatever_order_objects_are_listed_in(bucket: Any) -> None:
    objects = bucket.put_many(15)
    uris = [bucket.uri(key) for key in objects]
    one = S3IterableDataset.from_objects(uris, region=REGION, transform=key_of, shuffle=True, seed=3)
    two = S3IterableDataset.from_objects(uris[::-1], region=REGION, transform=key_of, shuffle=True, seed=3)
    assert list(one) == list(two)


def test_shuffled_shards_make_up_the_shuffled_order(bucket: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    bucket.put_many(24)
    dataset = S3IterableDataset.from_prefix(
        bucket.uri("data/"), region=REGION, transform=key_of, shuffle=True, seed=11, enable_sharding=True
    )
    dataset.set_epoch(2)
    order = list(dataset)
    shards = {}
    for rank in range(2):
        for worker in range(2):
            as_rank(monkeypatch, rank, 2, (worker, 2))
            dataset.set_epoch(2)
            shards[rank, worker] = list(dataset)
    rebuilt = [shards[index % 2, (index // 2) % 2][index // 4] for index in range(24)]
    assert rebuilt == order


# ---- state --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("shuffle", "buffer_size"), [(False, None), (True, None), (True, 5)])
def test_resume_mid_epoch_in_a_fresh_dataset(bucket: Any, shuffle: bool, buffer_size: int | None) -> None:
    objects = bucket.put_many(30)

    def build() -> S3IterableDataset:
        return S3IterableDataset.from_prefix(
            bucket.uri("data/"),
            region=REGION,
            transform=key_of,
            shuffle=shuffle,
            seed=5,
            shuffle_buffer_size=buffer_size,
        )

    dataset = build()
    dataset.set_epoch(3)
    iterator = iter(dataset)
    first_half = [next(iterator) for _ in range(11)]
    state = pickle.loads(pickle.dumps(dataset.state_dict()))
    assert state["epoch"] == 3 and state["position"] == 11 and state["seed"] == 5
    expected_rest = list(iterator)

    resumed = build()
    resumed.load_state_dict(state)
    resumed.set_epoch(3)  # a training loop's own set_epoch keeps the loaded position
    assert resumed.state_dict()["position"] == 11
    rest = list(resumed)
    assert rest == expected_rest
    assert sorted(first_half + rest) == sorted(objects)
    assert resumed.state_dict()["position"] == 30
    assert resumed.epoch == 4


def test_resume_does_not_fetch_the_objects_already_read(bucket: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    bucket.put_many(12)
    opened: list[str] = []
    original = S3Client.get_object

    def recording(self: S3Client, bucket_name: str, key: str, **kwargs: Any) -> S3Reader:
        opened.append(key)
        return original(self, bucket_name, key, **kwargs)

    monkeypatch.setattr(S3Client, "get_object", recording)
    dataset = S3IterableDataset.from_prefix(bucket.uri("data/"), region=REGION, transform=key_of)
    dataset.load_state_dict({"epoch": 0, "seed": 0, "position": 9})
    assert list(dataset) == opened == [f"data/{index:04d}.bin" for index in range(9, 12)]


def test_state_before_and_after_iterations(bucket: Any) -> None:
    bucket.put_many(4)
    dataset = S3IterableDataset.from_prefix(bucket.uri("data/"), region=REGION, transform=key_of, shuffle=True, seed=9)
    state = dataset.state_dict()
    assert state == {
        "epoch": 0,
        "seed": 9,
        "position": 0,
        "shuffle": True,
        "shuffle_buffer_size": None,
        "rank": None,
        "world_size": None,
        "worker_id": None,
        "num_workers": None,
    }
    list(dataset)
    done = dataset.state_dict()
    assert (done["epoch"], done["position"], done["rank"], done["world_size"]) == (0, 4, 0, 1)
    # Loading a finished epoch: that iteration is empty, the next one is the next epoch.
    again = S3IterableDataset.from_prefix(bucket.uri("data/"), region=REGION, transform=key_of, shuffle=True, seed=1)
    again.load_state_dict(done)
    assert list(again) == []
    second = list(again)
    dataset.set_epoch(1)
    assert second == list(dataset)


def test_load_state_dict_rejects_what_does_not_fit(bucket: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    dataset = S3IterableDataset.from_prefix(bucket.uri("data/"), region=REGION, shuffle=True)
    with pytest.raises(ValueError, match="not a state"):
        dataset.load_state_dict({"epoch": 1})
    with pytest.raises(ValueError, match="position"):
        dataset.load_state_dict({"epoch": 1, "seed": 0, "position": -1})
    with pytest.raises(ValueError, match="shuffle=False"):
        dataset.load_state_dict({"epoch": 1, "seed": 0, "position": 3, "shuffle": False})
    bucket.put_many(8)
    dataset.load_state_dict(
        {"epoch": 1, "seed": 0, "position": 3, "rank": 0, "world_size": 1, "worker_id": 1, "num_workers": 2}
    )
    with pytest.raises(ValueError, match="world size and DataLoader num_workers"):
        iter(dataset)
    as_rank(monkeypatch, 0, 1, (1, 2))
    assert len(list(dataset)) == 8 - 3  # not sharded: the worker reads everything, from position 3


def test_transform_errors_propagate_without_advancing(bucket: Any) -> None:
    bucket.put_many(5)

    def picky(reader: S3Reader) -> str:
        if reader.key.endswith("0002.bin"):
            raise RuntimeError("cannot decode")
        return reader.key

    dataset = S3IterableDataset.from_prefix(bucket.uri("data/"), region=REGION, transform=picky)
    with pytest.raises(RuntimeError, match="cannot decode"):
        list(dataset)
    assert dataset.state_dict()["position"] == 2


def test_pickles_without_its_client(bucket: Any) -> None:
    objects = bucket.put_many(6)
    dataset = S3IterableDataset.from_prefix(bucket.uri("data/"), region=REGION, transform=key_and_data, shuffle=True)
    iterator = iter(dataset)
    next(iterator)  # mid-iteration: a client, prefetch threads and open streams exist
    assert dataset._client is not None
    copy = pickle.loads(pickle.dumps(dataset))
    assert copy._client is None
    assert copy.region == REGION and copy.state_dict() == dataset.state_dict()
    copy.load_state_dict({**copy.state_dict(), "position": 0})
    assert sorted(keys_of(copy)) == sorted(objects)
    del iterator


def test_spawned_workers_take_the_rank_of_the_process_that_pickled_them(
    bucket: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = bucket.put_many(12)
    dataset = S3IterableDataset.from_prefix(
        bucket.uri("data/"), region=REGION, transform=key_and_data, enable_sharding=True
    )
    as_rank(monkeypatch, 1, 2)  # the rank's main process, starting a DataLoader's spawn workers
    payload = pickle.dumps(dataset)
    # In the worker: a new interpreter, no process group, a worker id.
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: SimpleNamespace(id=1, num_workers=2))
    worker_copy = pickle.loads(payload)
    keys = list(objects)
    assert keys_of(worker_copy) == keys[1::2][1::2]
    assert worker_copy.state_dict()["rank"] == 1 and worker_copy.state_dict()["world_size"] == 2
    # A process with a group of its own goes by that group.
    as_rank(monkeypatch, 0, 2, (1, 2))
    assert keys_of(worker_copy) == keys[0::2][1::2]
