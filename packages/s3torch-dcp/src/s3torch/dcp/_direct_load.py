"""The DCP-optimized load: each planned tensor's bytes go from the network into its destination.

torch's ``FileSystemReader.read_data`` loads every tensor item with ``torch.load`` (a fresh
storage, whose pages the kernel must fault in) and then copies it into the destination tensor
(a second copy, on torch's intra-op threads). With the DCP-optimized reader constructor,
``S3StorageReader`` reads each file of its plan differently:

* the plan's items of a file are coalesced into range groups (neighbours closer than
  ``max_gap_size``), one GET stream each, read front to back; the groups of a file are pinned to
  the version (ETag) the first one saw;
* for each tensor item, the start of its ``torch.save`` archive is parsed
  (``parse_tensor_layout``); when the destination can take the bytes as they are (a CPU,
  contiguous tensor of the same dtype, and a contiguous span of the saved tensor), they are
  received from the stream straight into the destination's memory, and the data descriptor
  that follows them is checked;
* any other item (bytes, another dtype, a strided view, an archive this module does not know)
  is read whole and loaded with ``torch.load`` as torch does.

Up to four files are read at the same time, on the process's file-load threads (owned by
s3torch.client, ``ExecutorRole.FILE_LOADS``; the network waits and copies run without the GIL),
and while a range group is read the requests of the file's next ``GROUPS_AHEAD`` groups are
already sent, pinned to the file's version, so their first-byte latency is hidden (each holds a
connection whose answer waits in the socket until it is read);
calls into the load planner are made one at a time.
"""

from __future__ import annotations

import ctypes
import io
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, wait
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch.distributed.checkpoint.planner import LoadItemType, LoadPlanner, ReadItem

from s3torch.client import ExecutorRole, GetObjectStream, client_error, shared_executor
from s3torch.readers import ItemRange, coalesce, prefetch_executor

from ._torch_compat import narrow_tensor_by_index
from ._torch_save_layout import HEAD_BYTES, TensorLayout, parse_tensor_layout, storage_end_matches

logger = logging.getLogger(__name__)

#: Range groups of a file whose requests are sent ahead of the one being read.
GROUPS_AHEAD = 4
#: Bytes after a tensor's storage that are read to check its data descriptor.
_DESCRIPTOR_BYTES = 24
_SKIP_CHUNK = 1024 * 1024


class _StorageInfo(Protocol):
    relative_path: str
    offset: int
    length: int


class StreamOpener(Protocol):
    def __call__(self, start: int, end: int, etag: str | None) -> GetObjectStream: ...


@dataclass
class _Group:
    """Items of one file fetched by one GET ``[start, end)``."""

    start: int
    end: int
    items: list[tuple[ReadItem, _StorageInfo]] = field(default_factory=list)


def _started(stream: GetObjectStream) -> GetObjectStream:
    """``stream`` once its first request is answered (on the readers' prefetch threads)."""
    try:
        stream.start()
    except BaseException:
        stream.close()
        raise
    return stream


def _close_stream(future: Future[GetObjectStream]) -> None:
    if not future.cancelled() and future.exception() is None:
        future.result().close()


def range_groups(items: Sequence[tuple[ReadItem, _StorageInfo]], max_gap_size: float) -> list[_Group]:
    """Items (sorted by offset) grouped as the DCP-optimized reader groups them (``coalesce``)."""
    ranges = [ItemRange(info.offset, info.offset + info.length) for _, info in items]
    groups: list[_Group] = []
    taken = 0
    for group in coalesce(ranges, max_gap_size):
        count = len(group.item_ranges)
        groups.append(_Group(group.start, group.end, list(items[taken : taken + count])))
        taken += count
    return groups


def _writable_bytes(tensor: torch.Tensor) -> memoryview:
    """The memory of a contiguous CPU tensor, as writable bytes (kept valid by ``tensor``)."""
    nbytes = tensor.numel() * tensor.element_size()
    return memoryview((ctypes.c_ubyte * nbytes).from_address(tensor.data_ptr())).cast("B")


