"""``SequentialS3Reader``: the object as a stream, fetched as it is read, kept as it is read."""

from __future__ import annotations

import io
from bisect import bisect_right
from typing import Any

from s3torch.client import client_error

from ._base import ReaderSource, S3Reader, check_position, check_size, check_whence, writable_view
from ._stream import ReaderStream, info_etag, reader_stream

#: ``readinto`` calls at least this large, at an open stream's position, go from the socket
#: straight into the caller's buffer and are not kept (a later backward seek into them fetches
#: that range again, pinned to the same object version). Smaller reads are served from, and kept
#: in, the reader's chunks. (``torch.load`` reads each tensor with one ``readinto`` into the
#: tensor's memory: most checkpoints' tensors are larger than this.)
PASS_THROUGH_BYTES = 128 * 1024
#: A read this far or less ahead of where a stream stands (or of the start of the bytes not yet
#: fetched) reads on through the stream, keeping what it passes; a read further ahead opens a
#: stream where it is (``torch.load`` reads a file's end first: the bytes in between are not
#: fetched, let alone kept, until they are read).
SKIP_THROUGH_BYTES = 8 * 1024 * 1024
#: A small ``readinto`` at a stream's position keeps a chunk of at least this size (a stream's
#: own chunks are a whole part, 8 MiB by default: too much to copy for a header of 30 bytes). A
#: small read far ahead keeps this much before it too (a zip's directory is read backwards).
SMALL_READ_CHUNK_BYTES = 64 * 1024
#: Streams open at once: the one reading on, and one filling a range left behind or skipped.
MAX_OPEN_STREAMS = 2


class _OpenStream:
    """A stream over ``[start, end)`` of the object (``end`` None: to its end) at ``position``.
    A ``refill`` fetches bytes fetched before (passed straight through, or skipped): it keeps
    all it reads, so that they are fetched at most twice."""

    __slots__ = ("end", "position", "refill", "start", "stream")

    def __init__(self, stream: ReaderStream, start: int, end: int | None, refill: bool) -> None:
        self.stream = stream
        self.start = start
        self.end = end
        self.position = start
        self.refill = refill


