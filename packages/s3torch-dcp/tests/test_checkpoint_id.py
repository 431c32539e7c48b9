"""``dcp.save``/``dcp.load`` with only ``checkpoint_id="s3://..."``: torch sends them to its
``FsspecWriter``/``FsspecReader``, and importing ``s3torch.dcp`` (without s3fs) serves fsspec's
``s3://`` with s3torch."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Iterator

import pytest
import torch.distributed.checkpoint as dcp
from dcp_support import MockBucket, assert_state_dicts_equal, single_process, state_dict, zeros_like
from torch.distributed.checkpoint._fsspec_filesystem import FsspecReader, FsspecWriter
from torch.distributed.checkpoint._storage_utils import _storage_setup

import s3torch.dcp  # noqa: F401 - registers s3torch's s3:// with fsspec
from s3torch.readers import fsspec as readers_fsspec

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("s3fs") is not None, reason="s3fs is installed: it serves s3://, not s3torch"
)


@pytest.fixture
def environment_client() -> Iterator[None]:
    """fsspec's s3:// on a client built from this test's environment (moto's, here)."""
    readers_fsspec.use_client(None)
    yield
    readers_fsspec.use_client(None)


def test_importing_s3torch_dcp_alone_serves_s3_for_fsspec() -> None:
    code = (
        "import sys, fsspec, s3torch.dcp; from s3torch.readers.fsspec import S3FsspecFileSystem;"
        "assert fsspec.get_filesystem_class('s3') is S3FsspecFileSystem;"
        "assert 'lightning' not in sys.modules, 'lightning was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.mark.usefixtures("environment_client")
def test_torch_picks_its_fsspec_storages_for_s3_uris() -> None:
    assert isinstance(_storage_setup(None, "s3://bucket/ckpt"), FsspecWriter)
    assert isinstance(_storage_setup(None, "s3://bucket/ckpt", reader=True), FsspecReader)


@pytest.mark.usefixtures("environment_client")
def test_save_and_load_with_only_a_checkpoint_id(s3: MockBucket) -> None:
    source = state_dict(seed=4)
    with single_process():
        dcp.save(source, checkpoint_id=s3.uri("auto"))
        dcp.save(source, checkpoint_id=s3.uri("auto"))  # over an existing checkpoint: its .metadata replaced
        loaded = zeros_like(source)
        dcp.load(loaded, checkpoint_id=s3.uri("auto"))
    assert s3.list_keys() == ["auto/.metadata", "auto/__0_0.distcp"]
    assert_state_dicts_equal(loaded, source)
