"""The pretraining search's plan and bookkeeping, without Ray: what :func:`mujo.tune.search.run_search` executes.

- The space: the ``search`` section splits into fixed values (a range ``[x, x]`` or a one-element list, applied to
  every trial's config) and searched dimensions (log-uniform, uniform, choice); every value of the space is checked
  to make a valid config before any trial starts.
- The iterations: a trial's Tune iterations are its pretraining run's reports, counted from the trainer's own
  cadence (:class:`mujo.train.schedule.Cadence`; there is no second copy): how many a full trial makes, and which
  one first carries a validation metric (ASHA's ``grace_period`` should reach past it).
- The reports: :class:`CarryForward` puts the last validation metrics (and checkpoint) into every report, since Tune
  checks that the objective is in every result and ASHA decides on whichever result first passes a rung.
- The rows: one per trial (``trials.json``), its status (completed / stopped / failed) and the artefact that stands
  for it — its final artefact when it ran to its end, else its last checkpoint (every checkpoint is a loadable
  artefact); the best trial (by the last reported value, what ASHA compared; a tie favours a trial that ran to its
  end) and its summary (``best.json``), whose artefact is copied to ``best_model``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from mujo import storage
from mujo.config import MainConfig, SearchConfig
from mujo.evaluate.metrics import validation_metric_names
from mujo.models.mujo import ARTEFACT_CONFIG, ARTEFACT_WEIGHTS
from mujo.run import Manifest, RunLayout
from mujo.train.schedule import Cadence

# search dimension -> (config section, field)
DIMENSIONS: dict[str, tuple[str, str]] = {
    "lr": ("pretrain", "lr"),
    "proj_layers": ("model", "proj_layers"),
    "proj_hidden": ("model", "proj_hidden"),
    "dropout": ("model", "dropout"),
    "activation": ("model", "activation"),
    "init_temperature": ("model", "init_temperature"),
    "loss_form": ("loss", "form"),
}
LOG_UNIFORM = ("lr", "init_temperature")
UNIFORM = ("dropout",)
CHECKPOINT_KEY = "checkpoint_path"      # what Tune's TuneReportCallback adds to a report that saved a checkpoint
LAST_CHECKPOINT_KEY = "last_checkpoint"  # carried forward by CarryForward
FRESH_KEY = "val_reported"
TRIAL_MEMORY_BYTES = 2**20               # Tune needs a non-empty placement group; with trial_cpus=0 this is it


def split_space(sc: SearchConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """(fixed values, searched dimensions as (kind, spec)) of the search section."""
    fixed: dict[str, Any] = {}
    searched: dict[str, Any] = {}
    for dim in DIMENSIONS:
        value = getattr(sc, dim)
        if isinstance(value, tuple):
            low, high = value
            if low == high:
                fixed[dim] = low
            else:
                searched[dim] = ("loguniform" if dim in LOG_UNIFORM else "uniform", (low, high))
        elif len(value) == 1:
            fixed[dim] = value[0]
        else:
            searched[dim] = ("choice", list(value))
    return fixed, searched


def apply_values(cfg: MainConfig, values: dict[str, Any]) -> MainConfig:
    """A copy of ``cfg`` with search dimensions set, validated like a loaded config (pydantic errors propagate)."""
    tree = cfg.model_dump(mode="json")
    for dim, value in values.items():
        section, field = DIMENSIONS[dim]
        tree[section][field] = value
    return MainConfig.model_validate(tree)


def check_space(cfg: MainConfig) -> None:
    """Fail before any trial starts when some value of the space makes an invalid config (e.g. text_anchor
    without the text modality)."""
    sc = cfg.search
    for dim in DIMENSIONS:
        value = getattr(sc, dim)
        for v in (value if isinstance(value, list) else list(value)):
            try:
                apply_values(cfg, {dim: v})
            except ValueError as exc:
                raise ValueError(f"search.{dim}: value {v!r} makes an invalid config: {exc}") from None


def with_absolute_root(cfg: MainConfig) -> MainConfig:
    """Trials run in their own working directory: make a local storage root absolute for them."""
    if storage.is_s3(cfg.storage.root):
        return cfg
    return cfg.model_copy(update={"storage": cfg.storage.model_copy(update={"root": os.path.abspath(
        cfg.storage.root)})})


def storage_uri(path: str | None, like: str) -> str | None:
    """A path Ray reports on the storage filesystem -> a URI of the same kind as ``like``."""
    if not path:
        return None
    if storage.is_s3(like) and not storage.is_s3(path):
        return "s3://" + path.lstrip("/")
    return path


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def error_line(error: BaseException | None) -> str:
    """A trial's error as one line (its last non-empty line, at most 300 characters)."""
    if error is None:
        return ""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return (lines[-1] if lines else type(error).__name__)[:300]


