"""Everything a DataLoader worker or a checkpoint may carry pickles: settings, never connections."""

from __future__ import annotations

import pickle

import pytest
from client_unit_support import PART, MockS3

from s3torch.client import (
    HeadObjectResult,
    ListObjectResult,
    ListObjectStream,
    ObjectInfo,
    RestoreStatus,
    S3Client,
    S3ClientConfig,
    UserAgent,
)

VALUES = [
    RestoreStatus(in_progress=False, expiry=1_700_000_000),
    RestoreStatus(in_progress=True),
    ObjectInfo("a/b.bin", '"etag"', 10, 1_700_000_000, "GLACIER", RestoreStatus(False, 1_800_000_000)),
    ObjectInfo("k", '"e"', 0, 0),
    HeadObjectResult('"etag-2"', 5, 1_700_000_000, None, None),
    ListObjectResult([ObjectInfo("k", '"e"', 1, 2)], ["p/"]),
    ListObjectResult(),
    S3ClientConfig(part_size=PART, max_attempts=3, force_path_style=True),
]


@pytest.mark.parametrize("value", VALUES, ids=lambda value: type(value).__name__)
def test_value_types_round_trip(value: object) -> None:
    assert pickle.loads(pickle.dumps(value)) == value


def test_head_object_result_has_no_key() -> None:
    assert not hasattr(HeadObjectResult('"e"', 1, 2), "key")


def test_client_pickles_its_settings_not_its_transport(s3: MockS3) -> None:
    client = S3Client(
        "us-east-1",
        endpoint=None,
        user_agent=UserAgent(["dcp"]),
        s3client_config=S3ClientConfig(part_size=PART, max_attempts=4),
    )
    s3.put("k", b"data")
    client.head_object(s3.bucket, "k")  # the transport exists now
    blob = pickle.dumps(client)
    assert b"ThreadPoolExecutor" not in blob
    assert b"botocore" not in blob
    copy = pickle.loads(blob)
    assert (copy.region, copy.endpoint, copy.s3client_config) == (client.region, None, client.s3client_config)
    assert copy.user_agent_prefix == client.user_agent_prefix
    assert copy.user_agent_prefix.count("s3torch-client/") == 1
    assert copy.head_object(s3.bucket, "k").size == 4


def test_client_with_endpoint_round_trips() -> None:
    client = S3Client("eu-west-1", endpoint="http://127.0.0.1:9000")
    copy = pickle.loads(pickle.dumps(client))
    assert (copy.region, copy.endpoint, copy.s3client_config) == (
        "eu-west-1",
        "http://127.0.0.1:9000",
        S3ClientConfig(),
    )


def test_list_stream_pickled_mid_listing_resumes_at_the_next_page(s3: MockS3) -> None:
    keys = [f"p/{i:03d}" for i in range(25)]
    for key in keys:
        s3.put(key, b"x")
    stream = s3.client.list_objects(s3.bucket, "p/", max_keys=10)
    first = next(stream)
    assert [info.key for info in first.object_info] == keys[:10]
    assert stream.continuation_token
    assert not stream.complete

    copy = pickle.loads(pickle.dumps(stream))
    assert isinstance(copy, ListObjectStream)
    assert (copy.bucket, copy.prefix, copy.delimiter, copy.max_keys) == (s3.bucket, "p/", "", 10)
    assert copy.continuation_token == stream.continuation_token
    rest = [info.key for page in copy for info in page.object_info]
    assert rest == keys[10:]
    assert copy.complete
    # The original is independent of its copy and resumes at the same place.
    assert [info.key for page in stream for info in page.object_info] == keys[10:]


def test_completed_list_stream_stays_complete_after_pickling(s3: MockS3) -> None:
    s3.put("only", b"x")
    stream = s3.client.list_objects(s3.bucket)
    assert len(list(stream)) == 1
    copy = pickle.loads(pickle.dumps(stream))
    assert copy.complete
    assert list(copy) == []


def test_list_stream_from_state(s3: MockS3) -> None:
    for key in ("a", "b", "c"):
        s3.put(key, b"x")
    first = s3.client.list_objects(s3.bucket, max_keys=2)
    next(first)
    resumed = ListObjectStream._from_state(s3.client, s3.bucket, "", "", 2, first.continuation_token, False)
    assert [info.key for page in resumed for info in page.object_info] == ["c"]
