"""``RangedS3Reader``: ranged GETs for what is asked, through a read-ahead buffer that adapts to
the access pattern (it grows while reads follow each other and shrinks when they jump)."""

from __future__ import annotations

import io
from typing import Any

from s3torch.client import client_error

from ._base import ReaderSource, S3Reader, check_position, check_size, check_whence, writable_view
from ._stream import GetStreamCallable, ObjectInfoCallable, info_etag, reader_stream

DEFAULT_BUFFER_SIZE = 8 * 1024 * 1024
#: Read-ahead of a reader's first fetch (capped by ``buffer_size``): a fresh reader does not know
#: yet whether it reads on or jumps, so it neither over-fetches a random read much nor costs a
#: sequential reader more than two extra GETs on the way up to ``buffer_size``.
INITIAL_READAHEAD = 1024 * 1024
#: Read-ahead after a jump: what one small request costs little more than its own bytes for, so a
#: record's header and body (two reads next to each other) still come in one GET.
MIN_READAHEAD = 64 * 1024
#: Each fetch that continues the previous read multiplies the read-ahead by this, up to
#: ``buffer_size``: from a jump back to the full buffer in four GETs.
READAHEAD_GROWTH = 4


def check_buffer_size(buffer_size: Any) -> int:
    """``buffer_size`` as bytes: None is the default, 0 no buffer; anything else but an int >= 0
    is refused."""
    if buffer_size is None:
        return DEFAULT_BUFFER_SIZE
    if not isinstance(buffer_size, int) or isinstance(buffer_size, bool):
        raise TypeError(f"buffer_size must be an int or None, got {type(buffer_size).__name__}")
    if buffer_size < 0:
        raise ValueError(f"buffer_size must be non-negative (0 disables the buffer), got {buffer_size}")
    return buffer_size


