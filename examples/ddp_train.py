"""Distributed data-parallel training from S3 on 2 CPU ranks, with DCP checkpoints in S3.

    torchrun --nproc-per-node 2 examples/ddp_train.py
    torchrun --nproc-per-node 2 examples/ddp_train.py --uri s3://my-bucket/s3torch-demo

Rank 0 starts the embedded S3 server (unless ``--uri`` names a real bucket), writes the
synthetic data set and tells the other rank where it is. Every rank then streams its share with
``S3IterableDataset(enable_sharding=True)``: the objects are split over ranks x DataLoader
workers, each read exactly once per epoch. Ranks may get one batch more or less than another, so
the loop runs under DDP's ``Join``. After each epoch every rank writes its part of a
``torch.distributed.checkpoint`` checkpoint through ``S3StorageWriter``; at the end a fresh
model on every rank loads the last one with ``S3StorageReader`` and compares the weights. Rank 0
prints the summary; every rank exits non-zero if a check failed.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from contextlib import ExitStack

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from common import (
    BATCH_SIZE,
    SEED,
    WORKERS,
    DataSpec,
    Report,
    SmallCNN,
    example_arguments,
    mb,
    prefix_size,
    training_samples,
    write_dataset,
)
from s3_target import Target, describe, local_environment, open_target
from torch.distributed.algorithms.join import Join
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from s3torch.client import S3Client
from s3torch.dcp import S3StorageReader, S3StorageWriter

EPOCHS = 2
FULL = DataSpec(samples=1024, shards=0, shard_samples=0)
QUICK = DataSpec(samples=192, shards=0, shard_samples=0)


def checkpoint_path(target: Target, epoch: int) -> str:
    return target.uri("checkpoints", f"epoch-{epoch}")


def train(target: Target, spec: DataSpec, rank: int, world_size: int, report: Report) -> None:
    torch.manual_seed(SEED)  # the same initial weights on every rank (DDP also broadcasts them)
    model = DistributedDataParallel(SmallCNN())
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    dataset = training_samples(target, SEED)
    loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH_SIZE, num_workers=WORKERS)
    started = time.perf_counter()
    samples = 0
    for epoch in range(EPOCHS):
        dataset.set_epoch(epoch)  # the same permutation on every rank, a new one each epoch
        seen: list[int] = []
        with Join([model]), tqdm(desc=f"rank {rank} epoch {epoch + 1}/{EPOCHS}", unit="step", position=rank) as bar:
            for images, labels, indices in loader:
                loss = loss_fn(model(images), labels)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                seen += indices.tolist()
                bar.update()
        samples += len(seen)
        everyone: list[list[int] | None] = [None] * world_size
        dist.all_gather_object(everyone, seen)
        counts = Counter(index for part in everyone for index in part or [])
        report.check(
            len(counts) == spec.samples and max(counts.values()) == 1,
            f"epoch {epoch + 1}: every sample seen exactly once over {world_size} ranks x {WORKERS} workers",
        )
        saving = time.perf_counter()
        state = {"model": model.module.state_dict(), "optimizer": optimizer.state_dict()}
        dcp.save(
            state,
            storage_writer=S3StorageWriter(target.region, checkpoint_path(target, epoch), endpoint=target.endpoint),
        )
        report.measure(f"checkpoint epoch {epoch + 1} save", f"{time.perf_counter() - saving:.2f} s")
    elapsed = time.perf_counter() - started
    report.measure(f"rank {rank} training samples/s", f"{samples / elapsed:.0f} ({samples} samples)")

    fresh = SmallCNN()
    state = {"model": fresh.state_dict()}
    loading = time.perf_counter()
    dcp.load(
        state,
        storage_reader=S3StorageReader(target.region, checkpoint_path(target, EPOCHS - 1), endpoint=target.endpoint),
    )
    fresh.load_state_dict(state["model"])
    report.measure("checkpoint load", f"{time.perf_counter() - loading:.2f} s")
    trained = model.module.state_dict()
    report.check(
        all(torch.equal(tensor, trained[name]) for name, tensor in fresh.state_dict().items()),
        f"rank {rank}: the last checkpoint loads the trained weights",
    )


def main() -> int:
    parser = example_arguments(__doc__)
    args = parser.parse_args()
    if "RANK" not in os.environ:
        raise SystemExit("start it with torchrun: torchrun --nproc-per-node 2 examples/ddp_train.py")
    spec = QUICK if args.quick else FULL
    dist.init_process_group("gloo")
    rank, world_size = dist.get_rank(), dist.get_world_size()
    report = Report(f"s3torch DDP demo: summary (rank {rank})")
    with ExitStack() as stack:
        shared: list[Target | None] = [None]
        if rank == 0:
            target = open_target(args, stack, "ddp-demo")
            print(f"s3torch DDP demo on {describe(target)}, {world_size} ranks", flush=True)
            client = S3Client(target.region, endpoint=target.endpoint)
            written = write_dataset(client, target, spec)
            report.measure("data set written", f"{spec.samples} objects, {mb(written)}")
            shared = [target]
        dist.broadcast_object_list(shared, src=0)
        target = shared[0]
        assert target is not None
        if target.local and rank != 0:
            local_environment()  # the embedded server's dummy credentials
        train(target, spec, rank, world_size, report)
        if rank == 0:
            for epoch in range(EPOCHS):
                count, size = prefix_size(client, target.bucket, target.key("checkpoints", f"epoch-{epoch}") + "/")
                report.measure(f"checkpoint epoch {epoch + 1}", f"{count} objects, {mb(size)}")
        # Every rank's checks, so that rank 0's table and exit status cover them all.
        results: list[list[tuple[str, bool]] | None] = [None] * world_size
        dist.all_gather_object(results, report.checks)
        dist.barrier()  # nobody uses the server any more: rank 0 may stop it
    dist.destroy_process_group()
    if rank == 0:
        report.checks = [check for checks in results for check in checks or []]
        report.checks = list(dict.fromkeys(report.checks))  # epoch checks are the same on every rank
        return report.print()
    return 0 if all(passed for checks in results for _, passed in checks or []) else 1


if __name__ == "__main__":
    sys.exit(main())
