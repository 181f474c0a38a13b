"""Preprocessing on real components (the local S3 server, a local Ray with 2 CPUs) with every kind of bad input.

One small hand-made corpus (known values, so known windows) feeds every assertion; the pipeline runs twice on Ray
(the full run, then a resumed one), every other check reuses the first run's progress and never starts Ray work.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pyarrow.parquet as pq
import pytest

from mujo import storage
from mujo.config import PreprocessConfig
from mujo.data.clips import RawClip, clips_to_table, rows_to_clips
from mujo.pipelines.preprocess import PROGRESS, QuarantineExceeded, preprocess
from mujo.run import Manifest
from mujo.schema import WINDOW, read_shard, table_to_batch

pytestmark = [pytest.mark.ray, pytest.mark.s3]

DATASET = "qa"
LABELS = ["squats", "walking"]
VIDEO_DIM = 8
CFG = PreprocessConfig(max_quarantine_share=0.7, text_batch_size=32)
T0 = 3.0  # the timestamped clip's clock starts here


def make(cid: str, split: str = "train", activity: str = "squats", seconds: float = 8.0, hz: float = 50.0,
         seed: int = 0, scale: float = 1.0, offset: float = 0.0) -> RawClip:
    rng = np.random.default_rng(seed)
    t = int(seconds * hz)
    pose = rng.normal(0, 0.1, (t, 17, 3)) + np.array([0.0, 0.0, 1.0])
    return RawClip(cid, f"{DATASET}-{split}-{seed % 3}", DATASET, split, f"{activity} x12", activity,
                   pose=(pose * scale + offset).astype(np.float32), pose_hz=hz,
                   acc=(rng.normal(0, 1, (t, 6)) * scale + offset).astype(np.float32), acc_hz=hz,
                   video=(rng.normal(0, 1, (t, VIDEO_DIM)) * scale + offset).astype(np.float32), video_hz=hz)


def acc_only(cid: str, acc: np.ndarray, hz: float, acc_t: np.ndarray | None = None) -> RawClip:
    return RawClip(cid, f"{DATASET}-train-0", DATASET, "train", "Squats", "squats", acc=acc.astype(np.float32),
                   acc_hz=hz, acc_t=acc_t)


def ramp_acc(n: int, hz: float) -> np.ndarray:
    """acc[i, c] = t_i + c with t_i = i / hz: a known ramp."""
    return (np.arange(n)[:, None] / hz + np.arange(6)[None, :]).astype(np.float32)


def jittered_times(n: int, seed: int = 5) -> np.ndarray:
    steps = np.random.default_rng(seed).uniform(0.006, 0.014, n - 1)  # about 100 Hz, far from uniform
    return T0 + np.concatenate([[0.0], np.cumsum(steps)])


def write_corpus(raw: str) -> dict[str, str]:
    """The raw folder: good clips and every kind of bad input. Returns the part file URI per role."""
    parts = {}

    def put(name: str, table) -> None:
        parts[name] = storage.join(raw, f"{name}.parquet")
        storage.write_table(table, parts[name])

    nan_run = make("nan-run", seed=3)
    nan_run.acc[100:120] = np.nan  # a NaN run of 20 frames
    bad_shape = make("bad-shape", seed=4)
    bad_shape.pose = bad_shape.pose[:, :, :2]  # (T, 17, 2)
    put("part-00000", clips_to_table([make("good-0", seed=0), make("good-1", activity="walking", seed=1),
                                      acc_only("ramp", ramp_acc(1000, 100.0), 100.0), nan_run, bad_shape]))
    t = jittered_times(1000)
    back = jittered_times(1000, seed=6)
    back[300] = back[298]  # goes backwards at frame 300
    put("part-00001", clips_to_table([acc_only("timed", t[:, None] + np.arange(6)[None, :], 100.0, acc_t=t),
                                      acc_only("backwards", ramp_acc(1000, 100.0), 100.0, acc_t=back),
                                      make("unknown-label", activity="yoga", seed=7),
                                      make("too-short", seconds=2.0, seed=8)]))
    # the val split: values wildly unlike train's; written without the timestamp columns (raw format 1.0)
    val = clips_to_table([make("val-0", "val", seed=9, scale=1000.0, offset=500.0),
                          make("val-1", "val", "walking", seed=10, scale=1000.0, offset=500.0)])
    put("part-00002", val.drop_columns(["pose_t", "acc_t", "video_t"]))
    put("part-00003", clips_to_table([make("test-0", "test", seed=11)]))
    # an unreadable (truncated) Parquet file
    parts["part-00004"] = storage.join(raw, "part-00004.parquet")
    full = storage.join(raw, "tmp-full.bin")
    storage.write_table(clips_to_table([make("trunc-0", seed=12), make("trunc-1", seed=13)]), full)
    data = storage.read_bytes(full)
    storage.write_bytes(parts["part-00004"], data[:len(data) // 2])
    fs, path = storage.filesystem(full)
    fs.delete_file(path)
    # missing columns: no stream at all; no label columns
    streams = [f"{s}{x}" for s in ("pose", "acc", "video") for x in ("", "_shape", "_hz", "_t")]
    put("part-00005", clips_to_table([make("nostream-0", seed=14), make("nostream-1", seed=15)])
        .drop_columns(streams))
    put("part-00006", clips_to_table([make("nolabel-0", seed=16)]).drop_columns(["label_text", "activity"]))
    storage.write_json(storage.join(raw, "dataset.json"), {"name": DATASET, "labels": LABELS, "clips": 17})
    return parts


@pytest.fixture(scope="module")
def corpus(ray_session, s3_root):
    root = storage.join(s3_root, f"preprocess-{int(time.time() * 1000)}")
    raw = storage.join(root, "raw", DATASET)
    parts = write_corpus(raw)
    t0 = time.time()
    manifest = preprocess({DATASET: VIDEO_DIM}, storage.join(root, "a"), CFG, raw_uris={DATASET: raw})[DATASET]
    return {"root": root, "raw": raw, "parts": parts, "manifest": manifest, "seconds": time.time() - t0}


def shard_batch(manifest: Manifest, split: str) -> dict[str, np.ndarray]:
    tables = [table_to_batch(read_shard(u)) for u in manifest.shards[split]]
    return {k: np.concatenate([t[k] for t in tables]) for k in tables[0]}


def clip_rows(batch: dict, clip_id: str) -> dict[str, np.ndarray]:
    sel = batch["clip_id"] == clip_id
    order = np.argsort(batch["sample_id"][sel])
    return {k: v[sel][order] for k, v in batch.items()}


def test_quarantine_names_every_bad_input(corpus):
    q = corpus["manifest"].quarantine
    parts = corpus["parts"]
    by_clip = {e.clip_id: e for e in q.entries if e.clip_id}
    by_file = {e.file: e for e in q.entries if e.clip_id is None}
    assert q.count == 8 and q.files == 3 and len(by_clip) == 5, q
    expected = {  # clip -> (file, words of the reason)
        "nan-run": ("part-00000", ["acc", "20 frame(s) with NaN or infinite", "frame 100"]),
        "bad-shape": ("part-00000", ["pose", "wrong shape", "(400, 17, 2)"]),
        "backwards": ("part-00001", ["acc_t", "go backwards at frame 300"]),
        "unknown-label": ("part-00001", ["unknown label 'yoga'"]),
        "too-short": ("part-00001", ["too short", "2.00 s"]),
    }
    for clip_id, (part, words) in expected.items():
        assert by_clip[clip_id].file == parts[part] and by_clip[clip_id].dataset == DATASET
        assert all(w in by_clip[clip_id].reason for w in words), by_clip[clip_id]
    assert "unreadable Parquet file" in by_file[parts["part-00004"]].reason
    assert "missing required column(s)" in by_file[parts["part-00005"]].reason
    assert all(f"'{s}'" in by_file[parts["part-00005"]].reason for s in ("pose", "acc", "video"))
    assert "'label_text', 'activity'" in by_file[parts["part-00006"]].reason
    assert by_file[parts["part-00005"]].clips == 2 and by_file[parts["part-00006"]].clips == 1
    # 5 clips + 2 + 1 in readable files + the truncated file's 2 (17 in the card, 15 readable)
    assert q.clips == 10 and q.share == round(10 / 17, 4)
    assert corpus["manifest"].progress == {"files": 7, "processed": 4, "reused": 0, "quarantined_files": 3}


def test_windows_shapes_counts_and_known_values(corpus):
    m = corpus["manifest"]
    assert m.rows == {"test": 4, "train": 4 + 4 + 6 + 5, "val": 8}, m.rows
    assert m.counts["train"] == {"squats": 15, "walking": 4}
    train = shard_batch(m, "train")
    assert train["acc"].shape[1:] == (WINDOW, 6) and train["pose"].shape[1:] == (WINDOW, 17, 3)
    assert train["video"].shape[1:] == (VIDEO_DIM,) and train["text_emb"].shape[1:] == (384,)
    assert set(train["split"]) == {"train"}
    np.testing.assert_allclose(np.linalg.norm(train["text_emb"], axis=1), 1.0, atol=1e-4)
    assert (train["text"] == "squats").sum() == 15  # "squats x12" and "Squats" normalised

    # 10 s of a ramp at 100 Hz -> 500 frames at 50 Hz, 75 trimmed at each end, windows at 75, 125, ..., 325
    ramp = clip_rows(train, "ramp")
    assert list(ramp["sample_id"]) == [f"ramp-w{i:04d}" for i in range(6)]
    assert not ramp["has_pose"].any() and not ramp["has_video"].any() and ramp["has_acc"].all()
    for j in range(6):
        expected = (75 + 50 * j + np.arange(WINDOW))[:, None] / 50.0 + np.arange(6)[None, :]
        np.testing.assert_allclose(ramp["acc"][j], expected, atol=1e-5)

    # jittered timestamps: resampled by time, so acc (= t + channel) is linear in the 50 Hz output time
    t = jittered_times(1000)
    n = int(np.floor((t[-1] + 0.01 - T0) * 50 + 1e-9))
    cut = int(round(n * CFG.trim_fraction))
    timed = clip_rows(train, "timed")
    assert len(timed["sample_id"]) == len(range(cut, n - cut - WINDOW + 1, 50)) == 5
    for j in range(5):
        expected = T0 + (cut + 50 * j + np.arange(WINDOW))[:, None] / 50.0 + np.arange(6)[None, :]
        np.testing.assert_allclose(timed["acc"][j], expected, atol=1e-4)

    # a uniform 50 Hz clip: windows are the raw frames themselves, the video feature their mean
    good = clip_rows(train, "good-0")
    raw = make("good-0", seed=0)
    for j, start in enumerate((60, 110, 160, 210)):
        np.testing.assert_array_equal(good["acc"][j], raw.acc[start:start + WINDOW])
        np.testing.assert_array_equal(good["pose"][j], raw.pose[start:start + WINDOW])
        np.testing.assert_allclose(good["video"][j], raw.video[start:start + WINDOW].mean(0), rtol=1e-5)


def test_stats_come_from_train_only(corpus):
    m = corpus["manifest"]
    train, val = shard_batch(m, "train"), shard_batch(m, "val")
    acc = train["acc"][train["has_acc"]].reshape(-1, 6).astype(np.float64)
    np.testing.assert_allclose(m.stats["acc"].mean, acc.mean(0), rtol=1e-6)
    np.testing.assert_allclose(m.stats["acc"].std, acc.std(0), rtol=1e-5)
    assert m.stats["acc"].count == len(acc)
    video = train["video"][train["has_video"]].astype(np.float64)
    np.testing.assert_allclose(m.stats["video"].mean, video.mean(0), rtol=1e-5, atol=1e-6)
    assert val["acc"].mean() > 100 and np.abs(m.stats["acc"].mean).max() < 10  # val is nowhere in it


def test_old_raw_files_without_timestamps_still_read(corpus):
    fs, path = storage.filesystem(corpus["parts"]["part-00002"])
    table = pq.read_table(path, filesystem=fs)
    assert "acc_t" not in table.column_names
    clips = rows_to_clips(table.to_pydict())
    assert clips[0].acc_t is None and clips[0].acc.shape == (400, 6)
    assert corpus["manifest"].counts["val"] == {"squats": 4, "walking": 4}


def test_too_much_quarantine_fails_with_a_clear_message(corpus):
    run = storage.join(corpus["root"], "a")
    # the unreadable files alone (5 of 17 clips) exceed 20 %: fails before any work
    with pytest.raises(QuarantineExceeded) as early:
        preprocess({DATASET: VIDEO_DIM}, run, CFG.model_copy(update={"max_quarantine_share": 0.2}),
                   raw_uris={DATASET: corpus["raw"]})
    msg = str(early.value)
    assert "qa: 3 raw file(s) cannot be used" in msg and "29%" in msg and "max_quarantine_share 20%" in msg
    assert "part-00004.parquet: unreadable Parquet file" in msg
    # all input (10 of 17 clips) exceeds 50 %: every file's progress is reused, the check runs on the whole
    t0 = time.time()
    with pytest.raises(QuarantineExceeded) as late:
        preprocess({DATASET: VIDEO_DIM}, run, CFG.model_copy(update={"max_quarantine_share": 0.5}),
                   raw_uris={DATASET: corpus["raw"]})
    msg = str(late.value)
    assert "qa: 8 entries were quarantined, holding 10 of 17 clips (59%)" in msg and "quarantine.json" in msg
    assert time.time() - t0 < 30
    report = storage.read_json(storage.join(run, "shards", DATASET, "quarantine.json"))
    assert report["count"] == 8


def test_unreachable_endpoint_fails_fast_naming_it(corpus, monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    secret = os.environ["AWS_SECRET_ACCESS_KEY"]
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint)
    t0 = time.time()
    with pytest.raises(storage.StorageError) as err:
        preprocess({DATASET: VIDEO_DIM}, storage.join(corpus["root"], "unreachable"), CFG,
                   raw_uris={DATASET: corpus["raw"]})
    assert time.time() - t0 < 30
    msg = str(err.value)
    assert f"endpoint {endpoint}" in msg and "unreachable" in msg and secret not in msg


class RefusingS3(BaseHTTPRequestHandler):
    """An S3 endpoint that refuses every request's credentials, as AWS does for an unknown access key."""

    BODY = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>InvalidAccessKeyId</Code><Message>The AWS Access '
            b'Key Id you provided does not exist in our records.</Message><RequestId>1</RequestId></Error>')

    def _refuse(self) -> None:
        self.send_response(403)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(self.BODY)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(self.BODY)

    do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _refuse

    def log_message(self, *args) -> None:
        pass


