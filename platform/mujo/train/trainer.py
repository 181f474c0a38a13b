"""The pretraining trainer without Ray: model, optimiser, LR schedule, loss, RNG streams, history and the cadence.

:class:`Trainer` owns everything one training process needs and nothing of how it is run:
:func:`mujo.train.pretrain.train_loop` only adapts Ray Train to it (dataset shards, ``ray.train.report``, checkpoints
to and from Ray's storage, which rank writes what). The same object runs in a unit test on a tiny model, so the step,
the cadence and the state round trip are tested without a cluster.

- The step: AdamW (no decay on biases and the temperature), linear warm-up + cosine schedule, gradient clipping, the
  temperature clamped to at most 100 after each step; DDP through a ``wrap`` function (the Ray side passes
  ``prepare_model``); with ``pretrain.grad_cache_chunks`` the step embeds in chunks (gradient cache) through the
  unwrapped model and averages the gradients over ranks once; bf16 autocast on GPU (``pretrain.amp``).
- The loss: :func:`build_loss` (the one place the config becomes a :class:`~mujo.losses.MuJoLoss`); it gathers
  features across ranks, so the negatives of every pair are the global batch.
- The cadence: :class:`mujo.train.schedule.Cadence` (the only copy; the search counts its reports from it):
  :meth:`Trainer.validate_now` at epoch ends, :meth:`Trainer.report_now`, :meth:`Trainer.checkpoint_now`.
- RNG streams: every rank seeds its own torch stream (``seed + 1000·rank``) after the identical initial weights, so
  dropout differs between ranks and is reproducible. :meth:`Trainer.state_dict` (a collective when ``world`` > 1)
  keeps every rank's torch stream plus numpy's and Python's, so a run resumed from a checkpoint continues exactly as
  the uninterrupted run would have on the same batches. A checkpoint without per-rank streams (older, or taken with
  another world size) reseeds each rank with ``seed + 1000·rank + step``.
- The state (:meth:`Trainer.state_dict`) is plain tensors, numbers, strings, lists and dicts: it loads with
  ``torch.load(weights_only=True)`` (:func:`load_state`), so whoever can write a run's storage cannot run code on
  the workers.
- History: every step's metrics (loss per pair, temperature, learning rate, samples/s; validation at epoch ends);
  a report carries means over the last ``report_every_steps`` steps.
"""

from __future__ import annotations

import logging
import math
import random
import time
from typing import Any, Callable, Iterable

import numpy as np
import torch

from mujo.config import MainConfig
from mujo.data.realism import SensorRealism
from mujo.losses import MuJoLoss, PeakMemory, clamp_logit_scale_, grad_cache_step
from mujo.evaluate.metrics import fewshot_macro_f1, retrieval_recall_at_k
from mujo.models.mujo import MuJoModel, build_model
from mujo.optim import adamw
from mujo.schema import FS, MASK_COLUMNS, TENSOR_MODALITY_COLUMN
from mujo.train.gpu import gpu_metrics
from mujo.train.schedule import Cadence

log = logging.getLogger(__name__)
RANK_SEED_STRIDE = 1000  # rank r's torch stream starts at seed + 1000·r


def build_loss(cfg: MainConfig) -> MuJoLoss:
    """The pretraining loss of ``cfg`` (``loss`` section over ``model.modalities``)."""
    lc = cfg.loss
    return MuJoLoss(cfg.model.modalities, form=lc.form, pair_weights=lc.pair_weights, impl=lc.loss_impl,
                    ring=lc.use_ring, tile_size=lc.tile_size)


def model_inputs(batch: dict[str, torch.Tensor], modalities) -> tuple[dict, dict]:
    """Shard columns -> (inputs by modality, presence masks by modality)."""
    inputs = {m: batch[TENSOR_MODALITY_COLUMN[m]] for m in modalities}
    masks = {m: batch[MASK_COLUMNS[m]].bool() for m in modalities}
    return inputs, masks


def lr_lambda(warmup: int, total: int):
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(warmup, 1)
        progress = (step - warmup) / max(total - warmup, 1)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
    return f


