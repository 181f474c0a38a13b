"""Report aggregation: each cell counts its seeds; failed trials are shown as failed, never dropped."""

from mujo.evaluate.report import aggregate, box_plot, markdown_table, trials_csv
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
