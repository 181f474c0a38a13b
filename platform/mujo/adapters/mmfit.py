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

**Pose conventions** (not documented by MM-Fit): units are detected from the trunk length (mm vs m) and the up axis
from the mean trunk direction over the whole workout (mostly upright). A 32-joint Human3.6M array (3 x N x 33) is
reduced to the standard 17 joints.

**Left and right, decided by the data.** MM-Fit's EDA notebook labels joint 1 "Left Hip" and 11 "Right Shoulder",
the reverse of the standard Human3.6M order, and a lifter's camera frame may be mirrored. The face direction alone
(:func:`~mujo.adapters.common.lateral_chirality`) cannot tell the two apart: both make its score negative, and both
together make it positive. So, per workout (option ``pose_lr: auto``), each pose wrist's acceleration (positions
smoothed, differentiated twice, gravity added: the specific force, |.| so that no frame matters) is correlated with
each watch's measured |acceleration| over the labelled sets in which one arm moves and the other does not (one
watch's motion at least twice the other's), and the pose's wrists are paired with the watches by the larger
correlation (:func:`pair_wrists`): the joint labels are swapped when the crossed pairing wins. Only then is the frame
checked: a negative face score with the labels settled means a mirrored frame, which is un-mirrored (x negated;
option ``pose_mirror``). Without usable watch evidence (no one-arm set, a watch missing, or too small a margin) the
face direction decides, as before, and the report says so. The correlations, the sets used and the decision are in
``report.details.lr_evidence``; the conventions applied in ``report.details.pose_conventions``.

A workout whose pose or watch file has an unexpected shape (or is unreadable) is skipped and listed in the report;
the other workouts are read.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Iterator

import numpy as np