def _rng_state() -> dict:
    """Every RNG state of this process as tensors and plain lists/numbers, so a checkpoint loads with
    ``weights_only=True``."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {"torch": torch.get_rng_state(),
            "numpy": {"name": str(name), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
            "python": {"version": int(version), "internal": list(internal), "gauss_next": gauss_next}}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))


def load_state(path: str, device) -> dict:
    """A checkpoint's training state, read without unpickling code (``weights_only=True``): whoever can write the
    run's storage must not be able to run code on the workers. A file that is not plain tensors and containers is
    refused with the path and the fix."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # UnpicklingError for a tampered file; anything else is as bad: never half-load
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise ValueError(f"checkpoint state {path} is not a plain weights file and was not loaded "
                         f"({type(exc).__name__}: {first}); it was written by something other than "
                         "this platform or tampered with: delete that checkpoint folder (or start a new run_name)"
                         ) from None


@torch.no_grad()
def validation_metrics(model: MuJoModel, batches, device, modalities, fewshot_shots: int = 0) -> dict[str, float]:
    """The epoch-end validation metrics (names: :func:`mujo.evaluate.metrics.validation_metric_names`): recall@1/5 for every
    ordered pair of modalities over the samples that have both, and, when ``fewshot_shots`` > 0 and the batches
    carry ``class_id``, the few-shot Macro F1 of each sensor modality's embeddings (nearest class mean, fixed draws)."""
    was_training = model.training
    model.eval()
    embs: dict[str, list] = {m: [] for m in modalities}
    masks: dict[str, list] = {m: [] for m in modalities}
    classes: list = []
    for batch in batches:
        inputs, mask = model_inputs(batch, modalities)
        out = model({m: x.to(device) for m, x in inputs.items()})
        for m in modalities:
            embs[m].append(out[m].float().cpu())
            masks[m].append(mask[m].cpu())
        if "class_id" in batch:
            classes.append(batch["class_id"].cpu())
    model.train(was_training)
    metrics: dict[str, float] = {}
    if not embs[modalities[0]]:
        return metrics
    e = {m: torch.cat(v).numpy() for m, v in embs.items()}
    k = {m: torch.cat(v).numpy() for m, v in masks.items()}
    for a in modalities:
        for b in modalities:
            if a == b:
                continue
            both = k[a] & k[b]
            if both.sum() < 2:
                continue
            rec = retrieval_recall_at_k(e[a][both], e[b][both], ks=(1, 5))
            metrics[f"val/R@1/{a}->{b}"] = rec[1]
            metrics[f"val/R@5/{a}->{b}"] = rec[5]
    if metrics:
        metrics["val/R@1/mean"] = float(np.mean([v for key, v in metrics.items() if "/R@1/" in key]))
    if fewshot_shots > 0 and classes:
        y = torch.cat(classes).numpy()
        for m in modalities:
            if m == "text":  # the text embedding is the label's own text: no test of the representation
                continue
            f1 = fewshot_macro_f1(e[m][k[m]], y[k[m]], shots=fewshot_shots)
            if f1 is not None:
                metrics[f"val/fewshot_f1/{m}"] = f1
        scores = [v for key, v in metrics.items() if key.startswith("val/fewshot_f1/")]
        if scores:
            metrics["val/fewshot_f1/mean"] = float(np.mean(scores))
        else:
            log.warning("val/fewshot_f1 not computed: fewer than two classes have more than %d validation windows "
                        "of a sensor modality (%d windows); lower pretrain.fewshot_shots", fewshot_shots, len(y))
    return metrics


def average_gradients(model: torch.nn.Module, world: int) -> None:
    """All-reduce-mean every gradient (what DDP does), for steps that bypass the DDP wrapper."""
    if world <= 1:
        return
    import torch.distributed as dist

    for p in model.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= world


def mean_over_ranks(loss: torch.Tensor, per_pair: dict[str, torch.Tensor], world: int):
    """The logged values: each rank's loss is its share of the global loss (scaled), so log the mean over ranks."""
    if world <= 1:
        return loss, per_pair
    import torch.distributed as dist

    keys = sorted(per_pair)
    values = torch.stack([loss.detach().float()] + [per_pair[k].detach().float() for k in keys])
    dist.all_reduce(values)
    values /= world
    return values[0], dict(zip(keys, values[1:]))


