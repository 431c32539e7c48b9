"""Key-prefix strategies: where each rank's checkpoint files go under the checkpoint path.

S3 scales request rates per key prefix. Thousands of ranks writing ``__<rank>_<i>.distcp``
side by side under one prefix can exceed what one prefix takes before S3 has partitioned it
(``503 SlowDown``); spreading the files over many distinct leading prefixes lets them land on
separate partitions. Strategies return the beginning of each rank's file names, to which DCP
appends ``<i>.distcp``.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch.distributed as dist

logger = logging.getLogger(__name__)

_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def _check_epoch(epoch_num: object) -> int | None:
    if epoch_num is not None and (isinstance(epoch_num, bool) or not isinstance(epoch_num, int)):
        raise ValueError(f"Epoch number must be None or an integer, got {epoch_num!r}")
    return epoch_num


def _check_prefix_count(prefix_count: object) -> int | None:
    if prefix_count is not None and (
        isinstance(prefix_count, bool) or not isinstance(prefix_count, int) or prefix_count < 1
    ):
        raise ValueError(f"Prefix count must be a positive integer, got {prefix_count!r}")
    return prefix_count


def _epoch_part(epoch_num: int | None) -> str:
    return "" if epoch_num is None else f"epoch_{epoch_num}/"


class S3PrefixStrategyBase(ABC):
    """The interface of a prefix strategy: ``strategy(rank)`` is the start of the names of
    rank ``rank``'s files (``<strategy(rank)><i>.distcp``). Subclass it and implement
    ``generate_prefix`` for a layout of your own."""

    def __call__(self, rank: int) -> str:
        return self.generate_prefix(rank)

    @abstractmethod
    def generate_prefix(self, rank: int) -> str:
        """The start of the names of rank ``rank``'s files, e.g. ``"__3_"``."""

    def prefixes_for_save(self, ranks: Sequence[int], world_size: int) -> list[str]:
        """The prefixes of ``ranks`` in a save by ``world_size`` ranks: what ``S3StorageWriter``
        asks when the save runs (s3torch addition). By default ``self(rank)`` for each rank; a
        strategy whose layout depends on the world size (``NumericPrefixStrategy`` without an
        explicit ``prefix_count``) takes it from ``world_size`` here."""
        return [self(rank) for rank in ranks]


class DefaultPrefixStrategy(S3PrefixStrategyBase):
    """``__<rank>_``: every file directly under the checkpoint path (DCP's own layout)."""

    def generate_prefix(self, rank: int) -> str:
        return f"__{rank}_"


class RoundRobinPrefixStrategy(S3PrefixStrategyBase):
    """``<user_prefixes[rank % n]>/[epoch_<e>/]__<rank>_``: ranks take your prefixes in turn.

    Args:
        user_prefixes: The prefixes to spread the ranks over (at least one), used verbatim.
        epoch_num: Adds an ``epoch_<n>/`` level under each prefix when set.

    Raises:
        TypeError: ``user_prefixes`` is a str, or holds something else than str.
        ValueError: ``user_prefixes`` is empty, or ``epoch_num`` is not an integer.
    """

    def __init__(self, user_prefixes: list[str], epoch_num: int | None = None) -> None:
        if isinstance(user_prefixes, str) or not all(isinstance(prefix, str) for prefix in user_prefixes or []):
            raise TypeError(f"user_prefixes must be a list of str, got {user_prefixes!r}")
        if not user_prefixes:
            raise ValueError("Prefixes list cannot be empty.")
        self.user_prefixes = list(user_prefixes)
        self.epoch_num = _check_epoch(epoch_num)

    def generate_prefix(self, rank: int) -> str:
        prefix = self.user_prefixes[rank % len(self.user_prefixes)]
        return f"{prefix}/{_epoch_part(self.epoch_num)}__{rank}_"


