"""Test helper: run a function on W local gloo ranks (spawned processes on 127.0.0.1).

The leading underscore keeps pytest from collecting it. ``fn`` must be importable by the spawned processes (a
module-level function of a test module); exceptions in any rank fail the caller with that rank's traceback.
"""

from __future__ import annotations

import datetime
import socket
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

COLLECTIVE_TIMEOUT_S = 60  # a mismatched collective fails instead of hanging the test run


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _entry(rank: int, world: int, port: int, fn: Callable[..., None], args: tuple[Any, ...]) -> None:
    """Join the gloo group, run ``fn(rank, world, *args)`` single-threaded, leave the group."""
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=COLLECTIVE_TIMEOUT_S),
    )
    try:
        fn(rank, world, *args)
    finally:
        dist.destroy_process_group()


def run_distributed(fn: Callable[..., None], world: int, *args: Any) -> None:
    """Run ``fn(rank, world, *args)`` on ``world`` gloo ranks and wait for all of them."""
    mp.spawn(_entry, args=(world, free_port(), fn, args), nprocs=world, join=True)
