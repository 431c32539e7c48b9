"""Save and load of a Lightning checkpoint: ``S3LightningCheckpoint`` to and from a store, side by
side with Lightning's default ``TorchCheckpointIO`` on the local disk.

The checkpoint is the dictionary Lightning hands to ``CheckpointIO.save_checkpoint``: a
``state_dict`` of float32 tensors (``LIGHTNING_CHECKPOINT_MIB``, 512 MiB by default, capped at
``--size-mib``) with the usual trainer entries around it. MB/s and CPU-s/GiB count the bytes of
the serialized file.

* ``lightning-moto``: saves to the moto server. moto is CPU-bound on a small machine (see README):
  its numbers say more about moto than about s3torch. Loads are not measured against moto: it
  re-reads the whole object for every ranged GET, so the client's parallel part GETs of a large
  object cost moto ~65 CPU-s/GiB (one 512 MiB load took over a minute at ~8 MB/s here).
* ``lightning-load-loopback`` / ``lightning-load-s3-like``: loads served by nginx (GET only), the
  read stores of the other scenarios: without limits, and with S3's first-byte latency and
  per-connection rate cap.
* ``lightning-remote``: save and load against the store of ``S3TORCH_BENCH_*``.

``TorchCheckpointIO`` serializes into memory and writes the file through fsspec without
``fsync`` (as Lightning does), so its writes land in the page cache, and its loads read a file
just written, from the page cache too: the local rows are an upper bound of what a disk gives.
"""

from __future__ import annotations

import functools
import shutil
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import upstream
from botocore.exceptions import ClientError
from fixtures import DiscardSink, boto3_client
from measure import BenchmarkError, Contender, Transfer, in_process
from scenario import BenchContext, Check, Ratio, Scenario, Skip, register, versus_upstream
from servers import LOOPBACK, MOTO, REMOTE, S3_LIKE
from settings import MIB

from s3torch.client import S3ClientConfig

LIGHTNING_CHECKPOINT_MIB = 512
TENSORS = 8  # state_dict entries the checkpoint is split into

S3_SAVE = "S3LightningCheckpoint save"
LOCAL_SAVE = "TorchCheckpointIO save, local disk"
S3_LOAD = "S3LightningCheckpoint load"
LOCAL_LOAD = "TorchCheckpointIO load, local disk"
UPSTREAM_SAVE = f"{upstream.PREFIX} {S3_SAVE}"
UPSTREAM_LOAD = f"{upstream.PREFIX} {S3_LOAD}"

#: The stores that take writes (nginx only serves reads), and those loads are measured on.
WRITABLE = (MOTO, REMOTE)
LOADS_MEASURED = (LOOPBACK, S3_LIKE, REMOTE)


def make_checkpoint(size: int) -> dict[str, Any]:
    """What ``Trainer.save_checkpoint`` passes its ``CheckpointIO``, with ``size`` bytes of weights."""
    import torch

    generator = torch.Generator().manual_seed(0)
    per_tensor = size // TENSORS // 4  # float32 elements
    state_dict = OrderedDict(
        (f"layers.{index}.weight", torch.rand(per_tensor, generator=generator)) for index in range(TENSORS)
    )
    return {
        "epoch": 3,
        "global_step": 1200,
        "pytorch-lightning_version": "2.6",
        "state_dict": state_dict,
        "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"current": {"completed": 3}}}},
        "callbacks": {"ModelCheckpoint": {"best_model_path": "", "best_model_score": None}},
        "optimizer_states": [{"state": {}, "param_groups": [{"lr": 0.01, "params": list(range(TENSORS))}]}],
        "lr_schedulers": [],
        "hyper_parameters": {"layers": TENSORS},
    }


def _ensure_bucket(client: Any, bucket: str) -> None:
    try:
        client.create_bucket(Bucket=bucket)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise


def _same_weights(loaded: dict[str, Any], checkpoint: dict[str, Any]) -> bool:
    import torch

    expected = checkpoint["state_dict"]
    return list(loaded["state_dict"]) == list(expected) and all(
        torch.equal(loaded["state_dict"][name], tensor) for name, tensor in expected.items()
    )


