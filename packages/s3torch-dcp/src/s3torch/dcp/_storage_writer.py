"""``S3StorageWriter``: ``torch.distributed.checkpoint`` saves to S3."""

from __future__ import annotations

import dataclasses
import logging
import os
import pickle
import queue
import threading
from typing import Any

import torch.distributed as dist
from torch.distributed.checkpoint.filesystem import FileSystemWriter
from torch.distributed.checkpoint.metadata import Metadata
from torch.distributed.checkpoint.planner import SavePlan, SavePlanner
from torch.distributed.checkpoint.storage import WriteResult
from torch.futures import Future

from s3torch.client import S3ClientConfig, S3Exception, parse_s3_uri

from ._file_system import S3FileSystem
from ._prefix_strategy import DefaultPrefixStrategy, S3PrefixStrategyBase
from ._torch_compat import CURRENT_DCP_VERSION, StoragePrefix, file_writer_arguments, write_files_from_queue
from ._uri import path_to_str

logger = logging.getLogger(__name__)


class IncompleteSaveError(S3Exception):
    """A rank lost some of its checkpoint items (a file failed to upload); nothing is published.

    ``bucket`` and ``key`` name the file that failed when its error said so (with its ``code``,
    ``request_id`` and ``status``), else the checkpoint's path; the failure is its ``__cause__``.
    """


