"""``S3MapDataset``: random access to the objects of a prefix or a list, listed once."""

from __future__ import annotations

import logging
import operator
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import torch.utils.data

from s3torch.client import S3Client, S3ClientConfig
from s3torch.readers import S3Reader, S3ReaderConstructorProtocol

from ._base import DatasetOptions, _S3DatasetBase, check_epoch
from ._common import S3BucketKeyData, freeze_inherited_objects, identity, sorted_objects
from ._prefetch import DEFAULT_PREFETCH, PrefetchGate, PrefetchingReaders, effective_prefetch
from ._shuffle import permutation

if TYPE_CHECKING:
    from typing_extensions import Self, Unpack

logger = logging.getLogger(__name__)


class S3MapDataset(_S3DatasetBase, torch.utils.data.Dataset[Any]):
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

    _user_agent_name = "map"

    # The upstream's positional signature; S3IterableDataset's shares its head, as the upstream's do.
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
        super().__init__(
            region, get_dataset_objects, endpoint, transform, s3client_config, reader_constructor, prefetch, seed
        )
        self._shuffle = bool(shuffle)
        self._epoch = 0
        self._objects: list[S3BucketKeyData] | None = None
        self._order: list[int] | None = None  # the permutation of self._epoch, when shuffling
        self._prefetch_gate: PrefetchGate | None = None  # this process's measure of the store
        self._preload_client()

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_objects(cls, object_uris: str | Iterable[str], **options: Unpack[DatasetOptions]) -> Self:
        """A dataset of the objects named by ``object_uris`` (``s3://bucket/key``, one ``str`` or
        an iterable, possibly across buckets), indexed in that order (unless shuffled). The URIs
        are read and checked now. ``options``: the constructor's keywords but
        ``get_dataset_objects`` (``region`` required).

        Raises:
            ValueError: A URI is not ``s3://bucket/key``; the message quotes it.
        """
        return cls._build_from_objects(object_uris, options)

    @classmethod
    def from_prefix(cls, s3_uri: str, **options: Unpack[DatasetOptions]) -> Self:
        """A dataset of every object whose key starts with the prefix of ``s3_uri``
        (``s3://bucket/prefix``), listed once, on first use. An empty prefix makes an empty
        dataset; a missing bucket raises ``S3Exception`` on first use. ``options``: as
        ``from_objects``.

        Raises:
            ValueError: ``s3_uri`` is not an ``s3://`` URI with a bucket; the message quotes it.
        """
        return cls._build_from_prefix(s3_uri, options)

    # ---- properties ---------------------------------------------------------------------
    @property
    def epoch(self) -> int:
        """The epoch whose permutation indexes the objects (with ``shuffle=True``)."""
        return self._epoch

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

    def __getitem__(self, index: int) -> Any:
        freeze_inherited_objects()
        return self._item_of(self._open_reader(self._item(index)))

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
            return [self._item_of(reader) for _, reader in readers]
        finally:
            readers.close()

    def __len__(self) -> int:
        return len(self._dataset_bucket_key_pairs)

    # ---- pickling -----------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        # The listing travels with the dataset, so workers do not list again; the measure of the
        # store is this process's own.
        state = super().__getstate__()
        state["_prefetch_gate"] = None
        return state

    def __repr__(self) -> str:
        listed = "not listed yet" if self._objects is None else f"{len(self._objects)} objects"
        return (
            f"{type(self).__name__}(region={self._region!r}, endpoint={self._endpoint!r}, {listed},"
            f" shuffle={self._shuffle}, seed={self._seed}, epoch={self._epoch})"
        )
