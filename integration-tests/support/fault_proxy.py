"""A real TCP proxy in front of an S3 server that injects faults into chosen requests.

It speaks just enough HTTP/1.1 to find request and response boundaries on keep-alive
connections, records every request it sees (method, target, headers), and applies the first
matching ``Rule`` to each request: answer with an S3 error instead of forwarding, close the
connection without an answer, forward the request and then lose the server's answer (the
server acted, the client never learns it), cut the response after some body bytes, stall the
answer until the client gives up, trickle the body, remove request headers before forwarding,
or run a hook (for example: overwrite the object) before forwarding. Rules signal ``fired``
events, so tests wait on events instead of sleeping.
"""

from __future__ import annotations

import contextlib
import itertools
import selectors
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO
from urllib.parse import parse_qs, unquote, urlsplit

from s3torch_test_support.local_tcp import (
    ConnectionClosed,
    LocalTCPServer,
    read_exact,
    read_request_head,
)

_CHUNK = 64 * 1024


@dataclass
class RecordedRequest:
    """One request as the proxy received it. Header names are lower-cased."""

    method: str
    target: str
    headers: dict[str, str]
    body_length: int
    connection: int = -1  # serial number of the client connection it came on (``FaultProxy.connections``)
    status: int | None = None  # status of the server's (or the proxy's) answer, once known
    response_lost: bool = False  # the server answered but the proxy closed instead of relaying
    client_gave_up: bool | None = None  # after a stall or trickle: the client closed first (True)
    fault_ended: threading.Event = field(default_factory=threading.Event)  # a stall or trickle is over

    @property
    def path(self) -> str:
        return unquote(urlsplit(self.target).path)

    @property
    def query(self) -> dict[str, str]:
        return {
            name: values[0] for name, values in parse_qs(urlsplit(self.target).query, keep_blank_values=True).items()
        }

    @property
    def operation(self) -> str:
        """The S3 operation of this request (path-style addressing), e.g. ``"UploadPart"``."""
        on_object = self.path.strip("/").count("/") >= 1
        marker = next((name for name in _OPERATION_MARKERS if name in self.query or name in self.headers), "")
        return _OPERATIONS.get((self.method, on_object, marker), self.method)

    def is_object(self, bucket: str, key: str) -> bool:
        """A request for ``s3://bucket/key`` (path-style addressing)."""
        return self.path == f"/{bucket}/{key}"


# (method, addresses an object, the query parameter or header that tells operations apart): name.
_OPERATION_MARKERS = ("partNumber", "uploadId", "uploads", "list-type", "delete", "x-amz-copy-source")
_OPERATIONS = {
    ("GET", True, ""): "GetObject",
    ("GET", True, "uploadId"): "ListParts",
    ("GET", False, "list-type"): "ListObjectsV2",
    ("GET", False, ""): "ListObjects",
    ("GET", False, "uploads"): "ListMultipartUploads",
    ("HEAD", True, ""): "HeadObject",
    ("HEAD", False, ""): "HeadBucket",
    ("PUT", True, ""): "PutObject",
    ("PUT", True, "partNumber"): "UploadPart",
    ("PUT", True, "x-amz-copy-source"): "CopyObject",
    ("POST", True, "uploads"): "CreateMultipartUpload",
    ("POST", True, "uploadId"): "CompleteMultipartUpload",
    ("POST", False, "delete"): "DeleteObjects",
    ("DELETE", True, ""): "DeleteObject",
    ("DELETE", True, "uploadId"): "AbortMultipartUpload",
}