class S3StorageWriter(FileSystemWriter):
    """The ``StorageWriter`` of ``torch.distributed.checkpoint.save`` / ``async_save`` for S3.

    Each rank writes ``thread_count`` files, concurrently, named by ``prefix_strategy`` under
    ``path``; each file is a multipart upload whose parts go up in parallel while the next bytes
    are serialized. The checkpoint's ``.metadata`` is written by the coordinator only after every
    rank has finished every file, with one PUT straight to its key (an S3 PUT is atomic: no
    temporary object, no copy), so a checkpoint without ``.metadata`` is one whose save did not
    complete. With ``overwrite=True`` (torch's default) an existing ``.metadata`` at ``path`` is
    deleted before any file is written: an interrupted overwrite leaves no loadable mixture of
    old and new files. With ``overwrite=False`` an existing checkpoint is refused
    ("Checkpoint already exists"), and every object of the save (each file and ``.metadata``) is
    written create-only (``if_none_match="*"``): an existing object is never replaced, even by a
    save racing with this one; such a save fails with an ``S3Exception`` ("already exists") and
    publishes no ``.metadata``. The files it wrote before failing stay: delete them, or save
    elsewhere, before saving to the same path again with ``overwrite=False``.

    Args:
        region: Region of the bucket.
        path: The checkpoint's location, ``s3://bucket/prefix``.
        s3client_config: Transport settings (part size, throughput target, retries...).
        prefix_strategy: Where each rank's files go (``DefaultPrefixStrategy()``: ``__<rank>_``).
        thread_count: Files (and threads writing them) per rank; at least 1.
        endpoint: An S3-compatible endpoint URL (s3torch addition; keyword only).
        **kwargs: Passed to ``FileSystemWriter`` (``overwrite``, ``per_thread_copy_ahead``...);
            ``sync_files`` is always False (S3 has nothing to sync).

    Raises:
        ValueError: ``thread_count`` is not a positive integer, or ``path`` is not an S3 URI.
    """

    def __init__(
        self,
        region: str,
        path: str,
        s3client_config: S3ClientConfig | None = None,
        prefix_strategy: S3PrefixStrategyBase | None = None,
        thread_count: int = 1,
        *,
        endpoint: str | None = None,
        **kwargs: Any,
    ) -> None:
        parse_s3_uri(path)  # before torch's FileSystemWriter takes it for a local path
        if isinstance(thread_count, bool) or not isinstance(thread_count, int) or thread_count < 1:
            raise ValueError(f"thread_count must be a positive integer, got {thread_count!r}")
        if prefix_strategy is not None and not callable(prefix_strategy):
            raise TypeError(
                "prefix_strategy must be an S3PrefixStrategyBase (such as NumericPrefixStrategy(base=2)) or None,"
                f" got {type(prefix_strategy).__name__}"
            )
        kwargs.pop("sync_files", None)
        super().__init__(path=path, sync_files=False, thread_count=thread_count, **kwargs)
        self._s3_fs = S3FileSystem(
            region, s3client_config=s3client_config, endpoint=endpoint, create_only=not self.overwrite
        )
        self.fs = self._s3_fs  # type: ignore[assignment]  # torch declares its local FileSystem
        self.path = path_to_str(self._s3_fs.init_path(path))
        self.prefix_strategy: S3PrefixStrategyBase = prefix_strategy or DefaultPrefixStrategy()

    def _metadata_path_of_this_save(self) -> str:
        rank: int | None = getattr(self, "rank", None)
        per_rank = rank is not None and not getattr(self, "use_collectives", True)
        return self._s3_fs.concat_path(self.path, f"__{rank}.metadata" if per_rank else ".metadata")

    def prepare_local_plan(self, plan: SavePlan) -> SavePlan:
        """torch's check ("Checkpoint already exists" unless ``overwrite``), after which every
        object of this save is written create-only unless ``overwrite``."""
        # Runs on every rank before it writes anything; follows ``overwrite`` as it is now.
        self._s3_fs.create_only = not getattr(self, "overwrite", True)
        local_plan: SavePlan = super().prepare_local_plan(plan)
        return local_plan

    def prepare_global_plan(self, plans: list[SavePlan]) -> list[SavePlan]:
        """Give every rank's plan its file-name prefix from ``prefix_strategy``, and (when
        overwriting) delete the ``.metadata`` of an earlier checkpoint at this path before any
        file of this save is written."""
        rank: int | None = getattr(self, "rank", None)
        if rank is not None and not getattr(self, "use_collectives", True):
            # Without collectives every rank plans alone: its plan index is not its rank.
            if dist.is_available() and dist.is_initialized():
                prefixes = self.prefix_strategy.prefixes_for_save([rank] * len(plans), dist.get_world_size())
            else:
                prefixes = [self.prefix_strategy(rank) for _ in plans]
        else:
            # The coordinator holds one plan per rank: the world size of this save, whenever
            # the strategy was built (a strategy made before the process group must not put
            # every rank under one prefix).
            prefixes = self.prefix_strategy.prefixes_for_save(range(len(plans)), len(plans))
        if getattr(self, "overwrite", True):
            # Runs on the coordinator only, before any rank writes: the old .metadata must not
            # describe a mixture of old and new files while this save is under way.
            metadata_path = self._metadata_path_of_this_save()
            if self.fs.exists(metadata_path):
                logger.info("Overwriting the checkpoint at %s: deleting %s before saving", self.path, metadata_path)
                self.fs.rm_file(metadata_path)
        return [
            dataclasses.replace(plan, storage_data=StoragePrefix(prefix))
            for plan, prefix in zip(plans, prefixes, strict=True)
        ]

    def write_data(self, plan: SavePlan, planner: SavePlanner) -> Future[list[WriteResult]]:
        """Write this rank's files, ``thread_count`` at a time. Raises (so that no ``.metadata``
        is published) unless every item of the plan was written."""
        self._s3_fs._last_write_error = None
        future = super().write_data(plan, planner)
        results: list[WriteResult] = future.wait()
        if len(results) != len(plan.items):
            # FileSystemWriter's extra threads swallow their exceptions (they are only printed):
            # a failed shard shows up as missing results.
            cause = self._s3_fs._last_write_error
            bucket, key = parse_s3_uri(self.path)
            failed = cause if isinstance(cause, S3Exception) else S3Exception(bucket=bucket, key=key)
            raise IncompleteSaveError(
                f"Only {len(results)} of {len(plan.items)} items of this rank were written to {self.path}"
                f" (a checkpoint file failed: {cause!r}); the checkpoint is not published",
                bucket=failed.bucket or bucket,
                key=failed.key or key,
                code=failed.code,
                request_id=failed.request_id,
                status=failed.status,
            ) from cause
        return future

    def _write_data(self, planner: SavePlanner, file_queue: queue.Queue[Any]) -> Future[list[WriteResult]]:
        # FileSystemWriter's version raises the main thread's error without waiting for its other
        # threads (they go on uploading after the save failed) and only prints theirs. Here every
        # thread is joined, the first error is raised, and after an error no new file is started.
        arguments = self._file_writer_arguments(planner, file_queue)
        if arguments is None:  # a torch whose file writer we do not know (logged): its own threads
            future: Future[list[WriteResult]] = super()._write_data(planner, file_queue)
            return future
        result_queue: queue.Queue[list[WriteResult]] = arguments["result_queue"]
        errors: list[BaseException] = []

        def write_files() -> None:
            try:
                write_files_from_queue()(**arguments)
            except BaseException as error:  # noqa: BLE001 - raised once every thread is joined
                errors.append(error)
                try:
                    while True:
                        file_queue.get_nowait()
                except queue.Empty:
                    pass

        threads = [
            threading.Thread(target=write_files, name=f"s3torch-dcp-writer-{index}", daemon=True)
            for index in range(1, self.thread_count)
        ]
        for thread in threads:
            thread.start()
        write_files()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        results: list[WriteResult] = []
        while not result_queue.empty():
            results += result_queue.get_nowait()
        done: Future[list[WriteResult]] = Future()
        done.set_result(results)
        return done

    def _file_writer_arguments(self, planner: SavePlanner, file_queue: queue.Queue[Any]) -> dict[str, Any] | None:
        """The arguments of this torch's ``_write_files_from_queue``, or None if it takes one we
        do not know."""
        return file_writer_arguments(
            {
                "create_stream": self.fs.create_stream,
                "file_queue": file_queue,
                "result_queue": queue.Queue(),
                "planner": planner,
                "transforms": getattr(self, "transforms", None),
                "inflight_threshhold": self.per_thread_copy_ahead,
                "use_fsync": self.sync_files,
                "thread_count": self.thread_count,
                "serialization_format": getattr(self, "serialization_format", None),
            }
        )

    def finish(self, metadata: Metadata, results: list[list[WriteResult]]) -> None:
        """Publish ``.metadata``: called by DCP on the coordinator once every rank wrote every file.

        The metadata is assembled as torch's ``FileSystemWriter.finish`` does it, then written
        with one PUT straight to its key, where torch writes a temporary file and renames it
        (on S3: a copy and deletes, during which no ``.metadata`` exists). With
        ``overwrite=False`` the PUT is create-only.
        """
        metadata.version = CURRENT_DCP_VERSION
        storage_data = {}
        for rank_results in results:
            storage_data.update({result.index: result.storage_data for result in rank_results})
        metadata.storage_data = storage_data
        storage_meta = getattr(self, "storage_meta", None)
        if storage_meta is not None:
            metadata.storage_meta = storage_meta()
        with self.fs.create_stream(self._metadata_path_of_this_save(), "wb") as metadata_file:
            pickle.dump(metadata, metadata_file)
        logger.debug("Checkpoint %s published (%d ranks)", self.path, len(results))

    @classmethod
    def validate_checkpoint_id(cls, checkpoint_id: str | os.PathLike[str]) -> bool:
        """Whether ``checkpoint_id`` is an ``s3://`` path (see ``S3FileSystem.validate_checkpoint_id``)."""
        return S3FileSystem.validate_checkpoint_id(checkpoint_id)
