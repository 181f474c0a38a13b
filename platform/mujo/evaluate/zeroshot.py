"""Zero-shot activity classification from label text embeddings.

Each class is represented by the joint-space embedding of its label text; a sample is assigned to the label whose
embedding is most similar (cosine similarity, argmax). The paper's text speaks of an argmin of a similarity; it means
the most similar label.

"No Activity" has no meaningful label text. The paper represents it by "the mean of all label embeddings"; we read
that as the mean of all the *other* (activity) label embeddings: including the no-activity row itself would make the
result depend on whatever placeholder it holds. Label rows are L2-normalised before averaging, so every activity
contributes equally in cosine space, and the mean is normalised again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray

from mujo.data.text import canonical_text, normalize_label
from mujo.evaluate.data import Arrays, embed
from mujo.evaluate.metrics import l2_normalize, topk_macro_f1
from mujo.models.mujo import MuJoModel

__all__ = ["NO_ACTIVITY_NAMES", "label_embedding_matrix", "label_matrix", "no_activity_index", "zero_shot",
           "zero_shot_predict", "zero_shot_report", "zero_shot_scores"]
NO_ACTIVITY_NAMES = frozenset({"non_activity", "no_activity", "null", "none", "no activity", "other"})


def label_embedding_matrix(label_embs: ArrayLike, no_activity_index: int | None = None) -> NDArray[np.float64]:
    """Unit-norm class embedding matrix, one row per class.

    Args:
        label_embs: label text embeddings in the joint space, shape (C, D), rows in class-index order.
        no_activity_index: index of the "No Activity" class, if any; its input row is ignored and replaced by the
            normalised mean of the other (normalised) rows. Needs C >= 2.

    Returns:
        Array (C, D) with L2-normalised rows.
    """
    emb = np.asarray(label_embs, dtype=np.float64)
    if emb.ndim != 2 or emb.shape[0] == 0:
        raise ValueError(f"label_embs must have shape (C, D) with C >= 1, got {emb.shape}")
    if not np.isfinite(emb).all():
        raise ValueError("label_embs contain NaN or infinite values")
    matrix = l2_normalize(emb)
    if no_activity_index is not None:
        n_classes = matrix.shape[0]
        if not 0 <= no_activity_index < n_classes:
            raise ValueError(f"no_activity_index {no_activity_index} outside [0, {n_classes})")
        if n_classes < 2:
            raise ValueError("a No Activity class needs at least one other label to average")
        others = np.delete(matrix, no_activity_index, axis=0)
        matrix[no_activity_index] = l2_normalize(others.mean(axis=0))
    return matrix


def zero_shot_scores(embeddings: ArrayLike, label_matrix: ArrayLike) -> NDArray[np.float64]:
    """Cosine similarities (N, C) between sample embeddings (N, D) and class embeddings (C, D)."""
    emb = np.asarray(embeddings, dtype=np.float64)
    labels = np.asarray(label_matrix, dtype=np.float64)
    if emb.ndim != 2 or labels.ndim != 2 or emb.shape[1] != labels.shape[1]:
        raise ValueError(f"need embeddings (N, D) and label_matrix (C, D); got {emb.shape} and {labels.shape}")
    if not (np.isfinite(emb).all() and np.isfinite(labels).all()):
        raise ValueError("embeddings or label_matrix contain NaN or infinite values")
    return l2_normalize(emb) @ l2_normalize(labels).T


def zero_shot_predict(embeddings: ArrayLike, label_matrix: ArrayLike) -> NDArray[np.int64]:
    """Predicted class per sample (N,): the most similar label (ties go to the lower class index)."""
    return np.argmax(zero_shot_scores(embeddings, label_matrix), axis=1).astype(np.int64)


def zero_shot_report(
    embeddings: ArrayLike, y_true: ArrayLike, label_matrix: ArrayLike, ks: Iterable[int] = (1, 3, 5)
) -> dict[str, float]:
    """Top-k Macro F1 of zero-shot classification.

    Args:
        embeddings: sample embeddings, shape (N, D).
        y_true: true class indices, shape (N,), in ``[0, C)``.
        label_matrix: class embeddings (C, D), e.g. from :func:`label_embedding_matrix`.
        ks: the k values; each is clipped to C (with C = 2, "top-3" is top-2).

    Returns:
        ``{"top{k}_macro_f1": value}`` for each requested k (keys use the requested k), as defined in
        :func:`mujo.evaluate.metrics.topk_macro_f1`.
    """
    scores = zero_shot_scores(embeddings, label_matrix)
    n_classes = scores.shape[1]
    return {f"top{k}_macro_f1": topk_macro_f1(y_true, scores, min(int(k), n_classes)) for k in ks}


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
