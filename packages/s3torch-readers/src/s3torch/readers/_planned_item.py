"""``PlannedItem``: one planned item of a ``DCPOptimizedS3Reader`` as a forward-only stream.

What ``DCPOptimizedS3Reader.item_stream`` returns (the ``ItemStream`` protocol): reads and skips
are checked against the item's bounds here, and served by the reader's engine, which moves the
bytes from its current range group's stream straight into the caller's buffer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._base import writable_view
from ._ranges import ItemRange

if TYPE_CHECKING:
    from ._dcp_optimized import DCPOptimizedS3Reader


class PlannedItem:
    """The bytes of one planned item, front to back (``DCPOptimizedS3Reader.item_stream``).

    Offsets are inside the item (0 is its first byte). Valid until the reader moves to another
    item or closes. Reads that the object cannot satisfy raise ``S3Exception`` naming it.
    """

    def __init__(self, reader: DCPOptimizedS3Reader, item: ItemRange) -> None:
        self._reader = reader
        self._item = item

    @property
    def length(self) -> int:
        """The item's size in bytes."""
        return self._item.end - self._item.start

    @property
    def position(self) -> int:
        """Bytes of the item consumed so far."""
        self._check_current()
        return self._reader._stream_position - self._item.start

    def readinto(self, buffer: Any) -> None:
        """Fill all of ``buffer`` with the item's next bytes, straight from the network."""
        view = writable_view(buffer)
        self._check_inside(self.position + len(view))
        self._reader._receive(view, self._item, reaching=False)

    def read(self, count: int) -> bytearray:
        """The item's next ``count`` bytes."""
        data = bytearray(count)
        self.readinto(data)
        return data

    def skip_to(self, offset: int) -> None:
        """Move forward to ``offset`` inside the item, dropping the bytes before it."""
        if offset < self.position:
            raise ValueError(
                f"offset {offset} is before the position {self.position} in the item: items are forward-only"
            )
        self._check_inside(offset)
        self._reader._skip_to(self._item.start + offset, self._item, reaching=False)

    def _check_current(self) -> None:
        self._reader._check_open()
        if self._reader._planned is not self:
            raise ValueError(f"item {self._item.start}-{self._item.end} is no longer the reader's current item")

    def _check_inside(self, offset: int) -> None:
        if offset > self.length:
            raise ValueError(f"offset {offset} is past the end of item {self._item.start}-{self._item.end}")
