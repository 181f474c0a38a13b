"""MM-Fit (Strömbäck et al., IMWUT 2020): 3D pose + left/right smartwatch accelerometers, 10 exercises.

Published layout (one folder per workout ``wNN``)::

    w00/w00_sw_l_acc.npy    N x 5: camera frame, timestamp (ms), x, y, z   (smartwatch, left wrist, ~100 Hz)
    w00/w00_sw_r_acc.npy    the same for the right wrist
    w00/w00_pose_3d.npy     3 x N x 18: [.., .., 0] camera frame, then 17 Human3.6M joints (30 Hz camera)
    w00/w00_labels.csv      no header: start frame, end frame, repetitions, activity

One clip per labelled set (``start``..``end`` camera frames, inclusive). With ``include_no_activity`` the gaps
between sets (and rows labelled ``non_activity``) become ``no_activity`` clips.

**Frame alignment** (the 30 Hz camera against the ~100 Hz watches): every IMU row carries the camera frame it was
synchronised to in column 0. Per workout, a robust straight-line fit ``timestamp = a + b * frame`` over the watch
rows gives each camera frame's time (and the camera's actual rate ``1000 / b``). A set's IMU rows are those whose
frame lies in ``[start, end]``; they are resampled by their timestamps onto a uniform ``acc_hz`` grid that starts at
the time of frame ``start`` and spans exactly the set's ``end - start + 1`` camera frames, so pose and IMU start
together and last equally long. Repeated or out-of-order timestamps are dropped/sorted first.

**Pose conventions** (not documented by MM-Fit): units are detected from the trunk length (mm vs m), the up axis
from the mean trunk direction over the whole workout (mostly upright), and left/right from the face direction
(:func:`mujo.adapters.common.lateral_chirality`); all three can be forced by options and are recorded per workout
in the ingest report. A 32-joint Human3.6M array (3 x N x 33) is reduced to the standard 17 joints.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Iterator

import numpy as np

from mujo import storage
from mujo.adapters.cards import raw_key
from mujo.adapters.common import (
    DatasetAdapter,
    basename,
    interpolate_frames,
    load_npy,
    normalize_pose,
    resample_at,
    to_ms2,
    wrist_acc,
)
from mujo.data.clips import RawClip

log = logging.getLogger(__name__)

H36M_32_TO_17 = (0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27)
"""The standard 17 of the 32 Human3.6M joints (as used by VideoPose3D and most 3-D pose estimators)."""

WATCHES = (("sw_l", "left"), ("sw_r", "right"))
_LABEL_FILE = re.compile(r"^w(\d+)_labels\.csv$")


class MMFitAdapter(DatasetAdapter):
    """Reads MM-Fit's published layout; see the module docstring and ``datasets/mmfit.yaml``."""

    name = "mmfit"
    OPTIONS: dict[str, Any] = {
        "include_no_activity": False,  # gaps between sets and rows labelled non_activity -> 'no_activity' clips
        "test_set": "seen",  # seen: w09-w11 (official test); unseen: the 5 unseen-subject workouts; both
        "min_seconds": 2.0,  # shorter segments are skipped (listed in the report): one window is 2 s
        "acc_hz": 100.0,  # the uniform grid the watch streams are resampled onto (their nominal rate)
        "camera_hz": 30.0,  # nominal camera rate, used when the IMU timestamps cannot fix it
        "acc_units": "m/s^2",  # the watches' unit (Android sensors report m/s^2)
        "pose_units": "auto",  # m | cm | mm | auto
        "pose_up": "auto",  # +x ... -z | auto (mean trunk direction over the workout)
        "pose_lr": "auto",  # h36m | swapped | auto (face direction)
        "missing_watch": "zeros",  # zeros (as the MM-Fit reference code) | skip (skip the clip)
        "workouts": None,  # optional list of workout ids ("00".."20") to read
    }

    def labels(self, **options: Any) -> list[str]:
        opts = self.resolve_options(options)
        return self.card.label_names(include_null=bool(opts["include_no_activity"]))

    # ------------------------------------------------------------------------------------------------------------

    def _split(self, wid: str, test_set: str) -> str | None:
        split = self.card.split
        if wid in split.train:
            return "train"
        if wid in split.val:
            return "val"
        seen, unseen = wid in split.test, wid in split.extra.get("unseen_test", [])
        if test_set not in ("seen", "unseen", "both"):
            raise ValueError(f"mmfit: option test_set must be 'seen', 'unseen' or 'both', not {test_set!r}")
        if (seen and test_set in ("seen", "both")) or (unseen and test_set in ("unseen", "both")):
            return "test"
        return None

    def read(self, source_dir: str, **options: Any) -> Iterator[RawClip]:
        """One clip per labelled set (and per no-activity gap when asked) of every workout under ``source_dir``."""
        opts = self.resolve_options(options)
        self.report.clear()
        label_files = [u for u in storage.list_files(source_dir, "_labels.csv") if _LABEL_FILE.match(basename(u))]
        if not label_files:
            raise FileNotFoundError(f"mmfit: no wNN/wNN_labels.csv under {storage.describe(source_dir)}; is this the "
                                    "MM-Fit folder (w00 ... w20)?")
        wanted = {str(w).zfill(2) for w in opts["workouts"]} if opts["workouts"] else None
        for uri in label_files:
            wid = _LABEL_FILE.match(basename(uri)).group(1).zfill(2)
            if wanted is not None and wid not in wanted:
                continue
            split = self._split(wid, opts["test_set"])
            if split is None:
                self.report.skip(f"w{wid}", f"workout not in the selected splits (test_set={opts['test_set']})")
                continue
            yield from self._workout(uri, wid, split, opts)

    # ------------------------------------------------------------------------------------------------------------

    def _workout(self, label_uri: str, wid: str, split: str, opts: dict[str, Any]) -> Iterator[RawClip]:
        folder = label_uri[: -len(basename(label_uri))].rstrip("/\\")
        prefix = storage.join(folder, f"w{wid}")
        rows = read_labels(label_uri)
        subject = self.card.subjects.get(wid)
        if subject is None:
            self.report.note(f"w{wid}: no participant id in the card's subjects map; the workout is its own subject")
            subject = f"w{wid}"
        subject = f"mmfit-{subject}"

        pose_frames, pose = self._load_pose(prefix + "_pose_3d.npy", wid, opts)
        watches: dict[str, np.ndarray | None] = {}
        for key, slot in WATCHES:
            uri = f"{prefix}_{key}_acc.npy"
            watches[slot] = load_imu(uri) if storage.exists(uri) else None
            if watches[slot] is None:
                self.report.note(f"w{wid}: {key}_acc missing ({opts['missing_watch']})")
            else:
                self._check_acc_units(wid, key, watches[slot], opts["acc_units"])
        if pose is None and all(w is None for w in watches.values()):
            self.report.skip(f"w{wid}", "neither pose_3d nor smartwatch accelerometers")
            return
        clock = FrameClock.fit([w for w in watches.values() if w is not None], opts["camera_hz"])
        self.report.details.setdefault("clocks", {})[f"w{wid}"] = clock.as_dict()
        if clock.note:
            self.report.note(f"w{wid}: {clock.note}")

        # the recording's extent (for the no-activity gaps): the camera's frames, else the watches' frame column
        frames_known = [pose_frames] if pose_frames is not None else [w[:, 0] for w in watches.values() if w is not None]
        first = int(min(np.nanmin(f) for f in frames_known))
        last = int(max(np.nanmax(f) for f in frames_known))
        include_null = bool(opts["include_no_activity"])
        lookup = self.card.lookup(include_null=True)
        null_keys = self.card.null_keys()
        for k, (start, end, reps, activity) in enumerate(segments(rows, first, last)):
            item = f"w{wid} frames {start}-{end} ({activity})"
            key = raw_key(activity)
            if key in null_keys and not include_null:
                self.report.counts["no_activity_excluded"] += 1
                continue
            spec = lookup.get(key)
            if spec is None:
                self.report.skip(item, f"activity {activity!r} is not in the card's label map")
                continue
            n_frames = end - start + 1
            if n_frames / clock.camera_hz + 1e-9 < opts["min_seconds"]:
                self.report.skip(item, f"{n_frames / clock.camera_hz:.2f} s, shorter than min_seconds="
                                       f"{opts['min_seconds']}")
                continue
            clip_pose = None
            coverage = 0.0
            if pose is not None:
                inside = (pose_frames >= start) & (pose_frames <= end)
                coverage = float(inside.sum()) / n_frames
                if coverage > 0:
                    clip_pose = interpolate_frames(pose_frames, pose, np.arange(start, end + 1)).astype(np.float32)
            blocks: dict[str, np.ndarray | None] = {}
            n_acc = int(np.floor(n_frames / clock.camera_hz * opts["acc_hz"] + 1e-9))
            grid = clock.time_ms(start) + np.arange(n_acc) * 1000.0 / opts["acc_hz"]
            for slot, arr in watches.items():
                blocks[slot] = None
                if arr is None:
                    continue
                seg = arr[(arr[:, 0] >= start) & (arr[:, 0] <= end)]
                if len(seg) < 2:
                    continue
                blocks[slot] = to_ms2(resample_at(seg[:, 1], seg[:, 2:5], grid), opts["acc_units"], "mmfit",
                                      "acc_units")
            missing = [s for s, b in blocks.items() if b is None]
            if missing and len(missing) < 2 and opts["missing_watch"] == "skip":
                self.report.skip(item, f"no {'/'.join(missing)} watch data for this segment (missing_watch=skip)")
                continue
            acc = None if len(missing) == 2 else wrist_acc(blocks["left"], blocks["right"])
            if acc is None and clip_pose is None:
                self.report.skip(item, "no pose frames and no watch rows in this segment")
                continue
            if acc is None:
                self.report.counts["clips_without_watches"] += 1
            yield RawClip(
                clip_id=f"mmfit-w{wid}-{k:03d}-{spec.name}", subject=subject, dataset=self.dataset_name,
                split=split, label_text=spec.label_text, activity=spec.name,
                pose=clip_pose, pose_hz=clock.camera_hz if clip_pose is not None else None,
                acc=acc, acc_hz=float(opts["acc_hz"]) if acc is not None else None,
                extra={"workout": wid, "frames": (start, end), "repetitions": reps, "pose_coverage": coverage,
                       "missing_watches": missing, "t0_ms": float(grid[0]) if len(grid) else None},
            )

    def _load_pose(self, uri: str, wid: str, opts: dict[str, Any]) -> tuple[np.ndarray | None, np.ndarray | None]:
        if not storage.exists(uri):
            self.report.note(f"w{wid}: pose_3d missing; its clips carry the watches only")
            return None, None
        arr = load_npy(uri)
        if arr.ndim != 3 or arr.shape[0] != 3 or arr.shape[2] not in (18, 33):
            raise ValueError(f"{storage.describe(uri)}: expected pose_3d of shape (3, N, 18) (frame + 17 joints) or "
                             f"(3, N, 33) (frame + 32 joints), got {arr.shape}")
        frames = arr[0, :, 0].astype(np.float64)
        joints = np.transpose(arr[:, :, 1:], (1, 2, 0)).astype(np.float64)  # (N, J, 3)
        if joints.shape[1] == 32:
            joints = joints[:, list(H36M_32_TO_17)]
            self.report.note(f"w{wid}: 32-joint pose reduced to the standard 17 Human3.6M joints")
        ok = np.isfinite(joints).all(axis=(1, 2)) & np.isfinite(frames)
        if not ok.any():
            self.report.note(f"w{wid}: pose_3d has no finite frame")
            return None, None
        frames, joints = frames[ok], joints[ok]
        pose, conv = normalize_pose(joints, units=opts["pose_units"], up=opts["pose_up"], lr=opts["pose_lr"])
        self.report.details.setdefault("pose_conventions", {})[f"w{wid}"] = conv.as_dict()
        if abs(conv.chirality) < 0.2 and opts["pose_lr"] == "auto":
            self.report.note(f"w{wid}: left/right of the pose could not be decided (score {conv.chirality:.2f}); "
                             "kept the Human3.6M order")
        return frames, pose

    def _check_acc_units(self, wid: str, key: str, arr: np.ndarray, unit: str) -> None:
        mag = float(np.nanmedian(np.linalg.norm(to_ms2(arr[:, 2:5], unit, "mmfit", "acc_units"), axis=1)))
        self.report.details.setdefault("median_acc_norm_ms2", {})[f"w{wid}_{key}"] = round(mag, 3)
        if not 6.0 < mag < 14.0:
            self.report.note(f"w{wid}: {key}_acc median |a| = {mag:.2f} m/s^2 (expected ~9.8 with gravity); "
                             f"check the acc_units option ({unit})")


