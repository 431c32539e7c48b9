"""``PutObjectStream``: one object written as a stream of bytes.

Below one part the object goes up as a single PutObject when the stream closes. Past that, a
multipart upload starts and every full part is uploaded on the transport's thread pool while
the caller keeps writing; in-flight parts are bounded by bytes (about ``concurrency`` parts of
``part_size``), so ``write`` waits when the network is behind. Part sizes grow along the upload
(see ``part_size_for``) so that any object fits in S3's 10,000 parts. Any failure, and any
``abort()``, aborts the multipart upload: nothing is published and no upload is left behind.

A create-only stream (``if_none_match="*"``) sends ``If-None-Match: *`` on the PutObject or the
CompleteMultipartUpload, the requests that publish: S3 then creates the object only if no object
exists at the key, atomically, even against a racing writer.

Lost answers. A publishing request whose answer was lost may have published: when its retry
gets 412 (create-only) or NoSuchUpload (the upload was completed), the object at the key is
compared with what this stream sent (``_published``) and the write succeeds if it is ours. A
CreateMultipartUpload that botocore retried may have left an upload whose id was never known:
the stream accounts for it when it ends (``_uploads.account_for_lost_creates``).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar, cast

from ._checksum import ALGORITHM, FIELD
from ._config import MAX_PART_SIZE
from ._control_hooks import calling_as
from ._exceptions import S3Exception, client_error
from ._published import multipart_fingerprint, published_etag, single_put_fingerprint
from ._retry import answer_lost, may_have_published, retry_attempts
from ._transport import Transport
from ._uploads import abort_or_warn, account_for_lost_creates

logger = logging.getLogger(__name__)

MAX_PARTS = 10_000
#: Parts per size step: every this many parts the part size doubles (up to 5 GiB). From the
#: smallest part size (5 MiB), 10,000 parts then hold more than 21 TiB (S3 objects stop at 5 TiB).
PARTS_PER_SIZE_STEP = 625


def part_size_for(part_number: int, part_size: int) -> int:
    """Size of part ``part_number`` (1-based) of an upload whose configured part size is ``part_size``."""
    return min(MAX_PART_SIZE, part_size << ((part_number - 1) // PARTS_PER_SIZE_STEP))


_Method = TypeVar("_Method", bound=Callable[..., Any])


def _as_caller(method: _Method) -> _Method:
    """Run ``method`` with the stream's User-Agent on its requests (see ``calling_as``)."""

    @functools.wraps(method)
    def as_caller(self: PutObjectStream, *args: Any, **options: Any) -> Any:
        with calling_as(self._user_agent):
            return method(self, *args, **options)

    return cast(_Method, as_caller)


