"""Bring your own data: a folder of per-recording CSV/Parquet files, or NumPy arrays, described by a small card.

No code to write: a YAML card says what the data is, and this adapter turns it into the platform's raw clips
(``docs/sample-format.md``). The card (full reference in ``datasets/README.md``)::

    name: wrist_study                 # dataset name: lower case, digits, _
    sampling_rate_hz: 100             # native rate; preprocessing resamples to 50 Hz
    units: g                          # g | mg | m/s^2
    gravity: removed                  # included | removed
    rest_reading: up                  # what a still sensor reads along its up axis: up (+1 g: Android, most IMUs)
                                      #   or down (-1 g: iOS Core Motion); 'down' data is negated
    channels: [ax, ay, az, gx, gy, gz]  # the data's channels, in order (CSV/Parquet column names; NumPy last axis)
    wrists:                           # which channels are which wrist's accelerometer x, y, z (one wrist is fine:
      right: [ax, ay, az]             #   the other wrist's slot is zeros)
    gravity_channels:                 # needed when gravity: removed (or give `orientation` instead)
      right: [gx, gy, gz]
    labels: [walking, {name: stairs_up, text: "walking upstairs", values: [3]}]
    null_values: [0]                  # raw label values meaning "no activity": excluded (counted in the report)
    data: {format: csv, path: recordings, label_column: activity, subject_column: subject}
    split: {train: [s1, s2], test: [s3]}   # optional; unlisted subjects go to split_default (train)
    short_recordings: refuse          # refuse | pad | error
    min_seconds: 2.86                 # shorter recordings are refused/padded (default: one window after the
                                      #   platform's default 15 % trim at each end)

Gravity, thought through. The platform's acc includes gravity (a still sensor reads 9.81 m/s^2). Many phone and
watch APIs report *linear* acceleration with gravity removed; adding it back needs the direction of gravity in the
sensor frame at every sample, which the linear acceleration itself no longer contains. Adding a constant vector
would be wrong whenever the wrist rotates, and no estimate from the linear signal alone is possible. So the card
must say where gravity comes from: ``gravity_channels`` (the API's gravity vector, e.g. Core Motion ``gravity`` or
Android ``TYPE_GRAVITY``, same frame and units: total = linear + gravity), or ``orientation`` (a quaternion per
sample: gravity = R^T (0, 0, 9.80665)). A card with ``gravity: removed`` and neither is refused with a
:class:`~mujo.adapters.cards.CardError` naming ``gravity_channels``.

Recordings shorter than ``min_seconds`` are never dropped silently: ``refuse`` leaves them out with a warning and
lists them in ``dataset.json`` (``report.skipped``), ``pad`` repeats the last sample up to ``min_seconds`` (noted
in the report), ``error`` stops the ingest naming the recording. Longer recordings are windowed by preprocessing.
Unknown units, a missing card field, a channel the data lacks or a channel count that contradicts the card are
:class:`~mujo.adapters.cards.CardError` naming the file and the field.
"""

from __future__ import annotations

import io
import math
import os
import re
from pathlib import Path
from typing import Any, Iterator, Literal

import numpy as np
from pydantic import Field, ValidationError, field_validator, model_validator

from mujo import storage
from mujo.adapters.cards import (
    NAME_PATTERN,
    CardError,
    LabelSpec,
    SplitSpec,
    _Strict,
    format_validation_error,
    raw_key,
    read_yaml,
)
from mujo.adapters.common import (
    G0,
    WINDOW_SECONDS,
    DatasetAdapter,
    IngestReport,
    basename,
    relpath,
    runs,
    unit_factor,
    wrist_acc,
)
from mujo.data.clips import RawClip
from mujo.names import UnsafeName, inside

DEFAULT_TRIM = 0.15
DEFAULT_MIN_SECONDS = math.ceil(WINDOW_SECONDS * 50 / (1 - 2 * DEFAULT_TRIM)) / 50
"""One window after preprocessing's default trim of 15 % at each end (2.86 s)."""

Wrist = Literal["left", "right"]


def _label_from_text(value: Any) -> Any:
    """A plain string label becomes ``{name: snake_case, text: the string, values: [the string]}``."""
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        text = str(value)
        name = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
        if not name or not name[0].isalpha():
            name = f"class_{name}" if name else "class"
        return {"name": name, "text": text, "values": [value]}
    return value


