"""Autoscaling, proven on a local autoscaling cluster (``cluster/local_autoscaler.py``: Ray's real autoscaler with the
fake multi-node provider and ``cluster/aws.yaml``'s node types): the main job submitted with ``ray job submit`` to
a head that holds no worker resources makes the autoscaler add CPU and "GPU" worker nodes; its elastic pretraining
group shrinks from 2 workers to 1 when a GPU node is killed mid-run with no GPU capacity to replace it (a spot
preemption, the provider refusing launches), goes on from the last checkpoint, grows back to 2 when the capacity
returns and the autoscaler launches a node, and ends at the right step with every step made once; the idle nodes go
away. Requests no node type can meet fail at once (``mujo.capacity``).

The cluster test prints the measured figures (time to the first worker node, job wall time, time until the idle
nodes are gone, the times to shrink and to grow back, the steps run at each size) that docs/cluster.md quotes.
``MUJO_KEEP_TEST_RUNS=<folder>`` keeps the job's run folders and copies the autoscaler's log there.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
import yaml

from mujo import capacity, storage
from mujo.config import ConfigError, load_config
from mujo.train.trainer import lr_lambda

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "cluster"))

import local_autoscaler  # noqa: E402
from ray.autoscaler._private.fake_multi_node.node_provider import FakeMultiNodeProvider  # noqa: E402

AWS = yaml.safe_load((ROOT / "cluster" / "aws.yaml").read_text())
IDLE_MINUTES = 0.25  # 15 s instead of aws.yaml's 10 minutes
GPU_TYPES = ("gpu_ondemand", "gpu_spot")  # held after the preemption: no GPU node of either kind until restored
# 3 steps an epoch (the ~55 train windows // 16): the kill comes at the first checkpoint (step 3), the one-worker
# group's first checkpoint (step 6) brings the capacity back, and its remaining 24 steps must outlast the grow-back
# (a launch, Ray Train's 20-s view of the nodes, a restart: about 40-65 s whatever the load, while the one-worker
# group's pace depends on it: at load ~15 it made 12 steps in the 42 s of a grow-back, at ~40 only 3 in 64 s)
EPOCHS, CHECKPOINT_EVERY, GLOBAL_BATCH = 10, 3, 16

# the main job, small: 4 activities, short pretraining epochs of an elastic group of 1-2 "GPU" workers, one fan-out
# trial
JOB = [
    "run_name=autoscale", "generate.clips_per_task=8",
    "generate.datasets=[{name: synthfit, activities: [squats, bicep_curls, jumping_jacks, pushups], "
    "subjects: {train: 3, val: 1, test: 1}, clip_seconds: [8, 10]}]",
    "model.embed_dim=32", "model.proj_hidden=32", "model.text_hidden=32", "model.video_hidden=32",
    "pretrain.dataset=synthfit", "pretrain.batch_size=8", f"pretrain.epochs={EPOCHS}", "pretrain.warmup_steps=1",
    f"pretrain.checkpoint_every_steps={CHECKPOINT_EVERY}", f"pretrain.report_every_steps={CHECKPOINT_EVERY}",
    "pretrain.num_workers=[1, 2]",
    # a Train worker takes 32 of a "GPU" node's 48 CPUs: one worker per node, so a lost node is one lost worker (Ray
    # Train's elastic policy counts workers per node from resources alone, not from the placement strategy)
    "pretrain.cpus_per_worker=32", "pretrain.use_gpu=true", "pretrain.simulated_gpus=true",
    # the group looks for room to grow every 2 s (Ray Train's coordinator refreshes its view of the nodes every 20 s)
    "pretrain.resize_interval_s=2", "pretrain.max_failures=6",
    "pretrain.fewshot_shots=0",
    # the fan-out on CPU nodes (its sizing would give trials a share of the declared, simulated GPUs)
    "evaluate.cpus_per_trial=1", "evaluate.gpus_per_trial=0",
    "evaluate.dataset=synthfit", "evaluate.inputs=[[acc]]", "evaluate.settings=[frozen]", "evaluate.fractions=[1.0]",
    "evaluate.seeds=1", "evaluate.max_epochs=1", "evaluate.patience=1", "evaluate.zero_shot=false",
    "predict.after_main=false",
]
# after a lost node Ray Train first tries the old size again (its view of the nodes is up to 20 s old) and waits
# this long for the placement group before it tries a size that fits (default 60 s)
JOB_ENV = {"RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "5"}
# the GCS declares a node dead after 5 failed health checks, 3 s apart by default: 1 s here (a killed raylet refuses
# the connection at once; a live but busy one answers within the check's 10-s timeout)
CLUSTER_ENV = {"RAY_health_check_period_ms": "1000"}


# ---- the generated cluster and the capacity check: no Ray ----------------------------------------------------------

def test_local_cluster_has_the_node_types_of_aws_yaml():
    cfg = local_autoscaler.generate(idle_timeout_minutes=IDLE_MINUTES)
    assert cfg["provider"]["type"] == "external"  # Ray's fake multi-node provider (local_autoscaler.LocalNodeProvider)
    assert issubclass(local_autoscaler.LocalNodeProvider, FakeMultiNodeProvider)
    for key in ("max_workers", "upscaling_speed"):
        assert cfg[key] == AWS[key]
    assert cfg["idle_timeout_minutes"] == IDLE_MINUTES
    assert local_autoscaler.generate()["idle_timeout_minutes"] == AWS["idle_timeout_minutes"]
    local = cfg["available_node_types"]
    assert set(local) == (set(AWS["available_node_types"]) - {AWS["head_node_type"]}) | {"ray.head.default"}
    for name, spec in AWS["available_node_types"].items():
        mine = local["ray.head.default" if name == AWS["head_node_type"] else name]
        resources = {k: v for k, v in mine["resources"].items() if k != "object_store_memory"}
        assert resources == spec["resources"], name
        assert mine["labels"] == {"node-type": name}
        if name != AWS["head_node_type"]:
            assert (mine["min_workers"], mine["max_workers"]) == (spec["min_workers"], spec["max_workers"])
    assert local["ray.head.default"]["resources"]["CPU"] == 0  # the head holds no worker resources
    assert local["gpu_spot"]["resources"]["GPU"] == 4


def test_requests_no_node_type_can_meet_are_named(tmp_path, monkeypatch):
    path = tmp_path / "autoscaling.yaml"
    path.write_text(yaml.safe_dump(local_autoscaler.generate()))
    _, types = capacity.node_types(str(path))
    assert capacity.unsatisfiable([{"CPU": 1, "GPU": 1}] * 24, types) is None  # 6 GPU nodes x 4
    assert capacity.unsatisfiable([{"CPU": 1, "GPU": 1}] * 4, types, "STRICT_PACK") is None
    assert "no node type has {'GPU': 8.0}" in capacity.unsatisfiable([{"GPU": 8}], types)
    assert "STRICT_PACK" in capacity.unsatisfiable([{"CPU": 1, "GPU": 1}] * 5, types, "STRICT_PACK")
    assert "distinct nodes" in capacity.unsatisfiable([{"CPU": 1, "GPU": 1}] * 7, types, "STRICT_SPREAD")
    assert "(25 in all)" not in (capacity.unsatisfiable([{"CPU": 1, "GPU": 1}] * 25, types) or "")
    assert "24 in all" in capacity.unsatisfiable([{"CPU": 1, "GPU": 1}] * 25, types)
    # pretraining: its workers at the group's minimum; the message names the request, the node types and the fix
    cfg = load_config(None, ["pretrain.use_gpu=true", "pretrain.num_workers=[5, 8]", "pretrain.batch_size=105",
                             "pretrain.placement_strategy=STRICT_PACK"])
    with pytest.raises(ConfigError) as err:
        capacity.check_pretrain(cfg.pretrain, path=str(path))
    message = str(err.value)
    assert "pretrain asks for 5 x {'CPU': 0.5, 'GPU': 1.0} (STRICT_PACK)" in message
    assert "gpu_spot {CPU: 48, GPU: 4} x4" in message and "cpu_worker {CPU: 16} x8" in message
    assert "pretrain.num_workers" in message
    capacity.check_pretrain(load_config(None, ["pretrain.use_gpu=true", "pretrain.num_workers=4"]).pretrain,
                            path=str(path))
    monkeypatch.delenv(capacity.ENV, raising=False)
    capacity.check_pretrain(cfg.pretrain)  # no cluster config known (a fixed cluster): nothing to check against
    monkeypatch.setenv(capacity.ENV, str(path))
    with pytest.raises(ConfigError, match="can never place"):
        capacity.check_pretrain(cfg.pretrain)


def test_capacity_holds_refuse_launches_until_they_end_or_are_restored(tmp_path, monkeypatch):
    """The spot-capacity knob: a held node type is refused by the provider (as a cloud without capacity refuses a
    launch) until the hold's seconds are over or the capacity is restored; other types launch as usual."""
    from ray.autoscaler.node_launch_exception import NodeLaunchException
    from ray.autoscaler.tags import TAG_RAY_USER_NODE_TYPE

    path = tmp_path / "capacity.json"
    assert local_autoscaler.capacity_refusal(path, "gpu_spot") is None  # no file: no hold
    local_autoscaler.hold_capacity(path, ["gpu_spot"], 60, reason="preempted", now=1000.0)
    local_autoscaler.hold_capacity(path, ["gpu_ondemand"], None, reason="no on-demand capacity")
    assert local_autoscaler.capacity_refusal(path, "gpu_spot", now=1010.0) == \
        "no gpu_spot capacity for 50 s more (preempted)"
    assert local_autoscaler.capacity_refusal(path, "gpu_spot", now=1060.0) is None  # the gap is over
    assert "until restored" in local_autoscaler.capacity_refusal(path, "gpu_ondemand")
    assert local_autoscaler.capacity_refusal(path, "cpu_worker") is None

    monkeypatch.setenv("RAY_FAKE_CLUSTER", "1")  # the fake provider refuses to exist without it
    provider = local_autoscaler.LocalNodeProvider({"capacity_file": str(path)}, "test")
    with pytest.raises(NodeLaunchException, match="no gpu_ondemand capacity until restored") as err:
        provider.create_node_with_resources_and_labels({}, {TAG_RAY_USER_NODE_TYPE: "gpu_ondemand"}, 1,
                                                       {"CPU": 48, "GPU": 4}, {})
    assert err.value.category == "InsufficientCapacity"  # what the autoscaler's availability report shows
    local_autoscaler.restore_capacity(path, ["gpu_ondemand"])
    assert local_autoscaler.capacity_refusal(path, "gpu_ondemand") is None
    assert local_autoscaler.generate(capacity_file=str(path))["provider"]["capacity_file"] == str(path)


