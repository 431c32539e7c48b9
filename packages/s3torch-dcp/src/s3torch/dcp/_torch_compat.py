"""Every torch name s3torch-dcp uses beyond torch's public API, in one place.

torch does not promise to keep these; each is named here with what we rely on it for, and
``tests/test_torch_compat.py`` fails, naming the name, when the installed torch changed one.
The CI matrix runs that test on the oldest torch we support and on the newest one released, so
a new torch that renames something is caught before a user is.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
from collections.abc import Callable, Mapping
from typing import IO, Any

import torch
import torch.storage
from torch.distributed._shard._utils import narrow_tensor_by_index
from torch.distributed.checkpoint import filesystem as _filesystem
from torch.distributed.checkpoint.planner import ReadItem

logger = logging.getLogger(__name__)

__all__ = [
    "CURRENT_DCP_VERSION",
    "LOAD_REPORTS_METADATA_ERRORS_FROM",
    "StoragePrefix",
    "dtype_to_storage_type_map",
    "file_writer_arguments",
    "item_slice",
    "metadata_path",
    "narrow_tensor_by_index",
    "write_files_from_queue",
]

#: ``torch.distributed.checkpoint.filesystem._StoragePrefix``: the ``storage_data`` of a rank's
#: global save plan; ``FileSystemWriter.write_data`` names that rank's files ``<prefix><n>.distcp``
#: from its ``prefix``. ``S3StorageWriter.prepare_global_plan`` sets it from the prefix strategy.
StoragePrefix = _filesystem._StoragePrefix

#: ``torch.distributed.checkpoint.filesystem.CURRENT_DCP_VERSION``: the format version that
#: ``FileSystemWriter.finish`` writes into ``Metadata.version``; ``S3StorageWriter.finish``
#: writes the same.
CURRENT_DCP_VERSION: str = _filesystem.CURRENT_DCP_VERSION

# narrow_tensor_by_index (torch.distributed._shard._utils, re-exported above): the slice of a
# saved tensor that a ReadItem asks for, as FileSystemReader.read_data takes it; the direct
# load takes the same slice.

#: From this release on, ``dcp.load`` puts the error of ``StorageReader.read_metadata`` (ours
#: names the missing ``.metadata``) into its ``CheckpointException``; before, it raised only
#: an ``AssertionError`` ("metadata is None" from 2.11) when no metadata could be read.
LOAD_REPORTS_METADATA_ERRORS_FROM = (2, 12)

#: The parameters of ``_write_files_from_queue`` this module knows how to fill (those of every
#: torch from our floor, 2.9, to the newest tested).
KNOWN_FILE_WRITER_PARAMETERS = frozenset(
    {
        "create_stream",
        "file_queue",
        "result_queue",
        "planner",
        "transforms",
        "inflight_threshhold",  # sic: torch's spelling
        "use_fsync",
        "thread_count",
        "serialization_format",
    }
)


def write_files_from_queue() -> Callable[..., None]:
    """``torch.distributed.checkpoint.filesystem._write_files_from_queue``: the loop one writer
    thread of ``FileSystemWriter`` runs (take a file from the queue, serialize its items into a
    stream from ``create_stream``, put the results on the result queue). ``S3StorageWriter``
    runs it on its own threads so that it can join all of them and raise the first error."""
    function: Callable[..., None] = _filesystem._write_files_from_queue
    return function


def file_writer_arguments(known: Mapping[str, Any]) -> dict[str, Any] | None:
    """The keyword arguments of this torch's ``_write_files_from_queue``, taken from ``known``
    (a ``None`` value is left to the function's default); ``None`` when the function has a
    parameter not in ``KNOWN_FILE_WRITER_PARAMETERS``, or a required one without a value: a
    torch this module does not know yet, whose writer threads are then used as they are
    (logged once as a warning; ``tests/test_torch_compat.py`` fails on such a torch)."""
    arguments: dict[str, Any] = {}
    for name, parameter in inspect.signature(write_files_from_queue()).parameters.items():
        value = known.get(name)
        if name in KNOWN_FILE_WRITER_PARAMETERS and value is not None:
            arguments[name] = value
        elif name not in KNOWN_FILE_WRITER_PARAMETERS or parameter.default is inspect.Parameter.empty:
            _warn_once(
                "torch %s changed torch.distributed.checkpoint.filesystem._write_files_from_queue (parameter %r):"
                " S3StorageWriter uses torch's own writer threads, which do not stop the other files of a failed save",
                torch.__version__,
                name,
            )
            return None
    return arguments


@functools.cache
def _warn_once(message: str, *arguments: object) -> None:
    logger.warning(message, *arguments)


def dtype_to_storage_type_map() -> dict[torch.dtype, str]:
    """``torch.storage._dtype_to_storage_type_map()``: dtype -> the name of its legacy typed
    storage class (``torch.float32`` -> ``"FloatStorage"``), the names ``torch.save`` pickles.
    Dtypes without a legacy class (uint16, float8...) are pickled as ``UntypedStorage`` bytes
    and are absent here."""
    names: dict[torch.dtype, str] = torch.storage._dtype_to_storage_type_map()
    return names


def item_slice(reader: _filesystem.FileSystemReader, file: IO[bytes], read_item: ReadItem, info: Any) -> IO[bytes]:
    """The bytes of one item as ``FileSystemReader.read_data`` reads them: its view of the file
    (``FileSystemReader._slice_file``), through the stream transforms its ``_StorageInfo``
    names (``FileSystemReader.transforms``, torch's experimental extensions)."""
    view = reader._slice_file(file, info)
    transformed: IO[bytes] = reader.transforms.transform_load_stream(
        read_item, getattr(info, "transform_descriptors", None) or (), view
    )
    return transformed


def metadata_path(reader: _filesystem.FileSystemReader, rank: int | None) -> os.PathLike[str]:
    """``FileSystemReader._get_metadata_path(rank)``: the ``.metadata`` that ``read_metadata``
    reads, or ``__<rank>.metadata`` for a checkpoint saved without collectives (a rank-local
    one, which ``dcp.load`` looks for with ``read_metadata(rank=...)``)."""
    path: os.PathLike[str] = reader._get_metadata_path(rank)
    return path
