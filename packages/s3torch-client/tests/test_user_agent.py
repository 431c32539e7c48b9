"""``UserAgent``: the upstream layout of the prefix, comments, validation."""

from __future__ import annotations

import pickle
import platform
import re
from typing import Any

import pytest
from client_unit_support import BUCKET, REGION

from s3torch.client import S3Client, UserAgent
from s3torch.client import _user_agent as user_agent_module


def test_prefix_layout() -> None:
    prefix = UserAgent().prefix
    assert prefix.startswith("s3torch-client/")
    parts = prefix.split(" ")
    assert parts[1] == "ua/2.1"
    assert re.fullmatch(r"os/[a-z0-9]+#\S*", parts[2])
    assert parts[3] == f"lang/python#{platform.python_version()}"
    assert parts[4] == f"md/arch#{platform.machine().lower()}"
    assert "(" not in prefix


def test_version_is_the_distributions() -> None:
    version = user_agent_module.package_version("s3torch-client")
    assert version
    assert UserAgent().prefix.startswith(f"s3torch-client/{version} ")


def test_comments_are_rendered_in_parentheses() -> None:
    assert UserAgent(["dcp", "2.13.0"]).prefix.endswith(" (dcp; 2.13.0)")
    assert UserAgent(["md/dataset#map md/reader_type#sequential"]).prefix.endswith(
        " (md/dataset#map md/reader_type#sequential)"
    )


def test_empty_comments_are_dropped() -> None:
    base = UserAgent().prefix
    assert UserAgent([]).prefix == base
    assert UserAgent([""]).prefix == base
    assert UserAgent(["", "a", "", "b"]).prefix == base + " (a; b)"
    assert UserAgent(["", "a"]).comments == ["a"]


@pytest.mark.parametrize("comments", ["dcp", ("a", "b"), {"a"}, ["a", 1], [None], 42])
def test_comments_must_be_a_list_of_strings(comments: object) -> None:
    with pytest.raises(ValueError, match=r"^Argument comments must be a List\[str\]$"):
        UserAgent(comments)  # type: ignore[arg-type]


def test_darwin_is_rendered_as_macos(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(user_agent_module.sys, "platform", "darwin")
    assert " os/macos#" in UserAgent().prefix


def test_pytorch_version_is_reported_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    versions = {"s3torch-client": "1.2.3", "torch": "2.13.0"}
    monkeypatch.setattr(user_agent_module, "package_version", versions.get)
    assert UserAgent(["x"]).prefix.startswith("s3torch-client/1.2.3 ua/2.1 ")
    assert UserAgent(["x"]).prefix.endswith(" md/pytorch#2.13.0 (x)")
    versions.pop("torch")
    assert "md/pytorch" not in UserAgent().prefix


def test_equality_pickle_and_client_prefix() -> None:
    user_agent = UserAgent(["lightning", "2.5"])
    assert user_agent == UserAgent(["lightning", "2.5"])
    assert hash(user_agent) == hash(UserAgent(["lightning", "2.5"]))
    assert user_agent != UserAgent(["lightning"])
    assert pickle.loads(pickle.dumps(user_agent)) == user_agent
    client = S3Client("us-east-1", user_agent=user_agent)
    assert client.user_agent_prefix == user_agent.prefix
    copy = pickle.loads(pickle.dumps(client))
    assert copy.user_agent_prefix == user_agent.prefix  # nothing appended twice
    assert S3Client("us-east-1").user_agent_prefix == UserAgent().prefix


def test_get_default_prefix_is_the_prefix_without_comments() -> None:
    from s3torch.client import UserAgent

    default = UserAgent.get_default_prefix()
    assert default.startswith("s3torch-client/") and " ua/2.1 " in default
    assert UserAgent().prefix == default
    assert UserAgent(["a", "b"]).prefix == f"{default} (a; b)"


def test_one_transport_serves_every_user_agent_and_each_request_carries_its_own(s3: Any) -> None:
    """Components with their own User-Agent share the process's transport (one botocore client,
    one pool, one thread pool); the header of each request names the component that sent it,
    on the data path (GET, PUT, UploadPart) and the control path (HEAD, list, multipart)."""
    clients = {name: S3Client(REGION, user_agent=UserAgent([name])) for name in ("md/one", "md/two")}
    transport = clients["md/one"]._transport
    assert clients["md/two"]._transport is transport
    seen: list[tuple[str, str]] = []

    def capture(request: Any, event_name: str, **_: Any) -> None:
        header = request.headers["User-Agent"]
        seen.append((event_name.rsplit(".", 1)[-1], header.decode() if isinstance(header, bytes) else header))

    # before-send sees the final headers of both paths (the data path asks it too, under mock_aws).
    transport.client.meta.events.register_first("before-send.s3", capture)
    try:
        for name, client in clients.items():
            seen.clear()
            with client.put_object(BUCKET, f"k-{name}") as writer:
                writer.write(b"x" * (9 * 1024 * 1024))  # multipart: create, part, part, complete
            assert client.head_object(BUCKET, f"k-{name}").size == 9 * 1024 * 1024
            assert b"".join(client.get_object_stream(BUCKET, f"k-{name}"))[:1] == b"x"
            list(client.list_objects(BUCKET))
            operations = {operation for operation, _ in seen}
            assert {"CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload"} <= operations
            assert {"HeadObject", "GetObject", "ListObjectsV2"} <= operations
            for operation, header in seen:
                assert header.endswith(f"({name})") or f"({name}) botocore/" in header, (operation, header)
    finally:
        transport.client.meta.events.unregister("before-send.s3", capture)