# ---- the local autoscaling cluster -------------------------------------------------------------------------------

class NodeCounts(threading.Thread):
    """Worker nodes per type every ~2 s, from Ray's state API (``list_nodes``), with their times."""

    def __init__(self, cluster):
        super().__init__(daemon=True)
        self.cluster, self.samples, self.stopped = cluster, [], threading.Event()

    def run(self):
        while not self.stopped.is_set():
            try:
                self.samples.append((time.time(), self.cluster.counts()))
            except Exception:  # the dashboard is busy: skip a sample
                pass
            self.stopped.wait(2)

    def first(self, pred) -> float | None:
        return next((t for t, c in self.samples if pred(c)), None)


@pytest.fixture(scope="module")
def autoscaling():
    # folders of its own, not pytest's: other pytest sessions on a shared machine prune pytest's numbered folders
    state = tempfile.mkdtemp(prefix="mujo-as-state-", dir="/tmp")
    # a lost node is noticed after 15 s without a heartbeat (Ray's default: 30 s)
    for attempt in (1, 2):  # `ray start` gives its raylet 30 s to register: on a machine loaded by others it once
        try:                # did not (`up` then stops what it started), so it gets one more try
            cluster = local_autoscaler.up(state, idle_timeout_minutes=IDLE_MINUTES, heartbeat_timeout_s=15,
                                          env=CLUSTER_ENV)
            break
        except BaseException as exc:
            if attempt == 2 or not isinstance(exc, RuntimeError):
                shutil.rmtree(state, ignore_errors=True)
                raise
    try:
        yield cluster
    finally:
        keep = os.environ.get("MUJO_KEEP_TEST_RUNS")  # a folder: the autoscaler's log goes there
        if keep:
            for log in Path(cluster.state["temp_dir"]).glob("session_latest/logs/monitor.*"):
                shutil.copy(log, Path(keep) / log.name)
        cluster.down(grace_s=3)  # its state is thrown away: no need to wait for a clean Ray shutdown
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
def run_root():
    root = tempfile.mkdtemp(prefix="mujo-as-runs-", dir="/tmp")
    yield root
    if not os.environ.get("MUJO_KEEP_TEST_RUNS"):  # set it to read a run's logs after the test
        shutil.rmtree(root, ignore_errors=True)


