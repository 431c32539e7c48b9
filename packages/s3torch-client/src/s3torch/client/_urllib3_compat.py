"""The one place s3torch relies on urllib3 internals: a urllib3 response read into our memory.

Relies on ``urllib3.response.HTTPResponse._fp`` being the ``http.client.HTTPResponse`` under the
response (urllib3 1.26 and 2.x), whose ``readinto`` writes straight into the caller's buffer and
whose ``length`` is the part of the body not yet read. urllib3's own ``readinto`` reads into a
temporary ``bytes`` first (a copy per chunk). ``tests/test_dependency_seams.py`` fails if a new
urllib3 changes either.
"""

from __future__ import annotations

import http.client
from typing import Any

__all__ = ["Urllib3Body"]


class Urllib3Body:
    """A urllib3 response body (proxied endpoints, S3 Express) as a ``ResponseBody``."""

    __slots__ = ("_raw",)

    def __init__(self, raw: Any) -> None:
        self._raw = raw

    def readinto(self, view: memoryview) -> int:
        underlying: http.client.HTTPResponse = self._raw._fp
        wanted = len(view)
        filled = 0
        while filled < wanted:
            count = underlying.readinto(view[filled:])
            if not count:
                if underlying.length:  # the peer closed before the end of the body
                    raise http.client.IncompleteRead(b"", underlying.length)
                break
            filled += count
        return filled

    def read_bounded(self, limit: int) -> bytes:
        """At most ``limit`` bytes; a longer body's connection is closed, not drained."""
        data: bytes = self._raw.read(limit + 1)
        if len(data) > limit:
            self._raw.close()
        return data[:limit]

    def close(self) -> None:
        self._raw.close()

    def release_conn(self) -> None:
        self._raw.release_conn()
