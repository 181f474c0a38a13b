"""The downstream evaluation as one Ray Tune fan-out over (input modalities, setting, label fraction, calibration)
cells of a preprocessed dataset, and their seeds.

``evaluate.engine: grouped`` (the default): one trial per group of ``evaluate.seeds_per_trial`` seeds of a cell,
trained together by :func:`mujo.evaluate.engine.train_seed_group` (each seed as it would train alone); for the frozen
setting the frozen encoders' features are computed once per (calibration, inputs) on the driver and shared with the
trials, which train only heads. A trial reports each epoch the group's metrics (mean and per-seed validation Macro
F1) and at the end one row per seed (``seed_rows``), so ``trials.csv`` keeps one :class:`~mujo.run.TrialResult` per
seed. ``per_seed``: one trial per seed, the classifier trained by :func:`mujo.evaluate.finetune.train_classifier`.

The dataset's arrays are loaded once on the driver and shared with every trial through the object store
(``tune.with_parameters``). A failed trial is retried ``evaluate.max_retries`` times; if it still fails its seeds
appear in the results as failed (with its error), never silently dropped.
"""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from typing import Any

from mujo import storage
from mujo.config import EvaluateConfig, MainConfig
from mujo.evaluate.engine import FEATURES, FeatureHead, frozen_features, train_seed_group
from mujo.evaluate.finetune import FinetuneConfig, sample_label_fraction, train_classifier
from mujo.evaluate.metrics import class_f1
from mujo.run import INPUT_SEP, Manifest, RunLayout, TrialResult
from mujo.train.gpu import gpu_metrics

log = logging.getLogger(__name__)


def input_key(inputs: list[str]) -> str:
    return INPUT_SEP.join(inputs)


@lru_cache(maxsize=2)
def _pretrained(path: str):
    from mujo.models import load_pretrained

    return load_pretrained(path)


def finetune_trial(config: dict[str, Any], data: dict, pretrained: str, evaluate: dict, num_classes: int,
                   keep: dict | None = None) -> None:
    """One Tune trial (a function trainable); with ``keep`` (evaluate.keep_classifiers) it saves its classifier."""
    from ray import tune

    from mujo.models import build_classifier

    ecfg = EvaluateConfig.model_validate(evaluate)
    config = config["trial"]  # the cell (param_space)
    inputs = config["inputs"].split(INPUT_SEP)
    data = data[config["calibration"]]
    x_train, y_train = data["train"]
    idx = sample_label_fraction(y_train, config["fraction"], seed=config["seed"])
    split = {"train": ({m: x_train[m][idx] for m in inputs}, y_train[idx])}
    for name in ("val", "test"):
        x, y = data[name]
        split[name] = ({m: x[m] for m in inputs}, y)
    model = build_classifier(_pretrained(pretrained), inputs, num_classes, config["setting"],
                             hidden=ecfg.head_hidden, seed=config["seed"])
    device = trial_device(ecfg)
    fcfg = FinetuneConfig(lr=ecfg.lr, max_epochs=ecfg.max_epochs, patience=ecfg.patience,
                          batch_size=ecfg.batch_size, seed=config["seed"], device=str(device))
    result = train_classifier(model, split["train"], split["val"], split["test"], num_classes, fcfg,
                              on_epoch=lambda m: tune.report({**m, **gpu_metrics(device), "done": False}))
    if keep:
        from mujo.classifiers import save_trial_classifier

        save_trial_classifier(model, result, config, keep, split["test"][1], evaluate, len(idx))
    tune.report({"epoch": result.epochs_run, "val_macro_f1": result.val_macro_f1,
                 "test_macro_f1": result.test_macro_f1, "best_epoch": result.best_epoch,
                 "per_class_f1": json.dumps(class_f1(split["test"][1], result.test_predictions, num_classes).tolist()),
                 "train_samples": int(len(idx)), **gpu_metrics(device), "done": True})


