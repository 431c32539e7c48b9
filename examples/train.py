"""Train a small CNN from S3 with s3torch, crash mid-epoch, resume, and check every step.

What it does, against an S3 server embedded in this run (moto on 127.0.0.1) unless ``--uri``
names a real bucket:

1. writes a synthetic image-classification data set: one object per training sample, plus a
   few evaluation shards;
2. trains for 2 epochs streaming the samples with ``S3IterableDataset`` (shuffled per epoch,
   sharded over 2 DataLoader workers) and takes a ``torch.distributed.checkpoint`` checkpoint
   through ``S3StorageWriter`` every N steps: model, optimizer and the data loader's position;
3. "crashes" in the middle of the second epoch, throws the model, optimizer and loader away,
   resumes from the last complete checkpoint in S3, finishes the epoch, and checks that every
   sample was seen exactly once in that epoch;
4. evaluates on the shards with ``S3MapDataset``, saves the final model with ``S3Checkpoint``
   (``torch.save``), loads it back and compares the weights;
5. prints a summary table and exits non-zero if any check failed.

    python examples/train.py                                     # embedded server
    python examples/train.py --uri s3://my-bucket/s3torch-demo   # a real bucket (a run prefix is added)
"""

from __future__ import annotations

import pickle
import sys
import time
import warnings
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from common import (
    BATCH_SIZE,
    HEADER,
    IMAGE_BYTES,
    SEED,
    WORKERS,
    DataSpec,
    Report,
    SmallCNN,
    accuracy_on_shards,
    evaluation_shards,
    example_arguments,
    mb,
    prefix_size,
    steps_per_epoch,
    training_samples,
    write_dataset,
)
from s3_target import Target, describe, open_target
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
from torchdata.stateful_dataloader import StatefulDataLoader
from tqdm import tqdm

from s3torch.client import S3Client
from s3torch.datasets import S3IterableDataset
from s3torch.dcp import S3Checkpoint, S3StorageReader, S3StorageWriter

EPOCHS = 2
FULL = DataSpec(samples=2000, shards=4, shard_samples=250)
QUICK = DataSpec(samples=256, shards=2, shard_samples=64)


# Noise for this single-process demo: DCP says it runs without a process group, and torchdata
# calls a torch function that torch deprecated.
warnings.filterwarnings("ignore", message="torch.distributed is disabled, unavailable or uninitialized")
warnings.filterwarnings("ignore", message="'set_vital' is deprecated")


class SimulatedCrash(Exception):
    """Raised in the middle of the second epoch: everything in memory is lost."""


@dataclass
class Checkpoints:
    """The DCP checkpoints of a run: where they go, and what each one cost."""

    client: S3Client
    target: Target
    every: int
    saved: list[tuple[int, float]] = field(default_factory=list)  # (step, seconds)
    # The model's weights as the newest checkpoint saved them, to compare with what loads.
    last_weights: dict[str, torch.Tensor] = field(default_factory=dict)

    def path(self, step: int) -> str:
        return self.target.uri("checkpoints", f"step-{step:06d}")

    def save(self, step: int, state: dict[str, Any]) -> None:
        started = time.perf_counter()
        writer = S3StorageWriter(self.target.region, self.path(step), thread_count=4, endpoint=self.target.endpoint)
        dcp.save(state, storage_writer=writer)
        self.saved.append((step, time.perf_counter() - started))
        self.last_weights = {name: tensor.detach().clone() for name, tensor in state["model"].items()}

    def last_complete(self) -> int | None:
        """The step of the newest checkpoint whose ``.metadata`` is in S3 (written last: a
        checkpoint without it is incomplete and never loaded)."""
        steps = [
            int(info.key.split("/")[-2].removeprefix("step-"))
            for page in self.client.list_objects(self.target.bucket, prefix=self.target.key("checkpoints") + "/")
            for info in page.object_info
            if info.key.endswith("/.metadata")
        ]
        return max(steps, default=None)

    def load(self, step: int, state: dict[str, Any]) -> float:
        started = time.perf_counter()
        dcp.load(
            state, storage_reader=S3StorageReader(self.target.region, self.path(step), endpoint=self.target.endpoint)
        )
        return time.perf_counter() - started


