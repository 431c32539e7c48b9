"""``S3ClientConfig``: upstream defaults, validation, immutability, pickling."""

from __future__ import annotations

import dataclasses
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s3torch.client import S3ClientConfig, S3ClientConfigError, S3Exception

MIB = 1024 * 1024
GIB = 1024 * MIB
PART_SIZE_MESSAGE = "part size must be at between 5MiB and 5GiB"


def test_upstream_defaults() -> None:
    config = S3ClientConfig()
    assert config.throughput_target_gbps == 10.0
    assert config.part_size == 8 * MIB
    assert config.unsigned is False
    assert config.force_path_style is False
    assert config.max_attempts == 10
    assert config.profile is None
    assert config.requester_pays is False


def test_positional_order_is_upstreams() -> None:
    config = S3ClientConfig(5.0, 16 * MIB, True, True, 3, "dev", False)
    assert (config.throughput_target_gbps, config.part_size, config.unsigned, config.force_path_style) == (
        5.0,
        16 * MIB,
        True,
        True,
    )
    assert (config.max_attempts, config.profile, config.requester_pays) == (3, "dev", False)


def test_frozen() -> None:
    config = S3ClientConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.part_size = 16 * MIB  # type: ignore[misc]


@pytest.mark.parametrize("part_size", [0, 1, 5 * MIB - 1, 5 * GIB + 1, 6 * GIB])
def test_part_size_out_of_range(part_size: int) -> None:
    with pytest.raises(ValueError, match=PART_SIZE_MESSAGE) as caught:
        S3ClientConfig(part_size=part_size)
    # Also the upstream's exception type (it raised S3Exception on first use).
    assert isinstance(caught.value, S3Exception)
    assert isinstance(caught.value, S3ClientConfigError)


@settings(deadline=None)  # a loaded machine may take longer than Hypothesis's 200 ms
@given(st.integers(min_value=5 * MIB, max_value=5 * GIB))
def test_part_size_in_range(part_size: int) -> None:
    assert S3ClientConfig(part_size=part_size).part_size == part_size


@pytest.mark.parametrize("max_attempts", [0, -1])
def test_max_attempts_must_be_positive(max_attempts: int) -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        S3ClientConfig(max_attempts=max_attempts)


def test_max_attempts_one_is_allowed() -> None:
    assert S3ClientConfig(max_attempts=1).max_attempts == 1


@pytest.mark.parametrize(("name", "value"), [("part_size", 5.5 * MIB), ("part_size", True), ("max_attempts", 2.0)])
def test_integers_must_be_ints(name: str, value: object) -> None:
    with pytest.raises(TypeError, match=name):
        S3ClientConfig(**{name: value})  # type: ignore[arg-type]


@pytest.mark.parametrize("throughput", [0, -1.0])
def test_throughput_must_be_positive(throughput: float) -> None:
    with pytest.raises(ValueError, match="throughput_target_gbps"):
        S3ClientConfig(throughput_target_gbps=throughput)


@pytest.mark.parametrize("name", ["connect_timeout", "read_timeout", "retry_deadline", "stall_window"])
@pytest.mark.parametrize("value", [0, -1.5, float("inf"), float("nan")])
def test_timeouts_must_be_positive_and_finite(name: str, value: float) -> None:
    with pytest.raises(ValueError, match=name):
        S3ClientConfig(**{name: value})  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["connect_timeout", "read_timeout", "retry_deadline", "stall_window"])
@pytest.mark.parametrize("value", ["10", None, True])
def test_timeouts_must_be_numbers(name: str, value: object) -> None:
    with pytest.raises(TypeError, match=name):
        S3ClientConfig(**{name: value})  # type: ignore[arg-type]


def test_retry_deadline_default_and_value() -> None:
    assert S3ClientConfig().retry_deadline == 90.0
    assert S3ClientConfig(retry_deadline=2.5).retry_deadline == 2.5


def test_time_bound_defaults() -> None:
    config = S3ClientConfig()
    assert (config.read_timeout, config.stall_window, config.stall_min_rate) == (20.0, 30.0, 64 * 1024)
    assert S3ClientConfig(stall_min_rate=0).stall_min_rate == 0  # off


@pytest.mark.parametrize(
    ("value", "error"), [(-1, ValueError), (1.5, TypeError), ("64k", TypeError), (True, TypeError)]
)
def test_stall_min_rate_is_a_non_negative_int(value: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="stall_min_rate"):
        S3ClientConfig(stall_min_rate=value)  # type: ignore[arg-type]


def test_requester_pays_with_unsigned_is_refused() -> None:
    with pytest.raises(ValueError, match=r"(?i)requester.?pays") as caught:
        S3ClientConfig(requester_pays=True, unsigned=True)
    assert "RequesterPaysBuckets" in str(caught.value)
    assert S3ClientConfig(requester_pays=True).requester_pays
    assert S3ClientConfig(unsigned=True).unsigned


def test_timeouts_are_keyword_only() -> None:
    fields = {field.name: field for field in dataclasses.fields(S3ClientConfig)}
    assert fields["connect_timeout"].kw_only
    assert fields["read_timeout"].kw_only
    assert fields["retry_deadline"].kw_only
    assert fields["stall_window"].kw_only
    assert fields["stall_min_rate"].kw_only
    assert [f.name for f in dataclasses.fields(S3ClientConfig) if not f.kw_only] == [
        "throughput_target_gbps",
        "part_size",
        "unsigned",
        "force_path_style",
        "max_attempts",
        "profile",
        "requester_pays",
    ]


@pytest.mark.parametrize(
    ("gbps", "concurrency"),
    [(0.001, 2), (0.8, 2), (1.6, 2), (2.4, 3), (10.0, 13), (100.0, 64), (1000.0, 64)],
)
def test_concurrency_follows_throughput_target(gbps: float, concurrency: int) -> None:
    assert S3ClientConfig(throughput_target_gbps=gbps).concurrency == concurrency


def test_pickle_round_trip_and_equality() -> None:
    config = S3ClientConfig(
        throughput_target_gbps=2.5,
        part_size=6 * MIB,
        force_path_style=True,
        max_attempts=4,
        profile="dev",
        requester_pays=True,
        read_timeout=7.5,
    )
    copy = pickle.loads(pickle.dumps(config))
    assert copy == config
    assert hash(copy) == hash(config)
    assert copy != S3ClientConfig()
