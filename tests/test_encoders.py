"""The MM-Fit encoders' fast forms (joint-folded and dense convolutions) against the layers as written: outputs and
gradients equal within 1e-5, the state dict unchanged (a checkpoint of the old module layout loads and gives the same
numbers). Pure torch, no Ray."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mujo.config import ModelConfig
from mujo.models.encoders import AccEncoder, MMFitSensorEncoder, PoseEncoder
from mujo.models.mujo import MuJoModel
from mujo.schema import NUM_JOINTS, WINDOW

SHAPES = {PoseEncoder: (WINDOW, NUM_JOINTS, 3), AccEncoder: (WINDOW, 6), MMFitSensorEncoder: (3, WINDOW)}


def old_pose() -> nn.Sequential:
    """The pose encoder's layers exactly as the module held them before the fast forms (the checkpoint layout)."""
    layers, c_in = [], 3
    for c_out, g in zip((9, 15, 24), (3, 3, 1)):
        layers += [nn.Conv2d(c_in, c_out, 11, stride=(2, 1), padding=5, groups=g), nn.ReLU(), nn.MaxPool2d(2)]
        c_in = c_out
    return nn.Sequential(*layers, nn.Flatten())


def old_sensor() -> nn.Sequential:
    layers, c_in = [], 3
    for c_out, g in zip((9, 15, 24), (3, 3, 1)):
        layers += [nn.Conv1d(c_in, c_out, 11, stride=2, padding=5, groups=g), nn.ReLU(), nn.MaxPool1d(2)]
        c_in = c_out
    return nn.Sequential(*layers, nn.Flatten())


@pytest.mark.parametrize("encoder", [PoseEncoder, AccEncoder, MMFitSensorEncoder])
@pytest.mark.parametrize("batch", [3, 64])
def test_forward_and_gradients_equal_the_layers_as_written(encoder, batch):
    torch.manual_seed(batch)
    enc = encoder()
    x = torch.randn(batch, *SHAPES[encoder])
    x[0] = 0.0  # an all-zero window (a missing modality) too
    new, ref = enc(x), enc.reference_forward(x)
    assert new.shape == ref.shape == (batch, enc.out_dim)
    torch.testing.assert_close(new, ref, rtol=0, atol=1e-5)
    weights = torch.randn_like(ref)  # a loss whose gradients are O(1): a random linear read-out, batch mean
    params = list(enc.parameters())
    g_new = torch.autograd.grad((new * weights).sum() / batch, params)
    g_ref = torch.autograd.grad((ref * weights).sum() / batch, params)
    for (name, _), a, b in zip(enc.named_parameters(), g_new, g_ref):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5, msg=lambda m: f"gradient of {name}: {m}")


@pytest.mark.parametrize("encoder", [PoseEncoder, AccEncoder])
def test_float64_is_exact_and_the_index_tensors_follow_the_module(encoder):
    """The fast form's index tensors are buffers that follow ``.to()`` (the GPU path is the same code); in float64
    the two forms agree to rounding of float64."""
    torch.manual_seed(0)
    enc = encoder().to(torch.float64)
    x = torch.randn(8, *SHAPES[encoder], dtype=torch.float64)
    torch.testing.assert_close(enc(x), enc.reference_forward(x), rtol=0, atol=1e-12)


def test_state_dict_is_the_old_layout_and_old_checkpoints_load():
    pose_old, left_old, right_old = old_pose(), old_sensor(), old_sensor()
    pose, acc = PoseEncoder(), AccEncoder()
    old_pose_sd = {f"net.{k}": v for k, v in pose_old.state_dict().items()}
    old_acc_sd = {**{f"left.net.{k}": v for k, v in left_old.state_dict().items()},
                  **{f"right.net.{k}": v for k, v in right_old.state_dict().items()}}
    assert {k: v.shape for k, v in pose.state_dict().items()} == {k: v.shape for k, v in old_pose_sd.items()}
    assert {k: v.shape for k, v in acc.state_dict().items()} == {k: v.shape for k, v in old_acc_sd.items()}
    pose.load_state_dict(old_pose_sd, strict=True)
    acc.load_state_dict(old_acc_sd, strict=True)
    xp, xa = torch.randn(16, WINDOW, NUM_JOINTS, 3), torch.randn(16, WINDOW, 6)
    with torch.no_grad():
        torch.testing.assert_close(pose(xp), pose_old(xp.permute(0, 3, 1, 2)), rtol=0, atol=1e-5)
        xa_t = xa.transpose(1, 2)
        torch.testing.assert_close(acc(xa), torch.cat([left_old(xa_t[:, :3]), right_old(xa_t[:, 3:])], 1),
                                   rtol=0, atol=1e-5)


def test_the_joint_model_keeps_its_keys_and_embeds_as_before():
    """A whole MuJoModel: no new state-dict entries (a saved pretrained artefact or classifier loads strictly), and
    the embeddings equal those computed with the layers as written."""
    torch.manual_seed(1)
    model = MuJoModel(ModelConfig()).eval()
    keys = set(model.state_dict())
    assert not any("_tap" in k or "_valid" in k for k in keys)
    clone = MuJoModel(ModelConfig()).eval()
    clone.load_state_dict(model.state_dict(), strict=True)
    pose = torch.randn(4, WINDOW, NUM_JOINTS, 3)
    acc = torch.randn(4, WINDOW, 6)
    with torch.no_grad():
        for m, x in (("pose", pose), ("acc", acc)):
            fast = clone.embed(m, x)
            enc = clone.encoders[m]
            enc.forward = enc.reference_forward  # the old computation, same weights
            try:
                ref = clone.embed(m, x)
            finally:
                del enc.forward
            torch.testing.assert_close(fast, ref, rtol=0, atol=1e-5)


def test_another_window_length_runs_the_layers_as_written():
    """The fast form is built for the model's window; any other input shape takes the reference path (the same
    numbers as before the fast forms, whatever they are)."""
    torch.manual_seed(2)
    for enc, x in ((AccEncoder(), torch.randn(2, WINDOW + 20, 6)),
                   (PoseEncoder(), torch.randn(2, WINDOW + 20, NUM_JOINTS, 3))):
        with torch.no_grad():
            assert torch.equal(enc(x), enc.reference_forward(x))
