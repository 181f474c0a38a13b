"""MotionSense (Malekzadeh et al., 2019): iPhone 6s device motion at 50 Hz, 24 subjects, 6 activities.

Published layout::

    A_DeviceMotion_data/<act>_<trial>/sub_<id>.csv     e.g. dws_1/sub_1.csv

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
        """One clip per ``<act>_<trial>/sub_<id>.csv`` under ``source_dir`` (the folder containing, or being,
        ``A_DeviceMotion_data``)."""
        opts = self.resolve_options(options)
        self.report.clear()
        files = [u for u in storage.list_files(source_dir, ".csv") if _SUBJECT.match(basename(u))]
        files = [u for u in files if _TRIAL.match(basename(u[: -len(basename(u))].rstrip("/\\")))]
        if not files:
            raise FileNotFoundError(f"motionsense: no <act>_<trial>/sub_<id>.csv under "
                                    f"{storage.describe(source_dir)} (expected A_DeviceMotion_data/dws_1/sub_1.csv)")
        lookup = self.card.lookup()
        for uri in files:
            folder = basename(uri[: -len(basename(uri))].rstrip("/\\"))
            act, trial = _TRIAL.match(folder).groups()
            sid = _SUBJECT.match(basename(uri)).group(1)
            item = relpath(uri, source_dir)
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
