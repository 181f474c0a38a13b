"""The adapters against the datasets' real layouts (issue 19): what a user's first ingest meets.

* MotionSense as downloaded: the sibling ``B_Accelerometer_data``/``C_Gyroscope_data`` folders (x, y, z only) and the
  doubled ``A_DeviceMotion_data/A_DeviceMotion_data`` of the mirrors;
* FLAG3D under both file names (``flag3d.pkl``, ``flag3d_keypoint.pkl``), unpickled by a restricted unpickler from a
  stream, its first-frame jump and its four ``M###`` variants of every take;
* MM-Fit workouts whose pose frame is mirrored (and whose joints are left-first), paired with the watches by the data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from _fixtures_datasets import (
    G,
    write_motionsense,
    write_motionsense_download,
)
from mujo.adapters import get_adapter, ingest


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
