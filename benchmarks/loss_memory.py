"""Peak memory and time per rank of the MuJo loss forward+backward: naive, local, tiled and tiled + ring forms.

For every world size W in ``--worlds``, global batch B in ``--batches`` and form in ``--forms`` (``naive``: the full
B x B matrices on every rank; ``local``: this rank's b = B / W rows against all B columns, b x B matrices; ``tiled``:
the same rows tile by tile, no b x B matrix kept, columns all-gathered; ``tiled+ring``: tiled, the columns passed
rank to rank in blocks of b), W fresh processes (one per rank) each hold b random L2-normalised embeddings per
modality (leaf tensors that require grad, like a model's outputs) and a learnable log-scale, join a process group
(gloo on CPU, NCCL on CUDA) and run one ``MuJoLoss`` forward+backward over all C(M, 2) pairs.

Each rank first runs the same step on a tiny batch (16 samples), so one-time initialisation (BLAS workspaces,
collective buffers) is not counted as the loss's memory or time, then creates its inputs and measures one step.

Memory per rank:
* CPU: the growth of the resident set during the step. After the inputs exist (and the process group is up), the
  rank reads its current RSS (VmRSS) as the baseline and resets the kernel's peak-RSS mark (``/proc/self/clear_refs``
  <- 5); after the step, peak = VmHWM - baseline. Everything the step touches counts (autograd buffers, gloo
  buffers, allocator slack). Where the peak mark cannot be reset, ``ru_maxrss`` (peak over the process's life)
  minus the baseline is used instead, which over-reports if an earlier moment of the process was higher.
* CUDA: ``torch.cuda.max_memory_allocated()`` after ``reset_peak_memory_stats()``, minus the baseline allocation.

The reported figure is the largest over ranks; ``time s`` is the largest per-rank wall time of the step and ``CPU s``
the CPU time of all ranks together (on CPU the ranks share the machine's cores, ``cores // W`` threads each, so
times at W > 1 are not a scaling measurement, and on a shared machine the CPU time is the steadier comparison). The
``loss`` column is the mean over ranks, equal for every form.

A configuration whose estimated memory (:func:`estimate_bytes`) exceeds 90 % of the available memory is skipped.
From the measured points at the largest W the script projects, per form, the largest global batch whose ranks fit
this machine's 24 GiB (W ranks, each with its process and inputs) and 8 GPUs of 80 GB (:class:`Fit`): projections,
not measurements. The last lines compare the forms against the goals of the tiled form.

Usage: ``python benchmarks/loss_memory.py [--batches 4096,8192,16384] [--worlds 4] [--forms naive,local,tiled,
tiled+ring] [--tile N] [--dim 1280] [--device cpu|cuda]``
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

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from mujo.losses import MODALITIES, MuJoLoss, modality_pairs

MIB = 2**20
FORMS_MEASURED = ("naive", "local", "tiled", "tiled+ring")
DEFAULT_TILED_FORM = "tiled+ring"  # the tiled form the last two lines are about: pretraining's default
TIME_GOAL = 1.3  # goal: tiled step time <= TIME_GOAL x the local form's at B = 8192
GROWTH_GOAL = 2.2  # goal: tiled per-rank peak at B = 16384 <= GROWTH_GOAL x the one at 8192 (linear in b)
RATIO_GOAL = 0.15  # goal: tiled per-rank peak <= RATIO_GOAL x the local form's at W = 4, B = 16384
CPU_BUDGET_GIB = 24  # projection: this machine's memory, all ranks together
GPUS, GPU_MEMORY_BYTES = 8, 80e9  # projection: 8 GPUs of 80 GB
MEMORY_HEADROOM = 0.9  # use at most this fraction of the available memory
PROCESS_OVERHEAD = 300 * MIB  # resident size of a rank before its inputs: interpreter, torch, process group (~270 MiB)
WARMUP_LOCAL_BATCH = 16  # samples per rank of the warm-up step


@dataclass(frozen=True)
class Config:
    """One benchmark configuration (all ranks)."""

    batch: int
    dim: int
    world: int
    form: str  # naive, local, tiled, tiled+ring
    device: str
    tile: int | None = None


@dataclass(frozen=True)
class RankResult:
    """What one rank measured."""

    peak_bytes: int
    seconds: float
    cpu_seconds: float  # CPU time of the rank's process during the step (all its threads)
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
    """One loss forward+backward over all pairs; returns the detached loss."""
    loss_fn = MuJoLoss(impl=cfg.form.split("+")[0], ring=cfg.form == "tiled+ring", tile_size=cfg.tile)
    out = loss_fn(feats, None, log_scale.exp())
    out.loss.backward()
    return out.loss.detach()


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
    start, cpu_start = time.perf_counter(), time.process_time()
    loss = _step(cfg, feats, log_scale)
    if cuda:
        torch.cuda.synchronize()
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    if cuda:
        peak = torch.cuda.max_memory_allocated() - baseline
    elif method.startswith("VmHWM"):
        peak = _rss_bytes("VmHWM") - baseline
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - baseline

    dist.all_reduce(loss)
    result = RankResult(peak_bytes=peak, seconds=seconds, cpu_seconds=cpu_seconds, loss=loss.item() / cfg.world,
                        method=method)
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(asdict(result)))
    dist.destroy_process_group()


def run_config(cfg: Config) -> list[RankResult]:
    """Run one configuration in ``cfg.world`` fresh processes and collect every rank's result."""
    with tempfile.TemporaryDirectory() as out_dir:
        mp.spawn(_rank_main, args=(cfg, _free_port(), out_dir), nprocs=cfg.world, join=True)
        return [RankResult(**json.loads(Path(out_dir, f"rank{r}.json").read_text())) for r in range(cfg.world)]


