"""Motion corpora in: pose + text (+ optional video features) without labels, for pretraining; and a bring-your-own
multimodal corpus card.

A motion corpus (HumanML3D, KIT-ML, your own motion capture or video-derived pose) is a set of clips, each with a
pose sequence in some skeleton at some rate and one or more free-text descriptions. This module turns such clips
into the platform's raw clips, exactly as the synthetic generator writes them:

* **Skeleton** (:class:`JointSet`): the corpus' joints are mapped onto the platform's 17 Human3.6M joints. A target
  joint is one source joint, the mean of several (e.g. the thorax between the two collar bones) or a point extended
  past a joint along a bone (the top of the head beyond the head joint); published joint sets are built in
  (``smpl22`` for HumanML3D, ``kit21`` for KIT-ML, ``h36m17``), a card can declare its own.
* **Units and axes**: scaled to metres and rotated to z up (:func:`mujo.adapters.common.up_rotation`). Left/right
  are checked from the feet where the joint set has toes (:func:`foot_chirality`: the toes point forward, so
  ``forward x up`` must point from the left hip to the right one); a skeleton labelled the other way round is
  swapped and the swap is counted in the report.
* **Rate**: resampled to the platform's 50 Hz with a cubic spline through the frames (``scipy``). A linear
  interpolation would make the position piecewise linear, and its second derivative, which the virtual IMU is,
  a train of spikes at the source frames; the spline keeps acceleration continuous.
* **IMU**: a virtual wrist IMU for both wrists from the resampled pose (:func:`mujo.data.imu.virtual_wrist_acc`).
* **Text**: every description of the clip is kept (``RawClip.texts``); ``label_text`` is the first one.
* **Activity**: corpora have no classes, but preprocessing, the pretraining validation's few-shot metric and the
  manifest's counts need one per clip. The card's labels are keyword classes: a clip takes the first label one of
  whose words (its name or ``values``) occurs in its first description, else the card's last label (``other``).

The bring-your-own corpus card (``kind: motion_corpus``; ``docs/corpora.md`` has the reference)::

    kind: motion_corpus
    name: my_corpus
    pose: {joints: smpl22, rate_hz: 30, units: m, up: "+y"}   # or joints: custom with names + map
    video: {rate_hz: 10, dim: 512}                             # optional: per-clip (T_v, dim) features
    clips: clips.jsonl     # one JSON object a line: {"id", "pose": "pose/a.npy", "video": "video/a.npy",
                           #  "texts": ["a person waves", ...], "subject": "s1", "split": "train", "activity": ...}
    labels: [walk, run, {name: other}]

Nothing read is trusted: ``.npy`` files are read without pickle, JSON lines are parsed as JSON, paths in the card
and in ``clips.jsonl`` must stay inside the corpus folder (:func:`mujo.names.inside`). A bad line, a missing file or
a pose of the wrong shape is an error naming the file and the fix; a clip that is too short is skipped and listed
in the report (``dataset.json``), never dropped silently. No Ray here.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal, Sequence

import numpy as np
from pydantic import Field, ValidationError, field_validator, model_validator

from mujo import storage
from mujo.adapters.cards import (
    NAME_PATTERN,
    SPLIT_NAMES,
    CardError,
    LabelSpec,
    _Strict,
    format_validation_error,
    raw_key,
    read_yaml,
)
from mujo.adapters.common import (
    POSE_UNIT_FACTORS,
    SWAP_LR,
    DatasetAdapter,
    IngestReport,
    basename,
    detect_pose_units,
    up_rotation,
)
from mujo.data import skeleton as sk
from mujo.data.clips import RawClip
from mujo.data.imu import virtual_wrist_acc
from mujo.names import UnsafeName, inside
from mujo.schema import FS, WINDOW

DEFAULT_MIN_SECONDS = math.ceil(WINDOW / FS * 50 / (1 - 2 * 0.15)) / 50
"""One window after preprocessing's default trim of 15 % at each end (2.86 s); shorter clips give no sample."""

# ----------------------------------------------------------------------------------------------------------------
# Joint sets
# ----------------------------------------------------------------------------------------------------------------

Source = int | tuple[int, ...] | tuple[str, int, int, float]
"""How one Human3.6M joint is taken from a source skeleton: a joint index, a tuple of indices (their mean), or
``("extend", a, b, k)``: the point ``b + k (b - a)`` (past ``b`` along the bone a -> b)."""


