"""Where integration tests run: a moto server on 127.0.0.1, or a real bucket named by the environment.

``S3TORCH_TEST_BUCKET`` and ``S3TORCH_TEST_REGION`` (and optionally ``S3TORCH_TEST_ENDPOINT``)
select a real bucket; each test then works under its own key prefix and removes what it made.
Without them a moto server started by a session fixture serves a fresh bucket per test.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from s3torch.client import S3Client, S3ClientConfig
from s3torch_test_support import REGION, boto3_client, moto_backend

if TYPE_CHECKING:
    from .fault_proxy import FaultProxy

MOTO_REGION = REGION


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


def md5_etag(data: bytes) -> str:
    return f'"{hashlib.md5(data).hexdigest()}"'


def is_multipart_etag(etag: str) -> bool:
    """S3 gives multipart objects an ETag ``"<hex>-<parts>"``."""
    return "-" in etag.strip('"')


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
            moto_etag: str = moto_backend().put_object(self.bucket, key, data).etag
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


def clean(env: S3TestEnv, *, delete_bucket: bool) -> None:
    """Remove every object and multipart upload under the location's prefix (and the bucket)."""
    boto, bucket, prefix = env.boto, env.bucket, env.location.prefix
    for upload in env.uploads():
        boto.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    if env.on_moto:  # listing thousands of keys over HTTP takes moto seconds
        backend = moto_backend()
        for key in list(backend.get_bucket(bucket).keys.keys()):
            backend.delete_object(bucket, key)
    else:
        for page in boto.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys = [{"Key": entry["Key"]} for entry in page.get("Contents", [])]
            if keys:
                boto.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
    if delete_bucket:
        boto.delete_bucket(Bucket=bucket)
