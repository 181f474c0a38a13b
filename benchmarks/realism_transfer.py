"""Does sensor realism in pretraining transfer to a real smartwatch dataset? BasicMotions, measured.

For each realism variant (``none``, ``all``, and every switch of :mod:`mujo.data.realism` alone) a small MuJo model
(pose + acc + text) is pretrained in-process on the synthetic corpus with the wide vocabulary
(``mujo.data.activities.WIDE_ACTIVITIES``, which contains BasicMotions' four activities), with several free-text
captions per clip drawn anew every epoch (:class:`mujo.data.text.CaptionSampler`) and the variant's realism applied
to every batch by the platform's own :class:`mujo.train.trainer.Trainer`. Each model is then evaluated on
BasicMotions (real smartwatch, 4 activities, 40 + 40 recordings of 10 s at 10 Hz, from ``aeon``'s bundled copy):

- **fine-tuning**: the acc classifier of the platform (``mujo.models.classifier``) trained by
  ``mujo.evaluate.finetune.train_classifier`` (lr 1e-4, class-weighted CE, early stopping on validation Macro F1) as
  baseline (random init, trained once: it does not depend on the pretraining), frozen and fine-tuned, at 2 %, 10 %
  and 100 % of the training windows (per class, at least one), over ``--seeds`` seeds; Macro F1 on aeon's test
  split; unsupervised calibration (PIT of BasicMotions' acc onto the corpus' acc, ``mujo.evaluate.calibration``);
- **zero-shot**: each test window's acc embedding against the embedded label texts, top-1 and top-3 Macro F1
  (chance top-1: 0.25).

BasicMotions as read here: acc channels 0-2 (``aeon.datasets.load_basic_motions``; gyroscope channels unused); the
values are gravity-removed (standing reads ~0 m/s^2 on average, running ~16 m/s^2), taken as m/s^2, resampled
10 -> 50 Hz (linear) and cut into 2-s windows with stride 1 s (9 per recording); the watch goes into the right
wrist slot, the left slot is zeros (the platform's rule for one-watch datasets) and stays zeros after calibration.
Validation: 2 of aeon's 10 training recordings per class (fixed draw). Nothing here is tuned to BasicMotions: the
corpus, model, schedule and fine-tuning settings are fixed below for every variant.

Usage::

    .venv/bin/python benchmarks/realism_transfer.py                       # every variant, 5 seeds
    .venv/bin/python benchmarks/realism_transfer.py --variants none,all --seeds 5 --out /tmp/realism.json

Prints one block per variant as it finishes and the tables at the end (Markdown, for docs/sensor-realism.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from mujo.config import MainConfig  # noqa: E402
from mujo.data.activities import WIDE_ACTIVITIES  # noqa: E402
from mujo.data.clips import ClipTask, make_clip  # noqa: E402
from mujo.data.realism import SWITCHES, RealismParams  # noqa: E402
from mujo.data.text import CaptionSampler, TextEmbedder, make_label_text  # noqa: E402
from mujo.data.windows import clip_windows, resample  # noqa: E402
from mujo.evaluate.calibration import fit_calibration, apply_calibration  # noqa: E402
from mujo.evaluate.data import embed  # noqa: E402
from mujo.evaluate.finetune import FinetuneConfig, sample_label_fraction, train_classifier  # noqa: E402
from mujo.evaluate.zeroshot import label_matrix, zero_shot_report  # noqa: E402
from mujo.models.classifier import build_classifier  # noqa: E402
from mujo.models.mujo import build_model  # noqa: E402
from mujo.schema import FS, STRIDE, WINDOW, SampleFormat  # noqa: E402
from mujo.train.trainer import Trainer  # noqa: E402

LABELS = ("standing", "walking", "running", "badminton")
FRACTIONS = (0.02, 0.1, 1.0)
CAPTIONS_PER_CLIP = 4
VIDEO_DIM = 8  # the corpus' video stand-in is generated but not used (pose + acc + text model)
MODEL = {"modalities": ["pose", "acc", "text"], "embed_dim": 256, "proj_hidden": 256, "text_hidden": 256,
         "dropout": 0.1}
_EC = MainConfig().evaluate  # the platform's defaults = the paper's protocol (lr 1e-4, 200 epochs, patience 25)
FINETUNE = dict(lr=_EC.lr, max_epochs=_EC.max_epochs, patience=_EC.patience, batch_size=_EC.batch_size)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------------------------------------------
# The pretraining corpus: synthetic clips of the wide vocabulary, windowed as preprocessing does, several captions
# --------------------------------------------------------------------------------------------------------------

def build_corpus(subjects: int, val_subjects: int, seconds: float, seed: int = 0) -> dict:
    fmt = SampleFormat(video_dim=VIDEO_DIM)
    label_map = {a: i for i, a in enumerate(WIDE_ACTIVITIES)}
    parts = {"train": [], "val": []}
    captions: dict[str, list] = {"train": [], "val": []}
    keys: dict[str, list] = {"train": [], "val": []}
    rng = np.random.default_rng(seed)
    for number in range(subjects + val_subjects):
        split = "train" if number < subjects else "val"
        for activity in WIDE_ACTIVITIES:
            task = ClipTask("corpus", split, number, activity, 0, float(rng.uniform(seconds, seconds + 4.0)),
                            int(rng.integers(2**31)), "free_text", False, VIDEO_DIM)
            clip = make_clip(task)
            w = clip_windows(clip, fmt, label_map)
            texts = [make_label_text(activity, np.random.default_rng([task.seed, k])) for k in range(CAPTIONS_PER_CLIP)]
            parts[split].append(w)
            captions[split] += [texts] * len(w["acc"])
            keys[split] += [clip.clip_id] * len(w["acc"])
    out = {}
    for split, ws in parts.items():
        out[split] = {k: np.concatenate([w[k] for w in ws]) for k in ("acc", "pose", "class_id")}
        out[split]["captions"], out[split]["keys"] = captions[split], keys[split]
    return out


def input_stats(train: dict) -> dict:
    from mujo.models.mujo import center_pose  # the model standardises centred pose

    pose = center_pose(torch.from_numpy(train["pose"])).numpy().reshape(-1, 3)
    acc = train["acc"].reshape(-1, 6)
    return {"acc": {"mean": acc.mean(0).tolist(), "std": acc.std(0).tolist()},
            "pose": {"mean": pose.mean(0).tolist(), "std": pose.std(0).tolist()}}


def pretrain(corpus: dict, sampler: CaptionSampler, stats: dict, realism: RealismParams, epochs: int, seed: int):
    train = corpus["train"]
    n = len(train["acc"])
    realism_cfg = {k: (list(v) if isinstance(v, tuple) else v) for k, v in realism.__dict__.items()}
    cfg = MainConfig.model_validate({"model": MODEL, "pretrain": {
        "num_workers": 0, "batch_size": 128, "epochs": epochs, "lr": 1e-3, "warmup_steps": 10, "fewshot_shots": 0,
        "seed": seed,
        "realism": realism_cfg}})
    torch.manual_seed(seed)
    trainer = Trainer(cfg, stats, train_rows=n)
    acc, pose = torch.from_numpy(train["acc"]), torch.from_numpy(train["pose"])
    ones = torch.ones(128, dtype=torch.bool)
    losses = []
    while not trainer.done:
        epoch, offset = trainer.position
        text = torch.from_numpy(sampler.embeddings(epoch))  # this epoch's captions
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch))
        for i in range(offset, trainer.cadence.steps_per_epoch):
            idx = order[i * 128:(i + 1) * 128]
            batch = {"acc": acc[idx], "pose": pose[idx], "text_emb": text[idx], "has_acc": ones, "has_pose": ones,
                     "has_text": ones}
            losses.append(trainer.step(batch)["loss"])
            if trainer.done:
                break
    trainer.model.eval()
    return trainer.model, float(np.mean(losses[-10:]))


# --------------------------------------------------------------------------------------------------------------
# BasicMotions
# --------------------------------------------------------------------------------------------------------------

def basicmotions() -> dict[str, tuple[dict, np.ndarray]]:
    from aeon.datasets import load_basic_motions

    def windows(x: np.ndarray) -> np.ndarray:  # (6, 100) at 10 Hz -> (9, 100, 6) at 50 Hz, right wrist slot
        acc = resample(x[:3].T.astype(np.float32), 10.0, FS, int(len(x[0]) / 10.0 * FS))
        slots = np.zeros((len(acc), 6), np.float32)
        slots[:, 3:] = acc
        return np.stack([slots[s:s + WINDOW] for s in range(0, len(acc) - WINDOW + 1, STRIDE)])

    out = {}
    x_tr, y_tr = load_basic_motions(split="train")
    x_te, y_te = load_basic_motions(split="test")
    rng = np.random.default_rng(0)
    val_recs = set()
    for label in LABELS:
        val_recs |= set(rng.choice(np.flatnonzero(y_tr == label), 2, replace=False).tolist())
    for split, xs, ys, keep in (("train", x_tr, y_tr, lambda i: i not in val_recs),
                                ("val", x_tr, y_tr, lambda i: i in val_recs), ("test", x_te, y_te, lambda i: True)):
        acc, y = [], []
        for i in range(len(xs)):
            if keep(i):
                w = windows(xs[i])
                acc.append(w)
                y += [LABELS.index(str(ys[i]))] * len(w)
        out[split] = ({"acc": np.concatenate(acc)}, np.array(y, np.int64))
    return out


def calibrate(data: dict, corpus_train: dict) -> dict:
    """Unsupervised PIT onto the corpus' acc; channels that are all zeros (the empty wrist slot) stay zeros."""
    ref = corpus_train["acc"]
    ref = ref[np.random.default_rng(0).choice(len(ref), min(len(ref), 3000), replace=False)]
    cal = fit_calibration("unsupervised", data, ({"acc": ref}, np.full(len(ref), -1)), ["acc"])
    out = apply_calibration(cal, data)
    empty = np.all(np.concatenate([a["acc"] for a, _ in data.values()]) == 0, axis=(0, 1))
    for split, (arrays, _) in out.items():
        arrays["acc"][..., empty] = 0.0
    return out


