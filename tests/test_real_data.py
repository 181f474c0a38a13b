"""Real data from registry packages (pyproject's ``realdata`` extra; read from the installed packages, never committed):

* BasicMotions (aeon's copy): the basicmotions adapter as a real downstream dataset, windowed by preprocessing; and
  the bring-your-own path, which must refuse its gravity-removed accelerometer rather than guess gravity.
* Daphnet S06R02E0 (aeon's copy): the bring-your-own path on a real body-worn recording (CSV, mg, 64 Hz, labels).
* DeepMimic reference motions (pybullet_data): joint rotations -> forward kinematics -> positions -> the corpus pose
  path -> virtual wrist IMU, checked against physics (rigid bones, feet on the floor, gravity, magnitudes).

Each test is skipped, with the install command, when its package is missing.
"""

from __future__ import annotations

import importlib.util
import shutil

import numpy as np
import pytest
import yaml

from mujo.adapters import CardError, get_adapter, ingest
from mujo.adapters.corpus import prepare_pose
from mujo.adapters.realdata import (
    DAPHNET_CHANNELS,
    DEEPMIMIC,
    basicmotions_dir,
    daphnet_csv,
    deepmimic_dir,
    deepmimic_positions,
    read_deepmimic,
    read_ts,
    resample_times,
    tile_cycle,
)
from mujo.data import imu
from mujo.data import skeleton as sk

needs_aeon = pytest.mark.skipif(importlib.util.find_spec("aeon") is None,
                                reason="aeon not installed: pip install -e '.[realdata]'")
needs_pybullet_data = pytest.mark.skipif(importlib.util.find_spec("pybullet_data") is None,
                                         reason="pybullet_data not installed: pip install -e '.[realdata]'")
G = 9.81


# ----------------------------------------------------------------------------------------------------------------
# BasicMotions
# ----------------------------------------------------------------------------------------------------------------

@needs_aeon
def test_basicmotions_adapter_as_a_downstream_dataset(tmp_path):
    from mujo.config import PreprocessConfig
    from mujo.pipelines.preprocess import preprocess

    x, y = read_ts(f"{basicmotions_dir()}/BasicMotions_TRAIN.ts")
    assert x.shape == (40, 6, 100) and sorted(set(y)) == ["Badminton", "Running", "Standing", "Walking"]
    run = str(tmp_path / "run")
    doc = ingest("basicmotions", basicmotions_dir(), run)
    assert doc["clips"] == 80 and doc["labels"] == ["standing", "walking", "running", "badminton"]
    assert {s: sum(c.values()) for s, c in doc["clip_counts"].items()} == {"train": 32, "val": 8, "test": 40}
    assert doc["gravity"] == "removed" and doc["stream_rates_hz"] == {"acc": [10.0]}
    clips = list(get_adapter("basicmotions").read(basicmotions_dir()))
    norm = {a: np.concatenate([np.linalg.norm(c.acc[:, 3:], axis=1) for c in clips if c.activity == a])
            for a in ("standing", "walking", "running", "badminton")}
    # linear acceleration (gravity removed): a still watch reads ~0, not 9.81; motion orders the magnitudes
    assert norm["standing"].mean() < 2.0 < norm["walking"].mean() < norm["running"].mean()
    assert all(np.abs(c.acc[:, :3]).max() == 0 for c in clips)  # one watch: the left slot is zeros
    # windowed by the same preprocessing as every dataset (in-process here; 10 s at 10 Hz -> 6 windows a case)
    manifest = preprocess({"basicmotions": 512}, run, PreprocessConfig(), executor="local")["basicmotions"]
    assert manifest.labels == ["standing", "walking", "running", "badminton"]
    assert manifest.rows_of("train") == 32 * 6 and manifest.rows_of("test") == 40 * 6


