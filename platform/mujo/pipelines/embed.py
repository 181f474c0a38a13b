"""Joint-space embeddings of a preprocessed dataset's windows, per modality, with Ray Data -> Parquet.

Ray Data streams the dataset's shards to a pool of actors (``EmbedWorker``, a callable class: the pretrained
artefact loaded once per actor; ``embed.cpus_per_actor`` / ``embed.num_gpus`` each), one shard per call. Each
writes, per modality the model has and the window carries, ``<out>/<modality>/<shard>-<model digest>.parquet``:
``sample_id``, ``clip_id``, ``subject``, ``split``, ``activity``, ``class_id``, ``text`` and ``embedding``
(L2-normalised, ``embed_dim`` float32). For ``text`` the window's embedding is its label text's. Files are written
atomically and named by the shard (itself named by its content) and the model's weights digest, so a re-run skips
what exists and a different model never mixes with another's files. :mod:`mujo.retrieval` reads them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
import time

import numpy as np
import pyarrow as pa

from mujo import storage
from mujo.schema import MASK_COLUMNS, TENSOR_MODALITY_COLUMN

log = logging.getLogger(__name__)
META_COLUMNS = ("sample_id", "clip_id", "subject", "split", "activity", "class_id", "text")


def model_digest(model_uri: str) -> str:
    from mujo.models.mujo import ARTEFACT_WEIGHTS

    return hashlib.sha256(storage.read_bytes(storage.join(model_uri, ARTEFACT_WEIGHTS))).hexdigest()[:12]


def output_name(shard: str, modality: str, digest: str) -> str:
    return f"{modality}/{posixpath.basename(shard).removesuffix('.parquet')}-{digest}.parquet"


def embed_shard(shard: str, model, modalities: list[str], out: str, digest: str, batch_size: int,
                device: str = "cpu") -> dict:
    """Embed one shard's windows for every modality; returns ``{modality: rows written}``."""
    import torch

    from mujo.schema import read_shard, to_numpy_tensor

    table = read_shard(shard)
    meta = {c: table.column(c) for c in META_COLUMNS}
    counts = {}
    for m in modalities:
        present = table.column(MASK_COLUMNS[m]).to_numpy(zero_copy_only=False).astype(bool)
        x = to_numpy_tensor(table.column(TENSOR_MODALITY_COLUMN[m]))[present]
        parts = []
        with torch.no_grad():
            for lo in range(0, len(x), batch_size):
                parts.append(model.embed(m, torch.from_numpy(np.ascontiguousarray(x[lo:lo + batch_size])).to(device))
                             .float().cpu().numpy())
        emb = np.concatenate(parts) if parts else np.zeros((0, model.cfg.embed_dim), np.float32)
        keep = pa.array(present)
        cols = {c: meta[c].filter(keep) for c in META_COLUMNS}
        cols["embedding"] = pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1), pa.float32()), emb.shape[1])
        storage.write_table(pa.table(cols), storage.join(out, output_name(shard, m, digest)))
        counts[m] = int(len(emb))
    return counts


class EmbedWorker:
    """The Ray Data stage, an actor: loads the pretrained model once, then one shard per call."""

    def __init__(self, model: str, modalities: list[str], out: str, digest: str, batch_size: int,
                 use_gpu: bool = False) -> None:
        import torch

        from mujo.models import load_pretrained

        self.device = "cuda" if use_gpu and torch.cuda.is_available() else "cpu"
        self.model = load_pretrained(model, map_location=self.device).eval()
        self.modalities, self.out, self.digest, self.batch_size = modalities, out, digest, batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        done = [json.dumps(embed_shard(str(s), self.model, self.modalities, self.out, self.digest, self.batch_size,
                                       self.device)) for s in batch["shard"]]
        return {"counts": np.array(done, dtype=object)}


def run_embed(model: str, manifest: dict, out: str, cfg, start_ray=None, executor: str = "ray") -> dict:
    """Embed every window of ``manifest``'s dataset (``cfg``: :class:`mujo.config.EmbedConfig`); writes under
    ``out`` and returns ``{"out", "model_digest", "rows": {modality: windows}, "shards", "reused"}``."""
    from mujo.models.mujo import artefact_metadata

    t0 = time.time()
    meta = artefact_metadata(model)  # a missing or foreign artefact fails here, before Ray
    have = meta.model["modalities"]
    lacking = [m for m in cfg.modalities if m not in have]
    if lacking:
        raise ValueError(f"{storage.join(model, 'model.json')}: the pretrained model has no encoder for {lacking} "
                         f"(it has {have}): set embed.modalities to some of {have}")
    digest = model_digest(model)
    splits = cfg.splits or sorted(manifest.shards)
    shards = [s for split in splits for s in manifest.shards.get(split, [])]
    todo = [s for s in shards if not all(storage.exists(storage.join(out, output_name(s, m, digest)))
                                         for m in cfg.modalities)]
    if todo and executor == "ray":
        if start_ray is not None:
            start_ray()
        import ray

        if not ray.is_initialized():
            ray.init()
        most = max(1, min(len(todo), int(ray.cluster_resources().get("CPU", 1) / cfg.cpus_per_actor + 1e-9)))
        ds = ray.data.from_items([{"shard": s} for s in todo], override_num_blocks=len(todo))
        ds = ds.map_batches(EmbedWorker, fn_constructor_kwargs={
            "model": model, "modalities": list(cfg.modalities), "out": out, "digest": digest,
            "batch_size": cfg.batch_size, "use_gpu": cfg.num_gpus > 0},
            batch_size=1, batch_format="numpy", num_cpus=cfg.cpus_per_actor, num_gpus=cfg.num_gpus or None,
            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=max(most, 1)))
        for _ in ds.iter_rows():
            pass
    elif todo:
        worker = EmbedWorker(model, list(cfg.modalities), out, digest, cfg.batch_size)
        for s in todo:
            worker({"shard": np.array([s], dtype=object)})
    rows = {m: 0 for m in cfg.modalities}
    import pyarrow.parquet as pq

    for s in shards:
        for m in cfg.modalities:
            fs, path = storage.filesystem(storage.join(out, output_name(s, m, digest)))
            rows[m] += pq.read_metadata(path, filesystem=fs).num_rows
    summary = {"out": out, "model": model, "model_digest": digest, "dataset": manifest.dataset, "rows": rows,
               "shards": len(shards), "reused": len(shards) - len(todo), "seconds": round(time.time() - t0, 2)}
    storage.write_json(storage.join(out, f"embeddings-{digest}.json"), summary)
    return summary
