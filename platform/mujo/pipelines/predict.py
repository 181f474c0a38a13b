"""Batch inference with Ray Data: a classifier artefact + recordings -> window predictions, timelines, a summary.

Input (local or ``s3://``): raw clips (``part-*.parquet`` + ``dataset.json`` from the generator or any adapter), a
bring-your-own card (``.yaml``: ingested first by the BYOD adapter, which converts rate, units and gravity per the
card), or preprocessed shards (a folder with ``manifest.json``). The driver checks before Ray starts, so that a
mistake is one line naming the file and the fix: the artefact (card, version, weights), the input's label list
against the classifier's classes, and every input file's columns against the classifier's inputs.

Then Ray Data streams the input files to a pool of model actors (``PredictWorker``: a callable class, the artefact
loaded once per actor; ``predict.cpus_per_actor`` / ``predict.num_gpus`` each, as many as the cluster holds, growing
with it up to ``predict.max_actors``), one input file per call, start to end (:func:`predict_file`):

1. read the file; raw clips are windowed by the preprocessing code itself (:func:`mujo.data.windows.clip_windows`:
   resampling to 50 Hz by rate or timestamps, 2-s windows every second, a virtual wrist IMU from pose where a clip
   has no IMU) with no training-only step: no trimming of the recording's ends, no label needed (an unknown label
   is kept as the recording's true label, unscored). NaN frames are interpolated when at most
   ``predict.max_nan_share`` of a stream, else the recording is quarantined; a recording shorter than one window
   is quarantined; both counted and named, never dropped silently;
2. the stored calibration (if any) and the model, in batches of ``predict.batch_size`` windows;
3. per recording, the timeline (:mod:`mujo.timeline`: smoothing, segments) and its summary;
4. the file's window predictions and segments written as Parquet (atomically), then its progress record.

Only small records (per-recording summaries) reach the driver, and nothing stays in the object store: the
driver's memory does not grow with the input. A re-run skips the files whose progress record matches (same file
size and time, same artefact weights and parameters): resumable per input file, as preprocessing is.

``executor="local"`` runs the same :func:`predict_file` on every file in this process: the baseline of
``benchmarks/predict_throughput.py``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from mujo import storage
from mujo.errors import InputError as UserInputError
from mujo.run import Manifest, read_contract
from mujo.schema import FS, STRIDE, TENSOR_MODALITY_COLUMN, WINDOW

log = logging.getLogger(__name__)
PROGRESS = "_progress"
RAW_NEEDS = {"acc": ("acc", "pose"), "pose": ("pose",), "video": ("video",)}  # raw columns that can give an input


class InputError(UserInputError):
    """Input that the classifier cannot be run on; the message names the file and the fix."""


@dataclass
class Plan:
    kind: str  # "raw" | "shards"
    input: str
    out: str
    files: list[tuple[str, int, int]]
    data_labels: list[str] | None
    label_source: str
    params: dict
    fingerprint: str
    todo: list[dict] = field(default_factory=list)
    reused: list[dict] = field(default_factory=list)
    quarantine: list[dict] = field(default_factory=list)


def _key(uri: str) -> str:
    base = posixpath.basename(uri).removesuffix(".parquet")
    return f"{base}-{hashlib.sha1(uri.encode()).hexdigest()[:12]}"


def _list(uri: str) -> list[tuple[str, int, int]]:
    from mujo.pipelines.preprocess import list_parquet

    return list_parquet(uri)


def resolve_input(input_uri: str, out: str, source: str | None = None) -> tuple[str, str]:
    """``(kind, folder)`` of the input: a BYOD card is ingested first (raw clips under ``<out>/input``)."""
    if input_uri.endswith((".yaml", ".yml")):
        from mujo.adapters import CardError, ingest

        try:
            doc = ingest(None, source, storage.join(out, "input"), card=input_uri)
        except (CardError, ValueError, FileNotFoundError) as exc:
            raise InputError(f"{input_uri}: the bring-your-own card could not be read into recordings: {exc}") from None
        return "raw", storage.join(out, "input", "raw", doc["name"])
    if storage.exists(storage.join(input_uri, "manifest.json")):
        return "shards", input_uri
    if storage.exists(input_uri):
        return "raw", input_uri
    raise InputError(f"{storage.describe(input_uri)} does not exist: give predict.input as a raw clips folder "
                     "(part-*.parquet + dataset.json), a shards folder (manifest.json) or a BYOD card (.yaml)")


def plan(artefact, input_uri: str, out: str, params: dict, source: str | None = None) -> Plan:
    """Everything checked before Ray starts (see the module docstring); raises :class:`InputError`."""
    import pyarrow.parquet as pq

    kind, folder = resolve_input(input_uri, out, source)
    classes = artefact.labels
    if kind == "shards":
        label_source = storage.join(folder, "manifest.json")
        manifest = read_contract(label_source, Manifest)
        splits = params["splits"] or sorted(manifest.shards)
        files = []
        for split in splits:
            for uri in manifest.shards.get(split, []):
                fs, path = storage.filesystem(uri)
                info = fs.get_file_info(path)
                files.append((uri, int(info.size or 0), int(info.mtime_ns or 0)))
        data_labels = list(manifest.labels)
        video_dim = int(manifest.video_dim)
        if "video" in artefact.inputs and video_dim != artefact.card.window.inputs["video"].shape[0]:
            raise InputError(f"{label_source}: video features of {video_dim} dims, the classifier reads "
                             f"{artefact.card.window.inputs['video'].shape[0]}: use a classifier trained on this "
                             "video feature extractor")
    else:
        label_source = storage.join(folder, "dataset.json")
        data_labels = None
        if storage.exists(label_source):
            data_labels = list(storage.read_json(label_source).get("labels") or []) or None
        files = _list(folder)
    if not files:
        raise InputError(f"no input files (*.parquet) under {storage.describe(folder)}"
                         + (f" for splits {params['splits']}" if params["splits"] else ""))
    if data_labels is not None and list(data_labels) != list(classes) and not params["ignore_labels"]:
        raise InputError(
            f"{label_source}: the data's labels {data_labels} differ from the classifier's classes {classes} "
            f"({artefact.path}): use a classifier trained on these classes, or set predict.ignore_labels=true "
            "to predict the classifier's classes anyway (recordings whose label it does not know are not scored)")
    quarantine, readable = [], []
    for uri, size, mtime in files:
        fs, path = storage.filesystem(uri)
        try:
            with fs.open_input_file(path) as handle:
                names = set(pq.ParquetFile(handle).schema_arrow.names)
        except (OSError, pa.ArrowException) as exc:
            quarantine.append({"file": uri, "recording_id": None, "reason": f"unreadable Parquet file: {exc}"})
            continue
        need = {m: (TENSOR_MODALITY_COLUMN[m],) if kind == "shards" else RAW_NEEDS[m] for m in artefact.inputs}
        lacking = [m for m, cols in need.items() if not any(c in names for c in cols)]
        if lacking:
            raise InputError(f"{uri}: has no column for the classifier's input(s) {lacking} (columns: "
                             f"{sorted(names)[:12]}...): predict with a classifier of inputs this data has, e.g. "
                             f"jobs/finetune.py --set finetune.inputs=[acc]")
        readable.append((uri, size, mtime))
    fingerprint = hashlib.sha1(json.dumps({"weights": artefact.card.weights_sha256, "kind": kind, **params},
                                          sort_keys=True).encode()).hexdigest()[:16]
    p = Plan(kind, folder, out, files, data_labels, label_source, params, fingerprint, quarantine=quarantine)
    for uri, size, mtime in readable:
        identity = {"size": size, "mtime_ns": mtime, "params": fingerprint}
        task = {"file": uri, "key": _key(uri), "identity": identity}
        rec_uri = storage.join(out, PROGRESS, f"{task['key']}.json")
        record = None
        if storage.exists(rec_uri):
            try:
                record = storage.read_json(rec_uri)
            except (storage.StorageError, ValueError):
                record = None
        if record and record.get("identity") == identity and all(
                not rel or storage.exists(storage.join(out, rel)) for rel in (record["windows_file"],
                                                                              record["segments_file"])):
            p.reused.append(record)
        else:
            p.todo.append(task)
    return p


# --------------------------------------------------------------------------------------------------------------
# One input file, start to end (plain functions: the actors and the local loop share them)
# --------------------------------------------------------------------------------------------------------------

def _nan_fill(arr: np.ndarray, max_share: float) -> tuple[np.ndarray, int, str]:
    """Interpolate NaN frames of one stream (T, ...) when at most ``max_share`` of its frames; (array, frames
    filled, '' or the reason to quarantine)."""
    flat = arr.reshape(len(arr), -1)
    bad = int((~np.isfinite(flat)).any(axis=1).sum())
    if bad == 0:
        return arr, 0, ""
    from mujo.adapters.byod import fill_nans  # the BYOD adapter's interpolation (imported only when needed)

    if bad > max_share * len(arr):
        return arr, 0, f"NaN: {bad} of {len(arr)} frames ({bad / len(arr):.0%}) hold NaN or infinite values, " \
                       f"above predict.max_nan_share {max_share:.0%}"
    try:
        filled, _ = fill_nans(flat)
    except ValueError as exc:
        return arr, 0, f"NaN: {exc}"
    return filled.reshape(arr.shape).astype(np.float32), bad, ""


def _raw_windows(uri: str, classes: list[str], inputs: list[str], params: dict, quarantine: list[dict]):
    """Windows of every recording of a raw clip file: yields (recording info, arrays by input, window starts)."""
    import pyarrow.parquet as pq

    from mujo.data.clips import STRING_FIELDS, row_to_clip
    from mujo.data.windows import BadClip, _timeline, clip_windows
    from mujo.pipelines.preprocess import table_columns
    from mujo.schema import SampleFormat

    fs, path = storage.filesystem(uri)
    with fs.open_input_file(path) as handle:
        names = pq.ParquetFile(handle).schema_arrow.names

    def stream_columns(streams) -> list[str]:
        return [c for m in streams for c in (m, f"{m}_shape", f"{m}_hz", f"{m}_t") if c in names]

    # only the streams the classifier reads (video features are most of a raw file's bytes); pose also for acc when
    # some recording has no IMU (its virtual wrist IMU comes from the pose)
    streams = [m for m in ("pose", "acc", "video") if m in inputs]
    table = pq.read_table(path, filesystem=fs, columns=[c for c in STRING_FIELDS if c in names]
                          + stream_columns(streams))
    if "acc" in inputs and "pose" not in streams and "pose" in names and (
            "acc" not in table.column_names or table.column("acc").null_count):
        table = pq.read_table(path, filesystem=fs, columns=table.column_names + stream_columns(["pose"]))
    columns = table_columns(table)
    fmt = SampleFormat(video_dim=params["video_dim"])
    label_map = {name: i for i, name in enumerate(classes)}
    for i in range(table.num_rows):
        rid = str(columns["clip_id"][i])
        if params["splits"] and str(columns["split"][i]) not in params["splits"]:
            continue
        try:
            clip = row_to_clip(columns, i)
            lacking = [m for m in inputs if all(getattr(clip, c) is None for c in RAW_NEEDS[m])]
            if lacking:
                raise BadClip(rid, f"lacks input(s) {lacking}")
            if "video" not in inputs:  # streams the classifier does not read are not windowed
                clip.video = clip.video_t = None
            if "pose" not in inputs and clip.acc is not None:
                clip.pose = clip.pose_t = None
            filled = 0
            for m in ("pose", "acc", "video"):
                arr = getattr(clip, m)
                if arr is not None:
                    arr, n, reason = _nan_fill(arr, params["max_nan_share"])
                    if reason:
                        raise BadClip(rid, f"{m} {reason}")
                    setattr(clip, m, arr)
                    filled += n
            labels = label_map if clip.activity in label_map else {**label_map, clip.activity: -1}
            batch = clip_windows(clip, fmt, labels, trim_fraction=0.0)  # no training-only trimming
        except BadClip as bad:
            quarantine.append({"file": uri, "recording_id": rid, "reason": bad.reason})
            continue
        except Exception as exc:  # undecodable values: a counted entry, never a crashed pipeline
            quarantine.append({"file": uri, "recording_id": rid, "reason": f"cannot window: {type(exc).__name__}: "
                                                                            f"{exc}"})
            continue
        n = len(batch["sample_id"])
        starts = _timeline(clip)[0] + np.arange(n) * STRIDE / FS
        info = {"recording_id": rid, "subject": clip.subject, "split": clip.split, "true_label": clip.activity,
                "nan_frames": filled}
        yield info, {m: batch[TENSOR_MODALITY_COLUMN[m]] for m in inputs}, starts


def _shard_windows(uri: str, inputs: list[str], params: dict, quarantine: list[dict]):
    """Windows of a preprocessed shard grouped by recording (clip); start times count from its first kept window
    (preprocessing trimmed the recording's ends)."""
    from mujo.schema import MASK_COLUMNS, read_shard, to_numpy_tensor

    table = read_shard(uri)
    if params["splits"]:
        keep = np.isin(table.column("split").to_numpy(zero_copy_only=False), params["splits"])
        table = table.filter(pa.array(keep))
    clip = table.column("clip_id").to_numpy(zero_copy_only=False)
    sample = table.column("sample_id").to_numpy(zero_copy_only=False)
    window = np.array([int(s.rsplit("-w", 1)[1]) for s in sample], dtype=np.int64)
    arrays = {m: to_numpy_tensor(table.column(TENSOR_MODALITY_COLUMN[m])) for m in inputs}
    present = np.all([table.column(MASK_COLUMNS[m]).to_numpy() for m in inputs], axis=0)
    meta = {c: table.column(c).to_numpy(zero_copy_only=False) for c in ("subject", "split", "activity")}
    for rid in dict.fromkeys(clip):
        rows = np.flatnonzero(clip == rid)
        lacking = rows[~present[rows]]
        if len(lacking):
            quarantine.append({"file": uri, "recording_id": str(rid),
                               "reason": f"lacks input(s) {inputs}: {len(lacking)} window(s)"})
        rows = rows[present[rows]]
        if not len(rows):
            continue
        rows = rows[np.argsort(window[rows], kind="stable")]
        starts = (window[rows] - window[rows].min()) * STRIDE / FS
        info = {"recording_id": str(rid), "subject": str(meta["subject"][rows[0]]),
                "split": str(meta["split"][rows[0]]), "true_label": str(meta["activity"][rows[0]]), "nan_frames": 0}
        yield info, {m: arrays[m][rows] for m in inputs}, starts


def predict_file(task: dict, artefact, params: dict, out: str, device: str = "cpu") -> dict:
    """One input file: windows -> calibration -> model -> timelines; writes the file's window predictions and
    segments (Parquet) and then its progress record; returns the record."""
    from mujo.timeline import recording_summary, segments, smooth_probabilities

    uri, classes, inputs = task["file"], artefact.labels, artefact.inputs
    quarantine: list[dict] = []
    source = _shard_windows(uri, inputs, params, quarantine) if params["kind"] == "shards" else \
        _raw_windows(uri, classes, inputs, params, quarantine)
    window_s, stride_s, k = WINDOW / FS, STRIDE / FS, min(params["top_k"], len(classes))
    cols: dict[str, list] = {c: [] for c in ("recording_id", "subject", "split", "window", "start_s", "end_s",
                                             "predicted", "probability", "top_labels", "top_probs", "true_label")}
    seg_cols: dict[str, list] = {c: [] for c in ("recording_id", "start_s", "end_s", "label", "windows",
                                                 "mean_confidence")}
    recordings = []
    names = np.array(classes, dtype=object)
    for info, arrays, starts in source:
        probs = artefact.predict_proba(arrays, batch_size=params["batch_size"], device=device)
        top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        n = len(probs)
        cols["recording_id"] += [info["recording_id"]] * n
        cols["subject"] += [info["subject"]] * n
        cols["split"] += [info["split"]] * n
        cols["window"] += list(range(n))
        cols["start_s"] += starts.tolist()
        cols["end_s"] += (starts + window_s).tolist()
        cols["predicted"] += names[top[:, 0]].tolist()
        cols["probability"] += probs[np.arange(n), top[:, 0]].tolist()
        cols["top_labels"] += [names[t].tolist() for t in top]
        cols["top_probs"] += [probs[j, t].tolist() for j, t in enumerate(top)]
        cols["true_label"] += [info["true_label"]] * n
        smoothed = smooth_probabilities(probs, params["smoothing"])
        segs = segments(starts, smoothed.argmax(1), smoothed.max(1), window_s, stride_s)
        for s in segs:
            seg_cols["recording_id"].append(info["recording_id"])
            for c in ("start_s", "end_s", "windows", "mean_confidence"):
                seg_cols[c].append(s[c])
            seg_cols["label"].append(classes[s["label"]])
        recordings.append({**recording_summary(info["recording_id"], segs, classes, info["true_label"]),
                           "subject": info["subject"], "split": info["split"], "nan_frames": info["nan_frames"],
                           "file": uri})
    windows_file = segments_file = ""
    if cols["recording_id"]:
        windows_file, segments_file = f"windows/{task['key']}.parquet", f"segments/{task['key']}.parquet"
        schema = pa.schema([("recording_id", pa.string()), ("subject", pa.string()), ("split", pa.string()),
                            ("window", pa.int32()), ("start_s", pa.float64()), ("end_s", pa.float64()),
                            ("predicted", pa.string()), ("probability", pa.float32()),
                            ("top_labels", pa.list_(pa.string())), ("top_probs", pa.list_(pa.float32())),
                            ("true_label", pa.string())])
        storage.write_table(pa.Table.from_pydict(cols, schema=schema), storage.join(out, windows_file))
        storage.write_table(pa.table(seg_cols), storage.join(out, segments_file))
    record = {"file": uri, "key": task["key"], "identity": task["identity"], "windows": len(cols["recording_id"]),
              "windows_file": windows_file, "segments_file": segments_file, "recordings": recordings,
              "quarantine": quarantine}
    storage.write_json(storage.join(out, PROGRESS, f"{task['key']}.json"), record)
    return record


class PredictWorker:
    """The Ray Data stage, an actor (a callable class): loads the artefact once, then one input file per call."""

    def __init__(self, model: str, params: dict, out: str, use_gpu: bool = False) -> None:
        import torch

        from mujo.models.artefact import load_classifier

        self.device = "cuda" if use_gpu and torch.cuda.is_available() else "cpu"
        self.artefact = load_classifier(model, map_location=self.device)
        self.params, self.out = params, out

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        records = []
        for i in range(len(batch["task"])):
            task = json.loads(str(batch["task"][i]))
            records.append(json.dumps(predict_file(task, self.artefact, self.params, self.out, self.device)))
        return {"record": np.array(records, dtype=object)}


def model_actors(files: int, cluster_cpus: float, cpus_per_actor: float, max_actors: int | None) -> tuple[int, int]:
    """``(initial, most)`` actors: as many as the cluster's CPUs hold now (at least one), at most one per file or
    ``max_actors``; Ray Data grows the pool towards ``most`` when the cluster grows."""
    most = max(1, min(files, max_actors or files))
    return max(1, min(int(cluster_cpus / cpus_per_actor + 1e-9), most)), most


def _run_ray(p: Plan, model: str, cpus: float, gpus: float, max_actors: int | None) -> list[dict]:
    import ray

    if not ray.is_initialized():
        ray.init()
    tasks = [{"task": json.dumps(t)} for t in p.todo]
    initial, most = model_actors(len(tasks), ray.cluster_resources().get("CPU", 0.0), cpus, max_actors)
    ds = ray.data.from_items(tasks, override_num_blocks=len(tasks))
    ds = ds.map_batches(PredictWorker, fn_constructor_kwargs={"model": model, "params": p.params, "out": p.out,
                                                              "use_gpu": gpus > 0},
                        batch_size=1, batch_format="numpy", num_cpus=cpus, num_gpus=gpus or None,
                        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=most, initial_size=initial))
    return [json.loads(row["record"]) for row in ds.iter_rows()]


