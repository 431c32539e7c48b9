"""``S3StorageReader`` over moto's in-process S3: construction, the local plan (ordering and
range injection), each reader strategy, and the error for a checkpoint without ``.metadata``."""

from __future__ import annotations

import os
import pickle
from typing import Any

import pytest
import torch
import torch.distributed.checkpoint as dcp
from dcp_support import (
    CONFIG,
    REGION,
    MockBucket,
    assert_state_dicts_equal,
    reader,
    save,
    single_process,
    state_dict,
    zeros_like,
)
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.filesystem import _StorageInfo
from torch.distributed.checkpoint.metadata import MetadataIndex
from torch.distributed.checkpoint.planner import LoadItemType, LoadPlan, ReadItem

from s3torch.client import S3Exception
from s3torch.dcp import CheckpointNotFoundError, S3FileSystem, S3StorageReader
from s3torch.dcp._torch_compat import LOAD_REPORTS_METADATA_ERRORS_FROM
from s3torch.readers import DCPOptimizedConstructor, ItemRange, ItemStreamReader, S3Reader, S3ReaderConstructor

# ---- construction ---------------------------------------------------------------------------


def test_defaults() -> None:
    storage = S3StorageReader(REGION, "s3://bucket/ckpt")
    assert isinstance(storage.reader_constructor, DCPOptimizedConstructor)
    assert storage.reader_constructor.max_gap_size == 32 * 1024 * 1024
    assert storage.sync_files is False
    assert isinstance(storage.fs, S3FileSystem)
    assert storage.path == "s3://bucket/ckpt"
    assert storage.checkpoint_id == "s3://bucket/ckpt"
    assert storage.fs.client.user_agent_prefix.endswith("md/reader_type#dcp_optimized)")  # type: ignore[attr-defined]


def test_settings_reach_the_client() -> None:
    constructor = S3ReaderConstructor.range_based()
    storage = S3StorageReader(
        REGION, "s3://bucket/ckpt", s3client_config=CONFIG, reader_constructor=constructor, endpoint="http://h:1"
    )
    assert storage.reader_constructor is constructor
    client = storage.fs.client  # type: ignore[attr-defined]
    assert client.endpoint == "http://h:1"
    assert client.s3client_config is CONFIG
    assert "md/reader_type#range_based" in client.user_agent_prefix


def test_validate_checkpoint_id_delegates() -> None:
    assert S3StorageReader.validate_checkpoint_id("s3://bucket/ckpt")
    assert not S3StorageReader.validate_checkpoint_id("foobar")


def test_pickles() -> None:
    storage = reader("s3://bucket/ckpt", reader_constructor=S3ReaderConstructor.dcp_optimized(0))
    copy = pickle.loads(pickle.dumps(storage))
    assert copy.path == "s3://bucket/ckpt"
    assert isinstance(copy.reader_constructor, DCPOptimizedConstructor)
    assert copy.reader_constructor.max_gap_size == 0


# ---- the local plan -------------------------------------------------------------------------


def read_item(fqn: str) -> ReadItem:
    index = MetadataIndex(fqn)
    return ReadItem(LoadItemType.TENSOR, index, torch.Size([0]), index, torch.Size([0]), torch.Size([1]))


STORAGE = {
    MetadataIndex("a"): _StorageInfo("__0_0.distcp", 300, 50),
    MetadataIndex("b"): _StorageInfo("__0_0.distcp", 0, 100),
    MetadataIndex("c"): _StorageInfo("__1_0.distcp", 10, 20),
    MetadataIndex("d"): _StorageInfo("__0_0.distcp", 100, 100),
}


class SpyConstructor(DCPOptimizedConstructor):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[list[str], str]] = []

    def set_item_ranges_by_file(self, plan_items: list[Any], storage_data: dict[Any, Any], base_path: Any) -> None:
        self.calls.append(([item.storage_index.fqn for item in plan_items], base_path))
        super().set_item_ranges_by_file(plan_items, storage_data, base_path)


