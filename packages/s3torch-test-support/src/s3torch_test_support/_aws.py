"""An AWS environment of the tests' own: dummy credentials, and nothing of the machine's setup."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the demo and the benchmarks import this package without pytest
    import pytest

#: The region of every moto bucket of the tests.
REGION = "us-east-1"
#: Credentials only a local or mocked S3 accepts.
DUMMY_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing-access-key", "AWS_SECRET_ACCESS_KEY": "testing-secret-key"}


def isolate_aws_environment(monkeypatch: pytest.MonkeyPatch, scratch: Path) -> None:
    """Remove every ``AWS_*`` and ``S3TORCH_*`` variable, point the AWS config and credentials
    files at missing files under ``scratch`` and set the dummy credentials: no profile, endpoint,
    region or real credential of the machine leaks into a test."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "S3TORCH_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(scratch / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(scratch / "no-aws-credentials"))
    for name, value in DUMMY_CREDENTIALS.items():
        monkeypatch.setenv(name, value)


def boto3_client(region: str = REGION, endpoint: str | None = None) -> Any:
    """A plain boto3 S3 client to set up and check with (path-style when ``endpoint`` is set)."""
    import boto3
    from botocore.config import Config

    config = Config(s3={"addressing_style": "path"}) if endpoint else None
    return boto3.client("s3", region_name=region, endpoint_url=endpoint, config=config)
