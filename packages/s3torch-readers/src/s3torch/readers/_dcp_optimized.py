"""``DCPOptimizedS3Reader``: s3torch's one engine for the byte ranges of a checkpoint load plan.

The items of one file (sorted by offset by ``S3StorageReader.prepare_local_plan``) are coalesced
into range groups: neighbours whose gap is at most ``max_gap_size`` share one ranged GET stream,
read front to back with ``readinto`` (the bytes go from the socket into the memory they are read
into, once). Every stream of a reader is pinned to the version (ETag) the first answer showed.

Two ways to read the items, both forward-only across items:

* the file-like API of the upstream (``seek``/``read``/``readinto``): each item is received
  whole into one buffer, and access inside the current item is free (``torch.load`` seeks
  around inside an item);
* ``item_stream(start, end)`` (the ``ItemStreamReader`` capability that s3torch-dcp uses): the
  item's bytes go straight into the caller's buffers, front to back, with nothing kept, so a
  tensor's bytes can land in the destination tensor's memory.

After ``prefetch()`` (a DCP load calls it: it reads every item in order) the requests of the
next ``PREFETCH_GROUPS`` groups are sent on the process's range-prefetch threads while the
current one is read, pinned to the version, so their first-byte latency is hidden; each holds a
connection whose answer waits in the socket until the reader reaches it.

What a ``torch.save`` archive looks like is none of this module's business: s3torch-dcp parses
the start of each tensor item and decides where its bytes go, through ``item_stream``. Keeping
that torch-specific knowledge there keeps s3torch-readers free of torch while the whole range
engine (grouping, fetching ahead, pinning, short-stream errors) lives here, once.
"""

from __future__ import annotations

import io
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from s3torch.client import ExecutorRole, S3Exception, shared_executor

from ._base import ReaderSource, S3Reader, check_position, writable_view
from ._planned_item import PlannedItem
from ._ranges import (
    DEFAULT_MAX_GAP_SIZE,
    ItemRange,
    RangeGroup,
    check_item_ranges,
    check_max_gap_size,
    coalesce,
)
from ._stream import GetStreamCallable, ObjectInfoCallable, ReaderStream, reader_stream

#: After ``prefetch()``: range groups whose requests are sent ahead of the one being read.
PREFETCH_GROUPS = 4
#: Size of the buffer the gaps between items are read into and dropped.
_SKIP_CHUNK = 1024 * 1024

FALLBACK_GUIDANCE = (
    "The DCP-optimized reader serves only the byte ranges of a torch.distributed.checkpoint load plan, in"
    " order. For other access patterns use the generic reader: "
    "S3StorageReader(..., reader_constructor=S3ReaderConstructor.sequential())."
)


def _started(stream: ReaderStream) -> ReaderStream:
    """``stream`` once its first request is answered (on the range-prefetch threads)."""
    stream.start()
    return stream


@dataclass
class _GroupFetch:
    """A range group whose request is sent ahead: its stream is the fetch's until ``future`` is done."""

    stream: ReaderStream
    future: Future[ReaderStream]

    def discard(self) -> None:
        if self.future.cancel():
            self.stream.close()
        else:  # running or done: close the stream once the fetch lets go of it
            self.future.add_done_callback(lambda _: self.stream.close())


