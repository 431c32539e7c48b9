"""Helpers shared by the unit tests (the fixtures built on them are in ``conftest.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from s3torch.client import S3Client, S3ClientConfig
from s3torch_test_support import MIB, MOCK_BUCKET, PART, REGION, MotoBucket, payload

__all__ = ["BUCKET", "MIB", "PART", "REGION", "GetMode", "MockS3", "payload"]

BUCKET = MOCK_BUCKET


@dataclass
class MockS3(MotoBucket):
    """moto's in-process S3 with one bucket, a client on it (part size 5 MiB) and boto3 to check with."""

    client: S3Client

    @staticmethod
    def new_client(**config: Any) -> S3Client:
        config.setdefault("part_size", PART)
        return S3Client(REGION, s3client_config=S3ClientConfig(**config))


@dataclass(frozen=True)
class GetMode:
    """A forced path of the adaptive GET, and the S3ClientConfig settings that go with it."""

    name: str
    config: dict[str, Any]
