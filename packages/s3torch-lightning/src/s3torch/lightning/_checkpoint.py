"""``S3LightningCheckpoint``: Lightning's ``CheckpointIO`` on S3 (upstream:
``s3torchconnector.lightning.S3LightningCheckpoint``)."""

from __future__ import annotations

import logging
from typing import IO, Any, cast

import torch
from lightning.pytorch.plugins.io import CheckpointIO

from s3torch.client import S3Client, S3ClientConfig
from s3torch.readers import fsspec as readers_fsspec

from ._in_flight import InFlightSaves
from ._lightning_compat import lightning_user_agent, weights_only_default
from ._uri import checkpoint_location

logger = logging.getLogger(__name__)


class S3LightningCheckpoint(CheckpointIO):
    """A Lightning ``CheckpointIO`` that saves, loads and removes checkpoints in S3.

    Give it to the ``Trainer`` as a plugin, with ``s3://`` paths for ``default_root_dir``,
    ``ModelCheckpoint(dirpath=...)`` or ``trainer.save_checkpoint``; wrap it in Lightning's
    ``AsyncCheckpointIO`` to save in a background thread.

    A checkpoint is streamed by ``torch.save`` into a concurrent multipart upload and published
    when the upload completes. If anything fails first (an object ``torch.save`` cannot pickle,
    a network error, an interrupt) the upload is aborted: nothing is published, and an older
    checkpoint at the same path stays as it was.

    Args:
        region: The region of the bucket(s).
        s3client_config: Transport settings (part size, retries, path-style addressing...).
        endpoint: An S3-compatible endpoint URL; without it botocore's resolution applies
            (``AWS_ENDPOINT_URL_S3`` included).
    """

    def __init__(
        self,
        region: str,
        s3client_config: S3ClientConfig | None = None,
        endpoint: str | None = None,
    ) -> None:
        self.region = region
        self._client = S3Client(
            region,
            endpoint=endpoint,
            user_agent=lightning_user_agent(),
            s3client_config=s3client_config,
        )
        self._in_flight = InFlightSaves()
        # Lightning's own s3:// calls (ModelCheckpoint's listings, loggers, load_from_checkpoint)
        # go through fsspec; without s3fs they use this client.
        readers_fsspec.use_client(self._client)

    @property
    def endpoint(self) -> str | None:
        """The endpoint given at construction (``None``: botocore's resolution)."""
        return self._client.endpoint

    @property
    def s3client_config(self) -> S3ClientConfig:
        """The transport settings."""
        return self._client.s3client_config

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_in_flight"]  # threads' bookkeeping of this process
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._in_flight = InFlightSaves()
        # Unpickled in a spawned worker: that process's fsspec s3:// uses this client too.
        readers_fsspec.use_client(self._client)

    # The path parameters are `str`, not Lightning's `str | Path`: a Path names a local file.
    def save_checkpoint(  # type: ignore[override]
        self,
        checkpoint: dict[str, Any],
        path: str,
        storage_options: Any | None = None,
    ) -> None:
        """Write ``checkpoint`` with ``torch.save`` to the object ``path`` (``s3://bucket/key``).

        The object appears only once it is complete; on any failure nothing is published.

        Args:
            checkpoint: The model and trainer state (anything ``torch.save`` accepts).
            path: The S3 URI to write.
            storage_options: Ignored (as upstream).

        Raises:
            TypeError: ``path`` is not a string.
            ValueError: ``path`` is not an ``s3://bucket/key`` URI.
            S3Exception: S3 refused or failed the upload.
        """
        bucket, key = checkpoint_location(path)
        logger.debug("Saving checkpoint to s3://%s/%s", bucket, key)
        # Leaving the block with an exception aborts the upload.
        with self._in_flight.saving(bucket, key), self._client.put_object(bucket, key) as writer:
            # An io.BufferedIOBase is not typing.IO to typeshed (python/typeshed#6077).
            torch.save(checkpoint, cast(IO[bytes], writer))

    def load_checkpoint(  # type: ignore[override]
        self,
        path: str,
        map_location: Any | None = None,
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        """Read the checkpoint at ``path`` (``s3://bucket/key``) with ``torch.load``.

        Args:
            path: The S3 URI to read.
            map_location: As for ``torch.load``: a function, ``torch.device``, string or dict
                remapping storage locations.
            weights_only: Passed to ``torch.load``. ``None`` means ``False`` with Lightning
                before 2.6 (as Lightning itself loaded then) and torch's own default from
                Lightning 2.6 on, where Lightning passes the value given to ``Trainer.fit``.

        Returns:
            The loaded checkpoint.

        Raises:
            TypeError: ``path`` is not a string.
            ValueError: ``path`` is not an ``s3://bucket/key`` URI.
            S3Exception: S3 refused the read; a missing object gives
                "Service error: The key does not exist".
        """
        bucket, key = checkpoint_location(path)
        weights_only = weights_only_default(weights_only)
        logger.debug("Loading checkpoint s3://%s/%s (weights_only=%s)", bucket, key, weights_only)
        # The reader keeps what it fetched; closing it frees that as soon as torch is done.
        with self._client.get_object(bucket, key) as reader:
            checkpoint: dict[str, Any] = torch.load(cast(IO[bytes], reader), map_location, weights_only=weights_only)
        return checkpoint

    def remove_checkpoint(self, path: str) -> None:  # type: ignore[override]
        """Delete the object ``path`` (``s3://bucket/key``); a missing object is not an error.

        If a save of the same object is running on another thread (``AsyncCheckpointIO``),
        the deletion waits for it, so that the save cannot publish the object again afterwards.

        Raises:
            TypeError: ``path`` is not a string.
            ValueError: ``path`` is not an ``s3://bucket/key`` URI.
            S3Exception: S3 refused the deletion.
        """
        bucket, key = checkpoint_location(path)
        self._in_flight.wait_until_saved(bucket, key)
        logger.debug("Removing checkpoint s3://%s/%s", bucket, key)
        self._client.delete_object(bucket, key)

    def teardown(self) -> None:
        """Nothing to release: every save and load is complete when its call returns."""
