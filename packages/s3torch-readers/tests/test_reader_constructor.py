"""``S3ReaderConstructor``, ``DCPOptimizedConstructor`` and the constructor protocols
(upstream tst/unit/test_s3reader_constructor.py)."""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import PurePosixPath

import pytest
from readers_fakes import FakeObject

from s3torch.readers import (
    DEFAULT_BUFFER_SIZE,
    DEFAULT_MAX_GAP_SIZE,
    DCPOptimizedConstructor,
    DCPOptimizedS3Reader,
    DCPS3ReaderConstructorProtocol,
    ItemRange,
    RangedS3Reader,
    S3Reader,
    S3ReaderConstructor,
    S3ReaderConstructorProtocol,
    SequentialS3Reader,
)

DATA = bytes(range(256)) * 4
BASE = "s3://bucket/checkpoints/step-1"


@dataclass(frozen=True)
class FakeReadItem:
    """What ``set_item_ranges_by_file`` uses of a DCP ``ReadItem``."""

    storage_index: str


@dataclass(frozen=True)
class FakeStorageInfo:
    """What it uses of a DCP ``_StorageInfo``."""

    relative_path: str
    offset: int
    length: int


def build(constructor: S3ReaderConstructorProtocol, obj: FakeObject, bucket: str = "bucket", key: str = "") -> S3Reader:
    return constructor(
        bucket=bucket, key=key or obj.key, get_object_info=obj.get_object_info, get_stream=obj.get_stream
    )


# ---- factories ----------------------------------------------------------------------------


def test_sequential_is_a_partial_of_the_sequential_reader() -> None:
    constructor = S3ReaderConstructor.sequential()
    assert isinstance(constructor, partial)
    assert constructor.func is SequentialS3Reader
    assert constructor.args == ()
    assert constructor.keywords == {}
    reader = build(constructor, FakeObject(DATA))
    assert isinstance(reader, SequentialS3Reader)
    assert reader.read() == DATA


@pytest.mark.parametrize("buffer_size", [None, 0, 1, 1024, DEFAULT_BUFFER_SIZE, 16 * 1024 * 1024])
def test_range_based_is_a_partial_with_the_buffer_size(buffer_size: int | None) -> None:
    constructor = (
        S3ReaderConstructor.range_based(buffer_size) if buffer_size is not None else S3ReaderConstructor.range_based()
    )
    assert isinstance(constructor, partial)
    assert constructor.func is RangedS3Reader
    assert constructor.keywords == {"buffer_size": buffer_size}
    obj = FakeObject(DATA)
    reader = build(constructor, obj)
    assert isinstance(reader, RangedS3Reader)
    assert reader.read(10) == DATA[:10]
    expected_end = len(DATA) if buffer_size is None else min(len(DATA), max(buffer_size, 10))
    assert obj.ranges == [(0, expected_end)]


def test_range_based_with_a_bad_buffer_size_fails_at_once() -> None:
    # The upstream fails only when the first reader is built (in a DataLoader worker, say).
    with pytest.raises(ValueError, match="buffer_size"):
        S3ReaderConstructor.range_based(-1)
    with pytest.raises(TypeError, match="buffer_size"):
        S3ReaderConstructor.range_based("8")  # type: ignore[arg-type]


def test_default_is_sequential() -> None:
    constructor = S3ReaderConstructor.default()
    assert isinstance(constructor, partial)
    assert constructor.func is SequentialS3Reader
    assert S3ReaderConstructor.get_reader_type_string(constructor) == "sequential"


def test_dcp_optimized_returns_a_dcp_constructor() -> None:
    constructor = S3ReaderConstructor.dcp_optimized()
    assert isinstance(constructor, DCPOptimizedConstructor)
    assert constructor.max_gap_size == DEFAULT_MAX_GAP_SIZE
    assert constructor._item_ranges_by_file == {}


@pytest.mark.parametrize("gap", [0, 0.5, 1, sys.maxsize, math.inf, DEFAULT_MAX_GAP_SIZE])
def test_dcp_optimized_accepts_non_negative_numbers(gap: float) -> None:
    constructor = S3ReaderConstructor.dcp_optimized(gap)
    assert constructor.max_gap_size == gap  # type: ignore[attr-defined]


