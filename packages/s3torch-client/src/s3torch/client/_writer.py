"""``S3Writer``: the file-like face of an upload (upstream: ``s3torchconnector.S3Writer``)."""

from __future__ import annotations

import io
import logging
import threading
from types import TracebackType
from typing import Any, Protocol

logger = logging.getLogger(__name__)


class WritableStream(Protocol):
    """What ``S3Writer`` needs of its stream: ``write`` and ``close`` (which publishes).
    ``PutObjectStream`` also has ``abort()``, ``bucket`` and ``key``, used when present."""

    def write(self, data: Any, /) -> int | None: ...

    def close(self) -> None: ...


class S3Writer(io.BufferedIOBase):
    """A write-only, file-like representation of a single object stored in S3.

    ``close()`` (or leaving a ``with`` block normally) publishes the object. An exception inside
    the ``with`` block, or dropping an unclosed writer, aborts the upload: nothing is published.

    Args:
        stream: The upload to write into: a ``PutObjectStream`` from ``S3Client.put_object``, or
            any object with ``write(data)`` and ``close()`` (as the upstream's ``S3Writer``
            takes); without an ``abort()``, an exception inside ``with`` leaves it unclosed.
    """

    def __init__(self, stream: WritableStream) -> None:
        self.stream = stream
        self._position = 0
        self._closed = False
        self._close_lock = threading.Lock()

    def __enter__(self) -> S3Writer:
        self._position = 0
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
            return
        logger.info("Exception while writing %s, the upload is aborted: %s", self._where(), exc_val)
        self.abort()

    def write(self, data: Any) -> int:
        """Write a bytes-like object (bytes, bytearray, memoryview, a NumPy array or tensor
        buffer); returns the number of bytes written.

        Raises:
            ValueError: the writer is closed.
            S3Exception: an upload of an earlier part failed (the upload is aborted).
        """
        if self._closed:
            raise ValueError("I/O operation on closed file.")
        written = self.stream.write(data)
        if written is None:  # a hand-made stream that returns nothing took all of it
            written = memoryview(data).nbytes
        self._position += written
        return written

    def tell(self) -> int:
        """Bytes written so far."""
        return self._position

    def flush(self) -> None:
        """No-op: parts are sent as they fill; ``close()`` publishes."""

    def close(self) -> None:
        """Publish the object. Idempotent and thread-safe: the upload completes once."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self.stream.close()

    def abort(self) -> None:
        """Discard what was written; nothing is published."""
        with self._close_lock:
            self._closed = True
        abort = getattr(self.stream, "abort", None)
        if callable(abort):
            abort()

    @property
    def closed(self) -> bool:
        return self._closed

    def readable(self) -> bool:
        return False

    def writable(self) -> bool:
        return not self._closed

    def seekable(self) -> bool:
        return False

    def __reduce_ex__(self, protocol: Any) -> Any:
        raise TypeError(
            f"S3Writer for {self._where()} cannot be pickled: an upload in progress"
            " belongs to the process that started it; pickle the S3Client and open a new writer instead"
        )

    def _where(self) -> str:
        bucket, key = getattr(self.stream, "bucket", None), getattr(self.stream, "key", None)
        return f"s3://{bucket}/{key}" if bucket is not None else repr(self.stream)

    def __del__(self) -> None:
        # io.IOBase.__del__ would close(), publishing a half-written object: abort instead.
        if not getattr(self, "_closed", True):
            self.abort()
