"""Shared pieces of the dataset adapters: units, wrist slots, segmenting, resampling by timestamps, pose
conventions, the adapter base class and :func:`write_raw` (raw clips + ``dataset.json`` to local or ``s3://``).

Platform conventions every adapter produces (``docs/sample-format.md``, "Raw clips"):

* ``acc``: float32 ``(T, 6)`` in m/s^2, columns ``[lx, ly, lz, rx, ry, rz]``, sensor frame, gravity included, in
  the *specific-force* sign convention (a sensor lying still reads +9.81 along its axis that points up). A dataset
  with one wrist fills the other wrist's three columns with zeros (its card says so).
* ``pose``: float32 ``(T, 17, 3)`` in metres, world frame with z up, Human3.6M joint order.
* ``split`` is ``train``/``val``/``test`` by subject (or by the dataset's own official unit), ``activity`` a class
  name of the card's label list and ``label_text`` that class's text.

No Ray here: the adapters are plain Python and numpy.
"""

from __future__ import annotations

import io
import logging
import os
import posixpath
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterable, Iterator, Mapping, Sequence

import numpy as np
import yaml

from mujo import storage
from mujo.adapters.cards import SPLIT_NAMES, CardError, DatasetCard, load_card
from mujo.data import skeleton as sk
from mujo.data.clips import RAW_VERSION, RawClip, clips_to_table
from mujo.schema import ACC_CHANNELS, FS, NUM_JOINTS, WINDOW
from mujo.run import RunLayout

log = logging.getLogger(__name__)

G0 = 9.80665
"""Standard gravity (m/s^2): the factor from g to m/s^2."""

UNIT_FACTORS: dict[str, float] = {
    "m/s^2": 1.0, "m/s2": 1.0, "m s^-2": 1.0, "m/s**2": 1.0, "mps2": 1.0,
    "g": G0,
    "mg": G0 / 1000.0,
}
"""Accelerometer units the platform converts (aliases of the same unit map to the same factor)."""

WINDOW_SECONDS = WINDOW / FS
"""One window (2 s): the shortest recording that can give a sample."""


# ----------------------------------------------------------------------------------------------------------------
# Units and wrist slots
# ----------------------------------------------------------------------------------------------------------------

def unit_factor(unit: str, source: str = "<card>", field_name: str = "units") -> float:
    """The factor that turns ``unit`` into m/s^2; :class:`CardError` for an unknown unit."""
    key = str(unit).strip().lower().replace(" ", "") if unit is not None else ""
    key = {"m/s^2": "m/s^2", "ms^-2": "m/s^2", "m/s²": "m/s^2"}.get(key, key)
    if key not in UNIT_FACTORS:
        raise CardError(source, field_name, f"unknown accelerometer unit {unit!r}; known: g, mg, m/s^2")
    return UNIT_FACTORS[key]


def to_ms2(x: np.ndarray, unit: str, source: str = "<card>", field_name: str = "units") -> np.ndarray:
    """Accelerations in ``unit`` (g, mg or m/s^2) to m/s^2 (float64)."""
    return np.asarray(x, dtype=np.float64) * unit_factor(unit, source, field_name)


def wrist_acc(left: np.ndarray | None, right: np.ndarray | None) -> np.ndarray:
    """The platform's ``(T, 6)`` acc from per-wrist ``(T, 3)`` blocks; a missing wrist is zeros.

    Both given: they must have the same length.
    """
    blocks = [b for b in (left, right) if b is not None]
    if not blocks:
        raise ValueError("wrist_acc needs at least one wrist")
    n = len(blocks[0])
    if any(len(b) != n for b in blocks):
        raise ValueError(f"left and right wrist streams differ in length: {[len(b) for b in blocks]}")
    out = np.zeros((n, ACC_CHANNELS), dtype=np.float32)
    if left is not None:
        out[:, 0:3] = left
    if right is not None:
        out[:, 3:6] = right
    return out


def slot_acc(block: np.ndarray, slot: str) -> np.ndarray:
    """One sensor's ``(T, 3)`` block in the ``left`` or ``right`` wrist slot (the other slot zeros)."""
    if slot not in ("left", "right"):
        raise ValueError(f"wrist slot must be 'left' or 'right', not {slot!r}")
    return wrist_acc(block if slot == "left" else None, block if slot == "right" else None)


