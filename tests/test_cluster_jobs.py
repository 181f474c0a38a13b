"""Run it as users run it: a real two-node Ray cluster (`ray start --head`, `ray start --address`, each node with its
own resources and temporary folder) and the stages submitted as Ray jobs, with the `ray job submit` CLI and with
`JobSubmissionClient`: generate -> preprocess -> pretrain -> fan-out -> zero-shot (and the model path), the
artefacts checked in the local S3 server; beside it, in another run folder, issue 17's motion-corpus chain
(ingest -> preprocess -> pretrain -> evaluate). Each job's run time is printed at the end (``pytest -s``).

The test starts its own processes and stops exactly those (never `ray stop`, which would end every Ray process of
the user on the machine, the test session's own Ray included).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import yaml

from mujo import procs, storage

ROOT = Path(__file__).resolve().parent.parent
RAY = str(Path(sys.executable).parent / "ray")
# Recognisable fake credentials (the local S3 server accepts any): no file the cluster or the jobs write may hold them
FAKE_SECRETS = {"AWS_ACCESS_KEY_ID": "mujo-fake-key-id-" + uuid.uuid4().hex[:12],
                "AWS_SECRET_ACCESS_KEY": "mujo-fake-secret-" + uuid.uuid4().hex,
                "AWS_SESSION_TOKEN": "mujo-fake-token-" + uuid.uuid4().hex}
pytestmark = [pytest.mark.ray, pytest.mark.s3, pytest.mark.cluster]

OVERRIDES = [
    "run_name=cluster",
    "generate.clips_per_task=8",
    "generate.datasets=[{name: synthfit, activities: [squats, bicep_curls, jumping_jacks, pushups], "
    "subjects: {train: 3, val: 1, test: 1}, clip_seconds: [8, 10]}]",
    "model.embed_dim=32", "model.proj_hidden=32", "model.text_hidden=32", "model.video_hidden=32",
    "pretrain.dataset=synthfit", "pretrain.batch_size=16", "pretrain.epochs=2", "pretrain.warmup_steps=1",
    "pretrain.checkpoint_every_steps=4", "pretrain.num_workers=2", "pretrain.cpus_per_worker=0.5",
    "pretrain.placement_strategy=SPREAD",
    "evaluate.dataset=synthfit", "evaluate.inputs=[[acc]]", "evaluate.settings=[baseline, frozen]",
    "evaluate.fractions=[1.0]", "evaluate.seeds=1", "evaluate.max_epochs=2", "evaluate.patience=2",
    # calibrations and zero-shot calibrations as shipped: zero-shot's unsupervised/supervised need the pretraining
    # corpus as their reference, which the fanout and zeroshot jobs must find on their own
    "finetune.dataset=synthfit", "finetune.max_epochs=2", "finetune.patience=1", "finetune.name=acc-ft",
    "finetune.cpus=0.5", "predict.splits=[test]", "predict.cpus_per_actor=0.5", "predict.after_main=false",
]


def _node_ports() -> list[str]:
    node_manager, object_manager, agent_listen, agent_grpc, metrics, runtime_env, client = procs.free_ports(7)
    return ["--node-manager-port", str(node_manager), "--object-manager-port", str(object_manager),
            "--dashboard-agent-listen-port", str(agent_listen), "--dashboard-agent-grpc-port", str(agent_grpc),
            "--metrics-export-port", str(metrics), "--runtime-env-agent-port", str(runtime_env)]


def _started_by(temp_dirs: list[str]) -> list[int]:
    """Process ids of the Ray processes using one of ``temp_dirs`` (their command lines name it) and all their
    descendants (the worker processes)."""
    return procs.naming(temp_dirs)


def _stop(pids: list[int], timeout: float = 15) -> None:
    procs.stop(pids, timeout=timeout, poll=0.5)


@pytest.fixture(scope="module")
def cluster(s3):
    """A head node and a worker node on loopback, each with 2 CPUs, its own custom resource and temp folder."""
    head_tmp = tempfile.mkdtemp(prefix="mujo-rh-", dir="/tmp")
    worker_tmp = tempfile.mkdtemp(prefix="mujo-rw-", dir="/tmp")
    gcs, dashboard = procs.free_ports(2)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    # the nodes' environment: what an on-premises cluster with an S3-compatible store gives its nodes
    env.update(s3.env)
    env.update(FAKE_SECRETS)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # `python` in an entrypoint
    env.update({"RAY_AUTH_MODE": "disabled", "RAY_DATA_PARQUET_FOOTER_NUM_ACTORS": "1",
                "GLOO_SOCKET_IFNAME": "lo", "RAY_USAGE_STATS_ENABLED": "0"})
    common = ["--node-ip-address", "127.0.0.1", "--num-cpus", "2", "--object-store-memory", str(200 * 2**20),
              "--disable-usage-stats"]
    try:
        subprocess.run([RAY, "start", "--head", "--port", str(gcs), "--temp-dir", head_tmp,
                        "--include-dashboard", "true", "--dashboard-host", "127.0.0.1",
                        "--dashboard-port", str(dashboard), "--ray-client-server-port", str(procs.free_ports(1)[0]),
                        "--resources", json.dumps({"head_node": 1}), *common, *_node_ports()],
                       env=env, check=True, capture_output=True, text=True, timeout=180)
        subprocess.run([RAY, "start", "--address", f"127.0.0.1:{gcs}", "--temp-dir", worker_tmp,
                        "--resources", json.dumps({"worker_node": 1}), *common, *_node_ports()],
                       env=env, check=True, capture_output=True, text=True, timeout=180)
        address = f"http://127.0.0.1:{dashboard}"
        _wait_for_nodes(address, 2, env)
        yield {"address": address, "env": env, "temp_dirs": [head_tmp, worker_tmp]}
        _print_job_times(address)
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"ray start failed: {exc.stderr[-3000:]}")
    finally:
        _stop(_started_by([head_tmp, worker_tmp]))
        for d in (head_tmp, worker_tmp):
            shutil.rmtree(d, ignore_errors=True)


def _print_job_times(address: str) -> None:
    """Each job's run time, in submission order (where the module's time goes)."""
    from ray.job_submission import JobSubmissionClient

    jobs = sorted(JobSubmissionClient(address).list_jobs(), key=lambda j: j.start_time or 0)
    t0 = jobs[0].start_time if jobs else 0
    for j in jobs:
        took = ((j.end_time or j.start_time) - j.start_time) / 1000 if j.start_time else 0.0
        print(f"job {j.submission_id}: +{(j.start_time - t0) / 1000:6.1f} s, {took:6.1f} s, {j.status.value}")


def _wait_for_nodes(address: str, count: int, env: dict, timeout: float = 120) -> None:
    from ray.job_submission import JobSubmissionClient

    deadline = time.time() + timeout
    while True:
        try:
            JobSubmissionClient(address).list_jobs()
            from ray.util.state import list_nodes

            alive = [n for n in list_nodes(address=address) if n.state == "ALIVE"]
            if len(alive) >= count:
                return
        except Exception:  # the dashboard is still starting
            if time.time() > deadline:
                raise
        if time.time() > deadline:
            raise TimeoutError(f"{count} nodes not alive at {address} after {timeout} s")
        time.sleep(2)


def _entrypoint(job: str, s3_root: str, config: str = "main", overrides: list[str] | None = None) -> list[str]:
    overrides = OVERRIDES if overrides is None else overrides
    sets = [a for o in overrides + [f"storage.root={s3_root}/cluster-runs"] for a in ("--set", o)]
    return ["python", f"jobs/{job}.py", "--config", f"jobs/configs/{config}.yaml", *sets]


def _cli_submit(cluster, job: str, s3_root: str, timeout: int = 480, config: str = "main",
                overrides: list[str] | None = None, entrypoint: list[str] | None = None, prefix: str = "") -> str:
    """`ray job submit --runtime-env jobs/runtime_env.yaml -- python jobs/<job>.py ...` (or ``entrypoint``), waiting
    for the end (the CLI streams the job's logs); returns the submission id (``mujo-<prefix><job>-<random>``)."""
    sid = f"mujo-{prefix}{job}-{uuid.uuid4().hex[:8]}"
    proc = subprocess.run([RAY, "job", "submit", "--address", cluster["address"], "--submission-id", sid,
                           "--runtime-env", "jobs/runtime_env.yaml", "--",
                           *(entrypoint or _entrypoint(job, s3_root, config, overrides))],
                          cwd=ROOT, env=cluster["env"], capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return sid


def _client_submit(cluster, job: str, s3_root: str, timeout: int = 480) -> str:
    """The same through `JobSubmissionClient`, with the same runtime environment file; polls until the end."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(cluster["address"])
    runtime_env = yaml.safe_load((ROOT / "jobs" / "runtime_env.yaml").read_text())
    runtime_env["working_dir"] = str(ROOT)
    runtime_env["py_modules"] = [str(ROOT / p) for p in runtime_env["py_modules"]]
    sid = client.submit_job(entrypoint=shlex.join(_entrypoint(job, s3_root)), runtime_env=runtime_env,
                            submission_id=f"mujo-{job}-{uuid.uuid4().hex[:8]}")
    deadline = time.time() + timeout
    while client.get_job_status(sid) not in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
        if time.time() > deadline:
            client.stop_job(sid)
            pytest.fail(f"job {sid} still running after {timeout} s:\n{client.get_job_logs(sid)[-4000:]}")
        time.sleep(1)
    return sid


def _status(cluster, sid: str) -> tuple[str, str]:
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(cluster["address"])
    return str(client.get_job_status(sid).value), client.get_job_logs(sid)


def test_bad_config_fails_before_cluster_work(cluster, s3_root):
    from ray.job_submission import JobSubmissionClient

    proc = subprocess.run([RAY, "job", "submit", "--address", cluster["address"], "--runtime-env",
                           "jobs/runtime_env.yaml", "--", "python", "jobs/pretrain.py", "--config",
                           "jobs/configs/main.yaml", "--set", "pretrain.epochs=-1"],
                          cwd=ROOT, env=cluster["env"], capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert "pretrain.epochs" in out and "Traceback" not in out, out[-3000:]
    failed = [j for j in JobSubmissionClient(cluster["address"]).list_jobs() if "pretrain.epochs=-1" in j.entrypoint]
    assert failed and str(failed[0].status.value) == "FAILED"


def test_chain_on_two_nodes(cluster, s3_root, corpus_chain):
    """The main chain; the corpus chain (``corpus_chain``, another run folder) runs beside it on the same cluster."""
    run = f"{s3_root}/cluster-runs/cluster"
    sids = {"generate": _client_submit(cluster, "generate", s3_root),
            "preprocess": _cli_submit(cluster, "preprocess", s3_root)}
    sids["pretrain"] = _client_submit(cluster, "pretrain", s3_root)
    sids["fanout"] = _cli_submit(cluster, "fanout", s3_root)
    sids["zeroshot"] = _client_submit(cluster, "zeroshot", s3_root)
    sids["finetune"] = _client_submit(cluster, "finetune", s3_root)  # the model path: finetune -> predict -> export
    sids["predict"] = _cli_submit(cluster, "predict", s3_root)
    sids["export"] = _client_submit(cluster, "export", s3_root)
    for job, sid in sids.items():
        status, logs = _status(cluster, sid)
        assert status == "SUCCEEDED", f"{job}: {status}\n{logs[-4000:]}"
    # the jobs ran on the cluster they were submitted to (attached, not an embedded Ray)
    assert "starting a local Ray" not in _status(cluster, sids["pretrain"])[1]

    manifest = storage.read_json(storage.join(run, "shards", "synthfit", "manifest.json"))
    assert manifest["rows"]["train"] > 0 and manifest["quarantine"]["count"] == 0
    assert storage.exists(storage.join(run, "pretrain", "model", "history.json"))
    history = storage.read_json(storage.join(run, "pretrain", "model", "history.json"))
    assert history[-1]["step"] >= 2
    tb = storage.join(run, "train", "cluster-pretrain", "tensorboard")
    assert any("tfevents" in p for p in storage.list_files(tb))
    results = storage.join(run, "results", "synthfit")
    table = storage.read_bytes(storage.join(results, "results.md")).decode()
    assert "| acc | baseline |" in table and "| acc | frozen |" in table
    zero_shot = storage.read_bytes(storage.join(results, "zeroshot.md")).decode()
    assert "| multimodal | acc | none |" in zero_shot and "top-3" in zero_shot  # 4 labels: no top-5
    assert "| multimodal | acc | unsupervised |" in zero_shot and "| multimodal | acc | supervised |" in zero_shot
    trials = storage.read_bytes(storage.join(results, "trials.csv")).decode().splitlines()
    assert len(trials) == 1 + 2 and not any(",failed," in t for t in trials)
    model = storage.join(run, "models", "acc-ft")
    card = storage.read_json(storage.join(model, "classifier.json"))
    assert card["inputs"] == ["acc"] and card["provenance"]["dataset"] == "synthfit"
    predicted = storage.read_json(storage.join(run, "predict", "predictions", "summary.json"))
    assert predicted["recordings"] == 4 and predicted["windows"] > 0 and predicted["quarantined"] == 0
    device = storage.read_json(storage.join(model, "export", "model_card.json"))
    assert device["check"]["max_abs_diff_onnx"] <= 1e-5 and storage.exists(storage.join(model, "export",
                                                                                         "classifier.onnx"))
    # both nodes are still up and no job is left running
    from ray.job_submission import JobSubmissionClient
    from ray.util.state import list_actors, list_nodes

    assert sum(n.state == "ALIVE" for n in list_nodes(address=cluster["address"])) == 2
    # pretraining really was multi-node: its two workers (SPREAD) ran on different nodes (this job's workers: the
    # corpus chain trains beside it)
    client = JobSubmissionClient(cluster["address"])
    job_id = client.get_job_info(sids["pretrain"]).job_id
    workers = [a for a in list_actors(address=cluster["address"], detail=True, limit=10_000)
               if a.class_name.endswith("RayTrainWorker") and a.job_id == job_id]
    assert len({a.node_id for a in workers}) == 2, [(a.job_id, a.node_id) for a in workers]
    # no job of this chain is left running (the corpus chain's are joined by its own test)
    mine = [j for j in client.list_jobs() if not (j.submission_id or "").startswith(f"mujo-{CORPUS_JOB}")]
    assert all(j.status.is_terminal() for j in mine)


def test_every_other_job_on_its_shipped_config(cluster, s3_root, tmp_path):
    """The jobs the chain does not run, each on its shipped config with overrides for time only: ingest a dataset in
    its published layout (MHEALTH) into the run, evaluate the chain's pretrained model on it
    (jobs/configs/evaluate.yaml) and embed windows (main.yaml's embed section). The pretraining search on its
    shipped config (jobs/configs/search.yaml) runs in tests/test_search.py on a local Ray: a Tune experiment of
    Train runs needs nothing of a second node that the chain's fan-out and pretraining do not already prove."""
    from _fixtures_datasets import write_mhealth

    run = f"{s3_root}/cluster-runs/cluster"
    source = write_mhealth(tmp_path / "MHEALTHDATASET", subjects=(1, 2, 7, 9))
    ingest = subprocess.run([sys.executable, "jobs/ingest.py", "--dataset", "mhealth", "--source", str(source),
                             "--out", run], cwd=ROOT, env=cluster["env"], capture_output=True, text=True, timeout=300)
    assert ingest.returncode == 0, ingest.stderr[-3000:]
    evaluate = ["run_name=cluster", f"evaluate.pretrained={run}/pretrain/model", "evaluate.fractions=[1.0]",
                "evaluate.seeds=1", "evaluate.max_epochs=2", "evaluate.patience=2", "evaluate.cpus_per_trial=0.5"]
    sids = {"evaluate": _cli_submit(cluster, "evaluate", s3_root, config="evaluate", overrides=evaluate),
            "embed": _cli_submit(cluster, "embed", s3_root, overrides=OVERRIDES + ["embed.dataset=synthfit"])}
    for job, sid in sids.items():
        status, logs = _status(cluster, sid)
        assert status == "SUCCEEDED", f"{job}: {status}\n{logs[-4000:]}"
    results = storage.join(run, "results", "mhealth")
    table = storage.read_bytes(storage.join(results, "results.md")).decode()
    assert all(f"| acc | {s} |" in table for s in ("baseline", "frozen", "finetuned")), table
    assert storage.exists(storage.join(results, "zeroshot.md"))
    assert storage.list_files(storage.join(run, "embeddings", "synthfit"), ".parquet")


# ----------------------------------------------------------------------------------------------------------------
# Motion corpora (issue 17): a HumanML3D-layout corpus and a BYO multimodal corpus through the jobs
# ----------------------------------------------------------------------------------------------------------------

CORPUS_OVERRIDES = [  # the smallest data and model that still run every stage (docs/corpora.md, "The chain")
    "run_name=corpora", "model.embed_dim=32", "model.proj_hidden=32", "model.text_hidden=32",
    "model.video_hidden=32", "model.video_dim=16",
    "generate.datasets=[{name: humanml3d, video_dim: 16}, {name: mycorpus, video_dim: 16}]",
    "preprocess.trim_fraction=0.0",
    "pretrain.dataset=mycorpus", "pretrain.num_workers=1", "pretrain.batch_size=8", "pretrain.epochs=2",
    "pretrain.warmup_steps=1", "pretrain.fewshot_shots=1",
]
CORPUS_JOB = "corpus-"  # submission ids of the corpus chain start with mujo-corpus-


class CorpusChain(threading.Thread):
    """Issue 17's chain as a user submits it, in a thread of the test process: ingest both corpora (one job,
    jobs/ingest.py twice), one preprocess job for both, pretrain on the BYO corpus, evaluate the HumanML3D-layout
    corpus with that model. Its jobs write their own run folder (``corpora``), so no run lock stands between them and
    the main chain's: they share the cluster as two users' jobs would, and the module does not wait for them apart."""

    def __init__(self, cluster, s3_root: str, root: Path) -> None:
        super().__init__(name="corpus-chain", daemon=True)
        self.cluster, self.s3_root, self.root = cluster, s3_root, root
        self.run_uri = f"{s3_root}/cluster-runs/corpora"
        self.sids: dict[str, str] = {}
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._chain()
        except BaseException as exc:  # noqa: BLE001 - handed to the test that joins the thread
            self.error = exc

    def _chain(self) -> None:
        from test_corpus_adapters import MOTIONS, write_byo_corpus, write_humanml3d

        run, root = self.run_uri, self.root
        motions = dict(MOTIONS)  # val and test motions of known classes for the evaluation's splits
        motions.update({f"00001{i}": (a, 4.0, 20 + i, s, [f"a person {w}#x#0.0#0.0"]) for i, (a, s, w) in enumerate(
            [("walking", "val", "walks"), ("running", "val", "runs"), ("walking", "test", "walks"),
             ("running", "test", "runs"), ("squats", "test", "squats")])})
        write_humanml3d(root / "HumanML3D", motions)
        card = write_byo_corpus(root / "corpus", {"train": 6, "val": 3})
        ingest = ["sh", "-c", shlex.join(["python", "jobs/ingest.py", "--dataset", "humanml3d", "--source",
                                           str(root / "HumanML3D"), "--out", run, "--option", "min_seconds=2.0"])
                  + " && " + shlex.join(["python", "jobs/ingest.py", "--card", str(card), "--out", run])]
        evaluate = CORPUS_OVERRIDES + [
            f"evaluate.pretrained={run}/pretrain/model", "evaluate.dataset=humanml3d", "evaluate.inputs=[[acc]]",
            "evaluate.settings=[frozen]", "evaluate.fractions=[1.0]", "evaluate.seeds=1", "evaluate.max_epochs=2",
            "evaluate.patience=2", "evaluate.cpus_per_trial=0.5",
            "evaluate.zero_shot_calibrations=[none, unsupervised]"]
        for job, kwargs in (("ingest", {"entrypoint": ingest}), ("preprocess", {"overrides": CORPUS_OVERRIDES}),
                            ("pretrain", {"overrides": CORPUS_OVERRIDES}),
                            ("evaluate", {"config": "evaluate", "overrides": evaluate})):
            self.sids[job] = _cli_submit(self.cluster, job, self.s3_root, prefix=CORPUS_JOB, **kwargs)


@pytest.fixture(scope="module")
def corpus_chain(cluster, s3_root, tmp_path_factory):
    """The corpus chain, started the first time a test asks for it (the main chain asks first, so both chains run
    side by side); joined at the end of the module at the latest, so no job outlives it."""
    chain = CorpusChain(cluster, s3_root, tmp_path_factory.mktemp("corpora"))
    chain.start()
    yield chain
    chain.join(timeout=600)  # then the cluster's teardown ends whatever is left


def test_corpus_chain_as_jobs(corpus_chain):
    """Issue 17's chain by `ray job submit`: a HumanML3D-layout corpus and a BYO multimodal corpus (video + pose +
    several texts per clip) ingested, windowed by one preprocess job, the BYO corpus pretrained on (Ray Train: its
    caption alternatives drawn per epoch), the HumanML3D-layout corpus evaluated with that model (one fan-out cell and
    zero-shot, calibrated on the BYO corpus). Fixture writers: tests/test_corpus_adapters.py."""
    from mujo.schema import check_shards, read_shard

    corpus_chain.join(timeout=1200)
    assert not corpus_chain.is_alive(), f"the corpus chain is still running: {corpus_chain.sids}"
    if corpus_chain.error is not None:
        raise corpus_chain.error
    cluster, run = corpus_chain.cluster, corpus_chain.run_uri
    for job, sid in corpus_chain.sids.items():
        status, logs = _status(cluster, sid)
        assert status == "SUCCEEDED", f"{job}: {status}\n{logs[-4000:]}"
    assert "starting a local Ray" not in _status(cluster, corpus_chain.sids["pretrain"])[1]

    hml = storage.read_json(storage.join(run, "raw", "humanml3d", "dataset.json"))
    byo = storage.read_json(storage.join(run, "raw", "mycorpus", "dataset.json"))
    assert hml["clips"] == 11 and byo["clips"] == 9
    # one preprocess job windowed both; the corpora's caption alternatives are in the shards (schema 1.1)
    manifests = {d: storage.read_json(storage.join(run, "shards", d, "manifest.json")) for d in ("humanml3d",
                                                                                                  "mycorpus")}
    for d, m in manifests.items():
        assert m["schema_version"] == "1.1" and m["rows"]["train"] > 0 and m["quarantine"]["count"] == 0, d
    assert check_shards(manifests["mycorpus"]["shards"]["train"]).captions == 4  # preprocess.caption_alternatives
    windows = read_shard(manifests["mycorpus"]["shards"]["train"][0]).to_pydict()
    by_clip = dict(zip(windows["clip_id"], windows["captions"]))
    assert by_clip["mycorpus-clip002"] == ["wave hand", "greeting", "waves hello"]
    # pretrained on the BYO corpus (its texts drawn per epoch), then evaluated on the HumanML3D-layout corpus
    history = storage.read_json(storage.join(run, "pretrain", "model", "history.json"))
    assert history[-1]["step"] >= 2 and all(np.isfinite(h["loss"]) for h in history)
    results = storage.join(run, "results", "humanml3d")
    table = storage.read_bytes(storage.join(results, "results.md")).decode()
    assert "| acc | frozen |" in table, table
    zero_shot = storage.read_bytes(storage.join(results, "zeroshot.md")).decode()
    assert "| acc | none |" in zero_shot and "| acc | unsupervised |" in zero_shot, zero_shot


def test_no_secret_in_any_file(cluster, s3_root):
    """After the whole chain (Tune fan-out included), no file of the cluster's temporary folders (Ray's logs, the
    runtime-env agent's log among them), no file of the runs on S3 and no job log holds a credential. Runs after
    ``test_chain_on_two_nodes`` and ``test_corpus_chain_as_jobs`` (same module cluster), which ran every stage with
    the fake credentials."""
    secrets = [v.encode() for v in FAKE_SECRETS.values()]
    leaks = []
    scanned = 0
    for top in cluster["temp_dirs"]:
        for dirpath, _, files in os.walk(top):
            for name in files:
                path = os.path.join(dirpath, name)
                try:
                    with open(path, "rb") as f:
                        data = f.read()
                except OSError:
                    continue
                scanned += 1
                leaks += [(path, s[:20]) for s in secrets if s in data]
    for uri in storage.list_files(f"{s3_root}/cluster-runs"):  # both chains' runs
        scanned += 1
        data = storage.read_bytes(uri)
        leaks += [(uri, s[:20]) for s in secrets if s in data]
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(cluster["address"])
    for j in client.list_jobs():
        logs = client.get_job_logs(j.submission_id).encode()
        leaks += [(f"job {j.submission_id}", s[:20]) for s in secrets if s in logs]
    assert scanned > 100, scanned  # the chain ran and wrote logs
    assert not leaks, leaks

