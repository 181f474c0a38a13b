"""The evaluation engine: many seeds of one fan-out cell trained together, frozen encoders run once. Plain torch.

A cell of the paper's protocol (inputs x setting x label fraction x calibration) is trained for 20 seeds that differ
only in their initialisation, label sample, shuffling and dropout; running each as its own trial repeats work the
seeds could share. This module trains a *group* of seeds at once, each seed exactly as
:func:`mujo.evaluate.finetune.train_classifier` would train it alone:

- its own initialisation (the caller builds one model per seed, seeded as today), label sample (``train_indices``),
  batch order (a generator seeded with the seed, as today) and dropout: the masks are drawn from a per-seed
  generator seeded with the seed, in the order and shape the modules draw them when the seed trains alone (on CPU
  the same numbers ``nn.Dropout`` draws after ``torch.manual_seed(seed)``);
- its own class weights, AdamW state (:func:`mujo.optim.adamw`: elementwise, so stacking seeds changes nothing),
  early stopping and best-validation weights; a seed that stops leaves the group, the rest go on.

Two ways to run a group's forward and backward pass (``vectorize``): ``vmap`` stacks the seeds' parameters
(``torch.func.stack_module_state`` + ``functional_call`` + ``vmap``: one batched kernel per layer for all seeds);
``loop`` keeps one module per seed and loops over them inside each step (the same arithmetic as training alone,
bit for bit). ``auto`` (:func:`choose_vectorize`) picks ``loop`` when the model trains convolution weights (the
encoders: vmap measured no faster there) and ``vmap`` for heads on features.

Frozen setting (:func:`frozen_features`): the frozen encoders + projections are run once per (dataset,
calibration, inputs) on every split; the seeds train only their heads, on those features (:class:`FeatureHead`), and
validate on them: the frozen part's output is the same every epoch, so computing it again is pure repetition.

Validation and test prediction run without autograd (``torch.inference_mode``) in large batches.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Literal

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from mujo.evaluate.finetune import EarlyStopping, FinetuneConfig, FinetuneResult, Split, _split_tensors, class_weights
from mujo.evaluate.metrics import macro_f1
from mujo.optim import adamw

__all__ = ["FEATURES", "FeatureHead", "choose_vectorize", "frozen_features", "train_seed_group"]

FEATURES = "features"
"""The input key of :class:`FeatureHead`: the frozen part's output (concatenated joint-space embeddings)."""

Vectorize = Literal["auto", "vmap", "loop"]


class FeatureHead(nn.Module):
    """A classifier's head on precomputed features: ``{"features": (B, D)} -> logits``. Its state dict is the
    head's under the prefix ``head.``, as in :class:`mujo.models.classifier.Classifier`."""

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.head(batch[FEATURES])


@torch.inference_mode()
def frozen_features(backbone: nn.Module, inputs: Sequence[str], arrays: Mapping[str, np.ndarray],
                    batch_size: int = 512, device: str | torch.device = "cpu") -> NDArray[np.float32]:
    """What a frozen classifier's head sees: the concatenated joint-space embeddings of ``inputs`` for every row of
    ``arrays`` (modality -> (N, ...)), computed once in eval mode, (N, len(inputs) * embed_dim) float32."""
    was_training = backbone.training
    backbone.eval().to(device)
    n = len(arrays[inputs[0]])
    out = []
    for i in range(0, n, batch_size):
        parts = [backbone.embed(m, torch.tensor(np.asarray(arrays[m][i:i + batch_size]), dtype=torch.float32,
                                                device=device)) for m in inputs]  # a copy: read-only arrays
        out.append(torch.cat(parts, dim=1).cpu())
    backbone.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


