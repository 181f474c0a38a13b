"""Probability-integral-transform (PIT) calibration of real sensor data onto the reference distribution.

The encoders are pretrained on virtual data (the *reference* distribution); real recordings differ in distribution
(sensor placement, gains, offsets). Calibration maps every channel of real data through its own empirical CDF and
then through the reference's inverse CDF::

    x  ->  F_ref^{-1}( F_real(x) )

Both CDFs are empirical, represented by ``n_quantiles`` knots at evenly spaced probability levels (linear
interpolation between knots). Because both use the same levels, the composition is the piecewise-linear map through
the knot pairs ``(real_knot[i], ref_knot[i])``, which is what :meth:`PITCalibrator.transform` evaluates. Values
outside the fitted real range are clamped to the reference's minimum / maximum (as scikit-learn's
``QuantileTransformer`` does).

Data layout: arrays shaped ``(N, T, *channel_dims)``, e.g. acc ``(N, 100, 6)`` or pose ``(N, 100, 17, 3)``. Every
entry of the trailing ``channel_dims`` is its own channel (6 for acc, 51 for pose); samples and time are pooled.
Real and reference data may differ in N and T but must share ``channel_dims``.

Modes:

* ``"none"``: identity (no fitting needed); lets callers treat "no calibration" uniformly.
* ``"unsupervised"``: one mapping per channel from all real and all reference data.
* ``"supervised"``: one mapping per channel *and class*, fitted on the samples of that class on both sides; needs
  the labels of the data it transforms (the paper's supervised calibration, an upper bound that uses true labels).

Degenerate data are handled without division: a constant real channel maps its value to the reference median (the
mid-point of the jump in its CDF); a constant reference channel maps everything to that constant. NaN or infinite
inputs raise ``ValueError``. Zero-filled windows of a missing modality should be removed before fitting.

A fitted calibrator serialises to a dict of numpy arrays (:meth:`PITCalibrator.to_dict`) and to an ``.npz`` file
(:meth:`PITCalibrator.save` / :meth:`PITCalibrator.load`, no pickle), so a run applies exactly the same mapping at
inference.

In the evaluation (:func:`fit_calibration`, :func:`apply_calibration`) each channel of the real dataset is mapped
onto the same channel of the pretraining corpus' train split: ``unsupervised`` with all data, ``supervised`` per
class (the real data's labels are used at fit *and* at transform time, including on the test split, as in the
paper; classes absent from the pretraining corpus fall back to the pooled mapping). Pose is calibrated in the
model's own representation, after subtracting each window's mean pelvis position. Fitted calibrations are saved
with the run (``<run>/calibration/<dataset>/<mode>/<modality>.npz``) and the very same objects transform every
split.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from typing import Any, BinaryIO, Literal, cast

import numpy as np
from numpy.typing import ArrayLike, NDArray

import torch

from mujo import storage
from mujo.models.mujo import center_pose

__all__ = [
    "CALIBRATED_MODALITIES", "apply_calibration", "fit_calibration", "load_calibration", "save_calibration",
    "CALIBRATION_MODES",
    "CalibrationMode",
    "DEFAULT_N_QUANTILES",
    "PITCalibrator",
    "PITModule",
    "make_calibrator",
]

CalibrationMode = Literal["none", "unsupervised", "supervised"]
CALIBRATION_MODES: tuple[str, ...] = ("none", "unsupervised", "supervised")
DEFAULT_N_QUANTILES = 1001
FORMAT_VERSION = 1


def _as_samples(x: ArrayLike, name: str) -> NDArray[np.floating]:
    """Return ``x`` as a floating array with shape ``(N, T, *channel_dims)``; reject non-finite values."""
    arr = np.asarray(x)
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    if arr.ndim < 2:
        raise ValueError(f"{name} must have shape (N, T, *channel_dims), got {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {arr.shape}")
    if np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN values; remove or impute them before calibration")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains infinite values")
    return arr


def _as_labels(labels: ArrayLike | None, n: int, name: str) -> NDArray[np.int64]:
    """Return per-sample labels as int64 of length ``n``; raise ``ValueError`` if missing or mis-sized."""
    if labels is None:
        raise ValueError(f"supervised calibration needs {name} (one class label per sample)")
    arr = np.asarray(labels)
    if arr.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integer class labels, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def _knots(samples: NDArray[np.floating], levels: NDArray[np.float64]) -> NDArray[np.float64]:
    """Quantile knots per channel: ``samples`` (N, T, *ch) -> array (C, len(levels)), C = prod(ch)."""
    flat = samples.reshape(samples.shape[0] * samples.shape[1], -1)
    return np.quantile(flat, levels, axis=0).T.astype(np.float64)


def _map_channels(
    values: NDArray[np.floating], real_knots: NDArray[np.float64], ref_knots: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Apply the per-channel piecewise-linear PIT map to ``values`` (M, C); knots are (C, Q)."""
    out = np.empty(values.shape, dtype=np.float64)
    for c in range(values.shape[1]):
        # Tied real knots (discrete or constant data) become one knot mapped to the mean of their reference knots.
        xs, inverse = np.unique(real_knots[c], return_inverse=True)
        ys = np.bincount(inverse, weights=ref_knots[c]) / np.bincount(inverse)
        out[:, c] = np.interp(values[:, c], xs, ys)
    return out


