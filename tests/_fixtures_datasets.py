"""Writers of tiny dataset fixtures in the exact published layouts (file names, shapes, dtypes, headers).

Each writer puts a few seconds of synthetic data into a folder (pytest's ``tmp_path``) and returns what the tests
need to check the adapters: the ground truth the data were made from. The signals are chosen so that a wrong column,
unit, sign, frame alignment or joint mapping shows up as a wrong number.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

G = 9.80665
MOTIONSENSE_HEADER = (",attitude.roll,attitude.pitch,attitude.yaw,gravity.x,gravity.y,gravity.z,rotationRate.x,"
                      "rotationRate.y,rotationRate.z,userAcceleration.x,userAcceleration.y,userAcceleration.z")


# ---------------------------------------------------------------------------------------------------------------------
# A skeleton in the platform's convention (Human3.6M order, metres, z up), facing +y with its right side at +x
# ---------------------------------------------------------------------------------------------------------------------

def standing_skeleton() -> np.ndarray:
    """(17, 3) Human3.6M joints of a person standing at the origin, facing +y (nose in front of the head)."""
    return np.array([
        [0.00, 0.00, 1.00],   # 0 pelvis
        [0.10, 0.00, 1.00],   # 1 r_hip
        [0.10, 0.02, 0.55],   # 2 r_knee
        [0.10, 0.00, 0.10],   # 3 r_ankle
        [-0.10, 0.00, 1.00],  # 4 l_hip
        [-0.10, 0.02, 0.55],  # 5 l_knee
        [-0.10, 0.00, 0.10],  # 6 l_ankle
        [0.00, 0.00, 1.25],   # 7 spine
        [0.00, 0.00, 1.50],   # 8 thorax
        [0.00, 0.10, 1.60],   # 9 neck/nose
        [0.00, 0.00, 1.72],   # 10 head
        [-0.20, 0.00, 1.48],  # 11 l_shoulder
        [-0.24, 0.02, 1.20],  # 12 l_elbow
        [-0.24, 0.20, 1.12],  # 13 l_wrist
        [0.20, 0.00, 1.48],   # 14 r_shoulder
        [0.24, 0.02, 1.20],   # 15 r_elbow
        [0.24, 0.20, 1.12],   # 16 r_wrist
    ])


def moving_skeleton(frames: np.ndarray, hz: float) -> np.ndarray:
    """(T, 17, 3): the standing skeleton with the wrists curling up and down (0.5 Hz), per frame number."""
    base = standing_skeleton()
    t = np.asarray(frames, np.float64) / hz
    pose = np.repeat(base[None], len(t), axis=0)
    pose[:, 13, 2] += 0.15 * (1 - np.cos(2 * np.pi * 0.5 * t))
    pose[:, 16, 2] += 0.15 * (1 + np.cos(2 * np.pi * 0.5 * t))
    return pose


SWAP_LR = (0, 4, 5, 6, 1, 2, 3, 7, 8, 9, 10, 14, 15, 16, 11, 12, 13)


# ---------------------------------------------------------------------------------------------------------------------
# MM-Fit
# ---------------------------------------------------------------------------------------------------------------------

MMFIT_T0_MS = 1_600_000_000_000.0  # wall-clock time of the first camera frame (ms)
MMFIT_F0 = 100  # the first camera frame number
MMFIT_FRAMES = 900  # 30 s at 30 Hz
MMFIT_ROWS = [(130, 369, 10, "squats"), (420, 659, 12, "bicep_curls"), (700, 819, 0, "non_activity")]
MMFIT_GRAVITY = {"squats": (0.0, 0.0, 9.81), "bicep_curls": (9.81, 0.0, 0.0), None: (0.0, 9.81, 0.0)}


def mmfit_frame_time(frame: float) -> float:
    return MMFIT_T0_MS + (frame - MMFIT_F0) * 1000.0 / 30.0


MMFIT_ONE_ARM = {"squats": 13, "bicep_curls": 16}  # watch_motion=True: the wrist that moves in each set (H36M joint)


def one_arm_motion(seconds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Height offsets (m) and vertical accelerations (m/s^2) of the left and right wrists, ``(n, 2)`` each, at
    ``seconds`` since camera frame ``MMFIT_F0``: in each labelled set of ``MMFIT_ONE_ARM`` one wrist curls up and
    down (0.15 * (1 - cos), 0.5 Hz, whole cycles, so it starts and ends at rest); otherwise both are still."""
    s = np.asarray(seconds, np.float64)
    lift, acc = np.zeros((len(s), 2)), np.zeros((len(s), 2))
    w = 2 * np.pi * 0.5
    for a, b, _, act in MMFIT_ROWS:
        if act not in MMFIT_ONE_ARM:
            continue
        t0, t1 = (a - MMFIT_F0) / 30.0, (b + 1 - MMFIT_F0) / 30.0
        inside = (s >= t0) & (s < t1)
        col = 0 if MMFIT_ONE_ARM[act] == 13 else 1
        lift[inside, col] = 0.15 * (1 - np.cos(w * (s[inside] - t0)))
        acc[inside, col] = 0.15 * w * w * np.cos(w * (s[inside] - t0))
    return lift, acc


