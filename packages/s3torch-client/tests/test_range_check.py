"""``check_range_response``: every answer to a data-path GET that does not carry exactly the
bytes asked for is refused with ``S3Exception`` before a byte is used, and its body dropped."""

from __future__ import annotations

from typing import Any

import pytest

from s3torch.client import S3Exception
from s3torch.client._before_send import BytesBody
from s3torch.client._body import RawResponse
from s3torch.client._http import Headers
from s3torch.client._metrics import Counters
from s3torch.client._range_check import CheckedRange, check_range_response

SIZE = 1000
COUNTERS = Counters()


def answer(status: int, headers: dict[str, str], body: bytes = b"") -> RawResponse:
    fields = Headers()
    for name, value in headers.items():
        fields[name.lower()] = value
    return RawResponse(status, fields, BytesBody(body), "request-1")


def partial(first: int, last: int, total: int | str = SIZE, length: int | None = None) -> RawResponse:
    count = last - first + 1
    return answer(206, {"Content-Range": f"bytes {first}-{last}/{total}", "Content-Length": str(length or count)})


def check(response: RawResponse, start: int, end: int | None, size: int | None, wanted_end: Any = "same") -> Any:
    wanted = end if wanted_end == "same" else wanted_end
    return check_range_response(response, "bucket", "key", start, end, size, wanted_end=wanted, counters=COUNTERS)


@pytest.mark.parametrize(
    ("response", "start", "end", "size", "expected"),
    [
        (partial(0, 99), 0, 100, None, CheckedRange(0, 100, SIZE)),
        (partial(0, 99), 0, 100, SIZE, CheckedRange(0, 100, SIZE)),
        (partial(900, 999), 900, 1100, None, CheckedRange(900, 1000, SIZE)),  # asked past the end
        (partial(900, 999), 900, None, SIZE, CheckedRange(900, 1000, SIZE)),  # open range
        (partial(0, 0, total=1), 0, 100, None, CheckedRange(0, 1, 1)),
        (answer(200, {"Content-Length": str(SIZE)}), 0, SIZE, None, CheckedRange(0, SIZE, SIZE)),
        (answer(200, {"Content-Length": str(SIZE)}), 0, None, SIZE, CheckedRange(0, SIZE, SIZE)),
        (answer(200, {"Content-Length": "0"}), 0, 100, None, CheckedRange(0, 0, 0)),  # empty object
        (answer(416, {"Content-Range": f"bytes */{SIZE}"}), SIZE, None, None, CheckedRange(SIZE, SIZE, SIZE)),
        (
            answer(416, {"Content-Range": f"bytes */{SIZE}"}),
            SIZE + 5,
            SIZE + 9,
            SIZE,
            CheckedRange(SIZE + 5, SIZE + 5, SIZE),
        ),
        (answer(416, {}), 0, 100, None, CheckedRange(0, 0, 0)),  # an empty object, size not said
        (answer(416, {}), 50, 100, None, CheckedRange(50, 50, None)),
        (
            answer(206, {"Content-Range": "bytes 0-99/1000", "Transfer-Encoding": "chunked"}),
            0,
            100,
            None,
            CheckedRange(0, 100, SIZE),
        ),
    ],
)
def test_answers_carrying_the_bytes_asked_for_pass(
    response: RawResponse, start: int, end: int | None, size: int | None, expected: CheckedRange
) -> None:
    assert check(response, start, end, size) == expected
    assert not response.body.closed or response.status == 416


def test_a_200_passes_for_a_stream_that_reads_the_whole_object() -> None:
    # The first request of a stream over [0, end of object) asks for one part; a store that
    # ignores Range sends the whole object, which is what the stream wants.
    whole = answer(200, {"Content-Length": str(SIZE)})
    assert check(whole, 0, 100, None, wanted_end=None) == CheckedRange(0, SIZE, SIZE)
    assert check(answer(200, {"Content-Length": str(SIZE)}), 0, 100, None, wanted_end=SIZE) == CheckedRange(
        0, SIZE, SIZE
    )


@pytest.mark.parametrize(
    ("response", "start", "end", "size", "problem"),
    [
        # 200 to a ranged GET that does not cover the whole object
        (answer(200, {"Content-Length": str(SIZE)}), 0, 100, None, "ignored the Range header"),
        (answer(200, {"Content-Length": str(SIZE)}), 500, 600, SIZE, "ignored the Range header"),
        (answer(200, {"Content-Length": str(SIZE)}), 500, None, SIZE, "ignored the Range header"),
        (answer(200, {"Content-Length": str(SIZE + 1)}), 0, None, SIZE, "where it has 1000"),
        (answer(200, {}), 0, None, None, "without a usable Content-Length"),
        (answer(200, {"Content-Length": "ten"}), 0, None, None, "without a usable Content-Length"),
        # Content-Range with an unknown total, a wrong start, end or total, malformed, missing
        (partial(0, 99, total="*"), 0, 100, None, "unknown object size"),
        (partial(1, 100), 0, 100, None, "another range"),
        (partial(0, 98), 0, 100, None, "another range"),
        (partial(0, 100), 0, 100, None, "another range"),
        (partial(900, 998), 900, None, SIZE, "another range"),
        (partial(0, 99, total=SIZE + 1), 0, 100, SIZE, "object size of 1001 bytes where the object has 1000"),
        (answer(206, {"Content-Range": "bytes 0-99", "Content-Length": "100"}), 0, 100, None, "malformed"),
        (answer(206, {"Content-Range": "bytes=0-99/1000", "Content-Length": "100"}), 0, 100, None, "malformed"),
        (answer(206, {"Content-Range": "bytes x-99/1000", "Content-Length": "100"}), 0, 100, None, "malformed"),
        (answer(206, {"Content-Range": "bytes ²-99/1000", "Content-Length": "100"}), 0, 100, None, "malformed"),
        (answer(206, {"Content-Range": "bytes */1000", "Content-Length": "100"}), 0, 100, None, "malformed"),
        (answer(206, {"Content-Length": "100"}), 0, 100, None, "missing or malformed"),
        # Content-Length not the span
        (partial(0, 99, length=101), 0, 100, None, "Content-Length of '101' for a range of 100 bytes"),
        (answer(206, {"Content-Range": "bytes 0-99/1000"}), 0, 100, None, "Content-Length of None"),
        # 416 for a start inside the object
        (answer(416, {"Content-Range": f"bytes */{SIZE}"}), 10, 100, None, "416"),
        (answer(416, {}), 10, 100, SIZE, "416"),
        (answer(416, {"Content-Range": "bytes */2000"}), 1500, 1600, SIZE, "416"),
        # other statuses
        (answer(204, {}), 0, 100, None, "unexpected status"),
        (answer(304, {}), 0, 100, SIZE, "unexpected status"),
    ],
)
def test_other_answers_raise_naming_request_and_answer(
    response: RawResponse, start: int, end: int | None, size: int | None, problem: str
) -> None:
    errors = COUNTERS.snapshot().errors
    with pytest.raises(S3Exception, match=problem) as caught:
        check(response, start, end, size)
    assert COUNTERS.snapshot().errors == errors + 1
    message = str(caught.value)
    assert "s3://bucket/key" in message
    assert f"asked for bytes={start}-{'' if end is None else end - 1} " in message
    assert f"status {response.status}" in message
    assert repr(response.headers.get("Content-Range")) in message
    assert (caught.value.bucket, caught.value.key, caught.value.status) == ("bucket", "key", response.status)
    assert caught.value.request_id == "request-1"
    assert response.body.closed  # dropped: the connection is never reused
