"""Prefix strategies: every example of the upstream's tests and README, and the validation."""

from __future__ import annotations

import pickle

import pytest
import torch.distributed as dist

import s3torch.dcp
from s3torch.dcp import (
    BinaryPrefixStrategy,
    DefaultPrefixStrategy,
    HexPrefixStrategy,
    NumericPrefixStrategy,
    RoundRobinPrefixStrategy,
    S3PrefixStrategyBase,
)


@pytest.fixture
def world_size(monkeypatch: pytest.MonkeyPatch) -> object:
    """Pretend torch.distributed is initialized with a given world size."""

    def set_world(size: int) -> None:
        monkeypatch.setattr(dist, "is_available", lambda: True)
        monkeypatch.setattr(dist, "is_initialized", lambda: True)
        monkeypatch.setattr(dist, "get_world_size", lambda *args, **kwargs: size)

    return set_world


def test_every_strategy_is_exported_from_the_package() -> None:
    for name in (
        "S3PrefixStrategyBase",
        "DefaultPrefixStrategy",
        "NumericPrefixStrategy",
        "BinaryPrefixStrategy",
        "HexPrefixStrategy",
        "RoundRobinPrefixStrategy",
    ):
        assert name in s3torch.dcp.__all__
        assert getattr(s3torch.dcp, name).__module__ == "s3torch.dcp._prefix_strategy"


def test_the_base_is_abstract() -> None:
    with pytest.raises(TypeError):
        S3PrefixStrategyBase()  # type: ignore[abstract]


def test_call_delegates_to_generate_prefix() -> None:
    class Custom(S3PrefixStrategyBase):
        def generate_prefix(self, rank: int) -> str:
            return f"custom/{rank * 2}/"

    assert Custom()(3) == "custom/6/"
    assert isinstance(DefaultPrefixStrategy(), S3PrefixStrategyBase)


@pytest.mark.parametrize(("rank", "prefix"), [(0, "__0_"), (1, "__1_"), (123, "__123_"), (-1, "__-1_")])
def test_default_strategy(rank: int, prefix: str) -> None:
    assert DefaultPrefixStrategy()(rank) == prefix
    assert DefaultPrefixStrategy().generate_prefix(rank) == prefix


@pytest.mark.parametrize(
    ("rank", "prefix"), [(0, "0000000000"), (1, "1000000000"), (2, "0100000000"), (3, "1100000000")]
)
def test_binary_with_world_size_4(rank: int, prefix: str, world_size: object) -> None:
    world_size(4)  # type: ignore[operator]
    strategy = BinaryPrefixStrategy()
    assert strategy.prefix_count == 4
    assert strategy(rank) == f"{prefix}/__{rank}_"
    assert BinaryPrefixStrategy(prefix_count=4)(rank) == f"{prefix}/__{rank}_"


def test_binary_wraps_around_the_prefixes(world_size: object) -> None:
    world_size(4)  # type: ignore[operator]
    strategy = BinaryPrefixStrategy()
    assert [strategy(rank) for rank in range(4, 8)] == [
        "0000000000/__4_",
        "1000000000/__5_",
        "0100000000/__6_",
        "1100000000/__7_",
    ]


@pytest.mark.parametrize("rank", [0, 1, 2, 3, 17])
def test_without_torch_distributed_every_rank_shares_one_prefix(rank: int) -> None:
    assert not dist.is_initialized()
    assert BinaryPrefixStrategy().prefix_count == 1
    assert BinaryPrefixStrategy()(rank) == f"0000000000/__{rank}_"
    assert HexPrefixStrategy()(rank) == f"0000000000/__{rank}_"


@pytest.mark.parametrize(("rank", "expected"), [(10, "a000000000/__10_"), (255, "f000000000/__255_")])
def test_hex_with_world_size_16(rank: int, expected: str, world_size: object) -> None:
    world_size(16)  # type: ignore[operator]
    assert HexPrefixStrategy()(rank) == expected


@pytest.mark.parametrize(
    ("rank", "expected"), [(1, "1000000000/__1_"), (256, "0010000000/__256_"), (257, "0000000000/__257_")]
)
def test_hex_with_world_size_257(rank: int, expected: str, world_size: object) -> None:
    world_size(257)  # type: ignore[operator]
    assert HexPrefixStrategy()(rank) == expected


