"""Where a bucket's data-path requests go: addressing, signing region, TLS and connection pool.

botocore's endpoint rules and addressing style are run once per bucket (a presigned URL for a
placeholder key) and the answer is cached. A direct endpoint gets our own ``ConnectionPool``
(one per scheme, host and port, with botocore's trust settings); through a proxy or with a client
certificate, botocore's own urllib3 pool; an S3 Express bucket goes through botocore's client.
"""

from __future__ import annotations

import os
import ssl
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from botocore.exceptions import BotoCoreError, ParamValidationError
from botocore.httpsession import create_urllib3_context, get_cert_path

from . import _botocore_compat as botocore_compat
from ._config import S3ClientConfig
from ._exceptions import translate
from ._http import ConnectionPool
from ._sigv4 import SigV4Signer

__all__ = ["BucketEndpoint", "Endpoints", "idle_connections"]


def idle_connections(config: S3ClientConfig) -> int:
    """Idle connections kept per pool (botocore's and each of ours)."""
    return 2 * config.concurrency + 8


@dataclass(frozen=True)
class BucketEndpoint:
    """Where and how to send data-path requests for one bucket."""

    base_url: str  # ends with "/"; the percent-encoded key follows
    host: str
    path_prefix: str  # the path part of base_url
    signer: SigV4Signer | None  # None: unsigned requests
    lean: bool  # False: this bucket's data path goes through botocore's client (S3 Express)
    pool: Any  # our ConnectionPool (direct) or botocore's urllib3 pool (proxy, client certificate)
    target_base: str  # what precedes the key in the request line (absolute through a proxy)
    direct: bool  # whether ``pool`` is our own minimal HTTP client


class Endpoints:
    """The resolved endpoints and the connection pools of one transport."""

    def __init__(self, client: Any, region: str, config: S3ClientConfig) -> None:
        self._client = client
        self._region = region
        self._config = config
        self._http = botocore_compat.http_session(client)
        self._endpoints: dict[str, BucketEndpoint] = {}
        self._pools: dict[tuple[str, str, int | None], ConnectionPool] = {}
        self._lock = threading.Lock()

    def of(self, bucket: str) -> BucketEndpoint:
        """The endpoint of ``bucket``, resolved on first use."""
        endpoint = self._endpoints.get(bucket)
        if endpoint is None:
            with self._lock:
                endpoint = self._endpoints.get(bucket) or self._resolve(bucket)
                self._endpoints[bucket] = endpoint
        return endpoint

    def replace(self, bucket: str, endpoint: BucketEndpoint) -> None:
        """Send ``bucket``'s requests to ``endpoint`` from now on (benchmarks compare pools)."""
        with self._lock:
            self._endpoints[bucket] = endpoint

    def forget(self, bucket: str) -> None:
        """Resolve ``bucket`` again on its next request."""
        with self._lock:
            self._endpoints.pop(bucket, None)

    def close(self) -> None:
        """Close our own pools (botocore closes its own with its client)."""
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.close()

    def _resolve(self, bucket: str) -> BucketEndpoint:
        express = bucket.endswith("--x-s3")
        try:
            url = (
                self._client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=60)
                if not express
                else "https://unused/k"
            )
        except ParamValidationError as error:
            raise ValueError(f"Invalid bucket name {bucket!r}: {error}") from error
        except BotoCoreError as error:
            raise translate(error, "ResolveEndpoint", bucket, None) from error
        location, _, query = url.partition("?")
        base_url = location[: -len("k")]
        parts = urlsplit(base_url)
        signer = None
        if not self._config.unsigned and not express:
            scope = parse_qs(query).get("X-Amz-Credential", [""])[0].split("/")
            signer = SigV4Signer(region=scope[2] if len(scope) == 5 else self._region, service="s3")
        pool: Any = None
        target_base = parts.path
        direct = False
        if not express:
            proxy_url = botocore_compat.proxy_url_for(self._http, base_url)
            if proxy_url is None and not botocore_compat.has_client_certificate(self._http):
                pool, direct = self._direct_pool(parts.scheme, parts.hostname or "", parts.port), True
            else:
                # Through a proxy or with a client certificate: botocore's own urllib3 pool.
                pool = botocore_compat.connection_pool(self._http, base_url, proxy_url)
                target_base = botocore_compat.request_target(self._http, base_url, proxy_url)
        return BucketEndpoint(
            base_url=base_url,
            host=parts.netloc,
            path_prefix=parts.path,
            signer=signer,
            lean=not express,
            pool=pool,
            target_base=target_base,
            direct=direct,
        )

    def _direct_pool(self, scheme: str, host: str, port: int | None) -> ConnectionPool:
        key = (scheme, host, port)
        pool = self._pools.get(key)
        if pool is None:
            pool = ConnectionPool(
                scheme,
                host,
                port or (443 if scheme == "https" else 80),
                connect_timeout=self._config.connect_timeout,
                read_timeout=self._config.read_timeout,
                ssl_context=self._ssl_context() if scheme == "https" else None,
                max_idle=idle_connections(self._config),
                stall_window=self._config.stall_window,
                stall_min_rate=self._config.stall_min_rate,
            )
            self._pools[key] = pool
        return pool

    def _ssl_context(self) -> ssl.SSLContext:
        # The same trust as botocore's: AWS_CA_BUNDLE / ca_bundle / verify=False, else certifi.
        verify = botocore_compat.verify_setting(self._http)
        context: ssl.SSLContext = create_urllib3_context()
        if verify:
            location = get_cert_path(verify) or None
            if location is None:
                context.load_default_certs()
            elif os.path.isdir(location):
                context.load_verify_locations(capath=location)
            else:
                context.load_verify_locations(cafile=location)
            context.verify_mode = ssl.CERT_REQUIRED
            context.check_hostname = True
        else:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context