class _GroupReader:
    """Reads one range group's stream front to back, position by position."""

    def __init__(self, stream: GetObjectStream, start: int, uri: str) -> None:
        self.stream = stream
        self.position = start
        self.uri = uri
        self._scratch: bytearray | None = None

    def read_into(self, view: memoryview) -> None:
        filled = 0
        while filled < len(view):
            count = self.stream.readinto(view[filled:])
            if count == 0:
                raise client_error(
                    f"{self.uri} ended at byte {self.position + filled}, before byte {self.position + len(view)}"
                    " of the checkpoint items planned in it: the file is shorter than its .metadata says",
                    operation="GetObject",
                    bucket=self.stream.bucket,
                    key=self.stream.key,
                )
            filled += count
        self.position += len(view)

    def read(self, count: int) -> bytearray:
        data = bytearray(count)
        self.read_into(memoryview(data))
        return data

    def skip_to(self, position: int) -> None:
        if position < self.position:
            raise ValueError(f"{self.uri}: items overlap (byte {position} is before {self.position})")
        while self.position < position:
            if self._scratch is None:
                self._scratch = bytearray(_SKIP_CHUNK)
            count = min(position - self.position, len(self._scratch))
            self.read_into(memoryview(self._scratch)[:count])


class DirectLoader:
    """Loads a plan's items from their files into the planner's tensors (see the module docstring)."""

    def __init__(
        self,
        planner: LoadPlanner,
        open_stream: Callable[[str], StreamOpener],
        uri_of: Callable[[str], str],
        max_gap_size: float,
    ) -> None:
        self._planner = planner
        self._open_stream = open_stream
        self._uri_of = uri_of
        self._max_gap_size = max_gap_size
        self._planner_lock = threading.Lock()
        self._failed = threading.Event()

    def load(self, items_by_file: dict[str, list[tuple[ReadItem, _StorageInfo]]]) -> None:
        files = list(items_by_file.items())
        if len(files) <= 1:
            for relative_path, items in files:
                self._load_file(relative_path, items)
            return
        pool = shared_executor(ExecutorRole.FILE_LOADS)
        futures = [pool.submit(self._load_file, relative_path, items) for relative_path, items in files]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        for future in done:
            if future.exception() is not None:
                self._failed.set()  # the other files stop at their next item
                for other in futures:
                    other.cancel()
                break
        for future in futures:
            if not future.cancelled():
                future.result()  # the first failure, in plan order

    def _load_file(self, relative_path: str, items: list[tuple[ReadItem, _StorageInfo]]) -> None:
        uri = self._uri_of(relative_path)
        opener = self._open_stream(relative_path)
        groups = range_groups(items, self._max_gap_size)
        etag: str | None = None
        # The next groups' streams, their requests sent (so their first bytes are on the way).
        ahead: dict[int, Future[GetObjectStream]] = {}

        def request_ahead(current: int) -> None:
            for later in range(current + 1, min(len(groups), current + 1 + GROUPS_AHEAD)):
                if later not in ahead:
                    group = groups[later]
                    ahead[later] = prefetch_executor().submit(_started, opener(group.start, group.end, etag))

        try:
            for index, group in enumerate(groups):
                requested = ahead.pop(index, None)
                stream = requested.result() if requested is not None else opener(group.start, group.end, etag)
                with stream:
                    if etag is None:  # the file's first stream: its answer tells the version
                        stream.start()
                        etag = stream.etag
                    request_ahead(index)  # pinned to that version
                    reader = _GroupReader(stream, group.start, uri)
                    for read_item, info in group.items:
                        if self._failed.is_set():
                            return
                        reader.skip_to(info.offset)
                        self._load_item(reader, read_item, info)
                logger.debug("Loaded %d items from %s [%d, %d)", len(group.items), uri, group.start, group.end)
        finally:
            for requested in ahead.values():
                requested.add_done_callback(_close_stream)

    def _load_item(self, reader: _GroupReader, read_item: ReadItem, info: _StorageInfo) -> None:
        if read_item.type == LoadItemType.BYTE_IO:
            data = reader.read(info.length)
            with self._planner_lock:
                self._planner.load_bytes(read_item, io.BytesIO(data))
            return
        head = reader.read(min(info.length, HEAD_BYTES))
        layout = parse_tensor_layout(bytes(head))
        span = None if layout is None else _contiguous_span(layout, read_item, info.length)
        target: torch.Tensor | None = None
        if layout is not None and span is not None:
            with self._planner_lock:
                target = self._planner.resolve_tensor(read_item).detach()
            if _takes_bytes(target, layout.dtype, span[1]):
                self._receive_in_place(reader, info, head, layout, span[0], target)
                with self._planner_lock:
                    self._planner.commit_tensor(read_item, target)
                return
        head += reader.read(info.length - len(head))
        tensor = narrow_tensor_by_index(load_archive(head), read_item.storage_offsets, read_item.lengths)
        if target is None:
            with self._planner_lock:
                target = self._planner.resolve_tensor(read_item).detach()
        if target.size() != tensor.size():
            raise AssertionError(f"req {read_item.storage_index} mismatch sizes {target.size()} vs {tensor.size()}")
        target.copy_(tensor)
        with self._planner_lock:
            self._planner.commit_tensor(read_item, target)

    def _receive_in_place(
        self,
        reader: _GroupReader,
        info: _StorageInfo,
        head: bytearray,
        layout: TensorLayout,
        span_start: int,
        target: torch.Tensor,
    ) -> None:
        """Receive the planned span of the tensor's storage (``span_start`` bytes into it) into
        ``target``, then read the rest of the archive and check what follows the storage."""
        storage_end = layout.storage_start + layout.storage_nbytes
        destination = _writable_bytes(target) if target.numel() else memoryview(b"")
        start = layout.storage_start + span_start  # in the archive
        end = start + len(destination)
        # The head may hold the first bytes of the span (a small tensor: all of it).
        from_head = max(0, min(end, len(head)) - start)
        if from_head:
            destination[:from_head] = memoryview(head)[start : start + from_head]
        if end > len(head):
            reader.skip_to(info.offset + max(start, len(head)))
            reader.read_into(destination[from_head:])
        # The rest of the archive: its check, the records after the storage, the directory.
        reader.skip_to(info.offset + max(storage_end, len(head)))
        after_storage = head[storage_end:] if storage_end < len(head) else bytearray()
        trailing = info.length - max(storage_end, len(head))
        after_storage += reader.read(trailing)
        if not storage_end_matches(layout, bytes(after_storage[:_DESCRIPTOR_BYTES])):
            raise client_error(
                f"{reader.uri}: the checkpoint item at bytes [{info.offset}, {info.offset + info.length}) is not"
                " the torch.save archive its header describes (its storage is not followed by what the archive"
                " has there)",
                operation="GetObject",
                bucket=reader.stream.bucket,
                key=reader.stream.key,
            )