class NumericPrefixStrategy(S3PrefixStrategyBase):
    """``<p>/[epoch_<e>/]__<rank>_`` where ``p`` is one of ``prefix_count`` numbers written in
    base ``base``, padded to ``min_prefix_length`` digits and reversed, so that the leading
    characters differ first (rank 1 of base 2 is ``1000000000``, rank 2 ``0100000000``).
    Rank ``r`` takes number ``r % prefix_count``.

    Args:
        base: The base of the numbers (2 to 36).
        epoch_num: Adds an ``epoch_<n>/`` level under each prefix when set.
        min_prefix_length: The least number of digits of a prefix (at least 1).
        prefix_count: How many distinct prefixes (at least 1), kept as given. By default the
            world size of the save, taken when the save runs (not when the strategy is built,
            which may be before the process group exists); called outside a save, the world
            size of ``torch.distributed`` when it is initialized, else 1.

    Raises:
        ValueError: an argument is outside the ranges above.
    """

    def __init__(
        self,
        base: int,
        epoch_num: int | None = None,
        min_prefix_length: int = 10,
        prefix_count: int | None = None,
    ) -> None:
        if isinstance(base, bool) or not isinstance(base, int) or not 2 <= base <= len(_DIGITS):
            raise ValueError(f"Base must be an integer from 2 to {len(_DIGITS)}, got {base!r}")
        if isinstance(min_prefix_length, bool) or not isinstance(min_prefix_length, int) or min_prefix_length < 1:
            raise ValueError(f"Minimum prefix length must be at least 1, got {min_prefix_length!r}")
        self.base = base
        self.epoch_num = _check_epoch(epoch_num)
        self.min_prefix_length = min_prefix_length
        self._explicit_prefix_count = _check_prefix_count(prefix_count)
        # The world size of the save under way (set by prefixes_for_save while it asks).
        self._save_world_size: int | None = None
        self._prefix_maps: dict[int, list[str]] = {}

    @property
    def prefix_count(self) -> int:
        """How many distinct prefixes: ``prefix_count`` as given, else the world size of the
        save under way, else that of an initialized ``torch.distributed``, else 1."""
        if self._explicit_prefix_count is not None:
            return self._explicit_prefix_count
        if self._save_world_size is not None:
            return self._save_world_size
        if dist.is_available() and dist.is_initialized():
            return dist.get_world_size()
        return 1

    @prefix_count.setter
    def prefix_count(self, value: int | None) -> None:
        self._explicit_prefix_count = _check_prefix_count(value)

    @property
    def prefix_map(self) -> list[str]:
        """The ``prefix_count`` prefixes, in rank order."""
        count = self.prefix_count
        prefixes = self._prefix_maps.get(count)
        if prefixes is None:
            prefixes = self._prefix_maps[count] = self._generate_prefix_map(count)
        return prefixes

    def prefixes_for_save(self, ranks: Sequence[int], world_size: int) -> list[str]:
        if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
            raise ValueError(f"World size must be a positive integer, got {world_size!r}")
        if self._explicit_prefix_count is not None:
            return super().prefixes_for_save(ranks, world_size)
        previous, self._save_world_size = self._save_world_size, world_size
        try:
            return super().prefixes_for_save(ranks, world_size)
        finally:
            self._save_world_size = previous

    def _to_base(self, number: int) -> str:
        digits = ""
        while True:
            number, digit = divmod(number, self.base)
            digits = _DIGITS[digit] + digits
            if number == 0:
                return digits

    def _generate_prefix_map(self, count: int) -> list[str]:
        width = max(len(self._to_base(count - 1)), self.min_prefix_length)
        prefixes = [self._to_base(index).zfill(width)[::-1] for index in range(count)]
        logger.debug("Prefix map of base %d with %d prefixes: %s", self.base, count, prefixes[:8])
        return prefixes

    def generate_prefix(self, rank: int) -> str:
        prefix = self.prefix_map[rank % len(self.prefix_map)]
        return f"{prefix}/{_epoch_part(self.epoch_num)}__{rank}_"


class BinaryPrefixStrategy(NumericPrefixStrategy):
    """``NumericPrefixStrategy`` in base 2: ``0000000000``, ``1000000000``, ``0100000000``, ..."""

    def __init__(
        self, epoch_num: int | None = None, min_prefix_length: int = 10, prefix_count: int | None = None
    ) -> None:
        super().__init__(2, epoch_num, min_prefix_length, prefix_count)


class HexPrefixStrategy(NumericPrefixStrategy):
    """``NumericPrefixStrategy`` in base 16: ``0000000000``, ``1000000000``, ..., ``f000000000``,
    ``0100000000``, ..."""

    def __init__(
        self, epoch_num: int | None = None, min_prefix_length: int = 10, prefix_count: int | None = None
    ) -> None:
        super().__init__(16, epoch_num, min_prefix_length, prefix_count)
