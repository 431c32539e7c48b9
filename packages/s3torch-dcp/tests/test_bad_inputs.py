"""Bad inputs to s3torch-dcp, as one table: each raises a ValueError or TypeError naming the
argument (the upstream's texts where it documents them) when the object is built, before any
request."""

# ruff: noqa: E501  (a table reads best one case per line)

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from s3torch.client import S3ClientConfig
from s3torch.dcp import (
    BinaryPrefixStrategy,
    HexPrefixStrategy,
    NumericPrefixStrategy,
    RoundRobinPrefixStrategy,
    S3Checkpoint,
    S3FileSystem,
    S3StorageReader,
    S3StorageWriter,
)
from s3torch.readers import S3ReaderConstructor

REGION = "us-east-1"
PATH = "s3://bucket/checkpoint"

# (id, call, exception type, a regex the message must match)
BAD_INPUTS: list[tuple[str, Callable[[], Any], type[Exception], str]] = [
    # ---- S3StorageWriter ---------------------------------------------------------------------
    ("writer-region-none", lambda: S3StorageWriter(None, PATH), ValueError, r"region should be specified"),
    ("writer-path-local", lambda: S3StorageWriter(REGION, "/tmp/checkpoint"), ValueError,
     r"^Only s3:// URIs are supported, got '/tmp/checkpoint'$"),
    ("writer-path-none", lambda: S3StorageWriter(REGION, None), ValueError, r"^Only s3:// URIs are supported, got None$"),
    ("writer-path-no-bucket", lambda: S3StorageWriter(REGION, "s3:///key"), ValueError, r"^Bucket name must be non-empty"),
    ("writer-thread_count-zero", lambda: S3StorageWriter(REGION, PATH, thread_count=0), ValueError,
     r"thread_count must be a positive integer, got 0"),
    ("writer-thread_count-str", lambda: S3StorageWriter(REGION, PATH, thread_count="4"), ValueError,
     r"thread_count must be a positive integer, got '4'"),
    ("writer-thread_count-bool", lambda: S3StorageWriter(REGION, PATH, thread_count=True), ValueError, r"thread_count"),
    ("writer-prefix_strategy-str", lambda: S3StorageWriter(REGION, PATH, prefix_strategy="binary"), TypeError,
     r"prefix_strategy must be an S3PrefixStrategyBase .* got str"),
    ("writer-config-dict", lambda: S3StorageWriter(REGION, PATH, s3client_config={}), TypeError,
     r"s3client_config must be an S3ClientConfig"),
    ("writer-config-inf", lambda: S3StorageWriter(REGION, PATH, S3ClientConfig(throughput_target_gbps=float("inf"))),
     ValueError, r"throughput_target_gbps must be a positive, finite number"),
    # ---- S3StorageReader ---------------------------------------------------------------------
    ("reader-path-bucket-only", lambda: S3StorageReader(REGION, "s3://"), ValueError, r"^Bucket name must be non-empty"),
    ("reader-path-relative", lambda: S3StorageReader(REGION, Path("checkpoint")), ValueError,
     r"^Only s3:// URIs are supported, got PosixPath\('checkpoint'\)$"),
    ("reader-reader_constructor-str", lambda: S3StorageReader(REGION, PATH, reader_constructor="dcp_optimized"),
     TypeError, r"reader_constructor must be a reader constructor, not the string 'dcp_optimized': use S3ReaderConstructor\.dcp_optimized\(\)"),
    ("reader-reader_constructor-factory",
     lambda: S3StorageReader(REGION, PATH, reader_constructor=S3ReaderConstructor.dcp_optimized), TypeError,
     r"call the factory, S3ReaderConstructor\.dcp_optimized\(\)"),
    ("reader-endpoint-int", lambda: S3StorageReader(REGION, PATH, endpoint=9000), TypeError, r"endpoint must be a URL"),
    # ---- S3FileSystem ------------------------------------------------------------------------
    ("fs-region-int", lambda: S3FileSystem(1), TypeError, r"region must be a str"),
    ("fs-s3_client-str", lambda: S3FileSystem(REGION, s3_client="client"), TypeError,
     r"s3_client must be an S3Client or None, got str"),
    ("fs-reader_constructor-str", lambda: S3FileSystem(REGION, reader_constructor="sequential"), TypeError,
     r"use S3ReaderConstructor\.sequential\(\)"),
    ("fs-init_path-local", lambda: S3FileSystem(REGION).init_path("/tmp/x"), ValueError, r"^Only s3:// URIs are supported"),
    ("fs-create_stream-mode", lambda: S3FileSystem(REGION).create_stream(PATH + "/f", "ab").__enter__(), ValueError,
     r"^Invalid mode='ab' mode argument: create_stream only supports rb \(read mode\) & wb \(write mode\)$"),
    ("fs-rename-buckets", lambda: S3FileSystem(REGION).rename("s3://a/k", "s3://b/k"), ValueError,
     r"^Source and destination buckets cannot be different \(rename does not support cross-buckets operations\)$"),
    # ---- S3Checkpoint ------------------------------------------------------------------------
    ("checkpoint-region-none", lambda: S3Checkpoint(None), ValueError, r"region should be specified"),
    ("checkpoint-reader_constructor-str", lambda: S3Checkpoint(REGION, reader_constructor="range_based"), TypeError,
     r"use S3ReaderConstructor\.range_based\(\)"),
    ("checkpoint-reader-uri-bucket", lambda: S3Checkpoint(REGION).reader("s3://bucket"), ValueError,
     r"^Key must be non-empty: 's3://bucket' names a bucket, not an object$"),
    ("checkpoint-reader-reader_constructor-int", lambda: S3Checkpoint(REGION).reader(PATH, reader_constructor=3),
     TypeError, r"reader_constructor must be a reader constructor or None, got int"),
    ("checkpoint-writer-uri", lambda: S3Checkpoint(REGION).writer("bucket/key"), ValueError,
     r"^Only s3:// URIs are supported"),
    # ---- prefix strategies -------------------------------------------------------------------
    ("round-robin-empty", lambda: RoundRobinPrefixStrategy([]), ValueError, r"^Prefixes list cannot be empty\.$"),
    ("round-robin-str", lambda: RoundRobinPrefixStrategy("abc"), TypeError, r"user_prefixes must be a list of str, got 'abc'"),
    ("round-robin-ints", lambda: RoundRobinPrefixStrategy([1, 2]), TypeError, r"user_prefixes must be a list of str"),
    ("round-robin-epoch-str", lambda: RoundRobinPrefixStrategy(["a"], epoch_num="1"), ValueError,
     r"^Epoch number must be None or an integer, got '1'$"),
    ("numeric-base-1", lambda: NumericPrefixStrategy(base=1), ValueError, r"Base must be an integer from 2 to 36, got 1"),
    ("numeric-base-str", lambda: NumericPrefixStrategy(base="2"), ValueError, r"Base must be an integer"),
    ("binary-prefix_count-zero", lambda: BinaryPrefixStrategy(prefix_count=0), ValueError,
     r"Prefix count must be a positive integer, got 0"),
    ("hex-min_prefix_length-negative", lambda: HexPrefixStrategy(min_prefix_length=-1), ValueError,
     r"Minimum prefix length must be at least 1, got -1"),
    ("hex-epoch-bool", lambda: HexPrefixStrategy(epoch_num=True), ValueError, r"Epoch number must be None or an integer"),
]  # fmt: skip


@pytest.mark.parametrize(("call", "error", "message"), [c[1:] for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS])
def test_a_bad_input_raises_a_clear_error(call: Callable[[], Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        call()


def test_valid_paths_of_every_shape_are_taken() -> None:
    assert S3StorageWriter(REGION, "s3://bucket").path == "s3://bucket"
    assert S3StorageReader(REGION, Path("s3://bucket/ckpt")).path == "s3://bucket/ckpt"  # pathlib's s3:/ undone
    assert S3StorageWriter(REGION, PATH, prefix_strategy=lambda rank: f"r{rank}_").prefix_strategy(3) == "r3_"
