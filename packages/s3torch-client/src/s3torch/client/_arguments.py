"""Checks of the client's arguments, made before anything is sent: each error names the argument
(and the bucket and key it concerns)."""

from __future__ import annotations

import re
from typing import Any

#: What an HTTP header value must not hold: a CR or LF would end the header and start another.
_HEADER_BREAKERS = re.compile(r"[\r\n\x00]")
#: Whitespace and control characters, which no bucket name or region holds.
_BLANK_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f]")


def _check_name(value: Any, argument: str, missing: str, malformed: str) -> None:
    """A non-empty str without whitespace or control characters (a bucket name, a region)."""
    if value is None or value == "":
        raise ValueError(missing)
    if not isinstance(value, str):
        raise TypeError(f"{argument} must be a str, got {type(value).__name__}")
    if _BLANK_OR_CONTROL.search(value):
        raise ValueError(malformed.format(value))


def check_bucket(bucket: Any) -> None:
    """A bucket name (S3 and botocore check the rest; access point ARNs are names too)."""
    _check_name(
        bucket,
        "bucket",
        "Bucket should be specified",
        "Invalid bucket name {!r}: bucket names hold no whitespace or control characters",
    )


def check_region(region: Any) -> None:
    _check_name(
        region,
        "region",
        "region should be specified, for example 'us-east-1'",
        "region must be a region name such as 'us-east-1', got {!r}",
    )


def check_key(bucket: str, key: Any) -> None:
    """An object key: a non-empty str that UTF-8 can encode (S3 keys may hold any such character,
    CR and LF included: they travel percent-encoded in the request's path)."""
    if key is None or key == "":
        raise ValueError(f"Key should be specified (bucket {bucket!r})")
    if not isinstance(key, str):
        raise TypeError(f"key must be a str, got {type(key).__name__} (bucket {bucket!r})")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError(f"key {key!r} of bucket {bucket!r} cannot be encoded as UTF-8: {error.reason}") from None


def check_names(bucket: Any, key: Any) -> None:
    check_bucket(bucket)
    check_key(bucket, key)


def check_header_value(name: str, value: Any, where: str = "") -> None:
    """A str that goes into an HTTP header: CR, LF and NUL are refused (they would split it)."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}{where}")
    if _HEADER_BREAKERS.search(value):
        raise ValueError(
            f"{name} must not contain CR, LF or NUL characters (it goes into a header), got {value!r}{where}"
        )


def check_offset(name: str, value: Any, bucket: str, key: str) -> None:
    """``start`` or ``end`` of a range: None or an int >= 0."""
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int or None, got {type(value).__name__} for s3://{bucket}/{key}")
    if value < 0:
        raise ValueError(f"{name} must be non-negative, got {value} for s3://{bucket}/{key}")


def check_range(start: Any, end: Any, bucket: str, key: str) -> None:
    """``[start, end)``: offsets as ``check_offset`` wants (``end`` before ``start`` is an empty
    range, as in a slice of bytes)."""
    check_offset("start", start, bucket, key)
    check_offset("end", end, bucket, key)
