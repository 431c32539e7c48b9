"""State dicts, comparisons and storage factories shared by the checkpoint integration tests
(``test_dcp_*.py``) and the distributed worker (``dist_dcp.py``)."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from s3torch.client import S3ClientConfig
from s3torch.dcp._torch_compat import LOAD_REPORTS_METADATA_ERRORS_FROM
from s3torch.readers import S3ReaderConstructor, S3ReaderConstructorProtocol
from s3torch_test_support import PART

from .s3env import S3TestEnv

#: Every reader strategy, by test id (None: the storage's default, dcp_optimized for DCP loads).
DCP_READERS: dict[str, S3ReaderConstructorProtocol | None] = {
    "default": None,
    "sequential": S3ReaderConstructor.sequential(),
    "range_based": S3ReaderConstructor.range_based(),
    "dcp_optimized-gap-0": S3ReaderConstructor.dcp_optimized(0),
    "dcp_optimized-gap-inf": S3ReaderConstructor.dcp_optimized(float("inf")),
}
#: The strategies that read any file (the DCP-optimized one only serves DCP load plans).
FILE_READERS: dict[str, S3ReaderConstructorProtocol | None] = {
    "default": None,
    "sequential": S3ReaderConstructor.sequential(),
    "range_based": S3ReaderConstructor.range_based(),
    "range_based-unbuffered": S3ReaderConstructor.range_based(0),
}


def config(**settings: Any) -> S3ClientConfig:
    """Small parts, so that megabytes already make multipart uploads and multi-part GETs."""
    settings.setdefault("part_size", PART)
    settings.setdefault("force_path_style", True)
    return S3ClientConfig(**settings)


def storage_kwargs(env: S3TestEnv, **settings: Any) -> dict[str, Any]:
    """region, endpoint and s3client_config for a checkpoint class on ``env``."""
    endpoint = env.location.endpoint
    settings.setdefault("force_path_style", endpoint is not None)
    return {"endpoint": endpoint, "s3client_config": config(**settings)}


def uri(env: S3TestEnv, name: str) -> str:
    return f"s3://{env.bucket}/{env.key(name)}"


def keys_under(env: S3TestEnv, name: str) -> list[str]:
    """The keys under ``env.key(name) + "/"``, relative to it, sorted."""
    prefix = env.key(name) + "/"
    pages = env.boto.get_paginator("list_objects_v2").paginate(Bucket=env.bucket, Prefix=prefix)
    return sorted(entry["Key"][len(prefix) :] for page in pages for entry in page.get("Contents", []))


def model(seed: int, width: int = 256) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10))


def trained(seed: int, width: int = 256) -> tuple[nn.Module, torch.optim.Optimizer]:
    """A model and an Adam optimizer after two steps (so the optimizer has state)."""
    net = model(seed, width)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(2):
        optimizer.zero_grad()
        net(torch.randn(8, 64, generator=generator)).square().mean().backward()
        optimizer.step()
    return net, optimizer


def layered_state_dict(seed: int, layers: int = 4, size: int = 256) -> dict[str, torch.Tensor]:
    """``layer<i>.weight`` (size x size float32) and ``layer<i>.bias`` (size) alternating."""
    generator = torch.Generator().manual_seed(seed)
    result: dict[str, torch.Tensor] = {}
    for index in range(layers):
        result[f"layer{index}.weight"] = torch.randn(size, size, generator=generator)
        result[f"layer{index}.bias"] = torch.randn(size, generator=generator)
    return result


def zeroed(value: Any) -> Any:
    """The same structure with every tensor zeroed (what a state dict is loaded into)."""
    if isinstance(value, torch.Tensor):
        return torch.zeros_like(value)
    if isinstance(value, dict):
        return {key: zeroed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [zeroed(item) for item in value]
    return value


def assert_equal(actual: Any, expected: Any, path: str = "") -> None:
    """Deep equality of nested state dicts, tensors compared exactly (dtype included)."""
    if isinstance(expected, torch.Tensor):
        assert isinstance(actual, torch.Tensor), path
        assert actual.dtype == expected.dtype and actual.shape == expected.shape, path
        assert torch.equal(actual, expected), path
    elif isinstance(expected, dict):
        assert isinstance(actual, dict) and actual.keys() == expected.keys(), path
        for key, item in expected.items():
            assert_equal(actual[key], item, f"{path}.{key}")
    elif isinstance(expected, list | tuple):
        assert len(actual) == len(expected), path
        for index, (got, want) in enumerate(zip(actual, expected, strict=True)):
            assert_equal(got, want, f"{path}[{index}]")
    else:
        assert actual == expected, path


@contextmanager
def quiet_dcp() -> Iterator[None]:
    """DCP's warnings about single-process use and overwriting, which the tests mean."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        warnings.filterwarnings("ignore", message="Detected an existing checkpoint")
        yield


def load_error_naming(message: str) -> str:
    """The pattern of ``dcp.load``'s ``CheckpointException`` when the checkpoint has no
    ``.metadata``: the storage reader's ``message`` from torch 2.12 on; before, torch reports only
    an ``AssertionError`` of its own."""
    if torch.__version__ >= LOAD_REPORTS_METADATA_ERRORS_FROM:
        return re.escape(message)
    return "AssertionError"
