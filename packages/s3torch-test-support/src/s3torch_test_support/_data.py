"""The bytes and sizes tests write: deterministic, incompressible payloads; S3's smallest part."""

from __future__ import annotations

import random

MIB = 1024 * 1024
#: The smallest part size S3 allows: multipart uploads and multi-request GETs from small objects.
PART = 5 * MIB


def payload(size: int, seed: int = 0) -> bytes:
    """``size`` deterministic, incompressible bytes (the same for the same ``seed``)."""
    return random.Random(seed).randbytes(size)


#: An object of three parts (of ``PART``), the last one short.
THREE_PART_SIZE = 2 * PART + 1_234_567
#: ``[start, end)`` ranges (None: open) of a ``THREE_PART_SIZE`` object around every part
#: boundary, past the end, and empty ones: what a GET stream must cut exactly.
RANGES_AROUND_PARTS: list[tuple[int | None, int | None]] = [
    (None, None),
    (0, PART - 1),
    (0, PART),
    (0, PART + 1),
    (PART - 1, None),
    (PART, None),
    (PART + 1, None),
    (PART - 1, PART + 1),
    (2 * PART - 1, 2 * PART + 1),
    (1, THREE_PART_SIZE - 1),
    (THREE_PART_SIZE - 10, THREE_PART_SIZE + 100),
    (0, THREE_PART_SIZE + 1),
    (THREE_PART_SIZE - 1, None),
    (THREE_PART_SIZE, None),
    (THREE_PART_SIZE + 5, None),
    (THREE_PART_SIZE + 5, THREE_PART_SIZE + 10),
    (7, 7),
    (10, 5),
]