def write_mmfit_workout(root: Path, wid: str, *, swap_lr: bool = False, mirror: bool = False,
                        watch_motion: bool = False, drop_frames: tuple[int, int] = (200, 205),
                        left_watch: bool = True, pose_shape: tuple[int, ...] | None = None,
                        seed: int = 0) -> dict[str, Any]:
    """One MM-Fit workout folder ``root/wNN`` with labels, 3-D pose (camera frame, mm) and both watches.

    * Pose: :func:`moving_skeleton` written as a lifter would give it: camera coordinates (x right, y down, z away
      from the camera), millimetres; ``swap_lr`` writes it in the left-first joint order of MM-Fit's EDA notebook.
      A few frames are missing (``drop_frames``).
    * Watches: ~100 Hz with timestamp jitter and a repeated timestamp, starting 0.3 s before the camera; column 0 is
      the nearest camera frame. The right watch reads gravity along z during the squats set, along x during the
      curls set and along y otherwise (so a badly cut segment shows); the left watch's x is a time ramp
      (seconds since the first camera frame) for the alignment check.
    * ``watch_motion``: one-arm sets instead (:func:`one_arm_motion`: the left wrist moves in the squats set, the
      right one in the curls set), the pose carries 2 mm of noise, and each watch reads its real wrist's specific
      force (motion + gravity) in a tilted sensor frame with 0.05 m/s^2 noise, as real watches would.
    * ``mirror``: the camera frame is mirrored (x negated) as a lifter's output may be; the joint labels stay right
      (with ``swap_lr`` both happen, which the face direction alone cannot see).
    * ``pose_shape``: write a pose_3d array of this (unexpected) shape instead.
    """
    rng = np.random.default_rng(seed)
    folder = root / f"w{wid}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"w{wid}_labels.csv").write_text("".join(f"{a},{b},{r},{act}\n" for a, b, r, act in MMFIT_ROWS))

    frames = np.arange(MMFIT_F0, MMFIT_F0 + MMFIT_FRAMES)
    if watch_motion:
        world = np.repeat(standing_skeleton()[None], len(frames), axis=0)
        lift, _ = one_arm_motion((frames - MMFIT_F0) / 30.0)
        world[:, 13, 2] += lift[:, 0]
        world[:, 16, 2] += lift[:, 1]
    else:
        world = moving_skeleton(frames, 30.0)
    keep = ~((frames >= drop_frames[0]) & (frames < drop_frames[1]))
    seen = world + (rng.normal(0.0, 0.002, world.shape) if watch_motion else 0.0)
    cam = np.stack([-seen[..., 0] if mirror else seen[..., 0], -seen[..., 2], seen[..., 1] + 3.0], axis=-1) * 1000.0
    if swap_lr:
        cam = cam[:, list(SWAP_LR)]
    pose = np.zeros((3, keep.sum(), 18), dtype=np.float64)
    pose[:, :, 0] = frames[keep][None, :]
    pose[:, :, 1:] = np.transpose(cam[keep], (2, 0, 1))
    np.save(folder / f"w{wid}_pose_3d.npy", pose if pose_shape is None else np.zeros(pose_shape))

    def activity_at(frame: np.ndarray) -> list[str | None]:
        out: list[str | None] = [None] * len(frame)
        for a, b, _, act in MMFIT_ROWS[:2]:
            for i in np.nonzero((frame >= a) & (frame <= b))[0]:
                out[i] = act
        return out

    t_end = mmfit_frame_time(MMFIT_F0 + MMFIT_FRAMES) + 300.0
    t = np.arange(MMFIT_T0_MS - 300.0, t_end, 10.0)
    t = t + rng.uniform(-1.5, 1.5, len(t))
    t[50] = t[49]  # a repeated timestamp
    frame = np.round((t - MMFIT_T0_MS) * 30.0 / 1000.0) + MMFIT_F0
    acts = activity_at(frame)
    if watch_motion:
        _, acc = one_arm_motion((t - MMFIT_T0_MS) / 1000.0)
        tilt = byod_rotation_x(0.7)  # the watch's sensor frame relative to the world
        force = {side: (np.column_stack([0 * t, 0 * t, acc[:, i] + G]) @ tilt) + rng.normal(0, 0.05, (len(t), 3))
                 for i, side in enumerate(("l", "r"))}
        right, left = force["r"], force["l"]
    else:
        right = np.array([MMFIT_GRAVITY[a] for a in acts])
        ramp = (t - MMFIT_T0_MS) / 1000.0
        left = np.column_stack([ramp, np.zeros_like(ramp), np.full_like(ramp, 9.81)])
    np.save(folder / f"w{wid}_sw_r_acc.npy", np.column_stack([frame, t, right]))
    if left_watch:
        np.save(folder / f"w{wid}_sw_l_acc.npy", np.column_stack([frame, t, left]))
    # files the adapter must ignore
    np.save(folder / f"w{wid}_sw_l_gyr.npy", np.zeros((10, 5)))
    np.save(folder / f"w{wid}_pose_2d.npy", np.zeros((2, 10, 19)))
    return {"folder": folder, "world": world, "frames": frames}