def _submit(cluster, overrides: list[str], root: str) -> str:
    from ray.job_submission import JobSubmissionClient

    import shlex

    runtime_env = yaml.safe_load((ROOT / "jobs" / "runtime_env.yaml").read_text())
    runtime_env["working_dir"] = str(ROOT)
    runtime_env["py_modules"] = [str(ROOT / p) for p in runtime_env["py_modules"]]
    # several Ray instances share this machine: Ray's own state-API calls inside the job (Train's placement group
    # cleaner) must not guess which one is theirs
    runtime_env["env_vars"] = {"RAY_ADDRESS": cluster.gcs_address, **JOB_ENV}
    sets = [a for o in overrides + [f"storage.root={root}"] for a in ("--set", o)]
    entry = ["python", "jobs/main.py", "--config", "jobs/configs/main.yaml", *sets]
    return JobSubmissionClient(cluster.address).submit_job(entrypoint=shlex.join(entry), runtime_env=runtime_env,
                                                           submission_id=f"mujo-as-{uuid.uuid4().hex[:8]}")


def _train_worker_nodes(cluster) -> set[str]:
    from ray.util.state import list_actors

    return {a.node_id for a in list_actors(address=cluster.address, detail=True, limit=10_000,
                                           filters=[("state", "=", "ALIVE")])
            if a.class_name.endswith("RayTrainWorker")}


