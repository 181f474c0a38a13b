"""Raw clips: the input of preprocessing, whatever produced them (the synthetic generator, a dataset adapter, a
user's own data).

A raw clip is one continuous recording of one activity by one subject: pose at its native rate, optionally a real
IMU at its own rate (absent -> a virtual wrist IMU is derived from the pose), optionally video features at theirs,
and the raw label text. In Parquet (one row per clip) tensors are stored flat as ``list<float32>`` with their shape
in ``<name>_shape``, because clips differ in length.

Each stream may carry per-frame timestamps (``<name>_t``: ``list<float64>``, seconds, one per frame, strictly
increasing) for recordings whose sampling is not uniform; without them (null, or a file written before raw format
1.1 that lacks the column) frame ``i`` is at ``i / <name>_hz``. Preprocessing resamples by the timestamps when given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
import pyarrow as pa

from mujo.data import imu, synth, video
from mujo.data.activities import ACTIVITIES, CATALOGUE, MMFIT_ACTIVITIES, WIDE_ACTIVITIES
from mujo.data.text import canonical_text, make_label_text

RAW_VERSION = "1.2"  # 1.1: optional per-stream timestamps <name>_t; 1.2: optional `texts` (files of 1.0/1.1 still read)
TENSORS = ("pose", "acc", "video")
STRING_FIELDS = ("clip_id", "subject", "dataset", "split", "label_text", "activity")

RAW_SCHEMA = pa.schema(
    [pa.field(c, pa.string(), nullable=False) for c in STRING_FIELDS]
    + [f for t in TENSORS for f in (pa.field(t, pa.list_(pa.float32())), pa.field(f"{t}_shape", pa.list_(pa.int32())),
                                    pa.field(f"{t}_hz", pa.float64()), pa.field(f"{t}_t", pa.list_(pa.float64())))]
    + [pa.field("texts", pa.list_(pa.string()))],  # alternative descriptions of the clip (null: label_text only)
    metadata={b"mujo.raw_version": RAW_VERSION.encode()},
)


@dataclass
class RawClip:
    clip_id: str
    subject: str
    dataset: str
    split: str
    label_text: str
    activity: str
    pose: np.ndarray | None = None  # (T, 17, 3) metres, z up
    pose_hz: float | None = None
    acc: np.ndarray | None = None  # (T_a, 6) m/s^2, left then right wrist, sensor frame, gravity included
    acc_hz: float | None = None
    video: np.ndarray | None = None  # (T_v, D_v)
    video_hz: float | None = None
    # optional per-frame timestamps (seconds, strictly increasing, one per frame); None -> uniform at <name>_hz
    pose_t: np.ndarray | None = None
    acc_t: np.ndarray | None = None
    video_t: np.ndarray | None = None
    # optional alternative descriptions of the whole clip (motion corpora: several captions per motion); when given,
    # label_text is one of them. None: label_text is the only text
    texts: list[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def clips_to_table(clips: Iterable[RawClip]) -> pa.Table:
    cols: dict[str, list] = {f.name: [] for f in RAW_SCHEMA}
    for c in clips:
        for s in STRING_FIELDS:
            cols[s].append(getattr(c, s))
        for t in TENSORS:
            arr = getattr(c, t)
            cols[t].append(None if arr is None else np.asarray(arr, np.float32).ravel())
            cols[f"{t}_shape"].append(None if arr is None else list(np.shape(arr)))
            cols[f"{t}_hz"].append(getattr(c, f"{t}_hz"))
            stamps = getattr(c, f"{t}_t")
            cols[f"{t}_t"].append(None if arr is None or stamps is None else np.asarray(stamps, np.float64).ravel())
        cols["texts"].append(None if c.texts is None else [str(x) for x in c.texts])
    return pa.Table.from_pydict(cols, schema=RAW_SCHEMA)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def row_to_clip(batch: dict[str, Any], i: int) -> RawClip:
    """Row ``i`` of columnar rows back to a clip; a ``ValueError`` naming the stream when its values do not fit
    its shape. Columns a file lacks (``<name>_t`` in raw format 1.0, an absent stream) read as missing."""
    kw: dict[str, Any] = {s: str(batch[s][i]) for s in STRING_FIELDS}
    for t in TENSORS:
        flat = batch[t][i] if t in batch else None
        shape = batch[f"{t}_shape"][i] if f"{t}_shape" in batch else None
        if _missing(flat) or _missing(shape):
            continue
        values = np.asarray(flat, dtype=np.float32)
        dims = [int(s) for s in shape]
        if any(d < 0 for d in dims) or values.size != int(np.prod(dims)):
            raise ValueError(f"{t}: {values.size} values do not fit its shape {dims}")
        kw[t] = values.reshape(dims)
        hz = batch[f"{t}_hz"][i] if f"{t}_hz" in batch else None
        kw[f"{t}_hz"] = None if _missing(hz) else float(hz)
        stamps = batch[f"{t}_t"][i] if f"{t}_t" in batch else None
        if not _missing(stamps):
            kw[f"{t}_t"] = np.asarray(stamps, dtype=np.float64)
    texts = batch["texts"][i] if "texts" in batch else None  # raw format < 1.2 has no texts column
    if not _missing(texts):
        kw["texts"] = [str(x) for x in texts]
    return RawClip(**kw)


def rows_to_clips(batch: dict[str, Any]) -> list[RawClip]:
    """Columnar rows (a pyarrow-to-numpy/pandas batch or ``Table.to_pydict()``) back to clips."""
    return [row_to_clip(batch, i) for i in range(len(batch["clip_id"]))]


# --------------------------------------------------------------------------------------------------------------
# The synthetic corpus
# --------------------------------------------------------------------------------------------------------------

def resolve_activities(spec_activities: str | list[str]) -> tuple[str, ...]:
    if spec_activities == "all":
        return ACTIVITIES
    if spec_activities == "mmfit":
        return MMFIT_ACTIVITIES
    if spec_activities == "wide":  # issue 17: the wide vocabulary (mujo.data.activities)
        return WIDE_ACTIVITIES
    unknown = [a for a in spec_activities if a not in CATALOGUE]
    if unknown:
        raise ValueError(f"unknown activities {unknown}; known: {list(WIDE_ACTIVITIES)}")
    return tuple(spec_activities)


@dataclass(frozen=True)
class ClipTask:
    """Everything needed to generate one clip deterministically."""

    dataset: str
    split: str
    subject_number: int
    activity: str
    clip_index: int
    seconds: float
    seed: int
    label_style: str
    real_sensors: bool
    video_dim: int

    @property
    def clip_id(self) -> str:
        return f"{self.dataset}-s{self.subject_number:04d}-{self.activity}-{self.clip_index:02d}"


def plan_clips(spec, seed: int) -> list[ClipTask]:
    """All clip tasks of one synthetic dataset spec (a :class:`mujo.config.DatasetSpec`), subjects split by subject."""
    rng = np.random.default_rng([seed, sum(map(ord, spec.name))])
    tasks: list[ClipTask] = []
    number = spec.subject_offset
    for split in ("train", "val", "test"):
        for _ in range(spec.subjects.get(split, 0)):
            for activity in resolve_activities(spec.activities):
                for k in range(spec.clips_per_activity):
                    seconds = float(rng.uniform(*spec.clip_seconds))
                    tasks.append(ClipTask(spec.name, split, number, activity, k, seconds,
                                          int(rng.integers(2**31)), spec.label_style, spec.real_sensors,
                                          spec.video_dim))
            number += 1
    return tasks


def simulate_real_imu(acc: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A real watch's accelerometer from an ideal one: per-axis gain and bias, mounting rotation, white noise.

    Gives downstream data the real-vs-virtual distribution shift that calibration is for.
    """
    out = np.empty_like(acc)
    for w in range(2):
        angles = rng.uniform(-0.25, 0.25, 3)
        cx, cy, cz = np.cos(angles)
        sx, sy, sz = np.sin(angles)
        rot = (np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]]) @ np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
               @ np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]]))
        gain = rng.uniform(0.9, 1.1, 3)
        bias = rng.normal(0.0, 0.3, 3)
        block = acc[:, 3 * w:3 * w + 3] @ rot.T
        out[:, 3 * w:3 * w + 3] = block * gain + bias + rng.normal(0.0, 0.15, block.shape)
    return out.astype(np.float32)


def make_clip(task: ClipTask, fs: float = 50.0) -> RawClip:
    """Generate one synthetic clip: motion, virtual (or simulated real) wrist IMU, video features, label text."""
    rng = np.random.default_rng(task.seed)
    subject = synth.sample_subject(f"s{task.subject_number:04d}", seed=task.subject_number)
    motion = synth.generate_motion(task.activity, subject, task.seconds, seed=task.seed, fs=fs)
    pose = motion["pose"]
    acc = imu.virtual_wrist_acc(pose, fs)
    if task.real_sensors:
        acc = simulate_real_imu(acc, np.random.default_rng([task.subject_number, 7]))
    feats = video.video_features(pose, motion["camera_yaw"], clip_seed=task.seed, dim=task.video_dim)
    label = make_label_text(task.activity, rng) if task.label_style == "free_text" else canonical_text(task.activity)
    return RawClip(clip_id=task.clip_id, subject=f"{task.dataset}-s{task.subject_number:04d}", dataset=task.dataset,
                   split=task.split, label_text=label, activity=task.activity, pose=pose, pose_hz=fs, acc=acc,
                   acc_hz=fs, video=feats, video_hz=fs)
