"""The optimiser every training loop of the platform uses: AdamW in its fused form where torch has one.

Pretraining (:mod:`mujo.train.trainer`), the downstream classifiers (:func:`mujo.evaluate.finetune.train_classifier`)
and the evaluation engine (:mod:`mujo.evaluate.engine`) all build their AdamW here, so a seed trained alone and in a
group take the same update arithmetic.

``fused=True`` runs the whole update (moments, bias correction, decoupled weight decay, parameter step) as one kernel
over all parameters; torch has it for floating-point tensors on CPU and CUDA. The default ``foreach`` form runs a
chain of multi-tensor ops with intermediates, which on CPU costs as much as a small model's forward and backward pass
(figures in benchmarks/README.md, "Evaluation engine"). The two forms compute the same update up to float rounding
(tests/test_optim.py). Where torch refuses the fused form when the optimiser is built (a device without fused
kernels), the default form is used.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

__all__ = ["adamw"]


def adamw(params: Iterable[torch.Tensor] | Iterable[dict[str, Any]], *, lr: float, weight_decay: float = 0.01,
          fused: bool | None = True) -> torch.optim.AdamW:
    """``torch.optim.AdamW`` over ``params`` (tensors or param groups), fused when torch supports it for them.

    ``fused=None`` or ``False`` gives torch's default form (for a comparison)."""
    params = list(params)
    if fused:
        try:
            return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
        except RuntimeError:  # "`fused=True` requires all the params to be floating point Tensors of supported devices"
            pass
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=None if fused is None else False)
