"""Where a tensor's bytes are inside the file ``torch.save`` writes for one tensor.

A DCP checkpoint file holds one ``torch.save`` archive per tensor item: a zip whose records are
``<archive>/data.pkl`` (the pickle describing the tensor and naming its storage), a few small
records (``.format_version``, ``.storage_alignment``, ``byteorder``) and then
``<archive>/data/<key>``, the storage's raw bytes, before the trailing records and the central
directory. torch writes every record stored (not compressed) with a data descriptor after it,
so record sizes are only in those descriptors and in the central directory at the end.

``parse_tensor_layout`` reads the start of such an archive (no more than its first
``HEAD_BYTES``), checking every record it walks over against the CRC-32 and size of its data
descriptor, and unpickles ``data.pkl`` with an allow-list that only accepts what ``torch.save``
of one plain tensor produces. It answers where the storage bytes start in the archive, and the
tensor's dtype, size, stride and offset; anything else (another layout, another pickle, a
big-endian archive on this machine) answers ``None``, and the caller loads the item with
``torch.load`` as torch does.

This is torch's file format, so it stays in s3torch-dcp beside the rest of the torch glue
(``_plan_load``), while the bytes come through s3torch-readers' range engine: there the readers
stay free of torch (their tests run without it), and the parser keeps torch's own dtypes and
storage names instead of a copy of them.
"""

from __future__ import annotations

import collections
import functools
import io
import pickle
import struct
import sys
import zlib
from dataclasses import dataclass
from typing import Any

import torch

from ._torch_compat import dtype_to_storage_type_map

#: Bytes of an item read before its storage: enough for the pickle of a tensor of up to a few
#: hundred dimensions and the small records torch writes before the storage.
HEAD_BYTES = 4096

_LOCAL_HEADER = struct.Struct("<IHHHHHIIIHH")
_LOCAL_HEADER_SIGNATURE = 0x04034B50
_DESCRIPTOR_SIGNATURE = b"PK\x07\x08"
_DATA_DESCRIPTOR_FLAG = 0x0008
_STORED = 0
#: Records torch writes between the pickle and the storage, with at most this many bytes each.
_SMALL_RECORDS = {".format_version": 16, ".storage_alignment": 16, "byteorder": 16}
_NATIVE_BYTEORDER = sys.byteorder.encode()


@dataclass(frozen=True)
class TensorLayout:
    """One tensor of a ``torch.save`` archive: how it views its storage, and where the storage's
    ``storage_nbytes`` bytes start (``storage_start``, from the start of the archive). The
    ``dtype``, ``size``, ``stride`` and ``storage_offset`` are the tensor's (in elements)."""

    dtype: torch.dtype
    size: tuple[int, ...]
    stride: tuple[int, ...]
    storage_offset: int
    storage_start: int
    storage_nbytes: int
    #: Whether a data descriptor follows the storage (else the next record's local header does).
    storage_has_descriptor: bool = True


class _NotATensorArchive(Exception):
    """The bytes are not what ``torch.save`` of one plain tensor writes: load it the torch way."""


@dataclass(frozen=True)
class _StorageReference:
    dtype: torch.dtype
    key: str
    numel: int


@dataclass(frozen=True)
class _Rebuilt:
    storage: _StorageReference
    dtype: torch.dtype
    storage_offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuilt(
    storage: Any, dtype: Any, storage_offset: Any, size: Any, stride: Any, backward_hooks: Any, metadata: Any
) -> _Rebuilt:
    if not isinstance(storage, _StorageReference) or not isinstance(dtype, torch.dtype) or backward_hooks or metadata:
        raise _NotATensorArchive("a tensor with hooks or metadata")
    if not isinstance(storage_offset, int) or not isinstance(size, tuple) or not isinstance(stride, tuple):
        raise _NotATensorArchive("an unexpected tensor description")
    if len(size) != len(stride) or not all(isinstance(value, int) for value in size + stride):
        raise _NotATensorArchive("an unexpected tensor shape")
    return _Rebuilt(storage, dtype, storage_offset, size, stride)


