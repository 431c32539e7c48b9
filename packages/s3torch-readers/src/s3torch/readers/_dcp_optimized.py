"""``DCPOptimizedS3Reader``: the byte ranges a distributed-checkpoint load plan needs, and no more.

The items of one file (sorted by offset by ``S3StorageReader.prepare_local_plan``) are coalesced
into range groups: neighbours whose gap is at most ``max_gap_size`` share one ranged GET stream.
Items are then served one at a time, each as the memoryview segments of the stream's chunks that
hold it (no copy into a growing buffer); access is free inside the current item and forward-only
across items.

Groups are fetched one after another as reads reach them, unless the caller declares with
``prefetch()`` that it will read the items in order (as a DCP load does): then the next
``PREFETCH_GROUPS`` groups are fetched concurrently, in the background, while the current one is
consumed, each at most ``PREFETCH_BYTES_PER_GROUP`` ahead of use.
"""

from __future__ import annotations

import io
from bisect import bisect_right
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from s3torch.client import ExecutorRole, S3Exception, shared_executor

from ._base import (
    S3Reader,
    check_position,
    writable_view,
)
from ._ranges import (
    DEFAULT_MAX_GAP_SIZE,
    ItemRange,
    RangeGroup,
    check_item_ranges,
    check_max_gap_size,
    coalesce,
)
from ._stream import GetStreamCallable, ObjectInfoCallable, ReaderStream, reader_stream

_DCPReader = TypeVar("_DCPReader", bound="DCPOptimizedS3Reader")

#: After ``prefetch()``: range groups fetched ahead of the one being read, each at most this
#: many bytes ahead of use, so one reader holds at most about
#: ``PREFETCH_GROUPS * PREFETCH_BYTES_PER_GROUP`` bytes it was not asked for yet.
PREFETCH_GROUPS = 4
PREFETCH_BYTES_PER_GROUP = 16 * 1024 * 1024

FALLBACK_GUIDANCE = (
    "The DCP-optimized reader serves only the byte ranges of a torch.distributed.checkpoint load plan, in"
    " order. For other access patterns use the generic reader: "
    "S3StorageReader(..., reader_constructor=S3ReaderConstructor.sequential())."
)


def prefetch_executor() -> ThreadPoolExecutor:
    """The process's range-group prefetch threads, which send and fill the requests of range
    groups ahead of their use (this reader's after ``prefetch()``, and s3torch-dcp's load);
    sized, and made anew after fork, by s3torch.client."""
    return shared_executor(ExecutorRole.RANGE_PREFETCH)


def _fill(stream: ReaderStream, limit: int) -> list[memoryview]:
    """Take chunks of ``stream`` until ``limit`` bytes or its end (runs on the prefetch pool)."""
    chunks: list[memoryview] = []
    taken = 0
    for chunk in stream:
        chunks.append(chunk)
        taken += len(chunk)
        if taken >= limit:
            break
    return chunks


@dataclass
class _GroupFetch:
    """A range group being fetched ahead: its stream is the fetch's until ``future`` is done."""

    stream: ReaderStream
    future: Future[list[memoryview]]

    def discard(self) -> None:
        if self.future.cancel():
            self.stream.close()
        else:  # running: close the stream once the fetch lets go of it
            self.future.add_done_callback(lambda _: self.stream.close())


