"""Incomplete multipart uploads over moto in process: the accounting that aborts what a lost
CreateMultipartUpload left and never an upload that may be another writer's, the ``S3Client``
methods that list and abort uploads (with their guard and argument checks), and the command
``python -m s3torch.client uploads``."""

from __future__ import annotations

import argparse
import datetime
import logging
from typing import Any

import pytest
from client_unit_support import PART, MockS3, payload

from s3torch.client import MultipartUploadInfo
from s3torch.client.__main__ import main, parse_duration, parse_location
from s3torch.client._uploads import account_for_lost_creates, removal_command


def create(s3: MockS3, key: str, *, parts: int = 0) -> str:
    upload_id: str = s3.boto.create_multipart_upload(Bucket=s3.bucket, Key=key)["UploadId"]
    for number in range(1, parts + 1):
        s3.boto.upload_part(Bucket=s3.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=b"part")
    return upload_id


def left(s3: MockS3) -> set[str]:
    return {upload["UploadId"] for upload in s3.uploads()}


# ---- accounting for lost creates --------------------------------------------------------


def test_the_lost_create_is_aborted_and_nothing_else(s3: MockS3) -> None:
    used = create(s3, "k", parts=1)
    lost = create(s3, "k")
    busy = create(s3, "k", parts=1)  # another writer's, with parts
    other_key = create(s3, "k2")  # under the prefix "k", not the key
    account_for_lost_creates(s3.client._transport, s3.bucket, "k", used, retries=1)
    assert lost not in left(s3)
    assert left(s3) == {used, busy, other_key}


def test_more_unknown_uploads_than_retries_are_all_kept(s3: MockS3, caplog: pytest.LogCaptureFixture) -> None:
    first, second = create(s3, "k"), create(s3, "k")
    with caplog.at_level(logging.WARNING, logger="s3torch.client"):
        account_for_lost_creates(s3.client._transport, s3.bucket, "k", None, retries=1)
    assert left(s3) == {first, second}
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2
    assert any(removal_command(s3.bucket, "k", first) in message for message in messages)
    assert any(removal_command(s3.bucket, "k", second) in message for message in messages)


def test_as_many_unknown_uploads_as_retries_are_aborted(s3: MockS3) -> None:
    create(s3, "k"), create(s3, "k")
    account_for_lost_creates(s3.client._transport, s3.bucket, "k", None, retries=2)
    assert left(s3) == set()


def test_a_retried_create_through_the_writer_leaves_no_upload(s3: MockS3, monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore's retry of the create reports RetryAttempts; the writer then accounts at its end."""
    from s3torch.client._transport import Transport

    original = Transport.call
    orphans: list[str] = []

    def call(self: Transport, operation: str, bucket: Any, key: Any, method: str, **params: Any) -> Any:
        result = original(self, operation, bucket, key, method, **params)
        if operation == "CreateMultipartUpload" and not orphans:
            # As if botocore's first attempt had created this upload and lost the answer.
            orphans.append(create(s3, key))
            result["ResponseMetadata"]["RetryAttempts"] = 1
        return result

    monkeypatch.setattr(Transport, "call", call)
    data = payload(PART + 1)
    with s3.client.put_object(s3.bucket, "k") as writer:
        writer.write(data)
    assert s3.read("k") == data
    assert len(orphans) == 1
    assert s3.uploads() == []


# ---- S3Client methods ----------------------------------------------------------------------


def test_list_and_abort(s3: MockS3) -> None:
    ids = {key: create(s3, key) for key in ("a/1", "a/2", "b/1")}
    listed = list(s3.client.list_multipart_uploads(s3.bucket, "a/"))
    assert sorted((upload.key, upload.upload_id) for upload in listed) == sorted(
        (key, ids[key]) for key in ("a/1", "a/2")
    )
    assert all(
        isinstance(upload, MultipartUploadInfo) and upload.initiated.utcoffset() == datetime.timedelta(0)
        for upload in listed
    )
    # moto reports every upload as initiated in 2010: older than any guard below a few years.
    assert s3.client.abort_multipart_uploads(s3.bucket, "a/", older_than=datetime.timedelta(days=365 * 100)) == []
    aborted = s3.client.abort_multipart_uploads(s3.bucket, "a/", older_than=datetime.timedelta(days=1))
    assert sorted(upload.upload_id for upload in aborted) == sorted([ids["a/1"], ids["a/2"]])
    assert left(s3) == {ids["b/1"]}


@pytest.mark.parametrize(
    ("older_than", "error"),
    [
        (None, TypeError),
        (3600, TypeError),
        ("1d", TypeError),
        (datetime.timedelta(seconds=-1), ValueError),
    ],
)
def test_abort_needs_a_valid_guard(s3: MockS3, older_than: Any, error: type[Exception]) -> None:
    create(s3, "k")
    with pytest.raises(error, match="older_than"):
        s3.client.abort_multipart_uploads(s3.bucket, "", older_than=older_than)
    assert len(left(s3)) == 1


def test_bad_arguments_name_themselves(s3: MockS3) -> None:
    with pytest.raises(ValueError, match="Bucket"):
        s3.client.list_multipart_uploads("")
    with pytest.raises(TypeError, match="prefix"):
        s3.client.list_multipart_uploads(s3.bucket, None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="upload_id"):
        s3.client.abort_multipart_upload(s3.bucket, "k", "")
    with pytest.raises(ValueError, match="Key"):
        s3.client.abort_multipart_upload(s3.bucket, "", "id")


# ---- the command --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0s", datetime.timedelta(0)),
        ("45s", datetime.timedelta(seconds=45)),
        ("30m", datetime.timedelta(minutes=30)),
        ("12h", datetime.timedelta(hours=12)),
        ("1d", datetime.timedelta(days=1)),
        ("2w", datetime.timedelta(weeks=2)),
        ("1d12h", datetime.timedelta(days=1, hours=12)),
    ],
)
def test_durations(text: str, expected: datetime.timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "1", "d", "1x", "-1d", "1d ", " 1d", "1.5d", "1d-"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="duration"):
        parse_duration(text)


