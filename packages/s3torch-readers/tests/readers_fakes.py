"""An in-memory S3 object for the reader unit tests: ``get_object_info`` and ``get_stream`` over
given bytes, with the ``GetObjectStream`` surface the readers use, and a record of every call.

``reader_stream()`` in ``s3torch.readers._stream`` pins only on real ``GetObjectStream`` objects, so with
these fakes version pinning is a no-op (the integration tests cover it against a server).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from s3torch.client import HeadObjectResult, ObjectInfo
from s3torch.readers import (
    DEFAULT_MAX_GAP_SIZE,
    DCPOptimizedS3Reader,
    ItemRange,
    RangedS3Reader,
    S3Reader,
    SequentialS3Reader,
)

BUCKET = "fake-bucket"
KEY = "fake/key.bin"
ETAG = '"0123456789abcdef"'


class FakeStream:
    """Bytes ``[start, end)`` of a ``FakeObject``: iteration yields memoryview chunks of the
    object's chunk sizes, ``readinto`` fills the buffer (fewer bytes only at the end), ``size``
    and ``etag`` are known once the first (pretend) request went out."""

    def __init__(self, owner: FakeObject, start: int | None, end: int | None) -> None:
        self.bucket = owner.bucket
        self.key = owner.key
        self.start_argument = start
        self.end_argument = end
        self._owner = owner
        self._data = owner.data  # the version this stream serves, even if the object changes later
        limit = len(self._data) if owner.stream_limit is None else min(owner.stream_limit, len(self._data))
        self._position = start or 0
        self._end = limit if end is None else min(end, limit)
        self._chunk_sizes = itertools.cycle(owner.chunk_sizes)
        self.size: int | None = None
        self.etag: str | None = None
        self.started = False
        self.closed = False
        self.bytes_served = 0

    def start(self) -> None:
        if self.closed:
            raise ValueError("start of a closed stream")
        if not self.started:
            self.started = True
            self.size = len(self._data)
            self.etag = self._owner.etag

    def __iter__(self) -> Iterator[memoryview]:
        return self

    def __next__(self) -> memoryview:
        if self.closed:
            raise StopIteration
        self.start()
        if self._position >= self._end:
            raise StopIteration
        size = min(next(self._chunk_sizes), self._end - self._position)
        chunk = memoryview(bytearray(self._data[self._position : self._position + size]))
        self._position += size
        self.bytes_served += size
        return chunk

    def readinto(self, buffer: Any) -> int:
        if self.closed:
            raise ValueError("read from a closed stream")
        self.start()
        view = memoryview(buffer).cast("B")
        count = max(0, min(len(view), self._end - self._position))
        view[:count] = self._data[self._position : self._position + count]
        self._position += count
        self.bytes_served += count
        return count

    def tell(self) -> int:
        return self._position

    def close(self) -> None:
        self.closed = True


class FakeObject:
    """One object: ``get_object_info`` (a HEAD, or a listing's ``ObjectInfo`` with
    ``listed=True``) and ``get_stream(start=None, end=None)``, counting the calls.

    Args:
        chunk_size: Size of the chunks streams yield; a sequence is cycled (irregular chunks).
        stream_limit: Streams end at this offset, as if the connection ended early.
    """

    def __init__(
        self,
        data: bytes,
        chunk_size: int | Sequence[int] = 5,
        *,
        listed: bool = False,
        stream_limit: int | None = None,
        bucket: str = BUCKET,
        key: str = KEY,
    ) -> None:
        self.data = data
        self.chunk_sizes = [chunk_size] if isinstance(chunk_size, int) else list(chunk_size)
        self.listed = listed
        self.stream_limit = stream_limit
        self.bucket = bucket
        self.key = key
        self.etag = ETAG
        self.info_calls = 0
        self.streams: list[FakeStream] = []
        self.events: list[str] = []  # "info" and "stream start-end", in call order

    def __getstate__(self) -> dict[str, Any]:
        # A pickled reader carries this object through its callables: the copy has no history.
        state = self.__dict__.copy()
        state.update(info_calls=0, streams=[], events=[])
        return state

    # ---- the callables the readers get ----------------------------------------------
    def get_object_info(self) -> ObjectInfo | HeadObjectResult:
        self.info_calls += 1
        self.events.append("info")
        if self.listed:
            return ObjectInfo(self.key, self.etag, len(self.data), 0)
        return HeadObjectResult(self.etag, len(self.data), 0)

    def get_stream(self, start: int | None = None, end: int | None = None) -> FakeStream:
        stream = FakeStream(self, start, end)
        self.streams.append(stream)
        self.events.append(f"stream {start}-{end}")
        return stream

    # ---- what happened ----------------------------------------------------------------
    @property
    def ranges(self) -> list[tuple[int | None, int | None]]:
        """The ``(start, end)`` of every stream asked for, in order."""
        return [(s.start_argument, s.end_argument) for s in self.streams]

    @property
    def started_streams(self) -> int:
        return sum(s.started for s in self.streams)

    # ---- readers over it ---------------------------------------------------------------
    def sequential(self) -> SequentialS3Reader:
        return SequentialS3Reader(self.bucket, self.key, self.get_object_info, self.get_stream)

    def ranged(self, buffer_size: int | None = None) -> RangedS3Reader:
        return RangedS3Reader(self.bucket, self.key, self.get_object_info, self.get_stream, buffer_size=buffer_size)

    def dcp(self, ranges: list[ItemRange], max_gap_size: float = DEFAULT_MAX_GAP_SIZE) -> DCPOptimizedS3Reader:
        return DCPOptimizedS3Reader(
            self.bucket, self.key, ranges, self.get_object_info, self.get_stream, max_gap_size=max_gap_size
        )


#: The readers that share the generic file semantics, by test id.
GENERIC_READERS: dict[str, Callable[[FakeObject], S3Reader]] = {
    "sequential": FakeObject.sequential,
    "ranged-default": lambda obj: obj.ranged(),
    "ranged-7": lambda obj: obj.ranged(7),
    "ranged-1000": lambda obj: obj.ranged(1000),
    "ranged-unbuffered": lambda obj: obj.ranged(0),
}
