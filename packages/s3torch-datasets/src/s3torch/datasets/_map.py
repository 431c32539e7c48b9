"""``S3MapDataset``: random access to the objects of a prefix or a list, listed once."""

from __future__ import annotations

import functools
import logging
import operator
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import torch.utils.data

from s3torch.client import S3Client, S3ClientConfig, UserAgent, parse_s3_uri
from s3torch.readers import S3Reader, S3ReaderConstructor, S3ReaderConstructorProtocol

from ._common import (
    S3BucketKeyData,
    build_from_factory,
    check_options,
    deliverable,
    freeze_inherited_objects,
    get_objects_from_prefix,
    identity,
    listed_objects,
    parse_object_uris,
)
from ._iterable import check_epoch, check_seed, sorted_objects
from ._prefetch import DEFAULT_PREFETCH, PrefetchGate, PrefetchingReaders, check_prefetch, effective_prefetch
from ._shuffle import permutation

logger = logging.getLogger(__name__)

_Dataset = TypeVar("_Dataset", bound="S3MapDataset")


class S3MapDataset(torch.utils.data.Dataset[Any]):
    """A map-style dataset of S3 objects (upstream: ``s3torchconnector.S3MapDataset``).

    Build it with ``from_prefix`` or ``from_objects``. The objects are listed once, on the first
    ``len()`` or ``dataset[i]``, and kept (a pickled dataset carries the list, so DataLoader
    workers do not list again); ``dataset[i]`` is ``transform(reader)`` of object ``i``, its reader
    made at that moment. Negative indices count from the end.

    Beyond the upstream, keyword-only: ``shuffle``/``seed``/``set_epoch`` reorder the objects by a
    permutation that depends only on the seed and the epoch (the same on every rank), and a
    DataLoader batch (``__getitems__``) fetches its objects with up to ``prefetch`` GETs in
    flight.

    Args:
        region: Region of the bucket(s).
        get_dataset_objects: Given an ``S3Client``, the objects (``S3BucketKeyData``).
        endpoint: An S3-compatible endpoint URL (None: botocore's resolution).
        transform: Called with the ``S3Reader`` of an object; what it returns is the item.
        s3client_config: Transport settings.
        reader_constructor: How objects are read (``S3ReaderConstructor``); sequential by default.
        prefetch: GETs of a batch's objects in flight at once in ``__getitems__`` (0: one by
            one), when the store's latency makes it pay and the transform is not the default one.
        shuffle: Index the objects through a per-epoch permutation.
        seed: Seed of that permutation.
    """

    # The keyword lists of __init__/from_objects/from_prefix repeat on purpose: the upstream's explicit
    # signatures and docstrings (issue 11); the logic behind them is one, build_from_factory in _common.
    def __init__(
        self,
        region: str,
        get_dataset_objects: Callable[[S3Client], Iterable[S3BucketKeyData]],
        endpoint: str | None = None,
        transform: Callable[[S3Reader], Any] = identity,
        s3client_config: S3ClientConfig | None = None,
        reader_constructor: S3ReaderConstructorProtocol | None = None,
        *,
        prefetch: int = DEFAULT_PREFETCH,
        shuffle: bool = False,
        seed: int = 0,
    ) -> None:
        if not callable(get_dataset_objects):
            raise TypeError(f"get_dataset_objects must be callable, got {type(get_dataset_objects).__name__}")
        check_options(transform, reader_constructor)
        self._region = region  # checked by the client, made at the end
        self._get_dataset_objects = get_dataset_objects
        self._endpoint = endpoint
        self._transform = transform
        self._s3client_config = s3client_config
        self._reader_constructor = reader_constructor or S3ReaderConstructor.default()
        self._prefetch = check_prefetch(prefetch)
        self._shuffle = bool(shuffle)
        self._seed = check_seed(seed)
        self._epoch = 0
        self._client: S3Client | None = None
        self._objects: list[S3BucketKeyData] | None = None
        self._order: list[int] | None = None  # the permutation of self._epoch, when shuffling
        self._prefetch_gate: PrefetchGate | None = None  # this process's measure of the store
        # Made now, though only used on first access: a bad s3client_config raises here rather
        # than in a DataLoader worker. It costs no connection; botocore's model data is read now
        # so that forked DataLoader workers inherit it (each would otherwise read it again, every
        # epoch, before its first sample).
        self._get_client().preload()

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_objects(
        cls: type[_Dataset],
        object_uris: str | Iterable[str],
        *,
        region: str,
        endpoint: str | None = None,
        transform: Callable[[S3Reader], Any] = identity,
        s3client_config: S3ClientConfig | None = None,
        reader_constructor: S3ReaderConstructorProtocol | None = None,
        prefetch: int = DEFAULT_PREFETCH,
        shuffle: bool = False,
        seed: int = 0,
    ) -> _Dataset:
        """A dataset of the objects named by ``object_uris`` (``s3://bucket/key``, one ``str`` or
        an iterable, possibly across buckets), in that order. The URIs are read and checked now.

        Raises:
            ValueError: A URI is not ``s3://bucket/key``; the message quotes it.
        """
        arguments = dict(locals())  # first, and a copy: the factory's arguments, forwarded by name
        logger.info("Building %s from_objects", cls.__name__)
        objects = functools.partial(listed_objects, parse_object_uris(object_uris))
        return build_from_factory(cls, objects, arguments, source="object_uris")

    @classmethod
    def from_prefix(
        cls: type[_Dataset],
        s3_uri: str,
        *,
        region: str,
        endpoint: str | None = None,
        transform: Callable[[S3Reader], Any] = identity,
        s3client_config: S3ClientConfig | None = None,
        reader_constructor: S3ReaderConstructorProtocol | None = None,
        prefetch: int = DEFAULT_PREFETCH,
        shuffle: bool = False,
        seed: int = 0,
    ) -> _Dataset:
        """A dataset of every object whose key starts with the prefix of ``s3_uri``
        (``s3://bucket/prefix``), listed once, on first use. An empty prefix makes an empty
        dataset; a missing bucket raises ``S3Exception`` on first use.

        Raises:
            ValueError: ``s3_uri`` is not an ``s3://`` URI with a bucket; the message quotes it.
        """
        arguments = dict(locals())  # first, and a copy: the factory's arguments, forwarded by name
        logger.info("Building %s from_prefix s3_uri=%r", cls.__name__, s3_uri)
        parse_s3_uri(s3_uri)
        objects = functools.partial(get_objects_from_prefix, s3_uri)
        return build_from_factory(cls, objects, arguments, source="s3_uri")

    # ---- properties ---------------------------------------------------------------------
    @property
    def region(self) -> str:
        """Region of the bucket(s)."""
        return self._region

    @property
    def endpoint(self) -> str | None:
        """The endpoint given at construction (None: botocore's resolution)."""
        return self._endpoint

    @property
    def epoch(self) -> int:
        """The epoch whose permutation indexes the objects (with ``shuffle=True``)."""
        return self._epoch

    def _get_client(self) -> S3Client:
        if self._client is None:
            reader_type = S3ReaderConstructor.get_reader_type_string(self._reader_constructor)
            self._client = S3Client(
                self._region,
                endpoint=self._endpoint,
                user_agent=UserAgent(comments=[f"md/dataset#map md/reader_type#{reader_type}"]),
                s3client_config=self._s3client_config,
            )
        return self._client

    @property
    def _dataset_bucket_key_pairs(self) -> list[S3BucketKeyData]:
        """Every object, listed on first use, then kept."""
        if self._objects is None:
            objects = self._get_dataset_objects(self._get_client())
            self._objects = sorted_objects(objects) if self._shuffle else list(objects)
            logger.debug("S3MapDataset listed %d objects", len(self._objects))
        return self._objects

    # ---- shuffling ----------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Index the objects through the permutation of ``epoch`` (with ``shuffle=True``). Call it
        before each epoch's DataLoader iterator is made: persistent workers keep the epoch they
        started with (shuffle with the DataLoader's sampler there)."""
        epoch = check_epoch(epoch)
        if epoch != self._epoch:
            self._epoch, self._order = epoch, None

    def _position(self, index: int) -> int:
        if self._shuffle:
            if self._order is None:
                self._order = permutation(len(self._dataset_bucket_key_pairs), self._seed, self._epoch)
            return self._order[index]
        return index

    # ---- access -------------------------------------------------------------------------
    def _item(self, index: Any) -> S3BucketKeyData:
        objects = self._dataset_bucket_key_pairs
        try:
            position = operator.index(index)
        except TypeError:
            raise TypeError(f"{type(self).__name__} indices must be integers, not {type(index).__name__}") from None
        if position < 0:
            position += len(objects)
        if not 0 <= position < len(objects):
            raise IndexError(f"{type(self).__name__} index {index} out of range for {len(objects)} objects")
        return objects[self._position(position)]

    def _open_reader(self, item: S3BucketKeyData) -> S3Reader:
        return self._get_client().get_object(
            item.bucket, item.key, object_info=item.object_info, reader_constructor=self._reader_constructor
        )

    def __getitem__(self, index: int) -> Any:
        freeze_inherited_objects()
        return deliverable(self._transform(self._open_reader(self._item(index))))

    def __getitems__(self, indices: Sequence[int]) -> list[Any]:
        """The items of a batch (a DataLoader with batching calls this): their GETs are started
        up to ``prefetch`` at a time, the transform runs on each in order."""
        freeze_inherited_objects()
        items = [self._item(index) for index in indices]
        if self._prefetch_gate is None:
            self._prefetch_gate = PrefetchGate()
        readers = PrefetchingReaders(
            iter(items),
            self._open_reader,
            effective_prefetch(self._prefetch, self._transform),
            self._get_client().s3client_config.part_size,
            self._prefetch_gate,
        )
        try:
            return [deliverable(self._transform(reader)) for _, reader in readers]
        finally:
            readers.close()

    def __len__(self) -> int:
        return len(self._dataset_bucket_key_pairs)

    # ---- pickling -----------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        # The client (and, through it, connections and threads) is made again where it is used;
        # the listing travels with the dataset, so workers do not list again.
        state = self.__dict__.copy()
        state["_client"] = None
        state["_prefetch_gate"] = None
        return state

    def __repr__(self) -> str:
        listed = "not listed yet" if self._objects is None else f"{len(self._objects)} objects"
        return (
            f"{type(self).__name__}(region={self._region!r}, endpoint={self._endpoint!r}, {listed},"
            f" shuffle={self._shuffle}, seed={self._seed}, epoch={self._epoch})"
        )
