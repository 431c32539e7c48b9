"""Which objects one DataLoader worker of one rank reads: a round-robin shard of the object order."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import torch.distributed
import torch.utils.data

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    """Worker ``worker_id`` of ``num_workers`` on rank ``rank`` of ``world_size``.

    Object ``i`` of the order goes to rank ``i % world_size``; within a rank, the ``j``-th of its
    objects goes to worker ``j % num_workers`` (the upstream's split). So every object is read by
    exactly one (rank, worker), and each rank gets within one object of an even share.
    """

    rank: int = 0
    world_size: int = 1
    worker_id: int = 0
    num_workers: int = 1

    @property
    def count(self) -> int:
        """How many shards the order is split into."""
        return self.world_size * self.num_workers

    @property
    def offset(self) -> int:
        """Index in the order of this shard's first object."""
        return self.rank + self.world_size * self.worker_id

    def select(self, items: Iterable[T]) -> Iterator[T]:
        """This shard's items, lazily, in order."""
        if self.count == 1:
            return iter(items)
        return itertools.islice(items, self.offset, None, self.count)

    def describe(self) -> str:
        return f"rank {self.rank}/{self.world_size}, worker {self.worker_id}/{self.num_workers}"


def distributed_rank() -> tuple[int, int] | None:
    """``(rank, world_size)`` of this process's ``torch.distributed`` group, if it has one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return None


def current_topology(inherited: tuple[int, int] | None = None) -> Shard:
    """Where this code runs, read now: the ``torch.distributed`` rank and world size, and the
    DataLoader worker (when in one).

    A DataLoader worker started with ``spawn`` or ``forkserver`` is a new interpreter without the
    process group of the rank that started it; there, ``inherited`` (the rank and world size of the
    process that pickled the dataset for the worker, which is done when the DataLoader's iteration
    starts) stands in for it.
    """
    rank, world_size = distributed_rank() or inherited or (0, 1)
    info = torch.utils.data.get_worker_info()
    worker_id, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
    return Shard(rank, world_size, worker_id, num_workers)
