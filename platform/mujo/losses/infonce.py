"""Multimodal symmetric InfoNCE (MuJo, arXiv 2406.03857, Eq. 1-3) with an exact distributed form.

Every modality (``video``, ``pose``, ``acc``, ``text``) has one L2-normalised embedding per sample in a shared space.
For a pair of modalities (a, c) and the samples V that have both, the pair loss is the symmetric InfoNCE

    L_ac = 1/2 * [ 1/|V| sum_{i in V} CE(s * a_i . c_V, i)  +  1/|V| sum_{i in V} CE(s * c_i . a_V, i) ]

(``s`` = ``logit_scale`` = exp(learnable log-scale), ``CE`` = softmax cross-entropy over the columns in V), and the
total is the weighted mean of L_ac over the pairs of the chosen form that have at least one valid sample in the
global batch (all C(M, 2) pairs, or only the pairs with ``text``).

A sample without modality m takes part in no pair with m, neither as an anchor (its rows are skipped) nor as a
negative (its columns are set to -inf before the softmax). ``|V|`` is counted over the *global* batch (from the
presence masks, all-gathered without gradient), so the result does not depend on how samples are spread over ranks.

Distributed (``torch.distributed`` initialised, W ranks, global batch B = W * b): all ranks must pass the same local
batch size b (checked: ValueError on every rank otherwise). Every rank gathers all modalities once per step, in
one collective, with gradients flowing through the gather (``torch.distributed.nn.functional.all_gather``). In the
default *local* form a rank computes only its own b rows of every similarity matrix against all B columns (labels
``arange(b) + b * rank``), in both directions, so its logits cost O(b * B) per pair; the *naive* form
(``local_loss=False``) computes the full B x B matrices on every rank (O(B^2)) and is kept to measure that
difference (``benchmarks/loss_memory.py``). The *tiled* form (``impl="tiled"``, :mod:`mujo.losses.tiled`) computes
the same rows as the local form but never holds a b x B matrix: the row log-sum-exps are accumulated tile by tile
and the backward recomputes each tile from them, so its logits cost O(b * tile); with ``ring=True`` the columns
travel between ranks in blocks of b instead of being all-gathered, and a rank holds O(b * M * D) in all. It returns
the local form's values and gradients (same scaling, same contract).

Exactness contract: with each rank holding a slice of the global batch, (1) the mean over ranks of the per-rank
``loss`` equals the single-process loss on the concatenated batch and (2) averaging the per-rank gradients
(DDP: all_reduce SUM / W) gives exactly the single-process gradient, for encoder parameters and the temperature
alike. Derivation (L = single-process loss, x_r = rank r's local features, theta = parameters):

* The backward of ``all_gather`` sums, over all ranks, the gradients that arrive at rank r's chunk and returns that
  sum to rank r (reduce-scatter, or all-to-all + sum on gloo).
* Local form: rank r computes l_r = the part of L made of its own rows (pair sums divided by the global |V|), so
  sum_r l_r = L. Rows and columns are both read from the gathered tensor, so rank r's features receive
  sum_r' d l_r'/d x_r = dL/dx_r (as rows on rank r, as columns on every rank), hence rank r's parameter gradient
  is the part of dL/dtheta that flows through x_r, and sum_r of those is dL/dtheta. DDP divides by W, so each
  rank returns ``loss = W * l_r``: gradients average to dL/dtheta, and the mean of the losses is
  (1/W) sum_r W l_r = L. The temperature is replicated, used only locally, and gets d(W l_r)/ds on rank r, whose
  mean over ranks is dL/ds.
* Naive form: every rank computes L itself from the gathered features, so rank r's features receive
  sum_r' dL/dx_r = W * dL/dx_r through the gather: the parameter gradient on rank r is W times x_r's part of
  dL/dtheta, and the DDP mean is dL/dtheta again without any scaling; the temperature gets dL/ds on every rank.
  So this form returns ``loss = L``.

So a single rank's ``loss`` (and ``per_pair``) in the local form is not the global value: log their mean over ranks.

``gather_with_grad=False`` gathers other ranks' features as constants (rank r keeps the gradient path of its own
chunk only). The loss value is unchanged but the cross-rank gradient terms are dropped, so the exactness contract
does *not* hold for the encoder gradients; it exists for comparison with OpenCLIP's no-grad gather.

:func:`grad_cache_step` adds the gradient cache: embed without a graph, take d loss / d embeddings (the loss, and
its gather, run once on the cached embeddings), then re-embed chunk by chunk with a graph and back-propagate those
gradients, replaying each chunk's RNG state so dropout masks are identical.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist
import torch.distributed.nn  # registers torch.distributed.nn.functional: collectives that carry gradients
import torch.nn.functional as F
from torch import Tensor

from mujo.losses.tiled import build_plan, default_tile_size, tiled_ce_sums
from mujo.schema import MODALITIES

__all__ = [
    "FORMS",
    "IMPLS",
    "MODALITIES",
    "LossOutput",
    "MuJoLoss",
    "clamp_logit_scale_",
    "gather_features",
    "grad_cache_step",
    "modality_pairs",
    "pair_key",
]

FORMS: tuple[str, ...] = ("all_pairs", "text_anchor")
IMPLS: tuple[str, ...] = ("tiled", "local", "naive")

Chunk = TypeVar("Chunk")
Masks = Mapping[str, Tensor] | None


def pair_key(a: str, b: str) -> str:
    """Return the key of the modality pair (a, b), e.g. ``"video-pose"``."""
    return f"{a}-{b}"


def modality_pairs(modalities: Sequence[str] = MODALITIES, form: str = "all_pairs") -> list[tuple[str, str]]:
    """Return the modality pairs of a loss form, in the order of ``modalities``.

    ``"all_pairs"``: all C(M, 2) pairs (a, b) with a before b in ``modalities``. ``"text_anchor"``: the subset of
    those pairs that contain ``"text"`` (so the keys coincide with the all-pairs keys).
    """
    mods = tuple(modalities)
    if len(mods) < 2 or len(set(mods)) != len(mods):
        raise ValueError(f"need at least two distinct modalities, got {mods}")
    if form not in FORMS:
        raise ValueError(f"unknown loss form {form!r}; expected one of {FORMS}")
    pairs = list(itertools.combinations(mods, 2))
    if form == "text_anchor":
        if "text" not in mods:
            raise ValueError(f"form 'text_anchor' needs the 'text' modality, got {mods}")
        pairs = [p for p in pairs if "text" in p]
    return pairs


def _world() -> tuple[int, int]:
    """Return (world size, rank) of the default process group, or (1, 0) when not distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def gather_features(x: Tensor, with_grad: bool = True) -> Tensor:
    """Concatenate ``x`` of all ranks along dim 0 (rank order); identity when not distributed.

    With ``with_grad`` the gather is ``torch.distributed.nn.functional.all_gather``, whose backward sums the
    gradients of every rank's copy of a chunk and returns the sum to the chunk's owner. Without it, the other ranks'
    chunks are constants and only this rank's own chunk (``x`` itself) keeps its gradient path. Every rank must pass
    a tensor of the same shape.
    """
    world, rank = _world()
    if world == 1:
        return x
    x = x.contiguous()  # collectives need contiguous tensors (and once returned wrong gradients without)
    if with_grad:
        with warnings.catch_warnings():
            # torch 2.13 marks this autograd gather as deprecated in favour of the functional collectives.
            warnings.filterwarnings("ignore", message=r".*all_gather is deprecated", category=FutureWarning)
            chunks = list(torch.distributed.nn.functional.all_gather(x))
    else:
        chunks = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(chunks, x.detach())
        chunks[rank] = x
    return torch.cat(chunks, dim=0)


