"""Checkpoints through s3torch-dcp, side by side with the upstream's (``s3torchconnector``):
``torch.save`` / ``torch.load`` through ``S3Checkpoint``, and ``torch.distributed.checkpoint``
save, full and partial load through ``S3StorageWriter`` / ``S3StorageReader`` with each reader
strategy.

The state dict looks like a training checkpoint: a model's weights (``model.*``: 4 large and 128
small float32 tensors) and its Adam optimizer state (``optim.*``: ``exp_avg`` and ``exp_avg_sq``
of each weight), ``CHECKPOINT_MIB`` in all (512 MiB by default, capped at ``--size-mib``), three
quarters in the 12 large tensors.

* ``checkpoint-<profile>`` (``S3Checkpoint``): ``torch.save`` into ``writer()`` (s3torch, the
  upstream) next to ``torch.save`` into memory plus boto3 ``upload_fileobj``; ``torch.load`` from
  ``reader()`` (sequential and range-based, s3torch and the upstream) next to boto3
  ``get_object().read()`` and s3fs ``open()``. MB/s count the bytes of the ``torch.save`` file.
* ``dcp-<profile>``: ``dcp.save`` with 1 and with ``DCP_THREADS`` files per rank; ``dcp.load`` of
  the whole state dict with each reader strategy (the checkpoint read was saved with
  ``DCP_THREADS`` files); and a partial ``dcp.load`` of the model's weights only (a third of the
  bytes, as for inference or fine-tuning from a training checkpoint); s3torch and the upstream.
  MB/s count the bytes of the tensors.

Stores: saves on moto (``CHECKPOINT_MOTO_MIB``; moto limits their speed, so compare client CPU),
loads from nginx loopback and s3-like (GET/Range only; the files are put in nginx's directory
first, unmeasured: moto re-reads the whole object for every ranged GET and would be the limit),
both on the store of ``S3TORCH_BENCH_*``.
"""

from __future__ import annotations

import functools
import io
import os
import shutil
from pathlib import Path
from typing import Any

import upstream
from botocore.exceptions import ClientError
from fixtures import boto3_client, s3fs_filesystem
from measure import BenchmarkError, Contender, Transfer, in_process
from scenario import BenchContext, Check, Ratio, Scenario, Skip, register, versus_upstream
from servers import LOOPBACK, MOTO, REMOTE, S3_LIKE, Store
from settings import MIB

from s3torch.client import S3ClientConfig

#: Size of the state dict (MiB), at most ``--size-mib``; ``S3TORCH_BENCH_CHECKPOINT_MIB``.
CHECKPOINT_MIB = 512
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
LOAD_S3FS = "torch.load <- s3fs open()"
UPSTREAM_SAVE = f"{upstream.PREFIX} {SAVE}"
UPSTREAM_LOAD_SEQUENTIAL = f"{upstream.PREFIX} {LOAD_SEQUENTIAL}"
UPSTREAM_LOAD_RANGED = f"{upstream.PREFIX} torch.load <- S3Client.get_object, range_based"
#: Issue 12's goals: torch.load >= 2x the upstream's where the server is not the limit; the
#: client CPU of torch.save <= 0.5x, of dcp.save <= 0.6x the upstream's; dcp load >= 2x.
LOAD_VERSUS_UPSTREAM = 2.0
SAVE_CPU_VERSUS_UPSTREAM = 0.5
DCP_SAVE_CPU_VERSUS_UPSTREAM = 0.6
DCP_LOAD_VERSUS_UPSTREAM = 2.0

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
UPSTREAM_DCP = {
    name: f"{upstream.PREFIX} {name}" for name in (DCP_SAVE_1, DCP_SAVE_N, *DCP_LOAD.values(), *DCP_PARTIAL.values())
}

