"""The HTTP-core decision, measured: client CPU per GET on our own HTTP/1.1 core against the
same transport on urllib3 (botocore's pool), with boto3's ``get_object`` as the reference.

Runs against the benchmark's loopback nginx (another process: its CPU is not counted). Each
round runs every contender once, interleaved, and the medians are printed:

    python integration-tests/benchmarks/http_core.py [--objects 2000] [--rounds 5] [--gib 1]

* ``GET ... 100 KiB``: ``get_object_stream(...).readinto`` of distinct 100 KiB objects, one at a
  time, in ms of CPU (user + system of this process, ``getrusage``) per request;
* ``readinto 1 GiB``: one stream read with ``readinto`` into a reused 8 MiB buffer, in CPU-s/GiB.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import resource
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).parent))

import boto3
import urllib3
from botocore.config import Config
from servers import Nginx, find_nginx

from s3torch.client import S3Client, S3ClientConfig, UserAgent
from s3torch.client._botocore_compat import connection_pool, http_session
from s3torch.client._http import ConnectionPool

BUCKET = "bench"
REGION = "us-east-1"


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def urllib3_client(endpoint: str) -> S3Client:
    """An S3Client whose data path goes through botocore's urllib3 pool instead of our core."""
    # Other settings (one more attempt, never used here): a transport of its own, not the one of ``ours``.
    client = S3Client(
        REGION,
        endpoint=endpoint,
        user_agent=UserAgent(["urllib3-path"]),
        s3client_config=S3ClientConfig(force_path_style=True, max_attempts=S3ClientConfig().max_attempts + 1),
    )
    transport: Any = client._transport
    resolved = transport.bucket_endpoint(BUCKET)
    pool = connection_pool(http_session(transport.client), resolved.base_url, None)
    transport.endpoints.replace(BUCKET, dataclasses.replace(resolved, pool=pool, direct=False))
    return client


