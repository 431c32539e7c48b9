"""The bytes and clients every scenario shares.

The data is a 16 MiB block of random bytes, generated once: the large object is that block
repeated, each small object a slice of it, and writes send it again from memory, so no
contender ever pays for generating or reading its data from disk.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from measure import Transfer
from servers import Store
from settings import MIB, Settings

from s3torch.client import S3Client, S3ClientConfig

PATTERN_SIZE = 16 * MIB


def make_pattern() -> bytes:
    return os.urandom(PATTERN_SIZE)


class PatternReader(io.RawIOBase):
    """A seekable, read-only file of ``size`` bytes: ``pattern`` repeated. ``read`` copies once,
    as reading a file from the page cache does."""

    def __init__(self, pattern: bytes, size: int) -> None:
        super().__init__()
        self._pattern = memoryview(pattern)
        self._size = size
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def read(self, size: int | None = -1) -> bytes:
        end = self._size if size is None or size < 0 else min(self._size, self._position + size)
        parts = []
        while self._position < end:
            offset = self._position % len(self._pattern)
            count = min(end - self._position, len(self._pattern) - offset)
            parts.append(self._pattern[offset : offset + count])
            self._position += count
        return parts[0].tobytes() if len(parts) == 1 else b"".join(parts)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(memoryview(buffer).cast("B")))
        memoryview(buffer).cast("B")[: len(data)] = data
        return len(data)


class DiscardSink(io.RawIOBase):
    """A seekable, write-only file that keeps nothing (for ``download_fileobj``)."""

    def __init__(self) -> None:
        super().__init__()
        self.written = 0
        self._position = 0

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._position}[whence]
        self._position = base + offset
        return self._position

    def write(self, data: Any) -> int:
        count = memoryview(data).nbytes
        self._position += count
        self.written += count
        return count


# ---- clients ---------------------------------------------------------------------------------


def s3torch_client(store: Store) -> S3Client:
    return S3Client(
        store.region, endpoint=store.endpoint, s3client_config=S3ClientConfig(force_path_style=store.path_style)
    )


def boto3_client(store: Store, max_pool_connections: int = 10) -> Any:
    """A plain boto3 S3 client with its defaults, but for the addressing style and pool size."""
    config = Config(
        region_name=store.region,
        s3={"addressing_style": "path" if store.path_style else "auto"},
        max_pool_connections=max_pool_connections,
    )
    return boto3.session.Session().client("s3", endpoint_url=store.endpoint, config=config)


def s3fs_filesystem(store: Store) -> Any:
    """An s3fs file system on ``store`` (its own instance, not fsspec's cached one), or a
    ``Skip``-worthy reason as a string where s3fs is not installed."""
    try:
        import s3fs
    except ImportError as error:
        return f"s3fs is not installed ({error})"
    return s3fs.S3FileSystem(
        client_kwargs={"endpoint_url": store.endpoint, "region_name": store.region},
        config_kwargs={"s3": {"addressing_style": "path" if store.path_style else "auto"}},
        skip_instance_cache=True,
    )


def presigned_get_url(client: Any, store: Store, key: str) -> str:
    """A URL any HTTP client (curl) can GET: signed for a real store, ignored by nginx."""
    url: str = client.generate_presigned_url("get_object", Params={"Bucket": store.bucket, "Key": key}, ExpiresIn=3600)
    return url


# ---- the objects the read scenarios GET ---------------------------------------------------------


class ReadObjects:
    """A large object and many small ones, created on first use: as files in the directory a
    local server serves, or uploaded to a real store (and deleted by ``close``)."""

    def __init__(
        self, settings: Settings, pattern: bytes, key_prefix: str, directory: Path | None, store: Store | None
    ):
        self._settings = settings
        self._pattern = pattern
        self._prefix = key_prefix
        self._directory = directory  # local: <root>/<bucket>
        self._store = store  # remote
        self._client: Any = None
        self._large: str | None = None
        self._small: list[str] | None = None
        self._uploaded: list[str] = []

    @property
    def large_size(self) -> int:
        return self._settings.size

    @property
    def small_size(self) -> int:
        return self._settings.small_object_size

    def _remote_client(self) -> Any:
        assert self._store is not None
        if self._client is None:
            self._client = boto3_client(self._store, max_pool_connections=32)
        return self._client

    def _place(self, puts: list[tuple[str, Callable[[], Any]]]) -> None:
        """``puts``: (key, a function returning a file object of the content)."""
        if self._directory is not None:
            for key, content in puts:
                path = self._directory / key
                path.parent.mkdir(parents=True, exist_ok=True)
                with path.open("wb") as file, content() as source:
                    while chunk := source.read(PATTERN_SIZE):
                        file.write(chunk)
            return
        assert self._store is not None
        client, bucket = self._remote_client(), self._store.bucket

        def upload(item: tuple[str, Callable[[], Any]]) -> None:
            key, content = item
            with content() as source:
                client.upload_fileobj(source, bucket, key)

        self._uploaded += [key for key, _ in puts]
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(upload, puts))

    def large_key(self) -> str:
        if self._large is None:
            key = f"{self._prefix}large.bin"
            self._place([(key, lambda: PatternReader(self._pattern, self.large_size))])
            self._large = key
        return self._large

    def small_keys(self) -> list[str]:
        if self._small is None:
            size = self.small_size
            if size > len(self._pattern):
                raise ValueError(f"small objects are at most {len(self._pattern)} bytes, not {size}")
            span = len(self._pattern) - size + 1

            def content(index: int) -> Callable[[], io.BytesIO]:
                offset = (index * 4099 * 31) % span  # distinct slices of the random block
                return lambda: io.BytesIO(self._pattern[offset : offset + size])

            keys = [f"{self._prefix}small/{index:06d}.bin" for index in range(self._settings.small_objects)]
            self._place([(key, content(index)) for index, key in enumerate(keys)])
            self._small = keys
        return self._small

    def close(self) -> None:
        if self._uploaded and self._store is not None:
            client, bucket = self._remote_client(), self._store.bucket
            for start in range(0, len(self._uploaded), 1000):
                batch = self._uploaded[start : start + 1000]
                client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True})
            self._uploaded = []


# ---- datasets -----------------------------------------------------------------------------------


def read_fully(reader: Any) -> int:
    """The datasets' transform: every byte of the object read; the count is what is yielded (so a
    DataLoader worker sends back a number, not the data)."""
    return len(reader.read())


class CountingReader:
    """Reads a dataset to the end and counts what it read: ``run(items)`` takes an iterable of
    the counts ``read_fully`` yields, or a DataLoader of batches of them; ``first`` is the seconds
    the last run took to its first item (or batch)."""

    def __init__(self) -> None:
        self.first: float | None = None

    def run(self, items: Any) -> Transfer:
        moved = objects = 0
        started = time.perf_counter()
        for item in items:
            if objects == 0:
                self.first = time.perf_counter() - started
            if isinstance(item, int):
                moved, objects = moved + item, objects + 1
            else:
                moved, objects = moved + int(item.sum()), objects + len(item)
        return Transfer(moved, objects)