class DCPOptimizedS3Reader(S3Reader):
    """The reader ``torch.distributed.checkpoint`` loads through when the constructor is
    ``S3ReaderConstructor.dcp_optimized()``: it fetches only the plan's ranges, coalesced.

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
        self._leftover: memoryview | None = None  # yielded by the stream, not yet used
        self._ahead: dict[int, _GroupFetch] = {}  # group index -> its fetch ahead (after prefetch())
        self._pending: deque[memoryview] = deque()  # fetched ahead for the current group, unused
        super().__init__(bucket, key, get_object_info, get_stream)
        if not key:
            raise ValueError("Key should be specified")
        self._max_gap_size = check_max_gap_size(max_gap_size)
        self._items = check_item_ranges(item_ranges)
        self._groups = coalesce(self._items, self._max_gap_size)
        self._group_of_item = [index for index, group in enumerate(self._groups) for _ in group.item_ranges]
        self._item_index = -1
        self._segment_starts: list[int] = []
        self._segments: list[memoryview] = []
        self._group_index = -1
        self._stream_position = 0  # offset in the object of the next byte the stream yields
        self._position = 0
        self._etag: str | None = None  # the version every group's stream is pinned to
        self._read_ahead = 0  # groups fetched ahead; set by prefetch()
        self._responded = False  # a stream of this reader has answered (its version is known)

    @property
    def groups(self) -> list[RangeGroup]:
        """The range groups, one GET stream each."""
        return self._groups

    # ---- loading items ------------------------------------------------------------------
    def _next_bytes(self, item: ItemRange, reaching: bool) -> memoryview:
        if self._leftover is not None:
            chunk, self._leftover = self._leftover, None
            return chunk
        if self._pending:
            return self._pending.popleft()
        assert self._stream is not None  # type narrowing: _load opened the item's group
        try:
            chunk = next(self._stream)
        except StopIteration:
            where = "before reaching" if reaching else "while reading"
            # The upstream's text first (a ValueError there), then the object, as in service errors.
            raise S3Exception(
                f"S3 stream exhausted at position {self._stream_position} {where} item {item.start}-{item.end}"
                f" (GetObject s3://{self._bucket}/{self._key}: the object is shorter than the load plan says)",
                bucket=self._bucket,
                key=self._key,
            ) from None
        self._etag = self._etag or self._stream.etag
        if not self._responded:
            self._responded = True
            self._schedule_ahead()  # now the groups ahead can be pinned to the version just seen
        return chunk

    def _load(self, index: int) -> None:
        item = self._items[index]
        group_index = self._group_of_item[index]
        if group_index != self._group_index:
            self._drop_stream()
            self._open_group(group_index)
        self._segment_starts = []
        self._segments = []
        while self._stream_position < item.start:  # skip the gap before the item
            chunk = self._next_bytes(item, reaching=True)
            skip = min(len(chunk), item.start - self._stream_position)
            self._stream_position += skip
            if skip < len(chunk):
                self._leftover = chunk[skip:]
        while self._stream_position < item.end:
            chunk = self._next_bytes(item, reaching=False)
            take = min(len(chunk), item.end - self._stream_position)
            self._segment_starts.append(self._stream_position)
            self._segments.append(chunk[:take])
            self._stream_position += take
            if take < len(chunk):
                self._leftover = chunk[take:]
        self._item_index = index

    def _open_group(self, index: int) -> None:
        group = self._groups[index]
        for skipped in [ahead for ahead in self._ahead if ahead < index]:
            self._ahead.pop(skipped).discard()
        fetch = self._ahead.pop(index, None)
        if fetch is None:
            self._stream = reader_stream(self._get_stream(group.start, group.end), self._etag)
        else:
            try:
                chunks = fetch.future.result()
            except BaseException:
                fetch.stream.close()
                raise
            self._stream = fetch.stream
            self._pending.extend(chunks)
        self._group_index = index
        self._stream_position = group.start
        self._schedule_ahead()

    def _schedule_ahead(self) -> None:
        """After ``prefetch()``: start fetching the groups after the current one, up to
        ``PREFETCH_GROUPS`` of them, once the object's version is known (to pin them to it)."""
        if not self._read_ahead or not self._responded or self._group_index < 0:
            return
        last = min(len(self._groups), self._group_index + 1 + self._read_ahead)
        pool: ThreadPoolExecutor | None = None
        for index in range(self._group_index + 1, last):
            if index in self._ahead:
                continue
            pool = pool or prefetch_executor()
            group = self._groups[index]
            stream = reader_stream(self._get_stream(group.start, group.end), self._etag)
            self._ahead[index] = _GroupFetch(stream, pool.submit(_fill, stream, PREFETCH_BYTES_PER_GROUP))

    def _drop_stream(self) -> None:
        if self._stream is not None:
            self._stream.close()
        self._stream = None
        self._leftover = None
        self._pending.clear()

    def prefetch(self) -> None:
        """Declare that the items will be read in order, each of them (as a
        ``torch.distributed.checkpoint`` load reads a file): from then on, the
        ``PREFETCH_GROUPS`` range groups after the current one are fetched concurrently in the
        background, up to ``PREFETCH_BYTES_PER_GROUP`` each. Without it, a group is fetched when
        a read reaches it, and a group that reads skip is never fetched."""
        self._check_open()
        self._read_ahead = PREFETCH_GROUPS
        self._schedule_ahead()

    def _item_for(self, start: int, end: int) -> None:
        """Make the item holding ``[start, end)`` current, moving forward only."""
        # An unpickled reader knows its current item but has not loaded it (no segments).
        if self._item_index >= 0 and self._segments:
            current = self._items[self._item_index]
            if current.start <= start and end <= current.end:
                return
        for index in range(max(self._item_index, 0), len(self._items)):
            item = self._items[index]
            if item.start <= start and end <= item.end:
                if index != self._item_index or not self._segments:
                    self._load(index)
                return
            if item.start > start:
                break
        if self._item_index >= 0:
            current_text = f"{self._items[self._item_index].start}-{self._items[self._item_index].end}"
        else:
            current_text = "none (no item read yet)"
        raise ValueError(
            "DCPOptimizedS3Reader only supports sequentially accessing provided ranges: "
            f"Range {start}-{end} not contained in current item {current_text}. {FALLBACK_GUIDANCE}"
        )

    def _copy_out(self, view: memoryview, start: int) -> None:
        index = bisect_right(self._segment_starts, start) - 1
        filled = 0
        position = start
        while filled < len(view):
            segment = self._segments[index]
            offset = position - self._segment_starts[index]
            count = min(len(view) - filled, len(segment) - offset)
            view[filled : filled + count] = segment[offset : offset + count]
            filled += count
            position += count
            index += 1

    # ---- reading ------------------------------------------------------------------------
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
            self._item_for(self._position, self._position + len(view))
            self._copy_out(view, self._position)
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

    @classmethod
    def _restore(
        cls: type[_DCPReader],
        bucket: str,
        key: str,
        get_object_info: ObjectInfoCallable,
        get_stream: GetStreamCallable,
        state: dict[str, Any],
    ) -> _DCPReader:
        reader = cls.__new__(cls)
        DCPOptimizedS3Reader.__init__(
            reader, bucket, key, state["item_ranges"], get_object_info, get_stream, state["max_gap_size"]
        )
        reader._position, reader._item_index = state["position"], state["item_index"]
        reader._etag, reader._read_ahead = state["etag"], state["read_ahead"]
        return reader

    def close(self) -> None:
        self._drop_stream()
        for fetch in self._ahead.values():
            fetch.discard()
        self._ahead.clear()
        self._segments = []
        self._segment_starts = []
        super().close()
