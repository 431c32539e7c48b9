"""``SequentialS3Reader``: the object as one stream, fetched once, kept as it is read."""

from __future__ import annotations

import io
from bisect import bisect_right
from typing import Any, TypeVar

from s3torch.client import client_error

from ._base import (
    S3Reader,
    check_position,
    check_size,
    check_whence,
    writable_view,
)
from ._stream import GetStreamCallable, ObjectInfoCallable, ReaderStream, info_etag, reader_stream

#: ``readinto`` calls at least this large, at the end of what has been fetched, go from the socket
#: straight into the caller's buffer and are not kept (a later backward seek into them fetches
#: that range again, pinned to the same object version). Smaller reads are served from, and kept
#: in, the reader's chunks.
PASS_THROUGH_BYTES = 1024 * 1024

_Sequential = TypeVar("_Sequential", bound="SequentialS3Reader")


class SequentialS3Reader(S3Reader):
    """The generic reader: one GET stream over the whole object, started on the first read (or
    ``prefetch()``). What is read is kept, in the stream's own chunks (no copy into a growing
    buffer), so seeking back is free; its memory is at most the object size. The size comes
    from the stream's first response; ``seek(0, SEEK_END)`` before any read asks
    ``get_object_info`` instead (the listing's info, or a HEAD) and sends no GET.

    Pickled (a DataLoader worker returning it, for example), it carries its settings, position,
    size and ETag, not what it fetched: the copy's first read opens a stream from its position,
    pinned to the version already seen; a backward seek there fetches what lies before.
    """

    _pickles_by_state = True

    def __init__(
        self,
        bucket: str,
        key: str,
        get_object_info: ObjectInfoCallable,
        get_stream: GetStreamCallable,
    ) -> None:
        super().__init__(bucket, key, get_object_info, get_stream)
        self._stream: ReaderStream | None = None
        self._starts: list[int] = []  # offsets of the kept chunks, ascending
        self._chunks: list[memoryview] = []
        self._frontier = 0  # bytes taken from the stream so far
        self._exhausted = False
        self._position = 0
        self._size: int | None = None
        self._etag: str | None = None

    # ---- fetching -----------------------------------------------------------------------
    def prefetch(self) -> None:
        """Start fetching: send the GET now. Calling it again does nothing."""
        self._check_open()
        if not self._exhausted:
            self._open_stream()

    def _open_stream(self) -> ReaderStream:
        if self._stream is None:
            # From the frontier: 0, unless this reader was unpickled at a later position.
            source = self._get_stream(self._frontier) if self._frontier else self._get_stream()
            stream = reader_stream(source, self._etag)
            stream.start()
            self._stream = stream
            self._etag = stream.etag
            if stream.size is not None:
                self._size = stream.size
        return self._stream

    def _take(self) -> bool:
        """Keep the stream's next chunk; False at the end of the object."""
        try:
            chunk = next(self._open_stream())
        except StopIteration:
            self._exhausted = True
            self._size = self._frontier
            return False
        self._starts.append(self._frontier)
        self._chunks.append(chunk)
        self._frontier += len(chunk)
        return True

    def _kept(self, position: int, limit: int) -> memoryview:
        """Up to ``limit`` kept bytes from ``position`` (< frontier), fetching a gap left by a
        pass-through read again."""
        index = bisect_right(self._starts, position) - 1
        if index < 0 or position >= self._starts[index] + len(self._chunks[index]):
            index = self._refetch_gap(index)
        chunk = self._chunks[index]
        offset = position - self._starts[index]
        return chunk[offset : offset + limit]

    def _refetch_gap(self, before: int) -> int:
        start = self._starts[before] + len(self._chunks[before]) if before >= 0 else 0
        end = self._starts[before + 1] if before + 1 < len(self._starts) else self._frontier
        buffer = bytearray(end - start)
        count = reader_stream(self._get_stream(start, end), self._etag).readinto(buffer)
        if count != len(buffer):
            raise client_error(
                f"returned {count} bytes of range {start}-{end - 1} (the object is shorter than when it was"
                " first read)",
                operation="GetObject",
                bucket=self._bucket,
                key=self._key,
            )
        self._starts.insert(before + 1, start)
        self._chunks.insert(before + 1, memoryview(buffer))
        return before + 1

    # ---- reading ------------------------------------------------------------------------
    def read(self, size: int | None = None) -> bytes:
        """Read up to ``size`` bytes; everything to the end for None or a negative size."""
        wanted = check_size(size)
        self._check_open()
        if wanted == 0:
            return b""
        pieces: list[memoryview] = []
        remaining = -1 if wanted is None else wanted
        while remaining:
            if self._position < self._frontier:
                piece = self._kept(self._position, remaining if remaining > 0 else self._frontier)
                pieces.append(piece)
                self._position += len(piece)
                remaining -= len(piece) if remaining > 0 else 0
            elif self._exhausted or not self._take():
                break
        return b"".join(pieces)

    def readinto(self, buf: Any) -> int:
        """Read up to ``len(buf)`` bytes into ``buf``; large reads at the stream's front go
        straight from the socket into ``buf``."""
        view = writable_view(buf)
        self._check_open()
        wanted = len(view)
        filled = 0
        while filled < wanted:
            if self._position < self._frontier:
                piece = self._kept(self._position, wanted - filled)
                count = len(piece)
                view[filled : filled + count] = piece
            elif self._exhausted:
                break
            elif self._position == self._frontier and wanted - filled >= PASS_THROUGH_BYTES:
                count = self._open_stream().readinto(view[filled:])
                self._frontier += count
                if count < wanted - filled:
                    self._exhausted = True
                    self._size = self._frontier
                if count == 0:
                    break
            elif self._take():
                continue
            else:
                break
            filled += count
            self._position += count
        return filled

    # ---- positioning --------------------------------------------------------------------
    def seek(self, offset: int, whence: int = io.SEEK_SET, /) -> int:
        """Move to ``offset`` relative to ``whence``; past the end stays at the end."""
        check_whence(offset, whence)
        self._check_open()
        if whence == io.SEEK_END:
            target = check_position(self._size_without_get() + offset)
        else:
            target = check_position(offset if whence == io.SEEK_SET else self._position + offset)
        if target > self._frontier:
            target = min(target, self._size_from_stream())
        self._position = target
        return target

    def tell(self) -> int:
        return self._position

    def known_size(self) -> int | None:
        """The object's size if known already (no request is sent to learn it)."""
        return self._size

    def _size_without_get(self) -> int:
        if self._size is None:
            info = self._get_object_info()
            self._size = info.size
            self._etag = self._etag or info_etag(info)
        return self._size

    def _size_from_stream(self) -> int:
        if self._size is None:
            self._open_stream()
        while self._size is None:  # a server that sends no size: read on to the end
            self._take()
        return self._size

    # ---- pickling -----------------------------------------------------------------------
    def _reader_state(self) -> dict[str, Any]:
        return {"position": self._position, "size": self._size, "etag": self._etag}

    @classmethod
    def _restore(
        cls: type[_Sequential],
        bucket: str,
        key: str,
        get_object_info: ObjectInfoCallable,
        get_stream: GetStreamCallable,
        state: dict[str, Any],
    ) -> _Sequential:
        reader = cls.__new__(cls)
        SequentialS3Reader.__init__(reader, bucket, key, get_object_info, get_stream)
        reader._size, reader._etag, reader._position = state["size"], state["etag"], state["position"]
        # Nothing is kept: the stream starts at the position, the bytes before it are a gap that
        # a backward seek fetches (see _kept).
        reader._frontier = reader._position if reader._size is None else min(reader._position, reader._size)
        reader._exhausted = reader._size is not None and reader._frontier >= reader._size
        return reader

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        self._chunks.clear()
        self._starts.clear()
        super().close()
