"""Write of the large object: s3torch-client's writer next to boto3's ``upload_fileobj``."""

from __future__ import annotations

import functools
from typing import Any

from botocore.exceptions import ClientError
from fixtures import PatternReader, boto3_client, s3torch_client
from measure import BenchmarkError, Transfer, in_process
from scenario import BenchContext, Check, Ratio, Scenario, register
from servers import MOTO, REMOTE
from settings import MIB

BOTO3_UPLOAD = "boto3 upload_fileobj"
S3TORCH_WRITE = "s3torch put_object, 8 MiB writes"

WRITE_CHUNK_SIZE = 8 * MIB


def _ensure_bucket(client: Any, bucket: str) -> None:
    try:
        client.create_bucket(Bucket=bucket)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise


def build(context: BenchContext, profile: str) -> Scenario:
    store = context.store(profile)
    bucket = store.bucket
    size = context.settings.size
    key = f"{context.key_prefix}written/large.bin"
    expected = Transfer(size)
    boto = boto3_client(store)
    if profile == MOTO:
        _ensure_bucket(boto, bucket)
    client = s3torch_client(store)

    # Warm both clients (botocore client, endpoint resolution, first connection) unmeasured.
    warm_key = f"{context.key_prefix}written/warm-up.bin"
    boto.put_object(Bucket=bucket, Key=warm_key, Body=b"warm")
    with client.put_object(bucket, warm_key) as writer:
        writer.write(b"warm")
    boto.delete_object(Bucket=bucket, Key=warm_key)

    def verify_and_delete() -> None:
        written = boto.head_object(Bucket=bucket, Key=key)["ContentLength"]
        boto.delete_object(Bucket=bucket, Key=key)
        if written != size:
            raise BenchmarkError(f"the written object has {written} bytes, expected {size}")

    def boto3_upload() -> Transfer:
        boto.upload_fileobj(PatternReader(context.pattern, size), bucket, key)
        return Transfer(size)

    chunk = memoryview(bytearray(context.pattern[:WRITE_CHUNK_SIZE]))

    def s3torch_write() -> Transfer:
        writer = client.put_object(bucket, key)
        remaining = size
        while remaining:
            count = min(remaining, len(chunk))
            writer.write(chunk[:count])
            remaining -= count
        writer.close()
        return Transfer(size)

    notes = ["each write is checked (HEAD: size) and deleted after it is measured"]
    if profile == MOTO:
        notes.append(
            "both clients send checksums (s3torch CRC32C per part, off the writer's thread; boto3 CRC32); moto's"
            " CompleteMultipartUpload is slow, and on a small machine moto's CPU (the server CPU column)"
            " is what limits both"
        )
    checks: list[Check] = [Ratio(S3TORCH_WRITE, BOTO3_UPLOAD, above=1.0 if profile == MOTO else None)]
    return Scenario(
        title=f"Write of {size / MIB:,.0f} MiB, {profile}",
        unit="bytes",
        contenders=[
            in_process(BOTO3_UPLOAD, boto3_upload, expected, after=verify_and_delete),
            in_process(S3TORCH_WRITE, s3torch_write, expected, after=verify_and_delete),
        ],
        checks=checks,
        notes=notes,
    )


for _profile, _description in (
    (MOTO, "write of the large object to a moto server (in its own process)"),
    (REMOTE, "write of the large object to the store of S3TORCH_BENCH_ENDPOINT/BUCKET"),
):
    register(f"write-{_profile}", _profile, _description, functools.partial(build, profile=_profile))
