"""Retries of the data path: which failures are retried, how long to wait, and what a failed
request may have done all the same (its answer lost, or an earlier attempt acted)."""

from __future__ import annotations

import random
from collections.abc import Mapping

import botocore.exceptions
import urllib3.exceptions
from botocore.exceptions import ClientError, HTTPClientError

from ._exceptions import S3Exception

__all__ = [
    "RETRY_AFTER_CAP_SECONDS",
    "Attempts",
    "answer_lost",
    "may_have_published",
    "retry_after",
    "retry_attempts",
    "retry_delay",
    "retryable",
]

_RETRYABLE_STATUS = frozenset({500, 502, 503, 504, 429})
# ConditionalRequestConflict: a create-only PutObject raced another write to its key; S3 asks
# for a retry, which then creates the object or finds it (412).
_RETRYABLE_CODES = frozenset(
    {"SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable", "Throttling", "ConditionalRequestConflict"}
)
_BACKOFF_BASE_SECONDS = 0.05
_BACKOFF_CAP_SECONDS = 20.0
#: The longest ``Retry-After`` (seconds form) honoured; a longer one waits this long.
RETRY_AFTER_CAP_SECONDS = 20.0
# Statuses whose Retry-After is honoured.
_RETRY_AFTER_STATUS = frozenset({429, 500, 503})
_LOST_ANSWER_ERRORS = (HTTPClientError, botocore.exceptions.ConnectionError, OSError, urllib3.exceptions.HTTPError)


def retryable(status: int, code: str | None) -> bool:
    """Whether an error answer asks for another attempt."""
    return status in _RETRYABLE_STATUS or code in _RETRYABLE_CODES


def retry_after(status: int, headers: Mapping[str, str]) -> str | None:
    """The ``Retry-After`` of an answer whose status honours it, else None."""
    return headers.get("Retry-After") if status in _RETRY_AFTER_STATUS else None


def retry_delay(attempt: int, retry_after: str | None = None) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based): the server's ``Retry-After``
    (seconds form) up to ``RETRY_AFTER_CAP_SECONDS``, else full-jitter exponential back-off."""
    if retry_after is not None:
        value = retry_after.strip()
        if value.isascii() and value.isdigit():
            return min(float(value), RETRY_AFTER_CAP_SECONDS)
    return random.uniform(0, min(_BACKOFF_CAP_SECONDS, _BACKOFF_BASE_SECONDS * 2**attempt))


class Attempts(Exception):
    """The cause of an error reply to a request sent ``count`` times (see ``retry_attempts``)."""

    def __init__(self, count: int) -> None:
        super().__init__(f"sent {count} times")
        self.count = count


def retry_attempts(error: S3Exception) -> int:
    """How many times the request of an error reply was retried: botocore's retry context
    (``ResponseMetadata.RetryAttempts``, on the ``ClientError`` we translated), or ours
    (``Attempts``). Each earlier attempt may have acted although its answer was lost."""
    cause = error.__cause__
    if isinstance(cause, ClientError):
        retries: int = cause.response.get("ResponseMetadata", {}).get("RetryAttempts", 0)
        return retries
    if isinstance(cause, Attempts):
        return cause.count - 1
    return 0


def answer_lost(error: S3Exception) -> bool:
    """Whether the last attempt of the request of ``error`` got no answer (it may have acted)."""
    return error.status is None and isinstance(error.__cause__, _LOST_ANSWER_ERRORS)


def may_have_published(error: S3Exception) -> bool:
    """Whether a failed PutObject or CompleteMultipartUpload may have published all the same: its
    last answer was lost, or a retry found the object (412, create-only) or the upload already
    completed (NoSuchUpload)."""
    if answer_lost(error):
        return True
    return error.code in ("PreconditionFailed", "NoSuchUpload") and retry_attempts(error) > 0
