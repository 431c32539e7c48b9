"""Checkpoint paths as text: ``pathlib`` collapses ``s3://`` to ``s3:/``, and DCP joins paths with ``os.path``."""

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
