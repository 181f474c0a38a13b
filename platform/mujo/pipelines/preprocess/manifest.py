"""A dataset's progress records -> its :class:`~mujo.run.Manifest` (Ray-free), and reading it back.

The manifest is what every later stage reads of a preprocessed dataset: the sample format's version, the labels,
counts per split and class, the shards (sorted per split), per-channel statistics, the quarantine summary, the
card's clip count, and how this run got there (files processed, reused, quarantined). It is built from the records
alone, reused or new, so a resumed run's manifest equals an uninterrupted one's (but for ``seconds`` and
``progress``).

Statistics (the models' input normalisation) come from the train split only, so that nothing of validation or
test leaks into training: per channel, count, sum and sum of squares are summed in float64 over the train shards'
records in shard-name order (deterministic whatever order the files finished in), then mean and standard
deviation (pose after window centring, as the model centres it).

:mod:`mujo.run` (pydantic) is imported inside the functions: the file workers import this package.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

import numpy as np

from mujo import storage
from mujo.errors import InputError
from mujo.schema import SCHEMA_VERSION

if TYPE_CHECKING:
    from mujo.pipelines.preprocess.plan import Plan
    from mujo.pipelines.preprocess.quarantine import Tally
    from mujo.run import Manifest


class ManifestMissing(InputError):
    """A dataset has not been preprocessed in this run."""


def shards_dir(run_dir: str, dataset: str) -> str:
    """A dataset's shards folder in a run (:meth:`mujo.run.RunLayout.shards`)."""
    from mujo.run import RunLayout

    return RunLayout(run_dir).shards(dataset)


def channel_stats(records: list[dict]) -> dict[str, dict[str, list[float]]]:
    """Per-channel mean/std over the train split's shards, summed in shard order (deterministic)."""
    acc: dict[str, list] = {}
    for r in sorted((r for r in records if r["split"] == "train" and r["shard"]), key=lambda r: r["shard"]):
        for m, (n, total, sq) in r["sums"].items():
            if m not in acc:
                acc[m] = [0, np.zeros(len(total)), np.zeros(len(total))]
            acc[m][0] += n
            acc[m][1] += total
            acc[m][2] += sq
    stats = {}
    for m, (n, total, sq) in acc.items():
        if n == 0:
            continue
        mean = total / n
        std = np.sqrt(np.maximum(sq / n - mean ** 2, 0.0))
        stats[m] = {"mean": mean.tolist(), "std": std.tolist(), "count": int(n)}
    return stats


def build_manifest(dataset: str, plan: Plan, records: list[dict], quarantine: Tally, seconds: float,
                   processed: set[str]) -> Manifest:
    """The manifest of ``dataset`` from its progress ``records`` (reused and new, sorted by file and chunk), its
    quarantine tally and the raw files this run processed (URIs)."""
    from mujo.run import Manifest

    labels: list[str] = plan.cards[dataset]["labels"]
    shard_records = [r for r in records if r["shard"]]
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in shard_records:
        for c, n in r["classes"].items():
            counts[r["split"]][labels[int(c)]] += n
    out = plan.out_dirs[dataset]
    files = plan.files[dataset]
    return Manifest(
        schema_version=SCHEMA_VERSION,
        dataset=dataset,
        raw=plan.raws[dataset],
        labels=labels,
        video_dim=plan.formats[dataset].video_dim,
        text_dim=plan.formats[dataset].text_dim,
        shards={split: sorted(storage.join(out, r["shard"]) for r in shard_records if r["split"] == split)
                for split in sorted({r["split"] for r in shard_records})},
        counts={split: dict(sorted(c.items())) for split, c in sorted(counts.items())},
        rows={split: sum(c.values()) for split, c in sorted(counts.items())},
        stats=channel_stats(shard_records),
        quarantine=quarantine.summary(),
        clips=plan.cards[dataset].get("clips", quarantine.total),
        seconds=seconds,
        progress={"files": len(files), "processed": sum(f.uri in processed for f in files),
                  "reused": sum(f.key in plan.reused for f in files),
                  "quarantined_files": sum(bool(f.reason) for f in files)},
    )


def read_manifest(run_dir: str, dataset: str) -> Manifest:
    """The dataset's ``manifest.json``; :class:`ManifestMissing` (naming the file and the fix) when there is none."""
    from mujo.run import Manifest, RunLayout, read_contract

    uri = RunLayout(run_dir).manifest(dataset)
    if not storage.exists(uri):
        raise ManifestMissing(f"{storage.describe(uri)} does not exist: dataset '{dataset}' has not been "
                              "preprocessed in this run; run jobs/preprocess.py (or jobs/main.py) first, or check "
                              "run_name and storage.root")
    return read_contract(uri, Manifest)
