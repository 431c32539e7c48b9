"""Unit-test fixtures of s3torch-dcp: an isolated AWS environment and moto's in-process S3."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dcp_support import BUCKET, REGION, MockBucket


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


@pytest.fixture(scope="session")
def _boto() -> Any:
    # Made once (a boto3 client takes ~0.15 s to build); moto's hook intercepts it inside mock_aws.
    return boto3.client("s3", region_name=REGION, aws_access_key_id="unit", aws_secret_access_key="unit")


@pytest.fixture
def s3(_boto: Any) -> Iterator[MockBucket]:
    """moto's in-process S3 (``mock_aws``) with one empty bucket."""
    with mock_aws():
        _boto.create_bucket(Bucket=BUCKET)
        yield MockBucket(_boto, BUCKET)
