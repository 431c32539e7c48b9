"""Deterministic shuffling: the same order on every rank and worker for a (seed, epoch)."""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def epoch_random(seed: int, epoch: int) -> random.Random:
    """A generator that depends only on ``seed`` and ``epoch``: string seeds are hashed with
    SHA-512, whatever ``PYTHONHASHSEED`` says, so every process draws the same numbers."""
    return random.Random(f"s3torch-datasets:{seed}:{epoch}")


def permutation(length: int, seed: int, epoch: int) -> list[int]:
    """A permutation of ``range(length)`` for this seed and epoch."""
    order = list(range(length))
    epoch_random(seed, epoch).shuffle(order)
    return order


def buffer_shuffled(items: Iterable[T], buffer_size: int, seed: int, epoch: int) -> Iterator[T]:
    """``items`` in a pseudo-random order while holding at most ``buffer_size`` of them: each
    item takes the place of a random one of the buffer, which is emitted. An item moves at most
    about ``buffer_size`` places earlier; the order is a function of the input order, the seed and
    the epoch only."""
    rng = epoch_random(seed, epoch)
    buffer: list[T] = []
    for item in items:
        if len(buffer) < buffer_size:
            buffer.append(item)
            continue
        index = rng.randrange(buffer_size)
        yield buffer[index]
        buffer[index] = item
    rng.shuffle(buffer)
    yield from buffer