def finetune_cells(model, data: dict, settings: tuple[str, ...], seeds: int) -> dict:
    """Macro F1 per (setting, fraction): a list over seeds."""
    (tr_x, tr_y), val, test = data["train"], data["val"], data["test"]
    res: dict = {}
    for setting in settings:
        for fraction in FRACTIONS:
            scores = []
            for seed in range(seeds):
                idx = sample_label_fraction(tr_y, fraction, seed)
                clf = build_classifier(model, ["acc"], len(LABELS), setting, seed=seed)
                r = train_classifier(clf, ({"acc": tr_x["acc"][idx]}, tr_y[idx]), val, test, len(LABELS),
                                     FinetuneConfig(seed=seed, **FINETUNE))
                scores.append(r.test_macro_f1)
            res[f"{setting}@{fraction}"] = scores
    return res


def zero_shot(model, data: dict, embedder) -> dict:
    arrays, y = data["test"]
    with torch.no_grad():
        mat = label_matrix(model, LABELS, embedder)
        emb = embed(model, arrays, ["acc"])
    return zero_shot_report(emb, y, mat, ks=(1, 3))


# --------------------------------------------------------------------------------------------------------------

def variants(names: list[str]) -> dict[str, RealismParams]:
    base = RealismParams()
    table = {"none": base, "all": base.all_on(), **{s: base.only(s) for s in SWITCHES}}
    unknown = [n for n in names if n not in table]
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; choose from {list(table)}")
    return {n: table[n] for n in names}


