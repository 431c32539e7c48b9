"""Writes whose answers are lost after S3 acted (the fault proxy forwards the request and closes
the connection instead of relaying the answer): every write either succeeds with exactly its
bytes or raises with nothing published, and no multipart upload is left behind. A create-only
write whose own object was published succeeds; one that finds another writer's object reports
"already exists"; an upload that may be another writer's is never aborted."""

from __future__ import annotations

import hashlib
import logging
import shlex
from collections.abc import Callable

import pytest
from support import PART, FaultProxy, RecordedRequest, Rule, S3TestEnv, part_uploads, payload

from s3torch.client import S3Client, S3Exception
from s3torch.client.__main__ import main as command

SINGLE = 1000
MULTIPART = 2 * PART + 4321
Match = Callable[[RecordedRequest], bool]


def put_objects(request: RecordedRequest) -> bool:
    return request.method == "PUT" and "partNumber" not in request.query


def creates(request: RecordedRequest) -> bool:
    return request.method == "POST" and "uploads" in request.query


def completes(request: RecordedRequest) -> bool:
    return request.method == "POST" and "uploadId" in request.query


def heads(request: RecordedRequest) -> bool:
    return request.method == "HEAD"


OPERATIONS: dict[str, tuple[Match, int]] = {
    "PutObject": (put_objects, SINGLE),
    "CreateMultipartUpload": (creates, MULTIPART),
    "UploadPart": (part_uploads(2), MULTIPART),
    "CompleteMultipartUpload": (completes, MULTIPART),
}


def proxy_of(env: S3TestEnv) -> FaultProxy:
    assert env.proxy is not None
    return env.proxy


def client_of(env: S3TestEnv) -> S3Client:
    return env.new_client(part_size=PART, max_attempts=3)


def write(client: S3Client, env: S3TestEnv, key: str, data: bytes, *, create_only: bool) -> None:
    with client.put_object(env.bucket, key, if_none_match="*" if create_only else None) as writer:
        writer.write(data)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("create_only", [False, True], ids=["overwrite", "create-only"])
@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_one_lost_answer_still_writes_exactly_the_bytes(
    faulty_s3: S3TestEnv, operation: str, create_only: bool
) -> None:
    match, size = OPERATIONS[operation]
    rule = proxy_of(faulty_s3).add(Rule(match, lose_response=True))
    data = payload(size, seed=7)
    write(client_of(faulty_s3), faulty_s3, "k.bin", data, create_only=create_only)
    assert rule.fired.is_set()
    assert sha256(faulty_s3.read("k.bin")) == sha256(data)
    assert faulty_s3.uploads() == []


@pytest.mark.parametrize("create_only", [False, True], ids=["overwrite", "create-only"])
@pytest.mark.parametrize("operation", ["PutObject", "CompleteMultipartUpload"])
def test_every_publish_answer_lost_still_succeeds_when_published(
    faulty_s3: S3TestEnv, operation: str, create_only: bool
) -> None:
    """Even when no attempt gets its answer, the object at the key tells that the write happened."""
    match, size = OPERATIONS[operation]
    rule = proxy_of(faulty_s3).add(Rule(match, lose_response=True, times=None))
    data = payload(size, seed=8)
    write(client_of(faulty_s3), faulty_s3, "k.bin", data, create_only=create_only)
    assert rule.hits >= 3  # max_attempts, every answer lost
    assert sha256(faulty_s3.read("k.bin")) == sha256(data)
    assert faulty_s3.uploads() == []


@pytest.mark.parametrize(
    ("status", "code", "create_only"),
    [(412, "PreconditionFailed", True), (404, "NoSuchUpload", False), (404, "NoSuchUpload", True)],
)
def test_a_retried_complete_that_finds_its_own_work_done_succeeds(
    faulty_s3: S3TestEnv, status: int, code: str, create_only: bool
) -> None:
    """The first CompleteMultipartUpload published and lost its answer; its retry is refused the
    way S3 refuses it (412 if create-only: the object exists; NoSuchUpload: the upload is gone)."""
    proxy = proxy_of(faulty_s3)
    lost = proxy.add(Rule(completes, lose_response=True))
    refused = proxy.add(Rule(completes, respond=status, code=code))
    data = payload(MULTIPART, seed=12)
    write(client_of(faulty_s3), faulty_s3, "k.bin", data, create_only=create_only)
    assert lost.fired.is_set() and refused.fired.is_set()
    assert sum(heads(request) for request in proxy.requests) == 1
    assert sha256(faulty_s3.read("k.bin")) == sha256(data)
    assert faulty_s3.uploads() == []


