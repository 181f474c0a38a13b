"""Preprocessing throughput: the Ray Data pipeline at 2 CPUs against a single-process loop over the same functions.

Both sides get the same raw input (synthetic clips written once to a local folder) and run
``mujo.pipelines.preprocess.preprocess``: ``executor="ray"`` (Ray Data streams the raw files to a pool of file
workers, ``preprocess.execute.FileWorker``, one file per call: read, validate, window, text embeddings from the
``EmbedText`` actor, write) and ``executor="local"`` (the same ``preprocess.window`` functions, one file after
another, the model in that process). What each timed figure includes:

- both: the driver's checks (listing, footers, progress), reading the raw files, validation, resampling, windows,
  text embeddings, writing the shards and progress records, the manifest;
- both: loading the sentence model once (the loop in its process, the Ray side in its actor) and the import of
  torch that goes with it: the loop runs in a fresh process each time, the actor is a fresh process each run. The
  model's files and the raw files are read once beforehand, so that no run pays a cold page cache;
- the Ray side: starting its file workers and the embedding actor; NOT ``ray.init`` (starting the cluster) nor a
  tiny Ray Data job run first (Ray Data starts helper actors on a cluster's first use), both printed separately: a
  pipeline runs on a cluster that is already up.

The sides run alternately ``--repeat`` times (so that a slow spell of a shared machine hits both) and every pair
must write byte-identical shards (checked); the medians are compared. The raw clips mimic real recordings: pose
and video features at 25 Hz, the wrist IMU at 100 Hz, 512-d video, so every stream is resampled; 80 recordings are
synthesised and the other clips reuse their streams under their own ids, subjects and free-text labels.

Before Ray starts, the ceiling: the file work alone (read, window, write; no text model) in ``--cpus`` bare
processes started beforehand against one, each taking every n-th file. It is what this machine gives the
parallel part of the work at best, with no start and no scheduler; the Ray side's ratio is to be read against it.

Both sides pay a fixed start (model load; on the Ray side also its processes) that a larger input amortises: the
default input (960 clips, 2 GiB of raw files, about 3 minutes in all) keeps the start a small part of the Ray
side's time, and a larger ``--clips`` shows the trend. The last line is the ratio of windows/s (Ray / single
process); the goal is >= 1.6 on 2 cores. Figures and their breakdown: ``benchmarks/README.md``.

    .venv/bin/python benchmarks/preprocess_throughput.py                       # 960 clips of 40 s, 16 per raw file
    .venv/bin/python benchmarks/preprocess_throughput.py --clips 320 --dir /tmp/pb   # keep the input for reruns
"""

from __future__ import annotations

import argparse
import dataclasses
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
from mujo.config import PreprocessConfig  # noqa: E402
from mujo.data.activities import MMFIT_ACTIVITIES  # noqa: E402
from mujo.data.clips import ClipTask, RawClip, clips_to_table, make_clip  # noqa: E402
from mujo.data.text import TEXT_DIM, make_label_text, model_path  # noqa: E402
from mujo.pipelines.preprocess import preprocess, process_file, read_manifest  # noqa: E402
from mujo.run import Manifest  # noqa: E402
from mujo.schema import SampleFormat  # noqa: E402

DATASET = "bench"


