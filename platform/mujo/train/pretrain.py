"""Contrastive pretraining on Ray Train V2: a TorchTrainer whose training function only trains.

- DDP through ``prepare_model``: gloo on CPU, NCCL on GPU (``pretrain.use_gpu``), bf16 autocast (``pretrain.amp``)
  on GPU — the same code either way.
- AdamW (no decay on biases and the temperature), linear warm-up + cosine schedule, gradient clipping, the
  temperature clamped to at most 100 after each step.
- Data streamed from Ray Data shards (``get_dataset_shard``, local shuffle buffer); the loss gathers features
  across ranks (``mujo.losses``), so the negatives of every pair are the global batch.
- Checkpoints (model, optimizer, scheduler, step, RNG states, config) every ``checkpoint_every_steps`` to the run's
  storage; a run started again with the same name resumes from the latest one, and ``FailureConfig`` restarts a
  failed worker group from it. Every checkpoint is also a loadable model artefact (``load_pretrained``).
- Metrics every step (loss per pair, temperature, learning rate, samples/s, GPU utilisation/memory where a GPU
  exists) go to the run's history (in every checkpoint and in the final artefact's ``history.json``); they reach
  Ray every ``report_every_steps`` steps, at epoch ends and checkpoints (``ray.train.report`` is a cross-rank
  barrier costing 1-2 s on small CPU nodes), with means over the interval. Every epoch: cross-modal retrieval
  recall@1/5 on validation for every ordered pair of modalities and the few-shot Macro F1 of each sensor
  modality's embeddings (``pretrain.fewshot_shots`` labelled windows per class, nearest class mean; the only use
  of labels in pretraining).
- TensorBoard: rank 0 writes every step's metrics (and the validation recalls, and GPU utilisation/memory where
  a GPU exists) as scalars to ``<run_dir>/train/<name>/tensorboard/``, next to the run's checkpoints, copied there
  at every checkpoint and at the end (``mujo.train.tensorboard``).
"""

from __future__ import annotations

import logging
import math
import os
import random
import tempfile
import time
from itertools import islice
from typing import Any

import numpy as np
import torch

from mujo import storage
from mujo.config import ConfigError, MainConfig
from mujo.losses import MuJoLoss, clamp_logit_scale_, grad_cache_step
from mujo.metrics import fewshot_macro_f1, retrieval_recall_at_k
from mujo.models.mujo import MuJoModel, build_model, save_pretrained
from mujo.schema import MASK_COLUMNS, TENSOR_MODALITY_COLUMN
from mujo.train import schedule
from mujo.train.gpu import gpu_metrics
from mujo.train.tensorboard import TensorBoardLog

log = logging.getLogger(__name__)
STATE_FILE = "state.pt"


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
    """Every RNG state as tensors and plain lists/numbers, so a checkpoint loads with ``weights_only=True``."""
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
        raise ValueError(f"checkpoint state {path} is not a plain weights file and was not loaded ({type(exc).__name__}:"
                         f" {str(exc).splitlines()[0] if str(exc) else ''}); it was written by something other than "
                         "this platform or tampered with: delete that checkpoint folder (or start a new run_name)"
                         ) from None