# ---------------------------------------------------------------------------------------------------------------------
# MotionSense
# ---------------------------------------------------------------------------------------------------------------------

MOTIONSENSE_SPECS = [
    ("std_6", 1, (0.0, 0.0, -1.0), 0.0, 250),   # phone still, face up: gravity points down (-z)
    ("dws_1", 17, (0.6, -0.8, 0.0), 0.3, 200),  # walking downstairs
    ("jog_9", 22, (0.0, -1.0, 0.0), 0.8, 200),  # jogging
    ("sit_5", 3, (0.0, 0.0, -1.0), 0.0, 50),    # 1 s: too short
]


def write_motionsense(root: Path, base: Path | None = None) -> Path:
    """``A_DeviceMotion_data/<act>_<trial>/sub_<id>.csv`` files (50 Hz, g, Core Motion sign) under ``base``
    (default ``root/A_DeviceMotion_data``)."""
    base = base if base is not None else root / "A_DeviceMotion_data"
    for folder, sid, grav, amp, n in MOTIONSENSE_SPECS:
        d = base / folder
        d.mkdir(parents=True, exist_ok=True)
        t = np.arange(n) / 50.0
        user = amp * np.stack([np.sin(2 * np.pi * 2 * t), np.cos(2 * np.pi * 2 * t), 0 * t], axis=1)
        rows = [MOTIONSENSE_HEADER]
        for i in range(n):
            vals = [i, 0.1, 0.2, 0.3, *grav, 0.01, 0.02, 0.03, *user[i]]
            rows.append(",".join(str(v) if isinstance(v, int) else f"{v:.6f}" for v in vals))
        (d / f"sub_{sid}.csv").write_text("\n".join(rows) + "\n")
    return base


def write_motionsense_download(root: Path) -> Path:
    """The download as it unpacks (the repository's ``data/`` zips, as mirrored e.g. on Kaggle)::

        root/data/A_DeviceMotion_data/A_DeviceMotion_data/<act>_<trial>/sub_<id>.csv   (the doubled folder)
        root/data/B_Accelerometer_data/<act>_<trial>/sub_<id>.csv                      (x, y, z only)
        root/data/C_Gyroscope_data/<act>_<trial>/sub_<id>.csv                          (x, y, z only)
        root/data/__MACOSX/A_DeviceMotion_data/dws_1/._sub_17.csv                      (resource fork)
        root/data/data_subjects_info.csv

    Returns ``root/data``."""
    data = root / "data"
    write_motionsense(root, data / "A_DeviceMotion_data" / "A_DeviceMotion_data")
    for folder in ("B_Accelerometer_data", "C_Gyroscope_data"):
        for trial, sid, _, _, n in MOTIONSENSE_SPECS:
            d = data / folder / trial
            d.mkdir(parents=True, exist_ok=True)
            rows = [",x,y,z"] + [f"{i},0.01,-0.98,0.05" for i in range(n)]
            (d / f"sub_{sid}.csv").write_text("\n".join(rows) + "\n")
    fork = data / "__MACOSX" / "A_DeviceMotion_data" / "dws_1"
    fork.mkdir(parents=True)
    (fork / "._sub_17.csv").write_bytes(b"\x00\x05\x16\x07 not a csv")
    (data / "data_subjects_info.csv").write_text("code,weight,height,age,gender\n1,102,188,46,1\n")
    return data


