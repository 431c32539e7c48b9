"""``PrefetchingReaders``: the readers of a dataset's objects, in order, with the GETs of the next
ones already under way while the caller works on the current one.

One GET of a small object is mostly waiting: tens of milliseconds of first-byte latency on S3
against about a millisecond of transfer. Reading objects one after another leaves a DataLoader
worker idle for most of that time, so the next objects' readers are opened ahead and their
``prefetch()`` (which sends the GET and waits for the response head) runs on a small thread
pool. The caller still reads every byte through the same reader, so prefetching can change when
bytes arrive, never which bytes.

Memory stays bounded:

* at most ``depth`` objects are started ahead of the one being read. For an object no larger
  than ``part_size`` a started GET holds one response whose body waits in the socket's buffer;
* an object larger than ``part_size`` may keep a window of ``part_size`` parts in memory (its GET
  stream fetches them in parallel on a slow connection), so at most one such object is started
  ahead: nothing after it is started until it is reached. Sizes from a listing are known in
  advance; for objects of unknown size (``from_objects``) the number started ahead grows from one,
  doubling after each object that turned out small, and drops back to one after a large one.

Prefetching is adaptive, as the transport's parallel parts are: handing a GET to a thread costs
about 0.15 ms of CPU, which a store answering within a fraction of a millisecond (a server on
the same host) never pays back. So the first objects are started in the caller's thread and how
long their GETs wait for the response head (wall time minus CPU time) is measured: threads are
used only when the *shortest* of those waits is at least ``PREFETCH_MIN_WAIT_SECONDS`` (S3
answers after tens of milliseconds); otherwise readers are left to start their GET when first
read, as without prefetching. A busy machine lengthens waits without the store being slow: a
thread woken by its response may wait milliseconds for a core while other processes (the other
DataLoader workers, just forked) run, and prefetching would make such a CPU-bound process slower
still. So the time the thread spent in the run queue is not counted as waiting (Linux's
``/proc/thread-self/schedstat``), and the shortest wait decides, not a typical one: one wait under
the threshold decides against threads at once. The decision is taken again after
``PREFETCH_DECISION_OBJECTS`` objects.

Errors keep their place: a failed GET, reader construction or listing page is raised when the
caller reaches that object, not earlier.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from s3torch.client import ExecutorRole, shared_executor
from s3torch.readers import S3Reader

from ._common import S3BucketKeyData, identity

logger = logging.getLogger(__name__)

#: Objects whose GETs are started ahead of the one being read, by default. With 20 ms of
#: first-byte latency per request (S3-like) one process then reaches about 16 / 21 ms = 750
#: objects/s of small objects, where reading one object at a time reaches about 45.
DEFAULT_PREFETCH = 16
#: Prefetch threads are used when GETs wait at least this long for their response head (each of
#: ``PREFETCH_PROBE_OBJECTS`` GETs started in the caller's thread).
PREFETCH_MIN_WAIT_SECONDS = 0.0005
PREFETCH_PROBE_OBJECTS = 3
#: Objects read after a decision (prefetch threads or not) before the store's wait is measured again.
PREFETCH_DECISION_OBJECTS = 4096


def prefetch_pool() -> ThreadPoolExecutor:
    """The process's whole-object prefetch threads (sized, and made anew after fork, by s3torch.client)."""
    return shared_executor(ExecutorRole.OBJECT_PREFETCH)


def check_prefetch(prefetch: Any) -> int:
    """``prefetch`` as a depth: an int >= 0, or True (the default depth) / False (0)."""
    if isinstance(prefetch, bool):
        return DEFAULT_PREFETCH if prefetch else 0
    if not isinstance(prefetch, int) or prefetch < 0:
        raise ValueError(f"prefetch must be an int >= 0 (0 disables prefetching), got {prefetch!r}")
    return prefetch


def effective_prefetch(prefetch: int, transform: Callable[[S3Reader], Any]) -> int:
    """No prefetching for the default transform: it hands readers to the caller, who may keep
    many before reading them, and a started reader holds a connection until it is read."""
    return 0 if transform is identity else prefetch


# Linux: nanoseconds this thread ran, then spent runnable waiting for a core. None elsewhere
# (or where the kernel does not keep them), once a read failed.
_SCHEDSTAT: str | None = "/proc/thread-self/schedstat"


