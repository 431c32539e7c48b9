"""The local servers the benchmark talks to, all on 127.0.0.1, started and stopped here.

* nginx serves a directory as a path-style, GET/HEAD/Range-only S3 stand-in (``/bucket/key``;
  signatures and query strings are ignored). Two profiles, two ports of one nginx:
  ``loopback`` (no limits) and ``s3-like`` (a first-byte delay per request and a per-connection
  rate cap, as real S3 has). The delay comes from the echo module: ``echo_sleep`` then
  ``echo_exec`` to a named location that serves the file with ``limit_rate``; nginx's static
  module still answers ranges (206 + Content-Range), ETag and If-Match there.
* moto takes the writes, in a child process so its CPU is not counted; it is started by
  ``s3torch_test_support.moto_server`` (the repository's one moto starter), not here.

Each server is a context manager; leaving it stops the process.
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit

from measure import BenchmarkError
from settings import MIB

LOOPBACK = "loopback"
S3_LIKE = "s3-like"
MOTO = "moto"
REMOTE = "remote"

#: The s3-like profile: real S3 answers after tens of milliseconds and gives one connection
#: about 80-100 MB/s.
S3_LIKE_FIRST_BYTE_DELAY_SECONDS = 0.02
S3_LIKE_BYTES_PER_SECOND_PER_CONNECTION = 80_000_000

_ECHO_MODULE = "ngx_http_echo_module.so"
_MODULE_DIRECTORIES = (
    "/usr/lib/nginx/modules",
    "/usr/share/nginx/modules",
    "/usr/lib64/nginx/modules",
    "/usr/local/nginx/modules",
    "/etc/nginx/modules",
)
_APT_PACKAGES = ("nginx", "libnginx-mod-http-echo")
_START_TIMEOUT_SECONDS = 15.0


@dataclass(frozen=True)
class Store:
    """Where a scenario sends its requests."""

    profile: str
    endpoint: str | None  # None: botocore's resolution (real S3)
    bucket: str
    region: str
    path_style: bool
    description: str
    #: Cumulative CPU seconds of the server's processes (None: not measurable, a real store).
    server_cpu: Callable[[], float] | None = field(default=None, compare=False)
    #: Requests the server has answered so far (None: it does not count them).
    server_requests: Callable[[], int] | None = field(default=None, compare=False)


def _die_with_parent() -> None:
    # Linux: the server gets SIGTERM if the benchmark is killed, so no nginx outlives it.
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _cpu_seconds(pid: int) -> float:
    # /proc/<pid>/stat: utime and stime are fields 14 and 15, counted after the ")" of the name.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


def process_tree_cpu(pid: int) -> Callable[[], float] | None:
    """A function returning the CPU seconds so far of ``pid`` and its children (nginx's workers);
    None where /proc does not tell (not Linux)."""
    try:
        _cpu_seconds(pid)
    except (OSError, IndexError, ValueError):
        return None

    def total() -> float:
        seconds = 0.0
        for process in [pid, *_children(pid)]:
            with contextlib.suppress(OSError, IndexError, ValueError):
                seconds += _cpu_seconds(process)
        return seconds

    return total


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_for_port(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchmarkError(f"{what} exited with status {process.returncode} while starting")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.02)
    raise BenchmarkError(f"{what} did not listen on 127.0.0.1:{port} within {_START_TIMEOUT_SECONDS:.0f} s")


def _stop(process: subprocess.Popen[bytes], stop_signal: int) -> None:
    if process.poll() is not None:
        return
    process.send_signal(stop_signal)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# ---- nginx ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NginxBinary:
    path: str
    version: str
    #: ``load_module`` argument for the echo module; "" when compiled in; None when missing.
    echo_module: str | None


def _nginx_path() -> str | None:
    found = shutil.which("nginx")
    if found:
        return found
    for candidate in ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _inspect_nginx(path: str) -> NginxBinary:
    details = subprocess.run([path, "-V"], capture_output=True, text=True, check=False).stderr
    version_match = re.search(r"nginx/(\S+)", details)
    version = version_match.group(1) if version_match else "unknown"
    if "echo-nginx-module" in details and "--add-dynamic-module" not in details:
        return NginxBinary(path, version, "")
    directories = list(_MODULE_DIRECTORIES)
    modules_path = re.search(r"--modules-path=(\S+)", details)
    if modules_path:
        directories.insert(0, modules_path.group(1))
    for directory in directories:
        module = Path(directory) / _ECHO_MODULE
        if module.is_file():
            return NginxBinary(path, version, str(module))
    return NginxBinary(path, version, None)


def _apt_install(packages: tuple[str, ...]) -> str | None:
    """Install Debian packages; None on success, else why not."""
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    command = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]
    print(f"benchmark: {' '.join(command)}", file=sys.stderr, flush=True)
    result = subprocess.run(command, capture_output=True, text=True, env=environment, check=False)
    if result.returncode != 0:
        # A fresh machine has no package lists yet.
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, env=environment, check=False)
        result = subprocess.run(command, capture_output=True, text=True, env=environment, check=False)
    if result.returncode != 0:
        last_line = (result.stderr.strip().splitlines() or ["no message"])[-1]
        return f"apt-get install {' '.join(packages)} failed: {last_line}"
    return None


def find_nginx(allow_apt: bool) -> tuple[NginxBinary | None, list[str]]:
    """The nginx to use, installing it (and the echo module) with apt-get when allowed; the
    notes say what was done or why something is missing."""
    notes: list[str] = []
    path = _nginx_path()
    binary = _inspect_nginx(path) if path else None
    missing = _APT_PACKAGES if binary is None else (_APT_PACKAGES[1:] if binary.echo_module is None else ())
    if not missing:
        return binary, notes
    if not allow_apt:
        why = "S3TORCH_BENCH_NO_APT is set"
    elif os.geteuid() != 0:
        why = "not running as root"
    elif shutil.which("apt-get") is None:
        why = "apt-get not found"
    else:
        failure = _apt_install(missing)
        if failure is None:
            notes.append(f"installed with apt-get: {', '.join(missing)}")
            path = _nginx_path()
            binary = _inspect_nginx(path) if path else None
            missing = () if binary is not None and binary.echo_module is not None else missing
            why = "" if not missing else f"apt-get installed {', '.join(missing)}, but it is still not usable"
        else:
            why = failure
    if binary is None:
        notes.append(f"nginx not found and not installed ({why}): every read scenario is skipped")
    elif binary.echo_module is None:
        notes.append(f"nginx echo module not found and not installed ({why}): the s3-like profile is skipped")
    return binary, notes


class LineCounter:
    """Lines appended to a file so far (nginx's access log: one line per request)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._offset = 0
        self._lines = 0

    def __call__(self) -> int:
        with contextlib.suppress(FileNotFoundError), self._path.open("rb") as file:
            file.seek(self._offset)
            data = file.read()
            self._offset += len(data)
            self._lines += data.count(b"\n")
        return self._lines


_NGINX_CONFIG = """\
{load_module}worker_processes 1;
{user}pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    # One short line per request, so the benchmark can count the requests of each run.
    log_format requests '$request_method $status';
    access_log {prefix}/access.log requests;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    types {{ }}
    default_type application/octet-stream;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;

    # loopback: the files as fast as nginx sends them; bucket-level GETs (ListObjectsV2) go to
    # lister.py, which lists the same directory.
    server {{
        listen 127.0.0.1:{loopback_port};
        root {root};
        location / {{
            limit_except GET {{ deny all; }}
        }}
{listing}    }}
{s3_like_server}}}
"""

_S3_LIKE_SERVER = """
    # s3-like: every request waits {delay} s before its first byte (echo_sleep), then the file is
    # served by the static module (ranges, ETag, If-Match) at a capped rate per connection.
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location / {{
            limit_except GET {{ deny all; }}
            echo_sleep {delay};
            echo_exec @object;
        }}
        location @object {{
            limit_rate {rate};
        }}
    }}
"""


def _nginx_user() -> str:
    # The master runs as root here and drops its workers to an unprivileged user; the served
    # directory is made world-readable for them.
    if os.geteuid() != 0:
        return ""
    import grp

    group = "nogroup"
    try:
        grp.getgrnam(group)
    except KeyError:
        group = "nobody"
    return f"user nobody {group};\n"


_LISTING = """\
        location = /{bucket} {{ proxy_pass http://127.0.0.1:{port}; }}
        location = /{bucket}/ {{ proxy_pass http://127.0.0.1:{port}; }}
"""


class Nginx:
    """One nginx serving ``root`` on two ports: loopback and (when the echo module is there)
    s3-like; on the loopback port, the listings of ``listed_bucket`` come from lister.py."""

    def __init__(self, binary: NginxBinary, root: Path, workdir: Path, listed_bucket: str | None = None) -> None:
        self.binary = binary
        self.root = root
        self.workdir = workdir
        self.listed_bucket = listed_bucket
        self.loopback_port = 0
        self.s3_like_port: int | None = None
        self.s3_like_unavailable: str | None = None
        self.lister_port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._lister: subprocess.Popen[bytes] | None = None

    def _render(self, loopback_port: int, s3_like_port: int | None) -> str:
        s3_like = ""
        load_module = ""
        if s3_like_port is not None:
            s3_like = _S3_LIKE_SERVER.format(
                port=s3_like_port,
                root=self.root,
                delay=S3_LIKE_FIRST_BYTE_DELAY_SECONDS,
                rate=S3_LIKE_BYTES_PER_SECOND_PER_CONNECTION,
            )
            if self.binary.echo_module:
                load_module = f"load_module {self.binary.echo_module};\n"
        listing = ""
        if self.listed_bucket is not None and self.lister_port is not None:
            listing = _LISTING.format(bucket=self.listed_bucket, port=self.lister_port)
        return _NGINX_CONFIG.format(
            load_module=load_module,
            user=_nginx_user(),
            prefix=self.workdir,
            loopback_port=loopback_port,
            root=self.root,
            s3_like_server=s3_like,
            listing=listing,
        )

    def _start_lister(self) -> None:
        port = _free_port()
        log = (self.workdir / "lister.log").open("wb")
        self._lister = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("lister.py")), str(self.root), str(port)],
            stdout=subprocess.PIPE,
            stderr=log,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - no thread runs yet
        )
        log.close()
        assert self._lister.stdout is not None
        if self._lister.stdout.readline().strip() != b"ready":
            raise BenchmarkError(f"lister.py did not start: {(self.workdir / 'lister.log').read_text()[-2000:]}")
        _wait_for_port(port, self._lister, "lister.py")
        self.lister_port = port

    def _command(self, *extra: str) -> list[str]:
        return [self.binary.path, "-p", str(self.workdir), "-c", str(self.workdir / "nginx.conf"), *extra]

    def _write_config(self, with_s3_like: bool) -> str | None:
        """Write the configuration and test it; None if nginx accepts it, else its complaint."""
        self.loopback_port = _free_port()
        self.s3_like_port = _free_port() if with_s3_like else None
        (self.workdir / "nginx.conf").write_text(self._render(self.loopback_port, self.s3_like_port))
        test = subprocess.run(self._command("-t"), capture_output=True, text=True, check=False)
        return None if test.returncode == 0 else " | ".join(test.stderr.strip().splitlines())

    def __enter__(self) -> Nginx:
        self.workdir.mkdir(parents=True, exist_ok=True)
        # Workers run unprivileged: the served directory and the temporary directory holding it
        # (mkdtemp makes it 0700) must be readable by them.
        for directory in (self.root, self.root.parent):
            directory.chmod(directory.stat().st_mode | 0o055)
        if self.listed_bucket is not None:
            try:
                self._start_lister()
            except BenchmarkError:
                self._stop()
                raise
        wanted_s3_like = self.binary.echo_module is not None
        complaint = self._write_config(with_s3_like=wanted_s3_like)
        if complaint is not None and wanted_s3_like:
            # Most likely the echo module does not fit this nginx: keep the loopback profile.
            self.s3_like_unavailable = f"nginx rejected the s3-like configuration (echo module): {complaint}"
            complaint = self._write_config(with_s3_like=False)
        elif not wanted_s3_like:
            self.s3_like_unavailable = "the nginx echo module is not installed (libnginx-mod-http-echo)"
        if complaint is not None:
            raise BenchmarkError(f"nginx rejected its configuration: {complaint}")
        log = (self.workdir / "stderr.log").open("wb")
        self._process = subprocess.Popen(
            self._command("-g", "daemon off;"),
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            # Servers start before the benchmark runs any thread, so preexec_fn is safe here.
            preexec_fn=_die_with_parent,  # noqa: PLW1509
        )
        log.close()
        try:
            _wait_for_port(self.loopback_port, self._process, "nginx")
            if self.s3_like_port is not None:
                _wait_for_port(self.s3_like_port, self._process, "nginx")
        except BenchmarkError as error:
            self._stop()
            raise BenchmarkError(f"{error}: {self.error_log()}") from None
        return self

    def error_log(self) -> str:
        texts = []
        for name in ("stderr.log", "error.log"):
            path = self.workdir / name
            if path.exists():
                texts.append(path.read_text(errors="replace").strip())
        return "\n".join(text for text in texts if text)

    def _stop(self) -> None:
        if self._process is not None:
            _stop(self._process, signal.SIGTERM)
            self._process = None
        if self._lister is not None:
            _stop(self._lister, signal.SIGTERM)
            if self._lister.stdout is not None:
                self._lister.stdout.close()
            self._lister = None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._stop()

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def requests(self) -> LineCounter:
        return LineCounter(self.workdir / "access.log")

    @property
    def loopback_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.loopback_port}"

    @property
    def s3_like_endpoint(self) -> str | None:
        return None if self.s3_like_port is None else f"http://127.0.0.1:{self.s3_like_port}"


