"""Classifier artefacts: one fine-tuned classifier as a versioned, self-describing folder (local or ``s3://``).

A fan-out trial or ``jobs/finetune.py`` trains a classifier; this module keeps it, so that it can run on new
recordings (``mujo.pipelines.predict``) and be exported for devices (``mujo.models.export``). The folder::

    classifier.json         the card: format + version, inputs, setting, classes (name + label text), the window
                            contract (rate, window length, channels, units, gravity), calibration, metrics,
                            provenance (pretrained artefact + digest, dataset manifest digest, config, package)
    classifier.safetensors  the weights (safetensors: no pickle; only the tensors the classifier uses)
    calibration/<m>.npz     the fitted calibration of modality m, if any (mujo.evaluate.calibration, no pickle)
    confusion.png           the test confusion matrix

:func:`load_classifier` rebuilds the model from the folder alone. Nothing read is trusted: the card is validated
(pydantic) and a problem raises :class:`ArtefactError` naming the file and the fix; an artefact of another major
format version is refused with the version found and the one supported.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Sequence

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mujo.errors import InputError
from mujo.schema import ACC_CHANNELS, FS, NUM_JOINTS, STRIDE, WINDOW

FORMAT = "mujo.classifier"
FORMAT_VERSION = "1.0"
CARD = "classifier.json"
WEIGHTS = "classifier.safetensors"
CONFUSION = "confusion.png"
CALIBRATION = "calibration"
ACC_CHANNEL_NAMES = ("left_x", "left_y", "left_z", "right_x", "right_y", "right_z")
GRAVITY = ("included: a still sensor reads +9.81 m/s^2 along its up axis, in the sensor's own frame (Android "
           "convention; iOS Core Motion data is negated and in g)")

__all__ = ["ArtefactError", "ClassifierArtefact", "ClassifierCard", "load_classifier", "save_classifier",
           "manifest_digest", "package_version", "window_contract"]


class ArtefactError(InputError):
    """An artefact folder that cannot be used; the message names the file and the fix (a job prints it and exits
    with status 2, as for every :class:`mujo.errors.InputError`)."""


class _Card(BaseModel):
    # extra keys are ignored: a later minor version may add fields that this reader does not need
    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=True)


class ClassSpec(_Card):
    name: str
    text: str


class InputSpec(_Card):
    shape: list[int]
    dtype: Literal["float32"] = "float32"
    channels: list[str]
    units: str
    notes: str = ""


class WindowContract(_Card):
    rate_hz: float = FS
    window_frames: int = WINDOW
    stride_frames: int = STRIDE
    window_seconds: float = WINDOW / FS
    inputs: dict[str, InputSpec]


class CalibrationSpec(_Card):
    mode: Literal["none", "unsupervised", "supervised"] = "none"
    files: dict[str, str] = Field(default_factory=dict)


class Metrics(_Card):
    val_macro_f1: float | None = None
    test_macro_f1: float | None = None
    per_class_f1: dict[str, float] = Field(default_factory=dict)
    confusion_matrix: list[list[int]] = Field(default_factory=list)
    best_epoch: int | None = None
    epochs_run: int | None = None
    train_samples: int | None = None


class Provenance(_Card):
    pretrained: str | None = None
    pretrained_digest: str | None = None
    dataset: str = ""
    manifest_digest: str = ""
    config: dict[str, Any] = Field(default_factory=dict)
    package_version: str = ""
    created: str = ""


class ClassifierCard(_Card):
    format: Literal["mujo.classifier"] = FORMAT
    version: str = FORMAT_VERSION
    inputs: list[str] = Field(min_length=1)
    setting: Literal["baseline", "frozen", "finetuned"]
    fraction: float = 1.0
    seed: int = 0
    head_hidden: int = Field(256, ge=1)
    model: dict[str, Any]
    classes: list[ClassSpec] = Field(min_length=2)
    window: WindowContract
    calibration: CalibrationSpec = CalibrationSpec()
    metrics: Metrics = Metrics()
    provenance: Provenance = Provenance()
    weights: str = WEIGHTS
    weights_sha256: str = ""

    @property
    def labels(self) -> list[str]:
        return [c.name for c in self.classes]


def package_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("mujo-platform")
    except metadata.PackageNotFoundError:
        return "0+source"


def manifest_digest(manifest: Mapping) -> str:
    """sha256 of a dataset manifest without its run-to-run fields (timings, progress counters)."""
    doc = manifest.to_json() if hasattr(manifest, "to_json") else dict(manifest)  # mujo.run.Manifest or its JSON
    doc = {k: v for k, v in doc.items() if k not in ("seconds", "progress")}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def window_contract(inputs: Sequence[str], video_dim: int) -> WindowContract:
    """The exact input of each modality the classifier reads (as ``mujo.schema`` defines the sample format)."""
    specs = {
        "acc": InputSpec(shape=[WINDOW, ACC_CHANNELS], channels=list(ACC_CHANNEL_NAMES), units="m/s^2",
                         notes=f"both wrists' accelerometers, {WINDOW} frames at {FS} Hz; gravity {GRAVITY}; a "
                               "missing wrist is zeros"),
        "pose": InputSpec(shape=[WINDOW, NUM_JOINTS, 3], channels=["x", "y", "z"], units="m",
                          notes="Human3.6M 17-joint skeleton, z up (docs/sample-format.md)"),
        "video": InputSpec(shape=[video_dim], channels=[f"f{i}" for i in range(video_dim)], units="feature",
                           notes="video features averaged over the window"),
    }
    return WindowContract(inputs={m: specs[m] for m in inputs})


# --------------------------------------------------------------------------------------------------------------
# The in-memory artefact
# --------------------------------------------------------------------------------------------------------------

@dataclass
class ClassifierArtefact:
    """A loaded classifier: the model (eval mode), its card and its fitted calibrators."""

    model: Any  # mujo.models.classifier.Classifier
    card: ClassifierCard
    calibrators: dict = field(default_factory=dict)
    path: str = ""

    @property
    def labels(self) -> list[str]:
        return self.card.labels

    @property
    def inputs(self) -> list[str]:
        return list(self.card.inputs)

    def calibrate(self, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Apply the stored calibration (the very objects fitted at training) to windows of the inputs."""
        if not self.calibrators:
            return {m: arrays[m] for m in self.inputs}
        if self.card.calibration.mode == "supervised":
            raise ArtefactError(f"{self.path}: supervised calibration needs the true label of every window; a "
                                "classifier for new recordings must be trained with calibration none or "
                                "unsupervised (jobs/finetune.py --set finetune.calibration=unsupervised)")
        from mujo.evaluate.calibration import apply_calibration

        n = len(arrays[self.inputs[0]])
        out = apply_calibration(self.calibrators, {"x": ({m: arrays[m] for m in self.inputs},
                                                         np.zeros(n, np.int64))})
        return out["x"][0]

    @torch.no_grad()
    def predict_proba(self, arrays: Mapping[str, np.ndarray], batch_size: int = 256, calibrate: bool = True,
                      device: str | torch.device = "cpu") -> np.ndarray:
        """Class probabilities (N, C) float32 of windows given as arrays by modality (physical units)."""
        x = self.calibrate(arrays) if calibrate else {m: arrays[m] for m in self.inputs}
        self.model.eval()
        self.model.to(device)
        n = len(x[self.inputs[0]])
        out = []
        for lo in range(0, n, batch_size):
            batch = {m: torch.as_tensor(np.ascontiguousarray(x[m][lo:lo + batch_size], dtype=np.float32),
                                        device=device) for m in self.inputs}
            out.append(torch.softmax(self.model(batch), dim=1).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.labels)), np.float32)

    def predict(self, arrays: Mapping[str, np.ndarray], batch_size: int = 256) -> np.ndarray:
        return self.predict_proba(arrays, batch_size).argmax(1).astype(np.int64)


