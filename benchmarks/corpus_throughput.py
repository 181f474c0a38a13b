"""Motion-corpus throughput: raw clips/s of each corpus adapter, and of preprocessing the result, extrapolated to a
HumanML3D-sized corpus.

A sample corpus is written once in each published layout (HumanML3D: 22 SMPL joints at 20 Hz in metres, y up;
KIT-ML: 21 joints at 12.5 Hz in millimetres; a bring-your-own corpus card: Human3.6M joints at 30 Hz with 512-d video
features at 10 Hz) from the platform's motion generator, with HumanML3D's statistics: motions of 2-10 s (mean about
7 s), 3 distinct captions each, one motion in ten with an extra captioned span. Then, in this one process:

- **adapter**: ``adapter.read(...)`` consumed to the end: reading the files, joint mapping, the left/right check,
  the cubic-spline resampling to 50 Hz and the virtual wrist IMU; clips/s and motions/s;
- **ingest**: the same plus writing the raw Parquet parts and ``dataset.json`` (``mujo.adapters.ingest``);
- **preprocess**: the HumanML3D sample's raw clips windowed by ``mujo.pipelines.preprocess`` with
  ``executor="local"`` (one process: windows, text embeddings of every caption, shards, manifest), after a first
  run that loads the sentence model (not timed).

The figures are single-process rates; extrapolated to HumanML3D (14,616 motions, 29,232 with the mirrored copies,
44,970 captions, 28.6 h) they give the one-core time of an ingest and of its preprocessing. The Ray Data
preprocessing spreads the files over the cluster's cores (``benchmarks/preprocess_throughput.py`` measures how
well). The adapters read through ``mujo.storage``; the sample is on local disk here.

    .venv/bin/python benchmarks/corpus_throughput.py                # 48 motions per corpus
    .venv/bin/python benchmarks/corpus_throughput.py --motions 96 --dir /tmp/ct
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "platform"))

from mujo.adapters import get_adapter, ingest  # noqa: E402
from mujo.data import skeleton as sk  # noqa: E402
from mujo.data import synth  # noqa: E402

HUMANML3D_MOTIONS = 29_232  # 14,616 motions and their mirrored copies (the official split lists hold both)
ACTIVITIES = ("walking", "running", "squats", "waving", "jumping_jacks", "boxing", "bicep_curls", "lunges")
FIXTURE_HZ = 100.0
WORDS = ("slowly", "quickly", "then", "turns", "left", "right", "arms", "legs", "forward", "backward", "twice",
         "while", "standing", "bending", "raising", "lowering", "steps", "around", "in", "place", "with", "both")


def to_y_up(p: np.ndarray) -> np.ndarray:
    return np.stack([p[..., 0], p[..., 2], -p[..., 1]], axis=-1)


def feet(h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    right = h[:, sk.R_HIP] - h[:, sk.L_HIP]
    forward = np.cross(np.array([0.0, 0.0, 1.0]), right)
    forward /= np.maximum(np.linalg.norm(forward, axis=-1, keepdims=True), 1e-9)
    return h[:, sk.L_ANKLE] + 0.12 * forward, h[:, sk.R_ANKLE] + 0.12 * forward


def smpl22(h: np.ndarray) -> np.ndarray:
    """Human3.6M (z up) -> HumanML3D's 22 SMPL joints (y up); joints the platform does not map placed in between."""
    j = np.zeros((len(h), 22, 3))
    lt, rt = feet(h)
    src = {0: sk.PELVIS, 1: sk.L_HIP, 2: sk.R_HIP, 4: sk.L_KNEE, 5: sk.R_KNEE, 6: sk.SPINE, 7: sk.L_ANKLE,
           8: sk.R_ANKLE, 15: sk.NECK, 16: sk.L_SHOULDER, 17: sk.R_SHOULDER, 18: sk.L_ELBOW, 19: sk.R_ELBOW,
           20: sk.L_WRIST, 21: sk.R_WRIST}
    for k, v in src.items():
        j[:, k] = h[:, v]
    j[:, 3] = 0.5 * (h[:, sk.PELVIS] + h[:, sk.SPINE])
    j[:, 9] = 0.5 * (h[:, sk.SPINE] + h[:, sk.THORAX])
    j[:, 12] = 0.5 * (h[:, sk.THORAX] + h[:, sk.NECK])
    j[:, 13] = 0.7 * h[:, sk.THORAX] + 0.3 * h[:, sk.L_SHOULDER]
    j[:, 14] = 0.7 * h[:, sk.THORAX] + 0.3 * h[:, sk.R_SHOULDER]
    j[:, 10], j[:, 11] = lt, rt
    return to_y_up(j)


