"""Incomplete multipart uploads over real HTTP: ``S3Client.list_multipart_uploads`` and
``abort_multipart_uploads``, and the command ``python -m s3torch.client uploads`` that finds and
removes what a writer killed with SIGKILL mid-upload left behind."""

from __future__ import annotations

import datetime
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
from support import MOTO_REGION, PART, MotoServer, Rule, S3TestEnv, part_uploads

from s3torch.client import MultipartUploadInfo

# A writer that uploads a 3-part object through the proxy. With 2 parts in flight at most, part 3
# is sent only after part 1 was stored: once part 3 reaches the proxy, the upload has a part.
WRITER = """
import sys
from s3torch.client import S3Client, S3ClientConfig

endpoint, bucket, key, part = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
config = S3ClientConfig(part_size=part, force_path_style=True, throughput_target_gbps=0.001)
with S3Client(sys.argv[5], endpoint=endpoint, s3client_config=config).put_object(bucket, key) as writer:
    for number in range(3):
        writer.write(bytes([number]) * part)
    writer.write(b"end")
"""


@pytest.fixture
def release() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


def run_command(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "s3torch.client", "uploads", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_command_finds_and_removes_the_upload_of_a_killed_writer(
    faulty_s3: S3TestEnv, moto_server: MotoServer, release: threading.Event
) -> None:
    proxy = faulty_s3.proxy
    assert proxy is not None
    third_part = proxy.add(Rule(part_uploads(3), hold=release))
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, proxy.url, faulty_s3.bucket, "ckpt/model.bin", str(PART), MOTO_REGION]
    )
    try:
        assert third_part.fired.wait(timeout=120), "the writer never sent its third part"
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=60)
    assert writer.returncode == -signal.SIGKILL
    [left] = faulty_s3.uploads()
    assert left["Key"] == "ckpt/model.bin"
    parts = faulty_s3.boto.list_parts(Bucket=faulty_s3.bucket, Key="ckpt/model.bin", UploadId=left["UploadId"])
    assert [part["PartNumber"] for part in parts["Parts"]][:1] == [1]

    where = ["--endpoint", moto_server.endpoint, "--force-path-style", "--region", MOTO_REGION]
    listed = run_command(f"s3://{faulty_s3.bucket}/ckpt/", *where)
    assert listed.returncode == 0, listed.stderr
    assert f"s3://{faulty_s3.bucket}/ckpt/model.bin  {left['UploadId']}" in listed.stdout
    assert "1 incomplete upload(s) under" in listed.stdout

    refused = run_command(f"s3://{faulty_s3.bucket}/ckpt/", "--abort", *where)
    assert refused.returncode == 2 and "--older-than" in refused.stderr
    assert len(faulty_s3.uploads()) == 1

    aborted = run_command(f"s3://{faulty_s3.bucket}/ckpt/", "--abort", "--older-than", "0s", *where)
    assert aborted.returncode == 0, aborted.stderr
    assert left["UploadId"] in aborted.stdout and "1 incomplete upload(s)" in aborted.stdout
    assert faulty_s3.uploads() == []
    assert not faulty_s3.exists("ckpt/model.bin")


def test_list_and_abort_with_the_age_guard(s3: S3TestEnv) -> None:
    client = s3.new_client()
    ids = {
        name: s3.boto.create_multipart_upload(Bucket=s3.bucket, Key=s3.key(name))["UploadId"]
        for name in ("a/1", "a/2", "b/1")
    }
    listed = list(client.list_multipart_uploads(s3.bucket, s3.key("a/")))
    assert {(upload.key, upload.upload_id) for upload in listed} == {
        (s3.key(name), ids[name]) for name in ("a/1", "a/2")
    }
    assert all(isinstance(upload, MultipartUploadInfo) for upload in listed)
    assert all(upload.initiated.tzinfo is not None for upload in listed)
    # A guard longer than the uploads' age keeps every one of them.
    oldest = min(upload.initiated for upload in listed)
    guard = datetime.datetime.now(datetime.timezone.utc) - oldest + datetime.timedelta(days=1)
    assert client.abort_multipart_uploads(s3.bucket, s3.key("a/"), older_than=guard) == []
    assert len(s3.uploads()) == 3
    aborted = client.abort_multipart_uploads(s3.bucket, s3.key("a/"), older_than=datetime.timedelta(0))
    assert sorted(upload.upload_id for upload in aborted) == sorted([ids["a/1"], ids["a/2"]])
    assert [upload["UploadId"] for upload in s3.uploads()] == [ids["b/1"]]
    assert client.abort_multipart_upload(s3.bucket, s3.key("b/1"), ids["b/1"]) is True
    assert client.abort_multipart_upload(s3.bucket, s3.key("b/1"), ids["b/1"]) is False
    assert s3.uploads() == []


def test_the_command_reports_s3_errors_plainly(moto_server: MotoServer) -> None:
    result = run_command("s3://s3torch-no-such-bucket-here/x", "--endpoint", moto_server.endpoint, "--force-path-style")
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and "NoSuchBucket" in result.stderr
    assert "Traceback" not in result.stderr
    assert os.environ.get("AWS_SECRET_ACCESS_KEY", "unset") not in result.stderr + result.stdout
