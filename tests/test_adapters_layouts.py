"""The adapters against the datasets' real layouts (issue 19): what a user's first ingest meets.

* MotionSense as downloaded: the sibling ``B_Accelerometer_data``/``C_Gyroscope_data`` folders (x, y, z only) and the
  doubled ``A_DeviceMotion_data/A_DeviceMotion_data`` of the mirrors;
* FLAG3D under both file names (``flag3d.pkl``, ``flag3d_keypoint.pkl``), unpickled by a restricted unpickler from a
  stream, its first-frame jump and its four ``M###`` variants of every take;
* MM-Fit workouts whose pose frame is mirrored (and whose joints are left-first), paired with the watches by the data.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from _fixtures_datasets import (
    G,
    MMFIT_F0,
    write_flag3d,
    write_mmfit_workout,
    write_motionsense,
    write_motionsense_download,
)
from mujo import storage
from mujo.adapters import get_adapter, ingest
from mujo.adapters import flag3d as flag3d_module
from mujo.data import skeleton as sk


# ----------------------------------------------------------------------------------------------------------------------
# MotionSense
# ----------------------------------------------------------------------------------------------------------------------

def test_motionsense_download_root_with_sibling_and_doubled_folders(tmp_path: Path) -> None:
    data = write_motionsense_download(tmp_path)
    adapter = get_adapter("motionsense")
    for source in (tmp_path, data, data / "A_DeviceMotion_data"):  # any of the folders a user may point at
        clips = list(adapter.read(str(source)))
        assert sorted(c.activity for c in clips) == ["jogging", "stairs_down", "standing"]
        assert all("B_Acc" not in c.extra["file"] and "C_Gyr" not in c.extra["file"] for c in clips)
    # read from A only: total = -(gravity + userAcceleration) g, the B/C x, y, z columns are not mistaken for it
    still = next(c for c in clips if c.activity == "standing")
    np.testing.assert_allclose(still.acc[:, 3:6], np.tile([0, 0, G], (len(still.acc), 1)), atol=1e-5)
    assert [c.clip_id for c in clips] == ["motionsense-dws_1-sub17", "motionsense-jog_9-sub22",
                                          "motionsense-std_6-sub01"]
    clips = list(adapter.read(str(data)))
    skipped = {s["item"]: s["reason"] for s in adapter.report.skipped}
    assert "x, y, z only" in skipped["B_Accelerometer_data"] and "4 <act>_<trial>" in skipped["C_Gyroscope_data"]
    assert adapter.report.counts["files_outside_device_motion"] == 8
    assert adapter.report.details["skipped_folders"] == {"B_Accelerometer_data": 4, "C_Gyroscope_data": 4}
    assert not any("MACOSX" in s["item"] for s in adapter.report.skipped)  # resource forks are not data

    # pointing at B alone says where to point instead
    with pytest.raises(FileNotFoundError, match="found only .*B_Accelerometer_data.*point --source"):
        list(adapter.read(str(data / "B_Accelerometer_data")))
    # the whole download ingests (it used to abort with "missing columns")
    doc = ingest("motionsense", str(tmp_path), str(tmp_path / "run"))
    assert doc["clips"] == 3 and doc["report"]["counts"]["files_outside_device_motion"] == 8


def test_motionsense_same_recording_twice_is_read_once(tmp_path: Path) -> None:
    write_motionsense(tmp_path)  # A_DeviceMotion_data/...
    write_motionsense(tmp_path, tmp_path / "A_DeviceMotion_data" / "A_DeviceMotion_data")  # extracted again inside
    adapter = get_adapter("motionsense")
    clips = list(adapter.read(str(tmp_path)))
    assert len(clips) == 3 and len({c.clip_id for c in clips}) == 3
    assert all(c.extra["file"].count("A_DeviceMotion_data") == 1 for c in clips)  # the shallower copy is read
    dup = [s for s in adapter.report.skipped if "second copy" in s["reason"]]
    assert len(dup) == 4 and adapter.report.counts["duplicate_files"] == 4


# ----------------------------------------------------------------------------------------------------------------------
# FLAG3D
# ----------------------------------------------------------------------------------------------------------------------

def test_flag3d_download_file_name_variants_and_first_frame(tmp_path: Path) -> None:
    """The download's ``flag3d_keypoint.pkl`` (protocol 2, numpy labels, as pyskl's tooling writes), four M###
    variants per take and the extra first frame."""
    truth = write_flag3d(tmp_path, "flag3d_keypoint.pkl", variants=4, first_frame_jump=True, protocol=2,
                         numpy_labels=True)
    adapter = get_adapter("flag3d")
    clips = list(adapter.read(str(tmp_path)))  # a folder: used to raise FileNotFoundError for flag3d.pkl
    assert adapter.report.details["file"]["read"] == "flag3d_keypoint.pkl"
    # one clip per take (performer, activity, repetition): the M002-M004 copies are counted, not emitted
    assert [(c.clip_id, c.split, c.extra["take"]) for c in clips] == [
        ("flag3d-S002C002M001P002A001R001", "train", "S002C002P002A001R001"),
        ("flag3d-S002C002M001P001A005R002", "test", "S002C002P001A005R002")]
    variants = adapter.report.details["variants"]
    assert variants["takes"] == 3 and variants["annotations"] == 12 and variants["variants_per_take"] == {"4": 3}
    assert (variants["identical_to_first"], variants["differing_from_first"]) == (8, 1)
    assert variants["max_abs_diff"] == pytest.approx(0.001, abs=1e-6)
    assert adapter.report.counts["variant_copies_not_emitted"] == 9
    assert sum("P011" in s["item"] for s in adapter.report.skipped) == 1  # the take in no split list, once
    # the first frame (up to ~0.45 m from the next, later frames < 1 cm apart) is dropped before anything derives
    # accelerations from the pose, and counted
    first = adapter.report.details["first_frame"]
    assert adapter.report.counts["first_frame_dropped"] == 2 and first["dropped"] == 2
    assert 0.3 < first["largest_dropped_jump"] < 0.6
    for clip in clips:
        assert clip.extra["first_frame_dropped"] and isinstance(clip.extra["label"], int)
        np.testing.assert_allclose(clip.pose, truth[clip.extra["frame_dir"]], atol=1e-6)
        wrist = clip.pose[:, sk.R_WRIST].astype(np.float64)
        acc = np.diff(wrist, 2, axis=0) * 30.0 ** 2
        assert np.abs(acc).max() < 3.0  # no spike from a reference frame (it would be ~ 0.4 m * 900/s^2)

    # every variant, marked, when asked; the same file under the README's name reads the same
    all_clips = list(adapter.read(str(tmp_path), variants="all"))
    assert len(all_clips) == 8 and {c.extra["variant"] for c in all_clips} == {1, 2, 3, 4}
    assert len({c.extra["take"] for c in all_clips}) == 2 and "variant_copies_not_emitted" not in adapter.report.counts
    os.rename(tmp_path / "flag3d_keypoint.pkl", tmp_path / "flag3d.pkl")
    assert [c.clip_id for c in adapter.read(str(tmp_path))] == [c.clip_id for c in clips]
    assert adapter.report.details["file"]["read"] == "flag3d.pkl"
    kept = list(adapter.read(str(tmp_path / "flag3d.pkl"), first_frame="keep"))
    assert len(kept[0].pose) == len(clips[0].pose) + 1 and "first_frame_dropped" not in adapter.report.counts


def test_flag3d_file_found_below_the_source_or_not_at_all(tmp_path: Path) -> None:
    (tmp_path / "FLAG3D" / "annotations").mkdir(parents=True)
    write_flag3d(tmp_path / "FLAG3D" / "annotations", "flag3d_keypoint.pkl")
    adapter = get_adapter("flag3d")
    assert len(list(adapter.read(str(tmp_path)))) == 2
    assert "below the source folder" in adapter.report.details["file"]["why"]
    with pytest.raises(FileNotFoundError, match="flag3d_keypoint.pkl or flag3d.pkl"):
        list(adapter.read(str(tmp_path / "FLAG3D" / "nothing-here")))
    with pytest.raises(FileNotFoundError, match="option file='other.pkl'"):
        list(adapter.read(str(tmp_path), file="other.pkl"))


class _RunsAShellCommand:
    """What a malicious pickle holds: unpickling it calls ``os.system``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_flag3d_pickle_that_would_run_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = {"split": {"train": ["S002C002M001P002A001R001"]},
            "annotations": [{"frame_dir": "S002C002M001P002A001R001", "keypoint": _RunsAShellCommand(marker)}]}
    for protocol in (0, 2, pickle.HIGHEST_PROTOCOL):
        (tmp_path / "flag3d_keypoint.pkl").write_bytes(pickle.dumps(evil, protocol=protocol))
        refused = r"flag3d_keypoint\.pkl: refused to unpickle the global '(posix|os|nt)\.system'"
        with pytest.raises(flag3d_module.UnsafePickleError, match=refused):
            list(get_adapter("flag3d").read(str(tmp_path)))
        assert not marker.exists()  # nothing ran
    # any other global is refused too (a class, eval), and the error is a ValueError the ingest job reports
    (tmp_path / "flag3d_keypoint.pkl").write_bytes(pickle.dumps({"split": {}, "annotations": [Path("x")]}))
    with pytest.raises(ValueError, match="refused to unpickle the global 'pathlib"):
        flag3d_module.load_annotation_file(str(tmp_path / "flag3d_keypoint.pkl"))
    eval_call = b"\x80\x02cbuiltins\neval\nq\x00X\x04\x00\x00\x001+1q\x01\x85q\x02Rq\x03."  # eval("1+1")
    (tmp_path / "flag3d_keypoint.pkl").write_bytes(eval_call)
    with pytest.raises(flag3d_module.UnsafePickleError, match="'builtins.eval'"):
        flag3d_module.load_annotation_file(str(tmp_path / "flag3d_keypoint.pkl"))
    # a truncated download is a clear error, not an EOFError
    write_flag3d(tmp_path, "flag3d_keypoint.pkl")
    data = (tmp_path / "flag3d_keypoint.pkl").read_bytes()
    (tmp_path / "flag3d_keypoint.pkl").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable pickle .*truncated"):
        flag3d_module.load_annotation_file(str(tmp_path / "flag3d_keypoint.pkl"))


