"""Aggregate fan-out results into the paper's table and figure shapes: mean ± std Macro F1 (Markdown, CSV), box
plots across label fractions per input modality, baseline vs frozen vs fine-tuned (PNG), and the per-class view.

What differs is kept apart: with several calibrations each has its own table rows and its own row of plot panels
(pooling them would mix three different inputs in one box). Each cell counts the trials that ran to
``max_epochs`` (stopped by the cap, not by early stopping: possibly undertrained) and the report warns when that is
more than :data:`AT_CAP_WARN` of a cell. The per-class view (``per_class_f1.md/.csv/.png``) is the per-class test F1
of the best setting (highest mean Macro F1 over the fractions) of each inputs × calibration, per fraction, mean over
seeds, from the trials' ``per_class_f1`` (computed from their test predictions)."""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from typing import Iterable, Sequence

import numpy as np

from mujo.run import TrialResult

SETTING_ORDER = ("baseline", "frozen", "finetuned")
AT_CAP_WARN = 0.10  # warn when more than this share of a cell's trials ran to max_epochs


def _fraction_label(f: float) -> str:
    return f"{f * 100:g}%"


def aggregate(rows: Iterable[TrialResult], max_epochs: int | None = None) -> list[dict]:
    """One row per (dataset, inputs, calibration, setting, fraction): mean, std and count of test Macro F1, the
    number of failed trials and, with ``max_epochs`` (the evaluation's cap), ``at_max_epochs``: how many of the
    cell's trials ran to the cap (``epoch >= max_epochs``) instead of stopping early."""
    cells: dict[tuple, dict] = defaultdict(lambda: {"scores": [], "failed": 0, "at_cap": 0})
    for r in rows:
        if r.status == "ok":
            cells[r.cell]["scores"].append(float(r.test_macro_f1))
            if max_epochs is not None and r.epoch is not None and r.epoch >= max_epochs:
                cells[r.cell]["at_cap"] += 1
        else:
            cells[r.cell]["failed"] += 1
    out = []
    for (dataset, inputs, calibration, setting, fraction), c in sorted(
            cells.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2], SETTING_ORDER.index(kv[0][3])
                                           if kv[0][3] in SETTING_ORDER else 9, kv[0][4])):
        s = np.asarray(c["scores"])
        out.append({"dataset": dataset, "inputs": inputs, "calibration": calibration, "setting": setting,
                    "fraction": fraction,
                    "mean": float(s.mean()) if len(s) else float("nan"),
                    "std": float(s.std(ddof=1)) if len(s) > 1 else 0.0, "n": int(len(s)), "failed": c["failed"],
                    **({"at_max_epochs": c["at_cap"], "max_epochs": max_epochs} if max_epochs is not None else {})})
    return out


def _at_cap_share(a: dict) -> float:
    return a.get("at_max_epochs", 0) / a["n"] if a["n"] else 0.0


def markdown_table(agg: list[dict]) -> str:
    """Rows (inputs, setting), columns label fractions, cells 'mean ± std' of test Macro F1; with several
    calibrations a calibration column, one row per (inputs, calibration, setting). A cell whose trials ran to
    ``max_epochs`` says how many (``[k/n at max]``); cells where that is more than :data:`AT_CAP_WARN` are listed
    in a warning under the table."""
    fractions = sorted({a["fraction"] for a in agg})
    lines = []
    for dataset in sorted({a["dataset"] for a in agg}):
        sub = [a for a in agg if a["dataset"] == dataset]
        n = sorted({a["n"] for a in sub})
        lines.append(f"Macro F1 on held-out test subjects of `{dataset}` (mean ± std over {'/'.join(map(str, n))} "
                     f"seeds)\n")
        calibrations = list(dict.fromkeys(a["calibration"] for a in sub))
        lines += _fraction_table(sub, fractions, calibrated=len(calibrations) > 1)
        lines.append("")
        capped = [a for a in sub if "max_epochs" in a]
        if capped:
            cap = capped[0]["max_epochs"]
            over = [a for a in capped if _at_cap_share(a) > AT_CAP_WARN]
            lines.append(f"`[k/n at max]`: k of the cell's n trials ran to max_epochs={cap} instead of stopping "
                         "early (no mark: none did).")
            if over:
                where = ", ".join(f"{a['inputs']}/{a['setting']}/{_fraction_label(a['fraction'])}"
                                  + (f"/{a['calibration']}" if len(calibrations) > 1 else "")
                                  + f" ({a['at_max_epochs']}/{a['n']})" for a in over)
                lines.append(f"\n**Warning:** in {len(over)} of {len(capped)} cells more than "
                             f"{AT_CAP_WARN:.0%} of the trials ran to max_epochs={cap}: those models may be "
                             f"undertrained and their comparison unfair (raise evaluate.max_epochs): {where}.")
            lines.append("")
    return "\n".join(lines)


