"""``S3Checkpoint`` against a real S3 server: ``torch.save`` / ``torch.load`` of a model's
state dict and of optimizer state, through every reader strategy, with ``weights_only=True``."""

from __future__ import annotations

import argparse
from typing import Any

import pytest
import torch
from support import S3TestEnv
from support.dcp_data import FILE_READERS, assert_equal, model, storage_kwargs, trained, uri

from s3torch.dcp import S3Checkpoint
from s3torch.readers import S3ReaderConstructorProtocol


def checkpoint(env: S3TestEnv, **kwargs: Any) -> S3Checkpoint:
    return S3Checkpoint(env.location.region, **storage_kwargs(env), **kwargs)


@pytest.mark.parametrize("reader", FILE_READERS)
def test_model_state_dict_round_trip(s3: S3TestEnv, reader: str) -> None:
    net, _ = trained(seed=1, width=1024)  # ~5 MiB of float32: a multipart upload
    ckpt = checkpoint(s3)
    with ckpt.writer(uri(s3, "model.pt")) as writer:
        torch.save(net.state_dict(), writer)
    loaded = torch.load(ckpt.reader(uri(s3, "model.pt"), reader_constructor=FILE_READERS[reader]), weights_only=True)
    assert_equal(loaded, net.state_dict())
    fresh = model(seed=99, width=1024)
    fresh.load_state_dict(loaded)
    sample = torch.randn(4, 64)
    assert torch.equal(fresh(sample), net(sample))


@pytest.mark.parametrize("reader", FILE_READERS)
def test_optimizer_state_round_trip(s3: S3TestEnv, reader: str) -> None:
    net, optimizer = trained(seed=2)
    ckpt = checkpoint(s3, reader_constructor=FILE_READERS[reader])
    with ckpt.writer(uri(s3, "training/step-2.pt")) as writer:
        torch.save({"model": net.state_dict(), "optimizer": optimizer.state_dict(), "step": 2}, writer)
    loaded = torch.load(ckpt.reader(uri(s3, "training/step-2.pt")), weights_only=True)
    assert loaded["step"] == 2
    assert_equal(loaded["optimizer"], optimizer.state_dict())
    assert_equal(loaded["model"], net.state_dict())
    # The loaded state resumes training exactly like the original.
    resumed = model(seed=77)
    resumed.load_state_dict(loaded["model"])
    resumed_optimizer = torch.optim.Adam(resumed.parameters(), lr=1e-3)
    resumed_optimizer.load_state_dict(loaded["optimizer"])
    batch = torch.randn(8, 64, generator=torch.Generator().manual_seed(5))
    for net_, optimizer_ in ((net, optimizer), (resumed, resumed_optimizer)):
        optimizer_.zero_grad()
        net_(batch).square().mean().backward()
        optimizer_.step()
    assert_equal(resumed.state_dict(), net.state_dict())


def test_weights_only_refuses_arbitrary_objects(s3: S3TestEnv) -> None:
    ckpt = checkpoint(s3)
    with ckpt.writer(uri(s3, "custom.pt")) as writer:
        torch.save({"custom": argparse.Namespace(a=1)}, writer)
    with pytest.raises(Exception, match="Weights only load failed"):
        torch.load(ckpt.reader(uri(s3, "custom.pt")), weights_only=True)


def test_reader_constructor_per_call_wins(s3: S3TestEnv) -> None:
    constructor: S3ReaderConstructorProtocol | None = FILE_READERS["range_based"]
    ckpt = checkpoint(s3, reader_constructor=FILE_READERS["sequential"])
    with ckpt.writer(uri(s3, "x.pt")) as writer:
        torch.save(torch.arange(5), writer)
    reader = ckpt.reader(uri(s3, "x.pt"), reader_constructor=constructor)
    assert type(reader).__name__ == "RangedS3Reader"
    assert torch.equal(torch.load(reader, weights_only=True), torch.arange(5))
