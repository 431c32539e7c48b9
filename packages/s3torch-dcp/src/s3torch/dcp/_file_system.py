"""``S3FileSystem``: the ``FileSystemBase`` that ``S3StorageWriter`` and ``S3StorageReader`` use."""

from __future__ import annotations

import io
import logging
import os
import random
import time
from collections.abc import Generator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch.distributed.checkpoint.filesystem import FileSystemBase

from s3torch.client import S3Client, S3ClientConfig, S3Exception, UserAgent, is_not_found, parse_s3_uri
from s3torch.readers import (
    DCPOptimizedS3Reader,
    S3ReaderConstructor,
    S3ReaderConstructorProtocol,
    check_reader_constructor,
)

from ._uri import path_to_str

logger = logging.getLogger(__name__)

_Path = TypeVar("_Path", bound=str | os.PathLike[Any])

#: Attempts of the delete that ends a ``rename``, with a random exponential wait of at most
#: ``DELETE_MAX_WAIT_SECONDS`` between them (as upstream).
DELETE_ATTEMPTS = 3
DELETE_MAX_WAIT_SECONDS = 5.0


def dcp_user_agent(reader_constructor: S3ReaderConstructorProtocol | None) -> UserAgent:
    reader_type = S3ReaderConstructor.get_reader_type_string(reader_constructor)
    return UserAgent(["dcp", str(torch.__version__), f"md/reader_type#{reader_type}"])