def _fraction_table(sub: list[dict], fractions: list[float], calibrated: bool) -> list[str]:
    """With several calibrations each (inputs, calibration, setting) is its own row: never pooled."""
    head = "| inputs | calibration | setting | " if calibrated else "| inputs | setting | "
    lines = [head + " | ".join(_fraction_label(f) for f in fractions) + " |",
             "|---|---|" + ("---|" if calibrated else "") + "---|" * len(fractions)]
    keys = list(dict.fromkeys((a["inputs"], a["calibration"], a["setting"]) for a in sub))
    for inputs, calibration, setting in keys:
        cells = []
        for f in fractions:
            match = [a for a in sub if a["inputs"] == inputs and a["setting"] == setting and a["fraction"] == f
                     and a["calibration"] == calibration]
            if not match:
                cells.append("–")
                continue
            a = match[0]
            cell = f"{a['mean']:.3f} ± {a['std']:.3f}" if a["n"] else "failed"
            if a.get("at_max_epochs"):
                cell += f" [{a['at_max_epochs']}/{a['n']} at max]"
            if a["failed"]:
                cell += f" ({a['failed']} failed)"
            cells.append(cell)
        label = f"| {inputs} | {calibration} | {setting} | " if calibrated else f"| {inputs} | {setting} | "
        lines.append(label + " | ".join(cells) + " |")
    return lines


