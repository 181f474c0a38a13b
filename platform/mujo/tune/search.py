"""The pretraining hyperparameter search on Ray Tune: random search or Optuna (TPE), ASHA early stopping.

Under Ray Train V2 a Tune trial cannot be a trainer (``Tuner(trainer)`` is gone): each trial is a function trainable
that builds its own :class:`~mujo.config.MainConfig` from the sampled values (validated like any config) and runs
:func:`mujo.train.pretrain.pretrain`, whose reports reach Tune through a ``TuneReportCallback`` (one
``ray.train.report`` = one Tune iteration, what ASHA counts).

- The search space (``search`` section): ``pretrain.lr`` (log-uniform), ``model.proj_layers``,
  ``model.proj_hidden``, ``model.dropout`` (uniform), ``model.activation``, ``model.init_temperature``
  (log-uniform) and ``loss.form`` (all pairs vs text anchor). A fixed value (range ``[x, x]`` or a one-element
  list) is applied to every trial's config rather than searched. ``search.points`` are evaluated first (e.g. the
  current defaults); random search samples the rest, Optuna (TPE) learns from every finished trial.
- The objective (``search.metric``, default ``val/R@1/mean``) is a validation metric computed at epoch ends only:
  cross-modal retrieval recall, or the few-shot Macro F1 of the sensor embeddings (``val/fewshot_f1/mean``,
  ``pretrain.fewshot_shots`` labelled windows per class; a name pretraining does not report fails the config).
  Tune requires the metric in every result (strict metric checking), and ASHA decides on whatever result
  first passes each rung, so the report callback carries the last validation metrics forward into every later report
  (``val_reported`` says whether the value is new: 1 at epoch ends, 0 when carried). Before the first validation
  the objective is NaN (ASHA neither stops a trial on it nor uses it in cut-offs; ``grace_period`` should reach
  past the first epoch — :func:`run_search` warns when it does not).
- Resources: the trial process only drives the trainer and reserves no CPU by default (``search.trial_cpus``; a
  token amount of memory keeps Tune's placement group valid). Train's worker group is *not* inside Tune's
  placement group, so ``search.max_concurrent_trials`` bounds what the trials take:
  ``pretrain.num_workers x pretrain.cpus_per_worker`` each, and Ray Data's ingest needs whole CPUs beside them.
- Stopping: when Tune stops a trial (ASHA), the trial's cleanup first aborts its Train run through the Train
  controller (an internal controller callback hands the controller's actor handle to the trial), so the worker group
  and its placement group are released at once; otherwise the killed trial takes its controller down ungracefully
  and the workers' placement group stays reserved (Ray Train's cleaner needs the State API, i.e. a dashboard).
- Names: a trial's Train run is ``<experiment>-<trial id>`` under ``<run_dir>/train`` (unique per trial, stable
  across a retry of the trial, which therefore resumes from the trial's last checkpoint); its final model artefact
  goes to ``<run_dir>/search/models/<experiment>/<trial id>``.
- Every trial writes TensorBoard event files (Tune's TBX logger) into its trial folder under
  ``<run_dir>/search/<experiment>/``: ``tensorboard --logdir <run_dir>/search`` shows the trials side by side. Tags
  are ``ray/tune/<metric>``, with characters outside ``[-/\\w.]`` replaced by ``_`` by tensorboardX (so
  ``val/R@1/mean`` appears as ``ray/tune/val/R_1/mean``).
- Results: ``<run_dir>/search/trials.json`` (one row per trial) and ``<run_dir>/search/best.json``: the best
  trial's full config, metric value and model artefact — the trial's final artefact when it ran to its end, else
  its last checkpoint (every checkpoint is a loadable artefact) — also copied to ``<run_dir>/search/best_model``
  (what a next job loads with :func:`mujo.models.load_pretrained`).
"""

from __future__ import annotations

import logging
import math
from typing import Any

from mujo import storage
from mujo.config import MainConfig, SearchConfig
from mujo.metrics import validation_metric_names
from mujo.models.mujo import ARTEFACT_CONFIG, ARTEFACT_WEIGHTS
from mujo.train import schedule