def test_hex_prefixes_are_distinct_and_differ_first_in_their_leading_characters() -> None:
    strategy = HexPrefixStrategy(prefix_count=256)
    prefixes = [strategy(rank).split("/")[0] for rank in range(256)]
    assert len(set(prefixes)) == 256
    assert {prefix[0] for prefix in prefixes[:16]} == set("0123456789abcdef")


def test_epoch_adds_a_level() -> None:
    assert BinaryPrefixStrategy(epoch_num=5, prefix_count=2)(1) == "1000000000/epoch_5/__1_"
    assert HexPrefixStrategy(epoch_num=0)(0) == "0000000000/epoch_0/__0_"
    assert RoundRobinPrefixStrategy(["a", "b"], epoch_num=7)(3) == "b/epoch_7/__3_"


def test_min_prefix_length() -> None:
    assert [BinaryPrefixStrategy(min_prefix_length=1, prefix_count=4)(rank) for rank in range(4)] == [
        "00/__0_",
        "10/__1_",
        "01/__2_",
        "11/__3_",
    ]
    assert HexPrefixStrategy(min_prefix_length=3, prefix_count=2)(1) == "100/__1_"
    assert BinaryPrefixStrategy(min_prefix_length=1, prefix_count=1)(5) == "0/__5_"
    # More prefixes than the minimum length can number: the prefixes grow.
    assert BinaryPrefixStrategy(min_prefix_length=2, prefix_count=8)(4) == "001/__4_"


def test_numeric_in_another_base() -> None:
    strategy = NumericPrefixStrategy(10, min_prefix_length=4, prefix_count=12)
    assert strategy(11) == "1100/__11_"
    assert strategy(12) == "0000/__12_"
    assert strategy.base == 10
    assert len(strategy.prefix_map) == 12


def test_attributes() -> None:
    strategy = HexPrefixStrategy(epoch_num=2, min_prefix_length=4, prefix_count=3)
    assert (strategy.base, strategy.epoch_num, strategy.min_prefix_length, strategy.prefix_count) == (16, 2, 4, 3)
    assert strategy.prefix_map == ["0000", "1000", "2000"]


@pytest.mark.parametrize("value", [0, -1, "3", 2.5, None])
def test_min_prefix_length_must_be_a_positive_integer(value: object) -> None:
    with pytest.raises(ValueError, match="Minimum prefix length must be at least 1"):
        BinaryPrefixStrategy(min_prefix_length=value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["1", 1.5, [1], True])
def test_epoch_num_must_be_none_or_an_integer(value: object) -> None:
    with pytest.raises(ValueError, match="Epoch number must be None or an integer"):
        HexPrefixStrategy(epoch_num=value)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Epoch number must be None or an integer"):
        RoundRobinPrefixStrategy(["a"], epoch_num=value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [0, -3, "2", 1.5, True])
def test_prefix_count_must_be_a_positive_integer(value: object) -> None:
    with pytest.raises(ValueError, match="Prefix count must be a positive integer"):
        BinaryPrefixStrategy(prefix_count=value)  # type: ignore[arg-type]


@pytest.mark.parametrize("base", [0, 1, 37, "16", 2.0, None])
def test_numeric_base_must_be_from_2_to_36(base: object) -> None:
    with pytest.raises(ValueError, match="Base must be an integer from 2 to 36"):
        NumericPrefixStrategy(base)  # type: ignore[arg-type]


def test_round_robin() -> None:
    strategy = RoundRobinPrefixStrategy(["alpha", "beta", "gamma"])
    assert [strategy(rank) for rank in range(5)] == [
        "alpha/__0_",
        "beta/__1_",
        "gamma/__2_",
        "alpha/__3_",
        "beta/__4_",
    ]
    assert strategy.user_prefixes == ["alpha", "beta", "gamma"]


def test_round_robin_needs_a_prefix() -> None:
    with pytest.raises(ValueError, match="Prefixes list cannot be empty"):
        RoundRobinPrefixStrategy([])


