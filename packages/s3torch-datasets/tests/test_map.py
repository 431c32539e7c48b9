"""``S3MapDataset`` on moto's in-process S3: listing once, indexing, shuffling, batches, pickling."""

from __future__ import annotations

import pickle
from typing import Any

import pytest
import torch

from s3torch.client import S3Client, S3Exception
from s3torch.datasets import S3BucketKeyData, S3MapDataset
from s3torch.readers import S3Reader, S3ReaderConstructor

REGION = "us-east-1"


def key_and_data(reader: S3Reader) -> tuple[str, bytes]:
    return reader.key, reader.read()


class Index:
    """An integer-like index (as numpy's integers are)."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __index__(self) -> int:
        return self.value


def counting(objects: list[S3BucketKeyData], calls: list[int]) -> Any:
    def get_dataset_objects(client: Any) -> list[S3BucketKeyData]:
        calls.append(1)
        return objects

    return get_dataset_objects


def test_len_getitem_and_negative_indices(bucket: Any) -> None:
    objects = bucket.put_many(7)
    keys = list(objects)
    dataset = S3MapDataset.from_prefix(bucket.uri("data/"), region=REGION, transform=key_and_data)
    assert len(dataset) == 7
    assert len(dataset) == 7
    assert dataset[0] == (keys[0], objects[keys[0]])
    assert dataset[6] == (keys[6], objects[keys[6]])
    assert dataset[-1] == dataset[6]
    assert dataset[-7] == dataset[0]
    assert dataset[Index(3)] == dataset[3]  # type: ignore[index]
    assert dataset[torch.tensor(2)] == dataset[2]  # type: ignore[index]
    for index in (7, -8, 100):
        with pytest.raises(IndexError, match=f"index {index} out of range for 7 objects"):
            dataset[index]
    with pytest.raises(TypeError, match="indices must be integers"):
        dataset["0"]  # type: ignore[index]
    with pytest.raises(TypeError, match="indices must be integers"):
        dataset[1:3]  # type: ignore[index]


def test_lists_once_lazily(bucket: Any) -> None:
    calls: list[int] = []
    objects = [S3BucketKeyData(bucket.bucket, key) for key in bucket.put_many(3)]
    dataset = S3MapDataset(REGION, counting(objects, calls), transform=lambda reader: reader.key)
    assert calls == []
    assert dataset[1] == objects[1].key
    assert len(dataset) == 3
    assert [dataset[index] for index in range(3)] == [item.key for item in objects]
    assert calls == [1]


def test_listing_info_is_used_so_no_head_is_needed(bucket: Any) -> None:
    objects = bucket.put_many(3)
    dataset = S3MapDataset.from_prefix(
        bucket.uri("data/"), region=REGION, transform=lambda reader: reader.seek(0, 2), prefetch=0
    )
    assert dataset[2] == len(objects["data/0002.bin"])
    assert all(item.object_info is not None for item in dataset._dataset_bucket_key_pairs)


def test_empty_prefix_and_missing_objects(bucket: Any) -> None:
    assert len(S3MapDataset.from_prefix(bucket.uri("nothing/"), region=REGION)) == 0
    with pytest.raises(S3Exception, match="Service error: The bucket does not exist"):
        len(S3MapDataset.from_prefix("s3://no-such-bucket-s3torch", region=REGION))
    missing = S3MapDataset.from_objects(bucket.uri("data/missing.bin"), region=REGION, transform=key_and_data)
    with pytest.raises(S3Exception, match="Service error: The key does not exist") as error:
        missing[0]
    assert error.value.key == "data/missing.bin"


def test_from_objects(bucket: Any) -> None:
    objects = bucket.put_many(4)
    keys = list(objects)[::-1]
    dataset = S3MapDataset.from_objects([bucket.uri(key) for key in keys], region=REGION, transform=key_and_data)
    assert [dataset[index] for index in range(len(dataset))] == [(key, objects[key]) for key in keys]


@pytest.mark.parametrize(
    ("constructor", "reader_type"),
    [(None, "sequential"), (S3ReaderConstructor.range_based(), "range_based")],
)
def test_user_agent_names_the_map_dataset(bucket: Any, constructor: Any, reader_type: str) -> None:
    bucket.put_many(1)
    dataset = S3MapDataset.from_prefix(bucket.uri("data/"), region=REGION, reader_constructor=constructor)
    dataset[0].read()
    assert dataset._client is not None
    assert dataset._client.user_agent_prefix.endswith(f"(md/dataset#map md/reader_type#{reader_type})")


@pytest.mark.parametrize("prefetch", [0, 3, 16])
def test_getitems_is_the_batch_of_getitem(bucket: Any, prefetch: int) -> None:
    objects = bucket.put_many(20)
    dataset = S3MapDataset.from_prefix(bucket.uri("data/"), region=REGION, transform=key_and_data, prefetch=prefetch)
    indices = [5, 0, 19, -1, 7, 7]
    assert dataset.__getitems__(indices) == [dataset[index] for index in indices]
    with pytest.raises(IndexError):
        dataset.__getitems__([0, 20])
    # A DataLoader with batching calls __getitems__.
    loader = torch.utils.data.DataLoader(dataset, batch_size=8, collate_fn=list)
    assert [item for batch in loader for item in batch] == sorted(objects.items())


def test_shuffle_is_a_permutation_per_epoch(bucket: Any) -> None:
    objects = bucket.put_many(30)
    dataset = S3MapDataset.from_prefix(bucket.uri("data/"), region=REGION, transform=lambda r: r.key, shuffle=True)
    epoch0 = [dataset[index] for index in range(30)]
    dataset.set_epoch(1)
    epoch1 = [dataset[index] for index in range(30)]
    assert sorted(epoch0) == sorted(epoch1) == list(objects)
    assert epoch0 != epoch1 != list(objects)
    other = S3MapDataset.from_objects(
        [bucket.uri(key) for key in reversed(objects)], region=REGION, transform=lambda r: r.key, shuffle=True
    )
    other.set_epoch(1)
    assert [other[index] for index in range(30)] == epoch1  # same order on every rank
    with pytest.raises(ValueError, match="epoch"):
        dataset.set_epoch(-1)


def test_pickles_with_its_listing_and_without_its_client(bucket: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    bucket.put_many(3)
    listings: list[str] = []
    original = S3Client.list_objects

    def recording(self: S3Client, *args: Any, **kwargs: Any) -> Any:
        listings.append(args[0])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(S3Client, "list_objects", recording)
    dataset = S3MapDataset.from_prefix(bucket.uri("data/"), region=REGION, transform=key_and_data)
    assert len(dataset) == 3
    assert dataset._client is not None
    copy = pickle.loads(pickle.dumps(dataset))
    assert copy._client is None
    assert [copy[index] for index in range(3)] == [dataset[index] for index in range(3)]
    assert listings == [bucket.bucket]  # the copy did not list again
