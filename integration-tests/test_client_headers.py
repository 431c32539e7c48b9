"""What goes on the wire, as the proxy records it: the User-Agent prefix, the requester-pays
header, SigV4 signatures (or none with ``unsigned``), on the lean data path and on the
botocore control path alike."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from support import PART, FaultProxy, MotoServer, RecordedRequest, S3TestEnv, payload
from support.s3env import boto3_client, unique_bucket_name

from s3torch.client import S3Client, S3ClientConfig, UserAgent


def exercise(env: S3TestEnv, client: S3Client) -> None:
    """Every kind of request the client sends: lean GET/PUT/UploadPart, and the control path."""
    bucket = env.bucket
    with client.put_object(bucket, "small") as writer:
        writer.write(b"small")
    with client.put_object(bucket, "multi") as writer:
        writer.write(payload(PART + 1))
    assert b"".join(client.get_object_stream(bucket, "small")) == b"small"
    assert client.head_object(bucket, "multi").size == PART + 1
    assert len(list(client.list_objects(bucket))) == 1
    client.copy_object(bucket, "small", bucket, "copy")
    client.delete_object(bucket, "copy")


def kinds(requests: list[RecordedRequest]) -> set[str]:
    """The S3 operations among recorded requests."""
    names = set()
    for r in requests:
        if r.method == "PUT" and "partNumber" in r.query:
            names.add("UploadPart")
        elif r.method == "PUT":
            names.add("CopyObject" if "x-amz-copy-source" in r.headers else "PutObject")
        elif r.method == "POST":
            names.add("CreateMultipartUpload" if "uploads" in r.query else "CompleteMultipartUpload")
        elif r.method == "GET":
            names.add("ListObjectsV2" if "list-type" in r.query else "GetObject")
        else:
            names.add({"HEAD": "HeadObject", "DELETE": "DeleteObject"}[r.method])
    return names


ALL_KINDS = {
    "PutObject",
    "UploadPart",
    "CreateMultipartUpload",
    "CompleteMultipartUpload",
    "GetObject",
    "HeadObject",
    "ListObjectsV2",
    "CopyObject",
    "DeleteObject",
}


def test_user_agent_prefix_is_sent_on_data_and_control_paths(faulty_s3: S3TestEnv) -> None:
    assert faulty_s3.proxy is not None
    user_agent = UserAgent(["md/test#headers", "", "extra"])
    client = S3Client(
        faulty_s3.location.region,
        endpoint=faulty_s3.location.endpoint,
        user_agent=user_agent,
        s3client_config=S3ClientConfig(force_path_style=True, part_size=PART),
    )
    assert client.user_agent_prefix.startswith("s3torch-client/")
    assert client.user_agent_prefix.endswith(" (md/test#headers; extra)")
    exercise(faulty_s3, client)
    requests = faulty_s3.proxy.requests_for(faulty_s3.bucket)
    assert kinds(requests) == ALL_KINDS
    for request in requests:
        assert client.user_agent_prefix in request.headers["user-agent"], request.target


@pytest.mark.parametrize("requester_pays", [True, False])
def test_requester_pays_header_on_every_request(faulty_s3: S3TestEnv, requester_pays: bool) -> None:
    assert faulty_s3.proxy is not None
    exercise(faulty_s3, faulty_s3.new_client(part_size=PART, requester_pays=requester_pays))
    requests = faulty_s3.proxy.requests_for(faulty_s3.bucket)
    assert kinds(requests) == ALL_KINDS
    for request in requests:
        assert (request.headers.get("x-amz-request-payer") == "requester") is requester_pays, request.target


def test_signed_requests_carry_sigv4(faulty_s3: S3TestEnv) -> None:
    assert faulty_s3.proxy is not None
    exercise(faulty_s3, faulty_s3.new_client(part_size=PART))
    requests = faulty_s3.proxy.requests_for(faulty_s3.bucket)
    for request in requests:
        authorization = request.headers.get("authorization", "")
        assert authorization.startswith("AWS4-HMAC-SHA256 Credential="), request.target
        assert "/us-east-1/s3/aws4_request, SignedHeaders=" in authorization
        assert "x-amz-date" in request.headers
        assert "x-amz-content-sha256" in request.headers
    lean = [r for r in requests if r.method == "GET" and "list-type" not in r.query]
    assert lean
    assert all(r.headers["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD" for r in lean)


@pytest.fixture(scope="module")
def unsigned_proxy(moto_server: MotoServer) -> Iterator[FaultProxy]:
    # moto routes requests without a signature by host name: present them as S3's.
    proxy = FaultProxy((moto_server.host, moto_server.port), host_header="s3.amazonaws.com").start()
    yield proxy
    proxy.stop()


def test_unsigned_requests_have_no_authorization(moto_server: MotoServer, unsigned_proxy: FaultProxy) -> None:
    bucket = unique_bucket_name()
    boto = boto3_client("us-east-1", moto_server.endpoint)
    boto.create_bucket(Bucket=bucket)
    # Unsigned requests are for public buckets.
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": f"arn:aws:s3:::{bucket}/*"}],
    }
    boto.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    client = S3Client(
        "us-east-1",
        endpoint=unsigned_proxy.url,
        s3client_config=S3ClientConfig(unsigned=True, force_path_style=True, part_size=PART),
    )
    with client.put_object(bucket, "small") as writer:
        writer.write(b"small")
    with client.put_object(bucket, "multi") as writer:
        writer.write(payload(PART + 1))
    assert b"".join(client.get_object_stream(bucket, "small")) == b"small"
    assert client.head_object(bucket, "small").size == 5
    assert [i.key for page in client.list_objects(bucket) for i in page.object_info] == ["multi", "small"]
    assert boto.get_object(Bucket=bucket, Key="multi")["Body"].read() == payload(PART + 1)
    requests = unsigned_proxy.requests_for(bucket)
    assert {"PutObject", "UploadPart", "GetObject", "HeadObject", "ListObjectsV2"} <= kinds(requests)
    for request in requests:
        assert "authorization" not in request.headers, request.target
        assert request.status is not None
        assert request.status < 300, request.target
    for key in ("small", "multi"):
        boto.delete_object(Bucket=bucket, Key=key)
    boto.delete_bucket(Bucket=bucket)
