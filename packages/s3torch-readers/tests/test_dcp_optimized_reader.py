"""``DCPOptimizedS3Reader``, ``ItemRange`` and ``RangeGroup``: constructor validation, coalescing
of ranges into GET streams, sequential item access, and the error texts of everything else
(upstream tst/unit/test_s3reader_dcp_optimized.py)."""

from __future__ import annotations

import io
import random
import subprocess
import sys
from dataclasses import FrozenInstanceError

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from readers_fakes import BUCKET, KEY, FakeObject

from s3torch.client import S3Exception
from s3torch.readers import DEFAULT_MAX_GAP_SIZE, DCPOptimizedS3Reader, ItemRange, RangeGroup, coalesce

DATA = random.Random(21).randbytes(2000)
SEQUENTIAL_ONLY = "DCPOptimizedS3Reader only supports sequentially accessing provided ranges: "

# Gaps of 10, 0 (adjacent), 60 and 890 bytes.
ITEMS = [ItemRange(0, 10), ItemRange(20, 30), ItemRange(30, 40), ItemRange(100, 110), ItemRange(1000, 1010)]


def read_item(reader: DCPOptimizedS3Reader, item: ItemRange) -> bytes:
    reader.seek(item.start)
    return reader.read(item.end - item.start)


# ---- the types ---------------------------------------------------------------------------


def test_item_range_and_range_group_types() -> None:
    item = ItemRange(3, 7)
    assert (item.start, item.end) == (3, 7)
    assert item == ItemRange(3, 7)
    with pytest.raises(FrozenInstanceError):
        item.start = 4  # type: ignore[misc]
    group = RangeGroup(0, 10, [ItemRange(0, 4), ItemRange(6, 10)])
    assert (group.start, group.end) == (0, 10)
    assert group.item_ranges == [ItemRange(0, 4), ItemRange(6, 10)]
    assert RangeGroup(1, 2).item_ranges == []


def test_default_max_gap_size_is_32_mebibytes() -> None:
    assert DEFAULT_MAX_GAP_SIZE == 32 * 1024 * 1024


# ---- constructor validation ----------------------------------------------------------------


