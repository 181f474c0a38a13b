"""The downstream evaluation in one place (the paper's Tables 1-3, Figures 3-4); :func:`evaluate` is its entry.

- :mod:`~mujo.evaluate.data`: a preprocessed dataset's arrays, the reference corpus, data per calibration mode;
- :mod:`~mujo.evaluate.calibration`: probability-integral-transform calibration (unsupervised / supervised);
- :mod:`~mujo.evaluate.finetune`: one classifier's training (label fractions, class weights, early stopping);
- :mod:`~mujo.evaluate.zeroshot`: zero-shot classification from label texts (top-k Macro F1);
- :mod:`~mujo.evaluate.metrics`: Macro F1, top-k, retrieval recall, few-shot, KS;
- :mod:`~mujo.evaluate.report`: tables, CSVs and plots.

What runs is an :class:`~mujo.run.EvaluationPlan` (decided once from the config: the fan-out's grid, the zero-shot
calibrations, and so whether the pretraining corpus is needed as the calibrations' reference). The fan-out's
trials run on Ray Tune (:mod:`mujo.tune.fanout`, imported only when a plan has a fan-out); everything else here is
plain torch/numpy.
"""

from __future__ import annotations

import logging
from typing import Any

from mujo import storage
from mujo.evaluate.data import SplitArrays, prepare_data
from mujo.evaluate.report import fanout_report, to_csv, zero_shot_table
from mujo.run import EvaluationPlan, Manifest, RunLayout

log = logging.getLogger(__name__)


def zero_shot_rows(cfg: Any, artefacts: str | dict[str, str], manifest: Manifest,
                   data: dict[str, SplitArrays]) -> list[dict]:
    """Zero-shot rows for each pretrained artefact ({name: path}; a path alone is 'multimodal', compared with
    ``evaluate.zero_shot_models``), each input group and single modality, and each zero-shot calibration."""
    from mujo.data.text import TextEmbedder
    from mujo.evaluate.zeroshot import zero_shot
    from mujo.models import load_pretrained

    if isinstance(artefacts, str):
        artefacts = {"multimodal": artefacts, **cfg.evaluate.zero_shot_models}
    models = {name: load_pretrained(path) for name, path in artefacts.items()}
    groups = [[m] for m in sorted({m for g in cfg.evaluate.inputs for m in g})]
    groups += [g for g in cfg.evaluate.inputs if len(g) > 1]
    embedder = TextEmbedder()
    return [row for mode in cfg.evaluate.zero_shot_calibrations
            for row in zero_shot(models, data[mode]["test"], manifest.labels, groups, embedder, calibration=mode)]


def evaluate(cfg: Any, artefact: str, manifest: Manifest, reference: Manifest | None = None,
             plan: EvaluationPlan | None = None, data: dict[str, SplitArrays] | None = None) -> dict:
    """Run ``plan`` (default: the config's whole evaluation) for one pretrained artefact on one preprocessed
    dataset: the fine-tuning fan-out and/or zero-shot, on data prepared once; writes the dataset's results folder
    (``results.md``, ``trials.csv``, ``summary.csv``, ``macro_f1.png``, ``zeroshot.md``, ``zeroshot.csv``).
    Returns ``rows`` (the fan-out's :class:`~mujo.run.TrialResult`), ``zero_shot`` rows, the printable ``table`` and the ``results`` folder."""
    plan = plan or EvaluationPlan.from_config(cfg)
    layout = RunLayout.of(cfg)
    data = data if data is not None else prepare_data(plan, manifest, reference, layout)
    out_dir = layout.results(manifest.dataset)
    out: dict[str, Any] = {"rows": [], "zero_shot": [], "table": "", "results": out_dir}
    tables = []
    if plan.calibrations:
        from mujo.tune.fanout import run_fanout

        rows = run_fanout(cfg, artefact, manifest, {mode: data[mode] for mode in plan.calibrations})
        files = fanout_report(rows, cfg.evaluate.max_epochs, manifest.labels)  # + per_class_f1.* when recorded
        for fname, content in files.items():
            (storage.write_bytes if isinstance(content, bytes) else storage.write_text)(
                storage.join(out_dir, fname), content)
        tables.append(files["results.md"])
        out["rows"] = rows
    if plan.zero_shot_calibrations:
        rows = zero_shot_rows(cfg, artefact, manifest, data)
        tables.append(zero_shot_table(rows))
        storage.write_text(storage.join(out_dir, "zeroshot.md"), tables[-1])
        storage.write_text(storage.join(out_dir, "zeroshot.csv"), to_csv(rows))
        out["zero_shot"] = rows
    out["table"] = "\n".join(tables)
    return out


__all__ = ["EvaluationPlan", "evaluate", "prepare_data", "zero_shot_rows"]
