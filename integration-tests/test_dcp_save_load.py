"""``torch.distributed.checkpoint`` against a real S3 server through ``S3StorageWriter`` /
``S3StorageReader`` (one process): round trips with every reader strategy, partial loads and
the GETs they cost, the object layout of every prefix strategy, overwrite refusal, saves
interrupted by a failed upload, and ``async_save``."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.distributed.checkpoint as dcp
from support import Rule, S3TestEnv
from support.dcp_data import (
    DCP_READERS,
    assert_equal,
    keys_under,
    layered_state_dict,
    load_error_naming,
    quiet_dcp,
    storage_kwargs,
    trained,
    uri,
    zeroed,
)
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.planner import SavePlan, SavePlanner
from torch.distributed.checkpoint.storage import WriteResult
from torch.futures import Future

from s3torch.dcp import (
    BinaryPrefixStrategy,
    DefaultPrefixStrategy,
    HexPrefixStrategy,
    NumericPrefixStrategy,
    RoundRobinPrefixStrategy,
    S3PrefixStrategyBase,
    S3StorageReader,
    S3StorageWriter,
)
from s3torch.readers import DCPOptimizedS3Reader, S3Reader, S3ReaderConstructor, SequentialS3Reader


def writer(env: S3TestEnv, name: str, **kwargs: Any) -> S3StorageWriter:
    settings = kwargs.pop("settings", {})
    return S3StorageWriter(env.location.region, uri(env, name), **storage_kwargs(env, **settings), **kwargs)


def reader(env: S3TestEnv, name: str, **kwargs: Any) -> S3StorageReader:
    return S3StorageReader(env.location.region, uri(env, name), **storage_kwargs(env), **kwargs)


def save(env: S3TestEnv, name: str, state: dict[str, Any], **kwargs: Any) -> None:
    with quiet_dcp():
        dcp.save(state, storage_writer=writer(env, name, **kwargs))


def load(env: S3TestEnv, name: str, state: dict[str, Any], **kwargs: Any) -> None:
    with quiet_dcp():
        dcp.load(state, storage_reader=reader(env, name, **kwargs))


def training_state(seed: int) -> dict[str, Any]:
    net, optimizer = trained(seed)
    return {"model": net.state_dict(), "optimizer": optimizer.state_dict(), "epoch": seed, "note": f"seed {seed}"}


# ---- round trips --------------------------------------------------------------------------


@pytest.mark.parametrize("reader_name", DCP_READERS)
def test_round_trip_with_each_reader(s3: S3TestEnv, reader_name: str) -> None:
    source = training_state(seed=3)
    save(s3, "ckpt", source, thread_count=2)
    loaded = zeroed(source)
    loaded["epoch"], loaded["note"] = 0, ""
    load(s3, "ckpt", loaded, reader_constructor=DCP_READERS[reader_name])
    assert_equal(loaded, source)


def test_round_trip_of_large_files(s3: S3TestEnv) -> None:
    """Files of several parts: multipart uploads, and reads of several ranged GETs."""
    source = layered_state_dict(seed=4, layers=3, size=1024)  # 3 x 4 MiB weights
    save(s3, "large", source, thread_count=2)
    for constructor in (S3ReaderConstructor.dcp_optimized(), S3ReaderConstructor.sequential()):
        loaded = zeroed(source)
        load(s3, "large", loaded, reader_constructor=constructor)
        assert_equal(loaded, source)


def test_async_save_round_trip(s3: S3TestEnv) -> None:
    source = training_state(seed=5)
    with quiet_dcp():
        future = dcp.async_save(source, storage_writer=writer(s3, "async", thread_count=2))
        future.result(timeout=120)
    assert ".metadata" in keys_under(s3, "async")
    loaded = zeroed(source)
    loaded["epoch"], loaded["note"] = 0, ""
    load(s3, "async", loaded)
    assert_equal(loaded, source)


def test_checkpoint_id_redirects_a_storage(s3: S3TestEnv) -> None:
    state = layered_state_dict(seed=6, layers=1, size=16)
    with quiet_dcp():
        dcp.save(state, storage_writer=writer(s3, "unused"), checkpoint_id=uri(s3, "chosen"))
        loaded = zeroed(state)
        dcp.load(loaded, storage_reader=reader(s3, "unused-too"), checkpoint_id=uri(s3, "chosen"))
    assert keys_under(s3, "unused") == []
    assert ".metadata" in keys_under(s3, "chosen")
    assert_equal(loaded, state)


# ---- partial loads --------------------------------------------------------------------------


@pytest.mark.parametrize(("gap", "expected_gets"), [(0, 4), (None, 1), (float("inf"), 1)])
def test_partial_load_gets(faulty_s3: S3TestEnv, gap: float | None, expected_gets: int) -> None:
    """Loading only the weights (every other item of the file): with ``max_gap_size=0`` one GET
    per weight, with the default (32 MiB) or an infinite gap one GET for all of them."""
    source = layered_state_dict(seed=7, layers=4, size=256)  # 256 KiB weights, 1 KiB biases between
    save(faulty_s3, "partial", source)
    assert keys_under(faulty_s3, "partial") == [".metadata", "__0_0.distcp"]
    assert faulty_s3.proxy is not None
    faulty_s3.proxy.reset()
    constructor = S3ReaderConstructor.dcp_optimized() if gap is None else S3ReaderConstructor.dcp_optimized(gap)
    weights = {key: torch.zeros_like(value) for key, value in source.items() if key.endswith(".weight")}
    load(faulty_s3, "partial", weights, reader_constructor=constructor)
    for key, value in weights.items():
        assert torch.equal(value, source[key]), key
    file_gets = [
        request
        for request in faulty_s3.proxy.requests_for(faulty_s3.bucket)
        if request.method == "GET" and request.path.endswith(".distcp")
    ]
    assert len(file_gets) == expected_gets
    full_size = faulty_s3.boto.head_object(Bucket=faulty_s3.bucket, Key=faulty_s3.key("partial/__0_0.distcp"))[
        "ContentLength"
    ]
    ranges = [request.headers["range"] for request in file_gets]
    assert all(value.startswith("bytes=") for value in ranges)
    if gap == 0:  # the biases between the weights are never fetched
        fetched = sum(int(end) - int(start) + 1 for start, end in (value[6:].split("-") for value in ranges))
        assert fetched < full_size - 3 * 1024


def test_full_load_is_one_stream_per_file(faulty_s3: S3TestEnv) -> None:
    source = layered_state_dict(seed=8, layers=4, size=128)
    save(faulty_s3, "full", source, thread_count=2)
    assert faulty_s3.proxy is not None
    faulty_s3.proxy.reset()
    loaded = zeroed(source)
    load(faulty_s3, "full", loaded)
    assert_equal(loaded, source)
    file_gets = [r for r in faulty_s3.proxy.requests_for(faulty_s3.bucket) if r.path.endswith(".distcp")]
    assert sorted(r.path.rsplit("/", 1)[1] for r in file_gets) == ["__0_0.distcp", "__0_1.distcp"]


# ---- the reader constructor builds every file's reader ---------------------------------------


class CountingReader(DCPOptimizedS3Reader):
    """A subclass of a user's own: it keeps the item-stream capability, and counts its items."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.items_streamed = 0

    def item_stream(self, start: int, end: int) -> Any:
        self.items_streamed += 1
        return super().item_stream(start, end)


