"""fsspec's ``s3://`` as Lightning meets it once ``s3torch.lightning`` is imported (without s3fs):
served by ``s3torch.readers.fsspec`` on the client of the latest plugin. The filesystem's own
behaviour is tested with it, in s3torch-readers."""

from __future__ import annotations

import importlib.util

import fsspec  # type: ignore[import-untyped]
import pytest
from fsspec.core import url_to_fs  # type: ignore[import-untyped]
from lightning.fabric.utilities.cloud_io import _is_dir
from lightning.pytorch.core.saving import load_hparams_from_yaml, save_hparams_to_yaml
from lightning_unit_support import REGION, Bucket

from s3torch.client import S3ClientConfig
from s3torch.lightning import S3LightningCheckpoint
from s3torch.readers.fsspec import S3FsspecFileSystem

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("s3fs") is not None, reason="s3fs is installed: it serves s3://, not s3torch"
)


def test_importing_the_package_registers_it_without_s3fs() -> None:
    assert fsspec.get_filesystem_class("s3") is S3FsspecFileSystem


def test_uses_the_client_of_the_latest_plugin(bucket: Bucket) -> None:
    config = S3ClientConfig(force_path_style=True)
    first = S3LightningCheckpoint(REGION)
    assert url_to_fs("s3://b/k")[0].client is first._client
    second = S3LightningCheckpoint("eu-west-1", config, "http://127.0.0.1:9")
    client = url_to_fs("s3://b/k")[0].client
    assert client is second._client
    assert (client.region, client.endpoint, client.s3client_config) == ("eu-west-1", "http://127.0.0.1:9", config)
    assert "(lightning; " in client.user_agent_prefix


def test_a_new_prefix_is_a_directory_to_lightning(checkpoint_io: S3LightningCheckpoint, bucket: Bucket) -> None:
    bucket.put("run/hparams.yaml", b"")
    filesystem, _ = url_to_fs(bucket.uri("run"))
    assert _is_dir(filesystem, bucket.uri("nothing/here"), strict=True)
    assert not _is_dir(filesystem, bucket.uri("run/hparams.yaml"), strict=True)


def test_lightning_hparams_yaml_round_trip(checkpoint_io: S3LightningCheckpoint, bucket: Bucket) -> None:
    path = bucket.uri("logs/version_3/hparams.yaml")
    save_hparams_to_yaml(path, {"width": 64, "lr": 0.01})
    assert load_hparams_from_yaml(path) == {"width": 64, "lr": 0.01}
