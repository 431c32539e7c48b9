"""``S3Client`` over moto in process: head, list, delete, copy, ``get_object``'s reader
plumbing, logging, and the one-transport-per-process-and-configuration rule."""

from __future__ import annotations

import logging
import math
import pickle
import sys
import threading
import types
from typing import Any

import pytest
from client_unit_support import PART, REGION, MockS3, payload

from s3torch.client import (
    GetObjectStream,
    HeadObjectResult,
    ListObjectResult,
    ObjectInfo,
    RestoreStatus,
    S3Client,
    S3ClientConfig,
)
from s3torch.client import _registry as registry_module
from s3torch.client import _resources as resources_module
from s3torch.client._transport import Transport

# ---- head ---------------------------------------------------------------------------------


def test_head_object(s3: MockS3) -> None:
    data = payload(1234)
    etag = s3.put("head", data)
    head = s3.client.head_object(s3.bucket, "head")
    assert isinstance(head, HeadObjectResult)
    assert (head.size, head.etag, head.storage_class, head.restore_status) == (1234, etag, None, None)
    assert head.last_modified == int(s3.boto.head_object(Bucket=s3.bucket, Key="head")["LastModified"].timestamp())


def test_head_object_of_archived_object_reports_class_and_restore(s3: MockS3) -> None:
    s3.boto.put_object(Bucket=s3.bucket, Key="cold", Body=b"ice", StorageClass="GLACIER")
    assert s3.client.head_object(s3.bucket, "cold").storage_class == "GLACIER"
    s3.boto.restore_object(Bucket=s3.bucket, Key="cold", RestoreRequest={"Days": 2})
    header = s3.boto.head_object(Bucket=s3.bucket, Key="cold")["Restore"]
    status = s3.client.head_object(s3.bucket, "cold").restore_status
    assert isinstance(status, RestoreStatus)
    assert status.in_progress is ('ongoing-request="true"' in header)
    assert status.expiry is not None
    assert status.expiry > 0


# ---- list ---------------------------------------------------------------------------------


@pytest.fixture
def tree(s3: MockS3) -> list[str]:
    keys = sorted([f"data/{i:04d}.bin" for i in range(250)] + ["a/1", "a/2", "b/x/1", "c", "d/"])
    for key in keys:
        s3.put(key, key.encode())
    return keys


@pytest.mark.parametrize("max_keys", [1000, 100, 7])
def test_list_pages(s3: MockS3, tree: list[str], max_keys: int) -> None:
    stream = s3.client.list_objects(s3.bucket, "data/", max_keys=max_keys)
    assert (stream.bucket, stream.prefix, stream.delimiter, stream.max_keys) == (s3.bucket, "data/", "", max_keys)
    assert stream.continuation_token is None
    assert not stream.complete
    pages = list(stream)
    assert stream.complete
    assert len(pages) == math.ceil(250 / max_keys)
    assert all(isinstance(page, ListObjectResult) for page in pages)
    assert all(len(page.object_info) <= max_keys for page in pages)
    assert [info.key for page in pages for info in page.object_info] == [k for k in tree if k.startswith("data/")]


def test_list_one_key_per_page(s3: MockS3, tree: list[str]) -> None:
    pages = list(s3.client.list_objects(s3.bucket, "a/", max_keys=1))
    assert [[info.key for info in page.object_info] for page in pages] == [["a/1"], ["a/2"]]


def test_list_object_info(s3: MockS3) -> None:
    etag = s3.put("one", b"12345")
    s3.boto.put_object(Bucket=s3.bucket, Key="two", Body=b"x", StorageClass="STANDARD_IA")
    (page,) = list(s3.client.list_objects(s3.bucket))
    one, two = page.object_info
    assert isinstance(one, ObjectInfo)
    assert (one.key, one.etag, one.size, one.storage_class, one.restore_status) == ("one", etag, 5, None, None)
    assert one.last_modified == s3.client.head_object(s3.bucket, "one").last_modified
    assert (two.key, two.storage_class) == ("two", "STANDARD_IA")


