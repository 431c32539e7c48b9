"""Typing protocols of reader constructors (upstream: ``s3torchconnector.s3reader.protocol``), and of
the item-stream capability a checkpoint load looks for in a reader."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ._base import S3Reader
from ._stream import GetStreamCallable, ObjectInfoCallable

if TYPE_CHECKING:
    from ._ranges import ItemRange


@runtime_checkable
class S3ReaderConstructorProtocol(Protocol):
    """Anything that builds a reader from what ``S3Client.get_object`` knows."""

    def __call__(
        self,
        bucket: str,
        key: str,
        get_object_info: ObjectInfoCallable,
        get_stream: GetStreamCallable,
    ) -> S3Reader: ...


@runtime_checkable
class DCPS3ReaderConstructorProtocol(S3ReaderConstructorProtocol, Protocol):
    """A constructor that takes the byte ranges of a DCP load plan before readers are built."""

    _item_ranges_by_file: dict[str, list[ItemRange]]

    def set_item_ranges_by_file(
        self,
        plan_items: list[Any],
        storage_data: dict[Any, Any],
        base_path: str | os.PathLike[str],
    ) -> None: ...


@runtime_checkable
class ItemStream(Protocol):
    """The bytes of one planned checkpoint item, front to back; offsets are inside the item."""

    @property
    def length(self) -> int:
        """The item's size in bytes."""
        ...

    @property
    def position(self) -> int:
        """Bytes of the item consumed so far."""
        ...

    def readinto(self, buffer: Any) -> None:
        """Fill all of ``buffer`` with the item's next bytes (or raise ``S3Exception``)."""
        ...

    def read(self, count: int) -> bytearray:
        """The item's next ``count`` bytes."""
        ...

    def skip_to(self, offset: int) -> None:
        """Move forward to ``offset`` inside the item."""
        ...


@runtime_checkable
class ItemStreamReader(Protocol):
    """The capability of a reader to hand each planned item's bytes straight to their
    destination (``DCPOptimizedS3Reader`` has it). ``S3StorageReader`` checks for it with
    ``isinstance(reader, ItemStreamReader)``: a reader that has it gets each item with
    ``item_stream(start, end)``, in file order, and tensors are received in place; any other
    reader is read through its file-like API, as torch's ``FileSystemReader`` reads."""

    def item_stream(self, start: int, end: int) -> ItemStream:
        """The planned item ``[start, end)``, after the items streamed before it."""
        ...
