"""From a table to a model: train one classifier into an artefact, keep the fan-out's best classifiers, and pick
the classifier ``make run`` deploys. The training itself is :func:`mujo.evaluate.finetune.train_classifier` (the fan-out's
loop, unchanged); the artefact is :mod:`mujo.models.artefact`.

No Ray here except :func:`run_finetune_job`, which runs :func:`train_artefact` as one Ray task (its CPUs/GPUs from
``finetune.cpus``/``finetune.gpus``), so that a submitted job trains on a node that has what it asked for.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

import numpy as np

from mujo import storage
from mujo.config import MainConfig
from mujo.run import INPUT_SEP, Manifest, RunLayout, TrialResult

log = logging.getLogger(__name__)


def label_texts(manifest: Manifest) -> dict[str, str]:
    """Class name -> label text: the raw folder's ``dataset.json`` (``label_text``, written by the adapters) when
    it has them, else the class name with spaces (what zero-shot embeds)."""
    from mujo.data.text import canonical_text

    texts: dict[str, str] = {}
    raw = manifest.raw
    if raw:
        try:
            texts = dict(storage.read_json(storage.join(raw, "dataset.json")).get("label_text") or {})
        except (storage.StorageError, ValueError, AttributeError):
            texts = {}
    return {name: str(texts.get(name) or canonical_text(name)) for name in manifest.labels}


def default_name(inputs: list[str], setting: str, fraction: float, seed: int, calibration: str = "none") -> str:
    cal = "" if calibration == "none" else f"-{calibration}"
    return f"{INPUT_SEP.join(inputs)}-{setting}-{fraction:g}{cal}-s{seed}".replace("+", "_")


def finetune_output(cfg: MainConfig) -> str:
    """``finetune.output``, else ``<run>/models/<finetune.name or a name from the settings>``."""
    f = cfg.finetune
    return f.output or RunLayout.of(cfg).model(f.name or default_name(f.inputs, f.setting, f.fraction, f.seed,
                                                                      f.calibration))


def train_artefact(cfg: MainConfig, manifest: dict, pretrained: str, out: str,
                   reference_manifest: dict | None = None) -> dict[str, Any]:
    """Train the classifier ``cfg.finetune`` describes on ``manifest``'s dataset (a per-class label fraction of the
    train split, validation for early stopping, the test split scored once with the best-validation weights) and
    save it as an artefact at ``out``. Returns the metrics, the artefact path and, under ``"_model"`` and
    ``"_test_probabilities"``, the trained model and its in-memory test probabilities (for a round-trip check)."""
    import torch

    from mujo.evaluate.calibration import apply_calibration, fit_calibration
    from mujo.evaluate.data import load_arrays, reference_for
    from mujo.evaluate.finetune import FinetuneConfig, sample_label_fraction, train_classifier
    from mujo.models import build_classifier, load_pretrained
    from mujo.models.artefact import manifest_digest, save_classifier

    f = cfg.finetune
    labels = list(manifest.labels)
    data = load_arrays(manifest, f.inputs, ["train", "val", "test"])
    calibrators = {}
    if f.calibration != "none":
        if reference_manifest is None:
            raise ValueError(f"finetune.calibration={f.calibration} needs the pretraining corpus' manifest "
                             f"(dataset '{cfg.pretrain.dataset}') as its reference")
        reference = reference_for(reference_manifest, labels, f.inputs)
        calibrators = fit_calibration(f.calibration, data, reference, f.inputs)
        data = apply_calibration(calibrators, data)
    x_train, y_train = data["train"]
    idx = sample_label_fraction(y_train, f.fraction, seed=f.seed)
    train = ({m: x_train[m][idx] for m in f.inputs}, y_train[idx])
    device = "cuda" if f.gpus > 0 and torch.cuda.is_available() else "cpu"
    backbone = load_pretrained(pretrained)
    model = build_classifier(backbone, f.inputs, len(labels), f.setting, hidden=f.head_hidden, seed=f.seed)
    fcfg = FinetuneConfig(lr=f.lr, max_epochs=f.max_epochs, patience=f.patience, batch_size=f.batch_size,
                          seed=f.seed, device=device)
    result = train_classifier(model, train, data["val"], data["test"], len(labels), fcfg)
    model.to("cpu").eval()
    x_test, y_test = data["test"]
    with torch.no_grad():
        probs = np.concatenate([torch.softmax(model({m: torch.from_numpy(np.ascontiguousarray(x_test[m][i:i + 256]))
                                                     for m in f.inputs}), 1).numpy()
                                for i in range(0, len(y_test), 256)])
    pretrained_digest = None
    try:
        from mujo.models.artefact import file_sha256
        from mujo.models.mujo import ARTEFACT_WEIGHTS

        pretrained_digest = file_sha256(storage.join(pretrained, ARTEFACT_WEIGHTS))
    except storage.StorageError:
        pass
    metrics = {"val_macro_f1": result.val_macro_f1, "test_macro_f1": result.test_macro_f1,
               "best_epoch": result.best_epoch, "epochs_run": result.epochs_run, "train_samples": int(len(idx))}
    card = save_classifier(
        model, out, labels=labels, label_texts=label_texts(manifest), setting=f.setting, fraction=f.fraction,
        seed=f.seed, video_dim=int(manifest.video_dim), calibrators=calibrators,
        calibration_mode=f.calibration, test=(y_test, result.test_predictions), metrics=metrics,
        provenance={"pretrained": pretrained, "pretrained_digest": pretrained_digest, "dataset": manifest.dataset,
                    "manifest_digest": manifest_digest(manifest),
                    "config": {"finetune": f.model_dump(mode="json"), "model": cfg.model.model_dump(mode="json")}})
    log.info("classifier %s: val Macro F1 %.3f, test Macro F1 %.3f -> %s", "+".join(f.inputs), result.val_macro_f1,
             result.test_macro_f1, out)
    return {"artefact": out, **metrics, "per_class_f1": card.metrics.per_class_f1, "_model": model,
            "_test_probabilities": probs, "_test_predictions": result.test_predictions}


def _train_task(cfg_json: dict, manifest: dict, pretrained: str, out: str, reference: dict | None) -> dict:
    cfg = MainConfig.model_validate(cfg_json)
    result = train_artefact(cfg, manifest, pretrained, out, reference)
    return {k: v for k, v in result.items() if not k.startswith("_")}


def run_finetune_job(cfg: MainConfig, manifest: dict, pretrained: str,
                     reference_manifest: dict | None = None) -> dict:
    """:func:`train_artefact` as one Ray task (``finetune.cpus`` / ``finetune.gpus``); returns its metrics."""
    import ray

    f = cfg.finetune
    out = finetune_output(cfg)
    task = ray.remote(num_cpus=f.cpus, num_gpus=f.gpus, max_retries=1)(_train_task)
    return ray.get(task.remote(cfg.model_dump(mode="json"), manifest, pretrained, out, reference_manifest))


# --------------------------------------------------------------------------------------------------------------
# The fan-out: keep the best seed's classifier of each cell
# --------------------------------------------------------------------------------------------------------------

def keep_spec(cfg: MainConfig, manifest: dict, pretrained: str, name: str) -> dict | None:
    """What a fan-out trial needs to save its classifier (None when ``evaluate.keep_classifiers`` is off)."""
    if not cfg.evaluate.keep_classifiers:
        return None
    from mujo.models.artefact import manifest_digest
    layout, dataset = RunLayout.of(cfg), manifest.dataset
    return {"dir": layout.model(dataset, f"trials-{name}"), "labels": list(manifest.labels),
            "label_texts": label_texts(manifest), "video_dim": int(manifest.video_dim),
            "dataset": dataset, "manifest_digest": manifest_digest(manifest), "pretrained": pretrained,
            "calibrations": {mode: layout.calibration(dataset, mode) for mode in cfg.evaluate.calibrations
                             if mode != "none"},
            "models_dir": layout.model(dataset)}


def trial_key(config: Mapping) -> str:
    return default_name(str(config["inputs"]).split(INPUT_SEP), config["setting"], float(config["fraction"]),
                        int(config["seed"]), config.get("calibration", "none"))


def save_trial_classifier(model: Any, result: Any, config: Mapping, keep: Mapping, test_labels: np.ndarray,
                          evaluate: Mapping, train_samples: int) -> str:
    """In a fan-out trial: save its classifier under the fan-out's ``classifiers/`` folder; returns the path."""
    from mujo.evaluate.calibration import load_calibration
    from mujo.models.artefact import save_classifier

    inputs = str(config["inputs"]).split(INPUT_SEP)
    mode = config.get("calibration", "none")
    calibrators = {} if mode == "none" else load_calibration(keep["calibrations"][mode], inputs)
    out = storage.join(keep["dir"], trial_key(config))
    save_classifier(model.to("cpu"), out, labels=keep["labels"], label_texts=keep["label_texts"],
                    setting=config["setting"], fraction=float(config["fraction"]), seed=int(config["seed"]),
                    video_dim=keep["video_dim"], calibrators=calibrators, calibration_mode=mode,
                    test=(test_labels, result.test_predictions),
                    metrics={"val_macro_f1": result.val_macro_f1, "test_macro_f1": result.test_macro_f1,
                             "best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
                             "train_samples": int(train_samples)},
                    provenance={"pretrained": keep["pretrained"], "dataset": keep["dataset"],
                                "manifest_digest": keep["manifest_digest"],
                                "config": {"trial": dict(config), "evaluate": dict(evaluate)}})
    return out


