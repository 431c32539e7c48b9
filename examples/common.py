"""What the training examples share: the synthetic image data set they write, the small CNN
they train, and their checks and summary. Where they run is ``s3_target``.

The examples import this module by name; they run as scripts from this folder, so it is on
``sys.path`` (also in DataLoader workers started by ``spawn``).
"""

from __future__ import annotations

import argparse
import io
import struct
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import torch
from s3_target import Target, add_target_arguments
from torch import nn

from s3torch.client import S3Client
from s3torch.datasets import S3IterableDataset, S3MapDataset
from s3torch.readers import S3Reader

NUM_CLASSES = 10
IMAGE_SHAPE = (3, 32, 32)
IMAGE_BYTES = IMAGE_SHAPE[0] * IMAGE_SHAPE[1] * IMAGE_SHAPE[2]
# A sample object: its index (uint32) and label (uint8), 3 bytes of padding, then the image.
HEADER = struct.Struct("<IB3x")
UPLOAD_THREADS = 8
# The training examples' settings, sized for a 2-core machine.
BATCH_SIZE = 32
WORKERS = 2  # DataLoader worker processes
SEED = 0


# -- the synthetic data set -----------------------------------------------------------------------


@dataclass(frozen=True)
class DataSpec:
    """How big the data set is: ``samples`` training objects, ``shards`` evaluation shards of
    ``shard_samples`` samples each."""

    samples: int
    shards: int
    shard_samples: int


def class_templates(seed: int = 0) -> torch.Tensor:
    """One blocky colour pattern per class: easy to learn, so two short epochs show progress."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand((NUM_CLASSES, IMAGE_SHAPE[0], 4, 4), generator=generator)
    return coarse.repeat_interleave(8, dim=2).repeat_interleave(8, dim=3)


def synthetic_images(count: int, first_index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` uint8 images and their labels; the same index always gives the same sample."""
    generator = torch.Generator().manual_seed(1_000_003 + first_index)
    labels = torch.randint(0, NUM_CLASSES, (count,), generator=generator)
    noise = torch.rand((count, *IMAGE_SHAPE), generator=generator)
    images = (0.65 * class_templates()[labels] + 0.35 * noise) * 255
    return images.to(torch.uint8), labels


def encode_sample(index: int, label: int, image: torch.Tensor) -> bytes:
    return HEADER.pack(index, label) + bytes(image.clone().untyped_storage())


def decode_sample(reader: S3Reader) -> tuple[torch.Tensor, int, int]:
    """A sample object as ``(image as float, label, index)``: the datasets' ``transform``."""
    data = reader.read()
    index, label = HEADER.unpack_from(data)
    image = torch.frombuffer(bytearray(data[HEADER.size :]), dtype=torch.uint8).reshape(IMAGE_SHAPE)
    return image.float() / 255, label, index


def decode_shard(reader: S3Reader) -> dict[str, torch.Tensor]:
    """An evaluation shard (``torch.save`` of images, labels and indices)."""
    shard: dict[str, torch.Tensor] = torch.load(reader, weights_only=True)
    return shard


def sample_key(target: Target, index: int) -> str:
    return target.key("train", f"sample-{index:06d}.bin")


def write_dataset(client: S3Client, target: Target, spec: DataSpec) -> int:
    """Write the training samples (one object each) and the evaluation shards; returns the bytes
    written. A progress bar counts the objects."""
    from tqdm import tqdm

    images, labels = synthetic_images(spec.samples, 0)

    def put(key: str, data: bytes) -> int:
        with client.put_object(target.bucket, key) as writer:
            writer.write(data)
        return len(data)

    def shard_bytes(shard: int) -> bytes:
        first = spec.samples + shard * spec.shard_samples
        shard_images, shard_labels = synthetic_images(spec.shard_samples, first)
        indices = torch.arange(first, first + spec.shard_samples)
        buffer = io.BytesIO()
        torch.save({"images": shard_images, "labels": shard_labels, "indices": indices}, buffer)
        return buffer.getvalue()

    with (
        ThreadPoolExecutor(UPLOAD_THREADS) as pool,
        tqdm(total=spec.samples + spec.shards, desc="writing data set", unit="obj") as bar,
    ):
        uploads = []
        for index in range(spec.samples):
            data = encode_sample(index, int(labels[index]), images[index])
            uploads.append(pool.submit(put, sample_key(target, index), data))
            uploads[-1].add_done_callback(lambda _: bar.update())
        for shard in range(spec.shards):
            uploads.append(pool.submit(put, target.key("eval", f"shard-{shard:03d}.pt"), shard_bytes(shard)))
            uploads[-1].add_done_callback(lambda _: bar.update())
        written = sum(upload.result() for upload in uploads)
    return written


