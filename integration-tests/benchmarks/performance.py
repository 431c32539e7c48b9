"""``--report``: the project's performance page from one run, ``docs/pages/performance.md``, with
its plots (``docs/pages/performance/*.png``, matplotlib) and the raw numbers
(``docs/pages/performance/results.json``).

The page leads with s3torch against the upstream, pair by pair (the ``pairs`` of each scenario:
the same work done by both), then every scenario's full table, the scaling curve and the prefix
strategies, the machine, the versions and the load average of the run.
"""

from __future__ import annotations

import math
import os
import platform
import sys
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

from measure import Summary
from report import ScenarioResult, evaluate, rss_text, write_json
from scenario import Ratio
from settings import Settings

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "pages" / "performance.md"
ASSETS = PAGE.with_suffix("")  # docs/pages/performance/

S3TORCH, UPSTREAM, OTHER = "s3torch", "upstream", "others"
COLORS = {S3TORCH: "#1f77b4", UPSTREAM: "#ff7f0e", OTHER: "#9e9e9e"}
_OTHERS = ("boto3", "curl", "s3fs", "TorchCheckpointIO")


def family(name: str) -> str:
    if name.startswith(f"{UPSTREAM} "):
        return UPSTREAM
    if any(other in name for other in _OTHERS):
        return OTHER
    return S3TORCH


def _number(value: float, digits: int = 0) -> str:
    return "-" if math.isnan(value) else f"{value:,.{digits}f}"


def _rate(summary: Summary, unit: str) -> tuple[float, float, float]:
    if unit == "objects":
        low, high = summary.objects_per_second_range
        return summary.objects_per_second, low, high
    low, high = summary.megabytes_per_second_range
    return summary.megabytes_per_second, low, high


def _cost(summary: Summary, unit: str) -> float:
    return summary.cpu_ms_per_object if unit == "objects" else summary.cpu_seconds_per_gib


def _units(unit: str) -> tuple[str, str]:
    return ("objects/s", "CPU ms/object") if unit == "objects" else ("MB/s", "CPU-s/GiB")


def _goal(result: ScenarioResult, ours: str, theirs: str, metric: str) -> str:
    summaries = {summary.name: summary for summary in result.summaries}
    for check in result.checks:
        if (
            isinstance(check, Ratio)
            and (check.numerator, check.denominator, check.metric) == (ours, theirs, metric)
            and (check.at_least is not None or check.at_most is not None)
        ):
            verdict = evaluate(check, summaries, result.unit)
            target = f">= {check.at_least}x" if check.at_least is not None else f"<= {check.at_most}x"
            return f"{target}: {verdict.status}"
    return ""


def _table(rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "|".join("---" for _ in rows[0]) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows[1:]]
    return lines


def _machine() -> list[str]:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        memory_kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{memory_kib / 2**20:.0f} GiB"
    except (OSError, ValueError, IndexError):
        memory = "?"
    return [
        f"{os.cpu_count()} CPUs ({model}), {memory} of memory, {platform.platform()}, Python {sys.version.split()[0]}"
    ]


def _pairs_table(results: list[ScenarioResult]) -> list[str]:
    rows = [
        [
            "scenario",
            "server",
            "work",
            "s3torch",
            "upstream",
            "ratio",
            "CPU s3torch / upstream",
            "CPU ratio",
            "peak RSS MiB (+in run) s3torch / upstream",
            "goals",
        ]
    ]
    for result in results:
        summaries = {summary.name: summary for summary in result.summaries}
        for ours, theirs in result.pairs:
            if ours not in summaries:
                continue
            rate_unit, cost_unit = _units(result.unit)
            mine = summaries[ours]
            other = summaries.get(theirs)
            if other is None:
                rate = f"{_number(_rate(mine, result.unit)[0])} {rate_unit}"
                rows.append([result.key, result.store or "", ours, rate, "not measured", "-", "-", "-", "-", ""])
                continue
            ratio = _rate(mine, result.unit)[0] / _rate(other, result.unit)[0]
            cost_ratio = _cost(mine, result.unit) / _cost(other, result.unit)
            goals = "; ".join(
                goal
                for goal in (
                    _goal(result, ours, theirs, "throughput"),
                    _goal(result, ours, theirs, "cpu").replace(":", " CPU:", 1),
                )
                if goal
            )
            rows.append(
                [
                    result.key,
                    result.store or "",
                    ours,
                    f"{_number(_rate(mine, result.unit)[0])} {rate_unit}",
                    f"{_number(_rate(other, result.unit)[0])}",
                    f"**{ratio:.2f}x**",
                    f"{_number(_cost(mine, result.unit), 3)} / {_number(_cost(other, result.unit), 3)} {cost_unit}",
                    f"{cost_ratio:.2f}x",
                    f"{rss_text(mine)} / {rss_text(other)}",
                    goals,
                ]
            )
    return _table(rows) if len(rows) > 1 else ["(no pair was measured)"]