@pytest.mark.parametrize(
    "strategy",
    [
        DefaultPrefixStrategy(),
        BinaryPrefixStrategy(epoch_num=1, prefix_count=4),
        HexPrefixStrategy(prefix_count=20),
        NumericPrefixStrategy(7, min_prefix_length=3, prefix_count=9),
        RoundRobinPrefixStrategy(["x", "y"], epoch_num=2),
    ],
    ids=lambda strategy: type(strategy).__name__,
)
def test_strategies_pickle(strategy: S3PrefixStrategyBase) -> None:
    # dcp.async_save(..., async_checkpointer_type=PROCESS) pickles the storage writer.
    copy = pickle.loads(pickle.dumps(strategy))
    assert [copy(rank) for rank in range(12)] == [strategy(rank) for rank in range(12)]


# ---- the prefix count of a save: its world size, when it runs -------------------------------


@pytest.mark.parametrize("strategy_type", [BinaryPrefixStrategy, HexPrefixStrategy])
def test_a_strategy_built_before_the_process_group_spreads_a_large_save(
    strategy_type: type[NumericPrefixStrategy],
) -> None:
    assert not dist.is_initialized()
    strategy = strategy_type()  # e.g. in a config module, before init_process_group
    prefixes = strategy.prefixes_for_save(range(1000), world_size=1000)
    leading = [prefix.split("/")[0] for prefix in prefixes]
    assert len(set(leading)) == 1000
    assert prefixes[3] == f"{strategy_type(prefix_count=1000)(3)}"
    # Outside a save it is as before: one prefix without torch.distributed.
    assert strategy.prefix_count == 1
    assert strategy(3) == "0000000000/__3_"


def test_the_world_size_is_read_when_the_strategy_is_called(world_size: object) -> None:
    strategy = BinaryPrefixStrategy()
    assert strategy.prefix_count == 1
    world_size(4)  # type: ignore[operator]  # the process group comes after the strategy
    assert strategy.prefix_count == 4
    assert [strategy(rank) for rank in range(4)] == [
        "0000000000/__0_",
        "1000000000/__1_",
        "0100000000/__2_",
        "1100000000/__3_",
    ]


def test_the_save_world_size_wins_over_torch_distributed(world_size: object) -> None:
    world_size(2)  # type: ignore[operator]
    strategy = HexPrefixStrategy()
    assert strategy.prefixes_for_save([0, 1, 2, 17], world_size=20) == [
        "0000000000/__0_",
        "1000000000/__1_",
        "2000000000/__2_",
        "1100000000/__17_",
    ]
    assert strategy.prefix_count == 2  # the save's size applied only while it asked


@pytest.mark.parametrize("strategy_type", [BinaryPrefixStrategy, HexPrefixStrategy])
def test_an_explicit_prefix_count_is_kept_as_given(strategy_type: type[NumericPrefixStrategy]) -> None:
    strategy = strategy_type(prefix_count=4)
    prefixes = strategy.prefixes_for_save(range(1000), world_size=1000)
    assert len({prefix.split("/")[0] for prefix in prefixes}) == 4
    assert strategy.prefix_count == 4
    strategy.prefix_count = 8
    assert len({prefix.split("/")[0] for prefix in strategy.prefixes_for_save(range(16), 16)}) == 8
    with pytest.raises(ValueError, match="Prefix count must be a positive integer"):
        strategy.prefix_count = 0


def test_strategies_that_do_not_depend_on_the_world_size_answer_as_called() -> None:
    assert DefaultPrefixStrategy().prefixes_for_save([0, 7], world_size=8) == ["__0_", "__7_"]
    assert RoundRobinPrefixStrategy(["a", "b", "c"]).prefixes_for_save(range(4), 4) == [
        "a/__0_",
        "b/__1_",
        "c/__2_",
        "a/__3_",
    ]


def test_a_subclass_overriding_generate_prefix_is_asked_through_it() -> None:
    class Tagged(BinaryPrefixStrategy):
        def generate_prefix(self, rank: int) -> str:
            return "tag-" + super().generate_prefix(rank)

    assert Tagged(min_prefix_length=2).prefixes_for_save([1, 2], world_size=4) == ["tag-10/__1_", "tag-01/__2_"]


@pytest.mark.parametrize("value", [0, -1, 2.0, True, "4"])
def test_the_save_world_size_must_be_a_positive_integer(value: object) -> None:
    with pytest.raises(ValueError, match="World size must be a positive integer"):
        BinaryPrefixStrategy().prefixes_for_save([0], world_size=value)  # type: ignore[arg-type]
