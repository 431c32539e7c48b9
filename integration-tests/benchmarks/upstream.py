"""The upstream, ``s3torchconnector`` (Amazon's S3 Connector for PyTorch, on its native CRT
client), benchmarked side by side with s3torch: the same API under other imports.

It is optional: ``nox -s bench`` installs it into the bench environment only, and where it cannot
be installed (no wheel of its native client for this platform or Python) ``UNAVAILABLE`` says
why, every scenario still runs, and the upstream's rows say they were not measured.

A custom endpoint: ``S3ClientConfig(force_path_style=True)`` and ``endpoint=`` on ``S3Client``,
the datasets, ``S3Checkpoint`` and ``S3LightningCheckpoint``. Its DCP classes take no endpoint:
their file system is replaced by an ``S3FileSystem`` built on an ``S3Client`` that has one (the
upstream's documented ``s3_client`` argument).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from servers import Store

#: Why the upstream is not benchmarked in this run, or None when it is.
UNAVAILABLE: str | None
try:
    import s3torchconnector
    from s3torchconnector._s3client import S3Client as _UpstreamClient
except ImportError as _error:
    UNAVAILABLE = f"s3torchconnector is not installed ({_error}); nox -s bench installs it"
    s3torchconnector = None
else:
    UNAVAILABLE = None


def _missing(module: str) -> str | None:
    """Why an optional part of the upstream (its ``dcp`` or ``lightning`` extra) cannot be used."""
    if UNAVAILABLE is not None:
        return UNAVAILABLE
    try:
        __import__(module)
    except ImportError as error:
        return f"{module} does not import ({error}); nox -s bench installs s3torchconnector[dcp,lightning]"
    return None


#: Why the upstream's DCP classes, or its Lightning plugin, are not benchmarked, or None.
DCP_UNAVAILABLE = _missing("s3torchconnector.dcp")
LIGHTNING_UNAVAILABLE = _missing("s3torchconnector.lightning")

#: The name every scenario gives the upstream's contenders: "<this> <what>".
PREFIX = "upstream"


def describe() -> str:
    if UNAVAILABLE is not None:
        return f"s3torchconnector: not measured, {UNAVAILABLE}"
    try:
        client = version("s3torchconnectorclient")
    except PackageNotFoundError:
        client = "?"
    return f"s3torchconnector {s3torchconnector.__version__} (native client s3torchconnectorclient {client})"


def skip_note(what: str, reason: str | None = None) -> str:
    return f"{PREFIX} {what}: not measured, {reason or UNAVAILABLE}"


def lightning_checkpoint(store: Store) -> Any:
    from s3torchconnector.lightning import S3LightningCheckpoint

    return S3LightningCheckpoint(store.region, s3client_config=config(store), endpoint=store.endpoint)


def config(store: Store) -> Any:
    return s3torchconnector.S3ClientConfig(force_path_style=store.path_style)


def client(store: Store) -> Any:
    return _UpstreamClient(store.region, endpoint=store.endpoint, s3client_config=config(store))


def checkpoint(store: Store) -> Any:
    return s3torchconnector.S3Checkpoint(store.region, endpoint=store.endpoint, s3client_config=config(store))


def storage_writer(store: Store, path: str, thread_count: int, prefix_strategy: Any = None) -> Any:
    from s3torchconnector.dcp import S3FileSystem, S3StorageWriter

    writer = S3StorageWriter(
        store.region, path, s3client_config=config(store), prefix_strategy=prefix_strategy, thread_count=thread_count
    )
    writer.fs = S3FileSystem(store.region, s3_client=client(store))
    return writer


def storage_reader(store: Store, path: str, constructor: Any) -> Any:
    from s3torchconnector.dcp import S3FileSystem, S3StorageReader

    reader = S3StorageReader(store.region, path, s3client_config=config(store), reader_constructor=constructor)
    reader.fs = S3FileSystem(store.region, s3_client=client(store), reader_constructor=constructor)
    return reader


def reader_constructors() -> Any:
    return s3torchconnector.S3ReaderConstructor
