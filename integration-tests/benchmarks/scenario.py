"""What a scenario is, the registry of them, and what they get to work with.

A scenario is one section of the table: one piece of work (read 1 GiB, write 1 GiB, GET 2,000
small objects...) done by several contenders, measured interleaved, plus the targets its numbers
are judged against. A module under ``scenarios/`` registers builders; a builder gets the
``BenchContext`` (settings, stores, shared data) and returns a ``Scenario``, or raises ``Skip``
with the reason it cannot run. To add rows, add a module there (and list it in
``scenarios/__init__.py``).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from fixtures import ReadObjects
from measure import Contender
from servers import LOOPBACK, MOTO, REMOTE, S3_LIKE, Store
from settings import Settings

#: "bytes": judged by MB/s and CPU-s/GiB; "objects": by objects/s and CPU ms per object.
Unit = Literal["bytes", "objects"]

LOCAL_STORES = frozenset({LOOPBACK, S3_LIKE, MOTO})
REMOTE_STORES = frozenset({REMOTE})


class Skip(Exception):
    """The scenario (or one contender) cannot run here; the message says why."""


@dataclass(frozen=True)
class Ratio:
    """``numerator``'s throughput (or, with ``metric="cpu"``, CPU cost) over ``denominator``'s.
    Informational without a target."""

    numerator: str
    denominator: str
    at_least: float | None = None  # target: ratio >= at_least
    above: float | None = None  # target: ratio > above
    at_most: float | None = None  # target: ratio <= at_most (for costs: metric="cpu")
    cpu_at_most: float | None = None  # and the numerator's CPU-s/GiB at most this
    metric: Literal["throughput", "cpu"] = "throughput"
    #: Shown next to an informational ratio, e.g. what DESIGN.md measured elsewhere.
    reference: str | None = None


@dataclass(frozen=True)
class Bound:
    """A contender's CPU cost (CPU-s/GiB, or ms per object for an "objects" scenario):
    ``at_most`` is a target, ``about`` a reference value that is only shown."""

    contender: str
    at_most: float | None = None
    about: float | None = None


Check = Ratio | Bound


def _no_cleanup() -> None:
    return None


@dataclass
class Scenario:
    title: str
    unit: Unit
    contenders: list[Contender]
    checks: list[Check] = field(default_factory=list)
    #: Lines shown under the section: contenders that were skipped and why, what was verified.
    notes: list[str] = field(default_factory=list)
    close: Callable[[], None] = _no_cleanup
    #: (s3torch contender, upstream contender) pairs of the same work: the report's
    #: "s3torch / upstream" rows, ratios and plots.
    pairs: list[tuple[str, str]] = field(default_factory=list)
    #: Interleaved rounds of this scenario when not the run's (a long one may do with fewer).
    rounds: int | None = None
    #: Further tables of the section (a title, then rows, the first of them the header).
    tables: list[tuple[str, list[list[str]]]] = field(default_factory=list)


def versus_upstream(
    ours: str, theirs: str, at_least: float | None = None, cpu_at_most: float | None = None
) -> list[Ratio]:
    """The checks of one s3torch / upstream pair: throughput and CPU, each with its goal if any."""
    return [Ratio(ours, theirs, at_least=at_least), Ratio(ours, theirs, metric="cpu", at_most=cpu_at_most)]


@dataclass
class BenchContext:
    settings: Settings
    stores: dict[str, Store]
    unavailable: dict[str, str]  # store profile -> why it is not available in this run
    pattern: bytes
    read_objects: ReadObjects
    key_prefix: str  # prefix of every key written (non-empty against a real store)
    curl: str | None

    def store(self, profile: str) -> Store:
        store = self.stores.get(profile)
        if store is None:
            raise Skip(self.unavailable.get(profile, f"no {profile} store in this run"))
        return store


@dataclass(frozen=True)
class Registration:
    key: str  # what --only matches, e.g. "read-loopback"
    store: str  # the store profile the scenario needs
    description: str
    build: Callable[[BenchContext], Scenario]


REGISTRY: list[Registration] = []


def register(key: str, store: str, description: str, build: Callable[[BenchContext], Scenario]) -> None:
    if any(existing.key == key for existing in REGISTRY):
        raise ValueError(f"scenario {key!r} registered twice")
    REGISTRY.append(Registration(key, store, description, build))


def selected(remote: bool, patterns: tuple[str, ...]) -> list[Registration]:
    """The registered scenarios of this mode (local servers or a real store) matching ``patterns``."""
    stores = REMOTE_STORES if remote else LOCAL_STORES
    return [
        registration
        for registration in REGISTRY
        if registration.store in stores
        and (not patterns or any(fnmatch.fnmatchcase(registration.key, pattern) for pattern in patterns))
    ]
