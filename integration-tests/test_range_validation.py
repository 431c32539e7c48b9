"""Every answer to a data-path GET is checked against its request: an answer that does not carry
exactly the bytes asked for raises ``S3Exception`` and hands no wrong byte to anyone.

Two servers bend the answers. The scripted raw-socket server sends what no S3 sends (``200`` to
a ranged GET on a stream's first request, a part, the remainder or a resume; ``Content-Range``
with an unknown total, a wrong start or total, malformed; a ``Content-Length`` that is not the
span). The fault proxy in front of the moto server strips ``Range`` from requests, as a server
or a proxy that ignores it would, under every reader and a DCP load.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch.distributed.checkpoint as dcp
from support import PART, RecordedRequest, Rule, S3TestEnv, force_get_mode, payload
from support.dcp_data import DCP_READERS, layered_state_dict, quiet_dcp, storage_kwargs, uri, zeroed
from torch.distributed.checkpoint.api import CheckpointException

from s3torch.client import GetObjectStream, S3Client, S3ClientConfig, S3Exception
from s3torch.dcp import S3StorageReader, S3StorageWriter
from s3torch.readers import S3ReaderConstructor
from s3torch_test_support.scripted_server import Exchange, ObjectStore, Request, ScriptedServer, response

BUCKET = "scripted-bucket"
KEY = "data.bin"
SIZE = 2 * PART + 345_678  # three parts, the last one short
DATA = payload(SIZE, seed=21)
READERS = {
    "sequential": S3ReaderConstructor.sequential(),
    "range_based": S3ReaderConstructor.range_based(),
    "range_based-unbuffered": S3ReaderConstructor.range_based(0),
}

Bend = Callable[[Request], bytes]


def read_until_error(stream: GetObjectStream) -> tuple[bytes, S3Exception]:
    """What the stream returned before it raised, and the error (the test fails if it never does)."""
    out = bytearray()
    buffer = bytearray(1_000_003)
    with pytest.raises(S3Exception) as caught:
        while count := stream.readinto(buffer):
            out += buffer[:count]
    stream.close()
    return bytes(out), caught.value


def range_of(request: Request) -> tuple[int, int | None]:
    asked = request.range
    assert asked is not None, request
    return asked


class Scripted:
    """The scripted server over one object; GETs whose range starts at ``bend_at`` get ``bend``'s bytes."""

    def __init__(self) -> None:
        self.store = ObjectStore({f"/{BUCKET}/{KEY}": DATA})
        self.bends: dict[int, Bend] = {}
        self.closes: set[int] = set()  # starts whose bent answer is followed by closing the connection
        self.lock = threading.Lock()

    def handle(self, exchange: Exchange) -> None:
        request = exchange.request
        asked = request.range
        with self.lock:
            bend = self.bends.pop(asked[0], None) if request.method == "GET" and asked is not None else None
        if bend is None:
            self.store.serve(exchange)
            return
        exchange.send(bend(request))
        if asked is not None and asked[0] in self.closes:
            exchange.close()

    def gets_at(self, server: ScriptedServer, start: int) -> int:
        return sum(1 for r in server.requests if r.method == "GET" and r.range is not None and r.range[0] == start)


@pytest.fixture
def scripted() -> Iterator[tuple[Scripted, ScriptedServer]]:
    state = Scripted()
    with ScriptedServer(state.handle) as server:
        yield state, server


def client_of(server: ScriptedServer, **settings: Any) -> S3Client:
    config = S3ClientConfig(force_path_style=True, part_size=PART, max_attempts=3, **settings)
    return S3Client("us-east-1", endpoint=server.endpoint, s3client_config=config)


def whole_object(request: Request) -> bytes:
    """A server that ignores Range: the whole object, 200."""
    return response(200, DATA, {"ETag": ObjectStore.etag(DATA)})


def asked_span(request: Request) -> tuple[int, int]:
    """The first and last byte a correct answer to ``request`` carries."""
    first, last = range_of(request)
    return first, SIZE - 1 if last is None else min(last, SIZE - 1)


def bent(first_shift: int = 0, last_shift: int = 0, total: str | int = SIZE, length_shift: int = 0) -> Bend:
    """A 206 to the request with its span's ends shifted, the given total and a Content-Length
    shifted from the span's."""

    def bend(request: Request) -> bytes:
        first, last = asked_span(request)
        first, last = first + first_shift, last + last_shift
        headers = {"Content-Range": f"bytes {first}-{last}/{total}", "ETag": ObjectStore.etag(DATA)}
        return response(206, DATA[first : last + 1], headers, length=last - first + 1 + length_shift)

    return bend


def content_range(template: str) -> Bend:
    """A 206 with the right bytes and ``template`` (fields ``first``, ``last``, ``size``) as Content-Range."""

    def bend(request: Request) -> bytes:
        first, last = asked_span(request)
        value = template.format(first=first, last=last, size=SIZE)
        return response(206, DATA[first : last + 1], {"Content-Range": value, "ETag": ObjectStore.etag(DATA)})

    return bend


