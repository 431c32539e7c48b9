"""``S3StorageWriter`` over moto's in-process S3: construction, plans, layout, overwrite,
and that a save with a failed file never publishes ``.metadata``."""

from __future__ import annotations

import dataclasses
import io
import pickle
from collections.abc import Generator
from contextlib import contextmanager
from typing import Any

import pytest
import torch
import torch.distributed.checkpoint as dcp
from dcp_support import CONFIG, REGION, MockBucket, assert_state_dicts_equal, single_process, state_dict, zeros_like
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.filesystem import _StoragePrefix
from torch.distributed.checkpoint.planner import SavePlan

from s3torch.dcp import (
    BinaryPrefixStrategy,
    DefaultPrefixStrategy,
    RoundRobinPrefixStrategy,
    S3FileSystem,
    S3StorageReader,
    S3StorageWriter,
)


def writer(uri: str, **kwargs: Any) -> S3StorageWriter:
    kwargs.setdefault("s3client_config", CONFIG)
    return S3StorageWriter(REGION, uri, **kwargs)


def reader(uri: str, **kwargs: Any) -> S3StorageReader:
    kwargs.setdefault("s3client_config", CONFIG)
    return S3StorageReader(REGION, uri, **kwargs)


# ---- construction ---------------------------------------------------------------------------


def test_defaults() -> None:
    storage = S3StorageWriter(REGION, "s3://bucket/ckpt")
    assert storage.thread_count == 1
    assert storage.sync_files is False
    assert isinstance(storage.prefix_strategy, DefaultPrefixStrategy)
    assert isinstance(storage.fs, S3FileSystem)
    assert storage.path == "s3://bucket/ckpt"
    assert storage.checkpoint_id == "s3://bucket/ckpt"
    assert storage.overwrite is True  # FileSystemWriter's default


@pytest.mark.parametrize("thread_count", [1, 2, 4, 8, 16])
def test_thread_count(thread_count: int) -> None:
    assert S3StorageWriter(REGION, "s3://bucket/ckpt", thread_count=thread_count).thread_count == thread_count


@pytest.mark.parametrize("thread_count", [0, -1, 1.5, "2", True])
def test_thread_count_must_be_positive(thread_count: object) -> None:
    with pytest.raises(ValueError, match="thread_count must be a positive integer"):
        S3StorageWriter(REGION, "s3://bucket/ckpt", thread_count=thread_count)  # type: ignore[arg-type]


def test_kwargs_reach_file_system_writer_and_sync_files_stays_off() -> None:
    storage = S3StorageWriter(REGION, "s3://bucket/ckpt", overwrite=False, sync_files=True, per_thread_copy_ahead=5)
    assert storage.overwrite is False
    assert storage.sync_files is False
    assert storage.per_thread_copy_ahead == 5


def test_settings_reach_the_client() -> None:
    strategy = BinaryPrefixStrategy()
    storage = S3StorageWriter(
        REGION, "s3://bucket/ckpt", s3client_config=CONFIG, prefix_strategy=strategy, endpoint="http://127.0.0.1:1"
    )
    assert storage.prefix_strategy is strategy
    client = storage.fs.client  # type: ignore[attr-defined]
    assert client.endpoint == "http://127.0.0.1:1"
    assert client.s3client_config is CONFIG
    assert "(dcp; " in client.user_agent_prefix


def test_validate_checkpoint_id_delegates() -> None:
    assert S3StorageWriter.validate_checkpoint_id("s3://bucket/ckpt")
    assert not S3StorageWriter.validate_checkpoint_id("foobar")
    assert not S3StorageWriter.validate_checkpoint_id("s3:///")


def test_pickles() -> None:
    storage = writer("s3://bucket/ckpt", thread_count=3, prefix_strategy=RoundRobinPrefixStrategy(["a", "b"]))
    copy = pickle.loads(pickle.dumps(storage))
    assert copy.path == "s3://bucket/ckpt"
    assert copy.thread_count == 3
    assert copy.prefix_strategy(1) == "b/__1_"