def zero_shot_table(rows: list[dict]) -> str:
    """The shape of the paper's Table 3: top-k Macro F1 per pretrained model, input modalities and calibration."""
    if not rows:
        return ""
    ks = sorted({int(k[3:-9]) for r in rows for k in r if k.startswith("top") and k.endswith("_macro_f1")})
    lines = ["Zero-shot Macro F1 on the test subjects (label texts embedded by the pretrained text branch; "
             "\"No Activity\" = mean of the other labels)\n",
             "| model | inputs | calibration | no activity | " + " | ".join(f"top-{k}" for k in ks) + " |",
             "|---|---|---|---|" + "---|" * len(ks)]
    for r in rows:
        cells = [f"{r[f'top{k}_macro_f1']:.3f}" if f"top{k}_macro_f1" in r else "–" for k in ks]
        lines.append(f"| {r['model']} | {r['inputs']} | {r['calibration']} | {r['no_activity']} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_csv(rows: list[dict]) -> str:
    if not rows:
        return ""
    buf = io.StringIO()
    fields = list(dict.fromkeys(k for r in rows for k in r))  # every column of every row, in first-seen order
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def trials_csv(rows: Iterable[TrialResult]) -> str:
    """``trials.csv``: one line per trial, the :class:`~mujo.run.TrialResult` columns (a list, such as
    ``per_class_f1``, as JSON)."""
    return to_csv([{k: json.dumps(v) if isinstance(v, list) else v for k, v in r.model_dump().items()}
                   for r in rows])


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    _pyplot().close(fig)
    return buf.getvalue()


def box_plot(rows: list[TrialResult]) -> bytes:
    """PNG: one panel per input modality set and calibration (a row of panels per calibration: never pooled);
    boxes of test Macro F1 per fraction, one colour per setting."""
    plt = _pyplot()
    ok = [r for r in rows if r.status == "ok"]
    inputs = sorted({r.inputs for r in ok})
    calibrations = list(dict.fromkeys(r.calibration for r in ok)) or ["none"]
    fractions = sorted({float(r.fraction) for r in ok})
    settings = [s for s in SETTING_ORDER if any(r.setting == s for r in ok)]
    ncol, nrow = max(len(inputs), 1), len(calibrations)
    fig, axes = plt.subplots(nrow, ncol, figsize=(5 * ncol, 4 * nrow), squeeze=False)
    colors = {"baseline": "#999999", "frozen": "#1f77b4", "finetuned": "#d62728"}
    width = 0.8 / max(len(settings), 1)
    for row_axes, cal in zip(axes, calibrations):
        for ax, inp in zip(row_axes, inputs):
            for j, s in enumerate(settings):
                data = [[r.test_macro_f1 for r in ok if r.inputs == inp and r.setting == s and r.calibration == cal
                         and float(r.fraction) == f] for f in fractions]
                pos = np.arange(len(fractions)) + (j - (len(settings) - 1) / 2) * width
                bp = ax.boxplot(data, positions=pos, widths=width * 0.9, patch_artist=True, manage_ticks=False)
                for patch in bp["boxes"]:
                    patch.set_facecolor(colors.get(s, "#2ca02c"))
                ax.plot([], [], color=colors.get(s, "#2ca02c"), lw=8, label=s)
            ax.set_xticks(np.arange(len(fractions)), [_fraction_label(f) for f in fractions])
            ax.set_title(inp if len(calibrations) == 1 else f"{inp} — calibration {cal}")
            ax.set_xlabel("labelled training data")
            ax.set_ylabel("Macro F1 (test)")
            ax.set_ylim(0, 1.02)
            ax.grid(axis="y", alpha=0.3)
            ax.legend(loc="lower right")
    fig.tight_layout()
    return _png(fig)


# ---- the per-class view -------------------------------------------------------------------------------------------

def best_settings(agg: list[dict]) -> dict[tuple[str, str, str], str]:
    """(dataset, inputs, calibration) -> the setting with the highest mean test Macro F1 over the fractions (cells
    with no successful trial count as 0; ties go to the earlier of baseline, frozen, finetuned)."""
    scores: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for a in agg:
        scores[(a["dataset"], a["inputs"], a["calibration"])][a["setting"]].append(a["mean"] if a["n"] else 0.0)
    order = {s: i for i, s in enumerate(SETTING_ORDER)}
    return {key: max(by.items(), key=lambda kv: (float(np.mean(kv[1])), -order.get(kv[0], 9)))[0]
            for key, by in scores.items()}


def per_class_rows(rows: Sequence[TrialResult], labels: Sequence[str], agg: list[dict] | None = None) -> list[dict]:
    """Per-class test F1 (mean, std and count over seeds, classes undefined in a trial skipped) of the best setting
    of each (dataset, inputs, calibration), per fraction; one row per class. Empty when no trial recorded
    ``per_class_f1``."""
    ok = [r for r in rows if r.status == "ok" and r.per_class_f1 is not None]
    if not ok:
        return []
    best = best_settings(agg if agg is not None else aggregate(rows))
    out = []
    for (dataset, inputs, calibration), setting in best.items():
        mine = [r for r in ok if (r.dataset, r.inputs, r.calibration, r.setting) == (dataset, inputs, calibration,
                                                                                    setting)]
        for f in sorted({float(r.fraction) for r in mine}):
            scores = np.asarray([r.per_class_f1 for r in mine if float(r.fraction) == f], dtype=np.float64)
            if scores.shape[1] != len(labels):
                raise ValueError(f"per_class_f1 of {dataset}/{inputs}/{setting} has {scores.shape[1]} classes, the "
                                 f"dataset {len(labels)} ({list(labels)})")
            for c, label in enumerate(labels):
                col = scores[:, c][~np.isnan(scores[:, c])]
                out.append({"dataset": dataset, "inputs": inputs, "calibration": calibration, "setting": setting,
                            "fraction": f, "class": label,
                            "mean": float(col.mean()) if len(col) else float("nan"),
                            "std": float(col.std(ddof=1)) if len(col) > 1 else 0.0, "n": int(len(col))})
    return out


def _per_class_groups(pc: list[dict]) -> dict[tuple, list[dict]]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for p in pc:
        groups[(p["dataset"], p["inputs"], p["calibration"], p["setting"])].append(p)
    return groups


def per_class_table(pc: list[dict]) -> str:
    """Markdown: per (inputs, calibration), the best setting's per-class F1 (rows classes, columns fractions)."""
    lines = []
    for (dataset, inputs, calibration, setting), sub in _per_class_groups(pc).items():
        fractions = sorted({p["fraction"] for p in sub})
        n = sorted({p["n"] for p in sub})
        lines.append(f"Per-class F1 on the test subjects of `{dataset}`: {inputs}, calibration {calibration}, best "
                     f"setting **{setting}** (mean ± std over {'/'.join(map(str, n))} seeds)\n")
        lines.append("| class | " + " | ".join(_fraction_label(f) for f in fractions) + " |")
        lines.append("|---|" + "---|" * len(fractions))
        for label in dict.fromkeys(p["class"] for p in sub):
            cells = []
            for f in fractions:
                p = next(p for p in sub if p["class"] == label and p["fraction"] == f)
                cells.append(f"{p['mean']:.3f} ± {p['std']:.3f}" if p["n"] else "–")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def per_class_plot(pc: list[dict]) -> bytes:
    """PNG: one heat map per (inputs, calibration): classes x fractions, the best setting's mean per-class F1."""
    plt = _pyplot()
    groups = _per_class_groups(pc)
    n_f, n_c = (max(len({p[k] for p in pc}), 1) for k in ("fraction", "class"))
    n_g = max(len(groups), 1)
    fig, axes = plt.subplots(1, n_g, squeeze=False, layout="constrained",
                             figsize=((2.0 + 0.8 * n_f) * n_g + 1.0, 1.5 + 0.35 * n_c))
    image = None
    for ax, ((_, inputs, calibration, setting), sub) in zip(axes[0], groups.items()):
        fractions = sorted({p["fraction"] for p in sub})
        classes = list(dict.fromkeys(p["class"] for p in sub))
        grid = np.array([[next(p["mean"] for p in sub if p["class"] == c and p["fraction"] == f) for f in fractions]
                         for c in classes])
        image = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto")
        for (i, j), v in np.ndenumerate(grid):
            if not np.isnan(v):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="w" if v < 0.6 else "k")
        ax.set_xticks(np.arange(len(fractions)), [_fraction_label(f) for f in fractions])
        ax.set_yticks(np.arange(len(classes)), classes, fontsize=8)
        ax.set_xlabel("labelled training data")
        ax.set_title(f"{inputs} ({setting}" + (f", {calibration})" if calibration != "none" else ")"), fontsize=9)
    if image is not None:
        fig.colorbar(image, ax=axes[0].tolist(), label="F1 (test)", shrink=0.8)
    return _png(fig)


def fanout_report(rows: Sequence[TrialResult], max_epochs: int | None = None,
                  labels: Sequence[str] | None = None) -> dict[str, str | bytes]:
    """Every file of the fan-out's results folder, by name: ``results.md`` (also what the job prints),
    ``summary.csv``, ``trials.csv``, ``macro_f1.png`` and, when the trials recorded per-class F1 and ``labels`` are
    given, ``per_class_f1.md``, ``per_class_f1.csv``, ``per_class_f1.png``."""
    cells = aggregate(rows, max_epochs=max_epochs)
    files: dict[str, str | bytes] = {"results.md": markdown_table(cells), "trials.csv": trials_csv(rows),
                                     "summary.csv": to_csv(cells), "macro_f1.png": box_plot(list(rows))}
    pc = per_class_rows(rows, labels, cells) if labels else []
    if pc:
        files.update({"per_class_f1.md": per_class_table(pc), "per_class_f1.csv": to_csv(pc),
                      "per_class_f1.png": per_class_plot(pc)})
    return files
