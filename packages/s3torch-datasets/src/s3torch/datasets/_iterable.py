"""``S3IterableDataset``: the objects of a prefix or a list, streamed, sharded, optionally
shuffled, with the next GETs under way while the current object is transformed."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch.utils.data

from s3torch.client import S3Client, S3ClientConfig
from s3torch.readers import S3Reader, S3ReaderConstructorProtocol

from ._base import DatasetOptions, _S3DatasetBase, check_epoch, check_seed
from ._common import S3BucketKeyData, freeze_inherited_objects, identity, sorted_objects
from ._prefetch import DEFAULT_PREFETCH, PrefetchingReaders, effective_prefetch
from ._sharding import Shard, current_topology, distributed_rank
from ._shuffle import buffer_shuffled, permutation

if TYPE_CHECKING:
    from typing_extensions import Self, Unpack

logger = logging.getLogger(__name__)

_TOPOLOGY_KEYS = ("rank", "world_size", "worker_id", "num_workers")


def _check_buffer_size(size: Any, shuffle: bool) -> int | None:
    if size is None:
        return None
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ValueError(f"shuffle_buffer_size must be None or an int >= 1, got {size!r}")
    if not shuffle:
        raise ValueError("shuffle_buffer_size is set but shuffle is False: pass shuffle=True to shuffle")
    return size


class IterableDatasetOptions(DatasetOptions, total=False):
    """The keyword arguments of ``S3IterableDataset.from_objects``/``from_prefix``: the map
    dataset's and these two."""

    enable_sharding: bool
    shuffle_buffer_size: int | None


@dataclass(frozen=True)
class _NextIteration:
    """Where the next iteration starts: its epoch, the objects of its shard already yielded (to
    skip), and the (rank, worker) that position was counted for (None: any, at position 0)."""

    epoch: int
    position: int = 0
    topology: Shard | None = None


@dataclass
class _Progress:
    """One iteration: its epoch, how many objects it has yielded (counting those skipped to
    resume), and the (rank, worker) it runs as."""

    epoch: int
    position: int
    topology: Shard