def _gather_constant(x: Tensor) -> Tensor:
    """All-gather ``x`` without gradient (identity when not distributed)."""
    world, _ = _world()
    if world == 1:
        return x
    chunks = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(chunks, x.contiguous())
    return torch.cat(chunks, dim=0)


@dataclass
class LossOutput:
    """Result of :class:`MuJoLoss`.

    ``loss``: this rank's loss to back-propagate (see the module docstring for its scaling; the mean over ranks is
    the global loss). ``per_pair``: detached per-pair losses keyed ``"a-b"``, with the same scaling (mean over ranks
    = the global pair loss), only for pairs with at least one valid sample in the global batch.
    """

    loss: Tensor
    per_pair: dict[str, Tensor]


class MuJoLoss(torch.nn.Module):
    """Symmetric InfoNCE averaged over modality pairs, with masks and an exact distributed local form.

    Args:
        modalities: modality names; ``features`` must have all of them.
        form: ``"all_pairs"`` or ``"text_anchor"`` (see :func:`modality_pairs`).
        pair_weights: positive weight per pair key (``"video-pose"``, ...); missing keys weigh 1. The total is
            sum_p w_p L_p / sum_p w_p over the pairs that contribute.
        local_loss: compute only this rank's rows against all gathered columns (O(b * B) logits per pair) instead of
            the full B x B matrices on every rank. ``False`` means ``impl="naive"``.
        gather_with_grad: let gradients flow through the feature gather (needed for exact gradients).
        impl: ``"tiled"``, ``"local"`` or ``"naive"`` (default: from ``local_loss``).
        ring: with ``impl="tiled"``, pass column blocks around a ring of ranks instead of all-gathering them.
        tile_size: rows and columns of one logit tile of the tiled form (default per device: ``DEFAULT_TILE``).

    Distributed use assumes every rank passes the same local batch size and embedding size (checked, ValueError).
    """

    def __init__(
        self,
        modalities: Sequence[str] = MODALITIES,
        form: str = "all_pairs",
        pair_weights: Mapping[str, float] | None = None,
        local_loss: bool = True,
        gather_with_grad: bool = True,
        impl: str | None = None,
        ring: bool = False,
        tile_size: int | None = None,
    ) -> None:
        super().__init__()
        if impl is None:
            impl = "local" if local_loss else "naive"
        if impl not in IMPLS:
            raise ValueError(f"unknown loss implementation {impl!r}; expected one of {IMPLS}")
        if not local_loss and impl != "naive":
            raise ValueError(f"local_loss=False is the naive form; it contradicts impl={impl!r}")
        if ring and impl != "tiled":
            raise ValueError(f"ring exchange needs impl='tiled', got {impl!r}")
        if ring and not gather_with_grad:
            raise ValueError("ring exchange always carries the column gradients back; gather_with_grad=False is "
                             "only available with the gathered forms")
        if tile_size is not None and tile_size < 1:
            raise ValueError(f"tile_size must be >= 1, got {tile_size}")
        self.impl = impl
        self.ring = ring
        self.tile_size = tile_size
        self.modalities: tuple[str, ...] = tuple(modalities)
        self.form = form
        self.pairs = modality_pairs(self.modalities, form)
        keys = [pair_key(a, b) for a, b in self.pairs]
        weights = dict(pair_weights or {})
        unknown = sorted(set(weights) - set(keys))
        if unknown:
            raise ValueError(f"pair_weights has unknown pairs {unknown}; pairs of form {form!r}: {keys}")
        bad = {k: w for k, w in weights.items() if not (math.isfinite(w) and w > 0)}
        if bad:
            raise ValueError(f"pair weights must be finite and > 0, got {bad}")
        self.pair_weights: dict[str, float] = {k: float(weights.get(k, 1.0)) for k in keys}
        self.local_loss = impl != "naive"
        self.gather_with_grad = gather_with_grad

    @property
    def impl_name(self) -> str:
        """Which implementation runs: ``tiled+ring``, ``tiled``, ``local`` or ``naive``."""
        return "tiled+ring" if self.ring else self.impl

    def forward(self, features: Mapping[str, Tensor], masks: Masks, logit_scale: Tensor) -> LossOutput:
        """Compute the loss of this rank.

        Args:
            features: modality -> (b, D) local embeddings, already L2-normalised (not re-normalised here).
            masks: modality -> bool (b,), True where the sample has the modality; ``None`` or a missing key means
                all present.
            logit_scale: scalar tensor s = exp(log-scale) multiplying the cosine similarities (may require grad).
        """
        world, rank = _world()
        feats = self._check_features(features)
        b, dim, device = feats[0].shape[0], feats[0].shape[1], feats[0].device
        width = dim * len(self.modalities)
        local_mask = self._stack_masks(masks, b, device)  # (b, M) bool
        if world > 1:
            self._check_equal_local_batch(b, width, world, device)
        global_mask = _gather_constant(local_mask.to(torch.uint8)).bool()  # (B, M)
        if self.impl == "tiled":
            return self._forward_tiled(feats, local_mask, global_mask, logit_scale, world, rank)
        local = torch.cat(feats, dim=1)  # (b, M * D)
        gathered = gather_features(local, self.gather_with_grad)  # (B, M * D)
        big_b = gathered.shape[0]
        columns = gathered.view(big_b, len(self.modalities), dim).unbind(1)  # M views (B, D), no copies
        if self.local_loss:
            lo, hi, factor = rank * b, (rank + 1) * b, float(world)  # loss = W * l_r (module docstring)
        else:
            lo, hi, factor = 0, big_b, 1.0
        # Anchors are this rank's rows of the gathered features (a view: nothing else is kept for the temperature's
        # gradient). The temperature scales the anchors once, not the logits, so no similarity-sized tensor is kept
        # for its gradient either.
        rows = (logit_scale * gathered[lo:hi]).view(hi - lo, len(self.modalities), dim).unbind(1)

        index = {m: i for i, m in enumerate(self.modalities)}
        valid = torch.stack([global_mask[:, index[a]] & global_mask[:, index[c]] for a, c in self.pairs])  # (P, B)
        counts = torch.stack([valid.sum(1), valid[:, lo:hi].sum(1)], dim=1).tolist()  # one host sync

        terms: dict[str, Tensor] = {}
        for (a, c), pair_valid, (n_global, n_rows) in zip(self.pairs, valid, counts):
            if n_global == 0:
                continue  # the pair has no sample in the global batch: it contributes nothing
            key = pair_key(a, c)
            if n_rows == 0:
                terms[key] = local.new_zeros(())  # the pair exists globally but has no row on this rank
                continue
            row_valid = pair_valid[lo:hi]
            if n_rows == hi - lo:
                row_index = None
                labels = torch.arange(lo, hi, device=local.device)
            else:
                row_index = row_valid.nonzero().squeeze(1)
                labels = row_index + lo
            col_invalid = None if n_global == big_b else ~pair_valid
            ce_sum = _cross_entropy_sum(rows[index[a]], columns[index[c]], row_index, labels, col_invalid)
            ce_sum = ce_sum + _cross_entropy_sum(rows[index[c]], columns[index[a]], row_index, labels, col_invalid)
            terms[key] = ce_sum * (factor / (2 * n_global))

        if terms:
            total_weight = sum(self.pair_weights[k] for k in terms)
            loss = sum(self.pair_weights[k] * t for k, t in terms.items()) / total_weight
        else:
            loss = gathered.new_zeros(())
        if all(n_rows == 0 for _, n_rows in counts):
            # This rank has no row in any pair, so its loss would not depend on the gathered features, but the
            # gather's backward is a collective that every rank must join: keep the gather (and the temperature) in
            # the graph through an exact zero. Only here, because its gradient is a full-size zero tensor that
            # would otherwise be allocated at the start of the backward pass, while all logits are still alive.
            loss = loss + gathered[:0].sum() + logit_scale.reshape(-1)[:0].sum()
        return LossOutput(loss=loss, per_pair={k: t.detach() for k, t in terms.items()})

    def _forward_tiled(self, feats: list[Tensor], local_mask: Tensor, global_mask: Tensor, logit_scale: Tensor,
                       world: int, rank: int) -> LossOutput:
        """The tiled form (``mujo.losses.tiled``): this rank's rows, every column, no logit matrix kept.

        Per pair the tiled function returns the summed cross-entropies of this rank's valid rows in both directions
        (LSE sums - 2 * s * the positive cosines). Scaling as in the local form: ``loss = W * l_r``.
        """
        ref = feats[0]
        index = {m: i for i, m in enumerate(self.modalities)}
        pairs = [(index[a], index[c]) for a, c in self.pairs]
        valid = torch.stack([global_mask[:, a] & global_mask[:, c] for a, c in pairs])  # (P, B)
        tile = self.tile_size or default_tile_size(ref.device)
        plan, n_global, _ = build_plan(pairs, local_mask, valid, ref.shape[1], rank, world, tile, self.ring)
        scale = logit_scale if torch.is_tensor(logit_scale) else ref.new_tensor(logit_scale)
        if not plan.directions:  # no pair has a valid sample anywhere: an exact zero, still connected to the inputs
            return LossOutput(loss=sum(f[:0].sum() for f in feats) + scale.reshape(-1)[:0].sum(), per_pair={})
        columns = None if self.ring else gather_features(torch.cat(feats, dim=1), self.gather_with_grad)
        ce_sums = tiled_ce_sums(plan, feats, scale, columns)  # (P,) summed cross-entropies of this rank's rows
        terms: dict[str, Tensor] = {}
        factor = float(world)
        for p, (a, c) in enumerate(self.pairs):
            if n_global[p] > 0:
                terms[pair_key(a, c)] = ce_sums[p] * (factor / (2 * n_global[p]))
        total_weight = sum(self.pair_weights[k] for k in terms)
        loss = sum(self.pair_weights[k] * t for k, t in terms.items()) / total_weight
        return LossOutput(loss=loss, per_pair={k: t.detach() for k, t in terms.items()})

    def _check_features(self, features: Mapping[str, Tensor]) -> list[Tensor]:
        """Check the features: every modality present, (b, D) tensors of one shape, dtype and device; returns them
        in ``self.modalities`` order."""
        missing = [m for m in self.modalities if m not in features]
        if missing:
            raise ValueError(f"features lack modalities {missing}; expected {self.modalities}")
        feats = [features[m] for m in self.modalities]
        ref = feats[0]
        for m, f in zip(self.modalities, feats):
            if f.dim() != 2 or f.shape != ref.shape or f.dtype != ref.dtype or f.device != ref.device:
                raise ValueError(
                    f"every modality must be a (b, D) tensor of one shape, dtype and device; "
                    f"{self.modalities[0]}: {tuple(ref.shape)} {ref.dtype} {ref.device}, "
                    f"{m}: {tuple(f.shape)} {f.dtype} {f.device}"
                )
        return feats

    def _stack_masks(self, masks: Masks, b: int, device: torch.device) -> Tensor:
        """Return the (b, M) bool presence matrix; absent masks mean all present."""
        cols = []
        for m in self.modalities:
            mask = None if masks is None else masks.get(m)
            if mask is None:
                cols.append(torch.ones(b, dtype=torch.bool, device=device))
                continue
            if mask.dtype != torch.bool or mask.shape != (b,):
                raise ValueError(
                    f"mask of {m!r} must be a bool tensor of shape ({b},), got {mask.dtype} {tuple(mask.shape)}"
                )
            cols.append(mask.to(device))
        return torch.stack(cols, dim=1)

    @staticmethod
    def _check_equal_local_batch(b: int, width: int, world: int, device: torch.device) -> None:
        """Raise ValueError on every rank unless all ranks have the same local batch size and feature width."""
        sizes = _gather_constant(torch.tensor([[b, width]], dtype=torch.int64, device=device)).tolist()
        if any(s != sizes[0] for s in sizes):
            raise ValueError(
                f"MuJoLoss assumes equal local batch sizes on all {world} ranks; (batch, M * D) per rank: {sizes}"
            )