# ---- 200 to a ranged GET ---------------------------------------------------------------------


@pytest.mark.parametrize(("start", "end"), [(100, None), (0, 1000), (PART, 2 * PART)], ids=["offset", "head", "middle"])
def test_200_to_the_first_request_of_a_range_is_refused(
    scripted: tuple[Scripted, ScriptedServer], start: int, end: int | None
) -> None:
    state, server = scripted
    state.bends[start] = whole_object
    returned, error = read_until_error(client_of(server).get_object_stream(BUCKET, KEY, start, end))
    assert returned == b""
    assert "ignored the Range header" in str(error)
    assert f"s3://{BUCKET}/{KEY}" in str(error) and error.status == 200
    assert state.gets_at(server, start) == 1  # not retried


def test_200_to_the_first_request_of_a_whole_object_read_is_the_object(
    scripted: tuple[Scripted, ScriptedServer],
) -> None:
    # The stream wants [0, end of object): a store ignoring Range sends exactly that.
    state, server = scripted
    state.bends[0] = whole_object
    stream = client_of(server).get_object_stream(BUCKET, KEY)
    assert b"".join(stream) == DATA
    assert stream.size == SIZE


@pytest.mark.parametrize("mode", ["serial", "parallel"])
def test_200_to_a_part_or_the_remainder_request_is_refused(
    scripted: tuple[Scripted, ScriptedServer], monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """The reported bug: 20 MiB read returned the object's first bytes from offset 8 MiB on."""
    state, server = scripted
    settings = force_get_mode(monkeypatch, mode)
    state.bends[PART] = whole_object  # the second part (parallel) or the remainder (serial)
    returned, error = read_until_error(client_of(server, **settings).get_object_stream(BUCKET, KEY))
    assert returned == DATA[: len(returned)] and len(returned) <= PART
    assert f"asked for bytes={PART}-" in str(error) and "ignored the Range header" in str(error)
    assert state.gets_at(server, PART) == 1


def _cut_after(count: int) -> Bend:
    """A correct 206 head for the first part whose body stops after ``count`` bytes (then the
    connection closes)."""

    def bend(request: Request) -> bytes:
        first, last = range_of(request)
        assert last is not None
        headers = {"Content-Range": f"bytes {first}-{last}/{SIZE}", "ETag": ObjectStore.etag(DATA)}
        return response(206, DATA[first : first + count], headers, length=last - first + 1)

    return bend


def test_200_to_a_resume_is_refused(scripted: tuple[Scripted, ScriptedServer], monkeypatch: pytest.MonkeyPatch) -> None:
    state, server = scripted
    settings = force_get_mode(monkeypatch, "serial")
    cut = 123_457
    state.bends[0] = _cut_after(cut)
    state.closes.add(0)
    state.bends[cut] = whole_object  # the resume of the first part
    returned, error = read_until_error(client_of(server, **settings).get_object_stream(BUCKET, KEY))
    assert returned == DATA[: len(returned)] and len(returned) <= cut
    assert f"asked for bytes={cut}-{PART - 1}" in str(error) and "ignored the Range header" in str(error)
    assert state.gets_at(server, cut) == 1


# ---- Content-Range and Content-Length -----------------------------------------------------------


@pytest.mark.parametrize(
    ("at", "bend", "problem"),
    [
        (0, bent(total="*"), "unknown object size"),
        (PART, bent(total="*"), "unknown object size"),
        (0, bent(first_shift=1, last_shift=1), "another range"),
        (PART, bent(first_shift=1, last_shift=1), "another range"),
        (PART, bent(last_shift=-1), "another range"),
        (PART, bent(total=SIZE + 1), f"object size of {SIZE + 1} bytes"),
        (0, content_range("bytes {first}-{last}"), "malformed"),
        (0, content_range("{first}-{last}/{size}"), "malformed"),
        (0, content_range("bytes {first}-x/{size}"), "malformed"),
        (PART, content_range("bytes */{size}"), "malformed"),
        (0, bent(length_shift=-1), "Content-Length of '"),
        (PART, bent(length_shift=1), "Content-Length of '"),
    ],
    ids=[
        "star-first",
        "star-part",
        "wrong-start-first",
        "wrong-start-part",
        "wrong-end-part",
        "wrong-total-part",
        "no-total",
        "no-unit",
        "not-a-number",
        "unsatisfied-form",
        "short-length-first",
        "long-length-part",
    ],
)
@pytest.mark.parametrize("mode", ["serial", "parallel"])
def test_a_wrong_content_range_or_length_is_refused(
    scripted: tuple[Scripted, ScriptedServer],
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
    at: int,
    bend: Bend,
    problem: str,
) -> None:
    state, server = scripted
    settings = force_get_mode(monkeypatch, mode)
    state.bends[at] = bend
    returned, error = read_until_error(client_of(server, **settings).get_object_stream(BUCKET, KEY))
    assert returned == DATA[: len(returned)] and len(returned) <= at  # nothing of the bent answer
    assert problem in str(error)
    assert f"asked for bytes={at}-" in str(error) and "Content-Range" in str(error)
    assert not isinstance(error, ValueError)
    assert state.gets_at(server, at) == 1


@pytest.mark.parametrize("name", list(READERS))
def test_readers_refuse_an_unknown_total(scripted: tuple[Scripted, ScriptedServer], name: str) -> None:
    """The reported bug: ``bytes 0-N/*`` ended the sequential reader at one part, no error."""
    state, server = scripted
    state.bends[0] = bent(total="*")
    reader = client_of(server).get_object(BUCKET, KEY, reader_constructor=READERS[name])
    with pytest.raises(S3Exception, match="unknown object size"):
        reader.read()


# ---- a proxy that ignores Range, in front of the moto server -------------------------------------


def gets_after_the_first(bucket: str, suffix: str) -> Callable[[RecordedRequest], bool]:
    """GETs of keys ending in ``suffix`` after the first such one (which gives the size)."""
    seen = 0
    lock = threading.Lock()

    def match(request: RecordedRequest) -> bool:
        nonlocal seen
        if request.method != "GET" or not request.path.startswith(f"/{bucket}/") or not request.path.endswith(suffix):
            return False
        with lock:
            seen += 1
            return seen > 1

    return match


def ignore_range_after_first(env: S3TestEnv, suffix: str = "") -> Rule:
    assert env.proxy is not None
    return env.proxy.add(Rule(gets_after_the_first(env.bucket, suffix), strip_headers=("range",), times=None))


@pytest.fixture
def stored(faulty_s3: S3TestEnv) -> str:
    key = faulty_s3.key("ignored-range.bin")
    faulty_s3.put(key, DATA)
    return key


@pytest.mark.parametrize("mode", ["serial", "parallel"])
def test_stream_through_a_range_ignoring_proxy_raises(
    faulty_s3: S3TestEnv, stored: str, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    settings = force_get_mode(monkeypatch, mode)
    rule = ignore_range_after_first(faulty_s3)
    client = faulty_s3.new_client(part_size=PART, max_attempts=3, **settings)
    returned, error = read_until_error(client.get_object_stream(faulty_s3.bucket, stored))
    assert rule.fired.is_set()
    assert returned == DATA[: len(returned)] and len(returned) < SIZE
    assert "ignored the Range header" in str(error)


@pytest.mark.parametrize("name", list(READERS))
@pytest.mark.parametrize("mode", ["serial", "parallel"])
def test_readers_through_a_range_ignoring_proxy_raise(
    faulty_s3: S3TestEnv, stored: str, monkeypatch: pytest.MonkeyPatch, mode: str, name: str
) -> None:
    settings = force_get_mode(monkeypatch, mode)
    client = faulty_s3.new_client(part_size=PART, max_attempts=3, **settings)
    # A read from the start (the first GET answers correctly), then reads at offsets.
    rule = ignore_range_after_first(faulty_s3)
    reader = client.get_object(faulty_s3.bucket, stored, reader_constructor=READERS[name])
    with pytest.raises(S3Exception, match="ignored the Range header"):
        reader.read()
    assert rule.fired.is_set()
    reader = client.get_object(faulty_s3.bucket, stored, reader_constructor=READERS[name])
    reader.seek(PART + 10)
    if name == "sequential":
        # It reads the object from byte 0: a 200 to its first GET is the object, and right.
        assert reader.read(1000) == DATA[PART + 10 : PART + 1010]
        return
    with pytest.raises(S3Exception, match="ignored the Range header"):
        reader.read(1000)


@pytest.mark.parametrize("name", list(DCP_READERS))
def test_dcp_load_through_a_range_ignoring_proxy_raises(faulty_s3: S3TestEnv, name: str) -> None:
    """The reported bug: a DCP load returned normally with tensors that differ from the saved ones."""
    source = layered_state_dict(seed=31, layers=6, size=512)  # 1 MiB weights, several per file
    with quiet_dcp():
        dcp.save(
            source, storage_writer=S3StorageWriter("us-east-1", uri(faulty_s3, "ckpt"), **storage_kwargs(faulty_s3))
        )
    assert faulty_s3.proxy is not None
    # Every GET of a data file but the first ignores Range (a 200 to a GET of a whole file from
    # byte 0 carries the right bytes, and is taken).
    rule = ignore_range_after_first(faulty_s3, ".distcp")
    target = zeroed(source)
    reader = S3StorageReader(
        "us-east-1", uri(faulty_s3, "ckpt"), reader_constructor=DCP_READERS[name], **storage_kwargs(faulty_s3)
    )
    with pytest.raises(CheckpointException) as caught, quiet_dcp():
        dcp.load(target, storage_reader=reader)
    assert rule.fired.is_set()
    failures = [exception for exception, _ in caught.value.failures.values()]
    assert failures and all(isinstance(failure, S3Exception) for failure in failures), failures
    assert all("ignored the Range header" in str(failure) for failure in failures)
