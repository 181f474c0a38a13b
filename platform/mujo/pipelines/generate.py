"""Generate the synthetic corpus with Ray tasks: one task per part file of raw clips, written to local or S3.

Re-running is safe: part files that exist are kept (each is written atomically, so an existing one is complete).
At FiMAD's size (about 10k clips, 78 h) this fans out over every CPU of the cluster.
"""

from __future__ import annotations

import logging
import os
import time

from mujo import storage
from mujo.config import DatasetSpec, GenerateConfig
from mujo.data.clips import ClipTask, clips_to_table, make_clip, plan_clips, resolve_activities
from mujo.run import RunLayout

log = logging.getLogger(__name__)


def raw_dir(run_dir: str, dataset: str) -> str:
    """A dataset's raw clip folder in a run (:meth:`mujo.run.RunLayout.raw`)."""
    return RunLayout(run_dir).raw(dataset)


def _generate_part(tasks: list[ClipTask], uri: str) -> dict:
    clips = [make_clip(t) for t in tasks]
    storage.write_table(clips_to_table(clips), uri)
    return {"path": uri, "clips": len(clips), "seconds": float(sum(t.seconds for t in tasks))}


def generate_dataset(spec: DatasetSpec, cfg: GenerateConfig, run_dir: str) -> dict:
    """Write one synthetic dataset's raw clips and its card (``dataset.json``); returns the card."""
    import ray

    out = raw_dir(run_dir, spec.name)
    tasks = plan_clips(spec, cfg.seed)
    parts = [tasks[i:i + cfg.clips_per_task] for i in range(0, len(tasks), cfg.clips_per_task)]
    existing = {os.path.basename(p) for p in storage.list_files(out, ".parquet")}
    remote = ray.remote(num_cpus=1, max_retries=2)(_generate_part)
    t0 = time.time()
    refs, skipped = [], 0
    for i, part in enumerate(parts):
        name = f"part-{i:05d}.parquet"
        uri = storage.join(out, name)
        if name in existing:
            skipped += 1
            continue
        refs.append(remote.remote(part, uri))
    done = ray.get(refs)
    card = {
        "name": spec.name,
        "source": "synthetic (mujo.data.synth)",
        "labels": list(resolve_activities(spec.activities)),
        "splits": {s: n for s, n in spec.subjects.items()},
        "clips": len(tasks),
        "hours": sum(t.seconds for t in tasks) / 3600,
        "spec": spec.model_dump(mode="json"),
        "seed": cfg.seed,
    }
    storage.write_json(storage.join(out, "dataset.json"), card)
    log.info("generated %s: %d clips in %d parts (%d already there) in %.1f s", spec.name, len(tasks), len(parts),
             skipped, time.time() - t0)
    return {**card, "written_parts": len(done), "skipped_parts": skipped}


def generate(cfg: GenerateConfig, run_dir: str) -> dict[str, dict]:
    return {spec.name: generate_dataset(spec, cfg, run_dir) for spec in cfg.datasets}
