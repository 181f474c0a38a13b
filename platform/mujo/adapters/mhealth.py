"""MHEALTH (Banos et al., 2014): Shimmer2 sensors on chest, left ankle and right lower arm, 50 Hz, 10 subjects.

Published layout: ``mHealth_subject{1..10}.log``, whitespace-separated, no header, 24 columns per row::

    1-3   chest acceleration (m/s^2)         4-5   ECG lead 1, lead 2 (mV)
    6-8   left-ankle acceleration (m/s^2)    9-11  left-ankle gyroscope (deg/s)    12-14 left-ankle magnetometer
    15-17 right-lower-arm acceleration       18-20 right-lower-arm gyroscope       21-23 right-lower-arm magnetometer
    24    label: 0 = null (no activity), 1..12 the activities

One clip per contiguous run of one label in one subject's file. The right-lower-arm accelerometer fills the right
wrist slot (left slot zeros).

**Null label** (quirk): label 0 marks everything recorded between the protocol's activities. By default those rows
are excluded (counted in the report, not dropped silently); ``include_null=true`` keeps them as the ``no_activity``
class (appended last to the label list).
"""

from __future__ import annotations

import io
import re
from typing import Any, Iterator

import numpy as np

from mujo import storage
from mujo.adapters.cards import raw_key
from mujo.adapters.common import DatasetAdapter, basename, runs, slot_acc, to_ms2
from mujo.data.clips import RawClip

_FILE = re.compile(r"^mHealth_subject(\d+)\.log$")
N_COLUMNS = 24
RIGHT_ARM_ACC = (14, 15, 16)  # 0-based columns 15-17
LABEL = 23


class MHealthAdapter(DatasetAdapter):
    """Reads ``mHealth_subject*.log``; see the module docstring and ``datasets/mhealth.yaml``."""

    name = "mhealth"
    OPTIONS: dict[str, Any] = {
        "include_null": False,  # keep label 0 as the 'no_activity' class
        "min_seconds": 2.0,  # shorter runs are skipped (listed in the report)
        "rate_hz": 50.0,
        "units": "m/s^2",
    }

    def read(self, source_dir: str, **options: Any) -> Iterator[RawClip]:
        """One clip per labelled run of every ``mHealth_subject*.log`` under ``source_dir``."""
        opts = self.resolve_options(options)
        self.report.clear()
        files = [u for u in storage.list_files(source_dir, ".log") if _FILE.match(basename(u))]
        if not files:
            raise FileNotFoundError(f"mhealth: no mHealth_subject<N>.log under {storage.describe(source_dir)}")
        include_null = bool(opts["include_null"])
        lookup = self.card.lookup(include_null=include_null)
        null_keys = self.card.null_keys()
        hz = float(opts["rate_hz"])
        for uri in sorted(files, key=lambda u: int(_FILE.match(basename(u)).group(1))):
            sid = _FILE.match(basename(uri)).group(1)
            split = self.split_of(sid)
            if split is None:
                self.report.skip(basename(uri), f"subject {sid} is not in the card's split")
                continue
            data = np.loadtxt(io.BytesIO(storage.read_bytes(uri)), ndmin=2)
            if data.shape[1] != N_COLUMNS:
                raise ValueError(f"{storage.describe(uri)}: expected {N_COLUMNS} whitespace-separated columns, found "
                                 f"{data.shape[1]}")
            acc = to_ms2(data[:, list(RIGHT_ARM_ACC)], opts["units"], "mhealth", "options.units")
            labels = data[:, LABEL].astype(np.int64)
            for k, (a, b, value) in enumerate(runs(labels)):
                key = raw_key(value)
                item = f"{basename(uri)} rows {a}-{b - 1} (label {key})"
                if key in null_keys and not include_null:
                    self.report.counts["null_rows_excluded"] += b - a
                    continue
                spec = lookup.get(key)
                if spec is None:
                    self.report.skip(item, f"label {key} is not in the card's label map")
                    continue
                if (b - a) / hz + 1e-9 < opts["min_seconds"]:
                    self.report.skip(item, f"{(b - a) / hz:.2f} s, shorter than min_seconds={opts['min_seconds']}")
                    continue
                block = acc[a:b]
                ok = np.isfinite(block).all(axis=1)
                if not ok.all():
                    self.report.note(f"{item}: {int((~ok).sum())} rows with NaN dropped")
                    block = block[ok]
                yield RawClip(
                    clip_id=f"mhealth-s{int(sid):02d}-{k:04d}-{spec.name}", subject=f"mhealth-s{int(sid):02d}",
                    dataset=self.dataset_name, split=split, label_text=spec.label_text, activity=spec.name,
                    acc=slot_acc(block.astype(np.float32), "right"), acc_hz=hz,
                    extra={"rows": (a, b), "file": basename(uri)},
                )
