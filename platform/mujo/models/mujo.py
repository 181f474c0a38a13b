"""The MuJo joint-embedding model and its factory.

One encoder and one projection per modality map into a shared ``embed_dim``-d space (1280 in the paper); the
outputs are L2-normalised so that dot products are cosine similarities. The temperature is a learnable log-scale
``log_logit_scale`` (initialised at log(1/τ)), clamped by the training loop, excluded from weight decay.

Inputs are physical units as stored in the shards (pose in metres, acc in m/s²); the model standardises them with
per-channel statistics of the pretraining train split, held as buffers, so a saved model carries its own input
normalisation and every downstream user applies exactly the same one.

A pretrained artefact is a folder: ``model.pt`` (state dict), ``model.json`` (the model config and the statistics'
shapes) — :func:`load_pretrained` rebuilds the model from the folder alone.
"""

from __future__ import annotations

import io
import math
from typing import Mapping

import numpy as np
import torch
from torch import nn

from mujo.config import ModelConfig
from mujo.models.encoders import AccEncoder, PoseEncoder, TextEncoder, VideoEncoder, projection
from mujo.schema import ACC_CHANNELS

ARTEFACT_WEIGHTS = "model.pt"
ARTEFACT_CONFIG = "model.json"
ARTEFACT_FORMAT = 1


class Standardize(nn.Module):
    """(x - mean) / std over the last dimension, with the statistics as buffers (saved with the model)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(channels))
        self.register_buffer("std", torch.ones(channels))

    def set(self, mean: np.ndarray, std: np.ndarray) -> None:
        self.mean.copy_(torch.as_tensor(np.asarray(mean), dtype=self.mean.dtype))
        self.std.copy_(torch.as_tensor(np.maximum(np.asarray(std), 1e-6), dtype=self.std.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def center_pose(pose: torch.Tensor) -> torch.Tensor:
    """Subtract the window's mean pelvis position (joint 0): keeps motion, drops where the subject stands."""
    return pose - pose[:, :, :1, :].mean(dim=1, keepdim=True)


class MuJoModel(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.modalities = tuple(cfg.modalities)
        builders = {
            "text": lambda: TextEncoder(cfg.text_dim, cfg.text_hidden, cfg.activation),
            "video": lambda: VideoEncoder(cfg.video_dim, cfg.video_hidden, cfg.activation),
            "pose": PoseEncoder,
            "acc": AccEncoder,
        }
        self.encoders = nn.ModuleDict({m: builders[m]() for m in self.modalities})
        self.projections = nn.ModuleDict({
            m: projection(self.encoders[m].out_dim, cfg.proj_hidden, cfg.embed_dim, cfg.proj_layers, cfg.activation,
                          cfg.dropout)
            for m in self.modalities
        })
        self.norms = nn.ModuleDict({m: Standardize(c) for m, c in
                                    (("acc", ACC_CHANNELS), ("pose", 3), ("video", cfg.video_dim))
                                    if m in self.modalities})
        self.log_logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / cfg.init_temperature)),
                                            requires_grad=cfg.learn_temperature)

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.log_logit_scale.exp()

    def set_input_stats(self, stats: Mapping[str, Mapping[str, list[float]]]) -> None:
        """Per-channel mean/std (from the pretraining train split) for acc, pose (after centring) and video."""
        for m, norm in self.norms.items():
            if m in stats:
                norm.set(stats[m]["mean"], stats[m]["std"])

    def embed(self, modality: str, x: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        if modality == "pose":
            x = center_pose(x)
        if modality in self.norms:
            x = self.norms[modality](x)
        z = self.projections[modality](self.encoders[modality](x))
        return nn.functional.normalize(z, dim=-1) if normalize else z

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Embeddings (L2-normalised) of every model modality present in ``inputs``."""
        return {m: self.embed(m, inputs[m]) for m in self.modalities if m in inputs}

    def param_groups(self, weight_decay: float) -> list[dict]:
        """AdamW groups: no weight decay on biases, norms' buffers are not parameters, nor on the temperature."""
        decay, no_decay = [], []
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            (no_decay if p.ndim < 2 or name == "log_logit_scale" else decay).append(p)
        return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_model(cfg: ModelConfig, stats: Mapping[str, Mapping[str, list[float]]] | None = None,
                seed: int | None = None) -> MuJoModel:
    """The model factory: a freshly initialised model (deterministic for a seed) with input statistics set."""
    if seed is not None:
        torch.manual_seed(seed)
    model = MuJoModel(cfg)
    if stats:
        model.set_input_stats(stats)
    return model


def save_pretrained(model: MuJoModel, path: str, extra: Mapping | None = None) -> None:
    """Write the self-describing artefact (weights + config + metadata) to a local folder or ``s3://`` prefix."""
    from mujo import storage

    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buf)
    storage.write_bytes(storage.join(path, ARTEFACT_WEIGHTS), buf.getvalue())
    from mujo.run import PretrainedMeta, write_contract

    meta = PretrainedMeta(format=ARTEFACT_FORMAT, model=model.cfg.model_dump(mode="json"), **(extra or {}))
    write_contract(storage.join(path, ARTEFACT_CONFIG), meta)


def load_pretrained(path: str, map_location: str = "cpu") -> MuJoModel:
    """Rebuild a model from an artefact folder written by :func:`save_pretrained` (or a pretraining checkpoint)."""
    from mujo import storage

    meta = artefact_metadata(path)
    model = MuJoModel(ModelConfig.model_validate(meta.model))
    state = torch.load(io.BytesIO(storage.read_bytes(storage.join(path, ARTEFACT_WEIGHTS))),
                       map_location=map_location, weights_only=True)
    model.load_state_dict(state)
    return model


def artefact_metadata(path: str):
    """The artefact's ``model.json`` as a validated :class:`mujo.run.PretrainedMeta` (an error naming the file when
    it is missing, malformed or of another format)."""
    from mujo import storage
    from mujo.run import PretrainedMeta, read_contract

    meta = read_contract(storage.join(path, ARTEFACT_CONFIG), PretrainedMeta)
    if meta.format != ARTEFACT_FORMAT:
        raise ValueError(f"{path}: artefact format {meta.format} is not {ARTEFACT_FORMAT}")
    return meta


__all__ = ["MuJoModel", "build_model", "save_pretrained", "load_pretrained", "artefact_metadata"]
