"""``S3Client``: the entry point of the transport (upstream: ``s3torchconnector._s3client.S3Client``)."""

from __future__ import annotations

import datetime
import functools
import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ._arguments import check_bucket, check_header_value, check_names, check_range, check_region
from ._botocore_session import preload_model_data
from ._config import S3ClientConfig
from ._control_hooks import calling_as
from ._get_stream import GetObjectStream
from ._list import ListObjectStream, storage_class, timestamp
from ._metrics import S3ClientMetrics
from ._put_stream import PutObjectStream
from ._registry import get_transport
from ._transport import Transport
from ._types import HeadObjectResult, ObjectInfo, RestoreStatus
from ._uploads import MultipartUploadInfo, abort_upload, list_uploads
from ._user_agent import UserAgent
from ._writer import S3Writer

if TYPE_CHECKING:
    from s3torch.readers import S3Reader  # type: ignore[import-untyped,import-not-found,unused-ignore]

logger = logging.getLogger(__name__)


def _restore_status(header: str | None) -> RestoreStatus | None:
    # x-amz-restore: ongoing-request="false", expiry-date="Fri, 21 Dec 2012 00:00:00 GMT"
    if not header:
        return None
    from email.utils import parsedate_to_datetime

    in_progress = 'ongoing-request="true"' in header
    expiry = None
    marker = 'expiry-date="'
    if marker in header:
        expiry = timestamp(parsedate_to_datetime(header.split(marker, 1)[1].split('"', 1)[0]))
    return RestoreStatus(in_progress, expiry)