def choose_vectorize(model: nn.Module) -> Literal["vmap", "loop"]:
    """``loop`` when ``model`` has trainable convolution weights (the pose and acc encoders), else ``vmap`` (heads).

    Measured on CPU (benchmarks/README.md): vmap turns a convolution into a G-times-grouped one and the encoders'
    matrix forms into batched products, no faster than G separate passes, while the loop is bit-identical to
    training each seed alone; a head on features is many tiny products, where one batched kernel saves the loop's
    per-seed overhead."""
    for module in model.modules():
        if isinstance(module, nn.modules.conv._ConvNd) and any(p.requires_grad for p in module.parameters()):
            return "loop"
    return "vmap"


class _MaskDropout(nn.Module):
    """Dropout whose mask (already scaled by 1/(1-p)) is given from outside: per seed, drawn from its generator."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p
        self.register_buffer("mask", torch.ones(0), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        return x * self.mask


def _dropout_plan(model: nn.Module, sample: Mapping[str, torch.Tensor]) -> list[tuple[str, float, tuple[int, ...]]]:
    """(name, p, feature shape) of every dropout module in the order a training forward pass calls it."""
    calls: list[tuple[str, float, tuple[int, ...]]] = []
    hooks = [m.register_forward_pre_hook(lambda mod, args, name=name: calls.append(
        (name, float(mod.p), tuple(args[0].shape[1:])))) for name, m in model.named_modules()
        if isinstance(m, nn.Dropout)]
    was_training = model.training
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            model.train()(sample)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    if len({name for name, _, _ in calls}) != len(calls):
        raise ValueError("a dropout module is called more than once per forward pass; the engine cannot replay it")
    return [c for c in calls if c[1] > 0.0]


def _swap_dropout(model: nn.Module, back: bool = False) -> None:
    """Dropout modules -> :class:`_MaskDropout` (``back``: the reverse); no parameters or state change."""
    for name, child in list(model.named_children()):
        if isinstance(child, nn.Dropout) and not back:
            setattr(model, name, _MaskDropout(float(child.p)))
        elif isinstance(child, _MaskDropout) and back:
            setattr(model, name, nn.Dropout(child.p))
        else:
            _swap_dropout(child, back)


def _draw_masks(plan: Sequence[tuple[str, float, tuple[int, ...]]], rows: int, gen: torch.Generator,
                device: torch.device) -> dict[str, torch.Tensor]:
    """One seed's dropout masks for one batch, drawn as ``F.dropout`` draws them on CPU: ``bernoulli_(1 - p)``,
    then divided by ``1 - p``, module after module in call order."""
    masks = {}
    for name, p, shape in plan:
        noise = torch.empty((rows, *shape)).bernoulli_(1.0 - p, generator=gen)
        masks[name] = noise.div_(1.0 - p).to(device)
    return masks


def _check_logits(out: torch.Tensor, rows: int, num_classes: int) -> None:
    if not isinstance(out, torch.Tensor) or tuple(out.shape[-2:]) != (rows, num_classes):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"model must return logits of shape ({rows}, {num_classes}), got {shape}")


def _rebuild_optimizer(old: torch.optim.Optimizer, params: list[torch.Tensor],
                       state: Mapping[int, dict], cfg: FinetuneConfig) -> torch.optim.Optimizer:
    new = adamw(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    for i, p in enumerate(params):
        if i in state:
            new.state[p] = state[i]
    return new


class _LoopGroup:
    """One module per seed; each step loops over the active seeds (bit-identical to training each alone)."""

    def __init__(self, models: Sequence[nn.Module], cfg: FinetuneConfig, device: torch.device) -> None:
        self.models = list(models)
        for m in self.models:
            _swap_dropout(m)
            m.to(device)
        self.cfg = cfg
        self.params = [[p for p in m.parameters() if p.requires_grad] for m in self.models]
        self.optimizer = adamw([p for ps in self.params for p in ps], lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.active = list(range(len(self.models)))

    def losses(self, batches: Sequence[Mapping[str, torch.Tensor]], targets: Sequence[torch.Tensor],
               masks: Sequence[Mapping[str, torch.Tensor]], loss_fns: Sequence[nn.Module],
               num_classes: int) -> list[torch.Tensor]:
        out = []
        for pos, g in enumerate(self.active):
            model = self.models[g]
            model.train()
            for name, module in model.named_modules():
                if name in masks[pos]:
                    module.mask = masks[pos][name]
            logits = model(batches[pos])
            _check_logits(logits, targets[pos].shape[0], num_classes)
            out.append(loss_fns[pos](logits, targets[pos]))
        return out

    @torch.inference_mode()
    def predict(self, x: Mapping[str, torch.Tensor], batch_size: int, device: torch.device) -> torch.Tensor:
        """Argmax classes (active seeds, N) on shared inputs."""
        n = next(iter(x.values())).shape[0]
        preds = []
        for g in self.active:
            model = self.models[g].eval()
            preds.append(torch.cat([model({k: v[i:i + batch_size].to(device) for k, v in x.items()}).argmax(-1).cpu()
                                    for i in range(0, n, batch_size)]))
        return torch.stack(preds)

    def snapshot(self, pos: int) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.models[self.active[pos]].state_dict().items()}

    def keep(self, positions: Sequence[int]) -> None:
        old = {id(p): s for p, s in self.optimizer.state.items()}
        self.active = [self.active[i] for i in positions]
        params = [p for g in self.active for p in self.params[g]]
        state = {i: old[id(p)] for i, p in enumerate(params) if id(p) in old}
        self.optimizer = _rebuild_optimizer(self.optimizer, params, state, self.cfg)

    def finish(self, states: Sequence[dict[str, torch.Tensor]]) -> list[nn.Module]:
        for m, s in zip(self.models, states):
            _swap_dropout(m, back=True)
            m.load_state_dict(s)
        return self.models


class _VmapGroup:
    """The seeds' parameters stacked (G, ...) and one vmapped functional forward/backward for all of them."""

    def __init__(self, models: Sequence[nn.Module], cfg: FinetuneConfig, device: torch.device) -> None:
        from torch.func import functional_call, stack_module_state

        self.models = list(models)
        self.cfg = cfg
        self.trainable = [n for n, p in self.models[0].named_parameters() if p.requires_grad]
        params, buffers = stack_module_state(self.models)
        self.params = {n: (p.detach().to(device).requires_grad_(n in self.trainable)) for n, p in params.items()}
        self.buffers = {n: b.to(device) for n, b in buffers.items()}
        self.base = copy.deepcopy(self.models[0])
        _swap_dropout(self.base)
        self.base.to("meta")
        self.functional_call = functional_call
        self.state_keys = list(self.models[0].state_dict())  # persistent state only (not non-persistent buffers)
        self.optimizer = adamw([self.params[n] for n in self.trainable], lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.active = list(range(len(self.models)))

    def _call(self, params: dict, buffers: dict, x: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.functional_call(self.base, {**params, **buffers}, (dict(x),))

    def losses(self, batches, targets, masks, loss_fns, num_classes):
        from torch.func import vmap

        self.base.train()
        x = {k: torch.stack([b[k] for b in batches]) for k in batches[0]}
        mask = {f"{name}.mask": torch.stack([m[name] for m in masks]) for name in masks[0]}
        logits = vmap(self._call)(self.params, {**self.buffers, **mask}, x)
        _check_logits(logits, targets[0].shape[0], num_classes)
        return [fn(logits[pos], t) for pos, (fn, t) in enumerate(zip(loss_fns, targets))]

    @torch.inference_mode()
    def predict(self, x, batch_size, device):
        from torch.func import vmap

        self.base.eval()
        n = next(iter(x.values())).shape[0]
        params = {k: v.detach() for k, v in self.params.items()}
        call = vmap(self._call, in_dims=(0, 0, None))
        return torch.cat([call(params, self.buffers, {k: v[i:i + batch_size].to(device) for k, v in x.items()})
                          .argmax(-1).cpu() for i in range(0, n, batch_size)], dim=1)

    def snapshot(self, pos: int) -> dict[str, torch.Tensor]:
        tensors = {**self.params, **self.buffers}
        return {k: tensors[k][pos].detach().clone() for k in self.state_keys}

    def keep(self, positions: Sequence[int]) -> None:
        index = torch.as_tensor(list(positions), dtype=torch.long)
        old = self.optimizer.state
        state = {}
        new_params = {}
        for n, p in self.params.items():
            q = p.detach()[index.to(p.device)].clone().requires_grad_(n in self.trainable)
            new_params[n] = q
        for i, n in enumerate(self.trainable):
            s = old.get(self.params[n])
            if s:
                state[i] = {k: (v[index.to(v.device)].clone() if torch.is_tensor(v) and v.dim() > 0 else v)
                            for k, v in s.items()}
        self.params = new_params
        self.buffers = {n: b[index.to(b.device)] for n, b in self.buffers.items()}
        self.active = [self.active[i] for i in positions]
        self.optimizer = _rebuild_optimizer(self.optimizer, [self.params[n] for n in self.trainable], state,
                                            self.cfg)

    def finish(self, states):
        for m, s in zip(self.models, states):
            m.load_state_dict({k: v.cpu() for k, v in s.items()})
        return self.models


def train_seed_group(models: Sequence[nn.Module], seeds: Sequence[int], train_indices: Sequence[np.ndarray],
                     train: Split, val: Split, test: Split, num_classes: int, cfg: FinetuneConfig,
                     vectorize: Vectorize = "auto", predict_batch_size: int = 1024,
                     on_epoch: Callable[[dict[str, float]], None] | None = None) -> list[FinetuneResult]:
    """Train one model per seed together; each as :func:`~mujo.evaluate.finetune.train_classifier` trains it.

    Args:
        models: one freshly built model per seed (seeded as for training alone), same architecture; on return each
            holds its best-validation weights (on CPU in ``vmap`` mode, on ``cfg.device`` in ``loop`` mode).
        seeds: the seeds (batch order and dropout of each; ``cfg.seed`` is not used).
        train_indices: per seed, the rows of ``train`` it trains on (its label sample); all of one length (a
            per-class label fraction has the same size for every seed).
        train, val, test: the splits (``train`` whole: the seeds' rows are taken from it).
        num_classes: number of classes C.
        cfg: hyper-parameters shared by the seeds.
        vectorize: ``vmap``, ``loop`` or ``auto`` (:func:`choose_vectorize`).
        predict_batch_size: rows per validation/test forward pass (no autograd: large batches are cheap).
        on_epoch: called after every epoch with the group's summary: ``epoch``, ``active_seeds``,
            ``val_macro_f1_mean``, ``best_val_macro_f1_mean``, ``train_loss_mean`` (over the seeds still training)
            and ``s<seed>/val_macro_f1`` per seed still training.

    Returns:
        One :class:`~mujo.evaluate.finetune.FinetuneResult` per seed, in the order of ``seeds``.
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    if not (len(models) == len(seeds) == len(train_indices)) or not models:
        raise ValueError(f"need one model and one label sample per seed: {len(models)} models, {len(seeds)} seeds, "
                         f"{len(train_indices)} samples")
    sizes = {len(i) for i in train_indices}
    if len(sizes) != 1:
        raise ValueError(f"the seeds' label samples differ in size ({sorted(sizes)}); group only seeds of one cell")
    (train_x, train_y), (val_x, val_y), (test_x, test_y) = _split_tensors(train, val, test, num_classes)
    if not any(p.requires_grad for p in models[0].parameters()):
        raise ValueError("model has no trainable parameters")
    device = torch.device(cfg.device)
    mode = choose_vectorize(models[0]) if vectorize == "auto" else vectorize
    plan = _dropout_plan(models[0], {k: v[:2] for k, v in train_x.items()})
    indices = [torch.as_tensor(np.asarray(i), dtype=torch.long) for i in train_indices]
    loss_fns = [nn.CrossEntropyLoss(weight=torch.as_tensor(class_weights(train_y[i].numpy(), num_classes),
                                                           dtype=torch.float32, device=device)) for i in indices]
    group = (_VmapGroup if mode == "vmap" else _LoopGroup)(models, cfg, device)
    shuffles = [torch.Generator().manual_seed(int(s)) for s in seeds]
    dropouts = [torch.Generator().manual_seed(int(s)) for s in seeds]
    stoppers = [EarlyStopping(cfg.patience) for _ in seeds]
    best_states: list[dict[str, torch.Tensor]] = [{} for _ in seeds]
    best_epochs = [0] * len(seeds)
    histories: list[list[dict[str, float]]] = [[] for _ in seeds]
    val_true = val_y.numpy()
    n_train = len(indices[0])

    for epoch in range(1, cfg.max_epochs + 1):
        active = list(group.active)
        perms = [torch.randperm(n_train, generator=shuffles[g]).split(cfg.batch_size) for g in active]
        totals = [0.0] * len(active)
        for step in range(len(perms[0])):
            rows = [indices[g][perms[pos][step]] for pos, g in enumerate(active)]
            batches = [{k: v[r].to(device) for k, v in train_x.items()} for r in rows]
            targets = [train_y[r].to(device) for r in rows]
            masks = [_draw_masks(plan, len(r), dropouts[g], device) for r, g in zip(rows, active)]
            losses = group.losses(batches, targets, masks, [loss_fns[g] for g in active], num_classes)
            group.optimizer.zero_grad(set_to_none=True)
            torch.stack(losses).sum().backward()
            group.optimizer.step()
            for pos, loss in enumerate(losses):
                totals[pos] += float(loss.detach()) * len(rows[pos])
        preds = group.predict(val_x, predict_batch_size, device).numpy().astype(np.int64)
        keep, summary = [], {"epoch": epoch, "active_seeds": len(active)}
        f1s, bests, train_losses = [], [], []
        for pos, g in enumerate(active):
            val_f1 = macro_f1(val_true, preds[pos])
            stop = stoppers[g].step(val_f1, epoch)
            if stoppers[g].best_epoch == epoch:
                best_epochs[g] = epoch
                best_states[g] = group.snapshot(pos)
            metrics = {"epoch": epoch, "train_loss": totals[pos] / n_train, "val_macro_f1": val_f1,
                       "best_val_macro_f1": stoppers[g].best_score, "best_epoch": best_epochs[g]}
            histories[g].append(metrics)
            summary[f"s{seeds[g]}/val_macro_f1"] = val_f1
            f1s.append(val_f1), bests.append(stoppers[g].best_score), train_losses.append(metrics["train_loss"])
            if not stop:
                keep.append(pos)
        summary.update(val_macro_f1_mean=float(np.mean(f1s)), best_val_macro_f1_mean=float(np.mean(bests)),
                       train_loss_mean=float(np.mean(train_losses)))
        if on_epoch is not None:
            on_epoch(summary)
        if not keep:
            break
        if len(keep) < len(active):
            group.keep(keep)

    trained = group.finish(best_states)
    results = []
    for g, model in enumerate(trained):
        model.to(device).eval()
        test_pred = _predict_one(model, test_x, predict_batch_size, device)
        results.append(FinetuneResult(best_epoch=best_epochs[g], epochs_run=len(histories[g]),
                                      val_macro_f1=stoppers[g].best_score,
                                      test_macro_f1=macro_f1(test_y.numpy(), test_pred), test_predictions=test_pred,
                                      history=histories[g]))
    return results


@torch.inference_mode()
def _predict_one(model: nn.Module, x: Mapping[str, torch.Tensor], batch_size: int,
                 device: torch.device) -> NDArray[np.int64]:
    n = next(iter(x.values())).shape[0]
    return torch.cat([model({k: v[i:i + batch_size].to(device) for k, v in x.items()}).argmax(-1).cpu()
                      for i in range(0, n, batch_size)]).numpy().astype(np.int64)