# ---------------------------------------------------------------------------------------------------------------------
# MHEALTH
# ---------------------------------------------------------------------------------------------------------------------

MHEALTH_RUNS = [(0, 3.0), (1, 5.0), (0, 1.0), (4, 6.0), (0, 0.5), (5, 1.0), (0, 2.5)]


def write_mhealth(root: Path, subjects: tuple[int, ...] = (1, 9)) -> Path:
    """``mHealth_subject<N>.log``: 24 tab-separated columns, 50 Hz, label in column 24 (0 = null).

    The right-lower-arm accelerometer (columns 15-17) reads a still arm (|a| = 9.81) during label 1 and an
    oscillating one otherwise; every other column holds values far from 9.81, so a wrong column shows.
    """
    root.mkdir(parents=True, exist_ok=True)
    for sid in subjects:
        blocks = []
        for label, seconds in MHEALTH_RUNS:
            n = int(round(seconds * 50))
            t = np.arange(n) / 50.0
            row = np.zeros((n, 24))
            row[:, 0:3] = 100.0   # chest acc
            row[:, 3:5] = 0.5     # ECG
            row[:, 5:14] = 50.0   # ankle acc/gyro/mag
            still = np.array([-9.2, 3.0, 1.2]) / np.linalg.norm([-9.2, 3.0, 1.2]) * 9.81
            if label == 1:
                arm = np.repeat(still[None], n, axis=0)
            else:
                arm = still + 3.0 * np.stack([np.sin(2 * np.pi * t), np.cos(2 * np.pi * t), 0 * t], axis=1)
            row[:, 14:17] = arm
            row[:, 17:23] = 7.0   # arm gyro/mag
            row[:, 23] = label
            blocks.append(row)
        data = np.concatenate(blocks)
        lines = ["\t".join(f"{v:.4f}" if j < 23 else str(int(v)) for j, v in enumerate(r)) for r in data]
        (root / f"mHealth_subject{sid}.log").write_text("\n".join(lines) + "\n")
    return root


# ---------------------------------------------------------------------------------------------------------------------
# MyoGym
# ---------------------------------------------------------------------------------------------------------------------

def write_myogym(root: Path) -> Path:
    """``MyoGym.mat`` with ``raw_data`` (N x 17) and ``raw_data_labels`` (N x 2), as MATLAB doubles.

    Rows come every 17 ms (irregular like the EMG-driven rows of the original); the IMU columns hold the value of the
    last 50 Hz IMU sample (timestamps in microseconds, repeated between samples). Acceleration in g with |a| = 1 at
    rest; EMG (columns 1-8) and gyroscope (14-16) hold large values so a wrong column shows.
    Sessions: subject 1: null 99 (2 s), exercise 20 (6 s), null (1 s), exercise 1 (5 s);
    subject 9: exercise 26 (3 s), a 5-s recording gap, exercise 26 again (3 s).
    """
    from scipy.io import savemat

    rows, labels = [], []
    clock = [1.4526e9]  # microseconds

    def session(code: int, subject: int, seconds: float, gap_before: float = 0.0) -> None:
        clock[0] += gap_before * 1e6
        n = int(seconds * 1e6 / 17_000)
        for i in range(n):
            t_row = clock[0] + i * 17_000
            t_imu = np.floor(t_row / 20_000) * 20_000
            phase = 2 * np.pi * 0.5 * (t_imu / 1e6)
            acc = np.array([np.cos(phase) * 0.6, np.sin(phase) * 0.6, 0.8])  # |a| = 1 g
            r = np.zeros(17)
            r[0] = t_row
            r[1:9] = 120.0
            r[9] = t_imu
            r[10:13] = acc
            r[13] = t_imu
            r[14:17] = 500.0
            rows.append(r)
            labels.append([code, subject])
        clock[0] += n * 17_000

    session(99, 1, 2.0)
    session(20, 1, 6.0)
    session(99, 1, 1.0)
    session(1, 1, 5.0)
    session(26, 9, 3.0, gap_before=30.0)
    session(26, 9, 3.0, gap_before=5.0)
    savemat(root / "MyoGym.mat", {
        "raw_data": np.array(rows, dtype=np.float64),
        "raw_data_labels": np.array(labels, dtype=np.float64),
        "features_acc": np.zeros((3, 4)), "features_gyro": np.zeros((3, 4)), "features_labels": np.zeros((3, 2)),
        "piirteet_emg": np.zeros((3, 8)),
    })
    return root / "MyoGym.mat"


