"""Sequential read of the large object: s3torch-client next to plain boto3 and curl."""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import upstream
from fixtures import DiscardSink, boto3_client, presigned_get_url, s3fs_filesystem, s3torch_client
from measure import Contender, Transfer, child_process, in_process
from scenario import BenchContext, Check, Ratio, Scenario, register, versus_upstream
from servers import LOOPBACK, REMOTE, S3_LIKE, check_read_server
from settings import MIB

from s3torch.client import S3Client, S3Exception

CURL = "curl -s -o /dev/null"
BOTO3_GET = "boto3 get_object().read()"
BOTO3_DOWNLOAD = "boto3 download_fileobj"
BOTO3_PARALLEL = "boto3 8 parallel 8 MiB GETs"
S3TORCH_ITERATE = "s3torch stream, iterate"
S3TORCH_READINTO = "s3torch stream, readinto"
SEQUENTIAL_READINTO = "SequentialS3Reader, readinto"
UPSTREAM_SEQUENTIAL = f"{upstream.PREFIX} SequentialS3Reader, readinto"
S3FS_READINTO = "s3fs open().readinto"

READ_BUFFER_SIZE = 8 * MIB
PARALLEL_RANGES = 8
RANGE_SIZE = 8 * MIB

#: The targets of the issue: on a fast server one s3torch stream keeps up with curl at little
#: CPU; on an S3-like server it beats one plain GET by parallel ranged parts.
LOOPBACK_VERSUS_CURL = 0.9
LOOPBACK_CPU_SECONDS_PER_GIB = 0.35
S3_LIKE_VERSUS_ONE_GET = 5.0
#: The readers issue: the sequential reader read with readinto costs at most 15% more CPU than
#: the raw client stream it sits on.
SEQUENTIAL_CPU_VERSUS_STREAM = 1.15
#: Issue 12: s3torch's default reader over the upstream's, MB/s.
UPSTREAM_GOALS = {LOOPBACK: 2.5, S3_LIKE: 1.5}


def _curl_bytes(output: str) -> Transfer:
    return Transfer(int(float(output.strip() or "0")))


def _check_if_match(client: S3Client, bucket: str, key: str) -> str:
    """The ETag the client saw must be what the server's If-Match accepts, and a stale one must
    fail: that is what pins the parts of one stream to one version of the object."""
    first = client.get_object_stream(bucket, key, 0, 100)
    if len(b"".join(first)) != 100 or not first.etag:
        raise RuntimeError(f"s3torch: a 100-byte ranged read of s3://{bucket}/{key} failed (etag {first.etag!r})")
    pinned = client.get_object_stream(bucket, key, 100, 200, etag=first.etag)
    if len(b"".join(pinned)) != 100:
        raise RuntimeError(f"s3torch: a read pinned to ETag {first.etag} returned the wrong length")
    try:
        b"".join(client.get_object_stream(bucket, key, 100, 200, etag='"0-0"'))
    except S3Exception as error:
        return f"s3torch If-Match: ETag {first.etag} accepted, a stale one refused ({error})"
    raise RuntimeError(f"s3torch: a read of s3://{bucket}/{key} pinned to a stale ETag succeeded")


