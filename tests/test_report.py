"""Report aggregation: each cell counts its seeds; failed trials are shown as failed, never dropped; trials that ran
to max_epochs are counted (warning above 10 %); calibrations are tabulated and plotted apart; the per-class view."""

import csv
import io
import json
import struct

import numpy as np

from mujo.evaluate.metrics import class_f1, macro_f1
from mujo.evaluate.report import aggregate, box_plot, fanout_report, markdown_table, to_csv, trials_csv
from mujo.run import TrialResult


def rows():
    out = []
    for setting in ("baseline", "frozen"):
        for seed in range(3):
            out.append({"dataset": "d", "inputs": "acc", "setting": setting, "fraction": 0.02, "seed": seed,
                        "calibration": "none", "status": "ok", "test_macro_f1": 0.5 + 0.1 * seed})
    out[-1] = {**out[-1], "status": "failed", "test_macro_f1": None, "error": "RuntimeError: boom"}
    return [TrialResult(**r) for r in out]


def test_cells_count_seeds_and_show_failures():
    agg = aggregate(rows())
    cells = {(a["setting"], a["n"], a["failed"]) for a in agg}
    assert cells == {("baseline", 3, 0), ("frozen", 2, 1)}
    frozen = [a for a in agg if a["setting"] == "frozen"][0]
    assert abs(frozen["mean"] - 0.55) < 1e-9
    table = markdown_table(agg)
    assert "| acc | baseline | 0.600 ± 0.100 |" in table
    assert "| acc | frozen | 0.550 ± 0.071 (1 failed) |" in table
    assert trials_csv(rows()).count("failed") == 1
    assert box_plot(rows())[:4] == b"\x89PNG"


def grid(calibrations=("none",), seeds=3, max_epochs=60, per_class=False):
    """Trials of two settings x two fractions per calibration; the frozen 2 % cell runs to the cap in 2 of 3 seeds,
    the baseline 100 % cell in 1 of 10 (exactly 10 %: no warning)."""
    out = []
    for k, cal in enumerate(calibrations):
        for setting in ("baseline", "frozen"):
            for fraction in (0.02, 1.0):
                n = 10 if (setting, fraction) == ("baseline", 1.0) else seeds
                for seed in range(n):
                    capped = ((setting, fraction) == ("frozen", 0.02) and seed < 2) or \
                             ((setting, fraction) == ("baseline", 1.0) and seed == 0)
                    score = 0.4 + 0.2 * k + (0.2 if setting == "frozen" else 0.0) + 0.1 * fraction + 0.01 * seed
                    out.append(TrialResult(
                        dataset="d", inputs="acc", setting=setting, fraction=fraction, seed=seed, calibration=cal,
                        status="ok", test_macro_f1=score, epoch=max_epochs if capped else 17, best_epoch=5,
                        per_class_f1=[score - 0.1, score + 0.1, float("nan") if seed == 0 else score]
                        if per_class else None))
    return out


def test_each_cell_counts_its_trials_at_max_epochs_and_the_report_warns_above_ten_percent():
    agg = aggregate(grid(), max_epochs=60)
    counts = {(a["setting"], a["fraction"]): (a["at_max_epochs"], a["n"]) for a in agg}
    assert counts == {("baseline", 0.02): (0, 3), ("baseline", 1.0): (1, 10), ("frozen", 0.02): (2, 3),
                      ("frozen", 1.0): (0, 3)}
    table = markdown_table(agg)
    assert "[2/3 at max]" in table and "[1/10 at max]" in table
    assert "**Warning:** in 1 of 4 cells more than 10% of the trials ran to max_epochs=60" in table
    assert "acc/frozen/2% (2/3)" in table and "acc/baseline/100%" not in table.split("**Warning:**")[1]
    assert "at_max_epochs" in to_csv(agg).splitlines()[0]
    # without the cap (old callers) nothing is counted or claimed
    assert "at max" not in markdown_table(aggregate(grid())) and "Warning" not in markdown_table(aggregate(grid()))


def _png_size(png: bytes) -> tuple[int, int]:
    return struct.unpack(">II", png[16:24])


def test_calibrations_are_tabulated_and_plotted_apart():
    rows = grid(calibrations=("none", "supervised"))
    table = markdown_table(aggregate(rows, max_epochs=60))
    assert "| acc | none | frozen | 0.612 ± 0.010 [2/3 at max] |" in table  # each calibration's own numbers
    assert "| acc | supervised | frozen | 0.812 ± 0.010 [2/3 at max] |" in table
    assert "acc/frozen/2%/supervised (2/3)" in table
    w1, h1 = _png_size(box_plot(grid()))
    w2, h2 = _png_size(box_plot(rows))
    assert w2 == w1 and h2 == 2 * h1  # one row of panels per calibration


def test_class_f1_is_the_per_class_view_of_macro_f1():
    y_true = np.array([0, 0, 1, 1, 2, 2])
    y_pred = np.array([0, 1, 1, 1, 2, 0])
    f1 = class_f1(y_true, y_pred, num_classes=4)
    np.testing.assert_allclose(f1[:3], [0.5, 0.8, 2 / 3])
    assert np.isnan(f1[3])  # in neither truth nor prediction: undefined, not 0
    assert abs(np.nanmean(f1) - macro_f1(y_true, y_pred)) < 1e-12


def test_per_class_view_of_the_best_setting_goes_to_the_results_folder():
    rows = grid(per_class=True)
    files = fanout_report(rows, max_epochs=60, labels=["squat", "lunge", "push-up"])
    assert set(files) == {"results.md", "trials.csv", "summary.csv", "macro_f1.png", "per_class_f1.md",
                          "per_class_f1.csv", "per_class_f1.png"}
    md = files["per_class_f1.md"]
    assert "best setting **frozen**" in md and "baseline" not in md
    assert "| lunge | 0.712 ± 0.010 | 0.810 ± 0.010 |" in md  # frozen 2 %: 0.602, 0.612, 0.622, + 0.1
    assert "| push-up | 0.617 ± 0.007 |" in md  # seed 0 recorded NaN (class absent): the mean of seeds 1 and 2
    assert files["per_class_f1.png"][:4] == b"\x89PNG"
    assert json.loads(next(csv.DictReader(io.StringIO(files["trials.csv"])))["per_class_f1"])[1] > 0
    # trials that recorded no per-class F1 (older engines): the other files only
    assert "per_class_f1.md" not in fanout_report(grid(), max_epochs=60, labels=["a", "b", "c"])