from mujo import storage
from mujo.adapters.cards import raw_key
from mujo.adapters.common import (
    G0,
    SWAP_LR,
    DatasetAdapter,
    basename,
    interpolate_frames,
    lateral_chirality,
    load_npy,
    normalize_pose,
    resample_at,
    to_ms2,
    wrist_acc,
)
from mujo.data import skeleton as sk
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
        "pose_lr": "auto",  # h36m | swapped | auto (wrists paired with the watches by the data; else face direction)
        "pose_mirror": "auto",  # auto (un-mirror when the face direction says so, labels settled) | always | never
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
        if opts["pose_lr"] not in ("h36m", "swapped", "auto"):
            raise ValueError(f"mmfit: option pose_lr must be 'h36m', 'swapped' or 'auto', not {opts['pose_lr']!r}")
        if opts["pose_mirror"] not in ("auto", "always", "never"):
            raise ValueError(f"mmfit: option pose_mirror must be 'auto', 'always' or 'never', not "
                             f"{opts['pose_mirror']!r}")
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

        watches: dict[str, np.ndarray | None] = {}
        try:
            raw_pose = self._read_pose(prefix + "_pose_3d.npy", wid)
            for key, slot in WATCHES:
                uri = f"{prefix}_{key}_acc.npy"
                watches[slot] = load_imu(uri) if storage.exists(uri) else None
        except ValueError as exc:  # an unexpected shape, a pickled or corrupt .npy: this workout only
            self.report.skip(f"w{wid}", f"{exc}; the workout is left out (the others are read)")
            self.report.counts["workouts_unreadable"] += 1
            return
        for key, slot in WATCHES:
            if watches[slot] is None:
                self.report.note(f"w{wid}: {key}_acc missing ({opts['missing_watch']})")
            else:
                self._check_acc_units(wid, key, watches[slot], opts["acc_units"])
        if raw_pose is None and all(w is None for w in watches.values()):
            self.report.skip(f"w{wid}", "neither pose_3d nor smartwatch accelerometers")
            return
        clock = FrameClock.fit([w for w in watches.values() if w is not None], opts["camera_hz"])
        self.report.details.setdefault("clocks", {})[f"w{wid}"] = clock.as_dict()
        if clock.note:
            self.report.note(f"w{wid}: {clock.note}")
        try:
            pose_frames, pose = (None, None) if raw_pose is None else self._convert_pose(*raw_pose, wid, opts, watches,
                                                                                          rows, clock)
        except ValueError as exc:  # e.g. no dominant up axis, a zero trunk: this workout's pose cannot be placed
            self.report.skip(f"w{wid}", f"pose_3d: {exc}; the workout is left out (the others are read)")
            self.report.counts["workouts_unreadable"] += 1
            return

        # the recording's extent (for the no-activity gaps): the camera's frames, else the watches' frame column
        frames_known = ([pose_frames] if pose_frames is not None
                        else [w[:, 0] for w in watches.values() if w is not None])
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

    def _read_pose(self, uri: str, wid: str) -> tuple[np.ndarray, np.ndarray] | None:
        """``wNN_pose_3d.npy`` as (camera frames, ``(N, 17, 3)`` joints in the file's units and axes), finite frames
        only; None when the file is missing or has no finite frame. ``ValueError`` for an unexpected shape."""
        if not storage.exists(uri):
            self.report.note(f"w{wid}: pose_3d missing; its clips carry the watches only")
            return None
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
            return None
        return frames[ok], joints[ok]

    def _convert_pose(self, frames: np.ndarray, joints: np.ndarray, wid: str, opts: dict[str, Any],
                      watches: dict[str, np.ndarray | None], rows: list[tuple[int, int, int, str]],
                      clock: "FrameClock") -> tuple[np.ndarray, np.ndarray]:
        """Units and up axis, then left/right (watches, else face direction, or the option), then the mirror."""
        pose, conv = normalize_pose(joints, units=opts["pose_units"], up=opts["pose_up"], lr="h36m")
        pose = pose.astype(np.float64)
        face = conv.chirality
        if opts["pose_lr"] == "auto":
            evidence = pair_wrists(frames, pose, watches, rows, clock.camera_hz, opts["acc_units"])
            self.report.details.setdefault("lr_evidence", {})[f"w{wid}"] = evidence
            if evidence["decision"] != "undecided":
                swap, decided_by = evidence["decision"] == "crossed", "watches"
            else:
                swap, decided_by = face < -0.2, "face direction"
                why = evidence.get("why", "")
                self.report.note(f"w{wid}: left/right of the pose not decidable from the watches ({why}); the face "
                                 f"direction decided (score {face:.2f}), which cannot tell swapped labels from a "
                                 "mirrored frame")
                if abs(face) < 0.2:
                    self.report.note(f"w{wid}: left/right of the pose could not be decided (score {face:.2f}); "
                                     "kept the Human3.6M order")
        else:
            swap, decided_by = opts["pose_lr"] == "swapped", "option"
        if swap:
            pose = pose[:, list(SWAP_LR)]
        after = lateral_chirality(pose)
        mirror = opts["pose_mirror"] == "always" or (opts["pose_mirror"] == "auto" and decided_by != "face direction"
                                                  and after < -0.2)
        if mirror:
            pose[..., 0] = -pose[..., 0]
        self.report.details.setdefault("pose_conventions", {})[f"w{wid}"] = {
            **conv.as_dict(), "swapped_lr": bool(swap), "mirrored": bool(mirror), "lr_decided_by": decided_by,
            "chirality_after": round(lateral_chirality(pose), 3)}
        return frames, pose.astype(np.float32)

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


# --------------------------------------------------------------------------------------------------------------------
# Pairing the pose's wrists with the watches
# --------------------------------------------------------------------------------------------------------------------

