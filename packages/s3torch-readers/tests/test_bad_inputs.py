"""Bad inputs to the readers' public API, as one table: each raises a ValueError or TypeError
whose message names the argument (the upstream's texts where it documents them), before any
request."""

# ruff: noqa: E501  (a table reads best one case per line)

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pytest
from readers_fakes import FakeObject

from s3torch.readers import (
    DCPOptimizedConstructor,
    DCPOptimizedS3Reader,
    ItemRange,
    RangedS3Reader,
    S3ReaderConstructor,
    SequentialS3Reader,
    check_reader_constructor,
)

DATA = bytes(range(256)) * 4
OBJ = FakeObject(DATA)
INFO, STREAM = OBJ.get_object_info, OBJ.get_stream
ITEMS = [ItemRange(0, 10)]


def dcp(**changes: Any) -> DCPOptimizedS3Reader:
    arguments: dict[str, Any] = {
        "bucket": "b",
        "key": "k",
        "item_ranges": ITEMS,
        "get_object_info": INFO,
        "get_stream": STREAM,
    }
    arguments.update(changes)
    return DCPOptimizedS3Reader(**arguments)


# (id, call, exception type, a regex the message must match)
BAD_INPUTS: list[tuple[str, Callable[[], Any], type[Exception], str]] = [
    # ---- reader constructors -----------------------------------------------------------------
    ("range_based-negative", lambda: S3ReaderConstructor.range_based(-1), ValueError,
     r"buffer_size must be non-negative \(0 disables the buffer\), got -1"),
    ("range_based-str", lambda: S3ReaderConstructor.range_based("8MiB"), TypeError, r"buffer_size must be an int or None"),
    ("range_based-float", lambda: S3ReaderConstructor.range_based(1.5), TypeError, r"buffer_size must be an int"),
    ("range_based-bool", lambda: S3ReaderConstructor.range_based(True), TypeError, r"buffer_size must be an int"),
    ("dcp_optimized-negative", lambda: S3ReaderConstructor.dcp_optimized(-1), ValueError,
     r"^max_gap_size must be non-negative$"),
    ("dcp_optimized-nan", lambda: S3ReaderConstructor.dcp_optimized(float("nan")), ValueError, r"max_gap_size"),
    ("dcp_optimized-str", lambda: S3ReaderConstructor.dcp_optimized("1"), TypeError,
     r"^max_gap_size must be int or float, got str$"),
    ("dcp_optimized-none", lambda: S3ReaderConstructor.dcp_optimized(None), TypeError, r"max_gap_size must be int or float"),
    ("dcp-ranges-empty-storage-data", lambda: DCPOptimizedConstructor().set_item_ranges_by_file([object()], {}, "s3://b"),
     ValueError, r"^storage_data must not be empty; required to map ReadItems to file ranges\.$"),
    ("reader_constructor-str", lambda: check_reader_constructor("sequential"), TypeError,
     r"reader_constructor must be a reader constructor, not the string 'sequential': use S3ReaderConstructor\.sequential\(\)"),
    ("reader_constructor-unknown-str", lambda: check_reader_constructor("fast"), TypeError,
     r"not the string 'fast': use S3ReaderConstructor\.sequential\(\), \.range_based\(\) or \.dcp_optimized\(\)"),
    ("reader_constructor-factory", lambda: check_reader_constructor(S3ReaderConstructor.range_based), TypeError,
     r"call the factory, S3ReaderConstructor\.range_based\(\), instead of passing S3ReaderConstructor\.range_based"),
    ("reader_constructor-class", lambda: check_reader_constructor(S3ReaderConstructor), TypeError,
     r"reader_constructor must be a reader constructor or None, got type"),
    ("reader_constructor-int", lambda: check_reader_constructor(8, "reader"), TypeError,
     r"reader must be a reader constructor or None, got int"),
    # ---- readers -----------------------------------------------------------------------------
    ("sequential-bucket-empty", lambda: SequentialS3Reader("", "k", INFO, STREAM), ValueError,
     r"^Bucket should be specified$"),
    ("sequential-bucket-int", lambda: SequentialS3Reader(5, "k", INFO, STREAM), TypeError, r"bucket must be a str"),
    ("sequential-key-none", lambda: SequentialS3Reader("b", None, INFO, STREAM), ValueError, r"^Key should be specified$"),
    ("ranged-key-int", lambda: RangedS3Reader("b", 5, INFO, STREAM), TypeError, r"key must be a str, got int"),
    ("sequential-get_object_info", lambda: SequentialS3Reader("b", "k", None, STREAM), TypeError,
     r"get_object_info must be callable, got NoneType \(s3://b/k\)"),
    ("ranged-get_stream", lambda: RangedS3Reader("b", "k", INFO, b"data"), TypeError, r"get_stream must be callable"),
    ("ranged-buffer-negative", lambda: RangedS3Reader("b", "k", INFO, STREAM, buffer_size=-8), ValueError,
     r"buffer_size must be non-negative"),
    ("dcp-key-empty", lambda: dcp(key=""), ValueError, r"^Key should be specified$"),
    ("dcp-ranges-empty", lambda: dcp(item_ranges=[]), ValueError, r"^item_ranges must be a non-empty List\[ItemRange\] object$"),
    ("dcp-ranges-tuple", lambda: dcp(item_ranges=[(0, 10)]), TypeError,
     r"item_ranges must be a non-empty List\[ItemRange\] object, got an item \(0, 10\)"),
    ("dcp-range-str", lambda: dcp(item_ranges=[ItemRange("0", "10")]), TypeError, r"ItemRange start and end must be ints"),
    ("dcp-range-negative", lambda: dcp(item_ranges=[ItemRange(-1, 10)]), ValueError, r"^Invalid range: -1-10$"),
    ("dcp-range-reversed", lambda: dcp(item_ranges=[ItemRange(10, 5)]), ValueError, r"^Invalid range: 10-5$"),
    ("dcp-ranges-unsorted", lambda: dcp(item_ranges=[ItemRange(20, 30), ItemRange(0, 10)]), ValueError,
     r"^Unsorted ranges"),
    ("dcp-ranges-overlap", lambda: dcp(item_ranges=[ItemRange(0, 20), ItemRange(10, 30)]), ValueError,
     r"^Overlapping ranges"),
    ("dcp-ranges-all-empty", lambda: dcp(item_ranges=[ItemRange(5, 5)]), ValueError,
     r"^No non-empty ranges to read \(all ranges were length 0\)$"),
    ("dcp-gap-negative", lambda: dcp(max_gap_size=-1), ValueError, r"^max_gap_size must be non-negative$"),
    # ---- reading -----------------------------------------------------------------------------
    ("read-size-str", lambda: OBJ.sequential().read("10"), TypeError,
     r"^argument should be integer or None, not <class 'str'>$"),
    ("readinto-bytes", lambda: OBJ.ranged().readinto(b"immutable"), TypeError,
     r"^argument must be a writable bytes-like object, not bytes$"),
    ("seek-offset-float", lambda: OBJ.sequential().seek(1.5), TypeError, r"^integer argument expected"),
    ("seek-whence-unknown", lambda: OBJ.ranged().seek(0, 7), ValueError,
     r"^Seek must be passed SEEK_CUR, SEEK_SET, or SEEK_END$"),
    ("seek-negative", lambda: OBJ.sequential().seek(-1), ValueError, r"^negative seek value -1$"),
    ("dcp-read-none", lambda: dcp().read(None), ValueError, r"^Size cannot be None; full read not supported"),
    ("dcp-seek-end", lambda: dcp().seek(0, io.SEEK_END), ValueError, r"^whence must be SEEK_CUR or SEEK_SET integers$"),
]  # fmt: skip


@pytest.mark.parametrize(("call", "error", "message"), [c[1:] for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS])
def test_a_bad_input_raises_a_clear_error(call: Callable[[], Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        call()


def test_valid_unusual_inputs_give_a_correct_result() -> None:
    check_reader_constructor(None)  # the default strategy
    check_reader_constructor(SequentialS3Reader)  # a reader class is a constructor
    reader = S3ReaderConstructor.range_based(0)(bucket="b", key="k", get_object_info=INFO, get_stream=STREAM)
    assert reader.read(5) == DATA[:5]  # no buffer
    assert S3ReaderConstructor.dcp_optimized(float("inf")).max_gap_size == float("inf")
    assert SequentialS3Reader("b", "", INFO, STREAM).read() == DATA  # an empty key is the upstream's business