# --------------------------------------------------------------------------------------------------------------------

def read_labels(uri: str) -> list[tuple[int, int, int, str]]:
    """``wNN_labels.csv``: rows of start frame, end frame, repetitions, activity (no header)."""
    rows = []
    text = storage.read_bytes(uri).decode("utf-8", errors="replace")
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 4:
            raise ValueError(f"{storage.describe(uri)} line {i}: expected 'start,end,repetitions,activity', got "
                             f"{line!r}")
        try:
            start, end, reps = int(float(parts[0])), int(float(parts[1])), int(float(parts[2]))
        except ValueError:
            raise ValueError(f"{storage.describe(uri)} line {i}: start/end/repetitions must be numbers: {line!r}"
                             ) from None
        if end < start:
            raise ValueError(f"{storage.describe(uri)} line {i}: end frame {end} before start frame {start}")
        rows.append((start, end, reps, parts[3]))
    return sorted(rows)


def segments(rows: list[tuple[int, int, int, str]], first: int, last: int
             ) -> list[tuple[int, int, int, str]]:
    """Labelled rows plus the unlabelled gaps (as ``non_activity``) between ``first`` and ``last`` frames."""
    out: list[tuple[int, int, int, str]] = []
    cursor = first
    for start, end, reps, activity in rows:
        if start > cursor:
            out.append((cursor, start - 1, 0, "non_activity"))
        out.append((start, end, reps, activity))
        cursor = max(cursor, end + 1)
    if last >= cursor:
        out.append((cursor, last, 0, "non_activity"))
    return out


