"""The one check of a data-path GET's response against its request, before a byte is used.

Every ranged GET of the data path (a stream's first request, its parts, the remainder request,
every resume, and so every reader and DCP range group) goes through ``check_range_response``.
An answer that does not carry exactly the bytes asked for raises ``S3Exception`` naming the
object, the range asked and the answer; its body is dropped unread and its connection closed.
A server or proxy that ignores ``Range`` (a ``200`` with the object from byte 0), answers another
range, reports a different object size or an unknown one (``bytes a-b/*``), or frames the body
with another length can then never hand wrong bytes to a caller.

It costs one regular-expression match and a few comparisons per response, nothing per chunk.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from ._body import discard
from ._exceptions import S3Exception
from ._metrics import Counters

_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)", re.ASCII)
_UNSATISFIED_RANGE = re.compile(r"bytes \*/(\d+)", re.ASCII)


class CheckedRange(NamedTuple):
    """What a valid answer holds: the body covers ``[start, end)`` of an object of ``size`` bytes
    (``size`` None only for a 416 that did not say it); ``end == start`` for a 416 (nothing)."""

    start: int
    end: int
    size: int | None


def _span(start: int, end: int | None) -> str:
    return f"bytes={start}-{'' if end is None else end - 1}"


def check_range_response(
    response: Any,
    bucket: str,
    key: str,
    start: int,
    end: int | None,
    size: int | None,
    *,
    wanted_end: int | None,
    counters: Counters,
) -> CheckedRange:
    """Check the answer to ``GET Range: bytes=start-(end-1)`` (``end=None``: open) of an object of
    ``size`` bytes (None before the first answer gave it).

    * ``206`` needs ``Content-Range: bytes start-last/size`` with ``last = min(end, size) - 1``,
      a total equal to the known size, and a ``Content-Length`` of the span (unless chunked);
    * ``200`` (the whole object) is accepted only when the caller wants the object from byte 0
      to its end: ``start == 0`` and ``wanted_end`` (the end of what the caller reads: ``end``,
      or a stream's own end for its first request) is None or at least the size (known, or the
      declared ``Content-Length``);
    * ``416`` is the answer to a start at or past the end of the object: nothing to read;
    * anything else, including a ``Content-Range`` that is malformed or has an unknown total,
      raises ``S3Exception``, after the body was dropped (and counts an error in ``counters``).
    """
    status = response.status
    headers = response.headers
    content_range = headers.get("Content-Range")
    if status == 206:
        match = _CONTENT_RANGE.fullmatch(content_range) if content_range else None
        if match is not None and match[3] != "*":
            first, last, total = int(match[1]), int(match[2]), int(match[3])
            expected_last = (total if end is None else min(end, total)) - 1
            if first == start and last == expected_last and (size is None or total == size):
                length = headers.get("Content-Length")
                if length == str(last - first + 1) or (length is None and _is_chunked(headers)):
                    return CheckedRange(first, last + 1, total)
                problem = f"a Content-Length of {length!r} for a range of {last - first + 1} bytes"
            elif first != start or last != expected_last:
                problem = "another range than the one asked for"
            else:
                problem = f"an object size of {total} bytes where the object has {size}"
        elif match is not None:
            problem = "an unknown object size ('*'), so the end of the object cannot be checked"
        else:
            problem = "a missing or malformed Content-Range"
    elif status == 200:
        length = headers.get("Content-Length")
        declared = int(length) if length is not None and length.isascii() and length.isdigit() else None
        if declared is None:
            problem = "the whole object (the server ignored Range) without a usable Content-Length"
        elif size is not None and declared != size:
            problem = f"the whole object (the server ignored Range) of {declared} bytes where it has {size}"
        elif start == 0 and (wanted_end is None or wanted_end >= declared):
            return CheckedRange(0, declared, declared)
        else:
            problem = "the whole object from byte 0: the server (or a proxy) ignored the Range header"
    elif status == 416:
        unsatisfied = _UNSATISFIED_RANGE.fullmatch(content_range) if content_range else None
        said = int(unsatisfied[1]) if unsatisfied is not None else size if size is not None else None
        said = 0 if said is None and start == 0 else said  # an empty object: S3 says nothing more
        if said is None or (start >= said and (size is None or said == size)):
            if response.body is not None:
                discard(response.body)
            return CheckedRange(start, start, said)
        problem = f"416 (range not satisfiable) for a start inside an object of {said} bytes"
    else:
        problem = "an unexpected status"
    if response.body is not None:
        discard(response.body)
    counters.refused()
    raise S3Exception(
        f"Client error: GetObject s3://{bucket}/{key} asked for {_span(start, end)} and got status {status}"
        f" with Content-Range {content_range!r}: {problem}; no byte of it was used",
        bucket=bucket,
        key=key,
        status=status,
        request_id=getattr(response, "request_id", None),
    )


def _is_chunked(headers: Any) -> bool:
    return "chunked" in (headers.get("Transfer-Encoding") or "").lower()
