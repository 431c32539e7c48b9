"""The one way s3torch starts a moto S3 server: on a free port of 127.0.0.1, ready to answer
when ``start()`` returns, stopped by ``stop()`` (or by leaving its ``with`` block).

The tests, the demo (``examples/``) and the benchmarks all start their moto servers here.
Readiness is never guessed: in this process, moto's ``ThreadedMotoServer.start`` returns once its
socket listens (it waits on an event its server thread sets after binding); in a child process
(``in_child_process=True``, so that the server's CPU is not counted as the caller's), the child
prints its port only after that same start, and the parent blocks on reading that line. The child
stops when its standard input closes, so it never outlives a parent that dies.

Run as ``python -m s3torch_test_support.moto_server``, this module is that child.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["MotoServer", "MotoServerError"]

HOST = "127.0.0.1"
#: How long a child process may take to exit after its standard input closed.
_STOP_TIMEOUT_SECONDS = 10.0


class MotoServerError(RuntimeError):
    """The moto server could not start (moto missing, or its child process failed)."""


def _threaded_server() -> Any:
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as error:
        raise MotoServerError(f"a local S3 server needs moto: pip install 'moto[server]' ({error})") from error
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log line per request
    return ThreadedMotoServer(ip_address=HOST, port=0, verbose=False)


class MotoServer:
    """A moto S3 server on 127.0.0.1 (``endpoint``, ``host``, ``port`` once started).

    In this process by default, where every moto server (and ``mock_aws``) shares moto's one
    process-wide store; with ``in_child_process=True`` in a child Python, which starts empty, whose
    standard error goes to ``log_path`` (or is discarded), and whose ``pid`` is known.
    """

    def __init__(self, *, in_child_process: bool = False, log_path: Path | None = None) -> None:
        self.in_child_process = in_child_process
        self.log_path = log_path
        self.host = HOST
        self.port = 0
        self._threaded: Any = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        if not self.port:
            raise MotoServerError("the moto server is not started")
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The child process's id (None in this process, or when not running)."""
        return None if self._process is None else self._process.pid

    def start(self) -> MotoServer:
        """Start the server; it answers requests when this returns."""
        if self.in_child_process:
            self._start_child()
        else:
            self._threaded = _threaded_server()
            self._threaded.start()
            self.host, self.port = self._threaded.get_host_and_port()
        return self

    def _start_child(self) -> None:
        command = [sys.executable, "-m", __name__]
        if self.log_path is None:
            self._process = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
            )
        else:
            with self.log_path.open("wb") as log:  # the child holds its own descriptor
                self._process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log)
        assert self._process.stdout is not None
        line = self._process.stdout.readline().strip()  # the child's "ready", or EOF when it failed
        if not line.isdigit():
            self.stop()
            where = f": {self.log_path.read_text()[-2000:]}" if self.log_path is not None else ""
            raise MotoServerError(f"the moto server's process did not start{where}")
        self.port = int(line)

    def reset(self) -> None:
        """Forget every bucket and object (moto's ``/moto-api/reset``)."""
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=30):
            pass

    def stop(self) -> None:
        """Stop the server (idempotent)."""
        threaded, self._threaded = self._threaded, None
        if threaded is not None:
            threaded.stop()
        process, self._process = self._process, None
        if process is not None:
            if process.stdin is not None:
                process.stdin.close()  # the child's signal to stop
            try:
                process.wait(timeout=_STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()
        self.port = 0

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


def _serve_until_stdin_closes() -> None:
    server = _threaded_server()
    server.start()
    print(server.get_host_and_port()[1], flush=True)
    sys.stdin.read()  # until the parent closes our stdin (or dies)
    server.stop()


if __name__ == "__main__":
    _serve_until_stdin_closes()
