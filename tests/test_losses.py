"""Tests of mujo.losses: reference agreement, masks, temperature, distributed exactness, gradient cache."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from _dist import run_distributed
from mujo.losses import (
    MODALITIES,
    MuJoLoss,
    clamp_logit_scale_,
    gather_features,
    grad_cache_step,
    modality_pairs,
    pair_key,
)

IN_DIMS = {"video": 7, "pose": 6, "acc": 5, "text": 4}
EMBED_DIM = 8
LOCAL_BATCH = 6  # per rank in the distributed tests
RTOL, ATOL = 1e-6, 1e-10  # float64 throughout
WEIGHTS = {"all_pairs": {"video-pose": 2.0, "acc-text": 0.5}, "text_anchor": {"video-text": 3.0}}


class TinyMuJo(nn.Module):
    """One small MLP per modality into a shared normalised space, plus a learnable log-scale."""

    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        self.enc = nn.ModuleDict(
            {
                m: nn.Sequential(nn.Linear(d, 16), nn.Tanh(), nn.Dropout(dropout), nn.Linear(16, EMBED_DIM))
                for m, d in IN_DIMS.items()
            }
        )
        self.log_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def forward(self, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        return {m: F.normalize(self.enc[m](inputs[m]), dim=1) for m in MODALITIES}


def make_model(dropout: float = 0.0) -> TinyMuJo:
    """The same float64 model in every process."""
    torch.manual_seed(0)
    return TinyMuJo(dropout).double()


def make_inputs(batch: int) -> dict[str, Tensor]:
    gen = torch.Generator().manual_seed(1)
    return {m: torch.randn(batch, d, generator=gen, dtype=torch.float64) for m, d in IN_DIMS.items()}


def make_masks(kind: str, world: int, local: int = LOCAL_BATCH) -> dict[str, Tensor] | None:
    """Global masks (B = world * local) of a named scenario.

    ``missing``: random gaps where video and acc never co-occur and pose and text never co-occur (two pairs absent in
    the whole batch), rank 0 with a fixed pattern that gives video-text, pose-acc and acc-text two samples each, and
    the last rank with only video and pose (acc and text missing on an entire rank). ``empty_rank``: the last rank
    has no modality at all (it contributes no row). ``none``: no sample has any modality.
    """
    batch = world * local
    if kind == "full":
        return None
    if kind == "none":
        return {m: torch.zeros(batch, dtype=torch.bool) for m in MODALITIES}
    if kind == "empty_rank":
        masks = {m: torch.ones(batch, dtype=torch.bool) for m in MODALITIES}
        for m in MODALITIES:
            masks[m][-local:] = False
        return masks
    assert kind == "missing" and local == 6
    gen = torch.Generator().manual_seed(2)
    masks = {m: torch.rand(batch, generator=gen) < 0.7 for m in MODALITIES}
    pattern = torch.tensor([[1, 0, 0, 1], [1, 0, 0, 1], [0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 1, 1], [0, 0, 1, 1]])
    for j, m in enumerate(MODALITIES):
        masks[m][:local] = pattern[:, j].bool()
    masks["acc"] &= ~masks["video"]
    masks["text"] &= ~masks["pose"]
    for m in ("acc", "text"):
        masks[m][-local:] = False
    for m in ("video", "pose"):
        masks[m][-local:] = True
    return masks


def reference_loss(
    features: dict[str, Tensor],
    masks: dict[str, Tensor] | None,
    logit_scale: Tensor,
    pairs: list[tuple[str, str]],
    weights: dict[str, float],
) -> tuple[Tensor, dict[str, Tensor]]:
    """Textbook form: select the samples having both modalities, full matrix, cross-entropy both ways."""
    per_pair = {}
    for a, c in pairs:
        valid = torch.ones(len(features[a]), dtype=torch.bool)
        if masks is not None:
            valid = masks.get(a, valid) & masks.get(c, valid)
        if not valid.any():
            continue
        logits = logit_scale * features[a][valid] @ features[c][valid].T
        labels = torch.arange(int(valid.sum()))
        per_pair[pair_key(a, c)] = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    if not per_pair:
        return torch.zeros((), dtype=torch.float64), per_pair
    total_w = sum(weights.get(k, 1.0) for k in per_pair)
    return sum(weights.get(k, 1.0) * v for k, v in per_pair.items()) / total_w, per_pair


def random_features(batch: int, seed: int = 3) -> dict[str, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        m: F.normalize(torch.randn(batch, EMBED_DIM, generator=gen, dtype=torch.float64), dim=1).requires_grad_()
        for m in MODALITIES
    }


def close(actual: Tensor, expected: Tensor, what: str) -> None:
    torch.testing.assert_close(actual, expected, rtol=RTOL, atol=ATOL, msg=lambda m: f"{what}: {m}")


# ---------------------------------------------------------------------------------------------- single process


def test_modality_pairs() -> None:
    assert modality_pairs(MODALITIES, "all_pairs") == [
        ("video", "pose"), ("video", "acc"), ("video", "text"), ("pose", "acc"), ("pose", "text"), ("acc", "text"),
    ]
    assert modality_pairs(MODALITIES, "text_anchor") == [("video", "text"), ("pose", "text"), ("acc", "text")]
    with pytest.raises(ValueError, match="unknown loss form"):
        modality_pairs(MODALITIES, "star")
    with pytest.raises(ValueError, match="needs the 'text'"):
        modality_pairs(("video", "pose"), "text_anchor")


def test_constructor_validates_weights() -> None:
    with pytest.raises(ValueError, match="unknown pairs"):
        MuJoLoss(form="text_anchor", pair_weights={"video-pose": 1.0})
    with pytest.raises(ValueError, match="> 0"):
        MuJoLoss(pair_weights={"video-pose": 0.0})


def test_forward_validates_inputs() -> None:
    feats = random_features(4)
    scale = torch.tensor(10.0, dtype=torch.float64)
    with pytest.raises(ValueError, match="lack modalities"):
        MuJoLoss()({m: feats[m] for m in ("video", "pose")}, None, scale)
    with pytest.raises(ValueError, match="bool tensor"):
        MuJoLoss()(feats, {"video": torch.ones(4)}, scale)


@pytest.mark.parametrize("form", ["all_pairs", "text_anchor"])
@pytest.mark.parametrize("mask_kind", ["full", "missing"])
def test_matches_reference(form: str, mask_kind: str) -> None:
    masks = make_masks(mask_kind, world=2)
    feats = random_features(2 * LOCAL_BATCH)
    log_scale = torch.tensor(2.5, dtype=torch.float64, requires_grad=True)
    out = MuJoLoss(form=form, pair_weights=WEIGHTS[form])(feats, masks, log_scale.exp())
    got = torch.autograd.grad(out.loss, [*feats.values(), log_scale])

    ref_feats = {m: f.detach().clone().requires_grad_() for m, f in feats.items()}
    ref_log_scale = log_scale.detach().clone().requires_grad_()
    pairs = modality_pairs(MODALITIES, form)
    ref, ref_pairs = reference_loss(ref_feats, masks, ref_log_scale.exp(), pairs, WEIGHTS[form])
    want = torch.autograd.grad(ref, [*ref_feats.values(), ref_log_scale], allow_unused=True, materialize_grads=True)

    close(out.loss, ref, "loss")
    assert out.per_pair.keys() == ref_pairs.keys()
    for k, v in ref_pairs.items():
        close(out.per_pair[k], v.detach(), k)
    for name, g, w in zip([*MODALITIES, "log_scale"], got, want):
        close(g, w, f"grad {name}")
    if mask_kind == "missing":  # video-acc and pose-text never co-occur: dropped from the average
        assert "video-acc" not in out.per_pair and "pose-text" not in out.per_pair


def test_masked_sample_is_neither_anchor_nor_negative() -> None:
    masks = make_masks("missing", world=2)
    feats = random_features(2 * LOCAL_BATCH)
    scale = torch.tensor(14.0, dtype=torch.float64)
    loss_fn = MuJoLoss()
    out = loss_fn(feats, masks, scale)
    grads = torch.autograd.grad(out.loss, list(feats.values()))
    moved = {m: f.detach().clone() for m, f in feats.items()}
    for m in MODALITIES:  # replace the embeddings of absent modalities by anything else
        absent = ~masks[m]
        moved[m][absent] = F.normalize(torch.randn(int(absent.sum()), EMBED_DIM, dtype=torch.float64), dim=1)
    close(loss_fn(moved, masks, scale).loss, out.loss.detach(), "loss with moved absent embeddings")
    for m, g in zip(MODALITIES, grads):
        assert torch.all(g[~masks[m]] == 0), f"absent {m} embeddings received gradient"


def test_no_valid_pair_gives_zero_loss() -> None:
    feats = random_features(5)
    log_scale = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    masks = {m: torch.zeros(5, dtype=torch.bool) for m in MODALITIES}
    out = MuJoLoss()(feats, masks, log_scale.exp())
    assert out.loss.item() == 0.0 and out.per_pair == {}
    out.loss.backward()
    assert all(torch.all(f.grad == 0) for f in feats.values())


def test_symmetric() -> None:
    feats = random_features(7)
    scale = torch.tensor(9.0, dtype=torch.float64)
    forward = MuJoLoss(modalities=("video", "pose"))(feats, None, scale)
    swapped = MuJoLoss(modalities=("video", "pose"))({"video": feats["pose"], "pose": feats["video"]}, None, scale)
    reordered = MuJoLoss(modalities=("pose", "video"))(feats, None, scale)
    close(swapped.loss, forward.loss, "swapped roles")
    close(reordered.loss, forward.loss, "reordered modalities")
    # the loss is the mean of both directions, not just one of them
    logits = scale * feats["video"] @ feats["pose"].T
    one_way = F.cross_entropy(logits, torch.arange(7))
    other_way = F.cross_entropy(logits.T, torch.arange(7))
    close(forward.loss, (one_way + other_way) / 2, "both directions")
    assert not torch.isclose(one_way, other_way)


def test_local_and_naive_agree_in_one_process() -> None:
    masks = make_masks("missing", world=2)
    feats = random_features(2 * LOCAL_BATCH)
    scale = torch.tensor(11.0, dtype=torch.float64)
    local = MuJoLoss(local_loss=True)(feats, masks, scale)
    naive = MuJoLoss(local_loss=False)(feats, masks, scale)
    close(local.loss, naive.loss, "local vs naive")


def test_clamp_logit_scale() -> None:
    param = nn.Parameter(torch.tensor(math.log(250.0)))
    clamp_logit_scale_(param)
    assert param.item() == pytest.approx(math.log(100.0))
    assert param.requires_grad and param.grad_fn is None
    param = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
    clamp_logit_scale_(param)
    assert param.item() == pytest.approx(math.log(1 / 0.07))
    clamp_logit_scale_(param, max_scale=5.0)
    assert param.item() == pytest.approx(math.log(5.0))
    with pytest.raises(ValueError):
        clamp_logit_scale_(param, max_scale=0.0)


def test_gather_features_is_identity_without_process_group() -> None:
    x = torch.randn(3, 4)
    assert gather_features(x) is x and gather_features(x, with_grad=False) is x


def _chunks(inputs: dict[str, Tensor], masks: dict[str, Tensor] | None, size: int) -> list[tuple]:
    """Split a batch into (inputs, masks) chunks of ``size`` samples."""

    def cut(x: dict[str, Tensor] | None, i: int) -> dict[str, Tensor] | None:
        return None if x is None else {m: v[i : i + size] for m, v in x.items()}

    batch = len(next(iter(inputs.values())))
    return [(cut(inputs, i), cut(masks, i)) for i in range(0, batch, size)]


def _plain_step(model: TinyMuJo, criterion: MuJoLoss, chunks: list[tuple]) -> Tensor:
    """Embed the chunks one after another with a graph (same RNG draws as the cache), one loss, one backward."""
    outs = [model(inputs) for inputs, _ in chunks]
    feats = {m: torch.cat([o[m] for o in outs]) for m in MODALITIES}
    masks = None if chunks[0][1] is None else {m: torch.cat([c[1][m] for c in chunks]) for m in MODALITIES}
    loss = criterion(feats, masks, model.log_scale.exp()).loss
    loss.backward()
    return loss.detach()


def _cached_step(model: TinyMuJo, criterion: MuJoLoss, chunks: list[tuple]) -> Tensor:
    return grad_cache_step(
        lambda chunk: (model(chunk[0]), chunk[1]),
        chunks,
        lambda feats, masks: criterion(feats, masks, model.log_scale.exp()),
    )


def _grads(model: nn.Module) -> dict[str, Tensor]:
    return {name: p.grad.clone() for name, p in model.named_parameters()}


def test_grad_cache_matches_plain_step_with_dropout() -> None:
    inputs = make_inputs(12)
    chunks = _chunks(inputs, make_masks("missing", world=2), size=4)
    criterion = MuJoLoss()
    results = []
    for step in (_plain_step, _cached_step):
        model = make_model(dropout=0.3)
        torch.manual_seed(7)
        loss = step(model, criterion, chunks)
        results.append((loss, _grads(model), torch.get_rng_state()))
    (plain_loss, plain_grads, plain_rng), (cached_loss, cached_grads, cached_rng) = results
    close(cached_loss, plain_loss, "loss")
    for name in plain_grads:
        close(cached_grads[name], plain_grads[name], f"grad {name}")
    assert plain_grads["log_scale"].abs().item() > 0
    assert torch.equal(plain_rng, cached_rng)
    model = make_model(dropout=0.3)  # the check has teeth: dropout changes the embeddings
    assert not torch.allclose(model(inputs)["pose"], model(inputs)["pose"])


# ------------------------------------------------------------------------------------------------- distributed


@dataclass(frozen=True)
class Case:
    """One distributed exactness check."""

    form: str
    masks: str
    local_loss: bool

    @property
    def name(self) -> str:
        return f"{self.form}/{self.masks}/{'local' if self.local_loss else 'naive'}"

    def criterion(self) -> MuJoLoss:
        return MuJoLoss(form=self.form, pair_weights=WEIGHTS[self.form], local_loss=self.local_loss)


CASES = [
    Case(form, masks, local)
    for form in ("all_pairs", "text_anchor")
    for masks in ("full", "missing", "empty_rank")
    for local in (True, False)
] + [Case("all_pairs", "none", True)]


@dataclass(frozen=True)
class Expected:
    """Single-process loss, per-pair losses and parameter gradients on the concatenated batch."""

    loss: Tensor
    per_pair: dict[str, Tensor]
    grads: dict[str, Tensor]


def single_process(case: Case, world: int) -> Expected:
    model = make_model()
    inputs, masks = make_inputs(world * LOCAL_BATCH), make_masks(case.masks, world)
    out = case.criterion()(model(inputs), masks, model.log_scale.exp())
    out.loss.backward()
    return Expected(out.loss.detach(), out.per_pair, _grads(model))


def _local(x: dict[str, Tensor] | None, rank: int) -> dict[str, Tensor] | None:
    return None if x is None else {m: v[rank * LOCAL_BATCH : (rank + 1) * LOCAL_BATCH] for m, v in x.items()}


def _mean(x: Tensor, world: int) -> Tensor:
    x = x.detach().clone()
    dist.all_reduce(x)
    return x / world


def _check_against(expected: Expected, loss: Tensor, per_pair: dict[str, Tensor] | None, model: nn.Module,
                   world: int, what: str) -> None:
    close(_mean(loss, world), expected.loss, f"{what} loss")
    if per_pair is not None:
        assert per_pair.keys() == expected.per_pair.keys(), what
        for k, v in expected.per_pair.items():
            close(_mean(per_pair[k], world), v, f"{what} pair {k}")
    for name, p in model.named_parameters():  # what DDP does: all_reduce SUM / W
        close(_mean(p.grad, world), expected.grads[name], f"{what} grad {name}")


def _worker(rank: int, world: int, expected: dict[str, Expected]) -> None:
    inputs = _local(make_inputs(world * LOCAL_BATCH), rank)
    for case in CASES:
        model = make_model()
        masks = _local(make_masks(case.masks, world), rank)
        out = case.criterion()(model(inputs), masks, model.log_scale.exp())
        out.loss.backward()
        _check_against(expected[case.name], out.loss, out.per_pair, model, world, case.name)

    # gather without gradient: same loss value (its gradients are documented as inexact)
    model = make_model()
    no_grad_gather = MuJoLoss(pair_weights=WEIGHTS["all_pairs"], gather_with_grad=False)
    loss = no_grad_gather(model(inputs), _local(make_masks("missing", world), rank), model.log_scale.exp()).loss
    close(_mean(loss, world), expected["all_pairs/missing/local"].loss, "gather_with_grad=False loss")

    # gradient cache on each rank's local batch, the gather inside the loss: exact as well
    case = Case("all_pairs", "missing", True)
    chunks = _chunks(inputs, _local(make_masks("missing", world), rank), size=2)
    model = make_model()
    loss = _cached_step(model, case.criterion(), chunks)
    _check_against(expected[case.name], loss, None, model, world, "grad cache")

    # with dropout, the cache reproduces the plain step exactly (RNG replayed per chunk)
    results = []
    for step in (_plain_step, _cached_step):
        model = make_model(dropout=0.3)
        torch.manual_seed(100 + rank)
        loss = step(model, case.criterion(), chunks)
        results.append((_mean(loss, world), {n: _mean(g, world) for n, g in _grads(model).items()}))
    (plain_loss, plain_grads), (cached_loss, cached_grads) = results
    close(cached_loss, plain_loss, "dropout grad cache loss")
    for name in plain_grads:
        close(cached_grads[name], plain_grads[name], f"dropout grad cache grad {name}")

    if world == 2:  # unequal local batch sizes are refused on every rank
        feats = random_features(3 - rank)
        with pytest.raises(ValueError, match="equal local batch sizes"):
            MuJoLoss()(feats, None, torch.tensor(10.0, dtype=torch.float64))


@pytest.mark.parametrize("world", [2, 4])
def test_distributed_matches_single_process(world: int) -> None:
    expected = {case.name: single_process(case, world) for case in CASES}
    assert set(expected["all_pairs/missing/local"].per_pair) == {"video-pose", "video-text", "pose-acc", "acc-text"}
    assert expected["all_pairs/none/local"].per_pair == {}
    run_distributed(_worker, world, expected)
