"""Unit-test fixtures of s3torch-datasets, on the shared plugin (``s3torch_test_support.plugin``):
every test in the isolated AWS environment; ``bucket``, moto's in-process S3 with one bucket."""

from __future__ import annotations

import pytest

from s3torch_test_support import MotoBucket


@pytest.fixture(autouse=True)
def _isolated_aws_environment(aws_environment: None) -> None:
    """Every test of this package runs in the isolated AWS environment."""


@pytest.fixture
def bucket(mock_bucket: MotoBucket) -> MotoBucket:
    """moto's in-process S3 (``mock_aws``) with one empty bucket."""
    return mock_bucket