@dataclass
class Run:
    """One training process: what lives in memory and is lost in a crash."""

    model: SmallCNN
    optimizer: torch.optim.Optimizer
    dataset: S3IterableDataset
    loader: StatefulDataLoader
    step: int = 0
    epoch: int = 0
    samples: int = 0  # trained on by this process (not saved)

    def state(self) -> dict[str, Any]:
        model_state, optimizer_state = get_state_dict(self.model, self.optimizer)
        return {
            "model": model_state,
            "optimizer": optimizer_state,
            "progress": {"step": self.step, "epoch": self.epoch},
            # One opaque leaf: the loader's state holds each worker's dataset position.
            "loader": pickle.dumps(self.loader.state_dict()),
        }

    def restore(self, state: dict[str, Any]) -> None:
        set_state_dict(self.model, self.optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])
        self.step, self.epoch = state["progress"]["step"], state["progress"]["epoch"]
        self.loader.load_state_dict(pickle.loads(state["loader"]))


def new_run(target: Target) -> Run:
    torch.manual_seed(SEED)
    model = SmallCNN()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    dataset = training_samples(target, SEED)
    loader = StatefulDataLoader(dataset, batch_size=BATCH_SIZE, num_workers=WORKERS)
    return Run(model, optimizer, dataset, loader)


def train(
    run: Run,
    checkpoints: Checkpoints,
    seen: dict[int, list[tuple[int, list[int]]]],
    steps: int,
    crash_at: int | None,
) -> float:
    """Train until ``EPOCHS`` are done (or raise ``SimulatedCrash`` after global step
    ``crash_at``); records the sample indices of every step in ``seen[epoch]``. Returns the
    seconds spent, checkpoints included."""
    started = time.perf_counter()
    loss_fn = torch.nn.CrossEntropyLoss()
    while run.epoch < EPOCHS:
        run.dataset.set_epoch(run.epoch)  # a new permutation each epoch; a loaded position is kept
        done = run.step - run.epoch * steps
        with tqdm(total=steps, initial=done, desc=f"epoch {run.epoch + 1}/{EPOCHS}", unit="step") as bar:
            for images, labels, indices in run.loader:
                loss = loss_fn(run.model(images), labels)
                run.optimizer.zero_grad()
                loss.backward()
                run.optimizer.step()
                run.step += 1
                run.samples += len(indices)
                seen.setdefault(run.epoch, []).append((run.step, indices.tolist()))
                bar.update()
                bar.set_postfix(loss=f"{loss.item():.3f}")
                if run.step % checkpoints.every == 0:
                    checkpoints.save(run.step, run.state())
                if crash_at is not None and run.step == crash_at:
                    raise SimulatedCrash(f"simulated crash at step {run.step}")
        run.epoch += 1
    return time.perf_counter() - started


