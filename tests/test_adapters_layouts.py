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
    write_flag3d,
    write_motionsense,
    write_motionsense_download,
)
from mujo import storage
from mujo.adapters import get_adapter, ingest
from mujo.adapters.flag3d import UnsafePickleError, load_annotation_file
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
        with pytest.raises(UnsafePickleError, match=r"flag3d_keypoint\.pkl: refused to unpickle the global "
                                                    r"'(posix|os|nt)\.system'"):
            list(get_adapter("flag3d").read(str(tmp_path)))
        assert not marker.exists()  # nothing ran
    # any other global is refused too (a class, eval), and the error is a ValueError the ingest job reports
    (tmp_path / "flag3d_keypoint.pkl").write_bytes(pickle.dumps({"split": {}, "annotations": [Path("x")]}))
    with pytest.raises(ValueError, match="refused to unpickle the global 'pathlib"):
        load_annotation_file(str(tmp_path / "flag3d_keypoint.pkl"))
    (tmp_path / "flag3d_keypoint.pkl").write_bytes(b"\x80\x02cbuiltins\neval\nq\x00X\x04\x00\x00\x001+1q\x01\x85q\x02Rq\x03.")
    with pytest.raises(UnsafePickleError, match="'builtins.eval'"):
        load_annotation_file(str(tmp_path / "flag3d_keypoint.pkl"))
    # a truncated download is a clear error, not an EOFError
    write_flag3d(tmp_path, "flag3d_keypoint.pkl")
    data = (tmp_path / "flag3d_keypoint.pkl").read_bytes()
    (tmp_path / "flag3d_keypoint.pkl").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable pickle .*truncated"):
        load_annotation_file(str(tmp_path / "flag3d_keypoint.pkl"))


@pytest.mark.s3
def test_flag3d_streamed_from_s3(tmp_path: Path, s3_root: str) -> None:
    truth = write_flag3d(tmp_path, "flag3d_keypoint.pkl", variants=2)
    storage.write_bytes(f"{s3_root}/flag3d/flag3d_keypoint.pkl", (tmp_path / "flag3d_keypoint.pkl").read_bytes())
    adapter = get_adapter("flag3d")
    clips = list(adapter.read(f"{s3_root}/flag3d"))
    assert [c.extra["frame_dir"] for c in clips] == ["S002C002M001P002A001R001", "S002C002M001P001A005R002"]
    np.testing.assert_allclose(clips[0].pose, truth[clips[0].extra["frame_dir"]], atol=1e-6)
    assert adapter.report.details["variants"]["identical_to_first"] == 3
