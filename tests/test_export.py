"""Device export (mujo.models.export): a sensor-only classifier to TorchScript and ONNX, checked with ONNX Runtime
on over 1000 real windows (max abs difference of probabilities <= 1e-5), with a model card; the ONNX file runs with
numpy + onnxruntime alone, as docs/model-path.md shows. No Ray."""

from __future__ import annotations

import json

import numpy as np
import pytest

from _model_path_data import ACTIVITIES, VIDEO_DIM, make_run
from mujo.classifiers import finetune_output, train_artefact
from mujo.config import DatasetSpec
from mujo.data.clips import make_clip, plan_clips
from mujo.data.windows import clip_windows
from mujo.models.artefact import ArtefactError, load_classifier
from mujo.models.export import MODEL_CARD, ONNX_FILE, TORCHSCRIPT_FILE, export_classifier
from mujo.schema import SampleFormat


@pytest.fixture(scope="module")
def artefact(tmp_path_factory):
    cfg, manifest, pretrained = make_run(str(tmp_path_factory.mktemp("export")))
    return load_classifier(train_artefact(cfg, manifest, pretrained, finetune_output(cfg))["artefact"])


def real_windows() -> np.ndarray:
    """Over 1000 acc windows of recordings the classifier never saw (18 one-minute clips, every window)."""
    spec = DatasetSpec(name="tinyhar", activities=ACTIVITIES, subjects={"test": 6}, clip_seconds=(60, 60),
                       label_style="canonical", real_sensors=True, video_dim=VIDEO_DIM, subject_offset=900)
    labels = {a: i for i, a in enumerate(ACTIVITIES)}
    fmt = SampleFormat(video_dim=VIDEO_DIM)
    return np.concatenate([clip_windows(make_clip(t), fmt, labels, trim_fraction=0.0)["acc"]
                           for t in plan_clips(spec, 1)])


def test_onnx_and_torchscript_match_pytorch_on_1000_real_windows(artefact, tmp_path):
    windows = real_windows()
    assert len(windows) >= 1000
    card = export_classifier(artefact, str(tmp_path), windows)
    assert card["check"]["windows"] == len(windows)
    assert card["check"]["max_abs_diff_onnx"] <= 1e-5 and card["check"]["max_abs_diff_torchscript"] <= 1e-5
    # the card states the exact input contract and the classes
    saved = json.loads((tmp_path / MODEL_CARD).read_text())
    assert saved["input"]["name"] == "acc" and saved["input"]["shape"] == ["batch", 100, 6]
    assert saved["input"]["units"] == "m/s^2" and saved["input"]["rate_hz"] == 50
    assert [c["name"] for c in saved["output"]["classes"]] == ACTIVITIES

    # the docs' example: numpy + onnxruntime only
    import onnxruntime as ort
    import torch

    session = ort.InferenceSession(str(tmp_path / ONNX_FILE), providers=["CPUExecutionProvider"])
    p_onnx = session.run(["probabilities"], {"acc": windows[:300].astype(np.float32)})[0]
    np.testing.assert_allclose(p_onnx.sum(1), 1.0, atol=1e-5)
    ts = torch.jit.load(str(tmp_path / TORCHSCRIPT_FILE))
    with torch.no_grad():
        p_ts = ts(torch.from_numpy(windows[:300].copy())).numpy()
    assert np.abs(p_ts - p_onnx).max() <= 1e-5
    np.testing.assert_allclose(p_onnx, artefact.predict_proba({"acc": windows[:300]}), atol=1e-5)


def test_only_sensor_only_uncalibrated_classifiers_are_exported(artefact, tmp_path):
    multimodal = type(artefact)(model=artefact.model, card=artefact.card.model_copy(update={"inputs": ["pose", "acc"]}),
                                path=artefact.path)
    with pytest.raises(ArtefactError, match=r"classifier\.json: inputs \['pose', 'acc'\].*finetune\.inputs=\[acc\]"):
        export_classifier(multimodal, str(tmp_path), np.zeros((4, 100, 6), np.float32))
    calibrated = type(artefact)(model=artefact.model, path=artefact.path, card=artefact.card.model_copy(
        update={"calibration": artefact.card.calibration.model_copy(update={"mode": "unsupervised"})}))
    with pytest.raises(ArtefactError, match="finetune.calibration=none"):
        export_classifier(calibrated, str(tmp_path), np.zeros((4, 100, 6), np.float32))