def _copy_tree(src: str, dst: str) -> None:
    for uri in storage.list_files(src):
        rel = uri[len(src.rstrip("/")) + 1:] if storage.is_s3(src) else uri[len(storage.filesystem(src)[1]) + 1:]
        storage.write_bytes(storage.join(dst, rel), storage.read_bytes(uri))


def _delete_tree(uri: str) -> None:
    fs, path = storage.filesystem(uri)
    try:
        fs.delete_dir(path)
    except (OSError, FileNotFoundError) as exc:
        log.warning("could not delete %s: %s", uri, exc)


def keep_best(rows: list[TrialResult], keep: Mapping) -> list[TrialResult]:
    """After the fan-out: per cell (dataset, inputs, setting, fraction, calibration) the classifier of the seed with
    the best validation Macro F1 (ties: the lower seed) is copied to ``<models>/<cell>`` and the trials' folder is
    deleted. Returns the rows, the kept ones with ``classifier`` set to their artefact."""
    cells: dict[tuple, list[TrialResult]] = {}
    for r in rows:
        if r.status == "ok" and r.val_macro_f1 is not None:
            cells.setdefault(r.cell, []).append(r)
    chosen: dict[int, str] = {}
    for (_, inputs, calibration, setting, fraction), group in sorted(cells.items()):
        best = max(group, key=lambda r: (float(r.val_macro_f1), -int(r.seed)))
        src = storage.join(keep["dir"], trial_key(best.model_dump()))
        cal = "" if calibration == "none" else f"-{calibration}"
        dst = storage.join(keep["models_dir"], f"{inputs.replace(INPUT_SEP, '_')}-{setting}-{fraction:g}{cal}")
        if storage.exists(dst):
            _delete_tree(dst)
        _copy_tree(src, dst)
        chosen[id(best)] = dst
    _delete_tree(keep["dir"])
    return [r.model_copy(update={"classifier": chosen[id(r)]}) if id(r) in chosen else r for r in rows]


