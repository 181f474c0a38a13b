"""The MuJo contrastive loss (:mod:`mujo.losses.infonce`), its tiled / ring-exchanged form (:mod:`mujo.losses.tiled`)
and the peak-memory probe that reports what a step cost (:mod:`mujo.losses.memory`); everything is re-exported here,
so ``from mujo.losses import MuJoLoss`` keeps working."""

from mujo.losses.infonce import (
    FORMS,
    IMPLS,
    MODALITIES,
    LossOutput,
    MuJoLoss,
    clamp_logit_scale_,
    gather_features,
    grad_cache_step,
    modality_pairs,
    pair_key,
)
from mujo.losses.memory import PeakMemory
from mujo.losses.tiled import DEFAULT_TILE, default_tile_size

__all__ = [
    "DEFAULT_TILE",
    "FORMS",
    "IMPLS",
    "MODALITIES",
    "LossOutput",
    "MuJoLoss",
    "PeakMemory",
    "clamp_logit_scale_",
    "default_tile_size",
    "gather_features",
    "grad_cache_step",
    "modality_pairs",
    "pair_key",
]
