"""The per-process registry: transports closed at exit stay usable (``_registry._close_at_exit``)."""

from __future__ import annotations

from s3torch.client import S3Client, S3ClientConfig, _registry
from s3torch_test_support.scripted_server import Exchange, ScriptedServer

ANSWER = b'HTTP/1.1 206 Partial Content\r\nContent-Length: 5\r\nContent-Range: bytes 0-4/5\r\nETag: "e"\r\n\r\nhello'


def test_closing_at_exit_drops_idle_connections_and_later_requests_open_new_ones() -> None:
    def handler(exchange: Exchange) -> None:
        exchange.send(ANSWER)

    with ScriptedServer(handler) as server:
        client = S3Client(
            "us-east-1",
            endpoint=f"http://127.0.0.1:{server.port}",
            s3client_config=S3ClientConfig(force_path_style=True, connect_timeout=5.0),
        )
        assert b"".join(client.get_object_stream("bucket", "one")) == b"hello"
        assert server.connections == 1
        _registry._close_at_exit()
        # A daemon thread still reading after the exit hook: a new connection, no error.
        assert b"".join(client.get_object_stream("bucket", "two")) == b"hello"
        assert server.connections == 2
        assert [request.target for request in server.requests] == ["/bucket/one", "/bucket/two"]
