"""The log-sum-exp part of the MuJo loss, tiled (no logit matrix is ever held) and optionally ring-exchanged.

For a pair (a, c) and the valid samples V, the summed cross-entropies of this rank's rows are

    sum_{i in rows, i in V} [ LSE_{j in V}(s a_i . c_j) - s a_i . c_i ]  +  the same with a and c swapped.

The positive logits ``s a_i . c_i`` are local (both embeddings of sample i live on its rank); the row-wise
log-sum-exps run over all B columns. One custom autograd function computes both, for every pair and both directions
at once (the positives inside it too, so their gradients add into the same buffers instead of new ones):

* **Forward**: for each square tile of (local rows) x (columns) and each direction (row modality a, column
  modality c), the logits ``s * a_rows @ c_cols.T`` of that tile only, invalid columns set to -inf, reduced to a
  per-row log-sum-exp that is merged into the running one (``logaddexp``: numerically stable, any tile order).
  The only state kept across tiles and saved for the backward is one float per (row, direction).
* **Backward**: each tile's softmax is recomputed from the saved row LSE: ``P = exp(logits - lse)``, scaled by the
  upstream gradient of its row (zero for rows that are not valid in the pair; folded into the exponent as
  ``log w - lse`` when it is non-negative, which is the usual case), and spent at once on the rows' gradient
  (``P @ cols``), the columns' gradient (``P.T @ rows``) and, through ``sum_i a_i . (P @ cols)_i``, the
  temperature's. A tile costs one matmul forward and three backward, against one and two for a materialised
  matrix. The scale multiplies inside the matmuls (``alpha``), so no scaled copy of the rows is kept.

Rows of samples that lack the row modality are zeroed, one row tile at a time, before the matmul (their logits are
finite, and their gradient weight is zero), so nothing read from an absent embedding reaches a result. The function
takes the M modalities as separate (b, D) tensors, so the ring form makes no packed copy of them.

Columns come from one of two sources:

* **gathered**: the caller passes all B columns (``gather_features``, the autograd all-gather), and the function
  returns their gradient; the gather's backward sums it over ranks. Memory: the B x M*D gathered features and their
  gradient, plus O(b * tile) for the logits.
* **ring** (``torch.distributed`` point-to-point, ``batch_isend_irecv``: gloo or NCCL): the columns travel as W
  blocks of b rows, one modality at a time (the masks are the globally gathered presence bits, a few bytes per
  sample). At step t rank r holds block (r - t) mod W; when it has computed the tiles of one modality's block it
  sends that block to rank r + 1 and receives the next one from rank r - 1 while it computes the next modality's
  tiles. In the backward the blocks go round again, each with the gradient of its columns: rank r adds its
  contribution and passes the sum on, and after W hops every block's gradient arrives at its owner, complete. A
  rank holds about one block and one gradient buffer of every modality (plus those of the modality in flight) and
  its rows' gradient: O(b * M * D) in all, nothing of size B.

Every rank must call the forward and backward (both are collectives in the ring form): :class:`MuJoLoss` keeps the
function's output in the loss of every rank whenever any pair has a valid sample in the global batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["DEFAULT_TILE", "TilePlan", "default_tile_size", "tiled_ce_sums"]

DEFAULT_TILE = {"cpu": 1024, "cuda": 4096}  # rows and columns of one logit tile (see benchmarks/README.md)
_BLOCK_TAG, _GRAD_TAG = 100, 200  # + modality: point-to-point tags (gloo matches messages per peer and tag)


def default_tile_size(device: torch.device) -> int:
    """Tile edge for a device: small enough for the CPU's caches, large enough to keep a GPU busy."""
    return DEFAULT_TILE.get(device.type, DEFAULT_TILE["cuda"])