class OwnConstructor:
    """A reader constructor of a user's own (no relation to s3torch's classes beyond the protocol),
    recording each reader it builds: ``CountingReader`` with the plan's ranges for the files,
    the sequential reader for ``.metadata``."""

    def __init__(self) -> None:
        self.inner = S3ReaderConstructor.dcp_optimized()
        self.readers: dict[str, S3Reader] = {}
        self._item_ranges_by_file: dict[str, Any] = {}  # what DCPS3ReaderConstructorProtocol looks for

    def set_item_ranges_by_file(self, plan_items: list[Any], storage_data: dict[Any, Any], base_path: Any) -> None:
        self.inner.set_item_ranges_by_file(plan_items, storage_data, base_path)
        self._item_ranges_by_file = self.inner._item_ranges_by_file

    def __call__(self, bucket: str, key: str, get_object_info: Any, get_stream: Any) -> S3Reader:
        ranges = self.inner._item_ranges_by_file.get(f"s3://{bucket}/{key}")
        reader: S3Reader
        if ranges:
            reader = CountingReader(bucket, key, ranges, get_object_info, get_stream)
        else:
            reader = SequentialS3Reader(bucket, key, get_object_info, get_stream)
        self.readers[key] = reader
        return reader


@pytest.mark.parametrize("partial", [False, True], ids=["full", "partial"])
def test_a_constructor_of_your_own_builds_the_reader_of_every_file(s3: S3TestEnv, partial: bool) -> None:
    source = layered_state_dict(seed=12, layers=6, size=128)
    save(s3, "own", source, thread_count=3)
    constructor = OwnConstructor()
    loaded = {key: torch.zeros_like(value) for key, value in source.items() if not partial or "weight" in key}
    load(s3, "own", loaded, reader_constructor=constructor)
    for key, value in loaded.items():
        assert torch.equal(value, source[key]), key
    files = {s3.key(f"own/{name}") for name in keys_under(s3, "own")}
    assert set(constructor.readers) == files  # one reader per file, each built by the constructor
    streamed = {key: r.items_streamed for key, r in constructor.readers.items() if isinstance(r, CountingReader)}
    assert len(streamed) == len(files) - 1 and sum(streamed.values()) == len(loaded)


