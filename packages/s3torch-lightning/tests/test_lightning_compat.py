"""The Lightning hooks ``S3LightningCheckpoint`` implements are the ones the installed Lightning
declares, with the parameters ``s3torch.lightning._lightning_compat`` expects for its version.
Run by every cell of the CI matrix (the oldest supported Lightning and the newest): a Lightning
that adds an abstract hook or changes a signature fails here, naming it."""

from __future__ import annotations

import inspect
import threading
from typing import Any
from unittest.mock import patch

import lightning
import pytest
import torch
from lightning.pytorch.plugins.io import AsyncCheckpointIO, CheckpointIO

from s3torch.lightning import S3LightningCheckpoint
from s3torch.lightning._lightning_compat import (
    ASYNC_SAVE_SNAPSHOTS_FROM,
    WEIGHTS_ONLY_PASSED_FROM,
    lightning_version,
)


def test_the_abstract_hooks_are_the_ones_implemented() -> None:
    assert CheckpointIO.__abstractmethods__ == {"save_checkpoint", "load_checkpoint", "remove_checkpoint"}
    assert not S3LightningCheckpoint.__abstractmethods__


@pytest.mark.parametrize("hook", ["save_checkpoint", "load_checkpoint", "remove_checkpoint", "teardown"])
def test_each_hook_takes_what_lightning_passes(hook: str) -> None:
    declared = list(inspect.signature(getattr(CheckpointIO, hook)).parameters)
    implemented = list(inspect.signature(getattr(S3LightningCheckpoint, hook)).parameters)
    if hook == "load_checkpoint" and lightning_version() < WEIGHTS_ONLY_PASSED_FROM:
        assert declared == ["self", "path", "map_location"]
        declared.append("weights_only")  # ours takes it too, as Lightning does from 2.6 on
    assert implemented == declared


def test_weights_only_is_declared_from_the_version_the_compat_module_says() -> None:
    parameters = inspect.signature(CheckpointIO.load_checkpoint).parameters
    assert ("weights_only" in parameters) == (lightning_version() >= WEIGHTS_ONLY_PASSED_FROM)


class _Recording(CheckpointIO):
    """Records the checkpoint's tensor once ``release`` is set (on AsyncCheckpointIO's thread)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.saved: torch.Tensor | None = None

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        assert self.release.wait(timeout=60)
        self.saved = checkpoint["weights"].clone()

    def load_checkpoint(self, path: Any, map_location: Any | None = None, weights_only: Any = None) -> dict[str, Any]:
        raise NotImplementedError

    def remove_checkpoint(self, path: Any) -> None:
        raise NotImplementedError


def test_async_checkpoint_io_snapshots_from_the_version_the_compat_module_says() -> None:
    recording = _Recording()
    async_io = AsyncCheckpointIO(recording)
    weights = torch.zeros(4)
    async_io.save_checkpoint({"weights": weights}, "unused")
    weights.add_(1)  # before the save thread may read it
    recording.release.set()
    async_io.teardown()
    assert recording.saved is not None
    snapshotted = bool(torch.equal(recording.saved, torch.zeros(4)))
    assert snapshotted == (lightning_version() >= ASYNC_SAVE_SNAPSHOTS_FROM)


@pytest.mark.parametrize(
    ("version", "parsed"), [("2.4.0", (2, 4, 0)), ("2.5.4", (2, 5, 4)), ("2.6", (2, 6, 0)), ("dev", (999, 0, 0))]
)
def test_lightning_version(version: str, parsed: tuple[int, int, int]) -> None:
    with patch.object(lightning, "__version__", version):
        assert lightning_version() == parsed
