"""The response body protocol: what every answer of the transport carries, however it was read."""

from __future__ import annotations

import http.client
from collections.abc import Mapping
from typing import NamedTuple, Protocol

__all__ = ["BODY_ERRORS", "RawResponse", "ResponseBody", "discard"]

# Errors of a connection in the middle of a body: the request is resumed or retried.
BODY_ERRORS = (OSError, http.client.HTTPException)


class ResponseBody(Protocol):
    """A response body still on its connection (our ``_http.Body``, a urllib3 response, or an
    answer a before-send handler made)."""

    def readinto(self, view: memoryview, /) -> int:
        """Fill ``view`` from the body; fewer bytes only at its end."""

    def read_bounded(self, limit: int, /) -> bytes:
        """At most ``limit`` bytes; a longer body's connection is closed, not drained."""

    def close(self) -> None:
        """Drop the connection."""

    def release_conn(self) -> None:
        """Hand a fully read connection back to its pool."""


class RawResponse(NamedTuple):
    """An HTTP response whose body is still on the socket."""

    status: int
    headers: Mapping[str, str]  # case-insensitive
    body: ResponseBody | None  # None: a 416 answer botocore's client already consumed
    request_id: str | None
    attempts: int = 1  # how many times the request was sent (>1: an earlier attempt may have acted)


def discard(body: ResponseBody) -> None:
    """Drop a response whose body will not be read: its connection is closed, not reused."""
    try:
        body.close()
    finally:
        body.release_conn()