def write_raw(raw: str, clips: int, seconds: float, per_file: int, video_dim: int, distinct: int = 80) -> int:
    """``clips`` synthetic clips (train/val/test by subject) as raw part files + the card; returns the clip count.

    Only the first ``distinct`` recordings are synthesised (~0.1 s each); every later clip reuses the streams of
    one of them (same activity, same kind of IMU) under its own id, subject, split and free-text label, which are
    exactly what generating it would give. The per-file work is the same; generating 960 clips takes seconds,
    not minutes."""
    tasks = []
    for i in range(clips):
        split = ("train", "train", "train", "val", "test")[i % 5]
        tasks.append(ClipTask(DATASET, split, i // 8, MMFIT_ACTIVITIES[i % len(MMFIT_ACTIVITIES)], i % 8, seconds,
                              1000 + i, "free_text", i % 2 == 0, video_dim))
    step = 2 * len(MMFIT_ACTIVITIES)  # a reused recording has the clip's activity and kind of IMU
    distinct = max(step, distinct // step * step)
    recordings: dict[int, RawClip] = {}
    for p in range(0, clips, per_file):
        batch = []
        for i, t in enumerate(tasks[p:p + per_file], start=p):
            if i < distinct:
                c = make_clip(t, fs=100.0)
                c.pose, c.pose_hz = c.pose[::4], 25.0  # pose and video at 25 Hz, the IMU at 100 Hz
                c.video, c.video_hz = c.video[::4], 25.0
                recordings[i] = c
            else:
                c = dataclasses.replace(recordings[i % distinct], clip_id=t.clip_id, split=t.split,
                                        subject=f"{DATASET}-s{t.subject_number:04d}",
                                        label_text=make_label_text(t.activity, np.random.default_rng(t.seed)))
            batch.append(c)
        storage.write_table(clips_to_table(batch), storage.join(raw, f"part-{p // per_file:05d}.parquet"))
    storage.write_json(storage.join(raw, "dataset.json"), {"name": DATASET, "labels": list(MMFIT_ACTIVITIES),
                                                           "clips": clips})
    return clips


class _Identity:  # Ray Data's first actor-pool run starts its own helper actors (one that tracks actor locations)
    def __call__(self, batch):
        return batch


def _no_text(texts: list[str]) -> np.ndarray:
    return np.zeros((len(texts), TEXT_DIM), np.float32)


def _bare_worker(files: list[str], out: str, video_dim: int, cfg: PreprocessConfig, barrier, results) -> None:
    """One bare process of the ceiling: the file work (read, window, write; no text model) on ``files``."""
    import pyarrow.parquet as pq

    fmt, labels = SampleFormat(video_dim=video_dim), {name: i for i, name in enumerate(MMFIT_ACTIVITIES)}
    pq.read_table(files[0])  # its first Parquet read (imports, caches) before the clock starts
    barrier.wait()
    for n, f in enumerate(files):
        task = {"file": f, "dataset": DATASET, "key": f"bare-{os.getpid()}-{n}", "identity": {}, "clips": -1}
        process_file(task, fmt, labels, cfg.trim_fraction, cfg.shard_rows, out, _no_text)
    results.put(len(files))


def bare_seconds(raw: str, out: str, video_dim: int, cfg: PreprocessConfig, processes: int) -> float:
    """Seconds for the file work of every raw file in ``processes`` bare processes (no Ray), started and warmed
    beforehand, each taking every ``processes``-th file: what the machine gives this work at best."""
    files = storage.list_files(raw, ".parquet")
    seconds = timed_processes(_bare_worker, [files[i::processes] for i in range(processes)], (out, video_dim, cfg))
    shutil.rmtree(out, ignore_errors=True)
    return seconds


def warm_model_files() -> None:
    for f in Path(model_path()).rglob("*"):
        if f.is_file():
            f.read_bytes()


def shard_bytes(manifest: Manifest, root: str) -> dict[str, bytes]:
    return {p[len(root):]: storage.read_bytes(p) for split in manifest.shards.values() for p in split}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=960)
    ap.add_argument("--seconds", type=float, default=40.0)
    ap.add_argument("--per-file", type=int, default=16, help="clips per raw part file")
    ap.add_argument("--video-dim", type=int, default=512)
    ap.add_argument("--distinct", type=int, default=80, help="recordings synthesised; later clips reuse their streams")
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--window-cpus", type=float, default=PreprocessConfig().window_cpus,
                    help="preprocess.window_cpus: CPUs per file task (the pool is cpus / window_cpus wide)")
    ap.add_argument("--dir", default=None, help="work folder (default: a temporary one, removed afterwards)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each side, alternating; medians are compared")
    ap.add_argument("--local-run", default=None, help=argparse.SUPPRESS)  # internal: one timed local run
    args = ap.parse_args()

    work = args.dir or tempfile.mkdtemp(prefix="mujo-preprocess-bench-")
    raw = os.path.join(work, "raw", DATASET)
    cfg = PreprocessConfig(window_cpus=args.window_cpus)
    if args.local_run:
        t0 = time.time()
        preprocess({DATASET: args.video_dim}, args.local_run, cfg, raw_uris={DATASET: raw}, executor="local")
        print(f"seconds {time.time() - t0:.3f}")
        return
    spec = {k: getattr(args, k) for k in ("clips", "seconds", "per_file", "video_dim", "distinct")}
    try:
        t0 = time.time()
        card = storage.join(raw, "dataset.json")
        if not (storage.exists(card) and storage.read_json(card).get("spec") == spec):
            write_raw(raw, args.clips, args.seconds, args.per_file, args.video_dim, args.distinct)
            storage.write_json(card, {**storage.read_json(card), "spec": spec})
        files = len(storage.list_files(raw, ".parquet"))
        size = sum(os.path.getsize(p) for p in storage.list_files(raw))
        print(f"raw input: {args.clips} clips x {args.seconds:g} s in {files} files ({size / 2**20:.0f} MiB), pose and "
              f"video ({args.video_dim}-d) at 25 Hz, IMU at 100 Hz; generated in {time.time() - t0:.1f} s")
        print(f"machine: {os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.2f} before the runs")
        warm_model_files()
        for path in storage.list_files(raw):  # neither side's first run should pay a cold page cache
            storage.read_bytes(path)

        bare: dict[int, list[float]] = {1: [], args.cpus: []}
        for _ in range(args.repeat):  # the ceiling: the file work alone in bare processes, 1 against --cpus
            for n in bare:
                bare[n].append(bare_seconds(raw, os.path.join(work, "bare"), args.video_dim, cfg, n))
        one, many = statistics.median(bare[1]), statistics.median(bare[args.cpus])
        print(f"ceiling: the file work alone (read, window, write; no text model, no Ray) in {args.cpus} bare "
              f"processes started beforehand {many:.1f} s, in 1 {one:.1f} s: {one / many:.2f}x (medians of {args.repeat})")

        import ray

        t0 = time.time()
        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        t_init = time.time() - t0
        t0 = time.time()  # Ray Data's first execution on a fresh cluster starts its own helper actors: not counted
        ray.data.range(4, override_num_blocks=2).map_batches(_Identity, compute=ray.data.ActorPoolStrategy(size=1),
                                                             num_cpus=0.1).take_all()
        t_warm = time.time() - t0

        t_local, t_ray = [], []
        for i in range(args.repeat):  # alternating, so that a slow spell of the machine hits both sides
            out_local, out_ray = os.path.join(work, "local"), os.path.join(work, "ray")
            for out in (out_local, out_ray):  # fresh outputs: nothing to resume
                shutil.rmtree(out, ignore_errors=True)
            # the loop runs in a fresh process each time (it imports torch and loads the model, as the first run would)
            child = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--dir", work, "--local-run", out_local],
                                   check=True, capture_output=True, text=True)
            t_local.append(float(child.stdout.split("seconds")[-1]))
            t0 = time.time()
            dist = preprocess({DATASET: args.video_dim}, out_ray, cfg, raw_uris={DATASET: raw}, executor="ray")[DATASET]
            t_ray.append(time.time() - t0)
            local = read_manifest(out_local, DATASET)  # written by the child process
            windows = sum(local.rows.values())
            assert windows == sum(dist.rows.values()) and local.quarantine.count == 0
            if shard_bytes(local, out_local) != shard_bytes(dist, out_ray):
                raise SystemExit("the two runs wrote different shards")
            print(f"run {i + 1}: single process {t_local[-1]:5.1f} s, Ray Data {t_ray[-1]:5.1f} s "
                  f"(ratio {t_local[-1] / t_ray[-1]:.2f}); byte-identical shards")
        ray.shutdown()

        shards = sum(len(s) for s in local.shards.values())
        loop, dist_s = statistics.median(t_local), statistics.median(t_ray)
        print(f"windows: {windows} in {shards} shards; medians of {args.repeat} run(s) each:")
        print(f"single process : {loop:7.1f} s  {windows / loop:8.1f} windows/s  (model load included)")
        print(f"Ray Data {args.cpus} CPUs: {dist_s:7.1f} s  {windows / dist_s:8.1f} windows/s  (worker/actor start and "
              f"model load included; ray.init {t_init:.1f} s and Ray Data's first-use warm-up {t_warm:.1f} s not "
              "included)")
        print(f"the ceiling of this machine for the parallel part: {one / many:.2f}x (above)")
        print(f"ratio (Ray / single process windows/s): {loop / dist_s:.2f}")
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
