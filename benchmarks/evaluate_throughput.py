"""The paper's evaluation protocol on the demo's downstream dataset: today's per-seed path against the evaluation
engine (:mod:`mujo.evaluate.engine`), and the floor.

The protocol: inputs acc and video+pose+acc x settings baseline/frozen/finetuned x 7 label fractions x 20 seeds,
200 epochs at most, early stopping after 25 (``--fractions``, ``--seeds``, ``--max-epochs``, ``--patience`` change
it). The data is ``synthhar`` exactly as ``jobs/configs/main.yaml`` generates it (made here without Ray: the same
clip functions and ``preprocess(..., executor="local")``). The pretrained model is the demo's size
(``embed_dim`` 1280) with random weights unless ``--pretrained`` names a real artefact: the costs per epoch do not
depend on the weights, the epoch counts (early stopping) do.

Three figures, all CPU time of one-thread processes (the machine is shared: CPU time is what the work costs, wall
time depends on the neighbours), turned into time on ``--cpus`` cores by dividing by the cores (perfect packing, no
Ray overhead: flattering for today's path, which pays Ray's per-epoch report, ~10 % in the issue's measurement):

- **engine**: :func:`~mujo.evaluate.engine.train_seed_group` run for real on every cell, seeds in groups of
  ``--seeds-per-trial`` (as the fan-out's trials), frozen features computed once per inputs (counted), in
  ``--cpus`` worker processes. For cells whose seeds run in ``loop`` mode (trainable encoders: a seed's cost does not
  depend on its group) ``--loop-seeds`` seeds are run and their CPU time scaled to ``--seeds`` (stated); every
  other cell runs all its seeds. The epoch count of every seed run is recorded.
- **today**: the fan-out trial's functions without Ray (``build_classifier`` + ``train_classifier``, batch 64,
  validation every epoch through the whole classifier) as the issue measured them (``--today as-filed``, the
  default: the encoders' layers as written and torch's default AdamW; ``current``: with the faster encoders and the
  fused AdamW, what ``evaluate.engine: per_seed`` runs now) on seed 0 of every cell, for ``--today-epochs``
  epochs; its CPU time per epoch (the median of the epochs after the first) and per trial (building, test) is
  multiplied by the epoch counts the engine measured: the engine trains every seed exactly as today's path does
  (tests/test_engine.py), so those are today's epoch counts too.
- **floor**: the protocol's necessary work at the best speed measured here: per seed and epoch, its training steps
  (forward, backward, fused AdamW on one batch of each size the epoch has) and one validation pass without
  autograd, each the minimum over repeats of the single-model form and the vmapped group form divided by its
  seeds; for frozen,
  the head alone on features plus computing the features once. No data gathering, masks or bookkeeping.

The last line: ``evaluation speed-up: <x.x>x (goal >= 10)`` (today / engine). Figures: ``benchmarks/README.md``.

    .venv/bin/python benchmarks/evaluate_throughput.py                       # the paper's protocol
    .venv/bin/python benchmarks/evaluate_throughput.py --fractions 0.02 1.0 --seeds 4 --max-epochs 20   # a quick look
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "platform"))

import numpy as np  # noqa: E402

INPUTS = [["acc"], ["video", "pose", "acc"]]
SETTINGS = ["baseline", "frozen", "finetuned"]
FRACTIONS = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]
ROOT = Path(__file__).resolve().parent.parent


def prepare(workdir: str, pretrained: str | None) -> tuple[dict, str, int]:
    """synthhar as the demo makes it (raw clips -> windows, no Ray) and a pretrained artefact of the demo's size."""
    from mujo import storage
    from mujo.config import load_config
    from mujo.data.clips import clips_to_table, make_clip, plan_clips, resolve_activities
    from mujo.models import build_model, save_pretrained
    from mujo.pipelines.generate import raw_dir
    from mujo.pipelines.preprocess import preprocess

    cfg = load_config(ROOT / "jobs/configs/main.yaml", [f"storage.root={workdir}"])
    spec = next(s for s in cfg.generate.datasets if s.name == cfg.evaluate.dataset)
    if not storage.exists(storage.join(raw_dir(cfg.run_dir, spec.name), "dataset.json")):
        tasks = plan_clips(spec, cfg.generate.seed)
        out = raw_dir(cfg.run_dir, spec.name)
        storage.write_table(clips_to_table([make_clip(t) for t in tasks]), storage.join(out, "part-00000.parquet"))
        storage.write_json(storage.join(out, "dataset.json"), {"name": spec.name, "labels": list(resolve_activities(
            spec.activities)), "clips": len(tasks)})
    manifests = preprocess({spec.name: spec.video_dim}, cfg.run_dir, cfg.preprocess, executor="local")
    manifest = manifests[spec.name]
    if pretrained is None:
        pretrained = storage.join(cfg.run_dir, "pretrain", "model")
        if not storage.exists(storage.join(pretrained, "model.pt")):
            save_pretrained(build_model(cfg.model, stats={m: s.model_dump() for m, s in manifest.stats.items()},
                                        seed=0), pretrained)
    return manifest.model_dump(mode="json"), pretrained, manifest.num_classes


