"""The DCP-optimized reader's engine beyond the upstream's file API: the requests of the range
groups ahead (``prefetch()``, declared by every DCP load) are sent concurrently, bounded and
pinned to the first version; ``item_stream`` (the ``ItemStreamReader`` capability) puts an
item's bytes straight into the caller's buffer; errors are the ones a plain read gives, and
closing lets go of everything."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from concurrent.futures import CancelledError
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws
from readers_fakes import BUCKET, KEY, FakeObject, FakeStream

from s3torch.client import S3Client, S3ClientConfig, S3Exception
from s3torch.readers import DCPOptimizedS3Reader, ItemRange, ItemStream, ItemStreamReader, S3ReaderConstructor
from s3torch.readers import _dcp_optimized as dcp_optimized

DATA = bytes(range(256)) * 8
WAIT = 30  # seconds; only reached when something is broken
SPREAD = [ItemRange(start, start + 10) for start in range(0, 1000, 100)]  # 10 groups with gap 0


class GatedStream(FakeStream):
    """A ``FakeStream`` whose request (``start``) records its thread, may wait on a gate, and may fail."""

    def __init__(self, owner: GatedObject, start: int | None, end: int | None) -> None:
        super().__init__(owner, start, end)
        self.owner = owner
        self.requested = threading.Event()
        self.closed_event = threading.Event()  # close() may come from a prefetch thread
        self.first_thread = ""

    def start(self) -> None:
        if not self.started:
            self.first_thread = threading.current_thread().name
            self.requested.set()
            gate = self.owner.gates.get(self.start_argument or 0)
            if gate is not None:
                assert gate.wait(WAIT)
            failure = self.owner.failures.get(self.start_argument or 0)
            if failure is not None:
                raise failure
        super().start()

    def close(self) -> None:
        super().close()
        self.closed_event.set()


class GatedObject(FakeObject):
    def __init__(self, data: bytes = DATA, **kwargs: Any) -> None:
        super().__init__(data, **kwargs)
        self.gates: dict[int, threading.Event] = {}
        self.failures: dict[int, Exception] = {}
        self.lock = threading.Lock()
        self.buffers: list[object] = []  # what each readinto was given to fill
        self.gated: list[GatedStream] = []

    def get_stream(self, start: int | None = None, end: int | None = None) -> GatedStream:
        stream = GatedStream(self, start, end)
        real_readinto = stream.readinto

        def readinto(buffer: Any) -> int:
            self.buffers.append(memoryview(buffer).obj)
            return real_readinto(buffer)

        stream.readinto = readinto  # type: ignore[method-assign]
        with self.lock:
            self.streams.append(stream)
            self.gated.append(stream)
        return stream

    def stream_at(self, start: int) -> GatedStream:
        return next(stream for stream in self.gated if stream.start_argument == start)

    def reader(self, items: list[ItemRange], gap: float = 0) -> DCPOptimizedS3Reader:
        return DCPOptimizedS3Reader(BUCKET, KEY, items, self.get_object_info, self.get_stream, max_gap_size=gap)


def read(reader: DCPOptimizedS3Reader, item: ItemRange) -> bytes:
    reader.seek(item.start)
    return reader.read(item.end - item.start)


def streamed(reader: DCPOptimizedS3Reader, item: ItemRange) -> bytearray:
    return reader.item_stream(item.start, item.end).read(item.end - item.start)


# ---- fetching ahead ---------------------------------------------------------------------------


@pytest.mark.parametrize("read_with", [read, streamed])
def test_requests_of_the_groups_ahead_are_sent_while_the_current_one_is_read(read_with: Any) -> None:
    obj = GatedObject()
    reader = obj.reader(SPREAD)
    reader.prefetch()
    assert read_with(reader, SPREAD[0]) == DATA[0:10]
    ahead = dcp_optimized.PREFETCH_GROUPS
    for item in SPREAD[1 : 1 + ahead]:
        assert obj.stream_at(item.start).requested.wait(WAIT)
    assert len(obj.streams) == 1 + ahead  # bounded: nothing further ahead yet
    assert read_with(reader, SPREAD[1]) == DATA[100:110]
    assert len(obj.streams) == 2 + ahead
    for item in SPREAD[2:]:
        assert read_with(reader, item) == DATA[item.start : item.end]
    assert [stream.start_argument for stream in obj.streams] == [item.start for item in SPREAD]
    # Groups after the first were requested by the background threads.
    assert obj.gated[0].first_thread == threading.current_thread().name
    assert all(stream.first_thread.startswith("s3torch-dcp-prefetch") for stream in obj.gated[1:])
    reader.close()


def test_requests_ahead_run_concurrently() -> None:
    obj = GatedObject()
    gate = threading.Event()
    for item in SPREAD[1:4]:
        obj.gates[item.start] = gate  # none of them can finish until all three have started
    reader = obj.reader(SPREAD)
    reader.prefetch()
    assert read(reader, SPREAD[0]) == DATA[0:10]
    for item in SPREAD[1:4]:
        assert obj.stream_at(item.start).requested.wait(WAIT)
    gate.set()
    for item in SPREAD[1:]:
        assert read(reader, item) == DATA[item.start : item.end]


def test_without_prefetch_groups_are_requested_as_reads_reach_them() -> None:
    obj = GatedObject()
    reader = obj.reader(SPREAD)
    assert read(reader, SPREAD[0]) == DATA[0:10]
    assert streamed(reader, SPREAD[5]) == DATA[500:510]
    assert [stream.start_argument for stream in obj.streams] == [0, 500]


def failure_at(obj: GatedObject, index: int, read_with: Any) -> S3Exception:
    """Read ``SPREAD`` in order after ``prefetch()``: the error the item ``index`` raises."""
    reader = obj.reader(SPREAD)
    reader.prefetch()
    for item in SPREAD[:index]:
        assert read_with(reader, item) == DATA[item.start : item.end]
    with pytest.raises(S3Exception) as error:
        read_with(reader, SPREAD[index])
    return error.value


def test_a_stream_ahead_that_ends_early_gives_the_usual_error() -> None:
    error = failure_at(GatedObject(stream_limit=505), 5, read)
    assert str(error).startswith("S3 stream exhausted at position 505 while reading item 500-510 (GetObject s3://")
    assert (error.bucket, error.key) == (BUCKET, KEY)


def test_a_failed_request_ahead_raises_when_its_group_is_reached() -> None:
    obj = GatedObject()
    failure = S3Exception("Service error: InternalError: injected", code="InternalError", status=500)
    obj.failures[300] = failure
    assert failure_at(obj, 3, streamed) is failure
    assert obj.stream_at(300).closed


def test_skipped_groups_are_dropped() -> None:
    obj = GatedObject()
    reader = obj.reader(SPREAD)
    reader.prefetch()
    assert read(reader, SPREAD[0]) == DATA[0:10]
    skipped = [reader._ahead[1], reader._ahead[2]]
    for fetch in skipped:
        fetch.future.result(WAIT)  # answered: dropping it closes its stream at once
    assert read(reader, SPREAD[3]) == DATA[300:310]
    assert 1 not in reader._ahead and 2 not in reader._ahead
    assert all(fetch.stream.closed for fetch in skipped)
    assert read(reader, SPREAD[9]) == DATA[900:910]


def test_close_lets_go_of_requests_in_flight() -> None:
    obj = GatedObject()
    gate = threading.Event()
    obj.gates[100] = gate
    reader = obj.reader(SPREAD)
    reader.prefetch()
    assert read(reader, SPREAD[0]) == DATA[0:10]
    held = obj.stream_at(100)
    assert held.requested.wait(WAIT)
    fetches = list(reader._ahead.values())
    reader.close()
    assert reader._ahead == {}
    gate.set()
    for fetch in fetches:
        with contextlib.suppress(CancelledError):  # cancelled before it started
            fetch.future.result(WAIT)
    # A fetch that was running closes its stream in a done-callback, which its thread runs
    # just after the result is set: waited for, not assumed.
    assert fetches and all(stream.closed_event.wait(WAIT) for stream in obj.gated)
    assert held.closed


def test_prefetch_on_a_closed_reader_raises() -> None:
    reader = GatedObject().reader(SPREAD)
    reader.close()
    with pytest.raises(ValueError, match="closed"):
        reader.prefetch()


# ---- item_stream -----------------------------------------------------------------------------


def test_the_reader_has_the_item_stream_capability() -> None:
    reader = GatedObject().reader(SPREAD)
    assert isinstance(reader, ItemStreamReader)
    assert isinstance(reader.item_stream(0, 10), ItemStream)
    assert not isinstance(FakeObject(DATA).sequential(), ItemStreamReader)


def test_item_bytes_land_straight_in_the_callers_buffer() -> None:
    obj = GatedObject()
    items = [ItemRange(0, 300), ItemRange(500, 900)]
    reader = obj.reader(items, gap=float("inf"))
    destination = bytearray(400)
    item = reader.item_stream(500, 900)
    assert (item.length, item.position) == (400, 0)
    item.readinto(memoryview(destination)[:150])
    item.readinto(memoryview(destination)[150:])
    assert destination == DATA[500:900]
    assert item.position == 400
    assert obj.buffers[-2:] == [destination, destination]  # no buffer of the reader in between
    assert obj.ranges == [(0, 900)]  # the gap before the item was read and dropped


def test_item_stream_skips_forward_inside_the_item() -> None:
    reader = GatedObject().reader([ItemRange(100, 200)])
    item = reader.item_stream(100, 200)
    assert item.read(5) == DATA[100:105]
    item.skip_to(50)
    assert item.read(10) == DATA[150:160]
    with pytest.raises(ValueError, match="forward-only"):
        item.skip_to(10)
    with pytest.raises(ValueError, match="past the end of item 100-200"):
        item.skip_to(101)
    with pytest.raises(ValueError, match="past the end of item 100-200"):
        item.read(41)
    assert item.read(40) == DATA[160:200]


def test_item_stream_is_forward_only_across_items_and_only_for_planned_items() -> None:
    reader = GatedObject().reader(SPREAD)
    first = reader.item_stream(100, 110)
    assert first.read(1) == DATA[100:101]
    with pytest.raises(ValueError, match="only supports sequentially accessing"):
        reader.item_stream(0, 10)  # before the current item
    with pytest.raises(ValueError, match="only supports sequentially accessing"):
        reader.item_stream(100, 110)  # the current item again: its first byte went by
    with pytest.raises(ValueError, match="only supports sequentially accessing"):
        reader.item_stream(200, 205)  # not a planned item
    assert bytes(reader.item_stream(300, 310).read(10)) == DATA[300:310]
    with pytest.raises(ValueError, match="no longer the reader's current item"):
        first.read(1)
    assert read(reader, SPREAD[4]) == DATA[400:410]  # the file-like API continues after it


def test_item_stream_of_an_object_shorter_than_the_plan_names_it() -> None:
    reader = GatedObject(stream_limit=305).reader(SPREAD, gap=float("inf"))
    assert streamed(reader, SPREAD[0]) == DATA[0:10]
    item = reader.item_stream(300, 310)
    with pytest.raises(S3Exception) as error:
        item.read(10)
    assert str(error.value).startswith("S3 stream exhausted at position 305 while reading item 300-310")
    assert (error.value.bucket, error.value.key) == (BUCKET, KEY)


def test_item_stream_on_a_closed_reader_raises() -> None:
    reader = GatedObject().reader(SPREAD)
    item = reader.item_stream(0, 10)
    reader.close()
    with pytest.raises(ValueError, match="closed"):
        item.read(1)
    with pytest.raises(ValueError, match="closed"):
        reader.item_stream(100, 110)


# ---- any plan --------------------------------------------------------------------------------


@st.composite
def plans(draw: st.DrawFn) -> tuple[list[ItemRange], float, list[bool]]:
    cuts = sorted(draw(st.lists(st.integers(0, len(DATA)), min_size=2, max_size=24, unique=True)))
    items = [ItemRange(start, end) for start, end in zip(cuts[::2], cuts[1::2], strict=False)]
    how = draw(st.lists(st.booleans(), min_size=len(items), max_size=len(items)))
    return items, draw(st.sampled_from([0, 1, 30, 500, float("inf")])), how


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=plans())
def test_any_plan_read_in_order_with_prefetch_either_way(plan: tuple[list[ItemRange], float, list[bool]]) -> None:
    items, gap, by_stream = plan
    obj = GatedObject()
    reader = obj.reader(items, gap)
    reader.prefetch()
    for item, stream_it in zip(items, by_stream, strict=True):
        got = streamed(reader, item) if stream_it else read(reader, item)
        assert got == DATA[item.start : item.end]
    assert sorted(stream.start_argument or 0 for stream in obj.streams) == [group.start for group in reader.groups]
    reader.close()


# ---- with the real client (moto in process) ---------------------------------------------------


@pytest.fixture
def client(aws_environment: None) -> Iterator[S3Client]:
    with mock_aws():
        boto = boto3.client("s3", region_name="us-east-1")
        boto.create_bucket(Bucket=BUCKET)
        boto.put_object(Bucket=BUCKET, Key=KEY, Body=DATA)
        yield S3Client("us-east-1", s3client_config=S3ClientConfig(part_size=5 * 1024 * 1024))


def test_groups_requested_ahead_are_pinned_to_the_first_version(client: S3Client) -> None:
    constructor = S3ReaderConstructor.dcp_optimized(0)
    constructor._item_ranges_by_file = {f"s3://{BUCKET}/{KEY}": SPREAD}
    reader = client.get_object(BUCKET, KEY, reader_constructor=constructor)
    assert isinstance(reader, DCPOptimizedS3Reader)
    reader.prefetch()
    assert streamed(reader, SPREAD[0]) == DATA[0:10]
    etag = reader._etag
    assert etag
    fetches: list[Any] = list(reader._ahead.values())
    assert len(fetches) == dcp_optimized.PREFETCH_GROUPS
    assert all(fetch.stream.etag == etag for fetch in fetches)
    for item in SPREAD[1:]:
        assert streamed(reader, item) == DATA[item.start : item.end]
    reader.close()