class ByodData(_Strict):
    """Where the recordings are and how labels/subjects are found in them."""

    format: Literal["csv", "parquet", "npy"]
    path: str = "."
    pattern: str | None = Field(None, description="regex on file names; named groups 'label' and 'subject'")
    label_column: str | None = None
    subject_column: str | None = None
    ignore_columns: list[str] = Field(default_factory=list)
    delimiter: str = ","
    x: str | None = Field(None, description="npy: (recordings, time, channels) array file")
    y: str | None = Field(None, description="npy: labels, (recordings,) or (recordings, time)")
    subjects: str | None = Field(None, description="npy: optional (recordings,) subject ids")
    allow_outside_source: bool = Field(False, description=(
        "let path/x/y/subjects be absolute or climb out of the source folder with '..' (off: a card can only read "
        "files inside the folder it describes)"))

    @model_validator(mode="after")
    def _needs(self) -> "ByodData":
        if self.format == "npy":
            if not self.x:
                raise ValueError("format npy needs 'x' (the (recordings, time, channels) .npy file)")
            if not self.y:
                raise ValueError("format npy needs 'y' (the labels .npy file)")
        else:
            has_group = self.pattern is not None and "(?P<label>" in self.pattern
            if not self.label_column and not has_group:
                raise ValueError(f"format {self.format} needs 'label_column' (a per-row label column) or a "
                                 "'pattern' with a (?P<label>...) group")
            if self.pattern is not None:
                try:
                    re.compile(self.pattern)
                except re.error as exc:
                    raise ValueError(f"pattern is not a valid regular expression: {exc}") from None
        return self