_STATE: dict = {}


def _as_filed() -> None:
    """Today's path as the issue measured it (before #16's work): the encoders' convolutions as written
    (``reference_forward``, the layers the faster forms replaced) and torch's default (foreach) AdamW in
    ``train_classifier``. The rest of ``train_classifier`` is as it was then (validation ran under ``no_grad``; now
    ``inference_mode``, a difference within noise). Only this benchmark's "today" worker processes are changed."""
    import functools

    from mujo.evaluate import finetune
    from mujo.models import encoders

    for cls in (encoders.MMFitSensorEncoder, encoders.AccEncoder, encoders.PoseEncoder):
        cls.forward = cls.reference_forward
    finetune.adamw = functools.partial(finetune.adamw, fused=None)


def _init(manifest_json: dict, pretrained: str, as_filed: bool = False) -> None:
    import torch

    torch.set_num_threads(1)
    if as_filed:
        _as_filed()
    from mujo.evaluate.data import load_arrays
    from mujo.models import load_pretrained
    from mujo.run import Manifest

    manifest = Manifest.model_validate(manifest_json)
    _STATE.update(data=load_arrays(manifest, ["video", "pose", "acc"], ["train", "val", "test"]),
                  pretrained=load_pretrained(pretrained), classes=manifest.num_classes, features={})


def _features(inputs: list[str]) -> dict:
    from mujo.evaluate.engine import frozen_features

    key = "+".join(inputs)
    if key not in _STATE["features"]:
        t0 = time.process_time()
        _STATE["features"][key] = ({name: frozen_features(_STATE["pretrained"], inputs, _STATE["data"][name][0])
                                    for name in ("train", "val", "test")}, time.process_time() - t0)
    return _STATE["features"][key]


def _splits(inputs: list[str], setting: str) -> list:
    from mujo.evaluate.engine import FEATURES

    data = _STATE["data"]
    if setting == "frozen":
        feats, _ = _features(inputs)
        return [({FEATURES: feats[n]}, data[n][1]) for n in ("train", "val", "test")]
    return [({m: data[n][0][m] for m in inputs}, data[n][1]) for n in ("train", "val", "test")]


def _classifiers(inputs: list[str], setting: str, seeds: list[int]) -> list:
    from mujo.evaluate.engine import FeatureHead
    from mujo.models import build_classifier

    out = []
    for s in seeds:
        c = build_classifier(_STATE["pretrained"], inputs, _STATE["classes"], setting, seed=s)
        out.append(FeatureHead(c.head) if setting == "frozen" else c)
    return out


def engine_group(job: dict) -> dict:
    """One fan-out trial's work: a seed group of one cell through the engine; CPU time and epochs per seed."""
    from mujo.evaluate.engine import choose_vectorize, train_seed_group
    from mujo.evaluate.finetune import FinetuneConfig, sample_label_fraction

    inputs, setting, fraction, seeds = job["inputs"], job["setting"], job["fraction"], job["seeds"]
    t0, w0 = time.process_time(), time.perf_counter()
    splits = _splits(inputs, setting)
    models = _classifiers(inputs, setting, seeds)
    samples = [sample_label_fraction(_STATE["data"]["train"][1], fraction, seed=s) for s in seeds]
    cfg = FinetuneConfig(max_epochs=job["max_epochs"], patience=job["patience"])
    mode = choose_vectorize(models[0])
    results = train_seed_group(models, seeds, samples, *splits, _STATE["classes"], cfg)
    return {**job, "mode": mode, "cpu_s": time.process_time() - t0, "wall_s": time.perf_counter() - w0,
            "epochs": [r.epochs_run for r in results], "test_macro_f1": [r.test_macro_f1 for r in results],
            "n_train": int(len(samples[0]))}