def _queued_seconds() -> float:
    """Seconds this thread has spent runnable without a core (0.0 where that is not known)."""
    global _SCHEDSTAT
    if _SCHEDSTAT is None:
        return 0.0
    try:
        with open(_SCHEDSTAT, "rb") as stat:
            return int(stat.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        _SCHEDSTAT = None
        return 0.0


def _thread_clocks() -> tuple[float, float, float]:
    return time.perf_counter(), time.thread_time(), _queued_seconds()


def _waited_since(started: tuple[float, float, float]) -> float:
    """How long this thread waited since ``started`` for something other than a core: wall time
    minus its CPU time and minus its time in the run queue (a thread woken by its response on a
    busy machine may wait milliseconds for a core, which says nothing of the store)."""
    wall, cpu, queued = started
    now_wall, now_cpu, now_queued = _thread_clocks()
    return (now_wall - wall) - (now_cpu - cpu) - (now_queued - queued)


def _prefetch_reader(reader: S3Reader) -> int | None:
    """Send the object's GET and wait for its response head; return the object's size when the
    reader learned it from that response."""
    reader.prefetch()
    return reader.known_size()


def _prefetches(reader: S3Reader) -> bool:
    """Whether ``prefetch()`` does anything for this reader (ranged and DCP readers fetch only
    what is asked, so there is nothing to start ahead)."""
    return type(reader).prefetch is not S3Reader.prefetch


def _close_when_done(reader: S3Reader, _future: Future[Any]) -> None:
    reader.close()


class PrefetchGate:
    """Whether prefetching pays off against the store. The waits of a few GETs started in the
    caller's thread (``observe``) decide for the next ``decision_objects`` objects
    (``consumed``); then they are measured again. Prefetching needs every one of
    ``probe_objects`` waits to reach ``min_wait_seconds``; one shorter wait decides against it at
    once (contention for the CPU lengthens waits, it never shortens one)."""

    def __init__(
        self,
        min_wait_seconds: float = PREFETCH_MIN_WAIT_SECONDS,
        probe_objects: int = PREFETCH_PROBE_OBJECTS,
        decision_objects: int = PREFETCH_DECISION_OBJECTS,
    ) -> None:
        self._min_wait = min_wait_seconds
        self._waits: deque[float] = deque(maxlen=probe_objects)
        self._decision_objects = decision_objects
        self._decided_left = 0
        self._prefetch = False

    @property
    def probing(self) -> bool:
        """Whether GETs should be started in the caller's thread and measured."""
        return self._decided_left == 0

    @property
    def prefetching(self) -> bool:
        """Whether the next objects' GETs go to prefetch threads."""
        return self._prefetch and self._decided_left > 0

    def observe(self, wait_seconds: float) -> None:
        self._waits.append(wait_seconds)
        if wait_seconds >= self._min_wait and len(self._waits) < (self._waits.maxlen or 1):
            return
        wait = min(self._waits)
        self._waits.clear()
        self._prefetch = wait >= self._min_wait
        self._decided_left = self._decision_objects
        logger.debug(
            "GETs wait %.2f ms for their response: %s",
            1000 * wait,
            "prefetching the next objects" if self._prefetch else "no prefetching",
        )

    def consumed(self) -> None:
        if self._decided_left:
            self._decided_left -= 1


class _Entry:
    """One upcoming object: its reader (or why there is none) and its prefetch."""

    __slots__ = ("deferred", "error", "future", "item", "known_large", "learned_large", "reader", "unknown_size")

    def __init__(
        self,
        item: S3BucketKeyData | None,
        reader: S3Reader | None,
        error: BaseException | None,
        large_object_bytes: int,
    ) -> None:
        info = item.object_info if item is not None else None
        self.item = item
        self.reader = reader
        self.error = error
        self.unknown_size = info is None
        self.known_large = info is not None and info.size > large_object_bytes  # from the listing
        self.learned_large = False  # set by the prefetch thread when the response shows it
        self.future: Future[int | None] | None = None
        self.deferred = False  # to be prefetched once more objects of unknown size may be in flight


class PrefetchingReaders(Iterator[tuple[S3BucketKeyData, S3Reader]]):
    """``(item, reader)`` for each item of ``items``, in order, with up to ``depth`` GETs started
    ahead (see the module's description for the bounds). ``depth=0`` opens each reader only when
    it is reached and prefetches nothing. ``close()`` drops what is in flight."""

    def __init__(
        self,
        items: Iterator[S3BucketKeyData],
        open_reader: Callable[[S3BucketKeyData], S3Reader],
        depth: int,
        large_object_bytes: int,
        gate: PrefetchGate | None = None,
    ) -> None:
        self._items = items
        self._open_reader = open_reader
        self._depth = depth
        self._gate = gate or PrefetchGate()
        self._large_object_bytes = large_object_bytes
        # Prefetches of objects of unknown size in flight, at most: doubles after each such
        # object that turned out small (up to depth), back to one after a large one.
        self._limit = min(1, depth)
        self._unknown_in_flight = 0
        self._known_large_pending = 0
        # Set by a prefetch thread (after the entry's learned_large) when an object turned out
        # large; cleared by this thread before it looks at the entries again.
        self._maybe_learned_large = False
        self._pending: deque[_Entry] = deque()
        self._exhausted = False
        self._closed = False
        self._pid = os.getpid()

    def __iter__(self) -> PrefetchingReaders:
        return self

    def _next_entry(self) -> _Entry | None:
        """Open the reader of the next object; None after the last one. Errors are kept in the
        entry, to be raised when the caller reaches it."""
        if self._exhausted:
            return None
        try:
            item = next(self._items)
        except StopIteration:
            self._exhausted = True
            return None
        except Exception as error:  # noqa: BLE001 - a failed listing page is raised when reached
            self._exhausted = True
            return _Entry(None, None, error, self._large_object_bytes)
        try:
            return _Entry(item, self._open_reader(item), None, self._large_object_bytes)
        except Exception as error:  # noqa: BLE001 - raised when this object is reached
            return _Entry(item, None, error, self._large_object_bytes)

    def _task(self, entry: _Entry) -> int | None:
        """On a prefetch thread."""
        assert entry.reader is not None
        size = _prefetch_reader(entry.reader)
        if size is not None and size > self._large_object_bytes:
            entry.learned_large = True
            self._maybe_learned_large = True
        return size

    def _large_pending(self) -> bool:
        """Whether an object larger than a part waits in the queue (started or not)."""
        if self._known_large_pending:
            return True
        if not self._maybe_learned_large:
            return False
        self._maybe_learned_large = False  # before looking: a flag set meanwhile stays set
        if any(entry.learned_large for entry in self._pending):
            self._maybe_learned_large = True
            return True
        return False

    def _may_submit(self, entry: _Entry) -> bool:
        return not entry.unknown_size or self._unknown_in_flight < self._limit

    def _submit(self, entry: _Entry) -> None:
        entry.future = prefetch_pool().submit(self._task, entry)
        entry.deferred = False
        if entry.unknown_size:
            self._unknown_in_flight += 1

    def _fill(self) -> None:
        """Open and prefetch upcoming objects, within the bounds."""
        if not self._gate.prefetching or self._large_pending():
            return  # nothing more is started while a large object waits to be read
        if self._pending and self._pending[-1].deferred:
            for waiting in self._pending:
                if waiting.deferred:
                    if not self._may_submit(waiting):
                        return
                    self._submit(waiting)
        while len(self._pending) < self._depth and not self._exhausted:
            entry = self._next_entry()
            if entry is None:
                return
            self._pending.append(entry)
            if entry.reader is not None and _prefetches(entry.reader):
                if not self._may_submit(entry):
                    entry.deferred = True
                    return
                self._submit(entry)
            if entry.known_large:
                self._known_large_pending += 1
                return

    def _pop(self) -> _Entry | None:
        if not self._pending:
            self._fill()
            if not self._pending:
                return None
        entry = self._pending.popleft()
        if entry.known_large:
            self._known_large_pending -= 1
        if entry.future is not None and entry.unknown_size:
            self._unknown_in_flight -= 1
        self._fill()  # keep the others in flight while waiting for this one
        return entry

    def __next__(self) -> tuple[S3BucketKeyData, S3Reader]:
        if self._closed:
            raise StopIteration
        in_caller = False
        if self._pending or (self._depth and self._gate.prefetching):
            entry = self._pop()
        else:
            entry = self._next_entry()
            in_caller = True
        if entry is None:
            self._closed = True
            raise StopIteration
        size = None
        try:
            if entry.future is not None:
                size = entry.future.result()
            elif entry.reader is not None and entry.error is None and _prefetches(entry.reader):
                if entry.deferred:
                    size = _prefetch_reader(entry.reader)
                elif in_caller and self._depth and self._gate.probing:
                    # Started here, now: how long it waits tells whether prefetch threads pay.
                    started = _thread_clocks()
                    size = _prefetch_reader(entry.reader)
                    self._gate.observe(_waited_since(started))
                # else: the reader starts its GET when the transform first reads.
        except BaseException:
            if entry.reader is not None:
                entry.reader.close()
            raise
        if entry.error is not None:
            raise entry.error
        assert entry.item is not None and entry.reader is not None
        self._gate.consumed()
        if self._depth and entry.unknown_size and size is not None:
            limit = 1 if size > self._large_object_bytes else min(self._depth, 2 * self._limit)
            if limit != self._limit:
                self._limit = limit
                self._fill()
        return entry.item, entry.reader

    def close(self) -> None:
        """Cancel what has not started, close the readers started ahead (their connections are
        dropped, not reused)."""
        if self._closed and not self._pending:
            return
        self._closed = True
        pending, self._pending = self._pending, deque()
        if os.getpid() != self._pid:
            return  # a forked copy: the threads and connections belong to the parent
        for entry in pending:
            if entry.reader is None:
                continue
            if entry.future is None or entry.future.cancel():
                entry.reader.close()
            else:
                entry.future.add_done_callback(functools.partial(_close_when_done, entry.reader))
