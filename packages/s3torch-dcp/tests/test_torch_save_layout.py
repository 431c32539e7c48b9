"""``parse_tensor_layout``: where ``torch.save`` of one tensor puts the tensor's bytes, checked
against what ``torch.save`` really wrote, and ``None`` for anything else."""

from __future__ import annotations

import io
import warnings

import pytest
import torch

from s3torch.dcp._torch_save_layout import HEAD_BYTES, descriptor_matches, parse_tensor_layout, storage_end_matches


def archive_of(value: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


def storage_bytes(tensor: torch.Tensor) -> bytes:
    return bytes(torch.empty(0, dtype=torch.uint8).set_(tensor.untyped_storage()).tolist())


generator = torch.Generator().manual_seed(0)
TENSORS = {
    "float32 matrix": torch.randn(7, 5, generator=generator),
    "bfloat16": torch.randn(33, generator=generator).to(torch.bfloat16),
    "float16 3-d": torch.randn(2, 3, 4, generator=generator).half(),
    "int64": torch.randint(-(2**40), 2**40, (17,), generator=generator),
    "uint8": torch.randint(0, 255, (100,), dtype=torch.uint8, generator=generator),
    "bool": torch.rand(19, generator=generator) > 0.5,
    "complex64": torch.randn(6, dtype=torch.complex64, generator=generator),
    "float8 (rebuilt with v3)": torch.randn(12, generator=generator).to(torch.float8_e4m3fn),
    "uint16 (rebuilt with v3)": torch.arange(40, dtype=torch.int32).to(torch.uint16),
    "scalar": torch.tensor(3.5),
    "empty": torch.empty(0, 4),
    "transposed": torch.randn(4, 6, generator=generator).t(),
    "view with an offset": torch.arange(30.0)[7:19],
    "many dimensions": torch.randn([1] * 60 + [3], generator=generator),
}


@pytest.mark.parametrize("name", TENSORS)
def test_layout_is_where_torch_save_put_the_tensor(name: str) -> None:
    tensor = TENSORS[name]
    archive = archive_of(tensor)
    layout = parse_tensor_layout(archive[:HEAD_BYTES])
    assert layout is not None
    assert layout.dtype == tensor.dtype
    assert layout.size == tuple(tensor.size())
    assert layout.stride == tuple(tensor.stride())
    assert layout.storage_offset == tensor.storage_offset()
    stored = archive[layout.storage_start : layout.storage_start + layout.storage_nbytes]
    assert stored == storage_bytes(tensor)
    assert storage_end_matches(layout, archive[layout.storage_start + layout.storage_nbytes :])
    assert not storage_end_matches(layout, archive[layout.storage_start + layout.storage_nbytes + 1 :])


def test_a_large_tensor_storage_starts_after_a_small_head() -> None:
    archive = archive_of(torch.zeros(1 << 20))
    layout = parse_tensor_layout(archive[:HEAD_BYTES])
    assert layout is not None
    assert layout.storage_start < HEAD_BYTES
    assert layout.storage_start % 64 == 0  # torch aligns storages
    assert layout.storage_nbytes == 4 << 20


class Wrapped(torch.Tensor):
    pass


@pytest.mark.parametrize(
    "value",
    [
        {"not": "a tensor"},
        [torch.zeros(2), torch.ones(2)],
        torch.nn.Parameter(torch.zeros(3)),
        7,
    ],
    ids=["dict", "list of tensors", "parameter", "int"],
)
def test_other_archives_are_not_parsed(value: object) -> None:
    assert parse_tensor_layout(archive_of(value)[:HEAD_BYTES]) is None


def test_a_tensor_subclass_is_not_parsed() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        archive = archive_of(torch.zeros(3).as_subclass(Wrapped))
    assert parse_tensor_layout(archive[:HEAD_BYTES]) is None


def test_a_tensor_with_hooks_or_attributes_is_not_parsed() -> None:
    tensor = torch.zeros(3)
    tensor.note = "kept by torch.save"  # type: ignore[attr-defined]
    assert parse_tensor_layout(archive_of(tensor)[:HEAD_BYTES]) is None


@pytest.mark.parametrize("cut", [0, 10, 40, 120, 300])
def test_a_truncated_head_is_not_parsed(cut: int) -> None:
    assert parse_tensor_layout(archive_of(torch.zeros(1000))[:cut]) is None


def test_garbage_is_not_parsed() -> None:
    assert parse_tensor_layout(bytes(range(256)) * 16) is None
    assert parse_tensor_layout(b"PK\x03\x04" + b"\x00" * 200) is None


def test_an_archive_in_the_other_byte_order_is_not_parsed() -> None:
    archive = bytearray(archive_of(torch.zeros(10)))
    position = archive.index(b"byteorder")
    data = archive.index(b"little", position)
    archive[data : data + 6] = b"big\x00\x00\x00"  # and its CRC no longer matches either
    assert parse_tensor_layout(bytes(archive[:HEAD_BYTES])) is None


def test_a_changed_pickle_is_not_parsed() -> None:
    archive = bytearray(archive_of(torch.zeros(10)))
    position = archive.index(b"cpu")
    archive[position : position + 3] = b"cpv"  # the CRC of data.pkl no longer matches
    assert parse_tensor_layout(bytes(archive[:HEAD_BYTES])) is None


def test_descriptor_matches_only_the_size_written() -> None:
    archive = archive_of(torch.zeros(16))
    layout = parse_tensor_layout(archive[:HEAD_BYTES])
    assert layout is not None
    after = archive[layout.storage_start + layout.storage_nbytes :]
    assert descriptor_matches(after, 64)
    assert not descriptor_matches(after, 63)
    assert not descriptor_matches(after[1:], 64)