# ---- plans --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("strategy", "prefixes"),
    [
        (None, ["__0_", "__1_", "__2_"]),
        (BinaryPrefixStrategy(prefix_count=3), ["00/__0_", "10/__1_", "01/__2_"]),
        (RoundRobinPrefixStrategy(["x", "y"], epoch_num=4), ["x/epoch_4/__0_", "y/epoch_4/__1_", "x/epoch_4/__2_"]),
    ],
)
def test_prepare_global_plan_assigns_the_strategy_prefixes(
    s3: MockBucket, strategy: BinaryPrefixStrategy | None, prefixes: list[str]
) -> None:
    if isinstance(strategy, BinaryPrefixStrategy):
        strategy = BinaryPrefixStrategy(min_prefix_length=2, prefix_count=3)
    storage = writer(s3.uri("ckpt"), prefix_strategy=strategy)
    plans = [SavePlan([]), SavePlan([], storage_data=_StoragePrefix("ignored")), SavePlan([], planner_data="kept")]
    result = storage.prepare_global_plan(plans)
    assert [plan.storage_data for plan in result] == [_StoragePrefix(prefix) for prefix in prefixes]
    assert result[2].planner_data == "kept"


def test_prepare_global_plan_without_collectives_uses_the_rank(s3: MockBucket) -> None:
    storage = writer(s3.uri("ckpt"))
    storage.set_up_storage_writer(True, rank=5, use_collectives=False)
    assert storage.prepare_global_plan([SavePlan([])])[0].storage_data == _StoragePrefix("__5_")


def test_overwriting_deletes_the_old_metadata_before_any_file_is_written(s3: MockBucket) -> None:
    s3.put("ckpt/.metadata", b"old")
    s3.put("ckpt/__0_0.distcp", b"old")
    writer(s3.uri("ckpt")).prepare_global_plan([SavePlan([])])
    assert s3.list_keys() == ["ckpt/__0_0.distcp"]


def test_without_overwrite_nothing_is_deleted(s3: MockBucket) -> None:
    s3.put("ckpt/.metadata", b"old")
    writer(s3.uri("ckpt"), overwrite=False).prepare_global_plan([SavePlan([])])
    assert s3.list_keys() == ["ckpt/.metadata"]


# ---- saves --------------------------------------------------------------------------------


@pytest.mark.parametrize("thread_count", [1, 2, 4])
def test_files_written_are_thread_count_plus_metadata(s3: MockBucket, thread_count: int) -> None:
    source = state_dict(tensors=8)
    with single_process():
        dcp.save(source, storage_writer=writer(s3.uri("ckpt"), thread_count=thread_count))
    assert s3.list_keys() == ["ckpt/.metadata", *[f"ckpt/__0_{index}.distcp" for index in range(thread_count)]]
    loaded = zeros_like(source)
    with single_process():
        dcp.load(loaded, storage_reader=reader(s3.uri("ckpt")))
    assert_state_dicts_equal(loaded, source)


def test_checkpoint_id_moves_the_writer(s3: MockBucket) -> None:
    with single_process():
        dcp.save(state_dict(), storage_writer=writer(s3.uri("first")), checkpoint_id=s3.uri("second"))
    assert {key.split("/")[0] for key in s3.list_keys()} == {"second"}


def test_overwrite_false_refuses_an_existing_checkpoint(s3: MockBucket) -> None:
    with single_process():
        dcp.save(state_dict(seed=1), storage_writer=writer(s3.uri("ckpt")))
        before = s3.read("ckpt/.metadata")
        with pytest.raises(CheckpointException, match="Checkpoint already exists"):
            dcp.save(state_dict(seed=2), storage_writer=writer(s3.uri("ckpt"), overwrite=False))
    assert s3.read("ckpt/.metadata") == before


def test_overwrite_true_replaces_the_checkpoint(s3: MockBucket) -> None:
    with single_process():
        dcp.save(state_dict(seed=1), storage_writer=writer(s3.uri("ckpt")))
        dcp.save(state_dict(seed=2), storage_writer=writer(s3.uri("ckpt"), overwrite=True))
        loaded = zeros_like(state_dict())
        dcp.load(loaded, storage_reader=reader(s3.uri("ckpt")))
    assert_state_dicts_equal(loaded, state_dict(seed=2))
    assert ".metadata.tmp" not in " ".join(s3.list_keys())