@needs_aeon
def test_basicmotions_as_byod_is_refused_without_gravity(tmp_path):
    """The bring-your-own path on BasicMotions: its accelerometer has gravity removed and the data holds nothing that
    tells gravity's direction, so the card is refused naming the field, not silently mis-converted."""
    x, y = read_ts(f"{basicmotions_dir()}/BasicMotions_TRAIN.ts")
    np.save(tmp_path / "x.npy", x.transpose(0, 2, 1))
    np.save(tmp_path / "y.npy", y.astype("U16"))
    card = {"name": "basicmotions_byod", "sampling_rate_hz": 10, "units": "m/s^2", "gravity": "removed",
            "channels": ["ax", "ay", "az", "gx", "gy", "gz"], "wrists": {"right": ["ax", "ay", "az"]},
            "labels": ["Standing", "Walking", "Running", "Badminton"], "data": {"format": "npy", "x": "x.npy",
                                                                                 "y": "y.npy"}}
    path = tmp_path / "card.yaml"
    path.write_text(yaml.safe_dump(card))
    with pytest.raises(CardError, match=r"card.yaml: field 'gravity_channels'.*will not guess"):
        ingest(None, None, str(tmp_path / "run"), card=str(path))


# ----------------------------------------------------------------------------------------------------------------
# Daphnet
# ----------------------------------------------------------------------------------------------------------------

@needs_aeon
def test_daphnet_recording_through_the_byod_path(tmp_path):
    (tmp_path / "recordings").mkdir()
    shutil.copy(daphnet_csv(), tmp_path / "recordings" / "S06R02E0.csv")
    card = {"name": "daphnet_s06", "title": "Daphnet freezing of gait, S06R02E0 (aeon's copy)",
            "source": "UCI Daphnet Freezing of Gait; bundled with aeon (aeon/datasets/data/Daphnet_S06R02E0)",
            "licence": "CC BY 4.0 (UCI Machine Learning Repository)",
            "sampling_rate_hz": 64, "units": "mg", "gravity": "included", "channels": list(DAPHNET_CHANNELS),
            "wrists": {"right": ["trunk_horiz_fwd", "trunk_horiz_lateral", "trunk_vert"]},  # stand-in: no wrist sensor
            "labels": [{"name": "no_freeze", "text": "walking without freezing", "values": [0]},
                       {"name": "freeze", "text": "freezing of gait", "values": [1]}],
            "data": {"format": "csv", "path": "recordings", "label_column": "is_anomaly",
                     "ignore_columns": ["timestamp"], "pattern": r"S(?P<subject>\d+)R\d+E\d+\.csv"}}
    path = tmp_path / "daphnet.yaml"
    path.write_text(yaml.safe_dump(card))
    doc = ingest(None, None, str(tmp_path / "run"), card=str(path))
    clips = list(get_adapter("byod", card=str(path)).read())
    # aeon's excerpt (04:40-06:30 of the session) has no freezing episode: one 110-s 'no_freeze' clip
    assert doc["clips"] == len(clips) == 1 and clips[0].activity == "no_freeze" and not doc["report"]["skipped"]
    assert clips[0].subject == "daphnet_s06-06" and clips[0].acc_hz == 64.0 and len(clips[0].acc) == 7040
    assert doc["labels"] == ["no_freeze", "freeze"] and doc["clip_counts"] == {"train": {"no_freeze": 1}}
    trunk = np.concatenate([c.acc[:, 3:] for c in clips])
    # mg -> m/s^2 with gravity included: the trunk sensor of a walking person reads ~1 g on average, mostly upward
    assert abs(np.linalg.norm(trunk, axis=1).mean() - G) < 1.0
    assert np.argmax(np.abs(trunk.mean(axis=0))) == 2 and trunk.mean(axis=0)[2] > 8.0
    assert np.abs(trunk).max() < 8 * G


# ----------------------------------------------------------------------------------------------------------------
# DeepMimic: rotations -> forward kinematics -> virtual IMU
# ----------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def deepmimic():
    if importlib.util.find_spec("pybullet_data") is None:
        pytest.skip("pybullet_data not installed: pip install -e '.[realdata]'")
    out = {}
    for name in ("walk", "run", "jump", "punch", "kick"):
        frames, times = read_deepmimic(f"{deepmimic_dir()}/humanoid3d_{name}.txt")
        positions = deepmimic_positions(frames)
        cycles = 5 if name in ("walk", "run") else 1  # loops ("wrap") continue; the others are one take
        tiled, stamps = tile_cycle(positions, times, cycles)
        pose, acc, prep = prepare_pose(resample_times(tiled, stamps, 50.0), DEEPMIMIC, 50.0, units="m", up="+y")
        out[name] = {"positions": positions, "times": times, "pose": pose, "acc": acc, "prep": prep,
                     "period": times[-1] - times[0]}
    return out


