"""Tests for mujo.evaluate.zeroshot: label matrix (with No Activity), cosine scores, prediction, top-k report."""

from __future__ import annotations

import numpy as np
import pytest

from mujo.evaluate.metrics import l2_normalize
from mujo.evaluate.zeroshot import label_embedding_matrix, zero_shot_predict, zero_shot_report, zero_shot_scores


def _synthetic(num_classes: int, per_class: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random label embeddings and sample embeddings = their class's label embedding + small noise."""
    rng = np.random.default_rng(seed)
    label_embs = rng.normal(size=(num_classes, dim)) * rng.uniform(0.5, 3.0, size=(num_classes, 1))
    y = np.repeat(np.arange(num_classes), per_class)
    samples = l2_normalize(label_embs)[y] + 0.01 * rng.normal(size=(y.size, dim))
    return label_embs, samples, y


def test_label_matrix_rows_are_unit_norm() -> None:
    label_embs, _, _ = _synthetic(5, 1, 16, 0)
    matrix = label_embedding_matrix(label_embs)
    np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1.0)
    np.testing.assert_allclose(matrix, l2_normalize(label_embs))


def test_no_activity_row_is_mean_of_other_labels() -> None:
    label_embs, _, _ = _synthetic(5, 1, 16, 1)
    placeholder = label_embs.copy()
    placeholder[2] = 100.0  # the input row of the No Activity class is ignored
    matrix = label_embedding_matrix(placeholder, no_activity_index=2)
    others = l2_normalize(np.delete(label_embs, 2, axis=0)).mean(axis=0)
    np.testing.assert_allclose(matrix[2], others / np.linalg.norm(others))
    np.testing.assert_allclose(np.delete(matrix, 2, axis=0), l2_normalize(np.delete(label_embs, 2, axis=0)))
    with pytest.raises(ValueError, match="no_activity_index"):
        label_embedding_matrix(label_embs, no_activity_index=5)
    with pytest.raises(ValueError, match="at least one other"):
        label_embedding_matrix(label_embs[:1], no_activity_index=0)


def test_scores_are_cosine_similarities() -> None:
    emb = np.array([[2.0, 0.0], [1.0, 1.0]])
    labels = np.array([[1.0, 0.0], [0.0, 3.0]])
    np.testing.assert_allclose(zero_shot_scores(emb, labels), [[1.0, 0.0], [np.sqrt(0.5), np.sqrt(0.5)]])
    assert zero_shot_predict(emb, labels).tolist() == [0, 0]  # tie goes to the lower index
    with pytest.raises(ValueError, match="label_matrix"):
        zero_shot_scores(emb, np.ones((2, 3)))


def test_matching_embeddings_score_perfectly() -> None:
    label_embs, samples, y = _synthetic(6, 10, 32, 2)
    matrix = label_embedding_matrix(label_embs)
    assert (zero_shot_predict(samples, matrix) == y).all()
    assert zero_shot_report(samples, y, matrix) == {"top1_macro_f1": 1.0, "top3_macro_f1": 1.0, "top5_macro_f1": 1.0}


def test_matching_embeddings_with_no_activity_class() -> None:
    rng = np.random.default_rng(3)
    label_embs, samples, y = _synthetic(6, 10, 32, 3)
    no_activity = 0
    matrix = label_embedding_matrix(label_embs, no_activity_index=no_activity)
    # No Activity windows lie near the mean of the activity labels
    samples[y == no_activity] = matrix[no_activity] + 0.01 * rng.normal(size=(10, 32))
    assert (zero_shot_predict(samples, matrix) == y).all()
    assert zero_shot_report(samples, y, matrix, ks=(1,))["top1_macro_f1"] == 1.0


def test_report_clips_k_and_counts_top_k_hits() -> None:
    label_embs, samples, y = _synthetic(2, 5, 8, 4)
    matrix = label_embedding_matrix(label_embs)
    swapped = matrix[::-1]  # every sample is now most similar to the wrong label
    report = zero_shot_report(samples, y, swapped, ks=(1, 3))
    assert report["top1_macro_f1"] == 0.0
    assert report["top3_macro_f1"] == 1.0  # k = 3 is clipped to C = 2
