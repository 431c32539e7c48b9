"""Configuration of the S3 transport (upstream: ``s3torchconnector.S3ClientConfig``)."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any

from ._exceptions import S3ClientConfigError

MIB = 1024 * 1024
GIB = 1024 * MIB
MIN_PART_SIZE = 5 * MIB
MAX_PART_SIZE = 5 * GIB

#: What one connection to S3 delivers, roughly (about 100 MB/s on real S3). Used only to
#: turn ``throughput_target_gbps`` into a number of concurrent part requests.
_ASSUMED_BYTES_PER_CONNECTION = 100_000_000
_MAX_CONCURRENCY = 64


def check_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")


def check_positive_number(name: str, value: Any) -> None:
    """A positive, finite int or float (a bool, a string, NaN or infinity are refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    number = float(value)
    if not (math.isfinite(number) and number > 0):
        raise S3ClientConfigError(f"{name} must be a positive, finite number ({name}={value!r})")


@dataclass(frozen=True)
class S3ClientConfig:
    """Parameters of the S3 client, with the upstream's fields and defaults.

    Args:
        throughput_target_gbps: Throughput the client aims for, in gigabits per second. It sets
            how many part requests one stream or upload keeps in flight (see ``concurrency``);
            a GET stream whose connections measure slower than assumed widens its window
            towards this rate, up to ``2 x concurrency`` parts.
        part_size: Size in bytes of the parts of multipart uploads and of the ranged GETs a
            stream fetches in parallel. Between 5 MiB and 5 GiB.
        unsigned: Send requests without signing them (public buckets).
        force_path_style: Address buckets as ``endpoint/bucket/key`` instead of
            ``bucket.endpoint/key`` (most S3-compatible stores want this).
        max_attempts: Attempts per request, first try included; at least 1.
        profile: Named profile of the shared AWS configuration files to take credentials from.
        requester_pays: Send ``x-amz-request-payer: requester`` on every request.
        connect_timeout: Seconds to wait for a TCP/TLS connection (s3torch addition).
        read_timeout: Seconds to wait for a response's head, and for any single read of its
            body, before the request is retried or resumed (s3torch addition).
        retry_deadline: Seconds after the first attempt of a request after which no new
            attempt starts (s3torch addition): retries, back-off and ``Retry-After`` waits of one
            request, and the resumes of one cut GET body, all fit in it. An attempt under way
            still runs to its own timeouts, so a request fails at the latest about
            ``retry_deadline + connect_timeout + read_timeout`` after it started.
        stall_window: Seconds over which a response body's rate is measured (s3torch addition).
            A body that delivers fewer than ``stall_min_rate * stall_window`` bytes in
            ``stall_window`` seconds of waiting for it is cut, and the read resumed or retried
            on a new connection, as after a reset. Time the consumer spends between reads does
            not count.
        stall_min_rate: Minimum rate of a response body, in bytes per second (s3torch
            addition); 0 turns stall detection off. With the defaults (30 s, 64 KiB/s) a body
            that delivers less than 1.875 MiB in 30 s is cut.
    """

    throughput_target_gbps: float = 10.0
    part_size: int = 8 * MIB
    unsigned: bool = False
    force_path_style: bool = False
    max_attempts: int = 10
    profile: str | None = None
    requester_pays: bool = False
    connect_timeout: float = field(default=10.0, kw_only=True)
    read_timeout: float = field(default=20.0, kw_only=True)
    retry_deadline: float = field(default=90.0, kw_only=True)
    stall_window: float = field(default=30.0, kw_only=True)
    stall_min_rate: int = field(default=64 * 1024, kw_only=True)

    def __post_init__(self) -> None:
        check_int("part_size", self.part_size)
        if not MIN_PART_SIZE <= self.part_size <= MAX_PART_SIZE:
            raise S3ClientConfigError(
                f"invalid configuration: part size must be at between 5MiB and 5GiB (part_size={self.part_size})"
            )
        check_int("max_attempts", self.max_attempts)
        if self.max_attempts < 1:
            raise S3ClientConfigError(f"max_attempts must be at least 1 (max_attempts={self.max_attempts})")
        for name in ("throughput_target_gbps", "connect_timeout", "read_timeout", "retry_deadline", "stall_window"):
            check_positive_number(name, getattr(self, name))
        if not isinstance(self.stall_min_rate, int) or isinstance(self.stall_min_rate, bool):
            raise TypeError(
                f"stall_min_rate must be an int (bytes per second), got {type(self.stall_min_rate).__name__}"
            )
        if self.stall_min_rate < 0:
            raise S3ClientConfigError(
                f"stall_min_rate must be 0 (off) or a positive number of bytes per second"
                f" (stall_min_rate={self.stall_min_rate})"
            )
        for name in ("unsigned", "force_path_style", "requester_pays"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {type(getattr(self, name)).__name__}")
        if self.profile is not None and not isinstance(self.profile, str):
            raise TypeError(f"profile must be None or the name of a profile (a str), got {type(self.profile).__name__}")
        if self.profile == "":
            raise S3ClientConfigError("profile must be None or the name of a profile, got ''")
        if self.requester_pays and self.unsigned:
            raise S3ClientConfigError(
                "requester_pays cannot be used together with unsigned: Requester Pays buckets need"
                " authenticated requests, see"
                " https://docs.aws.amazon.com/AmazonS3/latest/userguide/RequesterPaysBuckets.html"
            )

    @property
    def concurrency(self) -> int:
        """Part requests one stream or upload keeps in flight, derived from the throughput target."""
        wanted = self.throughput_target_gbps * 1e9 / 8 / _ASSUMED_BYTES_PER_CONNECTION
        return max(2, min(_MAX_CONCURRENCY, math.ceil(wanted)))
