"""Ray Data preprocessing: raw clips (local or S3) -> windowed sample shards + a manifest.

Stages, all streaming (nothing materialises the corpus):

1. ``read_parquet`` of the raw part files;
2. ``window_clips`` (task pool): validation, resampling to 50 Hz, trimming, windows, virtual wrist IMU where a clip
   has no real one; a bad clip becomes one quarantine row (file, clip, reason) instead of samples;
3. ``EmbedText`` (actor pool): label normalisation is already done; the sentence model is loaded once per actor;
4. ``write_shards`` (task pool): one shard per dataset and split per batch, written atomically under a content-derived name,
   returning a summary row (counts per class, per-channel sums for statistics, quarantine entries).

The driver turns the summaries into ``manifest.json``: schema version, counts per split and class, the shards,
per-channel statistics of the train split only, and the quarantine list. It fails with a clear message when
quarantined input exceeds ``max_quarantine_share``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter, defaultdict

import numpy as np
import torch

from mujo import storage
from mujo.config import PreprocessConfig
from mujo.data.clips import rows_to_clips
from mujo.data.text import TextEmbedder
from mujo.data.windows import BadClip, clip_windows, concat_batches
from mujo.models.mujo import center_pose
from mujo.schema import SCHEMA_VERSION, SampleFormat, batch_to_table, empty_batch, write_shard

log = logging.getLogger(__name__)
QUARANTINE = "quarantine"
STAT_MODALITIES = ("acc", "pose", "video")


class QuarantineExceeded(RuntimeError):
    pass


def shards_dir(run_dir: str, dataset: str) -> str:
    return storage.join(run_dir, "shards", dataset)


def window_clips(batch: dict[str, np.ndarray], formats: dict[str, SampleFormat], label_maps: dict[str, dict],
                 trim_fraction: float) -> dict[str, np.ndarray]:
    """Raw clip rows -> sample rows (plus one quarantine row per bad clip)."""
    out = []
    for clip in rows_to_clips(batch):
        fmt = formats[clip.dataset]
        try:
            samples = clip_windows(clip, fmt, label_maps[clip.dataset], trim_fraction)
            samples[QUARANTINE] = np.full(len(samples["sample_id"]), "", dtype=object)
        except BadClip as bad:
            samples = empty_batch(1, fmt)
            samples["clip_id"][0] = bad.clip_id
            samples["dataset"][0] = clip.dataset
            samples[QUARANTINE] = np.array([bad.reason], dtype=object)
        out.append(samples)
    return concat_batches(out)


class EmbedText:
    """Actor: loads the sentence model once, embeds each batch's normalised label texts."""

    def __init__(self, batch_size: int) -> None:
        self.embedder = TextEmbedder()
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ok = batch["has_text"].astype(bool)
        if ok.any():
            batch["text_emb"][ok] = self.embedder(list(batch["text"][ok]), self.batch_size)
        return batch


def _channel_sums(batch: dict[str, np.ndarray]) -> dict[str, list]:
    """Per-channel count, sum and sum of squares of the present modalities (pose after window centring)."""
    sums = {}
    for m in STAT_MODALITIES:
        present = batch[f"has_{m}"].astype(bool)
        x = batch[m][present]
        if m == "pose":
            x = center_pose(torch.from_numpy(x)).numpy()
        x = x.reshape(-1, x.shape[-1]).astype(np.float64)
        sums[m] = [len(x), x.sum(0).tolist(), (x ** 2).sum(0).tolist()]
    return sums


SUMMARY_COLUMNS = ("dataset", "path", "split", "rows", "classes", "sums", "quarantine")


def write_shards(batch: dict[str, np.ndarray], formats: dict[str, SampleFormat],
                 out_dirs: dict[str, str]) -> dict[str, np.ndarray]:
    """Write each (dataset, split) of a batch as one shard; return one summary row per shard (and per dataset with
    quarantined clips in the batch)."""
    bad = batch[QUARANTINE] != ""
    rows: list[dict] = []
    for dataset in sorted(set(batch["dataset"][bad])):
        sel = bad & (batch["dataset"] == dataset)
        entries = [{"clip_id": c, "dataset": dataset, "reason": r} for c, r in
                   zip(batch["clip_id"][sel], batch[QUARANTINE][sel])]
        rows.append({"dataset": dataset, "path": "", "split": "", "rows": 0, "classes": "{}", "sums": "{}",
                     "quarantine": json.dumps(entries)})
    good = {k: v[~bad] for k, v in batch.items() if k != QUARANTINE}
    for dataset, split in sorted(set(zip(good["dataset"], good["split"]))):
        sel = (good["dataset"] == dataset) & (good["split"] == split)
        part = {k: v[sel] for k, v in good.items()}
        digest = hashlib.sha1("\n".join(part["sample_id"]).encode()).hexdigest()[:16]
        uri = storage.join(out_dirs[dataset], split, f"shard-{digest}.parquet")
        write_shard(batch_to_table(part, formats[dataset]), uri)
        classes = Counter(int(c) for c in part["class_id"])
        rows.append({"dataset": dataset, "path": uri, "split": split, "rows": int(sel.sum()),
                     "classes": json.dumps({str(k): v for k, v in sorted(classes.items())}),
                     "sums": json.dumps(_channel_sums(part)), "quarantine": "[]"})
    return {k: np.array([r[k] for r in rows], dtype=object) for k in SUMMARY_COLUMNS}


