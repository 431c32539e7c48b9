"""Run test code in fresh processes: ``run_spawned`` (one process) and ``run_ranks`` (a
``torch.distributed`` gloo group on 127.0.0.1, one process per rank).

The children are started with the ``spawn`` method, so they share nothing with pytest's process
but what is passed: the target (a module-level function of an importable module, such as
``support.datasets``), its arguments, and the environment variables given. Each child sends back
its result, or its traceback, on a queue; the parent blocks on that queue (no sleeping) and joins
the children. Children are not daemonic: they may start DataLoader workers of their own.
"""

from __future__ import annotations

import os
import socket
import traceback
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import torch.distributed
import torch.multiprocessing as mp

#: Generous: a spawned child imports torch, and the machine may be busy with other test runs.
DEFAULT_TIMEOUT_SECONDS = 240


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def aws_environment() -> dict[str, str]:
    """The AWS settings of this process (the fixtures' credentials), for the children."""
    return {name: value for name, value in os.environ.items() if name.startswith("AWS_")}


class ChildFailed(AssertionError):
    """A child process raised; the message holds its traceback."""


def _child(
    target: Callable[..., Any],
    args: tuple[Any, ...],
    environment: dict[str, str],
    results: Any,
    rank: int,
    world_size: int,
    port: int | None,
) -> None:
    os.environ.update(environment)
    try:
        if port is None:
            value = target(*args)
        else:
            torch.distributed.init_process_group(
                "gloo",
                init_method=f"tcp://127.0.0.1:{port}",
                rank=rank,
                world_size=world_size,
                timeout=timedelta(seconds=DEFAULT_TIMEOUT_SECONDS),
            )
            try:
                value = target(rank, world_size, *args)
            finally:
                torch.distributed.destroy_process_group()
    except BaseException:  # noqa: BLE001 - the parent reports it
        results.put((rank, False, traceback.format_exc()))
        return
    results.put((rank, True, value))


def _run(
    target: Callable[..., Any],
    args: tuple[Any, ...],
    world_size: int,
    distributed: bool,
    environment: dict[str, str] | None,
    timeout: float,
) -> list[Any]:
    context = mp.get_context("spawn")
    results = context.Queue()
    port = free_port() if distributed else None
    environment = aws_environment() if environment is None else environment
    processes = [
        context.Process(
            target=_child,
            args=(target, args, environment, results, rank, world_size, port),
            name=f"{target.__name__}-{rank}",
        )
        for rank in range(world_size)
    ]
    for process in processes:
        process.start()
    collected: dict[int, Any] = {}
    try:
        for _ in range(world_size):
            rank, ok, value = results.get(timeout=timeout)
            if not ok:
                raise ChildFailed(f"{target.__name__} failed in process {rank}:\n{value}")
            collected[rank] = value
    finally:
        for process in processes:
            process.join(timeout=30 if len(collected) == world_size else 1)
            if process.is_alive():
                process.kill()
                process.join()
        results.close()
    return [collected[rank] for rank in range(world_size)]


def run_spawned(
    target: Callable[..., Any],
    *args: Any,
    environment: dict[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> Any:
    """``target(*args)`` in a new process; returns what it returned (it must pickle)."""
    return _run(target, args, 1, False, environment, timeout)[0]


def run_ranks(
    target: Callable[..., Any],
    world_size: int,
    *args: Any,
    environment: dict[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> list[Any]:
    """``target(rank, world_size, *args)`` in ``world_size`` processes that form a gloo process
    group; returns each rank's result, by rank."""
    return _run(target, args, world_size, True, environment, timeout)