@torch.no_grad()
def validation_metrics(model: MuJoModel, batches, device, modalities, fewshot_shots: int = 0) -> dict[str, float]:
    """The epoch-end validation metrics (names: :func:`mujo.metrics.validation_metric_names`): recall@1/5 for every
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


def train_loop(config: dict[str, Any]) -> None:
    """The Ray Train training function (runs on every worker)."""
    import ray.train
    import ray.train.torch

    cfg = MainConfig.model_validate(config["cfg"])
    pc, mc = cfg.pretrain, cfg.model
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device() if pc.use_gpu else torch.device("cpu")
    torch.manual_seed(pc.seed)  # identical initial weights on every rank
    model = build_model(mc, config["stats"]).to(device)
    raw_model = model
    if world > 1:
        model = ray.train.torch.prepare_model(model, parallel_strategy="ddp")
    optimizer = torch.optim.AdamW(raw_model.param_groups(pc.weight_decay), lr=pc.lr)
    steps_per_epoch = schedule.steps_per_epoch(pc, config["train_rows"])
    total_steps = steps_per_epoch * pc.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(pc.warmup_steps, total_steps))
    loss_fn = MuJoLoss(mc.modalities, form=cfg.loss.form, pair_weights=cfg.loss.pair_weights,
                       local_loss=cfg.loss.local_loss)
    step = 0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d:
            state = load_state(os.path.join(d, STATE_FILE), device)
        raw_model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step = state["step"]
        _set_rng_state(state["rng"])
        log.info("rank %d resumed from step %d", rank, step)
    resumed_from: list[int] = (list(state.get("resumed_from", [])) + [step]) if checkpoint else []
    torch.manual_seed(pc.seed + 1000 * rank + step)  # per-rank dropout streams, reproducible across restarts
    shard = ray.train.get_dataset_shard("train")
    modalities = tuple(mc.modalities)

    def save_checkpoint(metrics: dict) -> None:
        if rank != 0:
            ray.train.report(metrics, checkpoint=None)
            return
        with tempfile.TemporaryDirectory() as d:
            torch.save({"model": raw_model.state_dict(), "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(), "step": step, "rng": _rng_state(),
                        "history": history, "resumed_from": resumed_from, "config": config["cfg"]},
                       os.path.join(d, STATE_FILE))
            save_pretrained(raw_model, d, extra={"step": step, "source": "pretrain checkpoint"})
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))

    history: list[dict] = list(state["history"]) if checkpoint else []
    tb = TensorBoardLog(config["tensorboard"]) if rank == 0 and config.get("tensorboard") else None
    val_batches: list | None = None
    model.train()
    last_step_end = time.perf_counter()
    while step < total_steps:
        epoch, offset = divmod(step, steps_per_epoch)
        batches = shard.iter_torch_batches(batch_size=pc.batch_size, drop_last=True, device=device,
                                           local_shuffle_buffer_size=pc.shuffle_buffer or None,
                                           local_shuffle_seed=pc.seed + epoch)
        seen = 0
        for i, batch in enumerate(islice(batches, steps_per_epoch)):
            seen += 1
            if i < offset:  # resumed mid-epoch: this epoch's first batches were consumed before the restart
                continue
            scale = float(raw_model.logit_scale.detach())
            loss_value, per_pair = train_step(model, raw_model, loss_fn, optimizer, scheduler, batch, cfg, world)
            step += 1
            now = time.perf_counter()
            dt, last_step_end = now - last_step_end, now  # wall clock per step, data loading included
            metrics = {"step": step, "epoch": epoch, "loss": float(loss_value),
                       "temperature": 1.0 / scale, "lr": scheduler.get_last_lr()[0],
                       "samples_per_s": pc.batch_size * max(world, 1) / dt,
                       **{f"loss/{k}": float(v) for k, v in per_pair.items()}, **gpu_metrics(device)}
            history.append({k: v for k, v in metrics.items() if not k.startswith("gpu/")})
            end_of_epoch = step % steps_per_epoch == 0
            if end_of_epoch and rank == 0:
                if val_batches is None:  # the validation set is small: read it once, keep it in memory
                    val_batches = list(ray.train.get_dataset_shard("val").iter_torch_batches(batch_size=256))
                metrics.update(validation_metrics(raw_model, val_batches, device, modalities, pc.fewshot_shots))
                history[-1].update({k: v for k, v in metrics.items() if k.startswith("val/")})
            if tb is not None:
                tb.scalars(metrics, step)
            checkpoint_now = step % pc.checkpoint_every_steps == 0 or step == total_steps
            if checkpoint_now or end_of_epoch or step % pc.report_every_steps == 0:
                window = history[-min(pc.report_every_steps, len(history)):]
                metrics["loss_mean"] = float(np.mean([h["loss"] for h in window]))
                metrics["samples_per_s_mean"] = float(np.mean([h["samples_per_s"] for h in window]))
                if checkpoint_now:
                    if tb is not None:
                        tb.sync()
                    save_checkpoint(metrics)
                else:
                    ray.train.report(metrics, checkpoint=None)
        if seen <= offset:  # never loop forever on a shard that yields no (new) batch
            raise RuntimeError(
                f"rank {rank}: the training shard gave {seen} full batch(es) of {pc.batch_size} in epoch {epoch}, "
                f"expected {steps_per_epoch}: the train split ({config['train_rows']} windows) is too small for "
                f"{world} worker(s) x batch_size {pc.batch_size}; lower pretrain.batch_size")
    if rank == 0:
        save_pretrained(raw_model, config["artefact"], extra={"step": step, "source": "pretrain final",
                                                              "stats": config["stats"],
                                                              "resumed_from_steps": resumed_from})
        storage.write_json(storage.join(config["artefact"], "history.json"), history)
    if tb is not None:
        tb.close()


def check_fits(cfg: MainConfig, manifest: dict) -> None:
    """Refuse, before any Ray work, a run that cannot make a step (:func:`mujo.train.schedule.steps_per_epoch`) or
    that lacks a validation split."""
    if "val" not in manifest["shards"]:
        raise ConfigError(f"dataset {manifest['dataset']} has no 'val' split; pretraining validates on it")
    schedule.steps_per_epoch(cfg.pretrain, manifest["rows"].get("train", 0))


def pretrain(cfg: MainConfig, manifest: dict, name: str | None = None, callbacks: list | None = None,
             artefact: str | None = None):
    """Fit the TorchTrainer on a preprocessed dataset; returns (ray Result, artefact path).

    ``name`` is the Ray Train run name (a run started again with the same name resumes); the final model artefact
    goes to ``artefact`` (default ``<run_dir>/pretrain/model``). ``callbacks`` go to the trainer's RunConfig (e.g.
    Tune's ``TuneReportCallback`` when a Tune trial runs this)."""
    import ray.data
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    pc = cfg.pretrain
    check_fits(cfg, manifest)
    columns = [TENSOR_MODALITY_COLUMN[m] for m in cfg.model.modalities] + \
              [MASK_COLUMNS[m] for m in cfg.model.modalities]
    fs, _ = storage.filesystem(manifest["shards"]["train"][0])
    # validation also reads the class of each window (few-shot Macro F1); training never sees labels
    datasets = {split: ray.data.read_parquet([storage.filesystem(p)[1] for p in manifest["shards"][split]],
                                             filesystem=fs, shuffle="files" if split == "train" else None)
                .select_columns(columns + (["class_id"] if split == "val" and pc.fewshot_shots else []))
                for split in ("train", "val") if split in manifest["shards"]}
    run_dir = cfg.run_dir
    name = name or f"{cfg.run_name}-pretrain"
    artefact = artefact or storage.join(run_dir, "pretrain", "model")
    train_root = storage.join(run_dir, "train")
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={"cfg": cfg.model_dump(mode="json"), "stats": manifest["stats"],
                           "train_rows": manifest["rows"]["train"], "artefact": artefact,
                           "tensorboard": storage.join(train_root, name, "tensorboard")},
        scaling_config=ray.train.ScalingConfig(num_workers=pc.num_workers, use_gpu=pc.use_gpu,
                                               resources_per_worker={"CPU": pc.cpus_per_worker},
                                               placement_strategy=pc.placement_strategy),
        torch_config=TorchConfig(backend="nccl" if pc.use_gpu else "gloo", timeout_s=600),
        datasets=datasets,
        dataset_config=ray.train.DataConfig(datasets_to_split=["train"]),
        run_config=ray.train.RunConfig(
            name=name, **storage.ray_storage(train_root),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=pc.num_to_keep),
            failure_config=ray.train.FailureConfig(max_failures=pc.max_failures),
            callbacks=callbacks),
    )
    result = trainer.fit()
    return result, artefact


__all__ = ["pretrain", "train_loop", "validation_metrics", "lr_lambda"]
