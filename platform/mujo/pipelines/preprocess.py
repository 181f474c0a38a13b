"""Ray Data preprocessing: raw clips (local or S3) -> windowed sample shards + a manifest.

The driver first checks what it can cheaply, so that bad input or bad storage gives one clear line, not a Ray
traceback:

- storage: each raw folder is listed and each output folder is written to (a probe) through :mod:`mujo.storage`;
  an unreachable endpoint or refused credentials raise :class:`~mujo.storage.StorageError` naming the endpoint
  (never a secret) before anything starts;
- every raw part file to process has its Parquet footer read and its schema checked (required columns, types); an
  unreadable or truncated file, or one lacking a required column, is quarantined as a FILE with its reason, and the
  rest proceeds. Its (small) ``label_text`` column is read too: the distinct normalised label texts of the run;
- resumption: each raw file leaves progress records (``_progress/`` beside the shards) once its shards are
  written; a file whose records all match (same file size and modification time, same preprocessing parameters)
  and whose shards all exist is not reprocessed.

Then the pipeline: Ray Data streams the raw files to a pool of file workers (actors, ``preprocess.window_cpus``
each, as many as the cluster holds, growing with it up to ``max_file_workers``), one raw part file per call, start
to end, so that the shards are a function of the file alone (a resumed run writes exactly the shards an
uninterrupted one writes) and no sample leaves the process that made it (``FileWorker`` -> ``process_file``):

1. read the file, decode, validate and window each clip (resampling to 50 Hz by the stream rates or timestamps,
   trimming, 100-frame windows, virtual wrist IMU where a clip has no real one); a bad clip becomes a quarantine
   entry (file, clip, reason) instead of samples;
2. text embeddings from a pool of ``EmbedText`` actors (``preprocess.text_actors``, each loading the sentence model
   once; started before the driver plans the run, so that the model loads while the files are checked and the
   first ones windowed; ``text_actor_cpus`` each, none by default). A file worker asks its embedding actor (chosen
   by the file) for the file's label texts, in calls of at most ``text_batch_size``, before it windows. An actor
   embeds each distinct text alone (a batch of one, one thread) and remembers it, so an embedding is bit-identical
   whatever else is embedded. (Samples do not travel to the actors: a three-stage pipeline that moved them through
   the object store was measured 1.5x slower, see ``benchmarks/README.md``.)
3. the file's samples, cut into chunks (per split, at most ``shard_rows`` rows, in file order), are written one
   shard per chunk, atomically, named by the sha1 of their sample ids, each followed by its progress record
   (shard, counts per class, per-channel sums for statistics, quarantine).

The driver turns the records into ``manifest.json``: schema version, counts per split and class, the shards,
per-channel statistics of the train split only, and the quarantine list. It fails with a clear message (and writes
``quarantine.json`` instead of the manifest) when quarantined input exceeds ``max_quarantine_share``.

``preprocess(..., executor="local")`` runs the same functions sequentially in this process (no Ray): the baseline
of ``benchmarks/preprocess_throughput.py``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import posixpath
import re
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import pyarrow as pa

from mujo import storage
from mujo.data.clips import STRING_FIELDS, TENSORS, row_to_clip
from mujo.data.text import TEXT_DIM, TEXT_MODEL, TextEmbedder, normalize_label
from mujo.data.windows import BadClip, clip_windows, concat_batches
from mujo.errors import InputError
from mujo.names import check_name
from mujo.run import Manifest, parse_contract, read_contract
from mujo.schema import SCHEMA_VERSION, SPLITS, SampleFormat, batch_to_table, tensor_array, write_shard

if TYPE_CHECKING:  # annotations only: the file workers and embedding actors import this module, not pydantic
    from mujo.config import PreprocessConfig

log = logging.getLogger(__name__)
STAT_MODALITIES = ("acc", "pose", "video")
PROGRESS = "_progress"
IO_THREADS = 16


class QuarantineExceeded(RuntimeError):
    pass


def shards_dir(run_dir: str, dataset: str) -> str:
    return storage.join(run_dir, "shards", dataset)


# --------------------------------------------------------------------------------------------------------------
# Raw files: listing, footer and schema checks (driver)
# --------------------------------------------------------------------------------------------------------------

@dataclass
class RawFile:
    uri: str
    dataset: str
    size: int
    mtime_ns: int
    rows: int | None = None  # clips, from the footer (None: unknown)
    reason: str = ""  # non-empty: quarantined on the driver
    key: str = ""  # progress key
    texts: list[str] = field(default_factory=list)  # distinct normalised label texts
    skip: dict[int, str] = field(default_factory=dict)  # row -> why it is quarantined (a duplicate clip_id)

    def identity(self, params: str) -> dict:
        ident = {"size": self.size, "mtime_ns": self.mtime_ns, "params": params}
        if self.skip:  # which rows are duplicates depends on the other files: redo the file when that changes
            ident["skip"] = sorted(self.skip)
        return ident


_REFUSED = ("INVALIDACCESSKEYID", "INVALID_ACCESS_KEY_ID", "SIGNATUREDOESNOTMATCH", "SIGNATURE_DOES_NOT_MATCH",
            "ACCESSDENIED", "ACCESS_DENIED", "EXPIREDTOKEN", "EXPIRED_TOKEN", "INVALIDTOKEN", "INVALID_TOKEN",
            "HTTP STATUS 403", "HTTP STATUS 401")


def _refused(text: str) -> bool:
    return any(s in text.upper() for s in _REFUSED)


def _storage_problem(text: str) -> bool:
    """Does an error text say storage is unreachable or refuses us (rather than that a file is corrupt)?"""
    lower = text.lower()
    return _refused(text) or "NoSuchBucket" in text or any(
        s in lower for s in ("curl", "connect", "resolve host", "timed out", "timeout", "network"))


def _storage_error(uri: str, exc: BaseException) -> storage.StorageError:
    """A one-line StorageError naming the endpoint (never a secret). Refused credentials are recognised in the
    spelling of pyarrow's S3 client too (``INVALID_ACCESS_KEY_ID``, ``ACCESS_DENIED``)."""
    if _refused(str(exc)):
        return storage.StorageError(
            f"storage error at {storage.describe(uri)}: the credentials were refused: check AWS_ACCESS_KEY_ID / "
            f"AWS_SECRET_ACCESS_KEY (or the node's instance profile) for this bucket [{type(exc).__name__}]")
    return storage._wrap(uri, exc)


