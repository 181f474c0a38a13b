"""The pretraining schedule as plain arithmetic (no Ray): steps per epoch, total steps, and the cadence (the steps
that validate, report and checkpoint).

The trainer (:mod:`mujo.train.trainer`) and the search (which counts Tune iterations) both use these, so the two
cannot disagree, and an impossible setting (a batch larger than a worker's share of the data) is refused before any
cluster work.
"""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class Cadence:
    """When a run validates, reports and checkpoints, as predicates of the number of steps done: the one source of
    the cadence (:class:`mujo.train.trainer.Trainer` asks it after every step; the search counts its reports)."""

    steps_per_epoch: int
    epochs: int
    checkpoint_every: int
    report_every: int

    @classmethod
    def of(cls, pc: PretrainConfig, train_rows: int) -> "Cadence":
        return cls(steps_per_epoch(pc, train_rows), pc.epochs, pc.checkpoint_every_steps, pc.report_every_steps)

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.epochs

    def position(self, step: int) -> tuple[int, int]:
        """(epoch, batches of that epoch already consumed) after ``step`` steps."""
        return divmod(step, self.steps_per_epoch)

    def epoch_end(self, step: int) -> bool:
        """Validation runs after the last step of every epoch."""
        return step % self.steps_per_epoch == 0

    def checkpoint(self, step: int) -> bool:
        return step % self.checkpoint_every == 0 or step == self.total_steps

    def report(self, step: int) -> bool:
        """A report (``ray.train.report``; a Tune iteration when a Tune trial runs the run): every checkpoint, epoch
        end and ``report_every`` steps."""
        return self.checkpoint(step) or self.epoch_end(step) or step % self.report_every == 0

    def report_steps(self) -> list[int]:
        return [s for s in range(1, self.total_steps + 1) if self.report(s)]


def report_steps(pc: PretrainConfig, train_rows: int) -> list[int]:
    """The steps at which a pretraining run calls ``ray.train.report``: checkpoints, epoch ends, every
    ``report_every_steps`` steps, and the last step (a Tune iteration each, when a Tune trial runs it)."""
    return Cadence.of(pc, train_rows).report_steps()


__all__ = ["Cadence", "report_steps", "steps_per_epoch", "total_steps", "world_size"]
