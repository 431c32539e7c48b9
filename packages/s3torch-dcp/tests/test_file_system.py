"""``S3FileSystem`` over moto's in-process S3: streams, paths, rename, exists, rm_file, ids."""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import pytest
import torch
from dcp_support import CONFIG, REGION, MockBucket

from s3torch.client import S3Client, S3Exception, S3Writer
from s3torch.dcp import S3FileSystem
from s3torch.dcp import _file_system as file_system_module
from s3torch.readers import (
    DCPOptimizedS3Reader,
    ItemRange,
    RangedS3Reader,
    S3ReaderConstructor,
    SequentialS3Reader,
)


def make_fs(**kwargs: Any) -> S3FileSystem:
    kwargs.setdefault("s3client_config", CONFIG)
    return S3FileSystem(REGION, **kwargs)


# ---- streams ------------------------------------------------------------------------------


def test_write_then_read(s3: MockBucket) -> None:
    fs = make_fs()
    with fs.create_stream(s3.uri("dir/file.bin"), "wb") as stream:
        assert isinstance(stream, S3Writer)
        stream.write(b"hello ")
        stream.write(memoryview(b"world"))
        stream.close()  # DCP closes the stream inside the block; leaving it must not fail
    assert s3.read("dir/file.bin") == b"hello world"
    with fs.create_stream(s3.uri("dir/file.bin"), "rb") as stream:
        assert isinstance(stream, SequentialS3Reader)  # the default reader
        assert stream.read() == b"hello world"
    assert stream.closed


def test_an_exception_while_writing_publishes_nothing(s3: MockBucket) -> None:
    fs = make_fs()
    with pytest.raises(RuntimeError, match="boom"), fs.create_stream(s3.uri("half.bin"), "wb") as stream:
        stream.write(b"x" * (6 * 1024 * 1024))  # past one part: a multipart upload is under way
        raise RuntimeError("boom")
    assert s3.list_keys() == []
    assert s3.uploads() == []
    assert isinstance(fs._last_write_error, RuntimeError)


def test_the_reader_constructor_is_used(s3: MockBucket) -> None:
    s3.put("data.bin", bytes(range(200)))
    fs = make_fs(reader_constructor=S3ReaderConstructor.range_based(16))
    with fs.create_stream(s3.uri("data.bin"), "rb") as stream:
        assert isinstance(stream, RangedS3Reader)
        stream.seek(100)
        assert stream.read(4) == bytes([100, 101, 102, 103])


def test_dcp_optimized_readers_fetch_ahead(s3: MockBucket) -> None:
    s3.put("data.bin", bytes(range(200)))
    constructor = S3ReaderConstructor.dcp_optimized(0)
    fs = make_fs(reader_constructor=constructor)
    uri = s3.uri("data.bin")
    constructor.set_item_ranges_by_file([], {}, "")
    constructor._item_ranges_by_file = {uri: [ItemRange(0, 10), ItemRange(50, 60), ItemRange(100, 110)]}
    with fs.create_stream(uri, "rb") as stream:
        assert isinstance(stream, DCPOptimizedS3Reader)
        assert stream._read_ahead > 0
        for start in (0, 50, 100):
            stream.seek(start)
            assert stream.read(10) == bytes(range(start, start + 10))


@pytest.mark.parametrize("mode", ["foobar", "r", "w", "ab", "rb+"])
def test_other_modes_are_refused(mode: str) -> None:
    fs = make_fs()
    with pytest.raises(ValueError) as error, fs.create_stream("s3://bucket/key", mode):
        pass
    assert str(error.value) == (
        f"Invalid mode={mode!r} mode argument: create_stream only supports rb (read mode) & wb (write mode)"
    )


@pytest.mark.parametrize("path", ["not-a-uri", "s3://bucket", "s3://bucket/", "/tmp/file"])
def test_streams_need_an_object_uri(path: str) -> None:
    fs = make_fs()
    with pytest.raises(ValueError), fs.create_stream(path, "wb"):
        pass


# ---- paths --------------------------------------------------------------------------------


def test_concat_path() -> None:
    fs = make_fs()
    assert fs.concat_path("s3://bucket/ckpt", ".metadata") == "s3://bucket/ckpt/.metadata"
    assert fs.concat_path("s3://bucket/ckpt/", "__0_0.distcp") == "s3://bucket/ckpt/__0_0.distcp"
    assert fs.concat_path(Path("p"), "suffix") == "p/suffix"
    # pathlib turns "s3://" into "s3:/"; the URI survives.
    assert fs.concat_path(Path("s3://bucket/ckpt"), "x") == "s3://bucket/ckpt/x"


