"""Errors over real HTTP keep the upstream texts users match on, name the object, carry the
S3 error code and request id, and pickle."""

from __future__ import annotations

import pickle
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from support import PART, S3TestEnv, payload

from s3torch.client import S3Client, S3Exception

KEY_MISSING = "Service error: The key does not exist"
BUCKET_MISSING = "Service error: The bucket does not exist"
NOT_FOUND = "Service error: The object was not found"


def missing_bucket() -> str:
    return f"s3torch-missing-{uuid.uuid4().hex[:16]}"


def _get(client: S3Client, bucket: str, key: str) -> Any:
    return b"".join(client.get_object_stream(bucket, key))


def _head(client: S3Client, bucket: str, key: str) -> Any:
    return client.head_object(bucket, key)


def _list(client: S3Client, bucket: str, key: str) -> Any:
    return list(client.list_objects(bucket, key))


def _delete(client: S3Client, bucket: str, key: str) -> Any:
    return client.delete_object(bucket, key)


def _copy(client: S3Client, bucket: str, key: str) -> Any:
    return client.copy_object(bucket, key, bucket, key + ".copy")


@pytest.mark.parametrize(
    ("operation", "missing", "message", "code"),
    [
        (_get, "key", KEY_MISSING, "NoSuchKey"),
        (_get, "bucket", BUCKET_MISSING, "NoSuchBucket"),
        (_head, "key", NOT_FOUND, None),
        (_list, "bucket", BUCKET_MISSING, "NoSuchBucket"),
        (_delete, "bucket", BUCKET_MISSING, "NoSuchBucket"),
        (_copy, "key", NOT_FOUND, None),
    ],
    ids=["get-key", "get-bucket", "head-key", "list-bucket", "delete-bucket", "copy-key"],
)
def test_service_errors_keep_upstream_texts(
    s3: S3TestEnv, operation: Callable[[S3Client, str, str], Any], missing: str, message: str, code: str | None
) -> None:
    bucket = missing_bucket() if missing == "bucket" else s3.bucket
    key = s3.key("no-such-key.bin")
    with pytest.raises(S3Exception) as caught:
        operation(s3.client, bucket, key)
    error = caught.value
    assert str(error).startswith(message)
    assert f"s3://{bucket}" in str(error)
    assert error.bucket == bucket
    if operation is not _list:
        assert error.key == key
        assert f"s3://{bucket}/{key}" in str(error)
    if code is not None:
        assert error.code == code
    assert error.status == 404


def test_head_of_missing_object_is_exactly_the_upstream_text_first(s3: S3TestEnv) -> None:
    # S3FileSystem.exists() upstream compares str(e) with this text; ours starts with it.
    with pytest.raises(S3Exception, match=f"^{NOT_FOUND}"):
        s3.client.head_object(s3.bucket, s3.key("nothing"))


def test_delete_of_missing_key_is_silent(s3: S3TestEnv) -> None:
    assert s3.client.delete_object(s3.bucket, s3.key("never-written")) is None


@pytest.mark.parametrize("size", [10, PART + 1], ids=["single", "multipart"])
def test_upload_into_missing_bucket_fails(s3: S3TestEnv, size: int) -> None:
    bucket = missing_bucket()
    client = s3.new_client(part_size=PART)
    with pytest.raises(S3Exception, match=BUCKET_MISSING) as caught, client.put_object(bucket, "key") as writer:
        writer.write(payload(size))
    assert caught.value.code == "NoSuchBucket"
    assert caught.value.bucket == bucket


def test_service_error_pickles_with_its_fields(s3: S3TestEnv) -> None:
    with pytest.raises(S3Exception) as caught:
        _get(s3.client, s3.bucket, s3.key("missing"))
    error = caught.value
    assert error.request_id
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert (copy.bucket, copy.key, copy.code, copy.request_id, copy.status) == (
        error.bucket,
        error.key,
        error.code,
        error.request_id,
        error.status,
    )
