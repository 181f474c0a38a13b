"""MotionSense (Malekzadeh et al., 2019): iPhone 6s device motion at 50 Hz, 24 subjects, 6 activities.

Published layout: the repository's ``data/`` (and the common mirrors, e.g. Kaggle) holds three sibling folders with the
same ``<act>_<trial>/sub_<id>.csv`` pattern::

    A_DeviceMotion_data/<act>_<trial>/sub_<id>.csv     e.g. dws_1/sub_1.csv   (read)
    B_Accelerometer_data/<act>_<trial>/sub_<id>.csv    x, y, z only            (skipped, reported)
    C_Gyroscope_data/<act>_<trial>/sub_<id>.csv        x, y, z only            (skipped, reported)

Only ``A_DeviceMotion_data`` has the gravity and user-acceleration columns this adapter needs, so ``--source`` may be
the download root, ``data/``, or ``A_DeviceMotion_data`` itself: files are read when a folder of their path is named
``A_DeviceMotion_data`` (at any depth, so the doubled ``A_DeviceMotion_data/A_DeviceMotion_data/`` of the mirrors
works), and every other file of the pattern is listed in the report as skipped (one entry per sibling folder, with
its file count) instead of aborting the ingest. The same ``<act>_<trial>/sub_<id>`` found twice (two extractions of
the zip) is read once; the other copies are listed as skipped. macOS ``__MACOSX``/``._*`` files are ignored.

Each CSV has an unnamed index column, then ``attitude.roll/pitch/yaw``, ``gravity.x/y/z``, ``rotationRate.x/y/z``,
``userAcceleration.x/y/z``. One file is one continuous recording of one activity by one subject: one clip.

**Units and sign** (iOS Core Motion): ``gravity`` and ``userAcceleration`` are in g, and the device's total
acceleration is their sum. Core Motion's vectors point the way gravity pulls (a phone lying still face up reports
gravity z = -1 g), the opposite of the specific force an accelerometer reports in the platform convention (+1 g
along the axis pointing up). So ``acc = -(gravity + userAcceleration) * 9.80665`` (the card's ``options.sign``).

**Placement**: the phone was in the subject's front trouser pocket. It is not a wrist sensor; it is put in one wrist
slot (option ``slot``, default ``right``) so the platform can read it, and the other slot is zeros. Models that
assume a wrist will see thigh motion there; the card says so.
"""

from __future__ import annotations

import io
import os
import re
from typing import Any, Iterator

import numpy as np
import pyarrow.csv as pacsv

from mujo import storage
from mujo.adapters.common import DatasetAdapter, basename, relpath, slot_acc, to_ms2
from mujo.data.clips import RawClip

GRAVITY = ("gravity.x", "gravity.y", "gravity.z")
USER = ("userAcceleration.x", "userAcceleration.y", "userAcceleration.z")
_TRIAL = re.compile(r"^([a-z]+)_(\d+)$")
_SUBJECT = re.compile(r"^sub_(\d+)\.csv$")
DEVICE_MOTION = "A_DeviceMotion_data"