def test_init_path_stores_and_returns_the_path() -> None:
    fs = make_fs()
    assert fs.init_path("s3://bucket/ckpt") == "s3://bucket/ckpt"
    assert fs.path == "s3://bucket/ckpt"
    path = Path("s3://bucket/other")
    returned = fs.init_path(path)
    assert returned is path  # its argument's type, as upstream: a Path stays a Path
    assert fs.path is path


def test_mkdir_does_nothing(s3: MockBucket) -> None:
    make_fs().mkdir(s3.uri("some/dir"))
    assert s3.list_keys() == []


@pytest.mark.parametrize(
    ("checkpoint_id", "valid"),
    [
        ("s3://bucket/checkpoint", True),
        ("s3://bucket/a/b/c/", True),
        ("s3://bucket", True),
        (Path("anything"), True),  # as upstream
        ("foobar", False),
        ("s3:///", False),
        ("s3://", False),
        ("", False),
        ("/local/dir", False),
        ("https://bucket.s3.amazonaws.com/key", False),
    ],
)
def test_validate_checkpoint_id(checkpoint_id: str | Path, valid: bool) -> None:
    assert S3FileSystem.validate_checkpoint_id(checkpoint_id) is valid


# ---- rename -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "plain/.metadata.tmp",
        "path with spaces/file.txt",
        "special/a+b=c&d;e,f@g$h!~'()*.tmp",
        "percent/100%25 done%.tmp",
        "unicode/fïchier-データ.tmp",
        "query-like/what?is#this.tmp",
    ],
)
def test_rename_copies_then_deletes(s3: MockBucket, key: str) -> None:
    s3.put(key, b"payload")
    new_key = key.replace(".tmp", "") + ".renamed"
    make_fs().rename(s3.uri(key), s3.uri(new_key))
    assert s3.list_keys() == [new_key]
    assert s3.read(new_key) == b"payload"


def test_rename_across_buckets_is_refused(s3: MockBucket) -> None:
    s3.put("k", b"1")
    with pytest.raises(ValueError) as error:
        make_fs().rename(s3.uri("k"), "s3://another-bucket/k")
    assert str(error.value) == (
        "Source and destination buckets cannot be different (rename does not support cross-buckets operations)"
    )
    assert s3.list_keys() == ["k"]


def test_rename_of_a_missing_object(s3: MockBucket) -> None:
    with pytest.raises(S3Exception) as error:
        make_fs().rename(s3.uri("missing"), s3.uri("other"))
    assert str(error.value).startswith("Service error: The object was not found")


def test_rename_retries_the_delete(s3: MockBucket, monkeypatch: pytest.MonkeyPatch) -> None:
    s3.put("old", b"1")
    fs = make_fs()
    real_delete = fs.client.delete_object
    failures = iter([S3Exception("Service error: InternalError", code="InternalError", status=500)])
    waits: list[float] = []

    def flaky_delete(bucket: str, key: str) -> None:
        error = next(failures, None)
        if error is not None:
            raise error
        real_delete(bucket, key)

    monkeypatch.setattr(fs.client, "delete_object", flaky_delete)
    monkeypatch.setattr(file_system_module.time, "sleep", waits.append)
    fs.rename(s3.uri("old"), s3.uri("new"))
    assert s3.list_keys() == ["new"]
    assert len(waits) == 1
    assert 0 <= waits[0] <= file_system_module.DELETE_MAX_WAIT_SECONDS


def test_rename_raises_the_last_delete_error(s3: MockBucket, monkeypatch: pytest.MonkeyPatch) -> None:
    s3.put("old", b"1")
    fs = make_fs()
    attempts: list[int] = []

    def failing_delete(bucket: str, key: str) -> None:
        attempts.append(1)
        raise S3Exception(f"Service error: AccessDenied #{len(attempts)}", code="AccessDenied", status=403)

    monkeypatch.setattr(fs.client, "delete_object", failing_delete)
    monkeypatch.setattr(file_system_module.time, "sleep", lambda seconds: None)
    with pytest.raises(S3Exception, match="AccessDenied #3"):
        fs.rename(s3.uri("old"), s3.uri("new"))
    assert len(attempts) == file_system_module.DELETE_ATTEMPTS == 3
    assert s3.list_keys() == ["new", "old"]  # the copy happened, the delete did not


