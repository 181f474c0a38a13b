"""The pretraining step (``mujo.train.trainer.train_step``) without Ray: it learns, and the gradient-cache mode makes
the same update as the plain one."""

from __future__ import annotations

import copy

import pytest
import torch

from mujo.config import load_config
from mujo.losses import MuJoLoss
from mujo.models import build_model
from mujo.train.trainer import lr_lambda, train_step


@pytest.fixture(autouse=True)
def one_thread():
    """Small matrices: one intra-op thread is fastest, and far faster than many on a loaded shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def batch(n: int = 12, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    b = {"video": torch.randn(n, 16, generator=g), "pose": torch.randn(n, 100, 17, 3, generator=g) * 0.3,
         "acc": torch.randn(n, 100, 6, generator=g) * 3, "text_emb": torch.randn(n, 384, generator=g)}
    for m in ("video", "pose", "acc", "text"):
        b[f"has_{m}"] = torch.ones(n, dtype=torch.bool)
    b["has_video"][:3] = False  # a missing modality in some samples
    return b


def setup(overrides: list[str]):
    cfg = load_config(None, ["model.embed_dim=16", "model.proj_hidden=16", "model.text_hidden=16",
                             "model.video_hidden=16", "model.video_dim=16", "model.dropout=0.0", *overrides])
    model = build_model(cfg.model, seed=0).double()
    opt = torch.optim.AdamW(model.param_groups(0.01), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(2, 10))
    return cfg, model, opt, sched, MuJoLoss(cfg.model.modalities)


def double(b):
    return {k: v.double() if v.is_floating_point() else v for k, v in b.items()}


def test_grad_cache_step_equals_plain_step():
    cfg, model, opt, sched, loss_fn = setup([])
    cfg_gc = load_config(None, [*[f"model.{k}" for k in ("embed_dim=16", "proj_hidden=16", "text_hidden=16",
                                                        "video_hidden=16", "video_dim=16", "dropout=0.0")],
                                "pretrain.grad_cache_chunks=3"])
    model_gc = copy.deepcopy(model)
    opt_gc = torch.optim.AdamW(model_gc.param_groups(0.01), lr=1e-3)
    sched_gc = torch.optim.lr_scheduler.LambdaLR(opt_gc, lr_lambda(2, 10))
    b = double(batch())
    loss, pairs = train_step(model, model, loss_fn, opt, sched, b, cfg)
    loss_gc, pairs_gc = train_step(model_gc, model_gc, loss_fn, opt_gc, sched_gc, b, cfg_gc)
    torch.testing.assert_close(loss, loss_gc, rtol=1e-9, atol=1e-12)
    assert set(pairs) == set(pairs_gc) == {"video-pose", "video-acc", "video-text", "pose-acc", "pose-text",
                                           "acc-text"}
    for (name, p), p_gc in zip(model.named_parameters(), model_gc.parameters()):
        torch.testing.assert_close(p, p_gc, rtol=1e-7, atol=1e-10, msg=name)


def test_steps_reduce_the_loss_and_clamp_the_temperature():
    cfg, model, opt, sched, loss_fn = setup(["pretrain.lr=0.003", "model.init_temperature=0.0099"])
    b = double(batch(16))
    first = float(train_step(model, model, loss_fn, opt, sched, b, cfg)[0])
    assert model.logit_scale.item() <= 100.0 + 1e-9  # 1/0.0099 > 100 is clamped after the step
    for _ in range(15):
        last = float(train_step(model, model, loss_fn, opt, sched, b, cfg)[0])
    assert last < 0.5 * first
