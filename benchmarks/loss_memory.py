"""Peak memory and time of the MuJo loss forward+backward: distributed local form vs naive full-matrix form.

For every world size W in ``--worlds`` and both forms, W fresh processes (one per rank) each hold b = B / W random
L2-normalised embeddings per modality (leaf tensors that require grad, like a model's outputs) and a learnable
log-scale, join a process group (gloo on CPU, NCCL on CUDA) and run one ``MuJoLoss`` forward+backward over all
C(M, 2) pairs.

Each rank first runs the same step on a tiny batch (16 samples), so one-time initialisation (BLAS workspaces,
collective buffers) is not counted as the loss's memory or time, then creates its inputs and measures one step.

Memory per rank:
* CPU: the growth of the resident set during the step. After the inputs exist (and the process group is up), the
  rank reads its current RSS (VmRSS) as the baseline and resets the kernel's peak-RSS mark (``/proc/self/clear_refs``
  <- 5); after the step, peak = VmHWM - baseline. Everything the step touches counts (autograd buffers, gloo
  buffers, allocator slack). Where the peak mark cannot be reset, ``ru_maxrss`` (peak over the process's life)
  minus the baseline is used instead, which over-reports if an earlier moment of the process was higher.
* CUDA: ``torch.cuda.max_memory_allocated()`` after ``reset_peak_memory_stats()``, minus the baseline allocation.

The reported figure is the largest over ranks; time is the largest per-rank wall time of the step (on CPU the ranks
share the machine's cores, ``cores // W`` threads each, so times at W > 1 are not a scaling measurement). The
``loss`` column is the mean over ranks, equal for both forms.

If the naive form at some W would not fit in the machine's available memory (estimate below), that W computes its
pairs one at a time (forward+backward per pair, gradients accumulated) in *both* forms, and the table says so.

Usage: ``python benchmarks/loss_memory.py [--batch 8192] [--dim 1280] [--worlds 1,2,4] [--device cpu|cuda]``
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import socket
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from mujo.losses import MODALITIES, MuJoLoss, modality_pairs

MIB = 2**20
GOAL_FACTOR = 1.2  # goal: local per-rank peak <= GOAL_FACTOR / W of the naive one
MEMORY_HEADROOM = 0.9  # use at most this fraction of the available memory
PROCESS_OVERHEAD = 300 * MIB  # resident size of a rank before its inputs: interpreter, torch, process group (~270 MiB)
WARMUP_LOCAL_BATCH = 16  # samples per rank of the warm-up step


@dataclass(frozen=True)
class Config:
    """One benchmark configuration (all ranks)."""

    batch: int
    dim: int
    world: int
    local_loss: bool
    pairwise: bool
    device: str


@dataclass(frozen=True)
class RankResult:
    """What one rank measured."""

    peak_bytes: int
    seconds: float
    loss: float  # mean of the per-rank losses (equal to the single-process loss)
    method: str


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_bytes(field: str) -> int:
    """Return ``VmRSS`` or ``VmHWM`` of this process from /proc/self/status, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark of this process; False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _step(cfg: Config, feats: dict[str, torch.Tensor], log_scale: torch.Tensor) -> torch.Tensor:
    """One loss forward+backward over all pairs (or pair by pair); returns the detached loss."""
    if not cfg.pairwise:
        out = MuJoLoss(local_loss=cfg.local_loss)(feats, None, log_scale.exp())
        out.loss.backward()
        return out.loss.detach()
    pairs = modality_pairs(MODALITIES)
    total = torch.zeros((), device=log_scale.device)
    for a, c in pairs:
        out = MuJoLoss(modalities=(a, c), local_loss=cfg.local_loss)({a: feats[a], c: feats[c]}, None, log_scale.exp())
        (out.loss / len(pairs)).backward()
        total += out.loss.detach() / len(pairs)
    return total


def _features(batch: int, dim: int, gen: torch.Generator, device: torch.device) -> dict[str, torch.Tensor]:
    """Random unit-norm embeddings per modality, as leaves that require grad (the model's outputs)."""
    return {
        m: F.normalize(torch.randn(batch, dim, generator=gen, device=device), dim=1).requires_grad_()
        for m in MODALITIES
    }


