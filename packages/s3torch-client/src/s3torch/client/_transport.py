"""The S3 transport of one configuration: sends control-path calls and data-path requests.

Two paths share one botocore client and its HTTP session:

* the control path (list, head, delete, copy, create/complete/abort multipart) is botocore's
  client as it is, with its retries, parsing and error handling;
* the data path (GETs of objects and parts, PutObject, UploadPart) is sent lean: the request is
  built and signed here (``_sigv4``), with botocore's credentials, and goes out on our own HTTP
  core or botocore's pool (``_endpoint``), skipping the per-request client pipeline that costs
  about 1 ms of CPU; it is retried here (``_retry``). S3 Express buckets take botocore's
  client instead (``_express``).

Every request carries the User-Agent of the component that sends it, so one transport serves a
whole process (``_registry``); its thread pool comes from ``_resources``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import botocore
import urllib3.exceptions
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from . import _resources
from ._before_send import BeforeSend
from ._body import RawResponse
from ._botocore_session import new_session
from ._checksum import ALGORITHM, HEADER, checksum_base64
from ._config import S3ClientConfig
from ._control_hooks import THROTTLE_CODES, THROTTLE_STATUS, ControlHooks, current_user_agent
from ._endpoint import BucketEndpoint, Endpoints, idle_connections
from ._exceptions import ERROR_BODY_BYTES, S3Exception, client_error, error_of, translate
from ._express import PutRequest, get_range_via_client, put_via_client
from ._metrics import Counters
from ._part_buffers import PartBuffers
from ._retry import Attempts, may_have_published, retry_after, retry_delay, retryable
from ._sigv4 import Credentials, canonical_query
from ._urllib3_compat import Urllib3Body

__all__ = ["Transport"]

logger = logging.getLogger(__name__)


class Transport:
    """Everything that talks to S3 for one (region, endpoint, config) in one process."""

    def __init__(self, region: str, endpoint: str | None, config: S3ClientConfig) -> None:
        self.region = region
        self.config = config
        self.concurrency = config.concurrency
        session = new_session(config.profile)
        botocore_config = Config(
            region_name=region,
            signature_version=botocore.UNSIGNED if config.unsigned else None,
            retries={"total_max_attempts": config.max_attempts, "mode": "standard"},
            max_pool_connections=idle_connections(config),
            s3={"addressing_style": "path" if config.force_path_style else "auto"},
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
        self.counters = Counters()
        ControlHooks(self.client, self.counters, config.retry_deadline)
        self._before_send = BeforeSend(self.client)
        self.endpoints = Endpoints(self.client, region, config)
        self.executor = _resources.shared_executor(_resources.ExecutorRole.PARTS, config.concurrency)
        self.request_payer = {"RequestPayer": "requester"} if config.requester_pays else {}
        # Upload part buffers, reused across uploads (``_part_buffers``).
        self.part_buffers = PartBuffers(config.concurrency * config.part_size)
        # Upload integrity as boto3 does it, with CRC32C (``_checksum``): a checksum on every PUT
        # unless checksums are asked for only "when_required" (AWS_REQUEST_CHECKSUM_CALCULATION, for
        # stores that reject them).
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
        return self.endpoints.of(bucket)

    def _signed_headers(
        self, endpoint: BucketEndpoint, method: str, path: str, query: str, headers: dict[str, str]
    ) -> dict[str, str]:
        headers["Host"] = endpoint.host
        headers["User-Agent"] = f"{current_user_agent()} botocore/{botocore.__version__}"
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
        """Send one data-path request (as ``current_user_agent()``), retrying connection errors
        and retryable statuses up to ``max_attempts`` attempts, none started after ``deadline``
        (``time.monotonic()``; default: ``retry_deadline`` from now). Waits the server's
        ``Retry-After`` (capped), else a full-jitter back-off. Returns the response with its body
        unread; raises ``S3Exception`` for an error response, with the body parsed."""
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
            if retryable(status, code):
                delay = retry_delay(attempt, retry_after(status, response_headers))
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
        if self._before_send.active:
            answer = self._before_send.answer(operation, method, endpoint.base_url + suffix, headers, body)
            if answer is not None:
                return (*answer, 1)
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
        return raw.status, raw.headers, Urllib3Body(raw), 1

    def get_range(
        self,
        bucket: str,
        key: str,
        start: int,
        end: int | None,
        etag: str | None,
        *,
        deadline: float | None = None,
    ) -> RawResponse:
        """GET bytes ``[start, end)`` (``end=None``: to the end), pinned to ``etag`` when given,
        no attempt after ``deadline`` (see ``send``). A 416 (range past the end) is returned,
        not raised: the stream reads it as EOF."""
        headers = {"Range": f"bytes={start}-{'' if end is None else end - 1}"}
        if etag is not None:
            headers["If-Match"] = etag
        if not self.bucket_endpoint(bucket).lean:
            return get_range_via_client(self, bucket, key, headers)
        return self.send(
            "GetObject",
            bucket,
            key,
            "GET",
            headers=headers,
            ok=lambda status: status in (200, 206, 416),
            deadline=deadline,
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
        """PUT ``body`` (PutObject, or UploadPart with ``query``); returns the ETag and the CRC32C
        checksum S3 verified (base64), or None when checksums are off.

        ``published`` is for a PutObject whose failure leaves it unknown whether it published
        (``may_have_published``): ``published(checksum)`` returns the ETag of the object at the
        key if it is the one sent, and the PUT then succeeds; otherwise the failure is raised."""
        checksum = checksum_base64(body) if self.upload_checksums else None
        try:
            return self._put(PutRequest(bucket, key, body, query, headers, operation, checksum)), checksum
        except S3Exception as failure:
            if published is None or not may_have_published(failure):
                raise
            etag = published(checksum)
            if etag is None:
                raise
            return etag, checksum

    def _put(self, request: PutRequest) -> str:
        if not self.bucket_endpoint(request.bucket).lean:
            return put_via_client(self, request)
        bucket, key, body, query, headers, operation, checksum = request
        request_headers = {"Content-Length": str(body.nbytes), **(headers or {})}
        if checksum is not None:
            request_headers["x-amz-sdk-checksum-algorithm"] = ALGORITHM
            request_headers[HEADER] = checksum
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
        if response.body is not None:  # only a 416 through botocore's client has none
            response.body.read_bounded(ERROR_BODY_BYTES)  # S3 sends none; anything else is not kept
            response.body.release_conn()
        etag: str = response.headers.get("ETag", "")
        return etag

    def close(self) -> None:
        """Close the idle connections of our pools; the transport stays usable (a later request
        opens new ones). botocore's pools are left to it: closing them would fail a request a
        daemon thread still makes through them. The thread pool is ``_resources``'s. Idle upload
        buffers are dropped."""
        self.endpoints.close()
        self.part_buffers.clear()
