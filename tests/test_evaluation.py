"""Calibration plumbing of the downstream evaluation (no Ray): fit on real vs virtual, save, reload, apply."""

from __future__ import annotations

import numpy as np

from mujo.evaluate.calibration import apply_calibration, fit_calibration, load_calibration, save_calibration
from mujo.evaluate.metrics import ks_statistic


def data(rng, n, gain, bias, classes=2):
    y = rng.integers(0, classes, n)
    acc = rng.normal(size=(n, 100, 6)).astype(np.float32) + 4.0 * y[:, None, None]  # class-dependent level
    acc = acc * gain + bias
    pose = rng.normal(size=(n, 100, 17, 3)).astype(np.float32) * 0.2 * gain
    return {"acc": acc.astype(np.float32), "pose": pose.astype(np.float32)}, y


def test_unsupervised_and_supervised_calibration_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    reference = data(rng, 300, 1.0, 0.0)
    real = {"train": data(rng, 200, 1.7, 3.0), "test": data(rng, 100, 1.7, 3.0)}
    before = ks_statistic(real["test"][0]["acc"][..., 0].ravel(), reference[0]["acc"][..., 0].ravel())
    for mode in ("unsupervised", "supervised"):
        cals = fit_calibration(mode, real, reference, ["acc", "pose"])
        assert set(cals) == {"acc", "pose"}
        out = apply_calibration(cals, real)
        if mode == "unsupervised":  # pooled distributions match (supervised matches per class, checked below)
            after = ks_statistic(out["test"][0]["acc"][..., 0].ravel(), reference[0]["acc"][..., 0].ravel())
            assert after < before / 10, (before, after)
        assert out["test"][0]["pose"].shape == real["test"][0]["pose"].shape
        save_calibration(cals, str(tmp_path / mode))
        again = apply_calibration(load_calibration(str(tmp_path / mode), ["acc", "pose"]), real)
        np.testing.assert_array_equal(again["test"][0]["acc"], out["test"][0]["acc"])
    # per class, only the supervised mapping puts each class onto its own reference distribution
    for c in (0, 1):
        ref_c = reference[0]["acc"][reference[1] == c][..., 0].ravel()
        sup = apply_calibration(fit_calibration("supervised", real, reference, ["acc"]), real)
        x = sup["test"][0]["acc"][real["test"][1] == c][..., 0].ravel()
        assert ks_statistic(x, ref_c) < 0.1
