"""s3torch-lightning with a real Lightning ``Trainer`` over real HTTP (moto server, or the bucket
of ``S3TORCH_TEST_*``): a tiny model trained a few steps on CPU, checkpointing through
``S3LightningCheckpoint`` where Lightning puts its checkpoints, ``ModelCheckpoint`` deletions,
resuming, ``AsyncCheckpointIO``, ``load_from_checkpoint``, and failed saves."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import IO, Any, cast

import lightning
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import AsyncCheckpointIO
from support import PART, Rule, S3TestEnv, part_uploads
from torch.utils.data import DataLoader, TensorDataset

from s3torch.client import S3ClientConfig, S3Exception
from s3torch.lightning import S3LightningCheckpoint
from s3torch.lightning._lightning_compat import WEIGHTS_ONLY_PASSED_FROM, lightning_version

BATCHES_PER_EPOCH = 4


class TinyModel(lightning.LightningModule):
    """Linear regression; ``padding`` adds an untrained buffer so that checkpoints can be made
    larger than one upload part."""

    def __init__(self, width: int = 4, padding: int = 0) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.layer = torch.nn.Linear(width, 1)
        self.register_buffer("padding", torch.zeros(padding))
        self.poison_from_step: int | None = None  # on_save_checkpoint adds an unpicklable object then

    def training_step(self, batch: Any, batch_index: int) -> torch.Tensor:
        inputs, targets = batch
        loss = torch.nn.functional.mse_loss(self.layer(inputs), targets)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.poison_from_step is not None and self.global_step >= self.poison_from_step:
            checkpoint["unpicklable"] = threading.Lock()


def batches(width: int = 4) -> DataLoader[Any]:
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(2 * BATCHES_PER_EPOCH, width, generator=generator)
    return DataLoader(TensorDataset(inputs, inputs.sum(dim=1, keepdim=True)), batch_size=2)


def trainer(plugin: Any, **options: Any) -> lightning.Trainer:
    settings: dict[str, Any] = {
        "accelerator": "cpu",
        "devices": 1,
        "plugins": [plugin],
        "logger": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
        "max_steps": 3,
    }
    settings.update(options)
    return lightning.Trainer(**settings)


def plugin_for(env: S3TestEnv, **config: Any) -> S3LightningCheckpoint:
    endpoint = env.location.endpoint
    config.setdefault("force_path_style", endpoint is not None)
    return S3LightningCheckpoint(env.location.region, S3ClientConfig(**config), endpoint)


def uri(env: S3TestEnv, name: str) -> str:
    return f"s3://{env.bucket}/{env.key(name)}"


def keys(env: S3TestEnv, under: str) -> list[str]:
    """The keys under ``under`` (relative to the test's prefix), relative to it, sorted."""
    prefix = env.key(under)
    listing = env.boto.list_objects_v2(Bucket=env.bucket, Prefix=prefix)
    return sorted(entry["Key"][len(prefix) :] for entry in listing.get("Contents", []))


def assert_same_state(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert list(actual) == list(expected)
    for name, tensor in expected.items():
        assert torch.equal(actual[name], tensor), name


@pytest.fixture(autouse=True)
def _quiet_lightning() -> None:
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)


# ---- where Lightning's checkpoints land -------------------------------------------------------


def test_default_root_dir_on_s3_without_logger(s3: S3TestEnv) -> None:
    plugin = plugin_for(s3)
    model = TinyModel()
    run = trainer(plugin, default_root_dir=uri(s3, "run"))
    run.fit(model, batches())
    assert keys(s3, "run/") == ["checkpoints/epoch=0-step=3.ckpt"]
    checkpoint = plugin.load_checkpoint(uri(s3, "run/checkpoints/epoch=0-step=3.ckpt"))
    assert checkpoint["global_step"] == 3
    assert checkpoint["epoch"] == 0
    assert_same_state(checkpoint["state_dict"], model.state_dict())


def test_default_logger_writes_next_to_the_checkpoints(s3: S3TestEnv) -> None:
    """The upstream's layout: the default (CSV) logger's version directory holds the checkpoints,
    and the logs are written to S3 too (through fsspec, served by s3torch without s3fs)."""
    plugin = plugin_for(s3)
    model = TinyModel()
    trainer(plugin, default_root_dir=uri(s3, "run"), logger=True, log_every_n_steps=1).fit(model, batches())
    assert keys(s3, "run/") == [
        "lightning_logs/version_0/checkpoints/epoch=0-step=3.ckpt",
        "lightning_logs/version_0/hparams.yaml",
        "lightning_logs/version_0/metrics.csv",
    ]
    metrics = s3.read(s3.key("run/lightning_logs/version_0/metrics.csv")).decode().splitlines()
    assert metrics[0].split(",") == ["epoch", "step", "train_loss"]
    assert [line.split(",")[1] for line in metrics[1:]] == ["0", "1", "2"]
    checkpoint = plugin.load_checkpoint(uri(s3, "run/lightning_logs/version_0/checkpoints/epoch=0-step=3.ckpt"))
    assert_same_state(checkpoint["state_dict"], model.state_dict())

    # A second run finds version_0 by listing S3 and takes the next version.
    trainer(plugin, default_root_dir=uri(s3, "run"), logger=True, max_steps=2).fit(TinyModel(), batches())
    assert "lightning_logs/version_1/checkpoints/epoch=0-step=2.ckpt" in keys(s3, "run/")


def test_model_checkpoint_save_top_k_leaves_one_object(s3: S3TestEnv) -> None:
    plugin = plugin_for(s3)
    callback = ModelCheckpoint(
        dirpath=uri(s3, "top-k"),
        save_top_k=1,
        every_n_epochs=1,
        filename="checkpoint-{epoch:02d}-{step:02d}",
        enable_version_counter=True,
    )
    model = TinyModel()
    trainer(plugin, callbacks=[callback], max_epochs=3, max_steps=-1).fit(model, batches())
    last_step = 3 * BATCHES_PER_EPOCH
    assert keys(s3, "top-k/") == [f"checkpoint-epoch=02-step={last_step:02d}.ckpt"]
    assert callback.best_model_path == uri(s3, f"top-k/checkpoint-epoch=02-step={last_step:02d}.ckpt")
    checkpoint = plugin.load_checkpoint(callback.best_model_path)
    assert_same_state(checkpoint["state_dict"], model.state_dict())


def test_model_checkpoint_with_a_monitored_metric_keeps_the_best(s3: S3TestEnv) -> None:
    plugin = plugin_for(s3)
    callback = ModelCheckpoint(dirpath=uri(s3, "best"), save_top_k=2, monitor="train_loss", every_n_train_steps=1)
    trainer(plugin, callbacks=[callback], max_steps=6).fit(TinyModel(), batches())
    assert len(keys(s3, "best/")) == 2
    assert sorted(uri(s3, "best/") + name for name in keys(s3, "best/")) == sorted(callback.best_k_models)


# ---- resuming, loading ------------------------------------------------------------------------


def test_fit_resumes_from_an_s3_checkpoint(s3: S3TestEnv) -> None:
    plugin = plugin_for(s3)
    first = TinyModel()
    trainer(plugin, default_root_dir=uri(s3, "first")).fit(first, batches())
    saved = uri(s3, "first/checkpoints/epoch=0-step=3.ckpt")

    class RecordStart(lightning.Callback):
        def __init__(self) -> None:
            self.weights: dict[str, torch.Tensor] = {}

        def on_train_start(self, trainer: lightning.Trainer, module: lightning.LightningModule) -> None:
            self.weights = {name: value.clone() for name, value in module.state_dict().items()}

    resumed, record = TinyModel(), RecordStart()
    second = trainer(plugin, default_root_dir=uri(s3, "second"), max_steps=6, callbacks=[record])
    second.fit(resumed, batches(), ckpt_path=saved)
    assert_same_state(record.weights, first.state_dict())
    assert second.global_step == 6
    assert keys(s3, "second/") == ["checkpoints/epoch=1-step=6.ckpt"]
    assert plugin.load_checkpoint(uri(s3, "second/checkpoints/epoch=1-step=6.ckpt"))["global_step"] == 6


@pytest.mark.parametrize("weights_only", [None, True, False])
def test_fit_forwards_weights_only(s3: S3TestEnv, weights_only: bool | None) -> None:
    plugin = plugin_for(s3)
    model = TinyModel()
    trainer(plugin, default_root_dir=uri(s3, "run")).fit(model, batches())
    calls: list[Any] = []
    load = plugin.load_checkpoint

    def spy(*args: Any, **kwargs: Any) -> dict[str, Any]:
        calls.append(kwargs.get("weights_only", "not passed"))
        return load(*args, **kwargs)

    plugin.load_checkpoint = spy  # type: ignore[method-assign]
    resumed = TinyModel()
    # Lightning before 2.6 has no weights_only: it calls the plugin without one (ours then loads
    # with weights_only=False, as Lightning did).
    passes_it = lightning_version() >= WEIGHTS_ONLY_PASSED_FROM
    trainer(plugin, default_root_dir=uri(s3, "resumed"), max_steps=3).fit(
        resumed,
        batches(),
        ckpt_path=uri(s3, "run/checkpoints/epoch=0-step=3.ckpt"),
        **({"weights_only": weights_only} if passes_it else {}),
    )
    assert calls == [weights_only if passes_it else "not passed"]
    assert_same_state(resumed.state_dict(), model.state_dict())  # max_steps reached: nothing trained


def test_trainer_save_checkpoint_and_load_from_checkpoint(s3: S3TestEnv) -> None:
    plugin = plugin_for(s3)
    model = TinyModel(width=6)
    run = trainer(plugin, enable_checkpointing=False)
    run.fit(model, batches(width=6))
    assert keys(s3, "") == []  # no callback: nothing saved yet
    run.save_checkpoint(uri(s3, "manual/model.ckpt"))
    assert keys(s3, "manual/") == ["model.ckpt"]

    checkpoint = plugin.load_checkpoint(uri(s3, "manual/model.ckpt"))
    assert checkpoint["hyper_parameters"] == {"width": 6, "padding": 0}
    # LightningModule.load_from_checkpoint reads s3:// through fsspec (s3torch's, without s3fs).
    loaded = TinyModel.load_from_checkpoint(uri(s3, "manual/model.ckpt"))
    assert loaded.hparams["width"] == 6
    assert_same_state(loaded.state_dict(), model.state_dict())
    # ... and a reader works anywhere a file object does.
    with s3.client.get_object(s3.bucket, s3.key("manual/model.ckpt")) as reader:
        from_reader = TinyModel.load_from_checkpoint(cast(IO[bytes], reader))
    assert_same_state(from_reader.state_dict(), model.state_dict())


def test_async_checkpoint_io_round_trip(s3: S3TestEnv) -> None:
    plugin = plugin_for(s3, part_size=PART)
    async_plugin = AsyncCheckpointIO(plugin)
    model = TinyModel(padding=3 * PART // 8)  # 7.5 MiB of buffer: a multipart upload
    callback = ModelCheckpoint(save_top_k=1, every_n_train_steps=2)
    trainer(async_plugin, default_root_dir=uri(s3, "async"), callbacks=[callback], max_steps=6).fit(model, batches())
    async_plugin.teardown()  # the Trainer tore it down already; waiting again is harmless
    assert keys(s3, "async/") == ["checkpoints/epoch=1-step=6.ckpt"]
    assert s3.uploads() == []
    checkpoint = async_plugin.load_checkpoint(uri(s3, "async/checkpoints/epoch=1-step=6.ckpt"))
    assert_same_state(checkpoint["state_dict"], model.state_dict())


# ---- failures and errors ----------------------------------------------------------------------


def test_failed_save_keeps_the_last_good_checkpoint(s3: S3TestEnv) -> None:
    plugin = plugin_for(s3, part_size=PART)
    model = TinyModel(padding=3 * PART // 8)  # multipart checkpoints
    model.poison_from_step = 3
    callback = ModelCheckpoint(dirpath=uri(s3, "ckpts"), save_top_k=1, every_n_train_steps=1)
    with pytest.raises((TypeError, AttributeError), match="pickle"):
        trainer(plugin, callbacks=[callback], max_steps=5).fit(model, batches())
    # Step 3's save failed before step 2's checkpoint was to be deleted: it is still there, whole.
    assert keys(s3, "ckpts/") == ["epoch=0-step=2.ckpt"]
    assert s3.uploads() == []
    assert plugin.load_checkpoint(uri(s3, "ckpts/epoch=0-step=2.ckpt"))["global_step"] == 2


def test_failed_upload_keeps_the_last_good_checkpoint(faulty_s3: S3TestEnv) -> None:
    plugin = plugin_for(faulty_s3, part_size=PART, max_attempts=2)
    model = TinyModel(padding=3 * PART // 8)  # two parts per checkpoint
    assert faulty_s3.proxy is not None
    proxy = faulty_s3.proxy

    class FailUploadsFromStep3(lightning.Callback):
        def on_save_checkpoint(self, trainer: lightning.Trainer, module: Any, checkpoint: dict[str, Any]) -> None:
            if trainer.global_step == 3:
                proxy.add(Rule(part_uploads(2), respond=500, times=None))

    callback = ModelCheckpoint(dirpath=uri(faulty_s3, "ckpts"), save_top_k=1, every_n_train_steps=1)
    with pytest.raises(S3Exception) as caught:
        trainer(plugin, callbacks=[FailUploadsFromStep3(), callback], max_steps=5).fit(model, batches())
    assert caught.value.key == faulty_s3.key("ckpts/epoch=0-step=3.ckpt")
    assert keys(faulty_s3, "ckpts/") == ["epoch=0-step=2.ckpt"]
    assert faulty_s3.uploads() == []
    assert plugin.load_checkpoint(uri(faulty_s3, "ckpts/epoch=0-step=2.ckpt"))["global_step"] == 2


def test_remove_checkpoint_of_a_missing_object(s3: S3TestEnv) -> None:
    plugin = plugin_for(s3)
    plugin.remove_checkpoint(uri(s3, "never/written.ckpt"))
    plugin.save_checkpoint({"a": 1}, uri(s3, "once.ckpt"))
    plugin.remove_checkpoint(uri(s3, "once.ckpt"))
    plugin.remove_checkpoint(uri(s3, "once.ckpt"))
    assert keys(s3, "") == []


def test_paths_that_are_not_s3_uris(s3: S3TestEnv, tmp_path: Path) -> None:
    plugin = plugin_for(s3)
    run = trainer(plugin, enable_checkpointing=False, max_steps=1)
    run.fit(TinyModel(), batches())
    local = str(tmp_path / "model.ckpt")
    with pytest.raises(ValueError, match="is not an S3 URI") as caught:
        run.save_checkpoint(local)
    assert repr(local) in str(caught.value)
    with pytest.raises(TypeError) as type_error:
        run.save_checkpoint(tmp_path / "model.ckpt")
    assert str(type_error.value) == (
        "'PosixPath' is not a supported type for 'path'. Must be a string formatted as an S3 uri."
    )
    with pytest.raises(ValueError, match="names no object"):
        plugin.load_checkpoint(f"s3://{s3.bucket}/")
    with pytest.raises(TypeError, match="'list' is not a supported type for 'path'"):
        plugin.remove_checkpoint(["s3://bucket/key"])  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []
    assert keys(s3, "") == []
