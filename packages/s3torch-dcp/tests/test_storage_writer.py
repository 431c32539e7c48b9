"""``S3StorageWriter`` over moto's in-process S3: construction, plans, layout, overwrite,
that a save with a failed file never publishes ``.metadata``, that ``.metadata`` goes up with
one PUT straight to its key, and that with ``overwrite=False`` every object of a save is created
only where none exists, even when another writer races the save."""

from __future__ import annotations

import dataclasses
import io
import pickle
import threading
from collections.abc import Generator
from contextlib import contextmanager
from typing import Any

import pytest
import torch
import torch.distributed.checkpoint as dcp
from dcp_support import (
    CONFIG,
    MIB,
    REGION,
    MockBucket,
    assert_state_dicts_equal,
    single_process,
    state_dict,
    zeros_like,
)
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.metadata import Metadata
from torch.distributed.checkpoint.planner import SavePlan, SavePlanner
from torch.distributed.checkpoint.storage import WriteResult
from torch.futures import Future

from s3torch.client import S3Client, S3Exception
from s3torch.dcp import (
    BinaryPrefixStrategy,
    DefaultPrefixStrategy,
    HexPrefixStrategy,
    RoundRobinPrefixStrategy,
    S3FileSystem,
    S3StorageReader,
    S3StorageWriter,
)
from s3torch.dcp._torch_compat import CURRENT_DCP_VERSION, StoragePrefix


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
    plans = [SavePlan([]), SavePlan([], storage_data=StoragePrefix("ignored")), SavePlan([], planner_data="kept")]
    result = storage.prepare_global_plan(plans)
    assert [plan.storage_data for plan in result] == [StoragePrefix(prefix) for prefix in prefixes]
    assert result[2].planner_data == "kept"


def test_prepare_global_plan_takes_the_prefix_count_from_the_plans_of_the_save(s3: MockBucket) -> None:
    # The strategy is built with no process group (prefix_count would be 1 at construction);
    # the coordinator's plans are one per rank: 1,000 ranks land on 1,000 prefixes.
    storage = writer(s3.uri("ckpt"), prefix_strategy=HexPrefixStrategy(), overwrite=False)
    result = storage.prepare_global_plan([SavePlan([]) for _ in range(1000)])
    leading = [plan.storage_data.prefix.split("/")[0] for plan in result]
    assert len(set(leading)) == 1000
    assert result[17].storage_data == StoragePrefix("1100000000/__17_")


def test_prepare_global_plan_without_collectives_uses_the_rank(s3: MockBucket) -> None:
    storage = writer(s3.uri("ckpt"))
    storage.set_up_storage_writer(True, rank=5, use_collectives=False)
    assert storage.prepare_global_plan([SavePlan([])])[0].storage_data == StoragePrefix("__5_")


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
    with single_process(), pytest.raises(CheckpointException, match="items of this rank were written") as error:
        dcp.save(state_dict(), storage_writer=writer(s3.uri("ckpt")))
    assert "ckpt/.metadata" not in s3.list_keys()
    import pickle

    from s3torch.client import S3Exception
    from s3torch.dcp import IncompleteSaveError

    failure = next(iter(error.value.failures.values()))
    failure = failure[0] if isinstance(failure, tuple) else failure  # torch keeps (exception, traceback)
    assert isinstance(failure, IncompleteSaveError) and isinstance(failure, S3Exception)
    assert (failure.bucket, failure.key) == (s3.bucket, "ckpt")
    assert pickle.loads(pickle.dumps(failure)).key == "ckpt"


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


# ---- publishing .metadata, and what a save may replace ---------------------------------------


def load(s3: MockBucket, key: str, template: dict[str, Any]) -> dict[str, Any]:
    loaded = zeros_like(template)
    with single_process():
        dcp.load(loaded, storage_reader=reader(s3.uri(key)))
    return loaded


def big_state_dict() -> dict[str, Any]:
    """A state dict whose file is a multipart upload (past one 5 MiB part)."""
    return {**state_dict(seed=9), "big": torch.arange(int(1.5 * MIB), dtype=torch.float32)}


def snapshot(s3: MockBucket) -> dict[str, bytes]:
    return {key: s3.read(key) for key in s3.list_keys()}


