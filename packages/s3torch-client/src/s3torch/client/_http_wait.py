"""Whether a socket has bytes to read within a timeout, on every OS Python runs on.

``poll`` where it exists and works, ``select`` elsewhere (Windows), as urllib3's
``util/wait.py`` does: ``select`` fails for descriptors above ``FD_SETSIZE`` (1,024 on Linux),
which a training process holding many files or shared tensors easily has.
"""

from __future__ import annotations

import select
import socket


def _poll_readable(sock: socket.socket, timeout: float) -> bool:
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    # Readable, closed by the peer (POLLHUP) or in error: each means "do not assume it idle".
    return bool(poller.poll(timeout * 1000))


def _select_readable(sock: socket.socket, timeout: float) -> bool:
    readable, _, errored = select.select([sock], [], [sock], timeout)
    return bool(readable or errored)


def _have_working_poll() -> bool:
    # Some platforms (old macOS, eventlet/gevent patching) have a poll that raises when used.
    try:
        select.poll().poll(0)
    except (AttributeError, OSError):
        return False
    return True


#: ``wait_for_read(sock, timeout)``: True when ``sock`` is readable (or closed) within ``timeout``
#: seconds (0: just look).
wait_for_read = _poll_readable if _have_working_poll() else _select_readable
