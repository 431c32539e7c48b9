"""What to benchmark and where: command-line options over ``S3TORCH_BENCH_*`` environment variables."""

from __future__ import annotations

import argparse
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

KIB = 1 << 10
MIB = 1 << 20
GIB = 1 << 30

DEFAULT_SIZE_MIB = 1024
DEFAULT_ROUNDS = 3
DEFAULT_SMALL_OBJECTS = 2000
DEFAULT_SMALL_OBJECT_KIB = 100
#: ``--quick``: a smoke run of the whole table in well under a minute, numbers only indicative.
QUICK_SIZE_MIB = 128
QUICK_ROUNDS = 1
QUICK_SMALL_OBJECTS = 300


class SettingsError(ValueError):
    """An option or environment variable has an unusable value."""


@dataclass(frozen=True)
class Settings:
    size: int  # bytes of the large object that is read and written
    rounds: int
    small_objects: int
    small_object_size: int
    # A real store instead of the local servers (all None/default: local servers).
    endpoint: str | None
    bucket: str | None
    region: str
    path_style: bool
    prefix: str  # keys created in a real store live under this prefix and are deleted afterwards
    allow_apt: bool
    only: tuple[str, ...]  # fnmatch patterns of scenario keys; empty: all
    json_path: Path | None
    strict: bool  # exit 1 when a target is missed
    quick: bool = False  # a smoke run: every scenario, small sizes
    report: bool = False  # write docs/pages/performance.md, its plots and its raw numbers

    @property
    def remote(self) -> bool:
        return self.bucket is not None


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        raise SettingsError(f"{name}={value!r} is not an integer") from None
    if number < 1:
        raise SettingsError(f"{name}={value!r} must be at least 1")
    return number


def _env_flag(name: str) -> bool | None:
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return None
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name}={value!r} is not a boolean (use 1 or 0)")


def _positive(text: str) -> int:
    number = int(text)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def parser() -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(
        prog="run.py",
        description="s3torch benchmarks: s3torch-client side by side with boto3 and curl, as one table."
        " Every option also has an S3TORCH_BENCH_* environment variable (see README.md);"
        " options win.",
    )
    result.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: {QUICK_SIZE_MIB} MiB, {QUICK_ROUNDS} round, {QUICK_SMALL_OBJECTS} small objects"
        " (S3TORCH_BENCH_QUICK=1); explicit sizes still win",
    )
    result.add_argument("--size-mib", type=_positive, help="size of the large object (S3TORCH_BENCH_SIZE_MIB)")
    result.add_argument("--rounds", type=_positive, help="interleaved rounds per scenario (S3TORCH_BENCH_ROUNDS)")
    result.add_argument("--objects", type=_positive, help="small objects per request round (S3TORCH_BENCH_OBJECTS)")
    result.add_argument("--object-kib", type=_positive, help="size of each small object (S3TORCH_BENCH_OBJECT_KIB)")
    result.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="PATTERN",
        help="run only scenarios whose key matches (fnmatch; repeat or comma-separate; S3TORCH_BENCH_ONLY)",
    )
    result.add_argument("--list", action="store_true", help="list the scenarios and exit")
    result.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON (S3TORCH_BENCH_JSON)")
    result.add_argument(
        "--report",
        action="store_true",
        help="write the performance page: docs/pages/performance.md, its PNG plots and the raw numbers as JSON",
    )
    result.add_argument(
        "--strict", action="store_true", help="exit with status 1 when a target is missed (S3TORCH_BENCH_STRICT=1)"
    )
    return result


def settings_from(arguments: argparse.Namespace) -> Settings:
    quick = arguments.quick or bool(_env_flag("S3TORCH_BENCH_QUICK"))
    size_mib = arguments.size_mib or _env_int("S3TORCH_BENCH_SIZE_MIB", QUICK_SIZE_MIB if quick else DEFAULT_SIZE_MIB)
    rounds = arguments.rounds or _env_int("S3TORCH_BENCH_ROUNDS", QUICK_ROUNDS if quick else DEFAULT_ROUNDS)
    small_objects = arguments.objects or _env_int(
        "S3TORCH_BENCH_OBJECTS", QUICK_SMALL_OBJECTS if quick else DEFAULT_SMALL_OBJECTS
    )
    object_kib = arguments.object_kib or _env_int("S3TORCH_BENCH_OBJECT_KIB", DEFAULT_SMALL_OBJECT_KIB)

    endpoint = os.environ.get("S3TORCH_BENCH_ENDPOINT", "").strip() or None
    bucket = os.environ.get("S3TORCH_BENCH_BUCKET", "").strip() or None
    if endpoint is not None and bucket is None:
        raise SettingsError("S3TORCH_BENCH_ENDPOINT is set but S3TORCH_BENCH_BUCKET is not: name the bucket to use")
    region = os.environ.get("S3TORCH_BENCH_REGION", "").strip() or "us-east-1"
    path_style = _env_flag("S3TORCH_BENCH_PATH_STYLE")
    prefix = os.environ.get("S3TORCH_BENCH_PREFIX", "").strip() or f"s3torch-bench/{uuid.uuid4().hex[:12]}/"
    if not prefix.endswith("/"):
        prefix += "/"

    only_values = arguments.only or [os.environ.get("S3TORCH_BENCH_ONLY", "")]
    only = tuple(pattern.strip() for value in only_values for pattern in value.split(",") if pattern.strip())
    json_value = arguments.json or (
        Path(os.environ["S3TORCH_BENCH_JSON"]) if os.environ.get("S3TORCH_BENCH_JSON") else None
    )
    return Settings(
        size=size_mib * MIB,
        rounds=rounds,
        small_objects=small_objects,
        small_object_size=object_kib * KIB,
        endpoint=endpoint,
        bucket=bucket,
        region=region,
        # Path style is what S3-compatible endpoints want; real S3 (no endpoint) takes virtual-hosted.
        path_style=path_style if path_style is not None else (bucket is None or endpoint is not None),
        prefix=prefix,
        # Any value but an explicit "no" opts out of installing packages.
        allow_apt=os.environ.get("S3TORCH_BENCH_NO_APT", "").strip().lower() in ("", "0", "false", "no", "off"),
        only=only,
        json_path=json_value,
        strict=arguments.strict or bool(_env_flag("S3TORCH_BENCH_STRICT")),
        quick=quick,
        report=arguments.report,
    )


def parse(argv: Sequence[str] | None = None) -> tuple[Settings, argparse.Namespace]:
    arguments = parser().parse_args(argv)
    try:
        return settings_from(arguments), arguments
    except SettingsError as error:
        parser().error(str(error))
        raise  # unreachable: error() exits
