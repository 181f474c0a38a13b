"""Aggregate fan-out results into the paper's table and figure shapes: mean ± std Macro F1 (Markdown, CSV) and box
plots across label fractions per input modality, baseline vs frozen vs fine-tuned (PNG)."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from typing import Iterable

import numpy as np

from mujo.run import TrialResult

SETTING_ORDER = ("baseline", "frozen", "finetuned")


def _fraction_label(f: float) -> str:
    return f"{f * 100:g}%"


def aggregate(rows: Iterable[TrialResult]) -> list[dict]:
    """One row per (dataset, inputs, calibration, setting, fraction): mean, std and count of test Macro F1, and the
    number of failed trials."""
    cells: dict[tuple, dict] = defaultdict(lambda: {"scores": [], "failed": 0})
    for r in rows:
        if r.status == "ok":
            cells[r.cell]["scores"].append(float(r.test_macro_f1))
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
                    "std": float(s.std(ddof=1)) if len(s) > 1 else 0.0, "n": int(len(s)), "failed": c["failed"]})
    return out


def markdown_table(agg: list[dict]) -> str:
    """Rows (inputs, setting), columns label fractions, cells 'mean ± std' of test Macro F1."""
    fractions = sorted({a["fraction"] for a in agg})
    lines = []
    for dataset in sorted({a["dataset"] for a in agg}):
        sub = [a for a in agg if a["dataset"] == dataset]
        n = sorted({a["n"] for a in sub})
        lines.append(f"Macro F1 on held-out test subjects of `{dataset}` (mean ± std over {'/'.join(map(str, n))} "
                     f"seeds)\n")
        calibrated = len({a["calibration"] for a in sub}) > 1
        head = "| inputs | calibration | setting | " if calibrated else "| inputs | setting | "
        lines.append(head + " | ".join(_fraction_label(f) for f in fractions) + " |")
        lines.append("|---|---|" + ("---|" if calibrated else "") + "---|" * len(fractions))
        keys = []
        for a in sub:
            if (a["inputs"], a["calibration"], a["setting"]) not in keys:
                keys.append((a["inputs"], a["calibration"], a["setting"]))
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
                if a["failed"]:
                    cell += f" ({a['failed']} failed)"
                cells.append(cell)
            label = f"| {inputs} | {calibration} | {setting} | " if calibrated else f"| {inputs} | {setting} | "
            lines.append(label + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


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
    """``trials.csv``: one line per trial, the :class:`~mujo.run.TrialResult` columns."""
    return to_csv([r.model_dump() for r in rows])


def box_plot(rows: list[TrialResult]) -> bytes:
    """PNG: one panel per input modality set; boxes of test Macro F1 per fraction, one colour per setting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r.status == "ok"]
    inputs = sorted({r.inputs for r in ok})
    fractions = sorted({float(r.fraction) for r in ok})
    settings = [s for s in SETTING_ORDER if any(r.setting == s for r in ok)]
    fig, axes = plt.subplots(1, max(len(inputs), 1), figsize=(5 * max(len(inputs), 1), 4), squeeze=False)
    colors = {"baseline": "#999999", "frozen": "#1f77b4", "finetuned": "#d62728"}
    width = 0.8 / max(len(settings), 1)
    for ax, inp in zip(axes[0], inputs):
        for j, s in enumerate(settings):
            data = [[r.test_macro_f1 for r in ok if r.inputs == inp and r.setting == s and float(r.fraction) == f]
                    for f in fractions]
            pos = np.arange(len(fractions)) + (j - (len(settings) - 1) / 2) * width
            bp = ax.boxplot(data, positions=pos, widths=width * 0.9, patch_artist=True, manage_ticks=False)
            for patch in bp["boxes"]:
                patch.set_facecolor(colors.get(s, "#2ca02c"))
            ax.plot([], [], color=colors.get(s, "#2ca02c"), lw=8, label=s)
        ax.set_xticks(np.arange(len(fractions)), [_fraction_label(f) for f in fractions])
        ax.set_title(inp)
        ax.set_xlabel("labelled training data")
        ax.set_ylabel("Macro F1 (test)")
        ax.set_ylim(0, 1.02)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()
