"""The per-process S3 transport: one botocore client, one connection pool, one thread pool.

Two paths share them:

* the control path (list, head, delete, copy, create/complete/abort multipart) is botocore's
  client as it is, with its retries, parsing and error handling;
* the data path (GETs of objects and parts, PutObject, UploadPart) is sent lean: the request is
  built and signed here (``_sigv4``), with botocore's credentials, and goes out on botocore's own
  HTTP session (its pool, proxies, CA bundle and timeouts), skipping the per-request client
  pipeline that costs about 1 ms of CPU. Bucket addressing is resolved by botocore once per
  bucket and cached.

A transport belongs to one process: after ``fork`` the child builds its own.
"""

from __future__ import annotations

import base64
import http.client
import io
import logging
import os
import random
import ssl
import threading
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import parse_qs, quote, urlsplit
from xml.etree import ElementTree

import botocore
import botocore.session
import urllib3.exceptions
from botocore.awsrequest import AWSPreparedRequest
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
    ParamValidationError,
)
from botocore.httpsession import create_urllib3_context, get_cert_path

from ._config import S3ClientConfig
from ._control_hooks import THROTTLE_CODES, THROTTLE_STATUS, ControlHooks
from ._exceptions import S3Exception, client_error, service_error
from ._http import ConnectionPool
from ._metrics import Counters
from ._sigv4 import Credentials, SigV4Signer, canonical_query

logger = logging.getLogger(__name__)

_RETRYABLE_STATUS = frozenset({500, 502, 503, 504, 429})
# ConditionalRequestConflict: a create-only PutObject raced another write to its key; S3 asks
# for a retry, which then creates the object or finds it (412).
_RETRYABLE_CODES = frozenset(
    {"SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable", "Throttling", "ConditionalRequestConflict"}
)
_BACKOFF_BASE_SECONDS = 0.05
_BACKOFF_CAP_SECONDS = 20.0
#: The longest ``Retry-After`` (seconds form) honoured; a longer one waits this long.
RETRY_AFTER_CAP_SECONDS = 20.0
# Statuses whose Retry-After is honoured.
_RETRY_AFTER_STATUS = frozenset({429, 500, 503})
# S3's error documents are a few hundred bytes: more than this is not buffered (its connection is
# closed), nor is a success body where none is expected.
_ERROR_BODY_BYTES = 64 * 1024
# Errors of a connection in the middle of a body: the request is resumed or retried.
BODY_ERRORS = (OSError, http.client.HTTPException)


class RawResponse(NamedTuple):
    """An HTTP response whose body is still on the socket."""

    status: int
    headers: Any  # case-insensitive mapping
    body: Any  # urllib3.HTTPResponse
    request_id: str | None
    attempts: int = 1  # how many times the request was sent (>1: an earlier attempt may have acted)


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


class _ViewFile:
    """A memoryview request body as a file, for before-send handlers (copied only if read)."""

    def __init__(self, view: memoryview) -> None:
        self._view = view

    def read(self, amount: int | None = None) -> bytes:
        return self._view.tobytes()


class _InMemoryBody:
    """A response body a before-send handler made, with the body methods the transport uses."""

    def __init__(self, payload: bytes) -> None:
        self._file = io.BytesIO(payload)

    def readinto(self, view: memoryview) -> int:
        return self._file.readinto(view)

    def read(self) -> bytes:
        return self._file.read()

    def read_bounded(self, limit: int) -> bytes:
        return self._file.read(limit)

    def close(self) -> None:
        self._file.close()

    def release_conn(self) -> None:
        pass


class _Urllib3Body:
    """A urllib3 response body (proxied endpoints, S3 Express) with the same methods as
    ``_http.Body``; ``readinto`` goes through http.client straight into the caller's memory
    (urllib3's own ``readinto`` reads into a temporary ``bytes`` first)."""

    __slots__ = ("_raw",)

    def __init__(self, raw: Any) -> None:
        self._raw = raw

    def readinto(self, view: memoryview) -> int:
        wanted = len(view)
        filled = 0
        while filled < wanted:
            count = self._raw._fp.readinto(view[filled:])
            if not count:
                if self._raw._fp.length:  # the peer closed before the end of the body
                    raise http.client.IncompleteRead(b"", self._raw._fp.length)
                break
            filled += count
        return filled

    def read_bounded(self, limit: int) -> bytes:
        """At most ``limit`` bytes; a longer body's connection is closed, not drained."""
        data: bytes = self._raw.read(limit + 1)
        if len(data) > limit:
            self._raw.close()
        return data[:limit]

    def close(self) -> None:
        self._raw.close()

    def release_conn(self) -> None:
        self._raw.release_conn()