def today_cell(job: dict) -> dict:
    """Today's trial (seed 0) for a few epochs: CPU time per epoch and the fixed part (build, data, test)."""
    from mujo.evaluate.finetune import FinetuneConfig, sample_label_fraction, train_classifier
    from mujo.models import build_classifier

    inputs, setting, fraction = job["inputs"], job["setting"], job["fraction"]
    data = _STATE["data"]
    stamps: list[float] = []
    t0 = time.process_time()
    x_train, y_train = data["train"]
    idx = sample_label_fraction(y_train, fraction, seed=0)
    split = {"train": ({m: x_train[m][idx] for m in inputs}, y_train[idx])}
    for name in ("val", "test"):
        split[name] = ({m: data[name][0][m] for m in inputs}, data[name][1])
    model = build_classifier(_STATE["pretrained"], inputs, _STATE["classes"], setting, seed=0)
    cfg = FinetuneConfig(max_epochs=job["epochs"], patience=job["epochs"] + 1, seed=0)
    t_start = time.process_time()
    train_classifier(model, split["train"], split["val"], split["test"], _STATE["classes"], cfg,
                     on_epoch=lambda m: stamps.append(time.process_time()))
    t_end = time.process_time()
    per_epoch = [b - a for a, b in zip(stamps, stamps[1:])] or [stamps[0] - t_start]
    epoch_s = statistics.median(per_epoch)
    fixed = (t_end - t0) - epoch_s * len(stamps)  # building, data, restoring, test (what a trial pays once)
    return {**job, "epoch_cpu_s": epoch_s, "fixed_cpu_s": max(fixed, 0.0)}


def floor_cell(job: dict) -> dict:
    """The necessary work of one seed-epoch of a cell at the best speed measured: training steps of the epoch's
    batch sizes and one validation pass without autograd; single model vs vmapped group / G, the faster."""
    import torch
    from torch import nn
    from torch.func import functional_call, stack_module_state, vmap

    from mujo.evaluate.finetune import sample_label_fraction

    inputs, setting, fraction, g = job["inputs"], job["setting"], job["fraction"], job["group"]
    splits = _splits(inputs, setting)
    n_train = len(sample_label_fraction(_STATE["data"]["train"][1], fraction, seed=0))
    sizes = [len(c) for c in torch.arange(n_train).split(64)]
    x_tr = {k: torch.as_tensor(np.asarray(v[:64])) for k, v in splits[0][0].items()}
    y_tr = torch.as_tensor(splits[0][1][:64])
    x_val = {k: torch.as_tensor(np.asarray(v)) for k, v in splits[1][0].items()}
    models = _classifiers(inputs, setting, list(range(g)))
    loss_fn = nn.CrossEntropyLoss()

    def best(fn, repeats=2):
        fn()
        out = []
        for _ in range(repeats):
            t = time.process_time()
            fn()
            out.append(time.process_time() - t)
        return min(out)

    single = models[0]
    from mujo.optim import adamw

    opt = adamw([p for p in single.parameters() if p.requires_grad], lr=1e-4)

    def step_single(b):
        single.train()
        loss = loss_fn(single({k: v[:b] for k, v in x_tr.items()}), y_tr[:b])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def val_single(bs):
        single.eval()
        with torch.inference_mode():
            n = len(next(iter(x_val.values())))
            for i in range(0, n, bs):
                single({k: v[i:i + bs] for k, v in x_val.items()})

    params, buffers = stack_module_state(models)
    trainable = [n for n, p in models[0].named_parameters() if p.requires_grad]
    params = {n: p.detach().requires_grad_(n in trainable) for n, p in params.items()}
    base = _classifiers(inputs, setting, [0])[0].to("meta")
    gopt = adamw([params[n] for n in trainable], lr=1e-4)

    def call(p, bu, x):
        return functional_call(base, {**p, **bu}, (x,))

    def step_group(b):
        base.train()
        x = {k: v[:b].expand(g, *v[:b].shape) for k, v in x_tr.items()}
        logits = vmap(call, randomness="different")(params, buffers, x)
        loss = sum(loss_fn(logits[i], y_tr[:b]) for i in range(g))
        gopt.zero_grad(set_to_none=True)
        loss.backward()
        gopt.step()

    def val_group(bs):
        base.eval()
        with torch.inference_mode():
            n = len(next(iter(x_val.values())))
            p = {k: v.detach() for k, v in params.items()}
            for i in range(0, n, bs):
                vmap(call, in_dims=(0, 0, None))(p, buffers, {k: v[i:i + bs] for k, v in x_val.items()})

    steps = 0.0
    for b in sorted(set(sizes)):
        one = best(lambda: step_single(b))
        grp = best(lambda: step_group(b), repeats=1) / g
        steps += min(one, grp) * sizes.count(b)
    val = min(min(best(lambda: val_single(bs)) for bs in (64, 512)), best(lambda: val_group(512), repeats=1) / g)
    return {**job, "floor_epoch_cpu_s": steps + val, "n_train": n_train}


