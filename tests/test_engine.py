"""The evaluation engine (mujo.evaluate.engine), no Ray: frozen features once and seed groups give each seed the
result it gets when trained alone by train_classifier (today's per-seed path), on a small real classifier."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mujo.config import EvaluateConfig, ModelConfig
from mujo.evaluate.engine import FEATURES, FeatureHead, choose_vectorize, frozen_features, train_seed_group
from mujo.evaluate.finetune import FinetuneConfig, sample_label_fraction, train_classifier
from mujo.evaluate.metrics import macro_f1
from mujo.models.classifier import build_classifier
from mujo.models.mujo import build_model

CLASSES = 4
SEEDS = [0, 1, 2]
CFG = FinetuneConfig(lr=1e-3, max_epochs=12, patience=3, batch_size=16)


@pytest.fixture(scope="module")
def setup():
    """A small pretrained model (random weights) and train/val/test splits whose classes shift the signals."""
    torch.set_num_threads(1)
    pretrained = build_model(ModelConfig(embed_dim=32, proj_hidden=32, text_hidden=32, video_hidden=32, video_dim=16,
                                         dropout=0.1), seed=0)
    rng = np.random.default_rng(0)

    def split(n):
        y = rng.integers(0, CLASSES, n)
        return {"acc": (rng.normal(size=(n, 100, 6)) + y[:, None, None]).astype(np.float32),
                "pose": (rng.normal(size=(n, 100, 17, 3)) * 0.2 + 0.05 * y[:, None, None, None]).astype(np.float32)}, y

    return pretrained, split(120), split(40), split(40)


def _alone(pretrained, train, val, test, inputs, setting, seed, idx):
    """Today's path: one classifier trained by train_classifier on its label sample."""
    model = build_classifier(pretrained, inputs, CLASSES, setting, seed=seed)
    sub = lambda s: ({m: s[0][m] for m in inputs}, s[1])  # noqa: E731
    return train_classifier(model, ({m: train[0][m][idx] for m in inputs}, train[1][idx]), sub(val), sub(test),
                            CLASSES, FinetuneConfig(**{**CFG.__dict__, "seed": seed}))


def _same_run(alone, grouped, loss_tol: float = 0.0) -> None:
    assert [h["val_macro_f1"] for h in grouped.history] == [h["val_macro_f1"] for h in alone.history]
    assert (grouped.best_epoch, grouped.epochs_run) == (alone.best_epoch, alone.epochs_run)
    assert grouped.test_macro_f1 == alone.test_macro_f1
    np.testing.assert_array_equal(grouped.test_predictions, alone.test_predictions)
    losses = np.array([[a["train_loss"], g["train_loss"]] for a, g in zip(alone.history, grouped.history)])
    np.testing.assert_allclose(losses[:, 1], losses[:, 0], rtol=loss_tol, atol=0)


def test_frozen_on_features_computed_once_equals_todays_path(setup):
    """Part 1: the head trained on features computed once reproduces the per-seed path: validation Macro F1 of
    every epoch, best epoch, test predictions equal, one seed alone and three seeds in a group. The per-epoch loss
    is compared at rtol 1e-6: the encoders' matrix products (models/encoders.py) may round the last float32 bit of
    a row differently in a batch of 64 rows than in a training batch of 16 others (measured <= 4e-8 relative)."""
    pretrained, train, val, test = setup
    inputs = ["pose", "acc"]
    feats = {name: ({FEATURES: frozen_features(pretrained, inputs, s[0], batch_size=64)}, s[1])
             for name, s in (("train", train), ("val", val), ("test", test))}
    assert feats["train"][0][FEATURES].shape == (120, 2 * 32)
    samples = [sample_label_fraction(train[1], 0.5, seed=s) for s in SEEDS]
    alone = [_alone(pretrained, train, val, test, inputs, "frozen", s, i) for s, i in zip(SEEDS, samples)]
    assert len({a.epochs_run for a in alone}) > 1  # the seeds stop at different epochs: the group shrinks
    for vectorize, seeds in (("loop", SEEDS[:1]), ("vmap", SEEDS)):
        heads = [FeatureHead(build_classifier(pretrained, inputs, CLASSES, "frozen", seed=s).head) for s in seeds]
        assert choose_vectorize(heads[0]) == "vmap"
        results = train_seed_group(heads, seeds, samples[:len(seeds)], feats["train"], feats["val"], feats["test"],
                                   CLASSES, CFG, vectorize=vectorize)
        for a, g in zip(alone, results):
            _same_run(a, g, loss_tol=1e-6)
        # each head is left with its best-validation weights
        with torch.inference_mode():
            pred = heads[-1]({FEATURES: torch.from_numpy(feats["val"][0][FEATURES])}).argmax(1).numpy()
        assert macro_f1(val[1], pred) == results[-1].val_macro_f1


