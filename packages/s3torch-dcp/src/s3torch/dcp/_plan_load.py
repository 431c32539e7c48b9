"""Loading a DCP plan's items into the planner, each file through the reader its constructor makes.

``S3StorageReader.read_data`` hands the plan here. Each file of the plan is opened with
``S3FileSystem.create_stream`` (so the reader constructor, the user's own included, builds its
reader), and its items are read in file order, up to four files at the same time on the
process's file-load threads (``ExecutorRole.FILE_LOADS``; the network waits and copies run
without the GIL). Calls into the load planner are made one at a time.

How an item is read depends on the reader, not on the constructor:

* a reader with the ``ItemStreamReader`` capability (``DCPOptimizedS3Reader``: the one range
  engine, in s3torch-readers, that coalesces, fetches ahead and pins the version) gives each
  item as a forward-only stream. For a tensor item, the start of its ``torch.save`` archive is
  parsed (``parse_tensor_layout``); when the destination can take the bytes as they are (a
  CPU, contiguous tensor of the saved dtype, and a contiguous span of the saved tensor), they
  are received from the network straight into the destination's memory and the bytes after
  the storage are checked. Any other item (bytes, another dtype, a strided view, an archive
  the parser does not know) is read whole and loaded with ``torch.load``;
* any other reader, or an item with stream transforms (torch's extensions), is read the way
  torch's ``FileSystemReader.read_data`` reads it: ``torch.load`` of the item's slice of the
  file, then a copy into the destination.

Only torch-specific knowledge lives here (the archive's layout, tensors, the planner): the
engine that moves the bytes is the reader's.
"""

from __future__ import annotations

import ctypes
import functools
import io
import logging
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, wait
from typing import IO, Any, Protocol

import torch
from torch.distributed.checkpoint.planner import LoadItemType, LoadPlanner, ReadItem

from s3torch.client import ExecutorRole, client_error, parse_s3_uri, shared_executor
from s3torch.readers import ItemStream, ItemStreamReader

from ._torch_compat import narrow_tensor_by_index
from ._torch_save_layout import HEAD_BYTES, TensorLayout, parse_tensor_layout, storage_end_matches

logger = logging.getLogger(__name__)

#: Bytes after a tensor's storage that are read to check its data descriptor.
_DESCRIPTOR_BYTES = 24


class StorageInfo(Protocol):
    """What the loader uses of torch's ``_StorageInfo`` (where an item is in its file)."""

    relative_path: str
    offset: int
    length: int


class ItemFiles(Protocol):
    """What the loader needs of the storage reader: where items are, and how files open."""

    storage_data: dict[Any, Any]

    def file_uri(self, relative_path: str) -> str:
        """The ``s3://`` URI of the checkpoint file ``relative_path``."""
        ...

    def open_file(self, uri: str) -> Any:
        """A context manager giving the reader of the checkpoint file at ``uri``."""
        ...

    def item_slice(self, file: IO[bytes], read_item: ReadItem, info: Any) -> IO[bytes]:
        """The item's bytes as torch's ``read_data`` sees them (its slice, stream transforms applied)."""
        ...


def _writable_bytes(tensor: torch.Tensor) -> memoryview:
    """The memory of a contiguous CPU tensor, as writable bytes (kept valid by ``tensor``)."""
    nbytes = tensor.numel() * tensor.element_size()
    return memoryview((ctypes.c_ubyte * nbytes).from_address(tensor.data_ptr())).cast("B")


def load_archive(archive: IO[bytes]) -> torch.Tensor:
    """A tensor item that is not received in place, loaded the way torch loads it."""
    tensor: torch.Tensor = torch.load(archive, map_location="cpu", weights_only=True)
    return tensor


