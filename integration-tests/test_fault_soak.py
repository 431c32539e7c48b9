"""A seeded fault soak: every read path, every write path and the checkpoint integrations run
through the fault proxy in front of the moto server while a seeded random choice of faults hits
the requests (resets mid-body, stalls past the client's timeouts, trickles, 500/503 with and
without ``Retry-After``, range-ignoring answers, interim 1xx answers, lost responses, dropped
connections), and
writer processes are killed mid-upload.

The promise checked: a read returns exactly the object's bytes (SHA-256) or raises
``S3Exception`` ("failed loudly", allowed); a write that raised published nothing (checked with
boto3 straight against the server); no multipart upload is left behind except those of the
killed writers, which the cleanup command removes. A summary table is printed.

CI runs a short version (``S3TORCH_SOAK_ROUNDS`` unset: one round); ``nox -s soak`` runs the full
one (``S3TORCH_SOAK_ROUNDS``, ``S3TORCH_SOAK_SEED``). The seed fixes the sequence of draws and of
the workloads' choices; which request gets which draw follows the order requests reach the
proxy, which threads can vary, so a seed reproduces the mix of faults rather than each one.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import logging
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

import lightning
import pytest
import torch
import torch.distributed.checkpoint as dcp
from support import PART, FaultProxy, RecordedRequest, Rule, S3TestEnv, force_get_mode, payload
from support.dcp_data import assert_equal, quiet_dcp, trained, zeroed
from torch.distributed.checkpoint.api import CheckpointException
from torch.utils.data import DataLoader, TensorDataset

from s3torch.client import S3Client, S3ClientConfig, S3Exception
from s3torch.datasets import S3IterableDataset, S3MapDataset
from s3torch.dcp import S3Checkpoint, S3StorageReader, S3StorageWriter
from s3torch.lightning import S3LightningCheckpoint
from s3torch.readers import DCPOptimizedS3Reader, ItemRange, S3Reader, S3ReaderConstructor

pytestmark = [
    pytest.mark.soak,
    pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning"),
]

#: Rounds of every workload; the short CI run does one, ``nox -s soak`` many.
ROUNDS = int(os.environ.get("S3TORCH_SOAK_ROUNDS", "1"))
SEED = int(os.environ.get("S3TORCH_SOAK_SEED", "20261207"))
#: Injected faults the run must reach: 300 in a full run, fewer in the short one.
FAULT_FLOOR = int(os.environ.get("S3TORCH_SOAK_MIN_FAULTS", "300" if ROUNDS >= 8 else str(30 * ROUNDS)))
#: Share of requests that get a fault.
FAULT_RATE = 0.25
KILLED_WRITERS = 2

#: Small client time bounds, so that stalls cost seconds, not minutes.
READ_TIMEOUT = 2.0
CLIENT_SETTINGS: dict[str, Any] = {
    "part_size": PART,
    "max_attempts": 5,
    "force_path_style": True,
    "connect_timeout": 2.0,
    "read_timeout": READ_TIMEOUT,
    "stall_window": 1.0,
    "stall_min_rate": 32 * 1024,
    "retry_deadline": 30.0,
}
#: A stalled or trickled answer the client has not given up on after this long is cut by the
#: proxy (and counted as not ended by the client's time bounds).
STALL_LIMIT = 20.0
TRICKLE_RATE = 4 * 1024  # bytes per second, well under stall_min_rate

OBJECT_SIZES = [1, 70_001, 1_000_003, PART + 123_457, 2 * PART + 45_678]
WRITE_SIZES = [1_000, 300_001, PART + 7, 2 * PART + 1_234]


def client_config() -> S3ClientConfig:
    return S3ClientConfig(**CLIENT_SETTINGS)


# ---- the faults ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """One kind of fault: its name in the summary and the proxy options that make it."""

    kind: str
    options: dict[str, Any]
    needs_range: bool = False  # only for requests that carry a Range header


RESET_MID_BODY = [Fault("reset mid-body", {"cut_after": after}) for after in (0, 1, 65_537, 1_000_003)]
STALL_HEAD = Fault("stall before the answer", {"stall_head": True, "stall_limit": STALL_LIMIT})
STALL_BODY = Fault("stall mid-body", {"stall_after": 100_003, "stall_limit": STALL_LIMIT})
TRICKLE = Fault("trickle", {"trickle": TRICKLE_RATE, "stall_limit": STALL_LIMIT})
ERROR_500 = Fault("500 InternalError", {"respond": 500, "code": "InternalError"})
SLOW_DOWN = Fault("503 SlowDown", {"respond": 503, "code": "SlowDown"})
SLOW_DOWN_RETRY_AFTER = Fault("503 SlowDown + Retry-After", {"respond": 503, "code": "SlowDown", "retry_after": "1"})
RANGE_IGNORED = Fault("range ignored (200, whole object)", {"strip_headers": ("range",)}, needs_range=True)
DROPPED = Fault("connection closed, no answer", {"drop": True})
LOST_RESPONSE = Fault("response lost after the server acted", {"lose_response": True})
EARLY_HINTS = Fault("interim 103 Early Hints first", {"interim": 103})
UNSOLICITED_CONTINUE = Fault("interim 100 Continue first", {"interim": 100})

ERRORS = [ERROR_500, SLOW_DOWN, SLOW_DOWN_RETRY_AFTER]
#: What may hit each S3 operation, with weights.
FAULTS_BY_OPERATION: dict[str, list[tuple[Fault, int]]] = {
    "GetObject": [
        *[(fault, 2) for fault in RESET_MID_BODY],
        (STALL_HEAD, 1),
        (STALL_BODY, 1),
        (TRICKLE, 1),
        *[(fault, 2) for fault in ERRORS],
        (RANGE_IGNORED, 3),
        (DROPPED, 2),
        (EARLY_HINTS, 2),
    ],
    "HeadObject": [*[(fault, 1) for fault in ERRORS], (DROPPED, 1)],
    "ListObjectsV2": [*[(fault, 2) for fault in ERRORS], (LOST_RESPONSE, 2), (STALL_HEAD, 1)],
    **{
        operation: [
            *[(fault, 2) for fault in ERRORS],
            (LOST_RESPONSE, 3),
            (DROPPED, 2),
            (STALL_HEAD, 1),
            (UNSOLICITED_CONTINUE, 1),
        ]
        for operation in ("PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload")
    },
    "AbortMultipartUpload": [(fault, 1) for fault in ERRORS],
    "DeleteObject": [(fault, 1) for fault in ERRORS],
}


class FaultPlan:
    """Draws, from one seeded generator, whether each request of the soak's bucket gets a fault
    and which; the proxy calls the rules' predicates under its lock, in the order requests arrive."""

    def __init__(self, bucket: str, seed: int) -> None:
        self.bucket = bucket
        self.random = random.Random(seed)
        self.enabled = True
        self.exempt: list[Callable[[RecordedRequest], bool]] = []  # requests other rules take
        self._drawn: dict[int, Fault | None] = {}
        self._requests: list[RecordedRequest] = []  # keeps the ids of _drawn unique

    def fault_of(self, request: RecordedRequest) -> Fault | None:
        if id(request) not in self._drawn:
            self._requests.append(request)
            self._drawn[id(request)] = self._draw(request)
        return self._drawn[id(request)]

    def _draw(self, request: RecordedRequest) -> Fault | None:
        if not self.enabled or not request.path.startswith(f"/{self.bucket}"):
            return None
        if any(exempt(request) for exempt in self.exempt):
            return None
        choices = [
            (fault, weight)
            for fault, weight in FAULTS_BY_OPERATION.get(request.operation, [])
            if not fault.needs_range or "range" in request.headers
        ]
        if not choices or self.random.random() >= FAULT_RATE:
            return None
        return self.random.choices([fault for fault, _ in choices], [weight for _, weight in choices])[0]

    def rules(self) -> list[tuple[Fault, Rule]]:
        every = {id(fault): fault for choices in FAULTS_BY_OPERATION.values() for fault, _ in choices}
        return [
            (fault, Rule(lambda request, fault=fault: self.fault_of(request) is fault, times=None, **fault.options))
            for fault in every.values()
        ]


