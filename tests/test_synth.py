"""Tests for the synthetic data sources: skeleton, activity catalogue, motion generator, video stand-in."""

from __future__ import annotations

import time

import numpy as np
import pytest

from mujo.data import imu, synth, video
from mujo.data import skeleton as sk
from mujo.data.activities import ACTIVITIES, CATALOGUE, HAR_COVERAGE, MMFIT_ACTIVITIES, WIDE_ACTIVITIES, get_activity

FS = 50.0
G = imu.G


def _subject(i: int = 0) -> synth.SubjectParams:
    return synth.sample_subject(f"t{i:03d}", seed=i)


def _bone_lengths(pose: np.ndarray) -> np.ndarray:
    p = pose.astype(np.float64)
    return np.stack([np.linalg.norm(p[:, c] - p[:, b], axis=-1) for b, c in sk.BONES], axis=1)


def test_skeleton_layout() -> None:
    assert len(sk.JOINTS) == sk.NUM_JOINTS == len(sk.PARENTS) == 17
    assert sk.PARENTS[0] == -1 and all(p < j for j, p in enumerate(sk.PARENTS) if j)
    named = {"pelvis": sk.PELVIS, "r_ankle": sk.R_ANKLE, "l_ankle": sk.L_ANKLE, "thorax": sk.THORAX,
             "head": sk.HEAD, "l_shoulder": sk.L_SHOULDER, "l_elbow": sk.L_ELBOW, "l_wrist": sk.L_WRIST,
             "r_shoulder": sk.R_SHOULDER, "r_elbow": sk.R_ELBOW, "r_wrist": sk.R_WRIST}
    assert all(sk.JOINTS[i] == name for name, i in named.items())
    assert sk.PARENTS[sk.L_WRIST] == sk.L_ELBOW and sk.PARENTS[sk.L_ELBOW] == sk.L_SHOULDER
    assert sk.PARENTS[sk.R_SHOULDER] == sk.THORAX


def test_activity_catalogue() -> None:
    assert ACTIVITIES == (
        "squats", "lunges", "bicep_curls", "situps", "pushups", "tricep_extensions", "dumbbell_rows",
        "jumping_jacks", "dumbbell_shoulder_press", "lateral_shoulder_raises", "walking", "running", "standing",
        "sitting", "stairs_up", "stairs_down", "jump_rope", "high_knees", "arm_circles", "boxing", "toe_touches",
        "waving")
    assert MMFIT_ACTIVITIES == ACTIVITIES[:10]
    # the wide vocabulary keeps the default's names and class indices first, and the catalogue knows all of them
    assert WIDE_ACTIVITIES[:22] == ACTIVITIES and len(WIDE_ACTIVITIES) == 40 == len(set(WIDE_ACTIVITIES))
    assert set(CATALOGUE) == set(WIDE_ACTIVITIES)
    assert all(get_activity(a).freq_hz > 0 for a in WIDE_ACTIVITIES)
    assert set(WIDE_ACTIVITIES) == set(synth._MOTIONS)
    with pytest.raises(KeyError, match="unknown activity"):
        get_activity("yoga")


def test_same_seed_same_clip_and_different_seed_differs() -> None:
    subject = _subject()
    a = synth.generate_motion("lunges", subject, 5.0, seed=3)
    b = synth.generate_motion("lunges", subject, 5.0, seed=3)
    c = synth.generate_motion("lunges", subject, 5.0, seed=4)
    np.testing.assert_array_equal(a["pose"], b["pose"])
    assert (a["camera_yaw"], a["facing_yaw"]) == (b["camera_yaw"], b["facing_yaw"])
    assert not np.allclose(a["pose"], c["pose"])
    assert synth.sample_subject("x", 5) == synth.sample_subject("x", 5)


@pytest.mark.parametrize("activity", WIDE_ACTIVITIES)
def test_every_activity_shape_dtype_finite_and_on_the_floor(activity: str) -> None:
    out = synth.generate_motion(activity, _subject(1), 4.0, seed=7)
    pose = out["pose"]
    assert pose.shape == (200, 17, 3) and pose.dtype == np.float32 and np.isfinite(pose).all()
    assert out["fs"] == FS and -np.pi <= out["facing_yaw"] < np.pi and -np.pi <= out["camera_yaw"] < np.pi
    z = pose[..., 2]
    assert z.min() > -0.05  # body on or above the floor (noise aside)
    if not activity.startswith("stairs") and activity != "cycling":  # stairs: the floor rises or falls; on a bike
        # the feet are on the pedals
        assert np.percentile(z.min(axis=1), 50) < 0.15  # something touches the floor most of the time


@pytest.mark.parametrize("activity", WIDE_ACTIVITIES)
def test_bone_lengths_are_constant(activity: str) -> None:
    pose = synth.generate_motion(activity, _subject(2), 4.0, seed=1, noise_std=0.0)["pose"]
    lengths = _bone_lengths(pose)
    np.testing.assert_allclose(lengths, np.broadcast_to(lengths[0], lengths.shape), atol=2e-5)