@pytest.mark.parametrize("vectorize", ["loop", "vmap"])
def test_seed_group_equals_each_seed_trained_alone(setup, vectorize):
    """Part 2: three seeds of a fine-tuned acc cell trained together, each with its own initialisation, label
    sample, batch order, dropout, early stopping and best weights. ``loop`` runs each seed's own arithmetic: equal
    bit for bit. ``vmap`` batches the seeds' matmuls/convolutions into batched kernels that sum in another order:
    the per-epoch loss may differ in the last float32 bits (measured <= 1e-7 relative), so it is compared at
    rtol 1e-5; the discrete outcomes (validation F1 every epoch, best epoch, test predictions) must be equal."""
    pretrained, train, val, test = setup
    inputs = ["acc"]
    samples = [sample_label_fraction(train[1], 0.5, seed=s) for s in SEEDS]
    alone = [_alone(pretrained, train, val, test, inputs, "finetuned", s, i) for s, i in zip(SEEDS, samples)]
    models = [build_classifier(pretrained, inputs, CLASSES, "finetuned", seed=s) for s in SEEDS]
    assert choose_vectorize(models[0]) == "loop"  # trainable encoders: auto loops; vmap is tested as well
    sub = lambda s: ({m: s[0][m] for m in inputs}, s[1])  # noqa: E731
    seen = []
    results = train_seed_group(models, SEEDS, samples, sub(train), sub(val), sub(test), CLASSES, CFG,
                               vectorize=vectorize, on_epoch=seen.append)
    for a, g in zip(alone, results):
        _same_run(a, g, loss_tol=0.0 if vectorize == "loop" else 1e-5)
    assert [s["active_seeds"] for s in seen][0] == 3 and len(seen) == max(a.epochs_run for a in alone)
    assert seen[0]["s1/val_macro_f1"] == alone[1].history[0]["val_macro_f1"]
    assert isinstance(models[0].head[2], torch.nn.Dropout)  # the models are plain classifiers again


def test_encoders_train_in_a_loop_and_bad_groups_are_refused(setup):
    pretrained, train, val, test = setup
    assert choose_vectorize(build_classifier(pretrained, ["pose"], CLASSES, "baseline", seed=0)) == "loop"
    assert choose_vectorize(build_classifier(pretrained, ["pose"], CLASSES, "frozen", seed=0)) == "vmap"
    sub = ({"acc": train[0]["acc"]}, train[1])
    models = [build_classifier(pretrained, ["acc"], CLASSES, "finetuned", seed=s) for s in (0, 1)]
    with pytest.raises(ValueError, match="label samples differ in size"):
        train_seed_group(models, [0, 1], [np.arange(10), np.arange(12)], sub, sub, sub, CLASSES, CFG)
    with pytest.raises(ValueError, match="one model and one label sample per seed"):
        train_seed_group(models, [0], [np.arange(10)], sub, sub, sub, CLASSES, CFG)


def test_seed_groups_and_the_engine_switch():
    from mujo.tune.fanout import param_space, seed_groups

    assert seed_groups(EvaluateConfig(seeds=20, seeds_per_trial=10)) == [list(range(10)), list(range(10, 20))]
    assert seed_groups(EvaluateConfig(seeds=5, seeds_per_trial=2)) == [[0, 1], [2, 3], [4]]
    assert EvaluateConfig().engine == "grouped"
    cells = param_space(EvaluateConfig(seeds=5, seeds_per_trial=2, fractions=[0.1, 1.0]))["trial"]["grid_search"]
    assert len(cells) == 2 * 3 * 2 * 3 and {c["seed_group"] for c in cells} == {0, 1, 2}
    per_seed = param_space(EvaluateConfig(seeds=3, engine="per_seed"))["trial"]["grid_search"]
    assert {c["seed"] for c in per_seed} == {0, 1, 2} and not any("seed_group" in c for c in per_seed)


def test_trials_start_longest_expected_first():
    """Tune starts pending trials in the grid's order: the few long cells (all modalities, all labels, encoders
    training, full seed groups) first, frozen heads and small label fractions last."""
    from mujo.tune.fanout import expected_cost, trial_cells

    ecfg = EvaluateConfig(inputs=[["acc"], ["video", "pose", "acc"]], fractions=[0.01, 0.1, 1.0], seeds=15,
                          seeds_per_trial=10, calibrations=["none", "unsupervised"])
    cells = trial_cells(ecfg)
    assert len(cells) == 2 * 3 * 3 * 2 * 2
    costs = [expected_cost(c, ecfg) for c in cells]
    assert costs == sorted(costs, reverse=True)
    first = cells[0]
    assert (first["inputs"], first["fraction"], first["seed_group"]) == ("video+pose+acc", 1.0, 0)
    assert first["setting"] in ("baseline", "finetuned")
    assert cells[-1]["setting"] == "frozen" and cells[-1]["inputs"] == "acc" and cells[-1]["seed_group"] == 1