MIN_EVIDENCE_SECONDS = 4.0
"""At least this much one-arm (or, failing that, any) set time before the watches may decide left/right."""
MIN_MARGIN = 0.15
"""The straight and crossed pairings' mean correlations must differ by this much (per watch) to decide."""
MIN_MATCH = 0.3
"""The winning pairing's mean correlation must reach this: the watches must actually see the pose's motion."""
ONE_ARM_RATIO = 2.0
"""A set is one-arm when one watch's |acceleration| varies at least this many times more than the other's."""


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    """Moving average along axis 0 over ``width`` samples (edges held)."""
    if width <= 1 or len(x) == 0:
        return x
    pad = width // 2
    padded = np.concatenate([np.repeat(x[:1], pad, axis=0), x, np.repeat(x[-1:], width - 1 - pad, axis=0)])
    kernel = np.ones(width) / width
    flat = padded.reshape(len(padded), -1)
    out = np.stack([np.convolve(flat[:, c], kernel, mode="valid") for c in range(flat.shape[1])], axis=1)
    return out.reshape((len(x),) + x.shape[1:])


def _detrend(x: np.ndarray) -> np.ndarray:
    """``x`` minus its least-squares line (slow drifts and posture changes are not the arm's motion)."""
    if len(x) < 3:
        return x - x.mean() if len(x) else x
    t = np.arange(len(x), dtype=np.float64)
    b, a = np.polyfit(t, x, 1)
    return x - (a + b * t)


def pose_wrist_force(frames: np.ndarray, pose: np.ndarray, start: int, end: int, hz: float) -> np.ndarray | None:
    """|specific force| (m/s^2) of the pose's left and right wrists at camera frames ``start..end``: ``(n, 2)``.

    Positions (metres, z up) are put on every frame, smoothed over ~0.2 s and differentiated twice over +-0.1 s;
    gravity is added along +z, so the magnitude is what a wrist accelerometer's magnitude would read in any
    orientation. The first and last 0.1 s are edge-held. None when the pose does not cover the set."""
    inside = (frames >= start) & (frames <= end)
    if inside.sum() < 4:
        return None
    wanted = np.arange(start, end + 1, dtype=np.float64)
    wrists = interpolate_frames(frames, pose[:, [sk.L_WRIST, sk.R_WRIST]], wanted)  # (n, 2, 3)
    wrists = _smooth(wrists, max(1, int(round(0.2 * hz))) | 1)
    k = max(1, int(round(0.1 * hz)))
    if len(wrists) <= 2 * k + 2:
        return None
    acc = np.empty_like(wrists)
    acc[k:-k] = (wrists[2 * k:] - 2 * wrists[k:-k] + wrists[: -2 * k]) * (hz / k) ** 2
    acc[:k], acc[-k:] = acc[k], acc[-k - 1]
    acc[..., 2] += G0
    return np.linalg.norm(acc, axis=-1)


def watch_force(imu: np.ndarray, start: int, end: int, units: str, hz: float) -> np.ndarray | None:
    """A watch's |acceleration| (m/s^2) per camera frame ``start..end`` (the mean over the rows synchronised to
    each frame; frames without rows interpolated), smoothed like :func:`pose_wrist_force`: ``(n,)``."""
    rows = imu[(imu[:, 0] >= start) & (imu[:, 0] <= end)]
    if len(rows) < 4:
        return None
    mag = np.linalg.norm(to_ms2(rows[:, 2:5], units, "mmfit", "acc_units"), axis=1)
    idx = np.round(rows[:, 0]).astype(int) - start
    n = end - start + 1
    total = np.bincount(idx, weights=mag, minlength=n)[:n]
    count = np.bincount(idx, minlength=n)[:n]
    have = count > 0
    if have.sum() < 4:
        return None
    per_frame = np.interp(np.arange(n), np.nonzero(have)[0], total[have] / count[have])
    k = max(1, int(round(0.1 * hz)))
    return _smooth(per_frame, (max(1, int(round(0.2 * hz))) | 1) + 2 * k)


def _corr(x: np.ndarray, y: np.ndarray) -> float:
    den = float(np.sqrt(np.sum(x * x) * np.sum(y * y)))
    return float(np.sum(x * y) / den) if den > 1e-12 else 0.0


