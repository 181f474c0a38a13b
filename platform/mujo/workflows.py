"""The end-to-end main job: generate -> Ray Data windowing -> Ray Train pretraining -> Ray Tune fan-out -> report.

Each stage is also callable on its own (and has its own ``jobs/`` entrypoint); this module only chains them.
"""

from __future__ import annotations

import logging
import time

from mujo import capacity, console, runlock, storage
from mujo.config import MainConfig, dump_config
from mujo.evaluate import evaluate
from mujo.pipelines.generate import generate
from mujo.pipelines.preprocess import preprocess
from mujo.run import EvaluationPlan, Manifest, RunLayout
from mujo.raysession import check_job_storage_env, check_job_storage_root, init_ray
from mujo.train.pretrain import pretrain

log = logging.getLogger(__name__)


def prepare(cfg: MainConfig, start_ray: bool = True) -> str:
    """Configure storage, check it is reachable and writable, take the run's lock (one writer per run folder), then
    start/attach Ray unless ``start_ray`` is False (a job that checks its inputs first starts it with
    :func:`mujo.raysession.init_ray`); returns the run folder."""
    capacity.check_config(cfg)  # issue 20: a request no node type of the cluster can ever meet fails now
    check_job_storage_root(cfg.storage.root)
    before = storage.environment()
    storage.configure(cfg.storage.endpoint_url, cfg.storage.region)
    check_job_storage_env({k: v for k, v in storage.environment().items() if before.get(k) != v})
    run_dir = cfg.run_dir
    storage.check_writable(run_dir, cfg.storage.probe_timeout_s)
    runlock.acquire(run_dir)
    storage.write_text(RunLayout(run_dir).config_file, dump_config(cfg))
    if start_ray:
        init_ray(cfg.ray)
    return run_dir


def ensure_manifest(cfg: MainConfig, dataset: str, video_dim: int = 512) -> Manifest:
    """The dataset's manifest, preprocessing its raw clips first if that has not happened yet."""
    from mujo.pipelines.preprocess import ManifestMissing, read_manifest

    try:
        return read_manifest(cfg.run_dir, dataset)
    except ManifestMissing:
        return preprocess({dataset: video_dim}, cfg.run_dir, cfg.preprocess)[dataset]


def pretrain_with_progress(cfg: MainConfig, manifest: Manifest, **kwargs):
    """:func:`mujo.train.pretrain.pretrain` with rank 0's step, loss and samples/s on the console as it trains."""
    from mujo.progress import TrainProgress, following_training
    from mujo.train import schedule

    uri = storage.join(RunLayout.of(cfg).logs, "pretrain-progress.json")
    total = schedule.total_steps(cfg.pretrain, manifest.rows_of("train"))
    with following_training(uri):
        return pretrain(cfg, manifest, callbacks=[TrainProgress(uri, total)], **kwargs)


def run_main(cfg: MainConfig) -> dict:
    """generate -> preprocess -> pretrain -> evaluate (fan-out + zero-shot) [-> predict with the best classifier];
    one console stage each. Returns the printable table and the run's summary (also in ``summary.json``)."""
    from mujo.classifiers import check_after_main, predict_with_best

    check_after_main(cfg)
    t0 = time.time()
    run_dir = prepare(cfg)
    out_console = console.get()
    timings: dict[str, float] = {}

    def mark(stage: str) -> None:
        timings[stage] = round(time.time() - t0 - sum(timings.values()), 1)

    with out_console.stage("generate"):
        generate(cfg.generate, run_dir)
    mark("generate")
    with out_console.stage("preprocess"):
        manifests = preprocess({spec.name: spec.video_dim for spec in cfg.generate.datasets}, run_dir,
                               cfg.preprocess)
    mark("preprocess")
    for needed in (cfg.pretrain.dataset, cfg.evaluate.dataset):
        if needed not in manifests:
            raise ValueError(f"dataset '{needed}' is not among generate.datasets {list(manifests)}")
    with out_console.stage("pretrain"):
        result, artefact = pretrain_with_progress(cfg, manifests[cfg.pretrain.dataset])
    mark("pretrain")
    with out_console.stage("evaluate", f"{len(EvaluationPlan.from_config(cfg).trials())} seed runs"):
        evaluation = evaluate(cfg, artefact, manifests[cfg.evaluate.dataset], manifests[cfg.pretrain.dataset])
    mark("evaluate")
    rows, table, out = evaluation["rows"], evaluation["table"], evaluation["results"]
    deployed = None
    if cfg.predict.after_main:  # the model path: the best acc classifier on the test subjects' recordings
        with out_console.stage("predict"):
            deployed = predict_with_best(cfg, rows, manifests[cfg.evaluate.dataset])
        table += "\n\n" + deployed["table"]
        mark("predict")
    final = (result.metrics or {}) if result is not None else {}
    summary = {"run_dir": run_dir, "artefact": artefact, "timings_s": timings,
               "pretrain": {k: v for k, v in final.items() if k in ("step", "loss", "temperature")
                            or k.startswith("val/R@1/mean")},
               "trials": len(rows), "failed_trials": sum(r.status == "failed" for r in rows),
               "results": out, "tensorboard": f"tensorboard --logdir {run_dir}"}
    if deployed is not None:
        summary["predict"] = {"classifier": deployed["classifier"]["classifier"],
                              **{k: deployed["summary"][k] for k in ("recordings", "windows", "timeline_accuracy",
                                                                     "dominant_label_accuracy", "quarantined")}}
    storage.write_json(storage.join(out, "summary.json"), summary)
    return {"table": table, **summary}
