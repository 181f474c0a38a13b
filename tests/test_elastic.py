"""Elastic pretraining without Ray (``mujo.train.elastic``): the global contrastive batch is fixed, so one step's loss
and gradients are the same at 1, 2, 3 and 4 workers (real gloo process groups, the real step with DDP or the gradient
cache); the config's ``num_workers: [min, max]``; the resize log."""

from __future__ import annotations

import os

import pytest
import torch

from mujo.config import ConfigError, load_config
from mujo.train import elastic

from _dist import _entry, free_port

GLOBAL_BATCH = 12  # divides by 1, 2, 3 and 4
TINY = ["model.embed_dim=16", "model.proj_hidden=16", "model.text_hidden=16", "model.video_hidden=16",
        "model.video_dim=16", "model.dropout=0.0", "pretrain.grad_clip=null"]


def _config(world_range: str = "[1, 4]"):
    # batch_size 3 per worker at the full group (4): the global batch is 12 whatever the group's size
    return load_config(None, [*TINY, f"pretrain.num_workers={world_range}", "pretrain.batch_size=3"])


def _global_batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    n = GLOBAL_BATCH
    b = {"video": torch.randn(n, 16, generator=g), "pose": torch.randn(n, 100, 17, 3, generator=g) * 0.3,
         "acc": torch.randn(n, 100, 6, generator=g) * 3, "text_emb": torch.randn(n, 384, generator=g)}
    for m in ("video", "pose", "acc", "text"):
        b[f"has_{m}"] = torch.ones(n, dtype=torch.bool)
    b["has_video"][[1, 5, 10]] = False  # missing modalities, spread over the ranks
    b["has_text"][7] = False
    return {k: v.double() if v.is_floating_point() else v for k, v in b.items()}


def _step(rank: int, world: int, out_dir: str) -> None:
    """One real pretraining step (``train_step``) on this rank's share of the fixed global batch; rank 0 saves the
    logged loss, the per-pair losses and every parameter's gradient (before the optimiser, whose lr is 0)."""
    from mujo.models import build_model
    from mujo.train.trainer import build_loss, lr_lambda, train_step

    cfg = elastic.for_world(_config(), world)
    per = cfg.pretrain.batch_size
    assert per * world == GLOBAL_BATCH
    model = build_model(cfg.model, seed=0).double()
    net = model
    if world > 1 and not cfg.pretrain.grad_cache_chunks:
        net = torch.nn.parallel.DistributedDataParallel(model)  # what prepare_model does on CPU
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(0, 10))
    batch = {k: v[rank * per:(rank + 1) * per] for k, v in _global_batch().items()}
    loss, per_pair = train_step(net, model, build_loss(cfg), opt, sched, batch, cfg, world=world)
    if rank == 0:
        torch.save({"loss": loss.detach(), "per_pair": {k: v.detach() for k, v in per_pair.items()},
                    "chunks": cfg.pretrain.grad_cache_chunks,
                    "grads": {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}},
                   os.path.join(out_dir, f"w{world}.pt"))


