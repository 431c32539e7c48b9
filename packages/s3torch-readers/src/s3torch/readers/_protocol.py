"""Typing protocols of reader constructors (upstream: ``s3torchconnector.s3reader.protocol``)."""

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