def _rebuild_tensor_v2(
    storage: Any,
    storage_offset: Any,
    size: Any,
    stride: Any,
    requires_grad: Any = False,
    backward_hooks: Any = None,
    metadata: Any = None,
) -> _Rebuilt:
    """A tensor whose storage has its dtype (a legacy typed storage such as ``FloatStorage``)."""
    dtype = storage.dtype if isinstance(storage, _StorageReference) else None
    return _rebuilt(storage, dtype, storage_offset, size, stride, backward_hooks, metadata)


def _rebuild_tensor_v3(
    storage: Any,
    storage_offset: Any,
    size: Any,
    stride: Any,
    requires_grad: Any,
    backward_hooks: Any,
    dtype: Any,
    metadata: Any = None,
) -> _Rebuilt:
    """A tensor of a dtype without a legacy storage class (float8, uint16...): bytes, and the dtype."""
    if not isinstance(storage, _StorageReference) or storage.dtype != torch.uint8:
        raise _NotATensorArchive("an unexpected storage")
    return _rebuilt(storage, dtype, storage_offset, size, stride, backward_hooks, metadata)


class _StorageType:
    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype


@functools.cache
def _storage_types() -> dict[str, _StorageType]:
    """``FloatStorage`` -> float32 and so on, without touching torch's deprecated storage classes."""
    return {name: _StorageType(dtype) for dtype, name in dtype_to_storage_type_map().items()}


