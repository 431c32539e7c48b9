"""An fsspec filesystem for ``s3://`` on ``S3Client``, for Lightning's own bookkeeping.

Checkpoint bytes go through ``S3LightningCheckpoint``, but Lightning also asks fsspec about
``s3://`` paths itself: ``ModelCheckpoint`` checks whether files exist and lists its directory,
the CSV logger writes ``metrics.csv`` and ``hparams.yaml``, ``load_from_checkpoint`` opens the
file. fsspec serves ``s3://`` with s3fs, and fails with "Install s3fs to access S3" without it.
When s3fs is not installed, importing ``s3torch.lightning`` registers this filesystem for the
``s3`` protocol instead, so those calls go through the same client, endpoint and credentials as
the checkpoints. With s3fs installed nothing is registered: s3fs keeps serving ``s3://``.

The filesystem does what Lightning needs (``info``/``exists``/``isfile``/``isdir``, ``ls``,
``open`` for reading, writing and appending, ``rm``, ``cp``, ``modified``); it is not a general
replacement for s3fs. S3 has no directories: every path that is not an object counts as a
(possibly empty) directory for ``isdir`` (as Lightning's own object-store handling assumes, so
that logs can be written under a new prefix), ``makedirs`` does nothing, and ``exists`` is true
for objects and for prefixes that hold objects.
"""

from __future__ import annotations

import importlib.util
import io
import logging
import os
import threading
from datetime import datetime, timezone
from typing import Any

import fsspec  # type: ignore[import-untyped]
from fsspec.spec import AbstractFileSystem  # type: ignore[import-untyped]

from s3torch.client import S3Client, S3Exception

from ._compat import lightning_user_agent

logger = logging.getLogger(__name__)

PROTOCOL = "s3"
_FALLBACK_REGION = "us-east-1"

_client_lock = threading.Lock()
_client: S3Client | None = None


def use_client(client: S3Client) -> None:
    """Make ``client`` the one Lightning's ``s3://`` bookkeeping uses (the latest
    ``S3LightningCheckpoint`` built, or unpickled, in this process wins)."""
    global _client
    with _client_lock:
        _client = client


def current_client() -> S3Client:
    """The client set by ``use_client``; before any, one for the region of the AWS environment
    (``AWS_REGION``, ``AWS_DEFAULT_REGION``, the profile's region), else us-east-1."""
    global _client
    with _client_lock:
        if _client is None:
            _client = S3Client(_environment_region(), user_agent=lightning_user_agent())
        return _client


def _environment_region() -> str:
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        return region
    try:
        import botocore.session

        configured = botocore.session.get_session().get_config_variable("region")
    except Exception:  # noqa: BLE001 - an unreadable AWS configuration means: no configured region
        configured = None
    return str(configured) if configured else _FALLBACK_REGION


def register() -> bool:
    """Serve fsspec's ``s3://`` with ``S3LightningFileSystem`` unless s3fs is installed.

    Returns whether it is registered (now or before)."""
    if importlib.util.find_spec("s3fs") is not None:
        return False
    if fsspec.registry.get(PROTOCOL) is not S3LightningFileSystem:
        fsspec.register_implementation(PROTOCOL, S3LightningFileSystem, clobber=True)
        logger.debug("s3fs is not installed: fsspec's s3:// is served by %s", S3LightningFileSystem.__qualname__)
    return True


def _is_not_found(error: S3Exception) -> bool:
    return error.status == 404 or error.code in ("NoSuchKey", "NoSuchBucket", "NotFound")