def cadence(cfg: MainConfig, manifest: Manifest) -> Cadence:
    """The pretraining cadence of ``cfg`` on the manifest's train split (what the trainer follows)."""
    return Cadence.of(cfg.pretrain, manifest.rows_of("train"))


def report_steps(cfg: MainConfig, manifest: Manifest) -> list[int]:
    """The steps at which a pretraining run reports (= its Tune iterations)."""
    return cadence(cfg, manifest).report_steps()


def _first_validation(c: Cadence) -> int:
    return c.report_steps().index(c.steps_per_epoch) + 1


def expected_iterations(cfg: MainConfig, manifest: Manifest) -> int:
    """Tune iterations of a trial that runs to its end (no retry)."""
    return len(report_steps(cfg, manifest))


def first_validation_iteration(cfg: MainConfig, manifest: Manifest) -> int:
    """The Tune iteration that first carries validation metrics (the end of the first epoch)."""
    return _first_validation(cadence(cfg, manifest))


def validation_keys(cfg: MainConfig) -> list[str]:
    """The validation metrics pretraining reports at epoch ends (a pair lacking samples may be absent)."""
    return validation_metric_names(cfg.model.modalities, fewshot=cfg.pretrain.fewshot_shots > 0)


class CarryForward:
    """Every report of a trial's Train run, completed for Tune: the last validation metrics (NaN before the first
    validation: present from the first result on, since Tune's CSV logger fixes its columns at the first result and
    its TensorBoard logger skips NaN), ``val_reported`` (1 when the validation values are new, 0 when carried), the
    last checkpoint, and the objective (NaN until there is one)."""

    def __init__(self, metric: str, keys: list[str]) -> None:
        self.metric = metric
        self._last_val: dict[str, Any] = {k: float("nan") for k in keys}
        self._last_checkpoint: str | None = None

    def __call__(self, metrics: dict[str, Any], checkpoint_path: str | None = None) -> dict[str, Any]:
        out = dict(metrics)
        fresh = {k: v for k, v in out.items() if k.startswith("val/")}
        if fresh:
            self._last_val = {**{k: float("nan") for k in self._last_val}, **fresh}
        for k, v in self._last_val.items():
            out.setdefault(k, v)
        out[FRESH_KEY] = int(bool(fresh))
        if checkpoint_path:
            self._last_checkpoint = checkpoint_path
        if self._last_checkpoint:
            out[LAST_CHECKPOINT_KEY] = self._last_checkpoint
        out.setdefault(self.metric, float("nan"))
        return out


