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


def _interp_rows(flat: np.ndarray, t_in: np.ndarray, t_out: np.ndarray) -> np.ndarray:
    """Linear interpolation of every column of ``flat`` (T, C) at the times ``t_out`` (held constant beyond either
    end), as ``np.interp`` per column would, for all columns at once: the bracketing samples and their weights are
    found once (times in float64), the values are mixed in float32 in place (two row gathers, no float64 copies of
    the stream: 512-d video features at 50 Hz are most of a file's memory traffic)."""
    flat = np.asarray(flat, dtype=np.float32)
    t_in = np.asarray(t_in, dtype=np.float64)
    t_out = np.asarray(t_out, dtype=np.float64)
    n = len(t_in)
    if n == 1:
        return np.repeat(flat[:1], len(t_out), axis=0)
    j = np.clip(np.searchsorted(t_in, t_out, side="right") - 1, 0, n - 2)
    x0 = t_in[j]
    w = np.clip((t_out - x0) / (t_in[j + 1] - x0), 0.0, 1.0).astype(np.float32)[:, None]
    out = flat[j]
    step = flat[j + 1]
    step -= out
    step *= w
    out += step  # before the first sample w = 0: exactly flat[0]
    out[t_out >= t_in[-1]] = flat[-1]  # w = 1 gives f0 + (f1 - f0), which may miss flat[-1] by an ulp
    return out


def resample(x: np.ndarray, fs_in: float, fs_out: float, n_out: int) -> np.ndarray:
    """Linear interpolation of ``x`` (T, ...) sampled at ``fs_in`` onto ``n_out`` samples at ``fs_out``."""
    if fs_in == fs_out and len(x) >= n_out:
        return x[:n_out]
    t_in = np.arange(len(x)) / fs_in
    t_out = np.arange(n_out) / fs_out
    return _interp_rows(x.reshape(len(x), -1), t_in, t_out).reshape((n_out,) + x.shape[1:])


def resample_at(x: np.ndarray, t_in: np.ndarray, t_out: np.ndarray) -> np.ndarray:
    """Linear interpolation of ``x`` (T, ...) sampled at times ``t_in`` (strictly increasing) onto times ``t_out``
    (held constant beyond either end)."""
    return _interp_rows(x.reshape(len(x), -1), t_in, t_out).reshape((len(t_out),) + x.shape[1:])


STREAMS = ("pose", "acc", "video")


def _check_times(clip: RawClip, name: str, arr: np.ndarray, t: np.ndarray) -> None:
    """Timestamps of one stream: one per frame, finite, strictly increasing."""
    if t.ndim != 1 or len(t) != len(arr):
        raise BadClip(clip.clip_id, f"{name}_t: {t.size} timestamp(s) for {len(arr)} frame(s); one per frame needed")
    if not np.isfinite(t).all():
        raise BadClip(clip.clip_id, f"{name}_t: {int((~np.isfinite(t)).sum())} NaN or infinite timestamp(s)")
    step = np.diff(t)
    back = np.flatnonzero(step < 0)
    if back.size:
        i = int(back[0]) + 1
        raise BadClip(clip.clip_id, f"{name}_t: timestamps go backwards at frame {i} ({t[i]:.6g} s after "
                                    f"{t[i - 1]:.6g} s; {back.size} time(s) in the clip)")
    same = np.flatnonzero(step == 0)
    if same.size:
        i = int(same[0]) + 1
        raise BadClip(clip.clip_id, f"{name}_t: timestamps do not increase at frame {i} ({t[i]:.6g} s repeated; "
                                    f"{same.size} time(s) in the clip)")


def _check_stream(clip: RawClip, name: str, arr: np.ndarray, hz: float | None, shape: tuple[int, ...]) -> None:
    t = getattr(clip, f"{name}_t", None)
    if (hz is None and t is None) or (hz is not None and not hz > 0):
        raise BadClip(clip.clip_id, f"{name}: sampling rate missing or not positive ({hz})")
    if arr.ndim != len(shape) + 1 or any(s is not None and a != s for a, s in zip(arr.shape[1:], shape)):
        raise BadClip(clip.clip_id, f"{name}: wrong shape {arr.shape}, expected (T, {', '.join(map(str, shape))})")
    if not np.isfinite(arr).all():
        bad_frames = (~np.isfinite(arr.reshape(len(arr), -1))).any(axis=1)
        first = int(np.argmax(bad_frames))
        raise BadClip(clip.clip_id, f"{name}: {int(bad_frames.sum())} frame(s) with NaN or infinite values "
                                    f"(first at frame {first})")
    if t is not None:
        _check_times(clip, name, arr, np.asarray(t, dtype=np.float64))


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


def _timeline(clip: RawClip) -> tuple[float, float, dict[str, np.ndarray | None]]:
    """The clip's common time span ``(start, end)`` in seconds and each present stream's timestamps (None: uniform).

    A stream with timestamps covers ``[t[0], t[-1] + one frame period]`` (the period is ``1 / <name>_hz``, or the
    median timestamp step when no rate is given); a stream without them is uniform at its rate and starts with the
    latest-starting timestamped stream (at 0 when no stream has timestamps). The span is where all streams overlap.
    """
    stamps: dict[str, np.ndarray | None] = {}
    for m in STREAMS:
        if getattr(clip, m) is not None:
            t = getattr(clip, f"{m}_t", None)
            stamps[m] = None if t is None else np.asarray(t, dtype=np.float64)
    timed = [t for t in stamps.values() if t is not None and len(t)]
    start = max((float(t[0]) for t in timed), default=0.0)
    end = np.inf
    for m, t in stamps.items():
        arr, hz = getattr(clip, m), getattr(clip, f"{m}_hz")
        if t is None:
            end = min(end, start + len(arr) / hz)
        elif len(t):
            period = 1.0 / hz if hz else (float(np.median(np.diff(t))) if len(t) > 1 else 0.0)
            end = min(end, float(t[-1]) + period)
        else:
            end = start
    return start, max(float(end), start), stamps


def clip_windows(clip: RawClip, fmt: SampleFormat, label_map: Mapping[str, int],
                 trim_fraction: float = 0.15) -> dict[str, np.ndarray]:
    """All windows of one clip as a columnar sample batch (``text_emb`` left empty for the embedding stage).

    Every stream is resampled to 50 Hz on the clip's common time span (by its timestamps when it has them),
    ``trim_fraction`` of the frames is cut at each end, and 100-frame windows start every 50 frames."""
    validate_clip(clip, fmt.video_dim, label_map)
    start, end, stamps = _timeline(clip)
    n = int(np.floor((end - start) * FS + 1e-9))
    cut = int(round(n * trim_fraction))
    usable = n - 2 * cut
    if usable < WINDOW:
        raise BadClip(clip.clip_id, f"too short: {end - start:.2f} s leaves {max(usable, 0)} frames after "
                                    f"trimming {trim_fraction:.0%} at each end; one window needs {WINDOW}")
    t_out = start + np.arange(n) / FS
    streams: dict[str, np.ndarray] = {}
    for m in STREAMS:
        if m not in stamps:
            continue
        arr = getattr(clip, m)
        if stamps[m] is None:  # uniform from its rate, starting at the span's start
            streams[m] = resample(arr, getattr(clip, f"{m}_hz"), FS, n)
        else:
            streams[m] = resample_at(arr, stamps[m], t_out)
    if "acc" not in streams and "pose" in streams:
        streams["acc"] = virtual_wrist_acc(streams["pose"], FS)  # virtual IMU, on the whole clip (no edge effects)

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