def _timestamp(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


class S3LightningFileSystem(AbstractFileSystem):  # type: ignore[misc]
    """fsspec's ``s3://`` on an ``S3Client`` (by default the one of the latest
    ``S3LightningCheckpoint``). Paths are ``bucket/key``, with or without ``s3://``."""

    protocol = PROTOCOL
    root_marker = ""
    # Built per call (cheap: the connections belong to the client), so a client set later by
    # use_client() is always the one in use.
    cachable = False

    def __init__(self, *args: Any, client: S3Client | None = None, **storage_options: Any) -> None:
        super().__init__(*args, **storage_options)
        self.client = client if client is not None else current_client()

    # ---- paths ----------------------------------------------------------------------------
    def _location(self, path: str) -> tuple[str, str]:
        stripped: str = self._strip_protocol(path)
        bucket, _, key = stripped.partition("/")
        if not bucket:
            raise ValueError(f"{path!r} names no bucket")
        return bucket, key

    def _object(self, path: str) -> tuple[str, str]:
        bucket, key = self._location(path)
        if not key:
            raise IsADirectoryError(f"{path!r} is a bucket, not an object")
        return bucket, key

    @staticmethod
    def _file(bucket: str, key: str, size: int, etag: str, last_modified: int) -> dict[str, Any]:
        return {
            "name": f"{bucket}/{key}",
            "type": "file",
            "size": size,
            "ETag": etag,
            "LastModified": _timestamp(last_modified),
        }

    @staticmethod
    def _directory(name: str) -> dict[str, Any]:
        return {"name": name, "type": "directory", "size": 0}

    # ---- metadata -------------------------------------------------------------------------
    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        bucket, key = self._location(path)
        if not key:
            return self._directory(bucket)
        try:
            head = self.client.head_object(bucket, key)
        except S3Exception as error:
            if not _is_not_found(error):
                raise
        else:
            return self._file(bucket, key, head.size, head.etag, head.last_modified)
        if self._has_entries(bucket, key):
            return self._directory(f"{bucket}/{key}")
        raise FileNotFoundError(f"s3://{bucket}/{key}")

    def _has_entries(self, bucket: str, key: str) -> bool:
        try:
            page = next(self.client.list_objects(bucket, f"{key}/", delimiter="/", max_keys=1), None)
        except S3Exception as error:
            if _is_not_found(error):
                return False
            raise
        return page is not None and bool(page.object_info or page.common_prefixes)

    def isdir(self, path: str) -> bool:
        """True unless ``path`` is an object (S3 has no directories: see the module's docstring)."""
        return not self.isfile(path)

    def modified(self, path: str) -> datetime:
        info = self.info(path)
        if info["type"] != "file":
            raise IsADirectoryError(f"{path!r} is a prefix, not an object: it has no modification time")
        modified: datetime = info["LastModified"]
        return modified

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        """The objects and prefixes right under ``path`` (an object: itself; nothing there: [])."""
        bucket, key = self._location(path)
        prefix = f"{key}/" if key else ""
        entries: list[dict[str, Any]] = []
        try:
            for page in self.client.list_objects(bucket, prefix, delimiter="/"):
                entries += [
                    self._file(bucket, info.key, info.size, info.etag, info.last_modified)
                    for info in page.object_info
                    if info.key != prefix  # a "folder" marker object
                ]
                entries += [self._directory(f"{bucket}/{common.rstrip('/')}") for common in page.common_prefixes]
        except S3Exception as error:
            if _is_not_found(error):
                raise FileNotFoundError(f"s3://{bucket}") from error
            raise
        if not entries and key:
            try:
                head = self.client.head_object(bucket, key)
            except S3Exception as error:
                if not _is_not_found(error):
                    raise
            else:
                entries = [self._file(bucket, key, head.size, head.etag, head.last_modified)]
        return entries if detail else [entry["name"] for entry in entries]

    # ---- directories: S3 has none ---------------------------------------------------------
    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        """Nothing to do: a prefix exists once an object is written under it."""

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        """Nothing to do: a prefix exists once an object is written under it."""

    def rmdir(self, path: str) -> None:
        """Nothing to do: a prefix disappears with its last object."""

    # ---- objects --------------------------------------------------------------------------
    def _open(
        self,
        path: str,
        mode: str = "rb",
        block_size: Any = None,
        autocommit: bool = True,
        cache_options: Any = None,
        **kwargs: Any,
    ) -> Any:
        bucket, key = self._object(path)
        if mode == "rb":
            reader = self.client.get_object(bucket, key)
            try:
                reader.prefetch()  # sends the GET now, so a missing object fails here
            except S3Exception as error:
                if _is_not_found(error):
                    raise FileNotFoundError(f"s3://{bucket}/{key}") from error
                raise
            # S3Reader has no read1(), which text mode (io.TextIOWrapper) needs; BufferedReader
            # adds it, and passes large reads (torch.load's) straight to the reader's readinto.
            return io.BufferedReader(reader)
        if not autocommit:
            raise NotImplementedError(f"{type(self).__name__} has no transactions; install s3fs for them")
        if mode == "wb":
            return self.client.put_object(bucket, key)
        if mode == "ab":
            # S3 objects cannot grow: the new object is the old bytes, then what is written.
            existing = self._read_or_empty(bucket, key)
            writer = self.client.put_object(bucket, key)
            writer.write(existing)
            return writer
        raise ValueError(f"mode {mode!r} is not supported for s3://{bucket}/{key} (use rb, wb or ab, or text modes)")

    def _read_or_empty(self, bucket: str, key: str) -> bytes:
        try:
            return b"".join(self.client.get_object_stream(bucket, key))
        except S3Exception as error:
            if _is_not_found(error):
                return b""
            raise

    def rm_file(self, path: str) -> None:
        bucket, key = self._object(path)
        self.client.delete_object(bucket, key)

    def _rm(self, path: str) -> None:
        self.rm_file(path)

    def cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        source_bucket, source_key = self._object(path1)
        target_bucket, target_key = self._object(path2)
        self.client.copy_object(source_bucket, source_key, target_bucket, target_key)
