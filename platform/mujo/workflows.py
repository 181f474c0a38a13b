"""The end-to-end main job: generate -> Ray Data windowing -> Ray Train pretraining -> Ray Tune fan-out -> report.

Each stage is also callable on its own (and has its own ``jobs/`` entrypoint); this module only chains them.
"""

from __future__ import annotations

import logging
import time

from mujo import runlock, storage
from mujo.config import MainConfig, dump_config
from mujo.pipelines.generate import generate
from mujo.pipelines.preprocess import preprocess
from mujo.raysession import check_job_storage_env, check_job_storage_root, init_ray
from mujo.report import aggregate, box_plot, markdown_table, to_csv, zero_shot_table
from mujo.train.pretrain import pretrain
from mujo.tune.fanout import prepare_data, run_fanout

log = logging.getLogger(__name__)


def prepare(cfg: MainConfig, start_ray: bool = True) -> str:
    """Configure storage, check it is reachable and writable, take the run's lock (one writer per run folder), then
    start/attach Ray unless ``start_ray`` is False (a job that checks its inputs first starts it with
    :func:`mujo.raysession.init_ray`); returns the run folder."""
    check_job_storage_root(cfg.storage.root)
    before = storage.environment()
    storage.configure(cfg.storage.endpoint_url, cfg.storage.region)
    check_job_storage_env({k: v for k, v in storage.environment().items() if before.get(k) != v})
    run_dir = cfg.run_dir
    storage.check_writable(run_dir)
    runlock.acquire(run_dir)
    storage.write_text(storage.join(run_dir, "config.yaml"), dump_config(cfg))
    if start_ray:
        init_ray(cfg.ray)
    return run_dir


def run_zero_shot(cfg: MainConfig, artefacts: str | dict[str, str], manifest: dict, data: dict) -> list[dict]:
    """Zero-shot rows for each pretrained artefact ({name: path}), each input group and single modality, and
    each calibration of ``data`` (from :func:`mujo.tune.fanout.prepare_data`)."""
    from mujo.data.text import TextEmbedder
    from mujo.evaluation import zero_shot
    from mujo.models import load_pretrained

    if isinstance(artefacts, str):
        artefacts = {"multimodal": artefacts, **cfg.evaluate.zero_shot_models}
    models = {name: load_pretrained(path) for name, path in artefacts.items()}
    groups = [[m] for m in sorted({m for g in cfg.evaluate.inputs for m in g})]
    groups += [g for g in cfg.evaluate.inputs if len(g) > 1]
    embedder = TextEmbedder()
    return [row for mode in cfg.evaluate.zero_shot_calibrations
            for row in zero_shot(models, data[mode]["test"], manifest["labels"], groups, embedder, calibration=mode)]


def results_dir(cfg: MainConfig, dataset: str) -> str:
    return storage.join(cfg.run_dir, "results", dataset)


def run_fanout_stage(cfg: MainConfig, artefact: str, manifest: dict, reference_manifest: dict | None = None,
                     data: dict | None = None) -> dict:
    """The Ray Tune fine-tuning fan-out of one pretrained artefact on one preprocessed dataset; writes
    ``results.md``, ``trials.csv``, ``summary.csv`` and ``macro_f1.png`` to the dataset's results folder.

    ``reference_manifest`` (the pretraining corpus) is needed for calibrations other than ``none``; ``data`` (from
    :func:`mujo.tune.fanout.prepare_data`) is made when not given."""
    data = data if data is not None else prepare_data(cfg, manifest, reference_manifest)
    rows = run_fanout(cfg, artefact, manifest, data)
    cells = aggregate(rows)
    table = markdown_table(cells)
    out = results_dir(cfg, manifest["dataset"])
    storage.write_text(storage.join(out, "results.md"), table)
    storage.write_text(storage.join(out, "trials.csv"), to_csv(rows))
    storage.write_text(storage.join(out, "summary.csv"), to_csv(cells))
    storage.write_bytes(storage.join(out, "macro_f1.png"), box_plot(rows))
    return {"rows": rows, "table": table, "results": out}