class PITCalibrator:
    """Channel-wise probability-integral-transform calibration (see the module docstring).

    Args:
        mode: ``"none"`` (identity), ``"unsupervised"`` or ``"supervised"``.
        n_quantiles: number of quantile knots (evenly spaced probability levels from 0 to 1), at least 2.

    Attributes (set by :meth:`fit`):
        channel_shape: the trailing ``channel_dims`` of the fitted data.
        real_knots, ref_knots: pooled knots, shape (C, n_quantiles).
        classes: classes with their own mapping (supervised only), shape (K,).
        class_real_knots, class_ref_knots: per-class knots, shape (K, C, n_quantiles).
    """

    def __init__(self, mode: CalibrationMode = "unsupervised", n_quantiles: int = DEFAULT_N_QUANTILES) -> None:
        if mode not in CALIBRATION_MODES:
            raise ValueError(f"unknown calibration mode {mode!r}; expected one of {CALIBRATION_MODES}")
        if int(n_quantiles) < 2:
            raise ValueError(f"n_quantiles must be >= 2, got {n_quantiles}")
        self.mode: str = mode
        self.n_quantiles = int(n_quantiles)
        self.channel_shape: tuple[int, ...] | None = None
        self.real_knots: NDArray[np.float64] | None = None
        self.ref_knots: NDArray[np.float64] | None = None
        self.classes: NDArray[np.int64] = np.zeros(0, dtype=np.int64)
        self.class_real_knots: NDArray[np.float64] = np.zeros((0, 0, self.n_quantiles))
        self.class_ref_knots: NDArray[np.float64] = np.zeros((0, 0, self.n_quantiles))

    @property
    def is_fitted(self) -> bool:
        """Whether :meth:`transform` can be applied (always true for mode ``"none"``)."""
        return self.mode == "none" or self.real_knots is not None

    def fit(
        self,
        real: ArrayLike,
        reference: ArrayLike,
        real_labels: ArrayLike | None = None,
        reference_labels: ArrayLike | None = None,
    ) -> PITCalibrator:
        """Fit the mapping from ``real`` onto ``reference``; returns ``self``.

        Args:
            real: real data, shape (N, T, *channel_dims).
            reference: reference (virtual training) data, shape (N', T', *channel_dims).
            real_labels: class per real sample, shape (N,); required in supervised mode, ignored otherwise.
            reference_labels: class per reference sample, shape (N',); required in supervised mode.

        In supervised mode, a class gets its own mapping only if it occurs in *both* label arrays. Samples of any
        other class (missing on either side at fit time, or unseen at transform time) fall back to the pooled,
        unsupervised mapping, which is always fitted as well. Mode ``"none"`` fits nothing.
        """
        if self.mode == "none":
            return self
        real_arr = _as_samples(real, "real")
        ref_arr = _as_samples(reference, "reference")
        if real_arr.shape[2:] != ref_arr.shape[2:]:
            raise ValueError(
                f"real and reference channel dims differ: {real_arr.shape[2:]} vs {ref_arr.shape[2:]}"
            )
        levels = np.linspace(0.0, 1.0, self.n_quantiles)
        self.channel_shape = tuple(int(d) for d in real_arr.shape[2:])
        self.real_knots = _knots(real_arr, levels)
        self.ref_knots = _knots(ref_arr, levels)
        if self.mode == "supervised":
            y_real = _as_labels(real_labels, real_arr.shape[0], "real_labels")
            y_ref = _as_labels(reference_labels, ref_arr.shape[0], "reference_labels")
            self.classes = np.intersect1d(y_real, y_ref)
            shape = (self.classes.size, *self.real_knots.shape)
            self.class_real_knots = np.zeros(shape)
            self.class_ref_knots = np.zeros(shape)
            for i, c in enumerate(self.classes):
                self.class_real_knots[i] = _knots(real_arr[y_real == c], levels)
                self.class_ref_knots[i] = _knots(ref_arr[y_ref == c], levels)
        return self

    def transform(self, x: ArrayLike, labels: ArrayLike | None = None) -> NDArray[np.floating]:
        """Map ``x`` (N, T, *channel_dims) onto the reference distribution; the result has the shape of ``x``.

        Args:
            x: data to calibrate; its trailing dims must equal the fitted ``channel_shape``.
            labels: class per sample, shape (N,); required in supervised mode (``ValueError`` otherwise), ignored
                in the other modes.

        Returns:
            A new array, with the dtype of ``x`` if that is floating, else float64. Mode ``"none"`` returns a copy.
        """
        if self.mode == "none":
            return np.array(x, copy=True)
        if self.real_knots is None or self.ref_knots is None or self.channel_shape is None:
            raise RuntimeError("PITCalibrator.transform called before fit")
        arr = _as_samples(x, "x")
        if arr.shape[2:] != self.channel_shape:
            raise ValueError(f"x has channel dims {arr.shape[2:]}, the calibrator was fitted on {self.channel_shape}")
        n_channels = self.real_knots.shape[0]
        values = arr.reshape(arr.shape[0], arr.shape[1], n_channels)
        if self.mode == "unsupervised":
            mapped = _map_channels(values.reshape(-1, n_channels), self.real_knots, self.ref_knots)
            return mapped.reshape(arr.shape).astype(arr.dtype, copy=False)
        y = _as_labels(labels, arr.shape[0], "labels")
        out = np.empty(values.shape, dtype=arr.dtype)
        for label in np.unique(y):
            rows = y == label
            match = np.flatnonzero(self.classes == label)
            if match.size:
                real_k, ref_k = self.class_real_knots[match[0]], self.class_ref_knots[match[0]]
            else:
                real_k, ref_k = self.real_knots, self.ref_knots
            out[rows] = _map_channels(values[rows].reshape(-1, n_channels), real_k, ref_k).reshape(
                values[rows].shape
            )
        return out.reshape(arr.shape)

    def to_dict(self) -> dict[str, NDArray[Any]]:
        """The calibrator's full state as numpy arrays (strings and scalars as 0-d arrays); see :meth:`from_dict`."""
        state: dict[str, NDArray[Any]] = {
            "format_version": np.array(FORMAT_VERSION),
            "mode": np.array(self.mode),
            "n_quantiles": np.array(self.n_quantiles),
        }
        if self.mode == "none":
            return state
        if self.real_knots is None or self.ref_knots is None or self.channel_shape is None:
            raise RuntimeError("cannot serialise an unfitted PITCalibrator")
        state.update(
            channel_shape=np.array(self.channel_shape, dtype=np.int64),
            real_knots=self.real_knots,
            ref_knots=self.ref_knots,
        )
        if self.mode == "supervised":
            state.update(
                classes=self.classes, class_real_knots=self.class_real_knots, class_ref_knots=self.class_ref_knots
            )
        return state

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> PITCalibrator:
        """Rebuild a calibrator from :meth:`to_dict` output (or the arrays of a saved ``.npz``)."""
        version = int(np.asarray(state["format_version"]))
        if version != FORMAT_VERSION:
            raise ValueError(f"unsupported calibration format version {version}; expected {FORMAT_VERSION}")
        mode = cast(CalibrationMode, str(np.asarray(state["mode"])))
        calibrator = cls(mode=mode, n_quantiles=int(np.asarray(state["n_quantiles"])))
        if calibrator.mode == "none":
            return calibrator
        calibrator.channel_shape = tuple(int(d) for d in np.asarray(state["channel_shape"]).ravel())
        calibrator.real_knots = np.asarray(state["real_knots"], dtype=np.float64)
        calibrator.ref_knots = np.asarray(state["ref_knots"], dtype=np.float64)
        if calibrator.mode == "supervised":
            calibrator.classes = np.asarray(state["classes"], dtype=np.int64)
            calibrator.class_real_knots = np.asarray(state["class_real_knots"], dtype=np.float64)
            calibrator.class_ref_knots = np.asarray(state["class_ref_knots"], dtype=np.float64)
        return calibrator

    def save(self, path: str | os.PathLike[str] | BinaryIO) -> None:
        """Write the calibrator to an ``.npz`` file at ``path`` (the exact path; no suffix is added) or stream."""
        if isinstance(path, (str, os.PathLike)):
            with open(path, "wb") as fh:
                np.savez(fh, **self.to_dict())
        else:
            np.savez(path, **self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike[str] | BinaryIO) -> PITCalibrator:
        """Read a calibrator written by :meth:`save` (no pickle involved)."""
        with np.load(path, allow_pickle=False) as data:
            return cls.from_dict({key: data[key] for key in data.files})