@dataclass
class Rule:
    """What to do with requests that ``match``; applies ``times`` times (``None``: always).

    At most one of ``respond``, ``drop``, ``lose_response`` and ``cut_after`` is set; ``before``
    runs first in any case. ``respond`` answers with that HTTP status and an S3 error document of
    ``code``. ``drop`` closes the client connection without forwarding (the server never sees
    the request). ``lose_response`` forwards the request, reads the server's whole answer and
    then closes the client connection without relaying any of it (a response lost after the
    server acted); ``fired`` is set only once the server has answered.
    ``hold`` stalls the request until that event is set (then it is forwarded).
    ``strip_headers`` names request headers (any case) removed before the request is forwarded,
    so the server answers as if the client had not sent them (``("range",)``: a server or
    proxy in the way that ignores ``Range``).
    ``retry_after`` adds that ``Retry-After`` header to a ``respond`` answer. ``interim`` sends
    an interim answer with that status (``100``, ``103``) before the server's answer.

    Faults on the server's answer (the request is forwarded; at most one of them):
    ``stall_head`` withholds the response head, ``stall_after`` sends the head and that many body
    bytes; either then sends nothing more until the client closes the connection (a stalled
    server: the client's timeouts must end it) or ``stall_limit`` seconds pass. ``trickle``
    sends the body at that many bytes per second, until the body ends, the client closes, or
    ``stall_limit`` passes (then the connection is cut). ``RecordedRequest.client_gave_up``
    says which side ended a stall or trickle (``None``: a trickled body was delivered whole), and
    ``RecordedRequest.fault_ended`` is set once it is over.
    """

    match: Callable[[RecordedRequest], bool]
    respond: int | None = None
    code: str = "InternalError"
    drop: bool = False
    lose_response: bool = False
    cut_after: int | None = None
    before: Callable[[RecordedRequest], None] | None = None
    hold: threading.Event | None = None
    strip_headers: tuple[str, ...] = ()
    retry_after: str | None = None
    interim: int | None = None
    stall_head: bool = False
    stall_after: int | None = None
    trickle: int | None = None
    stall_limit: float = 60.0
    times: int | None = 1
    hits: int = 0
    fired: threading.Event = field(default_factory=threading.Event)

    def _take(self) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        self.hits += 1
        return True


def object_gets(bucket: str, key: str, nth: int | None = None) -> Callable[[RecordedRequest], bool]:
    """Matches GETs of ``s3://bucket/key``; with ``nth``, only the nth one the proxy receives."""
    seen = itertools.count(1)

    def match(request: RecordedRequest) -> bool:
        if request.method != "GET" or not request.is_object(bucket, key):
            return False
        return nth is None or next(seen) == nth

    return match


def part_uploads(part_number: int) -> Callable[[RecordedRequest], bool]:
    """Matches UploadPart requests of part ``part_number``."""
    return lambda request: request.method == "PUT" and request.query.get("partNumber") == str(part_number)


_INTERIM_ANSWERS = {
    100: b"HTTP/1.1 100 Continue\r\n\r\n",
    103: b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\n\r\n",
}


class _Discard:
    """Stands in for the client socket when a response is to be lost: swallows what is sent."""

    def sendall(self, data: bytes) -> None:
        del data


def _read_chunked(stream: BinaryIO) -> bytes:
    """A chunked body, returned still chunk-encoded (trailers included)."""
    out = bytearray()
    while True:
        size_line = stream.readline()
        if not size_line.endswith(b"\r\n"):
            raise ConnectionClosed
        out += size_line
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            while True:
                trailer = stream.readline()
                if not trailer.endswith(b"\r\n"):
                    raise ConnectionClosed
                out += trailer
                if trailer == b"\r\n":
                    return bytes(out)
        out += read_exact(stream, size + 2)