log = logging.getLogger(__name__)

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
CHECKPOINT_KEY = "checkpoint_path"      # what TuneReportCallback adds to a report that saved a checkpoint
LAST_CHECKPOINT_KEY = "last_checkpoint"  # carried forward by our callback
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


def param_space(sc: SearchConfig) -> dict:
    from ray import tune

    space = {}
    for dim, (kind, spec) in split_space(sc)[1].items():
        if kind == "choice":
            space[dim] = tune.choice(spec)
        elif kind == "loguniform":
            space[dim] = tune.loguniform(*spec)
        else:
            space[dim] = tune.uniform(*spec)
    return space


def steps_per_epoch(cfg: MainConfig, manifest: dict) -> int:
    """What :func:`mujo.train.pretrain.train_loop` computes (:mod:`mujo.train.schedule`)."""
    return schedule.steps_per_epoch(cfg.pretrain, manifest["rows"]["train"])


def report_steps(cfg: MainConfig, manifest: dict) -> list[int]:
    """The steps at which a pretraining run reports (= its Tune iterations), as in ``train_loop``."""
    return schedule.report_steps(cfg.pretrain, manifest["rows"]["train"])


def expected_iterations(cfg: MainConfig, manifest: dict) -> int:
    """Tune iterations of a trial that runs to its end (no retry)."""
    return len(report_steps(cfg, manifest))


def first_validation_iteration(cfg: MainConfig, manifest: dict) -> int:
    """The Tune iteration that first carries validation metrics (the end of the first epoch)."""
    return report_steps(cfg, manifest).index(steps_per_epoch(cfg, manifest)) + 1


def validation_keys(cfg: MainConfig) -> list[str]:
    """The validation metrics pretraining reports at epoch ends (a pair lacking samples may be absent)."""
    return validation_metric_names(cfg.model.modalities, fewshot=cfg.pretrain.fewshot_shots > 0)


def _carry_forward_callback(metric: str, keys: list[str]) -> Any:
    """A TuneReportCallback that puts the last validation metrics (and checkpoint) into every report.

    Before the first validation the validation keys are NaN: present from the first result on (Tune's CSV logger
    fixes its columns at the first result; its TensorBoard logger skips NaN)."""
    from ray.tune.integration.ray_train import TuneReportCallback

    class CarryForwardReportCallback(TuneReportCallback):
        def __init__(self) -> None:
            super().__init__()
            self._last_val: dict[str, Any] = {k: float("nan") for k in keys}
            self._last_checkpoint: str | None = None

        def after_report(self, run_context, metrics, checkpoint):  # runs in the Train controller
            out = dict(metrics[0])
            fresh = {k: v for k, v in out.items() if k.startswith("val/")}
            if fresh:
                self._last_val = {**{k: float("nan") for k in self._last_val}, **fresh}
            for k, v in self._last_val.items():
                out.setdefault(k, v)
            out[FRESH_KEY] = int(bool(fresh))
            if checkpoint:
                out[CHECKPOINT_KEY] = checkpoint.path
                self._last_checkpoint = checkpoint.path
            if self._last_checkpoint:
                out[LAST_CHECKPOINT_KEY] = self._last_checkpoint
            if metric not in out:  # nothing to carry yet (before the first validation)
                out[metric] = float("nan")
            self._training_actor_item_queue.put(out)

    return CarryForwardReportCallback()


def _controller_handle_callback(queue) -> Any:
    """An (internal) Train controller callback that sends the controller's own actor handle to ``queue``."""
    from ray.train.v2._internal.execution.callback import ControllerCallback

    class ControllerHandleCallback(ControllerCallback):
        def __init__(self, q) -> None:
            self._q = q

        def after_controller_start(self, train_run_context) -> None:  # runs in the controller
            import ray

            self._q.actor.put_nowait.remote(ray.get_runtime_context().current_actor)

    return ControllerHandleCallback(queue)


# The running trial of this (trial) process: its status, thread, expected iterations, controller handle queue.
_TRIAL: dict[str, Any] = {}


