"""The before-send seam: a handler on botocore's ``before-send`` event answers the data path too.

botocore lets a ``before-send`` handler answer a request in place of the network; moto's
``mock_aws`` (and a ``Stubber``) answer this way. The data path does not go through botocore's
client, so without this seam it would bypass such a handler and reach the network. It stays in
the package rather than in the tests: the unit tests of all five distributions, and users' own
tests under ``mock_aws``, run the data path against the mock through it; it costs one boolean
test per request when no handler is registered.
"""

from __future__ import annotations

import io
from typing import Any

from botocore.awsrequest import AWSPreparedRequest

from ._botocore_compat import has_handlers

__all__ = ["BeforeSend"]


class _ViewFile:
    """A memoryview request body as a file, for before-send handlers (copied only if read)."""

    def __init__(self, view: memoryview) -> None:
        self._view = view

    def read(self, amount: int | None = None) -> bytes:
        return self._view.tobytes()


class _InMemoryBody:
    """A response body a before-send handler made, as a ``ResponseBody``."""

    def __init__(self, payload: bytes) -> None:
        self._file = io.BytesIO(payload)

    def readinto(self, view: memoryview) -> int:
        return self._file.readinto(view)

    def read(self) -> bytes:
        return self._file.read()

    def read_bounded(self, limit: int) -> bytes:
        return self._file.read(limit)

    def close(self) -> None:
        self._file.close()

    def release_conn(self) -> None:
        pass


class BeforeSend:
    """The before-send handlers of one botocore client, asked before each data-path request."""

    def __init__(self, client: Any) -> None:
        self._events = client.meta.events
        # Registered when the client is built (mock_aws patches botocore's handler list).
        self.active = has_handlers(client, "before-send.s3.GetObject")

    def answer(
        self, operation: str, method: str, url: str, headers: dict[str, str], body: Any
    ) -> tuple[int, Any, _InMemoryBody] | None:
        """(status, headers, body) of a handler's answer, or None: send it on the network."""
        probe_body = _ViewFile(body) if isinstance(body, memoryview) else body
        probe = AWSPreparedRequest(method, url, headers, probe_body, True)  # type: ignore[arg-type]
        _, answer = self._events.emit_until_response(f"before-send.s3.{operation}", request=probe)
        if answer is None:
            return None
        return answer.status_code, answer.headers, _InMemoryBody(answer.raw.read())