@dataclass(frozen=True)
class SearchPlan:
    """What one search runs and where it writes, decided before Ray starts (:meth:`of`)."""

    cfg: MainConfig      # the config as given, its storage root made absolute
    base: MainConfig     # with the fixed values applied: every trial's starting point
    name: str
    fixed: dict[str, Any]
    searched: dict[str, tuple[str, Any]]
    points: list[dict[str, Any]] | None
    cadence: Cadence

    @classmethod
    def of(cls, cfg: MainConfig, manifest: Manifest, name: str | None = None) -> "SearchPlan":
        """The plan of ``cfg.search`` on a preprocessed pretraining dataset (its manifest); a value of the space
        that makes an invalid config, or a schedule without a full batch, fails here."""
        cfg = with_absolute_root(cfg)
        check_space(cfg)
        fixed, searched = split_space(cfg.search)
        base = apply_values(cfg, fixed)
        points = [p for p in ({k: v for k, v in point.items() if k in searched} for point in cfg.search.points)
                  if p] or None
        return cls(cfg=cfg, base=base, name=name or f"{cfg.run_name}-search", fixed=fixed, searched=searched,
                   points=points, cadence=cadence(base, manifest))

    # -- counts ---------------------------------------------------------------------------------------------------

    @property
    def expected_iterations(self) -> int:
        return len(self.cadence.report_steps())

    @property
    def first_validation_iteration(self) -> int:
        return _first_validation(self.cadence)

    def warnings(self, cluster_cpus: float = 0) -> list[str]:
        """What may make the search useless or stall, as log lines: a grace period before the first validation,
        concurrent trials leaving Ray Data ingest less than a CPU (``cluster_cpus``: the cluster's, 0 unknown)."""
        sc, pc = self.cfg.search, self.cfg.pretrain
        out = []
        if sc.grace_period < self.first_validation_iteration:
            out.append(f"search.grace_period={sc.grace_period} is before the first validation (Tune iteration "
                       f"{self.first_validation_iteration}): ASHA's first rung sees no value of {sc.metric}")
        if sc.algorithm == "optuna" and not self.searched:
            out.append("search: every dimension is fixed; nothing for Optuna to search, sampling directly")
        need = sc.max_concurrent_trials * (pc.num_workers * pc.cpus_per_worker + sc.trial_cpus)
        if cluster_cpus and need > cluster_cpus - 1:
            out.append(f"search: {sc.max_concurrent_trials} concurrent trial(s) take {need:.1f} of {cluster_cpus:.0f} "
                       "CPUs, leaving less than one for Ray Data ingest (trials may stall); lower "
                       "search.max_concurrent_trials")
        return out

    @property
    def trial_resources(self) -> dict[str, float]:
        """A trial process only drives its trainer (whose workers are outside Tune's placement group)."""
        tc = self.cfg.search.trial_cpus
        return {"cpu": tc} if tc > 0 else {"cpu": 0, "memory": TRIAL_MEMORY_BYTES}

    # -- paths ----------------------------------------------------------------------------------------------------

    @property
    def layout(self) -> RunLayout:
        return RunLayout.of(self.cfg)

    @property
    def root(self) -> str:
        return self.layout.search

    @property
    def models_root(self) -> str:
        return self.layout.search_models(self.name)

    @property
    def experiment_path(self) -> str:
        """Tune's experiment folder (every trial's TensorBoard files)."""
        return storage.join(self.root, self.name)

    @property
    def trials_json(self) -> str:
        return self.layout.search_trials

    @property
    def best_json(self) -> str:
        return self.layout.search_best

    @property
    def best_model(self) -> str:
        return self.layout.search_best_model

    def train_name(self, trial_id: str) -> str:
        """A trial's Train run: unique per trial, stable across a retry (which resumes from its checkpoint)."""
        return f"{self.name}-{trial_id}"

    def trial_artefact(self, trial_id: str) -> str:
        return storage.join(self.models_root, trial_id)

    def completed(self, trial_id: str) -> bool:
        """Did the trial's run write its final artefact (run to its end)?"""
        return storage.exists(storage.join(self.trial_artefact(trial_id), ARTEFACT_CONFIG))

    def trial_config(self, values: dict[str, Any]) -> MainConfig:
        """A trial's config from its sampled values (others than search dimensions are ignored)."""
        return apply_values(self.base, {k: v for k, v in values.items() if k in DIMENSIONS})

    # -- results --------------------------------------------------------------------------------------------------

    def row(self, trial_id: str, config: dict[str, Any], metrics: dict[str, Any] | None,
            error: BaseException | None, metric_history: list[float], trial_path: str | None,
            completed: bool) -> dict[str, Any]:
        """One trial's row: its values, outcome and the artefact that stands for it. ``metric_history`` holds the
        objective's reported values (NaN dropped), ``completed`` whether its final artefact exists."""
        sc, run_dir = self.cfg.search, self.cfg.run_dir
        metrics = metrics or {}
        iterations = metrics.get("training_iteration", 0)
        seen = [v for v in metric_history if _finite(v)]
        best_seen = (max(seen) if sc.mode == "max" else min(seen)) if seen else None
        full = self.expected_iterations
        return {
            "trial_id": trial_id, "values": {**self.fixed, **{k: v for k, v in config.items() if k in DIMENSIONS}},
            "status": "failed" if error is not None else ("completed" if completed else "stopped"),
            "error": error_line(error),
            "iterations": iterations, "expected_iterations": full,
            "stopped_early": error is None and not completed and iterations < full,
            "step": metrics.get("step"), "epoch": metrics.get("epoch"),
            "metric": metrics.get(sc.metric) if _finite(metrics.get(sc.metric)) else None,
            "metric_best_seen": None if best_seen is None else float(best_seen),
            "artefact": (self.trial_artefact(trial_id) if completed
                         else storage_uri(metrics.get(LAST_CHECKPOINT_KEY), run_dir)),
            "trial_path": storage_uri(trial_path, run_dir),
        }

    def best(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """The best trial: by the last reported value (what ASHA compared), a tie favouring a trial that ran to its
        end; only trials that did not fail and have a value and an artefact count."""
        candidates = [r for r in rows if r["status"] != "failed" and r["metric"] is not None and r["artefact"]]
        if not candidates:
            raise RuntimeError(f"search {self.name}: no trial reported {self.cfg.search.metric} with a model "
                               f"artefact; see {self.trials_json}")
        sign = 1.0 if self.cfg.search.mode == "max" else -1.0
        return max(candidates, key=lambda r: (sign * r["metric"], r["status"] == "completed"))

    def summary(self, best: dict[str, Any], artefact_step: int | None) -> dict[str, Any]:
        """``best.json``: the best trial's full config, value and artefacts."""
        sc = self.cfg.search
        return {
            "experiment": self.name, "metric": sc.metric, "mode": sc.mode, "value": best["metric"],
            "trial_id": best["trial_id"], "status": best["status"], "step": best["step"],
            "values": best["values"], "config": apply_values(self.base, best["values"]).model_dump(mode="json"),
            "artefact": self.best_model, "source_artefact": best["artefact"], "artefact_step": artefact_step,
            "trial_path": best["trial_path"], "tensorboard_logdir": self.experiment_path,
        }

    def finish(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """Write ``trials.json``, pick the best trial, copy its artefact to ``best_model``, write ``best.json``;
        returns the search's outcome (``best``, ``trials``, paths)."""
        storage.write_json(self.trials_json, rows)
        best = self.best(rows)
        copy_artefact(best["artefact"], self.best_model)
        step = storage.read_json(storage.join(self.best_model, ARTEFACT_CONFIG)).get("step")
        summary = self.summary(best, step)
        storage.write_json(self.best_json, summary)
        return {"best": summary, "trials": rows, "best_json": self.best_json, "trials_json": self.trials_json,
                "experiment_path": self.experiment_path}


def counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Trials by outcome."""
    return {"trials": len(rows), "completed": sum(r["status"] == "completed" for r in rows),
            "stopped_early": sum(bool(r["stopped_early"]) for r in rows),
            "failed": sum(r["status"] == "failed" for r in rows)}


def copy_artefact(src: str, dst: str) -> None:
    """Copy the files a model artefact consists of (not a checkpoint's training state)."""
    for name in (ARTEFACT_CONFIG, ARTEFACT_WEIGHTS, "history.json"):
        if name == "history.json" and not storage.exists(storage.join(src, name)):
            continue
        storage.write_bytes(storage.join(dst, name), storage.read_bytes(storage.join(src, name)))


__all__ = ["CarryForward", "DIMENSIONS", "SearchPlan", "apply_values", "check_space", "copy_artefact", "counts",
           "expected_iterations", "first_validation_iteration", "report_steps", "split_space", "validation_keys"]
