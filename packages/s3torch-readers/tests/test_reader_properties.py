"""Property tests: any sequence of read/readinto/seek/tell on a generic reader behaves exactly
like ``io.BytesIO`` over the same bytes, with the two documented differences modelled
explicitly (a position past the end clamps to the size; a negative one raises
``ValueError("negative seek value N")`` where BytesIO clamps to 0 for SEEK_CUR/SEEK_END)."""

from __future__ import annotations

import functools
import io
import itertools
import random
from collections.abc import Callable
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from readers_fakes import GENERIC_READERS, FakeObject

from s3torch.readers import S3Reader, _sequential

MIB = 1024 * 1024
Operation = tuple[Any, ...]

# Object sizes: empty, one byte, a few chunks, many chunks.
SIZES = st.one_of(st.just(0), st.just(1), st.integers(2, 40), st.integers(41, 3000))
CHUNK_SIZES = st.sampled_from([1, 3, 7, 64, 1000, (1, 5, 2), (13, 1, 1, 40)])


@functools.lru_cache(maxsize=64)
def payload(size: int) -> bytes:
    return random.Random(size).randbytes(size)


def operations(
    size: int, readinto_sizes: st.SearchStrategy[int] | None = None, *, prefetch: bool = False
) -> st.SearchStrategy[Operation]:
    reach = size + 10
    readinto_sizes = readinto_sizes if readinto_sizes is not None else st.integers(0, reach)
    return st.one_of(
        *([st.just(("prefetch",))] if prefetch else []),
        st.tuples(st.just("read"), st.one_of(st.none(), st.integers(-3, reach))),
        st.just(("read",)),
        st.tuples(st.just("readinto"), readinto_sizes),
        st.tuples(
            st.just("seek"), st.integers(-reach, reach), st.sampled_from([io.SEEK_SET, io.SEEK_CUR, io.SEEK_END])
        ),
        st.just(("tell",)),
    )


@st.composite
def scenarios(
    draw: st.DrawFn,
    sizes: st.SearchStrategy[int] = SIZES,
    chunk_sizes: st.SearchStrategy[Any] = CHUNK_SIZES,
    readinto_sizes: Callable[[int], st.SearchStrategy[int]] | None = None,
    max_operations: int = 25,
    prefetch: bool = False,
) -> tuple[int, Any, list[Operation]]:
    size = draw(sizes)
    chunk_size = draw(chunk_sizes)
    readintos = readinto_sizes(size) if readinto_sizes is not None else None
    ops = draw(st.lists(operations(size, readintos, prefetch=prefetch), max_size=max_operations))
    return size, chunk_size, ops


def apply(reader: S3Reader, model: io.BytesIO, size: int, operation: Operation) -> None:
    """Run ``operation`` on both and compare what they return."""
    name, *args = operation
    where = f"{operation} at {model.tell()}"
    if name == "read":
        assert reader.read(*args) == model.read(*args), where
    elif name == "readinto":
        got, expected = bytearray(args[0]), bytearray(args[0])
        assert reader.readinto(got) == model.readinto(expected), where
        assert got == expected, where
    elif name == "prefetch":
        reader.prefetch()
    elif name == "seek":
        offset, whence = args
        base = {io.SEEK_SET: 0, io.SEEK_CUR: model.tell(), io.SEEK_END: size}[whence]
        target = base + offset
        if target < 0:
            with pytest.raises(ValueError) as error:
                reader.seek(offset, whence)
            assert str(error.value) == f"negative seek value {target}", where
        else:
            assert reader.seek(offset, whence) == model.seek(min(target, size)), where
    else:
        assert name == "tell"
    assert reader.tell() == model.tell(), where


def run(reader: S3Reader, data: bytes, ops: list[Operation]) -> None:
    model = io.BytesIO(data)
    for operation in ops:
        apply(reader, model, len(data), operation)
    # Whatever happened, the whole object still reads back.
    reader.seek(0)
    assert reader.read() == data


def check_ranges(ranges: list[tuple[int | None, int | None]], size: int) -> None:
    """Ranged GETs stay inside the object and are never empty (no 416 from S3)."""
    for start, end in ranges:
        assert start is not None
        assert end is not None
        assert 0 <= start < end <= size, (start, end, size)


def check_gaps(ranges: list[tuple[int | None, int | None]], size: int) -> None:
    """The sequential reader's re-fetches: inside the object, and no byte fetched twice (a
    re-fetched gap is kept)."""
    check_ranges(ranges, size)
    spans = sorted((start, end) for start, end in ranges if start is not None and end is not None)
    for (_, first_end), (second_start, _) in itertools.pairwise(spans):
        assert first_end <= second_start, spans


