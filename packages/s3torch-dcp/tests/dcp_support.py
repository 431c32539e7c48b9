"""Helpers of the s3torch-dcp unit tests (fixtures are in ``conftest.py``)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.distributed.checkpoint as dcp

from s3torch.client import S3ClientConfig
from s3torch.dcp import S3StorageReader, S3StorageWriter
from s3torch_test_support import MIB, MOCK_BUCKET, PART, REGION, MotoBucket

__all__ = [
    "BUCKET",
    "CONFIG",
    "MIB",
    "REGION",
    "MockBucket",
    "assert_state_dicts_equal",
    "reader",
    "save",
    "single_process",
    "state_dict",
    "zeros_like",
]

BUCKET = MOCK_BUCKET
CONFIG = S3ClientConfig(part_size=PART)
#: The shared bucket helper, under the name these tests know it by.
MockBucket = MotoBucket


def state_dict(seed: int = 0, tensors: int = 6) -> dict[str, Any]:
    """A small state dict: tensors of a few shapes and dtypes, and some non-tensor values."""
    generator = torch.Generator().manual_seed(seed)
    result: dict[str, Any] = {
        f"layer{index}.weight": torch.randn(16 + index, 8, generator=generator) for index in range(tensors)
    }
    result["layer0.bias"] = torch.randint(0, 1000, (32,), generator=generator)
    result["half"] = torch.randn(10, generator=generator).to(torch.float16)
    result["extra"] = {"step": 3 + seed, "name": f"run-{seed}"}
    return result


def zeros_like(template: dict[str, Any]) -> dict[str, Any]:
    """A state dict to load into: the same keys, zeroed tensors, blank values."""
    result: dict[str, Any] = {}
    for key, value in template.items():
        if isinstance(value, torch.Tensor):
            result[key] = torch.zeros_like(value)
        elif isinstance(value, dict):
            result[key] = {name: type(item)() for name, item in value.items()}
        else:
            result[key] = type(value)()
    return result


def assert_state_dicts_equal(actual: dict[str, Any], expected: dict[str, Any]) -> None:
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(actual[key], value), key
        else:
            assert actual[key] == value, key


@contextmanager
def single_process() -> Iterator[None]:
    """DCP warns that it assumes one process when torch.distributed is not initialized."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        warnings.filterwarnings("ignore", message="Detected an existing checkpoint")
        yield


def reader(uri: str, **kwargs: Any) -> S3StorageReader:
    """An ``S3StorageReader`` of ``uri`` with the tests' client settings."""
    kwargs.setdefault("s3client_config", CONFIG)
    return S3StorageReader(REGION, uri, **kwargs)


def save(s3: MockBucket, key: str, source: dict[str, Any], **kwargs: Any) -> None:
    """``dcp.save`` of ``source`` to ``key`` of the bucket with ``S3StorageWriter``."""
    with single_process():
        dcp.save(source, storage_writer=S3StorageWriter(REGION, s3.uri(key), s3client_config=CONFIG, **kwargs))
