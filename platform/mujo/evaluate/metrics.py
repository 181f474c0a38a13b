"""Classification and retrieval metrics in plain numpy.

Definitions (chosen to match how the MuJo paper and the HAR literature report results):

* **Macro F1** (:func:`macro_f1`) is the unweighted mean of the per-class F1 scores over the classes that occur in
  ``y_true`` *or* ``y_pred`` -- the same set scikit-learn's ``f1_score(average="macro")`` averages over when no
  ``labels`` are given. A class in that set with no true positive scores 0. Passing ``labels`` fixes the set
  explicitly (for example to all ``num_classes`` classes); a listed class that occurs in neither array then also
  scores 0.
* **Top-k Macro F1** (:func:`topk_macro_f1`): a sample counts as correctly predicted when its true class is among
  the k highest scores; otherwise the top-1 class is its prediction. Macro F1 of those predictions is reported.
  This is the usual way top-k Macro F1 is reported for zero-shot HAR; with k = 1 it is plain Macro F1 of the argmax.
* **Retrieval recall@k** (:func:`retrieval_recall_at_k`): query row i matches gallery row i; the fraction of
  queries whose match is ranked within the first k by cosine similarity. Ties are counted against the query
  (pessimistic), so degenerate embeddings (all equal) cannot score well.
* **Few-shot Macro F1** (:func:`fewshot_macro_f1`): a nearest-class-mean classifier in an embedding space, fitted on
  ``shots`` labelled samples per class and tested on the others (cosine similarity), averaged over a few random
  draws of the shots. Pretraining reports it on the validation split as a label-efficiency objective for the search.
* **Two-sample Kolmogorov-Smirnov statistic** (:func:`ks_statistic`): sup |F_a - F_b| of the empirical CDFs; used
  to measure how well calibration aligns distributions.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "class_f1",
    "confusion_matrix",
    "fewshot_macro_f1",
    "ks_statistic",
    "l2_normalize",
    "macro_f1",
    "retrieval_recall_at_k",
    "topk_macro_f1",
    "validation_metric_names",
]

_RETRIEVAL_CHUNK = 1024  # query rows per similarity block, bounds memory at chunk x N


def _label_vector(y: ArrayLike, name: str) -> NDArray[np.int64]:
    """Return ``y`` as a 1-D int64 array; raise ``ValueError`` if it is not a vector of integers."""
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        return arr.astype(np.int64)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.bool_)):
        raise ValueError(f"{name} must hold integer class indices, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def _check_range(y: NDArray[np.int64], num_classes: int, name: str) -> None:
    """Raise ``ValueError`` if any entry of ``y`` lies outside ``[0, num_classes)``."""
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"{name} has class indices outside [0, {num_classes}): min {y.min()}, max {y.max()}")


def l2_normalize(x: ArrayLike, eps: float = 1e-12) -> NDArray[np.float64]:
    """Scale each row (last axis) of ``x`` to unit L2 norm; rows with norm below ``eps`` become zero."""
    arr = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(arr, axis=-1, keepdims=True)
    return np.where(norms > eps, arr / np.maximum(norms, eps), 0.0)


def confusion_matrix(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int) -> NDArray[np.int64]:
    """Count matrix ``M`` of shape ``(num_classes, num_classes)``: ``M[t, p]`` = samples of true class t predicted p.

    Raises ``ValueError`` on mismatched lengths or class indices outside ``[0, num_classes)``.
    """
    t = _label_vector(y_true, "y_true")
    p = _label_vector(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length: {t.shape[0]} vs {p.shape[0]}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    _check_range(t, num_classes, "y_true")
    _check_range(p, num_classes, "y_pred")
    flat = np.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes).astype(np.int64)


def macro_f1(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    num_classes: int | None = None,
    labels: Iterable[int] | None = None,
) -> float:
    """Unweighted mean of per-class F1 scores.

    Args:
        y_true: true class indices, shape (N,), N >= 1.
        y_pred: predicted class indices, shape (N,).
        num_classes: if given, every index must lie in ``[0, num_classes)`` (checked, ``ValueError`` otherwise).
            It does not change the averaging set.
        labels: the classes to average over. Default: the union of the classes in ``y_true`` and ``y_pred``
            (scikit-learn's default for ``average="macro"``). Samples whose classes are not listed still count as
            false negatives / false positives of the listed classes they are confused with.

    Returns:
        Macro F1 in [0, 1]; a class with no true positive contributes 0.
    """
    t = _label_vector(y_true, "y_true")
    p = _label_vector(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length: {t.shape[0]} vs {p.shape[0]}")
    if t.size == 0:
        raise ValueError("macro_f1 needs at least one sample")
    if num_classes is not None:
        _check_range(t, num_classes, "y_true")
        _check_range(p, num_classes, "y_pred")
    classes = np.union1d(t, p) if labels is None else np.unique(np.asarray(list(labels), dtype=np.int64))
    if classes.size == 0:
        raise ValueError("labels must name at least one class")
    true_hot = t[:, None] == classes[None, :]
    pred_hot = p[:, None] == classes[None, :]
    tp = np.sum(true_hot & pred_hot, axis=0)
    denom = true_hot.sum(axis=0) + pred_hot.sum(axis=0)  # 2TP + FP + FN
    f1 = np.divide(2.0 * tp, denom, out=np.zeros(classes.size), where=denom > 0)
    return float(f1.mean())


def class_f1(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int) -> NDArray[np.float64]:
    """F1 of every class ``0..num_classes-1`` (the per-class view of :func:`macro_f1`): ``2TP / (2TP + FP + FN)``,
    0 for a class with no true positive, NaN for a class in neither ``y_true`` nor ``y_pred`` (undefined, so that a
    mean over seeds skips it instead of counting a 0 the classifier never earned)."""
    cm = confusion_matrix(y_true, y_pred, num_classes)
    tp = np.diag(cm).astype(np.float64)
    denom = cm.sum(axis=0) + cm.sum(axis=1)  # 2TP + FP + FN
    return np.divide(2.0 * tp, denom, out=np.full(num_classes, np.nan), where=denom > 0)


def topk_macro_f1(y_true: ArrayLike, scores: ArrayLike, k: int, labels: Iterable[int] | None = None) -> float:
    """Top-k Macro F1: a hit among the k best scores counts as the true class, otherwise the top-1 is predicted.

    Args:
        y_true: true class indices, shape (N,), each in ``[0, C)``.
        scores: class scores, shape (N, C); higher is better. Ties are broken towards the lower class index.
        k: how many top classes count as a hit; values above C are clipped to C.
        labels: averaging set passed on to :func:`macro_f1` (default: classes in truth or prediction).
    """
    t = _label_vector(y_true, "y_true")
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2 or s.shape[0] != t.shape[0]:
        raise ValueError(f"scores must have shape (N, C) with N = len(y_true) = {t.shape[0]}, got {s.shape}")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    _check_range(t, s.shape[1], "y_true")
    top = np.argsort(-s, axis=1, kind="stable")[:, : min(k, s.shape[1])]
    hit = np.any(top == t[:, None], axis=1)
    pred = np.where(hit, t, top[:, 0])
    return macro_f1(t, pred, labels=labels)


def fewshot_macro_f1(embeddings: ArrayLike, labels: ArrayLike, shots: int, draws: int = 3,
                     seed: int = 0) -> float | None:
    """Few-shot Macro F1 of a nearest-class-mean classifier on ``embeddings`` (N, D) with classes ``labels`` (N,).

    Each draw picks ``shots`` samples per class at random (``seed``: the same draws every call) as the labelled
    set; a class's prototype is the mean of its shots' unit vectors, and every other sample is assigned the class of
    the most cosine-similar prototype. The result is the Macro F1 over the taking-part classes, averaged over
    ``draws`` draws. Only classes with at least ``shots + 1`` samples take part (each must keep a query); ``None``
    when fewer than two classes do (no classification to score).
    """
    x = l2_normalize(embeddings)
    y = _label_vector(labels, "labels")
    if x.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"embeddings must have shape (N, D) with N = len(labels) = {y.shape[0]}, got {x.shape}")
    if shots < 1 or draws < 1:
        raise ValueError(f"shots and draws must be >= 1, got {shots} and {draws}")
    classes, counts = np.unique(y, return_counts=True)
    classes = classes[counts > shots]
    if classes.size < 2:
        return None
    keep = np.isin(y, classes)
    x, y = x[keep], y[keep]
    rng = np.random.default_rng(seed)
    scores = []
    for _ in range(draws):
        support = np.zeros(len(y), dtype=bool)
        prototypes = np.empty((classes.size, x.shape[1]))
        for i, c in enumerate(classes):
            picked = rng.choice(np.flatnonzero(y == c), size=shots, replace=False)
            support[picked] = True
            prototypes[i] = x[picked].mean(axis=0)
        sims = x[~support] @ l2_normalize(prototypes).T
        scores.append(macro_f1(y[~support], classes[np.argmax(sims, axis=1)], labels=classes))
    return float(np.mean(scores))


def validation_metric_names(modalities: Iterable[str], fewshot: bool) -> list[str]:
    """The metrics pretraining reports on the validation split at each epoch end (what ``search.metric`` may name
    besides training metrics such as ``loss_mean``): retrieval recall@1/5 per ordered pair of modalities and their
    mean, and with ``fewshot`` the few-shot Macro F1 of each sensor modality (not text: its embedding is the label's
    own text) and their mean. A pair or modality without validation samples is absent from a report."""
    mods = list(modalities)
    pairs = [f"{a}->{b}" for a in mods for b in mods if a != b]
    names = ["val/R@1/mean"] + [f"val/R@{k}/{p}" for k in (1, 5) for p in pairs]
    sensors = [m for m in mods if m != "text"]
    if fewshot and sensors:
        names += ["val/fewshot_f1/mean"] + [f"val/fewshot_f1/{m}" for m in sensors]
    return names


def retrieval_recall_at_k(query: ArrayLike, gallery: ArrayLike, ks: Iterable[int] = (1, 5)) -> dict[int, float]:
    """Cross-modal retrieval recall@k with cosine similarity; query row i matches gallery row i.

    The rank of query i's match is the number of *other* gallery rows whose similarity is greater than or equal to
    the match's (ties count against the query). Recall@k is the fraction of queries with rank < k.

    Args:
        query: shape (N, D).
        gallery: shape (N, D).
        ks: cut-offs (positive integers); a cut-off >= N gives 1.0.

    Returns:
        ``{k: recall}`` for every k in ``ks``.
    """
    q = np.asarray(query, dtype=np.float64)
    g = np.asarray(gallery, dtype=np.float64)
    if q.ndim != 2 or g.shape != q.shape:
        raise ValueError(f"query and gallery must both have shape (N, D); got {q.shape} and {g.shape}")
    if q.shape[0] == 0:
        raise ValueError("retrieval needs at least one query")
    if np.isnan(q).any() or np.isnan(g).any():
        raise ValueError("query or gallery contains NaN")
    cutoffs = [int(k) for k in ks]
    if any(k < 1 for k in cutoffs):
        raise ValueError(f"every k must be >= 1, got {cutoffs}")
    qn, gn = l2_normalize(q), l2_normalize(g)
    ranks = np.empty(q.shape[0], dtype=np.int64)
    for start in range(0, q.shape[0], _RETRIEVAL_CHUNK):
        stop = min(start + _RETRIEVAL_CHUNK, q.shape[0])
        sim = qn[start:stop] @ gn.T
        match = sim[np.arange(stop - start), np.arange(start, stop)]
        ranks[start:stop] = np.sum(sim >= match[:, None], axis=1) - 1
    return {k: float(np.mean(ranks < k)) for k in cutoffs}


def ks_statistic(a: ArrayLike, b: ArrayLike) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the empirical CDFs of ``a`` and ``b``.

    Both inputs are flattened; each needs at least one value and no NaN.
    """
    x = np.sort(np.asarray(a, dtype=np.float64).ravel())
    y = np.sort(np.asarray(b, dtype=np.float64).ravel())
    if x.size == 0 or y.size == 0:
        raise ValueError("ks_statistic needs non-empty samples")
    if np.isnan(x).any() or np.isnan(y).any():
        raise ValueError("ks_statistic inputs contain NaN")
    points = np.concatenate([x, y])
    cdf_x = np.searchsorted(x, points, side="right") / x.size
    cdf_y = np.searchsorted(y, points, side="right") / y.size
    return float(np.max(np.abs(cdf_x - cdf_y)))
