"""The one moto starter (``s3torch_test_support.moto_server``): ready when ``start()`` returns,
gone when ``stop()`` returns, in this process and in a child process (the benchmarks' mode)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from s3torch_test_support import REGION, MotoServer, MotoServerError, boto3_client


def _accepts_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except OSError:
        return False
    return True


@pytest.mark.parametrize("in_child_process", [False, True], ids=["in-process", "child-process"])
def test_serves_s3_as_soon_as_started_and_stops(in_child_process: bool, tmp_path: Path) -> None:
    server = MotoServer(in_child_process=in_child_process, log_path=tmp_path / "moto.log")
    with server:
        port, pid = server.port, server.pid
        assert (pid is not None) == in_child_process
        boto = boto3_client(REGION, server.endpoint)  # no wait: start() returned, so it answers
        # In this process every moto server shares moto's one store, where earlier tests (through
        # the session's server) left buckets behind; a child process starts empty.
        if not in_child_process:
            server.reset()
        assert boto.list_buckets()["Buckets"] == []
        boto.create_bucket(Bucket="s3torch-moto-starter")
        assert [entry["Name"] for entry in boto.list_buckets()["Buckets"]] == ["s3torch-moto-starter"]
        server.reset()
        assert boto.list_buckets()["Buckets"] == []
    assert not _accepts_connections(port)
    if pid is not None:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # reaped by stop(): no such process any more
    with pytest.raises(MotoServerError, match="not started"):
        _ = server.endpoint
