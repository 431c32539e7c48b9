"""``S3ReaderConstructor``: factories for the reader strategies."""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from functools import partial
from typing import Any

from ._base import S3Reader
from ._dcp_optimized import FALLBACK_GUIDANCE, DCPOptimizedS3Reader
from ._protocol import DCPS3ReaderConstructorProtocol, S3ReaderConstructorProtocol
from ._ranged import RangedS3Reader, check_buffer_size
from ._ranges import DEFAULT_MAX_GAP_SIZE, ItemRange, check_max_gap_size
from ._sequential import SequentialS3Reader
from ._stream import GetStreamCallable, ObjectInfoCallable

logger = logging.getLogger(__name__)


class DCPOptimizedConstructor:
    """Builds ``DCPOptimizedS3Reader`` from the ranges a DCP load plan injected with
    ``set_item_ranges_by_file``; ``.metadata`` is read with the sequential reader."""

    def __init__(self, max_gap_size: float = DEFAULT_MAX_GAP_SIZE) -> None:
        self._max_gap_size = check_max_gap_size(max_gap_size)
        self._item_ranges_by_file: dict[str, list[ItemRange]] = {}

    @property
    def max_gap_size(self) -> float:
        return self._max_gap_size

    def set_item_ranges_by_file(
        self,
        plan_items: list[Any],
        storage_data: dict[Any, Any],
        base_path: str | os.PathLike[str],
    ) -> None:
        """Map every file of the plan (``os.path.join(base_path, relative_path)``) to the ranges of
        its items, replacing what an earlier call set. Several items of the plan reading one saved
        item (resharding) give its range once: the reader hands it over once, whole."""
        ranges: dict[str, list[ItemRange]] = defaultdict(list)
        if plan_items and not storage_data:
            raise ValueError("storage_data must not be empty; required to map ReadItems to file ranges.")
        for item in plan_items:
            info = storage_data[item.storage_index]
            uri = os.path.join(os.fspath(base_path), info.relative_path)
            item_range = ItemRange(info.offset, info.offset + info.length)
            if not ranges[uri] or ranges[uri][-1] != item_range:
                ranges[uri].append(item_range)
        if not plan_items:
            logger.debug("Empty load plan for this rank: no DCP item ranges")
        self._item_ranges_by_file = ranges

    # S3ReaderConstructorProtocol's signature.
    def __call__(
        self,
        bucket: str,
        key: str,
        get_object_info: ObjectInfoCallable,
        get_stream: GetStreamCallable,
    ) -> S3Reader:
        if key.endswith(".metadata"):
            logger.debug("Reading %s with SequentialS3Reader (no item ranges for metadata)", key)
            return SequentialS3Reader(bucket, key, get_object_info, get_stream)
        uri = f"s3://{bucket}/{key}"
        ranges = self._item_ranges_by_file.get(uri)
        if ranges:
            return DCPOptimizedS3Reader(
                bucket,
                key,
                item_ranges=ranges,
                get_object_info=get_object_info,
                get_stream=get_stream,
                max_gap_size=self._max_gap_size,
            )
        raise ValueError(
            f"No ranges found for {uri}. Make sure range injection is used in "
            f"'S3StorageReader.prepare_local_plan'.\n{FALLBACK_GUIDANCE}"
        )


class S3ReaderConstructor:
    """Factories of reader constructors, for ``S3Client.get_object``, the datasets and checkpoints.

    * ``sequential()``: the generic reader, any access pattern; fetches the object once.
    * ``range_based(buffer_size=None)``: ranged GETs, for sparse reads of large objects.
    * ``dcp_optimized(max_gap_size=32 MiB)``: for ``torch.distributed.checkpoint`` loads.
    * ``default()``: ``sequential()``.
    """

    @staticmethod
    def sequential() -> S3ReaderConstructorProtocol:
        return partial(SequentialS3Reader)

    @staticmethod
    def range_based(buffer_size: int | None = None) -> S3ReaderConstructorProtocol:
        """Ranged reads through a buffer of ``buffer_size`` bytes (None: 8 MiB; 0: no buffer).

        Raises:
            TypeError, ValueError: ``buffer_size`` is not None or an int >= 0 (checked now).
        """
        check_buffer_size(buffer_size)
        return partial(RangedS3Reader, buffer_size=buffer_size)

    @staticmethod
    def dcp_optimized(max_gap_size: float = DEFAULT_MAX_GAP_SIZE) -> DCPS3ReaderConstructorProtocol:
        """Coalesced ranged reads of a DCP load plan; gaps up to ``max_gap_size`` bytes share a GET
        (0: a stream per gap; ``float("inf")``: one stream per file)."""
        return DCPOptimizedConstructor(max_gap_size=max_gap_size)

    @staticmethod
    def default() -> S3ReaderConstructorProtocol:
        return S3ReaderConstructor.sequential()

    @staticmethod
    def get_reader_type_string(constructor: S3ReaderConstructorProtocol | None) -> str:
        """ "sequential", "range_based", "dcp_optimized" or "unknown" (None: the default)."""
        if constructor is None:
            return "sequential"
        if isinstance(constructor, DCPOptimizedConstructor):
            return "dcp_optimized"
        if isinstance(constructor, partial):
            if constructor.func is RangedS3Reader:
                return "range_based"
            if constructor.func is SequentialS3Reader:
                return "sequential"
        return "unknown"


_FACTORIES = ("sequential", "range_based", "dcp_optimized", "default")


def check_reader_constructor(reader_constructor: Any, argument: str = "reader_constructor") -> None:
    """Refuse, with a ``TypeError`` naming ``argument``, what cannot build readers: a string such
    as ``"sequential"``, a factory of ``S3ReaderConstructor`` not called (``.sequential``
    instead of ``.sequential()``), the class itself, or anything not callable. None (the
    default strategy) passes."""
    if reader_constructor is None:
        return
    guidance = "S3ReaderConstructor.sequential(), .range_based() or .dcp_optimized()"
    if isinstance(reader_constructor, str):
        name = reader_constructor.strip().lower().replace("-", "_")
        hint = f"S3ReaderConstructor.{name}()" if name in _FACTORIES else guidance
        raise TypeError(f"{argument} must be a reader constructor, not the string {reader_constructor!r}: use {hint}")
    for name in _FACTORIES:
        if reader_constructor is getattr(S3ReaderConstructor, name):
            raise TypeError(
                f"{argument} must be a reader constructor: call the factory, S3ReaderConstructor.{name}(),"
                f" instead of passing S3ReaderConstructor.{name}"
            )
    if reader_constructor is S3ReaderConstructor or not callable(reader_constructor):
        raise TypeError(
            f"{argument} must be a reader constructor or None, got {type(reader_constructor).__name__}: use {guidance}"
        )