def test_prepare_local_plan_sorts_by_offset_in_place_and_injects_ranges_once() -> None:
    constructor = SpyConstructor()
    storage = reader("s3://bucket/ckpt", reader_constructor=constructor)
    storage.storage_data = STORAGE
    items = [read_item(fqn) for fqn in "abcd"]
    plan = LoadPlan(items)
    assert storage.prepare_local_plan(plan) is plan
    assert plan.items is items
    assert [item.storage_index.fqn for item in plan.items] == ["b", "c", "d", "a"]
    assert constructor.calls == [(["b", "c", "d", "a"], "s3://bucket/ckpt")]
    assert constructor._item_ranges_by_file == {
        "s3://bucket/ckpt/__0_0.distcp": [ItemRange(0, 100), ItemRange(100, 200), ItemRange(300, 350)],
        "s3://bucket/ckpt/__1_0.distcp": [ItemRange(10, 30)],
    }


def test_prepare_local_plan_accepts_an_empty_plan() -> None:
    constructor = SpyConstructor()
    storage = reader("s3://bucket/ckpt", reader_constructor=constructor)
    plan = LoadPlan([])
    assert storage.prepare_local_plan(plan) is plan
    assert constructor.calls == [([], "s3://bucket/ckpt")]


@pytest.mark.parametrize("constructor", [S3ReaderConstructor.sequential(), S3ReaderConstructor.range_based()])
def test_prepare_local_plan_sorts_for_every_reader(constructor: Any) -> None:
    storage = reader("s3://bucket/ckpt", reader_constructor=constructor)
    storage.storage_data = STORAGE
    plan = storage.prepare_local_plan(LoadPlan([read_item(fqn) for fqn in "abcd"]))
    assert [item.storage_index.fqn for item in plan.items] == ["b", "c", "d", "a"]


# ---- loads --------------------------------------------------------------------------------


READERS = {
    "default": None,
    "sequential": S3ReaderConstructor.sequential(),
    "range_based": S3ReaderConstructor.range_based(),
    "range_based-unbuffered": S3ReaderConstructor.range_based(0),
    "dcp_optimized-gap-0": S3ReaderConstructor.dcp_optimized(0),
    "dcp_optimized-gap-inf": S3ReaderConstructor.dcp_optimized(float("inf")),
}


@pytest.mark.parametrize("name", READERS)
def test_round_trip_with_each_reader(s3: MockBucket, name: str) -> None:
    source = state_dict(seed=7, tensors=10)
    save(s3, "ckpt", source, thread_count=2)
    loaded = zeros_like(source)
    with single_process():
        dcp.load(loaded, storage_reader=reader(s3.uri("ckpt"), reader_constructor=READERS[name]))
    assert_state_dicts_equal(loaded, source)


