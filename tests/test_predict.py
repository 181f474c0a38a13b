"""Batch inference (mujo.pipelines.predict) on the real local Ray and the S3 server: a classifier artefact on raw
recordings and on preprocessed shards -> window predictions, timelines, summary; the same answers as the
single-process loop and as the model in memory; resumable; bad input counted, named or refused before Ray."""

from __future__ import annotations

import glob
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

from _model_path_data import make_run
from mujo import storage
from mujo.classifiers import finetune_output, train_artefact
from mujo.config import load_config
from mujo.data.clips import clips_to_table, rows_to_clips
from mujo.evaluate.data import load_arrays
from mujo.models.artefact import load_classifier
from mujo.pipelines.predict import InputError, run_predict
from mujo.schema import read_shard

pytestmark = [pytest.mark.ray, pytest.mark.s3]


@pytest.fixture(scope="module")
def trained(s3_root):
    cfg, manifest, pretrained = make_run(f"{s3_root}/predict-test")
    out = train_artefact(cfg, manifest, pretrained, finetune_output(cfg))
    return cfg, manifest, out


def _windows(out: str):
    files = storage.list_files(storage.join(out, "windows"), ".parquet")
    import pyarrow as pa

    return pa.concat_tables([pq.read_table(storage.filesystem(f)[1], filesystem=storage.filesystem(f)[0])
                             for f in files]).sort_by([("recording_id", "ascending"), ("window", "ascending")])


def test_ray_data_predictions_on_shards_reproduce_the_model_in_memory(ray_session, trained):
    cfg, manifest, out = trained
    pcfg = load_config(None, ["predict.splits=[test]"]).predict
    dest = storage.join(cfg.run_dir, "predict", "shards")
    summary = run_predict(out["artefact"], storage.join(cfg.run_dir, "shards", "tinyhar"), dest, pcfg)
    assert summary["windows"] == manifest.rows["test"] and summary["quarantined"] == 0
    table = _windows(dest)
    # the test split's windows in shard order, as the in-memory model saw them
    shard_ids = [sid for uri in manifest.shards["test"] for sid in read_shard(uri).column("sample_id").to_pylist()]
    classes = load_classifier(out["artefact"]).labels
    predicted = dict(zip([f"{r}-w{w:04d}" for r, w in zip(table.column("recording_id").to_pylist(),
                                                          table.column("window").to_pylist())],
                         table.column("predicted").to_pylist()))
    # shard windows keep their preprocessing index; a recording's first kept window is its index 0 here
    by_clip: dict[str, list[str]] = {}
    for sid in shard_ids:
        by_clip.setdefault(sid.rsplit("-w", 1)[0], []).append(sid)
    expected = out["_test_predictions"]
    ours = [predicted[f"{clip}-w{i:04d}"] for sid in shard_ids for clip in [sid.rsplit("-w", 1)[0]]
            for i in [sorted(by_clip[clip]).index(sid)]]
    assert ours == [classes[c] for c in expected]
    top = np.array(table.column("top_probs").to_pylist())
    assert top.shape[1] == 3 and np.all(np.diff(top, axis=1) <= 0)


def test_raw_recordings_ray_equals_local_loop_and_resumes(ray_session, trained, tmp_path):
    cfg, manifest, out = trained
    pcfg = load_config(None, ["predict.splits=[test]", "predict.smoothing=3"]).predict
    raw = storage.join(cfg.run_dir, "raw", "tinyhar")
    dest = storage.join(cfg.run_dir, "predict", "raw")
    summary = run_predict(out["artefact"], raw, dest, pcfg)
    local = run_predict(out["artefact"], raw, str(tmp_path / "local"), pcfg, executor="local")
    assert summary["recordings"] == local["recordings"] == 3 and summary["windows"] == local["windows"]
    ray_t, local_t = _windows(dest), _windows(str(tmp_path / "local"))
    for c in ("recording_id", "window", "start_s", "predicted", "top_labels"):
        assert ray_t.column(c).equals(local_t.column(c)), c
    np.testing.assert_allclose(np.array(ray_t.column("top_probs").to_pylist()),
                               np.array(local_t.column("top_probs").to_pylist()), atol=1e-6)
    # recordings are windowed whole (no training-only trimming): more windows than the preprocessed test split
    assert summary["windows"] > manifest.rows["test"]
    assert 0.0 <= summary["timeline_accuracy"] <= 1.0 and summary["labelled_recordings"] == 3
    seg = storage.list_files(storage.join(dest, "segments"), ".parquet")
    assert seg and storage.exists(storage.join(dest, "recordings.csv"))
    again = run_predict(out["artefact"], raw, dest, pcfg)
    assert again["processed"] == 0 and again["reused"] == 1 and again["windows"] == summary["windows"]


