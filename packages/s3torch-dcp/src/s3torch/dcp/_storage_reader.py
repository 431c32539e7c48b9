"""``S3StorageReader``: ``torch.distributed.checkpoint`` loads from S3."""

from __future__ import annotations

import logging
import os
from typing import IO, Any

from torch.distributed.checkpoint.filesystem import FileSystemReader
from torch.distributed.checkpoint.metadata import Metadata
from torch.distributed.checkpoint.planner import LoadPlan, LoadPlanner, ReadItem
from torch.futures import Future

from s3torch.client import S3ClientConfig, S3Exception, is_not_found, parse_s3_uri
from s3torch.readers import (
    DCPS3ReaderConstructorProtocol,
    S3ReaderConstructor,
    S3ReaderConstructorProtocol,
    check_reader_constructor,
)

from ._file_system import S3FileSystem
from ._plan_load import PlanLoader
from ._torch_compat import item_slice, metadata_path
from ._uri import path_to_str

logger = logging.getLogger(__name__)


class CheckpointNotFoundError(S3Exception, FileNotFoundError):
    """There is no complete checkpoint at the path: its ``.metadata`` does not exist (wrong
    path, or a save that never finished). Also a ``FileNotFoundError``; the message starts with
    the upstream's "Service error: The key does not exist"."""


class S3StorageReader(FileSystemReader):
    """The ``StorageReader`` of ``torch.distributed.checkpoint.load`` for S3.

    By default files are read with ``S3ReaderConstructor.dcp_optimized()``: each rank fetches
    only the byte ranges its load plan needs (neighbours closer than ``max_gap_size`` share one
    ranged GET), several files at a time, and each tensor's bytes are received straight into
    the destination tensor when it can take them as they are (a CPU, contiguous tensor of the
    saved dtype), without ``torch.load``'s temporary copy. ``prepare_local_plan`` orders the
    plan by file offset and hands the ranges to the reader constructor.

    Every file is read through a reader the reader constructor builds (a constructor of your
    own is always called, once per file). A reader with the ``ItemStreamReader`` capability
    (``DCPOptimizedS3Reader`` and its subclasses) hands each item over as a stream, which is
    what lets tensors be received in place; any other reader (``sequential()``,
    ``range_based()``) is read as torch's ``FileSystemReader.read_data`` reads a file:
    ``torch.load`` of each item, then a copy.

    Args:
        region: Region of the bucket.
        path: The checkpoint's location, ``s3://bucket/prefix``.
        s3client_config: Transport settings.
        reader_constructor: How files are read (``S3ReaderConstructor.dcp_optimized()`` by
            default; ``sequential()`` and ``range_based()`` work for any access pattern).
        endpoint: An S3-compatible endpoint URL (s3torch addition; keyword only).
    """

    def __init__(
        self,
        region: str,
        path: str | os.PathLike[str],
        s3client_config: S3ClientConfig | None = None,
        reader_constructor: S3ReaderConstructorProtocol | None = None,
        *,
        endpoint: str | None = None,
    ) -> None:
        parse_s3_uri(path)  # before torch's FileSystemReader takes it for a local path
        check_reader_constructor(reader_constructor)
        super().__init__(path)
        self._reader_constructor = reader_constructor or S3ReaderConstructor.dcp_optimized()
        self._s3_fs = S3FileSystem(
            region, s3client_config=s3client_config, reader_constructor=self._reader_constructor, endpoint=endpoint
        )
        self.fs = self._s3_fs  # type: ignore[assignment]  # torch declares its local FileSystem
        self.path = path_to_str(self._s3_fs.init_path(path))
        self.sync_files = False

    @property
    def reader_constructor(self) -> S3ReaderConstructorProtocol:
        """The constructor of the readers the checkpoint files are read with."""
        return self._reader_constructor

    def read_metadata(self, *args: Any, **kwargs: Any) -> Metadata:
        """Read the checkpoint's ``.metadata``.

        Raises:
            CheckpointNotFoundError: there is no ``.metadata`` at the path.
        """
        try:
            metadata: Metadata = super().read_metadata(*args, **kwargs)
        except S3Exception as error:
            if not is_not_found(error):
                raise
            path = os.fspath(metadata_path(self, kwargs.get("rank")))
            # The upstream's text for what is missing: the bucket, or the key.
            missing = "bucket" if error.code == "NoSuchBucket" else "key"
            raise CheckpointNotFoundError(
                f"Service error: The {missing} does not exist: no checkpoint at {self.path}: {path} does not"
                " exist. Its .metadata is written last, once every file of a save is complete: check the"
                " path, and whether the save finished.",
                bucket=error.bucket,
                key=error.key,
                code=error.code,
                request_id=error.request_id,
                status=error.status,
            ) from error
        return metadata

    def prepare_local_plan(self, plan: LoadPlan) -> LoadPlan:
        """Sort the plan's items by their offset in their file (in place), so that each file is
        read front to back, and give the DCP-optimized reader the byte ranges to fetch."""
        storage_data = self.storage_data
        plan.items.sort(key=lambda item: storage_data[item.storage_index].offset)
        if isinstance(self._reader_constructor, DCPS3ReaderConstructorProtocol):
            self._reader_constructor.set_item_ranges_by_file(plan.items, storage_data, self.path)
        return plan

    def read_data(self, plan: LoadPlan, planner: LoadPlanner) -> Future[None]:
        """Read the plan's items into the planner's tensors, each file through a reader of the
        reader constructor (see the class docstring)."""
        PlanLoader(_CheckpointFiles(self), planner).load(plan.items)
        done: Future[None] = Future()
        done.set_result(None)
        return done

    @classmethod
    def validate_checkpoint_id(cls, checkpoint_id: str | os.PathLike[str]) -> bool:
        """Whether ``checkpoint_id`` is an ``s3://`` path (see ``S3FileSystem.validate_checkpoint_id``)."""
        return S3FileSystem.validate_checkpoint_id(checkpoint_id)


class _CheckpointFiles:
    """The files of a checkpoint as ``PlanLoader`` sees them, through ``storage``."""

    def __init__(self, storage: S3StorageReader) -> None:
        self._storage = storage
        self.storage_data: dict[Any, Any] = storage.storage_data

    def file_uri(self, relative_path: str) -> str:
        return str(self._storage.fs.concat_path(self._storage.path, relative_path))

    def open_file(self, uri: str) -> Any:
        return self._storage.fs.create_stream(uri, "rb")

    def item_slice(self, file: IO[bytes], read_item: ReadItem, info: Any) -> IO[bytes]:
        return item_slice(self._storage, file, read_item, info)
