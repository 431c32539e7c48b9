"""Random ranged reads of the large object: the range-based reader (its default 8 MiB buffer, and
``buffer_size=0``), s3torch side by side with the upstream, next to one plain boto3 ranged GET
per range and s3fs ``cat_file(start, end)``.

Each run opens one reader and reads ``RANGES`` (200; quick: 50) ranges of 1 MiB at offsets drawn
once from a seeded generator (the same for every contender and round): ``seek`` then
``readinto`` a reused 1 MiB buffer. "objects" here are ranges: ranges/s and CPU ms per range.
"""

from __future__ import annotations

import functools
import random
from typing import Any

import upstream
from fixtures import boto3_client, s3fs_filesystem, s3torch_client
from measure import Contender, Transfer, in_process
from scenario import BenchContext, Check, Ratio, Scenario, register, versus_upstream
from servers import LOOPBACK, REMOTE
from settings import MIB

from s3torch.readers import S3ReaderConstructor

RANGES = 200
QUICK_RANGES = 50
RANGE_SIZE = 1 * MIB
SEED = 12

RANGED = "RangedS3Reader, default buffer"
RANGED_UNBUFFERED = "RangedS3Reader, buffer_size=0"
UPSTREAM_RANGED = f"{upstream.PREFIX} {RANGED}"
UPSTREAM_UNBUFFERED = f"{upstream.PREFIX} {RANGED_UNBUFFERED}"
BOTO3_RANGES = "boto3 get_object(Range=...) per range"
S3FS_RANGES = "s3fs cat_file(start, end) per range"

#: Issue 12: the default buffer reaches at least 0.7x of its own buffer_size=0 mode.
DEFAULT_VERSUS_UNBUFFERED = 0.7


def _read_ranges(reader: Any, offsets: list[int], buffer: bytearray) -> Transfer:
    total = 0
    view = memoryview(buffer)
    for offset in offsets:
        reader.seek(offset)
        filled = 0
        while filled < RANGE_SIZE:
            count = reader.readinto(view[filled:])
            if not count:
                break
            filled += count
        total += filled
    return Transfer(total, len(offsets))


def build(context: BenchContext, profile: str) -> Scenario:
    store = context.store(profile)
    bucket = store.bucket
    objects = context.read_objects
    key = objects.large_key()
    size = objects.large_size
    count = QUICK_RANGES if context.settings.quick else RANGES
    generator = random.Random(SEED)
    offsets = [generator.randrange(0, size - RANGE_SIZE + 1) for _ in range(count)]
    expected = Transfer(count * RANGE_SIZE, count)
    buffer = bytearray(RANGE_SIZE)
    notes = [
        f"{count} ranges of {RANGE_SIZE // MIB} MiB at seeded random offsets of the {size // MIB:,} MiB object;"
        " one reader per run (seek, then readinto a reused buffer); 'objects' are ranges"
    ]

    client = s3torch_client(store)
    client.head_object(bucket, key)  # client and connection warm

    def ours(constructor: Any) -> Any:
        return lambda: _read_ranges(client.get_object(bucket, key, reader_constructor=constructor), offsets, buffer)

    contenders: list[Contender] = [
        in_process(RANGED, ours(S3ReaderConstructor.range_based()), expected),
        in_process(RANGED_UNBUFFERED, ours(S3ReaderConstructor.range_based(buffer_size=0)), expected),
    ]
    if upstream.UNAVAILABLE is None:
        their_client = upstream.client(store)
        their_client.head_object(bucket, key)
        constructors = upstream.reader_constructors()

        def theirs(constructor: Any) -> Any:
            return lambda: _read_ranges(
                their_client.get_object(bucket, key, reader_constructor=constructor), offsets, buffer
            )

        contenders += [
            in_process(UPSTREAM_RANGED, theirs(constructors.range_based()), expected),
            in_process(UPSTREAM_UNBUFFERED, theirs(constructors.range_based(buffer_size=0)), expected),
        ]
    else:
        notes.append(upstream.skip_note("RangedS3Reader"))

    boto = boto3_client(store)
    boto.head_object(Bucket=bucket, Key=key)

    def boto3_ranges() -> Transfer:
        total = 0
        for offset in offsets:
            response = boto.get_object(Bucket=bucket, Key=key, Range=f"bytes={offset}-{offset + RANGE_SIZE - 1}")
            total += len(response["Body"].read())
        return Transfer(total, len(offsets))

    contenders.append(in_process(BOTO3_RANGES, boto3_ranges, expected))
    filesystem = s3fs_filesystem(store)
    if isinstance(filesystem, str):
        notes.append(f"{S3FS_RANGES}: not measured, {filesystem}")
    else:
        path = f"{bucket}/{key}"
        filesystem.info(path)

        def s3fs_ranges() -> Transfer:
            total = 0
            for offset in offsets:
                total += len(filesystem.cat_file(path, start=offset, end=offset + RANGE_SIZE))
            return Transfer(total, len(offsets))

        contenders.append(in_process(S3FS_RANGES, s3fs_ranges, expected))

    checks: list[Check] = [
        *versus_upstream(RANGED, UPSTREAM_RANGED),
        *versus_upstream(RANGED_UNBUFFERED, UPSTREAM_UNBUFFERED),
        Ratio(RANGED, RANGED_UNBUFFERED, at_least=DEFAULT_VERSUS_UNBUFFERED),
        Ratio(RANGED_UNBUFFERED, BOTO3_RANGES),
        Ratio(RANGED_UNBUFFERED, S3FS_RANGES),
    ]
    return Scenario(
        title=f"{count} random {RANGE_SIZE // MIB} MiB ranges of a {size // MIB:,} MiB object, {profile}",
        unit="objects",
        contenders=contenders,
        checks=checks,
        notes=notes,
        pairs=[(RANGED, UPSTREAM_RANGED), (RANGED_UNBUFFERED, UPSTREAM_UNBUFFERED)],
    )


for _profile, _description in (
    (LOOPBACK, "random 1 MiB ranges through the range-based reader, nginx without limits"),
    (REMOTE, "random 1 MiB ranges through the range-based reader, the store of S3TORCH_BENCH_*"),
):
    register(f"ranges-{_profile}", _profile, _description, functools.partial(build, profile=_profile))
