"""Tests for mujo.data.imu: the virtual accelerometer a = R^T (a_world - g) and the forearm frame."""

from __future__ import annotations

import numpy as np
import pytest

from mujo.data import imu, synth
from mujo.data import skeleton as sk
from mujo.data.activities import ACTIVITIES

FS = 50.0


def _rot_x(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _rot_y(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _standing_clip(seconds: float = 8.0) -> np.ndarray:
    subject = synth.sample_subject("still", 3)
    return synth.generate_motion("standing", subject, seconds, seed=11, noise_std=0.0)["pose"]


def test_static_pose_reads_gravity_on_both_wrists() -> None:
    pose = np.repeat(_standing_clip(1.0)[:1], 100, axis=0)
    acc = imu.virtual_wrist_acc(pose, FS)
    for wrist in (acc[:, :3], acc[:, 3:]):
        np.testing.assert_allclose(np.linalg.norm(wrist, axis=1), imu.G, atol=1e-4)


def test_still_standing_subject_reads_gravity() -> None:
    acc = imu.virtual_wrist_acc(_standing_clip(), FS)[10:-10]  # interior: away from the smoothing's edges
    for wrist in (acc[:, :3], acc[:, 3:]):
        assert np.abs(np.linalg.norm(wrist, axis=1) - 9.81).max() < 0.05


@pytest.mark.parametrize("rotation", [np.eye(3), _rot_x(0.7) @ _rot_y(-1.1)])
def test_sinusoid_gives_analytic_acceleration(rotation: np.ndarray) -> None:
    t = np.arange(500) / FS
    amp, omega = 0.1, 2 * np.pi * 1.0
    position = np.zeros((len(t), 3))
    position[:, 0] = amp * np.sin(omega * t)
    rot = np.broadcast_to(rotation, (len(t), 3, 3))
    acc = imu.sensor_acceleration(position, rot, FS, smooth_sigma_s=None)
    a_world = np.zeros_like(position)
    a_world[:, 0] = -amp * omega ** 2 * np.sin(omega * t)
    expected = (a_world + np.array([0.0, 0.0, 9.81])) @ rotation  # R^T (a - g), row-wise
    peak = amp * omega ** 2
    np.testing.assert_allclose(acc[5:-5], expected[5:-5], rtol=0, atol=1e-2 * peak)


def test_smoothing_attenuates_as_documented() -> None:
    t = np.arange(1000) / FS
    amp, omega, sigma = 0.05, 2 * np.pi * 2.0, imu.DEFAULT_SMOOTH_SIGMA_S
    position = np.zeros((len(t), 3))
    position[:, 1] = amp * np.sin(omega * t)
    acc = imu.sensor_acceleration(position, np.broadcast_to(np.eye(3), (len(t), 3, 3)), FS, smooth_sigma_s=sigma)
    gain = np.exp(-((omega * sigma) ** 2) / 2)
    expected = -amp * omega ** 2 * gain * np.sin(omega * t)
    np.testing.assert_allclose(acc[20:-20, 1], expected[20:-20], atol=2e-2 * amp * omega ** 2)


def test_constant_velocity_has_no_edge_artefacts() -> None:
    t = np.arange(60) / FS
    position = np.stack([1.3 * t, -0.4 * t, 0.2 * t + 1.0], axis=1)
    acc = imu.sensor_acceleration(position, np.broadcast_to(np.eye(3), (60, 3, 3)), FS)
    np.testing.assert_allclose(acc, np.tile([0.0, 0.0, 9.81], (60, 1)), atol=1e-9)


def test_rotated_sensor_at_rest_reads_gravity_on_expected_axis() -> None:
    position = np.zeros((20, 3))
    # 90 deg about x: the sensor's y axis points up in the world
    acc = imu.sensor_acceleration(position, np.broadcast_to(_rot_x(np.pi / 2), (20, 3, 3)), FS)
    np.testing.assert_allclose(acc, np.tile([0.0, 9.81, 0.0], (20, 1)), atol=1e-9)
    # 90 deg about y: the sensor's x axis points down
    acc = imu.sensor_acceleration(position, np.broadcast_to(_rot_y(np.pi / 2), (20, 3, 3)), FS)
    np.testing.assert_allclose(acc, np.tile([-9.81, 0.0, 0.0], (20, 1)), atol=1e-9)


def test_forearm_frame_is_right_handed_and_follows_the_arm() -> None:
    rng = np.random.default_rng(0)
    shoulder = rng.normal(size=(50, 3))
    elbow = shoulder + rng.normal(size=(50, 3))
    wrist = elbow + rng.normal(size=(50, 3))
    rot = imu.forearm_frame(elbow, wrist, shoulder)
    np.testing.assert_allclose(np.einsum("tji,tjk->tik", rot, rot), np.broadcast_to(np.eye(3), rot.shape),
                               atol=1e-9)
    np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=1e-9)
    forearm = (wrist - elbow) / np.linalg.norm(wrist - elbow, axis=1, keepdims=True)
    np.testing.assert_allclose(rot[:, :, 0], forearm, atol=1e-9)
    normal = np.cross(elbow - shoulder, wrist - elbow)
    bent = np.linalg.norm(normal, axis=1) / (np.linalg.norm(elbow - shoulder, axis=1)
                                            * np.linalg.norm(wrist - elbow, axis=1)) > 0.25
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    np.testing.assert_allclose(rot[bent, :, 2], normal[bent], atol=1e-9)


def test_forearm_frame_straight_arm_never_flips_or_nans() -> None:
    n = 400
    t = np.arange(n) / FS
    elbow_angle = np.radians(np.clip(40.0 * np.sin(2 * np.pi * 0.3 * t), 0.0, None))  # straight half the time
    swing = 0.6 * np.sin(2 * np.pi * 0.2 * t)  # the whole arm swings forward/back
    shoulder = np.zeros((n, 3))
    upper_dir = np.stack([np.sin(swing), np.zeros(n), -np.cos(swing)], axis=1)
    fore_dir = np.stack([np.sin(swing + elbow_angle), np.zeros(n), -np.cos(swing + elbow_angle)], axis=1)
    elbow = shoulder + 0.3 * upper_dir
    wrist = elbow + 0.25 * fore_dir
    noisy = [p + np.random.default_rng(i).normal(0.0, 0.003, p.shape) for i, p in enumerate((elbow, wrist, shoulder))]
    always_straight = (elbow, elbow + 0.25 * upper_dir, shoulder)
    # the fastest true rotation here is ~3 deg/frame; a flip would be ~180 (noise wobbles the roll a little)
    for args, limit in (((elbow, wrist, shoulder), 5.0), (always_straight, 5.0), (tuple(noisy), 45.0)):
        rot = imu.forearm_frame(*args)
        assert np.isfinite(rot).all()
        step = np.einsum("tji,tjk->tik", rot[:-1], rot[1:])
        angle = np.degrees(np.arccos(np.clip((np.trace(step, axis1=1, axis2=2) - 1) / 2, -1, 1)))
        assert angle.max() < limit


@pytest.mark.parametrize("activity", ACTIVITIES)
def test_virtual_wrist_acc_every_activity(activity: str) -> None:
    subject = synth.sample_subject("acc", 1)
    pose = synth.generate_motion(activity, subject, 4.0, seed=2)["pose"]
    acc = imu.virtual_wrist_acc(pose, FS)
    assert acc.shape == (len(pose), 6) and acc.dtype == np.float32
    assert np.isfinite(acc).all()
    assert 5.0 < np.median(np.linalg.norm(acc[:, :3], axis=1)) < 40.0


def test_virtual_wrist_acc_degenerate_inputs_stay_finite() -> None:
    pose = _standing_clip(1.0)
    for clip in (pose[:1], pose[:2], pose[:3], np.zeros((30, sk.NUM_JOINTS, 3), np.float32)):
        acc = imu.virtual_wrist_acc(clip, FS)
        assert acc.shape == (len(clip), 6) and np.isfinite(acc).all()
        np.testing.assert_allclose(np.linalg.norm(acc[:, :3], axis=1), 9.81, atol=1e-3)
