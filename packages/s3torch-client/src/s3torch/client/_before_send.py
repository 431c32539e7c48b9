"""botocore's ``before-send`` event on the data path: a registered handler may answer a request
in place of the network, as it may for any botocore client.

This is botocore compatibility, not a test seam. botocore emits ``before-send.s3.<Operation>``
with the prepared request before it sends one, and a handler that returns an ``AWSResponse``
answers it; moto's ``mock_aws`` works this way, as does any handler a program registers on
botocore's events. The data path (GetObject, PutObject, UploadPart) sends its requests without
botocore's client, so it emits the same event itself: users' tests under ``mock_aws`` see one S3
whichever path a call takes. Handlers count when they are registered before the transport's
botocore client is built (as botocore's built-in and session handlers are, moto's included);
without one the cost is one boolean test per request. (botocore's ``Stubber`` answers
``before-call`` with parsed responses, not ``before-send``: it stubs the control path only.)
"""

from __future__ import annotations

import io
from typing import Any

from botocore.awsrequest import AWSPreparedRequest

from ._botocore_compat import has_handlers

__all__ = ["DATA_PATH_OPERATIONS", "BeforeSend", "BytesBody"]

#: The operations the data path sends itself, so emits ``before-send`` for.
DATA_PATH_OPERATIONS = ("GetObject", "PutObject", "UploadPart")


class _ViewFile:
    """A memoryview request body as a file, for before-send handlers (copied only if read)."""

    def __init__(self, view: memoryview) -> None:
        self._view = view

    def read(self, amount: int | None = None) -> bytes:
        return self._view.tobytes()


class BytesBody:
    """A response body held in memory (a before-send handler's answer), with the methods of the
    transport's response bodies."""

    def __init__(self, payload: bytes) -> None:
        self._file = io.BytesIO(payload)

    @property
    def closed(self) -> bool:
        return self._file.closed

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
    """The ``before-send`` handlers of one botocore client, asked before each data-path request."""

    def __init__(self, client: Any) -> None:
        self._events = client.meta.events
        self.active = any(has_handlers(client, f"before-send.s3.{operation}") for operation in DATA_PATH_OPERATIONS)

    def answer(
        self, operation: str, method: str, url: str, headers: dict[str, str], body: Any
    ) -> tuple[int, Any, BytesBody] | None:
        """(status, headers, body) of a handler's answer, or None: send it on the network."""
        probe_body = _ViewFile(body) if isinstance(body, memoryview) else body
        probe = AWSPreparedRequest(method, url, headers, probe_body, True)  # type: ignore[arg-type]
        _, answer = self._events.emit_until_response(f"before-send.s3.{operation}", request=probe)
        if answer is None:
            return None
        # AWSResponse.content: the whole answer, as botocore itself reads a non-streamed one.
        return answer.status_code, answer.headers, BytesBody(answer.content)
