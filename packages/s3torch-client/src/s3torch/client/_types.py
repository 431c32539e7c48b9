"""Picklable value types describing objects and listings."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class RestoreStatus:
    """Restore state of an archived object: whether a restore runs, and when the copy expires
    (seconds since the epoch, or ``None``)."""

    in_progress: bool
    expiry: int | None = None


@dataclass(frozen=True)
class _Key:
    key: str


@dataclass(frozen=True)
class _ObjectFacts:
    """What S3 says of an object besides its key: the fields of ``HeadObjectResult``, and those
    of ``ObjectInfo`` after its ``key``."""

    etag: str
    size: int
    last_modified: int
    storage_class: str | None = None
    restore_status: RestoreStatus | None = None


# The upstream has both classes, and ObjectInfo's positional order starts with ``key``: it takes
# ``key`` from _Key, which comes last in its bases, so that dataclasses put its field first.
@dataclass(frozen=True)
class ObjectInfo(_ObjectFacts, _Key):
    """An object as a listing describes it. ``last_modified`` is in seconds since the epoch;
    ``storage_class`` is ``None`` for STANDARD."""


@dataclass(frozen=True)
class HeadObjectResult(_ObjectFacts):
    """What HeadObject says of an object (no key: the caller has it)."""


@dataclass(frozen=True)
class ListObjectResult:
    """One page of a listing: the objects and, with a delimiter, the common prefixes."""

    object_info: list[ObjectInfo] = field(default_factory=list)
    common_prefixes: list[str] = field(default_factory=list)
