"""``S3Reader``: the abstract file-like reader, and the argument checks every strategy shares."""

from __future__ import annotations

import io
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from s3torch.client import GetObjectStream, HeadObjectResult, ObjectInfo

ObjectInfoCallable = Callable[[], ObjectInfo | HeadObjectResult]
GetStreamCallable = Callable[..., GetObjectStream]


def check_size(size: Any) -> int | None:
    """``read``'s size: None or negative mean "to the end" (returned as None)."""
    if size is None:
        return None
    if not isinstance(size, int):
        raise TypeError(f"argument should be integer or None, not {type(size)}")
    return None if size < 0 else size


def check_whence(offset: Any, whence: Any) -> None:
    if not isinstance(offset, int):
        raise TypeError(f"integer argument expected, got {type(offset)}")
    if not isinstance(whence, int):
        raise TypeError(f"whence must be an integer, got {type(whence)}")
    if whence not in (io.SEEK_SET, io.SEEK_CUR, io.SEEK_END):
        raise ValueError("Seek must be passed SEEK_CUR, SEEK_SET, or SEEK_END")


def check_position(position: int) -> int:
    if position < 0:
        raise ValueError(f"negative seek value {position}")
    return position


def writable_view(buffer: Any) -> memoryview:
    """The caller's buffer as a writable byte view, or the upstream's TypeError."""
    try:
        view = memoryview(buffer)
    except TypeError:
        raise TypeError(f"argument must be a writable bytes-like object, not {type(buffer).__name__}") from None
    if view.readonly:
        raise TypeError(f"argument must be a writable bytes-like object, not {type(buffer).__name__}")
    return view.cast("B") if view.format != "B" or view.ndim != 1 else view


def pinned(stream: GetObjectStream, etag: str | None) -> GetObjectStream:
    """Pin ``stream`` to a version of the object, so that every byte of one reader comes from one
    version even across several streams (the stream raises ``ObjectChangedError`` otherwise)."""
    if etag and isinstance(stream, GetObjectStream) and stream.etag is None:
        stream.etag = etag
    return stream


class S3Reader(ABC, io.BufferedIOBase):
    """A read-only, file-like view of one S3 object (upstream: ``s3torchconnector.S3Reader``).

    Strategies: ``SequentialS3Reader`` (the default: fetches the object once, as a stream, and keeps
    what it read), ``RangedS3Reader`` (ranged GETs for what is asked, through an optional buffer) and
    ``DCPOptimizedS3Reader`` (coalesced ranges of a checkpoint load plan). ``S3ReaderConstructor``
    builds them for ``S3Client.get_object`` and the datasets. Readers are not thread-safe.
    """

    def __init__(
        self,
        bucket: str,
        key: str,
        get_object_info: ObjectInfoCallable,
        get_stream: GetStreamCallable,
    ) -> None:
        if not bucket:
            raise ValueError("Bucket should be specified")
        self._bucket = bucket
        self._key = key
        self._get_object_info = get_object_info
        self._get_stream = get_stream
        self._closed = False

    @property
    def bucket(self) -> str:
        return self._bucket

    @property
    def key(self) -> str:
        return self._key

    @abstractmethod
    def read(self, size: int | None = None) -> bytes:
        """Read up to ``size`` bytes (all to the end for None or a negative size)."""

    @abstractmethod
    def readinto(self, buf: Any) -> int:
        """Read up to ``len(buf)`` bytes into the writable buffer ``buf``; 0 at the end."""

    @abstractmethod
    def seek(self, offset: int, whence: int = io.SEEK_SET, /) -> int:
        """Move to ``offset`` relative to ``whence``; past the end stays at the end."""

    @abstractmethod
    def tell(self) -> int:
        """The current position."""

    def read1(self, size: int = -1, /) -> bytes:
        """As ``read``: a reader has no raw stream below it (lets ``io.TextIOWrapper`` read lines)."""
        return self.read(size)

    def readinto1(self, buf: Any, /) -> int:
        """As ``readinto``."""
        return self.readinto(buf)

    def prefetch(self) -> None:
        """Start fetching data, where the strategy fetches ahead (a no-op otherwise)."""

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def seekable(self) -> bool:
        # True lets torch.distributed.checkpoint read items in place instead of copying them.
        return True

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"I/O operation on closed reader of s3://{self._bucket}/{self._key}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(bucket={self._bucket!r}, key={self._key!r})"
