"""Per-request cost: many small objects, one GET at a time."""

from __future__ import annotations

import functools

from fixtures import boto3_client, s3torch_client
from measure import Transfer, in_process
from scenario import BenchContext, Bound, Check, Ratio, Scenario, register
from servers import LOOPBACK, REMOTE
from settings import KIB

BOTO3_GET = "boto3 get_object().read()"
S3TORCH_JOIN = 's3torch b"".join(stream)'
S3TORCH_READINTO = "s3torch stream, readinto"

#: DESIGN.md section 6: the lean data path costs about 0.4 ms of CPU per GET (the native upstream
#: 0.34 ms), botocore's full client pipeline about 1.1 ms.
S3TORCH_CPU_MS_PER_OBJECT = 0.4
BOTO3_CPU_MS_PER_OBJECT = 1.1


def build(context: BenchContext, profile: str) -> Scenario:
    store = context.store(profile)
    bucket = store.bucket
    objects = context.read_objects
    keys = objects.small_keys()
    size = objects.small_size
    expected = Transfer(len(keys) * size, len(keys))

    boto = boto3_client(store)
    client = s3torch_client(store)
    # Warm both clients (and their connection) unmeasured.
    boto.get_object(Bucket=bucket, Key=keys[0])["Body"].read()
    b"".join(client.get_object_stream(bucket, keys[0]))

    def boto3_get() -> Transfer:
        total = 0
        for key in keys:
            total += len(boto.get_object(Bucket=bucket, Key=key)["Body"].read())
        return Transfer(total, len(keys))

    def s3torch_join() -> Transfer:
        total = 0
        for key in keys:
            total += len(b"".join(client.get_object_stream(bucket, key)))
        return Transfer(total, len(keys))

    buffer = bytearray(size)

    def s3torch_readinto() -> Transfer:
        total = 0
        for key in keys:
            stream = client.get_object_stream(bucket, key)
            while count := stream.readinto(buffer):
                total += count
        return Transfer(total, len(keys))

    target = profile == LOOPBACK
    checks: list[Check] = [
        Bound(S3TORCH_JOIN, at_most=S3TORCH_CPU_MS_PER_OBJECT if target else None),
        Bound(S3TORCH_READINTO, at_most=S3TORCH_CPU_MS_PER_OBJECT if target else None),
        Bound(BOTO3_GET, about=BOTO3_CPU_MS_PER_OBJECT if target else None),
        Ratio(S3TORCH_READINTO, BOTO3_GET),
        # Absolute CPU depends on the machine; the ratio to boto3 on the same machine does less.
        Ratio(
            S3TORCH_READINTO,
            BOTO3_GET,
            metric="cpu",
            reference=f"DESIGN.md: {S3TORCH_CPU_MS_PER_OBJECT} / {BOTO3_CPU_MS_PER_OBJECT} ms"
            f" = {S3TORCH_CPU_MS_PER_OBJECT / BOTO3_CPU_MS_PER_OBJECT:.2f}x",
        ),
    ]
    return Scenario(
        title=f"{len(keys):,} GETs of {size / KIB:,.0f} KiB objects, one at a time, {profile}",
        unit="objects",
        contenders=[
            in_process(BOTO3_GET, boto3_get, expected),
            in_process(S3TORCH_JOIN, s3torch_join, expected),
            in_process(S3TORCH_READINTO, s3torch_readinto, expected),
        ],
        checks=checks,
    )


for _profile, _description in (
    (LOOPBACK, "GETs of many small objects, one at a time, from nginx without limits"),
    (REMOTE, "GETs of many small objects, one at a time, from the store of S3TORCH_BENCH_ENDPOINT/BUCKET"),
):
    register(f"requests-{_profile}", _profile, _description, functools.partial(build, profile=_profile))