def _list_parquet(uri: str) -> list[tuple[str, int, int]]:
    """``(uri, size, mtime_ns)`` of the ``*.parquet`` files under ``uri``, sorted; StorageError naming the
    endpoint when storage cannot be listed."""
    import pyarrow.fs as pafs

    fs, path = storage.filesystem(uri)
    try:
        infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    except (OSError, pa.ArrowException) as exc:
        raise _storage_error(uri, exc) from exc
    out = []
    for i in infos:
        if i.type == pafs.FileType.File and i.path.endswith(".parquet"):
            mtime = i.mtime_ns if i.mtime_ns is not None else 0
            out.append((("s3://" + i.path) if storage.is_s3(uri) else i.path, int(i.size or 0), int(mtime)))
    return sorted(out)


def _is_string(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or (
        pa.types.is_dictionary(t) and (pa.types.is_string(t.value_type) or pa.types.is_large_string(t.value_type)))


def _is_numeric_list(t: pa.DataType) -> bool:
    return ((pa.types.is_list(t) or pa.types.is_large_list(t))
            and (pa.types.is_floating(t.value_type) or pa.types.is_integer(t.value_type)))


def check_raw_schema(schema: pa.Schema) -> str:
    """Why a raw clip file's schema cannot be preprocessed ('' when it can): missing or mistyped columns."""
    names = set(schema.names)
    problems = []
    missing = [c for c in STRING_FIELDS if c not in names]
    streams = [t for t in TENSORS if t in names]
    if not streams:
        missing.append(" or ".join(f"'{t}'" for t in TENSORS) + " (no stream at all)")
    for t in streams:
        missing += [f"{t}_shape"] if f"{t}_shape" not in names else []
        missing += [f"{t}_hz"] if f"{t}_hz" not in names and f"{t}_t" not in names else []
    if missing:
        problems.append("missing required column(s): " + ", ".join(c if c.startswith("'") else f"'{c}'"
                                                                   for c in missing))
    typed = [(c, _is_string) for c in STRING_FIELDS if c in names]
    typed += [(t, _is_numeric_list) for t in streams] + [(f"{t}_t", _is_numeric_list) for t in streams
                                                          if f"{t}_t" in names]
    typed += [(f"{t}_shape", _is_numeric_list) for t in streams if f"{t}_shape" in names]
    wrong = [f"'{c}' is {schema.field(c).type}" for c, ok in typed if not ok(schema.field(c).type)]
    if wrong:
        problems.append("wrong column type(s): " + ", ".join(wrong))
    return "; ".join(problems)


def _check_file(f: RawFile) -> RawFile:
    """Read ``f``'s footer (cheap) and check its schema; sets ``rows`` and ``reason``."""
    import pyarrow.parquet as pq

    fs, path = storage.filesystem(f.uri)
    try:
        with fs.open_input_file(path) as handle:
            meta = pq.ParquetFile(handle).metadata
            schema = meta.schema.to_arrow_schema()
    except (OSError, pa.ArrowException) as exc:
        if _storage_problem(str(exc)):
            raise _storage_error(f.uri, exc) from exc
        f.reason = f"unreadable Parquet file ({f.size} bytes): {exc}"
        return f
    f.rows = int(meta.num_rows)
    f.reason = check_raw_schema(schema)
    if not f.reason:
        # The label column is read here as well as by the file worker, on purpose: with the texts known up front, a
        # worker asks for a file's embeddings the moment it starts on it, not after reading it; measured faster end
        # to end with one task per file (benchmarks/preprocess_throughput.py: 9.9-10.1 s against 11.5-11.6 s for
        # the Ray side at 320 clips).
        try:
            with fs.open_input_file(path) as handle:
                labels = pq.ParquetFile(handle).read(columns=["label_text"]).column(0).to_pylist()
        except (OSError, pa.ArrowException) as exc:
            if _storage_problem(str(exc)):
                raise _storage_error(f.uri, exc) from exc
            f.reason = f"unreadable Parquet data ('label_text'): {exc}"
            return f
        f.texts = sorted({t for t in map(normalize_label, (str(x) for x in labels)) if t})
    return f


def _skip_rows(raw: str | dict | None) -> dict[int, str]:
    """A task's ``skip`` (JSON text through Ray Data, a dict locally) as ``{row: reason}``."""
    if not raw:
        return {}
    return {int(k): v for k, v in (json.loads(raw) if isinstance(raw, str) else raw).items()}


def _clip_ids(f: RawFile) -> list[str] | None:
    """The ``clip_id`` column of a raw file (None when unreadable: its own check quarantines it)."""
    import pyarrow.parquet as pq

    fs, path = storage.filesystem(f.uri)
    try:
        with fs.open_input_file(path) as handle:
            return [str(x) for x in pq.ParquetFile(handle).read(columns=["clip_id"]).column(0).to_pylist()]
    except (OSError, pa.ArrowException, KeyError) as exc:
        if _storage_problem(str(exc)):
            raise _storage_error(f.uri, exc) from exc
        return None


def mark_duplicates(files: list[RawFile], ids: list[list[str] | None]) -> int:
    """Quarantine every repeat of a clip id within one dataset, in and across its raw files (the first occurrence
    in file order, then row order, is kept): a repeated clip would put duplicate windows in the shards, and across
    splits leak test clips into training. Sets each file's ``skip``; returns the number of repeats."""
    first: dict[str, tuple[str, int]] = {}
    repeats = 0
    for f, file_ids in zip(files, ids):
        f.skip = {}
        for row, cid in enumerate(file_ids or []):
            if cid in first:
                where, at = first[cid]
                f.skip[row] = f"duplicate clip_id {cid!r}: first in {posixpath.basename(where)} row {at}; quarantined"
                repeats += 1
            else:
                first[cid] = (f.uri, row)
    return repeats


def _key(uri: str) -> str:
    base = posixpath.basename(uri)
    return f"{base.removesuffix('.parquet')}-{hashlib.sha1(uri.encode()).hexdigest()[:12]}"


def _params(dataset: str, fmt: SampleFormat, labels: list[str], cfg: PreprocessConfig) -> str:
    """Fingerprint of everything besides the raw file that decides a file's shards."""
    doc = {"schema": SCHEMA_VERSION, "dataset": dataset, "video_dim": fmt.video_dim, "text_dim": fmt.text_dim,
           "labels": labels, "trim_fraction": cfg.trim_fraction, "shard_rows": cfg.shard_rows, "text": TEXT_MODEL}
    return hashlib.sha1(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------------------------
# Stage 1: one raw file -> chunks of windowed samples (plain functions; the pipeline and the local loop share them)
# --------------------------------------------------------------------------------------------------------------

def _table_columns(table: pa.Table) -> dict[str, list]:
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


def _entry(file: str, dataset: str, clip_id: str | None, reason: str, clips: int | None = None) -> dict:
    e = {"file": file, "clip_id": clip_id, "dataset": dataset, "reason": reason}
    if clip_id is None:
        e["clips"] = clips
    return e


def _channel_sums(batch: dict[str, np.ndarray]) -> dict[str, list]:
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
        if _storage_problem(str(exc)):
            raise _storage_error(uri, exc) from exc
        return [{"split": "", "rows": 0, "table": None, "summary": {},
                 "quarantine": [_entry(uri, dataset, None, f"unreadable Parquet data: {exc}")]}]
    columns = _table_columns(table)
    batches = []
    for i in range(table.num_rows):
        clip_id = str(columns["clip_id"][i])
        if skip and i in skip:
            quarantine.append(_entry(uri, dataset, clip_id, skip[i]))
            continue
        try:
            clip = row_to_clip(columns, i)
            if clip.dataset != dataset:
                raise BadClip(clip_id, f"clip of dataset '{clip.dataset}' in the raw folder of '{dataset}'")
            if clip.split not in SPLITS:  # the split becomes a folder name: nothing else may pass
                raise BadClip(clip_id, f"split {clip.split!r} is not one of {list(SPLITS)}")
            batches.append(clip_windows(clip, fmt, label_map, trim_fraction))
        except BadClip as bad:
            quarantine.append(_entry(uri, dataset, bad.clip_id, bad.reason))
        except Exception as exc:  # undecodable values etc.: a message in the manifest, never a crashed pipeline
            quarantine.append(_entry(uri, dataset, clip_id, f"cannot window: {type(exc).__name__}: {exc}"))
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
                                           "sums": _channel_sums(part)},
                               "quarantine": []})
    if not chunks:
        chunks.append({"split": "", "rows": 0, "table": None, "summary": {}, "quarantine": []})
    chunks[0]["quarantine"] = quarantine
    return chunks