@pytest.mark.s3
def test_flag3d_streamed_from_s3(tmp_path: Path, s3_root: str) -> None:
    truth = write_flag3d(tmp_path, "flag3d_keypoint.pkl", variants=2)
    storage.write_bytes(f"{s3_root}/flag3d/flag3d_keypoint.pkl", (tmp_path / "flag3d_keypoint.pkl").read_bytes())
    adapter = get_adapter("flag3d")
    clips = list(adapter.read(f"{s3_root}/flag3d"))
    assert [c.extra["frame_dir"] for c in clips] == ["S002C002M001P002A001R001", "S002C002M001P001A005R002"]
    np.testing.assert_allclose(clips[0].pose, truth[clips[0].extra["frame_dir"]], atol=1e-6)
    assert adapter.report.details["variants"]["identical_to_first"] == 3


# ----------------------------------------------------------------------------------------------------------------------
# MM-Fit
# ----------------------------------------------------------------------------------------------------------------------

def _world_of(info: dict, clip) -> np.ndarray:
    start, end = clip.extra["frames"]
    return info["world"][start - MMFIT_F0:end - MMFIT_F0 + 1] + [0.0, 3.0, 0.0]  # 3 m from the camera


def test_mmfit_mirrored_frame_and_left_first_joints_paired_by_the_watches(tmp_path: Path) -> None:
    """One-arm sets (left wrist in the squats set, right wrist in the curls set) tell which pose wrist each watch
    is on, whatever the frame: a mirrored frame with the labels right (the face direction alone would swap them),
    left-first labels in a mirrored frame (the face direction alone would see nothing wrong), left-first labels."""
    cases = {"01": {"mirror": True}, "02": {"mirror": True, "swap_lr": True}, "03": {"swap_lr": True},
             "04": {"mirror": True, "left_watch": False}}
    infos = {wid: write_mmfit_workout(tmp_path, wid, watch_motion=True, seed=int(wid), **kw)
             for wid, kw in cases.items()}
    adapter = get_adapter("mmfit")
    clips = list(adapter.read(str(tmp_path)))
    assert sorted({c.extra["workout"] for c in clips}) == list(cases) and len(clips) == 8
    for clip in clips:
        world = _world_of(infos[clip.extra["workout"]], clip)
        np.testing.assert_allclose(clip.pose, world, atol=0.02)  # 2 mm pose noise, no joint on the wrong side
        moving = sk.L_WRIST if clip.activity == "squats" else sk.R_WRIST
        still = sk.R_WRIST if moving == sk.L_WRIST else sk.L_WRIST
        assert np.ptp(clip.pose[:, moving, 2]) > 0.25 and np.ptp(clip.pose[:, still, 2]) < 0.03
        # and the watch in that wrist's slot is the one that moves with it
        slot = slice(0, 3) if moving == sk.L_WRIST else slice(3, 6)
        if not (clip.extra["workout"] == "04" and moving == sk.L_WRIST):  # w04 has no left watch
            assert np.ptp(np.linalg.norm(clip.acc[:, slot], axis=1)) > 2.0
    conv, evidence = adapter.report.details["pose_conventions"], adapter.report.details["lr_evidence"]
    assert {w: (c["swapped_lr"], c["mirrored"], c["lr_decided_by"]) for w, c in conv.items()} == {
        "w01": (False, True, "watches"), "w02": (True, True, "watches"), "w03": (True, False, "watches"),
        "w04": (False, True, "watches")}
    assert conv["w01"]["chirality"] < -0.9 and conv["w02"]["chirality"] > 0.9  # what the face direction saw
    assert all(c["chirality_after"] > 0.9 for c in conv.values())
    assert evidence["w01"]["decision"] == "straight" and evidence["w02"]["decision"] == "crossed"
    assert evidence["w01"]["one_arm_sets"] and evidence["w01"]["seconds_used"] == pytest.approx(16.0)
    assert evidence["w01"]["correlations"]["pose_right~watch_right"] > 0.9
    assert abs(evidence["w01"]["correlations"]["pose_left~watch_right"]) < 0.2
    assert evidence["w04"]["watches"] == ["right"] and evidence["w04"]["decision"] == "straight"

    # forcing the labels still un-mirrors the frame; pose_mirror=never leaves it (and the labels) as given
    forced = list(adapter.read(str(tmp_path), workouts=["01"], pose_lr="h36m"))
    np.testing.assert_allclose(forced[0].pose, _world_of(infos["01"], forced[0]), atol=0.02)
    assert adapter.report.details["pose_conventions"]["w01"]["lr_decided_by"] == "option"
    raw = list(adapter.read(str(tmp_path), workouts=["01"], pose_lr="h36m", pose_mirror="never"))
    np.testing.assert_allclose(raw[0].pose[..., 0], -_world_of(infos["01"], raw[0])[..., 0], atol=0.02)


