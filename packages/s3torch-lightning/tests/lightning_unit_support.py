"""Helpers of the s3torch-lightning unit tests (the fixtures built on them are in ``conftest.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

REGION = "us-east-1"
BUCKET = "s3torch-lightning-unit"
MIB = 1024 * 1024
PART = 5 * MIB  # the smallest part size: multipart uploads from small checkpoints


@dataclass
class Bucket:
    """A bucket of moto's in-process S3 and a plain boto3 client to check it with."""

    boto: Any
    name: str

    def uri(self, key: str) -> str:
        return f"s3://{self.name}/{key}"

    def put(self, key: str, data: bytes) -> None:
        self.boto.put_object(Bucket=self.name, Key=key, Body=data)

    def read(self, key: str) -> bytes:
        data: bytes = self.boto.get_object(Bucket=self.name, Key=key)["Body"].read()
        return data

    def keys(self, prefix: str = "") -> list[str]:
        listing = self.boto.list_objects_v2(Bucket=self.name, Prefix=prefix)
        return [entry["Key"] for entry in listing.get("Contents", [])]

    def etag(self, key: str) -> str:
        etag: str = self.boto.head_object(Bucket=self.name, Key=key)["ETag"]
        return etag

    def uploads(self) -> list[dict[str, Any]]:
        uploads: list[dict[str, Any]] = self.boto.list_multipart_uploads(Bucket=self.name).get("Uploads", [])
        return uploads
