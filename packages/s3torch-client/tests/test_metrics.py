"""The transport's counters and their snapshot; the retry delay (Retry-After, back-off)."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from client_unit_support import MockS3

from s3torch.client import S3ClientMetrics
from s3torch.client._metrics import LATENCY_BUCKETS_SECONDS, Counters
from s3torch.client._retry import _BACKOFF_CAP_SECONDS, RETRY_AFTER_CAP_SECONDS, retry_delay


def test_an_operation_lands_in_its_latency_bucket_and_counters(monkeypatch: pytest.MonkeyPatch) -> None:
    from s3torch.client import _metrics

    now = time.monotonic()
    # The clock stands still: a preempted test thread would otherwise move the first operation
    # out of the under-5-ms bucket.
    monkeypatch.setattr(_metrics, "time", SimpleNamespace(monotonic=lambda: now))
    counters = Counters()
    counters.operation("GetObject", "b", "k", 206, 1, now, 0, 0, False)
    counters.operation("PutObject", "b", "k", 200, 3, now - 0.3, 1000, 2, False)
    counters.operation("PutObject", "b", "k", RuntimeError("x"), 2, now - 1000, 10, 0, True)
    counters.received(4096)
    counters.resumed()
    counters.refused()
    snapshot = counters.snapshot()
    assert snapshot.requests == {"GetObject": 1, "PutObject": 2}
    assert (snapshot.attempts, snapshot.retries, snapshot.throttles, snapshot.errors) == (6, 4, 2, 2)
    assert (snapshot.bytes_sent, snapshot.bytes_received) == (3020, 4096)
    assert snapshot.latency_buckets == LATENCY_BUCKETS_SECONDS
    counts = snapshot.latency_counts
    assert counts[0] == 1  # 0 s: under 5 ms
    assert counts[LATENCY_BUCKETS_SECONDS.index(0.5)] == 1  # 0.3 s: (0.25, 0.5]
    assert counts[-1] == 1  # above the last bound
    assert snapshot.total_requests == 3


def test_a_snapshot_does_not_change_afterwards() -> None:
    counters = Counters()
    first = counters.snapshot()
    counters.operation("GetObject", "b", "k", 200, 1, time.monotonic(), 0, 0, False)
    assert first == S3ClientMetrics()
    assert dict(first.requests) == {}
    assert counters.snapshot().requests == {"GetObject": 1}


def test_client_metrics_count_mocked_operations(s3: MockS3) -> None:
    client = s3.new_client(retry_deadline=77.0)  # a transport of its own
    s3.put("counted", b"x" * 10)
    client.head_object(s3.bucket, "counted")
    assert b"".join(client.get_object_stream(s3.bucket, "counted")) == b"x" * 10
    metrics = client.metrics()
    assert metrics.requests == {"HeadObject": 1, "GetObject": 1}
    assert metrics.bytes_received == 10
    assert (metrics.retries, metrics.errors) == (0, 0)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", 1.0), ("0", 0.0), (" 7 ", 7.0), ("3600", RETRY_AFTER_CAP_SECONDS), (str(10**30), RETRY_AFTER_CAP_SECONDS)],
)
def test_retry_after_seconds_are_honoured_up_to_the_cap(value: str, expected: float) -> None:
    assert retry_delay(1, value) == expected


@pytest.mark.parametrize("value", [None, "", "Wed, 21 Oct 2015 07:28:00 GMT", "-1", "1.5", "²"])
def test_other_retry_after_values_fall_back_to_jittered_back_off(value: str | None) -> None:
    delays = [retry_delay(2, value) for _ in range(200)]
    assert all(0 <= delay <= 0.2 for delay in delays)
    assert len(set(delays)) > 100  # jittered
    assert max(retry_delay(60) for _ in range(50)) <= _BACKOFF_CAP_SECONDS
