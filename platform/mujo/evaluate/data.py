"""The arrays an evaluation works on: a preprocessed dataset's splits in memory, the pretraining corpus's windows
as the reference of calibration, and the data prepared once per calibration mode an :class:`~mujo.run.EvaluationPlan`
needs (each fitted calibration saved with the run). Plus the joint-space embedding of arrays. No Ray.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import pyarrow as pa
import torch

from mujo.evaluate.calibration import (CALIBRATED_MODALITIES, Arrays, SplitArrays, apply_calibration,
                                       fit_calibration, save_calibration)
from mujo.evaluate.metrics import l2_normalize
from mujo.models.mujo import MuJoModel
from mujo.run import EvaluationPlan, Manifest, RunLayout
from mujo.schema import MASK_COLUMNS, TENSOR_MODALITY_COLUMN, check_shards, read_shard, to_numpy_tensor


def load_arrays(manifest: Manifest, modalities: Sequence[str], splits: Iterable[str] | None = None,
                max_rows: int | None = None, seed: int = 0) -> SplitArrays:
    """Splits of a preprocessed dataset as (arrays by modality, class ids); refuses samples lacking an input."""
    out: SplitArrays = {}
    for split in splits or manifest.shards:
        shards = manifest.shards.get(split)
        if not shards:
            raise ValueError(f"dataset {manifest.dataset} has no '{split}' split")
        check_shards(shards)
        columns = [TENSOR_MODALITY_COLUMN[m] for m in modalities] + [MASK_COLUMNS[m] for m in modalities]
        table = pa.concat_tables([read_shard(s).select([*columns, "class_id"]) for s in shards])
        if max_rows is not None and table.num_rows > max_rows:
            keep = np.sort(np.random.default_rng(seed).choice(table.num_rows, max_rows, replace=False))
            table = table.take(pa.array(keep))
        for m in modalities:
            present = table.column(MASK_COLUMNS[m]).to_numpy()
            if not present.all():
                raise ValueError(f"{manifest.dataset}/{split}: {int((~present).sum())} sample(s) lack '{m}'; "
                                 "evaluate with inputs that every sample has, or filter the dataset")
        out[split] = ({m: to_numpy_tensor(table.column(TENSOR_MODALITY_COLUMN[m])) for m in modalities},
                      table.column("class_id").to_numpy().astype(np.int64))
    return out


def reference_for(ref_manifest: Manifest, labels: Sequence[str], modalities: Sequence[str],
                  max_rows: int = 20000) -> tuple[Arrays, np.ndarray]:
    """Pretraining train windows for calibration, labels mapped by class name onto the downstream ``labels``."""
    arrays, ref_y = load_arrays(ref_manifest, [m for m in modalities if m in CALIBRATED_MODALITIES],
                                ["train"], max_rows=max_rows)["train"]
    index = {name: i for i, name in enumerate(labels)}
    mapped = np.array([index.get(ref_manifest.labels[c], -1) for c in ref_y], dtype=np.int64)
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


def prepare_data(plan: EvaluationPlan, manifest: Manifest, reference: Manifest | None,
                 layout: RunLayout | None = None) -> dict[str, SplitArrays]:
    """The evaluated dataset's splits once per calibration mode of ``plan`` (``none`` = as recorded). Calibrations
    are fitted against the pretraining corpus (``reference``, required exactly when ``plan.needs_reference``) and,
    with a ``layout``, saved under ``<run>/calibration/<dataset>/<mode>/``."""
    if plan.needs_reference and reference is None:
        raise ValueError(f"calibrations {[c for c in plan.data_calibrations if c != 'none']} need the pretraining "
                         f"corpus '{plan.reference_dataset}' as their reference")
    modalities = plan.modalities
    data = load_arrays(manifest, modalities, ["train", "val", "test"])
    out = {}
    for mode in plan.data_calibrations:
        if mode == "none":
            out[mode] = data
            continue
        calibrators = fit_calibration(mode, data, reference_for(reference, manifest.labels, modalities), modalities)
        if layout is not None:
            save_calibration(calibrators, layout.calibration(manifest.dataset, mode))
        out[mode] = apply_calibration(calibrators, data)
    return out


__all__ = ["Arrays", "SplitArrays", "embed", "load_arrays", "prepare_data", "reference_for"]
