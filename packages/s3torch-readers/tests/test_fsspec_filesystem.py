"""fsspec's ``s3://`` served by ``S3FsspecFileSystem`` (``s3torch.readers.fsspec``) over moto's
in-process S3: what Lightning's bookkeeping and torch's ``FsspecWriter``/``FsspecReader`` ask of it."""

from __future__ import annotations

import csv
import errno
import importlib
import importlib.util
import pickle
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

fsspec = pytest.importorskip("fsspec")  # s3torch-readers works without fsspec; this module needs it

import boto3  # noqa: E402
from fsspec.core import url_to_fs  # type: ignore[import-untyped]  # noqa: E402
from moto import mock_aws  # noqa: E402

from s3torch.client import S3Client, S3ClientConfig  # noqa: E402
from s3torch.readers import fsspec as readers_fsspec  # noqa: E402
from s3torch.readers.fsspec import S3FsspecFileSystem  # noqa: E402

REGION = "us-east-1"
BUCKET = "s3torch-readers-fsspec"

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("s3fs") is not None, reason="s3fs is installed: it serves s3://, not s3torch"
)


def uri(key: str) -> str:
    return f"s3://{BUCKET}/{key}"


def put(boto: Any, key: str, data: bytes) -> None:
    boto.put_object(Bucket=BUCKET, Key=key, Body=data)


def read(boto: Any, key: str) -> bytes:
    data: bytes = boto.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    return data


def keys(boto: Any) -> list[str]:
    return [entry["Key"] for entry in boto.list_objects_v2(Bucket=BUCKET).get("Contents", [])]


@pytest.fixture
def boto(aws_environment: None) -> Iterator[Any]:
    """A boto3 client of moto's in-process S3, which holds the (empty) bucket ``BUCKET``."""
    with mock_aws():
        client = boto3.client("s3", region_name=REGION)
        client.create_bucket(Bucket=BUCKET)
        yield client


@pytest.fixture
def fs(boto: Any) -> Iterator[S3FsspecFileSystem]:
    """What fsspec gives for an s3:// path, on a client of this test."""
    readers_fsspec.register()
    readers_fsspec.use_client(S3Client(REGION, s3client_config=S3ClientConfig(part_size=5 * 1024 * 1024)))
    filesystem, _ = url_to_fs("s3://any/path")
    assert isinstance(filesystem, S3FsspecFileSystem)
    yield filesystem
    readers_fsspec.use_client(None)


@pytest.fixture
def _restore_registry() -> Iterator[None]:
    registry = importlib.import_module("fsspec.registry")._registry  # fsspec.registry is a read-only view
    saved = dict(registry)
    yield
    registry.clear()
    registry.update(saved)


# ---- registration and the client -----------------------------------------------------------


def test_importing_the_readers_imports_no_fsspec() -> None:
    code = "import s3torch.readers, sys; assert 'fsspec' not in sys.modules, 'fsspec was imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.usefixtures("_restore_registry")
def test_register_serves_s3_without_s3fs() -> None:
    importlib.import_module("fsspec.registry")._registry.pop("s3", None)
    assert readers_fsspec.register()
    assert fsspec.get_filesystem_class("s3") is S3FsspecFileSystem
    assert readers_fsspec.register()  # idempotent


@pytest.mark.usefixtures("_restore_registry")
def test_s3fs_keeps_s3_when_it_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    importlib.import_module("fsspec.registry")._registry.pop("s3", None)
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return object() if name == "s3fs" else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    assert not readers_fsspec.register()
    assert "s3" not in fsspec.registry


