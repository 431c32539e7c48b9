"""``S3Client.metrics()`` counts what went over the wire, checked against what the fault proxy saw;
one DEBUG line per S3 operation; no credential in s3torch's logs, messages or reprs."""

from __future__ import annotations

import logging
import pickle
from collections import Counter
from typing import Any

import pytest
from support import PART, Rule, S3TestEnv, object_gets, payload

from s3torch.client import S3Client, S3ClientMetrics, S3Exception
from s3torch_test_support import DUMMY_CREDENTIALS

SMALL = payload(100_000, seed=1)
LARGE = payload(2 * PART + 12_345, seed=2)


def workload(env: S3TestEnv, client: S3Client) -> list[BaseException]:
    """Writes, reads, a listing, a throttled GET, a cut GET and a missing key; returns the errors."""
    assert env.proxy is not None
    bucket = env.bucket
    for key, data in (("small", SMALL), ("large", LARGE)):
        with client.put_object(bucket, env.key(key)) as writer:
            writer.write(data)
    env.proxy.add(Rule(object_gets(bucket, env.key("small"), 1), respond=503, code="SlowDown"))
    env.proxy.add(Rule(object_gets(bucket, env.key("large"), 1), cut_after=PART // 2))
    assert b"".join(client.get_object_stream(bucket, env.key("small"))) == SMALL
    assert b"".join(client.get_object_stream(bucket, env.key("large"))) == LARGE
    assert client.head_object(bucket, env.key("large")).size == len(LARGE)
    assert sum(len(page.object_info) for page in client.list_objects(bucket, env.key(""))) == 2
    errors: list[BaseException] = []
    for call in (
        lambda: client.head_object(bucket, env.key("missing")),
        lambda: b"".join(client.get_object_stream(bucket, env.key("missing"))),
    ):
        with pytest.raises(S3Exception) as caught:
            call()
        errors.append(caught.value)
    return errors


def delta(after: S3ClientMetrics, before: S3ClientMetrics) -> dict[str, Any]:
    return {
        "requests": Counter(after.requests) - Counter(before.requests),
        "attempts": after.attempts - before.attempts,
        "retries": after.retries - before.retries,
        "throttles": after.throttles - before.throttles,
        "errors": after.errors - before.errors,
        "bytes_sent": after.bytes_sent - before.bytes_sent,
        "bytes_received": after.bytes_received - before.bytes_received,
        "latency": sum(after.latency_counts) - sum(before.latency_counts),
    }


def test_metrics_count_what_the_proxy_saw(faulty_s3: S3TestEnv) -> None:
    assert faulty_s3.proxy is not None
    client = faulty_s3.new_client(part_size=PART, max_attempts=3)
    before = client.metrics()
    workload(faulty_s3, client)
    counted = delta(client.metrics(), before)
    seen = faulty_s3.proxy.requests_for(faulty_s3.bucket)
    operations = Counter(request.operation for request in seen)
    resumes = 1
    # Each operation once however many attempts; a resume is a GET of its own.
    assert counted["requests"] == operations - Counter({"GetObject": 1}), (counted, operations)
    assert counted["attempts"] == len(seen)
    assert counted["retries"] == 1 + resumes  # the throttled GET, the resumed body
    assert counted["throttles"] == 1
    assert counted["errors"] == 2
    assert counted["bytes_sent"] == sum(request.body_length for request in seen)
    read = len(SMALL) + len(LARGE)
    assert read <= counted["bytes_received"] < read + 64 * 1024  # plus the listing's and errors' XML
    assert counted["latency"] == sum(counted["requests"].values())


def test_metrics_snapshot_is_frozen_and_picklable(faulty_s3: S3TestEnv) -> None:
    snapshot = faulty_s3.client.metrics()
    with pytest.raises(AttributeError):
        snapshot.errors = 5  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(snapshot)) == snapshot
    assert len(snapshot.latency_counts) == len(snapshot.latency_buckets) + 1
    assert snapshot.total_requests == sum(snapshot.requests.values())


def test_one_debug_line_per_operation_and_no_credentials(
    faulty_s3: S3TestEnv, caplog: pytest.LogCaptureFixture
) -> None:
    assert faulty_s3.proxy is not None
    client = faulty_s3.new_client(part_size=PART, max_attempts=3)
    before = client.metrics()
    with caplog.at_level(logging.DEBUG, logger="s3torch"):
        errors = workload(faulty_s3, client)
    ours = [record for record in caplog.records if record.name.startswith("s3torch")]
    operation_lines = [record for record in ours if record.name == "s3torch.client._metrics"]
    assert len(operation_lines) == sum(delta(client.metrics(), before)["requests"].values())
    assert {"PutObject", "UploadPart", "CompleteMultipartUpload", "GetObject", "HeadObject", "ListObjectsV2"} <= {
        record.getMessage().split(" ", 1)[0] for record in operation_lines
    }
    signatures = {
        request.headers["authorization"].rsplit("Signature=", 1)[1]
        for request in faulty_s3.proxy.requests_for(faulty_s3.bucket)
    }
    assert len(signatures) > 10
    text = "\n".join(
        [record.getMessage() for record in ours]
        + [str(error) for error in errors]
        + [repr(error) for error in errors]
        + [repr(client), repr(client.s3client_config), repr(client.metrics()), str(pickle.dumps(client))]
    )
    secret = DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"]
    assert secret not in text
    assert not [signature for signature in signatures if signature in text]
    assert "Authorization" not in text and "authorization" not in text