def crc32_base64(data: memoryview) -> str:
    """S3's ``x-amz-checksum-crc32`` of ``data`` (zlib releases the GIL for large buffers)."""
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def retry_delay(attempt: int, retry_after: str | None = None) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based): the server's ``Retry-After``
    (seconds form) up to ``RETRY_AFTER_CAP_SECONDS``, else full-jitter exponential back-off."""
    if retry_after is not None:
        value = retry_after.strip()
        if value.isascii() and value.isdigit():
            return min(float(value), RETRY_AFTER_CAP_SECONDS)
    return random.uniform(0, min(_BACKOFF_CAP_SECONDS, _BACKOFF_BASE_SECONDS * 2**attempt))


def discard(body: Any) -> None:
    """Drop a response whose body will not be read: its connection is closed, not reused."""
    try:
        body.close()
    finally:
        body.release_conn()


def _error_fields(payload: bytes) -> tuple[str | None, str | None, str | None]:
    try:
        root = ElementTree.fromstring(payload)
    except ElementTree.ParseError:
        return None, None, None
    return root.findtext("Code"), root.findtext("Message"), root.findtext("RequestId")


def _translate_client_error(error: ClientError, operation: str, bucket: str | None, key: str | None) -> S3Exception:
    response: Any = error.response
    details = response.get("Error", {})
    metadata = response.get("ResponseMetadata", {})
    status = metadata.get("HTTPStatusCode")
    code = details.get("Code")
    if code is not None and code.isdigit():  # HEAD errors carry only the status
        code = {"404": "NotFound", "403": "Forbidden", "412": "PreconditionFailed"}.get(code, code)
    return service_error(
        operation=operation,
        bucket=bucket,
        key=key,
        code=code,
        message=details.get("Message"),
        request_id=metadata.get("RequestId"),
        status=status,
    )


class Attempts(Exception):
    """The cause of an error reply to a request sent ``count`` times (see ``retry_attempts``)."""

    def __init__(self, count: int) -> None:
        super().__init__(f"sent {count} times")
        self.count = count


_LOST_ANSWER_ERRORS = (HTTPClientError, botocore.exceptions.ConnectionError, OSError, urllib3.exceptions.HTTPError)


def retry_attempts(error: S3Exception) -> int:
    """How many times the request of an error reply was retried: botocore's retry context
    (``ResponseMetadata.RetryAttempts``, on the ``ClientError`` we translated), or ours
    (``Attempts``). Each earlier attempt may have acted although its answer was lost."""
    cause = error.__cause__
    if isinstance(cause, ClientError):
        retries: int = cause.response.get("ResponseMetadata", {}).get("RetryAttempts", 0)
        return retries
    if isinstance(cause, Attempts):
        return cause.count - 1
    return 0


def answer_lost(error: S3Exception) -> bool:
    """Whether the last attempt of the request of ``error`` got no answer (it may have acted)."""
    return error.status is None and isinstance(error.__cause__, _LOST_ANSWER_ERRORS)


def may_have_published(error: S3Exception) -> bool:
    """Whether a failed PutObject or CompleteMultipartUpload may have published all the same: its
    last answer was lost, or a retry found the object (412, create-only) or the upload already
    completed (NoSuchUpload)."""
    if answer_lost(error):
        return True
    return error.code in ("PreconditionFailed", "NoSuchUpload") and retry_attempts(error) > 0


def error_of(operation: str, bucket: str, key: str, method: str, response: RawResponse) -> S3Exception:
    """The exception for an error ``response`` (its body read, its connection released)."""
    payload = response.body.read_bounded(_ERROR_BODY_BYTES) if method != "HEAD" else b""
    response.body.release_conn()
    code, message, body_request_id = _error_fields(payload)
    return service_error(
        operation=operation,
        bucket=bucket,
        key=key,
        code=code,
        message=message,
        request_id=response.request_id or body_request_id,
        status=response.status,
    )


def translate(error: Exception, operation: str, bucket: str | None, key: str | None) -> S3Exception:
    """Turn a botocore or connection error into the public exception."""
    if isinstance(error, S3Exception):
        return error
    if isinstance(error, ClientError):
        return _translate_client_error(error, operation, bucket, key)
    if isinstance(error, NoCredentialsError):
        return client_error("No signing credentials found", operation=operation, bucket=bucket, key=key)
    return client_error(f"{type(error).__name__}: {error}", operation=operation, bucket=bucket, key=key)


class Transport:
    """Everything that talks to S3 for one (region, endpoint, config, user agent) in one process."""

    def __init__(self, region: str, endpoint: str | None, config: S3ClientConfig, user_agent: str) -> None:
        self.region = region
        self.config = config
        self.user_agent = f"{user_agent} botocore/{botocore.__version__}"
        self.concurrency = config.concurrency
        session = botocore.session.Session(profile=config.profile)
        botocore_config = Config(
            region_name=region,
            signature_version=botocore.UNSIGNED if config.unsigned else None,
            retries={"total_max_attempts": config.max_attempts, "mode": "standard"},
            max_pool_connections=2 * self.concurrency + 8,
            s3={"addressing_style": "path" if config.force_path_style else "auto"},
            user_agent_extra=user_agent,
            connect_timeout=config.connect_timeout,
            read_timeout=config.read_timeout,
            tcp_keepalive=True,
        )
        self.client: Any
        try:
            self.client = session.create_client("s3", endpoint_url=endpoint, config=botocore_config)
        except ValueError as error:
            # botocore: "Invalid endpoint: <value>"; keep the upstream's wording.
            raise S3Exception(
                "Client error: Failed to construct request: Invalid S3 endpoint: endpoint could not be"
                f" resolved: Custom endpoint `{endpoint}` was not a valid URI ({error})"
            ) from error
        self._credentials = None if config.unsigned else session.get_credentials()
        # The client's own HTTP session: its pool, proxies, CA bundle and timeouts serve the data path too.
        self._http: Any = self.client._endpoint.http_session
        self.counters = Counters()
        ControlHooks(self.client, self.counters, config.retry_deadline)
        # Whether anything (moto's mock_aws, a stubber) may answer requests before they are sent.
        self._send_hooks = bool(self.client.meta.events._emitter._handlers.prefix_search("before-send.s3.GetObject"))
        self._endpoints: dict[str, BucketEndpoint] = {}
        self._pools: dict[tuple[str, str, int | None], ConnectionPool] = {}
        self._endpoints_lock = threading.Lock()
        self.executor = ThreadPoolExecutor(max_workers=2 * self.concurrency, thread_name_prefix="s3torch")
        self.request_payer = {"RequestPayer": "requester"} if config.requester_pays else {}
        # Upload integrity as boto3 does it: CRC32 on every PUT unless checksums are asked for only
        # "when_required" (AWS_REQUEST_CHECKSUM_CALCULATION, for stores that reject them).
        calculation = getattr(self.client.meta.config, "request_checksum_calculation", None) or "when_supported"
        self.upload_checksums = calculation == "when_supported"

    # ---- control path -------------------------------------------------------------------
    def call(self, operation: str, bucket: str | None, key: str | None, method: str, **params: Any) -> Any:
        """Run one botocore client operation, translating its errors."""
        try:
            return getattr(self.client, method)(**params)
        except (ClientError, BotoCoreError) as error:
            raise translate(error, operation, bucket, key) from error

    # ---- data path ---------------------------------------------------------------------
    def bucket_endpoint(self, bucket: str) -> BucketEndpoint:
        endpoint = self._endpoints.get(bucket)
        if endpoint is None:
            with self._endpoints_lock:
                endpoint = self._endpoints.get(bucket) or self._resolve(bucket)
                self._endpoints[bucket] = endpoint
        return endpoint

    def _resolve(self, bucket: str) -> BucketEndpoint:
        # botocore's endpoint rules and addressing run once here, for a placeholder key.
        express = bucket.endswith("--x-s3")
        try:
            url = (
                self.client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=60)
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
        if not self.config.unsigned and not express:
            scope = parse_qs(query).get("X-Amz-Credential", [""])[0].split("/")
            signer = SigV4Signer(region=scope[2] if len(scope) == 5 else self.region, service="s3")
        pool: Any = None
        target_base = parts.path
        direct = False
        if not express:
            http = self._http
            proxy_url = http._proxy_config.proxy_url_for(base_url)
            if proxy_url is None and getattr(http, "_cert_file", None) is None:
                pool, direct = self._direct_pool(parts.scheme, parts.hostname or "", parts.port), True
            else:
                # Through a proxy or with a client certificate: botocore's own urllib3 pool.
                pool = http._get_connection_manager(base_url, proxy_url).connection_from_url(base_url)
                http._setup_ssl_cert(pool, base_url, http._verify)
                target_base = http._get_request_target(base_url, proxy_url)
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
                connect_timeout=self.config.connect_timeout,
                read_timeout=self.config.read_timeout,
                ssl_context=self._ssl_context() if scheme == "https" else None,
                max_idle=2 * self.concurrency + 8,
                stall_window=self.config.stall_window,
                stall_min_rate=self.config.stall_min_rate,
            )
            self._pools[key] = pool
        return pool

    def _ssl_context(self) -> ssl.SSLContext:
        # The same trust as botocore's: AWS_CA_BUNDLE / ca_bundle / verify=False, else certifi.
        verify = self._http._verify
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

    def _signed_headers(
        self, endpoint: BucketEndpoint, method: str, path: str, query: str, headers: dict[str, str]
    ) -> dict[str, str]:
        headers["Host"] = endpoint.host
        headers["User-Agent"] = self.user_agent
        if self.config.requester_pays:
            headers["x-amz-request-payer"] = "requester"
        if endpoint.signer is not None:
            frozen = self._credentials.get_frozen_credentials() if self._credentials is not None else None
            if frozen is None or frozen.access_key is None:
                raise NoCredentialsError()
            endpoint.signer.sign(
                method,
                endpoint.host,
                path,
                query,
                headers,
                Credentials(frozen.access_key, frozen.secret_key or "", frozen.token),
            )
        return headers

    def send(
        self,
        operation: str,
        bucket: str,
        key: str,
        method: str,
        *,
        query: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        body: Any = None,
        ok: Callable[[int], bool] = lambda status: 200 <= status < 300,
        deadline: float | None = None,
    ) -> RawResponse:
        """Send one data-path request, retrying connection errors and retryable statuses up to
        ``max_attempts`` attempts, none started after ``deadline`` (``time.monotonic()``; default:
        ``retry_deadline`` from now). Waits the server's ``Retry-After`` (capped), else a
        full-jitter back-off. Returns the response with its body unread; raises ``S3Exception``
        for an error response, with the body parsed."""
        endpoint = self.bucket_endpoint(bucket)
        encoded_key = quote(key, safe="/~")
        path = endpoint.path_prefix + encoded_key
        query_string = canonical_query(query) if query else ""
        suffix = encoded_key + (f"?{query_string}" if query_string else "")
        started = time.monotonic()
        deadline = started + self.config.retry_deadline if deadline is None else deadline
        sent = body.nbytes if isinstance(body, memoryview) else len(body) if isinstance(body, bytes) else 0
        attempt = 0
        throttles = 0
        while True:
            attempt += 1
            try:
                request_headers = self._signed_headers(endpoint, method, path, query_string, dict(headers or {}))
                status, response_headers, raw, sends = self._send_http(
                    operation, endpoint, method, suffix, request_headers, body
                )
            except NoCredentialsError as error:
                failure = translate(error, operation, bucket, key)
                self.counters.operation(operation, bucket, key, failure, attempt, started, sent, throttles, True)
                raise failure from error
            except (BotoCoreError, urllib3.exceptions.HTTPError, OSError) as error:
                delay = retry_delay(attempt)
                if attempt >= self.config.max_attempts or time.monotonic() + delay >= deadline:
                    failure = client_error(
                        f"{type(error).__name__}: {error} (after {attempt} attempts in"
                        f" {time.monotonic() - started:.1f} s)",
                        operation=operation,
                        bucket=bucket,
                        key=key,
                    )
                    self.counters.operation(operation, bucket, key, failure, attempt, started, sent, throttles, True)
                    raise failure from error
                logger.debug("%s s3://%s/%s attempt %d failed: %s", operation, bucket, key, attempt, error)
                time.sleep(delay)
                continue
            request_id = response_headers.get("x-amz-request-id")
            if ok(status):
                self.counters.operation(operation, bucket, key, status, attempt, started, sent, throttles, False)
                # Sendings: one per earlier attempt, and the pool's transparent resend if any.
                return RawResponse(status, response_headers, raw, request_id, attempt - 1 + sends)
            failure = error_of(operation, bucket, key, method, RawResponse(status, response_headers, raw, request_id))
            code = failure.code
            throttles += status in THROTTLE_STATUS or code in THROTTLE_CODES
            if status in _RETRYABLE_STATUS or code in _RETRYABLE_CODES:
                retry_after = response_headers.get("Retry-After") if status in _RETRY_AFTER_STATUS else None
                delay = retry_delay(attempt, retry_after)
                if attempt < self.config.max_attempts and time.monotonic() + delay < deadline:
                    logger.debug(
                        "%s s3://%s/%s attempt %d: %s; retry in %.2f s", operation, bucket, key, attempt, failure, delay
                    )
                    time.sleep(delay)
                    continue
            self.counters.operation(operation, bucket, key, failure, attempt, started, sent, throttles, True)
            raise failure

    def _send_http(
        self,
        operation: str,
        endpoint: BucketEndpoint,
        method: str,
        suffix: str,
        headers: dict[str, str],
        body: Any,
    ) -> tuple[int, Any, Any, int]:
        """(status, headers, response with the body unread, times the request was sent)."""
        if self._send_hooks:
            # A before-send handler (moto's mock_aws, for one) answers the control path in place
            # of the network; let it answer the data path too, or mocked S3 is bypassed.
            probe_body = _ViewFile(body) if isinstance(body, memoryview) else body
            probe = AWSPreparedRequest(method, endpoint.base_url + suffix, headers, probe_body, True)  # type: ignore[arg-type]
            _, answer = self.client.meta.events.emit_until_response(f"before-send.s3.{operation}", request=probe)
            if answer is not None:
                return answer.status_code, answer.headers, _InMemoryBody(answer.raw.read()), 1
        target = endpoint.target_base + suffix
        if endpoint.direct:
            response = endpoint.pool.request(method, target, headers, body)
            return response.status, response.headers, response.body, response.sends
        # urllib3 does no retries here; ``send`` does.
        raw = endpoint.pool.urlopen(
            method,
            target,
            body=body,
            headers=headers,
            retries=False,
            redirect=False,
            assert_same_host=False,
            preload_content=False,
            decode_content=False,
        )
        return raw.status, raw.headers, _Urllib3Body(raw), 1

    def get_range(
        self, bucket: str, key: str, start: int, end: int | None, etag: str | None, *, deadline: float | None = None
    ) -> RawResponse:
        """GET bytes ``[start, end)`` (``end=None``: to the end), pinned to ``etag`` when given,
        no attempt after ``deadline`` (see ``send``). A 416 (range past the end) is returned,
        not raised: the stream reads it as EOF."""
        headers = {"Range": f"bytes={start}-{'' if end is None else end - 1}"}
        if etag is not None:
            headers["If-Match"] = etag
        if not self.bucket_endpoint(bucket).lean:
            return self._get_range_via_client(bucket, key, headers)
        return self.send(
            "GetObject",
            bucket,
            key,
            "GET",
            headers=headers,
            ok=lambda status: status in (200, 206, 416),
            deadline=deadline,
        )

    def _get_range_via_client(self, bucket: str, key: str, headers: dict[str, str]) -> RawResponse:
        params: dict[str, Any] = {"Bucket": bucket, "Key": key, "Range": headers["Range"], **self.request_payer}
        if "If-Match" in headers:
            params["IfMatch"] = headers["If-Match"]
        try:
            result = self.client.get_object(**params)
        except ClientError as error:
            if error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 416:
                return RawResponse(416, error.response["ResponseMetadata"].get("HTTPHeaders", {}), None, None)
            raise translate(error, "GetObject", bucket, key) from error
        except BotoCoreError as error:
            raise translate(error, "GetObject", bucket, key) from error
        metadata = result["ResponseMetadata"]
        return RawResponse(
            metadata["HTTPStatusCode"],
            metadata["HTTPHeaders"],
            _Urllib3Body(result["Body"]._raw_stream),
            metadata.get("RequestId"),
        )

    def put_bytes(
        self,
        bucket: str,
        key: str,
        body: memoryview,
        *,
        query: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        operation: str = "PutObject",
        published: Callable[[str | None], str | None] | None = None,
    ) -> tuple[str, str | None]:
        """PUT ``body`` (PutObject, or UploadPart with ``query``); returns the ETag and the CRC32
        checksum S3 verified (base64), or None when checksums are off.

        ``published`` is for a PutObject whose failure leaves it unknown whether it published
        (``may_have_published``): ``published(checksum)`` returns the ETag of the object at the
        key if it is the one sent, and the PUT then succeeds; otherwise the failure is raised."""
        checksum = crc32_base64(body) if self.upload_checksums else None
        try:
            return self._put(bucket, key, body, query, headers, operation, checksum), checksum
        except S3Exception as failure:
            if published is None or not may_have_published(failure):
                raise
            etag = published(checksum)
            if etag is None:
                raise
            return etag, checksum

    def _put(
        self,
        bucket: str,
        key: str,
        body: memoryview,
        query: dict[str, str] | None,
        headers: dict[str, str] | None,
        operation: str,
        checksum: str | None,
    ) -> str:
        if not self.bucket_endpoint(bucket).lean:
            return self._put_via_client(bucket, key, body, query, headers, operation, checksum)
        request_headers = {"Content-Length": str(body.nbytes), **(headers or {})}
        if checksum is not None:
            request_headers["x-amz-sdk-checksum-algorithm"] = "CRC32"
            request_headers["x-amz-checksum-crc32"] = checksum
        create_only = "If-None-Match" in request_headers
        response = self.send(
            operation,
            bucket,
            key,
            "PUT",
            query=query,
            headers=request_headers,
            body=body,
            ok=lambda status: 200 <= status < 300 or (create_only and status == 412),
        )
        if response.status == 412:  # said here, where the number of attempts is known
            raise error_of(operation, bucket, key, "PUT", response) from Attempts(response.attempts)
        response.body.read_bounded(_ERROR_BODY_BYTES)  # S3 sends none; anything else is not kept
        response.body.release_conn()
        etag: str = response.headers.get("ETag", "")
        return etag

    def _put_via_client(
        self,
        bucket: str,
        key: str,
        body: memoryview,
        query: dict[str, str] | None,
        headers: dict[str, str] | None,
        operation: str,
        checksum: str | None,
    ) -> str:
        params: dict[str, Any] = {"Bucket": bucket, "Key": key, "Body": body.tobytes(), **self.request_payer}
        if checksum is not None:
            params["ChecksumCRC32"] = checksum
        if query:
            params["PartNumber"] = int(query["partNumber"])
            params["UploadId"] = query["uploadId"]
            result = self.call(operation, bucket, key, "upload_part", **params)
        else:
            if headers and "x-amz-storage-class" in headers:
                params["StorageClass"] = headers["x-amz-storage-class"]
            if headers and "If-None-Match" in headers:
                params["IfNoneMatch"] = headers["If-None-Match"]
            result = self.call(operation, bucket, key, "put_object", **params)
        etag: str = result["ETag"]
        return etag

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
        for pool in self._pools.values():
            pool.close()
        self.client.close()


# ---- one transport per process and configuration -----------------------------------------

_TransportKey = tuple[str, "str | None", S3ClientConfig, str]
_transports: dict[_TransportKey, Transport] = {}
_transports_lock = threading.Lock()
_transports_pid = os.getpid()


def _forget_after_fork() -> None:
    # The parent's sockets, locks and threads mean nothing in the child: start empty.
    global _transports, _transports_lock, _transports_pid
    _transports = {}
    _transports_lock = threading.Lock()
    _transports_pid = os.getpid()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


def get_transport(region: str, endpoint: str | None, config: S3ClientConfig, user_agent: str) -> Transport:
    """The process's transport for this configuration, built on first use."""
    if os.getpid() != _transports_pid:  # forked without the hook (or by a non-Python fork)
        _forget_after_fork()
    key: _TransportKey = (region, endpoint, config, user_agent)
    transport = _transports.get(key)
    if transport is None:
        with _transports_lock:
            transport = _transports.get(key)
            if transport is None:
                transport = Transport(region, endpoint, config, user_agent)
                _transports[key] = transport
    return transport