class RangedS3Reader(S3Reader):
    """Reads byte ranges on demand, for sparse access to large objects.

    The size comes first (from ``get_object_info``: the listing's info, or a HEAD); seeking never
    fetches. A read the buffer cannot serve fetches ``[position, position + read-ahead)`` into it
    (or just what is asked, straight into the destination, when that is at least the read-ahead).
    The read-ahead adapts: it starts at 1 MiB, grows fourfold with each fetch that continues
    where the previous read ended (or skips ahead by less than the read-ahead), up to
    ``buffer_size``, and drops to 64 KiB when a read jumps elsewhere. A read that steps back by
    at most the read-ahead to just before the buffer (a parser going from an archive's trailer
    back to its records, as ``torch.load`` does) fetches only the gap and keeps the buffer. So
    small sequential reads coalesce into few large GETs, and random reads fetch little more than
    they ask for. Reads of at least ``buffer_size`` (or with ``buffer_size=0``) always go from
    the socket straight into the destination. A read that starts inside the buffer and runs
    past it takes the buffered part and fetches only the rest. Memory: one buffer of at most
    ``buffer_size`` (for the moment a larger one replaces it, the old one too).

    Pickled, it carries its buffer size, position, size and ETag, not the buffer's bytes.

    Args:
        buffer_size: Largest read-ahead (and buffer) in bytes; None for 8 MiB, 0 for no buffer.
    """

    _pickles_by_state = True

    # The upstream's signature: S3Reader's four arguments, then buffer_size.
    def __init__(
        self,
        bucket: str,
        key: str,
        get_object_info: ObjectInfoCallable,
        get_stream: GetStreamCallable,
        buffer_size: int | None = None,
    ) -> None:
        super().__init__(bucket, key, get_object_info, get_stream)
        self._buffer_size = check_buffer_size(buffer_size)
        self._buffer: bytearray | None = None  # allocated on first use
        self._buffer_start = 0
        self._buffer_end = 0
        self._readahead = min(self._buffer_size, INITIAL_READAHEAD)
        self._last_end: int | None = None  # where the previous read ended (None before the first)
        self._position = 0
        self._size: int | None = None
        self._etag: str | None = None

    def _object_size(self) -> int:
        if self._size is None:
            info = self._get_object_info()
            self._size = info.size
            self._etag = info_etag(info)
        return self._size

    def _fetch(self, view: memoryview, start: int) -> None:
        """Fill ``view`` with the bytes from ``start``, exactly."""
        end = start + len(view)
        count = reader_stream(self._get_stream(start, end), self._etag).readinto(view)
        if count != len(view):
            raise client_error(
                f"returned {count} bytes for range {start}-{end - 1} (the object is shorter than its size"
                f" {self._size})",
                operation="GetObject",
                bucket=self._bucket,
                key=self._key,
            )

    def _read_at(self, view: memoryview, start: int) -> None:
        """Fill ``view`` (within the object) from ``start``, using and refilling the buffer."""
        done = 0
        if self._buffer is not None and self._buffer_start <= start < self._buffer_end:
            done = min(len(view), self._buffer_end - start)
            offset = start - self._buffer_start
            view[:done] = memoryview(self._buffer)[offset : offset + done]
        rest = len(view) - done
        if rest:
            self._fill(view[done:], start + done, continues=done > 0 or self._continues(start))
        self._last_end = start + len(view)

    def _continues(self, start: int) -> bool:
        """Whether a read at ``start`` follows the previous one (at its end or a little past it)."""
        last_end = self._last_end
        return last_end is None or last_end <= start <= last_end + self._readahead

    def _fill(self, view: memoryview, start: int, continues: bool) -> None:
        """Fetch ``view``'s bytes, with read-ahead into the buffer when the pattern earns it."""
        if self._buffer_size == 0 or len(view) >= self._buffer_size:
            self._fetch(view, start)
            return
        if self._extend_buffer_back(view, start):
            return
        if self._last_end is not None:  # the first read keeps the initial read-ahead
            grown = self._readahead * READAHEAD_GROWTH if continues else MIN_READAHEAD
            self._readahead = min(self._buffer_size, grown)
        if len(view) >= self._readahead:  # nothing to read ahead: straight into the destination
            self._fetch(view, start)
            return
        # Smaller than the read-ahead: through the buffer, even when the object's end leaves
        # nothing more to fetch, so the reads that parsers make back and forth around a
        # trailer (a zip archive's end of central directory) are served from it.
        size = min(self._readahead, self._object_size() - start)
        if self._buffer is None or len(self._buffer) < size:
            self._buffer = bytearray(size)
        buffer = memoryview(self._buffer)[:size]
        self._buffer_start = self._buffer_end = start
        self._fetch(buffer, start)
        self._buffer_end = start + size
        view[:] = buffer[: len(view)]

    def _extend_buffer_back(self, view: memoryview, start: int) -> bool:
        """Serve a read that steps back a little before the buffer (a parser going back from an
        archive's trailer to its record) by fetching only the gap and keeping what is buffered;
        False when the read is not such a step. The read-ahead stays as it is: this is not a jump."""
        buffer, old_start = self._buffer, self._buffer_start
        gap = old_start - start
        if buffer is None or not 0 < gap <= self._readahead:
            return False
        kept = min(self._buffer_end - old_start, self._buffer_size - gap)
        if start + len(view) > old_start + kept:
            return False
        extended = bytearray(gap + kept)
        self._fetch(memoryview(extended)[:gap], start)
        extended[gap:] = memoryview(buffer)[:kept]
        self._buffer, self._buffer_start, self._buffer_end = extended, start, old_start + kept
        view[:] = memoryview(extended)[: len(view)]
        return True

    def read(self, size: int | None = None) -> bytes:
        """Read up to ``size`` bytes; everything to the end for None or a negative size."""
        wanted = check_size(size)
        self._check_open()
        if wanted == 0:
            return b""
        available = max(0, self._object_size() - self._position)
        data = bytearray(available if wanted is None else min(wanted, available))
        self._read_view(memoryview(data))
        return bytes(data)

    def readinto(self, buf: Any) -> int:
        """Read up to ``len(buf)`` bytes into ``buf``; large reads land there straight from the socket."""
        view = writable_view(buf)
        self._check_open()
        if len(view) == 0:
            return 0
        return self._read_view(view[: max(0, self._object_size() - self._position)])

    def _read_view(self, view: memoryview) -> int:
        """Fill ``view`` (within the object) from the position and move past it."""
        if len(view):
            self._read_at(view, self._position)
            self._position += len(view)
        return len(view)

    def seek(self, offset: int, whence: int = io.SEEK_SET, /) -> int:
        """Move to ``offset`` relative to ``whence``; past the end stays at the end. No GET."""
        check_whence(offset, whence)
        self._check_open()
        if whence == io.SEEK_SET:
            target = offset
        elif whence == io.SEEK_CUR:
            target = self._position + offset
        else:
            target = self._object_size() + offset
        self._position = min(check_position(target), self._object_size())
        return self._position

    def tell(self) -> int:
        return self._position

    def known_size(self) -> int | None:
        """The object's size if known already (no request is sent to learn it)."""
        return self._size

    def _reader_state(self) -> dict[str, Any]:
        return {"buffer_size": self._buffer_size, "position": self._position, "size": self._size, "etag": self._etag}

    def _resume(self, source: ReaderSource, state: dict[str, Any]) -> None:
        RangedS3Reader.__init__(self, *source, state["buffer_size"])
        self._position, self._size, self._etag = state["position"], state["size"], state["etag"]

    def close(self) -> None:
        self._buffer = None
        super().close()
