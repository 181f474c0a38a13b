"""The search's plan without Ray: the space, the Tune iterations counted from the trainer's cadence, the report
carry-forward, the trial rows, the best trial and what is written (``trials.json``, ``best.json``, ``best_model``)."""

from __future__ import annotations

import math

import pytest

from mujo import storage
from mujo.config import MainConfig, load_config
from mujo.models.mujo import ARTEFACT_CONFIG, ARTEFACT_WEIGHTS
from mujo.run import Manifest, QuarantineSummary
from mujo.train import schedule
from mujo.tune.search_plan import (
    CHECKPOINT_KEY,
    FRESH_KEY,
    LAST_CHECKPOINT_KEY,
    CarryForward,
    SearchPlan,
    counts,
)

# as tests/test_search.py: 64 train windows, 2 workers x 8 = 4 steps per epoch, 4 epochs, a report every 2 steps
CONFIG = ["run_name=plan", "pretrain.batch_size=8", "pretrain.epochs=4", "pretrain.report_every_steps=2",
          "pretrain.checkpoint_every_steps=6", "search.lr=[0.00001, 0.01]", "search.proj_layers=[2]",
          "search.dropout=[0.1, 0.1]", "search.loss_form=[all_pairs, text_anchor]", "search.grace_period=4",
          "search.points=[{lr: 0.01, proj_layers: 2, loss_form: all_pairs}, {proj_layers: 2}]"]


def manifest(train_rows: int) -> Manifest:
    """A preprocessed dataset as the search sees it (only the row counts matter to the plan)."""
    return Manifest(schema_version="test", dataset="mini", raw="/raw/mini", labels=["a", "b"], video_dim=16,
                    text_dim=384, shards={"train": [], "val": []}, counts={}, rows={"train": train_rows, "val": 16},
                    stats={}, quarantine=QuarantineSummary(count=0, files=0, clips=0, share=0.0, entries=[]),
                    clips=8, seconds=80.0)


MANIFEST = manifest(64)


def plan(tmp_path, *overrides: str, name: str = "exp") -> SearchPlan:
    return SearchPlan.of(load_config(None, [*CONFIG, f"storage.root={tmp_path}", *overrides]), MANIFEST, name)


def test_space_fixed_values_and_points(tmp_path):
    p = plan(tmp_path)
    assert p.fixed == {"proj_layers": 2, "dropout": 0.1}
    assert p.searched["lr"] == ("loguniform", (0.00001, 0.01))
    assert p.searched["loss_form"] == ("choice", ["all_pairs", "text_anchor"])
    assert p.base.model.proj_layers == 2 and p.base.model.dropout == 0.1  # every trial starts from them
    assert p.points == [{"lr": 0.01, "loss_form": "all_pairs"}]  # fixed dimensions dropped, an empty point too
    trial = p.trial_config({"lr": 0.003, "loss_form": "text_anchor", "unrelated": 1})
    assert (trial.pretrain.lr, trial.loss.form, trial.model.proj_layers) == (0.003, "text_anchor", 2)


def test_a_value_that_makes_an_invalid_config_fails_before_any_trial(tmp_path):
    with pytest.raises(ValueError, match="search.loss_form: value 'text_anchor' makes an invalid config"):
        plan(tmp_path, "model.modalities=[pose, acc]")


def test_iterations_are_the_trainers_reports(tmp_path):
    p = plan(tmp_path)
    assert p.cadence == schedule.Cadence.of(p.base.pretrain, 64)  # the trainer's cadence, no copy
    assert p.cadence.report_steps() == [2, 4, 6, 8, 10, 12, 14, 16]
    assert (p.first_validation_iteration, p.expected_iterations) == (2, 8)
    assert not p.warnings(cluster_cpus=8)
    warned = plan(tmp_path, "search.grace_period=1", "search.max_concurrent_trials=2").warnings(cluster_cpus=2)
    assert len(warned) == 2 and "before the first validation (Tune iteration 2)" in warned[0]
    assert "leaving less than one for Ray Data" in warned[1]
    with pytest.raises(Exception, match="no full batch per epoch"):
        SearchPlan.of(p.cfg, manifest(8))


def test_paths_are_the_run_layouts(tmp_path):
    p = plan(tmp_path)
    run = str(tmp_path / "plan")
    assert p.cfg.storage.root == str(tmp_path)
    assert p.trials_json == f"{run}/search/trials.json" and p.best_json == f"{run}/search/best.json"
    assert p.trial_artefact("t1") == f"{run}/search/models/exp/t1"
    assert p.experiment_path == f"{run}/search/exp" and p.train_name("t1") == "exp-t1"
    assert p.trial_resources == {"cpu": 0, "memory": 2**20}


