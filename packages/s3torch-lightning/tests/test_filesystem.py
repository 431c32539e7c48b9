"""fsspec's ``s3://`` served by s3torch when s3fs is not installed: what Lightning asks of it."""

from __future__ import annotations

import csv
import importlib
import importlib.util
import pickle
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import fsspec  # type: ignore[import-untyped]
import pytest
from fsspec.core import url_to_fs  # type: ignore[import-untyped]
from lightning.fabric.utilities.cloud_io import _is_dir
from lightning.pytorch.core.saving import load_hparams_from_yaml, save_hparams_to_yaml
from lightning_unit_support import REGION, Bucket

from s3torch.client import S3Client, S3ClientConfig
from s3torch.lightning import S3LightningCheckpoint, _filesystem
from s3torch.lightning._filesystem import S3LightningFileSystem

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("s3fs") is not None, reason="s3fs is installed: it serves s3://, not s3torch"
)


@pytest.fixture
def fs(checkpoint_io: S3LightningCheckpoint) -> S3LightningFileSystem:
    """What Lightning gets for an s3:// path once a plugin exists."""
    filesystem, _ = url_to_fs("s3://any/path")
    assert isinstance(filesystem, S3LightningFileSystem)
    return filesystem


@pytest.fixture
def _restore_registry() -> Iterator[None]:
    registry = importlib.import_module("fsspec.registry")._registry  # fsspec.registry is a read-only view
    saved = dict(registry)
    yield
    registry.clear()
    registry.update(saved)


def test_importing_the_package_registers_it_without_s3fs() -> None:
    assert fsspec.get_filesystem_class("s3") is S3LightningFileSystem
    assert _filesystem.register()  # idempotent


@pytest.mark.usefixtures("_restore_registry")
def test_s3fs_keeps_s3_when_it_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    importlib.import_module("fsspec.registry")._registry.pop("s3", None)
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return object() if name == "s3fs" else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    assert not _filesystem.register()
    assert "s3" not in fsspec.registry


def test_uses_the_client_of_the_latest_plugin(bucket: Bucket) -> None:
    config = S3ClientConfig(force_path_style=True)
    first = S3LightningCheckpoint(REGION)
    assert url_to_fs("s3://b/k")[0].client is first._client
    second = S3LightningCheckpoint("eu-west-1", config, "http://127.0.0.1:9")
    client = url_to_fs("s3://b/k")[0].client
    assert client is second._client
    assert (client.region, client.endpoint, client.s3client_config) == ("eu-west-1", "http://127.0.0.1:9", config)


def test_before_any_plugin_the_region_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_filesystem, "_client", None)
    monkeypatch.setenv("AWS_REGION", "ap-south-1")
    client = S3LightningFileSystem().client
    assert client.region == "ap-south-1"
    assert client.user_agent_prefix.endswith(")") and "(lightning; " in client.user_agent_prefix
    monkeypatch.setattr(_filesystem, "_client", None)
    monkeypatch.delenv("AWS_REGION")
    assert S3LightningFileSystem().client.region == "us-east-1"


def test_an_explicit_client_wins(bucket: Bucket) -> None:
    client = S3Client(REGION)
    filesystem = S3LightningFileSystem(client=client)
    assert filesystem.client is client
    assert pickle.loads(pickle.dumps(filesystem)).client.region == REGION


def test_write_read_and_append_text(fs: S3LightningFileSystem, bucket: Bucket) -> None:
    path = bucket.uri("logs/version_0/metrics.csv")
    with fs.open(path, "w", newline="") as file:
        csv.writer(file).writerows([["step", "loss"], [0, 1.5]])
    with fs.open(path, "a", newline="") as file:
        csv.writer(file).writerow([1, 0.5])
    assert bucket.read("logs/version_0/metrics.csv") == b"step,loss\r\n0,1.5\r\n1,0.5\r\n"
    with fs.open(path, "r", newline="") as file:
        assert list(csv.reader(file)) == [["step", "loss"], ["0", "1.5"], ["1", "0.5"]]
    with fs.open(bucket.uri("logs/new.txt"), "a") as file:  # append to nothing: a new object
        file.write("first")
    assert bucket.read("logs/new.txt") == b"first"


def test_binary_read_seeks(fs: S3LightningFileSystem, bucket: Bucket) -> None:
    bucket.put("data.bin", bytes(range(100)))
    with fs.open(bucket.uri("data.bin"), "rb") as file:
        file.seek(90)
        assert file.read() == bytes(range(90, 100))
    assert fs.cat_file(bucket.uri("data.bin"), start=10, end=13) == bytes([10, 11, 12])
    fs.pipe_file(bucket.uri("piped.bin"), b"piped")
    assert bucket.read("piped.bin") == b"piped"