def load_pool(path: Path) -> Any:
    """``ConnectionPool`` of another version of ``_http.py`` (one without relative imports)."""
    spec = importlib.util.spec_from_file_location("baseline_http", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["baseline_http"] = module
    spec.loader.exec_module(module)
    return module.ConnectionPool


def our_pool(endpoint: str, pool_class: Any) -> Any:
    parts = urlsplit(endpoint)
    return pool_class(
        "http", parts.hostname, parts.port, connect_timeout=10, read_timeout=20, ssl_context=None, max_idle=4
    )


def layer_gets(pool: Any, keys: list[str], buffer: bytearray) -> Callable[[], int]:
    view = memoryview(buffer)
    headers = {"Host": "127.0.0.1", "User-Agent": "bench", "Range": f"bytes=0-{len(buffer) - 1}"}

    def run() -> int:
        total = 0
        for key in keys:
            response = pool.request("GET", f"/{BUCKET}/{key}", headers)
            while count := response.body.readinto(view):
                total += count
            response.body.release_conn()
        return total

    return run


def urllib3_gets(endpoint: str, keys: list[str], buffer: bytearray) -> Callable[[], int]:
    parts = urlsplit(endpoint)
    pool = urllib3.HTTPConnectionPool(parts.hostname, parts.port, maxsize=4, retries=False)
    view = memoryview(buffer)
    headers = {"User-Agent": "bench", "Range": f"bytes=0-{len(buffer) - 1}"}

    def run() -> int:
        total = 0
        for key in keys:
            response = pool.urlopen("GET", f"/{BUCKET}/{key}", headers=headers, preload_content=False)
            while count := response.readinto(view):
                total += count
            response.release_conn()
        return total

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=2000)
    parser.add_argument("--kib", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--gib", type=float, default=1.0, help="size of the large object (0: skip)")
    parser.add_argument("--only", help="run only the contenders whose name contains this text")
    parser.add_argument(
        "--baseline-http",
        type=Path,
        help="an older _http.py (self-contained) to compare the HTTP layer alone with, in the same run",
    )
    arguments = parser.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    binary, notes = find_nginx(allow_apt=False)
    if binary is None:
        sys.exit(f"nginx is needed: {notes}")
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory) / "root"
        (root / BUCKET).mkdir(parents=True)
        pattern = os.urandom(16 * 1024 * 1024)
        size = arguments.kib * 1024
        keys = [f"small/{number:05d}" for number in range(arguments.objects)]
        (root / BUCKET / "small").mkdir()
        for number, key in enumerate(keys):
            offset = (number * 4099) % (len(pattern) - size)
            (root / BUCKET / key).write_bytes(pattern[offset : offset + size])
        large = int(arguments.gib * 1024**3)
        if large:
            with (root / BUCKET / "large").open("wb") as file:
                for offset in range(0, large, len(pattern)):
                    file.write(pattern[: min(len(pattern), large - offset)])
        with Nginx(binary, root, Path(directory) / "nginx") as nginx:
            endpoint = nginx.loopback_endpoint
            ours = S3Client(REGION, endpoint=endpoint, s3client_config=S3ClientConfig(force_path_style=True))
            theirs = urllib3_client(endpoint)
            assert ours._transport is not theirs._transport
            boto = boto3.session.Session().client(
                "s3", endpoint_url=endpoint, config=Config(region_name=REGION, s3={"addressing_style": "path"})
            )
            small = bytearray(size)

            def gets(client: S3Client) -> Callable[[], int]:
                def run() -> int:
                    total = 0
                    for key in keys:
                        stream = client.get_object_stream(BUCKET, key)
                        while count := stream.readinto(small):
                            total += count
                    return total

                return run

            def boto3_gets() -> int:
                return sum(len(boto.get_object(Bucket=BUCKET, Key=key)["Body"].read()) for key in keys)

            big = bytearray(8 * 1024 * 1024)

            def large_read(client: S3Client) -> Callable[[], int]:
                def run() -> int:
                    total = 0
                    stream = client.get_object_stream(BUCKET, "large")
                    while count := stream.readinto(big):
                        total += count
                    return total

                return run

            small_total, per_ms = size * len(keys), len(keys) / 1000
            small_per = (small_total, per_ms, "ms/GET")
            contenders: list[tuple[str, Callable[[], int], int, float, str]] = [
                (f"GET {arguments.kib} KiB, our HTTP core", gets(ours), small_total, per_ms, "ms/GET"),
                (f"GET {arguments.kib} KiB, urllib3 pool", gets(theirs), small_total, per_ms, "ms/GET"),
                (f"GET {arguments.kib} KiB, boto3 get_object", boto3_gets, small_total, per_ms, "ms/GET"),
            ]
            # The HTTP layer alone, no S3 transport: request + readinto of each object.
            layers: list[tuple[str, Any]] = [("our HTTP core", our_pool(endpoint, ConnectionPool))]
            if arguments.baseline_http is not None:
                layers.append((f"{arguments.baseline_http}", our_pool(endpoint, load_pool(arguments.baseline_http))))
            for label, pool in layers:
                contenders.append((f"HTTP layer alone, {label}", layer_gets(pool, keys, small), *small_per))
            contenders.append(("HTTP layer alone, urllib3", urllib3_gets(endpoint, keys, small), *small_per))
            if large:
                gib = large / 1024**3
                contenders += [
                    ("readinto 1 GiB, our HTTP core", large_read(ours), large, gib, "CPU-s/GiB"),
                    ("readinto 1 GiB, urllib3 pool", large_read(theirs), large, gib, "CPU-s/GiB"),
                ]
            for client in (ours, theirs):  # warm up: endpoint resolution, the first connection
                b"".join(client.get_object_stream(BUCKET, keys[0]))
            boto.get_object(Bucket=BUCKET, Key=keys[0])["Body"].read()
            if arguments.only:
                contenders = [contender for contender in contenders if arguments.only in contender[0]]
            samples: dict[str, list[float]] = {name: [] for name, *_ in contenders}
            for round_number in range(arguments.rounds):
                order = contenders[round_number % len(contenders) :] + contenders[: round_number % len(contenders)]
                for name, run, expected, per, _ in order:
                    before = cpu_seconds()
                    moved = run()
                    spent = cpu_seconds() - before
                    if moved != expected:
                        sys.exit(f"{name}: moved {moved} bytes, expected {expected}")
                    samples[name].append(spent / per)
            print(f"{arguments.rounds} rounds, load average {os.getloadavg()[0]:.2f}")
            for name, _, _, _, unit in contenders:
                values = samples[name]
                print(
                    f"{name:40} median {statistics.median(values):7.3f} {unit}"
                    f"  (min {min(values):.3f}, max {max(values):.3f})"
                )


if __name__ == "__main__":
    main()
