"""Uploads carry CRC32C checksums (as the upstream's native client sends them) that the store
verifies, unless botocore's ``request_checksum_calculation`` says "when_required"."""

from __future__ import annotations

import base64

import crc32c
import pytest
from support import PART, S3TestEnv, payload

from s3torch.client import S3Client, S3ClientConfig


def _crc32c(data: bytes) -> str:
    return base64.b64encode(crc32c.crc32c(data).to_bytes(4, "big")).decode()


@pytest.mark.parametrize("size", [1, PART + 1], ids=["single-put", "multipart"])
def test_uploads_carry_crc32c(s3: S3TestEnv, size: int) -> None:
    client = s3.new_client(part_size=PART)
    data = payload(size, seed=size)
    with client.put_object(s3.bucket, s3.key("checked.bin")) as writer:
        writer.write(data)
    head = s3.boto.head_object(Bucket=s3.bucket, Key=s3.key("checked.bin"), ChecksumMode="ENABLED")
    assert "ChecksumCRC32C" in head
    if size <= PART:
        assert head["ChecksumCRC32C"] == _crc32c(data)
    else:  # the CRC32C of the parts' CRC32Cs: S3 adds "-<parts>", moto does not
        parts = b"".join(base64.b64decode(_crc32c(part)) for part in (data[:PART], data[PART:]))
        assert head["ChecksumCRC32C"].removesuffix("-2") == _crc32c(parts)
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
    assert not [name for name in head if name.startswith("Checksum")]
    assert s3.read(s3.key("plain.bin")) == b"plain bytes"
