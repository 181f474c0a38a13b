"""Tests for the dataset adapters (mujo.adapters): each published layout on tiny fixtures with its quirks, the
bring-your-own-data path and its errors, writing raw clips + dataset.json, and the ingest job.

Every adapter's clips are run through ``mujo.data.windows.clip_windows`` (what preprocessing does) to check the
windows' labels, units and split.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from _fixtures_datasets import (
    G,
    MMFIT_T0_MS,
    byod_csv_card,
    byod_npy_card,
    byod_rotation_x,
    mmfit_frame_time,
    moving_skeleton,
    ntu_from_h36m,
    standing_skeleton,
    write_byod_csv,
    write_byod_npy,
    write_card,
    write_flag3d,
    write_mhealth,
    write_mmfit_workout,
    write_motionsense,
    write_myogym,
)
from mujo import storage
from mujo.adapters import ADAPTERS, CardError, get_adapter, ingest, list_cards, load_card, write_raw
from mujo.adapters.byod import ByodAdapter, load_byod_card
from mujo.adapters.common import lateral_chirality, normalize_pose, to_ms2, up_rotation
from mujo.data import skeleton as sk
from mujo.data.clips import rows_to_clips
from mujo.data.windows import clip_windows
from mujo.schema import SampleFormat

ROOT = Path(__file__).resolve().parent.parent
FMT = SampleFormat(video_dim=8)


def windows(clips, labels):
    """All windows of the clips (no trimming), concatenated per column."""
    label_map = {name: i for i, name in enumerate(labels)}
    batches = [clip_windows(c, FMT, label_map, trim_fraction=0.0) for c in clips]
    return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


def norms(acc: np.ndarray, wrist: str) -> np.ndarray:
    block = acc[..., 0:3] if wrist == "left" else acc[..., 3:6]
    return np.linalg.norm(block, axis=-1)


# ----------------------------------------------------------------------------------------------------------------------
# Cards and registry
# ----------------------------------------------------------------------------------------------------------------------

def test_every_adapter_has_a_valid_card() -> None:
    assert set(list_cards()) == {"mmfit", "motionsense", "mhealth", "myogym", "flag3d", "humanml3d", "kitml",
                                 "basicmotions", "deepmimic"}
    assert set(ADAPTERS) == set(list_cards()) | {"byod", "corpus"}
    for name in list_cards():
        card = load_card(name)
        adapter = get_adapter(name)
        assert card.name == name == adapter.dataset_name and card.adapter == name
        assert card.source and card.licence and card.citation and card.sampling_rates_hz and card.split
        assert set(card.wrists) == {"left", "right"}
        adapter.resolve_options({})  # card option defaults are valid
    assert len(load_card("flag3d").labels) == 60 and len(load_card("myogym").labels) == 30
    assert load_card("mmfit").split.extra["unseen_test"] == ["00", "05", "12", "13", "20"]
    with pytest.raises(KeyError, match="unknown dataset adapter"):
        get_adapter("nope")
    with pytest.raises(ValueError, match="unknown option"):
        get_adapter("mhealth").resolve_options({"include_nul": True})
    with pytest.raises(ValueError, match="must be of type bool"):
        get_adapter("mhealth").resolve_options({"include_null": "sometimes"})
    assert get_adapter("mhealth").resolve_options({"include_null": "true"})["include_null"] is True


def test_pose_convention_helpers() -> None:
    world = standing_skeleton()[None]
    assert lateral_chirality(world) > 0.9
    assert lateral_chirality(world[:, [0, 4, 5, 6, 1, 2, 3, 7, 8, 9, 10, 14, 15, 16, 11, 12, 13]]) < -0.9
    for up in ("+x", "-x", "+y", "-y", "+z", "-z"):
        r = up_rotation(up)
        assert np.isclose(np.linalg.det(r), 1.0)
    cam = np.stack([world[..., 0], -world[..., 2], world[..., 1]], axis=-1) * 1000  # camera frame, mm
    pose, conv = normalize_pose(np.repeat(cam, 5, axis=0), units="auto", up="auto", lr="auto")
    assert (conv.units, conv.up, conv.swapped_lr) == ("mm", "-y", False)
    np.testing.assert_allclose(pose[0], world[0], atol=1e-6)
    assert np.allclose(to_ms2(np.array([1.0]), "g"), G) and np.allclose(to_ms2(np.array([1000.0]), "mg"), G)


# ----------------------------------------------------------------------------------------------------------------------
# MM-Fit
# ----------------------------------------------------------------------------------------------------------------------

@pytest.fixture()
def mmfit_root(tmp_path: Path) -> Path:
    write_mmfit_workout(tmp_path, "01")                 # train, participant 0
    write_mmfit_workout(tmp_path, "09", swap_lr=True)   # seen test, left-first joint order (EDA notebook)
    write_mmfit_workout(tmp_path, "00", left_watch=False)  # unseen test, left watch missing
    return tmp_path


def test_mmfit_sets_pose_and_watches(mmfit_root: Path) -> None:
    adapter = get_adapter("mmfit")
    clips = list(adapter.read(str(mmfit_root)))
    assert [(c.extra["workout"], c.activity) for c in clips] == [("01", "squats"), ("01", "bicep_curls"),
                                                                ("09", "squats"), ("09", "bicep_curls")]
    squats = clips[0]
    assert (squats.split, squats.subject, squats.label_text) == ("train", "mmfit-p00", "squats")
    assert clips[2].split == "test" and clips[2].subject == "mmfit-p01"
    # pose: the labelled frames 130..369 inclusive, metres, z up, Human3.6M order (missing frames interpolated)
    assert squats.pose.shape == (240, 17, 3) and squats.pose_hz == pytest.approx(30.0, rel=1e-3)
    world = moving_skeleton(np.arange(130, 370), 30.0) + [0.0, 3.0, 0.0]  # 3 m from the camera
    present = (np.arange(130, 370) < 200) | (np.arange(130, 370) >= 205)  # frames 200-204 are missing
    np.testing.assert_allclose(squats.pose[present], world[present], atol=1e-5)
    np.testing.assert_allclose(squats.pose, world, atol=1e-2)  # the gap is interpolated linearly
    assert (squats.pose[:, sk.HEAD, 2] > squats.pose[:, sk.PELVIS, 2]).all()
    conv = adapter.report.details["pose_conventions"]
    assert conv["w01"]["units"] == "mm" and conv["w01"]["up"] == "-y" and not conv["w01"]["swapped_lr"]
    assert conv["w09"]["swapped_lr"]  # the left-first order was detected and put right
    np.testing.assert_allclose(clips[2].pose[present], world[present], atol=1e-5)
    # watches: 8 s at 100 Hz; the right watch reads the squats' gravity only (a mis-cut segment would mix in
    # the neighbouring x/y gravity), the curls' in the curls set
    assert squats.acc.shape == (800, 6) and squats.acc_hz == 100.0
    np.testing.assert_allclose(squats.acc[:, 3:6], np.tile([0, 0, 9.81], (800, 1)), atol=1e-6)
    np.testing.assert_allclose(clips[1].acc[:, 3:6], np.tile([9.81, 0, 0], (800, 1)), atol=1e-6)


def test_mmfit_frame_alignment_30hz_camera_100hz_watches(mmfit_root: Path) -> None:
    """The IMU is cut by its camera-frame column and resampled by its timestamps: the clip's IMU starts at the
    time of the set's first camera frame (the left watch's x is the time since camera frame 100, in seconds)."""
    adapter = get_adapter("mmfit")
    clip = next(iter(adapter.read(str(mmfit_root), workouts=["01"])))
    clock = adapter.report.details["clocks"]["w01"]
    assert clock["fitted"] and clock["camera_hz"] == pytest.approx(30.0, abs=0.01)
    start_s = (mmfit_frame_time(130) - MMFIT_T0_MS) / 1000.0  # 1.0 s after the first camera frame
    expected = start_s + np.arange(len(clip.acc)) / 100.0
    np.testing.assert_allclose(clip.acc[:-2, 0], expected[:-2], atol=5e-3)
    np.testing.assert_allclose(clip.acc[:, 0], expected, atol=0.02)  # the cut's last IMU row is held to the end
    assert len(clip.acc) / clip.acc_hz == pytest.approx(len(clip.pose) / clip.pose_hz, abs=0.011)
    assert clip.extra["t0_ms"] == pytest.approx(mmfit_frame_time(130), abs=2.0)


def test_mmfit_windows_no_activity_and_splits(mmfit_root: Path) -> None:
    adapter = get_adapter("mmfit")
    labels = adapter.labels()
    assert len(labels) == 10 and "no_activity" not in labels
    clips = list(adapter.read(str(mmfit_root)))
    w = windows(clips, labels)
    assert set(w["activity"]) == {"squats", "bicep_curls"}
    assert all(labels[c] == a for c, a in zip(w["class_id"], w["activity"]))
    assert set(w["split"]) == {"train", "test"} and w["has_pose"].all() and w["has_acc"].all()
    assert np.allclose(norms(w["acc"], "right"), 9.81, atol=1e-4)
    assert adapter.report.counts["no_activity_excluded"] == 10  # 5 null segments in each of 2 workouts
    assert any(s["item"] == "w00" for s in adapter.report.skipped)  # unseen workout, test_set=seen

    # with the No Activity class: the gaps and the row labelled non_activity, short ones listed as skipped
    labels = adapter.labels(include_no_activity=True)
    assert labels[-1] == "no_activity" and len(labels) == 11
    clips = list(adapter.read(str(mmfit_root), include_no_activity=True, workouts=["01"]))
    null = [c for c in clips if c.activity == "no_activity"]
    assert [c.extra["frames"] for c in null] == [(700, 819), (820, 999)]
    assert null[0].label_text == "no activity"
    short = [s for s in adapter.report.skipped if "shorter than min_seconds" in s["reason"]]
    assert len(short) == 3  # gaps 100-129, 370-419, 660-699
    w = windows(clips, labels)
    assert set(w["activity"]) == {"squats", "bicep_curls", "no_activity"}

    # the unseen-subject test set; the workout without a left watch gets zeros there
    clips = list(adapter.read(str(mmfit_root), test_set="unseen"))
    unseen = [c for c in clips if c.extra["workout"] == "00"]
    assert unseen and all(c.split == "test" and c.subject == "mmfit-p02" for c in unseen)
    assert all(np.all(c.acc[:, 0:3] == 0) and c.extra["missing_watches"] == ["left"] for c in unseen)
    assert not any(c.extra["workout"] == "09" for c in clips)
    skipped = list(adapter.read(str(mmfit_root), test_set="unseen", missing_watch="skip", workouts=["00"]))
    assert skipped == [] and len(adapter.report.skipped) == 2


# ----------------------------------------------------------------------------------------------------------------------
# MotionSense, MHEALTH, MyoGym, FLAG3D
# ----------------------------------------------------------------------------------------------------------------------

def test_motionsense_units_sign_and_gravity_plus_user(tmp_path: Path) -> None:
    write_motionsense(tmp_path)
    adapter = get_adapter("motionsense")
    clips = {c.activity: c for c in adapter.read(str(tmp_path))}
    assert set(clips) == {"standing", "stairs_down", "jogging"}
    assert any("sit_5" in s["item"] for s in adapter.report.skipped)  # 1 s < min_seconds, listed
    std = clips["standing"]
    assert (std.split, std.subject, std.acc_hz) == ("train", "motionsense-sub01", 50.0)
    # Core Motion gravity (0, 0, -1) g while lying face up -> specific force +9.81 m/s^2 on z, right slot
    np.testing.assert_allclose(std.acc[:, 3:6], np.tile([0, 0, G], (len(std.acc), 1)), atol=1e-5)
    assert np.all(std.acc[:, 0:3] == 0)
    # total = -(gravity + userAcceleration) * g
    dws = clips["stairs_down"]
    t = np.arange(len(dws.acc)) / 50.0
    expected = -G * (np.array([0.6, -0.8, 0.0]) + 0.3 * np.stack([np.sin(4 * np.pi * t), np.cos(4 * np.pi * t),
                                                                    0 * t], 1))
    np.testing.assert_allclose(dws.acc[:, 3:6], expected, atol=1e-4)
    assert (dws.split, clips["jogging"].split, dws.label_text) == ("val", "test", "walking downstairs")
    w = windows(list(clips.values()), adapter.labels())
    still = w["activity"] == "standing"
    assert np.allclose(norms(w["acc"][still], "right"), G, atol=1e-4)
    assert set(w["split"]) == {"train", "val", "test"}
    left = get_adapter("motionsense").read(str(tmp_path), slot="left")
    assert all(np.all(c.acc[:, 3:6] == 0) and np.any(c.acc[:, 0:3] != 0) for c in left)


def test_mhealth_null_label_and_columns(tmp_path: Path) -> None:
    write_mhealth(tmp_path)
    adapter = get_adapter("mhealth")
    clips = list(adapter.read(str(tmp_path)))
    assert [(c.subject, c.activity) for c in clips] == [("mhealth-s01", "standing_still"), ("mhealth-s01", "walking"),
                                                         ("mhealth-s09", "standing_still"), ("mhealth-s09", "walking")]
    assert adapter.report.counts["null_rows_excluded"] == 2 * 50 * (3 + 1 + 0.5 + 2.5)
    assert sum("label 5" in s["item"] for s in adapter.report.skipped) == 2  # 1-s climbing runs: too short
    assert [c.split for c in clips] == ["train", "train", "test", "test"]
    still = clips[0]
    assert still.acc.shape == (250, 6) and np.all(still.acc[:, 0:3] == 0)
    assert np.allclose(norms(still.acc, "right"), 9.81, atol=1e-3)  # columns 15-17, not chest/ankle
    assert still.label_text == "standing still"
    w = windows(clips, adapter.labels())
    assert set(w["activity"]) == {"standing_still", "walking"} and set(w["split"]) == {"train", "test"}

    labels = adapter.labels(include_null=True)
    assert labels[-1] == "no_activity" and len(labels) == 13
    clips = list(adapter.read(str(tmp_path), include_null=True))
    null = [c for c in clips if c.activity == "no_activity"]
    assert [len(c.acc) for c in null] == [150, 125, 150, 125]  # the 3-s and 2.5-s null runs; 1 s and 0.5 s skipped
    w = windows(clips, labels)
    assert labels[w["class_id"][w["activity"] == "no_activity"][0]] == "no_activity"


def test_myogym_columns_timestamps_and_gaps(tmp_path: Path) -> None:
    write_myogym(tmp_path)
    adapter = get_adapter("myogym")
    clips = list(adapter.read(str(tmp_path)))
    assert [(c.subject, c.activity) for c in clips] == [
        ("myogym-s01", "dumbbell_alternate_bicep_curl"), ("myogym-s01", "seated_cable_rows"),
        ("myogym-s09", "side_lateral_raise"), ("myogym-s09", "side_lateral_raise")]  # split at the 5-s gap
    assert [c.split for c in clips] == ["train", "train", "test", "test"]
    assert adapter.report.counts["null_rows_excluded"] > 0
    curl = clips[0]
    assert curl.acc_hz == 50.0 and abs(len(curl.acc) - 6.0 * 50) <= 2  # resampled by timestamps, not by rows
    assert np.allclose(norms(curl.acc, "right"), G, atol=0.02) and np.all(curl.acc[:, 0:3] == 0)
    assert curl.label_text == "dumbbell alternate bicep curl"
    w = windows(clips, adapter.labels())
    assert np.allclose(norms(w["acc"], "right"), G, atol=0.02)
    assert set(w["split"]) == {"train", "test"}
    with pytest.raises(ValueError, match="do not fit"):
        list(adapter.read(str(tmp_path), acc_columns=[10, 11, 17]))


def test_flag3d_joint_mapping_split_and_virtual_imu(tmp_path: Path) -> None:
    truth = write_flag3d(tmp_path)
    adapter = get_adapter("flag3d")
    clips = list(adapter.read(str(tmp_path)))
    assert [(c.clip_id, c.split, c.subject, c.activity) for c in clips] == [
        ("flag3d-S002C002M001P002A001R001", "train", "flag3d-p002", "a001"),
        ("flag3d-S002C002M001P001A005R002", "test", "flag3d-p001", "a005")]
    assert any("P011" in s["item"] for s in adapter.report.skipped)
    for clip in clips:
        assert clip.acc is None and clip.pose_hz == 30.0
        np.testing.assert_allclose(clip.pose, truth[clip.extra["frame_dir"]], atol=1e-6)
    # joint by joint: e.g. thorax <- SpineShoulder (20), r_wrist <- WristRight (10)
    kp = ntu_from_h36m(truth["S002C002M001P002A001R001"])  # what the file holds for the first take
    np.testing.assert_allclose(clips[0].pose[:, sk.THORAX], kp[:, 20], atol=1e-6)
    np.testing.assert_allclose(clips[0].pose[:, sk.R_WRIST], kp[:, 10], atol=1e-6)
    np.testing.assert_allclose(clips[0].pose[:, sk.NECK], kp[:, 2], atol=1e-6)
    w = windows(clips, adapter.labels())
    assert w["has_acc"].all() and w["has_pose"].all()  # virtual IMU from the pose
    assert set(w["activity"]) == {"a001", "a005"} and list(adapter.labels()).index("a005") == 4
    assert 5 < np.median(norms(w["acc"], "right")) < 15
    assert [c.split for c in adapter.read(str(tmp_path), val_as="val")] == ["train", "val"]


# ----------------------------------------------------------------------------------------------------------------------
# Bring your own data
# ----------------------------------------------------------------------------------------------------------------------

def test_byod_csv_100hz_g_gravity_removed_one_wrist(tmp_path: Path) -> None:
    info = write_byod_csv(tmp_path)
    card = write_card(tmp_path / "card.yaml", byod_csv_card())
    adapter = get_adapter("byod", card=card)
    clips = list(adapter.read())  # source defaults to the card's folder
    assert [(c.subject, c.activity, c.split) for c in clips] == [
        ("wrist_study-s1", "walking", "train"), ("wrist_study-s1", "standing", "train"),
        ("wrist_study-s2", "standing", "test")]
    assert all(c.acc_hz == 100.0 and np.all(c.acc[:, 0:3] == 0) for c in clips)  # one wrist: left zeros
    stand = clips[1]
    # gravity put back from the API's gravity channels, g -> m/s^2: a still wrist reads 9.81 along gravity
    np.testing.assert_allclose(stand.acc[:, 3:6], np.tile(info["gravity_g"] * G, (len(stand.acc), 1)), atol=1e-5)
    assert len(clips[0].acc) == 400 and len(stand.acc) == 400
    assert adapter.report.counts["null_samples_excluded"] == 100
    refused = [s for s in adapter.report.skipped if "s3_tiny" in s["item"]]
    assert refused and "refused" in refused[0]["reason"] and "shorter than min_seconds" in refused[0]["reason"]
    w = windows(clips, adapter.labels())
    assert set(w["activity"]) == {"walking", "standing"}
    assert np.allclose(norms(w["acc"][w["activity"] == "standing"], "right"), G, atol=1e-4)
    assert set(w["split"]) == {"train", "test"}


def test_byod_short_recordings_pad_or_error(tmp_path: Path) -> None:
    write_byod_csv(tmp_path)
    padded = list(get_adapter("byod", card=write_card(tmp_path / "pad.yaml",
                                                       byod_csv_card(short_recordings="pad"))).read())
    tiny = [c for c in padded if "s3_tiny" in c.extra["recording"]]
    assert len(tiny) == 1 and len(tiny[0].acc) == 286 and tiny[0].split == "test"  # 2.86 s at 100 Hz
    assert clip_windows(tiny[0], FMT, {"walking": 0, "standing": 1}, trim_fraction=0.15)["class_id"].size == 1
    with pytest.raises(CardError, match="short_recordings") as err:
        list(get_adapter("byod", card=write_card(tmp_path / "err.yaml",
                                                 byod_csv_card(short_recordings="error"))).read())
    assert "s3_tiny" in str(err.value)


def test_byod_npy_mg_and_orientation(tmp_path: Path) -> None:
    write_byod_npy(tmp_path)
    adapter = get_adapter("byod", card=write_card(tmp_path / "card.yaml", byod_npy_card()))
    clips = list(adapter.read())
    assert [(c.subject, c.activity, c.split, len(c.acc)) for c in clips] == [
        ("npy_study-u1", "rest", "train", 240), ("npy_study-u2", "rest", "train", 180),  # NaN padding stripped
        ("npy_study-u3", "wave", "test", 240)]
    assert np.allclose(norms(clips[0].acc, "left"), G) and np.all(clips[0].acc[:, 3:6] == 0)
    assert adapter.labels() == ["rest", "wave"]

    # gravity removed, orientation quaternions given: gravity = R^T (0, 0, g) in the sensor frame
    rot = byod_rotation_x(np.pi / 3)
    w_ = np.sqrt(1 + np.trace(rot)) / 2
    q = np.array([w_, (rot[2, 1] - rot[1, 2]) / (4 * w_), (rot[0, 2] - rot[2, 0]) / (4 * w_),
                  (rot[1, 0] - rot[0, 1]) / (4 * w_)])
    x = np.zeros((1, 200, 7))
    x[0, :, 3:] = q
    np.save(tmp_path / "X.npy", x)
    np.save(tmp_path / "y.npy", np.array(["rest"]))
    card = byod_npy_card(channels=["x", "y", "z", "qw", "qx", "qy", "qz"], gravity="removed", units="m/s^2",
                         orientation={"channels": {"left": ["qw", "qx", "qy", "qz"]}}, split=None)
    card["data"].pop("subjects")
    clips = list(get_adapter("byod", card=write_card(tmp_path / "q.yaml", card)).read())
    np.testing.assert_allclose(clips[0].acc[0, 0:3], rot.T @ [0, 0, G], atol=1e-9)
    assert clips[0].split == "train"  # no split in the card: split_default


def test_byod_card_errors_name_the_field(tmp_path: Path) -> None:
    write_byod_csv(tmp_path)

    def error(card: dict, name: str = "c.yaml") -> CardError:
        with pytest.raises(CardError) as exc:
            list(get_adapter("byod", card=write_card(tmp_path / name, card)).read())
        assert name in str(exc.value) or exc.value.source.endswith(".csv")
        return exc.value

    assert error(byod_csv_card(units="furlongs/s^2")).field == "units"
    card = byod_csv_card()
    del card["sampling_rate_hz"]
    e = error(card)
    assert e.field == "sampling_rate_hz" and "missing" in str(e)
    assert error(byod_csv_card(gravity_channels=None)).field == "gravity_channels"
    assert error(byod_csv_card(wrists={"right": ["ax", "ay", "az_typo"]})).field == "wrists.right"
    assert error(byod_csv_card(channels=["ax", "ay", "az", "gx", "gy", "gz", "mx"])).field == "channels"  # no mx
    assert error(byod_csv_card(data={"format": "csv", "path": "recordings"})).field == "data"
    assert error(byod_csv_card(labels=["walking"])).field == "labels"  # 'stand' in the data
    assert error(byod_csv_card(sampling_rate_hz=0)).field == "sampling_rate_hz"
    write_byod_csv(tmp_path, extra_column=True)  # an undeclared column: the card contradicts the file
    e = error(byod_csv_card())
    assert e.field == "channels" and "temperature" in str(e)

    # NumPy: a channel count that contradicts the card
    write_byod_npy(tmp_path, channels=4)
    e = error(byod_npy_card(), "n.yaml")
    assert e.field == "channels" and "4 channels" in str(e)
    with pytest.raises(CardError, match="does not exist"):
        load_byod_card(tmp_path / "missing.yaml")


# ----------------------------------------------------------------------------------------------------------------------
# Writing raw clips + dataset.json, the ingest job
# ----------------------------------------------------------------------------------------------------------------------

def test_write_raw_parts_and_dataset_json(tmp_path: Path) -> None:
    write_mhealth(tmp_path / "src")
    out = tmp_path / "run"
    doc = ingest("mhealth", str(tmp_path / "src"), str(out), clips_per_part=3, include_null=True)
    raw = out / "raw" / "mhealth"
    assert sorted(p.name for p in raw.iterdir()) == ["dataset.json", "part-00000.parquet", "part-00001.parquet",
                                                     "part-00002.parquet"]
    card = json.loads((raw / "dataset.json").read_text())
    assert card == json.loads(json.dumps(doc))
    assert card["name"] == "mhealth" and card["labels"][-1] == "no_activity" and card["clips"] == 8
    assert card["splits"] == {"train": 1, "test": 1} and card["subjects"]["test"] == ["mhealth-s09"]
    assert card["options"]["include_null"] is True and card["citation"] and card["card"]["licence"]
    assert card["report"]["skipped_count"] == 6 and card["label_text"]["standing_still"] == "standing still"
    clips = [c for p in sorted(raw.glob("part-*.parquet")) for c in rows_to_clips(pq.read_table(p).to_pydict())]
    assert len(clips) == 8 and clips[0].acc.shape[1] == 6 and clips[0].acc_hz == 50.0
    # a re-ingest with fewer clips leaves no stale part behind
    doc = ingest("mhealth", str(tmp_path / "src"), str(out), clips_per_part=3)
    assert sorted(p.name for p in raw.glob("part-*")) == ["part-00000.parquet", "part-00001.parquet"]
    assert doc["removed_stale_parts"] == 1 and doc["labels"][-1] == "jump_front_and_back" and doc["clips"] == 4
    with pytest.raises(ValueError, match="not in the dataset's labels"):
        write_raw("mhealth", iter(clips), str(tmp_path / "x"), load_card("mhealth"), labels=["walking"])


@pytest.mark.s3
def test_ingest_to_s3(tmp_path: Path, s3_root: str) -> None:
    write_motionsense(tmp_path)
    doc = ingest("motionsense", str(tmp_path), f"{s3_root}/adapters-run")
    raw = f"{s3_root}/adapters-run/raw/motionsense"
    assert storage.read_json(storage.join(raw, "dataset.json"))["clips"] == doc["clips"] == 3
    assert [p.rsplit("/", 1)[1] for p in storage.list_files(raw, ".parquet")] == ["part-00000.parquet"]


def test_ingest_job_entrypoint(tmp_path: Path) -> None:
    write_byod_csv(tmp_path)
    card = write_card(tmp_path / "card.yaml", byod_csv_card())
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHONPATH")}
    job = [sys.executable, str(ROOT / "jobs" / "ingest.py")]
    # the three runs side by side (each spends its time importing, on one core); the refused ones get their own --out
    runs = [["--card", str(card), "--out", str(tmp_path / "run")],
            ["--dataset", "mhealth", "--source", str(tmp_path), "--out", str(tmp_path / "bad-option"), "--option",
             "include_nul=true"],
            ["--card", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "bad-card")]]
    procs = [subprocess.Popen(job + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for args in runs]
    try:
        outputs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    run, bad_option, bad_card = (subprocess.CompletedProcess(p.args, p.returncode, *out)
                                 for p, out in zip(procs, outputs))
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["name"] == "wrist_study" and summary["clips"] == 3
    assert (tmp_path / "run" / "raw" / "wrist_study" / "dataset.json").exists()
    assert bad_option.returncode == 2 and "unknown option" in bad_option.stderr
    assert bad_card.returncode == 2 and "nope.yaml" in bad_card.stderr


def test_byod_adapter_has_no_options(tmp_path: Path) -> None:
    write_byod_csv(tmp_path)
    adapter = ByodAdapter(write_card(tmp_path / "card.yaml", byod_csv_card()))
    with pytest.raises(ValueError, match="unknown option"):
        list(adapter.read(str(tmp_path), slot="left"))