def test_mmfit_without_one_arm_evidence_the_face_direction_decides(tmp_path: Path) -> None:
    write_mmfit_workout(tmp_path, "01", swap_lr=True)  # both wrists move alike: the watches cannot tell
    adapter = get_adapter("mmfit")
    clips = list(adapter.read(str(tmp_path)))
    conv = adapter.report.details["pose_conventions"]["w01"]
    assert (conv["swapped_lr"], conv["mirrored"], conv["lr_decided_by"]) == (True, False, "face direction")
    assert adapter.report.details["lr_evidence"]["w01"]["decision"] == "undecided"
    assert any("not decidable from the watches" in n for n in adapter.report.notes)
    assert clips[0].pose[0, sk.R_HIP, 0] > clips[0].pose[0, sk.L_HIP, 0]  # right side at +x, as the world


def test_mmfit_unexpected_pose_shape_skips_that_workout(tmp_path: Path) -> None:
    write_mmfit_workout(tmp_path, "01")
    write_mmfit_workout(tmp_path, "02", pose_shape=(3, 40, 25))  # e.g. another joint model
    (tmp_path / "w03").mkdir()
    write_mmfit_workout(tmp_path, "03")
    np.save(tmp_path / "w03" / "w03_sw_r_acc.npy", np.zeros((10, 4)))  # a watch file of the wrong width
    adapter = get_adapter("mmfit")
    clips = list(adapter.read(str(tmp_path)))
    assert {c.extra["workout"] for c in clips} == {"01"}
    skipped = {s["item"]: s["reason"] for s in adapter.report.skipped}
    assert "w02_pose_3d.npy" in skipped["w02"] and "(3, 40, 25)" in skipped["w02"]
    assert "left out" in skipped["w02"] and "N x 5" in skipped["w03"]
    assert adapter.report.counts["workouts_unreadable"] == 2
