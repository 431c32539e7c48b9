"""Bad inputs and missing things: what is refused before any request, and the upstream error
texts for what S3 refuses."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from client_unit_support import MockS3

from s3torch.client import S3Client, S3Exception

CALLS: dict[str, Callable[[S3Client, str, str], Any]] = {
    "get_object": lambda c, b, k: c.get_object(b, k),
    "get_object_stream": lambda c, b, k: c.get_object_stream(b, k),
    "put_object": lambda c, b, k: c.put_object(b, k),
    "head_object": lambda c, b, k: c.head_object(b, k),
    "delete_object": lambda c, b, k: c.delete_object(b, k),
    "copy_object-source": lambda c, b, k: c.copy_object(b, k, "dst", "dst-key"),
    "copy_object-destination": lambda c, b, k: c.copy_object("src", "src-key", b, k),
}


@pytest.mark.parametrize("call", list(CALLS))
def test_empty_bucket_is_refused(call: str) -> None:
    with pytest.raises(ValueError, match=r"^Bucket should be specified"):
        CALLS[call](S3Client("us-east-1"), "", "key")


@pytest.mark.parametrize("call", list(CALLS))
def test_empty_key_is_refused(call: str) -> None:
    with pytest.raises(ValueError, match=r"^Key should be specified"):
        CALLS[call](S3Client("us-east-1"), "bucket", "")


def test_list_objects_needs_a_bucket_and_a_sane_max_keys() -> None:
    client = S3Client("us-east-1")
    with pytest.raises(ValueError, match=r"^Bucket should be specified"):
        client.list_objects("")
    for max_keys in (0, 1001, -5):
        with pytest.raises(ValueError, match="max_keys"):
            client.list_objects("bucket", max_keys=max_keys)


def test_region_is_required() -> None:
    with pytest.raises(ValueError, match="region"):
        S3Client("")


@pytest.mark.parametrize(("start", "end"), [(-1, None), (None, -1)])
def test_negative_range_is_refused(s3: MockS3, start: int | None, end: int | None) -> None:
    with pytest.raises(ValueError, match="non-negative"):
        s3.client.get_object_stream(s3.bucket, "k", start, end)


@pytest.mark.parametrize("endpoint", ["INVALID", "not a url", "http//missing-colon"])
def test_malformed_endpoint(endpoint: str) -> None:
    client = S3Client("us-east-1", endpoint=endpoint)
    with pytest.raises(S3Exception, match="Invalid S3 endpoint") as caught:
        client.head_object("bucket", "key")
    assert str(caught.value).startswith("Client error: Failed to construct request: Invalid S3 endpoint")
    assert f"Custom endpoint `{endpoint}` was not a valid URI" in str(caught.value)


def test_missing_key(s3: MockS3) -> None:
    with pytest.raises(S3Exception, match=r"^Service error: The key does not exist") as caught:
        b"".join(s3.client.get_object_stream(s3.bucket, "dir/missing.bin"))
    assert "s3://s3torch-unit/dir/missing.bin" in str(caught.value)
    assert (caught.value.bucket, caught.value.key, caught.value.code) == (s3.bucket, "dir/missing.bin", "NoSuchKey")


@pytest.mark.parametrize(
    "call",
    [
        lambda c: b"".join(c.get_object_stream("no-such-bucket-here", "k")),
        lambda c: next(c.list_objects("no-such-bucket-here")),
        lambda c: c.delete_object("no-such-bucket-here", "k"),
    ],
    ids=["get", "list", "delete"],
)
def test_missing_bucket(s3: MockS3, call: Callable[[S3Client], Any]) -> None:
    with pytest.raises(S3Exception, match=r"^Service error: The bucket does not exist") as caught:
        call(s3.client)
    assert "s3://no-such-bucket-here" in str(caught.value)
    assert caught.value.code == "NoSuchBucket"


def test_head_of_missing_object(s3: MockS3) -> None:
    with pytest.raises(S3Exception, match=r"^Service error: The object was not found") as caught:
        s3.client.head_object(s3.bucket, "missing")
    assert "s3://s3torch-unit/missing" in str(caught.value)
    assert caught.value.status == 404


def test_copy_of_missing_source(s3: MockS3) -> None:
    with pytest.raises(S3Exception, match=r"^Service error: The object was not found") as caught:
        s3.client.copy_object(s3.bucket, "missing", s3.bucket, "target")
    assert (caught.value.bucket, caught.value.key) == (s3.bucket, "missing")
    assert not s3.exists("target")


def test_delete_of_missing_key_is_silent(s3: MockS3) -> None:
    s3.client.delete_object(s3.bucket, "never-there")


def test_missing_credentials_are_a_client_error(s3: MockS3, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    # A configuration of its own, so that its transport resolves credentials now (there are none).
    client = MockS3.new_client(read_timeout=12.345)
    s3.put("k", b"x")
    with pytest.raises(S3Exception, match="No signing credentials") as caught:
        b"".join(client.get_object_stream(s3.bucket, "k"))
    assert caught.value.bucket == s3.bucket
    assert str(caught.value).startswith("Client error: No signing credentials found (")
