"""Create-only uploads (``put_object(..., if_none_match="*")``) over real HTTP: created when the
key is free, refused when it is taken (the existing object untouched, no upload left), the
condition on the wire and signed. Through an HTTP proxy: ``test_client_environment.py``."""

from __future__ import annotations

import pytest
from support import PART, S3TestEnv, payload

from s3torch.client import S3Client, S3Exception

SIZES = [pytest.param(1000, id="single"), pytest.param(2 * PART + 12345, id="multipart")]


def write(client: S3Client, bucket: str, key: str, data: bytes) -> None:
    with client.put_object(bucket, key, if_none_match="*") as writer:
        writer.write(data)


def assert_refused(client: S3Client, bucket: str, key: str, data: bytes) -> None:
    with pytest.raises(S3Exception, match="already exists") as raised:
        write(client, bucket, key, data)
    assert (raised.value.bucket, raised.value.key, raised.value.code) == (bucket, key, "PreconditionFailed")
    assert f"s3://{bucket}/{key}" in str(raised.value)


@pytest.mark.parametrize("size", SIZES)
def test_created_when_absent_refused_when_present(s3: S3TestEnv, size: int) -> None:
    client = s3.new_client(part_size=PART)
    key = s3.key("create-only.bin")
    write(client, s3.bucket, key, payload(size, seed=1))
    assert s3.read(key) == payload(size, seed=1)
    etag = s3.boto.head_object(Bucket=s3.bucket, Key=key)["ETag"]
    assert_refused(client, s3.bucket, key, payload(size, seed=2))
    assert s3.read(key) == payload(size, seed=1)
    assert s3.boto.head_object(Bucket=s3.bucket, Key=key)["ETag"] == etag
    assert s3.uploads() == []


@pytest.mark.parametrize("size", SIZES)
def test_a_racing_writer_is_never_replaced(s3: S3TestEnv, size: int) -> None:
    """Both writers start while the key is free; the one that publishes second is refused."""
    client = s3.new_client(part_size=PART)
    key = s3.key("raced.bin")
    loser = client.put_object(s3.bucket, key, if_none_match="*")
    loser.write(payload(size, seed=3))
    write(client, s3.bucket, key, payload(size, seed=4))
    with pytest.raises(S3Exception, match="already exists"):
        loser.close()
    assert s3.read(key) == payload(size, seed=4)
    assert s3.uploads() == []


@pytest.mark.parametrize("size", SIZES)
def test_the_condition_is_on_the_wire_and_signed(faulty_s3: S3TestEnv, size: int) -> None:
    proxy = faulty_s3.proxy
    assert proxy is not None
    client = faulty_s3.new_client(part_size=PART)
    write(client, faulty_s3.bucket, "wire.bin", payload(size))
    publishing = [
        request
        for request in proxy.requests_for(faulty_s3.bucket)
        # PutObject, or CompleteMultipartUpload (not the POST that creates the upload)
        if (request.method == "PUT" and "partNumber" not in request.query)
        or (request.method == "POST" and "uploadId" in request.query)
    ]
    assert publishing and all(request.headers.get("if-none-match") == "*" for request in publishing)
    for request in publishing:
        signed_headers = request.headers["authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
        assert "if-none-match" in signed_headers
    parts = [request for request in proxy.requests_for(faulty_s3.bucket) if "partNumber" in request.query]
    assert all("if-none-match" not in request.headers for request in parts)

    proxy.reset()
    with client.put_object(faulty_s3.bucket, "plain.bin") as writer:
        writer.write(payload(size))
    assert proxy.requests_for(faulty_s3.bucket)
    assert all("if-none-match" not in request.headers for request in proxy.requests_for(faulty_s3.bucket))
