"""``GetObjectStream``: the bytes ``[start, end)`` of one object, in order, fetched adaptively.

The first request asks for one part. What it shows decides the rest:

* a fast connection (little first-byte latency, high rate): the remainder is one more GET,
  read straight from the socket into the consumer's memory. Against a fast store a single
  stream is what reaches line rate at the least CPU;
* a slow connection (first-byte latency of milliseconds, or a per-connection cap, as on real
  S3): the remainder is fetched as ``part_size`` ranged GETs, a bounded window of them in
  flight on the transport's thread pool, each read with ``readinto`` into its own buffer.
  The window starts at ``concurrency`` (which assumes ~100 MB/s per connection). When the
  consumer has to wait for a part, the parts' measured rate per connection says how many must
  be in flight to reach ``throughput_target_gbps``, and the window widens to that, up to the
  part pool's threads (``2 x concurrency``): latency and a per-connection cap are paid for with
  connections, within the configured budget. Memory: at most window x ``part_size``.

Every request after the first carries ``If-Match`` with the first response's ETag, so an object
replaced mid-read raises ``ObjectChangedError`` instead of mixing versions. A connection lost
mid-body is resumed from the last byte received, up to ``max_attempts`` times without progress
(``_resumable_body``).
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from concurrent.futures import Future
from typing import Any

from ._body import RawResponse
from ._control_hooks import calling_as
from ._range_check import check_range_response
from ._resources import ExecutorRole, workers
from ._resumable_body import ResumableBody
from ._transport import Transport

logger = logging.getLogger(__name__)

#: First-byte latency above which parts are fetched in parallel straight away (S3's is tens of
#: milliseconds; a local store's is well under one, even on a busy machine).
LATENCY_THRESHOLD_SECONDS = 0.010
#: A first part slower than this (or than half the throughput target, if lower) marks a capped
#: connection: the rest goes as parallel parts. Real S3 gives one connection ~100 MB/s; a local
#: store gives several hundred even on a busy machine, where parts only cost CPU.
SLOW_CONNECTION_BYTES_PER_SECOND = 300e6


class GetObjectStream:
    """The bytes ``[start, end)`` of ``s3://bucket/key`` (``end`` exclusive; ``None``: to the end).

    Iterate it for chunks (``memoryview`` objects the consumer may keep), or call ``readinto``
    to have the bytes land directly in your buffer. ``tell()`` is the offset consumed so far
    (it starts at ``start``); ``size`` and ``etag`` are known after the first response. A stream
    is read once; ``close()`` drops what is in flight.
    """

    def __init__(
        self,
        transport: Transport,
        bucket: str,
        key: str,
        start: int | None = None,
        end: int | None = None,
        *,
        etag: str | None = None,
        user_agent: str,
    ) -> None:
        if start is not None and start < 0:
            raise ValueError(f"start must be non-negative, got {start} for s3://{bucket}/{key}")
        if end is not None and end < 0:
            raise ValueError(f"end must be non-negative, got {end} for s3://{bucket}/{key}")
        self.bucket = bucket
        self.key = key
        self._transport = transport
        self._user_agent = user_agent  # every request of this stream carries it
        self._part_size = transport.config.part_size
        self._window = transport.concurrency  # parts in flight; widens up to _max_window
        self._max_window = workers(ExecutorRole.PARTS, transport.concurrency)
        self._target_bytes_per_second = transport.config.throughput_target_gbps * 1e9 / 8
        self._part_bytes = 0  # bytes and seconds of the parts received: their rate per connection
        self._part_seconds = 0.0
        self._max_attempts = transport.config.max_attempts
        self._retry_deadline = transport.config.retry_deadline
        self._position = start or 0
        self._end = end
        self._limit: int | None = None  # end of what this stream returns, once the size is known
        self._requested = self._position  # everything below is requested already
        self.size: int | None = None
        self.etag = etag
        self._body: ResumableBody | None = None
        self._first_request_at = 0.0
        self._first_part_bytes = 0
        self._parallel = False
        self._parts: deque[Future[tuple[memoryview, float]]] = deque()
        self._leftover: memoryview | None = None
        # Part buffers ``readinto`` has copied out, for the next parts: fresh memory costs more
        # CPU here than the copy (page faults), so a stream read with readinto reuses its own.
        self._spare: list[bytearray] = []
        self._leftover_spare = False  # whether the leftover's buffer may be reused once consumed
        self._started = False
        self._closed = False

    # ---- requests ---------------------------------------------------------------------
    def _request(self, start: int, end: int, deadline: float | None = None) -> RawResponse:
        """A GET of ``[start, end)`` inside the known object (parts, remainder, resumes), checked."""
        with calling_as(self._user_agent):  # on the caller's or the transport's thread
            response = self._transport.get_range(self.bucket, self.key, start, end, self.etag, deadline=deadline)
        check_range_response(
            response, self.bucket, self.key, start, end, self.size, wanted_end=end, counters=self._transport.counters
        )
        return response

    def _first(self) -> None:
        self._started = True
        start = self._position
        end = start + self._part_size
        if self._end is not None:
            end = min(end, self._end)
            if end <= start:
                self._limit = start
                return
        self._first_request_at = time.perf_counter()
        with calling_as(self._user_agent):
            response = self._transport.get_range(self.bucket, self.key, start, end, self.etag)
        first_byte_latency = time.perf_counter() - self._first_request_at
        # A 200 (Range ignored) is the whole object: right when this stream reads it all from 0.
        checked = check_range_response(
            response, self.bucket, self.key, start, end, None, wanted_end=self._end, counters=self._transport.counters
        )
        self.etag = self.etag or response.headers.get("ETag")
        self.size = checked.size
        if response.status == 416:  # the start is at or past the end of the object
            self._limit = start
            return
        body_end = checked.end
        assert self.size is not None  # a 200 or 206 that passed the check gives it
        self._limit = self.size if self._end is None else min(self._end, self.size)
        self._body = ResumableBody(self, response, start, body_end)
        self._requested = body_end
        self._first_part_bytes = body_end - start
        if self._requested < self._limit and first_byte_latency >= LATENCY_THRESHOLD_SECONDS:
            self._go_parallel()

    def _go_parallel(self) -> None:
        self._parallel = True
        self._fill_window()

    def _fill_window(self) -> None:
        while len(self._parts) < self._window and self._requested < (self._limit or 0):
            self._schedule_part()

    def _widen(self) -> None:
        """The consumer waited for a part: widen the window to what the parts' rate per
        connection needs to reach the throughput target, up to the part pool's threads."""
        rate = self._part_bytes / max(self._part_seconds, 1e-9)
        wanted = min(self._max_window, math.ceil(self._target_bytes_per_second / max(rate, 1.0)))
        if wanted > self._window:
            logger.debug(
                "GetObject s3://%s/%s: %.0f MB/s per connection, window %d -> %d parts",
                self.bucket,
                self.key,
                rate / 1e6,
                self._window,
                wanted,
            )
            self._window = wanted

    def _schedule_part(self) -> None:
        assert self._limit is not None
        start = self._requested
        end = min(start + self._part_size, self._limit)
        self._requested = end
        self._parts.append(self._transport.executor.submit(self._fetch_part, start, end))

    def _fetch_part(self, start: int, end: int) -> tuple[memoryview, float]:
        """The part's bytes, and the seconds from its request to its last byte."""
        started = time.perf_counter()
        try:
            spare = self._spare.pop()  # list.pop is atomic: parts are fetched on pool threads
        except IndexError:
            spare = None
        buffer = memoryview(spare if spare is not None and len(spare) == end - start else bytearray(end - start))
        body = ResumableBody(self, self._request(start, end), start, end)
        try:
            body.readinto(buffer)
        except BaseException:
            body.abandon()
            raise
        return buffer, time.perf_counter() - started

    def _next_source(self) -> bool:
        """Make the next bytes available; False at the end of the stream."""
        assert self._limit is not None
        if self._parts:
            part = self._parts.popleft()
            waited = not part.done()
            self._leftover, seconds = part.result()
            self._leftover_spare = True
            self._part_bytes += len(self._leftover)
            self._part_seconds += seconds
            if waited:
                self._widen()
            self._fill_window()
            return True
        if self._requested >= self._limit:
            return False
        if not self._parallel:
            # The first part has been consumed: judge the connection by its rate.
            elapsed = time.perf_counter() - self._first_request_at
            rate = self._first_part_bytes / max(elapsed, 1e-9)
            target = self._transport.config.throughput_target_gbps * 1e9 / 8
            if rate < min(target / 2, SLOW_CONNECTION_BYTES_PER_SECOND):
                self._go_parallel()
                return self._next_source()
        start = self._requested
        self._body = ResumableBody(self, self._request(start, self._limit), start, self._limit)
        self._requested = self._limit
        return True

    def _recycle(self, consumed: memoryview) -> None:
        owner = consumed.obj
        if self._leftover_spare and isinstance(owner, bytearray) and len(self._spare) < self._window:
            self._spare.append(owner)
        self._leftover_spare = False

    # ---- consumer API -----------------------------------------------------------------
    def start(self) -> None:
        """Send the first request now, if it has not gone yet; ``size`` and ``etag`` are known
        after it. Set ``etag`` before this to pin the stream to that version of the object."""
        if self._closed:
            raise ValueError(f"start of a closed stream of s3://{self.bucket}/{self.key}")
        if not self._started:
            self._first()

    def readinto(self, buffer: Any) -> int:
        """Fill ``buffer`` with the next bytes; fewer than ``len(buffer)`` only at the end."""
        view = memoryview(buffer).cast("B")
        if self._closed:
            raise ValueError(f"read from a closed stream of s3://{self.bucket}/{self.key}")
        if not self._started:
            self._first()
        filled = 0
        wanted = len(view)
        while filled < wanted:
            if self._leftover is not None:
                count = min(wanted - filled, len(self._leftover))
                view[filled : filled + count] = self._leftover[:count]
                if count < len(self._leftover):
                    self._leftover = self._leftover[count:]
                else:
                    self._recycle(self._leftover)
                    self._leftover = None
            elif self._body is not None:
                count = self._body.readinto(view[filled:])
                if count == 0 or self._body.position == self._body.end:
                    self._body = None
            elif self._limit is None or not self._next_source():
                break
            else:
                continue
            filled += count
            self._position += count
        return filled

    def __iter__(self) -> GetObjectStream:
        return self

    def __next__(self) -> memoryview:
        if self._closed:
            raise StopIteration
        if not self._started:
            self._first()
        while True:
            if self._leftover is not None:
                chunk, self._leftover = self._leftover, None
                self._leftover_spare = False  # the consumer keeps it
                self._position += len(chunk)
                return chunk
            if self._body is not None:
                size = min(self._part_size, self._body.end - self._body.position)
                if size == 0:
                    self._body.release()
                    self._body = None
                    continue
                chunk = memoryview(bytearray(size))
                count = self.readinto(chunk)
                return chunk[:count]
            if self._limit is None or not self._next_source():
                raise StopIteration

    def tell(self) -> int:
        """Offset in the object of the next byte this stream returns."""
        return self._position

    def close(self) -> None:
        """Stop: cancel parts not started, drop the open connection."""
        if self._closed:
            return
        self._closed = True
        for part in self._parts:
            part.cancel()
        self._parts.clear()
        self._leftover = None
        self._spare.clear()
        if self._body is not None:
            self._body.abandon()
            self._body = None

    def __enter__(self) -> GetObjectStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_body", None) is not None:
            self.close()