class PITModule(torch.nn.Module):
    """A fitted unsupervised calibrator as a torch module, for graphs that must carry it (device export): the same
    per-channel piecewise-linear map as :meth:`PITCalibrator.transform`, in float64 like ``np.interp``, built from
    comparisons, a gather and a multiply-add only, so that TorchScript and ONNX (no ``searchsorted`` needed) express
    it. Input (B, T, *channel_shape) float32; output the same shape, float32.

    The knots of each channel are de-duplicated as in :func:`_map_channels` and padded to a common count by
    repeating the last knot (a zero-width segment of slope 0: it never changes the value). Memory is
    ``B * T * C * knots`` booleans for the comparison: run it on small batches (a device runs one window).
    """

    def __init__(self, calibrator: PITCalibrator) -> None:
        super().__init__()
        if calibrator.mode != "unsupervised" or calibrator.real_knots is None or calibrator.ref_knots is None:
            raise ValueError(f"only a fitted unsupervised calibrator becomes a module (mode {calibrator.mode!r}): "
                             "supervised calibration needs each window's true label")
        xs_list, ys_list = [], []
        for c in range(calibrator.real_knots.shape[0]):
            xs, inverse = np.unique(calibrator.real_knots[c], return_inverse=True)
            xs_list.append(xs)
            ys_list.append(np.bincount(inverse, weights=calibrator.ref_knots[c]) / np.bincount(inverse))
        k = max(2, max(len(x) for x in xs_list))
        xs = np.stack([np.pad(x, (0, k - len(x)), mode="edge") if len(x) > 1 else np.full(k, x[0]) for x in xs_list])
        ys = np.stack([np.pad(y, (0, k - len(y)), mode="edge") if len(y) > 1 else np.full(k, y[0]) for y in ys_list])
        width = np.diff(xs, axis=1)
        slope = np.divide(np.diff(ys, axis=1), width, out=np.zeros_like(width), where=width > 0)
        self.channel_shape = tuple(calibrator.channel_shape or ())
        self.channels, self.knots = xs.shape
        self.register_buffer("xs", torch.from_numpy(xs))  # (C, K) float64
        self.register_buffer("ys", torch.from_numpy(ys))
        self.register_buffer("slope", torch.from_numpy(np.concatenate([slope, np.zeros((self.channels, 1))], 1)))
        self.register_buffer("offset", torch.arange(self.channels, dtype=torch.int64) * self.knots)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        v = x.reshape(shape[0], shape[1], self.channels).to(torch.float64)
        lo, hi = self.xs[:, 0], self.xs[:, -1]
        v = torch.minimum(torch.maximum(v, lo), hi)  # np.interp clamps to the end values
        # segment index j: the number of interior knots at or below the value (0 .. K-2)
        j = (v.unsqueeze(-1) >= self.xs[:, 1:-1]).sum(-1)
        flat = (j + self.offset).reshape(-1)
        x0 = self.xs.reshape(-1).index_select(0, flat).reshape(v.shape)
        y0 = self.ys.reshape(-1).index_select(0, flat).reshape(v.shape)
        s = self.slope.reshape(-1).index_select(0, flat).reshape(v.shape)
        return (s * (v - x0) + y0).to(torch.float32).reshape(shape)


