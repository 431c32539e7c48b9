"""Helpers shared by the unit tests (the fixtures built on them are in ``conftest.py``)."""

from __future__ import annotations

import io
import random
from dataclasses import dataclass
from typing import Any

from s3torch.client import S3Client, S3ClientConfig

MIB = 1024 * 1024
PART = 5 * MIB  # the smallest part size: multipart behaviour from small objects
REGION = "us-east-1"
BUCKET = "s3torch-unit"


def payload(size: int, seed: int = 0) -> bytes:
    """Deterministic, incompressible test bytes."""
    return random.Random(seed).randbytes(size)


@dataclass
class MockS3:
    """moto's in-process S3 with one bucket, a client on it (part size 5 MiB) and boto3 to check with."""

    boto: Any
    bucket: str
    client: S3Client

    @staticmethod
    def new_client(**config: Any) -> S3Client:
        config.setdefault("part_size", PART)
        return S3Client(REGION, s3client_config=S3ClientConfig(**config))

    def put(self, key: str, data: bytes) -> str:
        """Store an object straight in moto's backend (boto3 would spend ~0.2 s on 10 MiB); returns its ETag."""
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.s3.models import s3_backends

        etag: str = s3_backends[DEFAULT_ACCOUNT_ID]["aws"].put_object(self.bucket, key, data).etag
        return etag

    def read(self, key: str) -> bytes:
        data: bytes = self.boto.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return data

    def etag(self, key: str) -> str:
        etag: str = self.boto.head_object(Bucket=self.bucket, Key=key)["ETag"]
        return etag

    def exists(self, key: str) -> bool:
        return bool(self.boto.list_objects_v2(Bucket=self.bucket, Prefix=key).get("KeyCount"))

    def uploads(self) -> list[dict[str, Any]]:
        uploads: list[dict[str, Any]] = self.boto.list_multipart_uploads(Bucket=self.bucket).get("Uploads", [])
        return uploads


@dataclass(frozen=True)
class GetMode:
    """A forced path of the adaptive GET, and the S3ClientConfig settings that go with it."""

    name: str
    config: dict[str, Any]


class FakeBody:
    """A response body over given bytes, with the methods the transport's bodies have."""

    def __init__(self, data: bytes) -> None:
        self._file = io.BytesIO(data)
        self.closed = False

    def readinto(self, view: memoryview) -> int:
        return self._file.readinto(view)

    def read(self) -> bytes:
        return self._file.read()

    def read_bounded(self, limit: int) -> bytes:
        return self._file.read(limit)

    def close(self) -> None:
        self.closed = True

    def release_conn(self) -> None:
        pass