def _reported_step(progress: Path) -> int:
    """The last step Ray Train's controller processed a report (and its checkpoint) of."""
    try:
        return int(json.loads(progress.read_text()).get("step") or 0)
    except (OSError, ValueError, TypeError):
        return 0


@pytest.mark.ray
@pytest.mark.cluster
def test_unsatisfiable_request_fails_fast(autoscaling, run_root):
    """A job whose fan-out trials ask for 8 GPUs (the nodes have 4) stops at once, naming the request and the node
    types, instead of pending forever; nothing was launched for it."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(autoscaling.address)
    t0 = time.time()
    sid = _submit(autoscaling, JOB + ["evaluate.gpus_per_trial=8"], run_root)
    while not client.get_job_status(sid).is_terminal():
        assert time.time() < t0 + 120, "the job did not fail fast"
        time.sleep(1)
    logs = client.get_job_logs(sid)
    assert client.get_job_status(sid) == JobStatus.FAILED, logs[-3000:]
    assert "error: the fan-out (a Tune trial) asks for 1 x {'CPU': 1.0, 'GPU': 8.0}" in logs, logs[-3000:]
    assert "gpu_spot {CPU: 48, GPU: 4} x4" in logs and "evaluate.gpus_per_trial" in logs
    assert "Traceback" not in logs and autoscaling.counts() == {}
    print(f"\nunsatisfiable request: job failed {time.time() - t0:.0f} s after submission")


@pytest.mark.ray
@pytest.mark.cluster
def test_main_job_scales_up_shrinks_and_grows_on_a_preemption_and_scales_down(autoscaling, run_root):
    """The main job from a head with no worker resources: CPU and "GPU" nodes come for its stages; one of the two
    GPU nodes of the elastic pretraining group is killed once a checkpoint is registered, with no GPU capacity to
    replace it (a reclaimed spot pool, on-demand out of capacity), so the group shrinks to one worker and goes on
    from that checkpoint; once the one-worker group has registered a checkpoint of its own the capacity returns,
    the autoscaler launches a node and the group grows back to two from that checkpoint. The run ends at the right
    step, every step exactly once, at the global batch of 16 whatever the group's size; idle nodes go away."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(autoscaling.address)
    assert autoscaling.counts() == {}  # the head alone
    counts = NodeCounts(autoscaling)
    counts.start()
    root = run_root
    progress = Path(root) / "autoscale" / "logs" / "pretrain-progress.json"  # rank 0's reports (mujo.progress)
    t_submit = time.time()
    sid = _submit(autoscaling, JOB, root)
    killed: dict = {}
    restored: dict = {}
    deadline = t_submit + 900  # a guard against a hung job, not a budget: the shared machine can be very slow
    while client.get_job_status(sid) not in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
        assert time.time() < deadline, client.get_job_logs(sid)[-4000:]
        step = _reported_step(progress)
        if not killed and step >= CHECKPOINT_EVERY:  # a checkpoint is registered: preempt if the full group runs
            workers = _train_worker_nodes(autoscaling)
            if len(workers) == 2:
                killed = autoscaling.preempt(sorted(workers)[0], gap_s=None, gap_types=GPU_TYPES)
                killed["step"] = step
        elif killed and not restored and step >= killed["step"] + CHECKPOINT_EVERY:
            # the one-worker group has registered a checkpoint of its own: the GPU capacity comes back
            if len(_train_worker_nodes(autoscaling)) == 1:
                autoscaling.restore_capacity()
                restored = {"time": time.time(), "step": step}
        time.sleep(1)
    t_done = time.time()
    autoscaling.restore_capacity()  # whatever happened
    logs = client.get_job_logs(sid)
    if client.get_job_status(sid) != JobStatus.SUCCEEDED:  # the console's tail, then the full log's (the traceback)
        full = "".join(p.read_text(errors="replace") for p in (Path(root) / "autoscale" / "logs").glob("main-*.log"))
        pytest.fail(f"the main job failed:\n{logs[-3000:]}\n--- full log, last lines:\n{full[-6000:]}")
    while autoscaling.counts() and time.time() < t_done + 120:  # idle nodes go after the idle timeout
        time.sleep(1)
    t_idle = time.time()
    counts.stopped.set()
    counts.join()
    assert autoscaling.counts() == {}, "idle worker nodes were not removed"

    # the autoscaler brought CPU nodes for the Ray tasks / Data / Tune and "GPU" nodes for the Train workers
    peak = {t: max(c.get(t, 0) for _, c in counts.samples) for t in ("cpu_worker", "gpu_ondemand", "gpu_spot")}
    assert peak["cpu_worker"] >= 1, counts.samples
    assert 2 <= peak["gpu_ondemand"] + peak["gpu_spot"], counts.samples
    for name, n in peak.items():
        assert n <= AWS["available_node_types"][name]["max_workers"]

    # the group: 2 workers, 1 after the preemption (from the checkpoint registered before it), 2 again after the
    # capacity came back (from the one-worker group's checkpoint); restarts at the same size may come in between
    assert killed, "the full group never ran with a checkpoint registered: nothing was preempted"
    assert restored, f"the group never ran on one worker with a checkpoint of its own: {_tail(root)}"
    model = Path(root) / "autoscale" / "pretrain" / "model"
    history = json.loads((model / "history.json").read_text())
    resizes = json.loads((model / "resizes.json").read_text())
    sizes = [r["workers"] for r in resizes if r["event"] != "restart"]
    assert sizes == [2, 1, 2], resizes
    assert resizes[0]["event"] == "start" and resizes[0]["step"] == 0
    shrink = next(r for r in resizes if r["event"] == "resize" and r["workers"] == 1)
    grow = next(r for r in resizes if r["event"] == "resize" and r["workers"] == 2)
    assert killed["time"] < shrink["time"] < restored["time"] < grow["time"], (killed, restored, resizes)
    # resumed from checkpoints (every CHECKPOINT_EVERY steps): the one registered before the kill (nothing lost
    # beyond the steps since it), and the one-worker group's own before the grow
    assert shrink["step"] >= killed["step"] and shrink["step"] % CHECKPOINT_EVERY == 0, (killed, resizes)
    assert grow["step"] >= shrink["step"] + CHECKPOINT_EVERY and grow["step"] % CHECKPOINT_EVERY == 0, resizes
    assert all(r["per_worker_batch"] * r["workers"] == r["global_batch"] == GLOBAL_BATCH for r in resizes)

    # every step exactly once, each made at the fixed global batch by the group that ran it, the run ended at the
    # step a fixed group ends at (epochs x train_rows // global batch)
    manifest = storage.read_json(str(Path(root) / "autoscale" / "shards" / "synthfit" / "manifest.json"))
    total = manifest["rows"]["train"] // GLOBAL_BATCH * EPOCHS
    assert [h["step"] for h in history] == list(range(1, total + 1))
    assert all(h["per_worker_batch"] * h["workers"] == GLOBAL_BATCH for h in history)
    by_size = {w: [h["step"] for h in history if h["workers"] == w] for w in (1, 2)}
    assert by_size[1] == list(range(shrink["step"] + 1, grow["step"] + 1)), by_size
    assert by_size[2] == list(range(1, shrink["step"] + 1)) + list(range(grow["step"] + 1, total + 1)), by_size
    # the same schedule as a run that never resized: each step's learning rate is the schedule's at that step (the
    # optimiser and scheduler states came through both restarts; the step count does not depend on the group)
    cfg = load_config(ROOT / "jobs" / "configs" / "main.yaml", JOB)
    schedule_at = lr_lambda(cfg.pretrain.warmup_steps, total)
    assert [h["lr"] for h in history] == pytest.approx([cfg.pretrain.lr * schedule_at(s) for s in range(1, total + 1)],
                                                       rel=1e-9, abs=1e-15)
    assert (Path(root) / "autoscale" / "results" / "synthfit" / "results.md").exists()

    first_node = counts.first(lambda c: sum(c.values()) > 0)
    steps_at = {w: len(v) for w, v in by_size.items()}
    print(f"\nautoscaling figures: first worker node {first_node - t_submit:.0f} s after submission; job wall time "
          f"{t_done - t_submit:.0f} s; idle nodes gone {t_idle - t_done:.0f} s after the job "
          f"(idle timeout {IDLE_MINUTES * 60:.0f} s); preemption of a {killed['type']} node at step {killed['step']}: "
          f"shrank to 1 worker from step {shrink['step']} {shrink['time'] - killed['time']:.0f} s after the kill; "
          f"capacity back {restored['time'] - killed['time']:.0f} s after the kill; grew to 2 workers from step "
          f"{grow['step']} {grow['time'] - restored['time']:.0f} s after the capacity came back; steps run at 2/1/2 "
          f"workers: {shrink['step']}/{steps_at[1]}/{total - grow['step']} (of {total}); group (re)starts "
          f"{[(r['event'], r['workers'], r['step']) for r in resizes]}; peak nodes {peak}")


def _tail(root: str) -> str:
    full = "".join(p.read_text(errors="replace") for p in (Path(root) / "autoscale" / "logs").glob("main-*.log"))
    return full[-4000:]
