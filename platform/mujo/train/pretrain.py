"""Contrastive pretraining on Ray Train V2: a TorchTrainer whose training function only adapts Ray to the trainer.

:class:`mujo.train.trainer.Trainer` (Ray-free, unit-tested without a cluster) owns the model, the optimiser and LR
schedule, the loss, the RNG streams, the history and the cadence (when to validate, report, checkpoint). What is
left here is Ray's part:

- DDP through ``prepare_model`` (gloo on CPU, NCCL on GPU with ``pretrain.use_gpu``; bf16 autocast on GPU with
  ``pretrain.amp``) — the same code either way.
- Data streamed from Ray Data shards (``get_dataset_shard``, local shuffle buffer, seeded per epoch); a run resumed
  mid-epoch skips the batches of that epoch it had consumed. The validation split is read once, on rank 0.
- Text variety (issue 17): where the train shards carry caption alternatives (schema 1.1) and
  ``pretrain.caption_sampling`` is ``per_epoch``, each window's text embedding is one of its captions, drawn per
  (seed, epoch, window) by :func:`mujo.data.text.select_captions` before the step: the same draw whichever rank,
  shard or batch the window lands in, so the global batch stays one function of the data at any worker count.
  Validation reads the label text (``text_emb``).
- Reports: ``ray.train.report`` when the trainer says so (every ``report_every_steps`` steps, at epoch ends and
  checkpoints; it is a cross-rank barrier, so every rank calls it), with means over the interval; every step's
  metrics stay in the run's history (in every checkpoint and in the final artefact's ``history.json``).
- Checkpoints every ``checkpoint_every_steps`` to the run's storage (``<run>/train/<name>/``): the trainer's state
  (:data:`STATE_FILE`, read back with ``weights_only=True``) and a loadable model artefact (``load_pretrained``).
  A run started again with the same name resumes from the latest one, and ``FailureConfig`` restarts a failed
  worker group from it.
- TensorBoard: rank 0 writes every step's metrics (and the validation metrics, and GPU utilisation/memory where a
  GPU exists) to ``<run>/train/<name>/tensorboard/``, copied there at every checkpoint and at the end
  (``mujo.train.tensorboard``).
"""

from __future__ import annotations

import logging
import os
import tempfile
from itertools import islice
from typing import Any

from mujo import capacity, storage
from mujo.config import ConfigError, MainConfig
from mujo.data.text import CAPTION_DRAW_COLUMNS, select_captions
from mujo.models.mujo import save_pretrained
from mujo.run import RunLayout
from mujo.schema import MASK_COLUMNS, TENSOR_MODALITY_COLUMN, check_shards
from mujo.train import elastic, schedule
from mujo.train.tensorboard import TensorBoardLog
from mujo.train.trainer import (  # noqa: F401 - re-exported: the step and the state helpers lived here
    Trainer,
    _rng_state,
    _set_rng_state,
    build_loss,
    load_state,
    lr_lambda,
    model_inputs,
    train_step,
    validation_metrics,
)

log = logging.getLogger(__name__)
STATE_FILE = "state.pt"


def _report(trainer: Trainer, metrics: dict, checkpoint: bool, extra_state: dict | None = None) -> None:
    """``ray.train.report`` on every rank (a barrier); with ``checkpoint``, rank 0 attaches the trainer's state and
    a model artefact (the state is gathered on every rank first: it holds every rank's RNG stream). ``extra_state``
    goes into the state as well (the elastic run's resize log)."""
    import ray.train

    if not checkpoint:
        ray.train.report(metrics, checkpoint=None)
        return
    state = trainer.state_dict()
    state.update(extra_state or {})
    if trainer.rank != 0:
        ray.train.report(metrics, checkpoint=None)
        return
    import torch

    with tempfile.TemporaryDirectory() as d:
        torch.save(state, os.path.join(d, STATE_FILE))
        save_pretrained(trainer.model, d, extra={"step": trainer.global_step, "source": "pretrain checkpoint"})
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))


