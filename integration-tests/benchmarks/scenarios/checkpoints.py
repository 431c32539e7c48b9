"""Checkpoints through s3torch-dcp: ``torch.save`` / ``torch.load`` through ``S3Checkpoint``, and
``torch.distributed.checkpoint`` save and full load through ``S3StorageWriter`` /
``S3StorageReader`` with each reader strategy.

The state dict looks like a training checkpoint: a model's weights (``model.*``: 4 large and 128
small float32 tensors) and its Adam optimizer state (``optim.*``: ``exp_avg`` and ``exp_avg_sq``
of each weight), ``CHECKPOINT_MIB`` in all (1 GiB by default, capped at ``--size-mib``), three
quarters in the 12 large tensors.

* ``checkpoint-<profile>`` (``S3Checkpoint``): ``torch.save`` into ``writer()`` next to
  ``torch.save`` into memory plus boto3 ``upload_fileobj``; ``torch.load`` from ``reader()``
  (sequential and range-based) next to boto3 ``get_object().read()`` plus ``torch.load`` from
  memory. MB/s count the bytes of the ``torch.save`` file.
* ``dcp-<profile>``: ``dcp.save`` with 1 and with ``DCP_THREADS`` files per rank; ``dcp.load`` of
  the whole state dict with each reader strategy (the checkpoint read was saved with
  ``DCP_THREADS`` files); and a partial ``dcp.load`` of the model's weights only (a third of the
  bytes, as for inference or fine-tuning from a training checkpoint). MB/s count the bytes of
  the tensors loaded.

Stores: moto (saves and loads, ``CHECKPOINT_MOTO_MIB``: moto answers every ranged GET by reading
the whole object, see README, so a full-size run there takes most of an hour), nginx loopback and
s3-like (loads; the files are put in nginx's directory first, unmeasured), and the store of
``S3TORCH_BENCH_*``.
"""

from __future__ import annotations

import functools
import io
import os
import shutil
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError
from fixtures import boto3_client
from measure import BenchmarkError, Contender, Transfer, in_process
from scenario import BenchContext, Check, Ratio, Scenario, Skip, register
from servers import LOOPBACK, MOTO, REMOTE, S3_LIKE, Store
from settings import MIB

from s3torch.client import S3ClientConfig

#: Size of the state dict (MiB), at most ``--size-mib``; ``S3TORCH_BENCH_CHECKPOINT_MIB``.
CHECKPOINT_MIB = 1024
#: The same against moto; ``S3TORCH_BENCH_CHECKPOINT_MOTO_MIB``.
CHECKPOINT_MOTO_MIB = 256
LARGE_WEIGHTS = 4
SMALL_WEIGHTS = 128
#: Files per rank of the checkpoint the DCP loads read (and of the second save row).
DCP_THREADS = 4
#: dcp_optimized full load over sequential full load, the issue's target.
DCP_OPTIMIZED_VERSUS_SEQUENTIAL = 1.5

SAVE = "torch.save -> S3Checkpoint.writer"
SAVE_BOTO3 = "torch.save -> memory, boto3 upload_fileobj"
LOAD_SEQUENTIAL = "torch.load <- S3Checkpoint.reader, sequential"
LOAD_RANGED = "torch.load <- S3Checkpoint.reader, range_based"
LOAD_BOTO3 = "torch.load <- boto3 get_object().read()"

DCP_SAVE_1 = "dcp.save, 1 file"
DCP_SAVE_N = f"dcp.save, {DCP_THREADS} files (thread_count={DCP_THREADS})"
DCP_LOAD = {
    "sequential": "dcp.load, sequential",
    "range_based": "dcp.load, range_based",
    "dcp_optimized": "dcp.load, dcp_optimized",
}
DCP_PARTIAL = {
    "sequential": "dcp.load model only, sequential",
    "dcp_optimized": "dcp.load model only, dcp_optimized",
}

WRITABLE = (MOTO, REMOTE)