# ---------------------------------------------------------------------------------------------------------------------
# FLAG3D
# ---------------------------------------------------------------------------------------------------------------------

H36M_FROM_NTU = (0, 16, 17, 18, 12, 13, 14, 1, 20, 2, 3, 4, 5, 6, 8, 9, 10)


def ntu_from_h36m(pose: np.ndarray) -> np.ndarray:
    """(T, 25, 3) NTU RGB+D joints built from (T, 17, 3) Human3.6M ones; the NTU-only joints (hands, feet, tips,
    thumbs) are offsets of their wrist/ankle."""
    out = np.zeros((len(pose), 25, 3))
    for h, n in enumerate(H36M_FROM_NTU):
        out[:, n] = pose[:, h]
    out[:, 7] = out[:, 6] + [0, 0.05, 0]     # HandLeft
    out[:, 11] = out[:, 10] + [0, 0.05, 0]   # HandRight
    out[:, 15] = out[:, 14] + [0, 0.1, -0.05]  # FootLeft
    out[:, 19] = out[:, 18] + [0, 0.1, -0.05]  # FootRight
    out[:, 21] = out[:, 7] + [0, 0.05, 0]
    out[:, 22] = out[:, 7] + [0.03, 0.02, 0]
    out[:, 23] = out[:, 11] + [0, 0.05, 0]
    out[:, 24] = out[:, 11] + [-0.03, 0.02, 0]
    return out


FLAG3D_TAKES = (("S002C002M001P002A001R001", 0, 150), ("S002C002M001P001A005R002", 4, 120),
                ("S002C002M001P011A003R001", 2, 120))


def write_flag3d(root: Path, file: str = "flag3d.pkl", *, variants: int = 1, first_frame_jump: bool = False,
                 protocol: int = pickle.DEFAULT_PROTOCOL, numpy_labels: bool = False) -> dict[str, Any]:
    """A FLAG3D annotation file (pyskl layout): three takes, one per official list and one in none.

    * ``variants``: each take written as ``M001``..``M<variants>`` (as the release does: M001-M004 per take); all
      are exact copies except ``M004`` of the first take, 1 mm off.
    * ``first_frame_jump``: every sequence gets an extra first frame like the published sample's: SpineBase ~7 cm
      and the other joints up to ~0.45 m from where the motion starts (the returned truth excludes it).
    * ``protocol`` 2 is what pyskl's tooling (mmcv) writes; ``numpy_labels`` stores labels as ``np.int64``.

    Returns frame_dir -> the (T, 17, 3) Human3.6M truth of its motion."""
    anns, truth, split = [], {}, {"train": [], "val": []}
    for fd, label, frames in FLAG3D_TAKES:
        h36m = moving_skeleton(np.arange(frames), 30.0)
        h36m[:, :, 0] += np.linspace(0, 0.3, frames)[:, None]  # some global motion
        kp = ntu_from_h36m(h36m)
        if first_frame_jump:
            base = kp[0, 0] + [-0.05, 0.05, 0.0]  # SpineBase ~7 cm off, as in the sample
            lead = base + 1.45 * (kp[0] - kp[0, 0])  # the limbs stretched: up to ~0.45 m from frame 1
            kp = np.concatenate([lead[None], kp])
        for m in range(1, variants + 1):
            name = fd.replace("M001", f"M{m:03d}")
            arr = kp + (0.001 if (m == 4 and fd == FLAG3D_TAKES[0][0]) else 0.0)
            anns.append({"frame_dir": name, "label": np.int64(label) if numpy_labels else label,
                         "keypoint": arr[None].astype(np.float32), "total_frames": len(arr),
                         "img_shape": (480, 854), "original_shape": (480, 854)})
            truth[name] = h36m
            if "P002" in name:
                split["train"].append(name)
            elif "P001" in name:
                split["val"].append(name)
    with open(root / file, "wb") as f:
        pickle.dump({"split": split, "annotations": anns}, f, protocol=protocol)
    return truth


# ---------------------------------------------------------------------------------------------------------------------
# Bring your own data
# ---------------------------------------------------------------------------------------------------------------------