def _scenario_section(result: ScenarioResult, plots: dict[str, str]) -> list[str]:
    lines = [f"### {result.title}", "", f"`{result.key}`, server: {result.store or '-'}", ""]
    if result.skipped is not None:
        return [*lines, f"Skipped: {result.skipped}", ""]
    if result.error is not None:
        lines += [f"**Failed**: {result.error}", ""]
    if result.summaries:
        rate_unit, cost_unit = _units(result.unit)
        upstream_of = {ours: theirs for ours, theirs in result.pairs}
        summaries = {summary.name: summary for summary in result.summaries}
        rows = [
            [
                "contender",
                rate_unit,
                "min-max",
                cost_unit,
                "peak RSS MiB (+in run)",
                "first s",
                "requests",
                "vs upstream",
            ]
        ]
        for summary in result.summaries:
            rate, low, high = _rate(summary, result.unit)
            versus = ""
            theirs = upstream_of.get(summary.name)
            if theirs in summaries:
                versus = f"{rate / _rate(summaries[theirs], result.unit)[0]:.2f}x"
            rows.append(
                [
                    summary.name,
                    _number(rate),
                    f"{_number(low)}-{_number(high)}",
                    _number(_cost(summary, result.unit), 3 if result.unit == "objects" else 2),
                    rss_text(summary),
                    _number(summary.first_seconds, 3),
                    _number(summary.requests),
                    versus,
                ]
            )
        lines += [*_table(rows), ""]
    for title, rows in result.tables:
        lines += [f"**{title}**", "", *_table(rows), ""]
    if result.checks and result.summaries:
        summaries = {summary.name: summary for summary in result.summaries}
        lines += [
            f"- {verdict.status}: {verdict.text}"
            for verdict in (evaluate(check, summaries, result.unit) for check in result.checks)
        ]
    lines += [f"- note: {note}" for note in result.notes]
    if result.key in plots:
        lines += ["", f"![{result.key}](performance/{plots[result.key]})"]
    return [*lines, ""]


REAL_BUCKET = """\
## Against a real bucket

The same harness runs against any S3 store: set `S3TORCH_BENCH_BUCKET` (and
`S3TORCH_BENCH_REGION`; `S3TORCH_BENCH_ENDPOINT` for an S3-compatible store, with
`S3TORCH_BENCH_PATH_STYLE`), with credentials in the standard AWS variables or profile. No local
server starts; the `*-remote` scenarios (sequential read, ranges, small GETs, datasets, write,
S3Checkpoint, DCP, Lightning) upload what they read under `S3TORCH_BENCH_PREFIX`
(`s3torch-bench/<random>/` by default) first, unmeasured, and delete it at the end:

```
S3TORCH_BENCH_BUCKET=my-bucket S3TORCH_BENCH_REGION=us-east-1 nox -s bench -- --report
```

What differs from the local servers: the network, not loopback, is the limit (an instance's
bandwidth, S3's ~80-100 MB/s per connection and its tens of milliseconds to the first byte, much
like the s3-like profile); writes are no longer server-bound, so their MB/s become comparable;
S3 bills the requests (a full run sends a few hundred thousand GETs); request rates per prefix
are S3's (`503 SlowDown` under bursts; the prefix strategies matter there); and the server CPU
columns are empty. Run the client on an instance in the bucket's region, and more than once:
shared networks vary more than this machine's load.
"""