def make_calibrator(mode: CalibrationMode, n_quantiles: int = DEFAULT_N_QUANTILES) -> PITCalibrator:
    """An unfitted calibrator for ``mode`` (``"none"`` gives the identity, usable without :meth:`fit`)."""
    return PITCalibrator(mode=mode, n_quantiles=n_quantiles)


# --------------------------------------------------------------------------------------------------------------
# Calibration of a downstream dataset's arrays onto the pretraining corpus (the evaluation's use of the PIT)
# --------------------------------------------------------------------------------------------------------------

CALIBRATED_MODALITIES = ("acc", "pose")
Arrays = dict[str, np.ndarray]
SplitArrays = dict[str, tuple[Arrays, np.ndarray]]


def _calibration_view(modality: str, x: np.ndarray) -> np.ndarray:
    if modality == "pose":
        return center_pose(torch.from_numpy(np.require(x, requirements="W"))).numpy()
    return x


def fit_calibration(mode: str, real: SplitArrays, reference: tuple[Arrays, np.ndarray],
                    modalities: Sequence[str]) -> dict[str, PITCalibrator]:
    """One fitted calibrator per modality: real = all splits of the downstream dataset, reference = pretraining
    train windows (their labels mapped onto the downstream class ids; -1 where the class is not downstream)."""
    ref_arrays, ref_labels = reference
    fitted = {}
    for m in modalities:
        if m not in CALIBRATED_MODALITIES:
            continue
        x = np.concatenate([_calibration_view(m, arrays[m]) for arrays, _ in real.values()])
        y = np.concatenate([labels for _, labels in real.values()])
        cal = PITCalibrator(mode)
        if mode == "supervised":
            cal.fit(x, _calibration_view(m, ref_arrays[m]), real_labels=y, reference_labels=ref_labels)
        else:
            cal.fit(x, _calibration_view(m, ref_arrays[m]))
        fitted[m] = cal
    return fitted


def apply_calibration(calibrators: Mapping[str, PITCalibrator], data: SplitArrays) -> SplitArrays:
    out: SplitArrays = {}
    for split, (arrays, labels) in data.items():
        new = dict(arrays)
        for m, cal in calibrators.items():
            if m in arrays:
                new[m] = cal.transform(_calibration_view(m, arrays[m]), labels=labels).astype(np.float32)
        out[split] = (new, labels)
    return out


def save_calibration(calibrators: Mapping[str, PITCalibrator], uri: str) -> None:
    for m, cal in calibrators.items():
        buf = io.BytesIO()
        cal.save(buf)
        storage.write_bytes(storage.join(uri, f"{m}.npz"), buf.getvalue())


def load_calibration(uri: str, modalities: Sequence[str]) -> dict[str, PITCalibrator]:
    return {m: PITCalibrator.load(io.BytesIO(storage.read_bytes(storage.join(uri, f"{m}.npz"))))
            for m in modalities if m in CALIBRATED_MODALITIES}
