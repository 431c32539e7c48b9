"""Incomplete multipart uploads: listing and aborting them, and accounting for lost creates.

An incomplete upload costs storage until it is completed or aborted. s3torch aborts its own on
every failure; three cases remain, and this module serves each:

* a process killed mid-upload: ``S3Client.list_multipart_uploads`` / ``abort_multipart_uploads``
  and ``python -m s3torch.client uploads`` find and remove them (or a bucket lifecycle rule);
* an abort that fails even after botocore's retries: logged at WARNING with the command that
  removes exactly that upload;
* a CreateMultipartUpload whose answer was lost: botocore retries it, the retry makes a second
  upload, and the first one's id was never known. ``account_for_lost_creates`` finds it.

How a lost create is told apart from another writer's upload. ListMultipartUploads shows no
field a writer sets per upload (only the key, upload id, initiator, owner, storage class,
checksum settings and the initiation time, which some S3-compatible servers do not even report
truly), so no per-writer marker can be read back. An upload is taken as this writer's lost one
only when all of these hold, checked when the write ends (completed or aborted):

1. its key is exactly the writer's key and its id is not the one the writer used;
2. it has no parts: nobody ever knew its id, so no part was ever sent to it. A live writer sends
   its first part right after its create; by the end of this writer's own upload any writer
   that created an upload at the same moment has sent parts (which is why the check runs at
   the end, not before the retry);
3. there are at most as many such uploads as create attempts botocore retried. If there are
   more (another writer's stale upload, say), none is aborted: each is logged at WARNING with
   the command that removes it, for a person to decide.

What is left: a second writer of the same key whose create happened during this writer's
retried create and that has sent no part by the time this writer ends, while this writer's
own lost create never reached S3. That writer's next request then fails (NoSuchUpload) and it
publishes nothing; no bytes are lost or mixed.
"""

from __future__ import annotations

import datetime
import logging
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ._control_hooks import calling_as, current_user_agent
from ._exceptions import S3Exception, translate
from ._transport import Transport

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MultipartUploadInfo:
    """An incomplete multipart upload: ``key``, ``upload_id`` and when it was ``initiated`` (UTC)."""

    key: str
    upload_id: str
    initiated: datetime.datetime


def list_uploads(transport: Transport, bucket: str, prefix: str, user_agent: str) -> Iterator[MultipartUploadInfo]:
    """Every incomplete upload whose key starts with ``prefix``, page by page (each fetched as
    ``user_agent``, on whichever thread advances the iterator)."""
    paginator = transport.client.get_paginator("list_multipart_uploads")
    pages = iter(paginator.paginate(Bucket=bucket, Prefix=prefix, **transport.request_payer))
    try:
        while True:
            with calling_as(user_agent):
                page = next(pages, None)
            if page is None:
                return
            for upload in page.get("Uploads", []):
                initiated = upload["Initiated"].astimezone(datetime.timezone.utc)
                yield MultipartUploadInfo(upload["Key"], upload["UploadId"], initiated)
    except (ClientError, BotoCoreError) as error:
        raise translate(error, "ListMultipartUploads", bucket, prefix or None) from error


def removal_command(bucket: str, key: str, upload_id: str) -> str:
    """The shell command that aborts exactly this upload."""
    location = f"s3://{bucket}/{key}"
    return shlex.join(["python", "-m", "s3torch.client", "uploads", location, "--abort", "--upload-id", upload_id])


def abort_upload(transport: Transport, bucket: str, key: str, upload_id: str) -> bool:
    """Abort one upload (botocore retries a failed abort). False: it was already gone."""
    logger.debug("AbortMultipartUpload s3://%s/%s upload id %s", bucket, key, upload_id)
    try:
        transport.call(
            "AbortMultipartUpload",
            bucket,
            key,
            "abort_multipart_upload",
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            **transport.request_payer,
        )
    except S3Exception as error:
        if error.code == "NoSuchUpload":
            return False
        raise
    return True


def abort_or_warn(transport: Transport, bucket: str, key: str, upload_id: str) -> None:
    """Abort an upload of ours; if that still fails after the retries, say how to remove it."""
    try:
        abort_upload(transport, bucket, key, upload_id)
    except S3Exception as error:
        logger.warning(
            "AbortMultipartUpload s3://%s/%s upload id %s failed: %s. The upload is left behind; remove it"
            " with: %s (or let a lifecycle rule with AbortIncompleteMultipartUpload do it)",
            bucket,
            key,
            upload_id,
            error,
            removal_command(bucket, key, upload_id),
        )


def _has_parts(transport: Transport, bucket: str, key: str, upload_id: str) -> bool:
    result: dict[str, Any] = transport.call(
        "ListParts",
        bucket,
        key,
        "list_parts",
        Bucket=bucket,
        Key=key,
        UploadId=upload_id,
        MaxParts=1,
        **transport.request_payer,
    )
    return bool(result.get("Parts"))


def account_for_lost_creates(transport: Transport, bucket: str, key: str, used: str | None, retries: int) -> None:
    """After a write whose CreateMultipartUpload was retried ``retries`` times, abort the
    uploads those lost attempts left (see the module's docstring for how they are told apart).
    ``used`` is the upload id the writer worked with, if any."""
    try:
        candidates = [
            upload.upload_id
            for upload in list_uploads(transport, bucket, key, current_user_agent())
            if upload.key == key
            and upload.upload_id != used
            and not _has_parts(transport, bucket, key, upload.upload_id)
        ]
    except S3Exception as error:
        logger.warning(
            "CreateMultipartUpload s3://%s/%s was retried and the uploads of the key could not be listed (%s):"
            " an upload without parts may be left; find it with: %s",
            bucket,
            key,
            error,
            shlex.join(["python", "-m", "s3torch.client", "uploads", f"s3://{bucket}/{key}"]),
        )
        return
    if len(candidates) > retries:
        for upload_id in candidates:
            logger.warning(
                "s3://%s/%s has an upload without parts (upload id %s) that may be another writer's, so it is"
                " not aborted; if it is not in use, remove it with: %s",
                bucket,
                key,
                upload_id,
                removal_command(bucket, key, upload_id),
            )
        return
    for upload_id in candidates:
        logger.info(
            "Aborting upload id %s of s3://%s/%s, left by a CreateMultipartUpload whose answer was lost",
            upload_id,
            bucket,
            key,
        )
        abort_or_warn(transport, bucket, key, upload_id)
