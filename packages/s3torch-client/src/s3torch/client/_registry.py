"""The per-process registry of transports: one per (region, endpoint, configuration), closed at exit.

A forked child starts with an empty registry (its parent's sockets and locks mean nothing there);
``_resources`` runs the reset. At interpreter exit the transports of this process close their idle
connections; a daemon thread still sending then opens new ones, so nothing breaks under it.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading

from . import _resources
from ._config import S3ClientConfig
from ._transport import Transport

__all__ = ["get_transport"]

logger = logging.getLogger(__name__)

_TransportKey = tuple[str, "str | None", S3ClientConfig]
_transports: dict[_TransportKey, Transport] = {}
_transports_lock = threading.Lock()
_transports_pid = os.getpid()


def _forget() -> None:
    global _transports, _transports_lock, _transports_pid
    _transports = {}
    _transports_lock = threading.Lock()
    _transports_pid = os.getpid()


_resources.after_fork(_forget)


def get_transport(region: str, endpoint: str | None, config: S3ClientConfig) -> Transport:
    """The process's transport for this configuration, built on first use."""
    _resources.check_process()
    key: _TransportKey = (region, endpoint, config)
    transport = _transports.get(key)
    if transport is None:
        with _transports_lock:
            transport = _transports.get(key)
            if transport is None:
                transport = Transport(region, endpoint, config)
                _transports[key] = transport
    return transport


def _close_at_exit() -> None:
    if os.getpid() != _transports_pid:  # inherited by a child that never used s3torch
        return
    for transport in list(_transports.values()):
        try:
            transport.close()
        except OSError as error:  # a socket already gone at exit: nothing left to release
            logger.debug("closing a transport at exit: %s", error)


atexit.register(_close_at_exit)
