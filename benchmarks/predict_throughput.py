"""Batch-inference throughput: the Ray Data predict path at 2 CPUs against a single-process loop over the same input
and against the bare-process ceiling, and the driver's peak memory at 1x and 10x the input.

The input mimics what a deployed wrist classifier meets: watch recordings (accelerometer only, 100 Hz, m/s^2, one
minute each), ``--clips`` of them in part files of ``--per-file``; a few distinct recordings are synthesised and
the rest reuse their streams under their own ids (the per-file work is the same). The classifier is an acc-only
artefact of the demo's size (``embed_dim`` 1280) with random weights: throughput does not depend on what it learnt.

What each timed figure includes (windows/s = windows predicted / seconds):

- single process: ``run_predict(..., executor="local")`` in a fresh process: the checks, loading the artefact,
  reading, windowing (resampling 100 -> 50 Hz), the model, timelines, writing every output;
- Ray Data: ``run_predict(..., executor="ray")`` on a cluster that is already up (``ray.init`` and a tiny Ray Data
  job run first, printed separately): the same work in a pool of model actors, including starting them;
- the ceiling, measured the way ``benchmarks/preprocess_throughput.py`` measures it: the file work alone
  (:func:`mujo.pipelines.predict.predict_file`) in ``--cpus`` bare processes started and warmed beforehand (the
  artefact loaded, one file predicted), each taking every n-th file, with cpus / processes torch threads each (a
  Ray actor of one CPU gets one); no start, no scheduler.

The three sides run alternately within each of ``--repeat`` rounds (so that a load moving on a shared machine moves
all of them) on the ``--scale``-times input (200 -> 2000 one-minute recordings, 118 k windows by default), and every
run must give the same predicted labels and probabilities within 1e-5 (checked); medians are compared. A batch job
pays fixed costs whatever its input (a process or an actor pool starting, torch importing, the model loading): on
the 1x input (11.8 k windows, about two seconds of model work on 2 CPUs) they are most of the Ray side's time, so
the 1x input is run once per side to print them, and the throughput is read on the larger input. Then the driver's
peak memory (``ru_maxrss`` of a fresh driver process attached to the same cluster) at 1x and at ``--scale``x. The
last line is the ratio of the Ray side's windows/s to the ceiling's; the goal is >= 0.9 at 2 CPUs on >= 10 k
windows. Figures: ``benchmarks/README.md``.

    .venv/bin/python benchmarks/predict_throughput.py                 # 1x 11.8 k windows, 10x 118 k
    .venv/bin/python benchmarks/predict_throughput.py --repeat 3 --dir /tmp/pt   # keep the inputs for reruns
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "platform"))

from _ceiling import timed_processes  # noqa: E402

import numpy as np  # noqa: E402

from mujo import storage  # noqa: E402
from mujo.data.activities import MMFIT_ACTIVITIES  # noqa: E402
from mujo.data.clips import ClipTask, clips_to_table, make_clip  # noqa: E402

DATASET = "watch"


def write_raw(raw: str, clips: int, seconds: float, per_file: int, distinct: int = 20, copies: int = 1) -> int:
    """``clips`` acc-only watch recordings (100 Hz) as raw part files + the card, ``copies`` times over (more files,
    the same content under other ids); returns the number of files."""
    recs = []
    for i in range(distinct):
        c = make_clip(ClipTask(DATASET, "test", i, MMFIT_ACTIVITIES[i % len(MMFIT_ACTIVITIES)], 0, seconds, 7000 + i,
                               "canonical", True, 8), fs=100.0)
        recs.append(dataclasses.replace(c, pose=None, pose_hz=None, video=None, video_hz=None))
    files = 0
    for copy in range(copies):
        for p in range(0, clips, per_file):
            batch = [dataclasses.replace(recs[i % distinct], clip_id=f"{DATASET}-c{copy}-{i:05d}",
                                         subject=f"{DATASET}-s{i // 10:04d}") for i in range(p, min(p + per_file, clips))]
            storage.write_table(clips_to_table(batch), storage.join(raw, f"part-{copy:02d}-{p // per_file:05d}.parquet"))
            files += 1
    storage.write_json(storage.join(raw, "dataset.json"), {"name": DATASET, "labels": list(MMFIT_ACTIVITIES),
                                                           "clips": clips * copies})
    return files


def make_artefact(path: str) -> None:
    from mujo.config import ModelConfig
    from mujo.models import build_classifier, build_model
    from mujo.models.artefact import save_classifier

    backbone = build_model(ModelConfig(), seed=0)
    model = build_classifier(backbone, ["acc"], len(MMFIT_ACTIVITIES), "finetuned", seed=0)
    save_classifier(model, path, labels=list(MMFIT_ACTIVITIES), setting="finetuned")


def predict_cfg():
    from mujo.config import PredictConfig

    return PredictConfig(smoothing=3)


def _windows_of(out: str) -> int:
    return int(storage.read_json(storage.join(out, "summary.json"))["windows"])


def _predictions(out: str) -> tuple[list, np.ndarray]:
    """(recording, window, predicted label) rows and the top-k probabilities of a run, in a fixed order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    t = pa.concat_tables([pq.read_table(f) for f in storage.list_files(storage.join(out, "windows"), ".parquet")])
    t = t.sort_by([("recording_id", "ascending"), ("window", "ascending")])
    keys = list(zip(*(t.column(c).to_pylist() for c in ("recording_id", "window", "predicted"))))
    return keys, np.array(t.column("top_probs").to_pylist(), dtype=np.float32)