def train_step(model: torch.nn.Module, raw_model: MuJoModel, loss_fn: MuJoLoss, optimizer, scheduler,
               batch: dict[str, torch.Tensor], cfg: MainConfig, world: int = 1):
    """One optimisation step on one (local) batch; returns (loss, per-pair losses), averaged over ranks.

    ``model`` is what runs the forward (the DDP wrapper in a distributed run), ``raw_model`` the module itself. With
    ``pretrain.grad_cache_chunks`` the step embeds in chunks (gradient cache) through ``raw_model`` and averages the
    gradients over ranks once, instead of letting DDP synchronise after every chunk.
    """
    pc = cfg.pretrain
    device = next(raw_model.parameters()).device
    amp = pc.amp and device.type == "cuda"
    inputs, masks = model_inputs(batch, raw_model.modalities)
    optimizer.zero_grad(set_to_none=True)

    def embed(chunk, net=model):
        chunk_inputs, chunk_masks = chunk
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
            out = net(chunk_inputs)
        return {m: v.float() for m, v in out.items()}, chunk_masks

    def loss_of(features, feature_masks):
        return loss_fn(features, feature_masks, raw_model.logit_scale)

    if pc.grad_cache_chunks:
        n = len(next(iter(inputs.values())))
        chunks = [({m: x[idx] for m, x in inputs.items()}, {m: k[idx] for m, k in masks.items()})
                  for idx in np.array_split(np.arange(n), pc.grad_cache_chunks) if len(idx)]
        outputs: list = []

        def cached_loss(features, feature_masks):
            outputs.append(loss_of(features, feature_masks))
            return outputs[-1]

        loss_value = grad_cache_step(lambda chunk: embed(chunk, raw_model), chunks, cached_loss)
        per_pair = outputs[-1].per_pair
        average_gradients(raw_model, world)
    else:
        out = loss_of(*embed((inputs, masks)))
        out.loss.backward()
        loss_value, per_pair = out.loss.detach(), out.per_pair
    loss_value, per_pair = mean_over_ranks(loss_value, per_pair, world)
    if pc.grad_clip:
        torch.nn.utils.clip_grad_norm_(raw_model.parameters(), pc.grad_clip)
    optimizer.step()
    scheduler.step()
    clamp_logit_scale_(raw_model.log_logit_scale)
    return loss_value, per_pair


def _gather_torch_rng(world: int, device: torch.device) -> list[torch.Tensor]:
    """Every rank's torch RNG state (a collective: every rank calls it at the same step)."""
    state = torch.get_rng_state()
    if world <= 1:
        return [state]
    import torch.distributed as dist

    # nccl moves only device tensors; the state is a fixed-size byte tensor, the same size on every rank
    on = state.to(device) if device.type == "cuda" else state
    out = [torch.empty_like(on) for _ in range(world)]
    dist.all_gather(out, on)
    return [t.cpu() for t in out]