# --------------------------------------------------------------------------------------------------------------
# Text embeddings and writing (plain functions as well)
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
    """Fill ``text_emb`` with ``embed(texts)`` of the rows that have a text (zeros elsewhere)."""
    field_ = table.schema.field("text_emb")
    shape = tuple(field_.type.shape)
    texts = table.column("text").to_pylist()
    has = np.asarray(table.column("has_text").to_pylist(), dtype=bool)
    out = np.zeros((table.num_rows, *shape), np.float32)
    if has.any():
        out[has] = embed([t for t, h in zip(texts, has) if h])
    return table.set_column(table.schema.get_field_index("text_emb"), field_, tensor_array(out, shape))


def shard_name(table: pa.Table, split: str) -> str:
    """``<split>/shard-<sha1 of the sample ids>.parquet``: a function of the content alone."""
    digest = hashlib.sha1("\n".join(table.column("sample_id").to_pylist()).encode()).hexdigest()[:16]
    return f"{split}/shard-{digest}.parquet"


def progress_uri(out_dir: str, key: str, chunk: int) -> str:
    return storage.join(out_dir, PROGRESS, key, f"{chunk:05d}.json")


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
                         _skip_rows(task.get("skip")))
    return write_file(task, chunks, out_dir, embed)


# --------------------------------------------------------------------------------------------------------------
# Ray: the embedding actor and the per-file tasks
# --------------------------------------------------------------------------------------------------------------

