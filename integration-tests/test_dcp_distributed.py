"""Distributed checkpoints for real: two processes (``torch.multiprocessing``, gloo on the
CPU) each save their shards of DTensors to S3 and load them back resharded; then one process
loads the whole checkpoint (world size 1), tensors equal to the originals."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed.checkpoint as dcp
from support import S3TestEnv
from support.dcp_data import assert_equal, keys_under, quiet_dcp, storage_kwargs, uri, zeroed
from support.dist_dcp import Target, full_state, spawn_ranks

from s3torch.dcp import S3StorageReader
from s3torch.readers import S3ReaderConstructor

WORLD_SIZE = 2
TIMEOUT_SECONDS = 180


@pytest.mark.slow
def test_world_size_2_saves_shards_and_loads_on_2_and_on_1(s3: S3TestEnv, tmp_path: Path) -> None:
    endpoint = s3.location.endpoint
    target = Target(s3.location.region, endpoint, endpoint is not None, uri(s3, "distributed"))
    spawn_ranks(WORLD_SIZE, str(tmp_path / "process-group-store"), target, TIMEOUT_SECONDS)

    # HexPrefixStrategy with world size 2: one prefix per rank; thread_count=2 files per rank.
    assert keys_under(s3, "distributed") == [
        ".metadata",
        "0000000000/__0_0.distcp",
        "0000000000/__0_1.distcp",
        "1000000000/__1_0.distcp",
        "1000000000/__1_1.distcp",
    ]

    # World size 1: the whole tensors, assembled from both ranks' shards.
    expected = full_state()
    for constructor in (None, S3ReaderConstructor.sequential()):
        loaded = zeroed(expected)
        loaded["meta"] = {"epoch": 0, "name": ""}
        with quiet_dcp():
            dcp.load(
                loaded,
                storage_reader=S3StorageReader(
                    s3.location.region, target.checkpoint_uri, reader_constructor=constructor, **storage_kwargs(s3)
                ),
            )
        assert_equal(loaded, expected)
        assert isinstance(loaded["model.weight"], torch.Tensor)