def test_a_load_with_the_dcp_optimized_constructor_reads_through_its_reader(
    s3: S3TestEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = training_state(seed=4)
    save(s3, "optimized", source, thread_count=2)
    built: list[str] = []
    real_init = DCPOptimizedS3Reader.__init__

    def recording_init(self: DCPOptimizedS3Reader, bucket: str, key: str, *args: Any, **kwargs: Any) -> None:
        built.append(key)
        real_init(self, bucket, key, *args, **kwargs)

    monkeypatch.setattr(DCPOptimizedS3Reader, "__init__", recording_init)
    loaded = zeroed(source)
    loaded["epoch"], loaded["note"] = 0, ""
    load(s3, "optimized", loaded, reader_constructor=S3ReaderConstructor.dcp_optimized())
    assert_equal(loaded, source)
    files = sorted(s3.key(f"optimized/{name}") for name in keys_under(s3, "optimized") if name != ".metadata")
    assert sorted(built) == files


# ---- object layout --------------------------------------------------------------------------


#: (test id, strategy, where rank 0's files go under the checkpoint path)
LAYOUTS: list[tuple[str, S3PrefixStrategyBase | None, str]] = [
    ("none", None, ""),
    ("default", DefaultPrefixStrategy(), ""),
    ("binary", BinaryPrefixStrategy(), "0000000000/"),
    ("binary-epoch", BinaryPrefixStrategy(epoch_num=3), "0000000000/epoch_3/"),
    ("hex-short", HexPrefixStrategy(min_prefix_length=4), "0000/"),
    ("numeric", NumericPrefixStrategy(10, min_prefix_length=2, epoch_num=0), "00/epoch_0/"),
    ("round-robin", RoundRobinPrefixStrategy(["shard-a", "shard-b"]), "shard-a/"),
    ("round-robin-epoch", RoundRobinPrefixStrategy(["p"], epoch_num=12), "p/epoch_12/"),
]


@pytest.mark.parametrize(("name", "strategy", "directory"), LAYOUTS, ids=[layout[0] for layout in LAYOUTS])
def test_layout_of_each_prefix_strategy(
    s3: S3TestEnv, name: str, strategy: S3PrefixStrategyBase | None, directory: str
) -> None:
    source = layered_state_dict(seed=9, layers=2, size=32)
    save(s3, name, source, thread_count=2, prefix_strategy=strategy)
    assert keys_under(s3, name) == sorted([".metadata", f"{directory}__0_0.distcp", f"{directory}__0_1.distcp"])
    loaded = zeroed(source)
    load(s3, name, loaded)
    assert_equal(loaded, source)


# ---- overwrite ------------------------------------------------------------------------------


def test_overwrite_false_refuses_an_existing_checkpoint(s3: S3TestEnv) -> None:
    save(s3, "ckpt", layered_state_dict(seed=10, layers=1, size=16))
    etag = s3.boto.head_object(Bucket=s3.bucket, Key=s3.key("ckpt/.metadata"))["ETag"]
    with pytest.raises(CheckpointException, match="Checkpoint already exists"):
        save(s3, "ckpt", layered_state_dict(seed=11, layers=1, size=16), overwrite=False)
    assert s3.boto.head_object(Bucket=s3.bucket, Key=s3.key("ckpt/.metadata"))["ETag"] == etag
    loaded = zeroed(layered_state_dict(seed=0, layers=1, size=16))
    load(s3, "ckpt", loaded)
    assert_equal(loaded, layered_state_dict(seed=10, layers=1, size=16))


def test_overwrite_false_saves_a_new_checkpoint(s3: S3TestEnv) -> None:
    save(s3, "fresh", layered_state_dict(seed=12, layers=1, size=16), overwrite=False)
    assert keys_under(s3, "fresh") == [".metadata", "__0_0.distcp"]


def test_overwrite_true_replaces(s3: S3TestEnv) -> None:
    save(s3, "ckpt", layered_state_dict(seed=13, layers=2, size=16))
    save(s3, "ckpt", layered_state_dict(seed=14, layers=2, size=16), overwrite=True)
    loaded = zeroed(layered_state_dict(seed=0, layers=2, size=16))
    load(s3, "ckpt", loaded)
    assert_equal(loaded, layered_state_dict(seed=14, layers=2, size=16))
    assert keys_under(s3, "ckpt") == [".metadata", "__0_0.distcp"]  # no .metadata.tmp left


def objects_under(env: S3TestEnv, name: str) -> dict[str, bytes]:
    """Every object under the checkpoint ``name``: relative key -> bytes."""
    return {key: env.read(env.key(f"{name}/{key}")) for key in keys_under(env, name)}


def test_a_save_publishes_metadata_with_one_put(faulty_s3: S3TestEnv) -> None:
    """No ``.metadata.tmp``, no copy, no delete: ``.metadata`` is one PUT to its key, the last
    request of the save."""
    assert faulty_s3.proxy is not None
    source = layered_state_dict(seed=30, layers=4, size=64)
    save(faulty_s3, "direct", source, thread_count=2)
    assert keys_under(faulty_s3, "direct") == [".metadata", "__0_0.distcp", "__0_1.distcp"]
    requests = faulty_s3.proxy.requests_for(faulty_s3.bucket)
    metadata_requests = [request for request in requests if ".metadata" in request.path]
    assert [(request.method, request.path.rsplit("/", 1)[1]) for request in metadata_requests] == [
        ("HEAD", ".metadata"),  # torch's "Checkpoint already exists" check
        ("HEAD", ".metadata"),  # the overwrite's check, before any file is written
        ("PUT", ".metadata"),
    ]
    assert requests[-1] is metadata_requests[-1]
    assert not [request for request in requests if request.method == "DELETE" or "x-amz-copy-source" in request.headers]
    loaded = zeroed(source)
    load(faulty_s3, "direct", loaded)
    assert_equal(loaded, source)


def test_overwrite_false_leaves_every_object_of_the_checkpoint_identical(s3: S3TestEnv) -> None:
    save(s3, "kept", layered_state_dict(seed=31, layers=4, size=1024), thread_count=2)  # multipart files
    before = objects_under(s3, "kept")
    with pytest.raises(CheckpointException, match="Checkpoint already exists"):
        save(s3, "kept", layered_state_dict(seed=32, layers=4, size=1024), thread_count=2, overwrite=False)
    assert objects_under(s3, "kept") == before
    assert s3.uploads() == []


class RacedWriter(S3StorageWriter):
    """A save raced by another writer: once planning is over (torch found no checkpoint), an
    object appears at ``raced_key`` before this save writes its files."""

    raced_key = ""
    env: S3TestEnv

    def write_data(self, plan: SavePlan, planner: SavePlanner) -> Future[list[WriteResult]]:
        self.env.put(self.raced_key, b"written by a racing save")
        return super().write_data(plan, planner)


@pytest.mark.parametrize("overwrite", [False, True], ids=["overwrite-false", "overwrite-true"])
def test_a_racing_object_at_a_file_key(s3: S3TestEnv, overwrite: bool) -> None:
    """``overwrite=False``: the save fails, the racing object stays and no ``.metadata`` is
    published. ``overwrite=True``: replaced as before."""
    source = layered_state_dict(seed=33, layers=4, size=64)
    storage = RacedWriter(
        s3.location.region, uri(s3, "raced"), thread_count=2, overwrite=overwrite, **storage_kwargs(s3)
    )
    storage.raced_key, storage.env = s3.key("raced/__0_1.distcp"), s3
    if not overwrite:
        with pytest.raises(CheckpointException, match="already exists"), quiet_dcp():
            dcp.save(source, storage_writer=storage)
        assert s3.read(s3.key("raced/__0_1.distcp")) == b"written by a racing save"
        assert ".metadata" not in keys_under(s3, "raced")
        assert s3.uploads() == []
        return
    with quiet_dcp():
        dcp.save(source, storage_writer=storage)
    loaded = zeroed(source)
    load(s3, "raced", loaded)
    assert_equal(loaded, source)


@pytest.mark.parametrize("file_name", ["__0_0.distcp", ".metadata"])
def test_an_object_created_while_its_upload_is_in_flight_is_kept(faulty_s3: S3TestEnv, file_name: str) -> None:
    """The race at its tightest: the other object appears while this save's upload of the same
    key is on the wire (its first part, or the ``.metadata`` PUT). ``overwrite=False`` keeps it."""
    assert faulty_s3.proxy is not None
    key = faulty_s3.key(f"tight/{file_name}")

    def create_the_racing_object(request: Any) -> None:
        faulty_s3.put(key, b"written by a racing save")

    def match(request: Any) -> bool:
        return request.method == "PUT" and request.is_object(faulty_s3.bucket, key)

    rule = faulty_s3.proxy.add(Rule(match, before=create_the_racing_object))
    source = layered_state_dict(seed=35, layers=2, size=1024)  # a file of two parts
    with pytest.raises(CheckpointException, match="already exists"):
        save(faulty_s3, "tight", source, overwrite=False)
    assert rule.fired.is_set()
    assert faulty_s3.read(key) == b"written by a racing save"
    if file_name != ".metadata":
        assert ".metadata" not in keys_under(faulty_s3, "tight")
    assert faulty_s3.uploads() == []


# ---- interrupted saves ----------------------------------------------------------------------


def _fail_puts_of(env: S3TestEnv, file_name: str, part_number: int | None = None) -> Rule:
    assert env.proxy is not None

    def match(request: Any) -> bool:
        if request.method != "PUT" or not request.path.endswith(f"/{file_name}"):
            return False
        return part_number is None or request.query.get("partNumber") == str(part_number)

    return env.proxy.add(Rule(match, respond=403, code="AccessDenied", times=None))


@pytest.mark.parametrize("multipart", [False, True], ids=["single-put", "multipart"])
def test_a_failed_file_leaves_no_metadata(faulty_s3: S3TestEnv, multipart: bool) -> None:
    size = 1024 if multipart else 256  # 4 MiB or 256 KiB weights; 2 of them per file
    source = layered_state_dict(seed=15, layers=8, size=size)
    rule = _fail_puts_of(faulty_s3, "__0_2.distcp", part_number=2 if multipart else None)
    with pytest.raises(CheckpointException) as error:
        save(faulty_s3, "broken", source, thread_count=4, settings={"max_attempts": 2})
    assert rule.fired.is_set()
    assert "AccessDenied" in str(error.value)
    keys = keys_under(faulty_s3, "broken")
    assert ".metadata" not in keys
    assert "__0_2.distcp" not in keys
    assert faulty_s3.uploads() == []  # the failed file's multipart upload was aborted
    with pytest.raises(CheckpointException, match=load_error_naming(f"no checkpoint at {uri(faulty_s3, 'broken')}")):
        load(faulty_s3, "broken", zeroed(source))


def test_an_interrupted_overwrite_leaves_no_metadata(faulty_s3: S3TestEnv) -> None:
    """The old .metadata would describe a mixture of old files and the new ones written before
    the failure: it is removed before the first file of the new save."""
    save(faulty_s3, "ckpt", layered_state_dict(seed=16, layers=4, size=64), thread_count=2)
    _fail_puts_of(faulty_s3, "__0_1.distcp")
    with pytest.raises(CheckpointException):
        save(
            faulty_s3,
            "ckpt",
            layered_state_dict(seed=17, layers=4, size=64),
            thread_count=2,
            settings={"max_attempts": 1},
        )
    assert ".metadata" not in keys_under(faulty_s3, "ckpt")
