"""The upload checksum: CRC32C as S3 writes it (base64 of the big-endian value), and S3's
composite checksum of a multipart object."""

from __future__ import annotations

import base64

from s3torch.client._checksum import ALGORITHM, FIELD, HEADER, checksum_base64, composite_checksum


def _b64(value: int) -> str:
    return base64.b64encode(value.to_bytes(4, "big")).decode()


def test_names_are_s3s_for_crc32c() -> None:
    assert (ALGORITHM, HEADER, FIELD) == ("CRC32C", "x-amz-checksum-crc32c", "ChecksumCRC32C")


def test_checksum_of_the_standard_check_input() -> None:
    # CRC-32C (Castagnoli) of b"123456789" is 0xE3069283 (RFC 3720, appendix B.4's check value).
    assert checksum_base64(memoryview(b"123456789")) == _b64(0xE3069283)
    assert checksum_base64(memoryview(b"")) == _b64(0)


def test_checksum_of_a_slice_is_that_of_its_bytes() -> None:
    data = bytearray(b"xx123456789yy")
    assert checksum_base64(memoryview(data)[2:11]) == _b64(0xE3069283)


def test_composite_is_the_checksum_of_the_part_checksums_with_the_part_count() -> None:
    parts = [checksum_base64(memoryview(chunk)) for chunk in (b"1234", b"56789")]
    joined = b"".join(base64.b64decode(part) for part in parts)
    assert composite_checksum(parts) == f"{checksum_base64(memoryview(joined))}-2"
    assert composite_checksum(iter(parts[:1])).endswith("-1")
