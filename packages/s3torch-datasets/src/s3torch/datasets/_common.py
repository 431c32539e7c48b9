"""What both datasets share: S3 URIs, the objects a dataset is made of, the default transform."""

from __future__ import annotations

import gc
import logging
import os
import pickle
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple, TypeVar

import torch.utils.data

from s3torch.client import ObjectInfo, S3Client, parse_s3_uri
from s3torch.readers import S3Reader, check_reader_constructor

logger = logging.getLogger(__name__)

_Item = TypeVar("_Item")

# The process that imported this module; a DataLoader worker with another PID was forked from it.
_IMPORTED_IN = os.getpid()
_frozen_in: int | None = None


class S3BucketKeyData(NamedTuple):
    """One object of a dataset: its bucket, its key and, when it came from a listing, what the
    listing said of it (size, ETag), so that reading it needs no HEAD request."""

    bucket: str
    key: str
    object_info: ObjectInfo | None = None


def identity(obj: Any) -> Any:
    """The default transform: the ``S3Reader`` itself."""
    return obj


def deliverable(item: _Item) -> _Item:
    """``item``, checked to pickle when it is a reader and this is a DataLoader worker process.

    A worker hands its items to the main process through a queue that pickles them in a
    background thread; when that fails, the thread only prints the error and drops the item, and
    the main process waits for it forever. Pickled here first, a reader that cannot be pickled
    (one a custom ``reader_constructor`` built over lambdas, say) raises in ``__getitem__`` or
    ``__next__``, and torch re-raises that in the main process. Cheap: a reader pickles its
    settings, not its data, and keeps its pickled callables for the queue's own pickling.
    """
    if isinstance(item, S3Reader) and torch.utils.data.get_worker_info() is not None:
        pickle.dumps(item)
    return item


def freeze_inherited_objects() -> None:
    """In a DataLoader worker forked from its parent (not spawned), once: move every object the
    worker inherited to the garbage collector's permanent generation (``gc.freeze``, O(1)).

    A worker inherits its parent's whole heap (torch, the model, the user's state), shared
    copy-on-write. Its first full collection, set off by the objects it allocates to start (a
    botocore client, its first readers), traverses all of it and writes to every object it
    visits: measured in a DataLoader worker here, 0.15 s of CPU and, with the pages it then copies
    on a busy machine, 0.9 s before the worker's first sample, every epoch. Those objects belong to
    the parent and live there: the worker need not collect them (Python's ``gc.freeze``
    documentation describes this use). A spawned worker imported this module itself and has no
    parent heap: nothing is done there."""
    global _frozen_in
    pid = os.getpid()
    if pid in (_frozen_in, _IMPORTED_IN) or torch.utils.data.get_worker_info() is None:
        return
    _frozen_in = pid
    gc.freeze()
    logger.debug("DataLoader worker %d: the objects inherited from its parent are frozen", pid)


def parse_object_uris(object_uris: str | Iterable[str]) -> tuple[S3BucketKeyData, ...]:
    """The objects named by one URI or by an iterable of URIs, parsed and checked now, so that a
    malformed URI fails at construction rather than in a DataLoader worker mid-epoch."""
    uris = [object_uris] if isinstance(object_uris, str) else object_uris
    if not isinstance(uris, Iterable):
        raise TypeError(f"object_uris must be a str or an iterable of str, got {type(object_uris).__name__}")
    objects = []
    for uri in uris:
        bucket, key = parse_s3_uri(uri, require_key=True)
        objects.append(S3BucketKeyData(bucket, key))
    return tuple(objects)


def listed_objects(objects: tuple[S3BucketKeyData, ...], client: S3Client) -> Iterator[S3BucketKeyData]:
    """``get_dataset_objects`` of ``from_objects``: the URIs parsed at construction."""
    return iter(objects)


def get_objects_from_prefix(s3_uri: str, client: S3Client) -> Iterator[S3BucketKeyData]:
    """Every object under ``s3://bucket/prefix``, listed lazily one ListObjectsV2 page at a time,
    each with its listing's ``ObjectInfo``. A missing bucket raises ``S3Exception`` on the first
    ``next()``; an empty prefix yields nothing."""
    bucket, prefix = parse_s3_uri(s3_uri)
    for page in client.list_objects(bucket, prefix):
        for info in page.object_info:
            yield S3BucketKeyData(bucket, info.key, info)


def check_transform(transform: Any) -> None:
    if not callable(transform):
        raise TypeError(f"transform must be callable, got {type(transform).__name__}")


def check_options(transform: Any, reader_constructor: Any) -> None:
    """The checks both datasets make of their callables at construction."""
    check_transform(transform)
    check_reader_constructor(reader_constructor)


def sorted_objects(objects: Iterable[S3BucketKeyData]) -> list[S3BucketKeyData]:
    """Every object, by bucket and key: a listing's order is not guaranteed on every kind of
    bucket (directory buckets), so a shuffle starts from this order to be the same on every rank."""
    return sorted(objects, key=lambda item: (item.bucket, item.key))
