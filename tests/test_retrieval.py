"""Embeddings with Ray Data (mujo.pipelines.embed) and retrieval (mujo.retrieval): the Ray path writes the same
embeddings as the model in memory; text -> sensor search returns the windows most similar to the text's joint
embedding; labelling by nearest label text is zero-shot's answer."""

from __future__ import annotations

import numpy as np
import pytest

from _model_path_data import make_run
from mujo import storage
from mujo.config import load_config
from mujo.data.text import shared_embedder
from mujo.evaluate.data import embed, load_arrays
from mujo.evaluate.zeroshot import label_matrix
from mujo.models import load_pretrained
from mujo.pipelines.embed import run_embed
from mujo.retrieval import embed_texts, label_by_text, load_embeddings, search, top_k
from mujo.evaluate.zeroshot import zero_shot_predict


def test_top_k_known_answer():
    emb = np.array([[1, 0], [0.6, 0.8], [0, 1], [-1, 0]], dtype=np.float32)
    idx, scores = top_k(np.array([1.0, 0.1]), emb, 2)
    assert idx.tolist() == [0, 1] and scores[0] > scores[1]
    assert top_k(np.array([0.0, 1.0]), emb, 10)[0].tolist() == [2, 1, 0, 3]


@pytest.mark.ray
def test_embeddings_search_and_label_by_text(ray_session, tmp_path):
    cfg, manifest, pretrained = make_run(str(tmp_path))
    ecfg = load_config(None, ["embed.modalities=[acc, pose, text]"]).embed
    out = storage.join(cfg.run_dir, "embeddings", "tinyhar")
    summary = run_embed(pretrained, manifest, out, ecfg)
    assert summary["rows"]["acc"] == sum(manifest.rows.values()) and summary["reused"] == 0
    assert run_embed(pretrained, manifest, out, ecfg, executor="local")["reused"] == summary["shards"]
    model = load_pretrained(pretrained)
    windows = load_embeddings(out, "acc")
    # the Ray path's embeddings are the model's, row for row
    arrays = load_arrays(manifest, ["acc"])
    order = {sid: i for i, sid in enumerate(windows.meta["sample_id"])}
    from mujo.schema import read_shard

    ids = [sid for split in arrays for uri in manifest.shards[split] for sid in
           read_shard(uri).column("sample_id").to_pylist()]
    expected = np.concatenate([embed(model, arrays[split][0], ["acc"]) for split in arrays])
    np.testing.assert_allclose(windows.embeddings[[order[s] for s in ids]], expected, atol=1e-5)

    hits = search(model, "jumping jacks", windows, k=5)
    query = embed_texts(model, ["jumping jacks"])[0]
    best = np.argsort(-(windows.embeddings @ query))[:5]
    assert [h["index"] for h in hits] == best.tolist() and hits[0]["score"] >= hits[-1]["score"]
    assert {"sample_id", "clip_id", "activity", "split"} <= set(hits[0])

    labels, scores = label_by_text(model, windows.embeddings, manifest.labels)
    zs = zero_shot_predict(windows.embeddings, label_matrix(model, manifest.labels, shared_embedder()))
    assert scores.shape == (len(windows), 3) and np.array_equal(labels, zs)
    with pytest.raises(ValueError, match=r"model\.json: the pretrained model has no encoder for \['imu'\]|"
                                         r"embed\.modalities"):
        run_embed(pretrained, manifest, out, ecfg.model_copy(update={"modalities": ["imu"]}))
