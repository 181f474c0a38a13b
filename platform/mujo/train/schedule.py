"""The pretraining schedule as plain arithmetic (no Ray): steps per epoch, total steps, the steps that report.

``train_loop`` and the search (which counts Tune iterations) both use these, so the two cannot disagree, and
an impossible setting (a batch larger than a worker's share of the data) is refused before any cluster work.
"""

from __future__ import annotations

from mujo.config import ConfigError, PretrainConfig


def world_size(pc: PretrainConfig) -> int:
    """Training processes: ``num_workers`` (0 runs the loop in the driver, one process)."""
    return max(pc.num_workers, 1)


def steps_per_epoch(pc: PretrainConfig, train_rows: int) -> int:
    """Full global batches (``batch_size`` per worker, the last partial batch dropped) in one pass over the train
    split; a :class:`~mujo.config.ConfigError` naming the numbers and the fix when that is none (every epoch would
    be empty and the run would never end)."""
    world = world_size(pc)
    steps = train_rows // (pc.batch_size * world)
    if steps < 1:
        raise ConfigError(
            f"pretrain.batch_size {pc.batch_size} per worker x {world} worker(s) = {pc.batch_size * world} windows "
            f"per step, but the train split holds only {train_rows} windows: no full batch per epoch. Lower "
            f"pretrain.batch_size to at most {max(train_rows // world, 0)} (or use fewer workers, or more data)")
    return steps


def total_steps(pc: PretrainConfig, train_rows: int) -> int:
    return steps_per_epoch(pc, train_rows) * pc.epochs


def report_steps(pc: PretrainConfig, train_rows: int) -> list[int]:
    """The steps at which a pretraining run calls ``ray.train.report``: checkpoints, epoch ends, every
    ``report_every_steps`` steps, and the last step (a Tune iteration each, when a Tune trial runs it)."""
    spe = steps_per_epoch(pc, train_rows)
    total = spe * pc.epochs
    return [s for s in range(1, total + 1)
            if s % pc.checkpoint_every_steps == 0 or s == total or s % spe == 0 or s % pc.report_every_steps == 0]


__all__ = ["report_steps", "steps_per_epoch", "total_steps", "world_size"]