@pytest.mark.parametrize("operation", ["CreateMultipartUpload", "UploadPart"])
def test_every_answer_lost_before_the_publish_raises_and_leaves_nothing(faulty_s3: S3TestEnv, operation: str) -> None:
    match, size = OPERATIONS[operation]
    proxy_of(faulty_s3).add(Rule(match, lose_response=True, times=None))
    with pytest.raises(S3Exception) as raised:
        write(client_of(faulty_s3), faulty_s3, "k.bin", payload(size), create_only=False)
    assert raised.value.key == "k.bin"
    assert not faulty_s3.exists("k.bin")
    # Each lost create made an upload whose id the writer never learned: all were found and aborted.
    assert faulty_s3.uploads() == []


def test_a_first_attempt_412_is_a_conflict_without_a_head(faulty_s3: S3TestEnv) -> None:
    faulty_s3.put("k.bin", b"someone else's")
    with pytest.raises(S3Exception, match="already exists"):
        write(client_of(faulty_s3), faulty_s3, "k.bin", b"mine", create_only=True)
    assert not any(heads(request) for request in proxy_of(faulty_s3).requests)
    assert faulty_s3.read("k.bin") == b"someone else's"


@pytest.mark.parametrize("operation", ["PutObject", "CompleteMultipartUpload"])
@pytest.mark.parametrize("fault", ["drop", "lose_response"])
def test_create_only_retry_that_finds_another_writers_object_raises(
    faulty_s3: S3TestEnv, operation: str, fault: str
) -> None:
    """The first attempt's answer is lost and, meanwhile, another writer published: the retry's
    412 is checked, and the object is not ours."""
    match, size = OPERATIONS[operation]
    theirs = payload(size, seed=99)
    proxy_of(faulty_s3).add(
        Rule(
            match,
            before=lambda _: faulty_s3.put("k.bin", theirs),
            drop=fault == "drop",
            lose_response=fault == "lose_response",
        )
    )
    with pytest.raises(S3Exception, match="already exists") as raised:
        write(client_of(faulty_s3), faulty_s3, "k.bin", payload(size, seed=1), create_only=True)
    assert raised.value.code == "PreconditionFailed"
    assert any(heads(request) for request in proxy_of(faulty_s3).requests)  # the check was made
    assert sha256(faulty_s3.read("k.bin")) == sha256(theirs)
    assert faulty_s3.uploads() == []


def test_a_lost_create_never_aborts_an_upload_that_may_be_another_writers(
    faulty_s3: S3TestEnv, caplog: pytest.LogCaptureFixture
) -> None:
    """Another upload of the key without parts is there: the writer cannot tell which of the two
    unknown uploads its lost create made, so it aborts neither and says how to remove them."""
    other = faulty_s3.boto.create_multipart_upload(Bucket=faulty_s3.bucket, Key="k.bin")["UploadId"]
    proxy_of(faulty_s3).add(Rule(creates, lose_response=True))
    data = payload(MULTIPART, seed=5)
    with caplog.at_level(logging.WARNING, logger="s3torch.client"):
        write(client_of(faulty_s3), faulty_s3, "k.bin", data, create_only=False)
    assert sha256(faulty_s3.read("k.bin")) == sha256(data)
    left = {upload["UploadId"] for upload in faulty_s3.uploads()}
    assert other in left and len(left) == 2
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 2 and all("--upload-id" in message for message in warnings)
    assert any(other in message for message in warnings)


def test_a_failed_abort_is_logged_with_the_command_that_removes_the_upload(
    faulty_s3: S3TestEnv, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    proxy = proxy_of(faulty_s3)
    proxy.add(Rule(part_uploads(2), respond=403, code="AccessDenied"))
    aborts = proxy.add(Rule(lambda r: r.method == "DELETE" and "uploadId" in r.query, respond=500, times=None))
    with caplog.at_level(logging.WARNING, logger="s3torch.client"), pytest.raises(S3Exception, match="AccessDenied"):
        write(client_of(faulty_s3), faulty_s3, "k.bin", payload(MULTIPART), create_only=False)
    assert aborts.hits == 3  # botocore retried the abort up to max_attempts
    [upload] = faulty_s3.uploads()
    [warning] = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert upload["UploadId"] in warning
    removal = shlex.split(warning.split("remove it with: ")[1].split(" (or let")[0])
    assert removal[:4] == ["python", "-m", "s3torch.client", "uploads"]
    proxy.reset()
    # The logged command, run as it is (plus where the server is), removes exactly that upload.
    endpoint = ["--endpoint", faulty_s3.location.endpoint or "", "--force-path-style"]
    assert command([*removal[3:], *endpoint]) == 0
    assert f"aborted {upload['UploadId']}" in capsys.readouterr().out
    assert faulty_s3.uploads() == []