class EmbedText:
    """Ray actor: loads the sentence model once and embeds texts for every file task (see CachedEmbedder)."""

    def __init__(self) -> None:
        self.embedder = CachedEmbedder()

    def embed(self, texts: list[str]) -> dict[str, np.ndarray]:
        return dict(zip(texts, self.embedder(list(texts))))


def _remote_embed(actor: Any, first: list[str], batch_size: int) -> Callable[[list[str]], np.ndarray]:
    """An ``embed`` callable served by the actor, in calls of at most ``batch_size`` texts; the file's texts (known
    from the driver's read of its ``label_text``) are requested before windowing starts, so the answer is usually
    there when needed."""
    import ray

    def ask(texts: list[str]) -> list:
        return [actor.embed.remote(texts[i:i + batch_size]) for i in range(0, len(texts), batch_size)]

    pending = ask(first)
    known: dict[str, np.ndarray] = {}

    def embed(texts: list[str]) -> np.ndarray:
        nonlocal pending
        for answer in ray.get(pending):  # Ray lends this task's CPU back while it waits
            known.update(answer)
        pending = []
        missing = sorted(set(texts) - set(known))
        for answer in ray.get(ask(missing)):
            known.update(answer)
        return np.stack([known[t] for t in texts])

    return embed


class FileWorker:
    """The Ray Data stage, an actor: raw file rows (one per batch) -> their progress records (JSON).

    An actor rather than a task per file: its process stays up for the whole run, so its imports and first-file
    warm-up are paid once, and Ray Data queues the next file on it while it works on the current one (a new task
    waited ~0.1 s for dispatch and, at first, seconds for a new worker process; measured in
    ``benchmarks/README.md``)."""

    def __init__(self, contexts: dict[str, dict], trim_fraction: float, shard_rows: int, out_dirs: dict[str, str],
                 embedders: list, text_batch_size: int) -> None:
        self.contexts, self.out_dirs, self.embedders = contexts, out_dirs, embedders
        self.trim_fraction, self.shard_rows, self.text_batch_size = trim_fraction, shard_rows, text_batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        windowed = []
        for i in range(len(batch["file"])):
            task = {k: (v[i].item() if isinstance(v[i], np.generic) else v[i]) for k, v in batch.items()}
            task["identity"] = json.loads(task["identity"])
            ctx = self.contexts[task["dataset"]]
            actor = self.embedders[int(hashlib.sha1(task["key"].encode()).hexdigest(), 16) % len(self.embedders)]
            embed = _remote_embed(actor, json.loads(task["texts"]), self.text_batch_size)
            chunks = window_file(task["file"], task["dataset"], ctx["format"], ctx["label_map"], self.trim_fraction,
                                 self.shard_rows, _skip_rows(task.get("skip")))
            windowed.append((task, chunks, embed))
        records = []
        for task, chunks, embed in windowed:
            records += write_file(task, chunks, self.out_dirs[task["dataset"]], embed)
        return {"record": np.array([json.dumps(r) for r in records], dtype=object)}


