"""The downstream classifier: pretrained (or fresh) encoder(s) + projection(s) of the input modalities, their
joint-space embeddings concatenated, and a 2-layer head.

Settings (the paper's three): ``baseline`` — the same architecture from random initialisation, all trained;
``frozen`` — pretrained encoders/projections fixed (and kept in eval mode), only the head trains;
``finetuned`` — pretrained weights, everything trains.
"""

from __future__ import annotations

import copy
from typing import Literal, Mapping, Sequence

import torch
from torch import nn

from mujo.models.mujo import MuJoModel, build_model

Setting = Literal["baseline", "frozen", "finetuned"]


class Classifier(nn.Module):
    def __init__(self, backbone: MuJoModel, inputs: Sequence[str], num_classes: int, hidden: int = 256,
                 dropout: float = 0.1, frozen: bool = False) -> None:
        super().__init__()
        missing = [m for m in inputs if m not in backbone.modalities]
        if missing:
            raise ValueError(f"the pretrained model has no encoder for {missing} (it has {list(backbone.modalities)})")
        self.inputs = tuple(inputs)
        self.backbone = backbone
        self.frozen = frozen
        for p in backbone.parameters():
            p.requires_grad = not frozen
        backbone.log_logit_scale.requires_grad = False  # unused downstream
        d = backbone.cfg.embed_dim * len(self.inputs)
        self.head = nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, num_classes))

    def train(self, mode: bool = True) -> "Classifier":
        super().train(mode)
        if self.frozen:
            self.backbone.eval()
        return self

    def features(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            return torch.cat([self.backbone.embed(m, batch[m]) for m in self.inputs], dim=1)

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.head(self.features(batch))


def build_classifier(pretrained: MuJoModel, inputs: Sequence[str], num_classes: int, setting: Setting,
                     hidden: int = 256, seed: int = 0) -> Classifier:
    """A classifier for one of the three settings; ``pretrained`` is never modified."""
    torch.manual_seed(seed)
    if setting == "baseline":
        backbone = build_model(pretrained.cfg)
        backbone.load_state_dict({k: v for k, v in pretrained.state_dict().items() if k.startswith("norms.")},
                                 strict=False)  # same input normalisation, random weights
    elif setting in ("frozen", "finetuned"):
        backbone = copy.deepcopy(pretrained)
    else:
        raise ValueError(f"unknown setting {setting!r}; use baseline, frozen or finetuned")
    return Classifier(backbone, inputs, num_classes, hidden=hidden, frozen=setting == "frozen")