@dataclass(frozen=True)
class JointSet:
    """A source skeleton: its joint names and how each of the platform's 17 joints is made from them.

    ``feet`` = (left hip, right hip, left ankle, right ankle, left toe, right toe) indices for the left/right check,
    or None when the skeleton has no toes.
    """

    name: str
    joints: tuple[str, ...]
    to_h36m: tuple[Source, ...]
    feet: tuple[int, int, int, int, int, int] | None = None

    @property
    def num_joints(self) -> int:
        return len(self.joints)

    def map(self, positions: np.ndarray) -> np.ndarray:
        """``(T, J, 3)`` source joints -> ``(T, 17, 3)`` Human3.6M joints (float64)."""
        p = np.asarray(positions, np.float64)
        out = np.empty(p.shape[:1] + (sk.NUM_JOINTS, 3))
        for j, src in enumerate(self.to_h36m):
            if isinstance(src, int):
                out[:, j] = p[:, src]
            elif src and src[0] == "extend":
                _, a, b, k = src  # type: ignore[misc]
                out[:, j] = p[:, b] + float(k) * (p[:, b] - p[:, a])
            else:
                out[:, j] = p[:, list(src)].mean(axis=1)  # type: ignore[arg-type]
        return out


SMPL22_JOINTS = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle", "right_ankle",
    "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
)
SMPL22 = JointSet(
    "smpl22", SMPL22_JOINTS,
    # pelvis, r_hip, r_knee, r_ankle, l_hip, l_knee, l_ankle, spine (spine2: mid-trunk), thorax (between the
    # collar bones), nose (the SMPL head joint, at the centre of the head), head top (past the head along neck->head),
    # l_shoulder, l_elbow, l_wrist, r_shoulder, r_elbow, r_wrist
    (0, 2, 5, 8, 1, 4, 7, 6, (13, 14), 15, ("extend", 12, 15, 1.0), 16, 18, 20, 17, 19, 21),
    feet=(1, 2, 7, 8, 10, 11),
)
"""HumanML3D's 22 SMPL joints (order of its ``paramUtil.t2m_kinematic_chain``; right hip = 2, left hip = 1)."""

KIT21_JOINTS = (
    "root", "bp", "bt", "bln", "bun", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist",
    "r_hip", "r_knee", "r_ankle", "r_heel_or_mt", "r_toe", "l_hip", "l_knee", "l_ankle", "l_heel_or_mt", "l_toe",
)
KIT21 = JointSet(
    "kit21", KIT21_JOINTS,
    # spine = mean of the two back markers, thorax = lower neck (BLN), nose = upper neck/head (BUN), head top past it
    (0, 11, 12, 13, 16, 17, 18, (1, 2), 3, 4, ("extend", 3, 4, 1.0), 8, 9, 10, 5, 6, 7),
    feet=(16, 11, 18, 13, 20, 15),
)
"""KIT-ML's 21 joints (chains of ``paramUtil.kit_kinematic_chain``: 0-4 trunk, 5-7 right and 8-10 left arm, 11-15
right and 16-20 left leg, as the processing code's ``face_joint_indx = [11, 16, 5, 8]`` (r_hip, l_hip, r_shoulder,
l_shoulder) says); left/right is checked from the feet at ingest as well."""

H36M17 = JointSet("h36m17", sk.JOINTS, tuple(range(sk.NUM_JOINTS)))
"""The platform's own skeleton (identity)."""

JOINT_SETS: dict[str, JointSet] = {j.name: j for j in (SMPL22, KIT21, H36M17)}


