"""FLAG3D (Tang et al., CVPR 2023): MoCap 3-D skeletons of 60 fitness activities, pose only.

Published layout (the pyskl annotation format): ``flag3d.pkl`` holding ``{'split': {'train': [...], 'val': [...]},
'annotations': [{'frame_dir': 'S002C002M001P002A001R001', 'keypoint': (M, T, 25, 3) float32, 'label': int,
'total_frames': T, ...}, ...]}``. ``P###`` in ``frame_dir`` is the performer (subject), ``A###`` the activity.

The 25 joints are the NTU RGB+D / Kinect v2 layout; they are mapped onto the platform's 17 Human3.6M joints with
:data:`NTU_TO_H36M` (pelvis = SpineBase, spine = SpineMid, thorax = SpineShoulder, neck/nose ~ Neck, head = Head,
limbs joint by joint; hands, hand tips, thumbs and feet are dropped). The published sample (FLAG3D's
``flag3d_format.py``) is in metres with z up (SpineMid 0.31 m and Neck 0.62 m above SpineBase), which are the option
defaults; the unit guess and the trunk length are checked per clip. No IMU: preprocessing derives a virtual wrist
IMU from the pose. The frame rate is not stated in the annotation file (option ``pose_hz``, see the card).

The official split has ``train`` (performers 2-4, 6-9) and ``val`` (1, 5, 10), which FLAG3D's own benchmark code
evaluates on: ``val`` becomes the platform's ``test`` (option ``val_as``). ``pickle`` runs code from the file:
only ingest a ``flag3d.pkl`` from a source you trust.
"""

from __future__ import annotations

import io
import pickle
import re
from typing import Any, Iterator

import numpy as np

from mujo import storage
from mujo.adapters.cards import raw_key
from mujo.adapters.common import DatasetAdapter, detect_pose_units, normalize_pose
from mujo.data.clips import RawClip

NTU_JOINTS = (
    "SpineBase", "SpineMid", "Neck", "Head", "ShoulderLeft", "ElbowLeft", "WristLeft", "HandLeft", "ShoulderRight",
    "ElbowRight", "WristRight", "HandRight", "HipLeft", "KneeLeft", "AnkleLeft", "FootLeft", "HipRight", "KneeRight",
    "AnkleRight", "FootRight", "SpineShoulder", "HandTipLeft", "ThumbLeft", "HandTipRight", "ThumbRight",
)
NTU_TO_H36M = (0, 16, 17, 18, 12, 13, 14, 1, 20, 2, 3, 4, 5, 6, 8, 9, 10)
"""For each Human3.6M joint (``mujo.data.skeleton.JOINTS`` order) the NTU RGB+D joint it is taken from."""

_FRAME_DIR = re.compile(r"P(\d+)")


def ntu_to_h36m(keypoints: np.ndarray) -> np.ndarray:
    """``(T, 25, 3)`` NTU RGB+D joints -> ``(T, 17, 3)`` Human3.6M joints (see :data:`NTU_TO_H36M`)."""
    kp = np.asarray(keypoints)
    if kp.ndim != 3 or kp.shape[1:] != (25, 3):
        raise ValueError(f"expected (T, 25, 3) NTU RGB+D keypoints, got {kp.shape}")
    return kp[:, list(NTU_TO_H36M)]


class Flag3DAdapter(DatasetAdapter):
    """Reads ``flag3d.pkl``; see the module docstring and ``datasets/flag3d.yaml``."""

    name = "flag3d"
    OPTIONS: dict[str, Any] = {
        "file": "flag3d.pkl",
        "pose_hz": 30.0,  # not stated in the annotation file: see the card's 'unconfirmed'
        "pose_units": "m",  # m | cm | mm | auto
        "pose_up": "+z",  # the published sample is z-up; 'auto' guesses per clip (unsafe for lying exercises)
        "val_as": "test",  # the official 'val' list becomes this platform split
        "person": 0,  # which of the M skeletons
        "min_seconds": 2.0,
    }

    def read(self, source_dir: str, **options: Any) -> Iterator[RawClip]:
        """One clip per annotation of ``<source_dir>/flag3d.pkl`` (or ``source_dir`` itself)."""
        opts = self.resolve_options(options)
        self.report.clear()
        uri = source_dir if source_dir.endswith(".pkl") else storage.join(source_dir, opts["file"])
        if not storage.exists(uri):
            raise FileNotFoundError(f"flag3d: {storage.describe(uri)} does not exist")
        data = pickle.load(io.BytesIO(storage.read_bytes(uri)))  # noqa: S301 - trusted dataset file, see docstring
        if not isinstance(data, dict) or "annotations" not in data or "split" not in data:
            raise ValueError(f"{storage.describe(uri)}: expected a dict with 'split' and 'annotations' (pyskl format)")
        if opts["val_as"] not in ("train", "val", "test"):
            raise ValueError(f"flag3d: val_as must be train, val or test, not {opts['val_as']!r}")
        official = {"train": "train", "val": opts["val_as"], "test": "test"}
        split_of: dict[str, str] = {}
        for name, ids in data["split"].items():
            if name not in official:
                self.report.note(f"official split list {name!r} ignored (not train/val/test)")
                continue
            for fd in ids:
                split_of[str(fd)] = official[name]
        lookup = self.card.lookup()
        hz = float(opts["pose_hz"])
        for ann in data["annotations"]:
            fd = str(ann.get("frame_dir", ""))
            split = split_of.get(fd)
            if split is None:
                self.report.skip(fd or "<no frame_dir>", "not in any official split list")
                continue
            spec = lookup.get(raw_key(ann.get("label")))
            if spec is None:
                self.report.skip(fd, f"label {ann.get('label')!r} is not in the card's label map")
                continue
            kp = np.asarray(ann["keypoint"], dtype=np.float64)
            if kp.ndim != 4 or kp.shape[2:] != (25, 3):
                raise ValueError(f"{storage.describe(uri)}: {fd}: keypoint must be (M, T, 25, 3), got {kp.shape}")
            person = int(opts["person"])
            if person >= kp.shape[0]:
                self.report.skip(fd, f"has {kp.shape[0]} skeleton(s), option person={person}")
                continue
            pose = ntu_to_h36m(kp[person])
            ok = np.isfinite(pose).all(axis=(1, 2))
            if not ok.all():
                self.report.note(f"{fd}: {int((~ok).sum())} frames with NaN dropped")
                pose = pose[ok]
            if len(pose) / hz + 1e-9 < opts["min_seconds"]:
                self.report.skip(fd, f"{len(pose) / hz:.2f} s, shorter than min_seconds={opts['min_seconds']}")
                continue
            if opts["pose_units"] != "auto" and detect_pose_units(pose) != opts["pose_units"]:
                self.report.note(f"{fd}: the trunk length suggests {detect_pose_units(pose)}, the option says "
                                 f"{opts['pose_units']}")
            pose32, conv = normalize_pose(pose, units=opts["pose_units"], up=opts["pose_up"], lr="h36m")
            m = _FRAME_DIR.search(fd)
            performer = f"p{int(m.group(1)):03d}" if m else fd
            yield RawClip(
                clip_id=f"flag3d-{fd}", subject=f"flag3d-{performer}", dataset=self.dataset_name, split=split,
                label_text=spec.label_text, activity=spec.name, pose=pose32, pose_hz=hz,
                extra={"frame_dir": fd, "label": ann.get("label"), "pose_convention": conv.as_dict()},
            )