def test_an_exception_while_writing_bytes_publishes_nothing(fs: S3LightningFileSystem, bucket: Bucket) -> None:
    with pytest.raises(RuntimeError), fs.open(bucket.uri("half.bin"), "wb") as file:
        file.write(b"half")
        raise RuntimeError("stop")
    assert bucket.keys() == []


def test_open_of_a_missing_object_is_file_not_found(fs: S3LightningFileSystem, bucket: Bucket) -> None:
    with pytest.raises(FileNotFoundError, match="missing"):
        fs.open(bucket.uri("missing"), "rb")
    with pytest.raises(ValueError, match="not supported"):
        fs.open(bucket.uri("x"), "r+b")
    with pytest.raises(IsADirectoryError):
        fs.open(f"s3://{bucket.name}", "rb")


def test_files_and_prefixes(fs: S3LightningFileSystem, bucket: Bucket) -> None:
    bucket.put("run/checkpoints/epoch=0.ckpt", b"12345")
    bucket.put("run/hparams.yaml", b"")
    info = fs.info(bucket.uri("run/checkpoints/epoch=0.ckpt"))
    assert (info["name"], info["type"], info["size"]) == (f"{bucket.name}/run/checkpoints/epoch=0.ckpt", "file", 5)
    assert fs.info(bucket.uri("run/checkpoints"))["type"] == "directory"
    assert fs.info(bucket.uri("run/checkpoints/"))["type"] == "directory"
    assert fs.info(f"s3://{bucket.name}")["type"] == "directory"
    with pytest.raises(FileNotFoundError):
        fs.info(bucket.uri("nothing/here"))

    assert fs.exists(bucket.uri("run/checkpoints/epoch=0.ckpt"))
    assert fs.exists(bucket.uri("run"))
    assert not fs.exists(bucket.uri("nothing"))
    assert fs.isfile(bucket.uri("run/hparams.yaml"))
    assert not fs.isfile(bucket.uri("run"))
    assert fs.isdir(bucket.uri("run"))
    assert not fs.isdir(bucket.uri("run/hparams.yaml"))
    # S3 has no directories: a prefix with nothing under it yet is one to write into.
    assert fs.isdir(bucket.uri("nothing/here"))
    assert _is_dir(fs, bucket.uri("nothing/here"), strict=True)

    assert fs.ls(bucket.uri("run"), detail=False) == [
        f"{bucket.name}/run/hparams.yaml",
        f"{bucket.name}/run/checkpoints",
    ]
    assert fs.listdir(bucket.uri("run/checkpoints"))[0]["size"] == 5
    assert fs.ls(bucket.uri("run/hparams.yaml"), detail=False) == [f"{bucket.name}/run/hparams.yaml"]
    assert fs.ls(bucket.uri("nothing/here")) == []
    assert fs.ls(f"s3://{bucket.name}", detail=False) == [f"{bucket.name}/run"]
    assert sorted(fs.find(bucket.uri("run"))) == [
        f"{bucket.name}/run/checkpoints/epoch=0.ckpt",
        f"{bucket.name}/run/hparams.yaml",
    ]
    modified = fs.modified(bucket.uri("run/hparams.yaml"))
    assert isinstance(modified, datetime) and modified.tzinfo is not None
    with pytest.raises(IsADirectoryError):
        fs.modified(bucket.uri("run"))


def test_missing_bucket(fs: S3LightningFileSystem, bucket: Bucket) -> None:
    assert not fs.exists("s3://no-such-bucket-here/key")
    with pytest.raises(FileNotFoundError):
        fs.ls("s3://no-such-bucket-here/prefix")


def test_remove_copy_and_directories(fs: S3LightningFileSystem, bucket: Bucket) -> None:
    bucket.put("a/one", b"1")
    bucket.put("a/two", b"2")
    fs.makedirs(bucket.uri("a/b/c"), exist_ok=True)
    fs.mkdir(bucket.uri("a/d"))
    assert bucket.keys() == ["a/one", "a/two"]
    fs.cp_file(bucket.uri("a/one"), bucket.uri("copy/one"))
    assert bucket.read("copy/one") == b"1"
    fs.rm_file(bucket.uri("a/one"))
    fs.rm(bucket.uri("copy"), recursive=True)
    fs.rm_file(bucket.uri("a/never-there"))  # S3 deletes are idempotent
    assert bucket.keys() == ["a/two"]
    fs.rmdir(bucket.uri("a"))


def test_lightning_hparams_yaml_round_trip(checkpoint_io: S3LightningCheckpoint, bucket: Bucket) -> None:
    path = bucket.uri("logs/version_3/hparams.yaml")
    save_hparams_to_yaml(path, {"width": 64, "lr": 0.01})
    assert load_hparams_from_yaml(path) == {"width": 64, "lr": 0.01}
