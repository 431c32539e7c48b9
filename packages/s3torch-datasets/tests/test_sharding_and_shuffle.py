"""The split over ranks and workers, and the deterministic shuffles (pure functions)."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from s3torch.datasets import _shuffle
from s3torch.datasets._sharding import Shard, current_topology
from s3torch.datasets._shuffle import buffer_shuffled, permutation


def _upstream_split(items: list[int], rank: int, world_size: int, worker_id: int, num_workers: int) -> list[int]:
    """What the upstream does: filter by rank, then by worker within the rank's objects."""
    of_rank = [item for index, item in enumerate(items) if index % world_size == rank]
    return [item for index, item in enumerate(of_rank) if index % num_workers == worker_id]


@settings(max_examples=200, deadline=None)
@given(
    count=st.integers(0, 200),
    world_size=st.integers(1, 6),
    num_workers=st.integers(1, 5),
)
def test_every_object_goes_to_exactly_one_shard(count: int, world_size: int, num_workers: int) -> None:
    items = list(range(count))
    seen: Counter[int] = Counter()
    per_rank = Counter[int]()
    for rank in range(world_size):
        for worker_id in range(num_workers):
            shard = Shard(rank, world_size, worker_id, num_workers)
            mine = list(shard.select(iter(items)))
            assert mine == _upstream_split(items, rank, world_size, worker_id, num_workers)
            seen.update(mine)
            per_rank[rank] += len(mine)
    assert seen == Counter(items)
    # Each rank gets within one object of an even share.
    assert max(per_rank.values(), default=0) - min(per_rank.values(), default=0) <= 1


def test_topology_outside_any_worker_or_process_group() -> None:
    assert current_topology() == Shard(0, 1, 0, 1)


def test_topology_in_dataloader_workers() -> None:
    class Topologies(torch.utils.data.IterableDataset[Shard]):
        def __iter__(self):  # type: ignore[no-untyped-def]
            yield current_topology()

    found = list(torch.utils.data.DataLoader(Topologies(), num_workers=2, batch_size=None))
    assert sorted(found, key=lambda shard: shard.worker_id) == [Shard(0, 1, 0, 2), Shard(0, 1, 1, 2)]


@settings(deadline=None)  # a busy machine must not fail these
@given(length=st.integers(0, 300), seed=st.integers(-(2**63), 2**63), epoch=st.integers(0, 10**6))
def test_permutation_is_a_deterministic_permutation(length: int, seed: int, epoch: int) -> None:
    order = permutation(length, seed, epoch)
    assert sorted(order) == list(range(length))
    assert order == permutation(length, seed, epoch)


def test_permutation_depends_on_seed_and_epoch() -> None:
    base = permutation(100, 7, 0)
    assert permutation(100, 7, 1) != base
    assert permutation(100, 8, 0) != base


def test_permutation_is_the_same_in_another_process() -> None:
    # String seeds are hashed with SHA-512, not hash(): PYTHONHASHSEED does not matter. (The
    # module is loaded on its own: importing the package would import torch, for seconds.)
    code = (
        "import importlib.util, sys;"
        f"spec = importlib.util.spec_from_file_location('shuffle', {_shuffle.__file__!r});"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module);"
        "print(module.permutation(50, 3, 4))"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code], env={"PYTHONHASHSEED": seed}, capture_output=True, text=True, check=True
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert outputs == {str(permutation(50, 3, 4))}


@settings(deadline=None)
@given(length=st.integers(0, 300), buffer_size=st.integers(1, 50), seed=st.integers(0, 1000), epoch=st.integers(0, 5))
def test_buffer_shuffle_is_a_deterministic_permutation(length: int, buffer_size: int, seed: int, epoch: int) -> None:
    items = list(range(length))
    shuffled = list(buffer_shuffled(iter(items), buffer_size, seed, epoch))
    assert sorted(shuffled) == items
    assert shuffled == list(buffer_shuffled(iter(items), buffer_size, seed, epoch))


def test_buffer_shuffle_holds_at_most_the_buffer() -> None:
    pulled = 0

    def source():  # type: ignore[no-untyped-def]
        nonlocal pulled
        for item in range(1000):
            pulled += 1
            yield item

    output = buffer_shuffled(source(), 10, seed=1, epoch=0)
    first = next(output)
    assert pulled == 11  # the buffer, plus the item that took the emitted one's place
    assert first < 11
    rest = list(output)
    assert sorted([first, *rest]) == list(range(1000))
    assert [first, *rest] != list(range(1000))
    assert list(buffer_shuffled(iter(range(1000)), 10, seed=1, epoch=1)) != [first, *rest]
