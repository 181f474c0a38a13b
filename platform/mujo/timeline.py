"""Window predictions -> per-recording timelines: optional smoothing, consecutive windows merged into segments, and a
summary (plain numpy, no Ray; ``mujo.pipelines.predict`` calls it once per recording).

Windows overlap (2 s long, a new one every second), so a window's label is attributed to the ``stride`` seconds
starting at its start, and the recording's last window to its whole length: segments then tile the recording's
windowed span ``[first start, last start + window]`` without overlap, and the time of each label is the sum of its
segments. Smoothing is a centred moving average of the class probabilities over ``smoothing`` windows (edges use
the windows that exist), then the argmax: it removes one-window flickers that no real activity has.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["smooth_probabilities", "segments", "recording_summary", "overall_summary"]


def smooth_probabilities(probs: np.ndarray, smoothing: int) -> np.ndarray:
    """Centred moving average over ``smoothing`` windows of (N, C) probabilities, in window order."""
    p = np.asarray(probs, dtype=np.float64)
    if smoothing <= 1 or len(p) < 2:
        return p
    half = smoothing // 2
    csum = np.concatenate([np.zeros((1, p.shape[1])), np.cumsum(p, axis=0)])
    idx = np.arange(len(p))
    lo, hi = np.maximum(idx - half, 0), np.minimum(idx + smoothing - half, len(p))
    return (csum[hi] - csum[lo]) / (hi - lo)[:, None]


def segments(starts: np.ndarray, labels: np.ndarray, confidence: np.ndarray, window_s: float,
             stride_s: float) -> list[dict]:
    """Consecutive windows (in start order) with the same label merged: ``start_s``, ``end_s``, ``label`` (the
    class index), ``windows``, ``mean_confidence``. A gap larger than one stride between window starts (a
    quarantined stretch, separate clips) ends a segment."""
    order = np.argsort(starts, kind="stable")
    s, y, c = np.asarray(starts, np.float64)[order], np.asarray(labels)[order], np.asarray(confidence)[order]
    out: list[dict] = []
    begin = 0
    for i in range(1, len(s) + 1):
        boundary = i == len(s) or y[i] != y[begin] or s[i] - s[i - 1] > stride_s + 1e-6
        if not boundary:
            continue
        gap_after = i == len(s) or s[i] - s[i - 1] > stride_s + 1e-6
        end = s[i - 1] + (window_s if gap_after else stride_s)
        out.append({"start_s": float(s[begin]), "end_s": float(end), "label": int(y[begin]),
                    "windows": int(i - begin), "mean_confidence": float(c[begin:i].mean())})
        begin = i
    return out


def recording_summary(recording_id: str, segs: list[dict], classes: Sequence[str], true_label: str | None) -> dict:
    """Per recording: windows, segments, seconds per label, the dominant label and, when the recording's true label
    is known (a labelled recording of one activity), the timeline accuracy: the share of its windowed time whose
    label is the true one."""
    seconds: dict[str, float] = {}
    for seg in segs:
        name = classes[seg["label"]]
        seconds[name] = seconds.get(name, 0.0) + seg["end_s"] - seg["start_s"]
    total = sum(seconds.values())
    dominant = max(seconds, key=seconds.get) if seconds else ""
    known = true_label is not None and true_label in classes
    return {"recording_id": recording_id, "windows": int(sum(s["windows"] for s in segs)), "segments": len(segs),
            "seconds": round(total, 3), "dominant": dominant, "true_label": true_label or "",
            "accuracy": (round(seconds.get(true_label, 0.0) / total, 4) if known and total > 0 else None),
            "seconds_by_label": {k: round(v, 3) for k, v in sorted(seconds.items())}}


def overall_summary(recordings: list[dict], quarantine: list[dict]) -> dict:
    """Totals over recordings: windows, recordings, mean timeline accuracy of the labelled ones, share of
    recordings whose dominant label is right, and the quarantine by reason."""
    labelled = [r for r in recordings if r["accuracy"] is not None]
    reasons: dict[str, int] = {}
    for q in quarantine:
        key = q["reason"].split(":")[0]
        reasons[key] = reasons.get(key, 0) + 1
    return {
        "recordings": len(recordings), "windows": int(sum(r["windows"] for r in recordings)),
        "labelled_recordings": len(labelled),
        "timeline_accuracy": round(float(np.mean([r["accuracy"] for r in labelled])), 4) if labelled else None,
        "dominant_label_accuracy": (round(float(np.mean([r["dominant"] == r["true_label"] for r in labelled])), 4)
                                    if labelled else None),
        "quarantined": len(quarantine), "quarantine_reasons": reasons,
        "nan_frames_interpolated": int(sum(r.get("nan_frames", 0) for r in recordings)),
    }