def test_refused_credentials_fail_fast_naming_the_endpoint(corpus, monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), RefusingS3)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    secret = os.environ["AWS_SECRET_ACCESS_KEY"]
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint)
    try:
        t0 = time.time()
        with pytest.raises(storage.StorageError) as err:
            preprocess({DATASET: VIDEO_DIM}, storage.join(corpus["root"], "refused"), CFG,
                       raw_uris={DATASET: corpus["raw"]})
        assert time.time() - t0 < 30
    finally:
        server.shutdown()
        server.server_close()
    msg = str(err.value)
    assert f"endpoint {endpoint}" in msg and "credentials were refused" in msg and secret not in msg


def test_resumed_run_writes_the_same_shards(corpus):
    """Copy run a's state, lose part of it as an interruption would, resume: the shards are run a's exactly."""
    a, b = (storage.join(corpus["root"], r, "shards", DATASET) for r in ("a", "b"))
    done = [u for u in storage.list_files(a) if not u.endswith(("manifest.json", "quarantine.json"))]
    for u in done:
        storage.write_bytes(b + u[len(a):], storage.read_bytes(u))
    records = {u[len(a):]: storage.read_json(u) for u in done if f"/{PROGRESS}/" in u}
    part0 = next(k for k, r in records.items() if r["file"].endswith("part-00000.parquet") and r["shard"])
    part1 = next(k for k, r in records.items() if r["file"].endswith("part-00001.parquet"))

    def rm(uri: str) -> None:
        fs, path = storage.filesystem(uri)
        fs.delete_file(path)

    rm(b + "/" + records[part0]["shard"])  # interrupted before part-00000's shard was complete
    rm(b + part0)
    rm(b + part1)  # interrupted after part-00001's shard, before its progress record
    manifest = preprocess({DATASET: VIDEO_DIM}, storage.join(corpus["root"], "b"), CFG,
                          raw_uris={DATASET: corpus["raw"]})[DATASET]
    assert manifest.progress == {"files": 7, "processed": 2, "reused": 2, "quarantined_files": 3}

    def files(root: str) -> dict[str, bytes]:
        return {u[len(root):]: storage.read_bytes(u) for u in storage.list_files(root, ".parquet")}

    got, want = files(b), files(a)
    assert sorted(got) == sorted(want) and len(want) == 4
    assert all(got[k] == want[k] for k in want)  # byte for byte
    first = corpus["manifest"]

    def comparable(m: Manifest, root: str) -> dict:
        doc = m.model_dump(exclude={"seconds", "progress"})
        doc["shards"] = {s: [u[len(root):] for u in us] for s, us in m.shards.items()}
        return doc

    assert comparable(manifest, b) == comparable(first, a)


def test_file_worker_pool_fits_the_cluster_and_grows_with_it():
    """(initial, most) file workers: what the cluster's CPUs hold now, at least one, at most one per file."""
    from mujo.pipelines.preprocess import file_workers

    cfg = PreprocessConfig()  # window_cpus 1.0, embedding actors reserve no CPU
    assert file_workers(cfg, files=20, cluster_cpus=2.0) == (2, 20)
    assert file_workers(cfg, files=1, cluster_cpus=16.0) == (1, 1)
    assert file_workers(cfg, files=20, cluster_cpus=0.0) == (1, 20)  # autoscaling cluster with no worker yet
    capped = PreprocessConfig(max_file_workers=4, window_cpus=0.5, text_actors=2, text_actor_cpus=0.5)
    assert file_workers(capped, files=20, cluster_cpus=4.0) == (4, 4)  # (4 - 2 x 0.5) / 0.5 = 6 -> capped at 4
    assert file_workers(capped, files=20, cluster_cpus=2.0) == (2, 4)
