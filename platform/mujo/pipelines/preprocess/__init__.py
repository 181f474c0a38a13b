"""Ray Data preprocessing: raw clips (local or S3) -> windowed sample shards + a manifest per dataset.

One module per concern; only :mod:`.execute` uses Ray:

- :mod:`.files`: the raw side, on the driver: listing each raw folder and its ``dataset.json``, each part file's
  footer, schema and label texts, repeated clip ids;
- :mod:`.plan`: what a run does: output folders, which files to process, which earlier progress to reuse, what is
  stale (resumption);
- :mod:`.window`: the file work: one raw file -> windows -> shards and progress records;
- :mod:`.quarantine`: the quarantine entries, the clips they hold, the share check;
- :mod:`.manifest`: records -> the :class:`~mujo.run.Manifest`, channel statistics; reading it back;
- :mod:`.execute`: the embedding actors and the pool of file workers (Ray Data), or the same work in this process.

:func:`preprocess` runs them in that order: the cheap checks first (before any actor starts, so bad input or bad
storage is one line at once), then the embedding actors (their model loads while the driver plans), the plan, the
file work, and the manifests. Each dataset's quarantined share is checked twice: before any work on the files
unusable on reading, then on everything; above ``max_quarantine_share`` the run fails with one message and writes
``quarantine.json`` instead of the manifest. Stale shards and records of earlier runs are deleted last, once every
manifest is written.

Paths of the run folder come from :class:`mujo.run.RunLayout`. Nothing in this package imports pydantic,
:mod:`mujo.run` or :mod:`mujo.config` at import time: every file worker and embedding actor imports it (the cost
is in ``benchmarks/README.md``).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from mujo import storage
from mujo.pipelines.preprocess.execute import (
    EmbedText,
    FileWorker,
    file_workers,
    run_local,
    run_ray,
    start_embedders,
    stop_embedders,
    take_all,
)
from mujo.pipelines.preprocess.files import (
    Inputs,
    RawFile,
    check_file,
    check_inputs,
    check_raw_schema,
    clip_ids,
    clip_ids_and_alternatives,
    file_key,
    list_parquet,
    mark_duplicates,
)
from mujo.pipelines.preprocess.manifest import (
    ManifestMissing,
    build_manifest,
    channel_stats,
    read_manifest,
    shards_dir,
)
from mujo.pipelines.preprocess.plan import Plan, Resume, clean_stale, make_plan, params_fingerprint, resume
from mujo.pipelines.preprocess.quarantine import QuarantineExceeded, Tally, check_share, entry, tally
from mujo.pipelines.preprocess.window import (
    PROGRESS,
    CachedEmbedder,
    attach_embeddings,
    process_file,
    progress_uri,
    shard_name,
    table_columns,
    window_file,
    write_file,
)

if TYPE_CHECKING:  # annotations only (see the module docstring)
    from mujo.config import PreprocessConfig
    from mujo.run import Manifest

log = logging.getLogger(__name__)


def preprocess(datasets: dict[str, int], run_dir: str, cfg: PreprocessConfig,
               raw_uris: dict[str, str] | None = None, executor: str = "ray") -> dict[str, Manifest]:
    """Run the pipeline once over several datasets' raw clips (``{name: video_dim}``); write and return each
    dataset's manifest. One pipeline, so the text model is loaded once (per embedding actor) for all of them.

    Raw files already processed with the same parameters (see :mod:`.plan`) are not processed again.
    ``executor="local"`` runs the same stages sequentially in this process, without Ray."""
    from mujo.run import write_contract

    if executor not in ("ray", "local"):
        raise ValueError(f"executor must be 'ray' or 'local', not {executor!r}")
    t0 = time.time()
    inputs = check_inputs(datasets, run_dir, raw_uris)  # before any actor starts: bad input is one line at once
    embedders = start_embedders(cfg) if executor == "ray" else []
    try:
        plan = make_plan(datasets, run_dir, cfg, inputs)
        log.info("preprocess: %d raw file(s) to process, %d already done, %d quarantined on reading",
                 len(plan.todo), len(plan.reused), sum(bool(f.reason) for fs in plan.files.values() for f in fs))
        new = [] if not plan.todo else (run_ray(plan, cfg, embedders) if executor == "ray" else run_local(plan, cfg))
    finally:
        stop_embedders(embedders)
    seconds = round(time.time() - t0, 1)
    records = [r for group in plan.reused.values() for r in group] + new
    processed = {r["file"] for r in new}
    manifests, failures = {}, []
    for d in datasets:
        mine = sorted((r for r in records if r["dataset"] == d), key=lambda r: (r["file"], r["chunk"]))
        quarantined = tally(d, plan.files[d], mine, plan.cards[d].get("clips"))
        failure = check_share(d, quarantined, cfg.max_quarantine_share)
        if failure:
            storage.write_json(plan.reports[d], quarantined.summary())
            failures.append(f"{failure}. Every entry: {plan.reports[d]}")
            continue
        manifest = build_manifest(d, plan, mine, quarantined, seconds, processed)
        write_contract(plan.manifests[d], manifest)
        log.info("preprocessed %s: %s windows, %d quarantine entries", d, manifest.rows, manifest.quarantine.count)
        dropped = sum(r.get("captions_dropped", 0) for r in mine)
        if dropped:  # issue 17: counted, never dropped silently (raise preprocess.caption_alternatives to keep them)
            log.warning("%s: %d caption(s) beyond preprocess.caption_alternatives=%d per clip not kept in the shards",
                        d, dropped, plan.formats[d].captions)
        manifests[d] = manifest
    if failures:  # an earlier manifest may still name the shards a clean-up would delete: keep them
        raise QuarantineExceeded("\n".join(failures))
    clean_stale(plan, records)
    return manifests


__all__ = [
    "PROGRESS", "CachedEmbedder", "EmbedText", "FileWorker", "Inputs", "ManifestMissing", "Plan",
    "QuarantineExceeded", "RawFile", "Resume", "Tally", "attach_embeddings", "build_manifest", "channel_stats",
    "check_file", "check_inputs", "check_raw_schema", "check_share", "clean_stale", "clip_ids",
    "clip_ids_and_alternatives", "entry", "file_key",
    "file_workers", "list_parquet", "make_plan", "mark_duplicates", "params_fingerprint", "preprocess",
    "process_file", "progress_uri", "read_manifest", "resume", "run_local", "run_ray", "shard_name", "shards_dir",
    "start_embedders", "stop_embedders", "table_columns", "take_all", "tally", "window_file", "write_file",
]