def _cross_entropy_sum(
    rows: Tensor, columns: Tensor, row_index: Tensor | None, labels: Tensor, col_invalid: Tensor | None
) -> Tensor:
    """Sum of softmax cross-entropies of (selected) scaled anchor rows against all columns.

    ``rows``: (n, D) anchors, already multiplied by the logit scale; ``row_index`` selects the valid ones (None: all).
    ``columns``: (B, D) candidates; ``col_invalid`` (B,) marks columns removed from the softmax (set to -inf).
    ``labels``: column index of each selected row's positive.
    """
    anchors = rows if row_index is None else rows.index_select(0, row_index)
    logits = anchors @ columns.T
    if col_invalid is not None:
        logits = logits.masked_fill(col_invalid, float("-inf"))
    return F.cross_entropy(logits, labels, reduction="sum")


def clamp_logit_scale_(param: torch.nn.Parameter, max_scale: float = 100.0) -> None:
    """Clamp a learnable log-scale parameter in place to at most ln(``max_scale``) (no autograd record)."""
    if not max_scale > 0:
        raise ValueError(f"max_scale must be > 0, got {max_scale}")
    with torch.no_grad():
        param.clamp_(max=math.log(max_scale))


@dataclass(frozen=True)
class _RngState:
    """Snapshot of the CPU and (if initialised) CUDA random generators."""

    cpu: Tensor
    cuda: tuple[Tensor, ...]

    @classmethod
    def capture(cls) -> _RngState:
        """Record the current generator states."""
        cuda = tuple(torch.cuda.get_rng_state_all()) if torch.cuda.is_initialized() else ()
        return cls(cpu=torch.get_rng_state(), cuda=cuda)

    def restore(self) -> None:
        """Reset the generators to this snapshot."""
        torch.set_rng_state(self.cpu)
        if self.cuda:
            torch.cuda.set_rng_state_all(list(self.cuda))