def best_classifier(rows: list[TrialResult], inputs: str = "acc") -> TrialResult | None:
    """The kept classifier of ``inputs`` with the best validation Macro F1 over all cells (ties: more labels)."""
    mine = [r for r in rows if r.classifier and r.inputs == inputs and r.calibration in ("none", "unsupervised")]
    return max(mine, key=lambda r: (float(r.val_macro_f1), float(r.fraction))) if mine else None


# --------------------------------------------------------------------------------------------------------------
# `make run`'s last step: the best acc classifier of the fan-out on the test subjects' recordings
# --------------------------------------------------------------------------------------------------------------

def check_after_main(cfg: MainConfig) -> None:
    """``predict.after_main`` needs the fan-out to keep its classifiers and to train an acc-only one; said before
    the run starts, not after the fan-out."""
    from mujo.config import ConfigError

    if cfg.predict.after_main and not cfg.evaluate.keep_classifiers:
        raise ConfigError("predict.after_main needs evaluate.keep_classifiers: true (the fan-out keeps the "
                          "classifier it predicts with)")
    if cfg.predict.after_main and ["acc"] not in cfg.evaluate.inputs:
        raise ConfigError("predict.after_main predicts with the best acc classifier: add [acc] to evaluate.inputs")


def predict_with_best(cfg: MainConfig, rows: list[TrialResult], manifest: Manifest) -> dict:
    """Predict the evaluated dataset's test recordings (raw clips, whole) with the fan-out's best acc classifier
    (best validation Macro F1 over its kept cells); returns the prediction summary and a printable table."""
    from mujo.pipelines.predict import run_predict, timeline_table

    best = best_classifier(rows, "acc")
    if best is None:
        raise ValueError("no acc classifier was kept by the fan-out (all its acc trials failed?)")
    pcfg = cfg.predict if cfg.predict.splits else cfg.predict.model_copy(update={"splits": ["test"]})
    out = cfg.predict.output or RunLayout.of(cfg).predictions(f"{manifest.dataset}-test")
    summary = run_predict(best.classifier, manifest.raw, out, pcfg)
    head = (f"Best acc classifier of the fan-out ({best.setting}, {float(best.fraction):g} of the labels, seed "
            f"{best.seed}, val Macro F1 {float(best.val_macro_f1):.3f}): {best.classifier}\n"
            f"Predicted on the {', '.join(pcfg.splits)} subjects' recordings (whole, {pcfg.smoothing}-window "
            f"smoothing) with Ray Data -> {out}\n\n")
    return {"summary": {k: v for k, v in summary.items() if k != "recordings_detail"}, "classifier": best.model_dump(),
            "table": head + timeline_table(summary)}
