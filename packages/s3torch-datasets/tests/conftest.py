"""Unit-test fixtures of s3torch-datasets: an isolated AWS environment and moto's in-process S3
(``mock_aws``) with one bucket."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

REGION = "us-east-1"
BUCKET = "s3torch-datasets-unit"


@pytest.fixture(autouse=True)
def _isolated_aws_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No AWS setting of the machine leaks in: dummy credentials, no profile, no endpoint."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "S3TORCH_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "unit-access-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "unit-secret-key")


@dataclass
class MockBucket:
    """moto's in-process S3 with one bucket, and boto3 to check with."""

    boto: Any
    name: str

    def put(self, key: str, data: bytes) -> None:
        """Store an object straight in moto's backend (faster than a boto3 PUT)."""
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.s3.models import s3_backends

        s3_backends[DEFAULT_ACCOUNT_ID]["aws"].put_object(self.name, key, data)

    def put_many(
        self, count: int, prefix: str = "data/", size: Callable[[int], int] = lambda i: i + 1
    ) -> dict[str, bytes]:
        """``count`` objects ``{prefix}{i:04d}.bin`` of distinct content; returns them by key."""
        objects = {f"{prefix}{index:04d}.bin": bytes([index % 251]) * size(index) for index in range(count)}
        for key, data in objects.items():
            self.put(key, data)
        return objects

    def uri(self, key: str = "") -> str:
        return f"s3://{self.name}/{key}"


@pytest.fixture(scope="session")
def _boto() -> Any:
    # Made once (a boto3 client takes ~0.15 s to build); moto's hook intercepts it inside mock_aws.
    return boto3.client("s3", region_name=REGION, aws_access_key_id="unit", aws_secret_access_key="unit")


@pytest.fixture
def bucket(_boto: Any) -> Iterator[MockBucket]:
    with mock_aws():
        _boto.create_bucket(Bucket=BUCKET)
        yield MockBucket(_boto, BUCKET)
