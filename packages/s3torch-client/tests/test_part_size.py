"""The part size schedule of uploads: any object up to S3's 5 TiB fits in 10,000 parts, and no
part exceeds 5 GiB; uploads follow the schedule."""

from __future__ import annotations

import itertools

import pytest
from client_unit_support import MIB, PART, MockS3, payload
from hypothesis import given, settings
from hypothesis import strategies as st

from s3torch.client import _put_stream
from s3torch.client._put_stream import MAX_PARTS, part_size_for
from s3torch.client._transport import Transport

GIB = 1024 * MIB
TIB = 1024 * GIB


def schedule(part_size: int) -> list[int]:
    return [part_size_for(number, part_size) for number in range(1, MAX_PARTS + 1)]


def test_ten_thousand_parts_from_the_minimum_hold_five_tib() -> None:
    sizes = schedule(5 * MIB)
    assert MAX_PARTS == 10_000
    assert sum(sizes) >= 5 * TIB
    assert max(sizes) <= 5 * GIB
    assert sizes[0] == 5 * MIB


@settings(deadline=None)  # a pure computation: no timing to test, and the machine may be busy
@given(st.integers(min_value=5 * MIB, max_value=5 * GIB))
def test_schedule_for_any_part_size(part_size: int) -> None:
    sizes = schedule(part_size)
    assert sizes[0] == part_size  # small objects use the configured size
    assert all(5 * MIB <= size <= 5 * GIB for size in sizes)
    assert all(a <= b for a, b in itertools.pairwise(sizes))  # never shrinks
    assert sum(sizes) >= 5 * TIB


def test_upload_follows_the_schedule(s3: MockS3, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the size doubling every part, a 16 MiB object goes up as 5 + 10 + 1 MiB."""
    monkeypatch.setattr(_put_stream, "PARTS_PER_SIZE_STEP", 1)
    sent: list[tuple[str, int]] = []
    original = Transport.put_bytes

    def recording(self: Transport, bucket: str, key: str, body: memoryview, **kwargs: object) -> str:
        query = kwargs.get("query") or {}
        sent.append((query.get("partNumber", "-"), body.nbytes))  # type: ignore[attr-defined]
        return original(self, bucket, key, body, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Transport, "put_bytes", recording)
    data = payload(16 * MIB, seed=1)
    with s3.client.put_object(s3.bucket, "grown") as writer:
        for offset in range(0, len(data), MIB):
            writer.write(data[offset : offset + MIB])
    assert sorted(sent) == [("1", PART), ("2", 2 * PART), ("3", MIB)]
    assert s3.read("grown") == data
    assert s3.etag("grown").endswith('-3"')