class PositionRecorder:
    """A reader constructor that records where each checkpoint file is read."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.positions: dict[str, list[int]] = {}
        if isinstance(inner, DCPOptimizedConstructor):
            self._item_ranges_by_file = inner._item_ranges_by_file

    def set_item_ranges_by_file(self, plan_items: list[Any], storage_data: dict[Any, Any], base_path: Any) -> None:
        self.inner.set_item_ranges_by_file(plan_items, storage_data, base_path)
        self._item_ranges_by_file = self.inner._item_ranges_by_file

    def __call__(self, bucket: str, key: str, get_object_info: Any, get_stream: Any) -> S3Reader:
        real = self.inner(bucket, key, get_object_info, get_stream)
        positions = self.positions.setdefault(key, [])
        original_read, original_readinto = real.read, real.readinto

        def read(size: int | None = None) -> bytes:
            positions.append(real.tell())
            return original_read(size)

        def readinto(buffer: Any) -> int:
            positions.append(real.tell())
            return original_readinto(buffer)

        real.read = read  # type: ignore[method-assign]
        real.readinto = readinto  # type: ignore[method-assign]
        if isinstance(real, ItemStreamReader):  # items are taken as streams, not read through the file API
            original_item_stream = real.item_stream

            def item_stream(start: int, end: int) -> Any:
                positions.append(start)
                return original_item_stream(start, end)

            real.item_stream = item_stream  # type: ignore[method-assign]
        return real


@pytest.mark.parametrize("inner", ["sequential", "dcp_optimized"])
def test_reads_of_each_file_move_forward(s3: MockBucket, inner: str) -> None:
    source = state_dict(seed=3, tensors=12)
    save(s3, "ckpt", source)
    recorder = PositionRecorder(getattr(S3ReaderConstructor, inner)())
    loaded = zeros_like(source)
    with single_process():
        dcp.load(loaded, storage_reader=reader(s3.uri("ckpt"), reader_constructor=recorder))
    assert_state_dicts_equal(loaded, source)
    items: dict[str, list[tuple[int, int]]] = {}
    for info in reader(s3.uri("ckpt")).read_metadata().storage_data.values():
        items.setdefault(f"ckpt/{info.relative_path}", []).append((info.offset, info.offset + info.length))
    files = {key: positions for key, positions in recorder.positions.items() if not key.endswith(".metadata")}
    assert files.keys() == items.keys()
    for key, positions in files.items():
        # torch.load jumps back and forth inside an item; across items, reads only move forward.
        item_starts = [next(start for start, end in items[key] if start <= position < end) for position in positions]
        assert item_starts == sorted(item_starts)
        assert set(item_starts) == {start for start, _ in items[key]}


def test_partial_load(s3: MockBucket) -> None:
    source = state_dict(seed=5)
    save(s3, "ckpt", source)
    wanted = {key: torch.zeros_like(value) for key, value in source.items() if key.endswith(".weight")}
    with single_process():
        dcp.load(wanted, storage_reader=reader(s3.uri("ckpt")))
    for key, value in wanted.items():
        assert torch.equal(value, source[key])


# ---- no .metadata ---------------------------------------------------------------------------


def test_read_metadata_without_metadata_names_the_path(s3: MockBucket) -> None:
    s3.put("ckpt/__0_0.distcp", b"a file of an unfinished save")
    storage = reader(s3.uri("ckpt"))
    with pytest.raises(CheckpointNotFoundError) as error:
        storage.read_metadata()
    message = str(error.value)
    assert message.startswith("Service error: The key does not exist")
    assert f"no checkpoint at {s3.uri('ckpt')}" in message
    assert f"{s3.uri('ckpt/.metadata')} does not exist" in message
    assert isinstance(error.value, FileNotFoundError)
    assert isinstance(error.value, S3Exception)
    assert error.value.bucket == s3.bucket
    assert error.value.key == "ckpt/.metadata"
    copy = pickle.loads(pickle.dumps(error.value))
    assert type(copy) is CheckpointNotFoundError and str(copy) == message


def test_dcp_load_without_metadata_fails_with_the_path(s3: MockBucket) -> None:
    with single_process(), pytest.raises(CheckpointException) as error:
        dcp.load({"x": torch.zeros(1)}, storage_reader=reader(s3.uri("never/saved")))
    if torch.__version__ >= LOAD_REPORTS_METADATA_ERRORS_FROM:
        assert f"no checkpoint at {s3.uri('never/saved')}" in str(error.value)
    else:
        assert "AssertionError" in str(error.value)


def test_other_errors_of_read_metadata_are_unchanged(s3: MockBucket, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = reader(s3.uri("ckpt"))
    denied = S3Exception("Service error: AccessDenied: no", code="AccessDenied", status=403)

    def head(*args: Any, **kwargs: Any) -> Any:
        raise denied

    monkeypatch.setattr(storage.fs.client, "get_object", head)  # type: ignore[attr-defined]
    with pytest.raises(S3Exception) as error:
        storage.read_metadata()
    assert error.value is denied


def test_rank_local_metadata_path(s3: MockBucket) -> None:
    with pytest.raises(CheckpointNotFoundError, match=os.path.join(s3.uri("ckpt"), "__3.metadata")):
        reader(s3.uri("ckpt")).read_metadata(rank=3)