def test_subjects_differ_in_proportions() -> None:
    subjects = [_subject(i) for i in range(20)]
    heights = np.array([s.height for s in subjects])
    assert heights.min() >= 1.5 and heights.max() <= 1.95 and heights.std() > 0.04
    ratios = np.array([[s.thigh / s.height, s.forearm / s.height, s.shoulder_half_width / s.height]
                       for s in subjects])
    assert (ratios.std(axis=0) / ratios.mean(axis=0) > 0.015).all()
    lengths = [_bone_lengths(synth.generate_motion("standing", s, 0.2, seed=0, noise_std=0.0)["pose"])[0]
               for s in subjects[:2]]
    assert not np.allclose(lengths[0], lengths[1], atol=1e-3)


def test_activities_look_like_themselves() -> None:
    subject = _subject(3)

    def clip(activity: str) -> np.ndarray:
        return synth.generate_motion(activity, subject, 10.0, seed=5, noise_std=0.0)["pose"].astype(np.float64)

    standing, squats, walking, running = clip("standing"), clip("squats"), clip("walking"), clip("running")
    feet = standing[:, [sk.L_ANKLE, sk.R_ANKLE], 2]
    assert 0.02 < feet.min() and feet.max() < 0.12  # feet near the floor when standing
    assert np.ptp(squats[:, sk.PELVIS, 2]) > 0.25 and np.ptp(standing[:, sk.PELVIS, 2]) < 0.05

    def speed(p: np.ndarray) -> float:
        return float(np.linalg.norm(p[-1, sk.PELVIS, :2] - p[0, sk.PELVIS, :2]) / 10.0)

    assert 0.7 < speed(walking) < 2.0 and speed(running) > 1.5 * speed(walking) and speed(standing) < 0.05
    up, down = clip("stairs_up"), clip("stairs_down")
    assert up[-1, sk.PELVIS, 2] - up[0, sk.PELVIS, 2] > 1.0 and down[-1, sk.PELVIS, 2] < down[0, sk.PELVIS, 2] - 1.0
    for lying in ("pushups", "situps"):
        p = clip(lying)
        assert np.median(p[:, sk.HEAD, 2]) < 0.9  # horizontal / lying, not upright
    seated = clip("sitting")
    assert seated[:, sk.PELVIS, 2].mean() < standing[:, sk.PELVIS, 2].mean() - 0.2
    jacks = clip("jumping_jacks")
    assert (jacks[:, sk.L_WRIST, 2] > jacks[:, sk.HEAD, 2]).any()  # arms overhead ...
    assert (jacks[:, sk.L_WRIST, 2] < jacks[:, sk.PELVIS, 2]).any()  # ... and down by the sides
    curls = clip("bicep_curls")
    forearm = curls[:, sk.L_WRIST] - curls[:, sk.L_ELBOW]
    upper = curls[:, sk.L_ELBOW] - curls[:, sk.L_SHOULDER]
    cos = np.sum(forearm * upper, axis=1) / np.linalg.norm(forearm, axis=1) / np.linalg.norm(upper, axis=1)
    assert np.ptp(np.degrees(np.arccos(cos))) > 90.0  # elbows flex through a large range


def _clip_features(pose: np.ndarray) -> np.ndarray:
    """Yaw-invariant per-clip summary of pose and virtual wrist acceleration."""
    p = pose.astype(np.float64)
    rel = p - p[:, :1]
    acc = imu.virtual_wrist_acc(pose, FS)
    mag = np.linalg.norm(acc.reshape(len(acc), 2, 3), axis=-1)
    seconds = len(p) / FS
    travel = [np.linalg.norm(p[-1, 0, :2] - p[0, 0, :2]) / seconds, (p[-1, 0, 2] - p[0, 0, 2]) / seconds]
    return np.concatenate([rel[..., 2].mean(0), rel[..., 2].std(0), np.linalg.norm(rel[..., :2], axis=-1).mean(0),
                           [p[:, 0, 2].mean()], travel, acc.mean(0), acc.std(0), mag.mean(0), mag.std(0)])


def test_activities_are_distinguishable_across_subjects() -> None:
    feats, labels, groups = [], [], []
    for s in range(5):
        subject = synth.sample_subject(f"d{s}", s)
        for k, activity in enumerate(ACTIVITIES):
            feats.append(_clip_features(synth.generate_motion(activity, subject, 6.0, seed=100 * s + k)["pose"]))
            labels.append(k)
            groups.append(s)
    x, y, g = np.array(feats), np.array(labels), np.array(groups)
    train, test = g < 3, g >= 3  # held-out subjects
    z = (x - x[train].mean(0)) / (x[train].std(0) + 1e-9)
    centroids = np.stack([z[train & (y == k)].mean(0) for k in range(len(ACTIVITIES))])
    pred = np.argmin(((z[test][:, None] - centroids[None]) ** 2).sum(-1), axis=1)
    assert (pred == y[test]).mean() > 0.6  # chance is 1/22
    # intra-class variation: the same activity is not identical across subjects
    same = z[(y == 0) & test]
    assert np.linalg.norm(same[0] - same[1]) > 1.0


