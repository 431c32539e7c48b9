"""s3torch benchmarks (``nox -s bench``): s3torch-client side by side with plain boto3 and curl.

Starts its servers on 127.0.0.1 (nginx for reads, moto for writes), or uses the store named by
``S3TORCH_BENCH_BUCKET`` (and ``S3TORCH_BENCH_ENDPOINT``); runs every selected scenario with its
contenders interleaved; prints one table of medians with the target ratios. See README.md.

Exit status: 0 when every scenario ran (skips are printed, not failures), 1 when a scenario
failed (or, with ``--strict``, a target was missed), 2 for bad options.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import traceback
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import scenarios
import upstream
from fixtures import ReadObjects, make_pattern
from measure import BenchmarkError, Summary, progress_line, run_interleaved
from performance import write_page
from report import ScenarioResult, render, write_json
from scenario import REGISTRY, BenchContext, Registration, Skip, selected
from servers import (
    LOOPBACK,
    MOTO,
    REMOTE,
    S3_LIKE,
    S3_LIKE_BYTES_PER_SECOND_PER_CONNECTION,
    S3_LIKE_FIRST_BYTE_DELAY_SECONDS,
    Nginx,
    Store,
    find_nginx,
    moto_version,
    process_tree_cpu,
)
from settings import KIB, MIB, Settings, parse

from s3torch.client import S3ClientConfig
from s3torch_test_support.moto_server import MotoServer, MotoServerError

LOCAL_BUCKET = "s3torch-bench"


def _local_environment() -> None:
    """Dummy credentials, and nothing that could send a request anywhere but 127.0.0.1."""
    os.environ["AWS_ACCESS_KEY_ID"] = "s3torch-bench"
    os.environ["AWS_SECRET_ACCESS_KEY"] = "s3torch-bench-secret"
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        os.environ.pop(name, None)
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    for name in ("NO_PROXY", "no_proxy"):
        existing = os.environ.get(name, "")
        os.environ[name] = ",".join(filter(None, [existing, "127.0.0.1", "localhost"]))


def _version(distribution: str) -> str:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "not installed"


def _program_version(argv: list[str]) -> str:
    try:
        output = subprocess.run(argv, capture_output=True, text=True, check=False)
    except OSError:
        return "?"
    words = (output.stdout or output.stderr).split()
    return words[1] if len(words) > 1 else "?"


def _header(
    settings: Settings, context: BenchContext, setup_notes: list[str], load_before: tuple[float, float, float]
) -> list[str]:
    config = S3ClientConfig()
    tools = [
        f"s3torch-client {_version('s3torch-client')}"
        f" (concurrency {config.concurrency}, part_size {config.part_size // MIB} MiB)",
        f"boto3 {_version('boto3')}",
        f"botocore {_version('botocore')}",
        f"urllib3 {_version('urllib3')}",
    ]
    tools.append(upstream.describe())
    tools += [f"s3fs {_version('s3fs')}", f"torch {_version('torch')}"]
    if context.curl:
        tools.append(f"curl {_program_version([context.curl, '--version'])}")
    lines = [
        f"s3torch benchmark: medians of {settings.rounds} interleaved round(s) (each round runs every contender"
        " once, in turn)",
        f"large object {settings.size / MIB:,.0f} MiB; small objects {settings.small_objects:,}"
        f" x {settings.small_object_size / KIB:,.0f} KiB. MB = 10^6 bytes.",
        "CPU = user+sys of the benchmark process during a run, all its threads (curl: the child's own rusage);"
        " the servers run in other processes and are not counted.",
        f"machine: {os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()};"
        f" load average {load_before[0]:.2f} at the start, {os.getloadavg()[0]:.2f} at the end"
        " (other work on the machine skews every number)",
        f"clients: {', '.join(tools)}",
    ]
    for profile, store in context.stores.items():
        lines.append(f"store {profile}: {store.description}")
    for profile, reason in context.unavailable.items():
        lines.append(f"store {profile}: UNAVAILABLE, {reason}")
    lines += [f"setup: {note}" for note in setup_notes]
    return lines


def _run(registration: Registration, context: BenchContext) -> ScenarioResult:
    print(f"benchmark: {registration.key}: {registration.description}", file=sys.stderr, flush=True)
    description = registration.description
    result = ScenarioResult(registration.key, description[:1].upper() + description[1:])
    try:
        scenario = registration.build(context)
    except Skip as skip:
        result.skipped = str(skip)
        print(f"  skipped: {skip}", file=sys.stderr, flush=True)
        return result
    except Exception as error:  # noqa: BLE001 - one broken scenario must not hide the others
        traceback.print_exc()
        result.error = f"setup failed: {type(error).__name__}: {error}"
        return result
    result.title, result.unit, result.checks, result.notes = (
        scenario.title,
        scenario.unit,
        scenario.checks,
        scenario.notes,
    )
    result.pairs, result.tables, result.store = scenario.pairs, scenario.tables, registration.store
    try:
        store = context.stores.get(registration.store)
        samples = run_interleaved(
            scenario.contenders,
            scenario.rounds or context.settings.rounds,
            progress_line(registration.key),
            server_cpu=store.server_cpu if store is not None else None,
            server_requests=store.server_requests if store is not None else None,
        )
        result.summaries = [
            Summary(contender.name, tuple(samples[contender.name])) for contender in scenario.contenders
        ]
    except Exception as error:  # noqa: BLE001
        traceback.print_exc()
        result.error = f"{type(error).__name__}: {error}"
    finally:
        scenario.close()
    return result


def _start_local_servers(
    stack: contextlib.ExitStack, settings: Settings, workdir: Path, root: Path, needed: set[str]
) -> tuple[dict[str, Store], dict[str, str], list[str]]:
    stores: dict[str, Store] = {}
    unavailable: dict[str, str] = {}
    notes: list[str] = []
    region = settings.region
    if needed & {LOOPBACK, S3_LIKE}:
        binary, nginx_notes = find_nginx(settings.allow_apt)
        notes += nginx_notes
        if binary is None:
            for profile in needed & {LOOPBACK, S3_LIKE}:
                unavailable[profile] = "nginx is not installed (Debian: apt-get install nginx libnginx-mod-http-echo)"
        else:
            try:
                nginx = stack.enter_context(Nginx(binary, root, workdir / "nginx", listed_bucket=LOCAL_BUCKET))
            except BenchmarkError as error:
                for profile in needed & {LOOPBACK, S3_LIKE}:
                    unavailable[profile] = f"nginx did not start: {error}"
            else:
                server_cpu = process_tree_cpu(nginx.pid) if nginx.pid is not None else None
                requests = nginx.requests  # one access log for both ports: a scenario uses one
                stores[LOOPBACK] = Store(
                    LOOPBACK,
                    nginx.loopback_endpoint,
                    LOCAL_BUCKET,
                    region,
                    True,
                    f"nginx {binary.version} at {nginx.loopback_endpoint}, no limits"
                    + (
                        f" (bucket listings: lister.py on port {nginx.lister_port}, behind it)"
                        if nginx.lister_port
                        else ""
                    ),
                    server_cpu,
                    requests,
                )
                if nginx.s3_like_endpoint is not None:
                    stores[S3_LIKE] = Store(
                        S3_LIKE,
                        nginx.s3_like_endpoint,
                        LOCAL_BUCKET,
                        region,
                        True,
                        f"nginx {binary.version} at {nginx.s3_like_endpoint},"
                        f" {1000 * S3_LIKE_FIRST_BYTE_DELAY_SECONDS:.0f} ms first-byte delay per request"
                        f" (echo_sleep), {S3_LIKE_BYTES_PER_SECOND_PER_CONNECTION / 1e6:.0f} MB/s per connection"
                        " (limit_rate)",
                        server_cpu,
                        requests,
                    )
                elif S3_LIKE in needed:
                    unavailable[S3_LIKE] = nginx.s3_like_unavailable or "not configured"
    if MOTO in needed:
        moto = moto_version()
        if moto is None:
            unavailable[MOTO] = "moto is not installed (pip install 'moto[server]')"
        else:
            try:
                server = stack.enter_context(MotoServer(in_child_process=True, log_path=workdir / "moto.log"))
            except MotoServerError as error:
                unavailable[MOTO] = str(error)
            else:
                stores[MOTO] = Store(
                    MOTO,
                    server.endpoint,
                    LOCAL_BUCKET,
                    region,
                    True,
                    f"moto {moto} at {server.endpoint}, in its own process",
                    process_tree_cpu(server.pid) if server.pid is not None else None,
                )
    return stores, unavailable, notes


def main(argv: list[str] | None = None) -> int:
    settings, arguments = parse(argv)
    not_loaded = scenarios.load()
    if arguments.list:
        for registration in REGISTRY:
            mode = "real store" if registration.store == REMOTE else "local servers"
            print(f"{registration.key:24} {mode:14} {registration.description}")
        for name, reason in not_loaded.items():
            print(f"{name + '-*':24} {'-':14} not available: {reason}")
        return 0
    registrations = selected(settings.remote, settings.only)
    for name, reason in not_loaded.items():
        print(f"benchmark: scenarios.{name} not loaded, its rows are skipped: {reason}", file=sys.stderr)
    if not registrations and not not_loaded:
        print(f"benchmark: no scenario matches {list(settings.only)} (see --list)", file=sys.stderr)
        return 2
    needed = {registration.store for registration in registrations}
    load_before = os.getloadavg()

    with contextlib.ExitStack() as stack:
        workdir = Path(tempfile.mkdtemp(prefix="s3torch-bench-"))
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        pattern = make_pattern()
        if settings.remote:
            assert settings.bucket is not None
            store = Store(
                REMOTE,
                settings.endpoint,
                settings.bucket,
                settings.region,
                settings.path_style,
                f"s3://{settings.bucket}/{settings.prefix} at {settings.endpoint or 'AWS S3'}"
                f" ({settings.region}, {'path' if settings.path_style else 'virtual-hosted'} style)",
            )
            stores = {REMOTE: store}
            unavailable: dict[str, str] = {}
            setup_notes = [f"keys under {settings.prefix} are deleted at the end"]
            read_objects = ReadObjects(settings, pattern, settings.prefix, None, store)
            key_prefix = settings.prefix
        else:
            _local_environment()
            root = workdir / "www"
            (root / LOCAL_BUCKET).mkdir(parents=True)
            stores, unavailable, setup_notes = _start_local_servers(stack, settings, workdir, root, needed)
            read_objects = ReadObjects(settings, pattern, "", root / LOCAL_BUCKET, None)
            key_prefix = ""
        stack.callback(read_objects.close)
        curl = shutil.which("curl")
        context = BenchContext(settings, stores, unavailable, pattern, read_objects, key_prefix, curl)
        if curl is None:
            setup_notes.append("curl is not on PATH: the curl rows are skipped")
        for profile, reason in unavailable.items():
            print(f"benchmark: store {profile} unavailable: {reason}", file=sys.stderr, flush=True)

        results = [_run(registration, context) for registration in registrations]
        results += [
            ScenarioResult(f"{name}-*", f"Scenarios of scenarios/{name}.py", skipped=f"not loaded: {reason}")
            for name, reason in not_loaded.items()
        ]

    header = _header(settings, context, setup_notes, load_before)
    text, counts = render(header, results)
    print()
    print(text, flush=True)
    if settings.json_path is not None:
        write_json(settings.json_path, header, dataclasses.asdict(settings), results)
        print(f"results written to {settings.json_path}")
    if settings.report:
        command = " ".join(["nox -s bench --", *(sys.argv[1:] if argv is None else argv)])
        page = write_page(header, settings, results, command)
        print(f"performance page written to {page} (plots and results.json in {page.with_suffix('')})")
    if any(result.error is not None for result in results):
        return 1
    return 1 if settings.strict and counts["MISSED"] else 0


if __name__ == "__main__":
    sys.exit(main())
