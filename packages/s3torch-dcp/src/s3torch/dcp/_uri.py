"""``s3://bucket/key`` URIs: parsing, and the paths DCP builds from them."""

from __future__ import annotations

import os

_SCHEME = "s3://"


def path_to_str(path: str | os.PathLike[str]) -> str:
    """A checkpoint path as a string. ``pathlib`` collapses ``s3://`` to ``s3:/``; undo that."""
    text = os.fspath(path)
    if not isinstance(text, str):
        raise TypeError(f"an S3 path must be a str or os.PathLike[str], not {type(path).__name__}")
    if text.startswith("s3:/") and not text.startswith(_SCHEME):
        text = _SCHEME + text[len("s3:/") :]
    return text


def parse_s3_uri(uri: str | os.PathLike[str]) -> tuple[str, str]:
    """``"s3://bucket/some/key"`` -> ``("bucket", "some/key")``; the key may be empty.

    Raises:
        ValueError: not an ``s3://`` URI, or no bucket name (the upstream's messages).
    """
    text = path_to_str(uri)
    if not text.startswith(_SCHEME):
        raise ValueError("Only s3:// URIs are supported")
    bucket, _, key = text[len(_SCHEME) :].partition("/")
    if not bucket:
        raise ValueError("Bucket name must be non-empty")
    return bucket, key


def parse_object_uri(uri: str | os.PathLike[str]) -> tuple[str, str]:
    """Like ``parse_s3_uri``, for an object: the key must not be empty."""
    bucket, key = parse_s3_uri(uri)
    if not key:
        raise ValueError(f"Key must be non-empty: {path_to_str(uri)!r} names a bucket, not an object")
    return bucket, key