def load_archive(archive: bytearray) -> torch.Tensor:
    """A tensor item that cannot be loaded in place, the way torch loads it."""
    tensor: torch.Tensor = torch.load(io.BytesIO(archive), map_location="cpu", weights_only=True)
    return tensor


def _contiguous_span(layout: TensorLayout, read_item: ReadItem, item_length: int) -> tuple[int, torch.Size] | None:
    """Where the planned part of the saved tensor is in its storage (byte offset) and its size,
    when it is one contiguous span of bytes of an archive of ``item_length`` bytes; else None."""
    if layout.storage_start + layout.storage_nbytes + _DESCRIPTOR_BYTES > item_length:
        return None  # not the archive the header describes: torch.load will say what is wrong
    try:
        storage = torch.empty(layout.storage_nbytes // layout.dtype.itemsize, dtype=layout.dtype, device="meta")
        saved = storage.as_strided(layout.size, layout.stride, layout.storage_offset)
        planned = narrow_tensor_by_index(saved, read_item.storage_offsets, read_item.lengths)
    except (RuntimeError, ValueError, IndexError):
        return None
    if not planned.is_contiguous():
        return None
    return int(planned.storage_offset()) * planned.element_size(), planned.size()


def _takes_bytes(target: Any, dtype: torch.dtype, size: torch.Size) -> bool:
    """Whether the bytes of a contiguous ``dtype`` tensor of ``size`` can be written into ``target`` as they are."""
    return (
        type(target) is torch.Tensor
        and target.device.type == "cpu"
        and target.layout == torch.strided
        and target.dtype == dtype
        and target.size() == size
        and target.is_contiguous()
        and not target.is_conj()
        and not target.is_neg()
    )