def train_loop(config: dict[str, Any]) -> None:
    """The Ray Train training function (runs on every worker)."""
    import ray.train
    import ray.train.torch
    import torch

    cfg = MainConfig.model_validate(config["cfg"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    # ---- issue 20: an elastic group trains with this size's share of the fixed global batch (mujo.train.elastic)
    elastic_run, global_batch = cfg.pretrain.min_workers is not None, elastic.global_batch(cfg.pretrain)
    cfg = elastic.for_world(cfg, world)
    pc = cfg.pretrain
    device = ray.train.torch.get_device() if pc.use_gpu and not pc.simulated_gpus else torch.device("cpu")
    trainer = Trainer(cfg, config["stats"], config["train_rows"], device=device, rank=rank, world=world,
                      wrap=lambda m: ray.train.torch.prepare_model(m, move_to_device=device, parallel_strategy="ddp"))
    checkpoint = ray.train.get_checkpoint()
    resizes = elastic.ResizeLog()
    if checkpoint:
        with checkpoint.as_directory() as d:
            state = load_state(os.path.join(d, STATE_FILE), device)
        trainer.load_state_dict(state)
        resizes = elastic.ResizeLog(state.get("resizes"))
        log.info("rank %d resumed from step %d", rank, trainer.global_step)
    if elastic_run:
        event = resizes.observe(trainer.global_step, world, pc.batch_size, global_batch, pc.grad_cache_chunks)
        if rank == 0:
            log.info("elastic group %s: %d worker(s) x %d samples (global batch %d) from step %d", event["event"],
                     world, pc.batch_size, global_batch, trainer.global_step)
    shard = ray.train.get_dataset_shard("train")
    tb = TensorBoardLog(config["tensorboard"]) if rank == 0 and config.get("tensorboard") else None
    val_batches: list | None = None
    steps_per_epoch = trainer.cadence.steps_per_epoch
    trainer.start()
    while not trainer.done:
        epoch, offset = trainer.position
        batches = shard.iter_torch_batches(batch_size=pc.batch_size, drop_last=True, device=device,
                                           local_shuffle_buffer_size=pc.shuffle_buffer or None,
                                           local_shuffle_seed=pc.seed + epoch)
        seen = 0
        for i, batch in enumerate(islice(batches, steps_per_epoch)):
            seen += 1
            if i < offset:  # resumed mid-epoch: this epoch's first batches were consumed before the restart
                continue
            batch = select_captions(batch, pc.seed, epoch)  # issue 17: one caption per window this epoch (or as is)
            metrics = trainer.step(batch)
            if elastic_run:  # which group size made this step
                trainer.history[-1].update(workers=world, per_worker_batch=pc.batch_size)
            if rank == 0 and trainer.validate_now():
                if val_batches is None:  # the validation set is small: read it once, keep it in memory
                    val = ray.train.get_dataset_shard("val")  # on `device`: Ray's "auto" is cuda with use_gpu
                    val_batches = list(val.iter_torch_batches(batch_size=256, device=device))
                metrics.update(trainer.validate(val_batches))
            if tb is not None:
                tb.scalars(metrics, trainer.global_step)
            if trainer.report_now():
                metrics.update(trainer.report_summary())
                if trainer.checkpoint_now() and tb is not None:
                    tb.sync()
                _report(trainer, metrics, checkpoint=trainer.checkpoint_now(),
                        extra_state={"resizes": resizes.entries} if elastic_run else None)
        if seen <= offset:  # never loop forever on a shard that yields no (new) batch
            raise RuntimeError(
                f"rank {rank}: the training shard gave {seen} full batch(es) of {pc.batch_size} in epoch {epoch}, "
                f"expected {steps_per_epoch}: the train split ({config['train_rows']} windows) is too small for "
                f"{world} worker(s) x batch_size {pc.batch_size}; lower pretrain.batch_size")
    if rank == 0:
        save_pretrained(trainer.model, config["artefact"],
                        extra={"step": trainer.global_step, "source": "pretrain final", "stats": config["stats"],
                               "resumed_from_steps": trainer.resumed_from})
        storage.write_json(storage.join(config["artefact"], "history.json"), trainer.history)
        if elastic_run:
            storage.write_json(storage.join(config["artefact"], "resizes.json"), resizes.entries)
    if tb is not None:
        tb.close()


def check_fits(cfg: MainConfig, manifest: dict) -> None:
    """Refuse, before any Ray work, a run that cannot make a step (:func:`mujo.train.schedule.steps_per_epoch`) or
    that lacks a validation split."""
    if "val" not in manifest.shards:
        raise ConfigError(f"dataset {manifest.dataset} has no 'val' split; pretraining validates on it")
    schedule.steps_per_epoch(cfg.pretrain, manifest.rows_of("train"))


def caption_columns(cfg: MainConfig, manifest) -> list[str]:
    """The caption columns the train split is read with: those of the per-epoch draw when the text modality trains,
    ``pretrain.caption_sampling`` is ``per_epoch`` and the train shards carry alternatives (their footers say so:
    schema 1.1 with K > 0); none otherwise (shards of schema 1.0 or one text per clip: ``text_emb`` as before)."""
    if "text" not in cfg.model.modalities or cfg.pretrain.caption_sampling != "per_epoch":
        return []
    fmt = check_shards(list(manifest.shards["train"]))
    return list(CAPTION_DRAW_COLUMNS) if fmt.captions else []


def pretrain(cfg: MainConfig, manifest: dict, name: str | None = None, callbacks: list | None = None,
             artefact: str | None = None):
    """Fit the TorchTrainer on a preprocessed dataset; returns (ray Result, artefact path).

    ``name`` is the Ray Train run name (a run started again with the same name resumes); the final model artefact
    goes to ``artefact`` (default :attr:`mujo.run.RunLayout.pretrained`). ``callbacks`` go to the trainer's RunConfig
    (e.g. Tune's ``TuneReportCallback`` when a Tune trial runs this)."""
    import ray.data
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    pc = cfg.pretrain
    check_fits(cfg, manifest)
    capacity.check_pretrain(pc)  # issue 20: a request no node type of the cluster can meet fails now, not never
    columns = [TENSOR_MODALITY_COLUMN[m] for m in cfg.model.modalities] + \
              [MASK_COLUMNS[m] for m in cfg.model.modalities]
    captions = caption_columns(cfg, manifest)
    fs, _ = storage.filesystem(manifest.shards["train"][0])
    # validation also reads the class of each window (few-shot Macro F1); training never sees labels
    datasets = {split: ray.data.read_parquet([storage.filesystem(p)[1] for p in manifest.shards[split]],
                                             filesystem=fs, shuffle="files" if split == "train" else None)
                .select_columns(columns + (["class_id"] if split == "val" and pc.fewshot_shots else [])
                                + (captions if split == "train" else []))
                for split in ("train", "val") if split in manifest.shards}
    layout = RunLayout.of(cfg)
    name = name or f"{cfg.run_name}-pretrain"
    artefact = artefact or layout.pretrained
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={"cfg": cfg.model_dump(mode="json"),
                           "stats": {m: st.model_dump() for m, st in manifest.stats.items()},
                           "train_rows": manifest.rows_of("train"), "artefact": artefact,
                           "tensorboard": layout.tensorboard(name)},
        scaling_config=ray.train.ScalingConfig(
            num_workers=(pc.min_workers, pc.num_workers) if pc.min_workers else pc.num_workers,  # issue 20
            use_gpu=pc.use_gpu, resources_per_worker={"CPU": pc.cpus_per_worker},
            placement_strategy=pc.placement_strategy, elastic_resize_monitor_interval_s=pc.resize_interval_s),
        torch_config=TorchConfig(backend="nccl" if pc.use_gpu and not pc.simulated_gpus else "gloo", timeout_s=600),
        datasets=datasets,
        dataset_config=ray.train.DataConfig(datasets_to_split=["train"]),
        run_config=ray.train.RunConfig(
            name=name, **storage.ray_storage(layout.train),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=pc.num_to_keep),
            failure_config=ray.train.FailureConfig(max_failures=pc.max_failures),
            callbacks=callbacks),
    )
    result = trainer.fit()
    return result, artefact


__all__ = ["STATE_FILE", "build_loss", "caption_columns", "check_fits", "lr_lambda", "pretrain", "train_loop",
           "validation_metrics"]
