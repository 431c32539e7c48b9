"""The table: one section per scenario, its contenders' medians, then its ratios and targets."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from measure import Summary
from scenario import Bound, Check, Ratio, Unit

Status = Literal["met", "MISSED", "info", "n/a"]


@dataclass
class ScenarioResult:
    key: str
    title: str
    unit: Unit = "bytes"
    summaries: list[Summary] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: str | None = None
    error: str | None = None
    pairs: list[tuple[str, str]] = field(default_factory=list)
    tables: list[tuple[str, list[list[str]]]] = field(default_factory=list)
    store: str | None = None


@dataclass(frozen=True)
class Verdict:
    text: str
    status: Status


def _number(value: float, digits: int = 0) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:,.{digits}f}"


def rss_text(summary: Summary) -> str:
    """Peak RSS, and how much of it the run added, in MiB: "1,210 (+35)"."""
    return f"{_number(summary.peak_rss_mib)} (+{_number(summary.rss_growth_mib)})"


def _cpu_cost(summary: Summary, unit: Unit) -> tuple[float, str]:
    if unit == "objects":
        return summary.cpu_ms_per_object, "ms CPU/object"
    return summary.cpu_seconds_per_gib, "CPU-s/GiB"


def _evaluate_ratio(check: Ratio, summaries: dict[str, Summary], unit: Unit) -> Verdict:
    label = f"{check.numerator} / {check.denominator}"
    missing = [name for name in (check.numerator, check.denominator) if name not in summaries]
    if missing:
        return Verdict(f"{label}: n/a ({', '.join(missing)} not measured)", "n/a")
    numerator, denominator = summaries[check.numerator], summaries[check.denominator]
    if check.metric == "cpu":
        ratio, metric = _cpu_cost(numerator, unit)[0] / _cpu_cost(denominator, unit)[0], "CPU"
    elif unit == "objects":
        ratio, metric = numerator.objects_per_second / denominator.objects_per_second, "objects/s"
    else:
        ratio, metric = numerator.megabytes_per_second / denominator.megabytes_per_second, "MB/s"
    text = f"{label}: {ratio:.2f}x {metric}"
    if check.at_least is None and check.above is None and check.at_most is None:
        return Verdict(f"{text}  ({check.reference})" if check.reference else text, "info")
    if check.at_least is not None:
        met, target = ratio >= check.at_least, f">= {check.at_least}x"
    elif check.at_most is not None:
        met, target = ratio <= check.at_most, f"<= {check.at_most}x"
    else:
        met, target = ratio > (check.above or 0.0), f"> {check.above}x"
    if check.cpu_at_most is not None:
        cost = numerator.cpu_seconds_per_gib
        met = met and cost <= check.cpu_at_most
        target += f" at <= {check.cpu_at_most} CPU-s/GiB (is {cost:.2f})"
    return Verdict(f"{text}  (target {target})", "met" if met else "MISSED")


def _evaluate_bound(check: Bound, summaries: dict[str, Summary], unit: Unit) -> Verdict:
    if check.contender not in summaries:
        return Verdict(f"{check.contender}: n/a (not measured)", "n/a")
    cost, metric = _cpu_cost(summaries[check.contender], unit)
    text = f"{check.contender}: {cost:.3f} {metric}"
    if check.at_most is not None:
        return Verdict(f"{text}  (target <= {check.at_most})", "met" if cost <= check.at_most else "MISSED")
    if check.about is not None:
        return Verdict(f"{text}  (reference ~ {check.about})", "info")
    return Verdict(text, "info")


def evaluate(check: Check, summaries: dict[str, Summary], unit: Unit) -> Verdict:
    if isinstance(check, Ratio):
        return _evaluate_ratio(check, summaries, unit)
    return _evaluate_bound(check, summaries, unit)


def _rows(result: ScenarioResult) -> list[list[str]]:
    if result.unit == "objects":
        header = [
            "contender",
            "objects/s",
            "CPU ms/object",
            "MB/s",
            "CPU-s/GiB",
            "server CPU ms/object",
            "requests",
            "first s",
            "peak RSS MiB (+in run)",
            "wall s",
        ]
        rows = [
            [
                summary.name,
                _number(summary.objects_per_second),
                _number(summary.cpu_ms_per_object, 3),
                _number(summary.megabytes_per_second),
                _number(summary.cpu_seconds_per_gib, 2),
                _number(summary.server_cpu_ms_per_object, 3),
                _number(summary.requests),
                _number(summary.first_seconds, 3),
                rss_text(summary),
                _number(summary.wall, 2),
            ]
            for summary in result.summaries
        ]
    else:
        header = [
            "contender",
            "MB/s",
            "MB/s min-max",
            "CPU-s/GiB",
            "server CPU-s/GiB",
            "requests",
            "peak RSS MiB (+in run)",
            "wall s",
        ]
        rows = []
        for summary in result.summaries:
            low, high = summary.megabytes_per_second_range
            rows.append(
                [
                    summary.name,
                    _number(summary.megabytes_per_second),
                    f"{_number(low)}-{_number(high)}",
                    _number(summary.cpu_seconds_per_gib, 2),
                    _number(summary.server_cpu_seconds_per_gib, 2),
                    _number(summary.requests),
                    rss_text(summary),
                    _number(summary.wall, 2),
                ]
            )
    return [header, *rows]


def _format_rows(rows: list[list[str]], indent: str) -> list[str]:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = []
    for number, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        lines.append(indent + "  ".join(cells).rstrip())
        if number == 0:
            lines.append(indent + "  ".join("-" * width for width in widths))
    return lines


def render(header: list[str], results: list[ScenarioResult]) -> tuple[str, dict[Status, int]]:
    """The table as text, and how many checks ended in each status."""
    counts: dict[Status, int] = {"met": 0, "MISSED": 0, "info": 0, "n/a": 0}
    lines = [*header]
    for result in results:
        lines += ["", f"== {result.title}  [{result.key}]"]
        if result.skipped is not None:
            lines.append(f"   SKIPPED: {result.skipped}")
            continue
        if result.error is not None:
            lines.append(f"   FAILED: {result.error}")
        if result.summaries:
            lines += _format_rows(_rows(result), "   ")
        summaries = {summary.name: summary for summary in result.summaries}
        if result.checks and result.summaries:
            lines.append("")
        for check in result.checks if result.summaries else []:
            verdict = evaluate(check, summaries, result.unit)
            counts[verdict.status] += 1
            lines.append(f"   {verdict.status:>6}  {verdict.text}")
        for title, rows in result.tables:
            lines += ["", f"   {title}", *_format_rows(rows, "   ")]
        for note in result.notes:
            lines.append(f"   note: {note}")
    failed = sum(result.error is not None for result in results)
    skipped = sum(result.skipped is not None for result in results)
    lines += [
        "",
        f"targets: {counts['met']} met, {counts['MISSED']} missed, {counts['n/a']} not measurable;"
        f" scenarios: {len(results) - failed - skipped} run, {skipped} skipped, {failed} failed",
    ]
    return "\n".join(lines), counts


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else value


def write_json(path: Path, header: list[str], settings: dict[str, Any], results: list[ScenarioResult]) -> None:
    def result_json(result: ScenarioResult) -> dict[str, Any]:
        summaries = {summary.name: summary for summary in result.summaries}
        return {
            "key": result.key,
            "title": result.title,
            "unit": result.unit,
            "skipped": result.skipped,
            "error": result.error,
            "notes": result.notes,
            "contenders": [
                {
                    "name": summary.name,
                    "median_megabytes_per_second": _finite(summary.megabytes_per_second),
                    "median_cpu_seconds_per_gib": _finite(summary.cpu_seconds_per_gib),
                    "median_objects_per_second": _finite(summary.objects_per_second),
                    "median_cpu_ms_per_object": _finite(summary.cpu_ms_per_object),
                    "median_server_cpu_seconds_per_gib": _finite(summary.server_cpu_seconds_per_gib),
                    "samples": [asdict(sample) for sample in summary.samples],
                    "median_server_cpu_ms_per_object": _finite(summary.server_cpu_ms_per_object),
                    "median_peak_rss_mib": _finite(summary.peak_rss_mib),
                    "median_rss_growth_mib": _finite(summary.rss_growth_mib),
                    "median_first_seconds": _finite(summary.first_seconds),
                }
                for summary in result.summaries
            ],
            "checks": [asdict(evaluate(check, summaries, result.unit)) for check in result.checks]
            if result.summaries
            else [],
            "server": result.store,
            "versus_upstream": [list(pair) for pair in result.pairs],
            "tables": [{"title": title, "rows": rows} for title, rows in result.tables],
        }

    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"header": header, "settings": settings, "scenarios": [result_json(result) for result in results]}
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
