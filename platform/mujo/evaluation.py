"""Downstream evaluation pieces that need no Ray: loading a dataset's arrays, calibration of real data onto the
pretraining (virtual) distribution, and zero-shot classification with a pretrained model (the paper's Table 3).

Calibration (probability integral transform, :mod:`mujo.calibration`) maps each channel of the real dataset onto
the distribution of the same channel in the pretraining corpus' train split: ``unsupervised`` with all data,
``supervised`` per class (the real data's labels are used at fit *and* at transform time, including on the test
split, as in the paper; classes absent from the pretraining corpus fall back to the pooled mapping). Pose is
calibrated in the model's own representation, after subtracting each window's mean pelvis position. Fitted
calibrations are saved with the run (``<run>/calibration/<dataset>/<mode>/<modality>.npz``) and the very same
objects transform every split.
"""

from __future__ import annotations

import io
from typing import Iterable, Mapping, Sequence

import numpy as np
import pyarrow as pa
import torch

from mujo import storage
from mujo.calibration import PITCalibrator
from mujo.data.text import canonical_text, normalize_label
from mujo.metrics import l2_normalize
from mujo.models.mujo import MuJoModel, center_pose
from mujo.schema import MASK_COLUMNS, TENSOR_MODALITY_COLUMN, check_shards, read_shard, to_numpy_tensor
from mujo.zeroshot import label_embedding_matrix, zero_shot_report

Arrays = dict[str, np.ndarray]
SplitArrays = dict[str, tuple[Arrays, np.ndarray]]
NO_ACTIVITY_NAMES = frozenset({"non_activity", "no_activity", "null", "none", "no activity", "other"})
CALIBRATED_MODALITIES = ("acc", "pose")


def load_arrays(manifest: dict, modalities: Sequence[str], splits: Iterable[str] | None = None,
                max_rows: int | None = None, seed: int = 0) -> SplitArrays:
    """Splits of a preprocessed dataset as (arrays by modality, class ids); refuses samples lacking an input."""
    out: SplitArrays = {}
    for split in splits or manifest["shards"]:
        shards = manifest["shards"].get(split)
        if not shards:
            raise ValueError(f"dataset {manifest['dataset']} has no '{split}' split")
        check_shards(shards)
        columns = [TENSOR_MODALITY_COLUMN[m] for m in modalities] + [MASK_COLUMNS[m] for m in modalities]
        table = pa.concat_tables([read_shard(s).select([*columns, "class_id"]) for s in shards])
        if max_rows is not None and table.num_rows > max_rows:
            keep = np.sort(np.random.default_rng(seed).choice(table.num_rows, max_rows, replace=False))
            table = table.take(pa.array(keep))
        for m in modalities:
            present = table.column(MASK_COLUMNS[m]).to_numpy()
            if not present.all():
                raise ValueError(f"{manifest['dataset']}/{split}: {int((~present).sum())} sample(s) lack '{m}'; "
                                 "evaluate with inputs that every sample has, or filter the dataset")
        out[split] = ({m: to_numpy_tensor(table.column(TENSOR_MODALITY_COLUMN[m])) for m in modalities},
                      table.column("class_id").to_numpy().astype(np.int64))
    return out


def _calibration_view(modality: str, x: np.ndarray) -> np.ndarray:
    if modality == "pose":
        return center_pose(torch.from_numpy(np.require(x, requirements="W"))).numpy()
    return x


def fit_calibration(mode: str, real: SplitArrays, reference: tuple[Arrays, np.ndarray],
                    modalities: Sequence[str]) -> dict[str, PITCalibrator]:
    """One fitted calibrator per modality: real = all splits of the downstream dataset, reference = pretraining
    train windows (their labels mapped onto the downstream class ids; -1 where the class is not downstream)."""
    ref_arrays, ref_labels = reference
    fitted = {}
    for m in modalities:
        if m not in CALIBRATED_MODALITIES:
            continue
        x = np.concatenate([_calibration_view(m, arrays[m]) for arrays, _ in real.values()])
        y = np.concatenate([labels for _, labels in real.values()])
        cal = PITCalibrator(mode)
        if mode == "supervised":
            cal.fit(x, _calibration_view(m, ref_arrays[m]), real_labels=y, reference_labels=ref_labels)
        else:
            cal.fit(x, _calibration_view(m, ref_arrays[m]))
        fitted[m] = cal
    return fitted