def _abort_running_train(iterations_done: int) -> None:
    """Stop the trial's Train run gracefully (worker group and its placement group removed).

    When Tune stops a trial (ASHA), it ends the trial's actor, and with it the Train controller that actor owns —
    ungracefully: the controller never shuts its worker group down, and the worker group's placement group (which
    belongs to the job, not to the controller) stays reserved. Ray Train's own PlacementGroupCleaner removes it
    only through the State API, i.e. only where a dashboard runs. Aborting the controller first releases it always.
    """
    import ray

    if _TRIAL.get("status") != "running":
        return
    thread, expected = _TRIAL.get("thread"), _TRIAL.get("expected")
    if thread is not None and expected and iterations_done >= expected:
        thread.join(timeout=120)  # stopped at its last report: let the run write its final artefact and end
        if not thread.is_alive():
            return
    handle = None
    try:
        while True:
            handle = _TRIAL["queue"].get_nowait()
    except Exception:  # noqa: BLE001 - empty (or already shut down): keep the last handle seen
        pass
    if handle is None:
        return
    _TRIAL["status"] = "aborting"
    try:
        ray.get(handle.abort.remote(), timeout=120)
    except Exception:  # noqa: BLE001 - abort ends the controller actor, so the call itself fails
        pass
    if thread is not None:
        thread.join(timeout=30)


class AbortTrainOnStop:
    """Mixin for the trial's function trainable: abort its Train run when Tune stops the trial."""

    def cleanup(self):
        try:
            _abort_running_train(getattr(self, "iteration", 0))
        finally:
            super().cleanup()


def search_trial(config: dict[str, Any], base: dict, manifest: dict, experiment: str, models_root: str,
                 expected: int, data_progress_bars: bool = False) -> None:
    """One Tune trial (a function trainable): one pretraining run with the sampled values."""
    import threading

    import ray
    from ray import tune
    from ray.util.queue import Queue

    from mujo.train.pretrain import pretrain

    ray.data.DataContext.get_current().enable_progress_bars = data_progress_bars  # as on the driver
    cfg = MainConfig.model_validate(base)
    trial_cfg = apply_values(cfg, {k: v for k, v in config.items() if k in DIMENSIONS})
    trial_id = tune.get_context().get_trial_id()
    handles = Queue(actor_options={"num_cpus": 0})
    _TRIAL.clear()
    _TRIAL.update(status="running", queue=handles, thread=threading.current_thread(), expected=expected)
    try:
        pretrain(trial_cfg, manifest, name=f"{experiment}-{trial_id}",
                 callbacks=[_carry_forward_callback(cfg.search.metric, validation_keys(trial_cfg)),
                            _controller_handle_callback(handles)],
                 artefact=storage.join(models_root, trial_id))
    except Exception:
        if _TRIAL.get("status") == "aborting":
            log.info("trial %s stopped by the scheduler: its Train run was aborted", trial_id)
            return
        raise
    finally:
        if _TRIAL.get("status") == "running":
            _TRIAL["status"] = "done"
        if _TRIAL.get("status") == "done":
            handles.shutdown()


def _with_absolute_root(cfg: MainConfig) -> MainConfig:
    """Trials run in their own working directory: make a local storage root absolute for them."""
    import os

    if storage.is_s3(cfg.storage.root):
        return cfg
    return cfg.model_copy(update={"storage": cfg.storage.model_copy(update={"root": os.path.abspath(
        cfg.storage.root)})})


def _storage_uri(path: str | None, like: str) -> str | None:
    """A path Ray reports on the storage filesystem -> a URI of the same kind as ``like``."""
    if not path:
        return None
    if storage.is_s3(like) and not storage.is_s3(path):
        return "s3://" + path.lstrip("/")
    return path


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _error_line(error: BaseException | None) -> str:
    if error is None:
        return ""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return (lines[-1] if lines else type(error).__name__)[:300]


def copy_artefact(src: str, dst: str) -> None:
    """Copy the files a model artefact consists of (not a checkpoint's training state)."""
    for name in (ARTEFACT_CONFIG, ARTEFACT_WEIGHTS, "history.json"):
        if name == "history.json" and not storage.exists(storage.join(src, name)):
            continue
        storage.write_bytes(storage.join(dst, name), storage.read_bytes(storage.join(src, name)))


