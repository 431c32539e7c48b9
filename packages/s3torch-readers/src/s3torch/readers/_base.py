"""``S3Reader``: the abstract file-like reader, and the argument checks every strategy shares."""

from __future__ import annotations

import io
import pickle
from abc import ABC, abstractmethod
from typing import Any, ClassVar, NamedTuple, SupportsIndex

from ._stream import GetStreamCallable, ObjectInfoCallable


class ReaderSource(NamedTuple):
    """What every reader is built over: the object and the two callables that fetch it (the
    first four arguments of every strategy's constructor, in that order)."""

    bucket: str
    key: str
    get_object_info: ObjectInfoCallable
    get_stream: GetStreamCallable


def check_size(size: Any) -> int | None:
    """``read``'s size: None or negative mean "to the end" (returned as None)."""
    if size is None:
        return None
    if not isinstance(size, int):
        raise TypeError(f"argument should be integer or None, not {type(size)}")
    return None if size < 0 else size


def check_whence(offset: Any, whence: Any) -> None:
    if not isinstance(offset, int):
        raise TypeError(f"integer argument expected, got {type(offset)}")
    if not isinstance(whence, int):
        raise TypeError(f"whence must be an integer, got {type(whence)}")
    if whence not in (io.SEEK_SET, io.SEEK_CUR, io.SEEK_END):
        raise ValueError("Seek must be passed SEEK_CUR, SEEK_SET, or SEEK_END")


def check_position(position: int) -> int:
    if position < 0:
        raise ValueError(f"negative seek value {position}")
    return position


def writable_view(buffer: Any) -> memoryview:
    """The caller's buffer as a writable byte view, or the upstream's TypeError."""
    try:
        view = memoryview(buffer)
    except TypeError:
        raise TypeError(f"argument must be a writable bytes-like object, not {type(buffer).__name__}") from None
    if view.readonly:
        raise TypeError(f"argument must be a writable bytes-like object, not {type(buffer).__name__}")
    return view.cast("B") if view.format != "B" or view.ndim != 1 else view


