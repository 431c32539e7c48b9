"""s3torch-client end to end, against an S3 server embedded in this process.

Starts a moto S3 server on 127.0.0.1 (any free port), creates a bucket with boto3, then goes
through what ``S3Client`` does: a multipart upload, reads by iteration, into a buffer and by
range, listing, HEAD, copy, delete, an aborted write and the errors a program matches on. Each
check prints one ``ok`` line; the script exits 0 only if every check passed.

    pip install -e packages/s3torch-client -e packages/s3torch-test-support
    python examples/client_tour.py

Nothing leaves the machine: the credentials are dummies that only the local server sees.
"""

from __future__ import annotations

import hashlib
import random
import sys
import time
from collections.abc import Callable

import boto3
from s3_target import local_environment, local_s3_server

from s3torch.client import S3Client, S3ClientConfig, S3Exception, __version__

MIB = 1024 * 1024
REGION = "us-east-1"
BUCKET = "s3torch-demo"
PART_SIZE = 5 * MIB  # the smallest part S3 accepts, so a few MiB make a multipart upload

checks_passed = 0


def check(condition: bool, what: str) -> None:
    """Print ``ok <what>``, or stop the demo with an error (unlike ``assert``, even under -O)."""
    global checks_passed
    if not condition:
        raise AssertionError(f"check failed: {what}")
    checks_passed += 1
    print(f"ok  {what}", flush=True)


def s3_error(operation: Callable[[], object]) -> S3Exception | None:
    """The S3Exception ``operation`` raises, or None if it succeeds."""
    try:
        operation()
    except S3Exception as error:
        return error
    return None


def demo(endpoint: str) -> None:
    print(f"s3torch-client {__version__}, local S3 server at {endpoint}")
    boto3.client("s3", region_name=REGION, endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
    print(f"created bucket {BUCKET} with boto3")

    client = S3Client(REGION, endpoint=endpoint, s3client_config=S3ClientConfig(part_size=PART_SIZE))
    key = "data/sample.bin"
    payload = random.Random(0).randbytes(12 * MIB + 4321)  # three parts: 5 MiB, 5 MiB, the rest

    # -- write: parts go up concurrently while the loop keeps writing -------------------------
    started = time.perf_counter()
    with client.put_object(BUCKET, key) as writer:
        view = memoryview(payload)
        for offset in range(0, len(payload), MIB):
            writer.write(view[offset : offset + MIB])
        check(writer.tell() == len(payload), f"wrote {len(payload)} bytes through S3Writer")
    elapsed = time.perf_counter() - started
    print(f"    upload took {elapsed:.2f} s")
    head = client.head_object(BUCKET, key)
    check(head.size == len(payload), f"head_object: size {head.size}")
    check(head.etag.strip('"').endswith("-3"), f"uploaded as a 3-part multipart upload (ETag {head.etag})")

    hello = b"hello from s3torch\n"
    with client.put_object(BUCKET, "data/hello.txt") as writer:
        writer.write(hello)
    small = client.head_object(BUCKET, "data/hello.txt")
    single_put_etag = f'"{hashlib.md5(hello).hexdigest()}"'  # a multipart ETag would end in -<parts>
    check(small.size == len(hello) and small.etag == single_put_etag, "small object: one PutObject")

    # -- read it back, three ways --------------------------------------------------------------
    expected = hashlib.sha256(payload).hexdigest()
    digest = hashlib.sha256()
    chunks = 0
    for chunk in client.get_object_stream(BUCKET, key):
        digest.update(chunk)
        chunks += 1
    check(digest.hexdigest() == expected, f"get_object_stream, iterated: {chunks} chunks, sha256 matches")

    buffer = bytearray(len(payload))
    stream = client.get_object_stream(BUCKET, key)
    filled = stream.readinto(buffer)  # fills the whole buffer unless the object ends first
    check(filled == len(payload) and buffer == payload, "get_object_stream, readinto a preallocated buffer")
    check(stream.readinto(bytearray(1)) == 0, "readinto at the end returns 0")
    check(stream.size == len(payload) and stream.tell() == len(payload), "stream size and tell() are right")

    start, end = PART_SIZE - 1000, PART_SIZE + 1000  # across the boundary of parts 1 and 2
    ranged = client.get_object_stream(BUCKET, key, start, end)
    data = b"".join(ranged)
    check(data == payload[start:end], f"ranged read of bytes [{start}, {end}) matches")
    check(b"".join(client.get_object_stream(BUCKET, key, len(payload))) == b"", "a range starting at the end is empty")

    # -- list, copy, delete ------------------------------------------------------------------
    listed = {info.key: info for page in client.list_objects(BUCKET, prefix="data/") for info in page.object_info}
    check(sorted(listed) == ["data/hello.txt", key], f"list_objects(prefix='data/'): {sorted(listed)}")
    check(listed[key].size == len(payload) and listed[key].etag == head.etag, "listing carries size and ETag")
    pages = list(client.list_objects(BUCKET, prefix="data/", max_keys=1))
    check(len(pages) == 2, "max_keys=1 gives one page per object")
    top = next(client.list_objects(BUCKET, delimiter="/"))
    check(top.common_prefixes == ["data/"], f"delimiter='/' gives common prefixes {top.common_prefixes}")

    client.copy_object(BUCKET, "data/hello.txt", BUCKET, "copies/hello.txt")
    copied = b"".join(client.get_object_stream(BUCKET, "copies/hello.txt"))
    check(copied == hello, "copy_object: the copy reads back")
    client.delete_object(BUCKET, "copies/hello.txt")
    gone = s3_error(lambda: client.head_object(BUCKET, "copies/hello.txt"))
    check(gone is not None and gone.code == "NotFound", "delete_object: the copy is gone")
    client.delete_object(BUCKET, "copies/hello.txt")
    check(True, "deleting a missing key is not an error")

    # -- errors: the upstream's texts, and attributes to decide on ----------------------------
    cases = [
        (
            "GET of a missing key",
            lambda: b"".join(client.get_object_stream(BUCKET, "data/missing.bin")),
            "Service error: The key does not exist",
            "NoSuchKey",
        ),
        (
            "GET in a missing bucket",
            lambda: b"".join(client.get_object_stream("no-such-bucket", "data/x")),
            "Service error: The bucket does not exist",
            "NoSuchBucket",
        ),
        (
            "HEAD of a missing key",
            lambda: client.head_object(BUCKET, "data/missing.bin"),
            "Service error: The object was not found",
            "NotFound",
        ),
    ]
    for what, operation, text, code in cases:
        error = s3_error(operation)
        check(
            error is not None and str(error).startswith(text) and error.code == code and error.status == 404,
            f"{what}: S3Exception, code {error.code if error else None}",
        )
        print(f"    {error}")

    # -- a failed write publishes nothing ------------------------------------------------------
    try:
        with client.put_object(BUCKET, "data/aborted.bin") as writer:
            writer.write(payload)  # past one part: a multipart upload is under way
            raise RuntimeError("simulated failure in the middle of a write")
    except RuntimeError:
        pass
    published = s3_error(lambda: client.head_object(BUCKET, "data/aborted.bin")) is None
    uploads = boto3.client("s3", region_name=REGION, endpoint_url=endpoint).list_multipart_uploads(Bucket=BUCKET)
    check(
        not published and not uploads.get("Uploads"),
        "exception inside `with`: nothing published, no multipart upload left",
    )


def main() -> int:
    local_environment()
    with local_s3_server() as endpoint:
        demo(endpoint)
    print(f"client tour passed: {checks_passed} checks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
