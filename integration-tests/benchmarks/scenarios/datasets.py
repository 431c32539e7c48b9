"""S3IterableDataset over many small objects: one process, and a DataLoader with 2 workers, side by
side with a plain boto3 loop that fetches one object at a time.

Every contender reads each object fully (the dataset's transform is ``len(reader.read())``, so
what a DataLoader worker sends back is a number: the inter-process transfer of the data is not
part of this measurement). The objects are ``2 x --objects`` (4,000 by default) slices of the
shared random block. In the s3-like profile the boto3 loop GETs only a tenth of them: at ~20 ms a
request it would otherwise take a minute and a half per round; objects/s is what is compared.
"""

from __future__ import annotations

import dataclasses
import functools
import resource
import time
from typing import Any

from fixtures import ReadObjects, boto3_client
from measure import Contender, Sample, Transfer, in_process
from scenario import BenchContext, Bound, Check, Ratio, Scenario, register
from servers import LOOPBACK, REMOTE, S3_LIKE, Store
from settings import KIB

from s3torch.client import S3ClientConfig
from s3torch.datasets import DEFAULT_PREFETCH, S3IterableDataset

BOTO3_LOOP = "boto3 loop, one GET at a time"
DATASET = "S3IterableDataset, 1 process"
DATASET_NO_PREFETCH = "S3IterableDataset, 1 process, prefetch=0"
LOADER = "S3IterableDataset, DataLoader 2 workers"

LOADER_WORKERS = 2
LOADER_BATCH_SIZE = 64
#: The targets of the datasets issue: in the s3-like profile one process reaches 8x the loop's
#: objects/s (16 concurrent plain boto3 GETs reach about 12x); in loopback 2.2x (the loop does
#: ~885/s on the reference machine, the native upstream dataset ~1,900/s).
S3_LIKE_VERSUS_LOOP = 8.0
LOOPBACK_VERSUS_LOOP = 2.2
#: s3-like: the loop GETs one object in this many (it waits ~20 ms for each).
S3_LIKE_LOOP_FRACTION = 10


def read_fully(reader: Any) -> int:
    """The transform: every byte of the object, read; the count is what is yielded."""
    return len(reader.read())


def _dataset(store: Store, uris: list[str], prefetch: int, enable_sharding: bool = False) -> S3IterableDataset:
    return S3IterableDataset.from_objects(
        uris,
        region=store.region,
        endpoint=store.endpoint,
        s3client_config=S3ClientConfig(force_path_style=store.path_style),
        transform=read_fully,
        enable_sharding=enable_sharding,
        prefetch=prefetch,
    )


def _with_children(name: str, run: Any, expected: Transfer) -> Contender:
    """Like ``measure.in_process``, but the CPU of child processes that ended during the run
    (the DataLoader's workers, joined at the end of the epoch) is counted too."""

    def measure() -> Sample:
        before = resource.getrusage(resource.RUSAGE_SELF)
        children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        moved: Transfer = run()
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_SELF)
        children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if moved != expected:
            raise RuntimeError(f"{name}: moved {moved}, expected {expected}")
        user = after.ru_utime - before.ru_utime + children_after.ru_utime - children_before.ru_utime
        system = after.ru_stime - before.ru_stime + children_after.ru_stime - children_before.ru_stime
        return Sample(wall, user, system, moved.bytes, moved.objects)

    return Contender(name, measure)


def _objects(context: BenchContext, count: int) -> ReadObjects:
    """``count`` small objects in the store (the read scenarios' objects, more of them)."""
    settings = dataclasses.replace(context.settings, small_objects=count)
    shared = context.read_objects
    # The same place and store as the shared objects: a local server's directory, or a real bucket.
    return ReadObjects(settings, context.pattern, context.key_prefix, shared._directory, shared._store)