def make(
    item_ranges: object = None,
    *,
    bucket: str = BUCKET,
    key: str = KEY,
    max_gap_size: object = DEFAULT_MAX_GAP_SIZE,
    obj: FakeObject | None = None,
) -> DCPOptimizedS3Reader:
    obj = obj or FakeObject(DATA)
    ranges = list(ITEMS) if item_ranges is None else item_ranges
    return DCPOptimizedS3Reader(
        bucket,
        key,
        ranges,  # type: ignore[arg-type]
        obj.get_object_info,
        obj.get_stream,
        max_gap_size=max_gap_size,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("bucket", ["", None])
def test_bucket_should_be_specified(bucket: str | None) -> None:
    with pytest.raises(ValueError, match=r"^Bucket should be specified$"):
        make(bucket=bucket)  # type: ignore[arg-type]


@pytest.mark.parametrize("key", ["", None])
def test_key_should_be_specified(key: str | None) -> None:
    with pytest.raises(ValueError, match=r"^Key should be specified$"):
        make(key=key)  # type: ignore[arg-type]


@pytest.mark.parametrize("ranges", [[], None, (), ItemRange(0, 1)], ids=["empty", "none", "tuple", "not-a-list"])
def test_item_ranges_must_be_a_non_empty_list(ranges: object) -> None:
    obj = FakeObject(DATA)
    with pytest.raises(ValueError, match=r"^item_ranges must be a non-empty List\[ItemRange\] object$"):
        DCPOptimizedS3Reader(BUCKET, KEY, ranges, obj.get_object_info, obj.get_stream)  # type: ignore[arg-type]


@pytest.mark.parametrize("ranges", [[ItemRange(0, 0)], [ItemRange(5, 5), ItemRange(10, 10)]])
def test_all_ranges_of_length_zero(ranges: list[ItemRange]) -> None:
    with pytest.raises(ValueError, match=r"^No non-empty ranges to read \(all ranges were length 0\)$"):
        make(ranges)


@pytest.mark.parametrize(("gap", "type_name"), [("1", "str"), ([1], "list"), (None, "NoneType"), (True, "bool")])
def test_max_gap_size_must_be_a_number(gap: object, type_name: str) -> None:
    with pytest.raises(TypeError) as error:
        make(max_gap_size=gap)
    assert str(error.value) == f"max_gap_size must be int or float, got {type_name}"


@pytest.mark.parametrize("gap", [-1, -0.5, float("-inf")])
def test_max_gap_size_must_be_non_negative(gap: float) -> None:
    with pytest.raises(ValueError, match=r"^max_gap_size must be non-negative$"):
        make(max_gap_size=gap)


@pytest.mark.parametrize(
    ("ranges", "message"),
    [
        ([ItemRange(10, 5)], "Invalid range: 10-5"),
        ([ItemRange(-1, 5)], "Invalid range: -1-5"),
        ([ItemRange(0, 5), ItemRange(8, 7)], "Invalid range: 8-7"),
        ([ItemRange(10, 20), ItemRange(0, 5)], "Unsorted ranges: "),
        ([ItemRange(10, 20), ItemRange(30, 40), ItemRange(25, 28)], "Unsorted ranges: "),
        ([ItemRange(0, 10), ItemRange(5, 15)], "Overlapping ranges: "),
        ([ItemRange(0, 10), ItemRange(0, 10)], "Overlapping ranges: "),
        ([ItemRange(0, 10), ItemRange(9, 10)], "Overlapping ranges: "),
    ],
)
def test_bad_ranges(ranges: list[ItemRange], message: str) -> None:
    with pytest.raises(ValueError) as error:
        make(ranges)
    assert str(error.value).startswith(message)


def test_zero_length_ranges_are_dropped() -> None:
    obj = FakeObject(DATA)
    reader = make([ItemRange(0, 0), ItemRange(0, 10), ItemRange(10, 10), ItemRange(10, 20)], obj=obj)
    assert [group.item_ranges for group in reader.groups] == [[ItemRange(0, 10), ItemRange(10, 20)]]
    assert reader.read(10) == DATA[:10]
    assert reader.read(10) == DATA[10:20]


def test_nothing_is_fetched_at_construction_and_no_head_ever() -> None:
    obj = FakeObject(DATA)
    reader = make(obj=obj)
    assert obj.streams == []
    for item in ITEMS:
        assert read_item(reader, item) == DATA[item.start : item.end]
    assert obj.info_calls == 0


def test_reader_flags_and_names() -> None:
    reader = make()
    assert reader.bucket == BUCKET
    assert reader.key == KEY
    assert reader.readable() and reader.seekable() and not reader.writable()
    assert reader.closed is False
    assert reader.tell() == 0


# ---- coalescing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gap", "groups"),
    [
        (0, [(0, 10), (20, 40), (100, 110), (1000, 1010)]),
        (9, [(0, 10), (20, 40), (100, 110), (1000, 1010)]),
        (10, [(0, 40), (100, 110), (1000, 1010)]),
        (60, [(0, 110), (1000, 1010)]),
        (889, [(0, 110), (1000, 1010)]),
        (890, [(0, 1010)]),
        (0.5, [(0, 10), (20, 40), (100, 110), (1000, 1010)]),
        (DEFAULT_MAX_GAP_SIZE, [(0, 1010)]),
        (float("inf"), [(0, 1010)]),
    ],
)
def test_coalescing_makes_one_stream_per_group(gap: float, groups: list[tuple[int, int]]) -> None:
    obj = FakeObject(DATA, chunk_size=7)
    reader = make(max_gap_size=gap, obj=obj)
    assert [(group.start, group.end) for group in reader.groups] == groups
    assert [item for group in reader.groups for item in group.item_ranges] == ITEMS
    for item in ITEMS:
        assert read_item(reader, item) == DATA[item.start : item.end]
    assert obj.ranges == groups


def test_default_gap_coalesces_everything_within_32_mebibytes() -> None:
    reader = make([ItemRange(0, 1), ItemRange(1 + DEFAULT_MAX_GAP_SIZE, 2 + DEFAULT_MAX_GAP_SIZE)])
    assert len(reader.groups) == 1
    reader = make([ItemRange(0, 1), ItemRange(2 + DEFAULT_MAX_GAP_SIZE, 3 + DEFAULT_MAX_GAP_SIZE)])
    assert len(reader.groups) == 2


def test_coalesce_starts_a_group_at_an_overlapping_range() -> None:
    # The reader refuses overlaps; s3torch-dcp's load coalesces plans that may repeat an item.
    ranges = [ItemRange(0, 10), ItemRange(10, 20), ItemRange(10, 20), ItemRange(25, 30)]
    groups = coalesce(ranges, float("inf"))
    assert [(group.start, group.end, len(group.item_ranges)) for group in groups] == [(0, 20, 2), (10, 30, 2)]


