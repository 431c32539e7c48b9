"""``RangedS3Reader``: ranged GETs for what is asked, through an optional buffer."""

from __future__ import annotations

import io
from typing import Any, TypeVar

from s3torch.client import client_error

from ._base import (
    S3Reader,
    check_position,
    check_size,
    check_whence,
    writable_view,
)
from ._stream import GetStreamCallable, ObjectInfoCallable, info_etag, reader_stream

DEFAULT_BUFFER_SIZE = 8 * 1024 * 1024

_Ranged = TypeVar("_Ranged", bound="RangedS3Reader")


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
    fetches. Reads smaller than ``buffer_size`` load ``[position, position + buffer_size)`` into the
    buffer and are served from it; reads of at least ``buffer_size`` (or with ``buffer_size=0``) go
    from the socket straight into the destination. A read that starts inside the buffer and runs
    past it takes the buffered part and fetches only the rest. Memory: ``buffer_size``.

    Pickled, it carries its buffer size, position, size and ETag, not the buffer's bytes.

    Args:
        buffer_size: Bytes of the buffer; None for 8 MiB, 0 for no buffer.
    """

    _pickles_by_state = True

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
        if rest == 0:
            return
        rest_start = start + done
        if rest >= self._buffer_size:
            self._fetch(view[done:], rest_start)
            return
        if self._buffer is None:
            self._buffer = bytearray(self._buffer_size)
        size = min(self._buffer_size, self._object_size() - rest_start)
        buffer = memoryview(self._buffer)[:size]
        self._buffer_start = self._buffer_end = rest_start
        self._fetch(buffer, rest_start)
        self._buffer_end = rest_start + size
        view[done:] = buffer[:rest]

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

    @classmethod
    def _restore(
        cls: type[_Ranged],
        bucket: str,
        key: str,
        get_object_info: ObjectInfoCallable,
        get_stream: GetStreamCallable,
        state: dict[str, Any],
    ) -> _Ranged:
        reader = cls.__new__(cls)
        RangedS3Reader.__init__(reader, bucket, key, get_object_info, get_stream, state["buffer_size"])
        reader._position, reader._size, reader._etag = state["position"], state["size"], state["etag"]
        return reader

    def close(self) -> None:
        self._buffer = None
        super().close()
