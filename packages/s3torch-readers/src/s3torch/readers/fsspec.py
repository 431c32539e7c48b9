"""An fsspec filesystem for ``s3://`` on ``S3Client``, for the libraries that reach S3 through fsspec.

fsspec serves ``s3://`` with s3fs, and fails with "Install s3fs to access S3" without it. Two of
our packages meet fsspec there:

* Lightning asks fsspec about ``s3://`` paths itself: ``ModelCheckpoint`` checks whether files
  exist and lists its directory, the CSV logger writes ``metrics.csv`` and ``hparams.yaml``,
  ``load_from_checkpoint`` opens the file.
* ``torch.distributed.checkpoint`` without a storage (``dcp.save(sd, checkpoint_id="s3://...")``)
  falls back to its ``FsspecWriter``/``FsspecReader``.

When s3fs is not installed, importing ``s3torch.lightning`` or ``s3torch.dcp`` calls
``register()``, which serves fsspec's ``s3`` protocol with ``S3FsspecFileSystem``. With s3fs
installed nothing is registered: s3fs keeps serving ``s3://``.

The filesystem does what those callers need (``info``/``exists``/``isfile``/``isdir``, ``ls``,
``open`` for reading, writing and appending, ``rm``, ``cp``/``mv`` of objects, ``modified``); it
is not a general replacement for s3fs. S3 has no directories: every path that is not an object
counts as a (possibly empty) directory for ``isdir`` (as Lightning's own object-store handling
assumes, so that logs can be written under a new prefix), ``makedirs`` does nothing, and
``exists`` is true for objects and for prefixes that hold objects.

This module imports fsspec, a dependency of the extra ``s3torch-readers[fsspec]`` (which
s3torch-dcp and s3torch-lightning install); ``s3torch.readers``' ``__init__`` never imports it.
"""

from __future__ import annotations

import errno
import importlib.util
import io
import logging
import os
import threading
from datetime import datetime, timezone
from typing import Any

import fsspec  # type: ignore[import-untyped]
from fsspec.spec import AbstractFileSystem  # type: ignore[import-untyped]

from s3torch.client import S3Client, S3Exception, is_not_found, parse_s3_uri

__all__ = ["PROTOCOL", "S3FsspecFileSystem", "current_client", "register", "use_client"]

logger = logging.getLogger(__name__)

#: The fsspec protocol served.
PROTOCOL = "s3"
_FALLBACK_REGION = "us-east-1"
#: What makes fsspec expand a path as a glob (as ``glob.has_magic``).
_GLOB_CHARACTERS = frozenset("*?[")

_client_lock = threading.Lock()
_client: S3Client | None = None


def use_client(client: S3Client | None) -> None:
    """Make ``client`` the one fsspec's ``s3://`` uses in this process (the latest call wins);
    ``None`` goes back to the environment's client, built anew on next use."""
    global _client
    with _client_lock:
        _client = client


def current_client() -> S3Client:
    """The client set by ``use_client``; before any, one for the region of the AWS environment
    (``AWS_REGION``, ``AWS_DEFAULT_REGION``, the profile's region, else us-east-1) and
    botocore's endpoint resolution (``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL``, the profile)."""
    global _client
    with _client_lock:
        if _client is None:
            _client = S3Client(_environment_region())
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
    """Serve fsspec's ``s3://`` with ``S3FsspecFileSystem`` unless s3fs is installed.

    Returns whether it is registered (now or before)."""
    if importlib.util.find_spec("s3fs") is not None:
        return False
    if fsspec.registry.get(PROTOCOL) is not S3FsspecFileSystem:
        fsspec.register_implementation(PROTOCOL, S3FsspecFileSystem, clobber=True)
        logger.debug("s3fs is not installed: fsspec's s3:// is served by %s", S3FsspecFileSystem.__qualname__)
    return True


def _not_found(uri: str) -> FileNotFoundError:
    """``[Errno 2] No such file or directory: 's3://...'``, as for a missing local file."""
    return FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), uri)


