"""``S3Checkpoint``: ``torch.save`` into, and ``torch.load`` from, S3 objects."""

from __future__ import annotations

import logging

from s3torch.client import S3Client, S3ClientConfig, S3Writer, parse_s3_uri
from s3torch.readers import S3Reader, S3ReaderConstructor, S3ReaderConstructorProtocol, check_reader_constructor

logger = logging.getLogger(__name__)


class S3Checkpoint:
    """A checkpoint manager for S3: file-like readers and writers of ``s3://bucket/key`` URIs
    for ``torch.load`` and ``torch.save``.

    ``writer(uri)`` uploads while ``torch.save`` serializes (parts in parallel) and publishes the
    object when it is closed; an exception inside its ``with`` block publishes nothing.

    Args:
        region: Region of the bucket.
        endpoint: An S3-compatible endpoint URL (None: AWS, or ``AWS_ENDPOINT_URL_S3``).
        s3client_config: Transport settings.
        reader_constructor: The default reader strategy of ``reader()`` (sequential by default).
    """

    def __init__(
        self,
        region: str,
        endpoint: str | None = None,
        s3client_config: S3ClientConfig | None = None,
        reader_constructor: S3ReaderConstructorProtocol | None = None,
    ) -> None:
        check_reader_constructor(reader_constructor)
        self.region = region
        self.endpoint = endpoint
        self._reader_constructor = reader_constructor or S3ReaderConstructor.default()
        self._client = S3Client(region, endpoint=endpoint, s3client_config=s3client_config)

    def reader(self, s3_uri: str, reader_constructor: S3ReaderConstructorProtocol | None = None) -> S3Reader:
        """A read-only, seekable binary stream of the object at ``s3_uri``, for ``torch.load``.

        Args:
            s3_uri: ``s3://bucket/key``.
            reader_constructor: The reader strategy for this object (the checkpoint's default
                when omitted).

        Raises:
            ValueError: ``s3_uri`` is not an object URI.
            S3Exception: reading failed (when the first bytes are read).
        """
        bucket, key = parse_s3_uri(s3_uri, require_key=True)
        return self._client.get_object(bucket, key, reader_constructor=reader_constructor or self._reader_constructor)

    def writer(self, s3_uri: str) -> S3Writer:
        """A write-only binary stream that becomes the object at ``s3_uri`` when closed.

        Raises:
            ValueError: ``s3_uri`` is not an object URI.
        """
        bucket, key = parse_s3_uri(s3_uri, require_key=True)
        return self._client.put_object(bucket, key)
