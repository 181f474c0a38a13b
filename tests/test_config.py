from pathlib import Path

import pytest

from mujo.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parent.parent


def test_shipped_configs_validate():
    for path in sorted((ROOT / "jobs" / "configs").glob("*.yaml")):
        cfg = load_config(path)
        assert cfg.run_name


def test_unknown_key_and_bad_value_are_named(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("pretrain:\n  epochz: 3\n  lr: -1\nevaluate:\n  fractions: [0, 2]\n")
    with pytest.raises(ConfigError) as err:
        load_config(p)
    msg = str(err.value)
    assert str(p) in msg and "pretrain.epochz" in msg and "pretrain.lr" in msg and "evaluate.fractions" in msg


def test_overrides_and_errors(tmp_path):
    cfg = load_config(ROOT / "jobs" / "configs" / "main.yaml", ["pretrain.epochs=3", "evaluate.seeds=2"])
    assert cfg.pretrain.epochs == 3 and cfg.evaluate.seeds == 2
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("pretrain: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="text_anchor"):
        load_config(None, ["loss.form=text_anchor", "model.modalities=[pose, acc]"])
    assert load_config(None, ["search.metric=val/fewshot_f1/mean"]).search.metric == "val/fewshot_f1/mean"
    with pytest.raises(ConfigError, match="search.metric 'val/R@1/acc->video' is not a validation metric"):
        load_config(None, ["search.metric=val/R@1/acc->video", "model.modalities=[pose, acc]"])
    with pytest.raises(ConfigError, match="needs pretrain.fewshot_shots > 0"):
        load_config(None, ["search.metric=val/fewshot_f1/mean", "pretrain.fewshot_shots=0"])