# --------------------------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------------------------

@dataclass
class _Plan:
    raws: dict[str, str]
    cards: dict[str, dict]
    formats: dict[str, SampleFormat]
    label_maps: dict[str, dict[str, int]]
    out_dirs: dict[str, str]
    params: dict[str, str]
    files: dict[str, list[RawFile]] = field(default_factory=dict)
    todo: list[RawFile] = field(default_factory=list)
    reused: dict[str, list[dict]] = field(default_factory=dict)  # key -> records
    stale: list[dict] = field(default_factory=list)  # records of earlier runs that no longer hold
    stale_records: list[str] = field(default_factory=list)


def _read_records(out_dir: str, listing: list[str]) -> dict[str, list[tuple[str, dict]]]:
    prefix = storage.join(out_dir, PROGRESS)
    uris = [u for u in listing if u.startswith(prefix) and u.endswith(".json")]
    with ThreadPoolExecutor(IO_THREADS) as pool:
        docs = list(pool.map(storage.read_json, uris))
    groups: dict[str, list[tuple[str, dict]]] = defaultdict(list)
    for uri, doc in zip(uris, docs):
        groups[uri[len(prefix):].strip("/").split("/")[0]].append((uri, doc))
    return groups


def _complete(records: list[dict], identity: dict, existing: set[str], out_dir: str) -> bool:
    if not records or any(r["identity"] != identity for r in records):
        return False
    chunks = {r["chunks"] for r in records}
    if len(chunks) != 1 or sorted(r["chunk"] for r in records) != list(range(chunks.pop())):
        return False
    return all(not r["shard"] or storage.join(out_dir, r["shard"]) in existing for r in records)


@dataclass
class _Inputs:
    """What :func:`check_inputs` found: each dataset's raw folder, its raw files and its ``dataset.json``."""

    raws: dict[str, str]
    listings: dict[str, list[tuple[str, int, int]]]
    cards: dict[str, dict]


def check_inputs(datasets: dict[str, int] | list[str], run_dir: str,
                 raw_uris: dict[str, str] | None = None) -> _Inputs:
    """The cheap checks, before Ray or any model starts: every dataset name is safe, its raw folder can be listed
    and holds raw clip files, its ``dataset.json`` exists and is valid JSON with labels. One line naming the
    folder or file and the fix otherwise (:class:`~mujo.errors.InputError`, or StorageError for storage)."""
    from mujo.pipelines.generate import raw_dir

    raws = {}
    for d in datasets:
        check_name(d, "dataset name")
        uri = (raw_uris or {}).get(d) or raw_dir(run_dir, d)
        raws[d] = uri if storage.is_s3(uri) else os.path.abspath(uri)  # listings name files by absolute path
    # storage first: one clear line (naming the endpoint) when it is unreachable or refuses the credentials
    listings = {d: _list_parquet(raw) for d, raw in raws.items()}
    cards = {}
    for d, found in listings.items():
        if not found:
            raise InputError(f"{d}: no raw clip files (*.parquet) under {storage.describe(raws[d])}; run generation "
                             "(jobs/generate.py) or a dataset adapter (jobs/ingest.py) first, or fix storage.root")
        card_uri = storage.join(raws[d], "dataset.json")
        if not storage.exists(card_uri):
            raise InputError(f"{d}: {storage.describe(card_uri)} is missing; it is written with the raw clips by "
                             "jobs/generate.py or jobs/ingest.py: run that again")
        cards[d] = storage.read_json(card_uri)
        labels = cards[d].get("labels") if isinstance(cards[d], dict) else None
        if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
            raise InputError(f"{d}: {storage.describe(card_uri)} has no list of label names ('labels'); write it "
                             "again with jobs/generate.py or jobs/ingest.py")
    return _Inputs(raws, listings, cards)