def test_only_weights_three_streams_with_gap_zero_one_with_inf() -> None:
    # Like the upstream e2e test: only every other tensor ("weight") of a file is loaded.
    weights = [ItemRange(0, 100), ItemRange(200, 300), ItemRange(400, 500)]
    for gap, streams in ((0, 3), (float("inf"), 1)):
        obj = FakeObject(DATA, chunk_size=64)
        reader = make(weights, max_gap_size=gap, obj=obj)
        for item in weights:
            assert read_item(reader, item) == DATA[item.start : item.end]
        assert len(obj.streams) == streams


# ---- access patterns ------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_size", [1, 3, 64, 5000, (7, 1, 300)])
def test_sequential_item_access_with_readinto(chunk_size: object) -> None:
    obj = FakeObject(DATA, chunk_size=chunk_size)  # type: ignore[arg-type]
    reader = make(obj=obj)
    for item in ITEMS:
        reader.seek(item.start)
        buffer = bytearray(item.end - item.start)
        assert reader.readinto(buffer) == len(buffer)
        assert buffer == DATA[item.start : item.end]
        assert reader.tell() == item.end


def test_reads_without_seeks_across_adjacent_items() -> None:
    reader = make([ItemRange(0, 10), ItemRange(10, 25), ItemRange(25, 26)])
    assert reader.read(4) == DATA[:4]
    assert reader.read(6) == DATA[4:10]
    assert reader.read(15) == DATA[10:25]
    assert reader.read(1) == DATA[25:26]


def test_arbitrary_access_inside_the_current_item() -> None:
    item = ItemRange(100, 200)
    obj = FakeObject(DATA, chunk_size=9)
    reader = make([ItemRange(0, 50), item, ItemRange(300, 400)], obj=obj)
    reader.seek(150)
    assert reader.read(10) == DATA[150:160]
    assert reader.seek(-60, io.SEEK_CUR) == 100
    assert reader.read(100) == DATA[100:200]
    reader.seek(199)
    assert reader.read(1) == DATA[199:200]
    reader.seek(120)
    buffer = bytearray(30)
    assert reader.readinto(buffer) == 30
    assert buffer == DATA[120:150]
    reader.seek(0, io.SEEK_SET)
    reader.seek(100)
    assert reader.read(0) == b""
    assert reader.read(5) == DATA[100:105]
    assert len(obj.streams) == 1


def test_moving_forward_skips_items() -> None:
    obj = FakeObject(DATA, chunk_size=7)
    reader = make(max_gap_size=float("inf"), obj=obj)
    assert read_item(reader, ITEMS[0]) == DATA[0:10]
    assert read_item(reader, ITEMS[3]) == DATA[100:110]  # skips two items of the same stream
    assert read_item(reader, ITEMS[4]) == DATA[1000:1010]
    assert obj.ranges == [(0, 1010)]


def test_moving_forward_across_groups_opens_their_streams_only() -> None:
    obj = FakeObject(DATA, chunk_size=7)
    reader = make(max_gap_size=0, obj=obj)
    assert read_item(reader, ITEMS[1]) == DATA[20:30]
    assert read_item(reader, ITEMS[4]) == DATA[1000:1010]
    assert obj.ranges == [(20, 40), (1000, 1010)]
    assert obj.streams[0].closed  # the group left behind is dropped


def test_first_read_can_be_a_later_item() -> None:
    obj = FakeObject(DATA)
    reader = make(obj=obj)
    assert read_item(reader, ITEMS[2]) == DATA[30:40]


@pytest.mark.parametrize(
    ("first", "then", "current"),
    [
        (ItemRange(20, 30), (0, 10), "20-30"),  # back to an earlier item
        (ItemRange(20, 30), (0, 5), "20-30"),
        (ItemRange(100, 110), (25, 30), "100-110"),
        (ItemRange(1000, 1010), (105, 110), "1000-1010"),
    ],
)
def test_backward_across_items_raises(first: ItemRange, then: tuple[int, int], current: str) -> None:
    reader = make()
    assert read_item(reader, first) == DATA[first.start : first.end]
    start, end = then
    reader.seek(start)
    with pytest.raises(ValueError) as error:
        reader.read(end - start)
    text = str(error.value)
    assert text.startswith(f"{SEQUENTIAL_ONLY}Range {start}-{end} not contained in current item {current}")
    assert "S3ReaderConstructor.sequential()" in text  # the fallback guidance follows


@pytest.mark.parametrize(
    ("start", "size"),
    [(5, 10), (15, 2), (35, 10), (110, 1), (1005, 10), (1500, 1)],
    ids=["spans-two-items", "in-a-gap", "spans-adjacent-items", "just-after", "past-the-last", "beyond"],
)
def test_reads_outside_one_item_raise(start: int, size: int) -> None:
    reader = make()
    assert read_item(reader, ITEMS[0]) == DATA[:10]
    reader.seek(start)
    with pytest.raises(ValueError) as error:
        reader.readinto(bytearray(size))
    assert str(error.value).startswith(f"{SEQUENTIAL_ONLY}Range {start}-{start + size} not contained in current item")


