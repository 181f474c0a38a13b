"""Putting the joint embedding to work: text -> sensor retrieval and labelling a window by its nearest label text.

Plain torch/numpy (no Ray). Window embeddings come from :mod:`mujo.pipelines.embed` (or
:func:`mujo.evaluate.data.embed` in memory); texts go through the same path zero-shot uses: the paper's label
normalisation, the sentence model, then the pretrained model's text encoder and projection into the joint space.

    from mujo.models import load_pretrained
    from mujo.retrieval import load_embeddings, search, label_by_text
    model = load_pretrained("runs/demo/pretrain/model")
    windows = load_embeddings("runs/demo/embeddings/synthhar", "acc")
    hits = search(model, "jumping jacks", windows, k=5)                # the 5 windows most like the text
    labels, scores = label_by_text(model, windows.embeddings, ["squats", "push ups", "lunges"])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from mujo.evaluate.metrics import l2_normalize

__all__ = ["WindowEmbeddings", "embed_texts", "label_by_text", "load_embeddings", "search", "top_k"]


@dataclass
class WindowEmbeddings:
    """Window embeddings (N, D), unit norm, and their identifying columns (each an array of N)."""

    embeddings: np.ndarray
    meta: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.embeddings)


def load_embeddings(folder: str, modality: str, model_digest: str | None = None) -> WindowEmbeddings:
    """Read ``<folder>/<modality>/*.parquet`` written by ``jobs/embed.py`` (only one model's files: the given
    digest, or the only one there; several models' files and no digest is an error naming them)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mujo import storage

    files = storage.list_files(storage.join(folder, modality), ".parquet")
    digests = sorted({f.rsplit("-", 1)[1].removesuffix(".parquet") for f in files})
    if not files:
        raise FileNotFoundError(f"no {modality} embeddings under {storage.describe(folder)}: run jobs/embed.py "
                                f"with embed.modalities including {modality}")
    if model_digest is None and len(digests) > 1:
        raise ValueError(f"{storage.join(folder, modality)} holds embeddings of {len(digests)} models ({digests}): "
                         "pass model_digest=")
    digest = model_digest or digests[0]
    tables = []
    for f in files:
        if f.endswith(f"-{digest}.parquet"):
            fs, path = storage.filesystem(f)
            tables.append(pq.read_table(path, filesystem=fs))
    table = pa.concat_tables(tables)
    col = table.column("embedding").combine_chunks()
    emb = col.values.to_numpy().reshape(len(col), -1).astype(np.float32)
    meta = {c: table.column(c).to_numpy(zero_copy_only=False) for c in table.column_names if c != "embedding"}
    return WindowEmbeddings(emb, meta)


@torch.no_grad()
def embed_texts(model, texts: Sequence[str], embedder: Callable | None = None) -> np.ndarray:
    """Joint-space embeddings (Q, D) of free texts (normalised as labels are, then the model's text branch)."""
    from mujo.data.text import normalize_label, shared_embedder

    embedder = embedder or shared_embedder()
    cleaned = [normalize_label(t) or t for t in texts]
    sentence = torch.from_numpy(np.asarray(embedder(cleaned), dtype=np.float32))
    model.eval()
    return model.embed("text", sentence).numpy()


def top_k(query: np.ndarray, embeddings: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and cosine similarities of the ``k`` rows of ``embeddings`` most similar to ``query`` (D,), best
    first (ties: the lower index)."""
    scores = l2_normalize(np.asarray(embeddings, np.float64)) @ l2_normalize(np.asarray(query, np.float64)[None])[0]
    k = min(int(k), len(scores))
    idx = np.argsort(-scores, kind="stable")[:k]
    return idx, scores[idx]


def search(model, text: str, windows: WindowEmbeddings, k: int = 10, embedder: Callable | None = None) -> list[dict]:
    """"Windows most similar to this text": the ``k`` best windows, each a dict of its columns and ``score``."""
    idx, scores = top_k(embed_texts(model, [text], embedder)[0], windows.embeddings, k)
    return [{**{c: (v[i].item() if hasattr(v[i], "item") else v[i]) for c, v in windows.meta.items()},
             "score": float(s), "index": int(i)} for i, s in zip(idx, scores)]


def label_by_text(model, embeddings: np.ndarray, labels: Sequence[str],
                  embedder: Callable | None = None) -> tuple[np.ndarray, np.ndarray]:
    """"Label this window by nearest label text": for each window (N, D), the index of the most similar of
    ``labels`` (class names or free texts; a no-activity name is the mean of the others, as in zero-shot) and the
    (N, C) cosine similarities."""
    from mujo.data.text import shared_embedder
    from mujo.evaluate.zeroshot import label_matrix
    from mujo.evaluate.zeroshot import zero_shot_scores

    matrix = label_matrix(model, list(labels), embedder or shared_embedder())
    scores = zero_shot_scores(embeddings, matrix)
    return scores.argmax(1).astype(np.int64), scores
