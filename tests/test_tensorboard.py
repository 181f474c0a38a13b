"""TensorBoard event files of a training run: written locally, mirrored to local or S3 storage, readable."""

from __future__ import annotations

import math
import os

from mujo import storage
from mujo.train.tensorboard import TensorBoardLog, read_scalars


def _events(uri: str, tmp_path) -> dict:
    files = [f for f in storage.list_files(uri) if "tfevents" in f]
    assert len(files) == 1, files
    local = tmp_path / "events"
    local.write_bytes(storage.read_bytes(files[0]))
    return read_scalars(str(local))


def test_scalars_reach_storage_at_sync_and_close(tmp_path):
    uri = str(tmp_path / "run" / "tensorboard")
    tb = TensorBoardLog(uri)
    tb.scalars({"step": 1, "loss": 2.5, "loss/video-pose": 1.25, "note": "text", "flag": True,
                "bad": float("nan")}, step=1)
    written = tb.sync()
    assert written and os.path.exists(written)
    first = _events(uri, tmp_path)
    assert first == {"loss": [(1, 2.5)], "loss/video-pose": [(1, 1.25)]}  # strings, bools, NaN, "step" skipped
    tb.scalars({"loss": 2.0, "val/R@1/mean": 0.5}, step=2)
    tb.close()
    after = _events(uri, tmp_path)
    assert after["loss"] == [(1, 2.5), (2, 2.0)] and math.isclose(after["val/R@1/mean"][0][1], 0.5)


def test_events_go_to_s3(s3_root, tmp_path):
    uri = storage.join(s3_root, "tb-test", "tensorboard")
    tb = TensorBoardLog(uri)
    tb.scalars({"loss": 1.0}, step=7)
    tb.close()
    assert _events(uri, tmp_path) == {"loss": [(7, 1.0)]}


def test_a_resumed_run_adds_a_second_file(tmp_path):
    uri = str(tmp_path / "tb")
    for step in (1, 2):
        tb = TensorBoardLog(uri)
        tb.scalars({"loss": float(step)}, step=step)
        tb.close()
    files = sorted(storage.list_files(uri))
    assert len(files) == 2 and len({os.path.basename(f) for f in files}) == 2