def _bad_input(raw_src: str, dest) -> str:
    """A raw folder: a NaN stretch (interpolated), mostly NaN (quarantined), too short (quarantined), 100 Hz."""
    fs, path = storage.filesystem(storage.join(raw_src, "part-00000.parquet"))
    clips = [c for c in rows_to_clips(pq.read_table(path, filesystem=fs).to_pydict()) if c.split == "test"]
    nan_run, mostly_nan, short, fast = clips[0], *[type(clips[0])(**vars(c)) for c in clips[:3]]
    nan_run.acc = nan_run.acc.copy()
    nan_run.acc[50:60] = np.nan
    mostly_nan.clip_id, mostly_nan.acc = "mostly-nan", np.full_like(mostly_nan.acc, np.nan)
    short.clip_id, short.acc, short.pose, short.video = "short", short.acc[:60], short.pose[:60], short.video[:60]
    fast.clip_id = "fast-100hz"
    t = np.arange(len(fast.acc)) / 50.0
    t2 = np.arange(2 * len(fast.acc)) / 100.0
    fast.acc = np.stack([np.interp(t2, t, fast.acc[:, c]) for c in range(6)], 1).astype(np.float32)
    fast.acc_hz = 100.0
    out = str(dest)
    storage.write_table(clips_to_table([nan_run, mostly_nan, short, fast]), storage.join(out, "part-00000.parquet"))
    storage.write_json(storage.join(out, "dataset.json"), storage.read_json(storage.join(raw_src, "dataset.json")))
    return out


def test_bad_recordings_are_interpolated_or_quarantined_and_counted(trained, tmp_path):
    cfg, _, out = trained
    raw = _bad_input(storage.join(cfg.run_dir, "raw", "tinyhar"), tmp_path / "raw")
    pcfg = load_config(None, []).predict
    summary = run_predict(out["artefact"], raw, str(tmp_path / "p"), pcfg, executor="local")
    reasons = {q["recording_id"]: q["reason"] for q in summary["quarantine"]}
    assert set(reasons) == {"mostly-nan", "short"}
    assert "predict.max_nan_share" in reasons["mostly-nan"] and "too short" in reasons["short"]
    assert summary["nan_frames_interpolated"] == 10 and summary["recordings"] == 2
    windows = {r["recording_id"]: r["windows"] for r in summary["recordings_detail"]}
    frames_50hz = pq.read_table(raw + "/part-00000.parquet").column("acc_shape").to_pylist()[3][0] // 2
    assert windows["fast-100hz"] == (frames_50hz - 100) // 50 + 1  # resampled to 50 Hz, windowed whole


def test_mismatched_input_fails_before_ray_naming_the_file(trained, tmp_path):
    cfg, _, out = trained
    raw = _bad_input(storage.join(cfg.run_dir, "raw", "tinyhar"), tmp_path / "raw")
    storage.write_json(storage.join(raw, "dataset.json"), {"name": "tinyhar", "labels": ["walking", "running"]})
    pcfg = load_config(None, []).predict
    with pytest.raises(InputError, match=r"dataset\.json: the data's labels .* predict\.ignore_labels=true"):
        run_predict(out["artefact"], raw, str(tmp_path / "p"), pcfg, start_ray=lambda: pytest.fail("Ray started"))
    table = pq.read_table(str(tmp_path / "raw" / "part-00000.parquet")).drop_columns(["acc", "acc_shape", "acc_hz",
                                                                                       "acc_t", "pose", "pose_shape",
                                                                                       "pose_hz", "pose_t"])
    pq.write_table(table, str(tmp_path / "raw" / "part-00000.parquet"))
    pcfg = load_config(None, ["predict.ignore_labels=true"]).predict
    with pytest.raises(InputError, match=r"part-00000\.parquet: has no column for the classifier's input\(s\) \['acc'\]"):
        run_predict(out["artefact"], raw, str(tmp_path / "p"), pcfg, start_ray=lambda: pytest.fail("Ray started"))


