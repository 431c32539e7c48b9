"""Checkpoint paths: ``s3://bucket/key`` strings, and nothing else."""

from __future__ import annotations

from s3torch.client import parse_s3_uri


def checkpoint_location(path: object) -> tuple[str, str]:
    """The bucket and key of the checkpoint path ``path``.

    Raises:
        TypeError: ``path`` is not a string (a ``pathlib.Path`` names a local file); the
            upstream's message.
        ValueError: ``path`` is a string but not ``s3://bucket/key`` ("is not an S3 URI", "Bucket
            name must be non-empty", "names no object").
    """
    if not isinstance(path, str):
        raise TypeError(
            f"{type(path).__name__!r} is not a supported type for 'path'. Must be a string formatted as an S3 uri."
        )
    if not path.startswith("s3://"):
        raise ValueError(
            f"{path!r} is not an S3 URI: S3LightningCheckpoint reads and writes 's3://bucket/key' paths only"
            " (use Lightning's default TorchCheckpointIO for local files)"
        )
    bucket, key = parse_s3_uri(path)
    if not key or key.endswith("/"):
        raise ValueError(f"{path!r} names no object: expected 's3://bucket/key', where key does not end with '/'")
    return bucket, key
