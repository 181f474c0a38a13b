"""Sensor realism (mujo.data.realism): each switch changes the virtual IMU as documented, draws are deterministic per
seed and differ per step, everything off is the identity, and the trainer applies it to its batches. No Ray."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mujo.config import MainConfig, RealismConfig
from mujo.data import synth
from mujo.data.imu import G, virtual_wrist_acc
from mujo.data.realism import SWITCHES, RealismParams, SensorRealism, mirror_acc, mirror_pose

FS = 50.0
G0 = 9.80665


@pytest.fixture(scope="module")
def windows() -> dict[str, np.ndarray]:
    """Six 2-s windows of real generator output (pose + its virtual IMU), one still (standing) and moving ones."""
    acc, pose = [], []
    for i, activity in enumerate(("standing", "boxing", "bicep_curls", "jumping_jacks", "walking", "sitting")):
        p = synth.generate_motion(activity, synth.sample_subject(f"r{i}", i), 4.0, seed=i, noise_std=0.0)["pose"]
        a = virtual_wrist_acc(p, FS)
        acc.append(a[50:150])
        pose.append(p[50:150])
    return {"acc": np.stack(acc), "pose": np.stack(pose), "has_pose": np.ones(6, bool)}


def _apply(params: RealismParams, w: dict, step: int = 0, **kw) -> dict:
    return SensorRealism(params, fs=FS, seed=kw.get("seed", 0))(dict(w), rank=0, step=step)


def test_off_is_identity_and_returns_the_batch(windows):
    batch = dict(windows)
    assert not RealismParams().active
    assert SensorRealism(RealismConfig())(batch, step=3) is batch
    cfg = MainConfig()
    assert not cfg.pretrain.realism.orientation != "off" and RealismParams.of(cfg.pretrain.realism) == RealismParams()


def test_each_switch_alone_changes_the_signal_deterministically_and_per_step(windows):
    for switch in SWITCHES:
        params = RealismParams().only(switch)
        w = {**windows, "acc": windows["acc"] * 20.0} if switch == "saturation" else windows  # beyond 8 g
        a = _apply(params, w, step=5)["acc"]
        b = _apply(params, w, step=5)["acc"]
        c = _apply(params, w, step=6)["acc"]
        d = _apply(params, w, step=5, seed=1)["acc"]
        np.testing.assert_array_equal(a, b, err_msg=switch)
        assert a.shape == w["acc"].shape and a.dtype == w["acc"].dtype and np.isfinite(a).all()
        assert not np.allclose(a, w["acc"]), switch
        assert not np.allclose(a, c) or not np.allclose(a, d), switch  # new draws per step / per seed


def test_orientation_preserves_the_norm_of_every_reading(windows):
    for mode in ("wrist", "any"):
        out = _apply(RealismParams(orientation=mode), windows)["acc"]
        for w in range(2):
            before = np.linalg.norm(windows["acc"][..., 3 * w:3 * w + 3], axis=-1)
            after = np.linalg.norm(out[..., 3 * w:3 * w + 3], axis=-1)
            np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-4)
    # the wrist mode rolls about the forearm axis: x (along the forearm) only tilts by a few degrees
    out = _apply(RealismParams(orientation="wrist", tilt_deg=0.0), windows)["acc"]
    np.testing.assert_allclose(out[..., [0, 3]], windows["acc"][..., [0, 3]], atol=1e-4)


def test_mirroring_matches_the_virtual_imu_of_the_mirrored_pose(windows):
    """The documented rule (wrists swapped, forearm z negated) is the physics: the virtual IMU of the mirrored pose."""
    for pose in windows["pose"][1:4]:
        want = virtual_wrist_acc(mirror_pose(pose.astype(np.float64)), FS)
        got = mirror_acc(virtual_wrist_acc(pose, FS))
        assert np.abs(want - got)[5:-5].max() < 0.05 * np.abs(got).max()
    out = _apply(RealismParams(mirror_p=1.0), windows)
    np.testing.assert_allclose(out["acc"], mirror_acc(windows["acc"]), atol=1e-5)
    np.testing.assert_allclose(out["pose"], mirror_pose(windows["pose"]), atol=1e-6)


def test_sensor_errors_scale_offset_and_add_consumer_noise(windows):
    still = {k: v[:1] for k, v in windows.items()}  # standing
    gain_only = _apply(RealismParams(sensor=True, bias_std=0.0, noise_ug=0.0), still)["acc"]
    ratio = gain_only.mean(1) / still["acc"].mean(1)
    big = np.abs(still["acc"].mean(1)) > 1.0
    assert np.all(np.abs(ratio[big] - 1.0) < 0.1) and np.any(np.abs(ratio[big] - 1.0) > 1e-4)  # per-axis gain
    noisy = _apply(RealismParams(sensor=True, gain_std=0.0, bias_std=0.0, noise_ug=300.0), still)["acc"]
    sigma = 300e-6 * G0 * np.sqrt(FS / 2.0)  # white noise over the Nyquist band
    assert 0.7 * sigma < (noisy - still["acc"]).std() < 1.3 * sigma + 0.002  # quantisation adds ~1 mm/s^2


def test_saturation_clips_at_the_full_scale_range(windows):
    loud = {**windows, "acc": windows["acc"] * 20.0}  # beyond +-16 g
    out = _apply(RealismParams(saturation=True, range_g=(8.0,)), loud)["acc"]
    assert np.abs(out).max() == pytest.approx(8.0 * G0, rel=1e-6)
    inside = np.abs(loud["acc"]) < 8.0 * G0
    np.testing.assert_allclose(out[inside], loud["acc"][inside], rtol=1e-6)


def test_gravity_removal_takes_981_off_the_mean_norm_at_rest(windows):
    still = {k: v[:1] for k, v in windows.items()}  # standing: |a| ~ 9.81 at each wrist
    for batch in (still, {"acc": still["acc"]}):  # exact from the pose, and the low-pass estimate without it
        out = _apply(RealismParams(linear_p=1.0), batch)["acc"]
        for w in range(2):
            before = np.linalg.norm(still["acc"][0, :, 3 * w:3 * w + 3], axis=-1).mean()
            after = np.linalg.norm(out[0, :, 3 * w:3 * w + 3], axis=-1).mean()
            assert before == pytest.approx(G, abs=0.3) and after < 0.3


def test_placement_adds_the_rigid_forearm_terms_only_when_moving(windows):
    out = _apply(RealismParams(placement=True, placement_cm=(5.0, 5.0)), windows)["acc"]
    diff = np.abs(out - windows["acc"])
    assert diff[0].max() < 0.1  # standing still: no rotation, no extra reading
    assert diff[1].max() > 0.3  # boxing: centripetal and tangential terms of the forearm's rotation
    assert diff[1].max() < 0.5 * np.abs(windows["acc"][1]).max()  # a correction, not a different signal


def test_jitter_keeps_still_signals_and_perturbs_moving_ones(windows):
    out = _apply(RealismParams(jitter=True), windows)["acc"]
    assert np.abs(out[0] - windows["acc"][0]).max() < 0.2
    assert np.abs(out[1] - windows["acc"][1]).max() > 0.2


def test_one_wrist_zeros_exactly_one_wrist(windows):
    out = _apply(RealismParams(one_wrist_p=1.0), windows)["acc"]
    left_zero = np.all(out[..., :3] == 0, axis=(1, 2))
    right_zero = np.all(out[..., 3:] == 0, axis=(1, 2))
    assert np.all(left_zero ^ right_zero)
    kept = np.where(left_zero[:, None, None], out[..., 3:], out[..., :3])
    np.testing.assert_array_equal(kept, np.where(left_zero[:, None, None], windows["acc"][..., 3:],
                                                 windows["acc"][..., :3]))


def test_torch_batches_keep_dtype_and_the_other_columns(windows):
    batch = {k: torch.as_tensor(v) for k, v in windows.items()} | {"text_emb": torch.ones(6, 384)}
    out = SensorRealism(RealismParams().all_on(), seed=3)(batch, rank=1, step=2)
    assert out["acc"].dtype == torch.float32 and out["pose"].dtype == torch.float32
    assert out["text_emb"] is batch["text_emb"] and not torch.allclose(out["acc"], batch["acc"])


def test_config_section_validates_and_reaches_the_trainer():
    with pytest.raises(ValueError, match="range_g"):
        RealismConfig(range_g=[0.5])
    with pytest.raises(ValueError):
        RealismConfig(orientation="sideways")
    from mujo.train.trainer import Trainer

    cfg = MainConfig.model_validate({"model": {"modalities": ["acc", "text"], "embed_dim": 16, "proj_hidden": 16,
                                               "text_hidden": 16},
                                     "pretrain": {"batch_size": 4, "epochs": 1, "warmup_steps": 0,
                                                  "realism": {"sensor": True, "one_wrist_p": 0.5}}})
    trainer = Trainer(cfg, None, train_rows=8)
    assert trainer.realism.active and trainer.realism.p.sensor
    batch = {"acc": torch.randn(4, 100, 6), "text_emb": torch.randn(4, 384),
             "has_acc": torch.ones(4, dtype=torch.bool), "has_text": torch.ones(4, dtype=torch.bool)}
    metrics = trainer.step(batch)
    assert np.isfinite(metrics["loss"])
