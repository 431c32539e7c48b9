"""Bad inputs to the client's public API, as one table: each raises a ValueError or TypeError
(``S3ClientConfigError`` is both an ``S3Exception`` and a ``ValueError``) whose message names the
argument, and the bucket and key where there are some, before anything is sent."""

# ruff: noqa: E501  (a table reads best one case per line)

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from client_unit_support import MockS3

from s3torch.client import S3Client, S3ClientConfig, S3ClientConfigError, S3Exception, UserAgent

MIB = 1024 * 1024


def client() -> S3Client:
    return S3Client("us-east-1")


# (id, call, exception type, a regex the message must match)
BAD_INPUTS: list[tuple[str, Callable[[], Any], type[Exception], str]] = [
    # ---- S3ClientConfig ---------------------------------------------------------------------
    ("throughput-inf", lambda: S3ClientConfig(throughput_target_gbps=float("inf")), S3ClientConfigError,
     r"throughput_target_gbps must be a positive, finite number \(throughput_target_gbps=inf\)"),
    ("throughput-nan", lambda: S3ClientConfig(throughput_target_gbps=float("nan")), S3ClientConfigError,
     r"throughput_target_gbps .*nan"),
    ("throughput-negative", lambda: S3ClientConfig(throughput_target_gbps=-1.0), S3ClientConfigError,
     r"throughput_target_gbps .*-1.0"),
    ("throughput-zero", lambda: S3ClientConfig(throughput_target_gbps=0), S3ClientConfigError,
     r"throughput_target_gbps"),
    ("throughput-str", lambda: S3ClientConfig(throughput_target_gbps="10"), TypeError,
     r"throughput_target_gbps must be a number, got str '10'"),
    ("throughput-bool", lambda: S3ClientConfig(throughput_target_gbps=True), TypeError,
     r"throughput_target_gbps must be a number, got bool"),
    ("part_size-str", lambda: S3ClientConfig(part_size="8MiB"), TypeError, r"part_size must be an int, got str"),
    ("part_size-float", lambda: S3ClientConfig(part_size=8.0 * MIB), TypeError, r"part_size must be an int"),
    ("part_size-bool", lambda: S3ClientConfig(part_size=True), TypeError, r"part_size must be an int, got bool"),
    ("part_size-small", lambda: S3ClientConfig(part_size=MIB), S3ClientConfigError,
     r"part size must be at between 5MiB and 5GiB \(part_size=1048576\)"),
    ("part_size-negative", lambda: S3ClientConfig(part_size=-5), S3ClientConfigError, r"part_size=-5"),
    ("max_attempts-zero", lambda: S3ClientConfig(max_attempts=0), S3ClientConfigError, r"max_attempts must be at least 1"),
    ("max_attempts-float", lambda: S3ClientConfig(max_attempts=2.5), TypeError, r"max_attempts must be an int"),
    ("max_attempts-str", lambda: S3ClientConfig(max_attempts="3"), TypeError, r"max_attempts must be an int"),
    ("unsigned-str", lambda: S3ClientConfig(unsigned="no"), TypeError, r"unsigned must be a bool, got str"),
    ("force_path_style-int", lambda: S3ClientConfig(force_path_style=1), TypeError, r"force_path_style must be a bool"),
    ("requester_pays-str", lambda: S3ClientConfig(requester_pays="true"), TypeError, r"requester_pays must be a bool"),
    ("requester_pays-with-unsigned", lambda: S3ClientConfig(requester_pays=True, unsigned=True), S3ClientConfigError,
     r"requester_pays cannot be used together with unsigned"),
    ("profile-int", lambda: S3ClientConfig(profile=3), TypeError, r"profile must be None or the name of a profile"),
    ("profile-empty", lambda: S3ClientConfig(profile=""), S3ClientConfigError, r"profile must be None or the name"),
    ("connect_timeout-str", lambda: S3ClientConfig(connect_timeout="5"), TypeError, r"connect_timeout must be a number"),
    ("connect_timeout-inf", lambda: S3ClientConfig(connect_timeout=float("inf")), S3ClientConfigError,
     r"connect_timeout must be a positive, finite number"),
    ("read_timeout-nan", lambda: S3ClientConfig(read_timeout=float("nan")), S3ClientConfigError, r"read_timeout"),
    ("read_timeout-negative", lambda: S3ClientConfig(read_timeout=-1), S3ClientConfigError, r"read_timeout"),
    ("retry_deadline-zero", lambda: S3ClientConfig(retry_deadline=0), S3ClientConfigError,
     r"retry_deadline must be a positive, finite number \(retry_deadline=0\)"),
    ("retry_deadline-str", lambda: S3ClientConfig(retry_deadline="90"), TypeError, r"retry_deadline must be a number"),
    ("stall_window-inf", lambda: S3ClientConfig(stall_window=float("inf")), S3ClientConfigError, r"stall_window must be a positive, finite number"),
    ("stall_min_rate-negative", lambda: S3ClientConfig(stall_min_rate=-1), S3ClientConfigError, r"stall_min_rate must be 0 \(off\)"),
    # ---- S3Client and UserAgent -------------------------------------------------------------
    ("region-none", lambda: S3Client(None), ValueError, r"region should be specified"),
    ("region-empty", lambda: S3Client(""), ValueError, r"region should be specified"),
    ("region-int", lambda: S3Client(1), TypeError, r"region must be a str"),
    ("region-crlf", lambda: S3Client("us-east-1\r\nX-Injected: 1"), ValueError, r"region must be a region name"),
    ("region-space", lambda: S3Client("us east 1"), ValueError, r"region must be a region name"),
    ("endpoint-int", lambda: S3Client("us-east-1", endpoint=9000), TypeError, r"endpoint must be a URL"),
    ("user_agent-str", lambda: S3Client("us-east-1", user_agent="me"), TypeError, r"user_agent must be a UserAgent"),
    ("s3client_config-dict", lambda: S3Client("us-east-1", s3client_config={"part_size": MIB}), TypeError,
     r"s3client_config must be an S3ClientConfig"),
    ("user-agent-comments-str", lambda: UserAgent("dcp"), ValueError, r"^Argument comments must be a List\[str\]$"),
    ("user-agent-comments-int", lambda: UserAgent([1]), ValueError, r"^Argument comments must be a List\[str\]$"),
    ("user-agent-comment-crlf", lambda: UserAgent(["ok", "evil\r\nX-Injected: 1"]), ValueError,
     r"Argument comments must not contain CR, LF"),
    ("user-agent-comment-lf", lambda: UserAgent(["evil\nX: 1"]), ValueError, r"Argument comments must not contain"),
    # ---- buckets, keys and ranges ------------------------------------------------------------
    ("bucket-none", lambda: client().get_object(None, "k"), ValueError, r"^Bucket should be specified$"),
    ("bucket-int", lambda: client().head_object(7, "k"), TypeError, r"bucket must be a str, got int"),
    ("bucket-crlf", lambda: client().get_object_stream("bucket\r\nX: 1", "k"), ValueError,
     r"Invalid bucket name 'bucket\\r\\nX: 1'"),
    ("bucket-space", lambda: client().delete_object("my bucket", "k"), ValueError, r"Invalid bucket name 'my bucket'"),
    ("key-none", lambda: client().get_object("bucket", None), ValueError, r"Key should be specified \(bucket 'bucket'\)"),
    ("key-empty", lambda: client().put_object("bucket", ""), ValueError, r"Key should be specified \(bucket 'bucket'\)"),
    ("key-int", lambda: client().get_object_stream("bucket", 5), TypeError, r"key must be a str, got int \(bucket 'bucket'\)"),
    ("key-bytes", lambda: client().head_object("bucket", b"k"), TypeError, r"key must be a str, got bytes"),
    ("key-lone-surrogate", lambda: client().get_object("bucket", "a\udc80"), ValueError,
     r"key 'a\\udc80' of bucket 'bucket' cannot be encoded as UTF-8"),
    ("copy-destination-key-none", lambda: client().copy_object("src", "k", "dst", None), ValueError,
     r"Key should be specified \(bucket 'dst'\)"),
    ("list-bucket-empty", lambda: client().list_objects(""), ValueError, r"^Bucket should be specified$"),
    ("list-prefix-none", lambda: client().list_objects("bucket", None), TypeError, r"prefix must be a str.*'bucket'"),
    ("list-delimiter-int", lambda: client().list_objects("bucket", "", 1), TypeError, r"delimiter must be a str"),
    ("list-max_keys-bool", lambda: client().list_objects("bucket", max_keys=True), ValueError, r"max_keys"),
    ("list-max_keys-large", lambda: client().list_objects("bucket", max_keys=1001), ValueError, r"max_keys"),
    ("range-start-negative", lambda: client().get_object_stream("bucket", "k", -1), ValueError,
     r"start must be non-negative, got -1 for s3://bucket/k"),
    ("range-end-negative", lambda: client().get_object_stream("bucket", "k", None, -1), ValueError,
     r"end must be non-negative"),
    ("range-start-str", lambda: client().get_object_stream("bucket", "k", "0"), TypeError,
     r"start must be an int or None, got str for s3://bucket/k"),
    ("range-end-float", lambda: client().get_object_stream("bucket", "k", 0, 10.0), TypeError, r"end must be an int"),
    # ---- header-bound arguments --------------------------------------------------------------
    ("etag-crlf", lambda: client().get_object_stream("bucket", "k", etag='"abc"\r\nX-Injected: 1'), ValueError,
     r"etag must not contain CR, LF or NUL characters .* \(s3://bucket/k\)"),
    ("etag-int", lambda: client().get_object_stream("bucket", "k", etag=5), TypeError, r"etag must be a str"),
    ("storage_class-crlf", lambda: client().put_object("bucket", "k", "STANDARD\r\nX-Injected: 1"), ValueError,
     r"storage_class must not contain CR, LF or NUL characters .* \(s3://bucket/k\)"),
    ("storage_class-nul", lambda: client().put_object("bucket", "k", "STANDARD\x00"), ValueError, r"storage_class"),
    ("storage_class-int", lambda: client().put_object("bucket", "k", 1), TypeError, r"storage_class must be a str"),
    ("if_none_match-etag", lambda: client().put_object("bucket", "k", if_none_match='"abc"'), ValueError,
     r"if_none_match must be None or '\*'"),
    ("uploads-bucket-empty", lambda: client().list_multipart_uploads(""), ValueError, r"^Bucket should be specified$"),
    ("uploads-prefix-none", lambda: client().list_multipart_uploads("bucket", None), TypeError, r"prefix must be a str"),
    ("abort-upload_id-empty", lambda: client().abort_multipart_upload("bucket", "k", ""), ValueError,
     r"upload_id should be specified \(s3://bucket/k\)"),
    ("abort-older_than-int", lambda: client().abort_multipart_uploads("bucket", older_than=86400), TypeError,
     r"older_than must be a datetime.timedelta, got int"),
    ("object_info-str", lambda: client().get_object("bucket", "k", object_info="10"), TypeError,
     r"object_info must be an ObjectInfo.*s3://bucket/k"),
]  # fmt: skip