class MotionSenseAdapter(DatasetAdapter):
    """Reads MotionSense's ``A_DeviceMotion_data`` folder; see the module docstring and the card."""

    name = "motionsense"
    OPTIONS: dict[str, Any] = {
        "slot": "right",  # which wrist slot the pocket phone fills (the other is zeros)
        "sign": -1.0,  # Core Motion vectors point along gravity: negate to get specific force
        "units": "g",
        "min_seconds": 2.0,
        "rate_hz": 50.0,
    }

    def read(self, source_dir: str, **options: Any) -> Iterator[RawClip]:
        """One clip per ``A_DeviceMotion_data/<act>_<trial>/sub_<id>.csv`` under ``source_dir`` (the download root,
        ``data/``, or ``A_DeviceMotion_data`` itself)."""
        opts = self.resolve_options(options)
        self.report.clear()
        files, outside = find_device_motion_files(source_dir)
        for folder, uris in sorted(outside.items()):
            self.report.skip(folder, f"{len(uris)} <act>_<trial>/sub_<id>.csv files not read: only "
                                     f"{DEVICE_MOTION} has gravity and userAcceleration (the accelerometer and "
                                     "gyroscope folders hold x, y, z only)")
            self.report.counts["files_outside_device_motion"] += len(uris)
        self.report.details["skipped_folders"] = {f: len(u) for f, u in sorted(outside.items())}
        if not files:
            found = f"; found only {sorted(outside)}" if outside else ""
            raise FileNotFoundError(f"motionsense: no {DEVICE_MOTION}/<act>_<trial>/sub_<id>.csv under "
                                    f"{storage.describe(source_dir)}{found} (point --source at the folder holding "
                                    f"{DEVICE_MOTION}, e.g. motion-sense/data, or at {DEVICE_MOTION} itself)")
        lookup = self.card.lookup()
        seen: dict[tuple[str, str, str], str] = {}
        for uri in files:
            folder = basename(uri[: -len(basename(uri))].rstrip("/\\"))
            act, trial = _TRIAL.match(folder).groups()
            sid = _SUBJECT.match(basename(uri)).group(1)
            item = relpath(uri, source_dir)
            key = (act, str(int(trial)), str(int(sid)))
            if key in seen:
                self.report.skip(item, f"a second copy of {seen[key]} (the zip extracted twice?): read once")
                self.report.counts["duplicate_files"] += 1
                continue
            seen[key] = item
            spec = lookup.get(act)
            if spec is None:
                self.report.skip(item, f"activity code {act!r} is not in the card's label map")
                continue
            subject = sid
            split = self.split_of(subject)
            if split is None:
                self.report.skip(item, f"subject {subject} is not in the card's split")
                continue
            table = pacsv.read_csv(io.BytesIO(storage.read_bytes(uri)))
            missing = [c for c in GRAVITY + USER if c not in table.column_names]
            if missing:
                raise ValueError(f"{storage.describe(uri)}: missing columns {missing}; found {table.column_names}")
            grav = np.stack([table[c].to_numpy().astype(np.float64) for c in GRAVITY], axis=1)
            user = np.stack([table[c].to_numpy().astype(np.float64) for c in USER], axis=1)
            total = to_ms2(grav + user, opts["units"], "motionsense", "options.units") * float(opts["sign"])
            ok = np.isfinite(total).all(axis=1)
            if not ok.all():
                self.report.note(f"{item}: {int((~ok).sum())} rows with NaN dropped")
                total = total[ok]
            if len(total) / opts["rate_hz"] + 1e-9 < opts["min_seconds"]:
                self.report.skip(item, f"{len(total) / opts['rate_hz']:.2f} s, shorter than min_seconds="
                                       f"{opts['min_seconds']}")
                continue
            yield RawClip(
                clip_id=f"motionsense-{act}_{trial}-sub{int(sid):02d}", subject=f"motionsense-sub{int(sid):02d}",
                dataset=self.dataset_name, split=split, label_text=spec.label_text, activity=spec.name,
                acc=slot_acc(total.astype(np.float32), opts["slot"]), acc_hz=float(opts["rate_hz"]),
                extra={"trial": int(trial), "file": item},
            )


def _parts(uri: str) -> list[str]:
    """The folder names of a path or ``s3://`` URI (the bucket counts as a folder)."""
    path = uri[5:] if storage.is_s3(uri) else os.path.abspath(uri)
    return [p for p in re.split(r"[/\\]", path) if p]


def find_device_motion_files(source_dir: str) -> tuple[list[str], dict[str, list[str]]]:
    """The ``<act>_<trial>/sub_<id>.csv`` files under ``source_dir`` that lie in an ``A_DeviceMotion_data`` folder
    (sorted, shallowest copy first), and the other files of that pattern grouped by the folder holding their
    ``<act>_<trial>`` folders, relative to ``source_dir`` (e.g. ``data/B_Accelerometer_data``)."""
    inside: list[str] = []
    outside: dict[str, list[str]] = {}
    root_depth = len(_parts(source_dir))
    for uri in storage.list_files(source_dir, ".csv"):
        parts = _parts(uri)
        if len(parts) < 2 or not _SUBJECT.match(parts[-1]) or not _TRIAL.match(parts[-2]):
            continue
        if any(p == "__MACOSX" or p.startswith(".") for p in parts[root_depth:]):
            continue  # macOS resource forks of the zip
        if DEVICE_MOTION in parts[:-2]:
            inside.append(uri)
        else:  # grouped by the folder holding the <act>_<trial> folders, relative to source_dir
            below = parts[root_depth:-2]
            outside.setdefault("/".join(below) if below else parts[root_depth - 1], []).append(uri)
    inside.sort(key=lambda u: (len(_parts(u)), u))
    return inside, outside
