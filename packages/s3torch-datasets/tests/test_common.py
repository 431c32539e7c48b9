"""URIs, construction arguments, and the upstream-compatible helpers."""

from __future__ import annotations

import logging
import sys
from typing import Any

import pytest

from s3torch.datasets import S3BucketKeyData, S3IterableDataset, S3MapDataset, parse_s3_uri

DATASETS = [S3IterableDataset, S3MapDataset]


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("s3://bucket", ("bucket", "")),
        ("s3://bucket/", ("bucket", "")),
        ("s3://b/k/inner", ("b", "k/inner")),
        ("s3://b/k/", ("b", "k/")),
        ("s3://b/with space/ünïcode", ("b", "with space/ünïcode")),
    ],
)
def test_parse_s3_uri(uri: str, expected: tuple[str, str]) -> None:
    assert parse_s3_uri(uri) == expected


@pytest.mark.parametrize("uri", [None, "", "s3a://bucket/key", "S3://bucket/key", "gs://bucket", "bucket/key", 42])
def test_parse_s3_uri_rejects_other_schemes(uri: Any) -> None:
    with pytest.raises(ValueError, match="Only s3:// URIs are supported") as error:
        parse_s3_uri(uri)
    assert repr(uri) in str(error.value)


@pytest.mark.parametrize("uri", ["s3://", "s3:///key", "s3:////"])
def test_parse_s3_uri_needs_a_bucket(uri: str) -> None:
    with pytest.raises(ValueError, match="Bucket name must be non-empty") as error:
        parse_s3_uri(uri)
    assert repr(uri) in str(error.value)


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("uri", ["s3://", "s3:///prefix", "https://bucket/prefix", "bucket/prefix"])
def test_from_prefix_rejects_malformed_uris_at_construction(dataset: Any, uri: str) -> None:
    with pytest.raises(ValueError, match="s3://") as error:
        dataset.from_prefix(uri, region="us-east-1")
    assert repr(uri) in str(error.value)


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize(
    ("uris", "bad"),
    [
        ("s3://", "s3://"),
        (["s3://b/ok", "file:///etc/passwd"], "file:///etc/passwd"),
        (["s3://b/ok", "s3:///no-bucket"], "s3:///no-bucket"),
        (("s3://b/ok", "s3://only-a-bucket"), "s3://only-a-bucket"),
        (["s3://b/ok", "s3://b/"], "s3://b/"),
    ],
)
def test_from_objects_checks_every_uri_at_construction(dataset: Any, uris: Any, bad: str) -> None:
    with pytest.raises(ValueError) as error:
        dataset.from_objects(uris, region="us-east-1")
    assert repr(bad) in str(error.value)


@pytest.mark.parametrize("dataset", DATASETS)
def test_from_objects_takes_one_str_a_list_or_a_generator(dataset: Any) -> None:
    # A generator is read once, at construction: the dataset can be iterated again and pickled.
    for uris in ("s3://b/k", ["s3://b/k"], (uri for uri in ["s3://b/k"])):
        built = dataset.from_objects(uris, region="us-east-1")
        assert list(built._get_dataset_objects(None)) == [S3BucketKeyData("b", "k")]
        assert list(built._get_dataset_objects(None)) == [S3BucketKeyData("b", "k")]


@pytest.mark.parametrize("dataset", DATASETS)
def test_properties_and_argument_checks(dataset: Any) -> None:
    built = dataset.from_prefix("s3://bucket/prefix", region="eu-west-1", endpoint="http://127.0.0.1:9000")
    assert built.region == "eu-west-1"
    assert built.endpoint == "http://127.0.0.1:9000"
    assert dataset.from_objects("s3://b/k", region="us-east-1").endpoint is None
    with pytest.raises(ValueError, match="region"):
        dataset.from_prefix("s3://bucket", region="")
    with pytest.raises(TypeError, match="transform must be callable"):
        dataset.from_prefix("s3://bucket", region="us-east-1", transform="not callable")
    with pytest.raises(ValueError, match="prefetch"):
        dataset.from_prefix("s3://bucket", region="us-east-1", prefetch=-1)
    with pytest.raises(TypeError, match="seed"):
        dataset.from_prefix("s3://bucket", region="us-east-1", shuffle=True, seed="7")
    with pytest.raises(TypeError, match="get_dataset_objects"):
        dataset("us-east-1", "not callable")


def test_prefetch_accepts_booleans() -> None:
    from s3torch.datasets import DEFAULT_PREFETCH

    assert S3IterableDataset.from_prefix("s3://b", region="us-east-1", prefetch=True)._prefetch == DEFAULT_PREFETCH
    assert S3IterableDataset.from_prefix("s3://b", region="us-east-1", prefetch=False)._prefetch == 0
    assert S3IterableDataset.from_prefix("s3://b", region="us-east-1", prefetch=3)._prefetch == 3


