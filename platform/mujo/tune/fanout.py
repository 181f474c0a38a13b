"""The downstream evaluation as one Ray Tune fan-out: one trial per (input modalities, setting, label fraction,
seed) on a preprocessed dataset, each a classifier fine-tuned with :func:`mujo.finetune.train_classifier`.

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
from mujo.finetune import FinetuneConfig, sample_label_fraction, train_classifier
from mujo.train.gpu import gpu_metrics
from mujo.evaluation import apply_calibration, fit_calibration, load_arrays, reference_for, save_calibration

log = logging.getLogger(__name__)
INPUT_SEP = "+"


def input_key(inputs: list[str]) -> str:
    return INPUT_SEP.join(inputs)


def prepare_data(cfg: MainConfig, manifest: dict, reference_manifest: dict | None = None) -> dict[str, dict]:
    """The evaluation dataset's splits once per calibration mode (``none`` = as recorded). Calibrations are fitted
    against the pretraining corpus (``reference_manifest``) and saved under ``<run>/calibration/<dataset>/<mode>``."""
    ecfg = cfg.evaluate
    modalities = sorted({m for group in ecfg.inputs for m in group})
    data = load_arrays(manifest, modalities, ["train", "val", "test"])
    out = {}
    modes = list(dict.fromkeys([*ecfg.calibrations, *(ecfg.zero_shot_calibrations if ecfg.zero_shot else [])]))
    for mode in modes:
        if mode == "none":
            out[mode] = data
            continue
        if reference_manifest is None:
            raise ValueError(f"calibration '{mode}' needs the pretraining dataset's manifest as its reference")
        reference = reference_for(reference_manifest, manifest["labels"], modalities)
        calibrators = fit_calibration(mode, data, reference, modalities)
        save_calibration(calibrators, storage.join(cfg.run_dir, "calibration", manifest["dataset"], mode))
        out[mode] = apply_calibration(calibrators, data)
    return out


@lru_cache(maxsize=2)
def _pretrained(path: str):
    from mujo.models import load_pretrained

    return load_pretrained(path)


def finetune_trial(config: dict[str, Any], data: dict, pretrained: str, evaluate: dict, num_classes: int) -> None:
    """One Tune trial (a function trainable)."""
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


def run_fanout(cfg: MainConfig, pretrained: str, manifest: dict, data: dict[str, dict] | None = None,
               name: str | None = None) -> list[dict]:
    """Run every trial; return one row per trial (its config, final metrics, status and error if any).

    ``data`` is :func:`prepare_data`'s output (computed here when not given; calibrations other than ``none`` need
    it computed with the pretraining manifest)."""
    from ray import tune

    ecfg = cfg.evaluate
    data = data if data is not None else prepare_data(cfg, manifest)
    data = {mode: data[mode] for mode in ecfg.calibrations}  # only what the trials use goes to the object store
    num_classes = len(manifest["labels"])
    trainable = tune.with_resources(
        tune.with_parameters(finetune_trial, data=data, pretrained=pretrained,
                             evaluate=ecfg.model_dump(mode="json"), num_classes=num_classes),
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
            name=name or f"{cfg.run_name}-finetune", **storage.ray_storage(storage.join(cfg.run_dir, "tune")),
            failure_config=tune.FailureConfig(max_failures=ecfg.max_retries), verbose=0),
    )
    grid = tuner.fit()
    rows = []
    for r in grid:
        metrics = r.metrics or {}
        failed = r.error is not None or not metrics.get("done", False)
        rows.append({
            "dataset": manifest["dataset"],
            **{k: r.config[k] for k in ("inputs", "setting", "fraction", "seed", "calibration")},
            "status": "failed" if failed else "ok",
            "error": _error_line(r.error),
            **{k: metrics.get(k) for k in ("test_macro_f1", "val_macro_f1", "best_epoch", "epoch",
                                           "train_samples")},
            "trial_path": r.path,
        })
    log.info("fan-out: %d trials, %d failed", len(rows), sum(r["status"] == "failed" for r in rows))
    return rows
