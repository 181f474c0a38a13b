"""Tests for mujo.evaluate.finetune: label fractions, class weights, early stopping, the training loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mujo.evaluate.finetune import (
    EarlyStopping,
    FinetuneConfig,
    class_weights,
    sample_label_fraction,
    train_classifier,
)
from mujo.evaluate.metrics import macro_f1


class DictMLP(nn.Module):
    """Tiny classifier over a dict input: concatenates the "acc" and "pose" features, then an MLP."""

    def __init__(self, in_acc: int, in_pose: int, num_classes: int) -> None:
        super().__init__()
        self.encoder = nn.Linear(in_acc + in_pose, 16)
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(16, num_classes))

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(self.encoder(torch.cat([x["acc"], x["pose"].flatten(1)], dim=1)))


def _blobs(n_per_class: int, num_classes: int, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Well-separated Gaussian blobs split across two modalities ("acc" (N, 4), "pose" (N, 2, 2))."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(100).normal(scale=4.0, size=(num_classes, 8))
    y = np.repeat(np.arange(num_classes), n_per_class)
    x = centres[y] + rng.normal(scale=0.5, size=(y.size, 8))
    return {"acc": x[:, :4].astype(np.float32), "pose": x[:, 4:].reshape(-1, 2, 2).astype(np.float32)}, y


def _model(num_classes: int = 3, seed: int = 0) -> DictMLP:
    torch.manual_seed(seed)
    return DictMLP(4, 4, num_classes)


# ---------------------------------------------------------------- label fractions


def test_sample_label_fraction_keeps_class_shares() -> None:
    labels = np.repeat([0, 1, 2, 3], [100, 40, 7, 1])
    idx = sample_label_fraction(labels, 0.1, seed=0)
    counts = np.bincount(labels[idx], minlength=4)
    assert counts.tolist() == [10, 4, 1, 1]  # round(0.7) = 1, class 3 keeps its single example
    assert len(np.unique(idx)) == idx.size and np.all(np.diff(idx) > 0)
    counts_half = np.bincount(labels[sample_label_fraction(labels, 0.5, seed=0)], minlength=4)
    assert counts_half.tolist() == [50, 20, 4, 1]  # 3.5 rounds up
    assert sample_label_fraction(labels, 1.0, seed=3).tolist() == list(range(labels.size))


def test_sample_label_fraction_keeps_at_least_one_per_class() -> None:
    labels = np.repeat([0, 1, 2], [5, 3, 50])
    idx = sample_label_fraction(labels, 0.02, seed=1)
    assert np.bincount(labels[idx]).tolist() == [1, 1, 1]


def test_sample_label_fraction_is_deterministic_per_seed_and_differs_across_seeds() -> None:
    labels = np.random.default_rng(0).integers(0, 5, size=500)
    first = sample_label_fraction(labels, 0.2, seed=7)
    np.testing.assert_array_equal(first, sample_label_fraction(labels, 0.2, seed=7))
    others = [sample_label_fraction(labels, 0.2, seed=s) for s in range(5)]
    assert all(not np.array_equal(first, o) for o in others)
    assert all(np.array_equal(np.bincount(labels[first]), np.bincount(labels[o])) for o in others)


def test_sample_label_fraction_validates_fraction() -> None:
    with pytest.raises(ValueError, match="fraction"):
        sample_label_fraction(np.zeros(4, dtype=int), 0.0, seed=0)
    with pytest.raises(ValueError, match="fraction"):
        sample_label_fraction(np.zeros(4, dtype=int), 1.5, seed=0)


# ---------------------------------------------------------------- class weights


def test_class_weights_formula() -> None:
    labels = np.repeat([0, 1, 3], [60, 20, 5])  # class 2 absent
    np.testing.assert_allclose(class_weights(labels, 4), [1.0, 3.0, 0.0, 12.0])
    with pytest.raises(ValueError, match="outside"):
        class_weights(labels, 3)


# ---------------------------------------------------------------- early stopping


def test_early_stopping_stops_patience_epochs_after_best() -> None:
    scores = [0.1, 0.5, 0.4, 0.5, 0.3, 0.45, 0.2, 0.9]
    stopper = EarlyStopping(patience=3)
    stopped_at = next(epoch for epoch, s in enumerate(scores, start=1) if stopper.step(s, epoch))
    assert stopper.best_epoch == 2 and stopper.best_score == 0.5
    assert stopped_at == 2 + 3  # equal scores are not improvements


def test_early_stopping_resets_on_improvement() -> None:
    stopper = EarlyStopping(patience=2)
    assert [stopper.step(s, e) for e, s in enumerate([0.1, 0.0, 0.2, 0.1, 0.1], start=1)] == [
        False,
        False,
        False,
        False,
        True,
    ]
    assert stopper.best_epoch == 3
    with pytest.raises(ValueError):
        EarlyStopping(patience=0)


# ---------------------------------------------------------------- training loop


def test_train_classifier_learns_separable_problem() -> None:
    train, val, test = _blobs(30, 3, 1), _blobs(20, 3, 2), _blobs(20, 3, 3)
    seen: list[dict[str, float]] = []
    cfg = FinetuneConfig(lr=1e-2, max_epochs=60, patience=10, batch_size=16, seed=0)
    model = _model()
    result = train_classifier(model, train, val, test, num_classes=3, cfg=cfg, on_epoch=seen.append)
    assert result.test_macro_f1 > 0.95
    assert result.test_predictions.shape == (60,)
    assert result.test_macro_f1 == pytest.approx(macro_f1(test[1], result.test_predictions))
    assert len(seen) == result.epochs_run == len(result.history)
    assert [m["epoch"] for m in seen] == list(range(1, result.epochs_run + 1))
    assert set(seen[0]) == {"epoch", "train_loss", "val_macro_f1", "best_val_macro_f1", "best_epoch"}
    assert seen[-1]["train_loss"] < seen[0]["train_loss"]
    # the best-validation weights are restored
    best = max(m["val_macro_f1"] for m in seen)
    assert result.val_macro_f1 == best
    assert seen[result.best_epoch - 1]["val_macro_f1"] == best
    with torch.no_grad():
        model.eval()
        val_pred = model({k: torch.from_numpy(v) for k, v in val[0].items()}).argmax(1).numpy()
    assert macro_f1(val[1], val_pred) == result.val_macro_f1


def test_train_classifier_stops_early_when_validation_cannot_improve() -> None:
    train, test = _blobs(10, 3, 1), _blobs(5, 3, 3)
    # identical validation inputs: every prediction is one class, so macro F1 is the same every epoch
    val_y = np.repeat([0, 1, 2], 4)
    val = ({"acc": np.zeros((12, 4), np.float32), "pose": np.zeros((12, 2, 2), np.float32)}, val_y)
    cfg = FinetuneConfig(lr=1e-2, max_epochs=100, patience=5, seed=0)
    result = train_classifier(_model(), train, val, test, num_classes=3, cfg=cfg)
    assert result.best_epoch == 1
    assert result.epochs_run == 1 + 5
    assert result.val_macro_f1 == pytest.approx(0.5 / 3)


def test_train_classifier_leaves_frozen_parameters_unchanged() -> None:
    train, val, test = _blobs(10, 3, 1), _blobs(5, 3, 2), _blobs(5, 3, 3)
    model = _model()
    model.encoder.requires_grad_(False)
    frozen = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    head_before = [p.clone() for p in model.head.parameters()]
    cfg = FinetuneConfig(lr=1e-2, max_epochs=5, patience=5, weight_decay=0.1, seed=0)
    train_classifier(model, train, val, test, num_classes=3, cfg=cfg)
    for key, value in model.encoder.state_dict().items():
        assert torch.equal(value, frozen[key])
    assert any(not torch.equal(a, b) for a, b in zip(head_before, model.head.parameters()))


def test_train_classifier_is_deterministic_per_seed() -> None:
    train, val, test = _blobs(10, 3, 1), _blobs(5, 3, 2), _blobs(5, 3, 3)
    cfg = FinetuneConfig(lr=1e-2, max_epochs=8, patience=8, batch_size=8, seed=3)
    first = train_classifier(_model(), train, val, test, num_classes=3, cfg=cfg)
    second = train_classifier(_model(), train, val, test, num_classes=3, cfg=cfg)
    assert first.history == second.history
    np.testing.assert_array_equal(first.test_predictions, second.test_predictions)


def test_train_classifier_validates_inputs() -> None:
    train, val, test = _blobs(4, 3, 1), _blobs(2, 3, 2), _blobs(2, 3, 3)
    cfg = FinetuneConfig(max_epochs=1)
    with pytest.raises(ValueError, match="logits"):
        train_classifier(_model(num_classes=4), train, val, test, num_classes=3, cfg=cfg)
    with pytest.raises(ValueError, match="modalities"):
        train_classifier(_model(), train, ({"acc": val[0]["acc"]}, val[1]), test, num_classes=3, cfg=cfg)
    with pytest.raises(ValueError, match="outside"):
        train_classifier(_model(), train, val, test, num_classes=2, cfg=cfg)
    frozen = _model()
    frozen.requires_grad_(False)
    with pytest.raises(ValueError, match="trainable"):
        train_classifier(frozen, train, val, test, num_classes=3, cfg=cfg)
    with pytest.raises(ValueError):
        FinetuneConfig(lr=0.0)


def test_fanout_trial_device_is_one_flag_away():
    import torch

    from mujo.config import EvaluateConfig
    from mujo.tune.fanout import trial_device

    assert trial_device(EvaluateConfig()) == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="gpus_per_trial=0.25 but this trial sees no CUDA device"):
            trial_device(EvaluateConfig(gpus_per_trial=0.25))
