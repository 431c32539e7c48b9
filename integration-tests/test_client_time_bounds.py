"""Every wait of a request is bounded: a server that accepts and never answers fails the request
with ``S3Exception`` once ``retry_deadline`` has passed (data path and control path), and a
``Retry-After`` on a 503 is waited for before the retry. Against the scripted raw-socket server."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from s3torch.client import S3Client, S3ClientConfig, S3Exception, _transport
from s3torch_test_support.scripted_server import Exchange, ObjectStore, ScriptedServer, s3_error

BUCKET = "scripted-bucket"
KEY = "object.bin"
DATA = b"0123456789" * 1000


def client_of(server: ScriptedServer, **settings: Any) -> S3Client:
    config = S3ClientConfig(force_path_style=True, **settings)
    return S3Client("us-east-1", endpoint=server.endpoint, s3client_config=config)


@pytest.fixture
def silent() -> Iterator[ScriptedServer]:
    """A server that accepts every connection, reads the request and never answers."""
    released = threading.Event()

    def never_answer(exchange: Exchange) -> None:
        released.wait(60)
        exchange.close()

    with ScriptedServer(never_answer) as server:
        yield server
        released.set()


# Small timeouts: each attempt waits 0.4 s for an answer, none starts 1.5 s after the first.
# max_attempts is large so that without the deadline the request would take 80 s: the bound
# asserted below (a quarter of that) then holds with room on a loaded machine (8 s seen there).
BOUNDS = {"connect_timeout": 1.0, "read_timeout": 0.4, "retry_deadline": 1.5, "max_attempts": 200}
#: What max_attempts x read_timeout would cost without the deadline.
UNBOUNDED = BOUNDS["max_attempts"] * BOUNDS["read_timeout"]


def attempts_in(error: S3Exception, pattern: str) -> int:
    """The attempts the client says it made, from its error message."""
    found = re.search(pattern, str(error))
    assert found is not None, str(error)
    return int(found.group(1))


def assert_server_saw(server: ScriptedServer, attempts: int) -> None:
    """The server received exactly the client's ``attempts``. A server thread records a request
    only once it has read it, which on a loaded machine can be after the client gave up on it:
    wait for the count the client gives, then check that it is not more."""
    assert len(server.wait_for_requests(attempts)) == attempts


def test_a_silent_server_fails_a_get_within_the_deadline(silent: ScriptedServer) -> None:
    client = client_of(silent, **BOUNDS)
    started = time.monotonic()
    with pytest.raises(S3Exception, match=r"TimeoutError.*after (\d+) attempts") as caught:
        client.get_object_stream(BUCKET, KEY).readinto(bytearray(100))
    elapsed = time.monotonic() - started
    attempts = attempts_in(caught.value, r"after (\d+) attempts")
    # Attempts start at 0, ~0.4, ~0.8, ~1.2 s (plus back-off): the deadline, not max_attempts, ends them.
    assert 2 <= attempts <= 5, attempts
    assert_server_saw(silent, attempts)
    assert elapsed < UNBOUNDED / 4, elapsed
    assert client.metrics().errors == 1 and client.metrics().retries == attempts - 1


def test_a_silent_server_fails_a_control_path_call_within_the_deadline(silent: ScriptedServer) -> None:
    client = client_of(silent, **BOUNDS)
    started = time.monotonic()
    with pytest.raises(S3Exception, match=r"retry_deadline=1\.5 s.*last failure: ReadTimeoutError") as caught:
        client.head_object(BUCKET, KEY)
    elapsed = time.monotonic() - started
    attempts = attempts_in(caught.value, r"gave up after (\d+) attempts")
    assert 2 <= attempts < BOUNDS["max_attempts"], attempts
    assert_server_saw(silent, attempts)
    assert elapsed < UNBOUNDED / 4, elapsed
    metrics = client.metrics()
    assert (metrics.requests.get("HeadObject"), metrics.errors, metrics.attempts) == (1, 1, attempts)


class ThrottleOnce:
    """Answers the first GET with 503 SlowDown (and ``Retry-After`` when given), then serves the
    object; records when each request arrived."""

    def __init__(self, retry_after: str | None) -> None:
        self.store = ObjectStore({f"/{BUCKET}/{KEY}": DATA})
        self.retry_after = retry_after
        self.arrivals: list[float] = []

    def __call__(self, exchange: Exchange) -> None:
        self.arrivals.append(time.monotonic())
        if len(self.arrivals) == 1:
            extra = {"Retry-After": self.retry_after} if self.retry_after is not None else {}
            exchange.send(s3_error(503, "SlowDown", extra=extra))
            return
        self.store.serve(exchange)


def test_retry_after_on_503_is_waited_for() -> None:
    handler = ThrottleOnce("1")
    with ScriptedServer(handler) as server:
        client = client_of(server)
        assert b"".join(client.get_object_stream(BUCKET, KEY)) == DATA
    assert len(handler.arrivals) == 2
    assert handler.arrivals[1] - handler.arrivals[0] >= 1.0
    metrics = client.metrics()
    assert (metrics.throttles, metrics.retries, metrics.errors) == (1, 1, 0)


class RecordedSleeps:
    """Stands in for the ``time`` module of the transport: records each wait its retries ask for
    (then waits it), so a test checks the back-off chosen, not a wall clock a busy machine stretches."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        time.sleep(seconds)

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def test_without_retry_after_the_back_off_is_short(monkeypatch: pytest.MonkeyPatch) -> None:
    sleeps = RecordedSleeps()
    monkeypatch.setattr(_transport, "time", sleeps)
    handler = ThrottleOnce(None)
    with ScriptedServer(handler) as server:
        client = client_of(server)
        assert b"".join(client.get_object_stream(BUCKET, KEY)) == DATA
    assert len(handler.arrivals) == 2
    assert len(sleeps.waits) == 1, sleeps.waits
    assert 0 <= sleeps.waits[0] <= 0.1, sleeps.waits  # full jitter up to 0.1 s before retry 1
    metrics = client.metrics()
    assert (metrics.throttles, metrics.retries, metrics.errors) == (1, 1, 0)


def test_a_retry_after_beyond_the_deadline_fails_at_once() -> None:
    handler = ThrottleOnce("15")
    with ScriptedServer(handler) as server:
        client = client_of(server, retry_deadline=5.0)
        with pytest.raises(S3Exception) as caught:
            client.get_object_stream(BUCKET, KEY).readinto(bytearray(10))
    assert len(handler.arrivals) == 1  # no attempt could start before the deadline
    assert (caught.value.code, caught.value.status) == ("SlowDown", 503)