class S3FileSystem(FileSystemBase):
    """The file operations of ``torch.distributed.checkpoint`` on S3 objects; paths are
    ``s3://bucket/key`` URIs.

    Args:
        region: Region of the bucket.
        s3_client: A client to use (then ``s3client_config`` and ``endpoint`` are ignored).
        s3client_config: Transport settings of the client made when ``s3_client`` is omitted.
        reader_constructor: How ``create_stream(path, "rb")`` reads (sequential by default).
        endpoint: An S3-compatible endpoint URL (s3torch addition; keyword only).
        create_only: Whether ``create_stream(path, "wb")`` only creates objects (s3torch
            addition; keyword only; also the attribute ``create_only``): every object is written
            with ``if_none_match="*"``, so an existing object is never replaced, even by a write
            racing with this one, and closing such a stream raises ``S3Exception`` instead.
    """

    def __init__(
        self,
        region: str,
        s3_client: S3Client | None = None,
        s3client_config: S3ClientConfig | None = None,
        reader_constructor: S3ReaderConstructorProtocol | None = None,
        *,
        endpoint: str | None = None,
        create_only: bool = False,
    ) -> None:
        check_reader_constructor(reader_constructor)
        if s3_client is not None and not isinstance(s3_client, S3Client):
            raise TypeError(f"s3_client must be an S3Client or None, got {type(s3_client).__name__}")
        self._reader_constructor = reader_constructor or S3ReaderConstructor.default()
        self._client = s3_client or S3Client(
            region,
            endpoint=endpoint,
            user_agent=dcp_user_agent(reader_constructor),
            s3client_config=s3client_config,
        )
        self.path: str | os.PathLike[str] = ""
        self.create_only = create_only
        # The last failure of a write stream, so a writer can name the cause of a lost shard.
        self._last_write_error: Exception | None = None

    @property
    def client(self) -> S3Client:
        """The ``S3Client`` every operation goes through."""
        return self._client

    @property
    def reader_constructor(self) -> S3ReaderConstructorProtocol:
        """The constructor of the readers ``create_stream(path, "rb")`` returns."""
        return self._reader_constructor

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_last_write_error"] = None
        return state

    @contextmanager
    def create_stream(self, path: str | os.PathLike[str], mode: str) -> Generator[io.IOBase, None, None]:
        """A stream over the object ``path``: an ``S3Writer`` for ``"wb"`` (the object is
        published when the block ends normally, and not at all when it raises; with
        ``create_only``, only if no object exists at ``path``), a reader of the configured
        strategy for ``"rb"``.

        Raises:
            ValueError: ``mode`` is neither ``"rb"`` nor ``"wb"``, or ``path`` is not an S3 URI.
            S3Exception: S3 refused a request (with ``create_only``: an object already exists).
        """
        if mode == "wb":
            bucket, key = parse_s3_uri(path, require_key=True)
            logger.debug("create_stream wb s3://%s/%s create_only=%s", bucket, key, self.create_only)
            writer = self._client.put_object(bucket, key, if_none_match="*" if self.create_only else None)
            try:
                with writer:
                    yield writer
            except Exception as error:
                self._last_write_error = error
                raise
        elif mode == "rb":
            bucket, key = parse_s3_uri(path, require_key=True)
            logger.debug("create_stream rb s3://%s/%s", bucket, key)
            reader = self._client.get_object(bucket, key, reader_constructor=self._reader_constructor)
            if isinstance(reader, DCPOptimizedS3Reader):
                # DCP reads every planned item of the file, in order: fetch the range groups ahead.
                reader.prefetch()
            with reader:
                yield reader
        else:
            raise ValueError(
                f"Invalid {mode=} mode argument: create_stream only supports rb (read mode) & wb (write mode)"
            )

    def concat_path(self, path: str | os.PathLike[str], suffix: str) -> str:
        """``path`` joined with ``suffix`` (``os.path.join``)."""
        return os.path.join(path_to_str(path), suffix)

    def init_path(self, path: _Path) -> _Path:
        """Remember and return ``path``, of the type it came as (a ``Path`` stays a ``Path``, as
        upstream); ``path_to_str`` gives its ``s3://`` text.

        Raises:
            ValueError: ``path`` is not an ``s3://bucket[/prefix]`` URI.
        """
        parse_s3_uri(path)
        self.path = path
        return path

    def rename(self, path: str | os.PathLike[str], new_path: str | os.PathLike[str]) -> None:
        """Rename an object: a server-side copy, then a delete of the source (retried).

        Raises:
            ValueError: the paths are in different buckets.
            S3Exception: the copy failed (a missing source: "Service error: The object was not
                found"), or every attempt of the delete failed.
        """
        old_bucket, old_key = parse_s3_uri(path, require_key=True)
        new_bucket, new_key = parse_s3_uri(new_path, require_key=True)
        if old_bucket != new_bucket:
            raise ValueError(
                "Source and destination buckets cannot be different (rename does not support cross-buckets operations)"
            )
        logger.debug("rename s3://%s/%s to s3://%s/%s", old_bucket, old_key, new_bucket, new_key)
        # botocore percent-encodes the copy source itself, special characters included.
        self._client.copy_object(old_bucket, old_key, new_bucket, new_key)
        self._delete_with_retry(old_bucket, old_key)

    def _delete_with_retry(self, bucket: str, key: str) -> None:
        for attempt in range(1, DELETE_ATTEMPTS + 1):
            try:
                self._client.delete_object(bucket, key)
                return
            except S3Exception as error:
                if attempt == DELETE_ATTEMPTS:
                    raise
                logger.debug("delete of s3://%s/%s failed (attempt %d): %s", bucket, key, attempt, error)
                time.sleep(random.uniform(0, min(DELETE_MAX_WAIT_SECONDS, 2.0**attempt)))

    def mkdir(self, path: str | os.PathLike[str]) -> None:
        """Nothing to do: S3 has no directories."""

    @classmethod
    def validate_checkpoint_id(cls, checkpoint_id: str | os.PathLike[str]) -> bool:
        """Whether ``checkpoint_id`` is a checkpoint path this file system takes: an
        ``s3://bucket[/prefix]`` URI (or, as upstream, any ``pathlib.Path``)."""
        if isinstance(checkpoint_id, Path):
            return True
        try:
            parse_s3_uri(checkpoint_id)
        except (ValueError, TypeError):
            return False
        return True

    def exists(self, path: str | os.PathLike[str]) -> bool:
        """Whether the object exists (a HEAD); errors other than "not found" are raised."""
        bucket, key = parse_s3_uri(path, require_key=True)
        try:
            self._client.head_object(bucket, key)
        except S3Exception as error:
            if is_not_found(error):
                return False
            raise
        return True

    def rm_file(self, path: str | os.PathLike[str]) -> None:
        """Delete the object; a failure is logged, not raised (as upstream)."""
        bucket, key = parse_s3_uri(path, require_key=True)
        try:
            self._client.delete_object(bucket, key)
        except S3Exception as error:
            logger.warning("Failed to delete s3://%s/%s: %s", bucket, key, error)
