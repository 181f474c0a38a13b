"""Elastic pretraining without Ray: a fixed global contrastive batch over a worker group whose size changes.

Ray Train V2 runs an elastic group with ``ScalingConfig(num_workers=(min, max))``: when a node is lost (a spot
preemption) the group restarts from the latest checkpoint with the workers that still fit, and it grows back when
the autoscaler brings room. For a contrastive loss the worker count must not be part of the objective: the negatives
of every anchor are the global batch, so if each worker kept its own batch size, losing a node would silently shrink
the negative set and change the loss being minimised. Here the global batch ``B = pretrain.batch_size x max`` is fixed
and each of the ``W`` current workers takes ``B / W`` samples (:func:`share`); with the gathered, exact loss
(:mod:`mujo.losses`) the loss and its gradients are then the same function of the batch at any ``W``
(``tests/test_elastic.py`` checks it at 2, 3 and 4 gloo ranks). Dropout draws per-rank random streams, so a step
with dropout is the same *distribution* at any ``W``, not the same numbers.

A smaller group means a larger share per worker. The gradient cache (:func:`mujo.losses.grad_cache_step`) keeps the
per-worker activation memory bounded: each share is embedded in chunks of at most the rows a chunk holds at the full
group (:func:`cache_chunks`), so the largest graph a worker holds does not grow when the group shrinks.

Shares must be equal: the gather behind the loss needs the same local batch on every rank, so ``B`` must divide by
every worker count in ``[min, max]`` (:func:`check_elastic`, run when the config is read, names the fix).

The run's history records every (re)start and resize of the group (:class:`ResizeLog`): when, at which step, how many
workers, the per-worker batch and the chunks; it travels in the checkpoints, so a resumed run keeps the earlier ones,
and ends in the artefact's ``resizes.json``; every step of ``history.json`` also names its group size.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any


def parse_worker_range(value) -> tuple[int, int]:
    """``[min, max]`` (a list or tuple of two positive ints, min <= max) -> ``(min, max)``; ValueError otherwise."""
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or any(isinstance(v, bool) or not isinstance(v, int) for v in value)):
        raise ValueError(f"pretrain.num_workers must be an int or a list [min, max] of two ints, got {value!r}")
    lo, hi = int(value[0]), int(value[1])
    if not 1 <= lo <= hi:
        raise ValueError(f"pretrain.num_workers [min, max] needs 1 <= min <= max, got [{lo}, {hi}]")
    return lo, hi


def uneven_counts(global_batch: int, lo: int, hi: int) -> list[int]:
    """The worker counts in ``[lo, hi]`` that do not divide ``global_batch``."""
    return [w for w in range(lo, hi + 1) if global_batch % w]


def check_elastic(batch_size: int, lo: int, hi: int, max_failures: int) -> None:
    """Refuse an elastic setting that cannot keep the global batch fixed, or that could never restart; the message
    names the numbers and the fix."""
    if lo > hi:
        raise ValueError(f"pretrain.min_workers {lo} exceeds pretrain.num_workers {hi}")
    global_batch = batch_size * hi
    bad = uneven_counts(global_batch, lo, hi)
    if bad:
        step = math.lcm(*range(lo, hi + 1)) // math.gcd(math.lcm(*range(lo, hi + 1)), hi)
        fix = -(-batch_size // step) * step
        raise ValueError(
            f"pretrain.num_workers [{lo}, {hi}] with pretrain.batch_size {batch_size}: the global batch "
            f"{global_batch} (batch_size x {hi} workers) cannot be split evenly over {bad} worker(s), and every "
            f"worker must take an equal share (the loss gathers equal local batches); use a batch_size that is a "
            f"multiple of {step} (e.g. {fix}) or another worker range")
    if max_failures < 1:
        raise ValueError(f"pretrain.num_workers [{lo}, {hi}] is elastic: a lost worker restarts the group (smaller if "
                         "need be) from the latest checkpoint, which Ray Train counts as a failure (growing back does "
                         "not); set pretrain.max_failures >= 1")


def global_batch(pc) -> int:
    """The global contrastive batch of ``pretrain`` config ``pc``: ``batch_size x num_workers`` (the maximum)."""
    return pc.batch_size * max(pc.num_workers, 1)


def share(global_batch_size: int, world: int) -> int:
    """Samples per worker when ``world`` workers split the global batch; ValueError when they cannot evenly."""
    if world < 1 or global_batch_size % world:
        raise ValueError(f"a global batch of {global_batch_size} cannot be split evenly over {world} worker(s)")
    return global_batch_size // world


def cache_chunks(per_worker: int, full_share: int, configured: int | None) -> int | None:
    """Gradient-cache chunks for a share of ``per_worker`` samples so that no chunk exceeds the rows a chunk holds at
    the full group (``full_share`` split into ``configured`` chunks, or one). None: no cache needed (one chunk)."""
    rows = max(full_share // (configured or 1), 1)
    chunks = -(-per_worker // rows)
    return chunks if chunks > 1 or configured else None


def for_world(cfg, world: int):
    """The config one worker of a ``world``-sized group trains with: ``batch_size`` is its share of the fixed
    global batch, ``num_workers`` the current size (so the schedule, still ``train_rows // B`` steps per epoch, and
    samples/s stay right), ``grad_cache_chunks`` from :func:`cache_chunks`. A fixed group's config is returned as is."""
    pc = cfg.pretrain
    if pc.min_workers is None:
        return cfg
    b = share(global_batch(pc), world)
    chunks = cache_chunks(b, pc.batch_size, pc.grad_cache_chunks)
    return cfg.model_copy(update={"pretrain": pc.model_copy(update={
        "batch_size": b, "num_workers": world, "min_workers": None, "grad_cache_chunks": chunks})})


@dataclass(frozen=True)
class Resize:
    """One (re)start of the worker group, from ``step`` (the steps done when it started) on: ``event`` is ``start``
    (the first), ``resize`` (another size than before) or ``restart`` (the same size, e.g. after a lost node was
    replaced before the group could shrink)."""

    event: str
    time: float
    step: int
    workers: int
    per_worker_batch: int
    global_batch: int
    grad_cache_chunks: int | None


class ResizeLog:
    """Every (re)start of the worker group and its size (plain dicts in checkpoints and ``resizes.json``)."""

    def __init__(self, entries: list[dict[str, Any]] | None = None):
        self.entries: list[dict[str, Any]] = [dict(e) for e in entries or []]

    def observe(self, step: int, world: int, per_worker_batch: int, global_batch_size: int,
                chunks: int | None, now: float | None = None) -> dict[str, Any]:
        """Record a (re)start of the group with ``world`` workers after ``step`` steps; returns the new entry."""
        event = "start" if not self.entries else "resize" if self.entries[-1]["workers"] != world else "restart"
        entry = asdict(Resize(event=event, time=time.time() if now is None else now, step=step, workers=world,
                              per_worker_batch=per_worker_batch, global_batch=global_batch_size,
                              grad_cache_chunks=chunks))
        self.entries.append(entry)
        return entry

    @property
    def sizes(self) -> list[int]:
        """The group's sizes in order, a restart at the same size counted once."""
        return [e["workers"] for i, e in enumerate(self.entries) if i == 0 or e["event"] == "resize"]


__all__ = ["Resize", "ResizeLog", "cache_chunks", "check_elastic", "for_world", "global_batch", "parse_worker_range",
           "share", "uneven_counts"]