def _rank_main(rank: int, cfg: Config, port: int, out_dir: str) -> None:
    """Body of one rank: inputs, baseline, measured step, result file."""
    cuda = cfg.device == "cuda"
    if cuda:
        torch.cuda.set_device(rank)
        device = torch.device("cuda", rank)
    else:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // cfg.world))
        device = torch.device("cpu")
    dist.init_process_group(
        "nccl" if cuda else "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=cfg.world,
        timeout=datetime.timedelta(minutes=30),
    )
    gen = torch.Generator(device=device).manual_seed(rank)
    log_scale = torch.tensor(2.659, device=device, requires_grad=True)  # ln(1 / 0.07)
    # Warm-up (module docstring): one-time initialisation is not the loss's memory.
    _step(cfg, _features(WARMUP_LOCAL_BATCH, cfg.dim, gen, device), log_scale)
    log_scale.grad = None
    feats = _features(cfg.batch // cfg.world, cfg.dim, gen, device)
    dist.barrier()

    if cuda:
        torch.cuda.synchronize()
        baseline = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        method = "cuda max_memory_allocated"
    else:
        baseline = _rss_bytes("VmRSS")
        method = "VmHWM (reset) - VmRSS" if _reset_peak_rss() else "ru_maxrss - VmRSS"
    start = time.perf_counter()
    loss = _step(cfg, feats, log_scale)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    if cuda:
        peak = torch.cuda.max_memory_allocated() - baseline
    elif method.startswith("VmHWM"):
        peak = _rss_bytes("VmHWM") - baseline
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - baseline

    dist.all_reduce(loss)
    result = RankResult(peak_bytes=peak, seconds=seconds, loss=loss.item() / cfg.world, method=method)
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(asdict(result)))
    dist.destroy_process_group()


def run_config(cfg: Config) -> list[RankResult]:
    """Run one configuration in ``cfg.world`` fresh processes and collect every rank's result."""
    with tempfile.TemporaryDirectory() as out_dir:
        mp.spawn(_rank_main, args=(cfg, _free_port(), out_dir), nprocs=cfg.world, join=True)
        return [RankResult(**json.loads(Path(out_dir, f"rank{r}.json").read_text())) for r in range(cfg.world)]


def naive_estimate_bytes(batch: int, world: int, dim: int, element_size: int) -> int:
    """Per-rank peak of the naive form with all pairs at once, from its tensors: two saved B x B log-softmax outputs
    per pair, two transient B x B gradients, the gathered features and the scaled anchors (B x M*D each), the
    inputs and their gradients (b x M*D each), plus the process itself (interpreter, torch, process group)."""
    pairs = len(modality_pairs(MODALITIES))
    width = len(MODALITIES) * dim
    tensors = 2 * pairs * batch**2 + 2 * batch**2 + 2 * batch * width + 2 * (batch // world) * width
    return element_size * tensors + PROCESS_OVERHEAD


def available_bytes() -> int:
    """MemAvailable from /proc/meminfo."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("MemAvailable not in /proc/meminfo")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=8192, help="global batch B")
    parser.add_argument("--dim", type=int, default=1280, help="embedding size D")
    parser.add_argument("--worlds", default="1,2,4", help="comma-separated world sizes W")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = parser.parse_args()
    worlds = sorted({int(w) for w in args.worlds.split(",")})
    if any(args.batch % w for w in worlds):
        parser.error(f"--batch {args.batch} must be divisible by every world size {worlds}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device available")

    print(f"loss forward+backward, B={args.batch}, D={args.dim}, M={len(MODALITIES)} "
          f"({len(modality_pairs(MODALITIES))} pairs), float32, device={args.device}, "
          f"{os.cpu_count()} CPU cores")
    print(f"{'W':>2}  {'form':<5}  {'pairs':<11}  {'per-rank peak MiB':>17}  {'time s':>7}  {'loss':>8}")
    rows: dict[tuple[int, str], RankResult] = {}
    for world in worlds:
        if args.device == "cuda" and torch.cuda.device_count() < world:
            print(f"W={world}: skipped, only {torch.cuda.device_count()} CUDA devices")
            continue
        pairwise = False
        if args.device == "cpu":
            need = world * naive_estimate_bytes(args.batch, world, args.dim, 4)
            pairwise = need > MEMORY_HEADROOM * available_bytes()
            if pairwise:
                print(f"W={world}: naive all-pairs estimate {need / 2**30:.1f} GiB exceeds "
                      f"{MEMORY_HEADROOM:.0%} of available memory; both forms compute pairs one at a time")
        for local_loss in (True, False):
            results = run_config(Config(args.batch, args.dim, world, local_loss, pairwise, args.device))
            form = "local" if local_loss else "naive"
            row = RankResult(
                peak_bytes=max(r.peak_bytes for r in results),
                seconds=max(r.seconds for r in results),
                loss=results[0].loss,
                method=results[0].method,
            )
            rows[world, form] = row
            print(f"{world:>2}  {form:<5}  {'one by one' if pairwise else 'all at once':<11}  "
                  f"{row.peak_bytes / MIB:>17.0f}  {row.seconds:>7.1f}  {row.loss:>8.4f}", flush=True)
    if not rows:
        return
    largest = max(w for w, _ in rows)
    ratio = rows[largest, "local"].peak_bytes / rows[largest, "naive"].peak_bytes
    print(f"memory method: {rows[largest, 'local'].method}")
    print(f"per-rank memory ratio local/naive at W={largest}: {ratio:.2f} (goal <= {GOAL_FACTOR / largest:.2f})")


if __name__ == "__main__":
    main()