@pytest.mark.parametrize(("call", "error", "message"), [c[1:] for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS])
def test_a_bad_input_raises_a_clear_error(call: Callable[[], Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        call()


# ---- unusual but valid: a correct result -----------------------------------------------------


def test_keys_with_cr_lf_and_other_characters_are_objects_like_any(s3: MockS3) -> None:
    # S3 keys may hold any UTF-8 character; they travel percent-encoded in the path.
    for key in ("line\r\nbreak", "tab\there", "spaces and ?query=#hash", "ünïcødé/ключ/鍵", "%2F%00"):
        with s3.client.put_object(s3.bucket, key) as writer:
            writer.write(key.encode())
        assert s3.client.get_object(s3.bucket, key).read() == key.encode()
        assert s3.client.head_object(s3.bucket, key).size == len(key.encode())


def test_an_empty_storage_class_is_the_default_one(s3: MockS3) -> None:
    with s3.client.put_object(s3.bucket, "k", "") as writer:
        writer.write(b"data")
    assert s3.client.head_object(s3.bucket, "k").storage_class is None


def test_empty_and_past_the_end_ranges_are_empty(s3: MockS3) -> None:
    s3.put("k", b"0123456789")
    assert b"".join(s3.client.get_object_stream(s3.bucket, "k", 3, 3)) == b""
    assert b"".join(s3.client.get_object_stream(s3.bucket, "k", 10)) == b""
    assert b"".join(s3.client.get_object_stream(s3.bucket, "k", 8, 100)) == b"89"
    assert b"".join(s3.client.get_object_stream(s3.bucket, "k", 5, 2)) == b""  # as data[5:2]


def test_an_unusable_endpoint_is_named_at_first_use() -> None:
    # The upstream's message, on the first request (nothing is resolved at construction).
    with pytest.raises(S3Exception, match=r"Custom endpoint `ftp://host` was not a valid URI"):
        S3Client("us-east-1", endpoint="ftp://host").head_object("bucket", "k")