# ---- moto -------------------------------------------------------------------------------------
# moto is started by s3torch_test_support.moto_server.MotoServer(in_child_process=True), the one
# moto starter of the tests, the demo and the benchmark (run.py).


def moto_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("moto")
    except Exception:  # noqa: BLE001 - any failure means: not usable
        return None


# ---- what a read server answers ---------------------------------------------------------------


@dataclass(frozen=True)
class ReadServerCheck:
    """What the server answered to the requests a GET stream depends on."""

    etag: str
    first_byte_seconds: float  # median over a few small ranged GETs on one connection
    connection_bytes_per_second: float  # one ranged GET of up to 32 MiB

    def describe(self) -> str:
        return (
            f"first byte {1000 * self.first_byte_seconds:.1f} ms,"
            f" one connection {self.connection_bytes_per_second / 1e6:,.0f} MB/s,"
            " Range -> 206 + Content-Range, ETag and If-Match checked"
        )


@contextlib.contextmanager
def _connection(endpoint: str) -> Iterator[http.client.HTTPConnection]:
    parts = urlsplit(endpoint)
    if parts.scheme != "http" or parts.hostname is None:
        raise BenchmarkError(f"checks need a plain-http endpoint, got {endpoint}")
    connection = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=30)
    try:
        yield connection
    finally:
        connection.close()