@pytest.mark.parametrize("gap", [-1, -0.1, -sys.maxsize])
def test_dcp_optimized_rejects_a_negative_gap(gap: float) -> None:
    with pytest.raises(ValueError, match=r"^max_gap_size must be non-negative$"):
        S3ReaderConstructor.dcp_optimized(gap)


@pytest.mark.parametrize("gap", ["1", [1], None])
def test_dcp_optimized_rejects_a_gap_that_is_not_a_number(gap: object) -> None:
    with pytest.raises(TypeError, match=r"^max_gap_size must be int or float, got "):
        S3ReaderConstructor.dcp_optimized(gap)  # type: ignore[arg-type]


# ---- reader type strings -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("constructor", "expected"),
    [
        (S3ReaderConstructor.sequential(), "sequential"),
        (S3ReaderConstructor.default(), "sequential"),
        (None, "sequential"),
        (S3ReaderConstructor.range_based(), "range_based"),
        (S3ReaderConstructor.range_based(0), "range_based"),
        (S3ReaderConstructor.dcp_optimized(), "dcp_optimized"),
        (S3ReaderConstructor.dcp_optimized(0), "dcp_optimized"),
        (partial(SequentialS3Reader), "sequential"),
        (partial(RangedS3Reader, buffer_size=5), "range_based"),
        (partial(DCPOptimizedS3Reader), "unknown"),
        (lambda bucket, key, get_object_info, get_stream: None, "unknown"),
        (SequentialS3Reader, "unknown"),
        (partial(print), "unknown"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_get_reader_type_string(constructor: S3ReaderConstructorProtocol | None, expected: str) -> None:
    assert S3ReaderConstructor.get_reader_type_string(constructor) == expected


# ---- protocols ----------------------------------------------------------------------------


def test_every_constructor_satisfies_the_constructor_protocol() -> None:
    for constructor in (
        S3ReaderConstructor.sequential(),
        S3ReaderConstructor.range_based(),
        S3ReaderConstructor.default(),
        S3ReaderConstructor.dcp_optimized(),
    ):
        assert isinstance(constructor, S3ReaderConstructorProtocol)


def test_only_the_dcp_constructor_satisfies_the_dcp_protocol() -> None:
    assert isinstance(S3ReaderConstructor.dcp_optimized(), DCPS3ReaderConstructorProtocol)
    assert isinstance(DCPOptimizedConstructor(), DCPS3ReaderConstructorProtocol)
    assert not isinstance(S3ReaderConstructor.sequential(), DCPS3ReaderConstructorProtocol)
    assert not isinstance(S3ReaderConstructor.range_based(), DCPS3ReaderConstructorProtocol)
    assert not isinstance(object(), S3ReaderConstructorProtocol)


# ---- DCPOptimizedConstructor: range injection -----------------------------------------------


def plan_and_storage() -> tuple[list[FakeReadItem], dict[str, FakeStorageInfo]]:
    storage = {
        "a": FakeStorageInfo("__0_0.distcp", 0, 100),
        "b": FakeStorageInfo("__0_0.distcp", 100, 50),
        "c": FakeStorageInfo("__1_0.distcp", 16, 8),
        "d": FakeStorageInfo("__0_0.distcp", 400, 24),
        "unused": FakeStorageInfo("__2_0.distcp", 0, 1),
    }
    return [FakeReadItem("a"), FakeReadItem("b"), FakeReadItem("c"), FakeReadItem("d")], storage


def test_set_item_ranges_by_file_maps_joined_uris_to_ranges() -> None:
    constructor = DCPOptimizedConstructor()
    plan, storage = plan_and_storage()
    constructor.set_item_ranges_by_file(plan, storage, BASE)  # type: ignore[arg-type]
    assert dict(constructor._item_ranges_by_file) == {
        os.path.join(BASE, "__0_0.distcp"): [ItemRange(0, 100), ItemRange(100, 150), ItemRange(400, 424)],
        os.path.join(BASE, "__1_0.distcp"): [ItemRange(16, 24)],
    }


def test_set_item_ranges_by_file_accepts_a_path_like_base() -> None:
    constructor = DCPOptimizedConstructor()
    plan, storage = plan_and_storage()
    constructor.set_item_ranges_by_file(plan[:1], storage, PurePosixPath("/ckpt"))  # type: ignore[arg-type]
    assert dict(constructor._item_ranges_by_file) == {"/ckpt/__0_0.distcp": [ItemRange(0, 100)]}


def test_each_call_replaces_the_map() -> None:
    constructor = DCPOptimizedConstructor()
    plan, storage = plan_and_storage()
    constructor.set_item_ranges_by_file(plan, storage, BASE)  # type: ignore[arg-type]
    constructor.set_item_ranges_by_file([FakeReadItem("c")], storage, "s3://other/base")  # type: ignore[arg-type]
    assert dict(constructor._item_ranges_by_file) == {"s3://other/base/__1_0.distcp": [ItemRange(16, 24)]}
    constructor.set_item_ranges_by_file([], storage, BASE)  # type: ignore[arg-type]
    assert dict(constructor._item_ranges_by_file) == {}


@pytest.mark.parametrize("storage", [{}, {"a": FakeStorageInfo("x", 0, 1)}])
def test_empty_plan_gives_an_empty_map(storage: dict[str, FakeStorageInfo]) -> None:
    constructor = DCPOptimizedConstructor()
    constructor.set_item_ranges_by_file([], storage, BASE)  # type: ignore[arg-type]
    assert dict(constructor._item_ranges_by_file) == {}


def test_non_empty_plan_needs_storage_data() -> None:
    constructor = DCPOptimizedConstructor()
    with pytest.raises(ValueError) as error:
        constructor.set_item_ranges_by_file([FakeReadItem("a")], {}, BASE)  # type: ignore[arg-type]
    assert str(error.value) == "storage_data must not be empty; required to map ReadItems to file ranges."


# ---- DCPOptimizedConstructor: building readers ----------------------------------------------


@pytest.mark.parametrize("key", ["checkpoints/step-1/.metadata", ".metadata", "x/y.metadata"])
def test_metadata_is_read_sequentially(key: str) -> None:
    constructor = DCPOptimizedConstructor()
    obj = FakeObject(DATA, key=key)
    reader = build(constructor, obj, key=key)
    assert type(reader) is SequentialS3Reader
    assert reader.read() == DATA


def test_mapped_files_get_the_dcp_reader_with_their_ranges_and_gap() -> None:
    constructor = DCPOptimizedConstructor(max_gap_size=0)
    plan, storage = plan_and_storage()
    constructor.set_item_ranges_by_file(plan, storage, BASE)  # type: ignore[arg-type]
    obj = FakeObject(DATA, key="checkpoints/step-1/__0_0.distcp")
    reader = build(constructor, obj)
    assert isinstance(reader, DCPOptimizedS3Reader)
    assert [(g.start, g.end) for g in reader.groups] == [(0, 150), (400, 424)]  # gap 0: adjacent ranges coalesce
    reader.seek(100)
    assert reader.read(50) == DATA[100:150]
    reader.seek(400)
    assert reader.read(24) == DATA[400:424]
    assert obj.ranges == [(0, 150), (400, 424)]


def test_unmapped_file_raises_with_guidance() -> None:
    constructor = DCPOptimizedConstructor()
    plan, storage = plan_and_storage()
    constructor.set_item_ranges_by_file(plan, storage, BASE)  # type: ignore[arg-type]
    obj = FakeObject(DATA, key="k")
    with pytest.raises(ValueError) as error:
        build(constructor, obj, bucket="b", key="k")
    text = str(error.value)
    assert text.startswith(
        "No ranges found for s3://b/k. Make sure range injection is used in 'S3StorageReader.prepare_local_plan'."
    )
    assert "S3ReaderConstructor.sequential()" in text
    assert obj.streams == []


def test_without_injection_only_metadata_can_be_read() -> None:
    constructor = S3ReaderConstructor.dcp_optimized()
    obj = FakeObject(DATA)
    with pytest.raises(ValueError, match=r"^No ranges found for s3://bucket/checkpoints/step-1/__0_0.distcp\."):
        build(constructor, obj, key="checkpoints/step-1/__0_0.distcp")
    assert isinstance(build(constructor, obj, key="checkpoints/step-1/.metadata"), SequentialS3Reader)
