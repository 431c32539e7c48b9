"""``_S3DatasetBase``: what both datasets are built on: their checked settings, the client made
from them on first use (and again in each process a dataset is pickled to), and the readers
opened through it."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, TypedDict, TypeVar, cast

from s3torch.client import S3Client, S3ClientConfig, UserAgent, parse_s3_uri
from s3torch.readers import S3Reader, S3ReaderConstructor, S3ReaderConstructorProtocol

from ._common import (
    S3BucketKeyData,
    check_options,
    deliverable,
    get_objects_from_prefix,
    listed_objects,
    parse_object_uris,
)
from ._prefetch import check_prefetch

logger = logging.getLogger(__name__)

_Dataset = TypeVar("_Dataset", bound="_S3DatasetBase")


class _Region(TypedDict):
    region: str


class DatasetOptions(_Region, total=False):
    """The keyword arguments of ``S3MapDataset.from_objects``/``from_prefix``: those of its
    constructor but ``get_dataset_objects``, of the same types (``region`` required; an omitted
    one takes the constructor's default). ``S3IterableDataset``'s extend them."""

    endpoint: str | None
    transform: Callable[[S3Reader], Any]
    s3client_config: S3ClientConfig | None
    reader_constructor: S3ReaderConstructorProtocol | None
    prefetch: int
    shuffle: bool
    seed: int


def check_seed(seed: Any) -> int:
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    return seed


def check_epoch(epoch: Any) -> int:
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
        raise ValueError(f"epoch must be an int >= 0, got {epoch!r}")
    return epoch


class _S3DatasetBase:
    """The checked settings and the client of a dataset; ``S3IterableDataset`` and
    ``S3MapDataset`` add their flags (``shuffle``, ...) and how they order and hand out the
    objects."""

    #: The dataset's name in the User-Agent (``md/dataset#<name>``).
    _user_agent_name: ClassVar[str]

    def __init__(
        self,
        region: str,
        get_dataset_objects: Callable[[S3Client], Iterable[S3BucketKeyData]],
        endpoint: str | None,
        transform: Callable[[S3Reader], Any],
        s3client_config: S3ClientConfig | None,
        reader_constructor: S3ReaderConstructorProtocol | None,
        prefetch: int,
        seed: int,
    ) -> None:
        if not callable(get_dataset_objects):
            raise TypeError(f"get_dataset_objects must be callable, got {type(get_dataset_objects).__name__}")
        check_options(transform, reader_constructor)
        self._region = region  # checked by the client, made by _preload_client
        self._get_dataset_objects = get_dataset_objects
        self._endpoint = endpoint
        self._transform = transform
        self._s3client_config = s3client_config
        self._reader_constructor = reader_constructor or S3ReaderConstructor.default()
        self._prefetch = check_prefetch(prefetch)
        self._seed = check_seed(seed)
        self._client: S3Client | None = None

    # ---- the factories' one implementation ----------------------------------------------
    # Each dataset's from_objects/from_prefix types its keywords with its options TypedDict and
    # hands them here, where they become the constructor's keywords.
    @classmethod
    def _build_from_objects(cls: type[_Dataset], object_uris: str | Iterable[str], options: DatasetOptions) -> _Dataset:
        """``from_objects``: the URIs of ``object_uris`` parsed and checked now."""
        logger.info("Building %s from_objects", cls.__name__)
        objects = functools.partial(listed_objects, parse_object_uris(object_uris))
        return cls._build(objects, options)

    @classmethod
    def _build_from_prefix(cls: type[_Dataset], s3_uri: str, options: DatasetOptions) -> _Dataset:
        """``from_prefix``: ``s3_uri`` checked now, listed when the dataset needs its objects."""
        logger.info("Building %s from_prefix s3_uri=%r", cls.__name__, s3_uri)
        parse_s3_uri(s3_uri)
        return cls._build(functools.partial(get_objects_from_prefix, s3_uri), options)

    @classmethod
    def _build(
        cls: type[_Dataset],
        get_dataset_objects: Callable[[S3Client], Iterable[S3BucketKeyData]],
        options: DatasetOptions,
    ) -> _Dataset:
        # Each dataset's own constructor takes its own options; the base's does not know them.
        return cls(get_dataset_objects=get_dataset_objects, **cast("dict[str, Any]", options))

    # ---- the client ---------------------------------------------------------------------
    def _preload_client(self) -> None:
        """Make the client now, though it is only used on first access: a bad ``s3client_config``
        raises here rather than in a DataLoader worker. It costs no connection; botocore's model
        data is read now so that forked DataLoader workers inherit it (each would otherwise read
        it again, every epoch, before its first sample). The last step of a dataset's
        construction."""
        self._get_client().preload()

    @property
    def region(self) -> str:
        """Region of the bucket(s)."""
        return self._get_client().region

    @property
    def endpoint(self) -> str | None:
        """The endpoint given at construction (None: botocore's resolution)."""
        return self._get_client().endpoint

    def _get_client(self) -> S3Client:
        if self._client is None:
            reader_type = S3ReaderConstructor.get_reader_type_string(self._reader_constructor)
            self._client = S3Client(
                self._region,
                endpoint=self._endpoint,
                user_agent=UserAgent(comments=[f"md/dataset#{self._user_agent_name} md/reader_type#{reader_type}"]),
                s3client_config=self._s3client_config,
            )
        return self._client

    def _open_reader(self, item: S3BucketKeyData) -> S3Reader:
        return self._get_client().get_object(
            item.bucket, item.key, object_info=item.object_info, reader_constructor=self._reader_constructor
        )

    def _item_of(self, reader: S3Reader) -> Any:
        """What the dataset hands out for an object: the transform of its reader, checked to
        pickle in a DataLoader worker (``deliverable``)."""
        return deliverable(self._transform(reader))

    def __getstate__(self) -> dict[str, Any]:
        # The client (and, through it, connections and threads) is made again where it is used.
        state = self.__dict__.copy()
        state["_client"] = None
        return state
