"""What s3torch adds to each botocore call, hooked into its client through its public events.

botocore retries control-path operations (list, head, multipart create/complete/abort, ...)
itself, up to ``max_attempts``. These handlers add what its configuration cannot say: no new
attempt starts once ``retry_deadline`` has passed since the first one (the operation then
raises, naming its attempts and its last failure), and each operation is counted in the
transport's ``Counters`` and logged on one DEBUG line, like the data path's requests. And each
call carries the User-Agent of the component that made it (``calling_as``): one transport, and
so one botocore client, serves every component of a process.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import time
from typing import Any

from botocore.exceptions import BotoCoreError

from ._metrics import Counters
from ._user_agent import UserAgent

logger = logging.getLogger(__name__)

THROTTLE_STATUS = frozenset({429, 503})
THROTTLE_CODES = frozenset({"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded"})


class RetryDeadlineExceeded(BotoCoreError):
    """No new attempt of a control-path operation: its ``retry_deadline`` has passed."""

    fmt = "gave up after {attempts} attempts in {elapsed:.1f} s (retry_deadline={deadline} s); last failure: {last}"


class _Call:
    """What is known of one botocore operation, kept in its request context."""

    __slots__ = ("attempts", "body_counted", "bucket", "key", "last", "name", "sent", "started", "throttles")

    def __init__(self, model: Any, bucket: str | None, key: str | None) -> None:
        self.name: str = model.name
        # A HEAD answer has no body; a GetObject body is counted as it is read.
        self.body_counted = model.http.get("method") != "HEAD" and self.name != "GetObject"
        self.bucket = bucket
        self.key = key
        self.started = time.monotonic()
        self.attempts = 0
        self.throttles = 0
        self.sent = 0  # body bytes of each attempt
        self.last = "none"


_CONTEXT_KEY = "s3torch_call"
# The User-Agent comments of the call in progress in this thread (botocore emits in the caller's thread).
_CALLER: contextvars.ContextVar[str | None] = contextvars.ContextVar("s3torch_user_agent", default=None)


def current_user_agent() -> str:
    """The User-Agent of the component whose request is being sent (``calling_as``); outside
    any, the default ``UserAgent()``'s."""
    agent = _CALLER.get()
    return _default_user_agent() if agent is None else agent


@functools.cache
def _default_user_agent() -> str:
    return UserAgent().prefix


class calling_as:  # used as a function: ``with calling_as(agent):``
    """Requests sent inside (by this thread) carry ``user_agent`` in their User-Agent: at the end
    of botocore's on the control path, as the whole header on the data path. (A class, not a
    generator: it runs once per data-path request.)"""

    __slots__ = ("_agent", "_token")

    def __init__(self, user_agent: str) -> None:
        self._agent = user_agent

    def __enter__(self) -> None:
        self._token = _CALLER.set(self._agent)

    def __exit__(self, *exc_info: object) -> None:
        _CALLER.reset(self._token)


class ControlHooks:
    """Registers on a botocore S3 client's events; one per transport."""

    def __init__(self, client: Any, counters: Counters, retry_deadline: float) -> None:
        self._counters = counters
        self._deadline = retry_deadline
        events = client.meta.events
        events.register("before-parameter-build.s3", self._started)
        events.register("request-created.s3", self._attempting)
        events.register("needs-retry.s3", self._attempted)
        events.register("after-call.s3", self._answered)
        events.register("after-call-error.s3", self._failed)
        # After botocore's own handler, which rebuilds the User-Agent just before sending.
        events.register_last("request-created.s3", self._add_user_agent)

    @staticmethod
    def _add_user_agent(request: Any, **_: Any) -> None:
        comments = current_user_agent()
        if "User-Agent" in request.headers:
            request.headers.replace_header("User-Agent", f"{request.headers['User-Agent']} {comments}")

    def _started(self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        bucket, key = params.get("Bucket"), params.get("Key")
        context[_CONTEXT_KEY] = _Call(
            model, bucket if isinstance(bucket, str) else None, key if isinstance(key, str) else None
        )

    def _attempting(self, request: Any, **_: Any) -> None:
        call: _Call | None = getattr(request, "context", {}).get(_CONTEXT_KEY)
        if call is None:
            return
        elapsed = time.monotonic() - call.started
        if call.attempts and elapsed >= self._deadline:
            raise RetryDeadlineExceeded(
                attempts=call.attempts, elapsed=elapsed, deadline=self._deadline, last=call.last
            )
        body = request.data
        call.sent = len(body) if isinstance(body, (bytes, bytearray)) else 0

    def _attempted(
        self, response: Any, caught_exception: BaseException | None, request_dict: dict[str, Any], **_: Any
    ) -> None:
        # Called after every attempt, before botocore decides whether to retry; never decides.
        call: _Call | None = request_dict.get("context", {}).get(_CONTEXT_KEY)
        if call is None:
            return
        call.attempts += 1
        if caught_exception is not None:
            call.last = f"{type(caught_exception).__name__}: {caught_exception}"
            return
        if response is None:
            return
        http, parsed = response
        status = http.status_code
        code = parsed.get("Error", {}).get("Code") if isinstance(parsed, dict) else None
        if status >= 300:
            call.last = f"HTTP {status} {code or ''}".rstrip()
        if status in THROTTLE_STATUS or code in THROTTLE_CODES:
            call.throttles += 1

    def _answered(self, http_response: Any, context: dict[str, Any], **_: Any) -> None:
        call: _Call | None = context.get(_CONTEXT_KEY)
        if call is None:
            return
        length = http_response.headers.get("content-length", "")
        if call.body_counted and length.isdigit():
            self._counters.received(int(length))
        self._finish(call, http_response.status_code)

    def _failed(self, exception: BaseException, context: dict[str, Any], **_: Any) -> None:
        call: _Call | None = context.get(_CONTEXT_KEY)
        if call is None:
            return
        self._finish(call, exception)

    def _finish(self, call: _Call, outcome: int | BaseException) -> None:
        # botocore raises for an answer of 300 or more: an error of the operation either way.
        failed = isinstance(outcome, BaseException) or outcome >= 300
        attempts = max(call.attempts, 1)
        self._counters.operation(
            call.name, call.bucket, call.key, outcome, attempts, call.started, call.sent, call.throttles, failed
        )