def test_locations() -> None:
    assert parse_location("s3://bucket") == ("bucket", "")
    assert parse_location("s3://bucket/a/b/") == ("bucket", "a/b/")
    for text in ("bucket/a", "s3://", "s3:///a", "https://bucket/a"):
        with pytest.raises(argparse.ArgumentTypeError, match="S3 location"):
            parse_location(text)


def test_command_lists_and_aborts(s3: MockS3, capsys: pytest.CaptureFixture[str]) -> None:
    first, second = create(s3, "ckpt/a"), create(s3, "ckpt/b", parts=1)
    create(s3, "other/c")
    assert main(["uploads", f"s3://{s3.bucket}/ckpt/"]) == 0
    out = capsys.readouterr().out
    assert f"s3://{s3.bucket}/ckpt/a  {first}  initiated 2010-11-10T20:48:33Z" in out
    assert f"s3://{s3.bucket}/ckpt/b  {second}" in out
    assert "other/c" not in out
    assert out.endswith(f"2 incomplete upload(s) under s3://{s3.bucket}/ckpt/\n")
    assert len(left(s3)) == 3  # listing aborts nothing

    assert main(["uploads", f"s3://{s3.bucket}/ckpt/a", "--abort", "--upload-id", first]) == 0
    assert capsys.readouterr().out == f"aborted {first} s3://{s3.bucket}/ckpt/a\n"
    assert main(["uploads", f"s3://{s3.bucket}/ckpt/", "--abort", "--older-than", "1d"]) == 0
    out = capsys.readouterr().out
    assert f"aborted  s3://{s3.bucket}/ckpt/b  {second}" in out
    assert "1 incomplete upload(s) older than 1d aborted" in out
    assert [upload["Key"] for upload in s3.uploads()] == ["other/c"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--abort"], "--older-than"),
        (["--older-than", "1d"], "add --abort"),
        (["--upload-id", "x"], "add --abort"),
        (["--abort", "--older-than", "1d", "--upload-id", "x"], "not both"),
        (["--abort", "--older-than", "soon"], "duration"),
    ],
)
def test_command_refuses_unsafe_or_unclear_requests(
    s3: MockS3, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    create(s3, "k")
    with pytest.raises(SystemExit) as exited:
        main(["uploads", f"s3://{s3.bucket}/", *args])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err
    assert len(left(s3)) == 1


def test_command_reports_s3_errors(s3: MockS3, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["uploads", "s3://s3torch-no-such-bucket/"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: Service error:") and "NoSuchBucket" in err