@dataclass(frozen=True)
class TilePlan:
    """What the tiled function needs besides the tensors (built once per step by :class:`MuJoLoss`).

    ``directions``: (pair index, row modality index, column modality index), two per contributing pair.
    ``row_weight_mask``: (P, b) bool, this rank's rows valid in each pair. ``row_present``: (b, M) bool, this
    rank's rows that have each modality; ``present_all[m]``: all of them have modality m. ``col_valid``: (P, B)
    bool, valid columns of each pair in the global batch. ``rows_any[p]``: this rank has a valid row in pair p.
    ``tile_any[k][t][p]`` / ``tile_all[k][t][p]``: column tile t of block k has some / only valid columns of pair p
    (host lists, so no tile needs a device sync).
    """

    n_mod: int
    dim: int
    n_pairs: int
    directions: tuple[tuple[int, int, int], ...]
    row_weight_mask: Tensor
    row_present: Tensor
    present_all: tuple[bool, ...]
    col_valid: Tensor
    rows_any: tuple[bool, ...]
    tile_any: tuple[tuple[tuple[bool, ...], ...], ...]
    tile_all: tuple[tuple[tuple[bool, ...], ...], ...]
    tile: int
    block: int  # b: columns per block (= rows per rank)
    world: int
    rank: int
    ring: bool

    def col_tiles(self) -> list[tuple[int, int]]:
        """(start, end) of the column tiles inside one block."""
        return [(t, min(t + self.tile, self.block)) for t in range(0, self.block, self.tile)]

    def row_tiles(self) -> list[tuple[int, int]]:
        """(start, end) of the row tiles of this rank's rows."""
        return [(t, min(t + self.tile, self.block)) for t in range(0, self.block, self.tile)]


def build_plan(pairs: Sequence[tuple[int, int]], local_present: Tensor, global_valid: Tensor, dim: int, rank: int,
               world: int, tile: int, ring: bool) -> tuple[TilePlan, list[int], list[int]]:
    """Build the plan; returns (plan, global valid count per pair, local valid row count per pair).

    ``pairs``: (modality index, modality index) per pair; only pairs with a valid sample in the global batch get
    directions. ``local_present``: (b, M) bool; ``global_valid``: (P, B) bool. One device-to-host copy for all counts
    and tile flags.
    """
    if tile < 1:
        raise ValueError(f"tile size must be >= 1, got {tile}")
    b = local_present.shape[0]
    n_pairs = global_valid.shape[0]
    if global_valid.shape[1] != world * b:
        raise ValueError(f"global batch {global_valid.shape[1]} != {world} ranks x {b} local rows")
    lo = rank * b
    row_mask = global_valid[:, lo:lo + b]
    starts = list(range(0, b, tile))
    tile_of_col = torch.arange(b, device=global_valid.device) // tile  # tile index within a block
    n_tiles = len(starts)
    # (P, W, n_tiles) valid-column counts per tile, next to the tile sizes, global counts and local row counts
    per_tile = torch.zeros(n_pairs, world, n_tiles, dtype=torch.int64, device=global_valid.device)
    per_tile.index_add_(2, tile_of_col, global_valid.view(n_pairs, world, b).to(torch.int64))
    n_mod = local_present.shape[1]
    host = torch.cat([per_tile.flatten(), global_valid.sum(1), row_mask.sum(1), local_present.sum(0)]).tolist()
    counts = host[: n_pairs * world * n_tiles]
    n_global, n_rows, n_present = (host[n_pairs * world * n_tiles + j * n_pairs:][:n] for j, n in
                                   enumerate((n_pairs, n_pairs, n_mod)))
    sizes = [min(s + tile, b) - s for s in starts]

    def count(p: int, k: int, t: int) -> int:
        return counts[(p * world + k) * n_tiles + t]

    tile_any = tuple(tuple(tuple(count(p, k, t) > 0 for p in range(n_pairs)) for t in range(n_tiles))
                     for k in range(world))
    tile_all = tuple(tuple(tuple(count(p, k, t) == sizes[t] for p in range(n_pairs)) for t in range(n_tiles))
                     for k in range(world))
    directions = []
    for p, (a, c) in enumerate(pairs):
        if n_global[p] > 0:
            directions += [(p, a, c), (p, c, a)]
    plan = TilePlan(
        n_mod=n_mod, dim=dim, n_pairs=n_pairs, directions=tuple(directions), row_weight_mask=row_mask,
        row_present=local_present, present_all=tuple(n == b for n in n_present), col_valid=global_valid,
        rows_any=tuple(n > 0 for n in n_rows), tile_any=tile_any, tile_all=tile_all, tile=tile, block=b, world=world,
        rank=rank, ring=ring,
    )
    return plan, list(n_global), list(n_rows)