def build(context: BenchContext, profile: str) -> Scenario:
    try:
        import lightning
        import torch
        from lightning.pytorch.plugins.io import TorchCheckpointIO

        from s3torch.lightning import S3LightningCheckpoint
    except ImportError as error:
        raise Skip(f"s3torch-lightning or lightning is not installed ({error})") from error

    store = context.store(profile)
    bucket = store.bucket
    writable, loads = profile in WRITABLE, profile in LOADS_MEASURED
    size = min(LIGHTNING_CHECKPOINT_MIB * MIB, context.settings.size)
    boto = boto3_client(store) if writable else None
    if profile == MOTO:
        _ensure_bucket(boto, bucket)

    checkpoint = make_checkpoint(size)
    counter = DiscardSink()
    torch.save(checkpoint, counter)
    file_size = counter.written
    expected = Transfer(file_size)

    plugin = S3LightningCheckpoint(store.region, S3ClientConfig(force_path_style=store.path_style), store.endpoint)
    theirs = upstream.lightning_checkpoint(store) if upstream.LIGHTNING_UNAVAILABLE is None else None
    local_io = TorchCheckpointIO()
    directory = Path(tempfile.mkdtemp(prefix="s3torch-bench-lightning-"))
    saved_key = f"{context.key_prefix}lightning/saved.ckpt"
    load_key = f"{context.key_prefix}lightning/load.ckpt"
    saved_uri, load_uri = f"s3://{bucket}/{saved_key}", f"s3://{bucket}/{load_key}"
    saved_file, load_file = directory / "saved.ckpt", directory / "load.ckpt"

    # Unmeasured: the client and connections warm, the checkpoints the loads read in place, and
    # what is read back checked once.
    if writable:
        for warm in (plugin, theirs):
            if warm is not None:
                warm.save_checkpoint({"warm": 1}, saved_uri)
                warm.remove_checkpoint(saved_uri)
    if loads:
        local_io.save_checkpoint(checkpoint, str(load_file))
        if writable:
            plugin.save_checkpoint(checkpoint, load_uri)
        else:  # nginx serves <root>/<bucket>/<key>
            served = context.read_objects._directory
            if served is None:
                raise Skip(f"no directory is served by the {profile} store")
            (served / load_key).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(load_file, served / load_key)
        if not _same_weights(plugin.load_checkpoint(load_uri), checkpoint):
            raise BenchmarkError("the checkpoint read back from the store differs from the one saved")
        if theirs is not None and not _same_weights(theirs.load_checkpoint(load_uri), checkpoint):
            raise BenchmarkError("the checkpoint the upstream read back from the store differs from the one saved")
        if not _same_weights(local_io.load_checkpoint(str(load_file)), checkpoint):
            raise BenchmarkError("the checkpoint read back from disk differs from the one saved")

    def saver(target: Any) -> Any:
        def save() -> Transfer:
            target.save_checkpoint(checkpoint, saved_uri)
            return expected

        return save

    def check_and_delete_object() -> None:
        assert boto is not None
        written = boto.head_object(Bucket=bucket, Key=saved_key)["ContentLength"]
        boto.delete_object(Bucket=bucket, Key=saved_key)
        if written != file_size:
            raise BenchmarkError(f"the saved checkpoint has {written} bytes, expected {file_size}")

    def local_save() -> Transfer:
        local_io.save_checkpoint(checkpoint, str(saved_file))
        return expected

    def check_and_delete_file() -> None:
        written = saved_file.stat().st_size
        saved_file.unlink()
        if written != file_size:
            raise BenchmarkError(f"the saved checkpoint file has {written} bytes, expected {file_size}")

    def loader(source: Any) -> Any:
        def load() -> Transfer:
            loaded = source.load_checkpoint(load_uri)
            return expected if len(loaded["state_dict"]) == TENSORS else Transfer(0)

        return load

    def local_load() -> Transfer:
        loaded = local_io.load_checkpoint(str(load_file))
        return expected if len(loaded["state_dict"]) == TENSORS else Transfer(0)

    def close() -> None:
        shutil.rmtree(directory, ignore_errors=True)
        if boto is not None:
            for key in (saved_key, load_key):
                boto.delete_object(Bucket=bucket, Key=key)

    contenders: list[Contender] = []
    checks: list[Check] = []
    pairs: list[tuple[str, str]] = []
    if writable:
        contenders += [
            in_process(S3_SAVE, saver(plugin), expected, after=check_and_delete_object),
            in_process(LOCAL_SAVE, local_save, expected, after=check_and_delete_file),
        ]
        if theirs is not None:
            contenders.append(in_process(UPSTREAM_SAVE, saver(theirs), expected, after=check_and_delete_object))
        checks += [*versus_upstream(S3_SAVE, UPSTREAM_SAVE), Ratio(S3_SAVE, LOCAL_SAVE)]
        pairs.append((S3_SAVE, UPSTREAM_SAVE))
    if loads:
        contenders += [in_process(S3_LOAD, loader(plugin), expected), in_process(LOCAL_LOAD, local_load, expected)]
        if theirs is not None:
            contenders.append(in_process(UPSTREAM_LOAD, loader(theirs), expected))
        checks += [*versus_upstream(S3_LOAD, UPSTREAM_LOAD), Ratio(S3_LOAD, LOCAL_LOAD)]
        pairs.append((S3_LOAD, UPSTREAM_LOAD))
    notes = [
        f"state_dict of {TENSORS} float32 tensors plus trainer entries, torch.save'd: {file_size:,} bytes;"
        f" lightning {lightning.__version__}, torch {torch.__version__}",
        f"S3LightningCheckpoint: default S3ClientConfig (part size {S3ClientConfig().part_size // MIB} MiB),"
        " default (sequential) reader"
        + ("; each save is checked (HEAD: size) and deleted after it is measured" if writable else ""),
        f"local disk: files in {directory.parent}, written without fsync and read from a warm page cache",
    ]
    if theirs is None:
        notes.append(upstream.skip_note("S3LightningCheckpoint", upstream.LIGHTNING_UNAVAILABLE))
    if writable and profile == MOTO:
        notes.append("saves: moto limits the speed; compare the client CPU per GiB")
    what = " and ".join(name for name, measured in (("save", writable), ("load", loads)) if measured)
    return Scenario(
        title=f"Lightning checkpoint of {file_size / MIB:,.0f} MiB, {what}: {profile} vs local disk",
        unit="bytes",
        contenders=contenders,
        checks=checks,
        notes=notes,
        close=close,
        pairs=pairs,
    )


for _key, _profile, _description in (
    ("lightning-moto", MOTO, "save of a Lightning checkpoint to a moto server vs TorchCheckpointIO on disk"),
    ("lightning-load-loopback", LOOPBACK, "load of a Lightning checkpoint from nginx without limits vs disk"),
    ("lightning-load-s3-like", S3_LIKE, "load of a Lightning checkpoint from nginx with S3-like latency vs disk"),
    ("lightning-remote", REMOTE, "save and load of a Lightning checkpoint, the store of S3TORCH_BENCH_* vs disk"),
):
    register(_key, _profile, _description, functools.partial(build, profile=_profile))