def _encode_head(first: str, headers: list[tuple[str, str]]) -> bytes:
    lines = [first, *(f"{name}: {value}" for name, value in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def error_response(status: int, code: str, *, head_only: bool, close: bool, retry_after: str | None = None) -> bytes:
    body = (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>'
        + code.encode()
        + b"</Code><Message>injected by the fault proxy</Message><RequestId>fault-proxy</RequestId></Error>"
    )
    headers = [
        ("Content-Type", "application/xml"),
        ("Content-Length", str(len(body))),
        ("x-amz-request-id", "fault-proxy"),
    ]
    if close:
        headers.append(("Connection", "close"))
    if retry_after is not None:
        headers.append(("Retry-After", retry_after))
    return _encode_head(f"HTTP/1.1 {status} Injected", headers) + (b"" if head_only else body)


class FaultProxy(LocalTCPServer[RecordedRequest]):
    """A threaded TCP proxy on 127.0.0.1 in front of ``upstream`` (host, port).

    Args:
        upstream: Address of the S3 server.
        host_header: When set, forwarded requests carry this ``Host`` instead of the client's
            (moto routes unsigned requests by host name).
    """

    def __init__(self, upstream: tuple[str, int], *, host_header: str | None = None) -> None:
        super().__init__("fault-proxy")
        self.upstream = upstream
        self.host_header = host_header
        self.url = f"http://127.0.0.1:{self.port}"
        self._rules: list[Rule] = []

    # ---- control ----------------------------------------------------------------------
    def add(self, rule: Rule) -> Rule:
        with self._lock:
            self._rules.append(rule)
        return rule

    def reset(self) -> None:
        """Forget rules and recorded requests (connections stay open)."""
        with self._lock:
            self._rules.clear()
            self._requests.clear()

    def requests_for(self, bucket: str) -> list[RecordedRequest]:
        """The recorded requests addressed to ``bucket`` (path-style)."""
        return [r for r in self.requests if r.path == f"/{bucket}" or r.path.startswith(f"/{bucket}/")]

    # ---- plumbing ---------------------------------------------------------------------
    def _pick(self, request: RecordedRequest) -> Rule | None:
        chosen = None
        with self._lock:
            self._record(request)
            for rule in self._rules:
                # Every rule sees every request, so counting predicates (object_gets(nth=...))
                # count the requests the proxy received, whichever rule took them.
                if rule.match(request) and chosen is None and rule._take():
                    chosen = rule
        return chosen

    def serve_connection(self, client: socket.socket, number: int) -> None:
        upstream: socket.socket | None = None
        client_in = client.makefile("rb")
        upstream_in: BinaryIO | None = None
        try:
            while True:
                head = read_request_head(client_in)
                if head is None:
                    return
                first, headers = head
                method, target, _ = first.split(" ", 2)
                if (_header(headers, "expect") or "").lower() == "100-continue":
                    client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                    headers = [(k, v) for k, v in headers if k.lower() != "expect"]
                length = _header(headers, "content-length")
                if length is not None:
                    body = read_exact(client_in, int(length))
                elif (_header(headers, "transfer-encoding") or "").lower() == "chunked":
                    body = _read_chunked(client_in)
                else:
                    body = b""
                request = RecordedRequest(method, target, {k.lower(): v for k, v in headers}, len(body), number)
                rule = self._pick(request)
                if rule is not None:
                    if rule.before is not None:
                        rule.before(request)
                    if not rule.lose_response:
                        rule.fired.set()
                    if rule.hold is not None:
                        rule.hold.wait(timeout=60)
                    if rule.drop:
                        return
                    if rule.respond is not None:
                        request.status = rule.respond
                        client.sendall(
                            error_response(
                                rule.respond,
                                rule.code,
                                head_only=method == "HEAD",
                                close=False,
                                retry_after=rule.retry_after,
                            )
                        )
                        continue
                if upstream is None:
                    upstream = socket.create_connection(self.upstream)
                    self.track(upstream)
                    upstream_in = upstream.makefile("rb")
                assert upstream_in is not None
                if rule is not None and rule.strip_headers:
                    stripped = {name.lower() for name in rule.strip_headers}
                    headers = [(k, v) for k, v in headers if k.lower() not in stripped]
                if self.host_header is not None:
                    headers = [(k, self.host_header if k.lower() == "host" else v) for k, v in headers]
                upstream.sendall(_encode_head(first, headers) + body)
                if rule is not None and rule.lose_response:
                    self._relay(method, upstream_in, _Discard(), request, None)
                    request.response_lost = True
                    rule.fired.set()
                    return  # closes the client connection without a byte of the answer
                keep_client, keep_upstream = self._relay(method, upstream_in, client, request, rule)
                if not keep_client:
                    return
                if not keep_upstream:  # the server closes after each response: reconnect next time
                    upstream_in.close()
                    self.forget(upstream)
                    upstream, upstream_in = None, None
        except (ConnectionClosed, OSError, ValueError):
            return
        finally:
            for stream in (client_in, upstream_in):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
            if upstream is not None:
                self.forget(upstream)

    def _relay(
        self,
        method: str,
        upstream_in: BinaryIO,
        client: socket.socket | _Discard,
        request: RecordedRequest,
        rule: Rule | None,
    ) -> tuple[bool, bool]:
        """Relay one response. Returns whether the client and the upstream connections stay open.

        The client connection is kept alive whenever the body is delimited, even when the
        server closes its side after each response (moto does): clients then see keep-alive
        connections, as they do with S3.
        """
        head = read_request_head(upstream_in)
        if head is None:
            raise ConnectionClosed
        first, headers = head
        status = int(first.split(" ", 2)[1])
        request.status = status
        upstream_open = (_header(headers, "connection") or "").lower() != "close"
        length = _header(headers, "content-length")
        chunked = (_header(headers, "transfer-encoding") or "").lower() == "chunked"
        bodiless = method == "HEAD" or status in (204, 304) or 100 <= status < 200
        if bodiless or length is not None or chunked:
            headers = [(k, v) for k, v in headers if k.lower() != "connection"]
        if rule is not None and rule.stall_head:
            self._stall(client, request, rule.stall_limit)
            return False, False
        if rule is not None and rule.interim is not None:
            client.sendall(_INTERIM_ANSWERS[rule.interim])
        client.sendall(_encode_head(first, headers))
        if bodiless:
            return True, upstream_open
        if length is not None:
            return self._relay_sized(upstream_in, client, request, rule, int(length), upstream_open)
        if chunked:
            client.sendall(_read_chunked(upstream_in))
            return True, upstream_open
        while chunk := upstream_in.read(_CHUNK):  # the body ends when the server closes
            client.sendall(chunk)
        return False, False

    def _relay_sized(
        self,
        upstream_in: BinaryIO,
        client: socket.socket | _Discard,
        request: RecordedRequest,
        rule: Rule | None,
        remaining: int,
        upstream_open: bool,
    ) -> tuple[bool, bool]:
        """Relay a body of ``remaining`` bytes, applying the rule's cut, stall or trickle."""
        # Body bytes after which the answer stops: cut (close) or stalled (then closed).
        stop_at = None if rule is None else rule.cut_after if rule.cut_after is not None else rule.stall_after
        pacer = None
        if rule is not None and rule.trickle:
            pacer = _Trickle(self, client, request, rule.trickle, rule.stall_limit)
        sent = 0
        while remaining:
            chunk = upstream_in.read(min(_CHUNK, remaining))
            if not chunk:
                raise ConnectionClosed
            remaining -= len(chunk)
            if stop_at is not None and sent + len(chunk) >= stop_at:
                client.sendall(chunk[: stop_at - sent])
                if rule is not None and rule.stall_after is not None:
                    self._stall(client, request, rule.stall_limit)
                return False, False  # cut, or stalled until the client left: close mid-body
            sent += len(chunk)
            if pacer is None:
                client.sendall(chunk)
            elif not pacer.send(chunk):
                request.fault_ended.set()
                return False, False
        request.fault_ended.set()
        return stop_at is None, upstream_open and stop_at is None

    def _stall(self, client: socket.socket | _Discard, request: RecordedRequest, limit: float) -> None:
        """Send nothing until the client closes the connection or ``limit`` seconds pass."""
        request.client_gave_up = self._client_closed(client, limit)
        request.fault_ended.set()

    def _client_closed(self, client: socket.socket | _Discard, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the client to close its side; True if it did."""
        if not isinstance(client, socket.socket):
            return False
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(client, selectors.EVENT_READ)
            while not self.stopping.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                if selector.select(min(left, 0.5)):
                    try:
                        return not client.recv(1, socket.MSG_PEEK)
                    except OSError:  # reset by the client
                        return True
        return False


class _Trickle:
    """Sends a body at ``rate`` bytes per second, in tenths of a second, while watching whether
    the client gives up; the trickle ends (connection cut) after ``limit`` seconds."""

    def __init__(
        self, proxy: FaultProxy, client: socket.socket | _Discard, request: RecordedRequest, rate: int, limit: float
    ) -> None:
        self._proxy, self._client, self._request = proxy, client, request
        self._piece = max(1, rate // 10)
        self._deadline = time.monotonic() + limit

    def send(self, chunk: bytes) -> bool:
        """Send ``chunk`` slowly; False when the trickle ended first (client gone or limit reached)."""
        view = memoryview(chunk)
        for offset in range(0, len(view), self._piece):
            if time.monotonic() >= self._deadline:
                self._request.client_gave_up = False
                return False
            try:
                self._client.sendall(view[offset : offset + self._piece])
            except OSError:
                self._request.client_gave_up = True
                return False
            # The pause between pieces doubles as the watch for the client closing.
            if self._proxy._client_closed(self._client, 0.1):
                self._request.client_gave_up = True
                return False
        return True