def training_samples(target: Target, seed: int) -> S3IterableDataset:
    """The training samples, streamed: shuffled per epoch, each object read once per epoch over
    all ranks and DataLoader workers."""
    return S3IterableDataset.from_prefix(
        target.uri("train") + "/",
        region=target.region,
        endpoint=target.endpoint,
        transform=decode_sample,
        enable_sharding=True,  # split over ranks, then over each rank's DataLoader workers
        shuffle=True,
        seed=seed,
    )


def evaluation_shards(target: Target) -> S3MapDataset:
    """The evaluation shards, one item per shard object."""
    return S3MapDataset.from_prefix(
        target.uri("eval") + "/", region=target.region, endpoint=target.endpoint, transform=decode_shard
    )


def steps_per_epoch(samples: int) -> int:
    """Each DataLoader worker batches its own share: the last batch of each may be short."""
    return WORKERS * -(-samples // WORKERS // BATCH_SIZE)


def example_arguments(description: str | None) -> argparse.ArgumentParser:
    """The arguments every training example takes: where it runs, and ``--quick``."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_target_arguments(parser)
    parser.add_argument("--quick", action="store_true", help="a small data set through the same code (the tests)")
    return parser


# -- the model -------------------------------------------------------------------------------------


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Linear(32 * 8 * 8, NUM_CLASSES)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(images).flatten(1))


def accuracy_on_shards(model: nn.Module, shards: Iterator[dict[str, torch.Tensor]]) -> tuple[float, int]:
    """The model's accuracy over evaluation shards, and the number of samples it saw."""
    correct = total = 0
    model.eval()
    with torch.no_grad():
        for shard in shards:
            predictions = model(shard["images"].float() / 255).argmax(dim=1)
            correct += int((predictions == shard["labels"]).sum())
            total += len(shard["labels"])
    model.train()
    return correct / max(total, 1), total


def prefix_size(client: S3Client, bucket: str, prefix: str) -> tuple[int, int]:
    """The number of objects under ``prefix`` and their total size in bytes."""
    objects = size = 0
    for page in client.list_objects(bucket, prefix=prefix):
        for info in page.object_info:
            objects += 1
            size += info.size or 0
    return objects, size


# -- checks and the summary -----------------------------------------------------------------------


@dataclass
class Report:
    """Measurements and checks of one run, printed as one table at the end."""

    title: str
    rows: list[tuple[str, str]] = field(default_factory=list)
    checks: list[tuple[str, bool]] = field(default_factory=list)

    def measure(self, what: str, value: str) -> None:
        self.rows.append((what, value))

    def check(self, condition: bool, what: str) -> bool:
        """Record a check (unlike ``assert``, it also runs under ``python -O``)."""
        self.checks.append((what, bool(condition)))
        return bool(condition)

    def print(self) -> int:
        """Print the table; the exit status: 0 only if every check passed."""
        lines = [(what, value) for what, value in self.rows]
        lines += [(what, "ok" if passed else "FAILED") for what, passed in self.checks]
        width = max(len(what) for what, _ in lines)
        rule = "-" * (width + 14)
        print(f"\n{self.title}\n{rule}", flush=True)
        for what, value in lines:
            print(f"{what:<{width}}  {value}")
        failed = [what for what, passed in self.checks if not passed]
        print(rule)
        print(f"{len(self.checks) - len(failed)} of {len(self.checks)} checks ok" + (" - FAILED" if failed else ""))
        sys.stdout.flush()
        return 1 if failed else 0


def mb(size: int) -> str:
    return f"{size / 1e6:.2f} MB"