def custom_joint_set(names: Sequence[str], mapping: dict[str, Any], feet: dict[str, str] | None = None,
                     source: str = "<card>") -> JointSet:
    """A joint set from a card: the file's joint ``names`` and, for each of the 17 platform joints, a name, a list
    of names (their mean) or ``{extend: [a, b], by: k}``. ``feet`` optionally names l_hip, r_hip, l_ankle, r_ankle,
    l_toe, r_toe for the left/right check."""
    idx = {n: i for i, n in enumerate(names)}

    def ref(name: Any, where: str) -> int:
        if name not in idx:
            raise CardError(source, where, f"joint {name!r} is not in pose.names {list(names)}")
        return idx[name]

    missing = [j for j in sk.JOINTS if j not in mapping]
    unknown = [j for j in mapping if j not in sk.JOINTS]
    if missing or unknown:
        raise CardError(source, "pose.map", f"must give each of the 17 platform joints {list(sk.JOINTS)} exactly; "
                                            f"missing {missing}, unknown {unknown}")
    out: list[Source] = []
    for j in sk.JOINTS:
        spec, where = mapping[j], f"pose.map.{j}"
        if isinstance(spec, str):
            out.append(ref(spec, where))
        elif isinstance(spec, list) and spec:
            out.append(tuple(ref(s, where) for s in spec))
        elif isinstance(spec, dict) and set(spec) == {"extend", "by"} and len(spec["extend"]) == 2:
            out.append(("extend", ref(spec["extend"][0], where), ref(spec["extend"][1], where), float(spec["by"])))
        else:
            raise CardError(source, where, "a joint name, a list of names (their mean) or {extend: [a, b], by: k}")
    foot = None
    if feet:
        keys = ("l_hip", "r_hip", "l_ankle", "r_ankle", "l_toe", "r_toe")
        if set(feet) != set(keys):
            raise CardError(source, "pose.feet", f"needs exactly {list(keys)}")
        foot = tuple(ref(feet[k], f"pose.feet.{k}") for k in keys)  # type: ignore[assignment]
    return JointSet("custom", tuple(names), tuple(out), feet=foot)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------------------------
# Pose -> the platform's pose + virtual IMU
# ----------------------------------------------------------------------------------------------------------------

def foot_chirality(positions: np.ndarray, feet: tuple[int, int, int, int, int, int]) -> float:
    """Whether left and right are labelled right in a z-up skeleton: mean cosine in [-1, 1] (positive: right).

    The toes point forward, so ``forward x up`` points to the subject's right: it must agree with ``right hip -
    left hip`` (horizontal parts). A mirrored labelling (or a mirrored frame) makes it negative.
    """
    lh, rh, la, ra, lt, rt = feet
    p = np.asarray(positions, np.float64)
    forward = (p[:, lt] - p[:, la]) + (p[:, rt] - p[:, ra])
    right = np.stack([forward[:, 1], -forward[:, 0]], axis=-1)  # forward x (0, 0, 1), horizontal part
    lateral = (p[:, rh] - p[:, lh])[:, :2]
    denom = np.linalg.norm(right, axis=-1) * np.linalg.norm(lateral, axis=-1)
    ok = np.isfinite(denom) & (denom > 1e-12)
    if not ok.any():
        return 0.0
    return float(np.mean(np.sum(right[ok] * lateral[ok], axis=-1) / denom[ok]))


def resample_pose(pose: np.ndarray, hz: float, out_hz: float = FS) -> np.ndarray:
    """``(T, ...)`` frames at ``hz`` -> frames at ``out_hz`` over the same time span, by a cubic spline through the
    frames (not-a-knot ends). Fewer than 4 frames: linear. The last output frame is at or before the last input."""
    from scipy.interpolate import CubicSpline

    x = np.asarray(pose, np.float64)
    t = np.arange(len(x)) / hz
    n = int(math.floor((len(x) - 1) / hz * out_hz + 1e-9)) + 1
    grid = np.arange(n) / out_hz
    if abs(hz - out_hz) < 1e-9:
        return x.copy()
    flat = x.reshape(len(x), -1)
    if len(x) >= 4:
        out = CubicSpline(t, flat, axis=0)(grid)
    else:
        out = np.stack([np.interp(grid, t, flat[:, c]) for c in range(flat.shape[1])], axis=1)
    return out.reshape((n,) + x.shape[1:])


@dataclass
class PosePrep:
    """What :func:`prepare_pose` did: units, up axis, the left/right score and whether it swapped."""

    units: str
    up: str
    chirality: float | None
    swapped_lr: bool

    def as_dict(self) -> dict[str, Any]:
        return {"units": self.units, "up": self.up, "swapped_lr": self.swapped_lr,
                "chirality": None if self.chirality is None else round(self.chirality, 3)}