# ---- the tally -------------------------------------------------------------------------------


@dataclass
class Tally:
    operations: Counter[str] = field(default_factory=Counter)
    failed_loudly: Counter[str] = field(default_factory=Counter)
    seconds: Counter[str] = field(default_factory=Counter)
    loud_reasons: Counter[str] = field(default_factory=Counter)
    wrong_bytes: list[str] = field(default_factory=list)
    partial_objects: list[str] = field(default_factory=list)
    other_errors: list[str] = field(default_factory=list)

    def attempt(self, operation: str, work: Callable[[], bool | str], detail: str = "") -> bool | None:
        """Run one operation: ``work`` returns whether its result was right (or what is wrong
        with it). Returns whether it was right, or None when it raised ``S3Exception``."""
        self.operations[operation] += 1
        started = time.monotonic()
        try:
            right = work()
        # torch's CheckpointException (what dcp.load raises for a rank's failure) is a
        # BaseException, not an Exception: caught by name so that it is sorted too.
        except (Exception, CheckpointException) as error:  # sorted below: every kind is reported and asserted
            if is_loud(error):
                self.failed_loudly[operation] += 1
                self.loud_reasons[loud_reason(error)] += 1
                return None
            # Anything else breaks the promise; the soak carries on so one run shows every kind,
            # and the test fails on the list at the end.
            logging.getLogger(__name__).exception("soak: %s %s raised a non-S3Exception", operation, detail)
            self.other_errors.append(f"{operation} {detail}: {type(error).__name__}: {str(error)[:300]}")
            return None
        finally:
            self.seconds[operation] += time.monotonic() - started
        if right is not True:
            self.wrong_bytes.append(f"{operation} {detail} {right or ''}")
        return right is True