def local_once(model: str, raw: str, out: str) -> float:
    """The single-process loop in a fresh process (imports and model load included, like an actor)."""
    code = ("import sys, time; sys.path.insert(0, %r); t = time.time(); "
            "from mujo.config import PredictConfig; from mujo.pipelines.predict import run_predict; "
            "run_predict(%r, %r, %r, PredictConfig(smoothing=3), executor='local'); print(time.time() - t)"
            % (str(Path(__file__).resolve().parent.parent / "platform"), model, raw, out))
    return float(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                                text=True).stdout.strip().splitlines()[-1])


def ray_once(model: str, raw: str, out: str) -> float:
    from mujo.pipelines.predict import run_predict

    t = time.time()
    run_predict(model, raw, out, predict_cfg(), executor="ray")
    return time.time() - t


def _bare_worker(files: list[str], model: str, out: str, params: dict, threads: int, barrier, results) -> None:
    import torch

    from mujo.models.artefact import load_classifier

    torch.set_num_threads(threads)  # as Ray gives an actor of num_cpus=1 one thread: no oversubscription
    from mujo.pipelines.predict import _key, predict_file

    artefact = load_classifier(model)
    predict_file({"file": files[0], "key": f"warm-{os.getpid()}", "identity": {}}, artefact, params, out + "-warm")
    barrier.wait()
    for f in files:
        predict_file({"file": f, "key": _key(f), "identity": {}}, artefact, params, out)
    results.put(len(files))