def pair_wrists(frames: np.ndarray, pose: np.ndarray, watches: dict[str, np.ndarray | None],
                rows: list[tuple[int, int, int, str]], hz: float, units: str) -> dict[str, Any]:
    """Which pose wrist is which watch's wrist, from the data: the evidence and a ``decision``.

    Over the labelled sets, each pose wrist's |specific force| (:func:`pose_wrist_force`) is correlated with each
    watch's |acceleration| (:func:`watch_force`), both detrended per set. Sets in which one watch moves at least
    :data:`ONE_ARM_RATIO` times more than the other (one-arm exercises) are used; with none, or with one watch only,
    sets where the pose's wrists differ that much instead. ``decision`` is ``straight`` (the pose's labels match the
    watches), ``crossed`` (they are swapped) or ``undecided`` (too little one-arm time, too small a margin between
    the pairings, or no pairing that matches: see ``why``). Frames and axes do not matter: only magnitudes are used.
    """
    sides = ("left", "right")
    present = [s for s in sides if watches.get(s) is not None]
    out: dict[str, Any] = {"decision": "undecided", "watches": present}
    if not present:
        out["why"] = "no watch"
        return out
    per_set = []
    for start, end, _, activity in rows:
        if activity == "non_activity":
            continue
        p = pose_wrist_force(frames, pose, start, end, hz)
        w = {s: watch_force(watches[s], start, end, units, hz) for s in present}
        if p is None or any(v is None for v in w.values()):
            continue
        p = np.stack([_detrend(p[:, 0]), _detrend(p[:, 1])], axis=1)
        w = {s: _detrend(v) for s, v in w.items()}
        if len(present) == 2:
            spread = sorted([w["left"].std(), w["right"].std()])
        else:
            spread = sorted([p[:, 0].std(), p[:, 1].std()])
        ratio = spread[1] / max(spread[0], 1e-9)
        per_set.append({"frames": (start, end), "activity": activity, "ratio": ratio, "pose": p, "watch": w})
    one_arm = [x for x in per_set if x["ratio"] >= ONE_ARM_RATIO]
    used = one_arm or per_set
    out["one_arm_sets"] = bool(one_arm)
    out["sets_used"] = [f"{x['frames'][0]}-{x['frames'][1]} {x['activity']}" for x in used][:50]
    n_frames = sum(len(x["pose"]) for x in used)
    out["seconds_used"] = round(n_frames / hz, 2)
    if n_frames / hz < MIN_EVIDENCE_SECONDS:
        out["why"] = f"{n_frames / hz:.1f} s of usable sets (< {MIN_EVIDENCE_SECONDS} s)"
        return out
    pose_cat = np.concatenate([x["pose"] for x in used])
    corr: dict[str, float] = {}
    straight, crossed = [], []
    for j, side in enumerate(sides):
        if side not in present:
            continue
        wcat = np.concatenate([x["watch"][side] for x in used])
        same, other = _corr(pose_cat[:, j], wcat), _corr(pose_cat[:, 1 - j], wcat)
        corr[f"pose_{side}~watch_{side}"] = round(same, 3)
        corr[f"pose_{sides[1 - j]}~watch_{side}"] = round(other, 3)
        straight.append(same)
        crossed.append(other)
    out["correlations"] = corr
    s_mean, c_mean = float(np.mean(straight)), float(np.mean(crossed))
    out["straight_mean"], out["crossed_mean"] = round(s_mean, 3), round(c_mean, 3)
    if abs(s_mean - c_mean) < MIN_MARGIN:
        out["why"] = f"pairings differ by {abs(s_mean - c_mean):.2f} (< {MIN_MARGIN})"
    elif max(s_mean, c_mean) < MIN_MATCH:
        out["why"] = f"the better pairing correlates {max(s_mean, c_mean):.2f} (< {MIN_MATCH})"
    else:
        out["decision"] = "straight" if s_mean > c_mean else "crossed"
    return out


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
