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
from typing import Any

from mujo import raycompat, storage
from mujo.config import MainConfig, SearchConfig
from mujo.run import Manifest, RunLayout
from mujo.tune.search_plan import (  # noqa: F401 - the planning API, re-exported where callers found it
    DIMENSIONS,
    CarryForward,
    SearchPlan,
    apply_values,
    check_space,
    counts,
    expected_iterations,
    first_validation_iteration,
    report_steps,
    split_space,
    validation_keys,
)

log = logging.getLogger(__name__)


def param_space(sc: SearchConfig) -> dict:
    """The searched dimensions as Tune's sampling domains."""
    from ray import tune

    domains = {"choice": tune.choice, "loguniform": lambda spec: tune.loguniform(*spec),
               "uniform": lambda spec: tune.uniform(*spec)}
    return {dim: domains[kind](spec) for dim, (kind, spec) in split_space(sc)[1].items()}


def _report_callback(metric: str, keys: list[str]) -> Any:
    """Tune's ``TuneReportCallback`` with every report completed by :class:`~mujo.tune.search_plan.CarryForward`."""
    from ray.tune.integration.ray_train import TuneReportCallback

    class CarryForwardReportCallback(TuneReportCallback):
        def __init__(self) -> None:
            super().__init__()
            self._carry = CarryForward(metric, keys)

        def after_report(self, run_context, metrics, checkpoint):  # runs in the Train controller
            out = self._carry(metrics[0], checkpoint.path if checkpoint else None)
            super().after_report(run_context, [out, *metrics[1:]], checkpoint)

    return CarryForwardReportCallback()


# The running trial of this (trial) process: its status, thread, expected iterations, controller handle queue.
_TRIAL: dict[str, Any] = {}


def _abort_running_train(iterations_done: int) -> None:
    """Stop the trial's Train run gracefully (worker group and its placement group removed); see the module
    docstring for why."""
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
    raycompat.abort_train_controller(handle, timeout_s=120)
    if thread is not None:
        thread.join(timeout=30)


def search_trial(config: dict[str, Any], plan: SearchPlan, manifest: Manifest,
                 data_progress_bars: bool = False) -> None:
    """One Tune trial (a function trainable): one pretraining run with the sampled values."""
    import threading

    import ray
    from ray import tune
    from ray.util.queue import Queue

    from mujo.train.pretrain import pretrain

    ray.data.DataContext.get_current().enable_progress_bars = data_progress_bars  # as on the driver
    trial_cfg = plan.trial_config(config)
    trial_id = tune.get_context().get_trial_id()
    handles = Queue(actor_options={"num_cpus": 0})
    _TRIAL.clear()
    _TRIAL.update(status="running", queue=handles, thread=threading.current_thread(),
                  expected=plan.expected_iterations)
    try:
        pretrain(trial_cfg, manifest, name=plan.train_name(trial_id),
                 callbacks=[_report_callback(plan.cfg.search.metric, validation_keys(trial_cfg)),
                            raycompat.train_controller_handle_callback(handles)],
                 artefact=plan.trial_artefact(trial_id))
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


def _trainable(plan: SearchPlan, manifest: Manifest) -> Any:
    """The trial as a Tune trainable: :func:`search_trial` with its parameters, whose ``cleanup`` (Tune's hook when
    it stops a trial) first aborts the trial's Train run; with the trial's resources."""
    import ray
    from ray import tune
    from ray.tune.trainable import wrap_function

    fn = tune.with_parameters(search_trial, plan=plan, manifest=manifest,
                              data_progress_bars=ray.data.DataContext.get_current().enable_progress_bars)

    class SearchTrial(wrap_function(fn)):
        def cleanup(self):
            try:
                _abort_running_train(getattr(self, "iteration", 0))
            finally:
                super().cleanup()

    SearchTrial.__name__ = SearchTrial._name = "search_trial"  # the trial folders' prefix
    return tune.with_resources(SearchTrial, plan.trial_resources)


def _tuner(plan: SearchPlan, manifest: Manifest) -> Any:
    """Tune's Tuner for the plan: the search algorithm, ASHA, the trainable, storage under the run's search
    folder."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    sc = plan.cfg.search
    if sc.algorithm == "optuna" and plan.searched:
        from optuna.samplers import TPESampler
        from ray.tune.search.optuna import OptunaSearch

        search_alg = OptunaSearch(sampler=TPESampler(seed=sc.seed), points_to_evaluate=plan.points)
        max_concurrent = sc.max_concurrent_trials
    else:
        # a SearchGenerator: Tune ignores TuneConfig.max_concurrent_trials for it, so it bounds concurrency itself
        search_alg = BasicVariantGenerator(random_state=sc.seed, max_concurrent=sc.max_concurrent_trials,
                                           points_to_evaluate=plan.points)
        max_concurrent = None
    return tune.Tuner(
        _trainable(plan, manifest),
        param_space=param_space(sc),
        tune_config=tune.TuneConfig(
            metric=sc.metric, mode=sc.mode, num_samples=sc.num_samples, search_alg=search_alg,
            scheduler=ASHAScheduler(time_attr="training_iteration", grace_period=sc.grace_period,
                                    reduction_factor=sc.reduction_factor, max_t=sc.max_t),
            max_concurrent_trials=max_concurrent, reuse_actors=False),
        run_config=tune.RunConfig(name=plan.name, **storage.ray_storage(plan.root),
                                  failure_config=tune.FailureConfig(max_failures=sc.max_retries), verbose=0),
    )


def _row(plan: SearchPlan, result: Any) -> dict[str, Any]:
    """A Tune trial result -> its row (:meth:`SearchPlan.row`)."""
    metrics = result.metrics or {}
    trial_id = metrics.get("trial_id") or result.path.rstrip("/").split("/")[-1]
    try:
        history = result.metrics_dataframe
        metric = plan.cfg.search.metric
        series = [float(v) for v in history[metric].dropna()] if history is not None and metric in history else []
    except Exception:  # noqa: BLE001 - a trial that never reported has no history
        series = []
    return plan.row(trial_id, result.config or {}, metrics, result.error, series, result.path,
                    plan.completed(trial_id))


def run_search(cfg: MainConfig, manifest: Manifest, name: str | None = None) -> dict:
    """Run the search on a preprocessed pretraining dataset; write ``trials.json``, ``best.json`` and
    ``best_model`` under the run's search folder; return the summary (``best``, ``trials``, paths)."""
    import ray

    plan = SearchPlan.of(cfg, manifest, name)
    for line in plan.warnings(ray.cluster_resources().get("CPU", 0)):
        log.warning(line)
    storage.makedirs(plan.root)
    rows = [_row(plan, r) for r in _tuner(plan, manifest).fit()]
    n = counts(rows)
    log.info("search %s: %d trials (%d completed, %d stopped early, %d failed)", plan.name, n["trials"],
             n["completed"], n["stopped_early"], n["failed"])
    return plan.finish(rows)


def ensure_manifest(cfg: MainConfig, run_dir: str | None = None) -> Manifest:
    """The pretraining dataset's manifest; generates and preprocesses that dataset first when it has none."""
    from mujo.pipelines.generate import generate
    from mujo.pipelines.preprocess import preprocess, read_manifest

    run_dir = run_dir or cfg.run_dir
    name = cfg.pretrain.dataset
    if storage.exists(RunLayout(run_dir).manifest(name)):
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
    return storage.read_json(RunLayout(run_dir).search_best)


__all__ = ["apply_values", "ensure_manifest", "expected_iterations", "first_validation_iteration", "load_best",
           "param_space", "report_steps", "run_search", "search_trial"]
