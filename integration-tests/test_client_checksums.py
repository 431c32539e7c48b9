"""Uploads carry CRC32 checksums that the store verifies, as boto3's do, unless botocore's
``request_checksum_calculation`` says "when_required"."""

from __future__ import annotations

import base64
import zlib

import pytest
from support import PART, S3TestEnv, payload

from s3torch.client import S3Client, S3ClientConfig


def _crc32(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


@pytest.mark.parametrize("size", [1, PART + 1], ids=["single-put", "multipart"])
def test_uploads_carry_crc32(s3: S3TestEnv, size: int) -> None:
    client = s3.new_client(part_size=PART)
    data = payload(size, seed=size)
    with client.put_object(s3.bucket, s3.key("checked.bin")) as writer:
        writer.write(data)
    head = s3.boto.head_object(Bucket=s3.bucket, Key=s3.key("checked.bin"), ChecksumMode="ENABLED")
    assert "ChecksumCRC32" in head
    if size <= PART:
        assert head["ChecksumCRC32"] == _crc32(data)
    else:  # the CRC32 of the parts' CRC32s: S3 adds "-<parts>", moto does not
        parts = b"".join(base64.b64decode(_crc32(part)) for part in (data[:PART], data[PART:]))
        assert head["ChecksumCRC32"].removesuffix("-2") == _crc32(parts)
    assert s3.read(s3.key("checked.bin")) == data


def test_when_required_sends_no_checksums(s3: S3TestEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
    # A configuration of its own, so the transport is built with this environment.
    client = S3Client(
        s3.location.region,
        endpoint=s3.location.endpoint,
        s3client_config=S3ClientConfig(
            force_path_style=s3.location.endpoint is not None, part_size=PART, read_timeout=59
        ),
    )
    with client.put_object(s3.bucket, s3.key("plain.bin")) as writer:
        writer.write(b"plain bytes")
    head = s3.boto.head_object(Bucket=s3.bucket, Key=s3.key("plain.bin"), ChecksumMode="ENABLED")
    assert "ChecksumCRC32" not in head
    assert s3.read(s3.key("plain.bin")) == b"plain bytes"