class S3Reader(ABC, io.BufferedIOBase):
    """A read-only, file-like view of one S3 object (upstream: ``s3torchconnector.S3Reader``).

    Strategies: ``SequentialS3Reader`` (the default: fetches the object once, as a stream, and keeps
    what it read), ``RangedS3Reader`` (ranged GETs for what is asked, through an optional buffer) and
    ``DCPOptimizedS3Reader`` (coalesced ranges of a checkpoint load plan). ``S3ReaderConstructor``
    builds them for ``S3Client.get_object`` and the datasets. Readers are not thread-safe.
    """

    #: Whether the class pickles through ``_reader_state`` and ``_resume`` (s3torch's strategies).
    _pickles_by_state: ClassVar[bool] = False

    def __init__(
        self,
        bucket: str,
        key: str,
        get_object_info: ObjectInfoCallable,
        get_stream: GetStreamCallable,
    ) -> None:
        if not bucket:
            raise ValueError("Bucket should be specified")
        if not isinstance(bucket, str):
            raise TypeError(f"bucket must be a str, got {type(bucket).__name__}")
        if key is None:
            raise ValueError("Key should be specified")
        if not isinstance(key, str):
            raise TypeError(f"key must be a str, got {type(key).__name__} (bucket {bucket!r})")
        for name, value in (("get_object_info", get_object_info), ("get_stream", get_stream)):
            if not callable(value):
                raise TypeError(f"{name} must be callable, got {type(value).__name__} (s3://{bucket}/{key})")
        self._bucket = bucket
        self._key = key
        self._get_object_info = get_object_info
        self._get_stream = get_stream
        self._closed = False
        self._pickled_sources: tuple[int, bytes] | None = None  # (protocol, the two callables pickled)
        self._start_empty()

    def _start_empty(self) -> None:
        """Set the strategy's own state as a reader that has read nothing has it; the last step
        of ``__init__`` (a strategy whose constructor takes nothing more needs no ``__init__``)."""

    @property
    def bucket(self) -> str:
        return self._bucket

    @property
    def key(self) -> str:
        return self._key

    @abstractmethod
    def read(self, size: int | None = None) -> bytes:
        """Read up to ``size`` bytes (all to the end for None or a negative size)."""

    @abstractmethod
    def readinto(self, buf: Any) -> int:
        """Read up to ``len(buf)`` bytes into the writable buffer ``buf``; 0 at the end."""

    @abstractmethod
    def seek(self, offset: int, whence: int = io.SEEK_SET, /) -> int:
        """Move to ``offset`` relative to ``whence``; past the end stays at the end."""

    @abstractmethod
    def tell(self) -> int:
        """The current position."""

    def read1(self, size: int = -1, /) -> bytes:
        """As ``read``: a reader has no raw stream below it (lets ``io.TextIOWrapper`` read lines)."""
        return self.read(size)

    def readinto1(self, buf: Any, /) -> int:
        """As ``readinto``."""
        return self.readinto(buf)

    def prefetch(self) -> None:
        """Start fetching data, where the strategy fetches ahead (a no-op otherwise)."""

    def known_size(self) -> int | None:
        """The object's size if this reader knows it already (from a response or the listing),
        without sending a request; ``None`` otherwise (s3torch addition)."""
        return None

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def seekable(self) -> bool:
        # True lets torch.distributed.checkpoint read items in place instead of copying them.
        return True

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"I/O operation on closed reader of s3://{self._bucket}/{self._key}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(bucket={self._bucket!r}, key={self._key!r})"

    # ---- pickling -----------------------------------------------------------------------
    def __reduce_ex__(self, protocol: SupportsIndex) -> tuple[Any, ...]:
        """A reader pickles what rebuilds it elsewhere: bucket, key, its ``get_object_info`` and
        ``get_stream`` callables (those of ``S3Client.get_object`` carry the client's settings:
        region, endpoint, ``S3ClientConfig``, user agent), the strategy's settings, what it knows
        of the object (size, ETag) and its position; never a connection, a stream or fetched
        bytes. The copy sends its first request when first read, from that position, pinned to
        the same version of the object when the ETag was known.

        The callables are pickled here, on their own, so that one that cannot be pickled (a
        lambda or a local function given to a reader built directly) fails with a ``TypeError``
        naming the reader, not an error from deep inside the pickler. A reader class of another
        library (``_pickles_by_state`` False: no ``_reader_state``/``_resume``) pickles as plain
        Python objects do.
        """
        if not self._pickles_by_state:
            reduced = super().__reduce_ex__(protocol)
            assert isinstance(reduced, tuple)  # object's own reduction of an instance
            return reduced
        protocol = int(protocol)
        if self._pickled_sources is not None and self._pickled_sources[0] == protocol:
            sources = self._pickled_sources[1]  # the callables do not change: pickled once
        else:
            sources = self._pickle_sources(protocol)
            self._pickled_sources = (protocol, sources)
        return (_unpickle_reader, (type(self), self._bucket, self._key, sources, self._closed, self._reader_state()))

    def _pickle_sources(self, protocol: int) -> bytes:
        try:
            return pickle.dumps((self._get_object_info, self._get_stream), protocol)
        except (pickle.PicklingError, TypeError, AttributeError) as error:
            raise TypeError(
                f"cannot pickle {type(self).__name__} of s3://{self._bucket}/{self._key}: its get_object_info or"
                f" get_stream callable cannot be pickled ({error}). Readers from S3Client.get_object and the"
                " datasets pickle; a reader built directly pickles only if both callables do (module-level"
                " functions, functools.partial, methods of picklable objects)"
            ) from error

    def _reader_state(self) -> dict[str, Any]:
        """The strategy's settings and position, as ``_resume`` takes them back."""
        return {}

    def _resume(self, source: ReaderSource, state: dict[str, Any]) -> None:
        """Build this reader, made by ``__new__`` alone, over ``source`` with the strategy's own
        constructor, then take back ``_reader_state()``: a reader that has sent nothing yet."""
        raise NotImplementedError


def _unpickle_reader(
    cls: type[S3Reader], bucket: str, key: str, sources: bytes, closed: bool, state: dict[str, Any]
) -> S3Reader:
    get_object_info, get_stream = pickle.loads(sources)
    reader = cls.__new__(cls)
    reader._resume(ReaderSource(bucket, key, get_object_info, get_stream), state)
    if closed:
        reader.close()
    return reader