def _timestamp(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


class S3FsspecFileSystem(AbstractFileSystem):  # type: ignore[misc]
    """fsspec's ``s3://`` on an ``S3Client`` (by default ``current_client()``).
    Paths are ``bucket/key``, with or without ``s3://``."""

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
        return parse_s3_uri(f"s3://{stripped}")

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
        file = self._head(bucket, key)
        if file is not None:
            return file
        if self._has_entries(bucket, key):
            return self._directory(f"{bucket}/{key}")
        raise _not_found(f"s3://{bucket}/{key}")

    def _head(self, bucket: str, key: str) -> dict[str, Any] | None:
        """The object's info, or ``None`` when there is no such object."""
        try:
            head = self.client.head_object(bucket, key)
        except S3Exception as error:
            if is_not_found(error):
                return None
            raise
        return self._file(bucket, key, head.size, head.etag, head.last_modified)

    def _has_entries(self, bucket: str, key: str) -> bool:
        try:
            page = next(self.client.list_objects(bucket, f"{key}/", delimiter="/", max_keys=1), None)
        except S3Exception as error:
            if is_not_found(error):
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
            if is_not_found(error):
                raise _not_found(f"s3://{bucket}") from error
            raise
        if not entries and key:
            file = self._head(bucket, key)
            entries = [file] if file is not None else []
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
                if is_not_found(error):
                    raise _not_found(f"s3://{bucket}/{key}") from error
                raise
            # io.BufferedReader gives text mode (io.TextIOWrapper) the read1() it needs, and
            # passes large reads (torch.load's) straight to the reader's readinto.
            return io.BufferedReader(reader)
        if not autocommit:
            raise NotImplementedError(f"{type(self).__name__} has no transactions; install s3fs for them")
        # The writer publishes the object on close() and aborts on an exception inside `with`.
        # It has no fileno(): torch's FsspecWriter then calls os.sync() where it would fsync a
        # local file, which costs the local disks a flush and changes nothing in S3.
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
            if is_not_found(error):
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
        try:
            self.client.copy_object(source_bucket, source_key, target_bucket, target_key)
        except S3Exception as error:
            if is_not_found(error):  # fsspec's copy() skips or raises on FileNotFoundError only
                raise _not_found(f"s3://{source_bucket}/{source_key}") from error
            raise

    def copy(
        self,
        path1: Any,
        path2: Any,
        recursive: bool = False,
        maxdepth: int | None = None,
        on_error: str | None = None,
        **kwargs: Any,
    ) -> None:
        """Copy objects; ``mv`` and ``rename`` are this copy, then ``rm`` of the source.

        One object copied to a path that is neither a prefix holding objects nor written with
        a trailing ``/`` lands exactly there: ``rename("p/.metadata.tmp", "p/.metadata")``
        makes ``p/.metadata``. (fsspec's generic copy asks ``isdir``, which is true for any
        path that is not an object yet: it would make ``p/.metadata/.metadata.tmp``, and skip a
        missing source silently.) Anything else (globs, ``recursive``, lists) is fsspec's
        generic copy.

        Raises:
            FileNotFoundError: The source is neither an object nor a prefix holding objects
                (unless ``on_error="ignore"``).
        """
        if isinstance(path1, str) and isinstance(path2, str) and not recursive and not _GLOB_CHARACTERS & set(path1):
            source: str = self._strip_protocol(path1)
            if not self.isfile(source):
                if on_error != "ignore" and not self._is_prefix(source):
                    raise _not_found(f"s3://{source}")
                return  # a prefix: a copy without `recursive` copies no directory, as fsspec's
            target: str = self._strip_protocol(path2)
            if path2.endswith("/") or self._is_prefix(target):
                target = f"{target.rstrip('/')}/{source.rsplit('/', 1)[-1]}"
            self.cp_file(source, target, **kwargs)
            return
        super().copy(path1, path2, recursive=recursive, maxdepth=maxdepth, on_error=on_error, **kwargs)

    def _is_prefix(self, path: str) -> bool:
        """A bucket, or a prefix that holds objects: where a copy puts the source's name."""
        bucket, key = self._location(path)
        return not key or self._has_entries(bucket, key)
