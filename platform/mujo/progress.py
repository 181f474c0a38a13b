"""Progress of the Ray stages on the job's console (:mod:`mujo.console`): public Ray Tune and Ray Train callbacks.

- :class:`TrialProgress` (a ``ray.tune.Callback``, in the driver): trials done / running / failed of a Tune run.
- :class:`TrainProgress` (a ``ray.train.UserCallback``, in the Train controller): at each report, rank 0's step,
  loss and samples/s into a small progress file on the run's storage, which the driver follows
  (:meth:`mujo.console.ProgressFile.follow`): the controller is another process, and its own output goes to the
  log file like every worker's.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import ray.train
from ray import tune

from mujo import console
from mujo.console import ProgressFile


class TrialProgress(tune.Callback):
    """``fan-out trials: 12/36, running 2, failed 1`` as trials start and end."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total = label, total
        self.running: set[str] = set()
        self.done = self.failed = 0

    def _show(self) -> None:
        console.get().progress(self.label, self.done, self.total, running=len(self.running),
                               failed=self.failed or None)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.running.add(trial.trial_id)
        self._show()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.running.discard(trial.trial_id)
        self.done += 1
        self._show()

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.running.discard(trial.trial_id)
        self.done += 1
        self.failed += 1
        self._show()


class TrainProgress(ray.train.UserCallback):
    """Writes rank 0's latest step, loss and samples/s (and the total steps) to ``uri`` at every report."""

    def __init__(self, uri: str, total_steps: int) -> None:
        self.file = ProgressFile(uri)
        self.total_steps = total_steps

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
        if not metrics:
            return
        m = metrics[0]
        self.file.write({"step": m.get("step"), "total": self.total_steps, "epoch": m.get("epoch"),
                         "loss": m.get("loss_mean", m.get("loss")),
                         "samples_per_s": m.get("samples_per_s_mean", m.get("samples_per_s")),
                         "val_R@1": m.get("val/R@1/mean"), "time": time.time()})


@contextmanager
def following_training(uri: str, label: str = "pretrain") -> Iterator[None]:
    """Show the progress :class:`TrainProgress` writes to ``uri`` while the block runs."""
    out = console.get()

    def show(doc: dict) -> None:
        if doc.get("step") is None:
            return
        out.progress(label, int(doc["step"]), doc.get("total"), every_s=0.0, epoch=doc.get("epoch"),
                     loss=doc.get("loss"), samples_per_s=doc.get("samples_per_s"), val_R_at_1=doc.get("val_R@1"))

    with ProgressFile(uri).follow(show):
        yield


__all__ = ["TrainProgress", "TrialProgress", "following_training"]