def test_carry_forward_puts_the_last_validation_into_every_report():
    carry = CarryForward("val/R@1/mean", ["val/R@1/mean", "val/R@1/acc->text"])
    first = carry({"step": 2, "loss": 1.0})
    assert math.isnan(first["val/R@1/mean"]) and first[FRESH_KEY] == 0 and LAST_CHECKPOINT_KEY not in first
    second = carry({"step": 4, "val/R@1/mean": 0.5, "val/R@1/acc->text": 0.4}, "/ck/checkpoint_0")
    assert (second["val/R@1/mean"], second[FRESH_KEY], second[LAST_CHECKPOINT_KEY]) == (0.5, 1, "/ck/checkpoint_0")
    third = carry({"step": 6})
    assert (third["val/R@1/mean"], third["val/R@1/acc->text"], third[FRESH_KEY]) == (0.5, 0.4, 0)
    assert third[LAST_CHECKPOINT_KEY] == "/ck/checkpoint_0" and CHECKPOINT_KEY not in third
    fourth = carry({"step": 8, "val/R@1/mean": 0.6})  # a pair without samples this time: not carried from before
    assert fourth["val/R@1/mean"] == 0.6 and math.isnan(fourth["val/R@1/acc->text"])
    assert math.isnan(CarryForward("val/fewshot_f1/mean", [])({"step": 1})["val/fewshot_f1/mean"])


def rows_of(p: SearchPlan) -> list[dict]:
    full = {"training_iteration": 8, "step": 16, "epoch": 3, "val/R@1/mean": 0.30}
    stopped = {"training_iteration": 4, "step": 8, "epoch": 1, "val/R@1/mean": 0.45,
               LAST_CHECKPOINT_KEY: "/bucket/plan/train/exp-b/checkpoint_0"}
    return [p.row("a", {"lr": 0.01, "loss_form": "all_pairs"}, full, None, [0.1, float("nan"), 0.3, 0.2],
                  "/r/a", completed=True),
            p.row("b", {"lr": 0.001, "loss_form": "text_anchor"}, stopped, None, [0.45], "/r/b", completed=False),
            p.row("c", {"lr": 0.002, "loss_form": "all_pairs"}, None, RuntimeError("boom\n  ValueError: bad lr\n"),
                  [], None, completed=False)]


def test_rows_and_the_best_trial(tmp_path):
    p = plan(tmp_path)
    a, b, c = rows_of(p)
    assert (a["status"], a["stopped_early"], a["artefact"]) == ("completed", False, p.trial_artefact("a"))
    assert a["values"] == {"proj_layers": 2, "dropout": 0.1, "lr": 0.01, "loss_form": "all_pairs"}
    assert (a["metric"], a["metric_best_seen"], a["expected_iterations"]) == (0.30, 0.3, 8)
    assert (b["status"], b["stopped_early"], b["iterations"]) == ("stopped", True, 4)
    assert b["artefact"] == "/bucket/plan/train/exp-b/checkpoint_0"  # its last checkpoint stands for it
    assert (c["status"], c["error"], c["metric"], c["artefact"]) == ("failed", "ValueError: bad lr", None, None)
    assert counts([a, b, c]) == {"trials": 3, "completed": 1, "stopped_early": 1, "failed": 1}
    assert p.best([a, b, c])["trial_id"] == "b"  # by the last reported value
    assert p.best([a, {**b, "metric": 0.30}])["trial_id"] == "a"  # a tie: the trial that ran to its end
    assert plan(tmp_path, "search.mode=min").best([a, b, c])["trial_id"] == "a"
    with pytest.raises(RuntimeError, match="no trial reported val/R@1/mean .*/trials.json"):
        p.best([c])


def test_checkpoint_paths_on_s3_become_uris(tmp_path):
    p = SearchPlan.of(load_config(None, [*CONFIG, "storage.root=s3://bucket"]), MANIFEST, "exp")
    b = rows_of(p)[1]
    assert b["artefact"] == "s3://bucket/plan/train/exp-b/checkpoint_0" and b["trial_path"] == "s3://r/b"


def test_finish_writes_trials_best_and_the_best_model(tmp_path):
    p = plan(tmp_path)
    a, b, c = rows_of(p)
    b["artefact"] = str(tmp_path / "ck")  # a checkpoint folder: a model artefact plus training state
    storage.write_json(storage.join(b["artefact"], ARTEFACT_CONFIG), {"format": 1, "model": {}, "step": 6})
    storage.write_bytes(storage.join(b["artefact"], ARTEFACT_WEIGHTS), b"weights")
    storage.write_bytes(storage.join(b["artefact"], "state.pt"), b"training state")
    out = p.finish([a, b, c])
    assert storage.read_json(p.trials_json) == [a, b, c] == out["trials"]
    best = storage.read_json(p.best_json)
    assert best == out["best"]
    assert (best["trial_id"], best["value"], best["status"], best["artefact_step"]) == ("b", 0.45, "stopped", 6)
    assert best["artefact"] == p.best_model and best["source_artefact"] == b["artefact"]
    assert storage.read_bytes(storage.join(p.best_model, ARTEFACT_WEIGHTS)) == b"weights"
    assert not storage.exists(storage.join(p.best_model, "state.pt"))  # the model, not the training state
    cfg = MainConfig.model_validate(best["config"])
    assert (cfg.pretrain.lr, cfg.loss.form, cfg.model.proj_layers) == (0.001, "text_anchor", 2)