def _plan(datasets: dict[str, int], run_dir: str, cfg: PreprocessConfig, inputs: _Inputs) -> _Plan:
    raws, listings, cards = inputs.raws, inputs.listings, inputs.cards
    out_dirs = {d: shards_dir(run_dir, d) for d in datasets}
    out_dirs = {d: out if storage.is_s3(out) else os.path.abspath(out) for d, out in out_dirs.items()}
    for d, out in out_dirs.items():
        try:
            storage.check_writable(out)
        except storage.StorageError as err:
            raise (_storage_error(out, err.__cause__) if err.__cause__ else err) from err.__cause__
    formats = {d: SampleFormat(video_dim=video_dim) for d, video_dim in datasets.items()}
    plan = _Plan(raws, cards, formats, {d: {name: i for i, name in enumerate(card["labels"])} for d, card in
                                        cards.items()},
                 out_dirs, {d: _params(d, formats[d], list(cards[d]["labels"]), cfg) for d in datasets})
    to_check: list[RawFile] = []
    for d in datasets:
        existing = set(storage.list_files(out_dirs[d]))
        groups = _read_records(out_dirs[d], sorted(existing))
        files = [RawFile(uri, d, size, mtime, key=_key(uri)) for uri, size, mtime in listings[d]]
        with ThreadPoolExecutor(IO_THREADS) as pool:
            repeats = mark_duplicates(files, list(pool.map(_clip_ids, files)))
        if repeats:
            log.warning("%s: %d repeated clip id(s) in the raw files are quarantined (see the manifest)", d, repeats)
        plan.files[d] = files
        keys = {f.key for f in files}
        for f in files:
            records = [doc for _, doc in groups.get(f.key, [])]
            valid = [r for r in records if r["identity"] == f.identity(plan.params[d])]
            if _complete(valid, f.identity(plan.params[d]), existing, out_dirs[d]):
                plan.reused[f.key] = sorted(valid, key=lambda r: r["chunk"])
                f.rows = valid[0].get("rows")
                plan.stale_records += [u for u, doc in groups[f.key] if doc not in valid]
            else:
                to_check.append(f)
                plan.stale += records
                plan.stale_records += [u for u, _ in groups.get(f.key, [])]
        for key, group in groups.items():  # raw files that are gone
            if key not in keys:
                plan.stale += [doc for _, doc in group]
                plan.stale_records += [u for u, _ in group]
    with ThreadPoolExecutor(IO_THREADS) as pool:
        list(pool.map(_check_file, to_check))
    plan.todo = [f for f in to_check if not f.reason]
    for d in datasets:  # fail before any work when the unreadable files alone are too many
        _check_share(d, plan, [], cfg, early=True)
    return plan


def _quarantine(d: str, plan: _Plan, records: list[dict]) -> tuple[list[dict], int, int]:
    """The dataset's quarantine entries (sorted), the quarantined clips and the total clips."""
    rows = {f.uri: f.rows for f in plan.files[d]}
    entries = [_entry(f.uri, d, None, f.reason, f.rows) for f in plan.files[d] if f.reason]
    entries += [e if e["clip_id"] is not None else {**e, "clips": e.get("clips") or rows.get(e["file"])}
                for r in records for e in r["quarantine"]]
    entries.sort(key=lambda e: (e["file"], e["clip_id"] or ""))
    known = sum(f.rows for f in plan.files[d] if f.rows is not None)
    unknown = [e for e in entries if e["clip_id"] is None and e.get("clips") is None]
    total = max(int(plan.cards[d].get("clips") or 0), known + len(unknown))
    clips = sum(1 if e["clip_id"] is not None else (e.get("clips") or 0) for e in entries)
    if unknown:  # files whose clip count cannot be read: what the card counts beyond the readable files
        clips += max(total - known, len(unknown))
    return entries, min(clips, total), total


def _check_share(d: str, plan: _Plan, records: list[dict], cfg: PreprocessConfig, early: bool = False) -> str:
    entries, bad, total = _quarantine(d, plan, records)
    share = bad / max(total, 1)
    if share <= cfg.max_quarantine_share:
        return ""
    listing = "; ".join(f"{posixpath.basename(e['file'])}{'' if e['clip_id'] is None else ' ' + e['clip_id']}: "
                        f"{e['reason']}" for e in entries[:5])
    more = f" (and {len(entries) - 5} more)" if len(entries) > 5 else ""
    what = "raw file(s) cannot be used" if early else "entries were quarantined"
    msg = (f"{d}: {len(entries)} {what}, holding {bad} of {total} clips ({share:.0%}), above the allowed "
           f"preprocess.max_quarantine_share {cfg.max_quarantine_share:.0%}: {listing}{more}")
    if early:
        raise QuarantineExceeded(msg)
    return msg


def _start_embedders(cfg: PreprocessConfig) -> list:
    """The embedding actors, started before the driver plans the run: the model loads (seconds: torch and the
    sentence model) while the raw files are listed and checked and the first ones are windowed."""
    import ray

    if not ray.is_initialized():
        ray.init()
    actor_cls = ray.remote(num_cpus=cfg.text_actor_cpus, max_restarts=2, max_task_retries=2)(EmbedText)
    return [actor_cls.remote() for _ in range(cfg.text_actors)]


def file_workers(cfg: PreprocessConfig, files: int, cluster_cpus: float) -> tuple[int, int]:
    """``(initial, most)`` file workers: as many as the cluster's CPUs hold now at ``window_cpus`` each (besides
    the embedding actors' reservation), at least one; at most one per file or ``max_file_workers``. Ray Data grows
    the pool towards ``most`` when the cluster grows (an autoscaling cluster may start with no worker node)."""
    most = max(1, min(files, cfg.max_file_workers or files))
    fits = int((cluster_cpus - cfg.text_actors * cfg.text_actor_cpus) / cfg.window_cpus + 1e-9)
    return max(1, min(fits, most)), most


