"""Planning a run (Ray-free): which raw files to process, which earlier results to reuse, and what is stale.

Resumption: each raw file leaves progress records once its shards are written (:mod:`.window`). A file is not
processed again when its records all carry its current identity (:meth:`RawFile.identity <.files.RawFile>`: the
same file size and modification time, the same preprocessing parameters, the same rows quarantined as repeated clip
ids), form one complete set of chunks, and every shard they name exists; its records then stand in for the work.
Everything else an earlier run left (records of a file that changed or is gone, the shards those name, a
``quarantine.json``) is stale: deleted only after the new manifests are written (an earlier manifest may still name
those shards until then).

The parameters' fingerprint covers everything besides the raw file that decides its shards: the sample format's
version and dimensions (the caption columns' K among them), the dataset and its labels, trimming, shard size and
the text model. K is the dataset's: ``preprocess.caption_alternatives`` when any of its clips has two or more
distinct captions (raw format 1.2's ``texts``), else 0 (no caption columns, the 1.0 layout).

:func:`resume` is the decision alone, from given records, identities and existing files (unit-tested without
storage); :func:`make_plan` gathers its inputs from storage (listings, progress records, clip ids, footers) with a
thread pool, and fails before any work when the files unusable on reading alone exceed the quarantine share.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mujo import storage
from mujo.data.text import TEXT_MODEL
from mujo.pipelines.preprocess.files import (
    Inputs,
    RawFile,
    absolute,
    check_file,
    clip_ids_and_alternatives,
    file_key,
    mark_duplicates,
    storage_error,
)
from mujo.pipelines.preprocess.quarantine import check_share, tally
from mujo.pipelines.preprocess.window import PROGRESS, progress_uri
from mujo.schema import SCHEMA_VERSION, SampleFormat

if TYPE_CHECKING:  # annotations only: the file workers import this package, not pydantic
    from mujo.config import PreprocessConfig

log = logging.getLogger(__name__)
IO_THREADS = 16


def params_fingerprint(dataset: str, fmt: SampleFormat, labels: list[str], cfg: PreprocessConfig) -> str:
    """Fingerprint of everything besides the raw file that decides a file's shards."""
    doc = {"schema": SCHEMA_VERSION, "dataset": dataset, "video_dim": fmt.video_dim, "text_dim": fmt.text_dim,
           "labels": labels, "trim_fraction": cfg.trim_fraction, "shard_rows": cfg.shard_rows, "text": TEXT_MODEL,
           "captions": fmt.captions}
    return hashlib.sha1(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Plan:
    """What a run does, per dataset: where it reads and writes, its raw files, and which of them to process."""

    raws: dict[str, str]  # dataset -> raw folder
    cards: dict[str, dict]  # dataset -> dataset.json
    formats: dict[str, SampleFormat]
    label_maps: dict[str, dict[str, int]]
    out_dirs: dict[str, str]  # dataset -> shards folder (absolute locally)
    params: dict[str, str]  # dataset -> parameters' fingerprint
    manifests: dict[str, str] = field(default_factory=dict)  # dataset -> manifest.json
    reports: dict[str, str] = field(default_factory=dict)  # dataset -> quarantine.json (written when it fails)
    files: dict[str, list[RawFile]] = field(default_factory=dict)
    todo: list[RawFile] = field(default_factory=list)
    reused: dict[str, list[dict]] = field(default_factory=dict)  # file key -> its records
    stale: list[dict] = field(default_factory=list)  # records of earlier runs that no longer hold
    stale_records: list[str] = field(default_factory=list)  # their URIs (and of superseded records)


@dataclass
class Resume:
    """:func:`resume`'s decision for one dataset."""

    reused: dict[str, list[dict]] = field(default_factory=dict)  # file key -> its records, by chunk
    redo: list[RawFile] = field(default_factory=list)  # to check and process, in file order
    stale: list[dict] = field(default_factory=list)  # records whose shards are stale
    stale_records: list[str] = field(default_factory=list)  # record URIs to delete


def is_complete(records: list[dict], identity: dict, existing: set[str], out_dir: str) -> bool:
    """Do ``records`` (of one raw file) carry ``identity``, form one complete set of chunks, and name only shards
    that exist?"""
    if not records or any(r["identity"] != identity for r in records):
        return False
    chunks = {r["chunks"] for r in records}
    if len(chunks) != 1 or sorted(r["chunk"] for r in records) != list(range(chunks.pop())):
        return False
    return all(not r["shard"] or storage.join(out_dir, r["shard"]) in existing for r in records)


def resume(files: list[RawFile], groups: dict[str, list[tuple[str, dict]]], params: str, existing: set[str],
           out_dir: str) -> Resume:
    """Which of a dataset's raw ``files`` to redo and which earlier results to reuse, from the progress records
    found (``groups``: file key -> ``[(record URI, record)]``), the parameters' fingerprint and the files that
    exist in the shards folder ``out_dir``. A reused file's clip count (``rows``) is set from its records: its
    footer is not read again."""
    out = Resume()
    for f in files:
        identity = f.identity(params)
        records = [doc for _, doc in groups.get(f.key, [])]
        valid = [r for r in records if r["identity"] == identity]
        if is_complete(valid, identity, existing, out_dir):
            out.reused[f.key] = sorted(valid, key=lambda r: r["chunk"])
            f.rows = valid[0].get("rows")
            out.stale_records += [u for u, doc in groups[f.key] if doc not in valid]
        else:
            out.redo.append(f)
            out.stale += records
            out.stale_records += [u for u, _ in groups.get(f.key, [])]
    keys = {f.key for f in files}
    for key, group in groups.items():  # raw files that are gone
        if key not in keys:
            out.stale += [doc for _, doc in group]
            out.stale_records += [u for u, _ in group]
    return out


def read_records(out_dir: str, listing: list[str]) -> dict[str, list[tuple[str, dict]]]:
    """The progress records among ``listing`` (the shards folder's files), grouped by file key."""
    prefix = storage.join(out_dir, PROGRESS)
    uris = [u for u in listing if u.startswith(prefix) and u.endswith(".json")]
    with ThreadPoolExecutor(IO_THREADS) as pool:
        docs = list(pool.map(storage.read_json, uris))
    groups: dict[str, list[tuple[str, dict]]] = defaultdict(list)
    for uri, doc in zip(uris, docs):
        groups[uri[len(prefix):].strip("/").split("/")[0]].append((uri, doc))
    return groups


def make_plan(datasets: dict[str, int], run_dir: str, cfg: PreprocessConfig, inputs: Inputs) -> Plan:
    """The plan of a run over ``datasets`` (``{name: video_dim}``) whose inputs :func:`.files.check_inputs` found:
    output folders checked writable, raw files listed and their repeated clip ids marked, earlier progress reused
    where it holds, the files to process checked (footer, schema, label texts). :class:`QuarantineExceeded` when
    the files unusable on reading alone exceed the allowed share."""
    from mujo.run import RunLayout  # here, not at import time: the file workers import this package

    layout = RunLayout(run_dir)
    raws, listings, cards = inputs.raws, inputs.listings, inputs.cards
    out_dirs = {d: absolute(layout.shards(d)) for d in datasets}
    for d, out in out_dirs.items():
        try:
            storage.check_writable(out)
        except storage.StorageError as err:
            raise (storage_error(out, err.__cause__) if err.__cause__ else err) from err.__cause__
    # formats and fingerprints are set per dataset below, once its files say whether it has caption alternatives
    plan = Plan(raws, cards, {}, {d: {name: i for i, name in enumerate(card["labels"])} for d, card in
                                  cards.items()}, out_dirs, {},
                manifests={d: absolute(layout.manifest(d)) for d in datasets},
                reports={d: absolute(layout.quarantine_report(d)) for d in datasets})
    to_check: list[RawFile] = []
    for d in datasets:
        existing = set(storage.list_files(out_dirs[d]))
        groups = read_records(out_dirs[d], sorted(existing))
        files = [RawFile(uri, d, size, mtime, key=file_key(uri)) for uri, size, mtime in listings[d]]
        with ThreadPoolExecutor(IO_THREADS) as pool:
            read = list(pool.map(clip_ids_and_alternatives, files))
        repeats = mark_duplicates(files, [ids for ids, _ in read])
        k = cfg.caption_alternatives
        plan.formats[d] = SampleFormat(video_dim=datasets[d], captions=k if k >= 2 and any(a for _, a in read) else 0)
        plan.params[d] = params_fingerprint(d, plan.formats[d], list(cards[d]["labels"]), cfg)
        if repeats:
            log.warning("%s: %d repeated clip id(s) in the raw files are quarantined (see the manifest)", d, repeats)
        plan.files[d] = files
        decided = resume(files, groups, plan.params[d], existing, out_dirs[d])
        plan.reused.update(decided.reused)
        plan.stale += decided.stale
        plan.stale_records += decided.stale_records
        to_check += decided.redo
    with ThreadPoolExecutor(IO_THREADS) as pool:
        list(pool.map(check_file, to_check))
    plan.todo = [f for f in to_check if not f.reason]
    for d in datasets:  # fail before any work when the unreadable files alone are too many
        check_share(d, tally(d, plan.files[d], [], plan.cards[d].get("clips")), cfg.max_quarantine_share,
                    early=True)
    return plan


def stale_uris(plan: Plan, records: list[dict]) -> set[str]:
    """Shards and progress records of earlier runs that this run's ``records`` replaced."""
    keep = {storage.join(plan.out_dirs[r["dataset"]], r["shard"]) for r in records if r["shard"]}
    current = {progress_uri(plan.out_dirs[r["dataset"]], file_key(r["file"]), r["chunk"]) for r in records}
    doomed = {storage.join(plan.out_dirs[r["dataset"]], r["shard"]) for r in plan.stale
              if r.get("shard") and r.get("dataset") in plan.out_dirs} - keep
    return doomed | (set(plan.stale_records) - current)


def clean_stale(plan: Plan, records: list[dict]) -> None:
    """Delete what :func:`stale_uris` names and an earlier failed run's ``quarantine.json`` (best effort)."""
    doomed = stale_uris(plan, records) | {u for u in plan.reports.values() if storage.exists(u)}
    for uri in sorted(doomed):
        fs, path = storage.filesystem(uri)
        try:
            fs.delete_file(path)
        except OSError as exc:
            log.warning("could not delete stale %s: %s", uri, exc)