def run_predict(model: str, input_uri: str, out: str, cfg, executor: str = "ray", artefact=None,
                start_ray=None) -> dict:
    """Predict every recording of ``input_uri`` with the classifier artefact ``model``; writes under ``out``:
    ``windows/*.parquet`` (one row per window: recording, start time, predicted label, top-k probabilities),
    ``segments/*.parquet`` (the timelines), ``recordings.csv`` and ``summary.json``. ``cfg`` is a
    :class:`mujo.config.PredictConfig`. ``start_ray`` (e.g. ``lambda: init_ray(cfg.ray)``) is called once the
    artefact and the input have passed their checks, so that a mistake is reported before Ray starts. Returns
    the summary."""
    from mujo.models.artefact import load_classifier
    from mujo.evaluate.report import to_csv
    from mujo.timeline import overall_summary

    if executor not in ("ray", "local"):
        raise ValueError(f"executor must be 'ray' or 'local', not {executor!r}")
    t0 = time.time()
    artefact = artefact or load_classifier(model)  # a bad artefact fails here, before any Ray work
    if artefact.card.calibration.mode == "supervised":
        raise InputError(f"{model}: supervised calibration needs every window's true label; predict with a "
                         "classifier trained with finetune.calibration none or unsupervised")
    video = artefact.card.window.inputs.get("video")
    params = {"splits": list(cfg.splits or []), "batch_size": cfg.batch_size, "top_k": cfg.top_k,
              "smoothing": cfg.smoothing, "max_nan_share": cfg.max_nan_share, "ignore_labels": cfg.ignore_labels,
              "video_dim": video.shape[0] if video else 512}
    p = plan(artefact, input_uri, out, params, cfg.source)
    p.params["kind"] = p.kind
    log.info("predict: %d input file(s) to process, %d already done", len(p.todo), len(p.reused))
    if not p.todo:
        new = []
    elif executor == "ray":
        if start_ray is not None:
            start_ray()
        new = _run_ray(p, model, cfg.cpus_per_actor, cfg.num_gpus, cfg.max_actors)
    else:
        new = [predict_file(t, artefact, p.params, out) for t in p.todo]
    records = sorted(p.reused + new, key=lambda r: r["file"])
    recordings = [r for rec in records for r in rec["recordings"]]
    quarantine = p.quarantine + [q for rec in records for q in rec["quarantine"]]
    summary = {"model": model, "input": p.input, "kind": p.kind, "classes": artefact.labels,
               **overall_summary(recordings, quarantine), "files": len(p.files), "processed": len(new),
               "reused": len(p.reused), "seconds": round(time.time() - t0, 2), "quarantine": quarantine,
               "smoothing": cfg.smoothing}
    rows = [{k: v for k, v in r.items() if k != "seconds_by_label"} for r in recordings]
    storage.write_text(storage.join(out, "recordings.csv"), to_csv(rows) if rows else "")
    storage.write_json(storage.join(out, "summary.json"), summary)
    if quarantine:
        log.warning("predict: %d recording(s)/file(s) quarantined: %s", len(quarantine),
                    "; ".join(f"{q['recording_id'] or posixpath.basename(q['file'])}: {q['reason']}"
                              for q in quarantine[:5]))
    return {**summary, "recordings_detail": recordings, "out": out}


def timeline_table(summary: dict, limit: int = 60) -> str:
    """The per-recording timeline accuracy as Markdown (for the job's output next to the results table)."""
    recs = sorted(summary["recordings_detail"], key=lambda r: r["recording_id"])
    lines = ["| recording | true | dominant predicted | segments | timeline accuracy |", "|---|---|---|---|---|"]
    for r in recs[:limit]:
        acc = "n/a" if r["accuracy"] is None else f"{r['accuracy']:.2f}"
        lines.append(f"| {r['recording_id']} | {r['true_label']} | {r['dominant']} | {r['segments']} | {acc} |")
    if len(recs) > limit:
        lines.append(f"| ... {len(recs) - limit} more in recordings.csv | | | | |")
    acc, dom = summary.get("timeline_accuracy"), summary.get("dominant_label_accuracy")
    acc_s = "n/a" if acc is None else f"{acc:.3f}"
    dom_s = "n/a" if dom is None else f"{dom:.0%}"
    lines.append("")
    lines.append(f"{summary['recordings']} recordings, {summary['windows']} windows; mean timeline accuracy {acc_s}, "
                 f"dominant label right in {dom_s} of recordings; {summary['quarantined']} quarantined")
    return "\n".join(lines)