def _run_ray(plan: _Plan, cfg: PreprocessConfig, embedders: list) -> list[dict]:
    import ray

    tasks = [{"file": f.uri, "dataset": f.dataset, "key": f.key, "identity": json.dumps(f.identity(plan.params[
        f.dataset])), "clips": -1 if f.rows is None else f.rows, "texts": json.dumps(f.texts),
        "skip": json.dumps({str(k): v for k, v in f.skip.items()})} for f in plan.todo]
    contexts = {d: {"format": plan.formats[d], "label_map": plan.label_maps[d]} for d in plan.raws}
    # One raw file per call, start to end (read, window, embed, write): every shard is a function of its raw file
    # alone, and no sample leaves the process that made it.
    initial, most = file_workers(cfg, len(tasks), ray.cluster_resources().get("CPU", 0.0))
    ds = ray.data.from_items(tasks, override_num_blocks=len(tasks))
    ds = ds.map_batches(FileWorker, fn_constructor_kwargs={
        "contexts": contexts, "trim_fraction": cfg.trim_fraction, "shard_rows": cfg.shard_rows,
        "out_dirs": plan.out_dirs, "embedders": embedders, "text_batch_size": cfg.text_batch_size},
        batch_size=1, batch_format="numpy", num_cpus=cfg.window_cpus,
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=most, initial_size=initial))
    return [json.loads(r["record"]) for r in take_all(ds)]


def take_all(ds: Any) -> list[dict]:
    """``ds.take_all()``, with a StorageError raised in a worker turned back into its one line (Ray Data wraps it in
    a ``UserCodeException`` task error whose text is the worker's whole traceback)."""
    try:
        return ds.take_all()
    except Exception as exc:
        message = _storage_message(exc)
        if message is not None:
            raise storage.StorageError(message) from None
        raise


_STORAGE_LINE = re.compile(r"(?:^|\s)(?:mujo\.storage\.)?StorageError: (.+)$", re.MULTILINE)