class Trainer:
    """One training process's pretraining state and its step; Ray-free (see the module docstring).

    ``stats`` are the dataset's input statistics (the manifest's ``stats``), ``train_rows`` the train split's windows
    (they fix the schedule). ``wrap`` turns the model into what runs the forward in a distributed run (DDP); it is
    applied only when ``world`` > 1.
    """

    def __init__(self, cfg: MainConfig, stats: dict | None, train_rows: int, *, device: torch.device | str = "cpu",
                 rank: int = 0, world: int = 1, wrap: Callable[[torch.nn.Module], torch.nn.Module] | None = None):
        pc = cfg.pretrain
        self.cfg = cfg
        self.device = torch.device(device)
        self.rank, self.world = rank, world
        self.cadence = Cadence.of(pc, train_rows)
        self.model: MuJoModel = build_model(cfg.model, stats, seed=pc.seed).to(self.device)  # the same on every rank
        self.net = wrap(self.model) if wrap is not None and world > 1 else self.model
        self.optimizer = adamw(self.model.param_groups(pc.weight_decay), lr=pc.lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer,
                                                           lr_lambda(pc.warmup_steps, self.cadence.total_steps))
        self.loss_fn = build_loss(cfg)
        # issue 17: sensor realism, drawn per (rank, step) on every training batch; identity when all switches off
        self.realism = SensorRealism(pc.realism, fs=FS, seed=pc.seed)
        self.global_step = 0
        self.history: list[dict[str, Any]] = []
        self.resumed_from: list[int] = []
        torch.manual_seed(self._rank_seed(0))  # per-rank dropout streams
        self._clock: float | None = None

    def _rank_seed(self, step: int) -> int:
        return self.cfg.pretrain.seed + RANK_SEED_STRIDE * self.rank + step

    # -- where the run stands ------------------------------------------------------------------------------------

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.model.modalities)

    @property
    def done(self) -> bool:
        return self.global_step >= self.cadence.total_steps

    @property
    def position(self) -> tuple[int, int]:
        """(epoch, batches of it already consumed): where the next step's batch comes from."""
        return self.cadence.position(self.global_step)

    def validate_now(self) -> bool:
        """After the last step of an epoch (the Ray side validates on rank 0 only)."""
        return self.global_step > 0 and self.cadence.epoch_end(self.global_step)

    def checkpoint_now(self) -> bool:
        return self.global_step > 0 and self.cadence.checkpoint(self.global_step)

    def report_now(self) -> bool:
        return self.global_step > 0 and self.cadence.report(self.global_step)

    # -- training ------------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Training mode, and the clock of samples/s starts (it counts data loading between steps)."""
        self.net.train()
        self._clock = time.perf_counter()

    def step(self, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        """One optimisation step on this rank's batch; appends to the history and returns the step's metrics."""
        if self._clock is None:
            self.start()
        epoch = self.position[0]
        batch = self.realism(batch, rank=self.rank, step=self.global_step)  # issue 17: sensor realism (no-op when off)
        scale = float(self.model.logit_scale.detach())
        with PeakMemory(self.device) as peak:  # the step's peak above its start (memory/step_peak_mib)
            loss, per_pair = train_step(self.net, self.model, self.loss_fn, self.optimizer, self.scheduler, batch,
                                        self.cfg, self.world)
        self.global_step += 1
        now = time.perf_counter()
        dt, self._clock = now - self._clock, now
        metrics = {"step": self.global_step, "epoch": epoch, "loss": float(loss), "temperature": 1.0 / scale,
                   "lr": self.scheduler.get_last_lr()[0],
                   "samples_per_s": self.cfg.pretrain.batch_size * max(self.world, 1) / max(dt, 1e-9),
                   **{f"loss/{k}": float(v) for k, v in per_pair.items()}, **gpu_metrics(self.device),
                   f"loss_impl/{self.loss_fn.impl_name.replace('+', '_')}": 1.0, **peak.metrics()}
        self.history.append({k: v for k, v in metrics.items() if not k.startswith(("gpu/", "memory/"))})
        return metrics

    def validate(self, batches: Iterable[dict[str, torch.Tensor]]) -> dict[str, float]:
        """The validation metrics on ``batches``, also recorded in the history's last step."""
        metrics = validation_metrics(self.model, batches, self.device, self.modalities, self.cfg.pretrain.fewshot_shots)
        if self.history:
            self.history[-1].update(metrics)
        return metrics

    def report_summary(self) -> dict[str, float]:
        """What a report adds to the step's metrics: means over the last ``report_every_steps`` steps."""
        window = self.history[-min(self.cfg.pretrain.report_every_steps, len(self.history)):]
        return {"loss_mean": float(np.mean([h["loss"] for h in window])),
                "samples_per_s_mean": float(np.mean([h["samples_per_s"] for h in window]))}

    # -- state ---------------------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The training state a checkpoint keeps. A collective when ``world`` > 1 (every rank's torch RNG stream is
        gathered): call it on every rank at the same step; one rank writes it."""
        rng = _rng_state()
        rng["torch_by_rank"] = _gather_torch_rng(self.world, self.device)
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "step": self.global_step, "rng": rng,
                "history": list(self.history), "resumed_from": list(self.resumed_from),
                "config": self.cfg.model_dump(mode="json")}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint's state (as :func:`load_state` reads it); records the step resumed from."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.global_step = int(state["step"])
        self.history = list(state.get("history", []))
        self.resumed_from = [int(s) for s in state.get("resumed_from", [])] + [self.global_step]
        rng = state["rng"]
        _set_rng_state(rng)
        by_rank = rng.get("torch_by_rank")
        if by_rank is not None and len(by_rank) == self.world:
            # a copy of its own: a row of a stacked tensor (non-zero storage offset) crashes set_rng_state
            torch.set_rng_state(by_rank[self.rank].cpu().clone())
        else:  # no stream per rank (another world size, or an older checkpoint): a fresh one per (rank, step)
            torch.manual_seed(self._rank_seed(self.global_step))
        self._clock = None


__all__ = ["Trainer", "build_loss", "lr_lambda", "load_state", "model_inputs", "train_step", "validation_metrics"]
