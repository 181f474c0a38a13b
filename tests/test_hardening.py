"""Security and robustness defects of issue 13, each reproduced as an attacker or a careless user would meet it:
a tampered checkpoint, names and card paths that escape their folder, a second writer of a run, duplicate clip
ids, impossible settings, bad files and bad values given to the jobs, a bucket that never answers, and a killed
driver's leftovers. The fake-secret grep is in ``tests/test_cluster_jobs.py`` (it needs the Tune fan-out on a
cluster whose logs the test can read)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mujo import runlock, storage
from mujo.config import ConfigError, PreprocessConfig, load_config
from mujo.data.clips import RawClip, clips_to_table
from mujo.errors import InputError, RunLocked
from mujo.names import UnsafeName, check_name, check_split, inside

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
JOB_ENV = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
JOB_ENV.pop("RAY_ADDRESS", None)


def job(*args: str, timeout: float = 180, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([PY, *args], cwd=ROOT, env=env or JOB_ENV, capture_output=True, text=True,
                          timeout=timeout)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The job ended with exit 2 and one ``error:`` message (a config error lists its problems below it), no
    traceback; returns the message."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = proc.stderr.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("error:")]
    assert len(starts) == 1, proc.stderr[-3000:]
    return "\n".join(lines[starts[0]:])


# 1. No code from a checkpoint --------------------------------------------------------------------------------------

class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_tampered_checkpoint_is_refused_and_runs_nothing(tmp_path):
    from mujo.train.pretrain import load_state

    marker = tmp_path / "pwned"
    path = tmp_path / "state.pt"
    torch.save({"model": {}, "step": 3, "rng": _Payload(str(marker))}, path)
    with pytest.raises(ValueError, match="not a plain weights file") as err:
        load_state(str(path), "cpu")
    assert str(path) in str(err.value)
    assert not marker.exists()


def test_training_state_round_trips_with_weights_only(tmp_path):
    """Every RNG state and the optimiser/scheduler state load with weights_only=True and restore the streams."""
    import random

    from mujo.train.pretrain import _rng_state, _set_rng_state, load_state, lr_lambda

    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(2, 10))
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    sched.step()
    np.random.normal(size=3), random.random(), torch.rand(2)  # advance the streams, gauss cache included
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
             "rng": _rng_state(), "history": [{"loss": 1.5, "step": 1}], "step": 1}
    torch.save(state, tmp_path / "state.pt")
    expected = (np.random.normal(size=3), random.random(), torch.rand(2))
    loaded = load_state(str(tmp_path / "state.pt"), "cpu")
    _set_rng_state(loaded["rng"])
    again = (np.random.normal(size=3), random.random(), torch.rand(2))
    assert np.array_equal(expected[0], again[0]) and expected[1] == again[1] and torch.equal(expected[2], again[2])
    opt2 = torch.optim.AdamW(torch.nn.Linear(3, 2).parameters(), lr=1e-3)
    opt2.load_state_dict(loaded["optimizer"])
    assert loaded["history"] == state["history"]


# 2. Nothing written outside the run -------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["..", ".", "../x", "a/b", "/abs", "", ".hidden", "-rf", "a" * 200, "x\n"])
def test_unsafe_names_are_refused(bad):
    with pytest.raises(UnsafeName):
        check_name(bad)


def test_splits_and_card_paths_stay_inside(tmp_path):
    assert check_split("val") == "val"
    with pytest.raises(UnsafeName):
        check_split("../../../../escape")
    assert inside(str(tmp_path), "sub/x.npy") == str(tmp_path / "sub" / "x.npy")
    assert inside("s3://b/src", "a/../x.npy") == "s3://b/src/x.npy"
    for bad in ("../x.npy", "a/../../x.npy", "/etc/passwd", "s3://other/x", "C:\\x"):
        with pytest.raises(UnsafeName):
            inside(str(tmp_path), bad)
    assert inside(str(tmp_path), "/data/x.npy", allow_outside=True) == "/data/x.npy"


@pytest.mark.parametrize("override", ["run_name=..", "run_name=../escape", "pretrain.dataset=../x",
                                      "evaluate.dataset=a/b", "generate.datasets=[{name: ../../x}]"])
def test_config_names_that_would_escape_are_refused(override):
    with pytest.raises(ConfigError, match="not a safe name"):
        load_config("jobs/configs/main.yaml", [override])


def test_byod_card_paths_cannot_leave_the_source(tmp_path):
    from _fixtures_datasets import byod_npy_card, write_byod_npy, write_card

    from mujo.adapters import CardError, get_adapter

    source = tmp_path / "src"
    source.mkdir()
    write_byod_npy(source)
    outside = tmp_path / "secret.npy"
    np.save(outside, np.zeros((3, 10, 3)))
    for x in ("../secret.npy", str(outside)):
        card = byod_npy_card(data={"format": "npy", "x": x, "y": "y.npy", "subjects": "subjects.npy"})
        adapter = get_adapter("byod", card=write_card(source / "card.yaml", card))
        with pytest.raises(CardError, match="data.x") as err:
            list(adapter.read(str(source)))
        assert "allow_outside_source" in str(err.value)
    # the card's author can allow it explicitly
    os.replace(source / "X.npy", tmp_path / "X.npy")
    card = byod_npy_card(data={"format": "npy", "x": "../X.npy", "y": "y.npy", "subjects": "subjects.npy",
                               "allow_outside_source": True})
    clips = list(get_adapter("byod", card=write_card(source / "card.yaml", card)).read(str(source)))
    assert clips


def _clip(cid: str, split: str = "train", seed: int = 0) -> RawClip:
    rng = np.random.default_rng(seed)
    t = 400
    return RawClip(cid, f"s{seed % 2}", "hq", split, "squats", "squats",
                   pose=(rng.normal(0, 0.1, (t, 17, 3)) + [0, 0, 1.0]).astype(np.float32), pose_hz=50.0,
                   acc=rng.normal(0, 1, (t, 6)).astype(np.float32), acc_hz=50.0,
                   video=rng.normal(0, 1, (t, 8)).astype(np.float32), video_hz=50.0)


def _write_raw(run_dir: str, parts: dict[str, list[RawClip]]) -> None:
    import pyarrow.parquet as pq

    raw = Path(run_dir) / "raw" / "hq"
    raw.mkdir(parents=True)
    for name, clips in parts.items():
        pq.write_table(clips_to_table(clips), raw / name)
    (raw / "dataset.json").write_text(json.dumps({"labels": ["squats", "walking"], "clips": 6}))


def test_escaping_split_and_duplicate_clip_ids_are_quarantined(tmp_path):
    from mujo.pipelines.preprocess import check_inputs, preprocess
    from mujo.schema import read_shard

    run_dir = str(tmp_path / "runs" / "r")
    _write_raw(run_dir, {"part-0.parquet": [_clip("a1"), _clip("a2", "../../../../escape", 1), _clip("a1", seed=2)],
                         "part-1.parquet": [_clip("a1", seed=3), _clip("b1", "val", 4), _clip("b1", "val", 5)]})
    before = set(os.listdir(tmp_path))
    cfg = PreprocessConfig(max_quarantine_share=0.9)
    manifest = preprocess({"hq": 8}, run_dir, cfg, executor="local")["hq"]
    assert set(os.listdir(tmp_path)) == before  # nothing next to the run folder
    for dirpath, _, files in os.walk(tmp_path):
        assert Path(dirpath).resolve().is_relative_to((tmp_path / "runs" / "r").resolve()) or not files
    q = manifest.quarantine
    reasons = {(e.clip_id, Path(e.file).name): e.reason for e in q.entries}
    assert "split '../../../../escape' is not one of" in reasons[("a2", "part-0.parquet")]
    dup = [r for r in reasons.values() if r.startswith("duplicate clip_id 'a1'")]
    assert len(dup) == 2 and all("first in part-0.parquet row 0" in r for r in dup)
    assert "duplicate clip_id 'b1': first in part-1.parquet row 1" in reasons[("b1", "part-1.parquet")]
    assert q.count == 4 and q.clips == 4
    assert set(manifest.shards) == {"train", "val"}
    ids = [cid for split in manifest.shards.values() for shard in split
           for cid in read_shard(shard).column("clip_id").to_pylist()]
    assert sorted(set(ids)) == ["a1", "b1"]
    samples = [sid for split in manifest.shards.values() for shard in split
               for sid in read_shard(shard).column("sample_id").to_pylist()]
    assert len(samples) == len(set(samples))  # no duplicate windows
    with pytest.raises(UnsafeName):
        check_inputs(["../hq"], run_dir)
    # the duplicates' quarantine is part of each file's identity: a second run reuses everything, same manifest
    again = preprocess({"hq": 8}, run_dir, cfg, executor="local")["hq"]
    assert again.progress["reused"] == 2 and again.quarantine == q


# 5. One writer per run ---------------------------------------------------------------------------------------------

HOLD = ("import sys, time; sys.path.insert(0, 'platform'); from mujo import runlock; "
        "runlock.acquire(sys.argv[1]); print('held', flush=True); time.sleep(120)")


def _holder(run_dir: str, env: dict | None = None) -> subprocess.Popen:
    proc = subprocess.Popen([PY, "-c", HOLD, run_dir], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                            env=env or JOB_ENV)
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.mark.parametrize("where", ["local", pytest.param("s3", marks=pytest.mark.s3)])
def test_run_lock_refuses_a_second_writer(where, tmp_path, request):
    if where == "s3":
        request.getfixturevalue("s3")
        run_dir = f"s3://mujo-test/locks/{tmp_path.name}"
    else:
        run_dir = str(tmp_path / "run")
    holder = _holder(run_dir, {**JOB_ENV, **os.environ})
    try:
        with pytest.raises(RunLocked) as err:
            runlock.acquire(run_dir)
        text = str(err.value)
        assert f"process {holder.pid}" in text and "_run.lock" in text and "run_name" in text
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # the holder was killed: its lock names a dead process on this host and is taken over
    uri = runlock.acquire(run_dir)
    assert json.loads(storage.read_bytes(uri))["pid"] == os.getpid()
    assert runlock.acquire(run_dir) == uri  # the same process may take it again
    runlock.release(uri)
    assert not storage.exists(uri)


# 4 and 6. Impossible settings and bad input: one line, exit 2, before Ray --------------------------------------------

BAD_VALUES = [
    ("pretrain.lr=[1,", "not valid YAML"),
    ("pretrain.lr=.inf", "pretrain.lr: Input should be a finite number"),
    ("pretrain.num_workers=true", "pretrain.num_workers"),
    ("run_name=..", "run_name"),
]


@pytest.fixture(scope="module")
def bad_value_jobs(tmp_path_factory) -> dict[str, subprocess.Popen]:
    """The pretrain job on each bad value, all started at once (each spends its time importing, on one core): each
    test below reads its own job's outcome."""
    procs = {override: subprocess.Popen(
        [PY, "jobs/pretrain.py", "--config", "jobs/configs/main.yaml", "--set", override,
         "--set", f"storage.root={tmp_path_factory.mktemp('bad-value')}"],
        cwd=ROOT, env=JOB_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for override, _ in BAD_VALUES}
    yield procs
    for proc in procs.values():  # a failed test must not leave a job running
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("override,expected", BAD_VALUES)
def test_bad_values_are_one_line(override, expected, bad_value_jobs):
    proc = bad_value_jobs[override]
    stdout, stderr = proc.communicate(timeout=180)
    line = one_line_error(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr))
    assert expected in line