def _storage_message(exc: BaseException) -> str | None:
    """The message of a :class:`~mujo.storage.StorageError` behind ``exc``: the exception itself or one in its
    chain (``__cause__``, ``__context__``, the ``cause`` of Ray's task errors), else the last ``StorageError: …``
    line of a remote traceback that Ray kept only as text."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    texts = []
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, storage.StorageError) and not type(e).__module__.startswith("ray"):
            return str(e).splitlines()[0]
        texts.append(str(e))
        todo += [getattr(e, "cause", None), e.__cause__, e.__context__]
    found = [m for text in texts for m in _STORAGE_LINE.findall(text)]
    return found[-1].strip() if found else None


def _run_local(plan: _Plan, cfg: PreprocessConfig) -> list[dict]:
    """The same functions, sequentially, in this process (the model loaded once, here)."""
    embedder = CachedEmbedder() if plan.todo else None
    records = []
    for f in plan.todo:
        task = {"file": f.uri, "dataset": f.dataset, "key": f.key, "identity": f.identity(plan.params[f.dataset]),
                "clips": -1 if f.rows is None else f.rows, "skip": f.skip}
        records += process_file(task, plan.formats[f.dataset], plan.label_maps[f.dataset], cfg.trim_fraction,
                                cfg.shard_rows, plan.out_dirs[f.dataset], embedder)
    return records


def preprocess(datasets: dict[str, int], run_dir: str, cfg: PreprocessConfig,
               raw_uris: dict[str, str] | None = None, executor: str = "ray") -> dict[str, Manifest]:
    """Run the pipeline once over several datasets' raw clips (``{name: video_dim}``); write and return each
    dataset's manifest. One pipeline, so the text model is loaded once (per embedding task) for all of them.

    Raw files already processed with the same parameters (see the module docstring) are not processed again.
    ``executor="local"`` runs the same stages sequentially in this process, without Ray."""
    if executor not in ("ray", "local"):
        raise ValueError(f"executor must be 'ray' or 'local', not {executor!r}")
    t0 = time.time()
    inputs = check_inputs(datasets, run_dir, raw_uris)  # before any actor starts: bad input is one line at once
    embedders = _start_embedders(cfg) if executor == "ray" else []
    try:
        plan = _plan(datasets, run_dir, cfg, inputs)
        log.info("preprocess: %d raw file(s) to process, %d already done, %d quarantined on reading",
                 len(plan.todo), len(plan.reused), sum(bool(f.reason) for fs in plan.files.values() for f in fs))
        new = [] if not plan.todo else (_run_ray(plan, cfg, embedders) if executor == "ray" else _run_local(plan, cfg))
    finally:
        if embedders:
            import ray

            for actor in embedders:
                ray.kill(actor)
    seconds = round(time.time() - t0, 1)
    records = [r for group in plan.reused.values() for r in group] + new
    processed = {r["file"] for r in new}
    manifests, failures = {}, []
    for d in datasets:
        mine = sorted((r for r in records if r["dataset"] == d), key=lambda r: (r["file"], r["chunk"]))
        manifest = _manifest(d, plan, mine, seconds)
        manifest["progress"] = {"files": len(plan.files[d]),
                                "processed": sum(f.uri in processed for f in plan.files[d]),
                                "reused": sum(f.key in plan.reused for f in plan.files[d]),
                                "quarantined_files": sum(bool(f.reason) for f in plan.files[d])}
        failure = _check_share(d, plan, mine, cfg)
        if failure:
            storage.write_json(storage.join(plan.out_dirs[d], "quarantine.json"), manifest["quarantine"])
            failures.append(f"{failure}. Every entry: {storage.join(plan.out_dirs[d], 'quarantine.json')}")
            continue
        uri = storage.join(plan.out_dirs[d], "manifest.json")
        storage.write_json(uri, manifest)
        log.info("preprocessed %s: %s windows, %d quarantine entries", d, manifest["rows"],
                 manifest["quarantine"]["count"])
        manifests[d] = parse_contract(manifest, Manifest, uri)
    if failures:  # an earlier manifest may still name the shards a clean-up would delete: keep them
        raise QuarantineExceeded("\n".join(failures))
    _clean_stale(plan, records)
    return manifests


def _clean_stale(plan: _Plan, records: list[dict]) -> None:
    """Delete shards and progress records of earlier runs that this run replaced (best effort)."""
    keep = {storage.join(plan.out_dirs[r["dataset"]], r["shard"]) for r in records if r["shard"]}
    current = {progress_uri(plan.out_dirs[r["dataset"]], _key(r["file"]), r["chunk"]) for r in records}
    doomed = {storage.join(plan.out_dirs[r["dataset"]], r["shard"]) for r in plan.stale
              if r.get("shard") and r.get("dataset") in plan.out_dirs} - keep
    doomed |= set(plan.stale_records) - current
    doomed |= {u for u in (storage.join(out, "quarantine.json") for out in plan.out_dirs.values()) if storage.exists(u)}
    for uri in sorted(doomed):
        fs, path = storage.filesystem(uri)
        try:
            fs.delete_file(path)
        except OSError as exc:
            log.warning("could not delete stale %s: %s", uri, exc)


def _stats(records: list[dict]) -> dict[str, dict[str, list[float]]]:
    """Per-channel mean/std over the train split's shards, summed in shard order (deterministic)."""
    acc: dict[str, list] = {}
    for r in sorted((r for r in records if r["split"] == "train" and r["shard"]), key=lambda r: r["shard"]):
        for m, (n, total, sq) in r["sums"].items():
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


def _manifest(d: str, plan: _Plan, records: list[dict], seconds: float) -> dict:
    labels: list[str] = plan.cards[d]["labels"]
    shard_records = [r for r in records if r["shard"]]
    entries, bad, total = _quarantine(d, plan, records)
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in shard_records:
        for c, n in r["classes"].items():
            counts[r["split"]][labels[int(c)]] += n
    out = plan.out_dirs[d]
    return {
        "schema_version": SCHEMA_VERSION,
        "dataset": d,
        "raw": plan.raws[d],
        "labels": labels,
        "video_dim": plan.formats[d].video_dim,
        "text_dim": plan.formats[d].text_dim,
        "shards": {split: sorted(storage.join(out, r["shard"]) for r in shard_records if r["split"] == split)
                   for split in sorted({r["split"] for r in shard_records})},
        "counts": {split: dict(sorted(c.items())) for split, c in sorted(counts.items())},
        "rows": {split: sum(c.values()) for split, c in sorted(counts.items())},
        "stats": _stats(shard_records),
        "quarantine": {"count": len(entries), "files": sum(e["clip_id"] is None for e in entries),
                       "clips": bad, "share": round(bad / max(total, 1), 4), "entries": entries},
        "clips": plan.cards[d].get("clips", total),
        "seconds": seconds,
    }


class ManifestMissing(InputError):
    """A dataset has not been preprocessed in this run."""


def read_manifest(run_dir: str, dataset: str) -> Manifest:
    """The dataset's ``manifest.json``; :class:`ManifestMissing` (naming the file and the fix) when there is none."""
    uri = storage.join(shards_dir(run_dir, dataset), "manifest.json")
    if not storage.exists(uri):
        raise ManifestMissing(f"{storage.describe(uri)} does not exist: dataset '{dataset}' has not been "
                              "preprocessed in this run; run jobs/preprocess.py (or jobs/main.py) first, or check "
                              "run_name and storage.root")
    return read_contract(uri, Manifest)