# --------------------------------------------------------------------------------------------------------------
# Save / load
# --------------------------------------------------------------------------------------------------------------

def _used_keys(state: Mapping[str, torch.Tensor], inputs: Sequence[str]) -> list[str]:
    """The classifier's tensors that its inputs use: their encoders, projections and input norms, and the head."""
    prefixes = ["head."] + [f"backbone.{part}.{m}." for m in inputs for part in ("encoders", "projections", "norms")]
    return [k for k in state if any(k.startswith(p) for p in prefixes)]


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)), 1)
    return cm


def per_class_f1(cm: np.ndarray, labels: Sequence[str]) -> dict[str, float]:
    tp = np.diag(cm).astype(np.float64)
    denom = cm.sum(0) + cm.sum(1)
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return {name: round(float(v), 6) for name, v in zip(labels, f1)}


def confusion_png(cm: np.ndarray, labels: Sequence[str], title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(labels)
    fig, ax = plt.subplots(figsize=(2.5 + 0.45 * n, 2 + 0.45 * n))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(n), labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n), labels, fontsize=8)
    for i in range(n):
        for j in range(n):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def file_sha256(uri: str) -> str:
    from mujo import storage

    return hashlib.sha256(storage.read_bytes(uri)).hexdigest()


def save_classifier(model: Any, path: str, *, labels: Sequence[str], label_texts: Mapping[str, str] | None = None,
                    setting: str, fraction: float = 1.0, seed: int = 0, video_dim: int = 512,
                    calibrators: Mapping | None = None, calibration_mode: str = "none",
                    test: tuple[np.ndarray, np.ndarray] | None = None, metrics: Mapping | None = None,
                    provenance: Mapping | None = None) -> ClassifierCard:
    """Write ``model`` (a :class:`mujo.models.classifier.Classifier`) as an artefact folder at ``path``.

    ``test`` = (true, predicted) classes of the test split: the confusion matrix (card and PNG) and per-class F1.
    ``metrics`` (val/test Macro F1, epochs, ...) and ``provenance`` (pretrained, dataset, manifest digest, config)
    go into the card as given; the package version and the creation time are added here."""
    from safetensors.torch import save as st_save

    from mujo import storage
    from mujo.evaluate.calibration import save_calibration

    inputs = list(model.inputs)
    state = model.state_dict()
    keep = {k: state[k].detach().cpu().contiguous() for k in _used_keys(state, inputs)}
    blob = st_save(keep, metadata={"format": FORMAT, "version": FORMAT_VERSION})
    texts = dict(label_texts or {})
    m = dict(metrics or {})
    if test is not None:
        cm = confusion_matrix(test[0], test[1], len(labels))
        m.update(confusion_matrix=cm.tolist(), per_class_f1=per_class_f1(cm, labels))
        storage.write_bytes(storage.join(path, CONFUSION),
                            confusion_png(cm, labels, f"{'+'.join(inputs)} {setting} (test)"))
    files = {}
    if calibrators and calibration_mode != "none":
        save_calibration(calibrators, storage.join(path, CALIBRATION))
        files = {mod: f"{CALIBRATION}/{mod}.npz" for mod in calibrators}
    card = ClassifierCard(
        inputs=inputs, setting=setting, fraction=float(fraction), seed=int(seed),
        head_hidden=int(model.head[0].out_features), model=model.backbone.cfg.model_dump(mode="json"),
        classes=[ClassSpec(name=n, text=texts.get(n) or n.replace("_", " ")) for n in labels],
        window=window_contract(inputs, video_dim), calibration=CalibrationSpec(mode=calibration_mode, files=files),
        metrics=Metrics(**m),
        provenance=Provenance(**{**dict(provenance or {}), "package_version": package_version(),
                                 "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}),
        weights_sha256=hashlib.sha256(blob).hexdigest())
    storage.write_bytes(storage.join(path, WEIGHTS), blob)
    storage.write_json(storage.join(path, CARD), card.model_dump(mode="json"))  # last: a card means complete
    return card


def read_card(path: str) -> ClassifierCard:
    """The validated card of the artefact at ``path``; :class:`ArtefactError` naming the file and the fix."""
    from mujo import storage

    uri = storage.join(path, CARD)
    try:
        raw = storage.read_bytes(uri)
    except storage.StorageError as exc:
        if storage.exists(storage.join(path, "model.json")):
            raise ArtefactError(f"{uri}: no classifier card: {path} is a pretrained encoder (model.json), not a "
                                "classifier; train one on it with jobs/finetune.py") from None
        raise ArtefactError(f"{uri}: no classifier card ({exc}). Give the folder that jobs/finetune.py (or the "
                            "fan-out with evaluate.keep_classifiers) wrote") from None
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise ArtefactError(f"{uri}: not JSON ({exc}); the artefact is damaged: write it again with "
                            "jobs/finetune.py") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise ArtefactError(f"{uri}: not a classifier artefact (format {found!r}, expected {FORMAT!r}); a pretrained "
                            "encoder (model.json) is not a classifier: train one with jobs/finetune.py")
    version = str(doc.get("version", ""))
    if version.split(".", 1)[0] != FORMAT_VERSION.split(".", 1)[0]:
        raise ArtefactError(f"{uri}: classifier format version {version or '?'} (package "
                            f"{doc.get('provenance', {}).get('package_version', '?')}), this mujo reads "
                            f"{FORMAT_VERSION} (major {FORMAT_VERSION.split('.')[0]}): retrain it with "
                            "jobs/finetune.py, or load it with the mujo release that wrote it")
    try:
        return ClassifierCard.model_validate(doc)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(x) for x in e['loc']) or '<top>'}: {e['msg']}" for e in exc.errors())
        raise ArtefactError(f"{uri}: invalid classifier card ({problems}); the artefact is damaged or was edited: "
                            "write it again with jobs/finetune.py") from None