def prepare_pose(positions: np.ndarray, joints: JointSet, hz: float, *, units: str = "m", up: str = "+y",
                 lr: str = "auto") -> tuple[np.ndarray, np.ndarray, PosePrep]:
    """A corpus clip's joint positions -> (pose ``(T, 17, 3)`` float32 at 50 Hz, metres, z up; virtual wrist acc
    ``(T, 6)`` float32 at 50 Hz; what was done).

    ``units``: m | cm | mm | auto (from the trunk length). ``up``: the signed axis that points up in the data.
    ``lr``: ``auto`` (swap when :func:`foot_chirality` is below -0.2; no check without toes), ``as_is``, ``swapped``.
    """
    p = np.asarray(positions, np.float64)
    if p.ndim != 3 or p.shape[1:] != (joints.num_joints, 3):
        raise ValueError(f"pose must be (frames, {joints.num_joints}, 3) for joint set {joints.name}, got {p.shape}")
    if not np.isfinite(p).all():
        raise ValueError(f"{int((~np.isfinite(p)).any(axis=(1, 2)).sum())} frames with NaN/inf joints")
    unit = detect_pose_units(joints.map(p[: min(len(p), 200)])) if units == "auto" else units
    if unit not in POSE_UNIT_FACTORS:
        raise ValueError(f"pose units must be one of {sorted(POSE_UNIT_FACTORS)} or 'auto', not {units!r}")
    p = (p * POSE_UNIT_FACTORS[unit]) @ up_rotation(up).T
    score = foot_chirality(p, joints.feet) if joints.feet is not None else None
    if lr not in ("auto", "as_is", "swapped"):
        raise ValueError(f"lr must be 'auto', 'as_is' or 'swapped', not {lr!r}")
    swap = lr == "swapped" or (lr == "auto" and score is not None and score < -0.2)
    pose = joints.map(p)
    if swap:
        pose = pose[:, list(SWAP_LR)]
    pose50 = resample_pose(pose, hz, FS)
    acc = virtual_wrist_acc(pose50, FS)
    return pose50.astype(np.float32), acc, PosePrep(unit, up, score, swap)


# ----------------------------------------------------------------------------------------------------------------
# Keyword classes
# ----------------------------------------------------------------------------------------------------------------

_WORD = re.compile(r"[a-z]+")


def keyword_class(text: str, labels: Sequence[LabelSpec]) -> LabelSpec:
    """The first label one of whose words (name or ``values``, lower case) occurs in ``text``; else the last label.

    A value of several words ("jumping jacks") matches when the words occur in that order next to each other.
    """
    words = " " + " ".join(_WORD.findall(text.lower())) + " "
    for spec in labels[:-1]:
        for key in spec.raw_keys():
            phrase = " ".join(_WORD.findall(str(key).lower().replace("_", " ")))
            if phrase and f" {phrase} " in words:
                return spec
    return labels[-1]


def check_keyword_labels(labels: Sequence[LabelSpec], source: str) -> None:
    if not labels:
        raise CardError(source, "labels", "a corpus needs at least one label (the last one takes unmatched clips)")


# ----------------------------------------------------------------------------------------------------------------
# The bring-your-own corpus card
# ----------------------------------------------------------------------------------------------------------------

class PoseSpec(_Strict):
    """How the corpus' pose files are laid out."""

    joints: str = Field(description="smpl22 | kit21 | h36m17 | custom (then names + map)")
    names: list[str] = Field(default_factory=list)
    map: dict[str, Any] = Field(default_factory=dict)
    feet: dict[str, str] | None = None
    rate_hz: float = Field(gt=0)
    units: Literal["m", "cm", "mm", "auto"] = "m"
    up: Literal["+x", "-x", "+y", "-y", "+z", "-z"] = "+z"
    lr: Literal["auto", "as_is", "swapped"] = "auto"

    @model_validator(mode="after")
    def _known(self) -> "PoseSpec":
        if self.joints != "custom" and self.joints not in JOINT_SETS:
            raise ValueError(f"joints must be one of {sorted(JOINT_SETS)} or 'custom', not {self.joints!r}")
        if self.joints == "custom" and (not self.names or not self.map):
            raise ValueError("joints: custom needs 'names' (the file's joints in order) and 'map'")
        return self


class VideoSpec(_Strict):
    rate_hz: float = Field(gt=0)
    dim: int = Field(gt=0)