def seed_groups(ecfg: EvaluateConfig) -> list[list[int]]:
    """The seeds 0..seeds-1 in consecutive groups of ``seeds_per_trial`` (the last may be smaller)."""
    n = ecfg.seeds_per_trial
    return [list(range(i, min(i + n, ecfg.seeds))) for i in range(0, ecfg.seeds, n)]


def group_trial(config: dict[str, Any], data: dict, pretrained: str, evaluate: dict, num_classes: int,
                keep: dict | None = None) -> None:
    """One Tune trial of the grouped engine: the seeds of ``config["trial"]["seed_group"]`` of one cell trained
    together.

    Reports every epoch the group's summary and, at the end, ``seed_rows`` (JSON: one row per seed) with
    ``done``; with ``keep`` it saves the classifier of the group's best seed (by validation Macro F1, ties: the lower
    seed), among which :func:`mujo.classifiers.keep_best` finds each cell's best."""
    from ray import tune

    from mujo.models import build_classifier

    ecfg = EvaluateConfig.model_validate(evaluate)
    config = config["trial"]  # the cell (param_space)
    inputs, setting = config["inputs"].split(INPUT_SEP), config["setting"]
    seeds = seed_groups(ecfg)[int(config["seed_group"])]
    data = data[config["calibration"]]
    y_train = data["train"][1]
    samples = [sample_label_fraction(y_train, config["fraction"], seed=s) for s in seeds]
    pretrained_model = _pretrained(pretrained)

    def classifier(seed: int):
        return build_classifier(pretrained_model, inputs, num_classes, setting, hidden=ecfg.head_hidden, seed=seed)

    if setting == "frozen":  # heads only, on the features the driver computed once for (calibration, inputs)
        features = data["frozen"][config["inputs"]]
        models = [FeatureHead(classifier(s).head) for s in seeds]
        splits = [({FEATURES: features[name]}, data[name][1]) for name in ("train", "val", "test")]
    else:
        models = [classifier(s) for s in seeds]
        splits = [({m: data[name][0][m] for m in inputs}, data[name][1]) for name in ("train", "val", "test")]
    device = trial_device(ecfg)
    fcfg = FinetuneConfig(lr=ecfg.lr, max_epochs=ecfg.max_epochs, patience=ecfg.patience,
                          batch_size=ecfg.batch_size, seed=seeds[0], device=str(device))
    results = train_seed_group(models, seeds, samples, *splits, num_classes, fcfg,
                               on_epoch=lambda m: tune.report({**m, **gpu_metrics(device), "done": False}))
    rows = [{"seed": s, "test_macro_f1": r.test_macro_f1, "val_macro_f1": r.val_macro_f1, "best_epoch": r.best_epoch,
             "epoch": r.epochs_run, "train_samples": int(len(i)),
             "per_class_f1": class_f1(splits[2][1], r.test_predictions, num_classes).tolist()}
            for s, r, i in zip(seeds, results, samples)]
    if keep:
        from mujo.classifiers import save_trial_classifier

        best = max(range(len(seeds)), key=lambda g: (results[g].val_macro_f1, -seeds[g]))
        model = models[best]
        if setting == "frozen":  # the trained head back into its whole classifier (same seed: same frozen part)
            model = classifier(seeds[best])
            model.head.load_state_dict(models[best].head.state_dict())
        save_trial_classifier(model, results[best], {**config, "seed": seeds[best]}, keep, splits[2][1], evaluate,
                              len(samples[best]))
    tune.report({"epoch": max(r.epochs_run for r in results), "seed_rows": json.dumps(rows),
                 "val_macro_f1": max(r.val_macro_f1 for r in results),
                 "test_macro_f1": sum(r.test_macro_f1 for r in results) / len(results),
                 **gpu_metrics(device), "done": True})