def kit21(h: np.ndarray) -> np.ndarray:
    j = np.zeros((len(h), 21, 3))
    lt, rt = feet(h)
    src = {0: sk.PELVIS, 3: sk.THORAX, 4: sk.NECK, 5: sk.R_SHOULDER, 6: sk.R_ELBOW, 7: sk.R_WRIST, 8: sk.L_SHOULDER,
           9: sk.L_ELBOW, 10: sk.L_WRIST, 11: sk.R_HIP, 12: sk.R_KNEE, 13: sk.R_ANKLE, 14: sk.R_ANKLE, 16: sk.L_HIP,
           17: sk.L_KNEE, 18: sk.L_ANKLE, 19: sk.L_ANKLE}
    for k, v in src.items():
        j[:, k] = h[:, v]
    j[:, 1] = 0.5 * (h[:, sk.PELVIS] + h[:, sk.SPINE])
    j[:, 2] = 0.5 * (h[:, sk.SPINE] + h[:, sk.THORAX])
    j[:, 15], j[:, 20] = rt, lt
    return to_y_up(j) * 1000.0


def write_sample(root: Path, motions: int, seed: int = 0) -> dict[str, Path]:
    """The three sample corpora under ``root``; returns {corpus: source folder or card}."""
    rng = np.random.default_rng(seed)
    hml, kit, byo = root / "HumanML3D", root / "KIT-ML", root / "byo"
    for r in (hml, kit):
        (r / "new_joints").mkdir(parents=True)
        (r / "texts").mkdir()
    (byo / "pose").mkdir(parents=True)
    (byo / "video").mkdir()
    ids = {"train": [], "val": [], "test": []}
    lines = []
    for i in range(motions):
        activity = ACTIVITIES[i % len(ACTIVITIES)]
        seconds = float(rng.uniform(4.2, 10.0))  # mean 7.1 s, as HumanML3D's
        subject = synth.sample_subject(f"b{i}", seed=i)
        h = synth.generate_motion(activity, subject, seconds, seed=i, fs=FIXTURE_HZ)["pose"]
        mid = f"{i:06d}"
        words = rng.choice(WORDS, size=(3, 6))  # distinct captions, as a real corpus has: no embedding is reused
        captions = [f"a person does {activity.replace('_', ' ')} {' '.join(w)}#tokens#0.0#0.0" for w in words]
        if i % 10 == 0:
            captions.append(f"the person pauses briefly#tokens#1.0#{min(seconds, 4.0):.1f}")
        np.save(hml / "new_joints" / f"{mid}.npy", smpl22(h[::5]).astype(np.float32))
        np.save(kit / "new_joints" / f"{mid}.npy", kit21(h[::8]).astype(np.float32))
        for r in (hml, kit):
            (r / "texts" / f"{mid}.txt").write_text("\n".join(captions) + "\n")
        split = "train" if i % 10 < 8 else ("val" if i % 10 == 8 else "test")
        ids[split].append(mid)
        np.save(byo / "pose" / f"{mid}.npy", h[::3].astype(np.float32))  # 33.3 Hz
        np.save(byo / "video" / f"{mid}.npy", rng.normal(size=(int(seconds * 10), 512)).astype(np.float32))
        lines.append(json.dumps({"id": mid, "pose": f"pose/{mid}.npy", "video": f"video/{mid}.npy",
                                 "texts": [c.split("#")[0] for c in captions[:3]], "subject": f"s{i % 12}",
                                 "split": split}))
    for r in (hml, kit):
        for split, xs in ids.items():
            (r / f"{split}.txt").write_text("\n".join(xs) + "\n")
    (byo / "clips.jsonl").write_text("\n".join(lines) + "\n")
    card = {"kind": "motion_corpus", "name": "byo", "pose": {"joints": "h36m17", "rate_hz": 100 / 3, "units": "m",
                                                               "up": "+z"},
            "video": {"rate_hz": 10, "dim": 512}, "labels": ["motion"]}
    (byo / "corpus.yaml").write_text(yaml.safe_dump(card))
    return {"humanml3d": hml, "kitml": kit, "corpus": byo / "corpus.yaml"}


