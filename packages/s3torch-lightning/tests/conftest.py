"""Unit-test fixtures of s3torch-lightning, on the shared plugin (``s3torch_test_support.plugin``):
every test in the isolated AWS environment; ``bucket``, moto's in-process S3 with one bucket;
``checkpoint_io``, the plugin on it."""

from __future__ import annotations

import pytest
from lightning_unit_support import PART, REGION

from s3torch.client import S3ClientConfig
from s3torch.lightning import S3LightningCheckpoint
from s3torch_test_support import MotoBucket


@pytest.fixture(autouse=True)
def _isolated_aws_environment(aws_environment: None) -> None:
    """Every test of this package runs in the isolated AWS environment."""


@pytest.fixture
def bucket(mock_bucket: MotoBucket) -> MotoBucket:
    """moto's in-process S3 (``mock_aws``) with one empty bucket."""
    return mock_bucket


@pytest.fixture
def checkpoint_io(bucket: MotoBucket) -> S3LightningCheckpoint:
    """The plugin on that bucket, with 5 MiB parts."""
    return S3LightningCheckpoint(REGION, s3client_config=S3ClientConfig(part_size=PART))
