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


def _calibrated(artefact, windows: np.ndarray, mode: str = "unsupervised"):
    """The artefact with a fitted calibration that moves the data visibly: a watch whose readings are 1.5x and
    offset is mapped onto the windows' own distribution."""
    from mujo.evaluate.calibration import PITCalibrator

    cal = PITCalibrator("unsupervised").fit(windows * 1.5 + 2.0, windows)
    card = artefact.card.model_copy(update={"calibration": artefact.card.calibration.model_copy(
        update={"mode": mode, "files": {"acc": "calibration/acc.npz"}})})
    return type(artefact)(model=artefact.model, card=card, calibrators={"acc": cal}, path=artefact.path)


def test_a_calibrated_classifier_carries_its_calibration_in_the_graph(artefact, tmp_path):
    import onnxruntime as ort
    import torch

    windows = real_windows()[:400]
    calibrated = _calibrated(artefact, windows)
    watch = (windows * 1.5 + 2.0).astype(np.float32)  # what the miscalibrated watch records
    card = export_classifier(calibrated, str(tmp_path), watch)
    assert card["check"]["max_abs_diff_onnx"] <= 1e-5 and card["check"]["max_abs_diff_torchscript"] <= 1e-5
    assert card["calibration"] == {"mode": "unsupervised", "in_graph": True}
    assert "calibration" in card["input"]["preprocessing"]
    session = ort.InferenceSession(str(tmp_path / ONNX_FILE), providers=["CPUExecutionProvider"])
    p_onnx = np.concatenate([session.run(["probabilities"], {"acc": watch[i:i + 32]})[0]
                             for i in range(0, len(watch), 32)])
    # the device gets what batch inference gets (numpy calibration, then the model) from the raw readings ...
    np.testing.assert_allclose(p_onnx, calibrated.predict_proba({"acc": watch}), atol=1e-5)
    ts = torch.jit.load(str(tmp_path / TORCHSCRIPT_FILE))
    with torch.no_grad():
        np.testing.assert_allclose(ts(torch.from_numpy(watch[:64].copy())).numpy(), p_onnx[:64], atol=1e-5)
    # ... which is not what the uncalibrated network says on them (100x the tolerance at least): the calibration is
    # really in the graph
    assert np.abs(p_onnx - artefact.predict_proba({"acc": watch})).max() > 1e-3
    import onnx

    written = {o.domain: o.version for o in onnx.load(str(tmp_path / ONNX_FILE)).opset_import}[""]
    assert card["opset"] == written == 18  # the card states the opset of the file


def test_multimodal_and_supervised_calibrated_classifiers_are_refused(artefact, tmp_path):
    multimodal = type(artefact)(model=artefact.model, card=artefact.card.model_copy(update={"inputs": ["pose", "acc"]}),
                                path=artefact.path)
    with pytest.raises(ArtefactError, match=r"classifier\.json: inputs \['pose', 'acc'\].*finetune\.inputs=\[acc\]"):
        export_classifier(multimodal, str(tmp_path), np.zeros((4, 100, 6), np.float32))
    supervised = _calibrated(artefact, real_windows()[:50], mode="supervised")
    with pytest.raises(ArtefactError, match="supervised calibration.*finetune.calibration=unsupervised or none"):
        export_classifier(supervised, str(tmp_path), np.zeros((4, 100, 6), np.float32))
    assert not (tmp_path / ONNX_FILE).exists()
