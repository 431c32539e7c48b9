"""``PrefetchingReaders`` with in-memory objects: order, bounds, errors in place, cleanup."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from s3torch.client import ObjectInfo, S3Exception
from s3torch.datasets import S3BucketKeyData
from s3torch.datasets._prefetch import PrefetchGate, PrefetchingReaders
from s3torch.readers import RangedS3Reader, S3Reader, SequentialS3Reader

BUCKET = "fake-bucket"


class FakeStore:
    """Objects in memory; records which streams were started, closed, and what was received."""

    def __init__(self, objects: dict[str, bytes], failing: frozenset[str] = frozenset(), latency: float = 0.0) -> None:
        self.objects = objects
        self.failing = failing
        self.latency = latency  # how long a GET waits for its response
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)  # notified when a stream is closed
        self.started: list[str] = []
        self.start_threads: list[str] = []  # the thread each stream was started on
        self.closed: list[str] = []
        self.received = 0
        self.max_ahead = 0  # started, not yet received by the consumer
        self.large_ahead: list[int] = []

    def stream(self, key: str, start: int | None = None, end: int | None = None) -> FakeStream:
        return FakeStream(self, key, start, end)

    def receive(self) -> None:
        with self.lock:
            self.received += 1

    def note_start(self, key: str) -> None:
        with self.lock:
            self.started.append(key)
            self.start_threads.append(threading.current_thread().name)
            self.max_ahead = max(self.max_ahead, len(self.started) - self.received)


class FakeStream:
    def __init__(self, store: FakeStore, key: str, start: int | None, end: int | None) -> None:
        self.store = store
        self.bucket = BUCKET
        self.key = key
        self.data = store.objects[key][start or 0 : end]
        self.size: int | None = None
        self.etag: str | None = None
        self.started = False
        self.done = False

    def start(self) -> None:
        if not self.started:
            self.started = True
            self.store.note_start(self.key)
            if self.store.latency:
                time.sleep(self.store.latency)  # a store that takes this long to answer
            if self.key in self.store.failing:
                raise S3Exception(
                    f"Service error: The key does not exist (GetObject s3://{BUCKET}/{self.key})",
                    bucket=BUCKET,
                    key=self.key,
                )
            self.size = len(self.store.objects[self.key])
            self.etag = '"etag"'

    def __iter__(self) -> FakeStream:
        return self

    def __next__(self) -> memoryview:
        self.start()
        if self.done:
            raise StopIteration
        self.done = True
        return memoryview(self.data)

    def readinto(self, buffer: Any) -> int:
        self.start()
        view = memoryview(buffer).cast("B")
        count = 0 if self.done else min(len(view), len(self.data))
        view[:count] = self.data[:count]
        self.data = self.data[count:]
        self.done = not self.data
        return count

    def close(self) -> None:
        with self.store.changed:
            self.store.closed.append(self.key)
            self.store.changed.notify_all()


def opener(store: FakeStore, kind: type[S3Reader] = SequentialS3Reader) -> Callable[[S3BucketKeyData], S3Reader]:
    def open_reader(item: S3BucketKeyData) -> S3Reader:
        def info() -> ObjectInfo:
            if item.object_info is None:
                raise AssertionError("no HEAD expected")
            return item.object_info

        return kind(item.bucket, item.key, info, lambda start=None, end=None: store.stream(item.key, start, end))

    return open_reader


def items_of(objects: dict[str, bytes], *, with_info: bool = False) -> Iterator[S3BucketKeyData]:
    for key, data in objects.items():
        info = ObjectInfo(key, '"etag"', len(data), 0) if with_info else None
        yield S3BucketKeyData(BUCKET, key, info)


def consume(readers: PrefetchingReaders, store: FakeStore, limit: int | None = None) -> dict[str, bytes]:
    received = {}
    for item, reader in readers:
        store.receive()
        received[item.key] = reader.read()
        if limit is not None and len(received) == limit:
            break
    return received


def eager() -> PrefetchGate:
    """A gate that opens after one object, whatever the store's latency. (A threshold of 0 was
    not enough: the measured wait, wall time less CPU and run-queue time, can come out just
    below 0 on a busy machine, and that closed the gate.)"""
    return PrefetchGate(min_wait_seconds=-math.inf, probe_objects=1)


def measured_wait(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """Every GET started in the caller's thread measures ``seconds`` of waiting for the store
    (the measurement itself is tested on its own: on a loaded machine, preemption and page
    faults make a real one vary by milliseconds)."""
    from s3torch.datasets import _prefetch

    monkeypatch.setattr(_prefetch, "_waited_since", lambda started: seconds)


def small_objects(count: int) -> dict[str, bytes]:
    return {f"k{index:03d}": bytes([index]) * (index + 1) for index in range(count)}


@pytest.mark.parametrize("depth", [0, 1, 4, 16])
@pytest.mark.parametrize("with_info", [False, True])
def test_every_object_in_order_with_its_own_bytes(depth: int, with_info: bool) -> None:
    objects = small_objects(60)
    store = FakeStore(objects)
    readers = PrefetchingReaders(items_of(objects, with_info=with_info), opener(store), depth, 1000, eager())
    received = consume(readers, store)
    assert list(received) == list(objects)
    assert received == objects
    assert sorted(store.started) == sorted(objects)  # each object fetched once
    assert store.max_ahead <= depth + 1


def test_no_prefetch_at_depth_zero() -> None:
    objects = small_objects(10)
    store = FakeStore(objects)
    consume(PrefetchingReaders(items_of(objects), opener(store), 0, 1000), store)
    assert store.max_ahead <= 1  # each GET starts only when its object is read


@pytest.mark.parametrize("with_info", [False, True])
def test_small_objects_are_prefetched_up_to_the_depth(with_info: bool) -> None:
    objects = small_objects(80)
    store = FakeStore(objects)
    readers = PrefetchingReaders(items_of(objects, with_info=with_info), opener(store), 8, 1000, eager())
    submitted_ahead = []
    for index, (_item, reader) in enumerate(readers):
        store.receive()
        reader.read()
        # Counted where GETs are handed to the prefetch threads (when each thread gets to run
        # one depends on the machine).
        submitted_ahead.append(sum(entry.future is not None for entry in readers._pending))
        if index == 40:
            break
    readers.close()
    # Sizes unknown: the number in flight grows from one, doubling after each small object;
    # known: straight to the depth.
    assert max(submitted_ahead) == 8
    assert submitted_ahead[:3] == ([0, 8, 8] if with_info else [2, 4, 8])
    assert store.max_ahead <= 8 + 1


def test_large_objects_started_ahead_are_bounded() -> None:
    objects = {f"k{index:03d}": b"x" * (500 if index % 3 else 10) for index in range(60)}
    for with_info in (True, False):
        store = FakeStore(objects)
        large_started_ahead = 0

        def open_reader(item: S3BucketKeyData, store: FakeStore = store) -> S3Reader:
            return opener(store)(item)

        readers = PrefetchingReaders(items_of(objects, with_info=with_info), open_reader, 8, 100, eager())
        received: set[str] = set()
        for item, reader in readers:
            received.add(item.key)
            store.receive()
            with store.lock:
                ahead = set(store.started) - received
            large_started_ahead = max(large_started_ahead, sum(len(objects[key]) > 100 for key in ahead))
            assert reader.read() == objects[item.key]
        assert received == set(objects)
        # Sizes known: nothing is started after a large object. Unknown: a size is learned from
        # the response, and the objects in flight went 1 -> 2 after each small one (small,
        # large, large, ...): both may turn out large before either is read.
        assert large_started_ahead <= (1 if with_info else 2), with_info


def test_a_failed_get_is_raised_when_its_object_is_reached() -> None:
    objects = small_objects(20)
    store = FakeStore(objects, failing=frozenset({"k007"}))
    readers = PrefetchingReaders(items_of(objects), opener(store), 16, 1000, eager())
    received = []
    with pytest.raises(S3Exception, match="s3://fake-bucket/k007") as error:
        for item, reader in readers:
            received.append(item.key)
            reader.read()
    assert error.value.key == "k007"
    assert received == list(objects)[:7]
    readers.close()


def test_a_failed_reader_construction_is_raised_when_its_object_is_reached() -> None:
    objects = small_objects(10)
    store = FakeStore(objects)
    plain = opener(store)

    def open_reader(item: S3BucketKeyData) -> S3Reader:
        if item.key == "k004":
            raise ValueError("No ranges found for s3://fake-bucket/k004")
        return plain(item)

    readers = PrefetchingReaders(items_of(objects), open_reader, 16, 1000, eager())
    received = []
    with pytest.raises(ValueError, match="k004"):
        for item, reader in readers:
            received.append(item.key)
            reader.read()
    assert received == ["k000", "k001", "k002", "k003"]


def test_a_failed_listing_is_raised_after_the_objects_listed_before_it() -> None:
    objects = small_objects(10)
    store = FakeStore(objects)

    def listing() -> Iterator[S3BucketKeyData]:
        yield from list(items_of(objects))[:6]
        raise S3Exception("Service error: The bucket does not exist (ListObjectsV2 s3://fake-bucket)")

    received = []
    with pytest.raises(S3Exception, match="bucket does not exist"):
        for item, reader in PrefetchingReaders(listing(), opener(store), 16, 1000, eager()):
            received.append(item.key)
            reader.read()
    assert received == list(objects)[:6]


def test_close_closes_what_was_started_ahead() -> None:
    objects = small_objects(40)
    store = FakeStore(objects)
    readers = PrefetchingReaders(items_of(objects, with_info=True), opener(store), 8, 1000, eager())
    consume(readers, store, limit=5)
    readers.close()
    started_ahead = set(store.started) - set(list(objects)[:5])
    assert started_ahead  # there was something in flight
    # Prefetches still running close their reader when they finish.
    with store.changed:
        assert store.changed.wait_for(lambda: started_ahead <= set(store.closed), timeout=30)
    assert list(readers) == []


def test_readers_without_prefetch_are_not_started_ahead() -> None:
    objects = small_objects(10)
    store = FakeStore(objects)
    readers = PrefetchingReaders(items_of(objects, with_info=True), opener(store, RangedS3Reader), 16, 1000, eager())
    for item, reader in readers:
        assert store.started.count(item.key) == 0
        store.receive()
        assert reader.read() == objects[item.key]
    assert store.max_ahead <= 1


@pytest.mark.parametrize(("wait", "threads"), [(0.0, False), (0.0004, False), (0.0006, True), (0.002, True)])
def test_prefetch_threads_only_when_the_store_makes_gets_wait(
    monkeypatch: pytest.MonkeyPatch, wait: float, threads: bool
) -> None:
    from s3torch.datasets import _prefetch

    assert _prefetch.PREFETCH_MIN_WAIT_SECONDS == 0.0005
    measured_wait(monkeypatch, wait)
    objects = small_objects(30)
    store = FakeStore(objects)
    assert consume(PrefetchingReaders(items_of(objects), opener(store), 8, 1000), store) == objects
    caller = threading.current_thread().name
    on_threads = [name for name in store.start_threads if name != caller]
    if threads:
        assert on_threads and all(name.startswith("s3torch-prefetch") for name in on_threads)
    else:
        assert on_threads == []  # every GET started by the caller, when its object was reached
        assert store.max_ahead <= 1


def test_a_wait_for_the_store_is_measured() -> None:
    from s3torch.datasets import _prefetch

    started = _prefetch._thread_clocks()
    threading.Event().wait(0.02)  # waiting, as for a response: wall time, next to no CPU
    assert _prefetch._waited_since(started) >= 0.015


def test_time_waiting_for_a_core_is_not_the_stores_latency(monkeypatch: pytest.MonkeyPatch) -> None:
    from s3torch.datasets import _prefetch

    objects = small_objects(30)
    # As if the probing thread had spent all its waits runnable in the kernel's run queue (a
    # machine whose cores are busy elsewhere): the store answered at once, no threads are used.
    monkeypatch.setattr(_prefetch, "_queued_seconds", time.perf_counter)
    store = FakeStore(objects, latency=0.002)
    assert consume(PrefetchingReaders(items_of(objects), opener(store), 8, 1000), store) == objects
    assert store.max_ahead <= 1


def test_run_queue_time_reads_as_zero_where_the_kernel_does_not_tell(monkeypatch: pytest.MonkeyPatch) -> None:
    from s3torch.datasets import _prefetch

    assert _prefetch._queued_seconds() >= 0.0
    monkeypatch.setattr(_prefetch, "_SCHEDSTAT", "/nonexistent/schedstat")
    assert _prefetch._queued_seconds() == 0.0
    assert _prefetch._SCHEDSTAT is None  # not tried again


def test_gate_decides_again_after_its_objects() -> None:
    gate = PrefetchGate(min_wait_seconds=0.001, probe_objects=3, decision_objects=4)
    assert gate.probing and not gate.prefetching
    for wait in (0.002, 0.003):
        gate.observe(wait)
    assert gate.probing
    gate.observe(0.005)  # every probe waited
    assert gate.prefetching and not gate.probing
    for _ in range(4):
        gate.consumed()
    assert gate.probing and not gate.prefetching
    gate.observe(0.0002)
    assert not gate.probing and not gate.prefetching  # decided: no prefetching, for 4 objects


def test_gate_one_short_wait_decides_against_prefetching() -> None:
    # A busy machine lengthens some waits (a thread woken by its response waits for a core):
    # long waits among short ones are the CPU's, not the store's, and threads would only add CPU.
    gate = PrefetchGate(min_wait_seconds=0.001, probe_objects=3, decision_objects=4)
    gate.observe(0.030)  # the first GET of a worker, while its siblings start
    assert gate.probing
    gate.observe(0.0002)
    assert not gate.probing and not gate.prefetching
    for _ in range(4):
        gate.consumed()
    for wait in (0.030, 0.004, 0.0011):
        gate.observe(wait)
    assert gate.prefetching  # the shortest of them is still over the threshold


def test_a_fast_store_leaves_readers_lazy_after_the_probes(monkeypatch: pytest.MonkeyPatch) -> None:
    measured_wait(monkeypatch, 0.0001)
    objects = small_objects(20)
    store = FakeStore(objects)
    received = []
    for item, _reader in PrefetchingReaders(items_of(objects), opener(store), 8, 1000):
        received.append(item.key)
    # The first probe was started to measure the store; answered at once, it decided: the rest
    # wait for a read.
    assert store.started == received[:1]


def test_depth_zero_sends_nothing_a_transform_does_not_read() -> None:
    objects = small_objects(10)
    store = FakeStore(objects, latency=0.002)
    for item, _reader in PrefetchingReaders(items_of(objects), opener(store), 0, 1000):
        assert item.key in objects
    assert store.started == []