class OrientationSpec(_Strict):
    """Per-wrist orientation quaternions (world frame z up), used to put gravity back."""

    channels: dict[Wrist, list[str]]
    order: Literal["wxyz", "xyzw"] = "wxyz"
    maps: Literal["sensor_to_world", "world_to_sensor"] = "sensor_to_world"

    @field_validator("channels")
    @classmethod
    def _four(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        for wrist, names in v.items():
            if len(names) != 4:
                raise ValueError(f"{wrist}: a quaternion needs 4 channels, got {len(names)}")
        return v


class ByodCard(_Strict):
    """A bring-your-own-data card (see the module docstring)."""

    name: str = Field(pattern=NAME_PATTERN)
    title: str = ""
    source: str = ""
    licence: str = ""
    citation: str = ""
    description: str = ""
    sampling_rate_hz: float = Field(gt=0)
    units: str
    gravity: Literal["included", "removed"]
    rest_reading: Literal["up", "down"] = "up"
    channels: list[str] = Field(min_length=1)
    wrists: dict[Wrist, list[str]] = Field(min_length=1)
    gravity_channels: dict[Wrist, list[str]] | None = None
    orientation: OrientationSpec | None = None
    labels: list[LabelSpec] = Field(min_length=1)
    null_values: list[str | int] = Field(default_factory=list)
    data: ByodData
    split: SplitSpec | None = None
    split_default: Literal["train", "val", "test"] = "train"
    short_recordings: Literal["refuse", "pad", "error"] = "refuse"
    min_seconds: float = Field(DEFAULT_MIN_SECONDS, gt=0)
    path: str = Field("", exclude=True)

    @field_validator("labels", mode="before")
    @classmethod
    def _plain_labels(cls, v: Any) -> Any:
        return [_label_from_text(x) for x in v] if isinstance(v, list) else v

    @field_validator("units")
    @classmethod
    def _units(cls, v: str) -> str:
        unit_factor(v)  # raises CardError (a ValueError) for unknown units
        return v

    @field_validator("channels")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        dup = sorted({c for c in v if v.count(c) > 1})
        if dup:
            raise ValueError(f"channel names must be unique; repeated: {dup}")
        return v

    @field_validator("wrists", "gravity_channels")
    @classmethod
    def _three(cls, v: dict[str, list[str]] | None) -> dict[str, list[str]] | None:
        for wrist, names in (v or {}).items():
            if len(names) != 3:
                raise ValueError(f"{wrist}: needs 3 channel names (x, y, z), got {len(names)}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "ByodCard":
        def check(field_name: str, names: list[str]) -> None:
            missing = [n for n in names if n not in self.channels]
            if missing:
                raise _FieldError(field_name, f"channels {missing} are not in 'channels' {self.channels}")

        for wrist, names in self.wrists.items():
            check(f"wrists.{wrist}", names)
        for wrist, names in (self.gravity_channels or {}).items():
            if wrist not in self.wrists:
                raise _FieldError(f"gravity_channels.{wrist}", f"no '{wrist}' wrist in 'wrists'")
            check(f"gravity_channels.{wrist}", names)
        if self.orientation is not None:
            for wrist, names in self.orientation.channels.items():
                check(f"orientation.channels.{wrist}", names)
        if self.gravity == "removed":
            for wrist in self.wrists:
                has_g = wrist in (self.gravity_channels or {})
                has_q = self.orientation is not None and wrist in self.orientation.channels
                if not (has_g or has_q):
                    raise _FieldError(
                        "gravity_channels",
                        f"gravity: removed, but nothing tells the direction of gravity for the {wrist} wrist. "
                        "Give the API's gravity vector channels (gravity_channels) or orientation quaternions "
                        "(orientation); a constant vector would be wrong whenever the wrist turns, so the platform "
                        "will not guess")
        names = [label.name for label in self.labels]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise _FieldError("labels", f"label names must be unique; repeated: {dup}")
        return self

    # the interface write_raw uses ---------------------------------------------------------------------------------
    def label_names(self, include_null: bool = False) -> list[str]:
        return [label.name for label in self.labels]

    def summary(self) -> dict[str, Any]:
        out = self.model_dump(mode="json", exclude={"path"})
        out["adapter"] = "byod"
        out["sampling_rates_hz"] = {"acc": self.sampling_rate_hz}
        out["wrists"] = {w: (f"channels {self.wrists[w]}" if w in self.wrists else "zeros (no sensor)")
                         for w in ("left", "right")}
        return out


class _FieldError(ValueError):
    """A card consistency error for a specific field (turned into a CardError by :func:`load_byod_card`)."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field_name = field_name
        self.message = message


def load_byod_card(path: str | Path) -> ByodCard:
    """Read and validate a BYOD card; every problem is a :class:`CardError` naming the file and the field."""
    data = read_yaml(path)
    try:
        card = ByodCard.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            ctx_err = (err.get("ctx") or {}).get("error")
            if isinstance(ctx_err, _FieldError):
                raise CardError(str(path), ctx_err.field_name, ctx_err.message) from None
            if isinstance(ctx_err, CardError):
                raise CardError(str(path), ".".join(map(str, err["loc"])) or ctx_err.field, ctx_err.message
                                ) from None
        raise format_validation_error(str(path), exc) from None
    card.path = str(path)
    return card


# --------------------------------------------------------------------------------------------------------------------

def quaternion_matrices(q: np.ndarray, order: str) -> np.ndarray:
    """Unit quaternions ``(T, 4)`` -> rotation matrices ``(T, 3, 3)``."""
    q = np.asarray(q, np.float64)
    if order == "xyzw":
        q = q[:, [3, 0, 1, 2]]
    q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    w, x, y, z = q.T
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], axis=1)


def fill_nans(x: np.ndarray) -> tuple[np.ndarray, int]:
    """Linear interpolation over NaN samples per channel (edges held); returns the array and the NaN row count."""
    bad_rows = int((~np.isfinite(x)).any(axis=1).sum())
    if bad_rows == 0:
        return x, 0
    out = x.copy()
    idx = np.arange(len(x))
    for c in range(x.shape[1]):
        ok = np.isfinite(x[:, c])
        if not ok.any():
            raise ValueError(f"channel {c} has no finite sample")
        out[:, c] = np.interp(idx, idx[ok], x[ok, c])
    return out, bad_rows


class ByodAdapter(DatasetAdapter):
    """Bring-your-own-data adapter: everything comes from the card (no options)."""

    name = "byod"
    OPTIONS: dict[str, Any] = {}

    def __init__(self, card: str | Path | ByodCard) -> None:  # noqa: D107
        self.card = card if isinstance(card, ByodCard) else load_byod_card(card)
        self.card_dir = str(Path(self.card.path).resolve().parent) if self.card.path else os.getcwd()
        self.report = IngestReport()

    def resolve_options(self, options: dict[str, Any] | None = None) -> dict[str, Any]:
        """BYOD takes no options: everything is in the card."""
        if options:
            raise ValueError(f"byod: unknown option(s) {sorted(options)}; a BYOD dataset takes no options, put "
                             f"settings in its card ({self.card.path or 'the card'})")
        return {}

    def labels(self, **options: Any) -> list[str]:
        self.resolve_options(options)
        return self.card.label_names()

    # ------------------------------------------------------------------------------------------------------------

    def read(self, source_dir: str | None = None, **options: Any) -> Iterator[RawClip]:
        """Clips from the recordings the card describes; ``source_dir`` defaults to the card's folder."""
        self.resolve_options(options)
        self.report.clear()
        root = source_dir or self.card_dir
        card = self.card
        self._lookup = {key: spec for spec in card.labels for key in spec.raw_keys()}
        self._null = {raw_key(v) for v in card.null_values}
        self._seq: dict[str, int] = {}
        if card.data.format == "npy":
            yield from self._read_npy(root)
        else:
            yield from self._read_tables(root)

    def _inside(self, root: str, relative: str, field_name: str) -> str:
        """A card path under the source folder (:func:`mujo.names.inside`); CardError naming the field if not."""
        try:
            return inside(root, relative, field_name, allow_outside=self.card.data.allow_outside_source)
        except UnsafeName as exc:
            raise CardError(self.card.path, field_name, str(exc)) from None

    # NumPy -------------------------------------------------------------------------------------------------------

    def _read_npy(self, root: str) -> Iterator[RawClip]:
        card, data = self.card, self.card.data
        x_uri = self._inside(root, data.x, "data.x")
        y_uri = self._inside(root, data.y, "data.y")
        for uri, fld in ((x_uri, "data.x"), (y_uri, "data.y")):
            if not storage.exists(uri):
                raise CardError(card.path, fld, f"{storage.describe(uri)} does not exist")
        x = _load_npy(x_uri, field_name="data.x")
        if x.ndim != 3:
            raise CardError(card.path, "data.x", f"{basename(x_uri)} must be (recordings, time, channels), got shape "
                                                 f"{x.shape}")
        if x.shape[2] != len(card.channels):
            raise CardError(card.path, "channels", f"{basename(x_uri)} has {x.shape[2]} channels on its last axis but "
                                                   f"the card lists {len(card.channels)}: {card.channels}")
        y = _load_npy(y_uri, field_name="data.y")
        if len(y) != len(x) or y.ndim not in (1, 2) or (y.ndim == 2 and y.shape[1] != x.shape[1]):
            raise CardError(card.path, "data.y", f"{basename(y_uri)} has shape {y.shape}; expected ({len(x)},) or "
                                                 f"({len(x)}, {x.shape[1]}) for {basename(x_uri)} {x.shape}")
        subjects = None
        if data.subjects:
            s_uri = self._inside(root, data.subjects, "data.subjects")
            if not storage.exists(s_uri):
                raise CardError(card.path, "data.subjects", f"{storage.describe(s_uri)} does not exist")
            subjects = _load_npy(s_uri, field_name="data.subjects")
            if len(subjects) != len(x):
                raise CardError(card.path, "data.subjects", f"{basename(s_uri)} has {len(subjects)} entries for "
                                                            f"{len(x)} recordings")
        else:
            self.report.note("no subject ids (data.subjects): every recording is its own subject")
        for r in range(len(x)):
            rec = x[r].astype(np.float64)
            finite_rows = np.isfinite(rec).any(axis=1)
            n = int(np.nonzero(finite_rows)[0].max()) + 1 if finite_rows.any() else 0  # trailing NaN = padding
            labels = y[r] if y.ndim == 1 else y[r][:n]
            subject = raw_key(subjects[r].item()) if subjects is not None else f"r{r:04d}"
            yield from self._recording(rec[:n], labels, subject, f"{basename(x_uri)}[{r}]", f"r{r:04d}")

    # CSV / Parquet -----------------------------------------------------------------------------------------------

    def _read_tables(self, root: str) -> Iterator[RawClip]:
        card, data = self.card, self.card.data
        folder = self._inside(root, data.path, "data.path") if data.path not in ("", ".") else root
        suffix = ".csv" if data.format == "csv" else ".parquet"
        files = storage.list_files(folder, suffix)
        rx = re.compile(data.pattern) if data.pattern else None
        if rx is not None:
            files = [f for f in files if rx.fullmatch(basename(f))]
        if not files:
            raise CardError(card.path, "data.path", f"no {suffix} files under {storage.describe(folder)}"
                                                    + (f" matching pattern {data.pattern!r}" if rx else ""))
        used = set(card.channels) | {c for c in (data.label_column, data.subject_column) if c}
        for uri in files:
            name = relpath(uri, folder)
            table = _read_table(uri, data.format, data.delimiter)
            cols = table.column_names
            missing = [c for c in card.channels if c not in cols]
            if missing:
                raise CardError(uri, "channels", f"columns {missing} not found in the file (it has {cols})")
            for fld, col in (("data.label_column", data.label_column), ("data.subject_column", data.subject_column)):
                if col and col not in cols:
                    raise CardError(uri, fld, f"column {col!r} not found in the file (it has {cols})")
            extra = [c for c in cols if c not in used and c not in data.ignore_columns and c != ""]
            if extra:
                raise CardError(uri, "channels", f"the file has {len(cols)} columns; {extra} are neither channels, "
                                                 "label/subject columns nor data.ignore_columns: the card contradicts "
                                                 "the data")
            try:
                rec = np.stack([np.asarray(table[c].to_numpy(zero_copy_only=False), dtype=np.float64)
                                for c in card.channels], axis=1)
            except (TypeError, ValueError):
                bad = [c for c in card.channels if not pa_is_numeric(table[c].type)]
                raise CardError(uri, "channels", f"channel columns {bad} are not numeric") from None
            groups = rx.fullmatch(basename(uri)).groupdict() if rx else {}
            if data.label_column:
                labels: Any = np.asarray(table[data.label_column].to_pylist(), dtype=object)
            else:
                labels = groups["label"]
            if data.subject_column:
                subj = [raw_key(s) for s in table[data.subject_column].to_pylist()]
                if len(set(subj)) > 1:
                    raise CardError(uri, "data.subject_column", f"one recording file must hold one subject; found "
                                                                f"{sorted(set(subj))[:5]}")
                subject = subj[0] if subj else "unknown"
            elif groups.get("subject"):
                subject = groups["subject"]
            else:
                subject = Path(basename(uri)).stem
            yield from self._recording(rec, labels, subject, name, Path(basename(uri)).stem)

    # one recording -----------------------------------------------------------------------------------------------

    def _recording(self, rec: np.ndarray, labels: Any, subject: str, item: str, rec_id: str) -> Iterator[RawClip]:
        card = self.card
        if len(rec) == 0:
            self._short(item, 0.0)
            return
        try:
            rec, nan_rows = fill_nans(rec)
        except ValueError as exc:
            self.report.skip(item, f"no usable samples: {exc}")
            return
        if nan_rows:
            self.report.note(f"{item}: {nan_rows} rows with NaN interpolated")
        acc = self._acc(rec)
        if isinstance(labels, np.ndarray) and labels.ndim == 1 and len(labels) == len(rec):
            keys = np.asarray([raw_key(v) for v in labels], dtype=object)
            segs = runs(keys)
        else:
            segs = [(0, len(rec), raw_key(labels.item() if isinstance(labels, np.ndarray) else labels))]
        split = card.split.split_of(subject) if card.split else None
        if split is None:
            if card.split is not None:
                self.report.note(f"subject {subject} is not in the card's split: put in '{card.split_default}'")
            split = card.split_default
        hz = card.sampling_rate_hz
        for a, b, key in segs:
            seg_item = item if len(segs) == 1 else f"{item} rows {a}-{b - 1}"
            if key in self._null:
                self.report.counts["null_samples_excluded"] += b - a
                continue
            spec = self._lookup.get(key)
            if spec is None:
                raise CardError(item, "labels", f"label value {key!r} is neither one of the card's labels (names or "
                                                f"values) nor in null_values")
            block = acc[a:b]
            if len(block) / hz + 1e-9 < card.min_seconds:
                block = self._short(seg_item, len(block) / hz, block)
                if block is None:
                    continue
            k = self._seq.get(rec_id, 0)
            self._seq[rec_id] = k + 1
            yield RawClip(
                clip_id=f"{card.name}-{rec_id}-{k:03d}", subject=f"{card.name}-{subject}", dataset=card.name,
                split=split, label_text=spec.label_text, activity=spec.name, acc=block.astype(np.float32),
                acc_hz=float(hz), extra={"recording": item, "rows": (a, b)},
            )

    def _acc(self, rec: np.ndarray) -> np.ndarray:
        """The card's channels -> the platform's (T, 6) m/s^2, gravity included, specific-force sign."""
        card = self.card
        idx = {c: i for i, c in enumerate(card.channels)}
        factor = unit_factor(card.units, card.path, "units")
        sign = 1.0 if card.rest_reading == "up" else -1.0
        blocks: dict[str, np.ndarray | None] = {"left": None, "right": None}
        for wrist, names in card.wrists.items():
            lin = rec[:, [idx[c] for c in names]] * factor
            if card.gravity == "included":
                total = lin * sign
            elif card.gravity_channels and wrist in card.gravity_channels:
                grav = rec[:, [idx[c] for c in card.gravity_channels[wrist]]] * factor
                total = (lin + grav) * sign
            else:  # orientation quaternions (validated by the card)
                spec = card.orientation
                assert spec is not None
                rot = quaternion_matrices(rec[:, [idx[c] for c in spec.channels[wrist]]], spec.order)
                if spec.maps == "world_to_sensor":
                    rot = np.transpose(rot, (0, 2, 1))
                up_in_sensor = np.einsum("tji,j->ti", rot, np.array([0.0, 0.0, G0]))  # R^T (0, 0, g)
                total = lin * sign + up_in_sensor
            blocks[wrist] = total
        return wrist_acc(blocks["left"], blocks["right"])

    def _short(self, item: str, seconds: float, block: np.ndarray | None = None) -> np.ndarray | None:
        card = self.card
        msg = (f"{seconds:.2f} s is shorter than min_seconds={card.min_seconds:.2f} s (one {WINDOW_SECONDS:.0f}-s "
               f"window after preprocessing's trim)")
        if card.short_recordings == "error":
            raise CardError(item, "short_recordings", f"{msg}; set short_recordings to 'pad' or 'refuse' in "
                                                      f"{card.path or 'the card'}, or lower min_seconds")
        if card.short_recordings == "pad" and block is not None and len(block) > 0:
            n = int(math.ceil(card.min_seconds * card.sampling_rate_hz - 1e-9))
            padded = np.concatenate([block, np.repeat(block[-1:], n - len(block), axis=0)])
            self.report.counts["padded"] += 1
            self.report.note(f"{item}: {msg}; padded to {n} samples by repeating the last sample")
            return padded
        self.report.skip(item, f"refused: {msg} (short_recordings={card.short_recordings})")
        return None


def _load_npy(uri: str, field_name: str) -> np.ndarray:
    """A ``.npy`` array; object (pickled) arrays are refused: save strings as a fixed-width string array."""
    try:
        return np.load(io.BytesIO(storage.read_bytes(uri)), allow_pickle=False)
    except ValueError as exc:
        raise CardError(uri, field_name, f"cannot read as a plain .npy array ({exc}); save labels/subjects as "
                                         "numbers or fixed-width strings (np.array(list_of_str)), not objects") from None


def pa_is_numeric(dtype: Any) -> bool:
    import pyarrow.types as pat

    return bool(pat.is_integer(dtype) or pat.is_floating(dtype) or pat.is_null(dtype))


def _read_table(uri: str, fmt: str, delimiter: str):
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    raw = storage.read_bytes(uri)
    if fmt == "csv":
        return pacsv.read_csv(io.BytesIO(raw), parse_options=pacsv.ParseOptions(delimiter=delimiter))
    return pq.read_table(io.BytesIO(raw))