def run_search(cfg: MainConfig, manifest: dict, name: str | None = None) -> dict:
    """Run the search on a preprocessed pretraining dataset; write ``trials.json``, ``best.json`` and
    ``best_model`` under ``<run_dir>/search``; return the summary (``best``, ``trials``, paths)."""
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    cfg = _with_absolute_root(cfg)
    sc = cfg.search
    check_space(cfg)
    fixed, _ = split_space(sc)
    base = apply_values(cfg, fixed)
    name = name or f"{cfg.run_name}-search"
    run_dir = cfg.run_dir
    root = storage.join(run_dir, "search")
    models_root = storage.join(root, "models", name)
    storage.makedirs(root)

    full = expected_iterations(base, manifest)
    first_val = first_validation_iteration(base, manifest)
    if sc.grace_period < first_val:
        log.warning("search.grace_period=%d is before the first validation (Tune iteration %d): ASHA's first rung "
                    "sees no value of %s", sc.grace_period, first_val, sc.metric)
    space = param_space(sc)
    points = [p for p in ({k: v for k, v in point.items() if k in space} for point in sc.points) if p] or None
    if sc.algorithm == "optuna" and space:
        from optuna.samplers import TPESampler
        from ray.tune.search.optuna import OptunaSearch

        search_alg = OptunaSearch(sampler=TPESampler(seed=sc.seed), points_to_evaluate=points)
    else:
        if sc.algorithm == "optuna":
            log.warning("search: every dimension is fixed; nothing for Optuna to search, sampling directly")
        # a SearchGenerator: Tune ignores TuneConfig.max_concurrent_trials for it, so it bounds concurrency itself
        search_alg = BasicVariantGenerator(random_state=sc.seed, max_concurrent=sc.max_concurrent_trials,
                                           points_to_evaluate=points)
    pc = cfg.pretrain
    cpus = ray.cluster_resources().get("CPU", 0)
    need = sc.max_concurrent_trials * (pc.num_workers * pc.cpus_per_worker + sc.trial_cpus)
    if cpus and need > cpus - 1:
        log.warning("search: %d concurrent trial(s) take %.1f of %.0f CPUs, leaving less than one for Ray Data "
                    "ingest (trials may stall); lower search.max_concurrent_trials", sc.max_concurrent_trials,
                    need, cpus)
    resources = {"cpu": sc.trial_cpus} if sc.trial_cpus > 0 else {"cpu": 0, "memory": TRIAL_MEMORY_BYTES}
    fn = tune.with_parameters(search_trial, base=base.model_dump(mode="json"), manifest=manifest, experiment=name,
                              models_root=models_root, expected=full,
                              data_progress_bars=ray.data.DataContext.get_current().enable_progress_bars)
    fn.__mixins__ = (AbortTrainOnStop,)  # Tune's function wrapper puts these mixins before FunctionTrainable
    trainable = tune.with_resources(fn, resources)
    tuner = tune.Tuner(
        trainable,
        param_space=space,
        tune_config=tune.TuneConfig(
            metric=sc.metric, mode=sc.mode, num_samples=sc.num_samples, search_alg=search_alg,
            scheduler=ASHAScheduler(time_attr="training_iteration", grace_period=sc.grace_period,
                                    reduction_factor=sc.reduction_factor, max_t=sc.max_t),
            max_concurrent_trials=None if isinstance(search_alg, BasicVariantGenerator)
            else sc.max_concurrent_trials, reuse_actors=False),
        run_config=tune.RunConfig(
            name=name, **storage.ray_storage(root),
            failure_config=tune.FailureConfig(max_failures=sc.max_retries), verbose=0),
    )
    grid = tuner.fit()

    rows = []
    for r in grid:
        metrics = r.metrics or {}
        trial_id = metrics.get("trial_id") or (r.path.rstrip("/").split("/")[-1])
        values = {**fixed, **{k: v for k, v in r.config.items() if k in DIMENSIONS}}
        final = storage.join(models_root, trial_id)
        completed = storage.exists(storage.join(final, ARTEFACT_CONFIG))
        artefact = final if completed else _storage_uri(metrics.get(LAST_CHECKPOINT_KEY), run_dir)
        iterations = metrics.get("training_iteration", 0)
        try:
            history = r.metrics_dataframe
            series = history[sc.metric].dropna() if history is not None and sc.metric in history else None
        except Exception:  # noqa: BLE001 - a trial that never reported has no history
            series = None
        best_seen = None
        if series is not None and len(series):
            best_seen = float(series.max() if sc.mode == "max" else series.min())
        rows.append({
            "trial_id": trial_id, "values": values,
            "status": "failed" if r.error is not None else ("completed" if completed else "stopped"),
            "error": _error_line(r.error),
            "iterations": iterations, "expected_iterations": full,
            "stopped_early": r.error is None and not completed and iterations < full,
            "step": metrics.get("step"), "epoch": metrics.get("epoch"),
            "metric": metrics.get(sc.metric) if _finite(metrics.get(sc.metric)) else None,
            "metric_best_seen": best_seen,
            "artefact": artefact, "trial_path": _storage_uri(r.path, run_dir),
        })
    storage.write_json(storage.join(root, "trials.json"), rows)
    log.info("search %s: %d trials (%d completed, %d stopped early, %d failed)", name, len(rows),
             sum(r["status"] == "completed" for r in rows), sum(r["stopped_early"] for r in rows),
             sum(r["status"] == "failed" for r in rows))

    candidates = [r for r in rows if r["status"] != "failed" and r["metric"] is not None and r["artefact"]]
    if not candidates:
        raise RuntimeError(f"search {name}: no trial reported {sc.metric} with a model artefact; see "
                           f"{storage.join(root, 'trials.json')}")
    sign = 1.0 if sc.mode == "max" else -1.0
    # by the last reported value (what ASHA compared); ties favour a trial that ran to its end
    best = max(candidates, key=lambda r: (sign * r["metric"], r["status"] == "completed"))
    best_model = storage.join(root, "best_model")
    copy_artefact(best["artefact"], best_model)
    best_cfg = apply_values(base, best["values"])
    summary = {
        "experiment": name, "metric": sc.metric, "mode": sc.mode, "value": best["metric"],
        "trial_id": best["trial_id"], "status": best["status"], "step": best["step"],
        "values": best["values"], "config": best_cfg.model_dump(mode="json"),
        "artefact": best_model, "source_artefact": best["artefact"],
        "artefact_step": storage.read_json(storage.join(best_model, ARTEFACT_CONFIG)).get("step"),
        "trial_path": best["trial_path"],
        "tensorboard_logdir": storage.join(root, name),
    }
    storage.write_json(storage.join(root, "best.json"), summary)
    return {"best": summary, "trials": rows, "best_json": storage.join(root, "best.json"),
            "trials_json": storage.join(root, "trials.json"), "experiment_path": storage.join(root, name)}


