"""Downstream classifier training in plain torch: label fractions, class weights, early stopping.

The protocol follows the paper's downstream evaluation: a classifier (encoder(s) + projection(s) + head, possibly
with frozen parts) is trained on a per-class fraction of the labelled training windows with Adam (lr 1e-4) and a
class-weighted cross-entropy (w_c = largest class count / count of c), for at most 200 epochs with early stopping
after 25 epochs without a better validation Macro F1; the best-validation weights are restored and evaluated on the
test split. Epochs are numbered from 1.

Macro F1 here is :func:`mujo.evaluate.metrics.macro_f1` (mean over the classes present in truth or prediction).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from mujo.evaluate.metrics import macro_f1
from mujo.optim import adamw

__all__ = [
    "EarlyStopping",
    "FinetuneConfig",
    "FinetuneResult",
    "Split",
    "class_weights",
    "sample_label_fraction",
    "train_classifier",
]

Split = tuple[Mapping[str, np.ndarray], np.ndarray]
"""One data split: a dict of per-modality arrays (each with N rows) and the class labels (N,)."""


def sample_label_fraction(labels: np.ndarray, fraction: float, seed: int) -> NDArray[np.int64]:
    """Indices of a per-class random subset of ``labels``.

    For every class present, ``round(fraction * count)`` examples are drawn without replacement (halves round up),
    but at least one; so every class keeps (within rounding) its share and none disappears. The draw depends only on
    ``seed``: the same seed gives the same indices, different seeds give independent samples.

    Args:
        labels: class label per example, shape (N,).
        fraction: share to keep per class, in (0, 1].
        seed: random seed of this sample.

    Returns:
        Sorted int64 indices into ``labels``.
    """
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {y.shape}")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    rng = np.random.default_rng(seed)
    chosen: list[NDArray[np.int64]] = []
    for cls in np.unique(y):
        members = np.flatnonzero(y == cls)
        keep = min(members.size, max(1, math.floor(fraction * members.size + 0.5)))
        chosen.append(rng.choice(members, size=keep, replace=False))
    if not chosen:
        return np.zeros(0, dtype=np.int64)
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def class_weights(labels: np.ndarray, num_classes: int) -> NDArray[np.float64]:
    """Cross-entropy class weights ``w_c = max_k count_k / count_c``, shape (num_classes,).

    A class absent from ``labels`` gets weight 0: it cannot occur as a training target, so its weight never enters
    the loss, and 0 (rather than an infinite ratio or an arbitrary 1) makes that explicit.
    """
    y = np.asarray(labels).astype(np.int64)
    if y.ndim != 1 or y.size == 0:
        raise ValueError(f"labels must be a non-empty 1-D array, got shape {y.shape}")
    if y.min() < 0 or y.max() >= num_classes:
        raise ValueError(f"labels outside [0, {num_classes}): min {y.min()}, max {y.max()}")
    counts = np.bincount(y, minlength=num_classes).astype(np.float64)
    return np.divide(counts.max(), counts, out=np.zeros(num_classes), where=counts > 0)


class EarlyStopping:
    """Tracks the best validation score (higher is better) and signals a stop after ``patience`` bad epochs.

    A score improves only if strictly greater than the best so far. :meth:`step` returns ``True`` at the
    ``patience``-th consecutive epoch without improvement, i.e. exactly ``patience`` epochs after the best epoch
    when epochs are consecutive.
    """

    def __init__(self, patience: int) -> None:
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        self.patience = patience
        self.best_score = -math.inf
        self.best_epoch: int | None = None
        self.bad_epochs = 0

    def step(self, score: float, epoch: int) -> bool:
        """Record ``score`` for ``epoch``; return whether training should stop now."""
        if score > self.best_score:
            self.best_score = float(score)
            self.best_epoch = epoch
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
        return self.bad_epochs >= self.patience


@dataclass(frozen=True)
class FinetuneConfig:
    """Hyper-parameters of :func:`train_classifier` (defaults: the paper's protocol)."""

    lr: float = 1e-4
    max_epochs: int = 200
    patience: int = 25
    batch_size: int = 64
    weight_decay: float = 0.0
    device: str = "cpu"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.max_epochs < 1 or self.patience < 1 or self.batch_size < 1:
            raise ValueError("max_epochs, patience and batch_size must be >= 1")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")


@dataclass
class FinetuneResult:
    """Outcome of :func:`train_classifier`.

    Attributes:
        best_epoch: epoch (1-based) with the best validation Macro F1; its weights are the model's final weights.
        epochs_run: number of epochs trained.
        val_macro_f1: validation Macro F1 at ``best_epoch``.
        test_macro_f1: test Macro F1 of the restored best model.
        test_predictions: predicted test classes, shape (N_test,).
        history: per-epoch metrics, as passed to ``on_epoch``.
    """

    best_epoch: int
    epochs_run: int
    val_macro_f1: float
    test_macro_f1: float
    test_predictions: NDArray[np.int64]
    history: list[dict[str, float]] = field(default_factory=list)


def _to_tensors(split: Split, name: str, num_classes: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Validate a split and convert it to CPU tensors (float32 inputs, int64 labels)."""
    inputs, labels = split
    y = np.asarray(labels)
    if y.ndim != 1 or y.size == 0:
        raise ValueError(f"{name} labels must be a non-empty 1-D array, got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{name} labels must be integers, got dtype {y.dtype}")
    if y.min() < 0 or y.max() >= num_classes:
        raise ValueError(f"{name} labels outside [0, {num_classes})")
    if not inputs:
        raise ValueError(f"{name} has no input modalities")
    tensors: dict[str, torch.Tensor] = {}
    for key, value in inputs.items():
        arr = np.asarray(value, dtype=np.float32)
        if arr.shape[:1] != y.shape:
            raise ValueError(f"{name}[{key!r}] has {arr.shape[:1]} rows, labels have {y.shape[0]}")
        arr = np.ascontiguousarray(arr)
        with warnings.catch_warnings():  # read-only arrays (Ray's object store, shared by trials): shared, never
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")  # written to
            tensors[key] = torch.from_numpy(arr)
    return tensors, torch.from_numpy(y.astype(np.int64))


def _batch(
    inputs: Mapping[str, torch.Tensor], index: torch.Tensor | slice, device: torch.device
) -> dict[str, torch.Tensor]:
    """Rows ``index`` (index tensor or slice) of every modality, moved to ``device``."""
    return {key: value[index].to(device) for key, value in inputs.items()}


def _logits(model: nn.Module, batch: Mapping[str, torch.Tensor], num_classes: int) -> torch.Tensor:
    """Run ``model`` and check that it returns logits of shape (B, num_classes)."""
    out = model(batch)
    size = next(iter(batch.values())).shape[0]
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (size, num_classes):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"model must return logits of shape ({size}, {num_classes}), got {shape}")
    return out


@torch.inference_mode()  # no autograd state at all: validation every epoch is a large share of a small trial
def _predict(
    model: nn.Module, inputs: Mapping[str, torch.Tensor], num_classes: int, batch_size: int, device: torch.device
) -> NDArray[np.int64]:
    """Argmax class for every row of ``inputs``, in eval mode."""
    model.eval()
    n = next(iter(inputs.values())).shape[0]
    preds = [
        _logits(model, _batch(inputs, slice(i, i + batch_size), device), num_classes).argmax(1).cpu()
        for i in range(0, n, batch_size)
    ]
    return torch.cat(preds).numpy().astype(np.int64)


def _split_tensors(train: Split, val: Split, test: Split, num_classes: int) -> list[tuple[dict, torch.Tensor]]:
    """The three splits as tensors, checked: the same modalities in each."""
    out = [_to_tensors(split, name, num_classes) for name, split in (("train", train), ("val", val), ("test", test))]
    for name, (split_x, _) in zip(("val", "test"), out[1:]):
        if split_x.keys() != out[0][0].keys():
            raise ValueError(f"{name} modalities {sorted(split_x)} differ from train modalities {sorted(out[0][0])}")
    return out


def train_classifier(
    model: nn.Module,
    train: Split,
    val: Split,
    test: Split,
    num_classes: int,
    cfg: FinetuneConfig,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> FinetuneResult:
    """Train ``model`` with class-weighted cross-entropy and early stopping on validation Macro F1.

    Args:
        model: maps a dict of float32 tensors (modality name -> batch, the keys of the splits' input dicts) to
            logits (B, num_classes). Parameters with ``requires_grad=False`` are not optimised (frozen). Buffers
            (e.g. batch-norm statistics) of frozen modules still update in train mode unless the model keeps those
            modules in eval mode itself.
        train: training split, typically already reduced with :func:`sample_label_fraction`; the class weights
            come from its labels.
        val: validation split for early stopping.
        test: test split, evaluated once with the best-validation weights.
        num_classes: number of classes C.
        cfg: hyper-parameters; ``cfg.seed`` seeds torch (dropout etc.) and the batch shuffling. Seed the model's
            initialisation before constructing it.
        on_epoch: called after every epoch with ``{"epoch", "train_loss", "val_macro_f1", "best_val_macro_f1",
            "best_epoch"}`` (the hook for reporting to Ray Tune).

    Returns:
        A :class:`FinetuneResult`; ``model`` is left on ``cfg.device`` with the best-validation weights.
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    (train_x, train_y), (val_x, val_y), (test_x, test_y) = _split_tensors(train, val, test, num_classes)

    torch.manual_seed(cfg.seed)
    shuffle = torch.Generator().manual_seed(cfg.seed)
    device = torch.device(cfg.device)
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters")
    optimizer = adamw(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    weight = torch.as_tensor(class_weights(train_y.numpy(), num_classes), dtype=torch.float32, device=device)
    loss_fn = nn.CrossEntropyLoss(weight=weight)
    val_true = val_y.numpy()

    stopper = EarlyStopping(cfg.patience)
    best_state: dict[str, torch.Tensor] = {}
    best_epoch = 0
    history: list[dict[str, float]] = []
    n_train = train_y.shape[0]
    for epoch in range(1, cfg.max_epochs + 1):
        model.train()
        total_loss = 0.0
        for index in torch.randperm(n_train, generator=shuffle).split(cfg.batch_size):
            logits = _logits(model, _batch(train_x, index, device), num_classes)
            loss = loss_fn(logits, train_y[index].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total_loss += float(loss.detach()) * index.numel()
        val_f1 = macro_f1(val_true, _predict(model, val_x, num_classes, cfg.batch_size, device))
        stop = stopper.step(val_f1, epoch)
        if stopper.best_epoch == epoch:  # always true in epoch 1: any F1 beats the initial -inf
            best_epoch = epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        metrics: dict[str, float] = {
            "epoch": epoch,
            "train_loss": total_loss / n_train,
            "val_macro_f1": val_f1,
            "best_val_macro_f1": stopper.best_score,
            "best_epoch": best_epoch,
        }
        history.append(metrics)
        if on_epoch is not None:
            on_epoch(dict(metrics))
        if stop:
            break

    model.load_state_dict(best_state)
    test_pred = _predict(model, test_x, num_classes, cfg.batch_size, device)
    return FinetuneResult(
        best_epoch=best_epoch,
        epochs_run=len(history),
        val_macro_f1=stopper.best_score,
        test_macro_f1=macro_f1(test_y.numpy(), test_pred),
        test_predictions=test_pred,
        history=history,
    )
