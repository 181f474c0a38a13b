"""The file work (Ray-free): one raw part file -> its windowed samples -> their shards and progress records.

A file worker (:class:`mujo.pipelines.preprocess.execute.FileWorker`) and the local loop call the same functions,
one raw file start to end, so that the shards are a function of the file alone (a resumed run writes exactly the
shards an uninterrupted one writes) and no sample leaves the process that made it:

1. :func:`window_file` reads the file, decodes, validates and windows each clip (resampling to 50 Hz by the
   stream rates or timestamps, trimming, 100-frame windows, virtual wrist IMU where a clip has no real one); a bad
   clip becomes a quarantine entry (file, clip, reason) instead of samples, and so does a row the driver marked as
   a repeated clip id. The samples are cut into chunks (per split, at most ``shard_rows`` rows, in file order);
2. :func:`write_file` fills each chunk's text embeddings, writes it as one shard, atomically, named by the sha1 of
   its sample ids, and then its progress record (``_progress/<file key>/<chunk>.json`` in the dataset's shards
   folder, atomically: a record on storage means its shard is complete): the shard, counts per class, per-channel
   sums for the statistics, the quarantine entries, and the file's identity that resumption compares.

Text embeddings: :class:`CachedEmbedder` embeds each distinct text alone (a batch of one, one thread) and remembers
it, so that an embedding is bit-identical whatever else is embedded, in whichever process.

This module is imported by every file worker and embedding actor: nothing here imports pydantic, torch (until a
text is embedded), Ray, :mod:`mujo.run` or :mod:`mujo.config` at import time.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from typing import Any, Callable

import numpy as np
import pyarrow as pa

from mujo import storage
from mujo.data.clips import row_to_clip
from mujo.data.text import TEXT_DIM, TextEmbedder, caption_key, clip_captions
from mujo.data.windows import BadClip, clip_windows, concat_batches
from mujo.pipelines.preprocess.files import storage_error, storage_problem
from mujo.pipelines.preprocess.quarantine import entry
from mujo.schema import SPLITS, SampleFormat, batch_to_table, tensor_array, write_shard

STAT_MODALITIES = ("acc", "pose", "video")
PROGRESS = "_progress"  # the progress records' folder inside a dataset's shards folder


def progress_uri(out_dir: str, key: str, chunk: int) -> str:
    """Where chunk ``chunk`` of the raw file with progress key ``key`` leaves its record."""
    return storage.join(out_dir, PROGRESS, key, f"{chunk:05d}.json")


def skip_rows(raw: str | dict | None) -> dict[int, str]:
    """A task's ``skip`` (JSON text through Ray Data, a dict locally) as ``{row: reason}``."""
    if not raw:
        return {}
    return {int(k): v for k, v in (json.loads(raw) if isinstance(raw, str) else raw).items()}


def table_columns(table: pa.Table) -> dict[str, list]:
    """A raw clip table as columns of Python values, list columns as zero-copy numpy slices (fast for long clips)."""
    out: dict[str, list] = {}
    for name in table.column_names:
        col = table.column(name).combine_chunks()
        if isinstance(col, pa.DictionaryArray):
            col = col.dictionary_decode()
        if isinstance(col, (pa.ListArray, pa.LargeListArray)):
            offsets = col.offsets.to_numpy()
            values = col.values.to_numpy(zero_copy_only=False)
            valid = col.is_valid().to_numpy(zero_copy_only=False)
            out[name] = [values[offsets[i]:offsets[i + 1]] if valid[i] else None for i in range(len(col))]
        else:
            out[name] = col.to_pylist()
    return out


def channel_sums(batch: dict[str, np.ndarray]) -> dict[str, list]:
    """Per-channel count, sum and sum of squares of the present modalities (pose after window centring)."""
    sums = {}
    for m in STAT_MODALITIES:
        present = batch[f"has_{m}"].astype(bool)
        x = batch[m][present]
        if m == "pose":  # as mujo.models.mujo.center_pose (numpy here: the window tasks never import torch)
            x = x - x[:, :, :1, :].mean(axis=1, keepdims=True)
        x = x.reshape(-1, x.shape[-1])  # summed in float64 without a float64 copy of the windows
        sums[m] = [len(x), x.sum(0, dtype=np.float64).tolist(),
                   np.einsum("ij,ij->j", x, x, dtype=np.float64).tolist()]
    return sums


