"""``ResumableBody``: a response body over a byte range that resumes itself, from the last byte
received, when its connection is cut (a ``GetObjectStream``'s first GET, remainder and parts)."""

from __future__ import annotations

import logging
import time
from typing import Protocol

from ._body import BODY_ERRORS, RawResponse, ResponseBody, discard
from ._exceptions import S3Exception, client_error
from ._retry import retry_delay
from ._transport import Transport

logger = logging.getLogger(__name__)


class BodyOwner(Protocol):
    """The stream a body belongs to: its object, its transport, its retry limits, and the checked
    GET of a range that a body sends again to resume."""

    bucket: str
    key: str
    _transport: Transport
    _max_attempts: int
    _retry_deadline: float

    def _request(self, start: int, end: int, deadline: float | None = None) -> RawResponse: ...


def body_of(response: RawResponse) -> ResponseBody:
    # Only a 416 answered through botocore's client comes without one, and it opens no body.
    if response.body is None:
        raise S3Exception(f"Client error: an answer of status {response.status} came without its body")
    return response.body


class ResumableBody:
    """An open response body covering ``[position, end)``; resumes itself when cut, for at most
    ``max_attempts`` attempts without progress and ``retry_deadline`` seconds after the cut."""

    __slots__ = ("_counted", "_deadline", "_response", "_source", "_stream", "end", "position")

    def __init__(self, stream: BodyOwner, response: RawResponse, start: int, end: int) -> None:
        self._stream = stream
        self._response = response
        self._source = body_of(response)  # its readinto goes from the socket straight into our memory
        self.position = start
        self.end = end
        self._counted = start  # bytes below were added to the transport's counters
        self._deadline = 0.0  # no new resume after this time.monotonic(), set at a cut

    def readinto(self, view: memoryview) -> int:
        """Read up to ``len(view)`` bytes (fewer only at this body's end); 0 at its end."""
        wanted = min(len(view), self.end - self.position)
        if wanted <= 0:
            self.release()
            return 0
        failures = 0
        filled = 0
        while filled < wanted:
            cause: BaseException | None = None
            try:
                count = self._source.readinto(view[filled:wanted])
            except BODY_ERRORS as error:
                count, cause = 0, error
            if count:
                filled += count
                self.position += count
                failures = 0
                continue
            failures += 1
            self._resume(failures, cause)
        if self.position == self.end:
            self.release()
        return filled

    def _resume(self, failures: int, cause: BaseException | None) -> None:
        stream = self._stream
        self.abandon()
        now = time.monotonic()
        if failures == 1:
            self._deadline = now + stream._retry_deadline
        delay = retry_delay(failures)
        if failures >= stream._max_attempts or now + delay >= self._deadline:
            raise client_error(
                f"connection lost at byte {self.position} and not resumed after {failures} attempts: {cause}",
                operation="GetObject",
                bucket=stream.bucket,
                key=stream.key,
            ) from cause
        logger.debug("GetObject s3://%s/%s resumed at byte %d: %s", stream.bucket, stream.key, self.position, cause)
        stream._transport.counters.resumed()
        time.sleep(delay)
        response = stream._request(self.position, self.end, self._deadline)
        self._response = response
        self._source = body_of(response)

    def _count(self) -> None:
        count = self.position - self._counted
        if count:
            self._stream._transport.counters.received(count)
            self._counted = self.position

    def release(self) -> None:
        """Give the connection back to the pool (the body was read to its end)."""
        self._count()
        body = self._response.body
        if body is not None:
            body.release_conn()

    def abandon(self) -> None:
        self._count()
        if self._response.body is not None:
            discard(self._response.body)