def ensure_manifest(cfg: MainConfig, run_dir: str | None = None) -> dict:
    """The pretraining dataset's manifest; generates and preprocesses that dataset first when it has none."""
    from mujo.pipelines.generate import generate
    from mujo.pipelines.preprocess import preprocess, read_manifest, shards_dir

    run_dir = run_dir or cfg.run_dir
    name = cfg.pretrain.dataset
    if storage.exists(storage.join(shards_dir(run_dir, name), "manifest.json")):
        return read_manifest(run_dir, name)
    specs = [d for d in cfg.generate.datasets if d.name == name]
    if not specs:
        raise ValueError(f"pretrain.dataset '{name}' has no manifest under {run_dir} and is not among "
                         f"generate.datasets {[d.name for d in cfg.generate.datasets]}")
    log.info("no manifest for %s under %s: generating and preprocessing it", name, run_dir)
    generate(cfg.generate.model_copy(update={"datasets": specs}), run_dir)
    return preprocess({name: specs[0].video_dim}, run_dir, cfg.preprocess)[name]


def load_best(run_dir: str) -> dict:
    """The best trial of the run's search (``best.json``): ``config`` validates as a MainConfig, ``artefact``
    loads with :func:`mujo.models.load_pretrained`."""
    return storage.read_json(storage.join(run_dir, "search", "best.json"))


__all__ = ["run_search", "load_best", "ensure_manifest", "search_trial", "param_space", "apply_values", "expected_iterations",
           "first_validation_iteration", "report_steps"]
