"""The byte ranges of a checkpoint load plan: checked, and coalesced into range groups."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

DEFAULT_MAX_GAP_SIZE = 32 * 1024 * 1024


@dataclass(frozen=True)
class ItemRange:
    """Bytes ``[start, end)`` of one checkpoint item in its file."""

    start: int
    end: int


@dataclass
class RangeGroup:
    """Neighbouring items fetched by one ranged GET ``[start, end)``."""

    start: int
    end: int
    item_ranges: list[ItemRange] = field(default_factory=list)


def check_item_ranges(item_ranges: Any) -> list[ItemRange]:
    if not isinstance(item_ranges, list) or not item_ranges:
        raise ValueError("item_ranges must be a non-empty List[ItemRange] object")
    ranges: list[ItemRange] = []
    previous: ItemRange | None = None
    for item in item_ranges:
        if not isinstance(item, ItemRange):
            raise TypeError(f"item_ranges must be a non-empty List[ItemRange] object, got an item {item!r}")
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in (item.start, item.end)):
            raise TypeError(f"ItemRange start and end must be ints, got {item!r}")
        if item.start < 0 or item.end < item.start:
            raise ValueError(f"Invalid range: {item.start}-{item.end}")
        if item.start == item.end:
            continue
        if previous is not None:
            if item.start < previous.start:
                raise ValueError(f"Unsorted ranges: {previous.start}-{previous.end} and {item.start}-{item.end}")
            if item.start < previous.end:
                raise ValueError(f"Overlapping ranges: {previous.start}-{previous.end} and {item.start}-{item.end}")
        ranges.append(item)
        previous = item
    if not ranges:
        raise ValueError("No non-empty ranges to read (all ranges were length 0)")
    return ranges


def coalesce(ranges: list[ItemRange], max_gap_size: float) -> list[RangeGroup]:
    """Group sorted ranges whose gaps are at most ``max_gap_size``, in order; a range that
    overlaps the group before it starts a group of its own."""
    groups: list[RangeGroup] = []
    for item in ranges:
        if groups and 0 <= item.start - groups[-1].end <= max_gap_size:
            groups[-1].end = item.end
            groups[-1].item_ranges.append(item)
        else:
            groups.append(RangeGroup(item.start, item.end, [item]))
    return groups


def check_max_gap_size(max_gap_size: Any) -> float:
    if isinstance(max_gap_size, bool) or not isinstance(max_gap_size, (int, float)):
        raise TypeError(f"max_gap_size must be int or float, got {type(max_gap_size).__name__}")
    if math.isnan(max_gap_size) or max_gap_size < 0:
        raise ValueError("max_gap_size must be non-negative")
    return max_gap_size