def load_classifier(path: str, map_location: str = "cpu") -> ClassifierArtefact:
    """Rebuild a classifier artefact written by :func:`save_classifier` (weights checked against the card)."""
    from safetensors import SafetensorError
    from safetensors.torch import load as st_load

    from mujo import storage
    from mujo.config import ModelConfig
    from mujo.evaluate.calibration import load_calibration
    from mujo.models.classifier import Classifier
    from mujo.models.mujo import MuJoModel

    card = read_card(path)
    wuri = storage.join(path, WEIGHTS)
    blob = storage.read_bytes(wuri)
    if card.weights_sha256 and hashlib.sha256(blob).hexdigest() != card.weights_sha256:
        raise ArtefactError(f"{wuri}: the weights do not match the card's sha256 (a partial copy or another "
                            "artefact's file): copy the whole folder again")
    try:
        state = st_load(blob)
    except (SafetensorError, ValueError) as exc:
        raise ArtefactError(f"{wuri}: unreadable weights ({exc}): copy the artefact again") from None
    try:
        backbone = MuJoModel(ModelConfig.model_validate(card.model))
        model = Classifier(backbone, card.inputs, len(card.classes), hidden=card.head_hidden)
    except (ValidationError, ValueError) as exc:
        raise ArtefactError(f"{storage.join(path, CARD)}: the model described cannot be built ({exc})") from None
    wanted = set(_used_keys(model.state_dict(), card.inputs))
    if set(state) != wanted:
        missing, extra = sorted(wanted - set(state))[:5], sorted(set(state) - wanted)[:5]
        raise ArtefactError(f"{wuri}: the weights do not fit the card's model (missing {missing}, unexpected "
                            f"{extra}): the folder mixes two artefacts; write it again with jobs/finetune.py")
    try:
        model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise ArtefactError(f"{wuri}: weight shapes do not fit the card's model ({str(exc)[:300]})") from None
    model.to(map_location).eval()
    calibrators = {}
    if card.calibration.mode != "none":
        calibrators = load_calibration(storage.join(path, CALIBRATION), list(card.calibration.files))
    return ClassifierArtefact(model=model, card=card, calibrators=calibrators, path=path)
