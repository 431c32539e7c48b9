"""Lost answers of publishing requests, over moto in process: a create-only PUT whose retry gets
412 succeeds when the object there is the one it sent (by fingerprint), and reports "already
exists" otherwise; a 412 on the first attempt needs no check. The fingerprints match what S3
computes. Writers refuse to pickle."""

from __future__ import annotations

import base64
import pickle
from typing import Any

import crc32c
import pytest
from client_unit_support import PART, MockS3, payload

from s3torch.client import S3Exception
from s3torch.client._published import (
    multipart_fingerprint,
    published_etag,
    single_put_fingerprint,
)
from s3torch.client._transport import Transport


def checksum(data: bytes) -> str:
    return base64.b64encode(crc32c.crc32c(data).to_bytes(4, "big")).decode()


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The control-path operations the transport runs (HeadObject among them)."""
    names: list[str] = []
    original = Transport.call

    def call(self: Transport, operation: str, *args: Any, **params: Any) -> Any:
        names.append(operation)
        return original(self, operation, *args, **params)

    monkeypatch.setattr(Transport, "call", call)
    return names


def lose_first_answer(monkeypatch: pytest.MonkeyPatch, before_retry: Any = None) -> list[str]:
    """The first PutObject reaches S3 (moto acts on it) and its answer is lost on the way back."""
    original = Transport._send_http
    lost: list[str] = []

    def send_http(self: Transport, operation: str, *args: Any) -> Any:
        answer = original(self, operation, *args)
        if operation == "PutObject" and not lost:
            lost.append(operation)
            answer[2].close()
            if before_retry is not None:
                before_retry()
            raise ConnectionResetError("answer lost")
        return answer

    monkeypatch.setattr(Transport, "_send_http", send_http)
    return lost


def test_single_put_fingerprint_is_what_s3_reports(s3: MockS3) -> None:
    data = payload(1000, seed=1)
    s3.boto.put_object(Bucket=s3.bucket, Key="k", Body=data, ChecksumCRC32C=checksum(data))
    expected = single_put_fingerprint(memoryview(data), checksum(data))
    transport = s3.client._transport
    assert published_etag(transport, s3.bucket, "k", expected) == s3.etag("k")
    other = single_put_fingerprint(memoryview(payload(1000, seed=2)), None)
    assert published_etag(transport, s3.bucket, "k", other) is None
    assert published_etag(transport, s3.bucket, "missing", expected) is None


def test_multipart_fingerprint_is_what_s3_reports(s3: MockS3) -> None:
    chunks = [payload(PART, seed=3), payload(123, seed=4)]
    upload = s3.boto.create_multipart_upload(Bucket=s3.bucket, Key="m", ChecksumAlgorithm="CRC32C")["UploadId"]
    parts = []
    for number, chunk in enumerate(chunks, 1):
        answer = s3.boto.upload_part(
            Bucket=s3.bucket, Key="m", UploadId=upload, PartNumber=number, Body=chunk, ChecksumCRC32C=checksum(chunk)
        )
        parts.append({"PartNumber": number, "ETag": answer["ETag"], "ChecksumCRC32C": checksum(chunk)})
    s3.boto.complete_multipart_upload(Bucket=s3.bucket, Key="m", UploadId=upload, MultipartUpload={"Parts": parts})
    expected = multipart_fingerprint(parts, PART + 123)
    assert expected.checksum is not None and expected.checksum.endswith("-2")
    assert published_etag(s3.client._transport, s3.bucket, "m", expected) == s3.etag("m")
    # One byte more, or parts of other bytes: not ours.
    assert published_etag(s3.client._transport, s3.bucket, "m", multipart_fingerprint(parts, PART + 124)) is None
    swapped = [dict(parts[0], ETag=parts[1]["ETag"]), dict(parts[1], ETag=parts[0]["ETag"])]
    assert published_etag(s3.client._transport, s3.bucket, "m", multipart_fingerprint(swapped, PART + 123)) is None


def test_kms_objects_are_compared_by_checksum() -> None:
    from s3torch.client._published import Fingerprint, _same_bytes

    expected = Fingerprint(10, "0" * 32, "AAAAAA==")
    kms = {"ServerSideEncryption": "aws:kms", "ChecksumCRC32C": "AAAAAA=="}
    assert _same_bytes(kms, "not-an-md5", expected)
    assert not _same_bytes(dict(kms, ChecksumCRC32C="BBBBBB=="), "not-an-md5", expected)
    assert not _same_bytes({"ServerSideEncryption": "aws:kms"}, "not-an-md5", expected)  # nothing to compare
    assert not _same_bytes({"ServerSideEncryption": "AES256"}, "not-an-md5", expected)


def test_create_only_put_whose_answer_was_lost_succeeds(
    s3: MockS3, monkeypatch: pytest.MonkeyPatch, calls: list[str]
) -> None:
    lost = lose_first_answer(monkeypatch)
    with s3.client.put_object(s3.bucket, "k", if_none_match="*") as writer:
        writer.write(b"mine")
    assert lost == ["PutObject"]
    assert calls.count("HeadObject") == 1
    assert s3.read("k") == b"mine"


def test_create_only_put_whose_retry_finds_another_object_raises(
    s3: MockS3, monkeypatch: pytest.MonkeyPatch, calls: list[str]
) -> None:
    # The first attempt is lost before S3 saw it... and meanwhile another writer publishes.
    original = Transport._send_http
    state: list[str] = []

    def send_http(self: Transport, operation: str, *args: Any) -> Any:
        if operation == "PutObject" and not state:
            state.append(operation)
            s3.put("k", b"theirs")
            raise ConnectionResetError("request lost")
        return original(self, operation, *args)

    monkeypatch.setattr(Transport, "_send_http", send_http)
    writer = s3.client.put_object(s3.bucket, "k", if_none_match="*")
    writer.write(b"mine")
    with pytest.raises(S3Exception, match="already exists") as raised:
        writer.close()
    assert raised.value.code == "PreconditionFailed"
    assert calls.count("HeadObject") == 1
    assert s3.read("k") == b"theirs"


def test_a_first_attempt_412_needs_no_check(s3: MockS3, calls: list[str]) -> None:
    s3.put("k", b"theirs")
    for size in (4, 2 * PART + 1):
        writer = s3.client.put_object(s3.bucket, "k", if_none_match="*")
        writer.write(payload(size))
        with pytest.raises(S3Exception, match="already exists"):
            writer.close()
    assert "HeadObject" not in calls
    assert s3.read("k") == b"theirs"
    assert s3.uploads() == []


def test_plain_put_whose_every_answer_was_lost_but_published_succeeds(
    s3: MockS3, monkeypatch: pytest.MonkeyPatch, calls: list[str]
) -> None:
    original = Transport._send_http
    sent: list[str] = []

    def send_http(self: Transport, operation: str, *args: Any) -> Any:
        answer = original(self, operation, *args)
        if operation == "PutObject":
            sent.append(operation)
            answer[2].close()
            raise ConnectionResetError("answer lost")
        return answer

    monkeypatch.setattr(Transport, "_send_http", send_http)
    client = s3.new_client(max_attempts=2)
    with client.put_object(s3.bucket, "k") as writer:
        writer.write(b"published")
    assert sent == ["PutObject", "PutObject"]
    assert calls.count("HeadObject") == 1
    assert s3.read("k") == b"published"


@pytest.mark.parametrize("size", [10, PART + 10], ids=["single", "multipart"])
def test_writers_refuse_to_pickle(s3: MockS3, size: int) -> None:
    writer = s3.client.put_object(s3.bucket, "dir/k")
    writer.write(payload(size))
    with pytest.raises(TypeError, match=r"^S3Writer for s3://s3torch-unit/dir/k cannot be pickled: "):
        pickle.dumps(writer)
    with pytest.raises(TypeError, match=r"^PutObjectStream for s3://s3torch-unit/dir/k cannot be pickled: "):
        pickle.dumps(writer.stream)
    # The refusal leaves the upload as it was.
    writer.write(b"more")
    writer.close()
    assert s3.read("dir/k") == payload(size) + b"more"