def tiled_ce_sums(plan: TilePlan, features: Sequence[Tensor], scale: Tensor, columns: Tensor | None) -> Tensor:
    """Per pair, the summed cross-entropies of this rank's valid rows in both directions: the log-sum-exps over the
    valid columns minus twice the scaled positive cosines.

    ``features``: M tensors (b, D), this rank's embeddings in modality order; ``scale``: the logit scale (scalar
    tensor); ``columns``: (B, M * D) gathered embeddings (modality-major columns), or None for the ring form. Returns
    a (P,) tensor (zero for pairs without directions or without a valid row here) that carries gradients to the
    features, the scale and the gathered columns.
    """
    if len(features) != plan.n_mod:
        raise ValueError(f"expected {plan.n_mod} feature tensors, got {len(features)}")
    if plan.ring != (columns is None):
        raise ValueError("the ring form takes no gathered columns; the gathered form needs them")
    return _TiledCE.apply(plan, scale, *features, *([] if columns is None else [columns]))


class _TiledCE(torch.autograd.Function):
    """Forward: per-pair sums of cross-entropies (LSEs tile by tile). Backward: tiles recomputed from the saved LSEs."""

    @staticmethod
    def forward(ctx, plan: TilePlan, scale: Tensor, *tensors: Tensor) -> Tensor:  # type: ignore[override]
        feats = [t.detach() for t in tensors[:plan.n_mod]]
        gathered = tensors[plan.n_mod].detach() if len(tensors) > plan.n_mod else None
        s = scale.detach().item()  # one host read per step; the tiles take it as a number
        ref = feats[0]
        lse = {i: torch.full((plan.block,), -math.inf, dtype=ref.dtype, device=ref.device)
               for i, (p, _, _) in enumerate(plan.directions) if plan.rows_any[p]}
        if gathered is not None:
            for k in range(plan.world):
                _forward_block(plan, s, feats, _columns(plan, gathered, k), k, lse)
        else:
            _ring(plan, feats, lambda k, c, block, _: _forward_block(plan, s, feats, {c: block}, k, lse), False)
        sums = ref.new_zeros(plan.n_pairs)
        positives = ref.new_zeros(plan.n_pairs)  # per pair: sum of a_i . c_i over this rank's valid rows
        for i, (p, a, c) in enumerate(plan.directions):
            if i in lse:
                sums[p] += torch.where(plan.row_weight_mask[p], lse[i], 0).sum()
                if i % 2 == 0:  # once per pair
                    cosines = torch.linalg.vecdot(feats[a], feats[c])
                    positives[p] = torch.where(plan.row_weight_mask[p], cosines, 0).sum()
        sums -= 2 * s * positives
        ctx.plan, ctx.lse_keys, ctx.has_gathered = plan, sorted(lse), gathered is not None
        ctx.save_for_backward(scale, positives, *feats, *[lse[i] for i in sorted(lse)],
                              *([] if gathered is None else [gathered]))
        return sums

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_sums: Tensor):  # type: ignore[override]
        plan: TilePlan = ctx.plan
        saved = ctx.saved_tensors
        scale, positives, feats = saved[0], saved[1], list(saved[2:2 + plan.n_mod])
        lse = dict(zip(ctx.lse_keys, saved[2 + plan.n_mod:2 + plan.n_mod + len(ctx.lse_keys)]))
        gathered = saved[-1] if ctx.has_gathered else None
        s = scale.detach().item()
        grad_sums = grad_sums.to(feats[0].dtype)
        bias = _weighted_bias(plan, grad_sums, lse)
        u = [torch.zeros_like(f) for f in feats]  # d(weighted LSE sums) / d(scaled rows), per modality
        grad_gathered = None
        if gathered is not None:
            grad_gathered = torch.zeros_like(gathered)
            for k in range(plan.world):
                _backward_block(plan, s, feats, _columns(plan, gathered, k), k, bias, u,
                                _columns(plan, grad_gathered, k))
        else:
            own = _ring(plan, feats, lambda k, c, block, grad: _backward_block(plan, s, feats, {c: block}, k, bias, u,
                                                                               {c: grad}), True)
        grad_scale = None
        if ctx.needs_input_grad[1]:
            total = feats[0].new_zeros(())
            for m, (f, g) in enumerate(zip(feats, u)):
                rows = f if plan.present_all[m] else torch.where(plan.row_present[:, m, None], f, 0)
                total += torch.vdot(rows.reshape(-1), g.reshape(-1))
            total -= 2 * (grad_sums * positives).sum()
            grad_scale = total.reshape(scale.shape).to(scale.dtype)
        grads = [g.mul_(s) for g in u]
        if gathered is None:
            for c, o in own.items():
                grads[c] += o
        for i, (p, a, c) in enumerate(plan.directions):  # positives: -2 s w_i c_i into a_i, -2 s w_i a_i into c_i
            if i % 2 == 0 and i in lse:
                w = torch.where(plan.row_weight_mask[p], grad_sums[p], 0)[:, None]
                grads[a].addcmul_(w, _zeroed(plan, feats, c), value=-2 * s)
                grads[c].addcmul_(w, _zeroed(plan, feats, a), value=-2 * s)
        return None, grad_scale, *grads, *([] if gathered is None else [grad_gathered])