def time_adapter(name: str, source: Path, repeat: int) -> tuple[float, int, int]:
    """Median seconds of consuming the adapter, clips, motions."""
    times, clips = [], 0
    for k in range(repeat + 1):  # the first pass is a warm-up (imports, page cache): not timed
        adapter = get_adapter(name, card=str(source)) if name == "corpus" else get_adapter(name)
        t0 = time.perf_counter()
        clips = sum(1 for _ in (adapter.read() if name == "corpus" else adapter.read(str(source))))
        if k:
            times.append(time.perf_counter() - t0)
    motions = (adapter.report.details.get("motions", {}).get("motions") if name != "corpus"
               else adapter.report.counts["clips"])
    return float(np.median(times)), clips, int(motions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--motions", type=int, default=48)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", help="keep the sample corpora here (default: a temporary folder, removed)")
    args = parser.parse_args()
    base = Path(args.dir or tempfile.mkdtemp(prefix="corpus-throughput-"))
    try:
        if not (base / "HumanML3D").exists():
            t0 = time.perf_counter()
            sources = write_sample(base, args.motions)
            print(f"sample: {args.motions} motions per corpus written in {time.perf_counter() - t0:.1f} s ({base})")
        else:
            sources = {"humanml3d": base / "HumanML3D", "kitml": base / "KIT-ML", "corpus": base / "byo/corpus.yaml"}
        rates = {}
        for name, source in sources.items():
            seconds, clips, motions = time_adapter(name, source, args.repeat)
            rates[name] = motions / seconds
            print(f"adapter {name:10s}: {clips} clips from {motions} motions in {seconds:.2f} s (median of "
                  f"{args.repeat}) = {clips / seconds:.1f} clips/s, {motions / seconds:.1f} motions/s; "
                  f"HumanML3D-sized ({HUMANML3D_MOTIONS} motions): {HUMANML3D_MOTIONS / rates[name] / 60:.1f} min "
                  "on one core")
        from mujo.config import PreprocessConfig
        from mujo.pipelines.preprocess import preprocess

        cfg = PreprocessConfig(trim_fraction=0.0)
        warm = base / "warm"  # the first ingest and preprocess pay imports and the sentence model's load: not timed
        shutil.rmtree(warm, ignore_errors=True)
        ingest("humanml3d", str(sources["humanml3d"]), str(warm), min_seconds=2.0, limit=2)
        preprocess({"humanml3d": 512}, str(warm), cfg, executor="local")
        run = base / "run"
        shutil.rmtree(run, ignore_errors=True)
        t0 = time.perf_counter()
        doc = ingest("humanml3d", str(sources["humanml3d"]), str(run), min_seconds=2.0)
        t_ingest = time.perf_counter() - t0
        print(f"ingest humanml3d: {doc['clips']} clips ({doc['hours'] * 3600:.0f} s of motion) written in "
              f"{t_ingest:.2f} s = {doc['clips'] / t_ingest:.1f} clips/s")
        t0 = time.perf_counter()
        manifest = preprocess({"humanml3d": 512}, str(run), cfg, executor="local")["humanml3d"]
        t_pre = time.perf_counter() - t0
        rows = sum(manifest.rows.values()) if isinstance(manifest.rows, dict) else int(manifest.rows)
        print(f"preprocess humanml3d (local, one process): {doc['clips']} clips -> {rows} windows in {t_pre:.2f} s = "
              f"{doc['clips'] / t_pre:.1f} clips/s, {rows / t_pre:.0f} windows/s")
        scale = HUMANML3D_MOTIONS / args.motions / 3600.0
        print(f"HumanML3D-sized corpus ({HUMANML3D_MOTIONS} motions): ingest {t_ingest * scale:.2f} h, preprocess "
              f"{t_pre * scale:.2f} h, together {(t_ingest + t_pre) * scale:.2f} h on one core")
    finally:
        if not args.dir:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
