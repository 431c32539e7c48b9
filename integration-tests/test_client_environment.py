"""The standard AWS environment reaches the data path too: a CA bundle for an HTTPS endpoint,
and an HTTP proxy from HTTP_PROXY. Both run through real servers (support/network.py)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from support import MOTO_REGION, MotoServer, payload
from support.network import ForwardProxy, TLSTerminator, self_signed_certificate
from support.s3env import boto3_client, unique_bucket_name

from s3torch.client import S3Client, S3ClientConfig, S3Exception

PART = 5 * 1024 * 1024


@pytest.fixture
def bucket(moto_server: MotoServer) -> str:
    name = unique_bucket_name()
    boto3_client(MOTO_REGION, moto_server.endpoint).create_bucket(Bucket=name)
    return name


def _round_trip(client: S3Client, bucket: str) -> None:
    data = payload(PART + 12345, seed=7)
    with client.put_object(bucket, "env/object.bin") as writer:  # multipart: UploadPart on the data path
        writer.write(data)
    assert bytes(b"".join(client.get_object_stream(bucket, "env/object.bin"))) == data
    keys = [info.key for page in client.list_objects(bucket, prefix="env/") for info in page.object_info]
    assert keys == ["env/object.bin"]


def test_https_endpoint_trusts_aws_ca_bundle(
    moto_server: MotoServer, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    certificate = self_signed_certificate(tmp_path)
    with TLSTerminator((moto_server.host, moto_server.port), certificate) as tls:
        endpoint = f"https://localhost:{tls.port}"
        monkeypatch.setenv("AWS_CA_BUNDLE", certificate.cert)
        # A config no other test uses: a transport of its own, built with this environment.
        trusting = S3Client(
            MOTO_REGION,
            endpoint=endpoint,
            s3client_config=S3ClientConfig(force_path_style=True, part_size=PART, connect_timeout=9.5),
        )
        _round_trip(trusting, bucket)
        assert tls.handshake_failures == 0

        monkeypatch.delenv("AWS_CA_BUNDLE")
        doubting = S3Client(
            MOTO_REGION,
            endpoint=endpoint,
            s3client_config=S3ClientConfig(force_path_style=True, max_attempts=1, connect_timeout=9.4),
        )
        with pytest.raises(S3Exception, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed") as raised:
            doubting.get_object_stream(bucket, "env/object.bin").start()
        assert raised.value.bucket == bucket


@contextmanager
def _client_through_http_proxy(
    moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch, connect_timeout: float
) -> Iterator[tuple[S3Client, ForwardProxy]]:
    """A client of the moto server whose requests go through a forward proxy named by HTTP_PROXY;
    ``connect_timeout`` must be one no other test uses, so that the client gets a transport of its
    own, built with this environment."""
    with ForwardProxy() as proxy:
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        client = S3Client(
            MOTO_REGION,
            endpoint=moto_server.endpoint,
            s3client_config=S3ClientConfig(force_path_style=True, part_size=PART, connect_timeout=connect_timeout),
        )
        yield client, proxy


def test_http_proxy_from_environment_carries_data_and_control_requests(
    moto_server: MotoServer, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _client_through_http_proxy(moto_server, monkeypatch, connect_timeout=9.3) as (client, proxy):
        _round_trip(client, bucket)
    seen = {(request.method, request.target.split("?")[0]) for request in proxy.requests}
    object_url = f"{moto_server.endpoint}/{bucket}/env/object.bin"
    assert ("PUT", object_url) in seen  # UploadPart: the data path
    assert ("GET", object_url) in seen  # the object's GET: the data path
    assert ("POST", object_url) in seen  # create/complete multipart: the control path
    assert all(request.target.startswith("http://") for request in proxy.requests)


def test_create_only_writes_through_an_http_proxy(
    moto_server: MotoServer, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``if_none_match="*"`` on botocore's urllib3 pool (the proxied data path) and client."""
    boto = boto3_client(MOTO_REGION, moto_server.endpoint)
    with _client_through_http_proxy(moto_server, monkeypatch, connect_timeout=9.2) as (client, proxy):
        for size in (1000, PART + 12345):
            key = f"env/create-only-{size}.bin"
            with client.put_object(bucket, key, if_none_match="*") as writer:
                writer.write(payload(size, seed=5))
            with (
                pytest.raises(S3Exception, match="already exists") as raised,
                client.put_object(bucket, key, if_none_match="*") as writer,
            ):
                writer.write(payload(size, seed=6))
            assert (raised.value.bucket, raised.value.key, raised.value.code) == (bucket, key, "PreconditionFailed")
            assert boto.get_object(Bucket=bucket, Key=key)["Body"].read() == payload(size, seed=5)
    assert all(request.target.startswith("http://") for request in proxy.requests)
    assert {request.method for request in proxy.requests} == {"PUT", "POST", "DELETE"}  # DELETE: the abort
    assert boto.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
