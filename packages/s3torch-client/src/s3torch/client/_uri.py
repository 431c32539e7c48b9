"""``s3://bucket/key`` URIs: the one parser every s3torch distribution uses."""

from __future__ import annotations

import os

_SCHEME = "s3://"


def parse_s3_uri(uri: str | os.PathLike[str], *, require_key: bool = False) -> tuple[str, str]:
    """Split ``"s3://bucket/some/key"`` into ``("bucket", "some/key")``.

    A ``pathlib`` path is taken too (``Path("s3://b/k")`` collapses ``s3://`` to ``s3:/``: that
    is undone). The key may be empty (``s3://bucket``, ``s3://bucket/``) unless ``require_key``.

    Raises:
        ValueError: ``uri`` is not an ``s3://`` URI ("Only s3:// URIs are supported"), names no
            bucket ("Bucket name must be non-empty") or, with ``require_key``, no object ("Key
            must be non-empty"); the upstream's texts, then the URI.
    """
    text = os.fspath(uri) if isinstance(uri, os.PathLike) else uri
    if isinstance(uri, os.PathLike) and isinstance(text, str) and text.startswith("s3:/") and text[4:5] != "/":
        text = _SCHEME + text[len("s3:/") :]
    if not isinstance(text, str) or not text.startswith(_SCHEME):
        raise ValueError(f"Only s3:// URIs are supported, got {uri!r}")
    bucket, _, key = text[len(_SCHEME) :].partition("/")
    if not bucket:
        raise ValueError(f"Bucket name must be non-empty, got {text!r}")
    if require_key and not key:
        raise ValueError(f"Key must be non-empty: {text!r} names a bucket, not an object")
    return bucket, key