class CorpusCard(_Strict):
    """A bring-your-own motion corpus card (see the module docstring and ``docs/corpora.md``)."""

    kind: Literal["motion_corpus"]
    name: str = Field(pattern=NAME_PATTERN)
    title: str = ""
    source: str = ""
    licence: str = ""
    citation: str = ""
    description: str = ""
    pose: PoseSpec
    video: VideoSpec | None = None
    clips: str = "clips.jsonl"
    labels: list[LabelSpec] = Field(default_factory=lambda: [LabelSpec(name="motion")])
    split_default: Literal["train", "val", "test"] = "train"
    min_seconds: float = Field(DEFAULT_MIN_SECONDS, gt=0)
    allow_outside_source: bool = False
    notes: list[str] = Field(default_factory=list)
    unconfirmed: list[str] = Field(default_factory=list)
    path: str = Field("", exclude=True)

    @field_validator("labels", mode="before")
    @classmethod
    def _plain_labels(cls, v: Any) -> Any:
        return [{"name": x} if isinstance(x, str) else x for x in v] if isinstance(v, list) else v

    def label_names(self, include_null: bool = False) -> list[str]:
        return [label.name for label in self.labels]

    def summary(self) -> dict[str, Any]:
        out = self.model_dump(mode="json", exclude={"path"})
        out["adapter"] = "corpus"
        rates = {"pose": self.pose.rate_hz}
        if self.video:
            rates["video"] = self.video.rate_hz
        out["sampling_rates_hz"] = rates
        out["gravity"] = "not_applicable"
        out["wrists"] = {"left": "virtual IMU from the pose", "right": "virtual IMU from the pose"}
        return out


def is_corpus_card(path: str | Path) -> bool:
    """Whether a card file declares ``kind: motion_corpus`` (a bring-your-own corpus, not a sensor BYOD card)."""
    try:
        return read_yaml(path).get("kind") == "motion_corpus"
    except CardError:
        return False


def load_corpus_card(path: str | Path) -> CorpusCard:
    """Read and validate a corpus card; every problem is a :class:`CardError` naming the file and the field."""
    data = read_yaml(path)
    try:
        card = CorpusCard.model_validate(data)
    except ValidationError as exc:
        raise format_validation_error(str(path), exc) from None
    names = [label.name for label in card.labels]
    if len(set(names)) != len(names):
        raise CardError(str(path), "labels", f"label names must be unique: {names}")
    card.path = str(path)
    return card


def load_plain_npy(uri: str, what: str) -> np.ndarray:
    """A ``.npy`` array read without pickle; an error naming the file otherwise."""
    import io

    try:
        return np.load(io.BytesIO(storage.read_bytes(uri)), allow_pickle=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"{storage.describe(uri)} ({what}) does not exist") from None
    except ValueError as exc:
        raise ValueError(f"{storage.describe(uri)} ({what}): not a plain numeric .npy array ({exc})") from None


