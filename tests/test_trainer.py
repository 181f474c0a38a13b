"""The pretraining trainer without Ray, on a tiny model: its cadence is the schedule's (the one the search counts),
its state round-trips through a ``weights_only`` load with every RNG stream, and a trainer resumed from a
checkpoint continues exactly like the uninterrupted one on the same batches."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from mujo.config import load_config
from mujo.train import schedule
from mujo.train.trainer import Trainer, build_loss, load_state

TINY = ["model.embed_dim=16", "model.proj_hidden=16", "model.text_hidden=16", "model.video_hidden=16",
        "model.video_dim=16", "model.dropout=0.2",
        # one worker, 4 windows a step: 12 train windows = 3 steps per epoch, 3 epochs = 9 steps
        "pretrain.num_workers=1", "pretrain.batch_size=4", "pretrain.epochs=3", "pretrain.warmup_steps=2",
        "pretrain.report_every_steps=2", "pretrain.checkpoint_every_steps=4", "pretrain.fewshot_shots=0"]
TRAIN_ROWS = 12


def batch(n: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    b = {"video": torch.randn(n, 16, generator=g), "pose": torch.randn(n, 100, 17, 3, generator=g) * 0.3,
         "acc": torch.randn(n, 100, 6, generator=g) * 3, "text_emb": torch.randn(n, 384, generator=g)}
    for m in ("video", "pose", "acc", "text"):
        b[f"has_{m}"] = torch.ones(n, dtype=torch.bool)
    b["has_video"][:1] = False  # a missing modality in some samples
    return b


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny matrices: one intra-op thread is fastest, and on a loaded shared machine many threads are far slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


BATCHES = [batch(seed=s) for s in range(9)]
VAL = [batch(8, seed=100)]


def trainer(*overrides: str) -> Trainer:
    return Trainer(load_config(None, [*TINY, *overrides]), None, TRAIN_ROWS)


def run(t: Trainer, steps: int) -> list[dict]:
    """``steps`` steps on the fixed batches from where ``t`` stands (validating when it says so)."""
    seen = []
    for _ in range(steps):
        metrics = t.step(BATCHES[t.global_step])
        if t.validate_now():
            metrics.update(t.validate(VAL))
        seen.append(metrics)
    return seen


def comparable(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in h.items() if not k.startswith("samples_per_s")} for h in history]


def test_cadence_is_the_schedule():
    t = trainer()
    assert (t.cadence.steps_per_epoch, t.cadence.total_steps) == (3, 9)
    decisions = {"validate": [], "report": [], "checkpoint": []}
    positions = []
    while not t.done:
        positions.append(t.position)
        t.step(BATCHES[t.global_step])
        for name in decisions:
            if getattr(t, f"{name}_now")():
                decisions[name].append(t.global_step)
    assert positions == [(e, i) for e in range(3) for i in range(3)]
    assert decisions == {"validate": [3, 6, 9], "checkpoint": [4, 8, 9], "report": [2, 3, 4, 6, 8, 9]}
    # the search counts Tune iterations from the same cadence
    assert schedule.report_steps(t.cfg.pretrain, TRAIN_ROWS) == decisions["report"]
    assert [h["step"] for h in t.history] == list(range(1, 10))
    assert [h["epoch"] for h in t.history] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    summary = t.report_summary()  # means over the last report_every_steps steps
    assert summary["loss_mean"] == pytest.approx(np.mean([h["loss"] for h in t.history[-2:]]))


def test_state_round_trips_with_weights_only_and_every_rng_stream(tmp_path):
    t = trainer()
    run(t, 5)
    np.random.normal(size=3), random.random()  # advance numpy's and Python's streams (gauss cache included)
    torch.save(t.state_dict(), tmp_path / "state.pt")
    expected = (np.random.normal(size=3), random.random(), torch.rand(3))

    u = trainer()
    state = load_state(str(tmp_path / "state.pt"), "cpu")  # weights_only=True: plain tensors and containers
    u.load_state_dict(state)
    again = (np.random.normal(size=3), random.random(), torch.rand(3))
    assert np.array_equal(expected[0], again[0]) and expected[1] == again[1] and torch.equal(expected[2], again[2])
    assert u.global_step == 5 and u.position == (1, 2) and u.resumed_from == [5]
    assert u.history == t.history
    for (name, p), q in zip(t.model.state_dict().items(), u.model.state_dict().values()):
        assert torch.equal(p, q), name
    assert u.scheduler.get_last_lr() == t.scheduler.get_last_lr()
    assert u.optimizer.state_dict()["state"].keys() == t.optimizer.state_dict()["state"].keys()
    assert state["config"] == t.cfg.model_dump(mode="json")

    # resumed twice: every step it resumed from is kept
    torch.save(u.state_dict(), tmp_path / "again.pt")
    w = trainer()
    w.load_state_dict(load_state(str(tmp_path / "again.pt"), "cpu"))
    assert w.resumed_from == [5, 5]


def test_resumed_trainer_continues_exactly_like_the_uninterrupted_one(tmp_path):
    straight = trainer()
    run(straight, 9)

    first = trainer()
    run(first, 5)  # mid-epoch, past a checkpoint step
    torch.save(first.state_dict(), tmp_path / "state.pt")
    torch.rand(100)  # whatever the process did in between (a restart begins with another stream)
    resumed = trainer()
    resumed.load_state_dict(load_state(str(tmp_path / "state.pt"), "cpu"))
    run(resumed, 4)

    assert resumed.done and resumed.global_step == straight.global_step == 9
    assert comparable(resumed.history) == comparable(straight.history)  # losses, lr, temperature, validation
    assert any(k.startswith("val/R@1/") for k in straight.history[-1])
    for (name, p), q in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(p, q), name


def test_checkpoint_without_per_rank_streams_reseeds_per_rank_and_step():
    t = trainer()
    run(t, 4)
    state = t.state_dict()
    del state["rng"]["torch_by_rank"]  # as written before the streams were kept per rank
    u = trainer()
    u.load_state_dict(state)
    got = torch.rand(3)
    torch.manual_seed(u.cfg.pretrain.seed + 1000 * u.rank + 4)
    assert torch.equal(got, torch.rand(3))


def test_each_rank_takes_its_own_stream_from_the_checkpoint():
    """Rank 0 writes the checkpoint, holding every rank's torch stream; a restarted rank 1 continues its own."""
    t = trainer()
    run(t, 2)
    state = t.state_dict()
    torch.manual_seed(12345)
    rank1 = torch.get_rng_state()
    expected = torch.rand(3)
    for by_rank in ([state["rng"]["torch"], rank1], torch.stack([state["rng"]["torch"], rank1])):
        state["rng"]["torch_by_rank"] = by_rank
        second = Trainer(t.cfg, None, TRAIN_ROWS, rank=1, world=2)  # no process group needed to load
        second.load_state_dict(state)
        assert torch.equal(torch.rand(3), expected)


def test_loss_follows_the_config():
    from mujo.losses import modality_pairs

    t = trainer("loss.form=text_anchor")
    assert build_loss(t.cfg).form == t.loss_fn.form == "text_anchor"
    assert t.loss_fn.pairs == modality_pairs(t.cfg.model.modalities, "text_anchor")
    assert t.loss_fn.pairs != modality_pairs(t.cfg.model.modalities, "all_pairs")