class PutObjectStream:
    """Writes ``s3://bucket/key``; ``close()`` publishes the object, ``abort()`` discards it."""

    def __init__(
        self,
        transport: Transport,
        bucket: str,
        key: str,
        storage_class: str | None = None,
        *,
        if_none_match: str | None = None,
        user_agent: str,
    ) -> None:
        self.bucket = bucket
        self.key = key
        self._transport = transport
        self._user_agent = user_agent  # every request of this upload carries it
        self._part_size = transport.config.part_size
        self._max_in_flight_bytes = transport.concurrency * self._part_size
        self._storage_class = storage_class
        self._headers = {"x-amz-storage-class": storage_class} if storage_class else {}
        # The condition of the request that publishes, in the single PUT's headers and in the
        # CompleteMultipartUpload's parameters.
        self._publish_condition: dict[str, str] = {}
        if if_none_match is not None:
            self._headers["If-None-Match"] = if_none_match
            self._publish_condition["IfNoneMatch"] = if_none_match
        self._buffers = transport.part_buffers
        self._buffer = self._buffers.take(self._part_size)
        self._filled = 0
        self._part_number = 0
        self._upload_id: str | None = None
        # Retries botocore made of the CreateMultipartUpload: each may have left an upload.
        self._create_retries = 0
        self._size = 0
        self._in_flight: deque[tuple[int, bytearray, Future[tuple[str, str | None]]]] = deque()
        self._in_flight_bytes = 0
        self._etags: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._closed = False
        self._failed: BaseException | None = None
        self._published = False

    def write(self, data: Any) -> int:
        """Append ``data`` (any contiguous bytes-like object); returns the number of bytes."""
        if self._closed:
            raise S3Exception("Cannot write to closed object", bucket=self.bucket, key=self.key)
        view = memoryview(data).cast("B")
        total = len(view)
        offset = 0
        try:
            while offset < total:
                if self._filled == len(self._buffer):
                    # Only now is the part known not to be the whole object.
                    self._send_full_part()
                count = min(total - offset, len(self._buffer) - self._filled)
                self._buffer[self._filled : self._filled + count] = view[offset : offset + count]
                self._filled += count
                offset += count
        except BaseException as error:
            self._fail(error)
            raise
        return total

    @_as_caller
    def _send_full_part(self) -> None:
        transport = self._transport
        if self._upload_id is None:
            params: dict[str, Any] = {"Bucket": self.bucket, "Key": self.key, **transport.request_payer}
            if self._storage_class:
                params["StorageClass"] = self._storage_class
            if transport.upload_checksums:
                params["ChecksumAlgorithm"] = ALGORITHM
            try:
                result = transport.call(
                    "CreateMultipartUpload", self.bucket, self.key, "create_multipart_upload", **params
                )
            except S3Exception as error:
                # Every attempt failed, yet those whose answer was lost may have created an upload.
                self._create_retries = transport.config.max_attempts if answer_lost(error) else retry_attempts(error)
                raise
            self._upload_id = result["UploadId"]
            self._create_retries = result.get("ResponseMetadata", {}).get("RetryAttempts", 0)
            logger.debug("CreateMultipartUpload s3://%s/%s upload id %s", self.bucket, self.key, self._upload_id)
        self._part_number += 1
        if self._part_number > MAX_PARTS:
            raise client_error(
                f"object exceeds {MAX_PARTS} parts", operation="UploadPart", bucket=self.bucket, key=self.key
            )
        buffer, size = self._buffer, self._filled
        self._size += size
        while self._in_flight and self._in_flight_bytes + size > self._max_in_flight_bytes:
            self._collect_oldest()
        future = transport.executor.submit(
            self._put_part,
            self.bucket,
            self.key,
            memoryview(buffer)[:size],
            query={"partNumber": str(self._part_number), "uploadId": self._upload_id},
            operation="UploadPart",
        )
        self._in_flight.append((self._part_number, buffer, future))
        self._in_flight_bytes += len(buffer)
        next_size = part_size_for(self._part_number + 1, self._part_size)
        self._buffer = self._buffers.take(next_size)
        self._filled = 0

    @_as_caller  # on the transport's thread
    def _put_part(self, *args: Any, **options: Any) -> tuple[str, str | None]:
        return self._transport.put_bytes(*args, **options)

    def _collect_oldest(self) -> None:
        part_number, buffer, future = self._in_flight.popleft()
        self._in_flight_bytes -= len(buffer)
        etag, checksum = future.result()  # raises the part's error
        part: dict[str, Any] = {"PartNumber": part_number, "ETag": etag}
        if checksum is not None:
            part[FIELD] = checksum
        self._etags.append(part)
        self._buffers.give(buffer)

    @_as_caller
    def close(self) -> None:
        """Publish the object. A second call raises, as upstream's transport does."""
        with self._lock:
            if self._closed:
                raise S3Exception("Cannot close object more than once", bucket=self.bucket, key=self.key)
            self._closed = True
        try:
            if self._upload_id is None:
                body = memoryview(self._buffer)[: self._filled]
                self._transport.put_bytes(
                    self.bucket,
                    self.key,
                    body,
                    headers=self._headers,
                    published=lambda checksum: published_etag(
                        self._transport, self.bucket, self.key, single_put_fingerprint(body, checksum)
                    ),
                )
                logger.debug("PutObject s3://%s/%s done (%d bytes)", self.bucket, self.key, self._filled)
                self._published = True
                return
            if self._filled:
                self._send_full_part()
            while self._in_flight:
                self._collect_oldest()
            self._complete()
            self._published = True
            logger.debug("CompleteMultipartUpload s3://%s/%s (%d parts)", self.bucket, self.key, len(self._etags))
            upload_id, self._upload_id = self._upload_id, None
            self._account_for_lost_creates(upload_id)
        except BaseException as error:
            self._fail(error)
            raise
        finally:
            # Every request that used a buffer has ended (or _fail waited for it).
            self._release_buffer()

    def _complete(self) -> None:
        try:
            self._transport.call(
                "CompleteMultipartUpload",
                self.bucket,
                self.key,
                "complete_multipart_upload",
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._etags},
                **self._publish_condition,
                **self._transport.request_payer,
            )
        except S3Exception as error:
            # A retry after a lost answer finds the upload completed (NoSuchUpload) or, for a
            # create-only write, the object there (412): published, if the object is ours.
            if not may_have_published(error):
                raise
            expected = multipart_fingerprint(self._etags, self._size)
            if published_etag(self._transport, self.bucket, self.key, expected) is None:
                raise

    def _account_for_lost_creates(self, used: str | None) -> None:
        if self._create_retries:
            retries, self._create_retries = self._create_retries, 0
            account_for_lost_creates(self._transport, self.bucket, self.key, used, retries)

    def abort(self) -> None:
        """Discard everything written; the object is not published. Safe to call more than once."""
        with self._lock:
            self._closed = True
        if not self._published:
            self._fail(None)

    @_as_caller
    def _fail(self, error: BaseException | None) -> None:
        self._closed = True
        if self._failed is not None:
            return
        self._failed = error or S3Exception("aborted", bucket=self.bucket, key=self.key)
        for _, _, future in self._in_flight:
            future.cancel()
        for _, _, future in self._in_flight:
            if not future.cancelled():
                future.exception()  # wait: a part still sending must not land after the abort
        for _, buffer, _ in self._in_flight:
            self._buffers.give(buffer)  # every part's request has ended or never started
        self._in_flight.clear()
        self._release_buffer()
        upload_id, self._upload_id = self._upload_id, None
        if upload_id is not None:
            abort_or_warn(self._transport, self.bucket, self.key, upload_id)
        self._account_for_lost_creates(upload_id)

    def _release_buffer(self) -> None:
        buffer, self._buffer = self._buffer, bytearray()
        self._buffers.give(buffer)

    def __reduce_ex__(self, protocol: Any) -> Any:
        raise TypeError(
            f"PutObjectStream for s3://{self.bucket}/{self.key} cannot be pickled: an upload in progress belongs"
            " to the process that started it; pickle the S3Client and open a new writer instead"
        )