def _concat_masks(chunk_masks: Sequence[Masks], sizes: Sequence[int], names: Sequence[str]) -> dict[str, Tensor] | None:
    """Concatenate per-chunk masks; a chunk without a modality's mask counts as all present."""
    out = {}
    for m in names:
        given = [None if masks is None else masks.get(m) for masks in chunk_masks]
        device = next((mask.device for mask in given if mask is not None), None)
        if device is None:
            continue
        out[m] = torch.cat(
            [torch.ones(n, dtype=torch.bool, device=device) if mask is None else mask for mask, n in zip(given, sizes)]
        )
    return out or None


def grad_cache_step(
    embed_fn: Callable[[Chunk], tuple[Mapping[str, Tensor], Masks]],
    chunks: Sequence[Chunk],
    loss_fn: Callable[[dict[str, Tensor], dict[str, Tensor] | None], LossOutput | Tensor],
) -> Tensor:
    """One gradient-cached forward/backward over ``chunks`` (this rank's local batch); returns the detached loss.

    Pass 1 embeds every chunk under ``torch.no_grad()``, recording the RNG state before each chunk, concatenates
    the embeddings into leaf tensors that require grad and calls ``loss_fn(features, masks)`` on them once (in a
    distributed run, the loss's feature gather happens here, on the cached embeddings). Its backward yields
    d loss / d embeddings and, because the loss depends on the temperature directly and not through the
    embeddings, also accumulates the temperature's gradient into its parameter: build ``logit_scale`` from the
    parameter inside ``loss_fn`` (e.g. ``model.log_scale.exp()``). Pass 2 restores each chunk's RNG state (so
    dropout draws the same masks), re-embeds it with a graph and calls ``torch.autograd.backward`` with the
    chunk's slice of the cached gradients. Afterwards the RNG is left where pass 1 left it.

    Parameter gradients are accumulated into ``.grad`` exactly as one plain forward/backward of the concatenated
    chunks would (same RNG draws), at the memory of one chunk's graph plus the loss on the embeddings. Layers with
    running statistics (BatchNorm) update them in both passes. Under DDP, the per-chunk backward calls of pass 2
    each trigger gradient synchronisation unless all but the last run under ``no_sync()``.

    ``embed_fn(chunk)`` returns (features dict, masks dict or None) for that chunk.
    """
    if not chunks:
        raise ValueError("grad_cache_step needs at least one chunk")
    states: list[_RngState] = []
    cached: list[Mapping[str, Tensor]] = []
    chunk_masks: list[Masks] = []
    with torch.no_grad():
        for chunk in chunks:
            states.append(_RngState.capture())
            feats, masks = embed_fn(chunk)
            cached.append(feats)
            chunk_masks.append(masks)
    after_pass_1 = _RngState.capture()

    names = list(cached[0])
    sizes = [feats[names[0]].shape[0] for feats in cached]
    leaves = {m: torch.cat([feats[m] for feats in cached]).requires_grad_() for m in names}
    out = loss_fn(leaves, _concat_masks(chunk_masks, sizes, names))
    loss = out.loss if isinstance(out, LossOutput) else out
    loss.backward()

    starts = list(itertools.accumulate(sizes, initial=0))
    for state, chunk, lo, hi in zip(states, chunks, starts, starts[1:]):
        state.restore()
        feats, _ = embed_fn(chunk)
        used = [m for m in names if leaves[m].grad is not None]
        torch.autograd.backward([feats[m] for m in used], [leaves[m].grad[lo:hi] for m in used])
    after_pass_1.restore()
    return loss.detach()
