"""A moto bucket with the boto3 helpers tests check it with (one class for every package)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: The bucket of the in-process ``mock_aws`` S3 the unit tests use.
MOCK_BUCKET = "s3torch-unit"


def moto_backend() -> Any:
    """moto's S3 backend of this process (what ``mock_aws`` and an in-process server serve)."""
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    return s3_backends[DEFAULT_ACCOUNT_ID]["aws"]


@dataclass
class MotoBucket:
    """A bucket served by moto in this process, and the boto3 client ``boto`` to check it with."""

    boto: Any
    bucket: str

    def uri(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{key}"

    def put(self, key: str, data: bytes) -> str:
        """Store an object straight in moto's backend (a boto3 PUT of 10 MiB takes ~0.2 s);
        returns its ETag."""
        etag: str = moto_backend().put_object(self.bucket, key, data).etag
        return etag

    def put_many(self, count: int, prefix: str = "data/", size: Any = lambda index: index + 1) -> dict[str, bytes]:
        """``count`` objects ``{prefix}{i:04d}.bin`` of distinct content (``size(i)`` bytes);
        returns them by key."""
        objects = {f"{prefix}{index:04d}.bin": bytes([index % 251]) * size(index) for index in range(count)}
        for key, data in objects.items():
            self.put(key, data)
        return objects

    def read(self, key: str) -> bytes:
        data: bytes = self.boto.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return data

    def etag(self, key: str) -> str:
        etag: str = self.boto.head_object(Bucket=self.bucket, Key=key)["ETag"]
        return etag

    def exists(self, key: str) -> bool:
        return key in self.list_keys(key)

    def list_keys(self, prefix: str = "") -> list[str]:
        """Every key under ``prefix``, sorted."""
        pages = self.boto.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return sorted(entry["Key"] for page in pages for entry in page.get("Contents", []))

    def uploads(self) -> list[dict[str, Any]]:
        """The multipart uploads in progress."""
        uploads: list[dict[str, Any]] = self.boto.list_multipart_uploads(Bucket=self.bucket).get("Uploads", [])
        return uploads