def _plots(results: list[ScenarioResult]) -> dict[str, str]:
    """Per-scenario bar charts (throughput and CPU) and the scaling curve; {scenario key: file}."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        print(f"benchmark: no plots, matplotlib is not installed ({error})", file=sys.stderr)
        return {}
    ASSETS.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    for result in results:
        if not result.summaries:
            continue
        rate_unit, cost_unit = _units(result.unit)
        names = [summary.name for summary in result.summaries]
        figure, axes = plt.subplots(1, 2, figsize=(13, 0.42 * len(names) + 1.4), sharey=True)
        for axis, values, label in (
            (
                axes[0],
                [_rate(summary, result.unit)[0] for summary in result.summaries],
                rate_unit + " (higher is better)",
            ),
            (axes[1], [_cost(summary, result.unit) for summary in result.summaries], cost_unit + " (lower is better)"),
        ):
            axis.barh(range(len(names)), values, color=[COLORS[family(name)] for name in names])
            axis.set_xlabel(label)
            axis.grid(axis="x", alpha=0.3)
        low_high = [_rate(summary, result.unit) for summary in result.summaries]
        axes[0].errorbar(  # the min-max of the rounds
            [value[0] for value in low_high],
            range(len(names)),
            xerr=[[value[0] - value[1] for value in low_high], [value[2] - value[0] for value in low_high]],
            fmt="none",
            ecolor="black",
            capsize=3,
            linewidth=1,
        )
        axes[0].set_yticks(range(len(names)), names, fontsize=8)
        axes[0].invert_yaxis()
        figure.suptitle(result.title, fontsize=10)
        handles = [plt.Rectangle((0, 0), 1, 1, color=color) for color in COLORS.values()]
        figure.legend(handles, list(COLORS), loc="lower right", fontsize=8, ncol=3)
        figure.tight_layout(rect=(0, 0.04, 1, 1))
        name = f"{result.key}.png"
        figure.savefig(ASSETS / name, dpi=90)
        plt.close(figure)
        files[result.key] = name
    scaling = next((result for result in results if result.key.startswith("scaling") and result.summaries), None)
    if scaling is not None:
        series: dict[str, list[tuple[int, float, float]]] = {}
        for summary in scaling.summaries:
            label, _, count_text = summary.name.rpartition(", ")
            count = int(count_text.split()[0].replace(",", ""))
            series.setdefault(label, []).append((count, summary.objects_per_second, summary.first_seconds))
        figure, axes = plt.subplots(1, 2, figsize=(12, 4.2))
        for label, points in series.items():
            points.sort()
            style = "-" if family(label) == S3TORCH else "--"
            color = COLORS[family(label)]
            marker = "o" if "Iterable" in label else "s"
            axes[0].plot([p[0] for p in points], [p[1] for p in points], style, marker=marker, color=color, label=label)
            axes[1].plot([p[0] for p in points], [p[2] for p in points], style, marker=marker, color=color, label=label)
        for axis, label in ((axes[0], "objects/s, listing included"), (axes[1], "seconds to the first sample")):
            axis.set_xscale("log")
            axis.set_xlabel("objects under the prefix")
            axis.set_ylabel(label)
            axis.grid(alpha=0.3)
        axes[1].set_yscale("log")
        axes[0].legend(fontsize=7)
        figure.suptitle(scaling.title, fontsize=10)
        figure.tight_layout()
        figure.savefig(ASSETS / "scaling-curve.png", dpi=90)
        plt.close(figure)
        files["scaling-curve"] = "scaling-curve.png"
    return files


def write_page(header: list[str], settings: Settings, results: list[ScenarioResult], command: str) -> Path:
    """Write the page, its plots and the raw numbers; returns the page's path."""
    ASSETS.mkdir(parents=True, exist_ok=True)
    for old in ASSETS.glob("*.png"):
        old.unlink()
    plots = _plots(results)
    write_json(ASSETS / "results.json", header, asdict(settings), results)
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    kind = (
        "a **quick smoke run** (small sizes, one round, on a busy machine): its numbers are not"
        " a measurement, only proof that every row runs"
        if settings.quick
        else f"a full run, medians of {settings.rounds} interleaved rounds"
    )
    lines = [
        "# Performance",
        "",
        f"Generated by `{command}` on {now}: {kind}. Every scenario runs s3torch, the upstream"
        " `s3torchconnector` and, where it makes sense, plain boto3, s3fs and curl, interleaved in one run"
        " against the same local servers (each round runs every contender once, the starting one rotating);"
        " the tables show medians with the min-max of the rounds. The raw numbers, every sample, are in"
        " [performance/results.json](performance/results.json).",
        "",
        "- **MB** is 10^6 bytes, **GiB** 2^30. **CPU** is user + system of the benchmark process (all its"
        " threads, the upstream's native ones included) and of its DataLoader workers, per GiB or per object;"
        " the servers run in other processes and are not counted.",
        "- **Peak RSS**: the process's high-water mark during the run (reset before each), plus its DataLoader"
        " workers' private memory (sampled); in brackets, how much of it the run added: the peak includes"
        " what the scenario itself holds (a checkpoint's state dict), the growth is the contender's own.",
        "- **Servers**: reads and loads from nginx (GET/Range only): `loopback` without limits, `s3-like` with"
        " 20 ms to the first byte per request and 80 MB/s per connection; saves to moto, which limits their"
        " speed (compare the client CPU per GiB of writes, not their MB/s); listings of the scaling row from"
        " `lister.py` behind nginx. Each row names its server.",
        "- **Goals** are issue 12's: s3torch / upstream ratios; `met` or `MISSED` on this run.",
        "",
        "## Machine and versions",
        "",
        *[f"- {line}" for line in _machine()],
        *[f"- {line}" for line in header if not line.startswith(("s3torch benchmark", "CPU = "))],
        "",
        "## s3torch against the upstream",
        "",
        *_pairs_table(results),
        "",
    ]
    if "scaling-curve" in plots:
        lines += ["![scaling](performance/scaling-curve.png)", ""]
    lines += ["## Every scenario", ""]
    for result in results:
        lines += _scenario_section(result, plots)
    lines += [REAL_BUCKET]
    PAGE.write_text("\n".join(lines).rstrip() + "\n")
    return PAGE