def test_read_before_the_first_item_raises() -> None:
    reader = make([ItemRange(10, 20)])
    with pytest.raises(ValueError) as error:
        reader.read(5)
    assert str(error.value).startswith(f"{SEQUENTIAL_ONLY}Range 0-5 not contained in current item")


# ---- read and seek arguments ----------------------------------------------------------------


def test_read_none_is_not_supported() -> None:
    reader = make()
    for call in (reader.read, lambda: reader.read(None)):
        with pytest.raises(ValueError) as error:
            call()
        assert str(error.value).startswith("Size cannot be None; full read not supported")


@pytest.mark.parametrize("size", [-1, -100])
def test_negative_read_is_not_supported(size: int) -> None:
    reader = make()
    with pytest.raises(ValueError) as error:
        reader.read(size)
    assert str(error.value).startswith("Size cannot be negative; full read not supported")


def test_read_zero_returns_nothing_and_fetches_nothing() -> None:
    obj = FakeObject(DATA)
    reader = make(obj=obj)
    assert reader.read(0) == b""
    assert reader.readinto(bytearray()) == 0
    assert reader.tell() == 0
    assert obj.streams == []


def test_read_size_must_be_an_integer() -> None:
    reader = make()
    with pytest.raises(TypeError) as error:
        reader.read(1.0)  # type: ignore[arg-type]
    assert str(error.value) == "argument should be integer or None, not <class 'float'>"


def test_readinto_needs_a_writable_buffer() -> None:
    reader = make()
    with pytest.raises(TypeError) as error:
        reader.readinto(b"0123")
    assert str(error.value) == "argument must be a writable bytes-like object, not bytes"


@pytest.mark.parametrize("whence", [io.SEEK_END, 3, -1])
def test_seek_end_is_not_supported(whence: int) -> None:
    reader = make()
    with pytest.raises(ValueError) as error:
        reader.seek(0, whence)
    assert str(error.value) == "whence must be SEEK_CUR or SEEK_SET integers"


def test_seek_whence_of_another_type_raises_type_error() -> None:
    reader = make()
    with pytest.raises(TypeError):
        reader.seek(0, "1")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        reader.seek(1.5)  # type: ignore[arg-type]


def test_negative_seek() -> None:
    reader = make()
    with pytest.raises(ValueError) as error:
        reader.seek(-1)
    assert str(error.value) == "negative seek value -1"
    reader.seek(5)
    with pytest.raises(ValueError) as error:
        reader.seek(-6, io.SEEK_CUR)
    assert str(error.value) == "negative seek value -1"
    assert reader.tell() == 5


def test_seek_returns_the_position_without_fetching() -> None:
    obj = FakeObject(DATA)
    reader = make(obj=obj)
    assert reader.seek(1000) == 1000
    assert reader.seek(5, io.SEEK_CUR) == 1005
    assert reader.seek(5000) == 5000  # no size known: no clamping
    assert obj.streams == []


# ---- streams that end early ------------------------------------------------------------------


def test_stream_exhausted_before_reaching_an_item() -> None:
    obj = FakeObject(DATA, chunk_size=4, stream_limit=30)
    reader = make([ItemRange(0, 10), ItemRange(50, 60)], max_gap_size=float("inf"), obj=obj)
    assert read_item(reader, ItemRange(0, 10)) == DATA[:10]
    reader.seek(50)
    with pytest.raises(S3Exception) as error:
        reader.read(10)
    assert str(error.value).startswith("S3 stream exhausted at position 30 before reaching item 50-60 (GetObject s3://")
    assert error.value.key is not None


def test_stream_exhausted_while_reading_an_item() -> None:
    obj = FakeObject(DATA, chunk_size=4, stream_limit=55)
    reader = make([ItemRange(0, 10), ItemRange(50, 60)], max_gap_size=float("inf"), obj=obj)
    assert read_item(reader, ItemRange(0, 10)) == DATA[:10]
    reader.seek(50)
    with pytest.raises(S3Exception) as error:
        reader.read(2)
    assert str(error.value).startswith("S3 stream exhausted at position 55 while reading item 50-60 (GetObject s3://")
    assert error.value.key is not None