#: The stores saves are measured on (nginx only serves reads), and those loads are measured on:
#: not moto, which re-reads the whole object for every ranged GET (the server would be the limit).
WRITABLE = (MOTO, REMOTE)
LOADS_MEASURED = (LOOPBACK, S3_LIKE, REMOTE)


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
    saves, loads = profile in WRITABLE, profile in LOADS_MEASURED
    boto = boto3_client(store)
    if profile == MOTO:
        _ensure_bucket(boto, bucket)
    state = make_state_dict(checkpoint_size(context, profile))
    buffer = io.BytesIO()
    torch.save(state, buffer)
    serialized = buffer.getbuffer()
    file_size = len(serialized)
    expected = Transfer(file_size)
    notes: list[str] = []

    checkpoint = S3Checkpoint(store.region, endpoint=store.endpoint, s3client_config=_config(store))
    theirs = upstream.checkpoint(store) if upstream.UNAVAILABLE is None else None
    saved_key = f"{context.key_prefix}checkpoint/saved.pt"
    load_key = f"{context.key_prefix}checkpoint/load.pt"
    saved_uri, load_uri = f"s3://{bucket}/{saved_key}", f"s3://{bucket}/{load_key}"

    # Unmeasured: the clients and connections warm, the file the loads read, checked once.
    if saves:
        warm_uri = f"s3://{bucket}/{context.key_prefix}checkpoint/warm.pt"
        for warm in (checkpoint, theirs):
            if warm is not None:
                with warm.writer(warm_uri) as writer:
                    writer.write(b"warm")
        boto.delete_object(Bucket=bucket, Key=f"{context.key_prefix}checkpoint/warm.pt")
    if loads:
        if saves:
            boto.upload_fileobj(io.BytesIO(serialized), bucket, load_key)
        else:
            target = _served_directory(context, profile) / load_key
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(serialized)
        if not _same(torch.load(checkpoint.reader(load_uri), weights_only=True), state):
            raise BenchmarkError("the checkpoint read back with S3Checkpoint differs from the one saved")
        if theirs is not None and not _same(torch.load(theirs.reader(load_uri), weights_only=True), state):
            raise BenchmarkError("the checkpoint read back with the upstream's S3Checkpoint differs from the one saved")
    del buffer, serialized

    def saver(target: Any) -> Any:
        def save() -> Transfer:
            with target.writer(saved_uri) as writer:
                torch.save(state, writer)
            return expected

        return save

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

    def loaded(file: Any) -> Transfer:
        result = torch.load(file, weights_only=True)
        return expected if len(result) == len(state) else Transfer(0)

    def loader(constructor: Any) -> Any:
        return lambda: loaded(checkpoint.reader(load_uri, reader_constructor=constructor))

    def load_boto3() -> Transfer:
        return loaded(io.BytesIO(boto.get_object(Bucket=bucket, Key=load_key)["Body"].read()))

    def close() -> None:
        if saves:
            for key in (saved_key, load_key):
                boto.delete_object(Bucket=bucket, Key=key)

    contenders: list[Contender] = []
    checks: list[Check] = []
    pairs: list[tuple[str, str]] = []
    if saves:
        contenders += [
            in_process(SAVE, saver(checkpoint), expected, after=check_and_delete),
            in_process(SAVE_BOTO3, save_boto3, expected, after=check_and_delete),
        ]
        if theirs is not None:
            contenders.append(in_process(UPSTREAM_SAVE, saver(theirs), expected, after=check_and_delete))
        checks += [*versus_upstream(SAVE, UPSTREAM_SAVE, cpu_at_most=SAVE_CPU_VERSUS_UPSTREAM), Ratio(SAVE, SAVE_BOTO3)]
        pairs.append((SAVE, UPSTREAM_SAVE))
        notes.append(
            f"saves: the server ({profile}) limits the speed; compare the client CPU per GiB. Each save is"
            " checked (HEAD: size) and deleted after it is measured"
        )
    if loads:
        contenders += [
            in_process(LOAD_SEQUENTIAL, loader(S3ReaderConstructor.sequential()), expected),
            in_process(LOAD_RANGED, loader(S3ReaderConstructor.range_based()), expected),
            in_process(LOAD_BOTO3, load_boto3, expected),
        ]
        if theirs is not None:
            their_client = upstream.client(store)
            ranged = upstream.reader_constructors().range_based()
            contenders += [
                in_process(UPSTREAM_LOAD_SEQUENTIAL, lambda: loaded(theirs.reader(load_uri)), expected),
                in_process(
                    UPSTREAM_LOAD_RANGED,
                    lambda: loaded(their_client.get_object(bucket, load_key, reader_constructor=ranged)),
                    expected,
                ),
            ]
        filesystem = s3fs_filesystem(store)
        if isinstance(filesystem, str):
            notes.append(f"{LOAD_S3FS}: not measured, {filesystem}")
        else:
            filesystem.info(f"{bucket}/{load_key}")

            def load_s3fs() -> Transfer:
                with filesystem.open(f"{bucket}/{load_key}", "rb") as file:
                    return loaded(file)

            contenders.append(in_process(LOAD_S3FS, load_s3fs, expected))
        goal = LOAD_VERSUS_UPSTREAM if profile == LOOPBACK else None
        checks += [
            *versus_upstream(LOAD_SEQUENTIAL, UPSTREAM_LOAD_SEQUENTIAL, at_least=goal),
            *versus_upstream(LOAD_RANGED, UPSTREAM_LOAD_RANGED),
            Ratio(LOAD_SEQUENTIAL, LOAD_BOTO3),
            Ratio(LOAD_SEQUENTIAL, LOAD_S3FS),
        ]
        pairs += [(LOAD_SEQUENTIAL, UPSTREAM_LOAD_SEQUENTIAL), (LOAD_RANGED, UPSTREAM_LOAD_RANGED)]
        notes.append(
            "every load is torch.load(..., weights_only=True); "
            + (f"the file is served by {profile}" if not saves else "the file was uploaded first, unmeasured")
        )
    if theirs is None:
        notes.append(upstream.skip_note("S3Checkpoint"))
    notes.insert(
        0,
        f"{len(state)} float32 tensors ({3 * LARGE_WEIGHTS} large), torch.save'd: {file_size:,} bytes;"
        f" torch {torch.__version__}; default S3ClientConfig (part size {S3ClientConfig().part_size // MIB} MiB)",
    )
    what = " and ".join(name for name, measured in (("save", saves), ("load", loads)) if measured)
    return Scenario(
        title=f"S3Checkpoint, torch.save/torch.load of {file_size / MIB:,.0f} MiB, {what}, {profile}",
        unit="bytes",
        contenders=contenders,
        checks=checks,
        notes=notes,
        close=close,
        pairs=pairs,
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
    saves, loads = profile in WRITABLE, profile in LOADS_MEASURED
    with_upstream = upstream.DCP_UNAVAILABLE is None
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
    target = {key: torch.empty_like(value) for key, value in state.items()}
    partial_target = {key: target[key] for key in model_keys}
    strategies = ("sequential", "range_based", "dcp_optimized")

    def ours(strategy: str) -> Any:
        return getattr(S3ReaderConstructor, strategy)()

    def theirs(strategy: str) -> Any:
        return getattr(upstream.reader_constructors(), strategy)()

    def storage_reader(strategy: str) -> S3StorageReader:
        return S3StorageReader(
            store.region, load_uri, s3client_config=config, reader_constructor=ours(strategy), endpoint=store.endpoint
        )

    def upstream_storage_reader(strategy: str) -> Any:
        return upstream.storage_reader(store, load_uri, theirs(strategy))

    # Unmeasured: the checkpoint the loads read, with DCP_THREADS files, read back and checked.
    if loads:
        if saves:
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
        readers = [storage_reader("sequential"), storage_reader("dcp_optimized")]
        if with_upstream:
            readers += [upstream_storage_reader("sequential"), upstream_storage_reader("dcp_optimized")]
        for reader in readers:
            for tensor in target.values():
                tensor.zero_()
            dcp.load(target, storage_reader=reader)
            if not _same(target, state):
                raise BenchmarkError(f"the DCP checkpoint read back by {type(reader).__module__} differs")

    def saver(thread_count: int, upstream_writer: bool = False) -> Any:
        def save() -> Transfer:
            if upstream_writer:
                writer = upstream.storage_writer(store, saved_uri, thread_count)
            else:
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

    def loader(make_reader: Any, strategy: str, into: dict[str, Any], size: int) -> Any:
        def load() -> Transfer:
            dcp.load(into, storage_reader=make_reader(strategy))
            return Transfer(size)

        return load

    def close() -> None:
        if saves:
            for prefix in (saved_prefix, load_prefix):
                _delete_prefix(boto, bucket, prefix + "/")
        else:
            shutil.rmtree(_served_directory(context, profile) / load_prefix, ignore_errors=True)

    contenders: list[Contender] = []
    checks: list[Check] = []
    pairs: list[tuple[str, str]] = []
    notes = [
        f"{len(state)} float32 tensors ({3 * LARGE_WEIGHTS} large), {total:,} bytes; torch {torch.__version__}",
    ]
    if saves:
        contenders += [
            in_process(DCP_SAVE_1, saver(1), Transfer(total), after=check_and_delete),
            in_process(DCP_SAVE_N, saver(DCP_THREADS), Transfer(total), after=check_and_delete),
        ]
        if with_upstream:
            contenders += [
                in_process(UPSTREAM_DCP[DCP_SAVE_1], saver(1, True), Transfer(total), after=check_and_delete),
                in_process(UPSTREAM_DCP[DCP_SAVE_N], saver(DCP_THREADS, True), Transfer(total), after=check_and_delete),
            ]
        for name in (DCP_SAVE_1, DCP_SAVE_N):
            checks += versus_upstream(name, UPSTREAM_DCP[name], cpu_at_most=DCP_SAVE_CPU_VERSUS_UPSTREAM)
            pairs.append((name, UPSTREAM_DCP[name]))
        checks.append(Ratio(DCP_SAVE_N, DCP_SAVE_1))
        notes.append(f"saves: the server ({profile}) limits the speed; compare the client CPU per GiB")
    if loads:
        contenders += [
            in_process(DCP_LOAD[name], loader(storage_reader, name, target, total), Transfer(total))
            for name in strategies
        ]
        contenders += [
            in_process(
                DCP_PARTIAL[name], loader(storage_reader, name, partial_target, model_bytes), Transfer(model_bytes)
            )
            for name in DCP_PARTIAL
        ]
        if with_upstream:
            contenders += [
                in_process(
                    UPSTREAM_DCP[DCP_LOAD[name]],
                    loader(upstream_storage_reader, name, target, total),
                    Transfer(total),
                )
                for name in strategies
            ]
            contenders += [
                in_process(
                    UPSTREAM_DCP[DCP_PARTIAL[name]],
                    loader(upstream_storage_reader, name, partial_target, model_bytes),
                    Transfer(model_bytes),
                )
                for name in DCP_PARTIAL
            ]
        goal = DCP_LOAD_VERSUS_UPSTREAM if profile == LOOPBACK else None
        for name in [*DCP_LOAD.values(), *DCP_PARTIAL.values()]:
            name_goal = goal if name == DCP_LOAD["dcp_optimized"] else None
            checks += versus_upstream(name, UPSTREAM_DCP[name], at_least=name_goal)
            pairs.append((name, UPSTREAM_DCP[name]))
        checks += [
            Ratio(DCP_LOAD["dcp_optimized"], DCP_LOAD["sequential"], at_least=DCP_OPTIMIZED_VERSUS_SEQUENTIAL),
            Ratio(DCP_LOAD["range_based"], DCP_LOAD["sequential"]),
            Ratio(DCP_PARTIAL["dcp_optimized"], DCP_PARTIAL["sequential"]),
        ]
        notes += [
            f"the loads read a checkpoint of {DCP_THREADS} files"
            + (" written by S3StorageWriter" if saves else f" written into nginx's directory, served by {profile}"),
            f"'model only': the {len(model_keys)} model.* tensors ({model_bytes:,} bytes), not the optimizer state;"
            " dcp_optimized with the default max_gap_size (32 MiB)",
            "each load is into preallocated tensors (DCP loads in place); one process, no process group",
        ]
    if with_upstream:
        notes.append(
            f"{upstream.PREFIX}: its S3StorageWriter/S3StorageReader take no endpoint; their file system is an"
            " S3FileSystem on an S3Client with one (its s3_client argument)"
        )
    else:
        notes.append(upstream.skip_note("DCP", upstream.DCP_UNAVAILABLE))
    what = " and ".join(name for name, measured in (("save", saves), ("load", loads)) if measured)
    return Scenario(
        title=f"torch.distributed.checkpoint of {total / MIB:,.0f} MiB, {what}, {profile}",
        unit="bytes",
        contenders=contenders,
        checks=checks,
        notes=notes,
        close=close,
        pairs=pairs,
    )


for _profile, _where in (
    (MOTO, "the moto server"),
    (LOOPBACK, "nginx without limits"),
    (S3_LIKE, "nginx with S3-like latency and per-connection rate"),
    (REMOTE, "the store of S3TORCH_BENCH_ENDPOINT/BUCKET"),
):
    _kinds = (("save", _profile in WRITABLE), ("load", _profile in LOADS_MEASURED))
    _what = " and ".join(name for name, kept in _kinds if kept)
    register(
        f"checkpoint-{_profile}",
        _profile,
        f"S3Checkpoint torch.save/torch.load, {_what}, {_where}",
        functools.partial(build_checkpoint, profile=_profile),
    )
    register(
        f"dcp-{_profile}",
        _profile,
        f"torch.distributed.checkpoint {_what}"
        + (" with each reader strategy" if _profile in LOADS_MEASURED else "")
        + f", {_where}",
        functools.partial(build_dcp, profile=_profile),
    )
