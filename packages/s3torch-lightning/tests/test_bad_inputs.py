"""Bad inputs to S3LightningCheckpoint, as one table: each raises a ValueError or TypeError naming
the argument (the upstream's text for a path that is not a string), before any request."""

# ruff: noqa: E501  (a table reads best one case per line)

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from s3torch.client import S3ClientConfig
from s3torch.lightning import S3LightningCheckpoint

REGION = "us-east-1"


def plugin() -> S3LightningCheckpoint:
    return S3LightningCheckpoint(REGION)


# (id, call, exception type, a regex the message must match)
BAD_INPUTS: list[tuple[str, Callable[[], Any], type[Exception], str]] = [
    ("region-none", lambda: S3LightningCheckpoint(None), ValueError, r"region should be specified"),
    ("region-int", lambda: S3LightningCheckpoint(5), TypeError, r"region must be a str"),
    ("region-crlf", lambda: S3LightningCheckpoint("us-east-1\n"), ValueError, r"region must be a region name"),
    ("s3client_config-dict", lambda: S3LightningCheckpoint(REGION, {"part_size": 1}), TypeError,
     r"s3client_config must be an S3ClientConfig or None, got dict"),
    ("s3client_config-throughput-str", lambda: S3LightningCheckpoint(REGION, S3ClientConfig(throughput_target_gbps="1")),
     TypeError, r"throughput_target_gbps must be a number, got str"),
    ("endpoint-int", lambda: S3LightningCheckpoint(REGION, endpoint=9000), TypeError, r"endpoint must be a URL"),
    ("save-path-pathlib", lambda: plugin().save_checkpoint({}, Path("s3://b/k")), TypeError,
     r"^'PosixPath' is not a supported type for 'path'\. Must be a string formatted as an S3 uri\.$"),
    ("save-path-local", lambda: plugin().save_checkpoint({}, "/tmp/last.ckpt"), ValueError,
     r"'/tmp/last\.ckpt' is not an S3 URI"),
    ("save-path-prefix", lambda: plugin().save_checkpoint({}, "s3://bucket/dir/"), ValueError,
     r"'s3://bucket/dir/' names no object"),
    ("load-path-no-bucket", lambda: plugin().load_checkpoint("s3:///k"), ValueError, r"^Bucket name must be non-empty, got 's3:///k'$"),
    ("load-path-int", lambda: plugin().load_checkpoint(3), TypeError, r"'int' is not a supported type for 'path'"),
    ("remove-path-bucket-only", lambda: plugin().remove_checkpoint("s3://bucket"), ValueError,
     r"'s3://bucket' names no object"),
]  # fmt: skip


@pytest.mark.parametrize(("call", "error", "message"), [c[1:] for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS])
def test_a_bad_input_raises_a_clear_error(call: Callable[[], Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        call()
