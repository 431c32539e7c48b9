"""Counters of what one process's transport sent to S3, and their public snapshot ``S3ClientMetrics``.

The transport counts once per request (never per chunk of a body): a few integer additions
under one lock. ``S3Client.metrics()`` copies them into a frozen ``S3ClientMetrics``.
"""

from __future__ import annotations

import logging
import threading
import time
from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

#: Upper bounds, in seconds, of the latency histogram's buckets; one more bucket counts the rest.
LATENCY_BUCKETS_SECONDS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass(frozen=True)
class S3ClientMetrics:
    """What the transport of an ``S3Client`` has done in this process so far (s3torch addition).

    Every ``S3Client`` of the same region, endpoint, configuration and user agent in a process
    shares one transport, and so these counters; a forked child starts from zero.

    Attributes:
        requests: S3 operations by name (``GetObject``, ``UploadPart``, ``ListObjectsV2``, ...),
            each counted once however many attempts it took.
        attempts: HTTP requests sent, retries included.
        retries: Attempts after the first one of an operation, and resumes of cut GET bodies.
        throttles: Answers asking to slow down (HTTP 503 or 429, or the code ``SlowDown``).
        errors: Operations that ended in an exception raised to the caller.
        bytes_sent: Request body bytes sent (uploads; retried bodies count again).
        bytes_received: Response body bytes received by GETs (counted per response, as announced
            by ``Content-Length`` for the control path, as read for data-path GETs).
        latency_buckets: Upper bounds in seconds of the latency histogram's buckets.
        latency_counts: Operations by latency (from the first attempt to the response head,
            retries included): ``latency_counts[i]`` took at most ``latency_buckets[i]`` and more
            than the bound before it; the last entry counts those above the last bound.
    """

    requests: Mapping[str, int] = field(default_factory=dict)
    attempts: int = 0
    retries: int = 0
    throttles: int = 0
    errors: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    latency_buckets: tuple[float, ...] = LATENCY_BUCKETS_SECONDS
    latency_counts: tuple[int, ...] = (0,) * (len(LATENCY_BUCKETS_SECONDS) + 1)

    @property
    def total_requests(self) -> int:
        """Operations of every kind."""
        return sum(self.requests.values())


class Counters:
    """The mutable counters behind ``S3ClientMetrics``, safe to update from any thread."""

    __slots__ = (
        "_attempts",
        "_bytes_received",
        "_bytes_sent",
        "_errors",
        "_latency",
        "_lock",
        "_requests",
        "_retries",
        "_throttles",
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[str, int] = {}
        self._attempts = 0
        self._retries = 0
        self._throttles = 0
        self._errors = 0
        self._bytes_sent = 0
        self._bytes_received = 0
        self._latency = [0] * (len(LATENCY_BUCKETS_SECONDS) + 1)

    def operation(
        self,
        name: str,
        bucket: str | None,
        key: str | None,
        outcome: int | BaseException | None,
        attempts: int,
        started: float,
        bytes_per_attempt: int,
        throttles: int,
        failed: bool,
    ) -> None:
        """One operation that ended, ``started`` at that ``time.monotonic()``, with ``outcome``
        its final HTTP status or the exception it raised (``failed``: raised to the caller);
        logged on one DEBUG line."""
        seconds = time.monotonic() - started
        bucket_index = bisect_left(LATENCY_BUCKETS_SECONDS, seconds)
        with self._lock:
            self._requests[name] = self._requests.get(name, 0) + 1
            self._attempts += attempts
            self._retries += attempts - 1
            self._throttles += throttles
            self._errors += failed
            self._bytes_sent += bytes_per_attempt * attempts
            self._latency[bucket_index] += 1
        # One line per S3 operation; never headers (they carry the signature).
        logger.debug(
            "%s s3://%s/%s: %s after %d attempt(s) in %.1f ms",
            name,
            bucket,
            key or "",
            outcome,
            attempts,
            seconds * 1e3,
        )

    def received(self, count: int) -> None:
        """Body bytes received (once per response)."""
        with self._lock:
            self._bytes_received += count

    def refused(self) -> None:
        """An answer refused after the operation was counted (a GET carrying other bytes than
        the ones asked for): an error raised to the caller."""
        with self._lock:
            self._errors += 1

    def resumed(self) -> None:
        """A cut GET body asked for again from its last byte received (the new GET is an
        operation of its own)."""
        with self._lock:
            self._retries += 1

    def snapshot(self) -> S3ClientMetrics:
        with self._lock:
            return S3ClientMetrics(
                requests=dict(self._requests),
                attempts=self._attempts,
                retries=self._retries,
                throttles=self._throttles,
                errors=self._errors,
                bytes_sent=self._bytes_sent,
                bytes_received=self._bytes_received,
                latency_counts=tuple(self._latency),
            )
