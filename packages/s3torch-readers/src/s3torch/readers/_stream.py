"""What a reader reads from: s3torch's ``GetObjectStream`` as it is, or any iterator of byte chunks.

A reader's ``get_stream(start, end)`` returns the bytes ``[start, end)`` of its object. Through
``S3Client.get_object`` that is a ``GetObjectStream`` (``readinto`` straight from the socket,
pinned to one version of the object); a reader built directly may be given, as the upstream's
readers may, a ``get_stream`` that returns any iterator of bytes-like chunks (a list iterator, a
generator), and ``ChunkIteratorStream`` gives that the same face.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from s3torch.client import GetObjectStream

#: A chunk a ``get_stream`` may yield.
Chunk = bytes | bytearray | memoryview


class ObjectSize(Protocol):
    """What a reader needs of ``get_object_info()``'s answer: the object's ``size`` (an
    ``ObjectInfo`` or ``HeadObjectResult``; an ``etag`` too, when it has one, pins the reads)."""

    @property
    def size(self) -> int: ...


ObjectInfoCallable = Callable[[], ObjectSize]


class GetStreamCallable(Protocol):
    """``get_stream(start=None, end=None)``: the object's bytes ``[start, end)`` as an iterator of
    chunks (``S3Client.get_object`` gives readers one returning ``GetObjectStream``)."""

    def __call__(self, start: int | None = None, end: int | None = None) -> Iterable[Chunk]: ...


class ReaderStream(Protocol):
    """The face of a stream as the readers use it (``GetObjectStream`` has it)."""

    size: int | None
    etag: str | None

    def start(self) -> None: ...

    def __iter__(self) -> ReaderStream: ...

    def readinto(self, buffer: Any) -> int: ...

    def __next__(self) -> memoryview: ...

    def close(self) -> None: ...


class ChunkIteratorStream:
    """Any iterator of bytes-like chunks as a ``ReaderStream``: ``size`` and ``etag`` are unknown
    (``None``), ``readinto`` copies from the chunks, ``close()`` closes the iterator if it can."""

    def __init__(self, chunks: Iterable[Chunk]) -> None:
        self._source = chunks
        self._chunks: Iterator[Chunk] = iter(chunks)
        self._leftover: memoryview | None = None
        self.size: int | None = None
        self.etag: str | None = None
        self.closed = False

    def start(self) -> None:
        """Nothing to send: the iterator produces its chunks when asked."""

    def __iter__(self) -> ChunkIteratorStream:
        return self

    def __next__(self) -> memoryview:
        if self._leftover is not None:
            chunk, self._leftover = self._leftover, None
            return chunk
        while True:
            view = memoryview(next(self._chunks))
            if view.format != "B" or view.ndim != 1:
                view = view.cast("B")
            if len(view):
                return view

    def readinto(self, buffer: Any) -> int:
        """Fill ``buffer`` with the next bytes; fewer than ``len(buffer)`` only at the end."""
        view = memoryview(buffer).cast("B")
        filled = 0
        while filled < len(view):
            try:
                chunk = next(self)
            except StopIteration:
                break
            count = min(len(view) - filled, len(chunk))
            view[filled : filled + count] = chunk[:count]
            if count < len(chunk):
                self._leftover = chunk[count:]
            filled += count
        return filled

    def close(self) -> None:
        self.closed = True
        self._leftover = None
        close = getattr(self._source, "close", None)
        if callable(close):
            close()


_STREAM_FACE = ("size", "etag", "start", "readinto", "__next__", "close")


def reader_stream(stream: Iterable[Chunk], etag: str | None) -> ReaderStream:
    """``get_stream``'s answer as a ``ReaderStream``. A ``GetObjectStream`` is used as it is (the
    fast path), pinned to the version ``etag`` so that every byte of one reader comes from one
    version even across several streams (the stream raises ``ObjectChangedError`` otherwise). A
    stream with all of ``GetObjectStream``'s face (``size``, ``etag``, ``start``, ``readinto``,
    ``__next__``, ``close``) is used as it is too; anything else is read as an iterator of chunks."""
    if isinstance(stream, GetObjectStream):
        if etag and stream.etag is None:
            stream.etag = etag
        return stream
    if all(hasattr(stream, name) for name in _STREAM_FACE):
        return stream  # type: ignore[return-value]  # a stream with GetObjectStream's face
    return ChunkIteratorStream(stream)


def info_etag(info: ObjectSize) -> str | None:
    """The ETag of ``get_object_info()``'s answer, when it has one."""
    etag = getattr(info, "etag", None)
    return etag if isinstance(etag, str) and etag else None
