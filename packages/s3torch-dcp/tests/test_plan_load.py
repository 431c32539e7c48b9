"""``S3StorageReader``'s load of a plan (``_plan_load``) over moto's in-process S3: with a reader
that streams items, tensors land in place and everything else goes through ``torch.load``; a
reader without that capability gives the same tensors through torch's way; a damaged file fails."""

from __future__ import annotations

import io
import itertools
import threading
from typing import Any

import pytest
import torch
import torch.distributed.checkpoint as dcp
from dcp_support import MockBucket, assert_state_dicts_equal, reader, save, single_process, state_dict, zeros_like
from torch.distributed.checkpoint.api import CheckpointException

from s3torch.dcp import _plan_load, _torch_save_layout
from s3torch.readers import (
    DEFAULT_MAX_GAP_SIZE,
    DCPOptimizedConstructor,
    DCPOptimizedS3Reader,
    S3Reader,
    S3ReaderConstructor,
    SequentialS3Reader,
)


class TorchLoadCounter:
    """Counts the items ``_plan_load`` hands to ``torch.load`` (the ones not loaded in place)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = _plan_load.load_archive

        def counting(archive: Any) -> torch.Tensor:
            self.calls += 1
            return real(archive)

        monkeypatch.setattr(_plan_load, "load_archive", counting)


def load(s3: MockBucket, key: str, into: dict[str, Any], **kwargs: Any) -> None:
    with single_process():
        dcp.load(into, storage_reader=reader(s3.uri(key), **kwargs))


def varied_state() -> dict[str, Any]:
    generator = torch.Generator().manual_seed(11)
    return {
        "float32": torch.randn(64, 33, generator=generator),
        "bfloat16": torch.randn(1000, generator=generator).to(torch.bfloat16),
        "int64": torch.randint(-(2**40), 2**40, (77,), generator=generator),
        "bool": torch.rand(50, generator=generator) > 0.5,
        "complex64": torch.randn(9, dtype=torch.complex64, generator=generator),
        "float8": torch.randn(40, generator=generator).to(torch.float8_e5m2),
        "scalar": torch.tensor(2.25),
        "empty": torch.empty(0, 8),
        "large": torch.randn(3 << 20, generator=generator),  # 12 MiB: more than one part of the stream
        "step": 41,
        "name": "run-41",
    }


def test_tensors_are_loaded_in_place_and_other_values_by_torch(s3: MockBucket, monkeypatch: pytest.MonkeyPatch) -> None:
    source = varied_state()
    save(s3, "ckpt", source)
    counter = TorchLoadCounter(monkeypatch)
    loaded = zeros_like(source)
    targets = {key: value for key, value in loaded.items() if isinstance(value, torch.Tensor)}
    load(s3, "ckpt", loaded)
    assert counter.calls == 0
    float8 = loaded.pop("float8")
    assert torch.equal(float8.view(torch.uint8), source.pop("float8").view(torch.uint8))
    assert_state_dicts_equal(loaded, source)
    for key, tensor in targets.items():
        if key != "float8":
            assert loaded[key] is tensor  # DCP loads in place


def test_saved_views_and_other_destinations_go_through_torch_load(
    s3: MockBucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    generator = torch.Generator().manual_seed(5)
    source = {
        "transposed": torch.randn(6, 10, generator=generator).t(),  # saved with its strides
        "to_double": torch.randn(30, generator=generator),
        "to_strided": torch.randn(8, 4, generator=generator),
        "plain": torch.randn(100, generator=generator),
    }
    save(s3, "ckpt", source)
    counter = TorchLoadCounter(monkeypatch)
    strided_base = torch.zeros(4, 8)
    loaded = {
        "transposed": torch.zeros(10, 6),
        "to_double": torch.zeros(30, dtype=torch.float64),
        "to_strided": strided_base.t(),  # a destination that is not contiguous
        "plain": torch.zeros(100),
    }
    load(s3, "ckpt", loaded)
    assert counter.calls == 3  # the transposed storage, the other dtype and the strided destination
    assert torch.equal(loaded["transposed"], source["transposed"])
    assert torch.equal(loaded["to_double"], source["to_double"].double())
    assert torch.equal(strided_base.t(), source["to_strided"])
    assert torch.equal(loaded["plain"], source["plain"])


@pytest.mark.parametrize("gap", [0, 1024, float("inf")])
def test_partial_loads_with_each_gap(s3: MockBucket, gap: float) -> None:
    source = state_dict(seed=9, tensors=20)
    save(s3, "ckpt", source, thread_count=3)
    wanted = {key: torch.zeros_like(value) for key, value in source.items() if key.endswith(("3.weight", "bias"))}
    load(s3, "ckpt", wanted, reader_constructor=S3ReaderConstructor.dcp_optimized(gap))
    assert wanted.keys() == {"layer3.weight", "layer13.weight", "layer0.bias"}
    for key, value in wanted.items():
        assert torch.equal(value, source[key])


def test_several_files_are_read_at_once(s3: MockBucket, monkeypatch: pytest.MonkeyPatch) -> None:
    source = state_dict(seed=2, tensors=24)
    save(s3, "ckpt", source, thread_count=4)
    threads: set[str] = set()
    real = _plan_load.PlanLoader._load_file
    # The first two file loads wait for each other: they meet only if two run at once (a
    # serial loader breaks the barrier after its timeout). Counting thread names alone
    # depended on timing: one fast thread could take every file.
    both_running = threading.Barrier(2, timeout=30)
    calls = itertools.count()

    def recording(self: Any, relative_path: str, items: Any) -> None:
        threads.add(threading.current_thread().name)
        if next(calls) < 2:
            both_running.wait()
        real(self, relative_path, items)

    monkeypatch.setattr(_plan_load.PlanLoader, "_load_file", recording)
    loaded = zeros_like(source)
    load(s3, "ckpt", loaded)
    assert_state_dicts_equal(loaded, source)
    assert len(threads) > 1
    assert all(name.startswith("s3torch-dcp-load") for name in threads)


def test_a_narrowed_item_is_read_in_place_from_its_span() -> None:
    # Resharding loads part of a saved chunk: the span of rows 2..5 of a (8, 3) tensor.
    saved = torch.arange(24.0).reshape(8, 3)
    archive = _archive(saved)
    layout = _torch_save_layout.parse_tensor_layout(archive[: _torch_save_layout.HEAD_BYTES])
    assert layout is not None
    item = _read_item(offsets=[2, 0], lengths=[4, 3])
    span = _plan_load._contiguous_span(layout, item, len(archive))
    assert span == (2 * 3 * 4, torch.Size([4, 3]))
    columns = _read_item(offsets=[0, 1], lengths=[8, 1])
    assert _plan_load._contiguous_span(layout, columns, len(archive)) is None


def test_a_short_file_fails_with_its_name(s3: MockBucket) -> None:
    source = {"weight": torch.randn(1 << 16)}
    save(s3, "ckpt", source)
    shard = next(key for key in s3.list_keys("ckpt/") if key.endswith(".distcp"))
    s3.put(shard, s3.read(shard)[:100_000])
    with pytest.raises(CheckpointException) as raised:
        load(s3, "ckpt", {"weight": torch.zeros(1 << 16)})
    assert f"s3://{s3.bucket}/{shard}" in str(raised.value)
    assert "the object is shorter than the load plan says" in str(raised.value)


def test_a_damaged_archive_fails_instead_of_loading_wrong_bytes(s3: MockBucket) -> None:
    source = {"weight": torch.randn(1000)}
    save(s3, "ckpt", source)
    shard = next(key for key in s3.list_keys("ckpt/") if key.endswith(".distcp"))
    data = bytearray(s3.read(shard))
    # Move the storage's data descriptor: the bytes after the storage are no longer the archive's.
    descriptor = data.index(b"PK\x07\x08", data.index(b"data/0"))
    data[descriptor : descriptor + 4] = b"XXXX"
    s3.put(shard, bytes(data))
    with pytest.raises(CheckpointException) as raised:
        load(s3, "ckpt", {"weight": torch.zeros(1000)})
    assert "is not the torch.save archive its header describes" in str(raised.value)
    from s3torch.client import S3Exception

    failure = next(iter(raised.value.failures.values()))
    failure = failure[0] if isinstance(failure, tuple) else failure  # torch keeps (exception, traceback)
    assert isinstance(failure, S3Exception) and (failure.bucket, failure.key) == (s3.bucket, shard)


def _archive(tensor: torch.Tensor) -> bytes:
    import io

    buffer = io.BytesIO()
    torch.save(tensor, buffer)
    return buffer.getvalue()


def _read_item(offsets: list[int], lengths: list[int]) -> Any:
    from torch.distributed.checkpoint.metadata import MetadataIndex
    from torch.distributed.checkpoint.planner import LoadItemType, ReadItem

    return ReadItem(
        type=LoadItemType.TENSOR,
        dest_index=MetadataIndex("t"),
        dest_offsets=torch.Size([0] * len(offsets)),
        storage_index=MetadataIndex("t"),
        storage_offsets=torch.Size(offsets),
        lengths=torch.Size(lengths),
    )


# ---- every file through the constructor's reader; both ways give the same tensors -----------


class FileApiOnly(S3Reader):
    """A reader of a user's own: another reader's file API, without the item-stream capability."""

    def __init__(self, inner: S3Reader) -> None:
        super().__init__(inner.bucket, inner.key, inner._get_object_info, inner._get_stream)
        self.inner = inner

    def read(self, size: int | None = None) -> bytes:
        return self.inner.read(size)

    def readinto(self, buf: Any) -> int:
        return self.inner.readinto(buf)

    def seek(self, offset: int, whence: int = io.SEEK_SET, /) -> int:
        return self.inner.seek(offset, whence)

    def tell(self) -> int:
        return self.inner.tell()

    def prefetch(self) -> None:
        self.inner.prefetch()

    def close(self) -> None:
        self.inner.close()
        super().close()


class RecordingConstructor(DCPOptimizedConstructor):
    """A DCP-optimized constructor of a user's own, recording the readers it builds; with
    ``file_api_only``, they lose the item-stream capability (torch's way is taken)."""

    def __init__(self, max_gap_size: float = DEFAULT_MAX_GAP_SIZE, *, file_api_only: bool = False) -> None:
        super().__init__(max_gap_size)
        self.file_api_only = file_api_only
        self.readers: dict[str, S3Reader] = {}

    def __call__(self, bucket: str, key: str, get_object_info: Any, get_stream: Any) -> S3Reader:
        reader = super().__call__(bucket, key, get_object_info, get_stream)
        if self.file_api_only:
            reader = FileApiOnly(reader)
        self.readers[key] = reader
        return reader


def views_and_bytes_state() -> dict[str, Any]:
    generator = torch.Generator().manual_seed(23)
    state = varied_state()
    state.pop("large")
    state["transposed"] = torch.randn(6, 10, generator=generator).t()  # saved with its strides
    state["view with an offset"] = torch.arange(40.0)[7:31]
    state["bf16 matrix"] = torch.randn(16, 12, generator=generator).to(torch.bfloat16)
    state["nested"] = {"lr": 0.5, "betas": (0.9, 0.99), "tag": b"raw bytes"}
    return state


def destinations(source: dict[str, Any]) -> tuple[dict[str, Any], torch.Tensor]:
    loaded = zeros_like(source)
    strided_base = torch.zeros(12, 16, dtype=torch.bfloat16)
    loaded["bf16 matrix"] = strided_base.t()  # a strided destination
    return loaded, strided_base


def as_bytes(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor's values as bytes: equal bytes mean identical tensors (float8, NaN and -0.0 included)."""
    return tensor.contiguous().reshape(-1).view(torch.uint8)


def assert_same_tensors(actual: dict[str, Any], expected: dict[str, Any]) -> None:
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        if isinstance(value, torch.Tensor):
            assert actual[key].dtype == value.dtype, key
            assert actual[key].shape == value.shape, key
            assert torch.equal(as_bytes(actual[key]), as_bytes(value)), key
        else:
            assert actual[key] == value, key


@pytest.mark.parametrize("partial", [False, True], ids=["full", "partial"])
def test_item_streams_and_torchs_way_give_identical_tensors(
    s3: MockBucket, monkeypatch: pytest.MonkeyPatch, partial: bool
) -> None:
    source = views_and_bytes_state()
    save(s3, "ckpt", source, thread_count=2)
    some = {"bfloat16", "transposed", "bf16 matrix", "nested", "step"}
    wanted = [key for key in source if not partial or key in some]
    results: dict[str, dict[str, Any]] = {}
    torch_loads: dict[str, int] = {}
    for way, constructor in {
        "streamed": RecordingConstructor(),
        "file api of the same reader": RecordingConstructor(file_api_only=True),
        "sequential": S3ReaderConstructor.sequential(),
    }.items():
        counter = TorchLoadCounter(monkeypatch)
        loaded, strided_base = destinations(source)
        loaded = {key: value for key, value in loaded.items() if key in wanted}
        load(s3, "ckpt", loaded, reader_constructor=constructor)
        if "bf16 matrix" in loaded:
            assert torch.equal(strided_base.t(), source["bf16 matrix"])  # written into the strided destination
        results[way] = loaded
        torch_loads[way] = counter.calls
    expected = {key: source[key] for key in wanted}
    for loaded in results.values():
        assert_same_tensors(loaded, expected)
    # Every tensor item, the other way (DCP plans no read for an empty tensor).
    tensors = sum(isinstance(source[key], torch.Tensor) and source[key].numel() > 0 for key in wanted)
    # Streamed, only the transposed storage and the strided destination go through torch.load (a
    # view with an offset is one contiguous span of its storage: received in place).
    assert torch_loads["streamed"] == sum(key in wanted for key in ("transposed", "bf16 matrix"))
    assert torch_loads["file api of the same reader"] == torch_loads["sequential"] == tensors


def test_a_constructor_of_your_own_builds_the_reader_of_every_file(s3: MockBucket) -> None:
    source = state_dict(seed=6, tensors=12)
    save(s3, "ckpt", source, thread_count=3)
    constructor = RecordingConstructor()
    loaded = zeros_like(source)
    load(s3, "ckpt", loaded, reader_constructor=constructor)
    assert_state_dicts_equal(loaded, source)
    files = set(s3.list_keys("ckpt/"))
    assert set(constructor.readers) == files
    for key, built in constructor.readers.items():
        expected = SequentialS3Reader if key.endswith(".metadata") else DCPOptimizedS3Reader
        assert isinstance(built, expected) and built.closed


def test_a_load_with_the_dcp_optimized_constructor_reads_through_its_reader(
    s3: MockBucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = state_dict(seed=8, tensors=12)
    save(s3, "ckpt", source, thread_count=3)
    streamed: list[tuple[str, int, int]] = []
    real = DCPOptimizedS3Reader.item_stream

    def recording(self: DCPOptimizedS3Reader, start: int, end: int) -> Any:
        streamed.append((self.key, start, end))
        return real(self, start, end)

    monkeypatch.setattr(DCPOptimizedS3Reader, "item_stream", recording)
    loaded = zeros_like(source)
    load(s3, "ckpt", loaded, reader_constructor=S3ReaderConstructor.dcp_optimized())
    assert_state_dicts_equal(loaded, source)
    planned = {
        (f"ckpt/{info.relative_path}", info.offset, info.offset + info.length)
        for info in reader(s3.uri("ckpt")).read_metadata().storage_data.values()
    }
    assert sorted(streamed) == sorted(planned)  # every item, each once, through the DCP-optimized reader


class PartsPlanner:
    """The planner side of a resharding load: each read item's destination, by its ``dest_index``."""

    def __init__(self, destinations: dict[str, torch.Tensor]) -> None:
        self.destinations = destinations
        self.committed: list[str] = []

    def resolve_tensor(self, read_item: Any) -> torch.Tensor:
        return self.destinations[read_item.dest_index.fqn]

    def commit_tensor(self, read_item: Any, tensor: torch.Tensor) -> None:
        self.committed.append(read_item.dest_index.fqn)


@pytest.mark.parametrize("constructor", ["dcp_optimized", "sequential"])
def test_several_read_items_of_one_saved_item_each_get_their_part(s3: MockBucket, constructor: str) -> None:
    from torch.distributed.checkpoint.metadata import MetadataIndex
    from torch.distributed.checkpoint.planner import LoadItemType, LoadPlan, ReadItem

    saved = torch.arange(24.0).reshape(8, 3)
    save(s3, "ckpt", {"w": saved, "after": torch.ones(5)})
    storage = reader(s3.uri("ckpt"), reader_constructor=getattr(S3ReaderConstructor, constructor)())
    metadata = storage.read_metadata()
    storage.set_up_storage_reader(metadata, is_coordinator=True)
    index = next(key for key in metadata.storage_data if key.fqn == "w")
    parts = {"top": (0, 3), "bottom": (3, 5)}  # rows [0, 3) and [3, 8) of the one saved chunk
    plan = LoadPlan(
        [
            ReadItem(
                LoadItemType.TENSOR,
                MetadataIndex(name),
                torch.Size([0, 0]),
                index,
                torch.Size([first, 0]),
                torch.Size([rows, 3]),
            )
            for name, (first, rows) in parts.items()
        ]
    )
    planner = PartsPlanner({name: torch.zeros(rows, 3) for name, (_, rows) in parts.items()})
    storage.prepare_local_plan(plan)
    storage.read_data(plan, planner).wait()  # type: ignore[arg-type]
    assert sorted(planner.committed) == ["bottom", "top"]
    assert torch.equal(planner.destinations["top"], saved[:3])
    assert torch.equal(planner.destinations["bottom"], saved[3:])