def _weighted_bias(plan: TilePlan, grad_sums: Tensor,
                   lse: dict[int, Tensor]) -> dict[int, tuple[Tensor, Tensor | None]]:
    """Per direction: (bias, weight) such that ``weight * exp(logit + bias)`` is the row's upstream gradient times its
    softmax. With a non-negative upstream gradient (the usual case) the weight is folded into the bias (log w - lse,
    -inf for rows that are not valid: exp gives an exact 0) and ``weight`` is None."""
    positive = bool((grad_sums >= 0).all())
    out = {}
    for i, (p, _, _) in enumerate(plan.directions):
        if i not in lse:
            continue
        w = torch.where(plan.row_weight_mask[p], grad_sums[p], 0)
        if positive:
            out[i] = ((w.log() - lse[i])[:, None], None)
        else:
            out[i] = (-lse[i][:, None], w[:, None])
    return out


def _columns(plan: TilePlan, packed: Tensor, k: int) -> dict[int, Tensor]:
    """Views of block ``k`` of a packed (B, M * D) tensor: modality -> (b, D)."""
    d, lo = plan.dim, k * plan.block
    return {m: packed[lo:lo + plan.block, m * d:(m + 1) * d] for m in range(plan.n_mod)}


def _ring(plan: TilePlan, feats: list[Tensor], compute, with_grads: bool) -> dict[int, Tensor]:
    """Pass every column modality's block around the ring, one modality at a time, and call
    ``compute(k, c, block, grad)`` on each (block k of modality c, and with ``with_grads`` the gradient buffer of
    that block, which goes round with it). Returns, with ``with_grads``, this rank's own blocks' column gradients
    (modality -> (b, D)), summed over all ranks.

    After modality c of step t is computed, one ``batch_isend_irecv`` sends its block (and gradient) to rank + 1 and
    receives the next ones from rank - 1; it is awaited only before the modality after next, so each transfer runs
    while the next modality's tiles are computed. A rank thus holds about one block and one gradient buffer of
    every modality plus those of the modality in flight."""
    world, rank = plan.world, plan.rank
    mods = sorted({c for p, _, c in plan.directions})
    cur = {c: feats[c].contiguous() for c in mods}
    grad = {c: torch.zeros_like(cur[c]) for c in mods} if with_grads else {}
    pending: list[tuple[list, int, list[Tensor]]] = []  # (work, modality, its tensors) per batch, oldest first
    for t in range(world):
        k = (rank - t) % world
        for c in mods:
            # all but the latest batch, and the latest too if it brings this modality (the last step posts no block)
            while pending and (len(pending) > 1 or pending[0][1] == c):
                _wait(pending.pop(0)[0])
            compute(k, c, cur[c], grad.get(c))
            if world == 1:
                continue
            ops = []
            if t < world - 1:
                nxt = torch.empty_like(cur[c])
                ops += [dist.P2POp(dist.isend, cur[c], (rank + 1) % world, tag=_BLOCK_TAG + c),
                        dist.P2POp(dist.irecv, nxt, (rank - 1) % world, tag=_BLOCK_TAG + c)]
                cur[c] = nxt
            if with_grads:
                arriving = torch.empty_like(grad[c])
                ops += [dist.P2POp(dist.isend, grad[c], (rank + 1) % world, tag=_GRAD_TAG + c),
                        dist.P2POp(dist.irecv, arriving, (rank - 1) % world, tag=_GRAD_TAG + c)]
                grad[c] = arriving  # block k-1's partial sum; after the last step, this rank's own block's total
            if ops:  # the batch keeps its tensors alive until it is awaited (a sent buffer is no longer ours)
                pending.append((dist.batch_isend_irecv(ops), c, [op.tensor for op in ops]))
    for works, _, _ in pending:
        _wait(works)
    return grad


