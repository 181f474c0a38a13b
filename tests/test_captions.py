"""Caption alternatives (issue 17, schema 1.1): a motion corpus' several descriptions per clip reach the windowed
shards, normalised as labels are and embedded; pretraining draws one per window per epoch, deterministic per
(seed, epoch, window) whatever the sharding; shards without them (schema 1.0, one text per clip) read as before.

No Ray: preprocessing runs its local executor (the same file work as the Ray Data pool) and the draw is the function
the Ray Train loop applies to each batch (``mujo.train.pretrain.train_loop``); the Ray path of both runs in
``tests/test_cluster_jobs.py::test_corpus_chain_as_jobs``.
"""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from dataclasses import replace

from mujo.adapters import get_adapter, ingest, raw_dir, write_raw
from mujo.config import load_config
from mujo.data.text import clip_captions, normalize_label, select_captions
from mujo.pipelines.preprocess import preprocess
from mujo.schema import (CAPTION_COLUMNS, VERSION_KEY, SampleFormat, SchemaVersionError, check_shards, read_shard,
                         table_to_batch)
from mujo.train.pretrain import caption_columns
from test_corpus_adapters import MOTIONS, write_humanml3d


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A HumanML3D-layout corpus (clips with 1-2 captions) ingested and preprocessed, plus a dataset of the same
    clips with one text each (no alternatives), in one local preprocessing run."""
    root = tmp_path_factory.mktemp("captions")
    write_humanml3d(root / "HumanML3D")
    cfg = load_config(None, [f"storage.root={root / 'runs'}", "run_name=captions", "preprocess.trim_fraction=0.0",
                             "preprocess.caption_alternatives=3", "preprocess.max_quarantine_share=0.5"])
    ingest("humanml3d", str(root / "HumanML3D"), cfg.run_dir, min_seconds=2.0)
    # the same clips with their label text only (what every dataset but a motion corpus has)
    adapter = get_adapter("humanml3d")
    clips = [replace(c, dataset="single", texts=None) for c in adapter.read(str(root / "HumanML3D"), min_seconds=2.0)]
    write_raw("single", clips, raw_dir(cfg.run_dir, "single"), adapter.card, labels=adapter.labels())
    manifests = preprocess({"humanml3d": 512, "single": 512}, cfg.run_dir, cfg.preprocess, executor="local")
    return cfg, manifests


def _rows(manifest, split: str = "train") -> dict[str, np.ndarray]:
    batches = [table_to_batch(read_shard(u)) for u in manifest.shards[split]]
    return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


def test_shards_carry_every_caption_normalised_and_embedded(corpus):
    cfg, manifests = corpus
    hml = manifests["humanml3d"]
    assert hml.schema_version == "1.1"
    fmt = check_shards([u for s in hml.shards.values() for u in s])
    assert fmt.captions == 3  # preprocess.caption_alternatives: the corpus has clips with two captions
    rows = _rows(hml)
    by_clip = {c: list(caps) for c, caps in zip(rows["clip_id"], rows["captions"])}
    # every caption of the clip, normalised as labels are, the label text first; one-caption clips keep theirs
    assert by_clip["humanml3d-000001"] == ["person walks forward slowly", "someone is walking"]
    assert by_clip["humanml3d-000001"][0] == normalize_label("a person walks forward slowly")
    assert by_clip["humanml3d-000004"] == ["someone runs place"]
    assert by_clip["humanml3d-000001-s1"] == ["man waves his right hand"]
    assert all(t == caps[0] for t, caps in zip(rows["text"], rows["captions"]))
    np.testing.assert_array_equal(rows["caption_count"], [len(c) for c in rows["captions"]])
    # caption_emb row j is caption j's embedding (the first is text_emb), zero past the count
    np.testing.assert_array_equal(rows["caption_emb"][:, 0], rows["text_emb"])
    two = np.flatnonzero(rows["caption_count"] == 2)
    assert len(two) and not rows["caption_emb"][two, 2].any() and rows["caption_emb"][two, 1].any()
    from mujo.data.text import shared_embedder

    second = shared_embedder()([str(rows["captions"][two[0]][1])])[0]
    np.testing.assert_allclose(rows["caption_emb"][two[0], 1], second, atol=1e-5)
    # the draw key is the window's own (its sample id), so windows of a clip draw independently
    assert len(set(rows["caption_key"][two])) == len(two)
    # a dataset whose clips have one text each keeps the 1.0 layout: no caption columns at all
    single = manifests["single"]
    assert check_shards(single.shards["train"]).captions == 0
    assert not set(CAPTION_COLUMNS) & set(read_shard(single.shards["train"][0]).column_names)
    assert clip_captions("A person walks.", ["a person walks", "", "Someone is walking!"]) == \
        ["person walks", "someone is walking"]


def _torch_batch(rows: dict[str, np.ndarray], idx=None) -> dict[str, torch.Tensor]:
    idx = np.arange(len(rows["caption_count"])) if idx is None else idx
    return {k: torch.as_tensor(np.array(rows[k][idx])) for k in ("text_emb", "caption_emb", "caption_count", "caption_key",
                                                        "has_text")}


def test_pretraining_draws_one_caption_per_window_per_epoch(corpus):
    cfg, manifests = corpus
    rows = _rows(manifests["humanml3d"])
    full = _torch_batch(rows)

    def picks(batch, seed, epoch) -> np.ndarray:
        out = select_captions(batch, seed, epoch)
        assert set(out) == {"text_emb", "has_text"}  # the caption columns do not reach the model
        return out["text_emb"].numpy()

    two = np.flatnonzero(rows["caption_count"] == 2)
    one = np.flatnonzero(rows["caption_count"] == 1)
    chosen = []
    for epoch in range(8):
        emb = picks(full, seed=0, epoch=epoch)
        np.testing.assert_array_equal(emb[one], rows["text_emb"][one])  # one caption: always it
        second = (emb[two] == rows["caption_emb"][two, 1]).all(axis=1)
        assert ((emb[two] == rows["caption_emb"][two, 0]).all(axis=1) | second).all()
        chosen.append(second)
    chosen = np.array(chosen)
    assert chosen.any() and not chosen.all()  # both captions are drawn
    assert any((chosen[e] != chosen[0]).any() for e in range(1, 8))  # epochs differ
    # the same seed draws the same; another seed draws otherwise
    np.testing.assert_array_equal(picks(full, 0, 3), picks(full, 0, 3))
    assert any((picks(full, 1, e) != picks(full, 0, e)).any() for e in range(4))
    # independent of sharding: two "workers" with shuffled halves draw exactly what one worker draws per window
    order = np.random.default_rng(0).permutation(len(rows["caption_count"]))
    halves = [order[: len(order) // 2], order[len(order) // 2:]]
    whole = select_captions(full, 0, 5)["text_emb"].numpy()
    for part in halves:
        drawn = select_captions(_torch_batch(rows, part), 0, 5)["text_emb"].numpy()
        np.testing.assert_array_equal(drawn, whole[part])
    # numpy batches draw the same as torch ones
    np.testing.assert_array_equal(select_captions({k: v.numpy() for k, v in full.items()}, 0, 5)["text_emb"], whole)


def test_training_reads_caption_columns_only_where_they_exist(corpus):
    cfg, manifests = corpus
    text = cfg.model_copy(update={"model": cfg.model.model_copy(update={"modalities": ["acc", "text"]})})
    assert caption_columns(text, manifests["humanml3d"]) == ["caption_emb", "caption_count", "caption_key"]
    first = text.model_copy(update={"pretrain": text.pretrain.model_copy(update={"caption_sampling": "first"})})
    assert caption_columns(first, manifests["humanml3d"]) == []
    assert caption_columns(text, manifests["single"]) == []
    no_text = cfg.model_copy(update={"model": cfg.model.model_copy(update={"modalities": ["acc", "pose"]})})
    assert caption_columns(no_text, manifests["humanml3d"]) == []


def test_old_shards_without_captions_still_read_and_future_versions_are_refused(corpus, tmp_path):
    _, manifests = corpus
    table = read_shard(manifests["humanml3d"].shards["train"][0])
    meta = {k: v for k, v in table.schema.metadata.items() if k != b"mujo.captions"}
    old = table.drop_columns(list(CAPTION_COLUMNS)).replace_schema_metadata({**meta, VERSION_KEY: b"1.0"})
    path = str(tmp_path / "old.parquet")
    pq.write_table(old, path)
    assert check_shards([path]) == SampleFormat(video_dim=512)  # a 1.0 shard: no captions
    batch = table_to_batch(read_shard(path))
    tb = {k: torch.as_tensor(np.array(batch[k])) for k in ("text_emb", "has_text")}
    assert select_captions(tb, 0, 1) is tb  # the training draw leaves a batch without caption columns as it is
    future = str(tmp_path / "future.parquet")
    pq.write_table(table.replace_schema_metadata({**table.schema.metadata, VERSION_KEY: b"2.0"}), future)
    with pytest.raises(SchemaVersionError, match="future.parquet.*2.0.*Re-run preprocessing"):
        read_shard(future)
    half = str(tmp_path / "half.parquet")  # a shard that says it has captions but lacks their columns
    pq.write_table(table.drop_columns(["caption_key"]), half)
    with pytest.raises(Exception, match="half.parquet.*caption_key"):
        check_shards([half])


def test_captions_beyond_k_are_counted_not_kept_silently():
    from mujo.pipelines.preprocess.window import add_captions
    from mujo.schema import batch_to_table, empty_batch

    fmt = SampleFormat(video_dim=8, text_dim=16, captions=2)
    batch = empty_batch(3, fmt)
    batch["sample_id"][:] = ["c-w0000", "c-w0001", "c-w0002"]
    batch["has_text"][:] = True
    dropped = add_captions(batch, "A person walks.", ["a person walks", "someone walking", "a walk", "strolling"], 2)
    assert dropped == 2 and batch["caption_count"].tolist() == [2, 2, 2]
    assert list(batch["captions"][0]) == ["person walks", "someone walking"]
    assert len(set(batch["caption_key"].tolist())) == 3  # one key per window
    table = batch_to_table({**batch, "text": np.array(["person walks"] * 3, dtype=object)}, fmt)
    assert table.schema.field("caption_emb").type.shape == [2, 16]
    silent = empty_batch(2, fmt)  # a clip without text keeps no caption: every one is counted
    silent["sample_id"][:] = ["d-w0000", "d-w0001"]
    assert add_captions(silent, "", ["a person walks"], 2) == 1 and silent["caption_count"].tolist() == [0, 0]