@pytest.fixture
def requests(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """(operation, key) of every put, copy, head and delete the checkpoint's client sends."""
    sent: list[tuple[str, str]] = []
    lock = threading.Lock()
    for name in ("put_object", "copy_object", "head_object", "delete_object"):
        original = getattr(S3Client, name)

        def recording(
            self: S3Client,
            bucket: str,
            key: str,
            *args: Any,
            _name: str = name,
            _original: Any = original,
            **kwargs: Any,
        ) -> Any:
            with lock:
                sent.append((_name, key))
            return _original(self, bucket, key, *args, **kwargs)

        monkeypatch.setattr(S3Client, name, recording)
    return sent


# ---- publishing .metadata -------------------------------------------------------------------


@pytest.mark.parametrize("thread_count", [1, 3])
def test_metadata_is_one_put_to_its_key(s3: MockBucket, requests: list[tuple[str, str]], thread_count: int) -> None:
    source = state_dict(tensors=8)
    storage = writer(s3.uri("ckpt"), thread_count=thread_count)
    with single_process():
        dcp.save(source, storage_writer=storage)
    shards = [f"ckpt/__0_{index}.distcp" for index in range(thread_count)]
    assert s3.list_keys() == ["ckpt/.metadata", *shards]
    assert sorted(key for operation, key in requests if operation == "put_object") == ["ckpt/.metadata", *shards]
    assert [operation for operation, _ in requests if operation in ("copy_object", "delete_object")] == []
    # Written last, after every file.
    assert requests[-1] == ("put_object", "ckpt/.metadata")
    metadata = pickle.loads(s3.read("ckpt/.metadata"))
    assert isinstance(metadata, Metadata)
    assert metadata.version == CURRENT_DCP_VERSION
    assert metadata.storage_meta is not None
    assert str(metadata.storage_meta.checkpoint_id) == s3.uri("ckpt")
    assert metadata.storage_meta.save_id == storage.save_id
    assert {data.relative_path for data in metadata.storage_data.values()} == {key.split("/")[1] for key in shards}
    assert_state_dicts_equal(load(s3, "ckpt", source), source)


def test_metadata_is_per_rank_without_collectives(s3: MockBucket) -> None:
    storage = writer(s3.uri("ckpt"))
    storage.set_up_storage_writer(True, rank=3, use_collectives=False)
    storage.finish(Metadata(state_dict_metadata={}), [[]])
    assert s3.list_keys() == ["ckpt/__3.metadata"]
    assert pickle.loads(s3.read("ckpt/__3.metadata")).storage_data == {}


def test_a_failed_metadata_put_publishes_nothing(s3: MockBucket, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_dump(obj: Any, file: Any, *args: Any, **kwargs: Any) -> None:
        file.write(b"half a pickle")
        raise OSError("injected")

    monkeypatch.setattr(pickle, "dump", failing_dump)
    with pytest.raises(OSError, match="injected"):
        writer(s3.uri("ckpt")).finish(Metadata(state_dict_metadata={}), [[]])
    assert s3.list_keys() == []


# ---- overwrite=False ------------------------------------------------------------------------


def test_create_only_follows_overwrite(s3: MockBucket) -> None:
    assert writer(s3.uri("a"), overwrite=False).fs.create_only is True  # type: ignore[attr-defined]
    storage = writer(s3.uri("b"))
    assert storage.fs.create_only is False  # type: ignore[attr-defined]
    storage.overwrite = False  # as of the save, not of the construction
    storage.prepare_local_plan(SavePlan([]))
    assert storage.fs.create_only is True  # type: ignore[attr-defined]


def test_overwrite_false_leaves_every_existing_object_identical(s3: MockBucket) -> None:
    with single_process():
        dcp.save(state_dict(seed=1), storage_writer=writer(s3.uri("ckpt"), thread_count=2))
    before = snapshot(s3)
    with single_process(), pytest.raises(CheckpointException, match="Checkpoint already exists"):
        dcp.save(state_dict(seed=2), storage_writer=writer(s3.uri("ckpt"), thread_count=2, overwrite=False))
    assert snapshot(s3) == before
    assert s3.uploads() == []


class RacedWriter(S3StorageWriter):
    """A writer whose save is raced: once planning is done (torch's check found no checkpoint),
    ``racer`` writes an object at ``raced_key`` before this save writes its files (or, for
    ``.metadata``, before it publishes)."""

    raced_key = ""
    racer: MockBucket

    def write_data(self, plan: SavePlan, planner: SavePlanner) -> Future[list[WriteResult]]:
        if not self.raced_key.endswith(".metadata"):
            self.racer.put(self.raced_key, b"the racing save's object")
        return super().write_data(plan, planner)

    def finish(self, metadata: Metadata, results: list[list[WriteResult]]) -> None:
        if self.raced_key.endswith(".metadata"):
            self.racer.put(self.raced_key, b"the racing save's object")
        super().finish(metadata, results)


def raced_writer(s3: MockBucket, raced_key: str, **kwargs: Any) -> RacedWriter:
    kwargs.setdefault("s3client_config", CONFIG)
    storage = RacedWriter(REGION, s3.uri("ckpt"), **kwargs)
    storage.raced_key = raced_key
    storage.racer = s3
    return storage


@pytest.mark.parametrize(
    ("raced_key", "thread_count", "source"),
    [
        ("ckpt/__0_0.distcp", 1, state_dict),
        ("ckpt/__0_0.distcp", 1, big_state_dict),  # the file is a multipart upload
        ("ckpt/__0_1.distcp", 2, state_dict),  # written by FileSystemWriter's extra thread
        ("ckpt/.metadata", 2, state_dict),
    ],
    ids=["shard", "multipart-shard", "second-thread-shard", "metadata"],
)
def test_overwrite_false_never_replaces_a_racing_object(
    s3: MockBucket, monkeypatch: pytest.MonkeyPatch, raced_key: str, thread_count: int, source: Any
) -> None:
    monkeypatch.setattr("threading.excepthook", lambda args: None)  # the extra threads' printout
    storage = raced_writer(s3, raced_key, thread_count=thread_count, overwrite=False)
    with single_process(), pytest.raises(CheckpointException) as raised:
        dcp.save(source(), storage_writer=storage)
    assert "already exists" in str(raised.value)
    assert raised.value.failures  # the S3Exception of the refused PUT
    assert s3.read(raced_key) == b"the racing save's object"
    if raced_key != "ckpt/.metadata":
        assert "ckpt/.metadata" not in s3.list_keys()
    assert s3.uploads() == []


def test_overwrite_true_replaces_a_racing_object(s3: MockBucket) -> None:
    source = state_dict(seed=3)
    storage = raced_writer(s3, "ckpt/__0_0.distcp", overwrite=True)
    with single_process():
        dcp.save(source, storage_writer=storage)
    assert s3.read("ckpt/__0_0.distcp") != b"the racing save's object"
    assert_state_dicts_equal(load(s3, "ckpt", source), source)


def test_overwrite_false_saves_where_nothing_exists(s3: MockBucket) -> None:
    source = big_state_dict()
    with single_process():
        dcp.save(source, storage_writer=writer(s3.uri("ckpt"), thread_count=2, overwrite=False))
    assert s3.list_keys() == ["ckpt/.metadata", "ckpt/__0_0.distcp", "ckpt/__0_1.distcp"]
    assert_state_dicts_equal(load(s3, "ckpt", source), source)


# ---- S3FileSystem ---------------------------------------------------------------------------


@pytest.mark.parametrize("size", [10, 6 * MIB], ids=["single", "multipart"])
def test_file_system_create_only(s3: MockBucket, size: int) -> None:
    s3.put("taken", b"old")
    fs = S3FileSystem(REGION, s3client_config=CONFIG, create_only=True)
    with pytest.raises(S3Exception, match="already exists"), fs.create_stream(s3.uri("taken"), "wb") as stream:
        stream.write(b"n" * size)
    assert s3.read("taken") == b"old"
    assert isinstance(fs._last_write_error, S3Exception)
    with fs.create_stream(s3.uri("free"), "wb") as stream:
        stream.write(b"n" * size)
    assert s3.read("free") == b"n" * size
    fs.create_only = False
    with fs.create_stream(s3.uri("taken"), "wb") as stream:
        stream.write(b"new")
    assert s3.read("taken") == b"new"
    assert s3.uploads() == []


def test_plan_items_survive_dataclass_replace() -> None:
    plan = SavePlan(items=[], storage_data=None, planner_data={"a": 1}, usable=False)
    replaced = dataclasses.replace(plan, storage_data=StoragePrefix("p"))
    assert replaced.usable is False and replaced.planner_data == {"a": 1}
    assert torch.__version__  # torch imported for the planner types