def _request(
    connection: http.client.HTTPConnection, method: str, path: str, headers: dict[str, str], read: bool = True
) -> tuple[http.client.HTTPResponse, bytes, float]:
    started = time.perf_counter()
    connection.request(method, path, headers=headers)
    response = connection.getresponse()
    first_byte = time.perf_counter() - started
    body = response.read() if read else b""
    return response, body, first_byte


def check_read_server(endpoint: str, bucket: str, key: str, size: int) -> ReadServerCheck:
    """Check, over plain HTTP, what the S3 stand-in must do for the client, and measure its
    first-byte latency and per-connection rate. Raises ``BenchmarkError`` on a wrong answer."""
    path = f"/{bucket}/{key}"

    def fail(what: str, response: http.client.HTTPResponse) -> BenchmarkError:
        return BenchmarkError(f"{endpoint}{path}: {what} (status {response.status}, headers {dict(response.headers)})")

    with _connection(endpoint) as connection:
        response, _, _ = _request(connection, "HEAD", path, {})
        etag = response.headers.get("ETag")
        if response.status != 200 or response.headers.get("Content-Length") != str(size) or not etag:
            raise fail(f"HEAD must answer 200 with Content-Length {size} and an ETag", response)
        latencies = []
        for _ in range(5):
            response, body, latency = _request(connection, "GET", path, {"Range": "bytes=0-99"})
            if (
                response.status != 206
                or response.headers.get("Content-Range") != f"bytes 0-99/{size}"
                or len(body) != 100
            ):
                raise fail("a ranged GET must answer 206 with Content-Range bytes 0-99/size", response)
            if response.headers.get("ETag") != etag:
                raise fail(f"a ranged GET must send the same ETag as HEAD ({etag})", response)
            latencies.append(latency)
        # The client pins later requests with exactly the ETag it was sent.
        response, body, _ = _request(connection, "GET", path, {"Range": "bytes=100-199", "If-Match": etag})
        if response.status != 206 or len(body) != 100:
            raise fail(f"a ranged GET with If-Match: {etag} (the server's own ETag) must answer 206", response)
        span = min(size, 32 * MIB)
        response, body, first_byte = _request(connection, "GET", path, {"Range": f"bytes=0-{span - 1}"}, read=False)
        started = time.perf_counter()
        body = response.read()
        elapsed = time.perf_counter() - started + first_byte
        if len(body) != span:
            raise fail(f"a ranged GET of {span} bytes returned {len(body)}", response)
    # nginx closes the connection after these two: one connection each.
    with _connection(endpoint) as connection:
        response, _, _ = _request(connection, "GET", path, {"Range": "bytes=100-199", "If-Match": '"0-0"'})
        if response.status != 412:
            raise fail("a ranged GET with a stale If-Match must answer 412", response)
    with _connection(endpoint) as connection:
        response, _, _ = _request(connection, "GET", path, {}, read=False)
        if response.status != 200 or response.headers.get("Content-Length") != str(size):
            raise fail(f"a plain GET must answer 200 with Content-Length {size}", response)
    return ReadServerCheck(etag, statistics.median(latencies), span / elapsed)