def apply_calibration(calibrators: Mapping[str, PITCalibrator], data: SplitArrays) -> SplitArrays:
    out: SplitArrays = {}
    for split, (arrays, labels) in data.items():
        new = dict(arrays)
        for m, cal in calibrators.items():
            if m in arrays:
                new[m] = cal.transform(_calibration_view(m, arrays[m]), labels=labels).astype(np.float32)
        out[split] = (new, labels)
    return out


def save_calibration(calibrators: Mapping[str, PITCalibrator], uri: str) -> None:
    for m, cal in calibrators.items():
        buf = io.BytesIO()
        cal.save(buf)
        storage.write_bytes(storage.join(uri, f"{m}.npz"), buf.getvalue())


def load_calibration(uri: str, modalities: Sequence[str]) -> dict[str, PITCalibrator]:
    return {m: PITCalibrator.load(io.BytesIO(storage.read_bytes(storage.join(uri, f"{m}.npz"))))
            for m in modalities if m in CALIBRATED_MODALITIES}


def reference_for(ref_manifest: dict, labels: Sequence[str], modalities: Sequence[str],
                  max_rows: int = 20000) -> tuple[Arrays, np.ndarray]:
    """Pretraining train windows for calibration, labels mapped by class name onto the downstream ``labels``."""
    arrays, ref_y = load_arrays(ref_manifest, [m for m in modalities if m in CALIBRATED_MODALITIES],
                                ["train"], max_rows=max_rows)["train"]
    index = {name: i for i, name in enumerate(labels)}
    mapped = np.array([index.get(ref_manifest["labels"][c], -1) for c in ref_y], dtype=np.int64)
    return arrays, mapped


@torch.no_grad()
def embed(model: MuJoModel, arrays: Arrays, inputs: Sequence[str], batch_size: int = 512) -> np.ndarray:
    """Joint-space embedding of each sample from ``inputs``: the renormalised mean of the per-modality embeddings."""
    model.eval()
    n = len(arrays[inputs[0]])
    out = []
    for i in range(0, n, batch_size):
        parts = [model.embed(m, torch.tensor(arrays[m][i:i + batch_size])) for m in inputs]
        out.append(torch.stack(parts).mean(0).numpy())
    return l2_normalize(np.concatenate(out))


def no_activity_index(labels: Sequence[str]) -> int | None:
    hits = [i for i, name in enumerate(labels) if name.lower() in NO_ACTIVITY_NAMES]
    return hits[0] if hits else None


@torch.no_grad()
def label_matrix(model: MuJoModel, labels: Sequence[str], embedder) -> np.ndarray:
    """Class embeddings in the joint space from the label names' text ("No Activity" = mean of the others)."""
    texts = [normalize_label(canonical_text(name)) or canonical_text(name) for name in labels]
    text_emb = torch.from_numpy(embedder(texts))
    joint = model.embed("text", text_emb).numpy()
    return label_embedding_matrix(joint, no_activity_index(labels))


def zero_shot(models: Mapping[str, MuJoModel], test: tuple[Arrays, np.ndarray], labels: Sequence[str],
              input_groups: Sequence[Sequence[str]], embedder, calibration: str = "none",
              ks: Sequence[int] = (1, 3, 5)) -> list[dict]:
    """The shape of the paper's Table 3: top-k Macro F1 per (pretrained model, input modalities), with and without
    the no-activity class when the dataset has one."""
    arrays, y = test
    na = no_activity_index(labels)
    rows = []
    for model_name, model in models.items():
        matrix = label_matrix(model, labels, embedder)
        for inputs in input_groups:
            if any(m not in model.modalities for m in inputs):
                continue
            emb = embed(model, arrays, inputs)
            variants = [("with", emb, y, matrix)]
            if na is not None:
                keep = y != na
                remap = np.cumsum(np.arange(len(labels)) != na) - 1
                variants = [("with", emb, y, matrix),
                            ("without", emb[keep], remap[y[keep]], np.delete(matrix, na, axis=0))]
            else:
                variants = [("n/a", emb, y, matrix)]
            for no_act, e, yy, mat in variants:
                report = zero_shot_report(e, yy, mat, ks=tuple(k for k in ks if k <= len(mat)))
                rows.append({"model": model_name, "inputs": "+".join(inputs), "calibration": calibration,
                             "no_activity": no_act, **report, "n": int(len(yy))})
    return rows