class S3IterableDataset(_S3DatasetBase, torch.utils.data.IterableDataset[Any]):
    """An iterable-style dataset of S3 objects (upstream: ``s3torchconnector.S3IterableDataset``).

    Build it with ``from_prefix`` or ``from_objects``. Each iteration yields
    ``transform(reader)`` for every object, in the listing's order (or the URIs' order), listing
    the prefix again, lazily, page by page.

    Beyond the upstream, all keyword-only:

    * ``prefetch``: the GETs of up to this many upcoming objects are started while the current
      one is transformed (0 turns it off), when the store's latency makes it pay (measured on
      the first objects) and the transform is not the default one. Bounded: at most one object
      larger than ``part_size`` is started ahead.
    * ``shuffle`` / ``seed`` / ``set_epoch``: a permutation of the objects that depends only on
      the seed and the epoch, the same on every rank. ``shuffle_buffer_size`` shuffles through a
      buffer of that many objects instead of holding the whole listing.
    * ``state_dict`` / ``load_state_dict``: epoch, seed and position, to resume mid-epoch
      (also through torchdata's ``StatefulDataLoader``).

    With ``enable_sharding=True`` the objects are split over ``torch.distributed`` ranks and
    DataLoader workers (rank and world size read when an iteration starts), so that each object
    is read once per epoch; without it every worker of every rank reads every object.

    Args:
        region: Region of the bucket(s).
        get_dataset_objects: Given an ``S3Client``, the objects to read (``S3BucketKeyData``).
        endpoint: An S3-compatible endpoint URL (None: botocore's resolution).
        transform: Called with the ``S3Reader`` of each object; what it returns is yielded.
        s3client_config: Transport settings.
        enable_sharding: Split the objects over ranks and DataLoader workers.
        reader_constructor: How objects are read (``S3ReaderConstructor``); sequential by default.
        prefetch: Objects whose GETs may be started ahead of the one being transformed (0:
            none, GETs start when the transform reads; True/False: the default/none).
        shuffle: Shuffle the objects, differently each epoch, identically on every rank.
        seed: Seed of the shuffle.
        shuffle_buffer_size: Shuffle through a buffer of this many objects instead of listing
            everything first (only with ``shuffle=True``).
    """

    _user_agent_name = "iterable"

    # The upstream's positional signature; S3MapDataset's shares its head, as the upstream's do.
    def __init__(
        self,
        region: str,
        get_dataset_objects: Callable[[S3Client], Iterable[S3BucketKeyData]],
        endpoint: str | None = None,
        transform: Callable[[S3Reader], Any] = identity,
        s3client_config: S3ClientConfig | None = None,
        enable_sharding: bool = False,
        reader_constructor: S3ReaderConstructorProtocol | None = None,
        *,
        prefetch: int = DEFAULT_PREFETCH,
        shuffle: bool = False,
        seed: int = 0,
        shuffle_buffer_size: int | None = None,
    ) -> None:
        super().__init__(
            region, get_dataset_objects, endpoint, transform, s3client_config, reader_constructor, prefetch, seed
        )
        self._shuffle = bool(shuffle)
        self._enable_sharding = bool(enable_sharding)
        self._shuffle_buffer_size = _check_buffer_size(shuffle_buffer_size, self._shuffle)
        # Set by set_epoch and load_state_dict; once an iteration starts, the epoch after its own.
        self._next = _NextIteration(0)
        self._progress: _Progress | None = None  # the latest iteration
        # (rank, world_size) of the process that pickled this dataset, for DataLoader workers
        # started with spawn/forkserver, which have no process group of their own.
        self._inherited_rank: tuple[int, int] | None = None
        self._preload_client()

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_objects(cls, object_uris: str | Iterable[str], **options: Unpack[IterableDatasetOptions]) -> Self:
        """A dataset of the objects named by ``object_uris`` (``s3://bucket/key``, one ``str`` or
        an iterable, possibly across buckets), streamed in that order. The URIs are read and
        checked now. ``options``: the constructor's keywords but ``get_dataset_objects``
        (``region`` required).

        Raises:
            ValueError: A URI is not ``s3://bucket/key``; the message quotes it.
        """
        return cls._build_from_objects(object_uris, options)

    @classmethod
    def from_prefix(cls, s3_uri: str, **options: Unpack[IterableDatasetOptions]) -> Self:
        """A dataset of every object whose key starts with the prefix of ``s3_uri``
        (``s3://bucket/prefix``; ``s3://bucket`` for the whole bucket), listed again, lazily, on
        each iteration. An empty prefix makes an empty dataset; a missing bucket raises
        ``S3Exception`` when iterated. ``options``: as ``from_objects``.

        Raises:
            ValueError: ``s3_uri`` is not an ``s3://`` URI with a bucket; the message quotes it.
        """
        return cls._build_from_prefix(s3_uri, options)

    # ---- properties ---------------------------------------------------------------------
    @property
    def epoch(self) -> int:
        """The epoch the next iteration uses, unless ``set_epoch`` says otherwise."""
        return self._next.epoch

    # ---- epochs and state ---------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Use ``epoch`` for the next iteration (it selects the shuffle's permutation).

        Without it, an iteration started after another one uses the next epoch; call it at the
        start of every epoch when DataLoader workers are not persistent (each epoch's workers
        then start from this object's epoch). A position loaded with ``load_state_dict`` for this
        same epoch is kept."""
        epoch = check_epoch(epoch)
        if self._next.epoch != epoch:
            self._next = _NextIteration(epoch)
        self._progress = None

    def state_dict(self) -> dict[str, Any]:
        """Where the latest iteration is: ``epoch``, ``seed`` and ``position`` (the objects it has
        yielded, those of this rank and worker's shard only), plus the shuffle settings and the
        rank and worker it runs as. Before any iteration: where the next one starts."""
        where = self._progress or self._next
        epoch, position, topology = where.epoch, where.position, where.topology
        state: dict[str, Any] = {
            "epoch": epoch,
            "seed": self._seed,
            "position": position,
            "shuffle": self._shuffle,
            "shuffle_buffer_size": self._shuffle_buffer_size,
        }
        for name in _TOPOLOGY_KEYS:
            state[name] = getattr(topology, name) if topology is not None else None
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Make the next iteration continue from ``state_dict`` (from ``state_dict()``, possibly
        in another process): same epoch and seed, skipping the objects already yielded (they are
        not fetched again). The shuffle settings, world size and DataLoader worker count must be
        the same as when the state was taken.

        Raises:
            ValueError: The state is malformed or was taken with other shuffle settings.
        """
        try:
            epoch = check_epoch(state_dict["epoch"])
            seed = check_seed(state_dict["seed"])
            position = state_dict["position"]
        except (KeyError, TypeError) as error:
            raise ValueError(f"not a state of S3IterableDataset: {state_dict!r} ({error})") from None
        if not isinstance(position, int) or isinstance(position, bool) or position < 0:
            raise ValueError(f"position must be an int >= 0, got {position!r}")
        for name, mine in (("shuffle", self._shuffle), ("shuffle_buffer_size", self._shuffle_buffer_size)):
            if name in state_dict and state_dict[name] != mine:
                raise ValueError(
                    f"the state was taken with {name}={state_dict[name]!r}, this dataset has {name}={mine!r}:"
                    " its position would point into another order"
                )
        topology = {name: state_dict.get(name) for name in _TOPOLOGY_KEYS}
        self._seed = seed
        counted_for = None
        if all(isinstance(value, int) for value in topology.values()):
            counted_for = Shard(**{name: int(value or 0) for name, value in topology.items()})
        self._next = _NextIteration(epoch, position, counted_for)
        self._progress = None

    # ---- iteration ----------------------------------------------------------------------
    def __iter__(self) -> Iterator[Any]:
        topology = current_topology(self._inherited_rank)
        epoch, start, expected = self._next.epoch, self._next.position, self._next.topology
        if start and expected is not None and expected != topology:
            raise ValueError(
                f"cannot resume at position {start}: the state was taken as {expected.describe()},"
                f" this iteration runs as {topology.describe()}; a position counts the objects of one"
                " rank and worker's shard, so load each rank and worker's own state, with the same"
                " world size and DataLoader num_workers"
            )
        progress = _Progress(epoch, start, topology)
        self._progress = progress
        return self._iterate(progress, topology if self._enable_sharding else Shard())

    def _objects_in_order(self, client: S3Client, epoch: int) -> Iterator[S3BucketKeyData]:
        objects = iter(self._get_dataset_objects(client))
        if not self._shuffle:
            return objects
        if self._shuffle_buffer_size is not None:
            return buffer_shuffled(objects, self._shuffle_buffer_size, self._seed, epoch)
        everything = sorted_objects(objects)
        return (everything[index] for index in permutation(len(everything), self._seed, epoch))

    def _iterate(self, progress: _Progress, shard: Shard) -> Iterator[Any]:
        # Runs from the first next(): only an iteration that started counts as one.
        self._next = _NextIteration(progress.epoch + 1)
        freeze_inherited_objects()
        logger.debug(
            "S3IterableDataset iteration: epoch %d, %s, shard %d of %d, from position %d",
            progress.epoch,
            progress.topology.describe(),
            shard.offset,
            shard.count,
            progress.position,
        )
        client = self._get_client()
        mine = shard.select(self._objects_in_order(client, progress.epoch))
        if progress.position:
            mine = itertools.islice(mine, progress.position, None)
        readers = PrefetchingReaders(
            mine,
            self._open_reader,
            effective_prefetch(self._prefetch, self._transform),
            client.s3client_config.part_size,
        )
        try:
            for _, reader in readers:
                result = self._item_of(reader)
                progress.position += 1
                yield result
        finally:
            readers.close()

    # ---- pickling -----------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        # A DataLoader pickles the dataset for its spawn/forkserver workers when its iteration
        # starts: the rank is read then, here, and travels with the copy.
        state = super().__getstate__()
        state["_inherited_rank"] = distributed_rank() or self._inherited_rank
        return state

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(region={self._region!r}, endpoint={self._endpoint!r},"
            f" enable_sharding={self._enable_sharding}, prefetch={self._prefetch}, shuffle={self._shuffle},"
            f" seed={self._seed}, epoch={self.epoch})"
        )
