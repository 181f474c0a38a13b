"""Tests for mujo.evaluate.metrics: macro F1, top-k macro F1, retrieval recall@k, confusion matrix, KS statistic."""

from __future__ import annotations

import numpy as np
import pytest

from mujo.evaluate.metrics import (
    confusion_matrix,
    fewshot_macro_f1,
    ks_statistic,
    l2_normalize,
    macro_f1,
    retrieval_recall_at_k,
    topk_macro_f1,
    validation_metric_names,
)


def test_macro_f1_matches_hand_computed_value() -> None:
    # class 0: TP 2, FP 1, FN 0 -> F1 0.8; classes 1 and 2: no TP -> 0 (scikit-learn gives 0.2667 too)
    y_true = [0, 1, 2, 0, 1, 2]
    y_pred = [0, 2, 1, 0, 0, 1]
    assert macro_f1(y_true, y_pred) == pytest.approx(0.8 / 3)


def test_macro_f1_perfect_and_union_of_labels() -> None:
    assert macro_f1([0, 1, 2, 2], [0, 1, 2, 2]) == 1.0
    # class 1 only appears in the prediction: it is averaged (F1 0), class 0 has F1 2/3
    assert macro_f1([0, 0], [0, 1]) == pytest.approx((2 / 3) / 2)
    # classes absent from both arrays are not averaged by default ...
    assert macro_f1([0, 0], [0, 0], num_classes=5) == 1.0
    # ... but are (with F1 0) when listed explicitly
    assert macro_f1([0, 0], [0, 0], labels=range(4)) == pytest.approx(0.25)


def test_macro_f1_validates_inputs() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        macro_f1([0, 1], [0])
    with pytest.raises(ValueError, match="outside"):
        macro_f1([0, 3], [0, 1], num_classes=3)
    with pytest.raises(ValueError, match="at least one sample"):
        macro_f1([], [])
    with pytest.raises(ValueError, match="integer"):
        macro_f1([0.5], [0.5])


def test_topk_macro_f1_counts_hits_in_top_k_else_top1() -> None:
    scores = np.array(
        [
            [0.9, 0.1, 0.0],  # true 0: top-1 hit
            [0.5, 0.4, 0.1],  # true 1: top-2 hit, top-1 says 0
            [0.6, 0.3, 0.1],  # true 2: only a top-3 hit, top-1 says 0
        ]
    )
    y = np.array([0, 1, 2])
    assert topk_macro_f1(y, scores, 1) == pytest.approx(macro_f1(y, [0, 0, 0]))
    assert topk_macro_f1(y, scores, 2) == pytest.approx(macro_f1(y, [0, 1, 0]))
    assert topk_macro_f1(y, scores, 3) == 1.0
    assert topk_macro_f1(y, scores, 10) == 1.0  # k clipped to C


def test_topk_macro_f1_validates() -> None:
    with pytest.raises(ValueError, match="k must be"):
        topk_macro_f1([0], np.ones((1, 2)), 0)
    with pytest.raises(ValueError, match="outside"):
        topk_macro_f1([2], np.ones((1, 2)), 1)
    with pytest.raises(ValueError, match="shape"):
        topk_macro_f1([0, 1], np.ones((1, 2)), 1)


def test_confusion_matrix() -> None:
    cm = confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    assert cm.dtype == np.int64
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix([0, 3], [0, 0], 3)


def test_retrieval_recall_identity_and_permutation() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 16))
    assert retrieval_recall_at_k(x, 2.0 * x) == {1: 1.0, 5: 1.0}  # cosine: scale invariant
    perm = rng.permutation(50)
    rec = retrieval_recall_at_k(x, x[perm], ks=(1, 5, 50))
    assert rec[1] == pytest.approx(np.mean(perm == np.arange(50)))
    assert rec[50] == 1.0


def test_retrieval_recall_exact_ranks_and_ties() -> None:
    query = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    gallery = np.array([[1.0, 0.1], [1.0, 0.0], [1.0, 1.0]])
    # q0's match g0 ranks 2nd (after g1), q1's match g1 ranks 3rd, q2's match g2 ranks 1st
    recall = retrieval_recall_at_k(query, gallery, ks=(1, 2, 3))
    assert recall == {1: pytest.approx(1 / 3), 2: pytest.approx(2 / 3), 3: 1.0}
    # all-equal embeddings: ties count against the query
    same = np.ones((4, 3))
    assert retrieval_recall_at_k(same, same, ks=(1, 4)) == {1: 0.0, 4: 1.0}


def test_retrieval_recall_chunking_matches_bruteforce() -> None:
    rng = np.random.default_rng(1)
    q = rng.normal(size=(1500, 8))
    g = q + rng.normal(scale=1.0, size=q.shape)
    sim = l2_normalize(q) @ l2_normalize(g).T
    ranks = (sim >= np.diag(sim)[:, None]).sum(1) - 1
    rec = retrieval_recall_at_k(q, g, ks=(1, 10))
    assert rec[1] == pytest.approx(np.mean(ranks < 1))
    assert rec[10] == pytest.approx(np.mean(ranks < 10))


def test_ks_statistic() -> None:
    assert ks_statistic([1, 2, 3], [1, 2, 3]) == 0.0
    assert ks_statistic([0, 1], [5, 6]) == 1.0
    assert ks_statistic([0, 1, 2, 3], [2, 3, 4, 5]) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        ks_statistic([np.nan], [1.0])


def test_l2_normalize_handles_zero_rows() -> None:
    out = l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]])


def test_fewshot_macro_f1_separable_random_and_deterministic() -> None:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((4, 16)) * 5
    y = np.repeat(np.arange(4), 30)
    clustered = centres[y] + rng.standard_normal((120, 16)) * 0.3
    assert fewshot_macro_f1(clustered, y, shots=3) == 1.0
    noise = rng.standard_normal((120, 16))
    chance = fewshot_macro_f1(noise, y, shots=3, draws=5)
    assert chance is not None and chance < 0.5  # 4 classes: chance is about 0.25
    assert fewshot_macro_f1(noise, y, shots=3, seed=7) == fewshot_macro_f1(noise, y, shots=3, seed=7)


def test_fewshot_macro_f1_skips_classes_without_a_query() -> None:
    x = np.eye(3)[[0, 0, 0, 1, 1, 1, 2]]
    y = np.array([0, 0, 0, 1, 1, 1, 2])  # class 2 has one sample: with one shot nothing is left to classify
    assert fewshot_macro_f1(x, y, shots=1) == 1.0
    assert fewshot_macro_f1(x, y, shots=3) is None  # no class keeps a query
    with pytest.raises(ValueError):
        fewshot_macro_f1(x, y[:-1], shots=1)
    with pytest.raises(ValueError):
        fewshot_macro_f1(x, y, shots=0)


def test_validation_metric_names() -> None:
    names = validation_metric_names(["pose", "acc", "text"], fewshot=True)
    assert "val/R@1/mean" in names and "val/R@5/acc->text" in names and "val/R@1/pose->pose" not in names
    assert "val/fewshot_f1/mean" in names and "val/fewshot_f1/acc" in names and "val/fewshot_f1/text" not in names
    assert not [n for n in validation_metric_names(["pose", "acc"], fewshot=False) if "fewshot" in n]
