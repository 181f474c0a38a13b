"""HumanML3D and KIT-ML in their published processed layout -> raw clips (pose, virtual wrist IMU, captions).

The layout (HumanML3D's README, "Data Structure"; KIT-ML is distributed processed the same way)::

    <root>/new_joints/<id>.npy     joint positions (frames, 22, 3) float32, metres, y up (KIT-ML: 21 joints)
    <root>/texts/<id>.txt          one description a line: caption#tokens#start#end (seconds; 0.0#0.0 = whole motion)
    <root>/train.txt val.txt test.txt   the official split: one id a line
    ids starting with "M"          mirrored copies (left/right swapped; their texts say left/right the other way)

HumanML3D runs at 20 fps, KIT-ML at 12.5 fps (option ``pose_hz``). Each motion becomes one clip whose
``texts`` are its whole-motion captions (``label_text`` the first). A caption with a time span (start/end not both
0) describes part of the motion only: with option ``spans: clips`` (default) each distinct span becomes its own clip
(``<id>-s<k>``, the frames of the span, its captions), as HumanML3D's own loaders do; ``spans: ignore`` drops them
(counted). A mirrored copy is a clip of its own (option ``mirrored``: include | exclude); its subject is its
original's, so the pair stays in one split and never counts as two people.

Joints are mapped onto the platform's 17 (:data:`mujo.adapters.corpus.SMPL22`, :data:`~mujo.adapters.corpus.KIT21`),
scaled to metres, rotated to z up, checked left/right from the feet, resampled to 50 Hz by a cubic spline and given a
virtual wrist IMU (:func:`mujo.adapters.corpus.prepare_pose`). Activities are keyword classes from the card's labels
(the first caption decides). Motions shorter than ``min_seconds`` (default: one window after preprocessing's 15 %
trims), with no text file, not in any split list, or with a malformed pose are skipped and listed in the report;
an unreadable split list or a pose of the wrong skeleton is an error naming the file.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Iterator

import numpy as np

from mujo import storage
from mujo.adapters.common import DatasetAdapter, basename
from mujo.adapters.corpus import (
    DEFAULT_MIN_SECONDS,
    KIT21,
    SMPL22,
    JointSet,
    check_keyword_labels,
    keyword_class,
    load_plain_npy,
    prepare_pose,
)
from mujo.data.clips import RawClip
from mujo.schema import FS


def parse_caption_line(line: str) -> tuple[str, float, float] | None:
    """``caption#tokens#start#end`` -> (caption, start, end); None for an empty line. A line without the four
    fields is taken as a whole-motion caption (its first field); unparsable times too."""
    line = line.strip()
    if not line:
        return None
    parts = line.split("#")
    caption = parts[0].strip()
    if not caption:
        return None
    start = end = 0.0
    if len(parts) >= 4:
        try:
            start, end = float(parts[2]), float(parts[3])
        except ValueError:
            start = end = 0.0
    if not (np.isfinite(start) and np.isfinite(end)):
        start = end = 0.0
    return caption, start, end


def group_captions(lines: list[str]) -> "OrderedDict[tuple[float, float], list[str]]":
    """Captions grouped by their span, whole-motion ((0, 0)) first, then spans in order of appearance."""
    groups: OrderedDict[tuple[float, float], list[str]] = OrderedDict()
    groups[(0.0, 0.0)] = []
    for line in lines:
        parsed = parse_caption_line(line)
        if parsed is None:
            continue
        caption, start, end = parsed
        key = (0.0, 0.0) if start == 0.0 and end == 0.0 else (start, end)
        groups.setdefault(key, []).append(caption)
    return groups


class HumanML3DAdapter(DatasetAdapter):
    """HumanML3D (22 SMPL joints, 20 fps); see the module docstring and ``datasets/humanml3d.yaml``."""

    name = "humanml3d"
    JOINTS: JointSet = SMPL22
    OPTIONS: dict[str, Any] = {
        "pose_hz": 20.0,
        "pose_units": "m",  # m | cm | mm | auto
        "pose_up": "+y",
        "lr": "auto",  # auto: checked from the feet | as_is | swapped
        "spans": "clips",  # clips: each captioned span becomes a clip | ignore
        "mirrored": "include",  # include | exclude the M-prefixed mirrored copies
        "min_seconds": DEFAULT_MIN_SECONDS,
        "limit": 0,  # at most this many motions (0: all), in split-list order: a sample for checks and benchmarks
    }

    def read(self, source_dir: str, **options: Any) -> Iterator[RawClip]:
        opts = self.resolve_options(options)
        self.report.clear()
        for key, allowed in (("spans", ("clips", "ignore")), ("mirrored", ("include", "exclude")),
                             ("lr", ("auto", "as_is", "swapped"))):
            if opts[key] not in allowed:
                raise ValueError(f"{self.name}: option {key} must be one of {allowed}, not {opts[key]!r}")
        check_keyword_labels(self.card.labels, self.card.path)
        splits = self._split_lists(source_dir)
        joints_dir, texts_dir = storage.join(source_dir, "new_joints"), storage.join(source_dir, "texts")
        present = {basename(u)[:-4] for u in storage.list_files(joints_dir, ".npy")}
        if not present:
            raise FileNotFoundError(f"{self.name}: no .npy files under {storage.describe(joints_dir)} (expected "
                                    "<root>/new_joints/<id>.npy; --source is the folder holding new_joints/ and "
                                    "texts/)")
        listed = [m for ids in splits.values() for m in ids]
        for m in sorted(present - set(listed)):
            self.report.skip(f"new_joints/{m}.npy", "not in train.txt, val.txt or test.txt")
        limit = int(opts["limit"])
        done = 0
        stats = {"motions": 0, "span_clips": 0, "captions": 0, "swapped_lr": 0, "chirality_min": 1.0}
        for split, ids in splits.items():
            for mid in ids:
                if limit and done >= limit:
                    break
                if mid.startswith("M") and opts["mirrored"] == "exclude":
                    self.report.counts["mirrored_excluded"] += 1
                    continue
                if mid not in present:
                    self.report.skip(f"{mid}", f"listed in {split}.txt but new_joints/{mid}.npy is missing")
                    continue
                done += 1
                yield from self._motion(mid, split, joints_dir, texts_dir, opts, stats)
        self.report.details["motions"] = stats
        self.report.note(f"{stats['motions']} motions -> {stats['motions'] + stats['span_clips']} clips "
                         f"({stats['span_clips']} from captioned spans), {stats['captions']} captions")

    def _split_lists(self, root: str) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        seen: dict[str, str] = {}
        for split in ("train", "val", "test"):
            uri = storage.join(root, f"{split}.txt")
            if not storage.exists(uri):
                continue
            ids = [s.strip() for s in storage.read_bytes(uri).decode("utf-8").splitlines() if s.strip()]
            for mid in ids:
                if not mid.replace("_", "").isalnum():
                    raise ValueError(f"{storage.describe(uri)}: id {mid!r} is not a plain motion id")
                if mid in seen:
                    raise ValueError(f"{storage.describe(uri)}: id {mid} is also in {seen[mid]}.txt: the official "
                                     "split lists must be disjoint")
                seen[mid] = split
            out[split] = ids
        if "train" not in out:
            raise FileNotFoundError(f"{self.name}: no train.txt under {storage.describe(root)}: the official split "
                                    "lists (train.txt, val.txt, test.txt) decide each motion's split")
        return out

    def _motion(self, mid: str, split: str, joints_dir: str, texts_dir: str, opts: dict[str, Any],
                stats: dict[str, Any]) -> Iterator[RawClip]:
        text_uri = storage.join(texts_dir, f"{mid}.txt")
        if not storage.exists(text_uri):
            self.report.skip(mid, f"no texts/{mid}.txt")
            return
        groups = group_captions(storage.read_bytes(text_uri).decode("utf-8", errors="replace").splitlines())
        if not any(groups.values()):
            self.report.skip(mid, f"texts/{mid}.txt has no caption")
            return
        try:
            positions = load_plain_npy(storage.join(joints_dir, f"{mid}.npy"), "joint positions")
            pose, acc, prep = prepare_pose(positions, self.JOINTS, float(opts["pose_hz"]), units=opts["pose_units"],
                                           up=opts["pose_up"], lr=opts["lr"])
        except ValueError as exc:
            self.report.skip(f"new_joints/{mid}.npy", str(exc))
            return
        stats["motions"] += 1
        if prep.chirality is not None:
            stats["chirality_min"] = round(min(stats["chirality_min"], prep.chirality), 3)
        if prep.swapped_lr:
            stats["swapped_lr"] += 1
        subject = f"{self.dataset_name}-{mid[1:] if mid.startswith('M') else mid}"
        for k, ((start, end), captions) in enumerate(groups.items()):
            if not captions:
                continue
            if (start, end) == (0.0, 0.0):
                cid, seg_pose, seg_acc = f"{self.dataset_name}-{mid}", pose, acc
            else:
                if opts["spans"] == "ignore":
                    self.report.counts["span_captions_ignored"] += len(captions)
                    continue
                a, b = int(round(start * FS)), min(int(round(end * FS)), len(pose))
                cid, seg_pose, seg_acc = f"{self.dataset_name}-{mid}-s{k}", pose[a:b], acc[a:b]
            seconds = len(seg_pose) / FS
            if seconds + 1e-9 < float(opts["min_seconds"]):
                self.report.skip(cid, f"{seconds:.2f} s is shorter than min_seconds={float(opts['min_seconds']):.2f}"
                                      " s")
                continue
            spec = keyword_class(captions[0], self.card.labels)
            stats["captions"] += len(captions)
            if cid != f"{self.dataset_name}-{mid}":
                stats["span_clips"] += 1
            yield RawClip(clip_id=cid, subject=subject, dataset=self.dataset_name, split=split,
                          label_text=captions[0], activity=spec.name, pose=seg_pose, pose_hz=float(FS), acc=seg_acc,
                          acc_hz=float(FS), texts=list(captions),
                          extra={"motion": mid, "span_s": [start, end], "pose_prep": prep.as_dict()})


class KITMLAdapter(HumanML3DAdapter):
    """KIT-ML in HumanML3D's processed layout (21 joints, 12.5 fps); see ``datasets/kitml.yaml``."""

    name = "kitml"
    JOINTS = KIT21
    OPTIONS: dict[str, Any] = {**HumanML3DAdapter.OPTIONS, "pose_hz": 12.5, "pose_units": "auto"}
