"""The main job end to end on real components: a local Ray (2 CPUs), the S3 server on loopback, 2 gloo workers.

One small run feeds every assertion (a Ray Train fit costs about 1-2 minutes on 2 cores): generation writes raw
clips to S3, Ray Data windows them, pretraining's loss falls, the fan-out produces the table and the plot.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from mujo import storage
from mujo.config import load_config
from mujo.models import load_pretrained
from mujo.schema import WINDOW, check_shards, read_shard, table_to_batch
from mujo.train.tensorboard import read_scalars

pytestmark = [pytest.mark.ray, pytest.mark.s3]

TINY = [
    "run_name=tiny",
    "ray.num_cpus=2",
    "generate.clips_per_task=16",
    "generate.datasets=[{name: synthfit, activities: [squats, bicep_curls, jumping_jacks, walking, sitting, "
    "pushups], subjects: {train: 4, val: 1}, clip_seconds: [8, 10]}, "
    "{name: synthhar, activities: [squats, bicep_curls, jumping_jacks, pushups], subjects: {train: 2, val: 1, "
    "test: 1}, subject_offset: 100, clip_seconds: [8, 10], label_style: canonical, real_sensors: true}]",
    "model.embed_dim=64", "model.proj_hidden=64", "model.text_hidden=64", "model.video_hidden=64",
    # 3 steps per epoch (about 100 train windows, 2 workers x 16): 24 steps, the loss falls by a third (measured)
    "pretrain.batch_size=16", "pretrain.epochs=8", "pretrain.lr=0.003", "pretrain.warmup_steps=2",
    "pretrain.checkpoint_every_steps=5", "pretrain.fewshot_shots=2",
    "evaluate.inputs=[[acc], [video, pose, acc]]", "evaluate.settings=[baseline, frozen, finetuned]",
    "evaluate.fractions=[1.0]", "evaluate.seeds=2", "evaluate.max_epochs=4", "evaluate.patience=2",
    "evaluate.calibrations=[none, supervised]", "evaluate.zero_shot_calibrations=[none, unsupervised]",
]


@pytest.fixture(scope="module")
def main_run(ray_session, s3_root):
    from mujo.workflows import run_main

    cfg = load_config("jobs/configs/main.yaml", TINY + [f"storage.root={s3_root}/runs"])
    return cfg, run_main(cfg)


def test_generation_and_windows_on_s3(main_run):
    cfg, out = main_run
    run_dir = cfg.run_dir
    assert run_dir.startswith("s3://")
    raw = storage.list_files(storage.join(run_dir, "raw", "synthfit"), ".parquet")
    assert raw and all(p.startswith("s3://") for p in raw)
    manifest = storage.read_json(storage.join(run_dir, "shards", "synthfit", "manifest.json"))
    assert manifest["quarantine"]["count"] == 0
    assert set(manifest["shards"]) == {"train", "val"}
    assert manifest["labels"] == ["squats", "bicep_curls", "jumping_jacks", "walking", "sitting", "pushups"]
    # 8-10 s clips: 400-500 frames, 15 % trimmed at each end -> 280-350 frames -> 4-6 windows of 100, stride 50
    clips = 5 * 6
    assert 4 * clips <= sum(manifest["rows"].values()) <= 6 * clips
    assert set(manifest["stats"]) == {"acc", "pose", "video"} and len(manifest["stats"]["acc"]["mean"]) == 6
    shards = manifest["shards"]["train"]
    check_shards(shards)
    batch = table_to_batch(read_shard(shards[0]))
    assert batch["acc"].shape[1:] == (WINDOW, 6) and batch["pose"].shape[1:] == (WINDOW, 17, 3)
    assert batch["has_acc"].all() and batch["has_pose"].all() and batch["has_text"].all()
    assert set(batch["split"]) == {"train"}
    np.testing.assert_allclose(np.linalg.norm(batch["text_emb"], axis=1), 1.0, atol=1e-4)
    # gravity is in the virtual accelerometers: mean |a| over a window is about 9.81 m/s^2
    mag = np.linalg.norm(batch["acc"][:, :, :3], axis=2).mean()
    assert 7.0 < mag < 14.0


def test_pretraining_loss_falls_and_artefact_loads(main_run, tmp_path_factory):
    cfg, out = main_run
    history = storage.read_json(storage.join(out["artefact"], "history.json"))
    losses = [h["loss"] for h in history]
    assert len(losses) == history[-1]["step"] and history[-1]["step"] >= 20
    k = max(len(losses) // 4, 1)
    assert np.mean(losses[-k:]) < 0.8 * np.mean(losses[:k]), losses
    assert {"loss/video-pose", "loss/acc-text", "temperature", "lr", "samples_per_s"} <= set(history[0])
    assert any("val/R@1/acc->text" in h for h in history)
    fewshot = [h["val/fewshot_f1/mean"] for h in history if "val/fewshot_f1/mean" in h]  # labels: validation only
    assert fewshot and all(0.0 <= v <= 1.0 for v in fewshot)
    assert {"val/fewshot_f1/pose", "val/fewshot_f1/acc", "val/fewshot_f1/video"} <= set(history[-1])
    # TensorBoard events next to the Train run's checkpoints: every step's loss and the validation recalls
    tb_dir = storage.join(cfg.run_dir, "train", f"{cfg.run_name}-pretrain", "tensorboard")
    events = [p for p in storage.list_files(tb_dir) if "tfevents" in p]
    assert events, tb_dir
    local = tmp_path_factory.mktemp("tb") / "events"
    local.write_bytes(storage.read_bytes(events[-1]))
    scalars = read_scalars(str(local))
    assert [s for s, _ in scalars["loss"]][-1] == history[-1]["step"] and "val/R@1/acc->text" in scalars
    model = load_pretrained(out["artefact"])
    assert model.cfg.embed_dim == 64 and model.modalities == ("video", "pose", "acc", "text")


def test_fanout_table_and_plot(main_run):
    cfg, out = main_run
    assert out["trials"] == 2 * 3 * 1 * 2 * 2 and out["failed_trials"] == 0
    table = out["table"]
    for needle in ("| acc | none | baseline |", "| acc | supervised | frozen |",
                   "| video+pose+acc | none | finetuned |", "100%", "±"):
        assert needle in table
    results = out["results"]
    summary = storage.read_json(storage.join(results, "summary.json"))
    assert summary["trials"] == 24
    png = storage.read_bytes(storage.join(results, "macro_f1.png"))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    rows = storage.read_bytes(storage.join(results, "summary.csv")).decode().splitlines()
    assert len(rows) == 1 + 2 * 3 * 2 and all(",2," in r for r in rows[1:])  # every cell aggregates 2 seeds
    tb = [p for p in storage.list_files(storage.join(cfg.run_dir, "tune")) if "events.out.tfevents" in p]
    assert len(tb) >= 12  # one per Tune trial: the grouped engine trains each cell's 2 seeds in one trial
    # calibration fitted against the pretraining corpus and saved with the run
    for mode in ("supervised", "unsupervised"):
        assert storage.exists(storage.join(cfg.run_dir, "calibration", "synthhar", mode, "acc.npz"))
    # zero-shot: the shape of Table 3, per input and calibration
    zs = storage.read_bytes(storage.join(results, "zeroshot.md")).decode()
    for needle in ("top-1", "top-3", "| multimodal | acc | none |", "| multimodal | video+pose+acc | unsupervised |"):
        assert needle in zs
    assert json.loads(json.dumps(summary))["failed_trials"] == 0


def test_main_ends_predicting_with_the_best_acc_classifier(main_run):
    """make run's last stage (predict.after_main in main.yaml): the fan-out's best acc classifier on the test
    subject's whole recordings (synthhar: 1 test subject x 4 activities)."""
    cfg, out = main_run
    assert cfg.predict.after_main and "predict" in out["timings_s"]
    assert out["predict"]["recordings"] == 4 and out["predict"]["windows"] > 0
    assert "/models/synthhar/acc-" in out["predict"]["classifier"]
    assert 0.0 <= out["predict"]["timeline_accuracy"] <= 1.0 and "timeline accuracy" in out["table"]