class DCPOptimizedS3Reader(S3Reader):
    """The reader of a ``torch.distributed.checkpoint`` load with ``S3ReaderConstructor.dcp_optimized()``:
    it fetches only the plan's ranges, coalesced (see the module docstring).

    Reads must stay inside the current item or move forward to a later one; anything else
    raises ``ValueError`` with guidance to fall back to the sequential reader.

    Pickled, it carries its ranges, gap, position, current item, ETag and whether ``prefetch()``
    was called, not what it fetched: the copy fetches the current item's group again on its
    first read and stays forward-only from that item.
    """

    _pickles_by_state = True

    def __init__(
        self,
        bucket: str,
        key: str,
        item_ranges: list[ItemRange],
        get_object_info: ObjectInfoCallable,
        get_stream: GetStreamCallable,
        max_gap_size: float = DEFAULT_MAX_GAP_SIZE,
    ) -> None:
        # Set before anything can raise: io.IOBase's finalizer calls close() on a half-built reader.
        self._stream: ReaderStream | None = None
        self._ahead: dict[int, _GroupFetch] = {}  # group index -> its request sent ahead (after prefetch())
        self._item_bytes: bytearray | None = None  # the current item, for the file-like API
        self._planned: PlannedItem | None = None  # the current item, for item_stream
        self._scratch: bytearray | None = None
        super().__init__(bucket, key, get_object_info, get_stream)
        if not key:
            raise ValueError("Key should be specified")
        self._max_gap_size = check_max_gap_size(max_gap_size)
        self._items = check_item_ranges(item_ranges)
        self._groups = coalesce(self._items, self._max_gap_size)
        self._group_of_item = [index for index, group in enumerate(self._groups) for _ in group.item_ranges]
        self._item_index = -1
        self._group_index = -1
        self._stream_position = 0  # offset in the object of the next byte the stream gives
        self._position = 0
        self._etag: str | None = None  # the version every group's stream is pinned to
        self._read_ahead = False  # set by prefetch()
        self._responded = False  # a stream of this reader has answered (its version is known)

    @property
    def groups(self) -> list[RangeGroup]:
        """The range groups, one GET stream each."""
        return self._groups

    # ---- the engine: groups, streams, bytes ---------------------------------------------
    def _exhausted(self, item: ItemRange, reaching: bool) -> S3Exception:
        where = "before reaching" if reaching else "while reading"
        # The upstream's text first (a ValueError there), then the object, as in service errors.
        return S3Exception(
            f"S3 stream exhausted at position {self._stream_position} {where} item {item.start}-{item.end}"
            f" (GetObject s3://{self._bucket}/{self._key}: the object is shorter than the load plan says)",
            bucket=self._bucket,
            key=self._key,
        )

    def _receive(self, view: memoryview, item: ItemRange, reaching: bool) -> None:
        """Fill ``view`` with the current stream's next bytes (from the socket, once)."""
        assert self._stream is not None  # type narrowing: _enter opened the item's group
        filled = 0
        while filled < len(view):
            count = self._stream.readinto(view[filled:])
            if not self._responded:
                self._note_response()
            if count == 0:
                self._stream_position += filled
                raise self._exhausted(item, reaching)
            filled += count
        self._stream_position += filled

    def _skip_to(self, position: int, item: ItemRange, reaching: bool) -> None:
        while self._stream_position < position:
            remaining = position - self._stream_position
            if self._scratch is None or len(self._scratch) < min(_SKIP_CHUNK, remaining):
                self._scratch = bytearray(min(_SKIP_CHUNK, remaining))
            count = min(remaining, len(self._scratch))
            self._receive(memoryview(self._scratch)[:count], item, reaching)

    def _note_response(self) -> None:
        """The first answer of this reader: its version pins every later stream."""
        assert self._stream is not None
        self._etag = self._etag or self._stream.etag
        self._responded = True
        self._schedule_ahead()

    def _enter(self, index: int) -> ItemRange:
        """Make item ``index`` current, its stream positioned at its first byte."""
        item = self._items[index]
        group_index = self._group_of_item[index]
        if group_index != self._group_index:
            self._drop_stream()
            self._open_group(group_index)
        elif self._stream_position > item.start:  # its bytes went by already
            raise self._not_in_order(item.start, item.end)
        self._item_bytes = None
        self._planned = None
        self._item_index = index
        self._skip_to(item.start, item, reaching=True)
        return item

    def _open_group(self, index: int) -> None:
        group = self._groups[index]
        for skipped in [ahead for ahead in self._ahead if ahead < index]:
            self._ahead.pop(skipped).discard()
        fetch = self._ahead.pop(index, None)
        if fetch is None:
            self._stream = reader_stream(self._get_stream(group.start, group.end), self._etag)
        else:
            try:
                fetch.future.result()
            except BaseException:
                fetch.stream.close()
                raise
            self._stream = fetch.stream
        self._group_index = index
        self._stream_position = group.start
        if self._read_ahead and not self._responded:
            self._stream.start()  # learn the version now, to send the groups ahead pinned to it
            self._note_response()
        else:
            self._schedule_ahead()

    def _schedule_ahead(self) -> None:
        """After ``prefetch()``: send the requests of the groups after the current one, up to
        ``PREFETCH_GROUPS`` of them, once the object's version is known (to pin them to it)."""
        if not self._read_ahead or not self._responded or self._group_index < 0:
            return
        last = min(len(self._groups), self._group_index + 1 + PREFETCH_GROUPS)
        for index in range(self._group_index + 1, last):
            if index not in self._ahead:
                group = self._groups[index]
                stream = reader_stream(self._get_stream(group.start, group.end), self._etag)
                future = shared_executor(ExecutorRole.RANGE_PREFETCH).submit(_started, stream)
                self._ahead[index] = _GroupFetch(stream, future)

    def _drop_stream(self) -> None:
        if self._stream is not None:
            self._stream.close()
        self._stream = None
        self._item_bytes = None
        self._planned = None

    def prefetch(self) -> None:
        """Declare that the items will be read in order, each of them (as a
        ``torch.distributed.checkpoint`` load reads a file): from then on, the requests of the
        ``PREFETCH_GROUPS`` range groups after the current one are sent ahead, concurrently.
        Without it, a group is requested when a read reaches it, and a group that reads skip
        is never requested."""
        self._check_open()
        self._read_ahead = True
        self._schedule_ahead()

    # ---- item_stream: the capability of receiving an item straight into its destination ----
    def item_stream(self, start: int, end: int) -> PlannedItem:
        """The planned item ``[start, end)`` as a forward-only stream whose ``readinto`` puts the
        bytes straight into the caller's buffer (s3torch-dcp receives tensors in place through
        it). The item must be one of the reader's ranges, at or after the current one; the
        stream of the item before it becomes invalid.

        Raises:
            ValueError: ``[start, end)`` is not a planned item after the current one.
        """
        self._check_open()
        if start == end:
            raise ValueError(f"Range {start}-{end} is empty: there are no bytes to stream")
        for index in range(max(self._item_index, 0), len(self._items)):
            item = self._items[index]
            if (item.start, item.end) == (start, end):
                self._enter(index)
                self._planned = PlannedItem(self, item)
                self._position = start
                return self._planned
            if item.start > start:
                break
        raise self._not_in_order(start, end)

    # ---- the file-like API ----------------------------------------------------------------
    def _not_in_order(self, start: int, end: int) -> ValueError:
        if self._item_index >= 0:
            current = self._items[self._item_index]
            current_text = f"{current.start}-{current.end}"
        else:
            current_text = "none (no item read yet)"
        return ValueError(
            "DCPOptimizedS3Reader only supports sequentially accessing provided ranges: "
            f"Range {start}-{end} not contained in current item {current_text}. {FALLBACK_GUIDANCE}"
        )

    def _item_for(self, start: int, end: int) -> bytearray:
        """The bytes of the item holding ``[start, end)``, made current (forward only)."""
        # An unpickled reader knows its current item but has not loaded it (no bytes).
        if self._item_index >= 0 and self._item_bytes is not None:
            current = self._items[self._item_index]
            if current.start <= start and end <= current.end:
                return self._item_bytes
        for index in range(max(self._item_index, 0), len(self._items)):
            item = self._items[index]
            if item.start <= start and end <= item.end:
                self._enter(index)
                data = bytearray(item.end - item.start)
                self._receive(memoryview(data), item, reaching=False)
                self._item_bytes = data
                return data
            if item.start > start:
                break
        raise self._not_in_order(start, end)

    def _check_read_size(self, size: Any) -> int:
        if size is None:
            raise ValueError(f"Size cannot be None; full read not supported. {FALLBACK_GUIDANCE}")
        if not isinstance(size, int):
            raise TypeError(f"argument should be integer or None, not {type(size)}")
        if size < 0:
            raise ValueError(f"Size cannot be negative; full read not supported. {FALLBACK_GUIDANCE}")
        return size

    def read(self, size: int | None = None) -> bytes:
        """Read ``size`` bytes inside the current item or a later one."""
        data = bytearray(self._check_read_size(size))
        self._read_view(memoryview(data))
        return bytes(data)

    def readinto(self, buf: Any) -> int:
        """Read ``len(buf)`` bytes inside the current item or a later one into ``buf``."""
        return self._read_view(writable_view(buf))

    def _read_view(self, view: memoryview) -> int:
        """Fill ``view`` from the position and move past it (``read`` and ``readinto`` both)."""
        self._check_open()
        if len(view):
            data = self._item_for(self._position, self._position + len(view))
            offset = self._position - self._items[self._item_index].start
            view[:] = memoryview(data)[offset : offset + len(view)]
            self._position += len(view)
        return len(view)

    def seek(self, offset: int, whence: int = io.SEEK_SET, /) -> int:
        """Move inside the current item, or forward; SEEK_END is not supported."""
        if not isinstance(offset, int):
            raise TypeError(f"integer argument expected, got {type(offset)}")
        if whence not in (io.SEEK_SET, io.SEEK_CUR) or not isinstance(whence, int):
            if isinstance(whence, int) or whence is None:
                raise ValueError("whence must be SEEK_CUR or SEEK_SET integers")
            raise TypeError(f"whence must be SEEK_CUR or SEEK_SET integers, got {type(whence)}")
        self._check_open()
        target = offset if whence == io.SEEK_SET else self._position + offset
        self._position = check_position(target)
        return self._position

    def tell(self) -> int:
        return self._position

    # ---- pickling -----------------------------------------------------------------------
    def _reader_state(self) -> dict[str, Any]:
        return {
            "item_ranges": self._items,
            "max_gap_size": self._max_gap_size,
            "position": self._position,
            "item_index": self._item_index,
            "etag": self._etag,
            "read_ahead": self._read_ahead,
        }

    def _resume(self, source: ReaderSource, state: dict[str, Any]) -> None:
        bucket, key, get_object_info, get_stream = source
        DCPOptimizedS3Reader.__init__(
            self, bucket, key, state["item_ranges"], get_object_info, get_stream, state["max_gap_size"]
        )
        self._position, self._item_index = state["position"], state["item_index"]
        self._etag, self._read_ahead = state["etag"], bool(state["read_ahead"])

    def close(self) -> None:
        self._drop_stream()
        for fetch in self._ahead.values():
            fetch.discard()
        self._ahead.clear()
        self._scratch = None
        super().close()