def _stats(summaries: list[dict]) -> dict[str, dict[str, list[float]]]:
    acc: dict[str, list] = {}
    for s in summaries:
        if s["split"] != "train":
            continue
        for m, (n, total, sq) in json.loads(s["sums"]).items():
            if m not in acc:
                acc[m] = [0, np.zeros(len(total)), np.zeros(len(total))]
            acc[m][0] += n
            acc[m][1] += total
            acc[m][2] += sq
    stats = {}
    for m, (n, total, sq) in acc.items():
        if n == 0:
            continue
        mean = total / n
        std = np.sqrt(np.maximum(sq / n - mean ** 2, 0.0))
        stats[m] = {"mean": mean.tolist(), "std": std.tolist(), "count": int(n)}
    return stats


def preprocess(datasets: dict[str, int], run_dir: str, cfg: PreprocessConfig,
               raw_uris: dict[str, str] | None = None) -> dict[str, dict]:
    """Run the pipeline once over several datasets' raw clips (``{name: video_dim}``); write and return each
    dataset's manifest. One pipeline, so the text model is loaded once for all of them."""
    import ray

    from mujo.pipelines.generate import raw_dir

    raws = {d: (raw_uris or {}).get(d) or raw_dir(run_dir, d) for d in datasets}
    cards = {d: storage.read_json(storage.join(raw, "dataset.json")) for d, raw in raws.items()}
    label_maps = {d: {name: i for i, name in enumerate(card["labels"])} for d, card in cards.items()}
    formats = {d: SampleFormat(video_dim=video_dim) for d, video_dim in datasets.items()}
    out_dirs = {d: shards_dir(run_dir, d) for d in datasets}
    files = []
    for d, raw in raws.items():
        found = storage.list_files(raw, ".parquet")
        if not found:
            raise FileNotFoundError(f"no raw clip files (*.parquet) under {storage.describe(raw)}; run generation "
                                    "or a dataset adapter first")
        files += found
    fs, _ = storage.filesystem(files[0])
    t0 = time.time()
    # CPU shares are fractional so that every stage can run at once on a 2-core machine (a stage that cannot be
    # scheduled stalls the whole stream); on a cluster the task pools widen to every free CPU.
    ds = ray.data.read_parquet([storage.filesystem(f)[1] for f in files], filesystem=fs,
                               override_num_blocks=len(files), num_cpus=0.25)
    ds = ds.map_batches(window_clips, fn_kwargs={"formats": formats, "label_maps": label_maps,
                                                 "trim_fraction": cfg.trim_fraction},
                        batch_size=8, batch_format="numpy", num_cpus=cfg.window_cpus)
    ds = ds.map_batches(EmbedText, fn_constructor_args=(cfg.text_batch_size,), batch_size=cfg.text_batch_size,
                        batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=cfg.text_actors),
                        num_cpus=0.5)
    ds = ds.map_batches(write_shards, fn_kwargs={"formats": formats, "out_dirs": out_dirs},
                        batch_size=cfg.shard_rows, batch_format="numpy", num_cpus=0.25)
    summaries = ds.take_all()
    seconds = round(time.time() - t0, 1)
    return {d: _write_manifest(d, raws[d], cards[d], formats[d], out_dirs[d],
                               [s for s in summaries if s["dataset"] == d], cfg, seconds) for d in datasets}


def _write_manifest(dataset: str, raw: str, card: dict, fmt: SampleFormat, out: str, summaries: list[dict],
                    cfg: PreprocessConfig, seconds: float) -> dict:
    labels: list[str] = card["labels"]
    shard_rows = [s for s in summaries if s["path"]]
    quarantine = [e for s in summaries for e in json.loads(s["quarantine"])]
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for s in shard_rows:
        for c, n in json.loads(s["classes"]).items():
            counts[s["split"]][labels[int(c)]] += n
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "dataset": dataset,
        "raw": raw,
        "labels": labels,
        "video_dim": fmt.video_dim,
        "text_dim": fmt.text_dim,
        "shards": {split: sorted(s["path"] for s in shard_rows if s["split"] == split)
                   for split in sorted({s["split"] for s in shard_rows})},
        "counts": {split: dict(sorted(c.items())) for split, c in sorted(counts.items())},
        "rows": {split: sum(c.values()) for split, c in counts.items()},
        "stats": _stats(shard_rows),
        "quarantine": {"count": len(quarantine), "entries": quarantine},
        "clips": card["clips"],
        "seconds": seconds,
    }
    storage.write_json(storage.join(out, "manifest.json"), manifest)
    share = len(quarantine) / max(card["clips"], 1)
    if share > cfg.max_quarantine_share:
        raise QuarantineExceeded(
            f"{dataset}: {len(quarantine)} of {card['clips']} clips ({share:.0%}) were quarantined, above the "
            f"allowed {cfg.max_quarantine_share:.0%}; see quarantine in {storage.join(out, 'manifest.json')}")
    log.info("preprocessed %s: %s windows, %d quarantined", dataset, manifest["rows"], len(quarantine))
    return manifest


def read_manifest(run_dir: str, dataset: str) -> dict:
    return storage.read_json(storage.join(shards_dir(run_dir, dataset), "manifest.json"))
