"""Processes: a client used, then forked, works in the child on a transport of its own; a
pickled client works in a fresh interpreter; ``AWS_ENDPOINT_URL_S3`` is honoured."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import traceback

import pytest
from support import MOTO_REGION, PART, S3TestEnv, payload

from s3torch.client import S3Client, S3ClientConfig


def read(client: S3Client, bucket: str, key: str) -> bytes:
    return b"".join(bytes(chunk) for chunk in client.get_object_stream(bucket, key))


def write(client: S3Client, bucket: str, key: str, data: bytes) -> None:
    with client.put_object(bucket, key) as writer:
        writer.write(data)


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_client_used_before_fork_works_in_child_and_parent(s3: S3TestEnv) -> None:
    client = s3.new_client(part_size=PART)
    key, child_key = s3.key("before-fork"), s3.key("from-child")
    data = payload(PART + 100, seed=21)  # a multipart upload: the pool threads are running
    write(client, s3.bucket, key, data)
    assert read(client, s3.bucket, key) == data
    parent_transport = client._transport
    parent_pid = os.getpid()

    pid = os.fork()
    if pid == 0:  # the child: report through the exit status only
        status = 1
        try:
            signal.alarm(120)  # never hang the test run
            child_transport = client._transport
            ok = child_transport is not parent_transport and os.getpid() != parent_pid
            ok = ok and read(client, s3.bucket, key) == data
            write(client, s3.bucket, child_key, b"written by the child")
            status = 0 if ok else 2
        except BaseException:  # noqa: BLE001 - the child reports through its exit status
            traceback.print_exc()
        finally:
            os._exit(status)

    _, wait_status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(wait_status) == 0
    assert client._transport is parent_transport
    assert s3.read(child_key) == b"written by the child"
    # The parent's transport is untouched by the child's exit.
    assert read(client, s3.bucket, child_key) == b"written by the child"
    write(client, s3.bucket, key, b"parent again")
    assert s3.read(key) == b"parent again"


CHILD = """
import pickle, sys
client = pickle.load(sys.stdin.buffer)
bucket, key = sys.argv[1], sys.argv[2]
data = b"".join(bytes(c) for c in client.get_object_stream(bucket, key))
with client.put_object(bucket, key + ".echo") as writer:
    writer.write(data[::-1])
print(len(data), client.region, client.s3client_config.part_size)
"""


def test_pickled_client_works_in_a_fresh_interpreter(s3: S3TestEnv) -> None:
    client = s3.new_client(part_size=PART)
    key = s3.key("spawned")
    s3.put(key, b"abcdef")
    client.head_object(s3.bucket, key)  # the transport exists; only settings may be pickled
    blob = pickle.dumps(client)
    result = subprocess.run(
        [sys.executable, "-c", CHILD, s3.bucket, key],
        input=blob,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().split() == ["6", client.region, str(PART)]
    assert s3.read(key + ".echo") == b"fedcba"


def test_aws_endpoint_url_s3_is_honoured(moto_s3: S3TestEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint = moto_s3.location.endpoint
    assert endpoint is not None
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint)
    # A configuration no other test uses, so this client gets a transport made now.
    client = S3Client(MOTO_REGION, s3client_config=S3ClientConfig(force_path_style=True, read_timeout=59.75))
    assert client.endpoint is None
    write(client, moto_s3.bucket, "via-env", b"found through the environment")
    assert moto_s3.read("via-env") == b"found through the environment"
    assert read(client, moto_s3.bucket, "via-env") == b"found through the environment"
    assert [i.key for page in client.list_objects(moto_s3.bucket) for i in page.object_info] == ["via-env"]
    assert client._transport.client.meta.endpoint_url == endpoint
