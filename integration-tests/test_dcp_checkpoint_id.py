"""``dcp.save``/``dcp.async_save``/``dcp.load`` given only ``checkpoint_id="s3://..."``, against a
real S3 server. torch sends them to its ``FsspecWriter``/``FsspecReader``; importing
``s3torch.dcp`` (without s3fs) serves fsspec's ``s3://`` with s3torch, on a client for the AWS
environment's region and endpoint."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
import torch.distributed.checkpoint as dcp
from support import MOTO_REGION, S3TestEnv
from support.dcp_data import (
    assert_equal,
    keys_under,
    layered_state_dict,
    load_error_naming,
    quiet_dcp,
    storage_kwargs,
    uri,
    zeroed,
)
from torch.distributed.checkpoint.api import CheckpointException

from s3torch.dcp import S3StorageWriter
from s3torch.readers import fsspec as readers_fsspec

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("s3fs") is not None, reason="s3fs is installed: it serves s3://, not s3torch"
)


@pytest.fixture
def on_s3(s3: S3TestEnv) -> Iterator[S3TestEnv]:
    """fsspec's s3:// on the client of ``s3`` (its endpoint: moto's, or none for a real bucket)."""
    readers_fsspec.use_client(s3.client)
    yield s3
    readers_fsspec.use_client(None)  # later tests build theirs from their environment


def test_save_and_load_with_only_a_checkpoint_id(on_s3: S3TestEnv) -> None:
    source = layered_state_dict(seed=21, layers=2, size=64)
    with quiet_dcp():
        dcp.save(source, checkpoint_id=uri(on_s3, "auto"))
        dcp.save(
            source,
            storage_writer=S3StorageWriter(on_s3.location.region, uri(on_s3, "explicit"), **storage_kwargs(on_s3)),
        )
        loaded = zeroed(source)
        dcp.load(loaded, checkpoint_id=uri(on_s3, "auto"))
    assert_equal(loaded, source)
    # The objects of S3StorageWriter's save: .metadata and the rank's file, no .metadata.tmp left.
    assert keys_under(on_s3, "auto") == keys_under(on_s3, "explicit") == [".metadata", "__0_0.distcp"]


def test_saving_over_a_checkpoint_replaces_it(on_s3: S3TestEnv) -> None:
    with quiet_dcp():
        dcp.save(layered_state_dict(seed=22, layers=1, size=32), checkpoint_id=uri(on_s3, "ckpt"))
        dcp.save(layered_state_dict(seed=23, layers=1, size=32), checkpoint_id=uri(on_s3, "ckpt"))
        loaded = zeroed(layered_state_dict(seed=0, layers=1, size=32))
        dcp.load(loaded, checkpoint_id=uri(on_s3, "ckpt"))
    assert_equal(loaded, layered_state_dict(seed=23, layers=1, size=32))
    assert keys_under(on_s3, "ckpt") == [".metadata", "__0_0.distcp"]


def test_async_save_with_only_a_checkpoint_id(on_s3: S3TestEnv) -> None:
    source = layered_state_dict(seed=24, layers=2, size=64)
    with quiet_dcp():
        dcp.async_save(source, checkpoint_id=uri(on_s3, "async")).result(timeout=120)
        loaded = zeroed(source)
        dcp.load(loaded, checkpoint_id=uri(on_s3, "async"))
    assert_equal(loaded, source)
    assert keys_under(on_s3, "async") == [".metadata", "__0_0.distcp"]


def test_a_checkpoint_id_without_metadata_is_not_loaded(on_s3: S3TestEnv) -> None:
    source = layered_state_dict(seed=25, layers=1, size=32)
    with quiet_dcp():
        dcp.save(source, checkpoint_id=uri(on_s3, "incomplete"))
    on_s3.boto.delete_object(Bucket=on_s3.bucket, Key=on_s3.key("incomplete/.metadata"))
    for name in ("incomplete", "never-saved"):
        missing = f"No such file or directory: '{uri(on_s3, name)}/.metadata'"
        with quiet_dcp(), pytest.raises(CheckpointException, match=load_error_naming(missing)):
            dcp.load(zeroed(source), checkpoint_id=uri(on_s3, name))


# ---- the endpoint of the environment -------------------------------------------------------

#: Run in a new interpreter: nothing but the environment configures it, no client is cached yet.
_SAVE_AND_LOAD = """
import sys, warnings
import torch, torch.distributed.checkpoint as dcp
import s3torch.dcp

warnings.simplefilter("ignore")
state = {"weight": torch.arange(float(sys.argv[2])), "step": 7}
dcp.save(state, checkpoint_id=sys.argv[1])
loaded = {"weight": torch.zeros_like(state["weight"]), "step": 0}
dcp.load(loaded, checkpoint_id=sys.argv[1])
assert torch.equal(loaded["weight"], state["weight"]) and loaded["step"] == 7, "loaded something else"
"""


@pytest.mark.parametrize("variable", ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"])
def test_the_endpoint_comes_from_the_environment(faulty_s3: S3TestEnv, variable: str) -> None:
    """The client behind fsspec's s3:// follows AWS_ENDPOINT_URL(_S3) on its data path (the
    object GETs) and its control path (HEAD, CopyObject): here a proxy in front of moto, which
    records what reaches it."""
    assert faulty_s3.proxy is not None
    environment = {
        name: value
        for name, value in os.environ.items()
        if name not in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_REGION", "AWS_PROFILE")
    }
    environment |= {variable: faulty_s3.proxy.url, "AWS_REGION": MOTO_REGION}
    elements = 3 * 1024 * 1024  # 12 MiB of float32: a multipart upload with the default 8 MiB parts
    checkpoint = uri(faulty_s3, "from-env")
    run = subprocess.run(
        [sys.executable, "-c", _SAVE_AND_LOAD, checkpoint, str(elements)],
        env=environment,
        check=False,  # the assertion below shows its stderr
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    assert keys_under(faulty_s3, "from-env") == [".metadata", "__0_0.distcp"]

    seen = {
        (request.method, request.path, "x-amz-copy-source" in request.headers) for request in faulty_s3.proxy.requests
    }
    shard = f"/{faulty_s3.bucket}/{faulty_s3.key('from-env/__0_0.distcp')}"
    metadata = f"/{faulty_s3.bucket}/{faulty_s3.key('from-env/.metadata')}"
    assert ("PUT", shard, False) in seen  # UploadPart: data path
    assert ("GET", shard, False) in seen  # the load's GET: data path
    assert ("HEAD", metadata, False) in seen  # does a checkpoint exist here: control path
    assert ("PUT", metadata, True) in seen  # CopyObject, the rename of .metadata.tmp: control path