def build(context: BenchContext, profile: str) -> Scenario:
    import torch.utils.data

    store = context.store(profile)
    bucket = store.bucket
    count = 2 * context.settings.small_objects
    objects = _objects(context, count)
    keys = objects.small_keys()
    size = objects.small_size
    uris = [f"s3://{bucket}/{key}" for key in keys]
    expected = Transfer(len(keys) * size, len(keys))
    loop_keys = keys[::S3_LIKE_LOOP_FRACTION] if profile == S3_LIKE else keys
    notes = [
        f"{len(keys):,} objects of {size / KIB:,.0f} KiB from_objects; transform len(reader.read());"
        f" prefetch {DEFAULT_PREFETCH} (the default) per process; DataLoader batch_size {LOADER_BATCH_SIZE},"
        f" enable_sharding=True, CPU includes the workers'"
    ]
    if len(loop_keys) != len(keys):
        notes.append(f"{BOTO3_LOOP}: {len(loop_keys):,} of the objects (one in {S3_LIKE_LOOP_FRACTION})")

    boto = boto3_client(store)
    boto.get_object(Bucket=bucket, Key=keys[0])["Body"].read()  # client and connection warm

    def boto3_loop() -> Transfer:
        total = 0
        for key in loop_keys:
            total += len(boto.get_object(Bucket=bucket, Key=key)["Body"].read())
        return Transfer(total, len(loop_keys))

    def dataset_run(prefetch: int) -> Transfer:
        total = objects_read = 0
        for count_read in _dataset(store, uris, prefetch):
            total += count_read
            objects_read += 1
        return Transfer(total, objects_read)

    def loader_run() -> Transfer:
        loader = torch.utils.data.DataLoader(
            _dataset(store, uris, DEFAULT_PREFETCH, enable_sharding=True),
            batch_size=LOADER_BATCH_SIZE,
            num_workers=LOADER_WORKERS,
        )
        total = objects_read = 0
        for batch in loader:
            total += int(batch.sum())
            objects_read += len(batch)
        return Transfer(total, objects_read)

    # Warm the dataset path (client, imports, prefetch threads) unmeasured.
    next(iter(_dataset(store, uris[:1], DEFAULT_PREFETCH)))

    contenders = [
        in_process(BOTO3_LOOP, boto3_loop, Transfer(len(loop_keys) * size, len(loop_keys))),
        in_process(DATASET, functools.partial(dataset_run, DEFAULT_PREFETCH), expected),
        _with_children(LOADER, loader_run, expected),
    ]
    if profile != S3_LIKE:  # without prefetch, s3-like is the loop's speed: a minute and a half per round
        contenders.insert(2, in_process(DATASET_NO_PREFETCH, functools.partial(dataset_run, 0), expected))
    target = {S3_LIKE: S3_LIKE_VERSUS_LOOP, LOOPBACK: LOOPBACK_VERSUS_LOOP}.get(profile)
    checks: list[Check] = [
        Ratio(DATASET, BOTO3_LOOP, at_least=target),
        Ratio(LOADER, BOTO3_LOOP),
        Ratio(DATASET, BOTO3_LOOP, metric="cpu"),
        Bound(DATASET),
        Bound(LOADER),
    ]
    if profile != S3_LIKE:
        checks.insert(1, Ratio(DATASET_NO_PREFETCH, BOTO3_LOOP))
    return Scenario(
        title=f"S3IterableDataset over {len(keys):,} objects of {size / KIB:,.0f} KiB, {profile}",
        unit="objects",
        contenders=contenders,
        checks=checks,
        notes=notes,
        close=objects.close,
    )


for _profile, _description in (
    (LOOPBACK, "S3IterableDataset over many small objects, nginx without limits"),
    (S3_LIKE, "S3IterableDataset over many small objects, nginx with S3-like latency and rate caps"),
    (REMOTE, "S3IterableDataset over many small objects, the store of S3TORCH_BENCH_ENDPOINT/BUCKET"),
):
    register(f"dataset-{_profile}", _profile, _description, functools.partial(build, profile=_profile))
