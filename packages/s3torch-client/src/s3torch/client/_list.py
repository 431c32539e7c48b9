"""``ListObjectStream``: a lazy, picklable ListObjectsV2 listing, one page per ``next()``."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ._control_hooks import calling_as
from ._types import ListObjectResult, ObjectInfo, RestoreStatus

if TYPE_CHECKING:
    from ._client import S3Client

logger = logging.getLogger(__name__)


def timestamp(value: Any) -> int:
    return int(value.timestamp()) if isinstance(value, datetime) else int(value or 0)


def storage_class(value: str | None) -> str | None:
    return None if value in (None, "STANDARD") else value


def _restore_status(entry: dict[str, Any]) -> RestoreStatus | None:
    status = entry.get("RestoreStatus")
    if not status:
        return None
    expiry = status.get("RestoreExpiryDate")
    return RestoreStatus(bool(status.get("IsRestoreInProgress")), timestamp(expiry) if expiry else None)


class ListObjectStream(Iterator[ListObjectResult]):
    """Pages of ``ListObjectsV2`` for ``s3://bucket/prefix``. The continuation token is its only
    state, so a listing pickled halfway resumes where it stopped."""

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        prefix: str = "",
        delimiter: str = "",
        max_keys: int = 1000,
        continuation_token: str | None = None,
        complete: bool = False,
    ) -> None:
        self._client = client
        self.bucket = bucket
        self.prefix = prefix
        self.delimiter = delimiter
        self.max_keys = max_keys
        self.continuation_token = continuation_token
        self.complete = complete

    @staticmethod
    def _from_state(
        client: S3Client,
        bucket: str,
        prefix: str,
        delimiter: str,
        max_keys: int,
        continuation_token: str | None,
        complete: bool,
    ) -> ListObjectStream:
        return ListObjectStream(client, bucket, prefix, delimiter, max_keys, continuation_token, complete)

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            ListObjectStream._from_state,
            (
                self._client,
                self.bucket,
                self.prefix,
                self.delimiter,
                self.max_keys,
                self.continuation_token,
                self.complete,
            ),
        )

    def __iter__(self) -> ListObjectStream:
        return self

    def __next__(self) -> ListObjectResult:
        if self.complete:
            raise StopIteration
        params: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.prefix, "MaxKeys": self.max_keys}
        if self.delimiter:
            params["Delimiter"] = self.delimiter
        if self.continuation_token:
            params["ContinuationToken"] = self.continuation_token
        transport = self._client._transport
        with calling_as(self._client.user_agent_prefix):
            page = transport.call(
                "ListObjectsV2", self.bucket, self.prefix, "list_objects_v2", **params, **transport.request_payer
            )
        self.continuation_token = page.get("NextContinuationToken")
        self.complete = not page.get("IsTruncated") or not self.continuation_token
        objects = [
            ObjectInfo(
                key=entry["Key"],
                etag=entry.get("ETag", ""),
                size=entry.get("Size", 0),
                last_modified=timestamp(entry.get("LastModified")),
                storage_class=storage_class(entry.get("StorageClass")),
                restore_status=_restore_status(entry),
            )
            for entry in page.get("Contents", ())
        ]
        prefixes = [entry["Prefix"] for entry in page.get("CommonPrefixes", ())]
        return ListObjectResult(object_info=objects, common_prefixes=prefixes)