@pytest.fixture(scope="module")
def steps(tmp_path_factory):
    """The same step at 1 (in-process), 2, 3 and 4 workers."""
    out = str(tmp_path_factory.mktemp("elastic"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _step(0, 1, out)
    finally:
        torch.set_num_threads(threads)
    for world in (2, 3, 4):
        # forked ranks inherit the imported torch and mujo (a spawned rank spends seconds importing them again)
        torch.multiprocessing.start_processes(_entry, args=(world, free_port(), _step, (out,)), nprocs=world,
                                              join=True, start_method="fork")
    return {w: torch.load(os.path.join(out, f"w{w}.pt"), weights_only=True) for w in (1, 2, 3, 4)}


def test_loss_and_gradients_do_not_depend_on_the_worker_count(steps):
    ref = steps[4]  # the full group: 3 per worker, no gradient cache
    assert ref["chunks"] is None and steps[2]["chunks"] == 2 and steps[1]["chunks"] == 4  # chunks of <= 3 rows
    assert steps[3]["chunks"] == 2  # 4 per worker in chunks of 2
    for world in (1, 2, 3):
        got = steps[world]
        assert abs(float(got["loss"]) - float(ref["loss"])) < 1e-5, world
        assert set(got["per_pair"]) == set(ref["per_pair"])
        for key, value in ref["per_pair"].items():
            assert abs(float(got["per_pair"][key]) - float(value)) < 1e-5, (world, key)
        assert set(got["grads"]) == set(ref["grads"])
        for name, grad in ref["grads"].items():
            assert grad.abs().max() > 0 or name.startswith("video"), name  # the step really has gradients
            diff = (got["grads"][name] - grad).abs().max().item()
            assert diff < 1e-5, f"{world} workers: gradient of {name} differs by {diff}"


def test_num_workers_range_in_the_config():
    cfg = _config("[2, 4]")
    assert (cfg.pretrain.min_workers, cfg.pretrain.num_workers) == (2, 4)
    assert elastic.global_batch(cfg.pretrain) == 12
    again = load_config(None, [f"pretrain.{k}={v}" for k, v in cfg.pretrain.model_dump().items()
                               if k in ("num_workers", "min_workers", "batch_size")])
    assert (again.pretrain.min_workers, again.pretrain.num_workers) == (2, 4)  # the dumped form reloads
    fixed = load_config(None, ["pretrain.num_workers=[3, 3]"])
    assert (fixed.pretrain.min_workers, fixed.pretrain.num_workers) == (None, 3)
    assert elastic.for_world(fixed, 3) is fixed
    with pytest.raises(ConfigError, match=r"split evenly over \[3\].*multiple of 3 \(e\.g\. 18\)"):
        load_config(None, ["pretrain.num_workers=[2, 4]", "pretrain.batch_size=16"])
    with pytest.raises(ConfigError, match="max_failures >= 1"):
        load_config(None, ["pretrain.num_workers=[1, 2]", "pretrain.max_failures=0"])
    for bad in ("[0, 2]", "[3, 2]", "[1, 2, 3]", "[1, true]"):
        with pytest.raises(ConfigError, match="pretrain.num_workers"):
            load_config(None, [f"pretrain.num_workers={bad}"])
    with pytest.raises(ConfigError, match="contradicts pretrain.min_workers"):
        load_config(None, ["pretrain.num_workers=[1, 2]", "pretrain.min_workers=2"])


def test_shares_chunks_and_the_resize_log():
    assert [elastic.share(12, w) for w in (1, 2, 3, 4)] == [12, 6, 4, 3]
    with pytest.raises(ValueError, match="cannot be split evenly over 5"):
        elastic.share(12, 5)
    # chunks never exceed the rows of a chunk at the full group (here 8 / 2 = 4)
    assert [elastic.cache_chunks(s, 8, 2) for s in (8, 16, 32)] == [2, 4, 8]
    assert elastic.cache_chunks(8, 8, None) is None and elastic.cache_chunks(16, 8, None) == 2
    shrunk = elastic.for_world(_config(), 2).pretrain
    assert (shrunk.batch_size, shrunk.num_workers, shrunk.grad_cache_chunks) == (6, 2, 2)

    log = elastic.ResizeLog()
    assert log.observe(0, 4, 3, 12, None, now=1.0)["event"] == "start"
    assert log.observe(20, 4, 3, 12, None, now=2.0)["event"] == "restart"  # the same size: no resize
    entry = log.observe(20, 2, 6, 12, 2, now=3.0)
    assert entry == {"event": "resize", "time": 3.0, "step": 20, "workers": 2, "per_worker_batch": 6,
                     "global_batch": 12, "grad_cache_chunks": 2}
    log.observe(30, 4, 3, 12, None, now=4.0)
    again = elastic.ResizeLog(log.entries)  # as a checkpoint gives it back
    assert again.sizes == [4, 2, 4] and [e["event"] for e in again.entries] == ["start", "restart", "resize", "resize"]