class PlanLoader:
    """Loads a plan's items from their files into the planner's tensors (see the module docstring)."""

    def __init__(self, files: ItemFiles, planner: LoadPlanner) -> None:
        self._files = files
        self._planner = planner
        self._planner_lock = threading.Lock()
        self._failed = threading.Event()

    def load(self, items: list[ReadItem]) -> None:
        by_file: dict[str, list[ReadItem]] = {}
        for read_item in items:
            by_file.setdefault(self._info(read_item).relative_path, []).append(read_item)
        files = list(by_file.items())
        if len(files) <= 1:
            for relative_path, file_items in files:
                self._load_file(relative_path, file_items)
            return
        pool = shared_executor(ExecutorRole.FILE_LOADS)
        futures = [pool.submit(self._load_file, relative_path, file_items) for relative_path, file_items in files]
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

    def _info(self, read_item: ReadItem) -> StorageInfo:
        info: StorageInfo = self._files.storage_data[read_item.storage_index]
        return info

    def _load_file(self, relative_path: str, items: list[ReadItem]) -> None:
        uri = self._files.file_uri(relative_path)
        with self._files.open_file(uri) as reader:
            streams_items = isinstance(reader, ItemStreamReader)
            for info, readers_of_item in self._saved_items(items):
                if self._failed.is_set():
                    return
                if not streams_items or not info.length or getattr(info, "transform_descriptors", None):
                    for read_item in readers_of_item:
                        self._load_through_torch(self._files.item_slice(reader, read_item, info), read_item)
                    continue
                item = reader.item_stream(info.offset, info.offset + info.length)
                if len(readers_of_item) == 1:
                    self._load_streamed(item, readers_of_item[0], functools.partial(_damaged, uri, info))
                else:  # several parts of one saved item (resharding): its bytes once, each part from them
                    data = item.read(item.length)
                    for read_item in readers_of_item:
                        self._load_through_torch(io.BytesIO(data), read_item)
            logger.debug("Loaded %d items of %s with %s", len(items), uri, type(reader).__name__)

    def _saved_items(self, items: list[ReadItem]) -> list[tuple[StorageInfo, list[ReadItem]]]:
        """The plan's items of one file (sorted by offset), those reading one saved item together."""
        saved: list[tuple[StorageInfo, list[ReadItem]]] = []
        for read_item in items:
            info = self._info(read_item)
            if saved and (saved[-1][0].offset, saved[-1][0].length) == (info.offset, info.length):
                saved[-1][1].append(read_item)
            else:
                saved.append((info, [read_item]))
        return saved

    # ---- torch's way ----------------------------------------------------------------------
    def _load_through_torch(self, item_bytes: IO[bytes], read_item: ReadItem) -> None:
        if read_item.type == LoadItemType.BYTE_IO:
            self._load_bytes(read_item, item_bytes.read(-1))
            return
        seekable = item_bytes if item_bytes.seekable() else io.BytesIO(item_bytes.read(-1))
        self._copy_into_destination(read_item, load_archive(seekable))

    def _load_bytes(self, read_item: ReadItem, data: bytes | bytearray) -> None:
        with self._planner_lock:
            self._planner.load_bytes(read_item, io.BytesIO(data))

    def _resolve(self, read_item: ReadItem) -> torch.Tensor:
        with self._planner_lock:
            return self._planner.resolve_tensor(read_item).detach()

    def _commit(self, read_item: ReadItem, target: torch.Tensor) -> None:
        with self._planner_lock:
            self._planner.commit_tensor(read_item, target)

    def _copy_into_destination(
        self, read_item: ReadItem, saved: torch.Tensor, target: torch.Tensor | None = None
    ) -> None:
        tensor = narrow_tensor_by_index(saved, read_item.storage_offsets, read_item.lengths)
        if target is None:
            target = self._resolve(read_item)
        if target.size() != tensor.size():
            raise AssertionError(f"req {read_item.storage_index} mismatch sizes {target.size()} vs {tensor.size()}")
        target.copy_(tensor)
        self._commit(read_item, target)

    # ---- through the reader's item streams ----------------------------------------------------
    def _load_streamed(self, item: ItemStream, read_item: ReadItem, damaged: Callable[[], Exception]) -> None:
        if read_item.type == LoadItemType.BYTE_IO:
            self._load_bytes(read_item, item.read(item.length))
            return
        head = item.read(min(item.length, HEAD_BYTES))
        layout = parse_tensor_layout(bytes(head))
        span = None if layout is None else _contiguous_span(layout, read_item, item.length)
        target: torch.Tensor | None = None
        if layout is not None and span is not None:
            target = self._resolve(read_item)
            if _takes_bytes(target, layout.dtype, span[1]):
                _receive_in_place(item, head, layout, span[0], target, damaged)
                self._commit(read_item, target)
                return
        head += item.read(item.length - len(head))
        self._copy_into_destination(read_item, load_archive(io.BytesIO(head)), target)


def _damaged(uri: str, info: StorageInfo) -> Exception:
    bucket, key = parse_s3_uri(uri, require_key=True)
    return client_error(
        f"{uri}: the checkpoint item at bytes [{info.offset}, {info.offset + info.length}) is not the torch.save"
        " archive its header describes (its storage is not followed by what the archive has there)",
        operation="GetObject",
        bucket=bucket,
        key=key,
    )


def _receive_in_place(
    item: ItemStream,
    head: bytearray,
    layout: TensorLayout,
    span_start: int,
    target: torch.Tensor,
    damaged: Callable[[], Exception],
) -> None:
    """Receive the planned span of the tensor's storage (``span_start`` bytes into it) into
    ``target``, then read the rest of the archive and check what follows the storage."""
    storage_end = layout.storage_start + layout.storage_nbytes
    destination = _writable_bytes(target) if target.numel() else memoryview(bytearray())
    start = layout.storage_start + span_start  # in the archive
    end = start + len(destination)
    # The head may hold the first bytes of the span (a small tensor: all of it).
    from_head = max(0, min(end, len(head)) - start)
    if from_head:
        destination[:from_head] = memoryview(head)[start : start + from_head]
    if end > len(head):
        item.skip_to(max(start, len(head)))
        item.readinto(destination[from_head:])
    # The rest of the archive: its check, the records after the storage, the directory.
    item.skip_to(max(storage_end, len(head)))
    after_storage = head[storage_end:] if storage_end < len(head) else bytearray()
    after_storage += item.read(item.length - item.position)
    if not storage_end_matches(layout, bytes(after_storage[:_DESCRIPTOR_BYTES])):
        raise damaged()


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