def window_file(uri: str, dataset: str, fmt: SampleFormat, label_map: dict[str, int], trim_fraction: float,
                shard_rows: int, skip: dict[int, str] | None = None) -> list[dict]:
    """Read one raw part file and window its clips. Returns its chunks, in a deterministic order: dicts with
    ``split``, ``rows``, ``table`` (the samples as an Arrow table, text embeddings still empty; None for none),
    ``summary`` (counts per class, per-channel sums) and ``quarantine`` (entries, on the first chunk only).
    ``skip``: rows to quarantine with the given reason instead of windowing (duplicate clip ids)."""
    import pyarrow.parquet as pq

    quarantine: list[dict] = []
    fs, path = storage.filesystem(uri)
    try:
        table = pq.read_table(path, filesystem=fs)
    except (OSError, pa.ArrowException) as exc:
        if storage_problem(str(exc)):
            raise storage_error(uri, exc) from exc
        return [{"split": "", "rows": 0, "table": None, "summary": {},
                 "quarantine": [entry(uri, dataset, None, f"unreadable Parquet data: {exc}")]}]
    columns = table_columns(table)
    batches = []
    dropped = 0  # captions beyond fmt.captions (counted in the first chunk's record, summed in the log)
    for i in range(table.num_rows):
        clip_id = str(columns["clip_id"][i])
        if skip and i in skip:
            quarantine.append(entry(uri, dataset, clip_id, skip[i]))
            continue
        try:
            clip = row_to_clip(columns, i)
            if clip.dataset != dataset:
                raise BadClip(clip_id, f"clip of dataset '{clip.dataset}' in the raw folder of '{dataset}'")
            if clip.split not in SPLITS:  # the split becomes a folder name: nothing else may pass
                raise BadClip(clip_id, f"split {clip.split!r} is not one of {list(SPLITS)}")
            batch = clip_windows(clip, fmt, label_map, trim_fraction)
            if fmt.captions:
                dropped += add_captions(batch, clip.label_text, clip.texts, fmt.captions)
            batches.append(batch)
        except BadClip as bad:
            quarantine.append(entry(uri, dataset, bad.clip_id, bad.reason))
        except Exception as exc:  # undecodable values etc.: a message in the manifest, never a crashed pipeline
            quarantine.append(entry(uri, dataset, clip_id, f"cannot window: {type(exc).__name__}: {exc}"))
    chunks: list[dict] = []
    if batches:
        samples = concat_batches(batches)
        splits = [s for s in SPLITS if s in set(samples["split"])]
        splits += sorted(set(samples["split"]) - set(splits))
        for split in splits:
            idx = np.flatnonzero(samples["split"] == split)
            for lo in range(0, len(idx), shard_rows):
                part = {k: v[idx[lo:lo + shard_rows]] for k, v in samples.items()}
                classes = Counter(int(c) for c in part["class_id"])
                chunks.append({"split": split, "rows": len(part["sample_id"]), "table": batch_to_table(part, fmt),
                               "summary": {"classes": {str(k): v for k, v in sorted(classes.items())},
                                           "sums": channel_sums(part)},
                               "quarantine": []})
    if not chunks:
        chunks.append({"split": "", "rows": 0, "table": None, "summary": {}, "quarantine": []})
    chunks[0]["quarantine"] = quarantine
    if dropped:
        chunks[0]["summary"]["captions_dropped"] = dropped
    return chunks


def add_captions(batch: dict[str, np.ndarray], label_text: str, texts: list[str] | None, k: int) -> int:
    """Fill one clip's windows' caption columns (schema 1.1): its captions (:func:`mujo.data.text.clip_captions`:
    the normalised label first, then the normalised alternatives), at most ``k``, their count and each window's draw
    key (from its sample id). A window without text (``has_text`` False) keeps none. Returns how many captions did
    not fit in ``k`` (counted, never dropped silently)."""
    captions = clip_captions(label_text, texts)
    kept = captions[:k] if batch["has_text"].any() else []  # one clip: its windows all have a text or none does
    for i in range(len(batch["sample_id"])):
        batch["captions"][i] = list(kept)
    batch["caption_count"][:] = len(kept)
    batch["caption_key"][:] = [caption_key(s) for s in batch["sample_id"]]
    return len(captions) - len(kept)


# --------------------------------------------------------------------------------------------------------------
# Text embeddings and writing
# --------------------------------------------------------------------------------------------------------------