@needs_pybullet_data
def test_deepmimic_forward_kinematics_is_a_rigid_upright_body(deepmimic):
    walk = deepmimic["walk"]
    assert 29.0 < 1.0 / np.median(np.diff(walk["times"])) < 31.0  # the walk is captured at 30 Hz
    for name, m in deepmimic.items():
        p = m["positions"]
        bones = [(5, 6), (6, 7), (9, 10), (10, 11), (13, 14), (14, 15), (16, 17), (17, 18), (1, 2)]
        lengths = np.stack([np.linalg.norm(p[:, a] - p[:, b], axis=-1) for a, b in bones])
        assert lengths.std(axis=1).max() < 1e-9, name  # forward kinematics keeps every bone rigid
        assert m["prep"].swapped_lr is False and m["prep"].chirality > 0.5, (name, m["prep"])  # toes ahead, right right
    # walking: pelvis about 0.85 m high, feet on the floor (y up), thigh + shin about 0.83 m
    p = walk["positions"]
    assert 0.75 < p[:, 0, 1].mean() < 0.95 and p[:, [7, 11], 1].min() < 0.12
    assert 0.8 < np.linalg.norm(p[0, 5] - p[0, 6]) + np.linalg.norm(p[0, 6] - p[0, 7]) < 0.9
    pose = walk["pose"]  # in the platform's frame: z up, metres, 50 Hz
    assert pose.shape[1:] == (17, 3) and 0.75 < pose[:, sk.PELVIS, 2].mean() < 0.95


@needs_pybullet_data
def test_deepmimic_virtual_imu_is_physically_plausible(deepmimic):
    stats = {}
    for name, m in deepmimic.items():
        acc, pose = m["acc"].astype(np.float64), m["pose"].astype(np.float64)
        norm = np.linalg.norm(acc.reshape(-1, 2, 3), axis=-1)
        assert np.isfinite(acc).all() and norm.max() < 16 * G, name  # within a consumer watch's +-16 g range
        stats[name] = {"mean": norm.mean(), "std": norm.std(), "max": norm.max()}
        # gravity: rotated back to the world, the specific force averages to +g upward over a looped cycle
        smooth = imu.gaussian_smooth(pose, imu.DEFAULT_SMOOTH_SIGMA_S * 50.0)
        rot = imu.forearm_frame(smooth[:, sk.R_ELBOW], smooth[:, sk.R_WRIST], smooth[:, sk.R_SHOULDER])
        world = np.einsum("tij,tj->ti", rot, acc[:, 3:])
        if name in ("walk", "run"):  # over whole cycles of a loop the velocity returns: mean acceleration 0
            n = int(round(m["period"] * 50.0))
            inner = world[n: 4 * n]  # the middle three of five cycles, away from the smoothing's edges
            assert np.abs(inner.mean(axis=0) - [0.0, 0.0, G]).max() < 0.5, (name, inner.mean(axis=0))
    # magnitudes: walking swings the wrist about 1 g; running and punching move it harder
    assert 8.5 < stats["walk"]["mean"] < 11.5 and stats["walk"]["max"] < 3 * G
    assert stats["run"]["std"] > stats["walk"]["std"] and stats["punch"]["max"] > stats["walk"]["max"]


@needs_pybullet_data
def test_deepmimic_adapter_is_a_small_real_corpus(tmp_path):
    doc = ingest("deepmimic", deepmimic_dir(), str(tmp_path / "run"))
    clips = {c.activity: c for c in get_adapter("deepmimic").read(deepmimic_dir())}
    skipped = {s["item"] for s in doc["report"]["skipped"]}
    assert skipped == {"kick", "punch"} and doc["clips"] == 13 == len(clips)  # single takes under one window
    assert set(doc["clip_counts"]["val"]) == {"dance_b", "spin"}
    walk = clips["walk"]
    assert walk.texts == ["a person walks forward"] and walk.extra["loop"] and 6.0 <= len(walk.pose) / 50.0 < 7.5
    assert walk.pose.shape[1:] == (17, 3) and walk.acc.shape == (len(walk.pose), 6)
    assert abs(np.linalg.norm(walk.acc[:, 3:], axis=1).mean() - 11.0) < 1.5
