"""Where an example runs: a real bucket named by ``--uri``, or an S3 server embedded in the
run (moto on 127.0.0.1, with dummy credentials). Needs no torch.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

LOCAL_BUCKET = "s3torch-demo"
LOCAL_REGION = "us-east-1"


@dataclass(frozen=True)
class Target:
    """A bucket and prefix to write under, and how to reach it."""

    region: str
    endpoint: str | None
    bucket: str
    prefix: str
    local: bool

    def uri(self, *parts: str) -> str:
        return "s3://" + "/".join([self.bucket, self.prefix, *parts])

    def key(self, *parts: str) -> str:
        return "/".join([self.prefix, *parts])


def add_target_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--uri",
        help="s3://bucket/prefix of a real bucket to run against (default: an S3 server embedded in this run)",
    )
    parser.add_argument("--region", default=None, help="the bucket's region (default: AWS_REGION, or us-east-1)")
    parser.add_argument("--endpoint", default=None, help="endpoint URL of an S3-compatible store")


def parse_s3_prefix(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://") or len(uri) <= len("s3://"):
        raise SystemExit(f"--uri must look like s3://bucket/prefix, got {uri!r}")
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    return bucket, prefix.strip("/")


def local_environment() -> None:
    """Dummy credentials for the embedded server, and no profile or proxy in the way. Set in
    the environment, so DataLoader workers and Lightning's own S3 accesses see them too."""
    os.environ["AWS_ACCESS_KEY_ID"] = "demo-access-key"
    os.environ["AWS_SECRET_ACCESS_KEY"] = "demo-secret-key"
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        os.environ.pop(name, None)
    for name in ("NO_PROXY", "no_proxy"):
        os.environ[name] = ",".join(filter(None, [os.environ.get(name), "127.0.0.1", "localhost"]))


@contextmanager
def local_s3_server() -> Iterator[str]:
    """A moto S3 server on a free port of 127.0.0.1; yields its endpoint URL.

    Started by the repository's test support (``packages/s3torch-test-support``, which
    ``tools/dev.py demo`` installs): the examples, the tests and the benchmarks share that one
    way of starting moto and waiting until it listens.
    """
    try:
        from s3torch_test_support.moto_server import MotoServer
    except ImportError as error:
        raise SystemExit(
            "the embedded S3 server needs the repository's test support:"
            f" pip install -e packages/s3torch-test-support ({error})"
        ) from error

    with MotoServer() as server:
        yield server.endpoint


def open_target(args: argparse.Namespace, stack: ExitStack, run_name: str) -> Target:
    """The bucket named by ``--uri``, or an embedded server (stopped by ``stack``) with a fresh
    bucket. On a real bucket every run writes under a prefix of its own."""
    if args.uri:
        bucket, prefix = parse_s3_prefix(args.uri)
        region = args.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or LOCAL_REGION
        run = f"{run_name}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        return Target(region, args.endpoint, bucket, "/".join(filter(None, [prefix, run])), local=False)
    local_environment()
    endpoint = stack.enter_context(local_s3_server())
    import boto3

    boto3.client("s3", region_name=LOCAL_REGION, endpoint_url=endpoint).create_bucket(Bucket=LOCAL_BUCKET)
    # Lightning's own s3:// accesses and the checkpoint_id paths find the server through these.
    os.environ["AWS_ENDPOINT_URL_S3"] = endpoint
    os.environ["AWS_DEFAULT_REGION"] = LOCAL_REGION
    return Target(LOCAL_REGION, endpoint, LOCAL_BUCKET, run_name, local=True)


def describe(target: Target) -> str:
    where = f"embedded S3 server at {target.endpoint}" if target.local else (target.endpoint or target.region)
    return f"{target.uri()} ({where})"
