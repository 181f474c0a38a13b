"""Tests for mujo.evaluate.calibration: PIT calibration (unsupervised / supervised), degenerate data, persistence."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest

from mujo.evaluate.calibration import PITCalibrator, make_calibrator
from mujo.evaluate.metrics import ks_statistic


def _channel_ks(a: np.ndarray, b: np.ndarray) -> float:
    """Largest per-channel KS statistic between (N, T, C) arrays."""
    return max(ks_statistic(a[..., c], b[..., c]) for c in range(a.shape[-1]))


def test_unsupervised_maps_shifted_scaled_signal_back() -> None:
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(200, 100, 6))
    real = 3.0 * rng.normal(size=(150, 100, 6)) + 5.0  # different draws, shifted and scaled
    before = _channel_ks(real, reference)
    calibrated = make_calibrator("unsupervised").fit(real, reference).transform(real)
    after = _channel_ks(calibrated, reference)
    assert before > 0.5
    assert after * 10 <= before
    # fresh real data from the same distribution is mapped just as well
    fresh = 3.0 * rng.normal(size=(100, 100, 6)) + 5.0
    calibrator = make_calibrator("unsupervised").fit(real, reference)
    assert _channel_ks(calibrator.transform(fresh), reference) * 10 <= before


def test_channels_are_independent_and_shape_dtype_preserved() -> None:
    rng = np.random.default_rng(1)
    reference = rng.normal(size=(40, 100, 17, 3)).astype(np.float32)
    scale = np.linspace(0.5, 4.0, 51).reshape(17, 3)
    real = (rng.normal(size=(30, 100, 17, 3)) * scale - scale).astype(np.float32)
    out = PITCalibrator().fit(real, reference).transform(real)
    assert out.shape == real.shape and out.dtype == np.float32
    flat_out, flat_ref = out.reshape(30, 100, 51), reference.reshape(40, 100, 51)
    assert _channel_ks(flat_out, flat_ref) < 0.05
    # the map is monotone per channel: sample order within a channel is kept
    order_in = np.argsort(real[..., 4, 2].ravel(), kind="stable")
    assert np.all(np.diff(out[..., 4, 2].ravel()[order_in]) >= 0)


def test_supervised_maps_each_class_onto_its_own_reference() -> None:
    rng = np.random.default_rng(2)
    n = 120
    ref_labels = np.repeat([0, 1], n)
    real_labels = np.repeat([0, 1], n)
    reference = rng.normal(size=(2 * n, 50, 3)) + np.where(ref_labels == 0, 0.0, 4.0)[:, None, None]
    # real classes are shifted in opposite directions, so the pooled mapping mixes them up
    real = 2.0 * rng.normal(size=(2 * n, 50, 3)) + np.where(real_labels == 0, 10.0, -10.0)[:, None, None]

    supervised = make_calibrator("supervised").fit(real, reference, real_labels, ref_labels)
    unsupervised = make_calibrator("unsupervised").fit(real, reference)
    sup_out = supervised.transform(real, labels=real_labels)
    unsup_out = unsupervised.transform(real)
    for cls in (0, 1):
        before = _channel_ks(real[real_labels == cls], reference[ref_labels == cls])
        sup_after = _channel_ks(sup_out[real_labels == cls], reference[ref_labels == cls])
        unsup_after = _channel_ks(unsup_out[real_labels == cls], reference[ref_labels == cls])
        assert sup_after * 10 <= before
        assert unsup_after > 5 * sup_after


def test_supervised_falls_back_to_pooled_mapping_for_unmatched_classes() -> None:
    rng = np.random.default_rng(3)
    real = rng.normal(size=(60, 20, 2)) * 2 + 1
    reference = rng.normal(size=(60, 20, 2))
    real_labels = np.repeat([0, 1, 2], 20)  # class 2 has no reference samples
    ref_labels = np.repeat([0, 1, 3], 20)  # class 3 has no real samples
    supervised = PITCalibrator("supervised").fit(real, reference, real_labels, ref_labels)
    assert supervised.classes.tolist() == [0, 1]
    pooled = PITCalibrator("unsupervised").fit(real, reference).transform(real)
    labels_at_inference = np.repeat([0, 2, 7], 20)  # 2: missing at fit time, 7: never seen
    out = supervised.transform(real, labels=labels_at_inference)
    np.testing.assert_array_equal(out[20:], pooled[20:])
    assert not np.array_equal(out[:20], pooled[:20])


def test_supervised_requires_labels() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(10, 5, 2))
    y = np.repeat([0, 1], 5)
    with pytest.raises(ValueError, match="real_labels"):
        PITCalibrator("supervised").fit(x, x)
    calibrator = PITCalibrator("supervised").fit(x, x, y, y)
    with pytest.raises(ValueError, match="needs labels"):
        calibrator.transform(x)
    with pytest.raises(ValueError, match="shape"):
        calibrator.transform(x, labels=y[:3])


def test_nan_and_shape_errors() -> None:
    x = np.zeros((4, 10, 3))
    bad = x.copy()
    bad[1, 2, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        PITCalibrator().fit(bad, x)
    calibrator = PITCalibrator().fit(x + np.arange(40).reshape(4, 10, 1), x)
    with pytest.raises(ValueError, match="NaN"):
        calibrator.transform(bad)
    with pytest.raises(ValueError, match="channel dims"):
        calibrator.transform(np.zeros((4, 10, 2)))
    with pytest.raises(ValueError, match="channel dims"):
        PITCalibrator().fit(x, np.zeros((4, 10, 2)))
    with pytest.raises(RuntimeError, match="before fit"):
        PITCalibrator().transform(x)
    with pytest.raises(ValueError, match="mode"):
        PITCalibrator("bogus")  # type: ignore[arg-type]


def test_constant_channels_do_not_divide_by_zero() -> None:
    rng = np.random.default_rng(5)
    real = rng.normal(size=(20, 10, 3))
    reference = rng.normal(size=(20, 10, 3))
    real[..., 0] = 2.5  # constant real channel
    reference[..., 1] = -1.0  # constant reference channel
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise"):
            calibrator = PITCalibrator().fit(real, reference)
            out = calibrator.transform(real)
    assert np.isfinite(out).all()
    assert np.allclose(out[..., 0], np.median(reference[..., 0]), atol=0.05)
    assert np.all(out[..., 1] == -1.0)


def test_none_mode_is_identity() -> None:
    x = np.random.default_rng(6).normal(size=(3, 4, 5)).astype(np.float32)
    identity = make_calibrator("none")
    assert identity.is_fitted
    out = identity.fit(x, 2 * x).transform(x)
    np.testing.assert_array_equal(out, x)
    assert out is not x
    np.testing.assert_array_equal(PITCalibrator.from_dict(identity.to_dict()).transform(x), x)


@pytest.mark.parametrize("mode", ["unsupervised", "supervised", "none"])
def test_save_load_round_trip(tmp_path: Path, mode: str) -> None:
    rng = np.random.default_rng(7)
    real = rng.normal(size=(30, 20, 17, 3)) * 2 + 1
    reference = rng.normal(size=(40, 20, 17, 3))
    real_y, ref_y = rng.integers(0, 3, size=30), rng.integers(0, 3, size=40)
    calibrator = PITCalibrator(mode, n_quantiles=257).fit(real, reference, real_y, ref_y)  # type: ignore[arg-type]
    test_x = rng.normal(size=(8, 20, 17, 3)) * 2 + 1
    test_y = rng.integers(0, 4, size=8)
    expected = calibrator.transform(test_x, labels=test_y)

    path = tmp_path / "calibration.acc"  # no .npz suffix: saved at exactly this path
    calibrator.save(path)
    assert path.exists()
    loaded = PITCalibrator.load(path)
    assert loaded.mode == mode and loaded.n_quantiles == 257
    np.testing.assert_array_equal(loaded.transform(test_x, labels=test_y), expected)

    buffer = io.BytesIO()
    calibrator.save(buffer)
    buffer.seek(0)
    np.testing.assert_array_equal(PITCalibrator.load(buffer).transform(test_x, labels=test_y), expected)
    np.testing.assert_array_equal(
        PITCalibrator.from_dict(calibrator.to_dict()).transform(test_x, labels=test_y), expected
    )


def test_unfitted_calibrator_cannot_be_saved(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="unfitted"):
        PITCalibrator().save(tmp_path / "c.npz")


def test_pit_module_equals_the_numpy_transform():
    """The calibration as a torch module (device export) maps exactly as transform does: ties, a constant channel,
    values outside the fitted range on both sides."""
    import torch

    from mujo.evaluate.calibration import PITModule

    rng = np.random.default_rng(0)
    real = rng.normal(2, 3, (60, 50, 6)).astype(np.float32)
    real[:, :, 3] = np.round(real[:, :, 3])  # ties
    real[:, :, 5] = 1.0  # constant
    reference = rng.gamma(2.0, 1.0, (80, 50, 6)).astype(np.float32)
    cal = PITCalibrator("unsupervised").fit(real, reference)
    x = rng.normal(2, 6, (20, 50, 6)).astype(np.float32)
    got = PITModule(cal)(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(got, cal.transform(x).astype(np.float32))
    with pytest.raises(ValueError, match="supervised"):
        PITModule(PITCalibrator("supervised").fit(real, reference, np.zeros(60, np.int64), np.zeros(80, np.int64)))