def run_zero_shot_stage(cfg: MainConfig, artefact: str, manifest: dict, reference_manifest: dict | None = None,
                        data: dict | None = None) -> dict:
    """Zero-shot of one pretrained artefact (and ``evaluate.zero_shot_models``) on one preprocessed dataset;
    writes ``zeroshot.md`` and ``zeroshot.csv`` to the dataset's results folder."""
    data = data if data is not None else prepare_data(cfg, manifest, reference_manifest)
    rows = run_zero_shot(cfg, artefact, manifest, data)
    table = zero_shot_table(rows)
    out = results_dir(cfg, manifest["dataset"])
    storage.write_text(storage.join(out, "zeroshot.md"), table)
    storage.write_text(storage.join(out, "zeroshot.csv"), to_csv(rows))
    return {"rows": rows, "table": table, "results": out}


def run_evaluation(cfg: MainConfig, artefact: str, manifest: dict, reference_manifest: dict | None = None) -> dict:
    """Fan-out and (``evaluate.zero_shot``) zero-shot of one pretrained artefact on one preprocessed dataset, on
    the same prepared data; writes the dataset's results folder."""
    data = prepare_data(cfg, manifest, reference_manifest)
    out = run_fanout_stage(cfg, artefact, manifest, data=data)
    if cfg.evaluate.zero_shot:
        zs = run_zero_shot_stage(cfg, artefact, manifest, data=data)
        out["table"] += "\n" + zs["table"]
    return out


def ensure_manifest(cfg: MainConfig, dataset: str, video_dim: int = 512) -> dict:
    """The dataset's manifest, preprocessing its raw clips first if that has not happened yet."""
    from mujo.pipelines.preprocess import ManifestMissing, read_manifest

    try:
        return read_manifest(cfg.run_dir, dataset)
    except ManifestMissing:
        return preprocess({dataset: video_dim}, cfg.run_dir, cfg.preprocess)[dataset]


def run_main(cfg: MainConfig) -> dict:
    t0 = time.time()
    run_dir = prepare(cfg)
    timings = {}

    def mark(stage: str) -> None:
        timings[stage] = round(time.time() - t0 - sum(timings.values()), 1)
        log.info("stage %s done in %.1f s", stage, timings[stage])

    generate(cfg.generate, run_dir)
    mark("generate")
    manifests = preprocess({spec.name: spec.video_dim for spec in cfg.generate.datasets}, run_dir, cfg.preprocess)
    mark("preprocess")
    for needed in (cfg.pretrain.dataset, cfg.evaluate.dataset):
        if needed not in manifests:
            raise ValueError(f"dataset '{needed}' is not among generate.datasets {list(manifests)}")
    result, artefact = pretrain(cfg, manifests[cfg.pretrain.dataset])
    mark("pretrain")
    evaluation = run_evaluation(cfg, artefact, manifests[cfg.evaluate.dataset], manifests[cfg.pretrain.dataset])
    mark("evaluate")
    rows, table, out = evaluation["rows"], evaluation["table"], evaluation["results"]
    final = (result.metrics or {}) if result is not None else {}
    summary = {"run_dir": run_dir, "artefact": artefact, "timings_s": timings,
               "pretrain": {k: v for k, v in final.items() if k in ("step", "loss", "temperature")
                            or k.startswith("val/R@1/mean")},
               "trials": len(rows), "failed_trials": sum(r["status"] == "failed" for r in rows),
               "results": out}
    storage.write_json(storage.join(out, "summary.json"), summary)
    return {"table": table, **summary}
    if deployed is not None:
        summary["predict"] = {"classifier": deployed["classifier"]["classifier"],
                              **{k: deployed["summary"][k] for k in ("recordings", "windows", "timeline_accuracy",
                                                                     "dominant_label_accuracy", "quarantined")}}