def _wait(works: list) -> None:
    for w in works:
        w.wait()


def _zeroed(plan: TilePlan, feats: list[Tensor], m: int) -> Tensor:
    """This rank's embeddings of modality ``m``, zero where the sample lacks it."""
    return feats[m] if plan.present_all[m] else torch.where(plan.row_present[:, m, None], feats[m], 0)


def _row_chunk(plan: TilePlan, feats: list[Tensor], a: int, r0: int, r1: int) -> Tensor:
    """Rows r0:r1 of modality ``a``, zero where the sample lacks it (so nothing of an absent embedding is read)."""
    rows = feats[a][r0:r1]
    return rows if plan.present_all[a] else torch.where(plan.row_present[r0:r1, a, None], rows, 0)


def _tile_work(plan: TilePlan, k: int, lse_keys, col_mods) -> list:
    """(row tile, row modality, [(direction, column modality, pair, [column tiles])]) for block ``k``, for the
    directions whose column modality is in ``col_mods``."""
    work = []
    col_tiles = plan.col_tiles()
    for r0, r1 in plan.row_tiles():
        by_row: dict[int, list] = {}
        for i, (p, a, c) in enumerate(plan.directions):
            if i not in lse_keys or c not in col_mods:
                continue
            tiles = [(t, c0, c1) for t, (c0, c1) in enumerate(col_tiles) if plan.tile_any[k][t][p]]
            if tiles:
                by_row.setdefault(a, []).append((i, c, p, tiles))
        work += [((r0, r1), a, dirs) for a, dirs in by_row.items()]
    return work


def _forward_block(plan: TilePlan, s: float, feats: list[Tensor], block: dict[int, Tensor], k: int,
                   lse: dict[int, Tensor]) -> None:
    """Merge the log-sum-exps of every tile of column block ``k`` (modality -> (b, D), all or some modalities) into
    the running row LSEs."""
    base = k * plan.block
    for (r0, r1), a, dirs in _tile_work(plan, k, lse, block):
        rows = _row_chunk(plan, feats, a, r0, r1)
        for i, c, p, tiles in dirs:
            for t, c0, c1 in tiles:
                logits = torch.mm(rows, block[c][c0:c1].T).mul_(s)
                if not plan.tile_all[k][t][p]:
                    logits.masked_fill_(~plan.col_valid[p, base + c0:base + c1], -math.inf)
                top = logits.amax(1, keepdim=True)  # finite: the tile has a valid column
                tile_lse = logits.sub_(top).exp_().sum(1).log_().add_(top.squeeze(1))
                torch.logaddexp(lse[i][r0:r1], tile_lse, out=lse[i][r0:r1])


def _backward_block(plan: TilePlan, s: float, feats: list[Tensor], block: dict[int, Tensor], k: int,
                    bias: dict[int, tuple[Tensor, Tensor | None]], u: list[Tensor],
                    grad_block: dict[int, Tensor]) -> None:
    """Recompute the softmax of every tile of block ``k``; accumulate the scaled rows' gradient into ``u`` and the
    block's column gradient into ``grad_block``."""
    base = k * plan.block
    for (r0, r1), a, dirs in _tile_work(plan, k, bias, block):
        rows = _row_chunk(plan, feats, a, r0, r1)
        for i, c, p, tiles in dirs:
            shift, weight = bias[i]
            for t, c0, c1 in tiles:
                cols = block[c][c0:c1]
                prob = torch.addmm(shift[r0:r1], rows, cols.T, alpha=s)  # s * logits - lse (+ log weight)
                if not plan.tile_all[k][t][p]:
                    prob.masked_fill_(~plan.col_valid[p, base + c0:base + c1], -math.inf)
                prob.exp_()
                if weight is not None:
                    prob.mul_(weight[r0:r1])
                u[a][r0:r1].addmm_(prob, cols)
                grad_block[c][c0:c1].addmm_(prob.T, rows, alpha=s)