@pytest.mark.parametrize(("thread_count", "failing_file"), [(1, 0), (2, 0), (2, 1), (4, 3)])
def test_a_failed_file_publishes_no_metadata(
    s3: MockBucket, monkeypatch: pytest.MonkeyPatch, thread_count: int, failing_file: int
) -> None:
    """Whichever thread writes the failing file (FileSystemWriter only prints the exceptions of
    its extra threads), the save fails and there is no ``.metadata``."""
    real = S3FileSystem.create_stream

    @contextmanager
    def failing_create_stream(self: S3FileSystem, path: str, mode: str) -> Generator[io.IOBase, None, None]:
        with real(self, path, mode) as stream:
            if mode == "wb" and str(path).endswith(f"__0_{failing_file}.distcp"):
                stream.write(b"partial")
                raise OSError("injected failure of one checkpoint file")
            yield stream

    monkeypatch.setattr(S3FileSystem, "create_stream", failing_create_stream)
    monkeypatch.setattr("threading.excepthook", lambda args: None)  # the extra threads' printout
    with single_process(), pytest.raises(CheckpointException) as error:
        dcp.save(state_dict(tensors=8), storage_writer=writer(s3.uri("ckpt"), thread_count=thread_count))
    assert "injected failure of one checkpoint file" in str(error.value)
    keys = s3.list_keys()
    assert "ckpt/.metadata" not in keys
    assert f"ckpt/__0_{failing_file}.distcp" not in keys  # the failed file was not published either
    assert s3.uploads() == []


def test_missing_results_are_refused_even_without_an_exception(s3: MockBucket, monkeypatch: pytest.MonkeyPatch) -> None:
    from torch.distributed.checkpoint.filesystem import FileSystemWriter
    from torch.futures import Future

    original = FileSystemWriter.write_data

    def lossy_write_data(self: FileSystemWriter, plan: SavePlan, planner: Any) -> Future[Any]:
        future = original(self, plan, planner)
        lossy: Future[Any] = Future()
        lossy.set_result(future.wait()[1:])
        return lossy

    monkeypatch.setattr(FileSystemWriter, "write_data", lossy_write_data)
    with single_process(), pytest.raises(CheckpointException, match="items of this rank were written"):
        dcp.save(state_dict(), storage_writer=writer(s3.uri("ckpt")))
    assert "ckpt/.metadata" not in s3.list_keys()


def test_a_failed_overwrite_leaves_no_metadata(s3: MockBucket, monkeypatch: pytest.MonkeyPatch) -> None:
    with single_process():
        dcp.save(state_dict(seed=1), storage_writer=writer(s3.uri("ckpt")))
    real = S3FileSystem.create_stream

    @contextmanager
    def failing_create_stream(self: S3FileSystem, path: str, mode: str) -> Generator[io.IOBase, None, None]:
        if mode == "wb" and str(path).endswith(".distcp"):
            raise OSError("injected")
        with real(self, path, mode) as stream:
            yield stream

    monkeypatch.setattr(S3FileSystem, "create_stream", failing_create_stream)
    with single_process(), pytest.raises(CheckpointException):
        dcp.save(state_dict(seed=2), storage_writer=writer(s3.uri("ckpt")))
    # The old .metadata would describe files this save may have replaced: it is gone.
    assert "ckpt/.metadata" not in s3.list_keys()


def test_async_save(s3: MockBucket) -> None:
    source = state_dict(seed=4)
    with single_process():
        future = dcp.async_save(source, storage_writer=writer(s3.uri("async"), thread_count=2))
        future.result()
        loaded = zeros_like(source)
        dcp.load(loaded, storage_reader=reader(s3.uri("async")))
    assert_state_dicts_equal(loaded, source)


def test_plan_items_survive_dataclass_replace() -> None:
    plan = SavePlan(items=[], storage_data=None, planner_data={"a": 1}, usable=False)
    replaced = dataclasses.replace(plan, storage_data=_StoragePrefix("p"))
    assert replaced.usable is False and replaced.planner_data == {"a": 1}
    assert torch.__version__  # torch imported for the planner types
