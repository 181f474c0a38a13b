"""Export a sensor-only classifier for devices: TorchScript and ONNX, checked against the PyTorch model, plus a model
card that states the exact input contract.

The exported graph is the classifier on one accelerometer window: input ``acc`` float32 (batch, 100, 6) in m/s^2
(left wrist xyz, right wrist xyz, 50 Hz, gravity included), output ``probabilities`` float32 (batch, classes),
softmax included. The model's input standardisation is inside the graph (buffers of the artefact); nothing else
is: a device resamples to 50 Hz, converts to m/s^2 and cuts 2-s windows itself, as the card says.

A classifier trained with unsupervised calibration (the probability integral transform that maps a real sensor
onto the pretraining distribution) carries it inside the graph, in front of the network
(:class:`mujo.evaluate.calibration.PITModule`: the same piecewise-linear map per channel, in float64), so a device
feeds raw m/s^2 either way; the card says so. Supervised calibration needs each window's true label and cannot be
exported (a clear error).

The check: the exported models run on real windows (``>= 1000`` by default) under ONNX Runtime and the TorchScript
interpreter, and the largest absolute difference of probabilities against PyTorch must be at most the tolerance
(1e-5); the figures go into the card. Needs ``onnx``, ``onnxruntime`` and ``onnxscript`` (torch's exporter).
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
import time

import numpy as np
import torch
from torch import nn

from mujo import storage
from mujo.models.artefact import ArtefactError, ClassifierArtefact, package_version

log = logging.getLogger(__name__)
ONNX_FILE = "classifier.onnx"
TORCHSCRIPT_FILE = "classifier.torchscript.pt"
MODEL_CARD = "model_card.json"


class SensorClassifier(nn.Module):
    """The artefact's classifier on one tensor: acc (B, 100, 6) -> [calibration ->] class probabilities (B, C)."""

    def __init__(self, classifier: nn.Module, calibration: nn.Module | None = None) -> None:
        super().__init__()
        self.classifier = classifier
        self.calibration = calibration if calibration is not None else nn.Identity()

    def forward(self, acc: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.classifier({"acc": self.calibration(acc)}), dim=1)


def sensor_module(artefact: ClassifierArtefact) -> SensorClassifier:
    """The exported graph as a torch module (eval mode): the stored calibration, if any, then the classifier."""
    from mujo.evaluate.calibration import PITModule

    check_exportable(artefact)
    cal = artefact.calibrators.get("acc") if artefact.card.calibration.mode == "unsupervised" else None
    return SensorClassifier(artefact.model.to("cpu").eval(), PITModule(cal) if cal is not None else None).eval()


def check_exportable(artefact: ClassifierArtefact) -> None:
    card_uri = storage.join(artefact.path, "classifier.json")
    if artefact.inputs != ["acc"]:
        raise ArtefactError(f"{card_uri}: inputs {artefact.inputs}; device export takes a sensor-only classifier "
                            "(inputs [acc]): train one with jobs/finetune.py --set finetune.inputs=[acc]")
    mode = artefact.card.calibration.mode
    if mode == "supervised":
        raise ArtefactError(f"{card_uri}: supervised calibration needs the true label of every window and cannot run "
                            "on a device: train the device classifier with finetune.calibration=unsupervised or none")
    if mode == "unsupervised" and "acc" not in artefact.calibrators:
        raise ArtefactError(f"{card_uri}: the card names unsupervised calibration but no fitted acc calibrator was "
                            "loaded (calibration/acc.npz): re-save the classifier with jobs/finetune.py")


def _onnx_bytes(module: nn.Module, example: torch.Tensor, opset: int) -> bytes:
    import warnings

    logging.getLogger("onnx_ir").setLevel(logging.WARNING)  # one INFO line per folded constant otherwise
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = os.path.join(tmp, ONNX_FILE)
        program = torch.onnx.export(module, (example,), input_names=["acc"], output_names=["probabilities"],
                                    dynamic_shapes={"acc": {0: torch.export.Dim("batch", min=1)}},
                                    opset_version=opset, dynamo=True, verbose=False)
        program.save(path)
        with open(path, "rb") as f:
            return f.read()


