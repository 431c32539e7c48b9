"""The pytest plugin of s3torch's tests: the fixtures every package's tests and the integration
tests share. Nothing here is autouse: a test (or a package's ``conftest.py``) asks for what it needs.

- ``aws_environment``: the isolated AWS environment (dummy credentials, no profile, no endpoint).
- ``mock_boto``: one boto3 client for the session (building one takes ~0.15 s); moto's hook
  answers it inside ``mock_aws``.
- ``mock_bucket``: a fresh bucket of moto's in-process S3 (``mock_aws``), as a ``MotoBucket``.
- ``moto_server``: a moto S3 server on 127.0.0.1 for the whole session (real HTTP).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Imported before any boto3 client is made: moto adds its before-send handler to botocore's
# built-in handlers at import, and only clients made afterwards carry it.
from moto import mock_aws

from ._aws import REGION, isolate_aws_environment
from ._bucket import MOCK_BUCKET, MotoBucket
from .moto_server import MotoServer


@pytest.fixture
def aws_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No AWS setting of the machine leaks in: dummy credentials, no profile, no endpoint."""
    isolate_aws_environment(monkeypatch, tmp_path)


@pytest.fixture(scope="session")
def mock_boto() -> Any:
    import boto3

    return boto3.client("s3", region_name=REGION, aws_access_key_id="unit", aws_secret_access_key="unit")


@pytest.fixture
def mock_bucket(aws_environment: None, mock_boto: Any) -> Iterator[MotoBucket]:
    """An empty bucket ``MOCK_BUCKET`` of moto's in-process S3, inside ``mock_aws``."""
    with mock_aws():
        mock_boto.create_bucket(Bucket=MOCK_BUCKET)
        yield MotoBucket(mock_boto, MOCK_BUCKET)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """A moto S3 server on 127.0.0.1 (a free port) for the session."""
    with MotoServer() as server:
        yield server
