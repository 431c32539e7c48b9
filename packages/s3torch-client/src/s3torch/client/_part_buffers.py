"""``PartBuffers``: the part buffers of a transport's uploads, reused from one upload to the next.

Fresh memory costs more CPU than the copy into it: a new 8 MiB ``bytearray`` is zeroed and each
of its pages faulted in (measured here: about 0.2 CPU-s per GiB uploaded, more than the copy of
the caller's bytes into it), and memory freed after an upload goes back to the system, so the
next upload (the next checkpoint, the next small object's first part) pays again. A transport
keeps idle buffers up to ``limit_bytes`` (``concurrency x part_size``: what one upload may have
in flight anyway) until it is closed.
"""

from __future__ import annotations

import threading

__all__ = ["PartBuffers"]


class PartBuffers:
    """A bounded stack of idle ``bytearray`` buffers; thread-safe. A buffer given back must no
    longer be used by anyone (its request completed, or was cancelled before it started)."""

    def __init__(self, limit_bytes: int) -> None:
        self._limit_bytes = limit_bytes
        self._idle: list[bytearray] = []
        self._idle_bytes = 0
        self._lock = threading.Lock()

    def take(self, size: int) -> bytearray:
        """A buffer of ``size`` bytes: an idle one (its old contents) or a new one."""
        with self._lock:
            for index in range(len(self._idle) - 1, -1, -1):
                if len(self._idle[index]) == size:
                    self._idle_bytes -= size
                    return self._idle.pop(index)
        return bytearray(size)

    def give(self, buffer: bytearray) -> None:
        """Keep ``buffer`` for a later ``take``; the oldest idle ones are dropped beyond the limit."""
        if not buffer or len(buffer) > self._limit_bytes:
            return
        with self._lock:
            self._idle.append(buffer)
            self._idle_bytes += len(buffer)
            while self._idle_bytes > self._limit_bytes:
                self._idle_bytes -= len(self._idle.pop(0))

    def idle_bytes(self) -> int:
        with self._lock:
            return self._idle_bytes

    def clear(self) -> None:
        with self._lock:
            self._idle.clear()
            self._idle_bytes = 0
