"""The fault proxy's own promises, checked with plain boto3 so they do not depend on s3torch:
``lose_response`` lets the server act and the client never learn it; ``drop`` never reaches it;
stalls last until the client leaves; trickles arrive whole or are cut; ``Retry-After``; operation names."""

from __future__ import annotations

import socket
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


def test_stalls_last_until_the_client_gives_up(faulty_s3: S3TestEnv) -> None:
    proxy = faulty_s3.proxy
    assert proxy is not None
    faulty_s3.put("stalled", b"x" * 10_000)
    head = proxy.add(Rule(lambda r: r.method == "GET" and r.is_object(faulty_s3.bucket, "stalled"), stall_head=True))
    body = proxy.add(Rule(lambda r: r.method == "GET" and r.is_object(faulty_s3.bucket, "stalled"), stall_after=1_000))
    config = Config(
        s3={"addressing_style": "path"}, retries={"total_max_attempts": 1, "mode": "standard"}, read_timeout=0.5
    )
    client = boto3.client("s3", region_name=MOTO_REGION, endpoint_url=proxy.url, config=config)
    with pytest.raises(botocore.exceptions.ReadTimeoutError):
        client.get_object(Bucket=faulty_s3.bucket, Key="stalled")
    response = client.get_object(Bucket=faulty_s3.bucket, Key="stalled")  # the head comes, then 1,000 bytes
    with pytest.raises(botocore.exceptions.ReadTimeoutError):
        response["Body"].read()
    client.close()  # the client leaves: the proxy stops stalling
    first, second = [r for r in proxy.requests if r.is_object(faulty_s3.bucket, "stalled")]
    for request in (first, second):
        assert request.fault_ended.wait(timeout=30)
        assert request.client_gave_up is True
    assert head.hits == body.hits == 1


def test_a_trickled_body_arrives_whole_or_is_cut_at_the_limit(faulty_s3: S3TestEnv) -> None:
    proxy = faulty_s3.proxy
    assert proxy is not None
    faulty_s3.put("slow", bytes(range(256)) * 8)  # 2,048 bytes
    proxy.add(Rule(lambda r: r.method == "GET" and r.is_object(faulty_s3.bucket, "slow"), trickle=8_192))
    proxy.add(Rule(lambda r: r.method == "GET" and r.is_object(faulty_s3.bucket, "slow"), trickle=100, stall_limit=0.3))
    client = boto_through(proxy)
    assert client.get_object(Bucket=faulty_s3.bucket, Key="slow")["Body"].read() == bytes(range(256)) * 8
    with pytest.raises(botocore.exceptions.ResponseStreamingError):
        client.get_object(Bucket=faulty_s3.bucket, Key="slow")["Body"].read()
    whole, cut = [r for r in proxy.requests if r.is_object(faulty_s3.bucket, "slow")]
    assert whole.fault_ended.is_set() and whole.client_gave_up is None
    assert cut.fault_ended.wait(timeout=30) and cut.client_gave_up is False


def test_retry_after_and_operation_names(faulty_s3: S3TestEnv) -> None:
    proxy = faulty_s3.proxy
    assert proxy is not None
    proxy.add(Rule(lambda r: r.operation == "HeadObject", respond=503, code="SlowDown", retry_after="7"))
    client = boto_through(proxy)
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        client.head_object(Bucket=faulty_s3.bucket, Key="k")
    assert caught.value.response["ResponseMetadata"]["HTTPHeaders"]["retry-after"] == "7"
    bucket = faulty_s3.bucket
    client.put_object(Bucket=bucket, Key="a/b", Body=b"1")
    client.get_object(Bucket=bucket, Key="a/b")["Body"].read()
    client.list_objects_v2(Bucket=bucket, Prefix="a/")
    upload = client.create_multipart_upload(Bucket=bucket, Key="m")["UploadId"]
    etag = client.upload_part(Bucket=bucket, Key="m", UploadId=upload, PartNumber=1, Body=b"p")["ETag"]
    client.complete_multipart_upload(
        Bucket=bucket, Key="m", UploadId=upload, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]}
    )
    other = client.create_multipart_upload(Bucket=bucket, Key="n")["UploadId"]
    client.list_multipart_uploads(Bucket=bucket)
    client.abort_multipart_upload(Bucket=bucket, Key="n", UploadId=other)
    client.delete_object(Bucket=bucket, Key="a/b")
    assert [r.operation for r in proxy.requests] == [
        "HeadObject",
        "PutObject",
        "GetObject",
        "ListObjectsV2",
        "CreateMultipartUpload",
        "UploadPart",
        "CompleteMultipartUpload",
        "CreateMultipartUpload",
        "ListMultipartUploads",
        "AbortMultipartUpload",
        "DeleteObject",
    ]


@pytest.mark.parametrize("status", [100, 103])
def test_an_interim_answer_comes_before_the_servers(faulty_s3: S3TestEnv, status: int) -> None:
    proxy = faulty_s3.proxy
    assert proxy is not None
    faulty_s3.put("k", b"the body")
    proxy.add(Rule(lambda r: r.operation == "GetObject", interim=status))
    # A raw socket, to see the interim answer that HTTP clients hide; a presigned target, as
    # moto refuses anonymous GETs.
    url = faulty_s3.boto.generate_presigned_url("get_object", Params={"Bucket": faulty_s3.bucket, "Key": "k"})
    path = url.split("/", 3)[3]
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=30) as sock:
        sock.sendall(f"GET /{path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        answer = b""
        while not answer.endswith(b"the body"):
            chunk = sock.recv(65536)
            assert chunk, answer
            answer += chunk
            assert len(answer) < 10_000, answer
    assert answer.startswith(f"HTTP/1.1 {status} ".encode())
    assert b"\r\n\r\nHTTP/1.1 200 " in answer