class CachedEmbedder:
    """The sentence model, one text per call, remembered per process.

    A text's embedding is computed alone (a batch of one, one thread), so it is bit-identical whatever else is
    embedded around it, in whichever process, after whichever other file: shards are a function of their raw file
    alone, and a resumed run writes the bytes an uninterrupted one writes. Label texts repeat a lot, so the cache
    makes embedding nearly free after the first files."""

    def __init__(self, embedder: Any = None, max_items: int = 200_000) -> None:
        self.embedder = embedder or TextEmbedder()
        self.cache: dict[str, np.ndarray] = {}
        self.max_items = max_items

    def __call__(self, texts: list[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if missing:
            import torch

            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                for t in missing:
                    if len(self.cache) >= self.max_items:
                        self.cache.clear()
                    self.cache[t] = self.embedder([t], 1)[0]
            finally:
                torch.set_num_threads(threads)
        if not texts:
            return np.zeros((0, TEXT_DIM), np.float32)
        return np.stack([self.cache[t] for t in texts]).astype(np.float32)


def attach_embeddings(table: pa.Table, embed: Callable[[list[str]], np.ndarray]) -> pa.Table:
    """Fill ``text_emb`` with ``embed(texts)`` of the rows that have a text (zeros elsewhere) and, in a shard with
    caption columns (schema 1.1), ``caption_emb`` with the embeddings of each row's captions (zero rows past its
    ``caption_count``). One call to ``embed`` for both: a file's texts go to the embedding actor together."""
    field_ = table.schema.field("text_emb")
    shape = tuple(field_.type.shape)
    texts = table.column("text").to_pylist()
    has = np.asarray(table.column("has_text").to_pylist(), dtype=bool)
    wanted = [t for t, h in zip(texts, has) if h]
    captions = table.column("captions").to_pylist() if "caption_emb" in table.column_names else None
    flat = [c for row in captions for c in row] if captions else []
    emb = embed(wanted + flat) if wanted or flat else np.zeros((0, shape[0]), np.float32)
    out = np.zeros((table.num_rows, *shape), np.float32)
    if has.any():
        out[has] = emb[:len(wanted)]
    table = table.set_column(table.schema.get_field_index("text_emb"), field_, tensor_array(out, shape))
    if captions is None:
        return table
    cap_field = table.schema.field("caption_emb")
    cap_shape = tuple(cap_field.type.shape)
    caps = np.zeros((table.num_rows, *cap_shape), np.float32)
    at = len(wanted)
    for i, row in enumerate(captions):
        caps[i, :len(row)] = emb[at:at + len(row)]
        at += len(row)
    return table.set_column(table.schema.get_field_index("caption_emb"), cap_field, tensor_array(caps, cap_shape))


def shard_name(table: pa.Table, split: str) -> str:
    """``<split>/shard-<sha1 of the sample ids>.parquet``: a function of the content alone."""
    digest = hashlib.sha1("\n".join(table.column("sample_id").to_pylist()).encode()).hexdigest()[:16]
    return f"{split}/shard-{digest}.parquet"


def write_file(task: dict, chunks: list[dict], out_dir: str, embed: Callable[[list[str]], np.ndarray]) -> list[dict]:
    """Attach the text embeddings to a windowed file's chunks, write each chunk's shard (atomically) and then its
    progress record (atomically: a record on storage means its shard is complete). Returns the records.
    ``task``: ``file``, ``dataset``, ``key``, ``identity``, ``clips`` (from the footer, -1: unknown)."""
    clips = None if task["clips"] is None or task["clips"] < 0 else int(task["clips"])
    records = []
    for i, chunk in enumerate(chunks):
        shard = ""
        if chunk["table"] is not None:
            table = attach_embeddings(chunk["table"], embed)
            shard = shard_name(table, chunk["split"])
            write_shard(table, storage.join(out_dir, shard))
        record = {"file": task["file"], "dataset": task["dataset"], "identity": task["identity"], "rows": clips,
                  "chunk": i, "chunks": len(chunks), "shard": shard, "split": chunk["split"],
                  "samples": chunk["rows"], **chunk["summary"], "quarantine": chunk["quarantine"]}
        storage.write_json(progress_uri(out_dir, task["key"], i), record)
        records.append(record)
    return records


def process_file(task: dict, fmt: SampleFormat, label_map: dict[str, int], trim_fraction: float, shard_rows: int,
                 out_dir: str, embed: Callable[[list[str]], np.ndarray]) -> list[dict]:
    """One raw file, start to end: :func:`window_file`, then :func:`write_file`."""
    chunks = window_file(task["file"], task["dataset"], fmt, label_map, trim_fraction, shard_rows,
                         skip_rows(task.get("skip")))
    return write_file(task, chunks, out_dir, embed)
