"""Tests of the tiled and ring-exchanged forms of mujo.losses.MuJoLoss: exact against the textbook full-batch loss.

Single process: tiled (gathered columns) and tiled + ring (one rank) against the reference on the same batch, with
masks, both loss forms, pair weights, tiles that do not divide the batch, the gradient cache. Distributed: 1, 2
and 4 real gloo ranks, each with its slice of the batch; the mean over ranks of the loss and of the parameter
gradients (what DDP does) equals the single-process full-batch loss and gradients within 1e-9 in float64 and 1e-5
in float32, for the encoders and the temperature.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from _dist import run_distributed
from mujo.losses import DEFAULT_TILE, IMPLS, MODALITIES, MuJoLoss, PeakMemory, default_tile_size, modality_pairs
from test_losses import (
    EMBED_DIM,
    LOCAL_BATCH,
    WEIGHTS,
    _cached_step,
    _chunks,
    _grads,
    _plain_step,
    make_inputs,
    make_masks,
    make_model,
    random_features,
    reference_loss,
)

TOL = {torch.float64: 1e-9, torch.float32: 1e-5}


@dataclass(frozen=True)
class Variant:
    """One tiled configuration."""

    ring: bool
    tile: int | None

    @property
    def name(self) -> str:
        return f"{'tiled+ring' if self.ring else 'tiled'}/tile={self.tile or 'default'}"

    def criterion(self, form: str) -> MuJoLoss:
        return MuJoLoss(form=form, pair_weights=WEIGHTS[form], impl="tiled", ring=self.ring, tile_size=self.tile)


# tile 4 with 6 rows per rank: a full and a partial tile per block (the default tile: single-process tests)
VARIANTS = [Variant(False, 4), Variant(True, 4)]


def close(actual: Tensor, expected: Tensor, what: str) -> None:
    tol = TOL[expected.dtype]
    torch.testing.assert_close(actual, expected, rtol=tol, atol=tol, msg=lambda m: f"{what}: {m}")


def _reference(feats: dict[str, Tensor], masks: dict[str, Tensor] | None, log_scale: Tensor, form: str):
    """Textbook loss, per-pair losses and gradients (features, log-scale) on detached copies of the inputs."""
    ref_feats = {m: f.detach().clone().requires_grad_() for m, f in feats.items()}
    ref_log_scale = log_scale.detach().clone().requires_grad_()
    loss, per_pair = reference_loss(ref_feats, masks, ref_log_scale.exp(), modality_pairs(MODALITIES, form),
                                    WEIGHTS[form])
    leaves = [*ref_feats.values(), ref_log_scale]
    if not loss.requires_grad:
        return loss, per_pair, [torch.zeros_like(x) for x in leaves]
    return loss, per_pair, torch.autograd.grad(loss, leaves, allow_unused=True, materialize_grads=True)


# ---------------------------------------------------------------------------------------------- single process


@pytest.mark.parametrize("variant", [Variant(False, 5), Variant(False, 1), Variant(True, 4), Variant(True, None)],
                         ids=lambda v: v.name)
@pytest.mark.parametrize("form", ["all_pairs", "text_anchor"])
@pytest.mark.parametrize("mask_kind", ["full", "missing", "empty_rank", "none"])
def test_tiled_matches_reference(variant: Variant, form: str, mask_kind: str) -> None:
    masks = make_masks(mask_kind, world=2)
    feats = random_features(2 * LOCAL_BATCH)
    log_scale = torch.tensor(2.5, dtype=torch.float64, requires_grad=True)
    out = variant.criterion(form)(feats, masks, log_scale.exp())
    got = torch.autograd.grad(out.loss, [*feats.values(), log_scale], allow_unused=True, materialize_grads=True)
    ref, ref_pairs, want = _reference(feats, masks, log_scale, form)
    close(out.loss, ref, "loss")
    assert out.per_pair.keys() == ref_pairs.keys()
    for k, v in ref_pairs.items():
        close(out.per_pair[k], v.detach(), k)
    for name, g, w in zip([*MODALITIES, "log_scale"], got, want):
        close(g, w, f"grad {name}")


def test_tiled_float32_matches_float64_reference() -> None:
    """A larger batch in float32 (several tiles, s = 100): within 1e-5 of the float64 reference."""
    masks = {m: torch.rand(64, generator=torch.Generator().manual_seed(5 + i)) < 0.8 for i, m in enumerate(MODALITIES)}
    gen = torch.Generator().manual_seed(4)
    feats64 = {m: F.normalize(torch.randn(64, 32, generator=gen, dtype=torch.float64), dim=1) for m in MODALITIES}
    log_scale = torch.tensor(4.6, dtype=torch.float64)
    ref, _, want = _reference(feats64, masks, log_scale, "all_pairs")
    for ring in (False, True):
        feats = {m: f.float().requires_grad_() for m, f in feats64.items()}
        ls = log_scale.float().requires_grad_()
        out = MuJoLoss(pair_weights=WEIGHTS["all_pairs"], impl="tiled", ring=ring, tile_size=16)(feats, masks, ls.exp())
        got = torch.autograd.grad(out.loss, [*feats.values(), ls])
        close(out.loss, ref.float(), f"ring={ring} loss")
        for name, g, w in zip([*MODALITIES, "log_scale"], got, want):
            close(g, w.float(), f"ring={ring} grad {name}")


@pytest.mark.parametrize("ring", [False, True])
def test_tiled_masked_sample_is_neither_anchor_nor_negative(ring: bool) -> None:
    masks = make_masks("missing", world=2)
    feats = random_features(2 * LOCAL_BATCH)
    scale = torch.tensor(14.0, dtype=torch.float64)
    loss_fn = MuJoLoss(impl="tiled", ring=ring, tile_size=4)
    out = loss_fn(feats, masks, scale)
    grads = torch.autograd.grad(out.loss, list(feats.values()))
    moved = {m: f.detach().clone() for m, f in feats.items()}
    for m in MODALITIES:  # replace the embeddings of absent modalities by anything else, even huge values
        absent = ~masks[m]
        moved[m][absent] = 1e3 * torch.randn(int(absent.sum()), EMBED_DIM, dtype=torch.float64)
    close(loss_fn(moved, masks, scale).loss, out.loss.detach(), "loss with moved absent embeddings")
    for m, g in zip(MODALITIES, grads):
        assert torch.all(g[~masks[m]] == 0), f"absent {m} embeddings received gradient"


@pytest.mark.parametrize("ring", [False, True])
def test_tiled_grad_cache_matches_plain_step(ring: bool) -> None:
    chunks = _chunks(make_inputs(12), make_masks("missing", world=2), size=4)
    criterion = MuJoLoss(pair_weights=WEIGHTS["all_pairs"], impl="tiled", ring=ring, tile_size=5)
    results = []
    for step in (_plain_step, _cached_step):
        model = make_model(dropout=0.3)
        torch.manual_seed(7)
        results.append((step(model, criterion, chunks), _grads(model)))
    (plain_loss, plain_grads), (cached_loss, cached_grads) = results
    close(cached_loss, plain_loss, "loss")
    for name in plain_grads:
        close(cached_grads[name], plain_grads[name], f"grad {name}")
    # and the plain tiled step equals the local form's
    model = make_model(dropout=0.3)
    torch.manual_seed(7)
    _plain_step(model, MuJoLoss(pair_weights=WEIGHTS["all_pairs"], impl="local"), chunks)
    for name, g in _grads(model).items():
        close(plain_grads[name], g, f"tiled vs local grad {name}")


def test_constructor_validates_impl() -> None:
    assert IMPLS == ("tiled", "local", "naive")
    assert MuJoLoss().impl_name == "local" and MuJoLoss(local_loss=False).impl_name == "naive"
    assert MuJoLoss(impl="tiled", ring=True).impl_name == "tiled+ring"
    with pytest.raises(ValueError, match="unknown loss implementation"):
        MuJoLoss(impl="ring")
    with pytest.raises(ValueError, match="contradicts"):
        MuJoLoss(impl="tiled", local_loss=False)
    with pytest.raises(ValueError, match="needs impl='tiled'"):
        MuJoLoss(impl="local", ring=True)
    with pytest.raises(ValueError, match="gather_with_grad"):
        MuJoLoss(impl="tiled", ring=True, gather_with_grad=False)
    with pytest.raises(ValueError, match="tile_size"):
        MuJoLoss(impl="tiled", tile_size=0)


def test_default_tile_size() -> None:
    assert default_tile_size(torch.device("cpu")) == DEFAULT_TILE["cpu"]
    assert default_tile_size(torch.device("cuda", 0)) == DEFAULT_TILE["cuda"]


def test_peak_memory_sees_a_step_allocation() -> None:
    with PeakMemory("cpu") as small:
        torch.zeros(1024).add_(1)
    with PeakMemory("cpu") as peak:
        # 64 MiB, touched, then freed: above glibc's largest mmap threshold (32 MiB), so fresh pages whatever earlier
        # tests left in the heap (a 16 MiB block could reuse resident freed memory: no growth to see)
        x = torch.ones(64 * 2**20 // 4)
        del x
    if peak.bytes is None:  # no /proc (not Linux): nothing measured, nothing reported
        assert peak.metrics() == {}
        return
    assert small.bytes is not None and small.bytes < 8 * 2**20
    assert peak.bytes >= 60 * 2**20 and peak.metrics()["memory/step_peak_mib"] >= 60


# ------------------------------------------------------------------------------------------------- distributed


@dataclass(frozen=True)
class Expected:
    """Single-process full-batch loss, per-pair losses and parameter gradients (textbook reference)."""

    loss: Tensor
    per_pair: dict[str, Tensor]
    grads: dict[str, Tensor]


def single_process(form: str, mask_kind: str, world: int, dtype: torch.dtype = torch.float64) -> Expected:
    model = make_model().to(dtype)
    inputs = {m: x.to(dtype) for m, x in make_inputs(world * LOCAL_BATCH).items()}
    masks = make_masks(mask_kind, world)
    loss, per_pair = reference_loss(model(inputs), masks, model.log_scale.exp(), modality_pairs(MODALITIES, form),
                                    WEIGHTS[form])
    if loss.requires_grad:
        loss.backward()
    grads = {n: (p.grad if p.grad is not None else torch.zeros_like(p)).clone() for n, p in model.named_parameters()}
    return Expected(loss.detach(), {k: v.detach() for k, v in per_pair.items()}, grads)


def _local(x: dict[str, Tensor] | None, rank: int) -> dict[str, Tensor] | None:
    return None if x is None else {m: v[rank * LOCAL_BATCH:(rank + 1) * LOCAL_BATCH] for m, v in x.items()}


def _check(expected: Expected, loss: Tensor, per_pair: dict[str, Tensor] | None, model: torch.nn.Module, world: int,
           what: str) -> None:
    """Mean over ranks (one all_reduce of everything) of the loss, per-pair losses and parameter gradients (what DDP
    does: all_reduce SUM / W) against the single-process values."""
    if per_pair is not None:
        assert per_pair.keys() == expected.per_pair.keys(), what
    keys = sorted(expected.per_pair) if per_pair is not None else []
    params = dict(model.named_parameters())
    grads = [params[n].grad if params[n].grad is not None else torch.zeros_like(params[n]) for n in expected.grads]
    flat = torch.cat([loss.detach().reshape(1), *[per_pair[k].reshape(1) for k in keys],
                      *[g.reshape(-1) for g in grads]])
    dist.all_reduce(flat)
    flat /= world
    close(flat[0], expected.loss, f"{what} loss")
    for j, k in enumerate(keys):
        close(flat[1 + j], expected.per_pair[k], f"{what} pair {k}")
    offset = 1 + len(keys)
    for name, g in expected.grads.items():
        close(flat[offset:offset + g.numel()].view_as(g), g, f"{what} grad {name}")
        offset += g.numel()


CASES = [(form, masks) for form in ("all_pairs", "text_anchor") for masks in ("full", "missing", "empty_rank", "none")]


def _worker(rank: int, world: int, expected: dict[str, Expected]) -> None:
    inputs = _local(make_inputs(world * LOCAL_BATCH), rank)
    for variant in VARIANTS:
        for form, mask_kind in CASES:
            model = make_model()
            out = variant.criterion(form)(model(inputs), _local(make_masks(mask_kind, world), rank),
                                          model.log_scale.exp())
            out.loss.backward()
            _check(expected[f"{form}/{mask_kind}"], out.loss, out.per_pair, model, world,
                   f"{variant.name} {form}/{mask_kind}")

        # the gradient cache on each rank's local batch, the tiled loss (and its exchange) inside: exact as well
        chunks = _chunks(inputs, _local(make_masks("missing", world), rank), size=4)
        model = make_model()
        loss = _cached_step(model, variant.criterion("all_pairs"), chunks)
        _check(expected["all_pairs/missing"], loss, None, model, world, f"{variant.name} grad cache")

    # float32: within 1e-5 of the float32 single-process full-batch loss and gradients
    inputs32 = {m: x.float() for m, x in inputs.items()}
    for variant in VARIANTS:
        model = make_model().float()
        out = variant.criterion("all_pairs")(model(inputs32), _local(make_masks("missing", world), rank),
                                             model.log_scale.exp())
        out.loss.backward()
        _check(expected["float32"], out.loss, out.per_pair, model, world, f"{variant.name} float32")


@pytest.mark.parametrize("world", [1, 2, 4])
def test_distributed_tiled_matches_single_process(world: int) -> None:
    expected = {f"{form}/{masks}": single_process(form, masks, world) for form, masks in CASES}
    expected["float32"] = single_process("all_pairs", "missing", world, torch.float32)
    if world > 1:  # a rank without any valid row, and pairs without any valid sample, are among the cases
        assert set(expected["all_pairs/missing"].per_pair) == {"video-pose", "video-text", "pose-acc", "acc-text"}
    assert expected["all_pairs/none"].per_pair == {}
    run_distributed(_worker, world, expected)