def _mib_setting(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    if not value.isdigit() or int(value) < 1:
        raise Skip(f"{name}={value!r} is not a positive number of MiB")
    return int(value)


def checkpoint_size(context: BenchContext, profile: str) -> int:
    if profile == MOTO:
        mib = _mib_setting("S3TORCH_BENCH_CHECKPOINT_MOTO_MIB", CHECKPOINT_MOTO_MIB)
    else:
        mib = _mib_setting("S3TORCH_BENCH_CHECKPOINT_MIB", CHECKPOINT_MIB)
    return min(mib * MIB, context.settings.size)


def make_state_dict(size: int) -> dict[str, Any]:
    """A training checkpoint of about ``size`` bytes: ``model.*`` weights and, for each, the
    optimizer's ``optim.<name>.exp_avg`` and ``.exp_avg_sq``; 3/4 of the bytes in the large ones."""
    import torch

    generator = torch.Generator().manual_seed(0)
    per_copy = size // 3  # the weights, and each of the two optimizer moments
    large = per_copy * 3 // 4 // LARGE_WEIGHTS // 4  # float32 elements
    small = max(1, (per_copy - LARGE_WEIGHTS * large * 4) // SMALL_WEIGHTS // 4)
    weights = [(f"large.{index}", large) for index in range(LARGE_WEIGHTS)]
    weights += [(f"small.{index:03d}", small) for index in range(SMALL_WEIGHTS)]
    state: dict[str, Any] = {}
    for name, elements in weights:
        state[f"model.{name}"] = torch.rand(elements, generator=generator)
    for name, elements in weights:
        for moment in ("exp_avg", "exp_avg_sq"):
            state[f"optim.{name}.{moment}"] = torch.rand(elements, generator=generator)
    return state


def tensor_bytes(state: dict[str, Any]) -> int:
    return sum(tensor.numel() * tensor.element_size() for tensor in state.values())


def _ensure_bucket(client: Any, bucket: str) -> None:
    try:
        client.create_bucket(Bucket=bucket)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise


def _delete_prefix(client: Any, bucket: str, prefix: str) -> None:
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys = [{"Key": entry["Key"]} for entry in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})


def _served_directory(context: BenchContext, profile: str) -> Path:
    directory = context.read_objects._directory
    if directory is None:
        raise Skip(f"no directory is served by the {profile} store")
    return directory


def _same(loaded: dict[str, Any], expected: dict[str, Any]) -> bool:
    import torch

    return loaded.keys() == expected.keys() and all(torch.equal(loaded[key], expected[key]) for key in expected)


def _config(store: Store) -> S3ClientConfig:
    return S3ClientConfig(force_path_style=store.path_style)


# ---- torch.save / torch.load through S3Checkpoint ------------------------------------------------


def build_checkpoint(context: BenchContext, profile: str) -> Scenario:
    try:
        import torch

        from s3torch.dcp import S3Checkpoint
        from s3torch.readers import S3ReaderConstructor
    except ImportError as error:
        raise Skip(f"s3torch-dcp or torch is not installed ({error})") from error

    store = context.store(profile)
    bucket = store.bucket
    writable = profile in WRITABLE
    boto = boto3_client(store)
    if profile == MOTO:
        _ensure_bucket(boto, bucket)
    state = make_state_dict(checkpoint_size(context, profile))
    buffer = io.BytesIO()
    torch.save(state, buffer)
    serialized = buffer.getbuffer()
    file_size = len(serialized)
    expected = Transfer(file_size)

    checkpoint = S3Checkpoint(store.region, endpoint=store.endpoint, s3client_config=_config(store))
    saved_key = f"{context.key_prefix}checkpoint/saved.pt"
    load_key = f"{context.key_prefix}checkpoint/load.pt"
    saved_uri, load_uri = f"s3://{bucket}/{saved_key}", f"s3://{bucket}/{load_key}"

    # Unmeasured: the file the loads read, checked once.
    if writable:
        with checkpoint.writer(f"s3://{bucket}/{context.key_prefix}checkpoint/warm.pt") as writer:
            writer.write(b"warm")  # client and connections warm
        boto.delete_object(Bucket=bucket, Key=f"{context.key_prefix}checkpoint/warm.pt")
        boto.upload_fileobj(io.BytesIO(serialized), bucket, load_key)
    else:
        target = _served_directory(context, profile) / load_key
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(serialized)
    if not _same(torch.load(checkpoint.reader(load_uri), weights_only=True), state):
        raise BenchmarkError("the checkpoint read back with S3Checkpoint differs from the one saved")
    del buffer, serialized

    def save() -> Transfer:
        with checkpoint.writer(saved_uri) as writer:
            torch.save(state, writer)
        return expected

    def save_boto3() -> Transfer:
        memory = io.BytesIO()
        torch.save(state, memory)
        memory.seek(0)
        boto.upload_fileobj(memory, bucket, saved_key)
        return expected

    def check_and_delete() -> None:
        written = boto.head_object(Bucket=bucket, Key=saved_key)["ContentLength"]
        boto.delete_object(Bucket=bucket, Key=saved_key)
        if written != file_size:
            raise BenchmarkError(f"the saved checkpoint has {written} bytes, expected {file_size}")

    def loader(constructor: Any) -> Any:
        def load() -> Transfer:
            loaded = torch.load(checkpoint.reader(load_uri, reader_constructor=constructor), weights_only=True)
            return expected if len(loaded) == len(state) else Transfer(0)

        return load

    def load_boto3() -> Transfer:
        data = boto.get_object(Bucket=bucket, Key=load_key)["Body"].read()
        loaded = torch.load(io.BytesIO(data), weights_only=True)
        return expected if len(loaded) == len(state) else Transfer(0)

    def close() -> None:
        if writable:
            for key in (saved_key, load_key):
                boto.delete_object(Bucket=bucket, Key=key)

    contenders: list[Contender] = [
        in_process(LOAD_SEQUENTIAL, loader(S3ReaderConstructor.sequential()), expected),
        in_process(LOAD_RANGED, loader(S3ReaderConstructor.range_based()), expected),
        in_process(LOAD_BOTO3, load_boto3, expected),
    ]
    checks: list[Check] = [Ratio(LOAD_SEQUENTIAL, LOAD_BOTO3), Ratio(LOAD_RANGED, LOAD_BOTO3)]
    if writable:
        contenders[:0] = [
            in_process(SAVE, save, expected, after=check_and_delete),
            in_process(SAVE_BOTO3, save_boto3, expected, after=check_and_delete),
        ]
        checks.insert(0, Ratio(SAVE, SAVE_BOTO3))
    notes = [
        f"{len(state)} float32 tensors ({3 * LARGE_WEIGHTS} large), torch.save'd: {file_size:,} bytes;"
        f" torch {torch.__version__}; default S3ClientConfig (part size {S3ClientConfig().part_size // MIB} MiB)",
        "every load is torch.load(..., weights_only=True)"
        + ("; each save is checked (HEAD: size) and deleted after it is measured" if writable else ""),
    ]
    what = "save and load" if writable else "load"
    return Scenario(
        title=f"S3Checkpoint, torch.save/torch.load of {file_size / MIB:,.0f} MiB, {what}, {profile}",
        unit="bytes",
        contenders=contenders,
        checks=checks,
        notes=notes,
        close=close,
    )


# ---- torch.distributed.checkpoint through S3StorageWriter / S3StorageReader ------------------------


def build_dcp(context: BenchContext, profile: str) -> Scenario:
    try:
        import torch
        import torch.distributed.checkpoint as dcp

        from s3torch.dcp import S3StorageReader, S3StorageWriter
        from s3torch.readers import S3ReaderConstructor
    except ImportError as error:
        raise Skip(f"s3torch-dcp or torch is not installed ({error})") from error
    import warnings

    # DCP warns on every call that torch.distributed is not initialized: one process is meant.
    warnings.filterwarnings("ignore", message="torch.distributed is disabled")

    store = context.store(profile)
    bucket = store.bucket
    writable = profile in WRITABLE
    boto = boto3_client(store)
    if profile == MOTO:
        _ensure_bucket(boto, bucket)
    state = make_state_dict(checkpoint_size(context, profile))
    total = tensor_bytes(state)
    model_keys = [key for key in state if key.startswith("model.")]
    model_bytes = sum(state[key].numel() * state[key].element_size() for key in model_keys)
    config = _config(store)
    saved_prefix = f"{context.key_prefix}dcp/saved"
    load_prefix = f"{context.key_prefix}dcp/load"
    saved_uri, load_uri = f"s3://{bucket}/{saved_prefix}", f"s3://{bucket}/{load_prefix}"

    # Unmeasured: the checkpoint the loads read, with DCP_THREADS files.
    if writable:
        dcp.save(
            state,
            storage_writer=S3StorageWriter(
                store.region, load_uri, s3client_config=config, thread_count=DCP_THREADS, endpoint=store.endpoint
            ),
        )
    else:
        directory = _served_directory(context, profile) / load_prefix
        shutil.rmtree(directory, ignore_errors=True)
        dcp.save(state, storage_writer=dcp.FileSystemWriter(str(directory), thread_count=DCP_THREADS))
    target = {key: torch.empty_like(value) for key, value in state.items()}
    partial_target = {key: target[key] for key in model_keys}

    def storage_reader(constructor: Any) -> S3StorageReader:
        return S3StorageReader(
            store.region, load_uri, s3client_config=config, reader_constructor=constructor, endpoint=store.endpoint
        )

    for constructor in (S3ReaderConstructor.sequential(), S3ReaderConstructor.dcp_optimized()):
        for tensor in target.values():
            tensor.zero_()
        dcp.load(target, storage_reader=storage_reader(constructor))
        if not _same(target, state):
            raise BenchmarkError("the DCP checkpoint read back differs from the one saved")

    def saver(thread_count: int) -> Any:
        def save() -> Transfer:
            writer = S3StorageWriter(
                store.region, saved_uri, s3client_config=config, thread_count=thread_count, endpoint=store.endpoint
            )
            dcp.save(state, storage_writer=writer)
            return Transfer(total)

        return save

    def check_and_delete() -> None:
        listed = boto.list_objects_v2(Bucket=bucket, Prefix=saved_prefix + "/").get("Contents", [])
        _delete_prefix(boto, bucket, saved_prefix + "/")
        if not any(entry["Key"].endswith("/.metadata") for entry in listed):
            raise BenchmarkError(f"the DCP save wrote no .metadata under {saved_prefix}")

    def loader(constructor: Any, into: dict[str, Any], size: int) -> Any:
        def load() -> Transfer:
            dcp.load(into, storage_reader=storage_reader(constructor))
            return Transfer(size)

        return load

    def close() -> None:
        if writable:
            for prefix in (saved_prefix, load_prefix):
                _delete_prefix(boto, bucket, prefix + "/")
        else:
            shutil.rmtree(_served_directory(context, profile) / load_prefix, ignore_errors=True)

    constructors = {
        "sequential": S3ReaderConstructor.sequential(),
        "range_based": S3ReaderConstructor.range_based(),
        "dcp_optimized": S3ReaderConstructor.dcp_optimized(),
    }
    contenders: list[Contender] = [
        in_process(DCP_LOAD[name], loader(constructor, target, total), Transfer(total))
        for name, constructor in constructors.items()
    ]
    contenders += [
        in_process(DCP_PARTIAL[name], loader(constructors[name], partial_target, model_bytes), Transfer(model_bytes))
        for name in DCP_PARTIAL
    ]
    checks: list[Check] = [
        Ratio(DCP_LOAD["dcp_optimized"], DCP_LOAD["sequential"], at_least=DCP_OPTIMIZED_VERSUS_SEQUENTIAL),
        Ratio(DCP_LOAD["dcp_optimized"], DCP_LOAD["sequential"], metric="cpu"),
        Ratio(DCP_LOAD["range_based"], DCP_LOAD["sequential"]),
        Ratio(DCP_PARTIAL["dcp_optimized"], DCP_PARTIAL["sequential"]),
    ]
    if writable:
        contenders[:0] = [
            in_process(DCP_SAVE_1, saver(1), Transfer(total), after=check_and_delete),
            in_process(DCP_SAVE_N, saver(DCP_THREADS), Transfer(total), after=check_and_delete),
        ]
        checks.insert(0, Ratio(DCP_SAVE_N, DCP_SAVE_1))
    notes = [
        f"{len(state)} float32 tensors ({3 * LARGE_WEIGHTS} large), {total:,} bytes; torch {torch.__version__};"
        f" the loads read a checkpoint of {DCP_THREADS} files"
        + (" written by S3StorageWriter" if writable else " written into nginx's directory by FileSystemWriter"),
        f"'model only': the {len(model_keys)} model.* tensors ({model_bytes:,} bytes), not the optimizer state;"
        " dcp_optimized with the default max_gap_size (32 MiB)",
        "each load is into preallocated tensors (DCP loads in place); one process, no process group",
    ]
    what = "save and load" if writable else "load"
    return Scenario(
        title=f"torch.distributed.checkpoint of {total / MIB:,.0f} MiB, {what}, {profile}",
        unit="bytes",
        contenders=contenders,
        checks=checks,
        notes=notes,
        close=close,
    )


for _profile, _where in (
    (MOTO, "the moto server"),
    (LOOPBACK, "nginx without limits"),
    (S3_LIKE, "nginx with S3-like latency and per-connection rate"),
    (REMOTE, "the store of S3TORCH_BENCH_ENDPOINT/BUCKET"),
):
    _what = "save and load" if _profile in WRITABLE else "load"
    register(
        f"checkpoint-{_profile}",
        _profile,
        f"S3Checkpoint torch.save/torch.load, {_what}, {_where}",
        functools.partial(build_checkpoint, profile=_profile),
    )
    register(
        f"dcp-{_profile}",
        _profile,
        f"torch.distributed.checkpoint {_what} with each reader strategy, {_where}",
        functools.partial(build_dcp, profile=_profile),
    )
