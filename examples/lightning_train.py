"""Train with a Lightning ``Trainer`` from S3, checkpoints in S3, and resume from one.

    python examples/lightning_train.py
    python examples/lightning_train.py --uri s3://my-bucket/s3torch-demo

The training samples stream from ``S3IterableDataset`` (shuffled per epoch, sharded over 2
persistent DataLoader workers); the validation shards come from ``S3MapDataset``. Every
checkpoint goes to S3 through the ``S3LightningCheckpoint`` plugin, and ``ModelCheckpoint(
save_top_k=2)`` keeps the two best of four validations, deleting the others in S3. A second
``Trainer`` then resumes from the best checkpoint for one more epoch, and
``load_from_checkpoint`` reads it back from S3. Exits non-zero if a check failed.
"""

from __future__ import annotations

import sys
import time
import warnings
from contextlib import ExitStack
from typing import Any

import lightning
import torch
from common import (
    BATCH_SIZE,
    SEED,
    WORKERS,
    DataSpec,
    Report,
    SmallCNN,
    evaluation_shards,
    example_arguments,
    mb,
    steps_per_epoch,
    training_samples,
    write_dataset,
)
from lightning.pytorch.callbacks import ModelCheckpoint
from s3_target import Target, describe, open_target

from s3torch.client import S3Client
from s3torch.lightning import S3LightningCheckpoint

FULL = DataSpec(samples=1024, shards=2, shard_samples=128)
QUICK = DataSpec(samples=192, shards=2, shard_samples=32)

# Lightning suggests more workers than this 2-core demo wants, and resuming from a checkpoint
# taken mid-epoch with an iterable dataset restarts that epoch (said once below, not by a warning).
warnings.filterwarnings("ignore", message=".*does not have many workers.*")
warnings.filterwarnings("ignore", message=".*resuming from a checkpoint that ended before the epoch ended.*")


class Classifier(lightning.LightningModule):
    def __init__(self, target: Target | None = None) -> None:
        super().__init__()
        self.model = SmallCNN()
        self.target = target
        self.loss_fn = torch.nn.CrossEntropyLoss()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
        images, labels, _indices = batch
        loss = self.loss_fn(self(images), labels)
        self.log("train_loss", loss, prog_bar=True, batch_size=len(labels))
        return loss

    def validation_step(self, shard: dict[str, torch.Tensor], _: int) -> None:
        logits = self(shard["images"].float() / 255)
        self.log("val_loss", self.loss_fn(logits, shard["labels"]), batch_size=len(shard["labels"]))
        accuracy = (logits.argmax(dim=1) == shard["labels"]).float().mean()
        self.log("val_accuracy", accuracy, prog_bar=True, batch_size=len(shard["labels"]))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=3e-3)

    def train_dataloader(self) -> torch.utils.data.DataLoader[Any]:
        assert self.target is not None
        # Persistent workers move to the next epoch's permutation by themselves.
        dataset = training_samples(self.target, SEED)
        return torch.utils.data.DataLoader(dataset, batch_size=BATCH_SIZE, num_workers=WORKERS, persistent_workers=True)

    def val_dataloader(self) -> torch.utils.data.DataLoader[Any]:
        assert self.target is not None
        shards = evaluation_shards(self.target)
        return torch.utils.data.DataLoader(shards, batch_size=None)


def trainer(target: Target, epochs: int, steps: int, checkpoints: ModelCheckpoint) -> lightning.Trainer:
    return lightning.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        default_root_dir=target.uri("lightning"),
        plugins=[S3LightningCheckpoint(target.region, endpoint=target.endpoint)],
        callbacks=[checkpoints],
        val_check_interval=max(steps // 2, 1),  # twice per epoch: 4 candidates for 2 places
        logger=False,
        enable_model_summary=False,
    )


def main() -> int:
    parser = example_arguments(__doc__)
    args = parser.parse_args()
    spec = QUICK if args.quick else FULL
    report = Report("s3torch Lightning demo: summary")
    lightning.seed_everything(SEED, verbose=False)
    with ExitStack() as stack:
        target = open_target(args, stack, "lightning-demo")
        print(f"s3torch Lightning demo on {describe(target)}", flush=True)
        client = S3Client(target.region, endpoint=target.endpoint)
        written = write_dataset(client, target, spec)
        report.measure("data set written", f"{spec.samples + spec.shards} objects, {mb(written)}")
        steps = steps_per_epoch(spec.samples)
        checkpoint_dir = target.uri("lightning", "checkpoints")

        best = ModelCheckpoint(dirpath=checkpoint_dir, monitor="val_loss", save_top_k=2)
        started = time.perf_counter()
        first = trainer(target, 2, steps, best)
        first.fit(Classifier(target))
        elapsed = time.perf_counter() - started
        report.measure("training samples/s", f"{2 * spec.samples / elapsed:.0f} (fit, with validation and checkpoints)")
        kept = sorted(
            f"s3://{target.bucket}/{info.key}"
            for page in client.list_objects(target.bucket, prefix=target.key("lightning", "checkpoints") + "/")
            for info in page.object_info
            if info.key.endswith(".ckpt")
        )
        for uri in kept:
            size = client.head_object(target.bucket, uri.removeprefix(f"s3://{target.bucket}/")).size
            report.measure(f"checkpoint {uri.rsplit('/', 1)[-1]}", mb(size))
        report.check(
            len(kept) == 2 and sorted(best.best_k_models) == kept,
            "save_top_k=2: the two best checkpoints are in S3, the others deleted",
        )
        report.check(best.best_model_path in kept, f"best checkpoint: {best.best_model_path.rsplit('/', 1)[-1]}")

        started = time.perf_counter()
        restored = Classifier.load_from_checkpoint(best.best_model_path, target=target)
        report.measure("load_from_checkpoint", f"{time.perf_counter() - started:.2f} s")
        plugin = S3LightningCheckpoint(target.region, endpoint=target.endpoint)
        saved = plugin.load_checkpoint(best.best_model_path)["state_dict"]
        weights = restored.state_dict()
        report.check(
            saved.keys() == weights.keys() and all(torch.equal(saved[name], weights[name]) for name in saved),
            "load_from_checkpoint(s3://...) restores the checkpoint's weights",
        )

        print(f"resuming from {best.best_model_path} for a third epoch (the epoch it was taken in restarts)")
        resumed_checkpoints = ModelCheckpoint(dirpath=checkpoint_dir, monitor="val_loss", save_top_k=2)
        second = trainer(target, 3, steps, resumed_checkpoints)
        resumed_from = int(plugin.load_checkpoint(best.best_model_path)["global_step"])
        second.fit(Classifier(target), ckpt_path=best.best_model_path)
        report.check(second.current_epoch == 3, "resumed run finished its third epoch")
        report.check(second.global_step > resumed_from, f"resumed run went on from step {resumed_from}")
        accuracy = float(second.callback_metrics.get("val_accuracy", torch.tensor(0.0)))
        report.measure("validation accuracy", f"{accuracy:.1%}")
        report.check(accuracy > 0.3, "the model learned (accuracy above 30%, chance is 10%)")
    return report.print()


if __name__ == "__main__":
    sys.exit(main())
