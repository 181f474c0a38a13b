"""MyoGym (Koskimäki et al., UbiComp 2017 adjunct): a Myo armband on the right forearm, 10 subjects, 30 gym
exercises plus a null class.

Published layout: one MATLAB file ``MyoGym.mat`` with (among feature tables) ``raw_data`` (N x 17) and
``raw_data_labels`` (N x 2: exercise code, subject). Column meaning of ``raw_data`` as read by two independent
public notebooks (the dataset's own readme PDF could not be checked here, see the card's ``unconfirmed``)::

    0      EMG timestamp         1-8   EMG channels 1-8
    9      accelerometer timestamp          10-12 accelerometer x, y, z (g)
    13     gyroscope timestamp              14-16 gyroscope x, y, z (deg/s)

Rows are not uniformly spaced (the IMU runs at ~50 Hz and repeats a value until its next sample); the accelerometer
stream is therefore de-duplicated by its own timestamps and resampled onto a uniform ``rate_hz`` grid. One clip per
contiguous run of one (exercise, subject) pair, split where the accelerometer timestamps jump by more than
``max_gap_s`` or go backwards. The accelerometer (g -> m/s^2) fills the right wrist slot (left slot zeros).
Columns, units and the null code are card options, so a correction needs no code change.
"""

from __future__ import annotations

import io
from typing import Any, Iterator

import numpy as np

from mujo import storage
from mujo.adapters.cards import raw_key
from mujo.adapters.common import (
    DatasetAdapter,
    monotonic_samples,
    resample_at,
    slot_acc,
    split_at_gaps,
    to_ms2,
    uniform_grid,
)
from mujo.data.clips import RawClip

TIME_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


class MyoGymAdapter(DatasetAdapter):
    """Reads ``MyoGym.mat``; see the module docstring and ``datasets/myogym.yaml``."""

    name = "myogym"
    OPTIONS: dict[str, Any] = {
        "file": "MyoGym.mat",
        "include_null": False,  # keep the null code(s) as 'no_activity'
        "acc_columns": [10, 11, 12],  # 0-based columns of raw_data
        "time_column": 9,  # the accelerometer's timestamp column
        "time_unit": "us",  # us | ms | s  (Myo SDK timestamps are microseconds)
        "units": "g",
        "rate_hz": 50.0,  # the uniform grid (the Myo IMU's rate)
        "max_gap_s": 1.0,  # split a run where the timestamps jump further
        "min_seconds": 2.0,
        "slot": "right",
    }

    def read(self, source_dir: str, **options: Any) -> Iterator[RawClip]:
        """One clip per (exercise, subject) run of ``<source_dir>/MyoGym.mat`` (or ``source_dir`` itself)."""
        from scipy.io import loadmat

        opts = self.resolve_options(options)
        self.report.clear()
        uri = source_dir if source_dir.endswith(".mat") else storage.join(source_dir, opts["file"])
        if not storage.exists(uri):
            raise FileNotFoundError(f"myogym: {storage.describe(uri)} does not exist")
        mat = loadmat(io.BytesIO(storage.read_bytes(uri)), variable_names=["raw_data", "raw_data_labels"])
        for key in ("raw_data", "raw_data_labels"):
            if key not in mat:
                raise ValueError(f"{storage.describe(uri)}: variable '{key}' not found; the file holds "
                                 f"{sorted(k for k in mat if not k.startswith('__'))}")
        raw = np.asarray(mat["raw_data"], dtype=np.float64)
        lab = np.asarray(mat["raw_data_labels"])
        if raw.ndim != 2 or lab.ndim != 2 or lab.shape[1] != 2 or len(raw) != len(lab):
            raise ValueError(f"{storage.describe(uri)}: expected raw_data (N x 17) and raw_data_labels (N x 2), got "
                             f"{raw.shape} and {lab.shape}")
        cols = [int(c) for c in opts["acc_columns"]]
        tcol = int(opts["time_column"])
        if max(cols + [tcol]) >= raw.shape[1]:
            raise ValueError(f"{storage.describe(uri)}: raw_data has {raw.shape[1]} columns; acc_columns {cols} / "
                             f"time_column {tcol} do not fit")
        if opts["time_unit"] not in TIME_UNITS:
            raise ValueError(f"myogym: time_unit must be one of {sorted(TIME_UNITS)}, not {opts['time_unit']!r}")
        t_all = raw[:, tcol] * TIME_UNITS[opts["time_unit"]]
        acc_all = to_ms2(raw[:, cols], opts["units"], "myogym", "options.units")
        include_null = bool(opts["include_null"])
        lookup = self.card.lookup(include_null=include_null)
        null_keys = self.card.null_keys()
        lab = lab.astype(np.float64)
        hz = float(opts["rate_hz"])
        counter: dict[str, int] = {}
        change = np.nonzero((np.diff(lab[:, 0]) != 0) | (np.diff(lab[:, 1]) != 0))[0] + 1
        bounds = np.concatenate([[0], change, [len(lab)]]).astype(int)
        for a, b in zip(bounds[:-1], bounds[1:]):  # runs of one (exercise, subject) pair
            code, sid = raw_key(lab[a, 0]), raw_key(lab[a, 1])
            item = f"rows {a}-{b - 1} (exercise {code}, subject {sid})"
            if code in null_keys and not include_null:
                self.report.counts["null_rows_excluded"] += b - a
                continue
            spec = lookup.get(code)
            if spec is None:
                self.report.skip(item, f"exercise code {code} is not in the card's label map")
                continue
            split = self.split_of(sid)
            if split is None:
                self.report.skip(item, f"subject {sid} is not in the card's split")
                continue
            for ga, gb in split_at_gaps(t_all[a:b], float(opts["max_gap_s"])):
                t, x = monotonic_samples(t_all[a + ga:a + gb], acc_all[a + ga:a + gb])
                ok = np.isfinite(x).all(axis=1) & np.isfinite(t)
                t, x = t[ok], x[ok]
                sub = f"{item} part {ga}-{gb - 1}"
                if len(t) < 2 or (t[-1] - t[0]) + 1e-9 < opts["min_seconds"]:
                    span = (t[-1] - t[0]) if len(t) >= 2 else 0.0
                    self.report.skip(sub, f"{span:.2f} s, shorter than min_seconds={opts['min_seconds']}")
                    continue
                grid = uniform_grid(t[0], t[-1] + 1.0 / hz, hz)
                block = resample_at(t, x, grid)
                n = counter.get(f"{sid}-{spec.name}", 0)
                counter[f"{sid}-{spec.name}"] = n + 1
                yield RawClip(
                    clip_id=f"myogym-s{int(float(sid)):02d}-{spec.name}-{n:02d}",
                    subject=f"myogym-s{int(float(sid)):02d}", dataset=self.dataset_name, split=split,
                    label_text=spec.label_text, activity=spec.name,
                    acc=slot_acc(block.astype(np.float32), opts["slot"]), acc_hz=hz,
                    extra={"rows": (a + ga, a + gb), "exercise_code": code, "samples": len(t)},
                )