class SequentialS3Reader(S3Reader):
    """The generic reader: the object is fetched as a stream, started on the first read (or
    ``prefetch()``). What is read is kept, in the stream's own chunks (no copy into a growing
    buffer), so seeking back is free; its memory is at most the object size. The size comes
    from the stream's first response; ``seek(0, SEEK_END)`` before any read asks
    ``get_object_info`` instead (the listing's info, or a HEAD) and sends no GET.

    Reads go on through the stream from where it stands; a read far ahead of it (``torch.load``
    reads a file's end first) opens a second stream there instead of fetching everything in
    between, and bytes not fetched yet, or handed straight to a large ``readinto``, are fetched
    when read: every stream is pinned to the version first seen.

    Pickled (a DataLoader worker returning it, for example), it carries its settings, position,
    size and ETag, not what it fetched: the copy's first read opens a stream from its position,
    pinned to the version already seen; a backward seek there fetches what lies before.
    """

    _pickles_by_state = True

    # The constructor is S3Reader's: (bucket, key, get_object_info, get_stream).
    def _start_empty(self) -> None:
        self._streams: list[_OpenStream] = []  # most recently used last
        self._opened = False  # whether any stream was opened (prefetch opens only the first)
        self._origin = 0  # where the first stream starts: 0, or the position this reader was unpickled at
        self._starts: list[int] = []  # offsets of the kept chunks, ascending, not overlapping
        self._chunks: list[memoryview] = []
        self._position = 0
        self._size: int | None = None
        self._etag: str | None = None
        self._reached = 0  # the furthest offset any stream has delivered up to

    # ---- fetching -----------------------------------------------------------------------
    def prefetch(self) -> None:
        """Start fetching: send the GET now. Calling it again does nothing."""
        self._check_open()
        if not self._opened:
            self._open(self._origin, None)

    def _open(self, start: int, end: int | None) -> _OpenStream:
        if len(self._streams) >= MAX_OPEN_STREAMS:
            self._streams.pop(0).stream.close()
        if end is None:
            source = self._get_stream(start) if start else self._get_stream()
        else:
            source = self._get_stream(start, end)
        stream = reader_stream(source, self._etag)
        stream.start()
        self._opened = True
        self._etag = self._etag or stream.etag
        if stream.size is not None:
            self._size = stream.size
        opened = _OpenStream(stream, start, end, refill=start < self._reached)
        self._streams.append(opened)
        return opened

    def _drop(self, opened: _OpenStream) -> None:
        self._streams.remove(opened)
        opened.stream.close()

    def _kept_index(self, position: int) -> int:
        """Index of the kept chunk holding ``position``, or -1."""
        index = bisect_right(self._starts, position) - 1
        if index >= 0 and position < self._starts[index] + len(self._chunks[index]):
            return index
        return -1

    def _next_kept(self, position: int) -> int | None:
        """Offset of the first kept chunk after ``position`` (not holding it), if any."""
        index = bisect_right(self._starts, position)
        return self._starts[index] if index < len(self._starts) else None

    def _room(self, opened: _OpenStream) -> int | None:
        """How many bytes ``opened`` may still deliver without reaching kept bytes (None: no limit
        known)."""
        limits = [limit for limit in (self._next_kept(opened.position), opened.end) if limit is not None]
        return min(limits) - opened.position if limits else None

    def _stream_at(self, position: int) -> _OpenStream | None:
        """A stream whose next byte is ``position`` (not kept, below the size if known): an open
        one, one read on from a little before it, or a new one. None when reading on found the
        object's end or bytes kept already: look again."""
        for opened in reversed(self._streams):
            if opened.position == position:
                self._touch(opened)
                return opened
        for opened in reversed(self._streams):
            if opened.position < position <= opened.position + SKIP_THROUGH_BYTES:
                self._touch(opened)
                return self._read_on(opened, position)
        # The bytes not kept around ``position`` start at ``hole``: from there when it is near.
        index = bisect_right(self._starts, position) - 1
        hole = self._starts[index] + len(self._chunks[index]) if index >= 0 else 0
        if not self._opened:
            hole = max(hole, self._origin) if self._origin <= position else position
        start = hole if position - hole <= SKIP_THROUGH_BYTES else max(hole, position - SMALL_READ_CHUNK_BYTES)
        # Up to the next kept chunk, or to a stream further on that is reading that way.
        ends = [opened.position for opened in self._streams if opened.position > start]
        following = self._next_kept(start)
        if following is not None:
            ends.append(following)
        if self._size is not None and self._opened:
            ends.append(self._size)  # a bounded range: no 416 past the end of a small object
        return self._read_on(self._open(start, min(ends) if ends else None), position)

    def _read_on(self, opened: _OpenStream, position: int) -> _OpenStream | None:
        """Keep what ``opened`` has before ``position``; it, once there."""
        while opened.position < position and opened in self._streams:
            # Exactly the bytes up to it (a 16-byte zip data descriptor, say), not a whole part.
            if not self._keep_from(opened, min(position - opened.position, SKIP_THROUGH_BYTES)):
                return None
        return opened if opened.position == position and opened in self._streams else None

    def _touch(self, opened: _OpenStream) -> None:
        self._streams.remove(opened)
        self._streams.append(opened)

    def _keep_from(self, opened: _OpenStream, size: int | None = None) -> bool:
        """Keep the next bytes of ``opened``: its own next chunk (``size`` None), or ``size``
        bytes (fewer where kept bytes follow). False when it has no more."""
        room = self._room(opened)
        if room == 0:
            self._drop(opened)  # it reached bytes kept already
            return False
        overran = False  # the stream delivered past bytes kept already: it is no longer at its position
        if size is None:
            try:
                chunk = next(opened.stream)
            except StopIteration:
                self._ended(opened)
                return False
            if room is not None and len(chunk) > room:
                chunk = chunk[:room]  # the rest is kept already
                overran = True
        else:
            buffer = bytearray(size if room is None else min(size, room))
            count = opened.stream.readinto(buffer)
            if count == 0:
                self._ended(opened)
                return False
            chunk = memoryview(buffer)[:count]
            if count < len(buffer):
                self._keep(opened.position, chunk)
                self._advance(opened, count)
                self._ended(opened)
                return True
        self._keep(opened.position, chunk)
        self._advance(opened, len(chunk))
        if overran or (opened.end is not None and opened.position >= opened.end):
            self._drop(opened)
        return True

    def _advance(self, opened: _OpenStream, count: int) -> None:
        opened.position += count
        self._reached = max(self._reached, opened.position)

    def _keep(self, start: int, chunk: memoryview) -> None:
        index = bisect_right(self._starts, start)
        self._starts.insert(index, start)
        self._chunks.insert(index, chunk)

    def _ended(self, opened: _OpenStream) -> None:
        """``opened`` returned its last byte before its end, if it has one."""
        self._drop(opened)
        if opened.end is None:
            self._size = opened.position
        elif opened.position < opened.end:
            raise client_error(
                f"returned {opened.position - opened.start} bytes of range {opened.start}-{opened.end - 1} (the"
                " object is shorter than when it was first read)",
                operation="GetObject",
                bucket=self._bucket,
                key=self._key,
            )

    def _at_end(self, position: int) -> bool:
        return self._size is not None and position >= self._size

    # ---- reading ------------------------------------------------------------------------
    def read(self, size: int | None = None) -> bytes:
        """Read up to ``size`` bytes; everything to the end for None or a negative size."""
        wanted = check_size(size)
        self._check_open()
        if wanted == 0:
            return b""
        if wanted is None and not self._starts:
            # Nothing kept yet and everything asked for: what most dataset transforms do with
            # each object. The stream's chunks are kept and joined, without the general loop.
            opened = self._stream_at(self._position) if not self._at_end(self._position) else None
            if opened is not None and opened.end is None:
                return self._read_rest(opened)
        pieces: list[memoryview] = []
        remaining = -1 if wanted is None else wanted
        while remaining:
            index = self._kept_index(self._position)
            if index < 0:
                if self._at_end(self._position):
                    break
                opened = self._stream_at(self._position)
                if opened is not None:
                    # A small read keeps a small chunk; a large one, the stream's own chunks.
                    small = 0 < remaining < PASS_THROUGH_BYTES
                    self._keep_from(opened, max(remaining, SMALL_READ_CHUNK_BYTES) if small else None)
                continue
            chunk = self._chunks[index]
            offset = self._position - self._starts[index]
            piece = chunk[offset : offset + remaining] if remaining > 0 else chunk[offset:]
            pieces.append(piece)
            self._position += len(piece)
            if remaining > 0:
                remaining -= len(piece)
        return b"".join(pieces)

    def _read_rest(self, opened: _OpenStream) -> bytes:
        """``read()`` from ``opened``, at the position, to the end of the object, with nothing kept
        after it (so no room to respect): its chunks kept as they come, then joined."""
        first = len(self._chunks)
        for chunk in opened.stream:
            self._keep(opened.position, chunk)  # after every kept chunk: appended
            self._advance(opened, len(chunk))
        self._ended(opened)
        self._position = opened.position
        return b"".join(self._chunks[first:])

    def readinto(self, buf: Any) -> int:
        """Read up to ``len(buf)`` bytes into ``buf``; large reads at a stream's position go
        straight from the socket into ``buf``."""
        view = writable_view(buf)
        self._check_open()
        wanted = len(view)
        filled = 0
        while filled < wanted:
            index = self._kept_index(self._position)
            if index >= 0:
                chunk = self._chunks[index]
                offset = self._position - self._starts[index]
                count = min(wanted - filled, len(chunk) - offset)
                view[filled : filled + count] = chunk[offset : offset + count]
            else:
                if self._at_end(self._position):
                    break
                opened = self._stream_at(self._position)
                if opened is None:
                    continue  # look again: kept bytes, or the end
                if wanted - filled < PASS_THROUGH_BYTES or opened.refill:
                    self._keep_from(opened, max(wanted - filled, SMALL_READ_CHUNK_BYTES))
                    continue
                room = self._room(opened)
                asked = wanted - filled if room is None else min(wanted - filled, room)
                count = opened.stream.readinto(view[filled : filled + asked])
                self._advance(opened, count)
                if count < asked:
                    self._ended(opened)
                elif opened.end is not None and opened.position >= opened.end:
                    self._drop(opened)
                if count == 0:
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
        if self._size is None and target > 0 and self._kept_index(target - 1) < 0:
            self._size_from_stream()
        if self._size is not None:
            target = min(target, self._size)
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
        if self._size is None and not self._opened:
            self._open(self._origin, None)
        while self._size is None:  # a server that sends no size: read on to the end
            endless = [opened for opened in self._streams if opened.end is None]
            opened = endless[-1] if endless else self._open(self._frontier_of_kept(), None)
            self._keep_from(opened)
        return self._size

    def _frontier_of_kept(self) -> int:
        return self._starts[-1] + len(self._chunks[-1]) if self._starts else self._origin

    # ---- pickling -----------------------------------------------------------------------
    def _reader_state(self) -> dict[str, Any]:
        return {"position": self._position, "size": self._size, "etag": self._etag}

    def _resume(self, source: ReaderSource, state: dict[str, Any]) -> None:
        S3Reader.__init__(self, *source)
        self._size, self._etag, self._position = state["size"], state["etag"], state["position"]
        # Nothing is kept: the first stream starts at the position, the bytes before it are
        # fetched by a backward seek.
        self._origin = self._position if self._size is None else min(self._position, self._size)
        self._reached = self._origin

    def close(self) -> None:
        for opened in self._streams:
            opened.stream.close()
        self._streams.clear()
        self._chunks.clear()
        self._starts.clear()
        super().close()