def byod_rotation_x(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def write_byod_csv(root: Path, *, extra_column: bool = False) -> dict[str, Any]:
    """A folder of per-recording CSVs at 100 Hz, in g, gravity REMOVED (linear acc + the API's gravity vector),
    right wrist only, per-row labels; plus a 1-s recording (too short)."""
    rec = root / "recordings"
    rec.mkdir(parents=True, exist_ok=True)
    grav_still = np.array([0.28, -0.48, 0.83]) / np.linalg.norm([0.28, -0.48, 0.83])  # g, sensor frame

    def write(name: str, subject: str, parts: list[tuple[str, float]]) -> None:
        lines = ["time,ax,ay,az,gx,gy,gz,activity,subject" + (",temperature" if extra_column else "")]
        k = 0
        for label, seconds in parts:
            for _ in range(int(seconds * 100)):
                t = k / 100.0
                moving = label == "walk"
                lin = 0.3 * np.array([np.sin(2 * np.pi * 1.8 * t), np.cos(2 * np.pi * 1.8 * t), 0.0]) * moving
                vals = [f"{t:.2f}", *(f"{v:.6f}" for v in lin), *(f"{v:.6f}" for v in grav_still), label, subject]
                if extra_column:
                    vals.append("21.5")
                lines.append(",".join(vals))
                k += 1
        (rec / name).write_text("\n".join(lines) + "\n")

    write("s1_morning.csv", "s1", [("walk", 4.0), ("stand", 4.0), ("none", 1.0)])
    write("s2_morning.csv", "s2", [("stand", 3.5)])
    write("s3_tiny.csv", "s3", [("walk", 1.0)])
    return {"folder": rec, "gravity_g": grav_still}


def byod_csv_card(**overrides: Any) -> dict[str, Any]:
    card: dict[str, Any] = {
        "name": "wrist_study",
        "title": "A tiny BYOD test set",
        "sampling_rate_hz": 100,
        "units": "g",
        "gravity": "removed",
        "rest_reading": "up",
        "channels": ["ax", "ay", "az", "gx", "gy", "gz"],
        "wrists": {"right": ["ax", "ay", "az"]},
        "gravity_channels": {"right": ["gx", "gy", "gz"]},
        "labels": [{"name": "walking", "values": ["walk"]}, {"name": "standing", "values": ["stand"]}],
        "null_values": ["none"],
        "data": {"format": "csv", "path": "recordings", "label_column": "activity", "subject_column": "subject",
                 "ignore_columns": ["time"]},
        "split": {"train": ["s1"], "test": ["s2", "s3"]},
        "short_recordings": "refuse",
    }
    card.update(overrides)
    return card


def write_byod_npy(root: Path, channels: int = 3) -> dict[str, Any]:
    """``X.npy`` (recordings, time, channels) in mg with gravity included (left wrist), string labels ``y.npy`` and
    ``subjects.npy``; recording 1 is shorter and NaN-padded at the end (as unequal lengths are usually stored)."""
    n_rec, n_t = 3, 240  # 4 s at 60 Hz
    x = np.zeros((n_rec, n_t, channels))
    still = np.array([0.0, 600.0, 800.0])  # mg, |a| = 1 g
    for r in range(n_rec):
        t = np.arange(n_t) / 60.0
        x[r, :, :3] = still + (r == 2) * 200.0 * np.stack([np.sin(2 * np.pi * t), np.cos(2 * np.pi * t), 0 * t], 1)
    x[1, 180:] = np.nan
    np.save(root / "X.npy", x)
    np.save(root / "y.npy", np.array(["rest", "rest", "wave"]))
    np.save(root / "subjects.npy", np.array(["u1", "u2", "u3"]))
    return {"x": x}


def byod_npy_card(**overrides: Any) -> dict[str, Any]:
    card: dict[str, Any] = {
        "name": "npy_study",
        "sampling_rate_hz": 60,
        "units": "mg",
        "gravity": "included",
        "channels": ["x", "y", "z"],
        "wrists": {"left": ["x", "y", "z"]},
        "labels": ["rest", "wave"],
        "data": {"format": "npy", "x": "X.npy", "y": "y.npy", "subjects": "subjects.npy"},
        "split": {"train": ["u1", "u2"], "test": ["u3"]},
    }
    card.update(overrides)
    return card


def write_card(path: Path, card: dict[str, Any]) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(card, sort_keys=False))
    return path
