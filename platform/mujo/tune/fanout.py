"""The downstream evaluation as one Ray Tune fan-out: one trial per (input modalities, setting, label fraction,
seed) on a preprocessed dataset, each a classifier fine-tuned with :func:`mujo.evaluate.finetune.train_classifier`.

The dataset's arrays are loaded once on the driver and shared with every trial through the object store
(``tune.with_parameters``). A failed trial is retried ``evaluate.max_retries`` times; if it still fails it appears
in the results as failed (with its error), never silently dropped. Every trial reports each epoch (so the trial's
TensorBoard files show its learning curve) and finally its test Macro F1.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

from mujo import storage
from mujo.config import EvaluateConfig, MainConfig
from mujo.evaluate.finetune import FinetuneConfig, sample_label_fraction, train_classifier
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
                 "train_samples": int(len(idx)), **gpu_metrics(device), "done": True})


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


def param_space(ecfg: EvaluateConfig) -> dict:
    from ray import tune

    return {
        "inputs": tune.grid_search([input_key(i) for i in ecfg.inputs]),
        "setting": tune.grid_search(list(ecfg.settings)),
        "fraction": tune.grid_search(list(ecfg.fractions)),
        "seed": tune.grid_search(list(range(ecfg.seeds))),
        "calibration": tune.grid_search(list(ecfg.calibrations)),
    }


def run_fanout(cfg: MainConfig, pretrained: str, manifest: Manifest, data: dict[str, dict],
               name: str | None = None) -> list[TrialResult]:
    """Run every trial; return one row per trial (its config, final metrics, status and error if any).

    ``data`` holds the dataset's splits per calibration mode of the fan-out (:func:`mujo.evaluate.prepare_data`)."""
    from ray import tune

    ecfg = cfg.evaluate
    from mujo.progress import TrialProgress

    data = {mode: data[mode] for mode in ecfg.calibrations}  # only what the trials use goes to the object store
    num_classes = manifest.num_classes
    from mujo.classifiers import keep_best, keep_spec

    name = name or f"{cfg.run_name}-finetune"
    keep = keep_spec(cfg, manifest, pretrained, name)
    trainable = tune.with_resources(
        tune.with_parameters(finetune_trial, data=data, pretrained=pretrained,
                             evaluate=ecfg.model_dump(mode="json"), num_classes=num_classes, keep=keep),
        {"cpu": ecfg.cpus_per_trial, **({"gpu": ecfg.gpus_per_trial} if ecfg.gpus_per_trial else {})})
    # No cap by default: Tune starts trials as resources free up, and on an autoscaling cluster the pending trials'
    # resource requests are what scale the workers up (a cap computed from the resources of the moment would pin
    # a cluster that starts from zero workers to one trial at a time).
    max_concurrent = ecfg.max_concurrent_trials
    tuner = tune.Tuner(
        trainable,
        param_space=param_space(ecfg),
        tune_config=tune.TuneConfig(max_concurrent_trials=max_concurrent, reuse_actors=True),
        run_config=tune.RunConfig(
            name=name, **storage.ray_storage(RunLayout.of(cfg).tune),
            failure_config=tune.FailureConfig(max_failures=ecfg.max_retries), verbose=0,
            callbacks=[TrialProgress("fan-out trials", len(ecfg.inputs) * len(ecfg.settings) * len(ecfg.fractions)
                                     * ecfg.seeds * len(ecfg.calibrations))]),
    )
    grid = tuner.fit()
    rows = []
    for r in grid:
        metrics = r.metrics or {}
        failed = r.error is not None or not metrics.get("done", False)
        rows.append(TrialResult(  # the contract of a trials.csv row
            dataset=manifest.dataset,
            **{k: r.config[k] for k in ("inputs", "setting", "fraction", "seed", "calibration")},
            status="failed" if failed else "ok",
            error=_error_line(r.error),
            **{k: metrics.get(k) for k in ("test_macro_f1", "val_macro_f1", "best_epoch", "epoch",
                                           "train_samples")},
            trial_path=r.path,
        ))
    log.info("fan-out: %d trials, %d failed", len(rows), sum(r.status == "failed" for r in rows))
    if keep:  # the best seed's classifier of each cell -> <run>/models/<dataset>/ (row.classifier)
        rows = keep_best(rows, keep)
    return rows