# ----------------------------------------------------------------------------------------------------------------
# Segments and time
# ----------------------------------------------------------------------------------------------------------------

def runs(values: Sequence[Any] | np.ndarray) -> list[tuple[int, int, Any]]:
    """Contiguous runs of equal values: ``[(start, stop, value), ...]`` with ``stop`` exclusive."""
    arr = np.asarray(values)
    if len(arr) == 0:
        return []
    change = np.nonzero(arr[1:] != arr[:-1])[0] + 1
    starts = np.concatenate([[0], change])
    stops = np.concatenate([change, [len(arr)]])
    return [(int(a), int(b), arr[a].item() if hasattr(arr[a], "item") else arr[a]) for a, b in zip(starts, stops)]


def split_at_gaps(t: np.ndarray, max_gap: float) -> list[tuple[int, int]]:
    """Index ranges ``[(start, stop), ...]`` of ``t`` with no step larger than ``max_gap`` (nor backwards)."""
    if len(t) == 0:
        return []
    dt = np.diff(t)
    cuts = np.nonzero((dt > max_gap) | (dt < 0))[0] + 1
    bounds = np.concatenate([[0], cuts, [len(t)]])
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def monotonic_samples(t: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort by time and keep the first sample of every repeated timestamp (sensors that re-send a value)."""
    t = np.asarray(t, dtype=np.float64)
    order = np.argsort(t, kind="stable")
    t, x = t[order], np.asarray(x)[order]
    keep = np.concatenate([[True], np.diff(t) > 0]) if len(t) else np.zeros(0, bool)
    return t[keep], x[keep]


def resample_at(t: np.ndarray, x: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Linear interpolation of samples ``x`` (N, C) taken at times ``t`` onto ``grid`` (edges held)."""
    t, x = monotonic_samples(t, x)
    x2 = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    out = np.empty((len(grid), x2.shape[1]), dtype=np.float64)
    for c in range(x2.shape[1]):
        out[:, c] = np.interp(grid, t, x2[:, c])
    return out.reshape((len(grid),) + np.asarray(x).shape[1:])


def uniform_grid(t0: float, t1: float, hz: float) -> np.ndarray:
    """Sample times ``t0, t0 + 1/hz, ...`` strictly below ``t1`` (seconds)."""
    n = max(int(np.floor((t1 - t0) * hz + 1e-9)), 0)
    return t0 + np.arange(n) / hz


# ----------------------------------------------------------------------------------------------------------------
# Pose conventions
# ----------------------------------------------------------------------------------------------------------------

POSE_UNIT_FACTORS = {"m": 1.0, "cm": 0.01, "mm": 0.001}
UP_AXES = ("+x", "-x", "+y", "-y", "+z", "-z")


def trunk_length(pose: np.ndarray) -> float:
    """Median pelvis-thorax distance of a Human3.6M-ordered pose (about 0.5 m for an adult)."""
    d = np.linalg.norm(np.asarray(pose, np.float64)[:, sk.THORAX] - np.asarray(pose, np.float64)[:, sk.PELVIS],
                       axis=-1)
    d = d[np.isfinite(d)]
    return float(np.median(d)) if len(d) else float("nan")


def detect_pose_units(pose: np.ndarray) -> str:
    """``m``, ``cm`` or ``mm`` from the size of the trunk (pelvis-thorax ~0.5 m)."""
    trunk = trunk_length(pose)
    if not np.isfinite(trunk) or trunk <= 0:
        raise ValueError("cannot detect pose units: the pelvis-thorax distance is zero or not finite")
    if trunk > 100:
        return "mm"
    if trunk > 5:
        return "cm"
    return "m"


def detect_up_axis(pose: np.ndarray, min_share: float = 0.3) -> str:
    """The signed coordinate axis the trunk (pelvis -> thorax) points along on average: ``+y``, ``-y``, ...

    Meant for a whole recording in which the subject is mostly upright (a workout, a walk); a single clip of a
    lying exercise would mislead it. Raises ``ValueError`` when no axis dominates (``min_share`` of the mean unit
    trunk vector).
    """
    p = np.asarray(pose, np.float64)
    v = p[:, sk.THORAX] - p[:, sk.PELVIS]
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    ok = (n[:, 0] > 1e-9) & np.isfinite(n[:, 0])
    if not ok.any():
        raise ValueError("cannot detect the up axis: no frame with a pelvis-thorax vector")
    mean = (v[ok] / n[ok]).mean(axis=0)
    axis = int(np.argmax(np.abs(mean)))
    if abs(mean[axis]) < min_share:
        raise ValueError(f"cannot detect the up axis: mean trunk direction {np.round(mean, 2).tolist()} has no "
                         "dominant axis; set the pose_up option explicitly")
    return ("+" if mean[axis] > 0 else "-") + "xyz"[axis]


def up_rotation(up: str) -> np.ndarray:
    """A proper rotation (det +1) taking the signed axis ``up`` to +z; rows are the new x, y, z axes.

    new z = ``up``; new x = the first other coordinate axis (positive); new y = z x x. For a camera frame
    (x right, y down, z forward) and ``up = -y``: (x, y, z) -> (x, z, -y).
    """
    if up not in UP_AXES:
        raise ValueError(f"up axis must be one of {UP_AXES} or 'auto', not {up!r}")
    axis = "xyz".index(up[1])
    z = np.zeros(3)
    z[axis] = 1.0 if up[0] == "+" else -1.0
    x = np.zeros(3)
    x[[a for a in range(3) if a != axis][0]] = 1.0
    y = np.cross(z, x)
    return np.stack([x, y, z])


def lateral_chirality(pose: np.ndarray) -> float:
    """Whether left and right are labelled right in a z-up, Human3.6M-ordered pose: mean cosine in [-1, 1].

    The face points forward: the nose (joint 9) lies in front of the thorax-head line. For a correctly labelled
    skeleton in a right-handed frame, ``up x (right hip - left hip)`` points forward too, so the score is positive;
    a left/right swap (or a mirrored frame) makes it negative. Horizontal components only.
    """
    p = np.asarray(pose, np.float64)
    lateral = (p[:, sk.R_HIP] - p[:, sk.L_HIP]) + (p[:, sk.R_SHOULDER] - p[:, sk.L_SHOULDER])
    normal = np.stack([-lateral[:, 1], lateral[:, 0]], axis=-1)  # z x lateral, horizontal part
    face = p[:, sk.NECK] - 0.5 * (p[:, sk.THORAX] + p[:, sk.HEAD])
    face = face[:, :2]
    denom = np.linalg.norm(normal, axis=-1) * np.linalg.norm(face, axis=-1)
    ok = np.isfinite(denom) & (denom > 1e-12)
    if not ok.any():
        return 0.0
    return float(np.mean(np.sum(normal[ok] * face[ok], axis=-1) / denom[ok]))


SWAP_LR = (0, 4, 5, 6, 1, 2, 3, 7, 8, 9, 10, 14, 15, 16, 11, 12, 13)
"""Human3.6M joint permutation exchanging left and right (hips, knees, ankles, shoulders, elbows, wrists)."""


@dataclass
class PoseConvention:
    """How a dataset's pose was converted: the units, the up axis and whether left/right were swapped."""

    units: str
    up: str
    swapped_lr: bool
    chirality: float
    scale: float

    def as_dict(self) -> dict[str, Any]:
        return {"units": self.units, "up": self.up, "swapped_lr": self.swapped_lr,
                "chirality": round(self.chirality, 3), "trunk_length_m": round(self.scale, 3)}


def normalize_pose(pose: np.ndarray, units: str = "auto", up: str = "auto", lr: str = "h36m"
                   ) -> tuple[np.ndarray, PoseConvention]:
    """A Human3.6M-ordered pose in any units/axes -> metres, z up (float32), and what was done.

    Args:
        pose: ``(T, 17, 3)``.
        units: ``m``/``cm``/``mm`` or ``auto`` (:func:`detect_pose_units`).
        up: the signed axis pointing up in the data (``+y``, ``-y``, ...) or ``auto`` (:func:`detect_up_axis`).
        lr: ``h36m`` (the order is the standard one), ``swapped`` (left and right are exchanged) or ``auto``
            (decided by :func:`lateral_chirality`: swapped when the score is below -0.2).
    """
    p = np.asarray(pose, np.float64)
    if p.ndim != 3 or p.shape[1:] != (NUM_JOINTS, 3):
        raise ValueError(f"pose must be (T, {NUM_JOINTS}, 3), got {p.shape}")
    unit = detect_pose_units(p) if units == "auto" else units
    if unit not in POSE_UNIT_FACTORS:
        raise ValueError(f"pose units must be one of {sorted(POSE_UNIT_FACTORS)} or 'auto', not {units!r}")
    p = p * POSE_UNIT_FACTORS[unit]
    axis = detect_up_axis(p) if up == "auto" else up
    p = p @ up_rotation(axis).T
    score = lateral_chirality(p)
    if lr not in ("h36m", "swapped", "auto"):
        raise ValueError(f"lr must be 'h36m', 'swapped' or 'auto', not {lr!r}")
    swap = lr == "swapped" or (lr == "auto" and score < -0.2)
    if swap:
        p = p[:, list(SWAP_LR)]
    return p.astype(np.float32), PoseConvention(unit, axis, swap, score, trunk_length(p))


def interpolate_frames(frames: np.ndarray, values: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Values known at (possibly gappy) integer ``frames`` -> every frame of ``wanted`` (linear, edges held)."""
    frames, values = monotonic_samples(frames, values)
    flat = np.asarray(values, np.float64).reshape(len(values), -1)
    out = np.empty((len(wanted), flat.shape[1]))
    for c in range(flat.shape[1]):
        out[:, c] = np.interp(wanted, frames, flat[:, c])
    return out.reshape((len(wanted),) + np.asarray(values).shape[1:])


# ----------------------------------------------------------------------------------------------------------------
# Reading through mujo.storage (local or s3://)
# ----------------------------------------------------------------------------------------------------------------

def read_bytes(uri: str) -> bytes:
    return storage.read_bytes(uri)


def load_npy(uri: str) -> np.ndarray:
    """A ``.npy`` file (local or s3://); pickled object arrays are refused."""
    return np.load(io.BytesIO(read_bytes(uri)), allow_pickle=False)


def basename(uri: str) -> str:
    return posixpath.basename(uri.rstrip("/")) if storage.is_s3(uri) else os.path.basename(uri.rstrip(os.sep))


def relpath(uri: str, root: str) -> str:
    """``uri`` relative to the folder ``root`` (both local or both s3://)."""
    if storage.is_s3(uri):
        return posixpath.relpath(uri[5:], root[5:].rstrip("/"))
    return os.path.relpath(uri, os.path.abspath(root))


# ----------------------------------------------------------------------------------------------------------------
# Ingest report and the adapter base class
# ----------------------------------------------------------------------------------------------------------------

@dataclass
class IngestReport:
    """What an adapter did besides emitting clips: skipped items (with the reason), notes, counts.

    Nothing is dropped silently: every skipped segment/recording is listed here, logged, and written into
    ``dataset.json`` under ``report``.
    """

    skipped: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    details: dict[str, Any] = field(default_factory=dict)

    def clear(self) -> None:
        """Empty the report in place (an adapter's :meth:`read` starts with a clear report; callers may hold it)."""
        self.skipped.clear()
        self.notes.clear()
        self.counts.clear()
        self.details.clear()

    def skip(self, item: str, reason: str) -> None:
        self.skipped.append({"item": item, "reason": reason})
        self.counts["skipped"] += 1
        log.warning("skipped %s: %s", item, reason)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)
            log.info("%s", text)

    def as_dict(self, max_items: int = 500) -> dict[str, Any]:
        return {"skipped_count": len(self.skipped), "skipped": self.skipped[:max_items],
                "notes": self.notes, "counts": dict(self.counts), "details": self.details}


def parse_option_value(value: Any) -> Any:
    """A command-line option value (``k=v`` text) as YAML: ``true`` -> True, ``2.5`` -> 2.5, ``[1,2]`` -> list."""
    if isinstance(value, str):
        try:
            return yaml.safe_load(value)
        except yaml.YAMLError:
            return value
    return value


class DatasetAdapter:
    """Base class of the published-dataset adapters.

    Subclasses set :attr:`name` (the card ``datasets/<name>.yaml``), :attr:`OPTIONS` (option -> default; the card's
    ``options`` section overrides the defaults, keyword arguments override both) and implement :meth:`read`.
    """

    name: ClassVar[str] = ""
    OPTIONS: ClassVar[dict[str, Any]] = {}

    def __init__(self, card: DatasetCard | None = None) -> None:
        self.card = card if card is not None else load_card(self.name)
        unknown = sorted(set(self.card.options) - set(self.OPTIONS))
        if unknown:
            raise CardError(self.card.path or self.name, f"options.{unknown[0]}",
                            f"unknown adapter option; known: {sorted(self.OPTIONS)}")
        self.report = IngestReport()

    @property
    def dataset_name(self) -> str:
        return self.card.name

    def resolve_options(self, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Defaults < card ``options`` < ``options``; unknown names and wrongly typed values are errors."""
        out = {**self.OPTIONS, **self.card.options}
        for key, raw in (options or {}).items():
            if key not in self.OPTIONS:
                raise ValueError(f"{self.name}: unknown option {key!r}; known: {sorted(self.OPTIONS)}")
            out[key] = parse_option_value(raw)
        for key, default in self.OPTIONS.items():
            value = out[key]
            if default is None or value is None:
                continue
            if isinstance(default, bool):
                ok = isinstance(value, bool)
            elif isinstance(default, (int, float)):
                ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            else:
                ok = isinstance(value, type(default))
            if not ok:
                raise ValueError(f"{self.name}: option {key!r} must be of type {type(default).__name__}, "
                                 f"got {value!r}")
        return out

    def labels(self, **options: Any) -> list[str]:
        """The label list (class names by class id) of the clips :meth:`read` emits with these options."""
        opts = self.resolve_options(options)
        return self.card.label_names(include_null=bool(opts.get("include_null", False)))

    def read(self, source_dir: str, **options: Any) -> Iterator[RawClip]:  # pragma: no cover - abstract
        raise NotImplementedError

    def split_of(self, key: str) -> str | None:
        return self.card.split.split_of(key)


# ----------------------------------------------------------------------------------------------------------------
# Writing raw clips + dataset.json
# ----------------------------------------------------------------------------------------------------------------

def raw_dir(run_dir: str, dataset: str) -> str:
    """``<run>/raw/<dataset>``: where preprocessing looks for a dataset's raw clips (local or s3://); the layout is
    :class:`mujo.run.RunLayout`'s."""
    return RunLayout(run_dir).raw(dataset)


def _check_clip(clip: RawClip, labels: set[str]) -> None:
    where = f"clip {clip.clip_id}"
    if clip.split not in SPLIT_NAMES:
        raise ValueError(f"{where}: split {clip.split!r} is not one of {SPLIT_NAMES}")
    if clip.activity not in labels:
        raise ValueError(f"{where}: activity {clip.activity!r} is not in the dataset's labels {sorted(labels)}")
    if clip.pose is None and clip.acc is None:
        raise ValueError(f"{where}: neither pose nor acc")
    if clip.acc is not None and (clip.acc.ndim != 2 or clip.acc.shape[1] != ACC_CHANNELS):
        raise ValueError(f"{where}: acc must be (T, {ACC_CHANNELS}), got {clip.acc.shape}")
    if clip.pose is not None and clip.pose.shape[1:] != (NUM_JOINTS, 3):
        raise ValueError(f"{where}: pose must be (T, {NUM_JOINTS}, 3), got {clip.pose.shape}")


def clip_seconds(clip: RawClip) -> float:
    durations = [len(a) / hz for a, hz in ((clip.pose, clip.pose_hz), (clip.acc, clip.acc_hz)) if a is not None and hz]
    return float(min(durations)) if durations else 0.0


def _delete_stale_parts(out: str, keep: set[str]) -> int:
    removed = 0
    for uri in storage.list_files(out, ".parquet"):
        name = basename(uri)
        if name.startswith("part-") and name not in keep:
            fs, path = storage.filesystem(uri)
            try:
                fs.delete_file(path)
            except OSError as exc:
                raise storage.StorageError(f"cannot remove stale part {storage.describe(uri)}: {exc}") from exc
            removed += 1
    return removed


def write_raw(dataset_name: str, clips: Iterable[RawClip], out_raw_dir: str, card: Any, *,
              labels: Sequence[str] | None = None, clips_per_part: int = 64, report: IngestReport | None = None,
              options: Mapping[str, Any] | None = None, adapter: str | None = None) -> dict[str, Any]:
    """Write clips as ``part-NNNNN.parquet`` (``clips_per_part`` rows each) and ``dataset.json`` under
    ``out_raw_dir`` (local or ``s3://``); return the ``dataset.json`` content.

    ``card`` is a :class:`~mujo.adapters.cards.DatasetCard` or a BYOD card (anything with ``summary()`` and
    ``label_names()``). ``dataset.json`` holds ``name``, ``labels`` (class names; class id = index), ``clips``,
    ``splits`` (subjects per split), ``hours``, per-split subject ids and clip counts per class, the card's fields,
    the adapter options and the ingest report. Part files of an earlier ingest that this one did not rewrite are
    removed, so the folder holds exactly this ingest. Clips are streamed: at most one part is in memory.
    """
    if clips_per_part < 1:
        raise ValueError("clips_per_part must be >= 1")
    label_list = list(labels) if labels is not None else list(card.label_names())
    label_set = set(label_list)
    written: list[str] = []
    n_clips, seconds = 0, 0.0
    subjects: dict[str, set[str]] = defaultdict(set)
    counts: dict[str, Counter] = defaultdict(Counter)
    rates: dict[str, set[float]] = defaultdict(set)
    modalities: Counter = Counter()
    ids: set[str] = set()
    batch: list[RawClip] = []

    def flush() -> None:
        name = f"part-{len(written):05d}.parquet"
        storage.write_table(clips_to_table(batch), storage.join(out_raw_dir, name))
        written.append(name)
        batch.clear()

    for clip in clips:
        _check_clip(clip, label_set)
        if clip.clip_id in ids:
            raise ValueError(f"duplicate clip_id {clip.clip_id!r}")
        ids.add(clip.clip_id)
        n_clips += 1
        seconds += clip_seconds(clip)
        subjects[clip.split].add(clip.subject)
        counts[clip.split][clip.activity] += 1
        for m in ("pose", "acc"):
            if getattr(clip, m) is not None:
                modalities[m] += 1
                rates[m].add(round(float(getattr(clip, f"{m}_hz")), 3))
        batch.append(clip)
        if len(batch) >= clips_per_part:
            flush()
    if batch:
        flush()
    if n_clips == 0:
        raise ValueError(f"{dataset_name}: the adapter produced no clips (see the report: "
                         f"{(report.as_dict() if report else {})})")
    removed = _delete_stale_parts(out_raw_dir, set(written))
    shared = sorted({s for a in subjects for b in subjects if a < b for s in subjects[a] & subjects[b]})
    card_fields = card.summary()
    doc: dict[str, Any] = {
        "name": dataset_name,
        "raw_version": RAW_VERSION,
        "adapter": adapter or card_fields.get("adapter", ""),
        "labels": label_list,
        "label_text": card_label_texts(card, label_list),
        "clips": n_clips,
        "hours": seconds / 3600.0,
        "splits": {s: len(subjects[s]) for s in SPLIT_NAMES if s in subjects},
        "subjects": {s: sorted(subjects[s]) for s in SPLIT_NAMES if s in subjects},
        "clip_counts": {s: dict(sorted(counts[s].items())) for s in SPLIT_NAMES if s in counts},
        "subjects_in_several_splits": shared,
        "modalities": dict(modalities),
        "stream_rates_hz": {m: sorted(r) for m, r in rates.items()},
        "parts": written,
        "removed_stale_parts": removed,
        "options": dict(options or {}),
        "report": report.as_dict() if report else {},
        "card": card_fields,
    }
    for key in ("title", "source", "licence", "citation", "sampling_rates_hz", "units", "gravity", "wrists"):
        if key in card_fields:
            doc[key] = card_fields[key]
    storage.write_json(storage.join(out_raw_dir, "dataset.json"), doc)
    log.info("wrote %s: %d clips (%.2f h) in %d parts to %s", dataset_name, n_clips, seconds / 3600, len(written),
             storage.describe(out_raw_dir))
    return doc


def card_label_texts(card: Any, names: Sequence[str]) -> dict[str, str]:
    """Class name -> label text from a card (falls back to the name with spaces)."""
    specs = list(getattr(card, "labels", []) or [])
    null = getattr(card, "null_label", None)
    if null is not None:
        specs.append(null)
    texts = {s.name: s.label_text for s in specs if hasattr(s, "label_text")}
    return {n: texts.get(n, n.replace("_", " ")) for n in names}

