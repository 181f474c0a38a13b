"""Raw clip -> windowed samples: validation, resampling to 50 Hz, trimming, 100-frame windows with stride 50.

Plain numpy; the Ray Data pipeline (``mujo.pipelines.preprocess``) calls these per batch of clips.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from mujo.data.clips import RawClip
from mujo.data.imu import virtual_wrist_acc
from mujo.data.text import normalize_label
from mujo.schema import ACC_CHANNELS, FS, NUM_JOINTS, STRIDE, WINDOW, SampleFormat, empty_batch


class BadClip(ValueError):
    """A clip that cannot become samples; ``reason`` is recorded in the manifest's quarantine list."""

    def __init__(self, clip_id: str, reason: str) -> None:
        super().__init__(f"{clip_id}: {reason}")
        self.clip_id = clip_id
        self.reason = reason


def resample(x: np.ndarray, fs_in: float, fs_out: float, n_out: int) -> np.ndarray:
    """Linear interpolation of ``x`` (T, ...) sampled at ``fs_in`` onto ``n_out`` samples at ``fs_out``."""
    if fs_in == fs_out and len(x) >= n_out:
        return x[:n_out]
    t_in = np.arange(len(x)) / fs_in
    t_out = np.arange(n_out) / fs_out
    flat = x.reshape(len(x), -1)
    out = np.empty((n_out, flat.shape[1]), dtype=np.float32)
    for c in range(flat.shape[1]):
        out[:, c] = np.interp(t_out, t_in, flat[:, c])
    return out.reshape((n_out,) + x.shape[1:])


def _check_stream(clip: RawClip, name: str, arr: np.ndarray, hz: float | None, shape: tuple[int, ...]) -> None:
    if hz is None or not hz > 0:
        raise BadClip(clip.clip_id, f"{name}: sampling rate missing or not positive ({hz})")
    if arr.ndim != len(shape) + 1 or any(s is not None and a != s for a, s in zip(arr.shape[1:], shape)):
        raise BadClip(clip.clip_id, f"{name}: wrong shape {arr.shape}, expected (T, {', '.join(map(str, shape))})")
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr.reshape(len(arr), -1))).any(axis=1).sum())
        raise BadClip(clip.clip_id, f"{name}: {bad} frame(s) with NaN or infinite values")


def validate_clip(clip: RawClip, video_dim: int, label_map: Mapping[str, int]) -> None:
    """Raise :class:`BadClip` for a clip that must be quarantined."""
    if clip.activity not in label_map:
        raise BadClip(clip.clip_id, f"unknown label '{clip.activity}' (dataset {clip.dataset} knows "
                                    f"{sorted(label_map)[:12]}...)")
    if clip.pose is None and clip.acc is None and clip.video is None:
        raise BadClip(clip.clip_id, "no modality at all (pose, acc and video all missing)")
    if clip.pose is not None:
        _check_stream(clip, "pose", clip.pose, clip.pose_hz, (NUM_JOINTS, 3))
    if clip.acc is not None:
        _check_stream(clip, "acc", clip.acc, clip.acc_hz, (ACC_CHANNELS,))
    if clip.video is not None:
        _check_stream(clip, "video", clip.video, clip.video_hz, (video_dim,))


def clip_windows(clip: RawClip, fmt: SampleFormat, label_map: Mapping[str, int],
                 trim_fraction: float = 0.15) -> dict[str, np.ndarray]:
    """All windows of one clip as a columnar sample batch (``text_emb`` left empty for the embedding stage)."""
    validate_clip(clip, fmt.video_dim, label_map)
    durations = [len(a) / hz for a, hz in ((clip.pose, clip.pose_hz), (clip.acc, clip.acc_hz),
                                           (clip.video, clip.video_hz)) if a is not None]
    n = int(np.floor(min(durations) * FS + 1e-9))
    cut = int(round(n * trim_fraction))
    usable = n - 2 * cut
    if usable < WINDOW:
        raise BadClip(clip.clip_id, f"too short: {min(durations):.2f} s leaves {max(usable, 0)} frames after "
                                    f"trimming {trim_fraction:.0%} at each end; one window needs {WINDOW}")
    streams: dict[str, np.ndarray] = {}
    if clip.pose is not None:
        streams["pose"] = resample(clip.pose, clip.pose_hz, FS, n)
    if clip.acc is not None:
        streams["acc"] = resample(clip.acc, clip.acc_hz, FS, n)
    elif "pose" in streams:
        streams["acc"] = virtual_wrist_acc(streams["pose"], FS)  # virtual IMU, on the whole clip (no edge effects)
    if clip.video is not None:
        streams["video"] = resample(clip.video, clip.video_hz, FS, n)

    starts = np.arange(cut, cut + usable - WINDOW + 1, STRIDE)
    batch = empty_batch(len(starts), fmt)
    text = normalize_label(clip.label_text)
    for i, s in enumerate(starts):
        batch["sample_id"][i] = f"{clip.clip_id}-w{i:04d}"
        if "pose" in streams:
            batch["pose"][i] = streams["pose"][s:s + WINDOW]
        if "acc" in streams:
            batch["acc"][i] = streams["acc"][s:s + WINDOW]
        if "video" in streams:
            batch["video"][i] = streams["video"][s:s + WINDOW].mean(axis=0)  # window-pooled feature
    for col, value in (("clip_id", clip.clip_id), ("subject", clip.subject), ("dataset", clip.dataset),
                       ("split", clip.split), ("label_text", clip.label_text), ("activity", clip.activity),
                       ("text", text)):
        batch[col][:] = value
    batch["class_id"][:] = label_map[clip.activity]
    for m in ("pose", "acc", "video"):
        batch[f"has_{m}"][:] = m in streams
    batch["has_text"][:] = bool(text)
    return batch


def concat_batches(batches: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