def run_pool(fn, jobs: list[dict], cpus: int, manifest: dict, pretrained: str,
             keep: str | None = None, as_filed: bool = False) -> tuple[list[dict], float]:
    """``fn`` over ``jobs`` in ``cpus`` one-thread processes; with ``keep`` (a JSON file) the results of an earlier
    run with the same jobs are reused (a later phase failed), and new results are written there."""
    if keep and Path(keep).exists():
        saved = json.loads(Path(keep).read_text())
        if saved["jobs"] == json.loads(json.dumps(jobs)):
            return saved["out"], saved["wall_s"]
    t0 = time.perf_counter()
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(cpus, initializer=_init, initargs=(manifest, pretrained, as_filed)) as pool:
        out = pool.map(fn, jobs, chunksize=1)
    wall = time.perf_counter() - t0
    if keep:
        Path(keep).write_text(json.dumps({"jobs": jobs, "out": out, "wall_s": wall}))
    return out, wall


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", default=None, help="work folder (default: a temporary one)")
    p.add_argument("--pretrained", default=None, help="a pretrained artefact (default: random weights, demo size)")
    p.add_argument("--fractions", type=float, nargs="+", default=FRACTIONS)
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--seeds-per-trial", type=int, default=10)
    p.add_argument("--loop-seeds", type=int, default=2, help="seeds actually run in loop-mode cells (then scaled)")
    p.add_argument("--max-epochs", type=int, default=200)
    p.add_argument("--patience", type=int, default=25)
    p.add_argument("--today-epochs", type=int, default=3)
    p.add_argument("--today", choices=["as-filed", "current"], default="as-filed", help=(
        "today's path as the issue measured it (the encoders' layers as written, default AdamW) or with this "
        "session's encoders and optimiser (what a per-seed trial, evaluate.engine: per_seed, runs now)"))
    p.add_argument("--cpus", type=int, default=2)
    p.add_argument("--inputs", default="acc,video+pose+acc")
    p.add_argument("--json", default=None, help="write every figure here")
    p.add_argument("--keep-phases", action="store_true", help=(
        "keep each phase's results in the work folder and reuse them when run again with the same jobs"))
    args = p.parse_args()
    inputs_list = [i.split("+") for i in args.inputs.split(",")]
    workdir = args.dir or tempfile.mkdtemp(prefix="evalbench-")
    t0 = time.perf_counter()
    manifest, pretrained, classes = prepare(workdir, args.pretrained)
    print(f"data: synthhar as jobs/configs/main.yaml makes it, {classes} classes, train/val/test windows "
          f"{manifest['rows']} ({time.perf_counter() - t0:.0f} s to make); pretrained: "
          f"{args.pretrained or 'random weights, demo size'}", flush=True)
    cells = [(i, s, f) for i in inputs_list for s in SETTINGS for f in args.fractions]
    _init(manifest, pretrained)
    feature_cpu = {"+".join(i): _features(i)[1] for i in inputs_list}
    print(f"frozen features once: {', '.join(f'{k} {v:.1f} s' for k, v in feature_cpu.items())} CPU", flush=True)

    # the engine, for real
    jobs = []
    groups = [list(range(i, min(i + args.seeds_per_trial, args.seeds))) for i in range(0, args.seeds,
                                                                                       args.seeds_per_trial)]
    for inputs, setting, fraction in cells:
        loop = setting != "frozen"  # trainable encoders: loop mode (choose_vectorize), a seed's cost is its own
        run = [groups[0][:args.loop_seeds]] if loop else groups
        for seeds in run:
            jobs.append({"inputs": inputs, "setting": setting, "fraction": fraction, "seeds": seeds,
                         "max_epochs": args.max_epochs, "patience": args.patience,
                         "scale": args.seeds / len(seeds) if loop else 1.0})
    jobs.sort(key=lambda j: -(j["fraction"] * (3 if "pose" in j["inputs"] else 1)))  # long jobs first
    phase = (lambda name: str(Path(workdir) / f"phase-{name}.json")) if args.keep_phases else (lambda name: None)
    engine, engine_wall = run_pool(engine_group, jobs, args.cpus, manifest, pretrained, phase("engine"))
    print(f"engine: {len(jobs)} seed groups run in {engine_wall:.0f} s wall on {args.cpus} processes", flush=True)

    # epochs per (cell, seed) as measured; loop cells: their sampled seeds stand for all
    epochs: dict[tuple, list[int]] = {}
    engine_cpu: dict[tuple, float] = {}
    for r in engine:
        key = ("+".join(r["inputs"]), r["setting"], r["fraction"])
        epochs.setdefault(key, []).extend(r["epochs"])
        engine_cpu[key] = engine_cpu.get(key, 0.0) + r["cpu_s"] * r["scale"]
    seed_epochs = {k: (v if len(v) == args.seeds else [statistics.fmean(v)] * args.seeds) for k, v in epochs.items()}

    today_jobs = [{"inputs": i, "setting": s, "fraction": f, "epochs": args.today_epochs} for i, s, f in cells]
    today, _ = run_pool(today_cell, today_jobs, args.cpus, manifest, pretrained, phase(f"today-{args.today}"),
                        as_filed=args.today == "as-filed")
    floor_jobs = [{"inputs": i, "setting": s, "fraction": f, "group": min(args.seeds_per_trial, 4)}
                  for i, s, f in cells]
    floor, _ = run_pool(floor_cell, floor_jobs, args.cpus, manifest, pretrained, phase("floor"))

    rows = []
    for t, fl in zip(today, floor):
        key = ("+".join(t["inputs"]), t["setting"], t["fraction"])
        ep = seed_epochs[key]
        rows.append({"cell": key, "mean_epochs": statistics.fmean(ep), "at_max": sum(e >= args.max_epochs for e in ep),
                     "today_cpu_s": sum(ep) * t["epoch_cpu_s"] + len(ep) * t["fixed_cpu_s"],
                     "engine_cpu_s": engine_cpu[key], "floor_cpu_s": sum(ep) * fl["floor_epoch_cpu_s"],
                     "today_epoch_s": t["epoch_cpu_s"], "floor_epoch_s": fl["floor_epoch_cpu_s"]})
    for k, v in feature_cpu.items():  # frozen features: once per inputs, for every frozen cell
        frozen = [r for r in rows if r["cell"][0] == k and r["cell"][1] == "frozen"]
        for r in frozen:
            r["floor_cpu_s"] += v / len(frozen)
            r["engine_cpu_s"] += v / len(frozen)

    print(f"\n{'inputs':<16}{'setting':<10}{'frac':>6}{'epochs':>8}{'at max':>7}{'today s/ep':>11}"
          f"{'floor s/ep':>11}{'today CPU s':>12}{'engine CPU s':>13}{'floor CPU s':>12}{'x':>7}")
    for r in rows:
        i, s, f = r["cell"]
        print(f"{i:<16}{s:<10}{f:>6g}{r['mean_epochs']:>8.1f}{r['at_max']:>7}{r['today_epoch_s']:>11.3f}"
              f"{r['floor_epoch_s']:>11.3f}{r['today_cpu_s']:>12.0f}{r['engine_cpu_s']:>13.0f}{r['floor_cpu_s']:>12.0f}"
              f"{r['today_cpu_s'] / r['engine_cpu_s']:>7.1f}")
    for label, sel in [("all", lambda r: True)] + [(f"{i}/{s}", lambda r, i=i, s=s: r["cell"][:2] == (i, s))
                                                   for i in ("+".join(x) for x in inputs_list) for s in SETTINGS]:
        part = [r for r in rows if sel(r)]
        tc, ec, fc = (sum(r[k] for r in part) for k in ("today_cpu_s", "engine_cpu_s", "floor_cpu_s"))
        print(f"{label:<28} today {tc / 3600:7.2f} CPU-h  engine {ec / 3600:6.2f} CPU-h  floor {fc / 3600:6.2f} "
              f"CPU-h  today/engine {tc / ec:5.1f}x  floor/engine {fc / ec:4.2f}")
    tc, ec, fc = (sum(r[k] for r in rows) for k in ("today_cpu_s", "engine_cpu_s", "floor_cpu_s"))
    seed_runs = len(cells) * args.seeds
    print(f"\nprotocol: {len(cells)} cells x {args.seeds} seeds = {seed_runs} seed runs, {args.max_epochs} epochs, "
          f"patience {args.patience}; loop-mode cells measured on {args.loop_seeds} seed(s) and scaled; today: "
          f"{args.today}")
    print(f"on {args.cpus} CPUs (CPU time / {args.cpus}): today {tc / args.cpus / 60:.1f} min, engine "
          f"{ec / args.cpus / 60:.1f} min, floor {fc / args.cpus / 60:.1f} min; engine reaches "
          f"{fc / ec:.2f} of the floor; today/floor {tc / fc:.1f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "engine": engine, "today": today, "floor": floor,
                                               "args": vars(args)}, default=str, indent=1))
    print(f"evaluation speed-up: {tc / ec:.1f}x (goal >= 10)")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
