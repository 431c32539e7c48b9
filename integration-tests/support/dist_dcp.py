"""Real multi-process DCP for the integration tests: ranks started with
``torch.multiprocessing`` (spawn), a gloo process group on the CPU, each rank saving its
shards of DTensors to S3 and loading them back with another sharding.

The processes meet through a ``FileStore`` (no port to pick) and are awaited with
``ProcessContext.join``; nothing sleeps.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


@dataclass(frozen=True)
class Target:
    """Where and how the ranks reach S3 (picklable: it crosses into the spawned processes)."""

    region: str
    endpoint: str | None
    path_style: bool
    checkpoint_uri: str


def full_state(seed: int = 11) -> dict[str, Any]:
    """The whole (unsharded) state every rank agrees on."""
    generator = torch.Generator().manual_seed(seed)
    return {
        "model.weight": torch.randn(64, 32, generator=generator),
        "model.bias": torch.randn(64, generator=generator),
        "embedding": torch.randn(100, 16, generator=generator),
        "step": torch.tensor(7),
        "meta": {"epoch": 3, "name": "distributed"},
    }


def _storage_settings(target: Target) -> dict[str, Any]:
    from s3torch.client import S3ClientConfig

    return {
        "endpoint": target.endpoint,
        "s3client_config": S3ClientConfig(part_size=5 * 1024 * 1024, force_path_style=target.path_style),
    }


def _check(actual: dict[str, Any], expected: dict[str, Any], where: str) -> None:
    from torch.distributed.tensor import DTensor

    for key, value in expected.items():
        got = actual[key]
        if isinstance(got, DTensor):
            got = got.full_tensor()
        if isinstance(value, torch.Tensor):
            if not torch.equal(got, value):
                raise AssertionError(f"{where}: {key} differs after the load")
        elif got != value:
            raise AssertionError(f"{where}: {key} is {got!r}, expected {value!r}")


def run_rank(rank: int, world_size: int, store_file: str, target: Target) -> None:
    """One rank: save this rank's shards, then load them back with other placements."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Replicate, Shard, distribute_tensor

    from s3torch.dcp import HexPrefixStrategy, S3StorageReader, S3StorageWriter

    dist.init_process_group("gloo", init_method=f"file://{store_file}", rank=rank, world_size=world_size)
    try:
        mesh = init_device_mesh("cpu", (world_size,))
        expected = full_state()
        saved = {
            "model.weight": distribute_tensor(expected["model.weight"], mesh, [Shard(0)]),
            "model.bias": distribute_tensor(expected["model.bias"], mesh, [Replicate()]),
            "embedding": distribute_tensor(expected["embedding"], mesh, [Shard(0)]),
            "step": expected["step"].clone(),
            "meta": dict(expected["meta"]),
        }
        writer = S3StorageWriter(
            target.region,
            target.checkpoint_uri,
            prefix_strategy=HexPrefixStrategy(),  # prefix_count: the world size of the save
            thread_count=2,
            **_storage_settings(target),
        )
        dcp.save(saved, storage_writer=writer)

        # Load back on the same world size, resharded: other placements than at save time.
        loaded = {
            "model.weight": distribute_tensor(torch.zeros(64, 32), mesh, [Shard(1)]),
            "model.bias": distribute_tensor(torch.zeros(64), mesh, [Shard(0)]),
            "embedding": distribute_tensor(torch.zeros(100, 16), mesh, [Replicate()]),
            "step": torch.tensor(0),
            "meta": {"epoch": 0, "name": ""},
        }
        dcp.load(
            loaded, storage_reader=S3StorageReader(target.region, target.checkpoint_uri, **_storage_settings(target))
        )
        _check(loaded, expected, f"rank {rank}")
        dist.barrier()
    finally:
        dist.destroy_process_group()


def spawn_ranks(world_size: int, store_file: str, target: Target, timeout: float) -> None:
    """Run ``run_rank`` in ``world_size`` spawned processes; raise the first rank's error."""
    context = mp.start_processes(
        run_rank, args=(world_size, store_file, target), nprocs=world_size, join=False, start_method="spawn"
    )
    assert context is not None
    deadline = time.monotonic() + timeout
    try:
        while not context.join(timeout=max(0.1, deadline - time.monotonic())):
            if time.monotonic() >= deadline:
                raise TimeoutError(f"the {world_size} ranks did not finish within {timeout:.0f} s")
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()
                process.join()