def test_list_with_empty_prefix_and_delimiter(s3: MockS3, tree: list[str]) -> None:
    (page,) = list(s3.client.list_objects(s3.bucket, delimiter="/"))
    assert [info.key for info in page.object_info] == ["c"]
    assert page.common_prefixes == ["a/", "b/", "d/", "data/"]
    everything = [info.key for page in s3.client.list_objects(s3.bucket) for info in page.object_info]
    assert everything == tree
    (inner,) = list(s3.client.list_objects(s3.bucket, "b/", "/"))
    assert (inner.object_info, inner.common_prefixes) == ([], ["b/x/"])


def test_list_of_unknown_prefix_is_one_empty_page(s3: MockS3) -> None:
    stream = s3.client.list_objects(s3.bucket, "nothing/")
    assert next(stream) == ListObjectResult([], [])
    with pytest.raises(StopIteration):
        next(stream)


def test_list_is_lazy(s3: MockS3, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    original = Transport.call
    monkeypatch.setattr(Transport, "call", lambda self, *a, **k: calls.append(a[0]) or original(self, *a, **k))
    stream = s3.client.list_objects(s3.bucket)
    assert calls == []
    next(stream)
    assert calls == ["ListObjectsV2"]


# ---- delete, copy ---------------------------------------------------------------------------


def test_delete_object(s3: MockS3) -> None:
    s3.put("gone", b"x")
    s3.client.delete_object(s3.bucket, "gone")
    assert not s3.exists("gone")
    s3.client.delete_object(s3.bucket, "gone")


def test_copy_object_within_and_across_buckets(s3: MockS3) -> None:
    data = payload(PART + 7)
    s3.put("src", data)
    s3.client.copy_object(s3.bucket, "src", s3.bucket, "dst")
    s3.boto.create_bucket(Bucket="other-bucket")
    s3.client.copy_object(s3.bucket, "src", "other-bucket", "dir/dst")
    assert s3.read("dst") == data
    assert s3.boto.get_object(Bucket="other-bucket", Key="dir/dst")["Body"].read() == data
    assert s3.read("src") == data


# ---- get_object: the reader comes from s3torch-readers -----------------------------------


def test_get_object_without_readers_raises_import_error(s3: MockS3, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "s3torch.readers", None)
    with pytest.raises(ImportError, match="s3torch-readers") as caught:
        s3.client.get_object(s3.bucket, "k")
    assert "pip install s3torch-readers" in str(caught.value)


class FakeReader:
    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs


@pytest.fixture
def fake_readers(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    module = types.ModuleType("s3torch.readers")

    class S3ReaderConstructor:
        @staticmethod
        def default() -> Any:
            return FakeReader

    module.S3ReaderConstructor = S3ReaderConstructor  # type: ignore[attr-defined]
    module.check_reader_constructor = lambda constructor: None  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "s3torch.readers", module)
    return module


def test_get_object_builds_the_default_reader(
    s3: MockS3, fake_readers: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = payload(PART + 50)
    etag = s3.put("obj", data)
    heads = []
    original = S3Client.head_object
    monkeypatch.setattr(S3Client, "head_object", lambda self, b, k: heads.append(k) or original(self, b, k))

    reader = s3.client.get_object(s3.bucket, "obj")
    assert isinstance(reader, FakeReader)
    assert (reader.kwargs["bucket"], reader.kwargs["key"]) == (s3.bucket, "obj")
    assert heads == []  # lazily: no HEAD until the reader asks
    info = reader.kwargs["get_object_info"]()
    assert (info.size, info.etag, heads) == (len(data), etag, ["obj"])
    whole = reader.kwargs["get_stream"]()
    assert isinstance(whole, GetObjectStream)
    assert b"".join(whole) == data
    assert b"".join(reader.kwargs["get_stream"](10, 20)) == data[10:20]
    assert b"".join(reader.kwargs["get_stream"](PART)) == data[PART:]


def test_get_object_gives_the_reader_callables_that_pickle(s3: MockS3, fake_readers: types.ModuleType) -> None:
    # A reader pickles them (DataLoader workers hand readers to the main process): they carry
    # the client's settings and the listing's info, and work in the copy.
    data = payload(100)
    etag = s3.put("obj", data)
    info = ObjectInfo("obj", etag, len(data), 0)
    for object_info in (None, info):
        reader = s3.client.get_object(s3.bucket, "obj", object_info=object_info)
        get_object_info, get_stream = pickle.loads(
            pickle.dumps((reader.kwargs["get_object_info"], reader.kwargs["get_stream"]))
        )
        assert get_object_info().size == len(data)
        assert (get_object_info() == info) is (object_info is not None)
        assert b"".join(get_stream(10, 20)) == data[10:20]
        client = get_stream.func.__self__
        assert (client.region, client.s3client_config) == (s3.client.region, s3.client.s3client_config)


def test_get_object_with_object_info_sends_no_head(
    s3: MockS3, fake_readers: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(S3Client, "head_object", lambda *args: pytest.fail("HEAD sent"))
    info = ObjectInfo("obj", '"etag"', 3, 0)
    reader = s3.client.get_object(s3.bucket, "obj", object_info=info)
    assert reader.kwargs["get_object_info"]() is info


def test_get_object_with_a_reader_constructor(s3: MockS3, fake_readers: types.ModuleType) -> None:
    built = []

    def constructor(**kwargs: Any) -> str:
        built.append(kwargs["key"])
        return "custom reader"

    assert s3.client.get_object(s3.bucket, "k", reader_constructor=constructor) == "custom reader"  # type: ignore[arg-type]
    assert built == ["k"]


def test_operations_log_one_debug_line_each(
    s3: MockS3, fake_readers: types.ModuleType, caplog: pytest.LogCaptureFixture
) -> None:
    s3.put("src", b"x")
    with caplog.at_level(logging.DEBUG, logger="s3torch.client._client"):
        s3.client.get_object(s3.bucket, "src")
        s3.client.put_object(s3.bucket, "new").close()
        s3.client.head_object(s3.bucket, "src")
        s3.client.copy_object(s3.bucket, "src", s3.bucket, "dst")
        s3.client.delete_object(s3.bucket, "dst")
        s3.client.list_objects(s3.bucket, "pre")
    messages = [r.getMessage() for r in caplog.records if r.name == "s3torch.client._client"]
    assert messages == [
        "GetObject s3://s3torch-unit/src, object_info is None=True",
        "PutObject s3://s3torch-unit/new",
        "HeadObject s3://s3torch-unit/src",
        "CopyObject s3://s3torch-unit/src to s3://s3torch-unit/dst",
        "DeleteObject s3://s3torch-unit/dst",
        "ListObjects s3://s3torch-unit/pre",
    ]


# ---- transports ---------------------------------------------------------------------------


def test_clients_of_one_configuration_share_a_transport() -> None:
    config = S3ClientConfig(read_timeout=31.0)
    first, second = S3Client(REGION, s3client_config=config), S3Client(REGION, s3client_config=config)
    assert first._transport is second._transport
    assert S3Client(REGION, s3client_config=S3ClientConfig(read_timeout=32.0))._transport is not first._transport
    assert S3Client("eu-west-1", s3client_config=config)._transport is not first._transport
    assert S3Client(REGION, endpoint="http://127.0.0.1:1", s3client_config=config)._transport is not first._transport


def test_an_empty_endpoint_is_kept_as_given_and_means_none() -> None:
    """As the upstream: ``endpoint`` reads back what was given; "" resolves as None does."""
    config = S3ClientConfig(read_timeout=34.0)
    client = S3Client(REGION, endpoint="", s3client_config=config)
    assert client.endpoint == ""
    assert client._transport is S3Client(REGION, s3client_config=config)._transport


def test_concurrent_first_use_builds_one_transport() -> None:
    config = S3ClientConfig(read_timeout=33.0)  # no other test uses it: the transport is new
    clients = [S3Client(REGION, s3client_config=config) for _ in range(10)]
    start = threading.Barrier(10)
    seen: list[Any] = []

    def use(client: S3Client) -> None:
        start.wait()
        try:
            seen.append(client._transport)
        except BaseException as error:  # noqa: BLE001 - reported below
            seen.append(error)

    threads = [threading.Thread(target=use, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 10
    assert all(isinstance(transport, Transport) for transport in seen)
    assert len({id(transport) for transport in seen}) == 1


def test_a_new_process_gets_new_transports(monkeypatch: pytest.MonkeyPatch) -> None:
    client = S3Client(REGION, s3client_config=S3ClientConfig(read_timeout=34.0))
    before = client._transport
    # What a fork looks like to get_transport: another PID (here without the at-fork hook).
    monkeypatch.setattr(resources_module, "_pid", -1)
    monkeypatch.setattr(resources_module, "_executors", dict(resources_module._executors))
    monkeypatch.setattr(registry_module, "_transports", dict(registry_module._transports))
    after = client._transport
    assert after is not before
    assert client._transport is after


def test_transport_settings_follow_the_config() -> None:
    config = S3ClientConfig(throughput_target_gbps=2.4, max_attempts=4, force_path_style=True, read_timeout=35.0)
    transport = S3Client(REGION, endpoint="http://127.0.0.1:9", s3client_config=config)._transport
    assert transport.concurrency == 3
    assert transport.executor._max_workers == 6
    botocore_config = transport.client.meta.config
    assert botocore_config.retries["total_max_attempts"] == 4
    assert botocore_config.max_pool_connections >= transport.concurrency
    assert botocore_config.s3["addressing_style"] == "path"
    assert transport.bucket_endpoint("bkt").base_url == "http://127.0.0.1:9/bkt/"
    assert transport.request_payer == {}


def test_virtual_host_addressing_by_default() -> None:
    transport = S3Client(REGION, s3client_config=S3ClientConfig(read_timeout=36.0))._transport
    endpoint = transport.bucket_endpoint("my-bucket")
    assert endpoint.base_url == "https://my-bucket.s3.amazonaws.com/"
    assert endpoint.host == "my-bucket.s3.amazonaws.com"
    assert endpoint.lean
    assert endpoint.signer is not None


def test_express_buckets_use_the_botocore_client() -> None:
    transport = S3Client(REGION, s3client_config=S3ClientConfig(read_timeout=37.0))._transport
    assert not transport.bucket_endpoint("fast--use1-az4--x-s3").lean


def test_requester_pays_and_unsigned_settings() -> None:
    paying = S3Client(REGION, s3client_config=S3ClientConfig(requester_pays=True, read_timeout=38.0))._transport
    assert paying.request_payer == {"RequestPayer": "requester"}
    unsigned = S3Client(REGION, s3client_config=S3ClientConfig(unsigned=True, read_timeout=38.0))._transport
    assert unsigned.bucket_endpoint("public-bucket").signer is None


def test_data_path_is_answered_by_mock_aws(s3: MockS3) -> None:
    """moto's mock_aws intercepts botocore's before-send event: the lean path honours it too."""
    with s3.client.put_object(s3.bucket, "mocked") as writer:
        writer.write(payload(PART + 1))
    assert s3.read("mocked") == payload(PART + 1)
    assert b"".join(s3.client.get_object_stream(s3.bucket, "mocked")) == payload(PART + 1)


class _RawAnswer:
    """The ``raw`` of a hand-made ``AWSResponse`` (what botocore reads through ``stream()``)."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Any:
        yield self._data


def test_any_before_send_handler_answers_the_data_path(s3: MockS3) -> None:
    """botocore compatibility, not a moto special case: a plain handler on ``before-send`` that
    returns an ``AWSResponse`` answers the data path's GetObject as it would botocore's."""
    from botocore.awsrequest import AWSResponse

    seen: list[str] = []

    def handler(request: Any, **_: Any) -> AWSResponse:
        seen.append(request.headers["Range"])
        headers = {"Content-Range": "bytes 0-4/5", "Content-Length": "5", "ETag": '"e"'}
        return AWSResponse(request.url, 206, headers, _RawAnswer(b"hello"))

    client = s3.new_client(read_timeout=41.0)  # a transport of its own
    events = client._transport.client.meta.events
    events.register_first("before-send.s3.GetObject", handler)
    try:
        assert b"".join(client.get_object_stream("no-such-bucket-anywhere", "greeting")) == b"hello"
    finally:
        events.unregister("before-send.s3.GetObject", handler)
    assert seen and seen[0].startswith("bytes=0-")