def test_empty_stream_for_the_first_item() -> None:
    obj = FakeObject(b"")
    reader = make([ItemRange(0, 10)], obj=obj)
    with pytest.raises(S3Exception) as error:
        reader.read(1)
    assert str(error.value).startswith("S3 stream exhausted at position 0 while reading item 0-10 (GetObject s3://")
    assert error.value.key is not None


# ---- close ------------------------------------------------------------------------------------


def test_close_drops_the_stream_and_the_item() -> None:
    obj = FakeObject(DATA, chunk_size=64)
    reader = make(max_gap_size=float("inf"), obj=obj)
    assert read_item(reader, ITEMS[0]) == DATA[:10]
    assert reader._stream is not None
    assert reader._item_bytes is not None
    reader.close()
    assert reader.closed
    assert obj.streams[0].closed
    assert reader._stream is None
    assert reader._item_bytes is None
    with pytest.raises(ValueError):
        reader.read(1)
    with pytest.raises(ValueError):
        reader.readinto(bytearray(1))
    with pytest.raises(ValueError):
        reader.seek(0)


# ---- property: any plan, any chunking, any in-item access ----------------------------------


@st.composite
def plans(draw: st.DrawFn) -> tuple[list[ItemRange], float, object, list[int]]:
    cuts = sorted(draw(st.lists(st.integers(0, 600), min_size=2, max_size=16, unique=True)))
    pairs = list(zip(cuts[::2], cuts[1::2], strict=False))
    items = [ItemRange(start, end) for start, end in pairs]
    gap = draw(st.sampled_from([0, 1, 50, 200, DEFAULT_MAX_GAP_SIZE, float("inf")]))
    chunk = draw(st.sampled_from([1, 4, 33, 1000, (5, 1, 17)]))
    chosen = draw(st.lists(st.booleans(), min_size=len(items), max_size=len(items)))
    if not any(chosen):
        chosen[0] = True
    return items, gap, chunk, [index for index, keep in enumerate(chosen) if keep]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=plans(), data=st.data())
def test_any_plan_reads_the_items_it_visits(
    plan: tuple[list[ItemRange], float, object, list[int]], data: st.DataObject
) -> None:
    items, gap, chunk, visited = plan
    obj = FakeObject(DATA, chunk_size=chunk)  # type: ignore[arg-type]
    reader = make(items, max_gap_size=gap, obj=obj)
    for index in visited:
        item = items[index]
        for _ in range(data.draw(st.integers(1, 3))):  # a few accesses inside the item, in any order
            start = data.draw(st.integers(item.start, item.end - 1))
            end = data.draw(st.integers(start + 1, item.end))
            reader.seek(start)
            if data.draw(st.booleans()):
                assert reader.read(end - start) == DATA[start:end]
            else:
                buffer = bytearray(end - start)
                assert reader.readinto(buffer) == end - start
                assert buffer == DATA[start:end]
            assert reader.tell() == end
    groups = reader.groups
    touched = sorted({next(i for i, g in enumerate(groups) if items[index] in g.item_ranges) for index in visited})
    assert obj.ranges == [(groups[i].start, groups[i].end) for i in touched]


def test_a_reader_whose_construction_failed_is_finalized_quietly() -> None:
    """io.IOBase's finalizer calls close() on a half-built reader; in development mode (-X dev)
    an exception there is printed as "Exception ignored in ...". There must be none."""
    code = (
        "import gc\n"
        "from s3torch.readers import DCPOptimizedS3Reader, ItemRange, RangedS3Reader, SequentialS3Reader\n"
        "for args in (('b', '', [ItemRange(0, 1)]), ('b', 'k', []), ('b', 'k', [ItemRange(2, 1)]), ('', 'k', [])):\n"
        "    try:\n"
        "        DCPOptimizedS3Reader(*args, len, len)\n"
        "    except ValueError:\n"
        "        pass\n"
        "try:\n"
        "    DCPOptimizedS3Reader('b', 'k', [ItemRange(0, 1)], len, len, max_gap_size='1')\n"
        "except TypeError:\n"
        "    pass\n"
        "try:\n"
        "    SequentialS3Reader('b', 'k', None, None)\n"
        "except TypeError:\n"
        "    pass\n"
        "for build in (lambda: RangedS3Reader('b', 'k', len, len, buffer_size=-1),\n"
        "              lambda: RangedS3Reader('', 'k', len, len), lambda: SequentialS3Reader('', 'k', len, len)):\n"
        "    try:\n"
        "        build()\n"
        "    except ValueError:\n"
        "        pass\n"
        "gc.collect()\n"
    )
    result = subprocess.run(
        [sys.executable, "-X", "dev", "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "Exception ignored" not in result.stderr, result.stderr