class _TensorUnpickler(pickle.Unpickler):
    """Only what ``torch.save(tensor)`` pickles; any other global or object is refused."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch._utils" and name == "_rebuild_tensor_v3":
            return _rebuild_tensor_v3
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch.storage", "UntypedStorage"):
            return _StorageType(torch.uint8)
        if module == "torch":
            storage_type = _storage_types().get(name)
            if storage_type is not None:
                return storage_type
            dtype = getattr(torch, name, None)
            if isinstance(dtype, torch.dtype):
                return dtype
        raise _NotATensorArchive(f"global {module}.{name}")

    def persistent_load(self, pid: Any) -> _StorageReference:
        if not isinstance(pid, tuple) or len(pid) != 5 or pid[0] != "storage":
            raise _NotATensorArchive("an unexpected persistent id")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, _StorageType) or not isinstance(key, str) or not isinstance(numel, int):
            raise _NotATensorArchive("an unexpected storage")
        return _StorageReference(storage_type.dtype, key, numel)


@dataclass(frozen=True)
class _Record:
    """A record's local header: its name, where its data starts, and its size when the header
    has it (else a data descriptor follows the data)."""

    name: str
    data_start: int
    size: int | None


def _local_header(head: bytes, position: int) -> _Record:
    if position + _LOCAL_HEADER.size > len(head):
        raise _NotATensorArchive("the head ends inside a local header")
    signature, _, flags, method, _, _, _, compressed, uncompressed, name_length, extra_length = (
        _LOCAL_HEADER.unpack_from(head, position)
    )
    if signature != _LOCAL_HEADER_SIGNATURE or method != _STORED:
        raise _NotATensorArchive("not a stored record")
    if not flags & _DATA_DESCRIPTOR_FLAG and (compressed != uncompressed or compressed == 0xFFFFFFFF):
        raise _NotATensorArchive("a record whose size is not in its local header")
    name_start = position + _LOCAL_HEADER.size
    data_start = name_start + name_length + extra_length
    if data_start > len(head):
        raise _NotATensorArchive("the head ends inside a local header")
    name = head[name_start : name_start + name_length].decode("utf-8", "replace")
    return _Record(name, data_start, None if flags & _DATA_DESCRIPTOR_FLAG else compressed)


def _record_end(head: bytes, record: _Record, longest: int) -> tuple[int, int]:
    """The length of ``record``'s data (at most ``longest`` bytes) and where the next local header
    starts: from the local header, or from the data descriptor after the data (signature, CRC-32
    of the data, and the sizes: 4 bytes each, or 8 in a zip64 archive)."""
    data_start = record.data_start
    if record.size is not None:
        if record.size > longest or data_start + record.size > len(head):
            raise _NotATensorArchive(f"record {record.name!r} is larger than expected")
        return record.size, data_start + record.size
    search = data_start
    while True:
        found = head.find(_DESCRIPTOR_SIGNATURE, search, data_start + longest + len(_DESCRIPTOR_SIGNATURE))
        if found < 0:
            raise _NotATensorArchive("no data descriptor")
        length = found - data_start
        crc = zlib.crc32(head[data_start:found])
        for size_format in ("<III", "<IQQ"):
            end = found + 4 + struct.calcsize(size_format)
            if end > len(head):
                continue
            described_crc, compressed, uncompressed = struct.unpack_from(size_format, head, found + 4)
            if described_crc == crc and compressed == uncompressed == length:
                return length, end
        search = found + 1


def parse_tensor_layout(head: bytes) -> TensorLayout | None:
    """The layout of the tensor whose ``torch.save`` archive starts with ``head``, or None when
    ``head`` is not (the start of) such an archive of one plain tensor, native byte order."""
    try:
        return _parse(head)
    except (_NotATensorArchive, pickle.UnpicklingError, EOFError, ValueError, TypeError, struct.error):
        return None


def _parse(head: bytes) -> TensorLayout:
    record = _local_header(head, 0)
    if not record.name.endswith("/data.pkl"):
        raise _NotATensorArchive(f"first record {record.name!r}")
    archive = record.name[: -len("data.pkl")]
    pickle_length, position = _record_end(head, record, len(head))
    pickled = head[record.data_start : record.data_start + pickle_length]
    rebuilt = _TensorUnpickler(io.BytesIO(pickled)).load()
    if not isinstance(rebuilt, _Rebuilt):
        raise _NotATensorArchive("the pickle is not one tensor")
    storage = rebuilt.storage
    byteorder_seen = False
    while True:
        record = _local_header(head, position)
        if not record.name.startswith(archive):
            raise _NotATensorArchive(f"record {record.name!r} outside {archive!r}")
        name = record.name[len(archive) :]
        if name == f"data/{storage.key}":
            break
        longest = _SMALL_RECORDS.get(name)
        if longest is None:
            raise _NotATensorArchive(f"unexpected record {record.name!r} before the storage")
        length, position = _record_end(head, record, longest)
        if name == "byteorder":
            byteorder_seen = True
            if head[record.data_start : record.data_start + length] != _NATIVE_BYTEORDER:
                raise _NotATensorArchive("not in this machine's byte order")
    if not byteorder_seen and sys.byteorder != "little":  # torch wrote little-endian before the record existed
        raise _NotATensorArchive("no byteorder record on a big-endian machine")
    storage_nbytes = storage.numel * storage.dtype.itemsize
    if record.size is not None and record.size != storage_nbytes:
        raise _NotATensorArchive("the storage record's size is not the storage's")
    return TensorLayout(
        dtype=rebuilt.dtype,
        size=rebuilt.size,
        stride=rebuilt.stride,
        storage_offset=rebuilt.storage_offset,
        storage_start=record.data_start,
        storage_nbytes=storage_nbytes,
        storage_has_descriptor=record.size is None,
    )


def storage_end_matches(layout: TensorLayout, after: bytes) -> bool:
    """Whether ``after`` (the bytes right after the storage) is what the archive has there: the
    storage record's data descriptor, or the next record: the check that the storage read is
    where the archive says it is."""
    if not layout.storage_has_descriptor:
        return after.startswith(struct.pack("<I", _LOCAL_HEADER_SIGNATURE))
    return descriptor_matches(after, layout.storage_nbytes)


def descriptor_matches(tail: bytes, nbytes: int) -> bool:
    """Whether ``tail`` (the bytes right after a record's data) starts with the data descriptor
    of a record of ``nbytes`` bytes: the check that the storage read was where the archive says."""
    if not tail.startswith(_DESCRIPTOR_SIGNATURE):
        return False
    for size_format in ("<III", "<IQQ"):
        if len(tail) >= 4 + struct.calcsize(size_format):
            _, compressed, uncompressed = struct.unpack_from(size_format, tail, 4)
            if compressed == uncompressed == nbytes:
                return True
    return False
