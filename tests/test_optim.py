"""mujo.optim.adamw: the fused AdamW every training loop uses computes torch's default AdamW update."""

from __future__ import annotations

import torch

from mujo.optim import adamw


def _run(fused: bool | None, steps: int = 20) -> list[torch.Tensor]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(12, 32), torch.nn.ReLU(), torch.nn.Linear(32, 5))
    groups = [{"params": [model[0].weight, model[2].weight], "weight_decay": 0.05},
              {"params": [model[0].bias, model[2].bias], "weight_decay": 0.0}]
    opt = adamw(groups, lr=1e-2, fused=fused)
    assert opt.defaults["fused"] is (True if fused else (None if fused is None else False))
    x, y = torch.randn(64, 12), torch.randint(0, 5, (64,))
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return [p.detach().clone() for p in model.parameters()]


def test_fused_adamw_equals_the_default_form():
    for a, b in zip(_run(True), _run(None)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)