def is_loud(error: BaseException) -> bool:
    """An ``S3Exception``, or a wrapper (DCP's CheckpointException) of nothing but them."""
    if isinstance(error, S3Exception):
        return True
    if isinstance(error, CheckpointException):
        return bool(error.failures) and all(is_loud(failure[0]) for failure in error.failures.values())
    return error.__cause__ is not None and is_loud(error.__cause__)


def loud_reason(error: BaseException) -> str:
    """What an ``S3Exception`` (or the first one a wrapper holds) says, without names and ids."""
    while not isinstance(error, S3Exception):
        if isinstance(error, CheckpointException):
            error = next(iter(error.failures.values()))[0]
        else:
            assert error.__cause__ is not None
            error = error.__cause__
    if error.code:
        return f"{error.code} ({error.status})"
    text = re.sub(r"s3://\S+ ?", "", str(error)).removeprefix("Client error: ")
    if "no byte of it was used" in text:  # a refused answer: what was wrong with it
        text = "refused: " + text.rsplit(": ", 1)[-1].split(";")[0]
    return re.sub(r"\d+(\.\d+)?", "N", text)[:70]


def sha256(data: bytes | bytearray | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


# ---- the soak --------------------------------------------------------------------------------


@dataclass
class Soak:
    env: S3TestEnv
    proxy: FaultProxy
    plan: FaultPlan
    client: S3Client
    random: random.Random
    monkeypatch: pytest.MonkeyPatch
    objects: dict[str, bytes]
    digests: dict[str, str]
    tally: Tally = field(default_factory=Tally)

    @property
    def bucket(self) -> str:
        return self.env.bucket

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def storage(self) -> dict[str, Any]:
        return {"endpoint": self.env.location.endpoint, "s3client_config": client_config()}

    def exists(self, key: str) -> bool:
        return self.env.exists(key)  # boto3 straight to the server

    # ---- reads ---------------------------------------------------------------------------
    def check_bytes(
        self, key: str, data: bytes | bytearray | memoryview, start: int = 0, end: int | None = None
    ) -> Literal[True] | str:
        """True when ``data`` is bytes ``[start, end)`` of the object; else what is wrong: the
        range, both lengths and the first offset (in the object) where they differ."""
        whole = self.objects[key]
        if start == 0 and end is None:
            if sha256(data) == self.digests[key]:
                return True
        elif sha256(data) == sha256(whole[start:end]):
            return True
        expected = memoryview(whole)[start:end]
        got = memoryview(data).cast("B")
        common = min(len(got), len(expected))
        differs = next((index for index in range(common) if got[index] != expected[index]), common)
        return (
            f"bytes {start}-{start + len(expected)} of {len(whole)}: got {len(got)} bytes for"
            f" {len(expected)}, first difference at offset {start + differs}"
        )

    def random_range(self, size: int) -> tuple[int, int]:
        start = self.random.randrange(size)
        return start, self.random.randint(start + 1, size)

    def read_stream(self, key: str) -> None:
        mode = self.random.choice(["serial", "parallel"])
        force_get_mode(self.monkeypatch, mode)
        size = len(self.objects[key])

        def iterate() -> bool | str:
            stream = self.client.get_object_stream(self.bucket, key)
            buffer = bytearray()
            for chunk in stream:
                buffer += chunk
            return self.check_bytes(key, buffer)

        def readinto() -> bool | str:
            start, end = self.random_range(size)
            stream = self.client.get_object_stream(self.bucket, key, start, end)
            buffer = bytearray(end - start)
            view, filled = memoryview(buffer), 0
            step = self.random.choice([1, 4_097, 1_000_000])
            while count := stream.readinto(view[filled : filled + step]):
                filled += count
            return self.check_bytes(key, buffer[:filled], start, end)

        self.tally.attempt(f"GetObjectStream iterate ({mode})", iterate, key)
        self.tally.attempt(f"GetObjectStream readinto ({mode})", readinto, key)

    def read_sequential(self, key: str) -> None:
        def whole() -> bool | str:
            reader = self.client.get_object(self.bucket, key, reader_constructor=S3ReaderConstructor.sequential())
            return self.check_bytes(key, reader.read())

        self.tally.attempt("SequentialS3Reader read()", whole, key)
        self.tally.attempt(
            "SequentialS3Reader seek+read", partial(self.read_ranges, key, S3ReaderConstructor.sequential()), key
        )

    def read_ranges(self, key: str, constructor: Any) -> bool | str:
        reader = self.client.get_object(self.bucket, key, reader_constructor=constructor)
        size = len(self.objects[key])
        steps: list[str] = []  # what the reader was asked, so a wrong read can be replayed
        for _ in range(3):
            start, end = self.random_range(size)
            reader.seek(start)
            if self.random.random() < 0.5:
                steps.append(f"read({end - start}) at {start}")
                data: bytes | bytearray = reader.read(end - start)
            else:
                steps.append(f"readinto({end - start}) at {start}")
                buffer = bytearray(end - start)
                filled = reader.readinto(buffer)
                data = buffer[:filled]
            wrong = self.check_bytes(key, data, start, end)
            if wrong is not True:
                return f"{wrong}; steps: {', '.join(steps)}"
        return True

    def read_ranged(self, key: str) -> None:
        for name, constructor in (
            ("RangedS3Reader", S3ReaderConstructor.range_based()),
            ("RangedS3Reader unbuffered", S3ReaderConstructor.range_based(0)),
        ):
            self.tally.attempt(f"{name} seek+read", partial(self.read_ranges, key, constructor), key)

    def read_dcp_optimized(self, key: str) -> None:
        size = len(self.objects[key])
        cuts = sorted({0, size, *(self.random.randrange(size) for _ in range(4))})
        items = [ItemRange(start, end) for start, end in itertools.pairwise(cuts) if end > start]
        chosen = [item for item in items if self.random.random() < 0.7] or items[:1]

        def read() -> bool | str:
            constructor = partial(DCPOptimizedS3Reader, item_ranges=chosen, max_gap_size=self.random.choice([0, PART]))
            reader = self.client.get_object(self.bucket, key, reader_constructor=constructor)
            for item in chosen:
                reader.seek(item.start)
                wrong = self.check_bytes(key, reader.read(item.end - item.start), item.start, item.end)
                if wrong is not True:
                    return f"{wrong}; items {[(item.start, item.end) for item in chosen]}"
            return True

        self.tally.attempt("DCPOptimizedS3Reader items", read, key)

    # ---- writes --------------------------------------------------------------------------
    def write(self, key: str, data: bytes, *, create_only: bool) -> None:
        def work() -> bool:
            with self.client.put_object(self.bucket, key, if_none_match="*" if create_only else None) as writer:
                view, offset = memoryview(data), 0
                while offset < len(data):
                    step = self.random.choice([1_000, 65_536, PART + 1])
                    writer.write(view[offset : offset + step])
                    offset += step
            return True

        mode = "create-only" if create_only else "overwrite"
        operation = f"S3Writer {'multipart' if len(data) > PART else 'single PUT'} ({mode})"
        if self.tally.attempt(operation, work, key) is None:
            self.expect_nothing_published(key, operation)
        else:
            self.expect_published(key, sha256(data), operation)

    def expect_nothing_published(self, key: str, operation: str) -> None:
        if self.exists(key):
            self.tally.partial_objects.append(f"{operation} {key}: raised, but the object is visible")

    def expect_published(self, key: str, digest: str, operation: str) -> None:
        if sha256(self.env.read(key)) != digest:
            self.tally.partial_objects.append(f"{operation} {key}: the object differs from what was written")

    def torch_save_load(self, round_number: int) -> None:
        checkpoint = S3Checkpoint(self.env.location.region, **self.storage())
        net, _ = trained(round_number, width=512)
        uri = self.uri(f"torch-save/{round_number}.pt")
        key = uri.removeprefix(f"s3://{self.bucket}/")
        buffer = io.BytesIO()
        torch.save(net.state_dict(), buffer)

        def save() -> bool:
            with checkpoint.writer(uri) as writer:
                torch.save(net.state_dict(), writer)
            return True

        if self.tally.attempt("torch.save via S3Checkpoint", save, uri) is None:
            self.expect_nothing_published(key, "torch.save via S3Checkpoint")
            return
        for name in ("sequential", "range_based"):
            constructor = getattr(S3ReaderConstructor, name)()

            def load(constructor: Any = constructor) -> bool:
                with checkpoint.reader(uri, reader_constructor=constructor) as reader:
                    state = torch.load(reader, weights_only=True)
                assert_equal(state, net.state_dict())
                return True

            self.tally.attempt(f"torch.load via S3Checkpoint ({name})", load, uri)

    def dcp_save_load(self, round_number: int) -> None:
        net, optimizer = trained(round_number)
        state = {"model": net.state_dict(), "optimizer": optimizer.state_dict()}
        uri = self.uri(f"dcp/{round_number}")

        def save() -> bool:
            with quiet_dcp():
                dcp.save(
                    state,
                    storage_writer=S3StorageWriter(self.env.location.region, uri, thread_count=2, **self.storage()),
                )
            return True

        if self.tally.attempt("DCP save (S3StorageWriter)", save, uri) is None:
            # A checkpoint without .metadata is incomplete and is never loaded as a whole one.
            self.expect_nothing_published(f"dcp/{round_number}/.metadata", "DCP save")
            return
        for name, constructor in (("dcp_optimized", S3ReaderConstructor.dcp_optimized()), ("sequential", None)):

            def load(constructor: Any = constructor) -> bool:
                target = zeroed(state)
                reader = S3StorageReader(
                    self.env.location.region, uri, reader_constructor=constructor, **self.storage()
                )
                with quiet_dcp():
                    dcp.load(target, storage_reader=reader)
                assert_equal(target, state)
                return True

            self.tally.attempt(f"DCP load ({name})", load, uri)

    def lightning_fit(self, round_number: int) -> None:
        plugin = S3LightningCheckpoint(self.env.location.region, client_config(), self.env.location.endpoint)
        model = TinyModel()
        root = self.uri(f"lightning/{round_number}")

        def fit() -> bool:
            lightning.Trainer(
                accelerator="cpu",
                devices=1,
                plugins=[plugin],
                logger=False,
                enable_progress_bar=False,
                enable_model_summary=False,
                num_sanity_val_steps=0,
                max_steps=2,
                default_root_dir=root,
            ).fit(model, tiny_batches())
            return True

        if self.tally.attempt("Lightning fit (S3LightningCheckpoint save)", fit, root) is None:
            return

        def load() -> bool:
            checkpoint = plugin.load_checkpoint(f"{root}/checkpoints/epoch=0-step=2.ckpt")
            assert_equal(checkpoint["state_dict"], model.state_dict())
            return True

        self.tally.attempt("Lightning load_checkpoint", load, root)

    # ---- datasets ------------------------------------------------------------------------
    def datasets(self) -> None:
        region, endpoint = self.env.location.region, self.env.location.endpoint
        common: dict[str, Any] = {"region": region, "endpoint": endpoint, "s3client_config": client_config()}
        expected = {self.uri(key): digest for key, digest in self.digests.items()}
        prefix = self.uri("objects/")

        def loaded(dataset: Any, *, readers: bool) -> bool | str:
            loader = DataLoader(dataset, batch_size=None, num_workers=2, timeout=60)
            seen: Counter[tuple[str, str]] = Counter()
            for item in loader:
                # batch_size=None: the loader hands items on as they come (a tuple becomes a list).
                seen[(f"s3://{item.bucket}/{item.key}", sha256(item.read())) if readers else tuple(item)] += 1
            if seen == Counter(expected.items()):
                return True
            wrong = sorted(uri for (uri, digest), count in seen.items() if expected.get(uri) != digest or count > 1)
            missing = sorted(set(expected) - {uri for uri, _ in seen})
            return f"wrong or repeated: {wrong}, missing: {missing}"

        cases = {
            "S3MapDataset, 2 workers (digest transform)": lambda: S3MapDataset.from_prefix(
                prefix, transform=digest_of, **common
            ),
            "S3IterableDataset, 2 workers (digest transform)": lambda: S3IterableDataset.from_prefix(
                prefix, transform=digest_of, enable_sharding=True, **common
            ),
            "S3MapDataset, 2 workers (default transform: readers)": lambda: S3MapDataset.from_prefix(prefix, **common),
            "S3IterableDataset, 2 workers (default transform: readers)": lambda: S3IterableDataset.from_prefix(
                prefix, enable_sharding=True, **common
            ),
        }
        for name, build in cases.items():
            readers = "readers" in name
            self.tally.attempt(name, lambda build=build, readers=readers: loaded(build(), readers=readers), prefix)


def digest_of(reader: S3Reader) -> tuple[str, str]:
    """The datasets' transform in the workers: the object's URI and the SHA-256 of what was read."""
    return f"s3://{reader.bucket}/{reader.key}", sha256(reader.read())


class TinyModel(lightning.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch: Any, batch_index: int) -> torch.Tensor:
        inputs, targets = batch
        return torch.nn.functional.mse_loss(self.layer(inputs), targets)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def tiny_batches() -> DataLoader[Any]:
    inputs = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
    return DataLoader(TensorDataset(inputs, inputs.sum(dim=1, keepdim=True)), batch_size=2)


# ---- writers killed mid-upload -----------------------------------------------------------------

WRITER = """
import sys
from s3torch.client import S3Client, S3ClientConfig
endpoint, bucket, key, part = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
config = S3ClientConfig(part_size=part, force_path_style=True)
with S3Client("us-east-1", endpoint=endpoint, s3client_config=config).put_object(bucket, key) as writer:
    for _ in range(4):
        writer.write(bytes(part))
"""


def killed_writer_rules(soak: Soak) -> list[tuple[str, Rule, threading.Event]]:
    """For each writer to kill: its key and a rule that holds its second part upload (so it is
    mid-upload when killed) and fires when that part arrives. Random faults spare that request."""
    proxy, bucket = soak.proxy, soak.bucket
    holds = []
    for index in range(KILLED_WRITERS):
        key = f"killed/{index}.bin"
        release = threading.Event()

        def second_part(request: RecordedRequest, key: str = key) -> bool:
            return (
                request.operation == "UploadPart"
                and request.is_object(bucket, key)
                and request.query["partNumber"] == "2"
            )

        soak.plan.exempt.append(second_part)
        holds.append((key, proxy.add(Rule(second_part, hold=release)), release))
    return holds


def kill_writers_mid_upload(soak: Soak, holds: list[tuple[str, Rule, threading.Event]]) -> None:
    for key, rule, release in holds:
        process = subprocess.Popen(
            [sys.executable, "-c", WRITER, soak.env.location.endpoint or "", soak.bucket, key, str(PART)]
        )
        try:
            # The writer has created its upload and sent part 2: it is mid-upload.
            assert rule.fired.wait(timeout=120), f"writer of {key} never reached its second part"
            process.send_signal(signal.SIGKILL)
            assert process.wait(timeout=60) == -signal.SIGKILL
        finally:
            release.set()
            if process.poll() is None:
                process.kill()
                process.wait()


def uploads_under(soak: Soak, prefix: str) -> list[dict[str, Any]]:
    uploads: list[dict[str, Any]] = soak.env.boto.list_multipart_uploads(Bucket=soak.bucket, Prefix=prefix).get(
        "Uploads", []
    )
    return uploads


def clean_up_uploads(soak: Soak, server_endpoint: str) -> subprocess.CompletedProcess[str]:
    """The cleanup command of s3torch-client, straight against the server."""
    command = ["uploads", soak.uri("killed/"), "--abort", "--older-than", "0s"]
    where = ["--region", soak.env.location.region, "--endpoint", server_endpoint, "--force-path-style"]
    return subprocess.run(
        [sys.executable, "-m", "s3torch.client", *command, *where],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# ---- the test ---------------------------------------------------------------------------------


@pytest.fixture
def soak(faulty_s3: S3TestEnv, monkeypatch: pytest.MonkeyPatch) -> Iterator[Soak]:
    assert faulty_s3.proxy is not None
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    objects = {f"objects/{index}.bin": payload(size, seed=index) for index, size in enumerate(OBJECT_SIZES)}
    faulty_s3.put_many(objects)
    plan = FaultPlan(faulty_s3.bucket, SEED)
    yield Soak(
        env=faulty_s3,
        proxy=faulty_s3.proxy,
        plan=plan,
        client=S3Client(
            faulty_s3.location.region, endpoint=faulty_s3.location.endpoint, s3client_config=client_config()
        ),
        random=random.Random(SEED + 1),
        monkeypatch=monkeypatch,
        objects=objects,
        digests={key: sha256(data) for key, data in objects.items()},
    )
    plan.enabled = False


def test_fault_soak(soak: Soak, moto_server: Any) -> None:
    started = time.monotonic()
    holds = killed_writer_rules(soak)  # first: they take precedence over faults
    fault_rules = [(fault, soak.proxy.add(rule)) for fault, rule in soak.plan.rules()]
    orphans: list[dict[str, Any]] = []
    killed_uploads: list[dict[str, Any]] = []
    cleanup: subprocess.CompletedProcess[str] | None = None
    try:
        kill_writers_mid_upload(soak, holds)
        for round_number in range(ROUNDS):
            for key in soak.objects:
                soak.read_stream(key)
                soak.read_sequential(key)
                soak.read_ranged(key)
                soak.read_dcp_optimized(key)
            for index, size in enumerate(WRITE_SIZES):
                data = payload(size, seed=1000 * round_number + index)
                soak.write(f"writes/{round_number}-{index}.bin", data, create_only=soak.random.random() < 0.5)
            soak.datasets()
            soak.torch_save_load(round_number)
            soak.dcp_save_load(round_number)
            soak.lightning_fit(round_number)
        soak.plan.enabled = False
        killed_uploads = uploads_under(soak, "killed/")
        orphans = [upload for upload in uploads_under(soak, "") if not upload["Key"].startswith("killed/")]
        cleanup = clean_up_uploads(soak, moto_server.endpoint)
    finally:
        soak.plan.enabled = False
        elapsed = time.monotonic() - started
        print_summary(soak, fault_rules, elapsed, orphans, killed_uploads, cleanup)

    tally = soak.tally
    faults = sum(rule.hits for _, rule in fault_rules)
    stalls = [r for r in soak.proxy.requests if r.client_gave_up is not None]
    assert faults >= FAULT_FLOOR, f"only {faults} faults injected (floor {FAULT_FLOOR})"
    assert tally.other_errors == [], "errors that are not S3Exception"
    assert tally.wrong_bytes == [], "reads that returned wrong or short bytes"
    assert tally.partial_objects == [], "objects published by failed writes, or differing from what was written"
    assert orphans == [], "multipart uploads left behind by writers that were not killed"
    # Each killed writer was mid-upload; one whose create was retried after a lost answer also
    # left that lost upload, which only its end of write would have found.
    assert {upload["Key"] for upload in killed_uploads} == {key for key, _, _ in holds}, "killed writers' uploads"
    assert [r.target for r in stalls if not r.client_gave_up] == [], "stalls the client's time bounds did not end"
    assert cleanup is not None and cleanup.returncode == 0, cleanup.stderr if cleanup else "no cleanup"
    assert uploads_under(soak, "killed/") == [], "the cleanup command left uploads of the killed writers"


def print_summary(
    soak: Soak,
    fault_rules: list[tuple[Fault, Rule]],
    elapsed: float,
    orphans: list[dict[str, Any]],
    killed_uploads: list[dict[str, Any]],
    cleanup: subprocess.CompletedProcess[str] | None,
) -> None:
    tally = soak.tally
    by_kind: Counter[str] = Counter()
    for fault, rule in fault_rules:
        by_kind[fault.kind] += rule.hits
    faulted = [(r.operation, soak.plan.fault_of(r)) for r in soak.proxy.requests]
    by_operation = Counter(operation for operation, fault in faulted if fault is not None)
    kinds_of: dict[str, Counter[str]] = {}
    for operation, fault in faulted:
        if fault is not None:
            kinds_of.setdefault(operation, Counter())[fault.kind] += 1
    stalls = [r for r in soak.proxy.requests if r.client_gave_up is not None]
    metrics = soak.client.metrics()
    lines = [
        "",
        f"fault soak: seed {SEED}, {ROUNDS} round(s), {elapsed:.0f} s, fault rate {FAULT_RATE}",
        f"{'faults injected':<58}{sum(by_kind.values()):>8}",
        *(f"  {kind:<56}{count:>8}" for kind, count in by_kind.most_common()),
        "faults by S3 operation",
        *(
            f"  {operation:<56}{count:>8}  ({', '.join(f'{k} {n}' for k, n in kinds_of[operation].most_common())})"
            for operation, count in by_operation.most_common()
        ),
        f"{'requests through the proxy':<58}{len(soak.proxy.requests):>8}",
        f"{'stalls/trickles ended by the client':<58}{sum(1 for r in stalls if r.client_gave_up):>4}/{len(stalls)}",
        f"{'operation':<58}{'runs':>8}{'failed loudly':>15}{'seconds':>9}",
        *(
            f"  {name:<56}{count:>8}{tally.failed_loudly[name]:>15}{tally.seconds[name]:>9.1f}"
            for name, count in sorted(tally.operations.items())
        ),
        f"{'operations':<58}{sum(tally.operations.values()):>8}{sum(tally.failed_loudly.values()):>15}"
        f"{sum(tally.seconds.values()):>9.1f}",
        "failed loudly, by reason",
        *(f"  {reason:<56}{count:>8}" for reason, count in tally.loud_reasons.most_common()),
        f"{'client metrics of the soak process (S3Client.metrics())':<58}",
        f"  requests {metrics.total_requests}, attempts {metrics.attempts}, retries {metrics.retries},"
        f" throttles {metrics.throttles}, errors {metrics.errors},"
        f" {metrics.bytes_received / 2**20:.0f} MiB received, {metrics.bytes_sent / 2**20:.0f} MiB sent",
        f"{'wrong or short bytes':<58}{len(tally.wrong_bytes):>8}",
        f"{'partial objects visible':<58}{len(tally.partial_objects):>8}",
        f"{'errors other than S3Exception':<58}{len(tally.other_errors):>8}",
        f"{'orphaned uploads (not killed)':<58}{len(orphans):>8}",
        f"{'uploads left by the killed writers (writers killed)':<58}{len(killed_uploads):>8} ({KILLED_WRITERS})",
        f"cleanup command: exit {cleanup.returncode if cleanup else '-'}",
    ]
    for title, items in (
        ("wrong bytes", tally.wrong_bytes),
        ("partial objects", tally.partial_objects),
        ("other errors", tally.other_errors),
    ):
        lines += [f"{title}: {item}" for item in items[:20]]
    if cleanup is not None and cleanup.returncode:
        lines.append(f"cleanup stderr: {cleanup.stderr[-2000:]}")
    print("\n".join(lines))
