"""What the datasets send, seen by the recording proxy in front of moto: list calls, no HEAD,
one GET per object however deep the prefetch, the user agent."""

from __future__ import annotations

import hashlib
from collections import Counter

import pytest
from support import S3TestEnv, payload
from support.datasets import iterable_dataset, key_only, map_dataset
from support.fault_proxy import RecordedRequest

from s3torch.datasets._common import identity
from s3torch.readers import S3Reader

LISTED_OBJECTS = 2500


def lists(requests: list[RecordedRequest]) -> list[RecordedRequest]:
    return [request for request in requests if request.method == "GET" and request.query.get("list-type") == "2"]


def object_gets(requests: list[RecordedRequest]) -> list[RecordedRequest]:
    return [request for request in requests if request.method == "GET" and "list-type" not in request.query]


def heads(requests: list[RecordedRequest]) -> list[RecordedRequest]:
    return [request for request in requests if request.method == "HEAD"]


def test_listing_2500_objects_sends_three_list_calls_and_no_head(faulty_s3: S3TestEnv) -> None:
    assert faulty_s3.proxy is not None
    faulty_s3.put_many({faulty_s3.key(f"many/{index:05d}"): b"x" for index in range(LISTED_OBJECTS)})
    bucket_requests = lambda: faulty_s3.proxy.requests_for(faulty_s3.bucket)  # noqa: E731

    mapped = map_dataset(faulty_s3.location, "many/", transform=key_only)
    assert len(mapped) == LISTED_OBJECTS
    assert mapped[-1] == faulty_s3.key(f"many/{LISTED_OBJECTS - 1:05d}")
    assert len(lists(bucket_requests())) == 3  # ceil(2500 / 1000) pages, once
    assert heads(bucket_requests()) == []

    faulty_s3.proxy.reset()
    streamed = iterable_dataset(faulty_s3.location, "many/", transform=key_only, prefetch=0)
    assert len(list(streamed)) == LISTED_OBJECTS
    requests = bucket_requests()
    assert len(lists(requests)) == 3
    assert heads(requests) == [] and object_gets(requests) == []  # nothing was read, nothing fetched
    tokens = [request.query.get("continuation-token") for request in lists(requests)]
    assert tokens[0] is None and None not in tokens[1:]


@pytest.mark.parametrize("prefetch", [0, 16])
def test_one_get_per_object_and_no_head(faulty_s3: S3TestEnv, prefetch: int) -> None:
    assert faulty_s3.proxy is not None
    objects = {faulty_s3.key(f"read/{index:03d}"): payload(2000 + index, seed=index) for index in range(30)}
    faulty_s3.put_many(objects)

    def size_then_data(reader: S3Reader) -> tuple[str, int, bytes]:
        size = reader.seek(0, 2)  # the listing's size: no HEAD
        reader.seek(0)
        return reader.key, size, reader.read()

    for dataset in (
        iterable_dataset(faulty_s3.location, "read/", transform=size_then_data, prefetch=prefetch),
        map_dataset(faulty_s3.location, "read/", transform=size_then_data, prefetch=prefetch),
    ):
        faulty_s3.proxy.reset()
        items = [dataset[index] for index in range(len(dataset))] if hasattr(dataset, "__len__") else list(dataset)
        assert items == [(key, len(data), data) for key, data in sorted(objects.items())]
        requests = faulty_s3.proxy.requests_for(faulty_s3.bucket)
        assert heads(requests) == []
        assert Counter(request.path for request in object_gets(requests)) == Counter(
            f"/{faulty_s3.bucket}/{key}" for key in objects
        )


def test_the_default_transform_hands_out_readers_that_have_sent_nothing(faulty_s3: S3TestEnv) -> None:
    assert faulty_s3.proxy is not None
    objects = {faulty_s3.key(f"lazy/{index:03d}"): payload(100, seed=index) for index in range(30)}
    faulty_s3.put_many(objects)
    readers = list(iterable_dataset(faulty_s3.location, "lazy/", transform=identity))
    assert object_gets(faulty_s3.proxy.requests_for(faulty_s3.bucket)) == []  # no connection held per reader
    assert {reader.key: reader.read() for reader in readers} == objects


def test_stopping_early_leaves_a_bounded_number_of_gets(faulty_s3: S3TestEnv) -> None:
    assert faulty_s3.proxy is not None
    faulty_s3.put_many({faulty_s3.key(f"early/{index:03d}"): payload(1000, seed=index) for index in range(60)})
    iterator = iter(iterable_dataset(faulty_s3.location, "early/", prefetch=8))
    received = [next(iterator) for _ in range(5)]
    iterator.close()  # what dropping the iterator does; pending prefetches are cancelled or closed
    assert len(received) == 5
    gets = object_gets(faulty_s3.proxy.requests_for(faulty_s3.bucket))
    assert 5 <= len(gets) <= 5 + 8


def test_requests_carry_the_dataset_user_agent(faulty_s3: S3TestEnv) -> None:
    assert faulty_s3.proxy is not None
    faulty_s3.put_many({faulty_s3.key("ua/object"): b"data"})
    assert list(iterable_dataset(faulty_s3.location, "ua/")) == [
        (faulty_s3.key("ua/object"), hashlib.sha256(b"data").hexdigest())
    ]
    map_dataset(faulty_s3.location, "ua/")[0]
    agents = [request.headers.get("user-agent", "") for request in faulty_s3.proxy.requests_for(faulty_s3.bucket)]
    iterable_agents = [agent for agent in agents if "md/dataset#iterable md/reader_type#sequential" in agent]
    map_agents = [agent for agent in agents if "md/dataset#map md/reader_type#sequential" in agent]
    assert len(iterable_agents) == 2 and len(map_agents) == 2  # a list and a GET each
    assert len(iterable_agents) + len(map_agents) == len(agents)