def test_generation_is_fast() -> None:
    subject = _subject(4)
    synth.generate_motion("walking", subject, 60.0, seed=0)  # warm-up
    best = min(_timed(lambda: synth.generate_motion("walking", subject, 60.0, seed=1)) for _ in range(3))
    assert best < 0.1


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def test_video_features_shape_determinism_and_clip_appearance() -> None:
    out = synth.generate_motion("squats", _subject(5), 4.0, seed=2)
    pose, yaw = out["pose"], out["camera_yaw"]
    f1 = video.video_features(pose, yaw, clip_seed=1, dim=64)
    assert f1.shape == (len(pose), 64) and f1.dtype == np.float32 and np.isfinite(f1).all()
    np.testing.assert_array_equal(f1, video.video_features(pose, yaw, clip_seed=1, dim=64))
    f2 = video.video_features(pose, yaw, clip_seed=2, dim=64)
    assert not np.allclose(f1, f2)
    assert np.corrcoef(f1.ravel(), f2.ravel())[0, 1] > 0.5  # same pose: different clips stay correlated
    assert np.abs(f1 - video.video_features(pose, yaw + 1.5, clip_seed=1, dim=64)).mean() > 0.05  # viewpoint
    assert f1.std(axis=0).mean() > 0.1  # varies over time with the pose


def test_video_features_separate_activities() -> None:
    subject = _subject(6)
    means = {}
    for activity in ("squats", "pushups", "waving"):
        for seed in (1, 2):
            out = synth.generate_motion(activity, subject, 4.0, seed=seed)
            means[activity, seed] = video.video_features(out["pose"], out["camera_yaw"], clip_seed=seed).mean(0)
    within = np.mean([np.linalg.norm(means[a, 1] - means[a, 2]) for a in ("squats", "pushups", "waving")])
    between = np.mean([np.linalg.norm(means[a, 1] - means[b, 2])
                       for a in ("squats", "pushups", "waving") for b in ("squats", "pushups", "waving") if a != b])
    assert between > within


def test_wide_activities_look_like_themselves() -> None:
    subject = _subject(3)

    def clip(activity: str) -> np.ndarray:
        return synth.generate_motion(activity, subject, 10.0, seed=5, noise_std=0.0)["pose"].astype(np.float64)

    standing, lying, cycling, jogging, running = (clip(a) for a in ("standing", "lying", "cycling", "jogging",
                                                                     "running"))
    assert np.median(lying[:, sk.HEAD, 2]) < 0.5 and np.median(standing[:, sk.HEAD, 2]) > 1.3

    def speed(p: np.ndarray) -> float:
        return float(np.linalg.norm(p[-1, sk.PELVIS, :2] - p[0, sk.PELVIS, :2]) / 10.0)

    assert speed(cycling) > 3.0 > speed(running) > speed(jogging) > 1.0  # a bike outruns a runner; joggers are slower
    assert np.ptp(cycling[:, sk.PELVIS, 2]) < 0.02  # seated on the saddle
    assert np.ptp(cycling[:, sk.L_ANKLE, 2]) > 0.2  # feet circling on the pedals
    acc = {a: np.linalg.norm(imu.virtual_wrist_acc(clip(a).astype(np.float32), FS).reshape(-1, 2, 3), axis=-1)
           for a in ("badminton", "tennis_forehand", "external_rotation", "lying")}
    assert acc["badminton"].max() > 2.0 * G and acc["tennis_forehand"].max() > 2.0 * G  # racket swings are fast
    assert acc["external_rotation"].max() < 1.5 * G and acc["lying"].max() < 1.5 * G  # rehab and rest are gentle
    rehab = {a: clip(a) for a in ("shoulder_flexion", "shoulder_abduction")}
    for pose in rehab.values():  # one arm works, the other rests
        lift = [np.ptp(pose[:, w, 2]) for w in (sk.L_WRIST, sk.R_WRIST)]
        assert max(lift) > 0.4 and min(lift) < 0.1


def test_har_coverage_names_real_labels_and_known_activities() -> None:
    """The coverage map's keys are the labels the adapters' cards declare, and its values are catalogue names; the
    wide vocabulary covers MHEALTH, MotionSense, MM-Fit and BasicMotions completely."""
    import pathlib

    import yaml

    root = pathlib.Path(__file__).resolve().parents[1] / "datasets"
    for dataset, mapping in HAR_COVERAGE.items():
        assert all(v is None or v in CATALOGUE for v in mapping.values()), dataset
        card = root / f"{dataset}.yaml"
        if card.exists():
            labels = {entry["name"] for entry in yaml.safe_load(card.read_text())["labels"]}
            assert set(mapping) == labels, dataset
    for dataset in ("mhealth", "motionsense", "mmfit", "basicmotions"):
        assert all(v in WIDE_ACTIVITIES for v in HAR_COVERAGE[dataset].values()), dataset
    from mujo.data.clips import resolve_activities

    assert resolve_activities("wide") == WIDE_ACTIVITIES and resolve_activities("all") == ACTIVITIES
    assert resolve_activities(["badminton", "walking"]) == ("badminton", "walking")
