"""The one place s3torch relies on botocore internals: its client's HTTP session and events.

The data path sends on the botocore client's own HTTP session, so that the pool limits, proxies,
CA bundle, client certificate and timeouts a user configured for botocore apply to it too. It
relies on these private names (botocore 1.31 to 1.44 at least), each checked by
``tests/test_dependency_seams.py`` so that a new botocore that changes one fails loudly there:

* ``BaseClient._endpoint.http_session``: the client's ``URLLib3Session``;
* ``URLLib3Session._proxy_config.proxy_url_for(url)``: the proxy for a URL, or None;
* ``URLLib3Session._cert_file``: the client certificate, or None;
* ``URLLib3Session._verify``: the CA bundle path, True (default trust) or False;
* ``URLLib3Session._get_connection_manager(url, proxy_url)``: its urllib3 pool manager;
* ``URLLib3Session._setup_ssl_cert(pool, url, verify)``: its trust settings on a pool;
* ``URLLib3Session._get_request_target(url, proxy_url)``: the request line's target;
* ``HierarchicalEmitter._emitter._handlers.prefix_search(event)``: the handlers of an event
  (``client.meta.events`` is an ``EventAliaser`` around the emitter);
* ``StreamingBody._raw_stream``: the urllib3 response under a GetObject body.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "connection_pool",
    "has_client_certificate",
    "has_handlers",
    "http_session",
    "proxy_url_for",
    "raw_stream",
    "request_target",
    "verify_setting",
]


def http_session(client: Any) -> Any:
    """The botocore client's HTTP session (a ``URLLib3Session``)."""
    return client._endpoint.http_session


def proxy_url_for(session: Any, url: str) -> str | None:
    """The proxy the session uses for ``url`` (environment or ``Config(proxies=...)``), or None."""
    proxy: str | None = session._proxy_config.proxy_url_for(url)
    return proxy


def has_client_certificate(session: Any) -> bool:
    """Whether the session presents a client certificate (``Config(client_cert=...)``)."""
    return getattr(session, "_cert_file", None) is not None


def verify_setting(session: Any) -> Any:
    """The session's trust: a CA bundle path, True (default trust) or False (no verification)."""
    return session._verify


def connection_pool(session: Any, url: str, proxy_url: str | None) -> Any:
    """The session's own urllib3 pool for ``url`` (through ``proxy_url``), with its trust set."""
    pool = session._get_connection_manager(url, proxy_url).connection_from_url(url)
    session._setup_ssl_cert(pool, url, session._verify)
    return pool


def request_target(session: Any, url: str, proxy_url: str | None) -> str:
    """What the request line names for ``url``: its path, or the absolute URL through a proxy."""
    target: str = session._get_request_target(url, proxy_url)
    return target


def has_handlers(client: Any, event: str) -> bool:
    """Whether anything is registered on ``event`` of the client's emitter (moto's mock_aws, a
    ``Stubber``): ``emit`` cannot tell, since botocore's own handlers answer None too."""
    return bool(client.meta.events._emitter._handlers.prefix_search(event))


def raw_stream(streaming_body: Any) -> Any:
    """The urllib3 response under a botocore ``StreamingBody``."""
    return streaming_body._raw_stream