def build(context: BenchContext, profile: str) -> Scenario:
    store = context.store(profile)
    objects = context.read_objects
    key = objects.large_key()
    size = objects.large_size
    bucket = store.bucket
    expected = Transfer(size)
    notes: list[str] = []
    if profile != REMOTE:
        assert store.endpoint is not None
        notes.append(f"server: {check_read_server(store.endpoint, bucket, key, size).describe()}")

    boto = boto3_client(store)
    boto.head_object(Bucket=bucket, Key=key)  # builds the client and its first connection
    client = s3torch_client(store)
    notes.append(_check_if_match(client, bucket, key))
    contenders: list[Contender] = []

    if context.curl is not None:
        url = presigned_get_url(boto, store, key)
        argv = [context.curl, "-s", "-o", "/dev/null", "--fail", "-w", "%{size_download}", url]
        contenders.append(child_process(CURL, argv, expected, _curl_bytes))
    else:
        notes.append(f"{CURL}: skipped, curl is not on PATH")

    def boto3_get() -> Transfer:
        data = boto.get_object(Bucket=bucket, Key=key)["Body"].read()
        return Transfer(len(data))

    def boto3_download() -> Transfer:
        sink = DiscardSink()
        boto.download_fileobj(bucket, key, sink)
        return Transfer(sink.written)

    contenders += [in_process(BOTO3_GET, boto3_get, expected), in_process(BOTO3_DOWNLOAD, boto3_download, expected)]

    pool = ThreadPoolExecutor(PARALLEL_RANGES, thread_name_prefix="boto3-ranges")
    if profile != LOOPBACK:

        def fetch_range(start: int, object_size: int) -> int:
            last = min(start + RANGE_SIZE, object_size) - 1
            body: Any = boto.get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-{last}")["Body"]
            return len(body.read())

        def boto3_parallel() -> Transfer:
            object_size = boto.head_object(Bucket=bucket, Key=key)["ContentLength"]
            fetch = functools.partial(fetch_range, object_size=object_size)
            return Transfer(sum(pool.map(fetch, range(0, object_size, RANGE_SIZE))))

        contenders.append(in_process(BOTO3_PARALLEL, boto3_parallel, expected))
        notes.append(
            f"{BOTO3_PARALLEL}: a HEAD for the size, then {RANGE_SIZE // MIB} MiB ranged get_object().read()"
            f" calls on a ThreadPoolExecutor({PARALLEL_RANGES})"
        )

    def s3torch_iterate() -> Transfer:
        total = 0
        for chunk in client.get_object_stream(bucket, key):
            total += len(chunk)
        return Transfer(total)

    buffer = bytearray(READ_BUFFER_SIZE)

    def s3torch_readinto() -> Transfer:
        stream = client.get_object_stream(bucket, key)
        total = 0
        while count := stream.readinto(buffer):
            total += count
        return Transfer(total)

    def sequential_readinto() -> Transfer:
        reader = client.get_object(bucket, key)  # the default constructor: SequentialS3Reader
        total = 0
        while count := reader.readinto(buffer):
            total += count
        reader.close()
        return Transfer(total)

    contenders += [in_process(S3TORCH_ITERATE, s3torch_iterate, expected)]
    contenders += [in_process(S3TORCH_READINTO, s3torch_readinto, expected)]
    contenders += [in_process(SEQUENTIAL_READINTO, sequential_readinto, expected)]

    if upstream.UNAVAILABLE is None:
        upstream_client = upstream.client(store)
        upstream_client.get_object(bucket, key).read(100)  # the native client warm

        def upstream_readinto() -> Transfer:
            reader = upstream_client.get_object(bucket, key)  # its default: SequentialS3Reader
            total = 0
            while count := reader.readinto(buffer):
                total += count
            reader.close()
            return Transfer(total)

        contenders.append(in_process(UPSTREAM_SEQUENTIAL, upstream_readinto, expected))
    else:
        notes.append(upstream.skip_note("SequentialS3Reader"))

    filesystem = s3fs_filesystem(store)
    if isinstance(filesystem, str):
        notes.append(f"{S3FS_READINTO}: not measured, {filesystem}")
    else:
        path = f"{bucket}/{key}"
        filesystem.info(path)  # client, session and connection warm

        def s3fs_readinto() -> Transfer:
            total = 0
            with filesystem.open(path, "rb") as file:
                while count := file.readinto(buffer):
                    total += count
            return Transfer(total)

        contenders.append(in_process(S3FS_READINTO, s3fs_readinto, expected))
        block_mib = filesystem.default_block_size // MIB
        notes.append(f"{S3FS_READINTO}: s3fs defaults (read-ahead cache, {block_mib} MiB blocks)")
    sequential_versus_stream = Ratio(
        SEQUENTIAL_READINTO, S3TORCH_READINTO, metric="cpu", at_most=SEQUENTIAL_CPU_VERSUS_STREAM
    )

    checks: list[Check] = [
        *versus_upstream(SEQUENTIAL_READINTO, UPSTREAM_SEQUENTIAL, at_least=UPSTREAM_GOALS.get(profile)),
        Ratio(S3TORCH_READINTO, UPSTREAM_SEQUENTIAL),
        Ratio(SEQUENTIAL_READINTO, S3FS_READINTO),
    ]
    if profile == LOOPBACK:
        checks += [
            Ratio(S3TORCH_READINTO, CURL, at_least=LOOPBACK_VERSUS_CURL, cpu_at_most=LOOPBACK_CPU_SECONDS_PER_GIB),
            Ratio(S3TORCH_ITERATE, CURL, at_least=LOOPBACK_VERSUS_CURL, cpu_at_most=LOOPBACK_CPU_SECONDS_PER_GIB),
            Ratio(S3TORCH_READINTO, BOTO3_GET),
            Ratio(S3TORCH_READINTO, BOTO3_DOWNLOAD),
            sequential_versus_stream,
        ]
    elif profile == S3_LIKE:
        checks += [
            Ratio(S3TORCH_READINTO, BOTO3_GET, at_least=S3_LIKE_VERSUS_ONE_GET),
            Ratio(S3TORCH_ITERATE, BOTO3_GET, at_least=S3_LIKE_VERSUS_ONE_GET),
            Ratio(S3TORCH_READINTO, BOTO3_PARALLEL),
            Ratio(S3TORCH_READINTO, BOTO3_DOWNLOAD),
            Ratio(S3TORCH_READINTO, CURL),
            sequential_versus_stream,
        ]
    else:
        checks += [
            Ratio(S3TORCH_READINTO, BOTO3_GET),
            Ratio(S3TORCH_READINTO, BOTO3_PARALLEL),
            Ratio(S3TORCH_READINTO, BOTO3_DOWNLOAD),
            Ratio(S3TORCH_READINTO, CURL),
        ]
    return Scenario(
        title=f"Sequential read of {size / MIB:,.0f} MiB, {profile}",
        unit="bytes",
        contenders=contenders,
        checks=checks,
        notes=notes,
        close=lambda: pool.shutdown(wait=True),
        pairs=[(SEQUENTIAL_READINTO, UPSTREAM_SEQUENTIAL)],
    )


for _profile, _description in (
    (LOOPBACK, "sequential read of the large object from nginx without limits"),
    (S3_LIKE, "sequential read of the large object from nginx with S3-like latency and per-connection rate"),
    (REMOTE, "sequential read of the large object from the store of S3TORCH_BENCH_ENDPOINT/BUCKET"),
):
    register(f"read-{_profile}", _profile, _description, functools.partial(build, profile=_profile))