@pytest.mark.parametrize("reader_name", list(GENERIC_READERS))
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios())
def test_generic_reader_behaves_like_bytesio(reader_name: str, scenario: tuple[int, Any, list[Operation]]) -> None:
    size, chunk_size, ops = scenario
    data = payload(size)
    obj = FakeObject(data, chunk_size)
    reader = GENERIC_READERS[reader_name](obj)
    run(reader, data, ops)
    if reader_name == "sequential":
        # Small reads are kept: one stream serves every backward seek.
        assert obj.ranges in ([], [(None, None)])
        assert obj.info_calls <= 1
    else:
        check_ranges(obj.ranges, size)
        assert obj.info_calls == 1  # the final read-back needs the size at the latest


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios(), threshold=st.sampled_from([1, 2, 8, 33]))
def test_sequential_pass_through_and_gap_refetch_behave_like_bytesio(
    scenario: tuple[int, Any, list[Operation]], threshold: int
) -> None:
    """With a small pass-through threshold, large ``readinto`` calls skip the kept chunks and
    backward seeks into them fetch the gaps again: still exactly BytesIO."""
    size, chunk_size, ops = scenario
    data = payload(size)
    obj = FakeObject(data, chunk_size)
    with mock.patch.object(_sequential, "PASS_THROUGH_BYTES", threshold):
        run(obj.sequential(), data, ops)
    assert obj.ranges[:1] in ([], [(None, None)])
    check_gaps(obj.ranges[1:], size)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    scenario=scenarios(
        sizes=st.integers(0, 400),
        chunk_sizes=CHUNK_SIZES | st.sampled_from([50, (90, 2)]),
        max_operations=30,
        prefetch=True,
    ),
    pass_through=st.sampled_from([1, 2, 8, 33]),
    skip_through=st.sampled_from([1, 5, 40]),  # a positive distance (8 MiB in the module)
    small_read_chunk=st.sampled_from([1, 4, 16]),
)
def test_sequential_with_every_threshold_scaled_down_behaves_like_bytesio(
    scenario: tuple[int, Any, list[Operation]], pass_through: int, skip_through: int, small_read_chunk: int
) -> None:
    """Every path of the sequential reader on objects of a few hundred bytes: large reads passed
    through, reads far ahead opening a second stream, gaps fetched again, a stream running into
    bytes another one kept (with the real thresholds, those need objects of tens of MiB)."""
    size, chunk_size, ops = scenario
    data = payload(size)
    obj = FakeObject(data, chunk_size)
    with (
        mock.patch.object(_sequential, "PASS_THROUGH_BYTES", pass_through),
        mock.patch.object(_sequential, "SKIP_THROUGH_BYTES", skip_through),
        mock.patch.object(_sequential, "SMALL_READ_CHUNK_BYTES", small_read_chunk),
    ):
        run(obj.sequential(), data, ops)
        if size:  # an empty object's one GET has no range
            check_ranges([(start or 0, size if end is None else end) for start, end in obj.ranges], size)
        assert sum(not stream.closed for stream in obj.streams) <= _sequential.MAX_OPEN_STREAMS


def megabyte_readinto_sizes(size: int) -> st.SearchStrategy[int]:
    return st.one_of(
        st.sampled_from([128 * 1024 - 1, 128 * 1024, 128 * 1024 + 1, MIB - 1, MIB, MIB + 1, 2 * MIB + 3, size + 1]),
        st.integers(0, 300_000),
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    scenario=scenarios(
        sizes=st.sampled_from([MIB, 2 * MIB + 17, 3 * MIB + 5]),
        chunk_sizes=st.sampled_from([256 * 1024, (300_000, 77_777)]),
        readinto_sizes=megabyte_readinto_sizes,
        max_operations=12,
    )
)
def test_sequential_megabyte_readinto_behaves_like_bytesio(scenario: tuple[int, Any, list[Operation]]) -> None:
    """Around the real ``PASS_THROUGH_BYTES`` (128 KiB) and the part-sized chunks of a stream:
    readinto of at least the threshold goes from the stream
    into the caller's buffer, and backward seeks over it re-fetch the gap."""
    assert _sequential.PASS_THROUGH_BYTES == 128 * 1024
    size, chunk_size, ops = scenario
    data = payload(size)
    obj = FakeObject(data, chunk_size)
    run(obj.sequential(), data, ops)
    assert obj.ranges[:1] in ([], [(None, None)])
    check_gaps(obj.ranges[1:], size)