def export_classifier(artefact: ClassifierArtefact, out: str, windows: np.ndarray, opset: int = 18,
                      tolerance: float = 1e-5, batch_size: int = 256) -> dict:
    """Write ``classifier.onnx``, ``classifier.torchscript.pt`` and ``model_card.json`` under ``out`` (local or
    ``s3://``) after checking both against PyTorch on ``windows`` (N, 100, 6), in m/s^2; returns the card.
    Raises :class:`ArtefactError` when the classifier cannot be exported or a check fails."""
    import onnxruntime as ort

    check_exportable(artefact)
    windows = np.ascontiguousarray(windows, dtype=np.float32)
    shape = artefact.card.window.inputs["acc"].shape
    if windows.ndim != 3 or list(windows.shape[1:]) != shape:
        raise ArtefactError(f"check windows have shape {windows.shape}, the classifier reads (N, {shape})")
    module = sensor_module(artefact)
    calibrated = not isinstance(module.calibration, nn.Identity)
    if calibrated:  # the in-graph calibration compares every value with every knot: smaller batches
        batch_size = min(batch_size, 32)
    example = torch.from_numpy(windows[:2].copy())
    t0 = time.time()
    # the reference is the PyTorch path of batch inference: numpy calibration (if any), then the model
    reference = artefact.predict_proba({"acc": windows}, batch_size=batch_size)
    with torch.no_grad():
        scripted = torch.jit.trace(module, example, check_trace=False)
        buf = io.BytesIO()
        torch.jit.save(scripted, buf)
        ts_bytes = buf.getvalue()
        loaded_ts = torch.jit.load(io.BytesIO(ts_bytes))
        ts_probs = np.concatenate([loaded_ts(torch.from_numpy(windows[i:i + batch_size])).numpy()
                                   for i in range(0, len(windows), batch_size)])
    onnx_bytes = _onnx_bytes(module, example, opset)
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    onnx_probs = np.concatenate([session.run(["probabilities"], {"acc": windows[i:i + batch_size]})[0]
                                 for i in range(0, len(windows), batch_size)])
    diff_onnx = float(np.abs(onnx_probs - reference).max())
    diff_ts = float(np.abs(ts_probs - reference).max())
    agree = float((onnx_probs.argmax(1) == reference.argmax(1)).mean())
    log.info("export check on %d windows: max |p_onnx - p_torch| = %.2e, max |p_ts - p_torch| = %.2e",
             len(windows), diff_onnx, diff_ts)
    if diff_onnx > tolerance or diff_ts > tolerance:
        raise ArtefactError(f"{artefact.path}: the exported model differs from PyTorch by {max(diff_onnx, diff_ts):.2e}"
                            f" (ONNX {diff_onnx:.2e}, TorchScript {diff_ts:.2e}) > export.tolerance {tolerance:g}; "
                            "nothing was written. Try another export.opset")
    import onnx

    actual = {o.domain: o.version for o in onnx.load_model_from_string(onnx_bytes).opset_import}.get("", opset)
    if actual != opset:
        log.warning("export: asked for ONNX opset %d, the exporter wrote opset %d (the card states it)", opset, actual)
    w = artefact.card.window
    acc = w.inputs["acc"]
    card = {
        "format": "mujo.device_model", "version": "1.0",
        "files": {"onnx": ONNX_FILE, "torchscript": TORCHSCRIPT_FILE},
        "input": {"name": "acc", "shape": ["batch", *acc.shape], "dtype": "float32", "layout": "(batch, frames, "
                  "channels)", "channels": acc.channels, "units": acc.units, "rate_hz": w.rate_hz,
                  "window_frames": w.window_frames, "window_seconds": w.window_seconds,
                  "stride_frames_recommended": w.stride_frames, "notes": acc.notes,
                  "preprocessing": "resample to 50 Hz, convert to m/s^2 with gravity included (a still sensor reads "
                                   "+9.81 along its up axis), cut 100-frame windows; no normalisation (inside the "
                                   "model)" + ("; no calibration either: the classifier's unsupervised calibration "
                                               "(a per-channel piecewise-linear map onto the pretraining "
                                               "distribution) is inside the graph" if calibrated else "")},
        "calibration": {"mode": artefact.card.calibration.mode, "in_graph": calibrated},
        "output": {"name": "probabilities", "shape": ["batch", len(artefact.labels)], "dtype": "float32",
                   "softmax": True, "classes": [c.model_dump() for c in artefact.card.classes]},
        "check": {"windows": int(len(windows)), "max_abs_diff_onnx": diff_onnx, "max_abs_diff_torchscript": diff_ts,
                  "tolerance": tolerance, "argmax_agreement_onnx": agree, "onnxruntime": ort.__version__,
                  "seconds": round(time.time() - t0, 2)},
        "opset": actual, "onnx": onnx.__version__, "torch": torch.__version__, "package_version": package_version(),
        "classifier": {"path": artefact.path, "weights_sha256": artefact.card.weights_sha256,
                       "setting": artefact.card.setting, "fraction": artefact.card.fraction,
                       "metrics": {"val_macro_f1": artefact.card.metrics.val_macro_f1,
                                   "test_macro_f1": artefact.card.metrics.test_macro_f1},
                       "provenance": artefact.card.provenance.model_dump(exclude={"config"})},
    }
    storage.write_bytes(storage.join(out, ONNX_FILE), onnx_bytes)
    storage.write_bytes(storage.join(out, TORCHSCRIPT_FILE), ts_bytes)
    storage.write_json(storage.join(out, MODEL_CARD), card)
    return card


def check_windows(manifest: dict, count: int, seed: int = 0) -> np.ndarray:
    """Up to ``count`` real acc windows of a preprocessed dataset (test first, then val and train), read shard by
    shard until enough are in hand."""
    from mujo.schema import read_shard, to_numpy_tensor

    parts, have = [], 0
    for split in ("test", "val", "train"):
        for uri in manifest.shards.get(split, []):
            table = read_shard(uri).select(["acc", "has_acc"])
            x = to_numpy_tensor(table.column("acc"))[table.column("has_acc").to_numpy()]
            parts.append(x)
            have += len(x)
            if have >= count:
                break
        if have >= count:
            break
    if not parts:
        raise ArtefactError(f"dataset {manifest.dataset} has no acc windows to check the export on")
    x = np.concatenate(parts)
    return x[np.sort(np.random.default_rng(seed).choice(len(x), size=min(count, len(x)), replace=False))]