def fmt(scores: list[float]) -> str:
    return f"{np.mean(scores):.3f} ± {np.std(scores):.3f}"


def tables(results: dict) -> str:
    lines = ["| pretraining realism | setting | 2% | 10% | 100% |", "|---|---|---|---|---|"]
    base = results.get("_baseline")
    if base:
        lines.append("| (none: random init) | baseline | " + " | ".join(fmt(base[f"baseline@{f}"]) for f in FRACTIONS)
                     + " |")
    for name, r in results.items():
        if name.startswith("_"):
            continue
        for setting in ("frozen", "finetuned"):
            lines.append(f"| {name} | {setting} | " + " | ".join(fmt(r["f1"][f"{setting}@{f}"]) for f in FRACTIONS)
                         + " |")
    lines += ["", "| pretraining realism | zero-shot top-1 | top-3 | final pretraining loss | minutes |",
              "|---|---|---|---|---|"]
    for name, r in results.items():
        if not name.startswith("_"):
            zs = r["zero_shot"]
            lines.append(f"| {name} | {zs['top1_macro_f1']:.3f} | {zs['top3_macro_f1']:.3f} | {r['loss']:.3f} | "
                         f"{r['seconds'] / 60:.1f} |")
    return "\n".join(lines)


def goals(results: dict) -> str:
    base = results["_baseline"]
    out = []
    for name, r in results.items():
        if name.startswith("_"):
            continue
        f1 = r["f1"]
        frozen_ok = all(np.mean(f1[f"frozen@{f}"]) >= np.mean(base[f"baseline@{f}"]) for f in (0.02, 0.1))
        best2 = max(np.mean(f1["frozen@0.02"]), np.mean(f1["finetuned@0.02"]))
        gain = best2 - np.mean(base["baseline@0.02"])
        zs = r["zero_shot"]["top1_macro_f1"]
        out.append(f"{name}: frozen >= baseline at 2% and 10%: {'yes' if frozen_ok else 'no'}; best pretrained at 2% "
                   f"- baseline = {gain:+.3f} (goal +0.15: {'met' if gain >= 0.15 else 'missed'}); zero-shot top-1 "
                   f"{zs:.3f} (goal >= 0.5 = 2x chance: {'met' if zs >= 0.5 else 'missed'})")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variants", default="none,all," + ",".join(SWITCHES))
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=12, help="pretraining epochs")
    ap.add_argument("--subjects", type=int, default=6, help="corpus train subjects (x 40 activities)")
    ap.add_argument("--out", default="/tmp/realism_transfer.json", help="results (JSON), rewritten as they come")
    ap.add_argument("--skip-baseline", action="store_true", help="another run computes the baseline rows")
    ap.add_argument("--merge", default="", help="only print the tables of these result files (comma-separated)")
    args = ap.parse_args()
    if args.merge:
        results: dict = {}
        for path in args.merge.split(","):
            results.update(json.loads(Path(path).read_text()))
        print(tables(results))
        print()
        print(goals(results))
        return
    # one intra-op thread: on a loaded 2-core machine two threads per process spin on each other (0.9 s vs 0.05 s
    # per classifier step, measured here); a GPU/many-core machine may raise it
    torch.set_num_threads(int(os.environ.get("MUJO_BENCH_THREADS", "1")))
    chosen = variants([v for v in args.variants.split(",") if v])
    t0 = time.time()
    corpus = build_corpus(args.subjects, 2, seconds=12.0)
    embedder = TextEmbedder()
    sampler = CaptionSampler(corpus["train"]["captions"], corpus["train"]["keys"], embedder)
    stats = input_stats(corpus["train"])
    log(f"corpus: {len(corpus['train']['acc'])} train windows of {len(WIDE_ACTIVITIES)} activities, "
        f"{len(sampler.vocabulary)} distinct captions ({sampler.counts.mean():.1f} per window) in "
        f"{time.time() - t0:.0f} s")
    data = calibrate(basicmotions(), corpus["train"])
    log("BasicMotions windows: " + ", ".join(f"{s} {len(y)}" for s, (_, y) in data.items()))
    results: dict = {}
    t = time.time()
    if not args.skip_baseline:
        any_model = build_model(MainConfig.model_validate({"model": MODEL}).model, stats, seed=0)  # random init
        results["_baseline"] = finetune_cells(any_model, data, ("baseline",), args.seeds)
        log("baseline " + "  ".join(f"{k} {fmt(v)}" for k, v in results["_baseline"].items())
            + f"  ({time.time() - t:.0f} s)")
        Path(args.out).write_text(json.dumps(results, indent=1))
    for name, params in chosen.items():
        t = time.time()
        model, loss = pretrain(corpus, sampler, stats, params, args.epochs, 0)
        t_pre = time.time() - t
        f1 = finetune_cells(model, data, ("frozen", "finetuned"), args.seeds)
        zs = zero_shot(model, data, embedder)
        results[name] = {"f1": f1, "zero_shot": zs, "loss": loss, "seconds": time.time() - t,
                         "pretrain_seconds": t_pre}
        log(f"{name}: pretrain {t_pre:.0f} s, loss {loss:.3f}; " + "  ".join(f"{k} {fmt(v)}" for k, v in f1.items())
            + f"  zero-shot top-1 {zs['top1_macro_f1']:.3f} top-3 {zs['top3_macro_f1']:.3f}  ({time.time() - t:.0f} s)")
        Path(args.out).write_text(json.dumps(results, indent=1))
    print()
    print(f"BasicMotions (aeon), acc, unsupervised calibration, Macro F1 mean ± std over {args.seeds} seeds; "
          f"pretraining: {args.subjects} subjects x {len(WIDE_ACTIVITIES)} activities, {args.epochs} epochs")
    print(tables(results))
    print()
    if "_baseline" in results:
        print(goals(results))
    print(f"total {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