# ---- exists, rm_file ----------------------------------------------------------------------


def test_exists(s3: MockBucket) -> None:
    s3.put("present", b"")
    fs = make_fs()
    assert fs.exists(s3.uri("present")) is True
    assert fs.exists(s3.uri("absent")) is False


@pytest.mark.parametrize(
    "error",
    [
        S3Exception("Service error: The object was not found (HeadObject s3://b/k, status 404)", status=404),
        S3Exception("Service error: NotFound: details", code="NotFound"),
        S3Exception("Service error: The key does not exist", code="NoSuchKey", status=404),
    ],
)
def test_exists_recognizes_not_found_by_code_or_status(error: S3Exception, monkeypatch: pytest.MonkeyPatch) -> None:
    fs = make_fs()

    def head(bucket: str, key: str) -> None:
        raise error

    monkeypatch.setattr(fs.client, "head_object", head)
    assert fs.exists("s3://bucket/key") is False


@pytest.mark.parametrize(
    "error",
    [
        S3Exception("Service error: AccessDenied: no", code="AccessDenied", status=403),
        S3Exception("Client error: connection refused (HeadObject s3://bucket/key)"),
        ValueError("not S3"),
    ],
)
def test_exists_raises_other_errors_unchanged(error: Exception, monkeypatch: pytest.MonkeyPatch) -> None:
    fs = make_fs()

    def head(bucket: str, key: str) -> None:
        raise error

    monkeypatch.setattr(fs.client, "head_object", head)
    with pytest.raises(type(error)) as raised:
        fs.exists("s3://bucket/key")
    assert raised.value is error


def test_rm_file(s3: MockBucket) -> None:
    s3.put("a", b"1")
    s3.put("b", b"2")
    fs = make_fs()
    fs.rm_file(s3.uri("a"))
    assert s3.list_keys() == ["b"]
    fs.rm_file(s3.uri("never-existed"))  # not an error
    assert s3.list_keys() == ["b"]


def test_rm_file_logs_and_swallows_s3_errors(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    fs = make_fs()

    def delete(bucket: str, key: str) -> None:
        raise S3Exception("Service error: AccessDenied: no", code="AccessDenied", status=403)

    monkeypatch.setattr(fs.client, "delete_object", delete)
    fs.rm_file("s3://bucket/key")
    assert "Failed to delete s3://bucket/key" in caplog.text


# ---- the client ---------------------------------------------------------------------------


def test_user_agent_carries_dcp_comments() -> None:
    assert make_fs().client.user_agent_prefix.endswith(f"(dcp; {torch.__version__}; md/reader_type#sequential)")
    fs = make_fs(reader_constructor=S3ReaderConstructor.dcp_optimized())
    assert fs.client.user_agent_prefix.endswith(f"(dcp; {torch.__version__}; md/reader_type#dcp_optimized)")
    fs = make_fs(reader_constructor=S3ReaderConstructor.range_based())
    assert "md/reader_type#range_based" in fs.client.user_agent_prefix


def test_endpoint_and_config_reach_the_client() -> None:
    fs = make_fs(endpoint="http://127.0.0.1:9999")
    assert fs.client.endpoint == "http://127.0.0.1:9999"
    assert fs.client.s3client_config is CONFIG
    assert fs.client.region == REGION


def test_a_given_client_is_used() -> None:
    client = S3Client(REGION)
    assert S3FileSystem(REGION, s3_client=client).client is client


def test_pickles(s3: MockBucket) -> None:
    fs = make_fs(endpoint="http://127.0.0.1:9999", reader_constructor=S3ReaderConstructor.range_based())
    fs.init_path("s3://bucket/ckpt")
    fs._last_write_error = RuntimeError("not carried over")
    copy = pickle.loads(pickle.dumps(fs))
    assert copy.path == "s3://bucket/ckpt"
    assert copy.client.endpoint == "http://127.0.0.1:9999"
    assert copy._last_write_error is None
    assert S3ReaderConstructor.get_reader_type_string(copy.reader_constructor) == "range_based"


def test_readers_are_seekable_so_dcp_reads_in_place(s3: MockBucket) -> None:
    s3.put("x", b"abc")
    with make_fs().create_stream(s3.uri("x"), "rb") as stream:
        assert stream.seekable()
        assert isinstance(stream, io.IOBase)
