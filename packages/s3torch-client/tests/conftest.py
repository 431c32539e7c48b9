"""Unit-test fixtures of s3torch-client, on the shared plugin (``s3torch_test_support.plugin``):
every test in the isolated AWS environment; ``s3``, moto's in-process S3 with a client on it."""

from __future__ import annotations

import pytest
from client_unit_support import GetMode, MockS3

from s3torch_test_support import MotoBucket, force_get_mode


@pytest.fixture(autouse=True)
def _isolated_aws_environment(aws_environment: None) -> None:
    """Every test of this package runs in the isolated AWS environment."""


@pytest.fixture
def s3(mock_bucket: MotoBucket) -> MockS3:
    """moto's in-process S3 (``mock_aws``) with one empty bucket, and a client on it."""
    return MockS3(mock_bucket.boto, mock_bucket.bucket, MockS3.new_client())


@pytest.fixture(params=["serial", "parallel"])
def get_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> GetMode:
    """Force one path of the adaptive GET whatever moto's speed: "serial" (the first part, then
    one GET for the rest) or "parallel" (part-size GETs)."""
    return GetMode(request.param, force_get_mode(monkeypatch, request.param))