def test_shuffle_buffer_needs_shuffle() -> None:
    with pytest.raises(ValueError, match="shuffle=True"):
        S3IterableDataset.from_prefix("s3://b", region="us-east-1", shuffle_buffer_size=10)
    with pytest.raises(ValueError, match="shuffle_buffer_size"):
        S3IterableDataset.from_prefix("s3://b", region="us-east-1", shuffle=True, shuffle_buffer_size=0)


@pytest.mark.parametrize("dataset", DATASETS)
def test_building_logs_like_the_upstream(dataset: Any, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="s3torch.datasets"):
        dataset.from_prefix("s3://bucket/images/", region="us-east-1")
        dataset.from_objects(["s3://bucket/a"], region="us-east-1")
    messages = [record.getMessage() for record in caplog.records]
    assert f"Building {dataset.__name__} from_prefix s3_uri='s3://bucket/images/'" in messages
    assert f"Building {dataset.__name__} from_objects" in messages


def test_public_surface() -> None:
    import s3torch.datasets as package

    assert sorted(package.__all__) == sorted(
        ["DEFAULT_PREFETCH", "S3BucketKeyData", "S3IterableDataset", "S3MapDataset", "__version__", "parse_s3_uri"]
    )
    for name in package.__all__:
        assert hasattr(package, name)


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("factory", ["from_objects", "from_prefix"])
def test_factories_take_every_keyword_of_the_constructor(dataset: Any, factory: str) -> None:
    """The factories type their keywords with the dataset's options TypedDict: a keyword added to
    the constructor must be added there too, with the constructor's type."""
    import inspect
    import typing

    constructor = inspect.signature(dataset.__init__).parameters
    options = inspect.signature(getattr(dataset, factory)).parameters["options"].annotation
    assert options.startswith("Unpack[") and options.endswith("]")
    module = sys.modules[dataset.__module__]
    typed = getattr(module, options[len("Unpack[") : -1])
    assert typed.__required_keys__ == {"region"}
    assert set(typed.__optional_keys__) | {"region"} == set(constructor) - {"self", "get_dataset_objects"}
    hints = typing.get_type_hints(typed, vars(module))
    for name, kind in hints.items():
        assert kind == typing.get_type_hints(dataset.__init__, vars(module))[name], name


def test_factories_need_the_region() -> None:
    from s3torch.datasets import S3MapDataset

    with pytest.raises(TypeError, match="region"):
        S3MapDataset.from_prefix("s3://bucket/prefix")  # type: ignore[call-arg]


@pytest.mark.parametrize("dataset", DATASETS)
def test_factories_forward_every_argument(dataset: Any) -> None:
    from s3torch.client import S3ClientConfig
    from s3torch.readers import S3ReaderConstructor

    config = S3ClientConfig(part_size=16 * 1024 * 1024)
    constructor = S3ReaderConstructor.range_based()
    for built in (
        dataset.from_objects(
            "s3://b/k", region="eu-west-1", endpoint="http://e", s3client_config=config,
            reader_constructor=constructor, prefetch=3, shuffle=True, seed=7,
        ),
        dataset.from_prefix(
            "s3://b/p", region="eu-west-1", endpoint="http://e", s3client_config=config,
            reader_constructor=constructor, prefetch=3, shuffle=True, seed=7,
        ),
    ):  # fmt: skip
        assert (built.region, built.endpoint) == ("eu-west-1", "http://e")
        assert built._s3client_config is config and built._reader_constructor is constructor
        assert (built._prefetch, built._shuffle, built._seed) == (3, True, 7)


def test_only_a_forked_dataloader_worker_freezes_what_it_inherited(monkeypatch: pytest.MonkeyPatch) -> None:
    import gc
    import os

    import torch.utils.data

    from s3torch.datasets import _common

    frozen: list[int] = []
    monkeypatch.setattr(gc, "freeze", lambda: frozen.append(os.getpid()))
    monkeypatch.setattr(_common, "_frozen_in", None)
    _common.freeze_inherited_objects()  # the main process: not a worker
    assert frozen == []
    monkeypatch.setattr(torch.utils.data, "get_worker_info", object)
    _common.freeze_inherited_objects()  # a worker that imported s3torch itself (spawn): no parent heap
    assert frozen == []
    monkeypatch.setattr(_common, "_IMPORTED_IN", -1)  # s3torch came from the parent: a forked worker
    _common.freeze_inherited_objects()
    _common.freeze_inherited_objects()
    assert frozen == [os.getpid()]  # once per process