def main() -> int:
    parser = example_arguments(__doc__)
    parser.add_argument("--checkpoint-every", type=int, default=None, help="steps between checkpoints")
    args = parser.parse_args()
    spec = QUICK if args.quick else FULL
    report = Report("s3torch training demo: summary")

    with ExitStack() as stack:
        target = open_target(args, stack, "train-demo")
        print(f"s3torch training demo on {describe(target)}", flush=True)
        client = S3Client(target.region, endpoint=target.endpoint)

        # 1. The data set.
        started = time.perf_counter()
        written = write_dataset(client, target, spec)
        elapsed = time.perf_counter() - started
        report.measure("data set written", f"{spec.samples + spec.shards} objects, {mb(written)} in {elapsed:.1f} s")
        objects, _ = prefix_size(client, target.bucket, target.key("train") + "/")
        report.check(objects == spec.samples, f"{spec.samples} training objects listed")

        # 2. Train; crash in the middle of the second epoch.
        steps = steps_per_epoch(spec.samples)
        every = args.checkpoint_every or max(steps // 4, 1)
        crash_at = steps + max(every + 1, steps * 6 // 10)
        checkpoints = Checkpoints(client, target, every)
        seen: dict[int, list[tuple[int, list[int]]]] = {}
        first = new_run(target)
        train_seconds = 0.0
        crashed_at = None
        crash_started = time.perf_counter()
        try:
            train(first, checkpoints, seen, steps, crash_at)
        except SimulatedCrash as crash:
            crashed_at = first.step
            print(f"\n{crash}: model, optimizer and data loader are lost", flush=True)
        train_seconds += time.perf_counter() - crash_started
        report.check(crashed_at == crash_at, f"crashed in epoch 2 at step {crash_at}")
        expected = {index for index in range(spec.samples)}
        counts = Counter(index for _, indices in seen.get(0, []) for index in indices)
        report.check(set(counts) == expected and max(counts.values()) == 1, "epoch 1: every sample seen exactly once")

        # 3. Resume from the last complete checkpoint in S3.
        resume_step = checkpoints.last_complete()
        last_saved = max((step for step, _ in checkpoints.saved), default=None)
        report.check(
            resume_step is not None and resume_step == last_saved, f"last complete checkpoint: step {resume_step}"
        )
        resumed = new_run(target)
        state = resumed.state()  # the shapes to load into
        load_seconds = checkpoints.load(resume_step or 0, state)
        resumed.restore(state)
        print(f"resumed from {checkpoints.path(resume_step or 0)} (epoch {resumed.epoch + 1}, step {resumed.step})")
        report.check(resumed.epoch == 1, "the checkpoint is in the middle of epoch 2")
        loaded_weights = resumed.model.state_dict()
        report.check(
            loaded_weights.keys() == checkpoints.last_weights.keys()
            and all(torch.equal(loaded_weights[name], checkpoints.last_weights[name]) for name in loaded_weights),
            "the checkpoint loads the weights it saved",
        )
        # The steps of epoch 2 that the checkpoint covers; the rest is replayed after resuming.
        kept = [(step, indices) for step, indices in seen.get(1, []) if step <= resumed.step]
        seen[1] = kept
        train_seconds += train(resumed, checkpoints, seen, steps, None)
        counts = Counter(index for _, indices in seen[1] for index in indices)
        report.check(
            set(counts) == expected and max(counts.values()) == 1,
            "epoch 2 across the crash: every sample seen exactly once",
        )

        samples_trained = first.samples + resumed.samples
        report.measure("training samples/s", f"{samples_trained / train_seconds:.0f} ({samples_trained} samples)")
        read_bytes = samples_trained * (HEADER.size + IMAGE_BYTES)
        report.measure("read throughput", f"{read_bytes / 1e6 / train_seconds:.2f} MB/s")
        for step, seconds in checkpoints.saved:
            count, size = prefix_size(client, target.bucket, target.key("checkpoints", f"step-{step:06d}") + "/")
            report.measure(f"checkpoint step {step}", f"{count} objects, {mb(size)}, saved in {seconds:.2f} s")
        report.measure(f"checkpoint step {resume_step} load", f"{load_seconds:.2f} s")

        # 4. Evaluate on the shards, then save the final model and load it back.
        shards = evaluation_shards(target)
        accuracy, evaluated = accuracy_on_shards(resumed.model, (shards[i] for i in range(len(shards))))
        report.measure("evaluation accuracy", f"{accuracy:.1%} on {evaluated} samples ({len(shards)} shards)")
        report.check(evaluated == spec.shards * spec.shard_samples, "every evaluation sample evaluated")
        report.check(accuracy > 0.3, "the model learned (accuracy above 30%, chance is 10%)")

        final = S3Checkpoint(target.region, endpoint=target.endpoint)
        final_uri = target.uri("final", "model.pt")
        started = time.perf_counter()
        with final.writer(final_uri) as writer:
            torch.save(resumed.model.state_dict(), writer)
        save_seconds = time.perf_counter() - started
        started = time.perf_counter()
        loaded = torch.load(final.reader(final_uri), weights_only=True)
        load_final = time.perf_counter() - started
        _, size = prefix_size(client, target.bucket, target.key("final", "model.pt"))
        report.measure(
            "final model (S3Checkpoint)", f"{mb(size)}, saved in {save_seconds:.2f} s, loaded in {load_final:.2f} s"
        )
        weights = resumed.model.state_dict()
        report.check(
            loaded.keys() == weights.keys() and all(torch.equal(loaded[name], weights[name]) for name in weights),
            "final model reloaded from S3: weights equal",
        )
    return report.print()


if __name__ == "__main__":  # DataLoader workers may start by spawn: keep the entry point guarded
    sys.exit(main())