def add_frozen_features(ecfg: EvaluateConfig, pretrained: str, data: dict[str, dict]) -> dict[str, dict]:
    """``data`` with, per calibration, ``frozen[<inputs>] = {split: features}``: the frozen part's output for every
    row, computed once here for all the frozen trials (only when the grouped engine runs the frozen setting)."""
    if ecfg.engine != "grouped" or "frozen" not in ecfg.settings:
        return data
    model = _pretrained(pretrained)
    out = {}
    for mode, splits in data.items():
        out[mode] = {**splits, "frozen": {
            input_key(inputs): {name: frozen_features(model, inputs, splits[name][0])
                                for name in ("train", "val", "test")}
            for inputs in ecfg.inputs}}
    return out


def trial_device(ecfg: EvaluateConfig):
    """``cuda`` when the trial asked for a GPU (Ray then makes exactly its GPU visible), else ``cpu``."""
    import torch

    if ecfg.gpus_per_trial <= 0:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError(f"evaluate.gpus_per_trial={ecfg.gpus_per_trial} but this trial sees no CUDA device "
                           "(no GPU on its node, or a CPU build of torch): set it to 0 to fine-tune on CPU")
    return torch.device("cuda", 0)


def _error_line(error: BaseException | None) -> str:
    """The exception's own message (the last line of Ray's wrapped traceback), for the report."""
    if error is None:
        return ""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return (lines[-1] if lines else type(error).__name__)[:300]


# Relative cost of one window through a modality's encoder + projection (forward and backward, measured on CPU:
# benchmarks/README.md "Evaluation engine"): only used to order trials, so rough figures are enough.
MODALITY_COST = {"pose": 4.0, "acc": 1.0, "video": 1.0, "text": 1.0}


def expected_cost(cell: dict[str, Any], ecfg: EvaluateConfig) -> float:
    """A trial's expected work, relative: seeds x modality cost x (training rows ~ 3 x fraction, forward and backward,
    + one validation pass ~ 0.5 of the training split); a frozen setting trains only its head (x 0.1)."""
    seeds = 1 if "seed" in cell else len(seed_groups(ecfg)[int(cell["seed_group"])])
    per_window = sum(MODALITY_COST.get(m, 1.0) for m in cell["inputs"].split(INPUT_SEP))
    return seeds * per_window * (0.1 if cell["setting"] == "frozen" else 1.0) * (3.0 * cell["fraction"] + 0.5)


def trial_cells(ecfg: EvaluateConfig) -> list[dict[str, Any]]:
    """Every trial's cell (inputs, setting, fraction, calibration and its seed or seed group), the longest expected
    first: Tune starts pending trials in this order, so the few long trials (all modalities, full labels, encoders
    training) do not start last and leave the cluster waiting on them (longest-processing-time-first packing)."""
    seeds = ([{"seed": s} for s in range(ecfg.seeds)] if ecfg.engine == "per_seed"
             else [{"seed_group": g} for g in range(len(seed_groups(ecfg)))])
    cells = [{"inputs": input_key(i), "setting": setting, "fraction": fraction, **seed, "calibration": calibration}
             for i in ecfg.inputs for setting in ecfg.settings for fraction in ecfg.fractions for seed in seeds
             for calibration in ecfg.calibrations]
    return sorted(cells, key=lambda c: -expected_cost(c, ecfg))  # stable: ties keep the config's order


def param_space(ecfg: EvaluateConfig) -> dict:
    """One grid over :func:`trial_cells` (``config["trial"]``): a grid per axis would start the trials in Tune's
    order of the axes' names, the most expensive cells last."""
    from ray import tune

    return {"trial": tune.grid_search(trial_cells(ecfg))}


