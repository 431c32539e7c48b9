"""Create-only uploads (``put_object(..., if_none_match="*")``) over moto in process: the object
is created when the key is free, refused (aborted, nothing published, the existing object
untouched) when it is taken, on the lean data path and on botocore's; and without the argument
no condition is sent at all."""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

import pytest
from client_unit_support import PART, MockS3, payload

from s3torch.client import ObjectChangedError, S3Exception
from s3torch.client._before_send import BytesBody
from s3torch.client._exceptions import service_error
from s3torch.client._transport import Transport

SIZES = [pytest.param(10, id="single"), pytest.param(int(2.5 * PART), id="multipart")]


@dataclasses.dataclass
class Sent:
    """What the transport sent: data-path requests (operation, headers) and control-path calls
    (operation, parameters)."""

    data: list[tuple[str, dict[str, str]]]
    control: list[tuple[str, dict[str, Any]]]

    def headers_of(self, operation: str) -> list[dict[str, str]]:
        return [headers for name, headers in self.data if name == operation]

    def params_of(self, operation: str) -> list[dict[str, Any]]:
        return [params for name, params in self.control if name == operation]


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> Sent:
    record = Sent([], [])
    lock = threading.Lock()
    original_send, original_call = Transport.send, Transport.call

    def send(self: Transport, operation: str, bucket: str, key: str, method: str, **kwargs: Any) -> Any:
        with lock:
            record.data.append((operation, dict(kwargs.get("headers") or {})))
        return original_send(self, operation, bucket, key, method, **kwargs)

    def call(self: Transport, operation: str, bucket: str | None, key: str | None, method: str, **params: Any) -> Any:
        with lock:
            record.control.append((operation, params))
        return original_call(self, operation, bucket, key, method, **params)

    monkeypatch.setattr(Transport, "send", send)
    monkeypatch.setattr(Transport, "call", call)
    return record


def write(s3: MockS3, key: str, data: bytes, **kwargs: Any) -> None:
    with s3.client.put_object(s3.bucket, key, **kwargs) as writer:
        writer.write(data)


@pytest.mark.parametrize("size", SIZES)
def test_created_when_absent(s3: MockS3, sent: Sent, size: int) -> None:
    data = payload(size, seed=1)
    write(s3, "new", data, if_none_match="*")
    assert s3.read("new") == data
    assert s3.uploads() == []
    if size <= PART:
        [headers] = sent.headers_of("PutObject")
        assert headers["If-None-Match"] == "*"
    else:
        assert sent.headers_of("PutObject") == []
        assert all("If-None-Match" not in headers for headers in sent.headers_of("UploadPart"))
        [complete] = sent.params_of("CompleteMultipartUpload")
        assert complete["IfNoneMatch"] == "*"


@pytest.mark.parametrize("size", SIZES)
def test_refused_when_present(s3: MockS3, size: int) -> None:
    old = payload(100, seed=2)
    etag = s3.put("taken", old)
    with pytest.raises(S3Exception, match="already exists") as raised:
        write(s3, "taken", payload(size, seed=3), if_none_match="*")
    error = raised.value
    assert not isinstance(error, ObjectChangedError)
    assert (error.bucket, error.key, error.code, error.status) == (s3.bucket, "taken", "PreconditionFailed", 412)
    assert f"s3://{s3.bucket}/taken" in str(error)
    assert s3.read("taken") == old
    assert s3.etag("taken") == etag
    assert s3.uploads() == []


@pytest.mark.parametrize("size", SIZES)
def test_of_two_racing_writers_the_first_to_close_wins(s3: MockS3, size: int) -> None:
    first = s3.client.put_object(s3.bucket, "raced", if_none_match="*")
    second = s3.client.put_object(s3.bucket, "raced", if_none_match="*")
    first.write(payload(size, seed=4))
    second.write(payload(size, seed=5))
    first.close()
    with pytest.raises(S3Exception, match="already exists"):
        second.close()
    assert s3.read("raced") == payload(size, seed=4)
    assert s3.uploads() == []


@pytest.mark.parametrize("size", SIZES)
def test_without_the_argument_no_condition_is_sent(s3: MockS3, sent: Sent, size: int) -> None:
    s3.put("replaced", b"old")
    write(s3, "replaced", payload(size, seed=6))
    assert s3.read("replaced") == payload(size, seed=6)
    assert sent.data
    assert all(not {"If-None-Match", "if-none-match"} & headers.keys() for _, headers in sent.data)
    assert all("IfNoneMatch" not in params for _, params in sent.control)


@pytest.mark.parametrize("value", ["", "abc", '"etag"', "**", " *", 1])
def test_only_star_is_valid(s3: MockS3, value: Any) -> None:
    with pytest.raises(ValueError, match="if_none_match"):
        s3.client.put_object(s3.bucket, "k", if_none_match=value)
    assert not s3.exists("k")


@pytest.mark.parametrize("size", SIZES)
def test_botocore_data_path_sends_the_condition_too(s3: MockS3, size: int) -> None:
    """Buckets whose data path goes through botocore's client (S3 Express) get IfNoneMatch."""
    transport = s3.client._transport
    transport.endpoints.replace(s3.bucket, dataclasses.replace(transport.bucket_endpoint(s3.bucket), lean=False))
    try:
        write(s3, "via-botocore", payload(size, seed=7), if_none_match="*")
        assert s3.read("via-botocore") == payload(size, seed=7)
        with pytest.raises(S3Exception, match="already exists"):
            write(s3, "via-botocore", payload(size, seed=8), if_none_match="*")
        assert s3.read("via-botocore") == payload(size, seed=7)
        assert s3.uploads() == []
    finally:
        transport.endpoints.forget(s3.bucket)


def test_a_conditional_conflict_on_put_object_is_retried(s3: MockS3, monkeypatch: pytest.MonkeyPatch) -> None:
    """S3 answers 409 ConditionalRequestConflict when a create-only PUT races another write, and
    asks for a retry: the retry creates the object (or finds it taken)."""
    original = Transport._send_http
    conflicts = []

    def conflicting_once(self: Transport, operation: str, *args: Any) -> tuple[int, Any, Any, int]:
        if operation == "PutObject" and not conflicts:
            conflicts.append(operation)
            document = b"<Error><Code>ConditionalRequestConflict</Code><Message>conflict</Message></Error>"
            return 409, {}, BytesBody(document), 1
        return original(self, operation, *args)

    monkeypatch.setattr(Transport, "_send_http", conflicting_once)
    write(s3, "conflict", b"data", if_none_match="*")
    assert conflicts == ["PutObject"]
    assert s3.read("conflict") == b"data"


@pytest.mark.parametrize("operation", ["PutObject", "CompleteMultipartUpload"])
def test_refusals_say_what_happened(operation: str) -> None:
    exists = service_error(
        operation=operation, bucket="b", key="k", code="PreconditionFailed", message="m", request_id="r", status=412
    )
    assert str(exists).startswith("Service error: An object already exists at the key")
    assert f"{operation} s3://b/k" in str(exists)
    conflict = service_error(
        operation=operation,
        bucket="b",
        key="k",
        code="ConditionalRequestConflict",
        message="m",
        request_id="r",
        status=409,
    )
    assert str(conflict).startswith("Service error: Another write to the key was in progress")
    # A read's failed precondition still means that the object changed under the reader.
    read = service_error(
        operation="GetObject", bucket="b", key="k", code="PreconditionFailed", message="m", request_id="r", status=412
    )
    assert isinstance(read, ObjectChangedError)