class CorpusAdapter(DatasetAdapter):
    """Bring-your-own motion corpus: everything comes from a ``kind: motion_corpus`` card (no options)."""

    name = "corpus"
    OPTIONS: dict[str, Any] = {}

    def __init__(self, card: str | Path | CorpusCard) -> None:  # noqa: D107
        self.card = card if isinstance(card, CorpusCard) else load_corpus_card(card)
        self.card_dir = str(Path(self.card.path).resolve().parent) if self.card.path else os.getcwd()
        self.report = IngestReport()
        pose = self.card.pose
        self.joints = (custom_joint_set(pose.names, pose.map, pose.feet, self.card.path) if pose.joints == "custom"
                       else JOINT_SETS[pose.joints])

    def resolve_options(self, options: dict[str, Any] | None = None) -> dict[str, Any]:
        if options:
            raise ValueError(f"corpus: unknown option(s) {sorted(options)}; a corpus card takes no options, put "
                             f"settings in the card ({self.card.path or 'the card'})")
        return {}

    def labels(self, **options: Any) -> list[str]:
        self.resolve_options(options)
        return self.card.label_names()

    def _inside(self, root: str, relative: str, where: str, source: str | None = None) -> str:
        """A path under the corpus folder; a :class:`CardError` naming ``source`` (default: the card) if not."""
        try:
            return inside(root, relative, where, allow_outside=self.card.allow_outside_source)
        except UnsafeName as exc:
            raise CardError(source or self.card.path, where, str(exc)) from None

    def read(self, source_dir: str | None = None, **options: Any) -> Iterator[RawClip]:
        """Clips of the corpus ``clips`` index (JSON lines) under ``source_dir`` (default: the card's folder)."""
        self.resolve_options(options)
        self.report.clear()
        card = self.card
        check_keyword_labels(card.labels, card.path)
        root = source_dir or self.card_dir
        index = self._inside(root, card.clips, "clips")
        if not storage.exists(index):
            raise CardError(card.path, "clips", f"{storage.describe(index)} does not exist")
        lookup = {key: spec for spec in card.labels for key in spec.raw_keys()}
        seen: set[str] = set()
        self.report.details["pose"] = {"joints": self.joints.name, "rate_hz": card.pose.rate_hz}
        for n, line in enumerate(storage.read_bytes(index).decode("utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{basename(index)} line {n}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CardError(where, "clips", f"not a JSON object: {exc}") from None
            clip = self._clip(row, root, where, lookup, seen)
            if clip is not None:
                yield clip

    def _clip(self, row: Any, root: str, where: str, lookup: dict[str, LabelSpec], seen: set[str]) -> RawClip | None:
        card = self.card
        if not isinstance(row, dict):
            raise CardError(where, "clips", "each line must be a JSON object")
        cid = str(row.get("id", ""))
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}", cid):
            raise CardError(where, "clips.id", f"clip id {cid!r} must be letters, digits, '_', '.', '-' (it names "
                                               "windows and files)")
        if cid in seen:
            raise CardError(where, "clips.id", f"clip id {cid!r} is repeated")
        seen.add(cid)
        texts = row.get("texts", row.get("text"))
        texts = [texts] if isinstance(texts, str) else texts
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t.strip() for t in texts):
            raise CardError(where, "clips.texts", "give 'texts': a non-empty list of descriptions (or 'text')")
        texts = [t.strip() for t in texts]
        split = str(row.get("split", card.split_default))
        if split not in SPLIT_NAMES:
            raise CardError(where, "clips.split", f"split {split!r} is not one of {SPLIT_NAMES}")
        if "pose" not in row:
            raise CardError(where, "clips.pose", "each clip needs a 'pose' .npy file (frames, joints, 3)")
        positions = load_plain_npy(self._inside(root, str(row["pose"]), "clips.pose", where), f"{where}: pose")
        try:
            pose, acc, prep = prepare_pose(positions, self.joints, card.pose.rate_hz, units=card.pose.units,
                                           up=card.pose.up, lr=card.pose.lr)
        except ValueError as exc:
            raise CardError(f"{where} ({row['pose']})", "pose", f"{exc}; check pose.joints/units/up in "
                                                                f"{card.path or 'the card'}") from None
        seconds = len(pose) / FS
        if seconds + 1e-9 < card.min_seconds:
            self.report.skip(f"{cid}", f"{seconds:.2f} s is shorter than min_seconds={card.min_seconds:.2f} s")
            return None
        if prep.swapped_lr:
            self.report.counts["left_right_swapped"] += 1
        video = video_hz = None
        if row.get("video") is not None:
            if card.video is None:
                raise CardError(where, "video", "the clip names a video file but the card has no 'video' section "
                                                "(rate_hz, dim)")
            video = load_plain_npy(self._inside(root, str(row["video"]), "clips.video", where), f"{where}: video")
            if video.ndim != 2 or video.shape[1] != card.video.dim or not np.isfinite(video).all():
                raise CardError(where, "video.dim", f"{row['video']}: video features must be finite (frames, "
                                                    f"{card.video.dim}), got {video.shape}")
            video, video_hz = video.astype(np.float32), card.video.rate_hz
            self.report.counts["with_video"] += 1
        if row.get("activity") is not None:
            spec = lookup.get(raw_key(row["activity"]))
            if spec is None:
                raise CardError(where, "clips.activity", f"activity {row['activity']!r} is not one of the card's "
                                                         f"labels {card.label_names()}")
        else:
            spec = keyword_class(texts[0], card.labels)
        self.report.counts["clips"] += 1
        self.report.counts["texts"] += len(texts)
        subject = str(row.get("subject", cid))
        return RawClip(clip_id=f"{card.name}-{cid}", subject=f"{card.name}-{subject}", dataset=card.name,
                       split=split, label_text=texts[0], activity=spec.name, pose=pose, pose_hz=float(FS), acc=acc,
                       acc_hz=float(FS), video=video, video_hz=video_hz, texts=texts,
                       extra={"pose_prep": prep.as_dict()})
