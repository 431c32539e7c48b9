"""The transports' botocore sessions: model data read once per process, S3 timestamps parsed fast."""

from __future__ import annotations

import datetime
import os
from typing import Any

import botocore.exceptions
import botocore.loaders
import botocore.parsers
import botocore.session
import pytest
from botocore.utils import parse_timestamp
from client_unit_support import REGION, MockS3

from s3torch.client import S3Client, S3ClientConfig
from s3torch.client._botocore_session import new_session, parse_response_timestamp
from s3torch.client._registry import get_transport


@pytest.mark.parametrize(
    "text",
    [
        "2026-12-07T05:41:13.000Z",
        "2026-12-07T05:41:13Z",
        "2009-10-12T17:50:30.123456Z",
        "Mon, 07 Dec 2026 05:41:13 GMT",  # a header's HTTP date: botocore's parser
        "1765085000",  # epoch seconds: botocore's parser
        "2026-12-07T05:41:13.5Z",  # a fraction fromisoformat may refuse (Python 3.10): botocore's
    ],
)
def test_timestamps_parse_as_botocore_parses_them(text: str) -> None:
    ours = parse_response_timestamp(text)
    assert ours == parse_timestamp(text)
    assert ours.utcoffset() == datetime.timedelta(0)


def _file_loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    loads: list[str] = []
    original = botocore.loaders.JSONFileLoader.load_file

    def counting(self: Any, file_path: str) -> Any:
        loads.append(file_path)
        return original(self, file_path)

    monkeypatch.setattr(botocore.loaders.JSONFileLoader, "load_file", counting)
    return loads


def test_a_new_transport_reads_no_model_file_once_one_client_preloaded(monkeypatch: pytest.MonkeyPatch) -> None:
    S3Client(REGION).preload()
    loads = _file_loads(monkeypatch)
    # A configuration no other test uses: a transport (and botocore session) of its own.
    transport = get_transport(REGION, "http://127.0.0.1:9", S3ClientConfig(max_attempts=7, part_size=6 * 2**20))
    assert transport.bucket_endpoint("bucket").host == "127.0.0.1:9"
    assert loads == []  # every session shares the process's data loader, already filled
    assert new_session(None).get_component("data_loader") is new_session(None).get_component("data_loader")


def test_a_forked_child_inherits_the_preloaded_model_data(monkeypatch: pytest.MonkeyPatch) -> None:
    S3Client(REGION).preload()
    loads = _file_loads(monkeypatch)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: build a transport as a DataLoader worker does, report the file reads
        try:
            os.close(read_end)
            get_transport(REGION, "http://127.0.0.1:9", S3ClientConfig(max_attempts=6)).bucket_endpoint("b")
            os.write(write_end, str(len(loads)).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        reported = pipe.read()
    os.waitpid(pid, 0)
    assert reported == "0"


def test_preloading_a_profile_that_does_not_exist_leaves_the_error_to_first_use() -> None:
    client = S3Client(REGION, s3client_config=S3ClientConfig(profile="no-such-profile"))
    client.preload()  # nothing to load; no error here
    with pytest.raises(botocore.exceptions.ProfileNotFound, match="no-such-profile"):
        client.head_object("bucket", "key")


def test_listings_do_not_use_botocores_slow_timestamp_parser(s3: MockS3, monkeypatch: pytest.MonkeyPatch) -> None:
    s3.put("listed/one.bin", b"1")
    expected = s3.boto.head_object(Bucket=s3.bucket, Key="listed/one.bin")["LastModified"]

    def refuse(value: Any) -> Any:
        raise AssertionError(f"botocore's default timestamp parser called with {value!r}")

    monkeypatch.setattr(botocore.parsers, "DEFAULT_TIMESTAMP_PARSER", refuse)
    (page,) = list(MockS3.new_client(max_attempts=8).list_objects(s3.bucket, "listed/"))
    (info,) = page.object_info
    assert info.last_modified == int(expected.timestamp())


def test_a_profile_is_preloaded_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    S3Client(REGION).preload()
    built: list[Any] = []
    monkeypatch.setattr(botocore.session.Session, "create_client", lambda *args, **kwargs: built.append(args))
    S3Client("eu-west-1").preload()  # every dataset built calls it: only the first one costs
    assert built == []
