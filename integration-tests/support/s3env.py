"""Where integration tests run: a moto server on 127.0.0.1, or a real bucket named by the environment.

``S3TORCH_TEST_BUCKET`` and ``S3TORCH_TEST_REGION`` (and optionally ``S3TORCH_TEST_ENDPOINT``)
select a real bucket; each test then works under its own key prefix and removes what it made.
Without them a moto server started by a session fixture serves a fresh bucket per test.
"""

from __future__ import annotations

import hashlib
import os
import random
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from moto.server import ThreadedMotoServer

from s3torch.client import S3Client, S3ClientConfig

if TYPE_CHECKING:
    from .fault_proxy import FaultProxy

MIB = 1024 * 1024
#: The smallest part size S3 allows; tests use it to get multipart uploads and multi-request GETs
#: from small objects.
PART = 5 * MIB
MOTO_REGION = "us-east-1"
DUMMY_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing-access-key",
    "AWS_SECRET_ACCESS_KEY": "testing-secret-key",
}


@dataclass(frozen=True)
class S3Location:
    """A bucket and the key prefix a test may use in it."""

    region: str
    endpoint: str | None
    bucket: str
    prefix: str

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}"


def real_location_from_env() -> S3Location | None:
    bucket = os.environ.get("S3TORCH_TEST_BUCKET")
    region = os.environ.get("S3TORCH_TEST_REGION")
    if not bucket or not region:
        return None
    return S3Location(region, os.environ.get("S3TORCH_TEST_ENDPOINT") or None, bucket, "")


def unique_bucket_name() -> str:
    return f"s3torch-test-{uuid.uuid4().hex[:20]}"


def payload(size: int, seed: int = 0) -> bytes:
    """Deterministic, incompressible test bytes."""
    return random.Random(seed).randbytes(size)


def md5_etag(data: bytes) -> str:
    return f'"{hashlib.md5(data).hexdigest()}"'


def is_multipart_etag(etag: str) -> bool:
    """S3 gives multipart objects an ETag ``"<hex>-<parts>"``."""
    return "-" in etag.strip('"')


def boto3_client(region: str, endpoint: str | None) -> Any:
    config = Config(s3={"addressing_style": "path"}) if endpoint else None
    return boto3.client("s3", region_name=region, endpoint_url=endpoint, config=config)


class MotoServer:
    """``moto.server.ThreadedMotoServer`` on 127.0.0.1, on a free port."""

    def __init__(self) -> None:
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        self.host, self.port = self._server.get_host_and_port()
        self.endpoint = f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        self._server.stop()


@dataclass
class S3TestEnv:
    """What a test gets: its location, a ready ``S3Client`` and a plain boto3 client to check with."""

    location: S3Location
    boto: Any
    client: S3Client
    proxy: FaultProxy | None = None  # set when the clients talk through the fault proxy
    on_moto: bool = False  # the bucket lives in this process's moto server

    @property
    def bucket(self) -> str:
        return self.location.bucket

    def key(self, name: str) -> str:
        return self.location.key(name)

    def new_client(self, *, endpoint: str | None = None, **config: Any) -> S3Client:
        """A client of this location with ``S3ClientConfig(**config)`` (path-style when an endpoint is set)."""
        endpoint = endpoint or self.location.endpoint
        config.setdefault("force_path_style", endpoint is not None)
        return S3Client(self.location.region, endpoint=endpoint, s3client_config=S3ClientConfig(**config))

    def put(self, key: str, data: bytes) -> str:
        """Store an object (straight into moto's in-process backend on moto, else with boto3);
        returns its ETag."""
        if self.on_moto:
            moto_etag: str = _moto_backend().put_object(self.bucket, key, data).etag
            return moto_etag
        etag: str = self.boto.put_object(Bucket=self.bucket, Key=key, Body=data)["ETag"]
        return etag

    def put_many(self, objects: dict[str, bytes]) -> None:
        """Create many small objects. On moto they go straight into its in-process backend
        (over HTTP moto takes ~10 ms per PUT); on real S3, through boto3 from a few threads."""
        if self.on_moto:
            for key, data in objects.items():
                self.put(key, data)
            return
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda item: self.put(*item), objects.items()))

    def read(self, key: str) -> bytes:
        data: bytes = self.boto.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return data

    def exists(self, key: str) -> bool:
        try:
            self.boto.head_object(Bucket=self.bucket, Key=key)
        except self.boto.exceptions.ClientError as error:
            if error.response["ResponseMetadata"]["HTTPStatusCode"] == 404:
                return False
            raise
        return True

    def uploads(self) -> list[dict[str, Any]]:
        """Multipart uploads in progress under this location's prefix."""
        result = self.boto.list_multipart_uploads(Bucket=self.bucket, Prefix=self.location.prefix)
        uploads: list[dict[str, Any]] = result.get("Uploads", [])
        return uploads


def new_env(location: S3Location) -> S3TestEnv:
    boto = boto3_client(location.region, location.endpoint)
    client = S3Client(
        location.region,
        endpoint=location.endpoint,
        s3client_config=S3ClientConfig(force_path_style=location.endpoint is not None),
    )
    return S3TestEnv(location, boto, client)


def _moto_backend() -> Any:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    return s3_backends[DEFAULT_ACCOUNT_ID]["aws"]


def clean(env: S3TestEnv, *, delete_bucket: bool) -> None:
    """Remove every object and multipart upload under the location's prefix (and the bucket)."""
    boto, bucket, prefix = env.boto, env.bucket, env.location.prefix
    for upload in env.uploads():
        boto.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    if env.on_moto:  # listing thousands of keys over HTTP takes moto seconds
        backend = _moto_backend()
        for key in list(backend.get_bucket(bucket).keys.keys()):
            backend.delete_object(bucket, key)
    else:
        for page in boto.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys = [{"Key": entry["Key"]} for entry in page.get("Contents", [])]
            if keys:
                boto.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
    if delete_bucket:
        boto.delete_bucket(Bucket=bucket)


def force_get_mode(monkeypatch: Any, mode: str) -> dict[str, Any]:
    """Make every ``GetObjectStream`` take one path, whatever the server's speed, and return the
    ``S3ClientConfig`` settings that go with it.

    ``"serial"``: the first part, then one GET for the rest. ``"parallel"``: ``part_size`` GETs.
    """
    from s3torch.client import _get_stream

    if mode == "parallel":
        monkeypatch.setattr(_get_stream, "LATENCY_THRESHOLD_SECONDS", 0.0)
        return {}
    assert mode == "serial", mode
    monkeypatch.setattr(_get_stream, "LATENCY_THRESHOLD_SECONDS", float("inf"))
    # The rate test then asks for only 62.5 kB/s, which any loopback connection beats.
    return {"throughput_target_gbps": 0.001}