def estimate_bytes(form: str, batch: int, world: int, dim: int, element_size: int = 4) -> int:
    """Rough per-rank peak of a form with all pairs at once, from its largest tensors, plus the process itself
    (interpreter, torch, process group); used only to skip what cannot fit. Naive: two saved B x B log-softmax
    outputs per pair and two transient B x B gradients; local: the same with b x B; both: the gathered features
    and scaled anchors. Tiled: the gathered features and their gradient; ring: six b x M*D blocks."""
    pairs = len(modality_pairs(MODALITIES))
    width = len(MODALITIES) * dim
    b = batch // world
    inputs = 2 * b * width
    tensors = {
        "naive": 2 * pairs * batch**2 + 2 * batch**2 + 2 * batch * width,
        "local": 2 * pairs * b * batch + 2 * b * batch + 2 * batch * width,
        "tiled": 3 * batch * width + 4 * b * width,
        "tiled+ring": 8 * b * width,
    }[form]
    return element_size * (tensors + inputs) + PROCESS_OVERHEAD


def available_bytes() -> int:
    """MemAvailable from /proc/meminfo."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("MemAvailable not in /proc/meminfo")


@dataclass(frozen=True)
class Fit:
    """A form's loss peak per rank, bytes = alpha + beta * linear(B, W) + gamma * quadratic(B, W).

    Least-squares fit through the measured points at one W, in the variables each form's tensors scale with, so that
    it carries over to another W: naive: B and B^2 (every rank holds B x B matrices); local: b * B (the logits of
    its b rows; its gathered features, of size B, are counted with them, which under-states it at larger W); tiled:
    B alone (the gathered features and their gradient; its b-sized buffers are counted with them, which over-states
    it at larger W); tiled+ring: b alone (nothing of size B, the logits are tiles of fixed size)."""

    form: str
    alpha: float
    beta: float
    gamma: float

    @staticmethod
    def terms(form: str, batch: int, world: int) -> tuple[float, ...]:
        """The variables besides the constant: naive B, B^2; local b*B; tiled B; tiled+ring b."""
        b = batch / world
        return {"naive": (batch, batch**2), "local": (b * batch,), "tiled": (batch,), "tiled+ring": (b,)}[form]

    @classmethod
    def through(cls, points: dict[int, int], form: str, world: int) -> Fit:
        a = np.array([[1.0, *cls.terms(form, batch, world)] for batch in sorted(points)])
        y = np.array([float(points[batch]) for batch in sorted(points)])
        coef = [float(c) for c in np.linalg.lstsq(a, y, rcond=None)[0]] + [0.0]
        return cls(form, coef[0], coef[1], coef[2])

    def rank_bytes(self, batch: int, world: int, width: int, per_process: int) -> float:
        linear, quadratic = (*self.terms(self.form, batch, world), 0.0)[:2]
        inputs = 2 * (batch // world) * width * 4  # embeddings and their gradients, float32
        return per_process + inputs + max(0.0, self.alpha + self.beta * linear + self.gamma * quadratic)

    def largest_batch(self, world: int, width: int, budget: float, per_process: int) -> int:
        """Largest multiple of ``world`` whose ``world`` ranks fit ``budget`` (doubling, then bisection)."""
        def fits(batch: int) -> bool:
            return world * self.rank_bytes(batch, world, width, per_process) <= budget

        if not fits(world):
            return 0
        hi = world
        while fits(hi) and hi < 2**40:
            hi *= 2
        lo = hi // 2
        while hi - lo > world:
            mid = (lo + hi) // 2 // world * world
            lo, hi = (mid, hi) if fits(mid) else (lo, mid)
        return lo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", default="4096,8192,16384", help="comma-separated global batches B")
    parser.add_argument("--dim", type=int, default=1280, help="embedding size D")
    parser.add_argument("--worlds", default="4", help="comma-separated world sizes W")
    parser.add_argument("--forms", default=",".join(FORMS_MEASURED), help="comma-separated forms to measure")
    parser.add_argument("--tile", type=int, default=None, help="tile edge of the tiled forms (default per device)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--results", type=Path, default=None, help=(
        "JSON lines file: rows measured by earlier runs are read from it (marked *) and new rows appended, so a "
        "shared machine can measure one configuration at a time"))
    args = parser.parse_args()
    batches = sorted({int(x) for x in args.batches.split(",")})
    worlds = sorted({int(w) for w in args.worlds.split(",")})
    forms = [f for f in FORMS_MEASURED if f in args.forms.split(",")]
    unknown = set(args.forms.split(",")) - set(FORMS_MEASURED)
    if unknown:
        parser.error(f"unknown forms {sorted(unknown)}; expected some of {FORMS_MEASURED}")
    if any(batch % w for batch in batches for w in worlds):
        parser.error(f"every batch {batches} must be divisible by every world size {worlds}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device available")

    print(f"loss forward+backward, D={args.dim}, M={len(MODALITIES)} ({len(modality_pairs(MODALITIES))} pairs), "
          f"float32, device={args.device}, {os.cpu_count()} CPU cores, tile={args.tile or 'default'}")
    print(f"{'W':>2}  {'B':>6}  {'form':<10}  {'per-rank peak MiB':>17}  {'time s':>7}  {'CPU s':>7}  {'loss':>8}")
    rows: dict[tuple[int, int, str], RankResult] = {}
    if args.results is not None and args.results.exists():
        for line in args.results.read_text().splitlines():
            rec = json.loads(line)
            if rec["dim"] != args.dim or rec["device"] != args.device:
                continue
            row = RankResult(**rec["result"])
            rows[rec["world"], rec["batch"], rec["form"]] = row
            print(f"{rec['world']:>2}  {rec['batch']:>6}  {rec['form']:<10}  {row.peak_bytes / MIB:>17.0f}  "
                  f"{row.seconds:>7.1f}  {row.cpu_seconds:>7.1f}  {row.loss:>8.4f}  *", flush=True)
    for world in worlds:
        if args.device == "cuda" and torch.cuda.device_count() < world:
            print(f"W={world}: skipped, only {torch.cuda.device_count()} CUDA devices")
            continue
        for batch in batches:
            for form in forms:
                if (world, batch, form) in rows:
                    continue  # measured by an earlier run (--results)
                if args.device == "cpu":
                    need = world * estimate_bytes(form, batch, world, args.dim)
                    if need > MEMORY_HEADROOM * available_bytes():
                        print(f"{world:>2}  {batch:>6}  {form:<10}  skipped: estimated {need / 2**30:.1f} GiB for "
                              f"{world} ranks, more than {MEMORY_HEADROOM:.0%} of the available memory", flush=True)
                        continue
                results = run_config(Config(batch, args.dim, world, form, args.device, args.tile))
                row = RankResult(
                    peak_bytes=max(r.peak_bytes for r in results),
                    seconds=max(r.seconds for r in results),
                    cpu_seconds=sum(r.cpu_seconds for r in results),
                    loss=results[0].loss,
                    method=results[0].method,
                )
                rows[world, batch, form] = row
                if args.results is not None:
                    with args.results.open("a") as f:
                        f.write(json.dumps({"dim": args.dim, "device": args.device, "world": world, "batch": batch,
                                            "form": form, "result": asdict(row)}) + "\n")
                print(f"{world:>2}  {batch:>6}  {form:<10}  {row.peak_bytes / MIB:>17.0f}  {row.seconds:>7.1f}  "
                      f"{row.cpu_seconds:>7.1f}  {row.loss:>8.4f}", flush=True)
    if not rows:
        return
    print(f"memory method: {next(iter(rows.values())).method}")
    world = max(w for w, _, _ in rows)
    width = len(MODALITIES) * args.dim
    print(f"projected largest global batch (loss peak fitted per form at W={world}; not measured at that size):")
    for form in FORMS_MEASURED:
        points = {batch: r.peak_bytes for (w, batch, f), r in rows.items() if w == world and f == form}
        if len(points) < 2:
            continue
        fit = Fit.through(points, form, world)
        cpu = fit.largest_batch(world, width, budget=CPU_BUDGET_GIB * 2**30, per_process=PROCESS_OVERHEAD)
        gpu = fit.largest_batch(GPUS, width, budget=GPUS * GPU_MEMORY_BYTES, per_process=0)
        print(f"  {form:<10}  {world} ranks in {CPU_BUDGET_GIB} GiB: B ~ {cpu:>9,}    "
              f"{GPUS} GPUs of {GPU_MEMORY_BYTES / 1e9:.0f} GB: B ~ {gpu:>11,}")
    default = DEFAULT_TILED_FORM
    if (world, 8192, "tiled") in rows and (world, 8192, "local") in rows:
        for form in ("tiled", "tiled+ring"):
            if (world, 8192, form) in rows:
                ratio = rows[world, 8192, form].seconds / rows[world, 8192, "local"].seconds
                cpu = rows[world, 8192, form].cpu_seconds / rows[world, 8192, "local"].cpu_seconds
                print(f"time {form}/local at W={world}, B=8192: {ratio:.2f} wall, {cpu:.2f} CPU (goal <= {TIME_GOAL})")
    if (world, 8192, default) in rows and (world, 16384, default) in rows:
        growth = rows[world, 16384, default].peak_bytes / rows[world, 8192, default].peak_bytes
        print(f"memory growth tiled B=8192->16384: {growth:.2f} (goal <= {GROWTH_GOAL})")
    if (world, 16384, default) in rows:
        local = rows.get((world, 16384, "local"))
        local_bytes = None if local is None else float(local.peak_bytes)
        points = {batch: r.peak_bytes for (w, batch, f), r in rows.items() if w == world and f == "local"}
        if local_bytes is None and len(points) >= 2:
            fit = Fit.through(points, "local", world)
            projected = fit.rank_bytes(16384, world, width, per_process=0) - 2 * (16384 // world) * width * 4
            # a floor that needs no fit: its 12 saved float32 b x B log-softmax outputs, alive at once
            floor = 2 * len(modality_pairs(MODALITIES)) * (16384 // world) * 16384 * 4
            local_bytes = max(projected, floor)
            print(f"local at W={world}, B=16384 not measured (memory): per-rank peak projected from "
                  f"B={sorted(points)}: {projected / MIB:.0f} MiB; its saved b x B matrices alone: {floor / MIB:.0f} "
                  f"MiB; the larger is used")
        if local_bytes:
            ratio = rows[world, 16384, default].peak_bytes / local_bytes
            print(f"per-rank memory tiled/local at W={world}, B=16384: {ratio:.2f} (goal <= {RATIO_GOAL})")


if __name__ == "__main__":
    main()
