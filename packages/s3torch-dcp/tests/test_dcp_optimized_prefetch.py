"""The DCP-optimized reader's fetch-ahead (``prefetch()``, used by every DCP load): range groups
after the current one are fetched concurrently and bounded, the bytes and errors are the ones a
plain read would give, and closing lets go of everything."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from concurrent.futures import CancelledError
from typing import Any

import pytest
from dcp_support import BUCKET, CONFIG, REGION, MockBucket
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from s3torch.client import S3Client, S3Exception
from s3torch.readers import DCPOptimizedS3Reader, ItemRange, S3ReaderConstructor
from s3torch.readers import _dcp_optimized as dcp_optimized

DATA = bytes(range(256)) * 8
WAIT = 30  # seconds; only reached when something is broken


class Stream:
    """Bytes [start, end) of DATA in chunks; ``gate`` (if set) holds the first chunk back."""

    def __init__(self, owner: FakeObject, start: int, end: int) -> None:
        self.owner, self.start_offset, self.position, self.end = owner, start, start, min(end, owner.limit)
        self.etag: str | None = None
        self.started = threading.Event()
        self.closed = False
        self.first_thread = ""

    def __iter__(self) -> Iterator[memoryview]:
        return self

    def __next__(self) -> memoryview:
        if not self.started.is_set():
            self.first_thread = threading.current_thread().name
            self.started.set()
            gate = self.owner.gates.get(self.start_offset)
            if gate is not None:
                assert gate.wait(WAIT)
            failure = self.owner.failures.get(self.start_offset)
            if failure is not None:
                raise failure
            self.etag = '"v1"'
        if self.closed or self.position >= self.end:
            raise StopIteration
        size = min(self.owner.chunk, self.end - self.position)
        chunk = memoryview(bytearray(DATA[self.position : self.position + size]))
        self.position += size
        return chunk

    def close(self) -> None:
        self.closed = True


class FakeObject:
    def __init__(self, chunk: int = 7, limit: int = len(DATA)) -> None:
        self.chunk = chunk
        self.limit = limit
        self.streams: list[Stream] = []
        self.gates: dict[int, threading.Event] = {}
        self.failures: dict[int, Exception] = {}
        self.lock = threading.Lock()

    def get_stream(self, start: int | None = None, end: int | None = None) -> Stream:
        assert start is not None and end is not None
        stream = Stream(self, start, end)
        with self.lock:
            self.streams.append(stream)
        return stream

    def stream_at(self, start: int) -> Stream:
        return next(stream for stream in self.streams if stream.start_offset == start)

    def reader(self, items: list[ItemRange], gap: float = 0) -> DCPOptimizedS3Reader:
        return DCPOptimizedS3Reader(BUCKET, "key", items, lambda: None, self.get_stream, max_gap_size=gap)  # type: ignore[arg-type,return-value]


def read(reader: DCPOptimizedS3Reader, item: ItemRange) -> bytes:
    reader.seek(item.start)
    return reader.read(item.end - item.start)


SPREAD = [ItemRange(start, start + 10) for start in range(0, 1000, 100)]  # 10 groups with gap 0


def test_groups_ahead_are_fetched_while_the_current_one_is_read() -> None:
    obj = FakeObject()
    reader = obj.reader(SPREAD)
    reader.prefetch()
    assert read(reader, SPREAD[0]) == DATA[0:10]
    ahead = dcp_optimized.PREFETCH_GROUPS
    for item in SPREAD[1 : 1 + ahead]:
        assert obj.stream_at(item.start).started.wait(WAIT)
    assert len(obj.streams) == 1 + ahead  # bounded: nothing further ahead yet
    assert read(reader, SPREAD[1]) == DATA[100:110]
    assert len(obj.streams) == 2 + ahead
    for item in SPREAD[2:]:
        assert read(reader, item) == DATA[item.start : item.end]
    assert [stream.start_offset for stream in obj.streams] == [item.start for item in SPREAD]
    # Groups after the first were fetched by the background threads.
    assert obj.streams[0].first_thread == threading.current_thread().name
    assert all(stream.first_thread.startswith("s3torch-dcp-prefetch") for stream in obj.streams[1:])
    reader.close()


def test_fetches_ahead_run_concurrently() -> None:
    obj = FakeObject()
    gate = threading.Event()
    for item in SPREAD[1:4]:
        obj.gates[item.start] = gate  # none of them can finish until all three have started
    reader = obj.reader(SPREAD)
    reader.prefetch()
    assert read(reader, SPREAD[0]) == DATA[0:10]
    for item in SPREAD[1:4]:
        assert obj.stream_at(item.start).started.wait(WAIT)
    gate.set()
    for item in SPREAD[1:]:
        assert read(reader, item) == DATA[item.start : item.end]


def test_without_prefetch_groups_are_fetched_as_reads_reach_them() -> None:
    obj = FakeObject()
    reader = obj.reader(SPREAD)
    assert read(reader, SPREAD[0]) == DATA[0:10]
    assert read(reader, SPREAD[5]) == DATA[500:510]
    assert [stream.start_offset for stream in obj.streams] == [0, 500]


def test_a_group_is_fetched_ahead_only_up_to_the_byte_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dcp_optimized, "PREFETCH_BYTES_PER_GROUP", 20)
    obj = FakeObject(chunk=7)
    items = [ItemRange(0, 10), ItemRange(100, 200), ItemRange(300, 310)]
    reader = obj.reader(items)
    reader.prefetch()
    assert read(reader, items[0]) == DATA[0:10]
    second = obj.stream_at(100)
    assert second.started.wait(WAIT)
    reader._ahead[1].future.result(WAIT)
    assert second.position - 100 == 21  # three 7-byte chunks: the first to reach 20 bytes
    assert read(reader, items[1]) == DATA[100:200]  # the rest comes from the same stream
    assert read(reader, items[2]) == DATA[300:310]
    assert len(obj.streams) == 3


def test_a_prefetched_stream_that_ends_early_gives_the_usual_error() -> None:
    obj = FakeObject(limit=505)
    reader = obj.reader(SPREAD)
    reader.prefetch()
    for item in SPREAD[:5]:
        assert read(reader, item) == DATA[item.start : item.end]
    with pytest.raises(S3Exception) as error:
        read(reader, SPREAD[5])
    assert str(error.value).startswith(
        "S3 stream exhausted at position 505 while reading item 500-510 (GetObject s3://"
    )
    assert error.value.key is not None


def test_a_failed_fetch_ahead_raises_when_its_group_is_reached() -> None:
    obj = FakeObject()
    failure = S3Exception("Service error: InternalError: injected", code="InternalError", status=500)
    obj.failures[300] = failure
    reader = obj.reader(SPREAD)
    reader.prefetch()
    for item in SPREAD[:3]:
        assert read(reader, item) == DATA[item.start : item.end]
    with pytest.raises(S3Exception) as error:
        read(reader, SPREAD[3])
    assert error.value is failure
    assert obj.stream_at(300).closed


def test_skipped_groups_are_dropped() -> None:
    obj = FakeObject()
    reader = obj.reader(SPREAD)
    reader.prefetch()
    assert read(reader, SPREAD[0]) == DATA[0:10]
    for item in SPREAD[1:5]:
        assert obj.stream_at(item.start).started.wait(WAIT)
    assert read(reader, SPREAD[3]) == DATA[300:310]
    for fetch_start in (100, 200):
        stream = obj.stream_at(fetch_start)
        assert stream.closed or not stream.started.is_set()
    assert read(reader, SPREAD[9]) == DATA[900:910]


def test_close_lets_go_of_fetches_in_flight() -> None:
    obj = FakeObject()
    gate = threading.Event()
    obj.gates[100] = gate
    reader = obj.reader(SPREAD)
    reader.prefetch()
    assert read(reader, SPREAD[0]) == DATA[0:10]
    held = obj.stream_at(100)
    assert held.started.wait(WAIT)
    fetches = list(reader._ahead.values())
    reader.close()
    assert reader._ahead == {}
    gate.set()
    for fetch in fetches:
        with contextlib.suppress(CancelledError):  # cancelled before it started
            fetch.future.result(WAIT)
    for fetch in fetches:
        assert fetch.stream.closed or fetch.future.cancelled()
    assert held.closed


def test_prefetch_on_a_closed_reader_raises() -> None:
    reader = FakeObject().reader(SPREAD)
    reader.close()
    with pytest.raises(ValueError, match="closed"):
        reader.prefetch()


@st.composite
def plans(draw: st.DrawFn) -> tuple[list[ItemRange], float, int]:
    cuts = sorted(draw(st.lists(st.integers(0, len(DATA)), min_size=2, max_size=24, unique=True)))
    items = [ItemRange(start, end) for start, end in zip(cuts[::2], cuts[1::2], strict=False)]
    return items, draw(st.sampled_from([0, 1, 30, 500, float("inf")])), draw(st.sampled_from([1, 5, 64, 4096]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=plans())
def test_any_plan_read_in_order_with_prefetch(plan: tuple[list[ItemRange], float, int]) -> None:
    items, gap, chunk = plan
    obj = FakeObject(chunk=chunk)
    reader = obj.reader(items, gap)
    reader.prefetch()
    for item in items:
        assert read(reader, item) == DATA[item.start : item.end]
    assert sorted(stream.start_offset for stream in obj.streams) == [group.start for group in reader.groups]
    reader.close()


# ---- with the real client (moto in process) ---------------------------------------------------


def test_groups_fetched_ahead_are_pinned_to_the_first_version(s3: MockBucket) -> None:
    s3.put("file.distcp", DATA)
    constructor = S3ReaderConstructor.dcp_optimized(0)
    uri = s3.uri("file.distcp")
    constructor._item_ranges_by_file = {uri: SPREAD}
    client = S3Client(REGION, s3client_config=CONFIG)
    reader = client.get_object(s3.bucket, "file.distcp", reader_constructor=constructor)
    assert isinstance(reader, DCPOptimizedS3Reader)
    reader.prefetch()
    assert read(reader, SPREAD[0]) == DATA[0:10]
    etag = reader._etag
    assert etag
    fetches: list[Any] = list(reader._ahead.values())
    assert fetches and all(fetch.stream.etag == etag for fetch in fetches)
    for item in SPREAD[1:]:
        assert read(reader, item) == DATA[item.start : item.end]
    reader.close()