def load_imu(uri: str) -> np.ndarray:
    """An MM-Fit IMU array (N x 5: frame, timestamp ms, x, y, z) as float64, rows with NaN dropped."""
    arr = load_npy(uri).astype(np.float64)
    if arr.ndim != 2 or arr.shape[1] != 5:
        raise ValueError(f"{storage.describe(uri)}: expected N x 5 (frame, timestamp, x, y, z), got {arr.shape}")
    return arr[np.isfinite(arr).all(axis=1)]


class FrameClock:
    """Camera frame -> time (ms), fitted on the watches' (frame, timestamp) rows: ``t = a + b * frame``."""

    def __init__(self, a: float, b: float, fitted: bool, note: str = "") -> None:
        self.a, self.b, self.fitted, self.note = a, b, fitted, note

    @property
    def camera_hz(self) -> float:
        return 1000.0 / self.b

    def time_ms(self, frame: float) -> float:
        return self.a + self.b * frame

    def as_dict(self) -> dict[str, Any]:
        return {"offset_ms": round(self.a, 3), "ms_per_frame": round(self.b, 5),
                "camera_hz": round(self.camera_hz, 4), "fitted": self.fitted}

    @classmethod
    def fit(cls, imus: list[np.ndarray], nominal_hz: float) -> "FrameClock":
        b_nominal = 1000.0 / nominal_hz
        if not imus:
            return cls(0.0, b_nominal, False, "no watch timestamps; camera assumed at its nominal rate")
        f = np.concatenate([m[:, 0] for m in imus])
        t = np.concatenate([m[:, 1] for m in imus])
        if len(np.unique(f)) < 2:
            return cls(float(np.median(t - f * b_nominal)), b_nominal, False,
                       "watch rows span a single camera frame; camera assumed at its nominal rate")
        b, a = np.polyfit(f, t, 1)
        for _ in range(2):  # robust refit without outliers (re-synchronisations, stray timestamps)
            resid = t - (a + b * f)
            mad = float(np.median(np.abs(resid - np.median(resid))))
            keep = np.abs(resid - np.median(resid)) <= 5.0 * max(mad, 1.0)
            if keep.sum() < 2 or len(np.unique(f[keep])) < 2:
                break
            b, a = np.polyfit(f[keep], t[keep], 1)
        hz = 1000.0 / b if b > 0 else float("nan")
        if not (0.5 * nominal_hz < hz < 2.0 * nominal_hz):
            return cls(float(np.median(t - f * b_nominal)), b_nominal, False,
                       f"fitted camera rate {hz:.2f} Hz is implausible; nominal {nominal_hz} Hz used")
        return cls(float(a), float(b), True)