class S3Client:
    """A client for one region (and optionally one endpoint) with one configuration.

    Cheap to build and to pickle: the connections, botocore client and thread pool behind it
    are made on first use, shared by every ``S3Client`` of the same settings in the process,
    and made anew in a forked child.

    Args:
        region: The region of the buckets.
        endpoint: An S3-compatible endpoint URL (for example ``http://127.0.0.1:9000``); without
            it botocore's resolution applies, ``AWS_ENDPOINT_URL_S3`` included.
        user_agent: Comments to add to the User-Agent.
        s3client_config: Transport settings; ``S3ClientConfig()`` when omitted.
    """

    def __init__(
        self,
        region: str,
        *,
        endpoint: str | None = None,
        user_agent: UserAgent | None = None,
        s3client_config: S3ClientConfig | None = None,
    ) -> None:
        check_region(region)
        if endpoint is not None and not isinstance(endpoint, str):
            raise TypeError(f"endpoint must be a URL (str) or None, got {type(endpoint).__name__}")
        if user_agent is not None and not isinstance(user_agent, UserAgent):
            raise TypeError(f"user_agent must be a UserAgent or None, got {type(user_agent).__name__}")
        if s3client_config is not None and not isinstance(s3client_config, S3ClientConfig):
            raise TypeError(f"s3client_config must be an S3ClientConfig or None, got {type(s3client_config).__name__}")
        self._region = region
        self._endpoint = endpoint
        self._user_agent = user_agent or UserAgent()
        self._config = s3client_config or S3ClientConfig()
        self._user_agent_prefix = self._user_agent.prefix

    @property
    def region(self) -> str:
        """The region requests are signed for."""
        return self._region

    @property
    def endpoint(self) -> str | None:
        """The endpoint given at construction (None: botocore's resolution)."""
        return self._endpoint

    @property
    def s3client_config(self) -> S3ClientConfig:
        """The transport settings."""
        return self._config

    @property
    def user_agent_prefix(self) -> str:
        """What s3torch adds to the User-Agent of every request."""
        return self._user_agent_prefix

    def metrics(self) -> S3ClientMetrics:
        """A snapshot of what this client's transport sent to S3 in this process (s3torch addition):
        operations by name, attempts, retries, throttles, errors, bytes and a latency histogram.
        Every ``S3Client`` of the same settings in a process shares the transport and so the
        counters; a forked or spawned worker counts its own from zero."""
        return self._transport.counters.snapshot()

    def preload(self) -> None:
        """Read now what this client's transport will read from disk on first use (s3torch
        addition): botocore's S3 model and endpoint rules, about 0.1 s of CPU. Nothing is sent
        and no credentials are looked up. Processes forked afterwards (DataLoader workers)
        inherit it instead of each reading it again before their first request; the datasets
        call it when they are built."""
        preload_model_data(self._config.profile, self._region)

    @property
    def _transport(self) -> Transport:
        # get_transport checks the PID, so a forked child never uses its parent's connections.
        return get_transport(self._region, self._endpoint or None, self._config)

    def __reduce__(self) -> tuple[Any, ...]:
        # A copy is built again from the settings alone: its transport is its own process's.
        rebuild = functools.partial(
            type(self), endpoint=self._endpoint, user_agent=self._user_agent, s3client_config=self._config
        )
        return (rebuild, (self._region,))

    # ---- objects ------------------------------------------------------------------------
    def get_object(
        self,
        bucket: str,
        key: str,
        *,
        object_info: ObjectInfo | HeadObjectResult | None = None,
        reader_constructor: Callable[..., S3Reader] | None = None,
    ) -> S3Reader:
        """A reader of ``s3://bucket/key``, built by ``reader_constructor`` (the sequential reader
        of s3torch-readers by default). With ``object_info`` (from a listing) the reader never
        needs a HEAD; without it, a HEAD is sent only if the reader needs the size first."""
        check_names(bucket, key)
        if object_info is not None and not isinstance(object_info, (ObjectInfo, HeadObjectResult)):
            raise TypeError(
                f"object_info must be an ObjectInfo, a HeadObjectResult or None, got {type(object_info).__name__}"
                f" (s3://{bucket}/{key})"
            )
        logger.debug("GetObject s3://%s/%s, object_info is None=%s", bucket, key, object_info is None)
        try:
            from s3torch.readers import S3ReaderConstructor, check_reader_constructor
        except ImportError as error:
            raise ImportError(
                "S3Client.get_object returns an S3Reader from the s3torch-readers distribution, which is"
                " not installed: pip install s3torch-readers"
            ) from error
        check_reader_constructor(reader_constructor)
        constructor = reader_constructor or S3ReaderConstructor.default()
        # Partials of this client's methods, not closures: the reader pickles them, and with them
        # this client's settings, so that a DataLoader worker can hand the reader over.
        get_object_info = functools.partial(self._object_info, bucket, key, object_info)
        get_stream = functools.partial(self.get_object_stream, bucket, key)
        reader: S3Reader = constructor(bucket=bucket, key=key, get_object_info=get_object_info, get_stream=get_stream)
        return reader

    def _object_info(
        self, bucket: str, key: str, object_info: ObjectInfo | HeadObjectResult | None
    ) -> ObjectInfo | HeadObjectResult:
        """A reader's ``get_object_info``: the listing's info if there was one, else a HEAD."""
        return object_info if object_info is not None else self.head_object(bucket, key)

    def get_object_stream(
        self, bucket: str, key: str, start: int | None = None, end: int | None = None, *, etag: str | None = None
    ) -> GetObjectStream:
        """The raw stream of bytes ``[start, end)`` of ``s3://bucket/key`` (``end`` exclusive,
        ``None`` for the end of the object). Nothing is sent until the first read. With ``etag``,
        every request is pinned to that version of the object."""
        check_names(bucket, key)
        check_range(start, end, bucket, key)
        if etag is not None:
            check_header_value("etag", etag, f" (s3://{bucket}/{key})")
        logger.debug("GetObjectStream s3://%s/%s [%s, %s)", bucket, key, start, end)
        return GetObjectStream(self._transport, bucket, key, start, end, etag=etag, user_agent=self._user_agent_prefix)

    def put_object(
        self, bucket: str, key: str, storage_class: str | None = None, *, if_none_match: str | None = None
    ) -> S3Writer:
        """A writer that uploads ``s3://bucket/key``; the object exists once the writer closes.

        With ``if_none_match="*"`` (s3torch addition; keyword only) the write is create-only: the
        object is published only if no object exists at the key, checked atomically by S3 when
        the upload completes, so even a racing writer is never replaced. Otherwise ``close()``
        raises ``S3Exception`` (code ``PreconditionFailed``), the upload is aborted and nothing
        is published.

        Raises:
            ValueError: ``if_none_match`` is neither None nor ``"*"`` (the only value S3 takes on
                writes), or ``storage_class`` holds a CR or LF.
        """
        check_names(bucket, key)
        if storage_class is not None:
            check_header_value("storage_class", storage_class, f" (s3://{bucket}/{key})")
        if if_none_match is not None and if_none_match != "*":
            raise ValueError(
                f"if_none_match must be None or '*' (the only value S3 takes on writes), got {if_none_match!r}"
            )
        logger.debug("PutObject s3://%s/%s", bucket, key)
        return S3Writer(
            PutObjectStream(
                self._transport,
                bucket,
                key,
                storage_class,
                if_none_match=if_none_match,
                user_agent=self._user_agent_prefix,
            )
        )

    def head_object(self, bucket: str, key: str) -> HeadObjectResult:
        """Size, ETag, last modification, storage and restore status of ``s3://bucket/key``."""
        check_names(bucket, key)
        logger.debug("HeadObject s3://%s/%s", bucket, key)
        transport = self._transport
        with calling_as(self._user_agent_prefix):
            result = transport.call(
                "HeadObject", bucket, key, "head_object", Bucket=bucket, Key=key, **transport.request_payer
            )
        return HeadObjectResult(
            etag=result.get("ETag", ""),
            size=result.get("ContentLength", 0),
            last_modified=timestamp(result.get("LastModified")),
            storage_class=storage_class(result.get("StorageClass")),
            restore_status=_restore_status(result.get("Restore")),
        )

    def delete_object(self, bucket: str, key: str) -> None:
        """Delete ``s3://bucket/key``; a key that does not exist is not an error."""
        check_names(bucket, key)
        logger.debug("DeleteObject s3://%s/%s", bucket, key)
        transport = self._transport
        with calling_as(self._user_agent_prefix):
            transport.call(
                "DeleteObject", bucket, key, "delete_object", Bucket=bucket, Key=key, **transport.request_payer
            )

    def copy_object(self, src_bucket: str, src_key: str, dst_bucket: str, dst_key: str) -> None:
        """Copy an object inside S3 (server side; sources up to 5 GiB)."""
        check_names(src_bucket, src_key)
        check_names(dst_bucket, dst_key)
        logger.debug("CopyObject s3://%s/%s to s3://%s/%s", src_bucket, src_key, dst_bucket, dst_key)
        transport = self._transport
        with calling_as(self._user_agent_prefix):
            transport.call(
                "CopyObject",
                src_bucket,
                src_key,
                "copy_object",
                Bucket=dst_bucket,
                Key=dst_key,
                CopySource={"Bucket": src_bucket, "Key": src_key},
                **transport.request_payer,
            )

    def list_objects(
        self, bucket: str, prefix: str = "", delimiter: str = "", max_keys: int = 1000
    ) -> ListObjectStream:
        """A lazy listing of ``s3://bucket/prefix``: an iterator of pages (``ListObjectResult``)."""
        check_bucket(bucket)
        for name, value in (("prefix", prefix), ("delimiter", delimiter)):
            if not isinstance(value, str):
                raise TypeError(f"{name} must be a str, got {type(value).__name__} (bucket {bucket!r})")
        logger.debug("ListObjects s3://%s/%s", bucket, prefix)
        if not isinstance(max_keys, int) or isinstance(max_keys, bool) or not 1 <= max_keys <= 1000:
            raise ValueError(f"max_keys must be an int from 1 to 1000, got {max_keys!r}")
        return ListObjectStream(self, bucket, prefix, delimiter, max_keys)

    # ---- incomplete multipart uploads ---------------------------------------------------
    def list_multipart_uploads(self, bucket: str, prefix: str = "") -> Iterator[MultipartUploadInfo]:
        """The incomplete multipart uploads of ``bucket`` whose keys start with ``prefix``, oldest
        first per key, read page by page as the iterator advances (s3torch addition).

        An upload in this list is one being written now, or one a writer left behind (a process
        killed mid-upload); each costs storage until it is completed or aborted.
        """
        check_bucket(bucket)
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, got {type(prefix).__name__}")
        logger.debug("ListMultipartUploads s3://%s/%s", bucket, prefix)
        return list_uploads(self._transport, bucket, prefix, self._user_agent_prefix)

    def abort_multipart_upload(self, bucket: str, key: str, upload_id: str) -> bool:
        """Abort one incomplete upload (s3torch addition); its parts are deleted. Returns False
        when there was no such upload (already completed or aborted)."""
        check_names(bucket, key)
        if not isinstance(upload_id, str) or not upload_id:
            raise ValueError(f"upload_id should be specified (s3://{bucket}/{key})")
        with calling_as(self._user_agent_prefix):
            return abort_upload(self._transport, bucket, key, upload_id)

    def abort_multipart_uploads(
        self, bucket: str, prefix: str = "", *, older_than: datetime.timedelta
    ) -> list[MultipartUploadInfo]:
        """Abort the incomplete uploads under ``prefix`` initiated more than ``older_than`` ago
        (s3torch addition); returns those aborted.

        ``older_than`` is required, a guard for uploads still being written: choose it longer
        than any write takes (a day is usual; S3 lifecycle rules count in days too). Ages are
        measured from this machine's clock to each upload's initiation time as S3 reports it.

        Raises:
            TypeError: ``older_than`` is not a ``datetime.timedelta``.
            ValueError: ``older_than`` is negative.
        """
        if not isinstance(older_than, datetime.timedelta):
            raise TypeError(f"older_than must be a datetime.timedelta, got {type(older_than).__name__}")
        if older_than < datetime.timedelta(0):
            raise ValueError(f"older_than must not be negative, got {older_than}")
        cutoff = datetime.datetime.now(datetime.timezone.utc) - older_than
        aborted = []
        for upload in self.list_multipart_uploads(bucket, prefix):
            if upload.initiated <= cutoff and self.abort_multipart_upload(bucket, upload.key, upload.upload_id):
                logger.info("Aborted upload id %s of s3://%s/%s", upload.upload_id, bucket, upload.key)
                aborted.append(upload)
        return aborted