def test_job_reports_a_bad_artefact_without_a_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "jobs/predict.py", "--config", "jobs/configs/finetune.yaml",
                           "--set", f"storage.root={tmp_path}", "--set", f"predict.model={tmp_path / 'nothing'}"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "error:" in proc.stderr and "classifier.json: no classifier card" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_fanout_keeps_the_best_seed_and_main_predicts_with_it(ray_session, tmp_path):
    """evaluate.keep_classifiers: one artefact per cell (its best-validation seed), the trials' copies removed; then
    make run's last step (predict_with_best) on the test subjects' recordings."""
    from mujo.classifiers import predict_with_best
    from mujo.tune.fanout import run_fanout

    cfg, manifest, pretrained = make_run(str(tmp_path), [
        "evaluate.dataset=tinyhar", "evaluate.inputs=[[acc]]", "evaluate.settings=[frozen]", "evaluate.fractions=[1.0]",
        "evaluate.seeds=2", "evaluate.max_epochs=2", "evaluate.patience=1", "evaluate.head_hidden=16",
        "evaluate.keep_classifiers=true", "predict.after_main=true", "evaluate.zero_shot=false"])
    from mujo.evaluate.data import prepare_data
    from mujo.run import EvaluationPlan

    rows = run_fanout(cfg, pretrained, manifest, prepare_data(EvaluationPlan.from_config(cfg), manifest, None))
    assert len(rows) == 2 and all(r.status == "ok" for r in rows)
    kept = [r for r in rows if r.classifier]
    best = max(rows, key=lambda r: (r.val_macro_f1, -r.seed))
    assert kept == [best] and kept[0].classifier.endswith("models/tinyhar/acc-frozen-1")
    card = load_classifier(kept[0].classifier).card
    assert card.seed == best.seed and card.metrics.val_macro_f1 == pytest.approx(best.val_macro_f1)
    assert storage.list_files(storage.join(cfg.run_dir, "models", "tinyhar")) and not storage.exists(
        storage.join(cfg.run_dir, "models", "tinyhar", "trials-mp-finetune"))
    out = predict_with_best(cfg, rows, manifest)
    assert out["summary"]["recordings"] == 3 and "timeline accuracy" in out["table"]


def test_bring_your_own_card_is_converted_then_predicted(trained, tmp_path):
    """A BYOD card (100 Hz, g, gravity removed + the API's gravity vector) is ingested per the card (50 Hz after
    windowing, m/s^2, gravity added back) and predicted; its labels are not the classifier's: refused unless
    predict.ignore_labels, and then its recordings are not scored."""
    from _fixtures_datasets import byod_csv_card, write_byod_csv, write_card

    _, _, out = trained
    write_byod_csv(tmp_path)
    card = write_card(tmp_path / "card.yaml", byod_csv_card())
    with pytest.raises(InputError, match=r"dataset\.json: the data's labels \['walking', 'standing'\]"):
        run_predict(out["artefact"], str(card), str(tmp_path / "p"), load_config(None, []).predict,
                    executor="local")
    pcfg = load_config(None, ["predict.ignore_labels=true", f"predict.source={tmp_path}"]).predict
    summary = run_predict(out["artefact"], str(card), str(tmp_path / "p"), pcfg, executor="local")
    assert summary["recordings"] >= 2 and summary["timeline_accuracy"] is None
    assert {r["true_label"] for r in summary["recordings_detail"]} <= {"walking", "standing"}
    raw = storage.list_files(str(tmp_path / "p" / "input" / "raw" / "wrist_study"), ".parquet")
    still = [c for f in raw for c in rows_to_clips(pq.read_table(f).to_pydict()) if c.activity == "standing"]
    norm = np.linalg.norm(still[0].acc[:, 3:], axis=1)  # the right wrist, still: g -> m/s^2, gravity added back
    assert norm.mean() == pytest.approx(9.81, rel=0.01) and still[0].acc_hz == 100
