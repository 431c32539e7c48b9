"""How cost grows with the work: objects/s and the time to the first sample of
``S3IterableDataset.from_prefix`` and ``S3MapDataset.from_prefix`` over 1,000, 10,000 and 50,000
small objects under one prefix (quick: 100, 1,000 and 2,500), listing included, s3torch side by
side with the upstream; and where the DCP prefix strategies put the files of a 1,000-rank save.

The objects are files in nginx's directory (loopback); the listings come from ``lister.py``
behind the same nginx (moto and s3rver are too slow to list 50,000 keys affordably, see there).
The iterable datasets list lazily (the first sample waits for one page), the map datasets list
everything before the first sample. The map datasets are read through a ``DataLoader``
(``batch_size`` 64, no workers): their "first" is the first batch. Before the first row, each
family lists and reads one object unmeasured (lister.py's index of the directory, the clients),
as the dataset scenario warms its path. Rounds as every scenario (medians with min-max): one
round reads 122,000 objects per contender family here, and a full run's three make the row's
figures more than single samples, which moved by 30% between quiet runs.

The prefix table calls each writer's ``prepare_global_plan`` with 1,000 plans (one per simulated
rank, no process group), with strategies built before any process group exists, as in a config
module, and counts the distinct leading key components under the checkpoint path and the most
files sharing one.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable
from typing import Any

import upstream
from fixtures import CountingReader, read_fully
from measure import Contender, Transfer, in_process
from scenario import BenchContext, Check, Scenario, Skip, register, versus_upstream
from servers import LOOPBACK, Store
from settings import KIB

from s3torch.client import S3ClientConfig
from s3torch.datasets import S3IterableDataset, S3MapDataset

COUNTS = (1_000, 10_000, 50_000)
QUICK_COUNTS = (100, 1_000, 2_500)
OBJECT_SIZE = 4 * KIB
PREFIX = "scale/"
DIGITS = 6
LOADER_BATCH_SIZE = 64
SIMULATED_RANKS = 1_000


def iterable_name(count: int) -> str:
    return f"S3IterableDataset.from_prefix, {count:,} objects"


def map_name(count: int) -> str:
    return f"S3MapDataset.from_prefix, {count:,} objects"


def _prefix_of(count: int, total: int) -> str:
    """The key prefix that selects exactly ``count`` of ``total`` keys ``scale/<6 digits>.bin``."""
    if count == total:
        return PREFIX
    zeros = DIGITS - len(str(count)) + 1
    if count != 10 ** (len(str(count)) - 1) or zeros < 1:
        raise ValueError(f"{count} objects cannot be selected by a prefix: use a power of ten below {total}")
    return PREFIX + "0" * zeros


def _place(context: BenchContext, total: int) -> None:
    directory = context.read_objects._directory
    if directory is None:
        raise Skip("the scaling scenario needs the local nginx directory")
    folder = directory / PREFIX
    folder.mkdir(parents=True, exist_ok=True)
    pattern = context.pattern
    for index in range(total):
        offset = (index * 4099) % (len(pattern) - OBJECT_SIZE)
        (folder / f"{index:0{DIGITS}d}.bin").write_bytes(pattern[offset : offset + OBJECT_SIZE])


def prefix_table(store: Store) -> list[list[str]]:
    """Distinct leading prefixes and the most files under one, for a 1,000-rank save."""
    from torch.distributed.checkpoint.planner import SavePlan

    from s3torch.dcp import BinaryPrefixStrategy, DefaultPrefixStrategy, HexPrefixStrategy, S3StorageWriter

    path = f"s3://{store.bucket}/checkpoint"
    strategies: list[tuple[str, Callable[[], Any]]] = [
        ("DefaultPrefixStrategy()", DefaultPrefixStrategy),
        ("BinaryPrefixStrategy()", BinaryPrefixStrategy),
        ("HexPrefixStrategy()", HexPrefixStrategy),
        ("HexPrefixStrategy(prefix_count=16)", functools.partial(HexPrefixStrategy, prefix_count=16)),
    ]
    rows = [["strategy (built before the process group)", "s3torch prefixes", "most files", "upstream", "most"]]

    def spread(prefixes: list[str]) -> tuple[str, str]:
        leading = Counter(prefix.split("/")[0] if "/" in prefix else "(the checkpoint path)" for prefix in prefixes)
        return f"{len(leading):,}", f"{max(leading.values()):,}"

    plans = [SavePlan([]) for _ in range(SIMULATED_RANKS)]
    for label, make in strategies:
        writer = S3StorageWriter(
            store.region,
            path,
            s3client_config=S3ClientConfig(force_path_style=store.path_style),
            prefix_strategy=make(),
            endpoint=store.endpoint,
            overwrite=False,  # no HEAD of an earlier .metadata: nothing is sent
        )
        ours = spread([plan.storage_data.prefix for plan in writer.prepare_global_plan(plans)])
        theirs = ("-", "-")
        if upstream.DCP_UNAVAILABLE is None:
            from s3torchconnector import dcp as upstream_dcp

            their_make = getattr(upstream_dcp, label.split("(")[0])
            kwargs = {"prefix_count": 16} if "prefix_count" in label else {}
            their_writer = upstream.storage_writer(store, path, 1, prefix_strategy=their_make(**kwargs))
            theirs = spread([plan.storage_data.prefix for plan in their_writer.prepare_global_plan(plans)])
        rows.append([label, *ours, *theirs])
    return rows


def build(context: BenchContext) -> Scenario:
    import torch.utils.data

    store = context.store(LOOPBACK)
    counts = QUICK_COUNTS if context.settings.quick else COUNTS
    total = max(counts)
    _place(context, total)
    bucket = store.bucket
    config = S3ClientConfig(force_path_style=store.path_style)
    counter = CountingReader()
    iterate = counter.run

    def batches(dataset: Any) -> Any:
        return torch.utils.data.DataLoader(dataset, batch_size=LOADER_BATCH_SIZE, num_workers=0)

    def contender(name: str, run: Callable[[], Transfer], count: int) -> Contender:
        return in_process(name, run, Transfer(count * OBJECT_SIZE, count), first=lambda: counter.first)

    def from_prefix(dataset_type: Any, uri: str, client_config: Any) -> Any:
        return dataset_type.from_prefix(
            uri, region=store.region, endpoint=store.endpoint, s3client_config=client_config, transform=read_fully
        )

    def read_iterable(dataset_type: Any, uri: str, client_config: Any) -> Transfer:
        return iterate(from_prefix(dataset_type, uri, client_config))

    def read_map(dataset_type: Any, uri: str, client_config: Any) -> Transfer:
        return iterate(batches(from_prefix(dataset_type, uri, client_config)))

    families: list[tuple[str, Any, Any, Any]] = [("", S3IterableDataset, S3MapDataset, config)]
    if upstream.UNAVAILABLE is None:
        module = upstream.s3torchconnector
        families.append((f"{upstream.PREFIX} ", module.S3IterableDataset, module.S3MapDataset, upstream.config(store)))
    # Warm, unmeasured, what the first contender would otherwise pay alone: lister.py's index of
    # the directory (built on its first listing: ~1 s for 50,000 files, server time the first
    # row used to carry) and each family's client, imports and model data.
    warm_uri = f"s3://{bucket}/{_prefix_of(min(counts), total)}"
    for _, iterable_type, _, client_config in families:
        next(iter(from_prefix(iterable_type, warm_uri, client_config)))
    contenders: list[Contender] = []
    checks: list[Check] = []
    pairs: list[tuple[str, str]] = []
    for count in counts:
        uri = f"s3://{bucket}/{_prefix_of(count, total)}"
        for label, iterable_type, map_type, client_config in families:
            contenders += [
                contender(
                    label + iterable_name(count),
                    functools.partial(read_iterable, iterable_type, uri, client_config),
                    count,
                ),
                contender(label + map_name(count), functools.partial(read_map, map_type, uri, client_config), count),
            ]
        for name in (iterable_name(count), map_name(count)):
            checks += versus_upstream(name, f"{upstream.PREFIX} {name}")
            pairs.append((name, f"{upstream.PREFIX} {name}"))
    notes = [
        f"{total:,} objects of {OBJECT_SIZE // KIB} KiB under s3://{bucket}/{PREFIX}; a count below that is a key"
        " prefix selecting it (scale/000 for 1,000 of 50,000); objects served by nginx, listings by lister.py;"
        f" {context.settings.rounds} interleaved round(s), as every scenario; 'first s' is the seconds to the"
        " first sample (map datasets: first batch of"
        f" {LOADER_BATCH_SIZE}), listing included",
        f"prefix strategies: {SIMULATED_RANKS:,} simulated ranks, thread_count=1 (each rank's files share its"
        " prefix); strategies built with no process group, as a config module would",
    ]
    if upstream.UNAVAILABLE is not None:
        notes.append(upstream.skip_note("datasets"))
    return Scenario(
        title=f"Scaling: datasets over {', '.join(f'{count:,}' for count in counts)} objects under one prefix",
        unit="objects",
        contenders=contenders,
        checks=checks,
        notes=notes,
        pairs=pairs,
        tables=[(f"DCP prefix strategies, {SIMULATED_RANKS:,} ranks", prefix_table(store))],
    )


register(
    "scaling-loopback",
    LOOPBACK,
    "datasets over growing numbers of objects (listing included), and DCP prefix strategies at 1,000 ranks",
    build,
)