def test_preprocess_refuses_bad_input_before_ray(tmp_path):
    import pyarrow.parquet as pq

    # two run folders, the two jobs side by side: one without raw clips, one whose dataset.json is cut short
    empty, broken = tmp_path / "empty", tmp_path / "broken"
    raw = broken / "demo" / "raw" / "hq"
    raw.mkdir(parents=True)
    pq.write_table(clips_to_table([_clip("a1")]), raw / "part-0.parquet")
    (raw / "dataset.json").write_text('{"labels": ["squats", ')
    procs = [subprocess.Popen([PY, "jobs/preprocess.py", "--config", "jobs/configs/main.yaml", "--set",
                               f"storage.root={root}", "--set", "generate.datasets=[{name: hq}]"], cwd=ROOT,
                              env=JOB_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for root in (empty, broken)]
    try:
        outputs = [p.communicate(timeout=120) for p in procs]
        done = [subprocess.CompletedProcess(p.args, p.returncode, *out) for p, out in zip(procs, outputs)]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    line = one_line_error(done[0])
    assert "no raw clip files" in line and str(empty / "demo" / "raw" / "hq") in line and "jobs/ingest.py" in line
    assert "starting a local Ray" not in done[0].stderr
    line = one_line_error(done[1])
    assert str(raw / "dataset.json") in line and "not valid JSON" in line
    assert "starting a local Ray" not in done[1].stderr


def test_batch_larger_than_the_data_is_refused_before_ray(tmp_path):
    shards = tmp_path / "demo" / "shards" / "synthfit"
    shards.mkdir(parents=True)
    (shards / "manifest.json").write_text(json.dumps({
        "schema_version": "1.0", "dataset": "synthfit", "raw": "raw/synthfit", "labels": ["squats"], "video_dim": 512,
        "text_dim": 384, "shards": {"train": [], "val": []}, "counts": {}, "rows": {"train": 100, "val": 20},
        "stats": {}, "quarantine": {"count": 0, "files": 0, "clips": 0, "share": 0.0, "entries": []}, "clips": 10,
        "seconds": 1.0}))
    proc = job("jobs/pretrain.py", "--config", "jobs/configs/main.yaml", "--set", f"storage.root={tmp_path}",
               "--set", "pretrain.batch_size=64", "--set", "pretrain.num_workers=2", timeout=60)
    line = one_line_error(proc)
    assert "pretrain.batch_size 64" in line and "only 100 windows" in line and "at most 50" in line
    assert "starting a local Ray" not in proc.stderr


@pytest.fixture
def silent_endpoint():
    """A TCP server on loopback that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for s in held:
        s.close()
    server.close()


def test_silent_bucket_fails_in_seconds_naming_the_endpoint(silent_endpoint):
    from mujo.config import StorageConfig

    # the shipped bound: 10 s per request, two tries (~20 s); the job below sets 2 s (~4 s) to keep the suite fast
    assert StorageConfig().probe_timeout_s == storage.PROBE_TIMEOUT_S == 10.0
    env = {**JOB_ENV, "AWS_ENDPOINT_URL": silent_endpoint, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y",
           "AWS_EC2_METADATA_DISABLED": "true", "AWS_DEFAULT_REGION": "us-east-1"}
    t0 = time.monotonic()
    proc = job("jobs/generate.py", "--config", "jobs/configs/main.yaml", "--set", "storage.root=s3://bucket/runs",
               "--set", "storage.probe_timeout_s=2", timeout=120, env=env)
    elapsed = time.monotonic() - t0
    line = one_line_error(proc)
    assert silent_endpoint in line and "the endpoint is unreachable" in line
    assert (f"checking that s3://bucket/runs/demo (endpoint {silent_endpoint}) is reachable and writable "
            "(at most ~4 s)") in proc.stderr  # the configured bound, announced
    assert elapsed < 90, elapsed  # the start-up probe is bounded (was 373 s of silence; job start-up under load: 40 s)


@pytest.mark.ray
def test_storage_error_in_a_ray_data_worker_is_one_line(ray_session):
    import ray

    from mujo.pipelines.preprocess import take_all

    def fail(batch):
        raise storage.StorageError("storage error at s3://b/x (endpoint http://127.0.0.1:1): the endpoint is "
                                   "unreachable")

    ds = ray.data.from_items([{"x": 1}]).map_batches(fail)
    with pytest.raises(storage.StorageError) as err:
        take_all(ds)
    assert str(err.value) == ("storage error at s3://b/x (endpoint http://127.0.0.1:1): the endpoint is "
                              "unreachable")


def test_invalid_json_names_the_file(tmp_path):
    bad = tmp_path / "dataset.json"
    bad.write_text("{")
    with pytest.raises(InputError, match=str(bad)):
        storage.read_json(str(bad))


# 7. No leftovers after a killed driver ------------------------------------------------------------------------------

def test_killed_driver_leaves_no_ray_process(tmp_path):
    from mujo.procs import alive
    from mujo.reaper import cmdline, descendants

    proc = subprocess.Popen([PY, "jobs/generate.py", "--config", "jobs/configs/main.yaml",
                             "--set", f"storage.root={tmp_path}", "--set", "ray.num_cpus=1"],
                            cwd=ROOT, env=JOB_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    seen: dict[int, int] = {}
    while time.time() < deadline and proc.poll() is None:
        seen.update(descendants(proc.pid))
        raylets = [p for p in seen if "/raylet/raylet " in cmdline(p)]
        if raylets and sum(_parent(p) == raylets[0] for p in seen) >= 2:
            break  # the raylet's two agents have just started: killed at once, before the watchdog's next look
        time.sleep(0.05)
    assert proc.poll() is None, "the job ended before its Ray was up"
    ray_procs = {p for p in seen if "mujo.reaper" not in cmdline(p)}
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 30
    while time.time() < deadline and any(alive(p) for p in ray_procs):
        time.sleep(0.5)
    left = [(p, cmdline(p)[:80]) for p in ray_procs if alive(p)]
    for p, _ in left:  # never leave them to the next test, whatever the outcome
        os.kill(p, signal.SIGKILL)
    assert not left, left


def _parent(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except OSError:
        return 0
