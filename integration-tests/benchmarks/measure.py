"""Timing, CPU accounting and medians.

CPU is user + system time from ``getrusage``: of this process (every thread) for contenders that
run in-process (plus, for those that fork workers, the workers that ended during the run), of the
child itself (``wait4``) for external programs such as curl. The servers run in other
processes, so their CPU is never counted. Peak RSS is the process's high-water mark during the
run (Linux: reset before each run through ``/proc/self/clear_refs``), plus the largest sum of
its worker processes' private memory seen while they ran (sampled every 20 ms, or less often
when a sample costs more than 5% of that: see ``PeakMemory``); its growth is
that peak above the process's RSS when the run began: what the contender itself needed. Contenders of one scenario run
interleaved: every round runs each of them once, starting one further down the list each round,
so a drift of the machine (page cache, thermal, a noisy neighbour) spreads over all of them.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from settings import GIB


class BenchmarkError(RuntimeError):
    """A contender misbehaved (wrong byte count, failed command): its numbers would be meaningless."""


@dataclass(frozen=True)
class Transfer:
    """What one run of a contender moved."""

    bytes: int
    objects: int = 1


@dataclass(frozen=True)
class Sample:
    """One measured run."""

    wall: float  # seconds
    user: float  # CPU seconds
    system: float
    bytes: int
    objects: int
    server_cpu: float | None = None  # CPU seconds of the server's processes, where measurable
    requests: int | None = None  # requests the server answered, where it counts them
    peak_rss: int | None = None  # bytes: the process's peak resident set (and its workers')
    rss_growth: int | None = None  # bytes: that peak above the process's RSS when the run began
    first: float | None = None  # seconds to the first object, where the contender tells

    @property
    def cpu(self) -> float:
        return self.user + self.system

    @property
    def megabytes_per_second(self) -> float:
        return self.bytes / self.wall / 1e6

    @property
    def cpu_seconds_per_gib(self) -> float:
        return self.cpu / (self.bytes / GIB) if self.bytes else float("nan")

    @property
    def objects_per_second(self) -> float:
        return self.objects / self.wall

    @property
    def server_cpu_seconds_per_gib(self) -> float:
        return float("nan") if self.server_cpu is None or not self.bytes else self.server_cpu / (self.bytes / GIB)

    @property
    def server_cpu_ms_per_object(self) -> float:
        return float("nan") if self.server_cpu is None else 1000 * self.server_cpu / self.objects

    @property
    def cpu_ms_per_object(self) -> float:
        return 1000 * self.cpu / self.objects


def _nothing() -> None:
    return None


def _status_kib(path: str, field_name: str) -> int | None:
    try:
        with open(path) as status:
            for line in status:
                if line.startswith(field_name):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _private_kib(pid: int) -> int:
    """Private_Clean + Private_Dirty of ``pid`` (its own pages), 0 when it is gone."""
    total = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            for line in rollup:
                if line.startswith(("Private_Clean:", "Private_Dirty:")):
                    total += int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return total


def _children_pids() -> list[int]:
    pids: list[int] = []
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return pids
    for task in tasks:
        try:
            with open(f"/proc/self/task/{task}/children") as children:
                pids += [int(pid) for pid in children.read().split()]
        except (OSError, ValueError):
            continue
    return pids


#: How often DataLoader workers' memory is sampled, at most; and the most of one core the
#: sampling may take (it samples less often when a sample costs more).
SAMPLE_SECONDS = 0.02
SAMPLER_MAX_SHARE = 0.05


class PeakMemory:
    """The peak RSS of this process during a block (and, with ``children``, the largest sum
    of its child processes' RSS seen while it ran). ``peak`` is None where /proc does not tell."""

    def __init__(self, children: bool) -> None:
        self._children = children
        self._stop = threading.Event()
        self._children_peak_kib = 0
        self._thread: threading.Thread | None = None
        self._start_kib: int | None = None
        self.peak: int | None = None
        self.growth: int | None = None

    def _sample(self) -> None:
        interval = SAMPLE_SECONDS
        while not self._stop.wait(interval):
            started = time.thread_time()
            # A forked worker shares its parent's pages: count only its own (private) ones.
            total = sum(_private_kib(pid) for pid in _children_pids())
            self._children_peak_kib = max(self._children_peak_kib, total)
            # The instrument must not weigh on what it measures: smaps_rollup walks a worker's
            # page tables, ~8 ms of CPU for a torch worker here, so two workers sampled every
            # 20 ms took half a core from a 2-core machine, charged to the contender's CPU.
            interval = max(SAMPLE_SECONDS, (time.thread_time() - started) / SAMPLER_MAX_SHARE)

    def __enter__(self) -> PeakMemory:
        try:
            with open("/proc/self/clear_refs", "w") as clear:
                clear.write("5")  # resets VmHWM to the current RSS
        except OSError:
            pass
        self._start_kib = _status_kib("/proc/self/status", "VmRSS:")
        if self._children:
            self._thread = threading.Thread(target=self._sample, name="bench-rss", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
        high_water = _status_kib("/proc/self/status", "VmHWM:")
        if high_water is not None:
            self.peak = (high_water + self._children_peak_kib) * 1024
            if self._start_kib is not None:
                self.growth = (high_water - self._start_kib + self._children_peak_kib) * 1024


@dataclass
class Contender:
    """One way of doing a scenario's work. ``measure`` runs it once and returns what it cost;
    ``after`` runs unmeasured after each run (for example deleting what a write created)."""

    name: str
    measure: Callable[[], Sample]
    after: Callable[[], None] = field(default=_nothing)


def _check(name: str, moved: Transfer, expected: Transfer) -> None:
    if moved != expected:
        raise BenchmarkError(
            f"{name}: moved {moved.bytes} bytes in {moved.objects} objects,"
            f" expected {expected.bytes} bytes in {expected.objects}"
        )


def in_process(
    name: str,
    run: Callable[[], Transfer],
    expected: Transfer,
    after: Callable[[], None] = _nothing,
    children: bool = False,
    first: Callable[[], float | None] | None = None,
) -> Contender:
    """A contender that runs in this process: CPU is this process's (all threads) during ``run``;
    with ``children``, also that of the child processes that ended during it (a DataLoader's
    workers, joined at the end of the epoch), and their RSS. ``first``, called after the run,
    tells the seconds it took to the first object."""

    def measure() -> Sample:
        before = resource.getrusage(resource.RUSAGE_SELF)
        children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        with PeakMemory(children) as memory:
            started = time.perf_counter()
            moved = run()
            wall = time.perf_counter() - started
        usage = resource.getrusage(resource.RUSAGE_SELF)
        children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        _check(name, moved, expected)
        user, system = usage.ru_utime - before.ru_utime, usage.ru_stime - before.ru_stime
        if children:
            user += children_after.ru_utime - children_before.ru_utime
            system += children_after.ru_stime - children_before.ru_stime
        return Sample(
            wall,
            user,
            system,
            moved.bytes,
            moved.objects,
            peak_rss=memory.peak,
            rss_growth=memory.growth,
            first=first() if first is not None else None,
        )

    return Contender(name, measure, after)


def child_process(name: str, argv: Sequence[str], expected: Transfer, parse: Callable[[str], Transfer]) -> Contender:
    """A contender that is an external program: CPU is the child's own rusage (``wait4``);
    ``parse`` reads what it moved from its standard output."""

    def measure() -> Sample:
        with tempfile.TemporaryFile() as errors:
            started = time.perf_counter()
            process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errors)
            assert process.stdout is not None
            output = process.stdout.read()
            # wait4, not Popen.wait: it returns the child's own rusage.
            _, status, usage = os.wait4(process.pid, 0)
            wall = time.perf_counter() - started
            process.returncode = os.waitstatus_to_exitcode(status)
            process.stdout.close()
            if process.returncode != 0:
                errors.seek(0)
                message = errors.read().decode(errors="replace").strip()
                raise BenchmarkError(f"{name}: {argv[0]} exited with {process.returncode}: {message}")
        moved = parse(output.decode())
        _check(name, moved, expected)
        return Sample(wall, usage.ru_utime, usage.ru_stime, moved.bytes, moved.objects, peak_rss=usage.ru_maxrss * 1024)

    return Contender(name, measure)


Progress = Callable[[int, Contender, Sample], None]


def run_interleaved(
    contenders: Sequence[Contender],
    rounds: int,
    progress: Progress | None = None,
    server_cpu: Callable[[], float] | None = None,
    server_requests: Callable[[], int] | None = None,
) -> dict[str, list[Sample]]:
    """``rounds`` rounds; each runs every contender once, the starting one rotating. With
    ``server_cpu`` (cumulative CPU seconds of the server) and ``server_requests`` (requests it
    answered so far), each sample also gets what the server spent and how many requests it took."""
    samples: dict[str, list[Sample]] = {contender.name: [] for contender in contenders}
    for round_index in range(rounds):
        shift = round_index % len(contenders) if contenders else 0
        for contender in [*contenders[shift:], *contenders[:shift]]:
            gc.collect()  # the previous run's garbage is not this one's cost
            server_before = server_cpu() if server_cpu is not None else 0.0
            requests_before = server_requests() if server_requests is not None else 0
            sample = contender.measure()
            if server_cpu is not None:
                sample = dataclasses.replace(sample, server_cpu=server_cpu() - server_before)
            if server_requests is not None:
                sample = dataclasses.replace(sample, requests=server_requests() - requests_before)
            contender.after()
            samples[contender.name].append(sample)
            if progress is not None:
                progress(round_index, contender, sample)
    return samples


@dataclass(frozen=True)
class Summary:
    """The medians over the rounds of one contender."""

    name: str
    samples: tuple[Sample, ...]

    def _median(self, metric: Callable[[Sample], float]) -> float:
        return statistics.median(metric(sample) for sample in self.samples)

    @property
    def megabytes_per_second(self) -> float:
        return self._median(lambda sample: sample.megabytes_per_second)

    @property
    def megabytes_per_second_range(self) -> tuple[float, float]:
        values = [sample.megabytes_per_second for sample in self.samples]
        return min(values), max(values)

    @property
    def cpu_seconds_per_gib(self) -> float:
        return self._median(lambda sample: sample.cpu_seconds_per_gib)

    @property
    def objects_per_second(self) -> float:
        return self._median(lambda sample: sample.objects_per_second)

    @property
    def cpu_ms_per_object(self) -> float:
        return self._median(lambda sample: sample.cpu_ms_per_object)

    @property
    def server_cpu_seconds_per_gib(self) -> float:
        return self._median(lambda sample: sample.server_cpu_seconds_per_gib)

    @property
    def server_cpu_ms_per_object(self) -> float:
        return self._median(lambda sample: sample.server_cpu_ms_per_object)

    @property
    def requests(self) -> float:
        return self._median(lambda sample: float("nan") if sample.requests is None else sample.requests)

    @property
    def wall(self) -> float:
        return self._median(lambda sample: sample.wall)

    @property
    def peak_rss_mib(self) -> float:
        return self._median(lambda sample: float("nan") if sample.peak_rss is None else sample.peak_rss / 2**20)

    @property
    def rss_growth_mib(self) -> float:
        return self._median(lambda sample: float("nan") if sample.rss_growth is None else sample.rss_growth / 2**20)

    @property
    def first_seconds(self) -> float:
        return self._median(lambda sample: float("nan") if sample.first is None else sample.first)

    @property
    def objects_per_second_range(self) -> tuple[float, float]:
        values = [sample.objects_per_second for sample in self.samples]
        return min(values), max(values)


def progress_line(prefix: str) -> Progress:
    """A progress callback printing one line per run to stderr (the table goes to stdout)."""

    def report(round_index: int, contender: Contender, sample: Sample) -> None:
        per_object = f", {sample.cpu_ms_per_object:.3f} ms CPU/object" if sample.objects > 1 else ""
        if sample.server_cpu is not None:
            per_object += f", server {sample.server_cpu_seconds_per_gib:.2f} CPU-s/GiB"
        if sample.requests is not None:
            per_object += f", {sample.requests} requests"
        print(
            f"  [{prefix} round {round_index + 1}] {contender.name}: {sample.megabytes_per_second:,.0f} MB/s,"
            f" {sample.cpu_seconds_per_gib:.2f} CPU-s/GiB{per_object} ({sample.wall:.2f} s)",
            file=sys.stderr,
            flush=True,
        )

    return report