def test_the_default_client_follows_the_environment(aws_environment: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(readers_fsspec, "_client", None)
    monkeypatch.setenv("AWS_REGION", "ap-south-1")
    client = S3FsspecFileSystem().client
    assert client.region == "ap-south-1"
    assert client.endpoint is None  # botocore resolves it: AWS_ENDPOINT_URL(_S3) included
    assert not client.user_agent_prefix.endswith(")")  # no component's comment: shared by several
    assert S3FsspecFileSystem().client is client  # built once

    readers_fsspec.use_client(None)
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-north-1")
    assert S3FsspecFileSystem().client.region == "eu-north-1"

    readers_fsspec.use_client(None)
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    assert S3FsspecFileSystem().client.region == "us-east-1"


def test_use_client_wins_until_reset(aws_environment: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(readers_fsspec, "_client", None)
    chosen = S3Client("eu-west-1", endpoint="http://127.0.0.1:9")
    readers_fsspec.use_client(chosen)
    assert S3FsspecFileSystem().client is chosen
    readers_fsspec.use_client(None)
    assert S3FsspecFileSystem().client is not chosen


def test_an_explicit_client_wins(boto: Any) -> None:
    client = S3Client(REGION)
    filesystem = S3FsspecFileSystem(client=client)
    assert filesystem.client is client
    assert pickle.loads(pickle.dumps(filesystem)).client.region == REGION


# ---- objects -------------------------------------------------------------------------------


def test_write_read_and_append_text(fs: S3FsspecFileSystem, boto: Any) -> None:
    path = uri("logs/version_0/metrics.csv")
    with fs.open(path, "w", newline="") as file:
        csv.writer(file).writerows([["step", "loss"], [0, 1.5]])
    with fs.open(path, "a", newline="") as file:
        csv.writer(file).writerow([1, 0.5])
    assert read(boto, "logs/version_0/metrics.csv") == b"step,loss\r\n0,1.5\r\n1,0.5\r\n"
    with fs.open(path, "r", newline="") as file:
        assert list(csv.reader(file)) == [["step", "loss"], ["0", "1.5"], ["1", "0.5"]]
    with fs.open(uri("logs/new.txt"), "a") as file:  # append to nothing: a new object
        file.write("first")
    assert read(boto, "logs/new.txt") == b"first"


def test_binary_read_seeks(fs: S3FsspecFileSystem, boto: Any) -> None:
    put(boto, "data.bin", bytes(range(100)))
    with fs.open(uri("data.bin"), "rb") as file:
        file.seek(90)
        assert file.read() == bytes(range(90, 100))
    assert fs.cat_file(uri("data.bin"), start=10, end=13) == bytes([10, 11, 12])
    fs.pipe_file(uri("piped.bin"), b"piped")
    assert read(boto, "piped.bin") == b"piped"


def test_an_exception_while_writing_bytes_publishes_nothing(fs: S3FsspecFileSystem, boto: Any) -> None:
    with pytest.raises(RuntimeError), fs.open(uri("half.bin"), "wb") as file:
        file.write(b"half")
        raise RuntimeError("stop")
    assert keys(boto) == []


def test_open_of_a_missing_object_is_file_not_found(fs: S3FsspecFileSystem, boto: Any) -> None:
    with pytest.raises(FileNotFoundError) as missing:
        fs.open(uri("ckpt/.metadata"), "rb")
    assert missing.value.errno == errno.ENOENT
    assert str(missing.value) == f"[Errno 2] No such file or directory: 's3://{BUCKET}/ckpt/.metadata'"
    with pytest.raises(ValueError, match="not supported"):
        fs.open(uri("x"), "r+b")
    with pytest.raises(IsADirectoryError):
        fs.open(f"s3://{BUCKET}", "rb")


def test_files_and_prefixes(fs: S3FsspecFileSystem, boto: Any) -> None:
    put(boto, "run/checkpoints/epoch=0.ckpt", b"12345")
    put(boto, "run/hparams.yaml", b"")
    info = fs.info(uri("run/checkpoints/epoch=0.ckpt"))
    assert (info["name"], info["type"], info["size"]) == (f"{BUCKET}/run/checkpoints/epoch=0.ckpt", "file", 5)
    assert fs.info(uri("run/checkpoints"))["type"] == "directory"
    assert fs.info(uri("run/checkpoints/"))["type"] == "directory"
    assert fs.info(f"s3://{BUCKET}")["type"] == "directory"
    with pytest.raises(FileNotFoundError):
        fs.info(uri("nothing/here"))

    assert fs.exists(uri("run/checkpoints/epoch=0.ckpt"))
    assert fs.exists(uri("run"))
    assert not fs.exists(uri("nothing"))
    assert fs.isfile(uri("run/hparams.yaml"))
    assert not fs.isfile(uri("run"))
    assert fs.isdir(uri("run"))
    assert not fs.isdir(uri("run/hparams.yaml"))
    # S3 has no directories: a prefix with nothing under it yet is one to write into.
    assert fs.isdir(uri("nothing/here"))

    assert fs.ls(uri("run"), detail=False) == [
        f"{BUCKET}/run/hparams.yaml",
        f"{BUCKET}/run/checkpoints",
    ]
    assert fs.listdir(uri("run/checkpoints"))[0]["size"] == 5
    assert fs.ls(uri("run/hparams.yaml"), detail=False) == [f"{BUCKET}/run/hparams.yaml"]
    assert fs.ls(uri("nothing/here")) == []
    assert fs.ls(f"s3://{BUCKET}", detail=False) == [f"{BUCKET}/run"]
    assert sorted(fs.find(uri("run"))) == [
        f"{BUCKET}/run/checkpoints/epoch=0.ckpt",
        f"{BUCKET}/run/hparams.yaml",
    ]
    modified = fs.modified(uri("run/hparams.yaml"))
    assert isinstance(modified, datetime) and modified.tzinfo is not None
    with pytest.raises(IsADirectoryError):
        fs.modified(uri("run"))


def test_missing_bucket(fs: S3FsspecFileSystem, boto: Any) -> None:
    assert not fs.exists("s3://no-such-bucket-here/key")
    with pytest.raises(FileNotFoundError):
        fs.ls("s3://no-such-bucket-here/prefix")


def test_remove_copy_and_directories(fs: S3FsspecFileSystem, boto: Any) -> None:
    put(boto, "a/one", b"1")
    put(boto, "a/two", b"2")
    fs.makedirs(uri("a/b/c"), exist_ok=True)
    fs.mkdir(uri("a/d"))
    assert keys(boto) == ["a/one", "a/two"]
    fs.cp_file(uri("a/one"), uri("copy/one"))
    assert read(boto, "copy/one") == b"1"
    fs.rm_file(uri("a/one"))
    fs.rm(uri("copy"), recursive=True)
    fs.rm_file(uri("a/never-there"))  # S3 deletes are idempotent
    assert keys(boto) == ["a/two"]
    fs.rmdir(uri("a"))
    with pytest.raises(FileNotFoundError):
        fs.cp_file(uri("a/never-there"), uri("a/copy"))


def test_rename_of_an_object_lands_on_the_new_name(fs: S3FsspecFileSystem, boto: Any) -> None:
    """torch's FsspecWriter publishes a checkpoint's metadata with rename(".metadata.tmp", ".metadata")."""
    put(boto, "ckpt/__0_0.distcp", b"shard")
    put(boto, "ckpt/.metadata.tmp", b"metadata")
    fs.rename(uri("ckpt/.metadata.tmp"), uri("ckpt/.metadata"))
    assert keys(boto) == ["ckpt/.metadata", "ckpt/__0_0.distcp"]
    assert read(boto, "ckpt/.metadata") == b"metadata"

    fs.copy(uri("ckpt/.metadata"), uri("copies/"))  # a trailing "/": into that prefix
    fs.mv(uri("ckpt/__0_0.distcp"), uri("copies"))  # a prefix holding objects: into it
    fs.copy(f"s3://{BUCKET}/copies/.metadata", f"s3://{BUCKET}/copies/second")
    assert keys(boto) == ["ckpt/.metadata", "copies/.metadata", "copies/__0_0.distcp", "copies/second"]

    with pytest.raises(FileNotFoundError):
        fs.mv(uri("ckpt/missing"), uri("ckpt/elsewhere"))
    fs.copy(uri("copies"), uri("elsewhere"))  # a prefix without recursive: nothing (as fsspec)
    assert keys(boto) == ["ckpt/.metadata", "copies/.metadata", "copies/__0_0.distcp", "copies/second"]