def _rows_of(r: Any, ecfg: EvaluateConfig, dataset: str) -> list[TrialResult]:
    """The :class:`TrialResult` rows of one Tune result: one per seed (a failed group: each of its seeds failed)."""
    metrics = r.metrics or {}
    failed = r.error is not None or not metrics.get("done", False)
    config = r.config["trial"]
    cell = {k: config[k] for k in ("inputs", "setting", "fraction", "calibration")}
    common = {"dataset": dataset, **cell, "error": _error_line(r.error), "trial_path": r.path}
    if "seed" in config:  # per_seed engine
        per_class = json.loads(metrics["per_class_f1"]) if metrics.get("per_class_f1") else None
        return [TrialResult(seed=config["seed"], status="failed" if failed else "ok", **common,
                            per_class_f1=None if failed else per_class,
                            **{k: metrics.get(k) for k in ("test_macro_f1", "val_macro_f1", "best_epoch", "epoch",
                                                           "train_samples")})]
    seeds = seed_groups(ecfg)[int(config["seed_group"])]
    if failed:
        return [TrialResult(seed=s, status="failed", **common) for s in seeds]
    return [TrialResult(status="ok", **common, **row) for row in json.loads(metrics["seed_rows"])]


def run_fanout(cfg: MainConfig, pretrained: str, manifest: Manifest, data: dict[str, dict],
               name: str | None = None) -> list[TrialResult]:
    """Run every trial; return one row per trial (its config, final metrics, status and error if any).

    ``data`` holds the dataset's splits per calibration mode of the fan-out (:func:`mujo.evaluate.prepare_data`)."""
    from ray import tune

    ecfg = cfg.evaluate
    # Trial sizing (#16 part 5): cpus/gpus per trial left unset in the config are chosen from the cluster's
    # resources so that its nodes are filled (mujo.tune.sizing); values set in the config are kept.
    from mujo.tune.sizing import sized_evaluate

    space = param_space(ecfg)  # the trials' cells: sizing changes their resources, not the cells
    ecfg = sized_evaluate(ecfg, space)
    from mujo.progress import TrialProgress

    data = {mode: data[mode] for mode in ecfg.calibrations}  # only what the trials use goes to the object store
    data = add_frozen_features(ecfg, pretrained, data)
    num_classes = manifest.num_classes
    from mujo.classifiers import keep_best, keep_spec

    name = name or f"{cfg.run_name}-finetune"
    keep = keep_spec(cfg, manifest, pretrained, name)
    trainable = tune.with_resources(
        tune.with_parameters(finetune_trial if ecfg.engine == "per_seed" else group_trial, data=data,
                             pretrained=pretrained, evaluate=ecfg.model_dump(mode="json"), num_classes=num_classes,
                             keep=keep),
        {"cpu": ecfg.cpus_per_trial, **({"gpu": ecfg.gpus_per_trial} if ecfg.gpus_per_trial else {})})
    # No cap by default: Tune starts trials as resources free up, and on an autoscaling cluster the pending trials'
    # resource requests are what scale the workers up (a cap computed from the resources of the moment would pin
    # a cluster that starts from zero workers to one trial at a time).
    max_concurrent = ecfg.max_concurrent_trials
    tuner = tune.Tuner(
        trainable,
        param_space=space,
        tune_config=tune.TuneConfig(max_concurrent_trials=max_concurrent, reuse_actors=True),
        run_config=tune.RunConfig(
            name=name, **storage.ray_storage(RunLayout.of(cfg).tune),
            failure_config=tune.FailureConfig(max_failures=ecfg.max_retries), verbose=0,
            callbacks=[TrialProgress("fan-out trials", len(space["trial"]["grid_search"]))]),
    )
    grid = tuner.fit()
    rows = [row for r in grid for row in _rows_of(r, ecfg, manifest.dataset)]  # the contract of trials.csv rows
    rows.sort(key=lambda r: (r.inputs, r.setting, r.fraction, r.calibration, r.seed))
    log.info("fan-out: %d trials (%d seeds), %d failed", len(grid), len(rows),
             sum(r.status == "failed" for r in rows))
    if keep:  # the best seed's classifier of each cell -> <run>/models/<dataset>/ (row.classifier)
        rows = keep_best(rows, keep)
    return rows
