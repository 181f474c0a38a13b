"""A tiny real dataset for the model-path tests, made without Ray: synthetic raw clips written as the generator
writes them, preprocessed by the same pipeline functions (``preprocess(..., executor="local")``), and a small
pretrained artefact (random weights: these tests check the plumbing, not accuracy)."""

from __future__ import annotations

from mujo import storage
from mujo.config import DatasetSpec, load_config
from mujo.data.clips import clips_to_table, make_clip, plan_clips, resolve_activities
from mujo.models import build_model, save_pretrained
from mujo.pipelines.generate import raw_dir
from mujo.pipelines.preprocess import preprocess

ACTIVITIES = ["squats", "jumping_jacks", "bicep_curls"]
VIDEO_DIM = 16
OVERRIDES = ["model.embed_dim=32", "model.proj_hidden=32", "model.text_hidden=32", "model.video_hidden=32",
             f"model.video_dim={VIDEO_DIM}", "finetune.dataset=tinyhar", "finetune.max_epochs=4",
             "finetune.patience=2", "finetune.batch_size=32", "finetune.head_hidden=32", "finetune.name=acc-ft",
             "preprocess.max_quarantine_share=0.5"]


def write_raw(run_dir: str, name: str = "tinyhar", subjects: dict | None = None, seconds=(8, 10)) -> str:
    spec = DatasetSpec(name=name, activities=ACTIVITIES, subjects=subjects or {"train": 2, "val": 1, "test": 1},
                       clip_seconds=seconds, label_style="canonical", real_sensors=True, video_dim=VIDEO_DIM,
                       subject_offset=500)
    tasks = plan_clips(spec, 0)
    out = raw_dir(run_dir, name)
    storage.write_table(clips_to_table([make_clip(t) for t in tasks]), storage.join(out, "part-00000.parquet"))
    storage.write_json(storage.join(out, "dataset.json"), {"name": name, "labels": list(resolve_activities(
        spec.activities)), "clips": len(tasks), "label_text": {a: a.replace("_", " ") for a in ACTIVITIES}})
    return out


def make_run(root: str, extra: list[str] | None = None):
    """(config, manifest, pretrained artefact path) of a tiny run under ``root`` (local or s3://)."""
    cfg = load_config(None, [f"storage.root={root}", "run_name=mp", *OVERRIDES, *(extra or [])])
    write_raw(cfg.run_dir)
    manifest = preprocess({"tinyhar": VIDEO_DIM}, cfg.run_dir, cfg.preprocess, executor="local")["tinyhar"]
    pretrained = storage.join(cfg.run_dir, "pretrain", "model")
    save_pretrained(build_model(cfg.model, stats={m: st.model_dump() for m, st in manifest.stats.items()}, seed=0), pretrained)
    return cfg, manifest, pretrained
