"""The fault proxy's own promises, checked with plain boto3 so they do not depend on s3torch:
``lose_response`` lets the server act and the client never learn it; ``drop`` never reaches it."""

from __future__ import annotations

from typing import Any

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config
from support import MOTO_REGION, FaultProxy, RecordedRequest, Rule, S3TestEnv


def boto_through(proxy: FaultProxy) -> Any:
    config = Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1, "mode": "standard"})
    return boto3.client("s3", region_name=MOTO_REGION, endpoint_url=proxy.url, config=config)


@pytest.mark.parametrize(("fault", "published"), [("lose_response", True), ("drop", False)])
def test_lost_response_vs_dropped_request(faulty_s3: S3TestEnv, fault: str, published: bool) -> None:
    proxy = faulty_s3.proxy
    assert proxy is not None
    rule = proxy.add(
        Rule(
            lambda r: r.method == "PUT" and r.is_object(faulty_s3.bucket, "k"),
            drop=fault == "drop",
            lose_response=fault == "lose_response",
        )
    )
    client = boto_through(proxy)
    with pytest.raises(botocore.exceptions.ConnectionClosedError):
        client.put_object(Bucket=faulty_s3.bucket, Key="k", Body=b"published?")
    assert rule.fired.is_set()
    assert faulty_s3.exists("k") is published
    if published:
        assert faulty_s3.read("k") == b"published?"
    [request] = [r for r in proxy.requests if r.is_object(faulty_s3.bucket, "k")]
    assert isinstance(request, RecordedRequest)
    assert request.response_lost is published
    assert request.status == (200 if published else None)
    # The next request gets an answer again.
    client.put_object(Bucket=faulty_s3.bucket, Key="k", Body=b"second")
    assert faulty_s3.read("k") == b"second"
