"""The owner of s3torch's process resources: every thread pool, from one budget, reset after fork.

Pools are per role, because a task of one role waits on tasks of another (a whole-object prefetch
waits on its part fetches; a per-file load waits on range-group prefetches): tasks that wait on
tasks of their own pool could starve it. Per process, with the default ``S3ClientConfig``
(``concurrency`` = C = 8):

========================  ==========================  =========================================
role                      threads                     what runs there
========================  ==========================  =========================================
``PARTS``                 2 x C (16) per concurrency  part GETs ahead of a stream, part uploads
``OBJECT_PREFETCH``       64                          whole-object prefetch of the datasets
``RANGE_PREFETCH``        16                          DCP range groups fetched ahead (readers)
``FILE_LOADS``            4                           files of one DCP load read at once
========================  ==========================  =========================================

Connections: one transport per (region, endpoint, ``S3ClientConfig``) keeps at most
``2 x C + 8`` idle connections per pool (ours per host, and botocore's).

Every pool is created lazily on first use. After ``fork``
the child starts with none (the parent's threads do not exist there): one at-fork hook forgets
them and runs the resets other modules registered with ``after_fork`` (the transport registry's),
and a PID check catches forks without the hook. At interpreter exit ``concurrent.futures`` joins
the threads as for any executor.
"""

from __future__ import annotations

import enum
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

__all__ = ["ExecutorRole", "after_fork", "check_process", "shared_executor", "workers"]


class ExecutorRole(enum.Enum):
    """The roles of s3torch's thread pools (see the module's table)."""

    PARTS = "parts"
    OBJECT_PREFETCH = "object-prefetch"
    RANGE_PREFETCH = "range-prefetch"
    FILE_LOADS = "file-loads"


_FIXED_WORKERS = {
    ExecutorRole.OBJECT_PREFETCH: 64,
    ExecutorRole.RANGE_PREFETCH: 16,
    ExecutorRole.FILE_LOADS: 4,
}

# Thread names, as they were before the pools had one owner (logs and tests know them).
_THREAD_NAMES = {
    ExecutorRole.PARTS: "s3torch",
    ExecutorRole.OBJECT_PREFETCH: "s3torch-prefetch",
    ExecutorRole.RANGE_PREFETCH: "s3torch-dcp-prefetch",
    ExecutorRole.FILE_LOADS: "s3torch-dcp-load",
}

_executors: dict[tuple[ExecutorRole, int], ThreadPoolExecutor] = {}
_lock = threading.Lock()
_pid = os.getpid()
_fork_resets: list[Callable[[], None]] = []


def workers(role: ExecutorRole, concurrency: int = 8) -> int:
    """The threads of ``role``'s pool (``concurrency``: ``S3ClientConfig.concurrency``)."""
    return 2 * concurrency if role is ExecutorRole.PARTS else _FIXED_WORKERS[role]


def shared_executor(role: ExecutorRole, concurrency: int = 8) -> ThreadPoolExecutor:
    """This process's pool for ``role`` (for ``PARTS``, one per ``concurrency``). Never shut it
    down: it is the process's, shared by every caller."""
    _check_pid()
    key = (role, workers(role, concurrency))
    pool = _executors.get(key)
    if pool is None:
        with _lock:
            pool = _executors.get(key)
            if pool is None:
                pool = ThreadPoolExecutor(max_workers=key[1], thread_name_prefix=_THREAD_NAMES[role])
                _executors[key] = pool
    return pool


def after_fork(reset: Callable[[], None]) -> None:
    """Call ``reset`` in a forked child before it uses s3torch (the one fork-reset mechanism)."""
    _fork_resets.append(reset)


def _check_pid() -> None:
    if os.getpid() != _pid:  # forked without the hook (or by a non-Python fork)
        _forget_after_fork()


def _forget_after_fork() -> None:
    # The parent's sockets, locks and threads mean nothing in the child: start empty.
    global _executors, _lock, _pid
    _executors = {}
    _lock = threading.Lock()
    _pid = os.getpid()
    for reset in _fork_resets:
        reset()


def check_process() -> None:
    """Reset what a fork left behind if this process is not the one that built it."""
    _check_pid()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
