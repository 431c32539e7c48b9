"""The DCP-optimized load of ``S3StorageReader`` (``_direct_load``) over moto's in-process S3:
tensors land in place, everything else goes through ``torch.load``, and a damaged file fails."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.distributed.checkpoint as dcp
from dcp_support import MockBucket, assert_state_dicts_equal, reader, save, single_process, state_dict, zeros_like
from torch.distributed.checkpoint.api import CheckpointException

from s3torch.dcp import _direct_load
from s3torch.readers import S3ReaderConstructor


class TorchLoadCounter:
    """Counts the items ``_direct_load`` hands to ``torch.load`` (the ones not loaded in place)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = _direct_load.load_archive

        def counting(archive: bytearray) -> torch.Tensor:
            self.calls += 1
            return real(archive)

        monkeypatch.setattr(_direct_load, "load_archive", counting)


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
    real = _direct_load.DirectLoader._load_file

    def recording(self: Any, relative_path: str, items: Any) -> None:
        import threading

        threads.add(threading.current_thread().name)
        real(self, relative_path, items)

    monkeypatch.setattr(_direct_load.DirectLoader, "_load_file", recording)
    loaded = zeros_like(source)
    load(s3, "ckpt", loaded)
    assert_state_dicts_equal(loaded, source)
    assert len(threads) > 1
    assert all(name.startswith("s3torch-dcp-load") for name in threads)


def test_a_narrowed_item_is_read_in_place_from_its_span() -> None:
    # Resharding loads part of a saved chunk: the span of rows 2..5 of a (8, 3) tensor.
    saved = torch.arange(24.0).reshape(8, 3)
    archive = _archive(saved)
    layout = _direct_load.parse_tensor_layout(archive[: _direct_load.HEAD_BYTES])
    assert layout is not None
    item = _read_item(offsets=[2, 0], lengths=[4, 3])
    span = _direct_load._contiguous_span(layout, item, len(archive))
    assert span == (2 * 3 * 4, torch.Size([4, 3]))
    columns = _read_item(offsets=[0, 1], lengths=[8, 1])
    assert _direct_load._contiguous_span(layout, columns, len(archive)) is None


def test_a_short_file_fails_with_its_name(s3: MockBucket) -> None:
    source = {"weight": torch.randn(1 << 16)}
    save(s3, "ckpt", source)
    shard = next(key for key in s3.list_keys("ckpt/") if key.endswith(".distcp"))
    s3.put(shard, s3.read(shard)[:100_000])
    with pytest.raises(CheckpointException) as raised:
        load(s3, "ckpt", {"weight": torch.zeros(1 << 16)})
    assert f"s3://{s3.bucket}/{shard}" in str(raised.value)
    assert "shorter than its .metadata says" in str(raised.value)


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


def test_the_next_range_groups_are_requested_while_one_is_read(s3: MockBucket, monkeypatch: pytest.MonkeyPatch) -> None:
    source = state_dict(seed=4, tensors=12)
    save(s3, "ckpt", source)  # one file
    started: list[tuple[int | None, str | None]] = []
    real = _direct_load._started

    def recording(stream: Any) -> Any:
        started.append((stream.tell(), stream.etag))
        return real(stream)

    monkeypatch.setattr(_direct_load, "_started", recording)
    tensors = [key for key, value in source.items() if isinstance(value, torch.Tensor)]
    every_other = {key: torch.zeros_like(source[key]) for key in tensors[1::2]}
    load(s3, "ckpt", every_other, reader_constructor=S3ReaderConstructor.dcp_optimized(0))
    for key, value in every_other.items():
        assert torch.equal(value, source[key])
    shard = next(key for key in s3.list_keys("ckpt/") if key.endswith(".distcp"))
    etag = s3.boto.head_object(Bucket=s3.bucket, Key=shard)["ETag"]
    # A group per planned item; every one after the first was requested ahead, pinned to the file's version.
    assert len(started) == len(every_other) - 1
    assert all(pinned == etag for _, pinned in started)
    # Each group once; the order in which the prefetch threads record them is the scheduler's.
    assert len({position for position, _ in started}) == len(started)
