"""The evaluation runs on an ingested real-dataset layout just by naming it: MHEALTH fixture files in the published
layout -> adapter -> raw clips -> Ray Data windows -> Ray Tune fan-out + zero-shot, on the real local Ray."""

from __future__ import annotations

import pytest

from _fixtures_datasets import write_mhealth
from mujo import storage
from mujo.adapters import ingest
from mujo.config import load_config
from mujo.models import build_model, save_pretrained
from mujo.evaluate import evaluate
from mujo.workflows import ensure_manifest

pytestmark = [pytest.mark.ray]


def test_fanout_on_an_ingested_dataset(ray_session, tmp_path):
    source = write_mhealth(tmp_path / "MHEALTHDATASET", subjects=(1, 2, 7, 9))
    cfg = load_config(None, [f"storage.root={tmp_path / 'runs'}", "run_name=eval", "evaluate.dataset=mhealth",
                             "evaluate.inputs=[[acc]]", "evaluate.settings=[baseline, frozen]",
                             "evaluate.fractions=[1.0]", "evaluate.seeds=2", "evaluate.max_epochs=3",
                             "evaluate.patience=2", "evaluate.calibrations=[none]",
                             "evaluate.zero_shot_calibrations=[none]",
                             "model.embed_dim=32", "model.proj_hidden=32", "model.text_hidden=32",
                             "preprocess.max_quarantine_share=0.5"])
    ingest("mhealth", str(source), cfg.run_dir, include_null=True)
    artefact = storage.join(cfg.run_dir, "pretrain", "model")
    save_pretrained(build_model(cfg.model, seed=0), artefact)  # any artefact will do: this tests the plumbing
    unimodal = storage.join(cfg.run_dir, "pretrain", "acc-text")
    save_pretrained(build_model(cfg.model.model_copy(update={"modalities": ["acc", "text"]}), seed=1), unimodal)
    cfg = cfg.model_copy(update={"evaluate": cfg.evaluate.model_copy(update={"zero_shot_models":
                                                                             {"unimodal": unimodal}})})

    manifest = ensure_manifest(cfg, "mhealth")
    assert set(manifest.shards) == {"train", "val", "test"}
    # the fixture's 2.5-s null runs are shorter than one window after trimming: quarantined, counted, named
    entries = manifest.quarantine.entries
    assert manifest.quarantine.count == 4 and all("too short" in e.reason for e in entries)
    out = evaluate(cfg, artefact, manifest)
    assert len(out["rows"]) == 1 * 2 * 1 * 2 and all(r.status == "ok" for r in out["rows"])
    assert "| acc | baseline |" in out["table"] and "| acc | frozen |" in out["table"]
    # zero-shot (Table 3 shape): both pretrained models, with and without the no-activity class
    for needle in ("top-1", "top-5", "| multimodal | acc | none | with |", "| multimodal | acc | none | without |",
                   "| unimodal | acc | none | with |", "| unimodal | acc | none | without |"):
        assert needle in out["table"], needle
    assert storage.exists(storage.join(out["results"], "macro_f1.png"))
