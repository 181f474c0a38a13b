"""Forward and forward+backward time of the MM-Fit pose and accelerometer encoders: the layers as written
(``reference_forward``: grouped ``nn.Conv2d``/``nn.Conv1d``) against the equivalent form the encoders compute
(``forward``: joint-folded and dense convolutions, see ``mujo.models.encoders``), same parameters, same inputs.

Batch sizes: fine-tuning's (64, the trial's batch; 512, a large validation/prediction batch) and pretraining's
(``pretrain.batch_size`` of the default config, per worker). Forward runs without autograd; forward+backward takes
the gradient of a scalar of the output w.r.t. every parameter (the input needs none, as in training).

Timing: the median of ``--repeats`` runs after a warm-up, old and new interleaved so that a busy machine slows both
alike. With one thread (the default: a fan-out trial runs one) the clock is the thread's CPU time, which other
processes on a shared machine do not inflate; with more threads or on CUDA it is wall time (synchronised).
Before timing, the outputs and gradients of both forms are compared (largest absolute difference of the outputs;
of the gradients, relative to the gradient's largest entry, as the loss here is an unscaled sum).

Then the whole joint model (default config, all four modalities: what a pretraining step and a video+pose+acc
classifier compute) with the encoders in each form, printed apart (not in the total).

The last line: ``encoder speed-up: <x.x>x`` = the sum of all old times / the sum of all new times (pose and acc,
every batch size, forward and forward+backward).

    .venv/bin/python benchmarks/encoder_speed.py
    .venv/bin/python benchmarks/encoder_speed.py --threads 2 --device cuda
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "platform"))

import torch  # noqa: E402

from mujo.config import ModelConfig, PretrainConfig  # noqa: E402
from mujo.models.encoders import AccEncoder, PoseEncoder  # noqa: E402
from mujo.models.mujo import MuJoModel  # noqa: E402
from mujo.schema import NUM_JOINTS, WINDOW  # noqa: E402


def clock(device: torch.device, threads: int):
    if device.type == "cuda":
        def now() -> float:
            torch.cuda.synchronize(device)
            return time.perf_counter()
        return now
    return time.thread_time if threads == 1 else time.perf_counter


def timed(fns: dict, repeats: int, now) -> dict[str, float]:
    """Median seconds of each function, the functions interleaved run by run."""
    for f in fns.values():
        f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t0 = now()
            f()
            times[k].append(now() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


@contextlib.contextmanager
def layers_as_written(model: MuJoModel):
    """The model's pose and acc encoders computing with their layers as written (the old form), same weights."""
    encs = [model.encoders[m] for m in ("pose", "acc") if m in model.encoders]
    for e in encs:
        e.forward = e.reference_forward
    try:
        yield
    finally:
        for e in encs:
            del e.forward


def model_rows(batches: list[int], repeats: int, now, device: torch.device) -> None:
    """The whole joint model (default config: video, pose, acc, text encoders + projections) embedding a batch of
    every modality: what a pretraining step and a video+pose+acc classifier run. Printed apart, not in the total."""
    torch.manual_seed(0)
    model = MuJoModel(ModelConfig()).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    for b in batches:
        inputs = {"video": torch.randn(b, model.cfg.video_dim, device=device),
                  "pose": torch.randn(b, WINDOW, NUM_JOINTS, 3, device=device),
                  "acc": torch.randn(b, WINDOW, 6, device=device),
                  "text": torch.randn(b, model.cfg.text_dim, device=device)}

        def fwd():
            with torch.no_grad():
                model(inputs)

        def fwd_bwd():
            torch.autograd.grad(sum(z.square().sum() for z in model(inputs).values()), params, allow_unused=True)

        for label, f in (("forward", fwd), ("fwd+bwd", fwd_bwd)):
            def old():
                with layers_as_written(model):
                    f()
            t = timed({"old": old, "new": f}, repeats, now)
            print(f"{'model':8} {b:>6} {label:>9} {t['old'] * 1e3:9.1f} {t['new'] * 1e3:9.1f} "
                  f"{t['old'] / t['new']:8.1f}x  (whole joint model, all 4 modalities; not in the total)", flush=True)


def main(argv: list[str] | None = None) -> float:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, nargs="+", default=None,
                   help="batch sizes (default: 64 and 512 of fine-tuning, pretraining's per-worker batch)")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    pretrain_batch = PretrainConfig().batch_size
    batches = args.batches or sorted({64, 512, pretrain_batch})
    now = clock(device, args.threads)
    print(f"torch {torch.__version__}, device {device}, {args.threads} thread(s), median of {args.repeats} "
          f"({'thread CPU time' if now is time.thread_time else 'wall time'}); pretraining batch {pretrain_batch}")
    torch.manual_seed(0)
    encoders = {"pose": (PoseEncoder().to(device), (WINDOW, NUM_JOINTS, 3)),
                "acc": (AccEncoder().to(device), (WINDOW, 6))}
    total = {"old": 0.0, "new": 0.0}
    print(f"{'encoder':8} {'batch':>6} {'pass':>9} {'old ms':>9} {'new ms':>9} {'speed-up':>9}  "
          "max |diff| (output; gradients relative to their largest)")
    for name, (enc, shape) in encoders.items():
        params = list(enc.parameters())
        for b in batches:
            x = torch.randn(b, *shape, device=device)
            with torch.no_grad():
                diff = (enc(x) - enc.reference_forward(x)).abs().max().item()
            g_new = torch.autograd.grad(enc(x).square().sum(), params)
            g_old = torch.autograd.grad(enc.reference_forward(x).square().sum(), params)
            gdiff = max((a - c).abs().max().item() / c.abs().max().item() for a, c in zip(g_new, g_old))

            def fwd(f):
                def run():
                    with torch.no_grad():
                        f(x)
                return run

            def fwd_bwd(f):
                def run():
                    torch.autograd.grad(f(x).square().sum(), params)
                return run

            for label, make, d in (("forward", fwd, diff), ("fwd+bwd", fwd_bwd, gdiff)):
                t = timed({"old": make(enc.reference_forward), "new": make(enc)}, args.repeats, now)
                total["old"] += t["old"]
                total["new"] += t["new"]
                print(f"{name:8} {b:>6} {label:>9} {t['old'] * 1e3:9.1f} {t['new'] * 1e3:9.1f} "
                      f"{t['old'] / t['new']:8.1f}x  {d:.1e}", flush=True)
    model_rows(batches, args.repeats, now, device)
    speedup = total["old"] / total["new"]
    print(f"total: old {total['old']:.3f} s, new {total['new']:.3f} s")
    print(f"encoder speed-up: {speedup:.1f}x")
    return speedup


if __name__ == "__main__":
    main()
