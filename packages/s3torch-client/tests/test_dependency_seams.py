"""What s3torch relies on inside botocore and urllib3 (``_botocore_compat``, ``_urllib3_compat``).

Each test checks one private name against the installed version: a new botocore or urllib3 that
changes it fails here, by name, rather than somewhere deep in a read.
"""

from __future__ import annotations

import http.client
import http.server
import threading
from collections.abc import Iterator
from typing import Any

import botocore.session
import pytest
import urllib3
from botocore.config import Config
from botocore.httpsession import URLLib3Session
from botocore.response import StreamingBody

from s3torch.client import _botocore_compat as botocore_compat
from s3torch.client._urllib3_compat import Urllib3Body

ENDPOINT = "http://127.0.0.1:9"
URL = f"{ENDPOINT}/bucket/"


def botocore_client(**config: Any) -> Any:
    session = botocore.session.Session()
    return session.create_client(
        "s3",
        endpoint_url=ENDPOINT,
        aws_access_key_id="unit",
        aws_secret_access_key="unit",
        config=Config(region_name="us-east-1", **config),
    )


def test_the_client_http_session_is_botocores_urllib3_session() -> None:
    assert isinstance(botocore_compat.http_session(botocore_client()), URLLib3Session)


def test_proxy_of_a_url() -> None:
    assert botocore_compat.proxy_url_for(botocore_compat.http_session(botocore_client()), URL) is None
    proxied = botocore_compat.http_session(botocore_client(proxies={"http": "http://proxy.invalid:3128"}))
    assert botocore_compat.proxy_url_for(proxied, URL) == "http://proxy.invalid:3128"


def test_client_certificate(tmp_path: Any) -> None:
    assert not botocore_compat.has_client_certificate(botocore_compat.http_session(botocore_client()))
    certificate = tmp_path / "client.pem"
    certificate.write_text("unused")
    with_certificate = botocore_client(client_cert=str(certificate))
    assert botocore_compat.has_client_certificate(botocore_compat.http_session(with_certificate))


def _with_verify(verify: Any) -> Any:
    session = botocore.session.Session()
    client = session.create_client(
        "s3", endpoint_url=ENDPOINT, aws_access_key_id="u", aws_secret_access_key="u", verify=verify
    )
    return botocore_compat.http_session(client)


def test_trust_setting(tmp_path: Any) -> None:
    default = botocore_compat.verify_setting(botocore_compat.http_session(botocore_client()))
    assert default is True or isinstance(default, str)  # a CA bundle from the environment
    assert botocore_compat.verify_setting(_with_verify(False)) is False
    bundle = str(tmp_path / "bundle.pem")
    assert botocore_compat.verify_setting(_with_verify(bundle)) == bundle


def test_connection_pool_and_request_target() -> None:
    session = botocore_compat.http_session(botocore_client())
    pool = botocore_compat.connection_pool(session, URL, None)
    assert isinstance(pool, urllib3.HTTPConnectionPool)
    assert (pool.host, pool.port) == ("127.0.0.1", 9)
    assert botocore_compat.request_target(session, URL, None) == "/bucket/"
    proxy = "http://proxy.invalid:3128"
    assert botocore_compat.request_target(session, URL, proxy) == URL  # absolute through a plain proxy


def test_handlers_of_an_event_are_seen() -> None:
    client = botocore_client()
    assert not botocore_compat.has_handlers(client, "s3torch-seam-test.s3.GetObject")
    client.meta.events.register("s3torch-seam-test.s3", lambda **_: None)
    assert botocore_compat.has_handlers(client, "s3torch-seam-test.s3.GetObject")
    # moto, imported by these tests, registers its mock_aws handler on before-send for every client.
    assert botocore_compat.has_handlers(client, "before-send.s3.GetObject")


def test_raw_stream_of_a_streaming_body() -> None:
    raw = object()
    assert botocore_compat.raw_stream(StreamingBody(raw, 0)) is raw


# ---- urllib3 ----------------------------------------------------------------------------------

BODY = bytes(range(256)) * 64


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        short = self.path == "/short"
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY[: len(BODY) // 2] if short else BODY)
        if short:
            self.close_connection = True

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def _response(address: str, path: str) -> Any:
    host, port = address.split(":")
    pool = urllib3.HTTPConnectionPool(host, int(port), retries=False)
    return pool.urlopen("GET", path, preload_content=False)


def test_a_urllib3_response_sits_on_an_http_client_response(server: str) -> None:
    response = _response(server, "/whole")
    assert isinstance(response._fp, http.client.HTTPResponse)
    assert response._fp.length == len(BODY)
    response.release_conn()


def test_urllib3_body_reads_into_the_callers_memory(server: str) -> None:
    body = Urllib3Body(_response(server, "/whole"))
    buffer = bytearray(len(BODY) + 10)
    assert body.readinto(memoryview(buffer)) == len(BODY)
    assert bytes(buffer[: len(BODY)]) == BODY
    body.release_conn()


def test_urllib3_body_cut_short_raises(server: str) -> None:
    body = Urllib3Body(_response(server, "/short"))
    with pytest.raises(http.client.IncompleteRead):
        body.readinto(memoryview(bytearray(len(BODY))))
    body.close()