def bare_seconds(model: str, raw: str, out: str, processes: int, cpus: int) -> float:
    from mujo.models.artefact import load_classifier
    from mujo.pipelines.predict import plan

    artefact = load_classifier(model)
    cfg = predict_cfg()
    params = {"splits": [], "batch_size": cfg.batch_size, "top_k": cfg.top_k, "smoothing": cfg.smoothing,
              "max_nan_share": cfg.max_nan_share, "ignore_labels": False, "video_dim": 512}
    p = plan(artefact, raw, out + "-plan", dict(params))
    params["kind"] = p.kind
    files = [t["file"] for t in p.todo]
    threads = max(1, cpus // processes)
    seconds = timed_processes(_bare_worker, [files[i::processes] for i in range(processes)],
                              (model, out, params, threads))
    for d in (out, out + "-warm", out + "-plan"):
        shutil.rmtree(d, ignore_errors=True)
    return seconds


def driver_peak_mb(model: str, raw: str, out: str, address: str) -> tuple[float, int]:
    """Peak RSS (MiB) of a fresh driver process that attaches to the cluster and runs the Ray predict path."""
    code = ("import sys, resource, json; sys.path.insert(0, %r); import ray; ray.init(address=%r, "
            "log_to_driver=False); ctx = ray.data.DataContext.get_current(); ctx.enable_progress_bars = False; "
            "from mujo.config import PredictConfig; from mujo.pipelines.predict import run_predict; "
            "s = run_predict(%r, %r, %r, PredictConfig(smoothing=3)); "
            "print(json.dumps([resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, s['windows']]))"
            % (str(Path(__file__).resolve().parent.parent / "platform"), address, model, raw, out))
    res = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    peak, windows = json.loads(res.stdout.strip().splitlines()[-1])
    return float(peak), int(windows)


def _side(name: str, model: str, raw: str, work: str, args) -> tuple[float, int, tuple]:
    """One timed run of one side on ``raw``: (seconds, windows, predictions)."""
    out = os.path.join(work, f"out-{name}")
    shutil.rmtree(out, ignore_errors=True)
    if name == "ceiling":
        secs = bare_seconds(model, raw, out, args.cpus, args.cpus)
        return secs, 0, ()
    secs = local_once(model, raw, out) if name == "local" else ray_once(model, raw, out)
    windows, answers = _windows_of(out), _predictions(out)
    shutil.rmtree(out, ignore_errors=True)
    return secs, windows, answers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=200, help="one-minute recordings (59 windows each) of the 1x input")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--per-file", type=int, default=10)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--scale", type=int, default=10, help="the larger input: this many times the 1x input")
    ap.add_argument("--dir", default=None, help="keep the input here (reused when present)")
    args = ap.parse_args()

    work = args.dir or tempfile.mkdtemp(prefix="mujo-predict-bench-")
    raw, model = os.path.join(work, "raw"), os.path.join(work, "model")
    big = os.path.join(work, f"raw-x{args.scale}")
    if not os.path.exists(os.path.join(raw, "dataset.json")):
        t = time.time()
        files = write_raw(raw, args.clips, args.seconds, args.per_file)
        print(f"input 1x: {files} files, {args.clips} recordings of {args.seconds:g} s (100 Hz acc) in "
              f"{time.time() - t:.1f} s")
    if not os.path.exists(os.path.join(big, "dataset.json")):
        files = write_raw(big, args.clips, args.seconds, args.per_file, copies=args.scale)
        print(f"input {args.scale}x: {files} files")
    if not os.path.exists(os.path.join(model, "classifier.json")):
        make_artefact(model)
    for folder in (raw, big):  # warm the page cache for every side
        for f in storage.list_files(folder, ".parquet"):
            Path(f).read_bytes()

    import ray

    t = time.time()
    ray.init(address="local", num_cpus=args.cpus, include_dashboard=False, log_to_driver=False,
             object_store_memory=300 * 2**20)
    ray.data.DataContext.get_current().enable_progress_bars = False
    print(f"ray.init: {time.time() - t:.1f} s")

    class _Identity:
        def __call__(self, batch):
            return batch

    t = time.time()
    ray.data.range(2).map_batches(_Identity, compute=ray.data.ActorPoolStrategy(size=1)).take_all()
    print(f"first Ray Data actor-pool job (helper actors): {time.time() - t:.1f} s")

    # The sides alternate within each repeat (ceiling, single process, Ray), so that a load that moves on a shared
    # machine moves all three; medians are compared. Throughput is measured on the larger input, where the fixed
    # costs of any batch job (a process or an actor pool starting, the model loading) weigh as they do on a real
    # input; the 1x input is run once per side to show those costs.
    times: dict[str, list[float]] = {"ceiling": [], "local": [], "ray": []}
    windows, first = None, None
    for r in range(args.repeat):
        for side in ("ceiling", "local", "ray"):
            secs, n, answers = _side(side, model, big, work, args)
            times[side].append(secs)
            if answers:
                windows = n
                if first is None:
                    first = answers
                else:  # the same answers (probabilities may differ in the last bits: other thread counts)
                    assert answers[0] == first[0] and np.abs(answers[1] - first[1]).max() <= 1e-5, \
                        "the sides' predictions differ"
            print(f"  run {r + 1} {side:7s}: {secs:6.1f} s" + (f", {n / secs:8.0f} windows/s" if n else ""))
    ceil_wps = windows / statistics.median(times["ceiling"])
    loop_wps = windows / statistics.median(times["local"])
    ray_wps = windows / statistics.median(times["ray"])
    small_ray, small_n, _ = _side("ray", model, raw, work, args)
    small_local, _, _ = _side("local", model, raw, work, args)
    print(f"windows: {windows} ({args.scale}x input); 1x input: {small_n}")
    print(f"ceiling ({args.cpus} bare processes, warm; median of {args.repeat}): {ceil_wps:.0f} windows/s")
    print(f"single process (median of {args.repeat}): {loop_wps:.0f} windows/s")
    print(f"Ray Data, {args.cpus} CPUs (median of {args.repeat}): {ray_wps:.0f} windows/s "
          f"({ray_wps / loop_wps:.2f}x the single process)")
    fixed = small_ray - small_n / ray_wps
    print(f"1x input: Ray {small_n / small_ray:.0f} windows/s, single process {small_n / small_local:.0f} windows/s; "
          f"the Ray path's fixed cost (actors starting, the model loading) about {fixed:.1f} s")

    address = ray.get_runtime_context().gcs_address
    peaks = {}
    for name, folder in (("1x", raw), (f"{args.scale}x", big)):
        out = os.path.join(work, f"mem-{name}")
        shutil.rmtree(out, ignore_errors=True)
        peaks[name] = driver_peak_mb(model, folder, out, address)
        shutil.rmtree(out, ignore_errors=True)
        print(f"driver peak RSS at {name} ({peaks[name][1]} windows): {peaks[name][0]:.0f} MiB")
    small, large = peaks["1x"][0], peaks[f"{args.scale}x"][0]
    print(f"driver peak memory {args.scale}x / 1x: {large / small:.3f} (goal: within +-10 %)")
    ray.shutdown()
    if not args.dir:
        shutil.rmtree(work, ignore_errors=True)
    print(f"predict ratio to ceiling: {ray_wps / ceil_wps:.2f} (goal >= 0.9)")


if __name__ == "__main__":
    main()
