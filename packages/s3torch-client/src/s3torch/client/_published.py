"""Whether the object now at a key is the one this writer sent, by its fingerprint.

A publishing request (PutObject, CompleteMultipartUpload) whose answer was lost may still have
published: its retry then finds the object already there (412 for a create-only write, or
NoSuchUpload for a completed multipart upload). One HEAD (with ``ChecksumMode=ENABLED``) then
tells whether that object is ours, by what S3 computed from the bytes we sent:

* its size, always;
* its ETag: the MD5 of the body for a single PUT, and for a multipart upload the MD5 of the
  parts' binary MD5s followed by ``-<parts>``, both known to the writer (the parts' ETags are
  in hand, their bytes are not needed);
* for SSE-KMS objects, whose ETags are not MD5s, the CRC32C checksum instead (``_checksum``):
  the body's for a single PUT, the CRC32C of the parts' binary CRC32Cs followed by ``-<parts>``
  for a multipart (S3's composite checksum). Without a checksum to compare, the object is not taken as ours.

A different object with the same fingerprint has the same bytes, so nothing is lost by taking
it as ours. The check runs only after a retry: a 412 on a first attempt is a real conflict.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ._checksum import FIELD, composite_checksum
from ._exceptions import S3Exception
from ._transport import Transport

logger = logging.getLogger(__name__)

_KMS_ENCRYPTION = frozenset({"aws:kms", "aws:kms:dsse"})


@dataclass(frozen=True)
class Fingerprint:
    """What S3 reports for an object made of exactly the bytes this writer sent."""

    size: int
    etag: str  # without quotes
    checksum: str | None  # CRC32C, base64, with "-<parts>" for a multipart upload; None: none sent


def single_put_fingerprint(body: memoryview, checksum: str | None) -> Fingerprint:
    return Fingerprint(body.nbytes, hashlib.md5(body, usedforsecurity=False).hexdigest(), checksum)


def multipart_fingerprint(parts: Sequence[dict[str, Any]], size: int) -> Fingerprint:
    """From the ``Parts`` list of the CompleteMultipartUpload (``ETag``, optional ``ChecksumCRC32C``)."""
    count = len(parts)
    digests = b"".join(bytes.fromhex(part["ETag"].strip('"')) for part in parts)
    etag = f"{hashlib.md5(digests, usedforsecurity=False).hexdigest()}-{count}"
    checksum = None
    if parts and all(FIELD in part for part in parts):
        checksum = composite_checksum(part[FIELD] for part in parts)
    return Fingerprint(size, etag, checksum)


def published_etag(transport: Transport, bucket: str, key: str, expected: Fingerprint) -> str | None:
    """The ETag of ``s3://bucket/key`` if that object has the ``expected`` fingerprint, else None:
    also when there is no object (it is not ours to claim) or the HEAD fails (the caller then
    raises the failure that made it ask)."""
    try:
        head = transport.call(
            "HeadObject",
            bucket,
            key,
            "head_object",
            Bucket=bucket,
            Key=key,
            ChecksumMode="ENABLED",
            **transport.request_payer,
        )
    except S3Exception as error:
        logger.info("s3://%s/%s: could not tell whether a retried publish published: %s", bucket, key, error)
        return None
    etag: str = head.get("ETag", "")
    ours = head.get("ContentLength") == expected.size and _same_bytes(head, etag.strip('"'), expected)
    logger.info(
        "s3://%s/%s was there after a retried publish: %s (ETag %s, %s bytes)",
        bucket,
        key,
        "the object this writer sent" if ours else "another object",
        etag,
        head.get("ContentLength"),
    )
    return etag if ours else None


def _same_bytes(head: dict[str, Any], etag: str, expected: Fingerprint) -> bool:
    if head.get("ServerSideEncryption") not in _KMS_ENCRYPTION:
        return etag == expected.etag
    checksum = head.get(FIELD)
    return expected.checksum is not None and checksum is not None and checksum == expected.checksum
