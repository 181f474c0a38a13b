"""Preprocessing's Ray-free decisions, from hand-made records and identities (no Ray, no S3, no text model):
resume planning, repeated clip ids, quarantine accounting and the share check, the manifest built from records,
and the file workers' light imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mujo import storage
from mujo.config import PreprocessConfig
from mujo.errors import InputError
from mujo.pipelines.preprocess import (
    ManifestMissing,
    Plan,
    QuarantineExceeded,
    RawFile,
    build_manifest,
    check_inputs,
    check_share,
    entry,
    file_key,
    mark_duplicates,
    params_fingerprint,
    progress_uri,
    read_manifest,
    resume,
    tally,
)
from mujo.pipelines.preprocess.plan import stale_uris
from mujo.run import Manifest, RunLayout, write_contract
from mujo.schema import SCHEMA_VERSION, SampleFormat

ROOT = Path(__file__).resolve().parent.parent
OUT = "/runs/r/shards/d"
PARAMS = "p1"


def raw(name: str, size: int = 100, mtime: int = 7, rows: int | None = None, reason: str = "") -> RawFile:
    uri = f"/runs/r/raw/d/{name}.parquet"
    return RawFile(uri, "d", size, mtime, rows=rows, reason=reason, key=file_key(uri))


def record(f: RawFile, chunk: int, chunks: int, shard: str = "", split: str = "train", params: str = PARAMS,
           rows: int | None = 4, **extra) -> dict:
    return {"file": f.uri, "dataset": "d", "identity": f.identity(params), "rows": rows, "chunk": chunk,
            "chunks": chunks, "shard": shard, "split": split, "samples": 0, "quarantine": [], **extra}


def groups_of(*records: dict) -> dict[str, list[tuple[str, dict]]]:
    out: dict[str, list[tuple[str, dict]]] = {}
    for r in records:
        key = file_key(r["file"])
        out.setdefault(key, []).append((progress_uri(OUT, key, r["chunk"]) + f"#{len(out.get(key, []))}", r))
    return out


# --------------------------------------------------------------------------------------------------------------
# Resume planning
# --------------------------------------------------------------------------------------------------------------

def test_resume_reuses_complete_files_and_redoes_the_rest():
    done, changed, partial, lost, new = (raw(n) for n in ("done", "changed", "partial", "lost", "new"))
    records = [record(done, 1, 2, "val/shard-b.parquet", "val", rows=9), record(done, 0, 2, "train/shard-a.parquet"),
               record(changed, 0, 1, "train/shard-c.parquet"),
               record(partial, 0, 2, "train/shard-d.parquet"),  # chunk 1 of 2 never recorded: interrupted
               record(lost, 0, 1, "train/shard-e.parquet")]  # its shard is gone
    changed.mtime_ns = 8  # the raw file was rewritten after its records
    existing = {storage.join(OUT, s) for s in ("train/shard-a.parquet", "val/shard-b.parquet",
                                               "train/shard-c.parquet", "train/shard-d.parquet")}
    out = resume([done, changed, partial, lost, new], groups_of(*records), PARAMS, existing, OUT)
    assert list(out.reused) == [done.key] and [r["chunk"] for r in out.reused[done.key]] == [0, 1]
    assert done.rows == 9  # from its records: its footer is not read again
    assert out.redo == [changed, partial, lost, new]
    assert [r["shard"] for r in out.stale] == ["train/shard-c.parquet", "train/shard-d.parquet",
                                               "train/shard-e.parquet"]
    assert len(out.stale_records) == 3 and not any(done.key in u for u in out.stale_records)


def test_resume_redoes_everything_when_the_parameters_change():
    f = raw("a")
    out = resume([f], groups_of(record(f, 0, 1, "train/shard-a.parquet")), "p2",
                 {storage.join(OUT, "train/shard-a.parquet")}, OUT)
    assert out.redo == [f] and not out.reused and len(out.stale) == 1


def test_resume_keeps_a_file_whose_only_record_has_no_shard():
    f = raw("empty")  # every clip quarantined: one record, no shard
    out = resume([f], groups_of(record(f, 0, 1, "", "", rows=2)), PARAMS, set(), OUT)
    assert list(out.reused) == [f.key] and out.redo == [] and f.rows == 2


def test_resume_drops_superseded_records_and_files_that_are_gone():
    f, gone = raw("a"), raw("gone")
    old = record(f, 0, 1, "train/shard-old.parquet", params="p0")  # of earlier parameters, beside the current one
    records = [record(f, 0, 1, "train/shard-a.parquet"), old, record(gone, 0, 1, "train/shard-g.parquet")]
    groups = groups_of(*records)
    out = resume([f], groups, PARAMS, {storage.join(OUT, "train/shard-a.parquet")}, OUT)
    assert list(out.reused) == [f.key]
    assert out.stale_records == [groups[f.key][1][0], groups[gone.key][0][0]]
    assert out.stale == [records[2]]  # the superseded record's URI goes, its shard is not named stale


def test_duplicates_are_part_of_a_files_identity():
    a, b = raw("a"), raw("b")
    assert mark_duplicates([a, b], [["x", "y"], ["z"]]) == 0
    before = b.identity(PARAMS)
    assert "skip" not in before
    assert mark_duplicates([a, b], [["x", "y"], ["y", "z"]]) == 1  # b now repeats a's clip y
    assert b.identity(PARAMS) == {**before, "skip": [0]}
    out = resume([a, b], groups_of(record(b, 0, 1, "train/shard-b.parquet") | {"identity": before}), PARAMS,
                 {storage.join(OUT, "train/shard-b.parquet")}, OUT)
    assert b in out.redo  # which rows are duplicates changed: redo the file


def test_params_fingerprint_covers_what_decides_the_shards():
    fmt, cfg = SampleFormat(video_dim=8), PreprocessConfig()
    base = params_fingerprint("d", fmt, ["a", "b"], cfg)
    assert base == params_fingerprint("d", SampleFormat(video_dim=8), ["a", "b"], PreprocessConfig())
    others = [params_fingerprint("e", fmt, ["a", "b"], cfg), params_fingerprint("d", SampleFormat(video_dim=4),
                                                                               ["a", "b"], cfg),
              params_fingerprint("d", fmt, ["b", "a"], cfg),
              params_fingerprint("d", fmt, ["a", "b"], cfg.model_copy(update={"shard_rows": 7})),
              params_fingerprint("d", fmt, ["a", "b"], cfg.model_copy(update={"trim_fraction": 0.1}))]
    assert base not in others and len(set(others)) == len(others)
    assert base == params_fingerprint("d", fmt, ["a", "b"], cfg.model_copy(update={"text_actors": 3}))


# --------------------------------------------------------------------------------------------------------------
# Repeated clip ids
# --------------------------------------------------------------------------------------------------------------

def test_repeated_clip_ids_keep_the_first_in_file_then_row_order():
    a, b, c = raw("part-0"), raw("part-1"), raw("part-2")
    a.skip = {5: "left over"}
    assert mark_duplicates([a, b, c], [["x", "y", "x"], None, ["y", "z", "z"]]) == 3
    assert a.skip == {2: "duplicate clip_id 'x': first in part-0.parquet row 0; quarantined"}
    assert b.skip == {}  # unreadable ids: its own check quarantines the file
    assert c.skip == {0: "duplicate clip_id 'y': first in part-0.parquet row 1; quarantined",
                      2: "duplicate clip_id 'z': first in part-2.parquet row 1; quarantined"}


# --------------------------------------------------------------------------------------------------------------
# Quarantine accounting
# --------------------------------------------------------------------------------------------------------------

def test_tally_counts_clips_of_file_entries_and_clip_entries():
    good = raw("good", rows=10)
    badfile = raw("bad", rows=3, reason="missing required column(s): 'activity'")
    records = [record(good, 0, 1, "train/s.parquet", quarantine=[entry(good.uri, "d", "c2", "too short"),
                                                                  entry(good.uri, "d", "c1", "unknown label")])]
    t = tally("d", [good, badfile], records, card_clips=13)
    assert [(e["file"].rsplit("/", 1)[1], e["clip_id"]) for e in t.entries] == [
        ("bad.parquet", None), ("good.parquet", "c1"), ("good.parquet", "c2")]
    assert t.entries[0]["clips"] == 3 and "clips" not in t.entries[1]
    assert (t.clips, t.total) == (5, 13) and t.share == 5 / 13
    assert t.summary() == {"count": 3, "files": 1, "clips": 5, "share": round(5 / 13, 4), "entries": t.entries}


def test_tally_counts_unreadable_files_as_what_the_card_says_is_beyond_the_readable_ones():
    ok, trunc1, trunc2 = raw("ok", rows=6), raw("t1", reason="unreadable"), raw("t2", reason="unreadable")
    assert tally("d", [ok, trunc1, trunc2], [], card_clips=10)[1:] == (4, 10)  # 10 - 6 readable
    assert tally("d", [ok, trunc1, trunc2], [], card_clips=7)[1:] == (2, 8)  # at least one clip each
    assert tally("d", [ok, trunc1], [], card_clips=None)[1:] == (1, 7)  # no count in the card


def test_tally_fills_the_clip_count_of_a_file_the_worker_could_not_read():
    f = raw("late", rows=4)  # its footer was read by the driver, its data not by the worker
    records = [record(f, 0, 1, quarantine=[entry(f.uri, "d", None, "unreadable Parquet data: boom")])]
    t = tally("d", [f], records, card_clips=4)
    assert t.entries[0]["clips"] == 4 and (t.clips, t.total) == (4, 4)


def test_share_check_before_and_after_the_work():
    files = [raw(f"f{i}", rows=2) for i in range(3)] + [raw("bad", rows=2, reason="unreadable Parquet file")]
    early = tally("d", files, [], card_clips=8)
    assert check_share("d", early, 0.25, early=True) == ""  # 2 of 8 clips: at the limit is allowed
    with pytest.raises(QuarantineExceeded, match=r"d: 1 raw file\(s\) cannot be used, holding 2 of 8 clips \(25%\), "
                                                r"above the allowed preprocess.max_quarantine_share 20%: "
                                                r"bad.parquet: unreadable Parquet file$"):
        check_share("d", early, 0.2, early=True)
    records = [record(files[0], 0, 1, quarantine=[entry(files[0].uri, "d", f"c{i}", "too short") for i in range(7)])]
    late = tally("d", files, records, card_clips=8)
    msg = check_share("d", late, 0.5)
    assert msg.startswith("d: 8 entries were quarantined, holding 8 of 8 clips (100%), above the allowed "
                          "preprocess.max_quarantine_share 50%: bad.parquet: unreadable Parquet file; f0.parquet c0: ")
    assert msg.endswith(" (and 3 more)")


# --------------------------------------------------------------------------------------------------------------
# The manifest from records
# --------------------------------------------------------------------------------------------------------------

def sums(values: np.ndarray) -> list:
    return [len(values), values.sum(0).tolist(), (values ** 2).sum(0).tolist()]


def test_manifest_from_records(tmp_path):
    run = str(tmp_path / "run")
    out = RunLayout(run).shards("d")
    a, b, bad = raw("a", rows=3), raw("b", rows=2), raw("bad", rows=1, reason="unreadable Parquet file")
    acc = [np.arange(12.0).reshape(4, 3), np.ones((2, 3)) * 5, np.full((1, 3), 1000.0)]
    records = [  # sorted by file and chunk, as preprocess() hands them over
        record(a, 0, 2, "train/shard-2.parquet", classes={"0": 3, "1": 1}, sums={"acc": sums(acc[0])},
               quarantine=[entry(a.uri, "d", "a-x", "too short")]),
        record(a, 1, 2, "val/shard-9.parquet", "val", classes={"1": 1}, sums={"acc": sums(acc[2])}),
        record(b, 0, 1, "train/shard-1.parquet", classes={"1": 2}, sums={"acc": sums(acc[1]), "pose": [0, [], []]}),
    ]
    plan = Plan(raws={"d": "/raw/d"}, cards={"d": {"labels": ["squats", "walking"], "clips": 6}},
                formats={"d": SampleFormat(video_dim=8)}, label_maps={"d": {"squats": 0, "walking": 1}},
                out_dirs={"d": out}, params={"d": PARAMS}, files={"d": [a, b, bad]}, reused={b.key: records[2:]})
    t = tally("d", plan.files["d"], records, plan.cards["d"]["clips"])
    m = build_manifest("d", plan, records, t, 1.5, processed={a.uri})
    assert isinstance(m, Manifest)
    assert m.shards == {"train": [f"{out}/train/shard-1.parquet", f"{out}/train/shard-2.parquet"],
                        "val": [f"{out}/val/shard-9.parquet"]}
    assert m.counts == {"train": {"squats": 3, "walking": 3}, "val": {"walking": 1}}
    assert m.rows == {"train": 6, "val": 1} and m.labels == ["squats", "walking"] and m.num_classes == 2
    train = np.concatenate([acc[0], acc[1]])  # the train split only; pose had no windows
    assert set(m.stats) == {"acc"} and m.stats["acc"].count == 6
    np.testing.assert_allclose(m.stats["acc"].mean, train.mean(0))
    np.testing.assert_allclose(m.stats["acc"].std, train.std(0))
    assert (m.quarantine.count, m.quarantine.files, m.quarantine.clips) == (2, 1, 2)
    assert m.quarantine.share == round(2 / 6, 4) and m.clips == 6 and m.seconds == 1.5
    assert m.progress == {"files": 3, "processed": 1, "reused": 1, "quarantined_files": 1}
    assert (m.schema_version, m.dataset, m.raw, m.video_dim, m.text_dim) == (SCHEMA_VERSION, "d", "/raw/d", 8, 384)

    with pytest.raises(ManifestMissing, match="has not been preprocessed in this run; run jobs/preprocess.py"):
        read_manifest(run, "d")
    write_contract(RunLayout(run).manifest("d"), m)
    assert read_manifest(run, "d") == m


def test_stale_uris_spare_what_this_run_wrote():
    a, gone = raw("a"), raw("gone")
    current = record(a, 0, 1, "train/shard-new.parquet")
    plan = Plan(raws={}, cards={}, formats={}, label_maps={}, out_dirs={"d": OUT}, params={},
                stale=[record(a, 0, 1, "train/shard-old.parquet"), record(gone, 0, 1, "train/shard-new.parquet")],
                stale_records=[progress_uri(OUT, a.key, 0), progress_uri(OUT, gone.key, 0)])
    assert stale_uris(plan, [current]) == {storage.join(OUT, "train/shard-old.parquet"),
                                           progress_uri(OUT, gone.key, 0)}


# --------------------------------------------------------------------------------------------------------------
# Inputs and imports
# --------------------------------------------------------------------------------------------------------------

def test_a_card_with_a_clip_count_that_is_not_one_is_refused(tmp_path):
    raw_dir = Path(RunLayout(str(tmp_path)).raw("d"))
    raw_dir.mkdir(parents=True)
    (raw_dir / "part-0.parquet").write_bytes(b"not read here")
    (raw_dir / "dataset.json").write_text(json.dumps({"labels": ["a"], "clips": "many"}))
    with pytest.raises(InputError, match=r"dataset.json says it holds 'many' clips \('clips'\), not a count"):
        check_inputs(["d"], str(tmp_path))
    (raw_dir / "dataset.json").write_text(json.dumps({"labels": ["a"], "clips": 3}))
    found = check_inputs(["d"], str(tmp_path))
    assert found.raws == {"d": str(raw_dir)} and [u for u, _, _ in found.listings["d"]] == [
        str(raw_dir / "part-0.parquet")]


def test_file_workers_import_no_pydantic_config_or_ray():
    """Every file worker and embedding actor imports the package: pydantic, mujo.run and mujo.config cost each of
    them tens of milliseconds (benchmarks/README.md), Ray and torch more."""
    code = ("import sys; import mujo.pipelines.preprocess.execute; "
            "print([m for m in ('pydantic', 'mujo.run', 'mujo.config', 'ray', 'torch') if m in sys.modules])")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "platform")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
