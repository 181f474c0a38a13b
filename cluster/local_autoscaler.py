"""A local autoscaling Ray cluster generated from ``cluster/aws.yaml``: Ray's real autoscaler on one machine.

Ray's fake multi-node provider (``provider: type: fake_multinode``, started with ``RAY_FAKE_CLUSTER=1 ray start
--head --autoscaling-config=...``; Ray's docs: "Testing Autoscaling Locally"; here through :class:`LocalNodeProvider`,
which gives each node its own runtime-environment folder) launches "nodes" as local raylets with
the resources their node type declares, GPUs included, and terminates them when they are idle. The node types,
their resources and every scaling limit (``max_workers`` per type and in all, ``upscaling_speed``,
``idle_timeout_minutes``) are read from ``cluster/aws.yaml`` every time the cluster starts, so the two cannot drift;
what differs is only what has no meaning on one machine (instance types, AMIs, set-up commands, SSH) and:

- the head type is named ``ray.head.default`` (the name the fake provider gives its head); it keeps ``aws.yaml``'s
  ``head`` resources (``CPU: 0``: no task, trial or Train worker runs on the head, as on EC2);
- every node carries the label ``node-type=<type>`` (how the tests count nodes per type) and a small object store;
- ``--idle-timeout-minutes`` may shorten the idle timeout (the tests use seconds, not 10 minutes);
- declared GPUs are only resource counts: a job runs pretraining with ``pretrain.use_gpu=true`` and
  ``pretrain.simulated_gpus=true`` (gloo on CPU, the GPU requests unchanged);
- capacity can be taken away: ``preempt`` kills a worker node (SIGKILL, no notice) and can make the provider refuse
  launches of some node types for a while (:func:`hold_capacity`), the way a reclaimed spot pool is often empty for
  minutes and an on-demand request can fail with ``InsufficientInstanceCapacity``. The autoscaler sees the refusal as
  a failed launch (``NodeLaunchException``), retries every update, and launches when the capacity returns (after the
  given seconds, or when :func:`restore_capacity` / ``restore`` gives it back). Without a hold a lost node is
  replaced as soon as the autoscaler notices it, so an elastic group rarely gets to shrink.

The nodes get ``MUJO_CLUSTER_CONFIG`` (the generated YAML) in their environment, so a submitted job refuses requests
no node type can ever meet (``mujo.capacity``). Token authentication is off: the cluster listens on loopback only.

    python cluster/local_autoscaler.py up [--idle-timeout-minutes 0.5]    # or: make cluster-up
    python cluster/local_autoscaler.py status
    python cluster/local_autoscaler.py preempt <node_id> --gap-s 120 [--gap-types gpu_spot,gpu_ondemand]
    python cluster/local_autoscaler.py restore                           # the held capacity comes back now
    python cluster/local_autoscaler.py down                              # or: make cluster-down

``down`` stops exactly the processes this cluster started (those whose command line names its own temporary folder,
and their descendants), never ``ray stop``, which would end every Ray process of the user on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from mujo import procs as procs_mod

ROOT = Path(__file__).resolve().parent.parent
AWS_YAML = ROOT / "cluster" / "aws.yaml"
STATE_DIR = ROOT / "runs" / "local-cluster"
HEAD_TYPE = "ray.head.default"  # the fake provider tags its head with this type
LABEL = "node-type"
RAY = str(Path(sys.executable).parent / "ray")
# keys of a launcher config that mean something on one machine; the rest (AMIs, set-up, SSH, file mounts) does not
SCALING_KEYS = ("max_workers", "upscaling_speed", "idle_timeout_minutes")


def hold_capacity(path: str | Path, node_types, seconds: float | None = None, reason: str = "",
                  now: float | None = None) -> dict:
    """Refuse launches of ``node_types`` for ``seconds`` (None: until :func:`restore_capacity`). The holds live in the
    JSON file ``path``, which the provider (in the autoscaler's process) reads at every launch; returns the holds."""
    path = Path(path)
    holds = _holds(path)
    until = None if seconds is None else (time.time() if now is None else now) + seconds
    for node_type in node_types:
        holds[node_type] = {"until": until, "reason": reason}
    _write_holds(path, holds)
    return holds


def restore_capacity(path: str | Path, node_types=None) -> None:
    """End the holds on ``node_types`` (all when None): their launches succeed again from the next update."""
    path = Path(path)
    holds = _holds(path)
    for node_type in list(holds) if node_types is None else node_types:
        holds.pop(node_type, None)
    _write_holds(path, holds)


def capacity_refusal(path: str | Path | None, node_type: str, now: float | None = None) -> str | None:
    """Why a launch of ``node_type`` is refused now (a hold in ``path``), or None."""
    hold = _holds(Path(path)).get(node_type) if path else None
    if hold is None:
        return None
    now = time.time() if now is None else now
    if hold["until"] is not None and now >= hold["until"]:
        return None
    left = "until restored" if hold["until"] is None else f"for {hold['until'] - now:.0f} s more"
    return f"no {node_type} capacity {left} ({hold.get('reason') or 'held'})"


def _holds(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # no hold yet (or a file being replaced: os.replace is atomic, so none)
        return {}


def _write_holds(path: Path, holds: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(holds))
    os.replace(tmp, path)  # the provider never reads half a file


def _provider_class():
    """Ray's fake multi-node provider with one change: each node unpacks runtime environments (a job's working_dir)
    into a folder of its own. Its nodes share the head's session folder, so without it a node setting up a job's
    working_dir replaces the folder the job's driver runs in (seen: the fan-out's driver lost its working directory
    when its trial started on a new node). The provider builds each node's ``RayParams`` itself; the name of that
    folder is one of them, so the wrapper below only adds it."""
    import threading

    import ray._private.parameter as parameter
    from ray.autoscaler._private.fake_multi_node.node_provider import FakeMultiNodeProvider
    from ray.autoscaler.node_launch_exception import NodeLaunchException
    from ray.autoscaler.tags import (NODE_KIND_WORKER, STATUS_UP_TO_DATE, TAG_RAY_NODE_KIND, TAG_RAY_NODE_STATUS,
                                     TAG_RAY_USER_NODE_TYPE)

    patching = threading.Lock()  # the autoscaler launches nodes from several threads

    class LocalNodeProvider(FakeMultiNodeProvider):
        def create_node_with_resources_and_labels(self, node_config, tags, count, resources, labels):
            # a held node type is refused the way a cloud refuses a launch without capacity: the autoscaler
            # records the failure, retries at its next update and meanwhile counts no node for it
            refusal = capacity_refusal(self.provider_config.get("capacity_file"), tags.get(TAG_RAY_USER_NODE_TYPE))
            if refusal:
                raise NodeLaunchException("InsufficientCapacity", refusal, None)
            return super().create_node_with_resources_and_labels(node_config, tags, count, resources, labels)

        def _create_node_with_resources_and_labels(self, node_config, tags, count, resources, labels):
            original = parameter.RayParams

            def params(*args, **kwargs):
                node_id = (kwargs.get("env_vars") or {}).get("RAY_OVERRIDE_NODE_ID_FOR_TESTING", "")
                kwargs.setdefault("runtime_env_dir_name", f"runtime_resources_{node_id[-8:]}")
                return original(*args, **kwargs)

            with patching:
                parameter.RayParams = params
                try:
                    super()._create_node_with_resources_and_labels(node_config, tags, count, resources, labels)
                finally:
                    parameter.RayParams = original
            # the node's raylet runs once the call returns: it is set up (on EC2 the node updater says so after the
            # set-up commands). Left "uninitialized", as the fake provider leaves it, the autoscaler never applies
            # its liveness check to it, so a killed node stayed in the cluster's books for good, its resources
            # counted towards every resource request, and was never replaced
            with self.lock:
                for node in self._nodes.values():
                    if node["tags"].get(TAG_RAY_NODE_KIND) == NODE_KIND_WORKER:
                        node["tags"][TAG_RAY_NODE_STATUS] = STATUS_UP_TO_DATE

    return LocalNodeProvider


try:  # what the autoscaler loads (provider type "external", module local_autoscaler.LocalNodeProvider)
    LocalNodeProvider = _provider_class()
except ImportError:  # pragma: no cover - a Ray without the fake provider
    LocalNodeProvider = None


def generate(aws_yaml: str | Path = AWS_YAML, gcs_address: str = "127.0.0.1:6379",
             idle_timeout_minutes: float | None = None, object_store_mb: int = 150,
             capacity_file: str | None = None) -> dict:
    """The fake-provider autoscaling config of ``aws_yaml``: the same node types, resources and scaling limits.
    ``capacity_file``: where the provider reads capacity holds (:func:`hold_capacity`)."""
    with open(aws_yaml) as f:
        src = yaml.safe_load(f)
    head = src["head_node_type"]
    types = {}
    for name, spec in src["available_node_types"].items():
        local = HEAD_TYPE if name == head else name
        resources = dict(spec.get("resources") or {})
        types[local] = {"resources": {**resources, "object_store_memory": object_store_mb * 2**20},
                        "labels": {LABEL: name}, "node_config": {},
                        "min_workers": 0 if name == head else int(spec.get("min_workers", 0)),
                        "max_workers": 0 if name == head else int(spec["max_workers"])}
    cfg = {key: src[key] for key in SCALING_KEYS if key in src}
    if idle_timeout_minutes is not None:
        cfg["idle_timeout_minutes"] = idle_timeout_minutes
    cfg.update({
        "cluster_name": f"{src.get('cluster_name', 'mujo')}-local",
        "provider": {"type": "external", "module": "local_autoscaler.LocalNodeProvider", "gcs_address": gcs_address,
                     "use_node_id_as_ip": True, **({"capacity_file": capacity_file} if capacity_file else {}),
                     "disable_node_updaters": True, "disable_launch_config_check": True},
        "auth": {"ssh_user": "ray"}, "head_node_type": HEAD_TYPE, "available_node_types": types,
        "file_mounts": {}, "cluster_synced_files": [], "file_mounts_sync_continuously": False,
        "rsync_exclude": [], "rsync_filter": [], "initialization_commands": [], "setup_commands": [],
        "head_setup_commands": [], "worker_setup_commands": [], "head_start_ray_commands": [],
        "worker_start_ray_commands": []})
    return cfg


class LocalCluster:
    """A running local autoscaling cluster, as ``up`` left it in ``<state_dir>/state.json``."""

    def __init__(self, state: dict):
        self.state = state

    @property
    def address(self) -> str:
        """The job server / dashboard (``ray job submit --address``)."""
        return self.state["address"]

    @property
    def gcs_address(self) -> str:
        return self.state["gcs_address"]

    @property
    def env(self) -> dict[str, str]:
        """The environment a client needs (``ray job submit``, ``ray status``)."""
        return {"RAY_AUTH_MODE": "disabled"}

    @classmethod
    def load(cls, state_dir: str | Path = STATE_DIR) -> "LocalCluster":
        path = Path(state_dir) / "state.json"
        if not path.exists():
            raise SystemExit(f"no local cluster recorded in {path}: start one with `make cluster-up`")
        return cls(json.loads(path.read_text()))

    def pids(self) -> list[int]:
        """Every process of this cluster: those naming its temporary folder, and their descendants."""
        return procs_mod.naming([self.state["temp_dir"]])

    def nodes(self) -> list[dict]:
        """Alive nodes: ``{"node_id", "type", "resources"}`` from Ray's state API (the head included)."""
        from ray.util.state import list_nodes

        out = []
        for n in list_nodes(address=self.address, detail=True, limit=1000, raise_on_missing_output=False):
            if n.state == "ALIVE":
                kind = (n.labels or {}).get(LABEL) or ("head" if n.is_head_node else "?")
                out.append({"node_id": n.node_id, "type": kind, "resources": dict(n.resources_total)})
        return out

    def counts(self) -> dict[str, int]:
        """Alive worker nodes per node type (the head is not counted)."""
        counts: dict[str, int] = {}
        for n in self.nodes():
            if n["type"] != "head":
                counts[n["type"]] = counts.get(n["type"], 0) + 1
        return counts

    @property
    def capacity_file(self) -> str:
        """Where this cluster's provider reads capacity holds (:func:`hold_capacity`)."""
        return self.state.get("capacity_file") or os.path.join(self.state["temp_dir"], "capacity.json")

    def preempt(self, node_id: str, gap_s: float | None = 0, gap_types=None) -> dict:
        """A spot preemption: kill worker node ``node_id`` (:meth:`kill_node`) and hold the capacity of its type (and
        of ``gap_types``) for ``gap_s`` seconds (None: until :meth:`restore_capacity`; 0: no hold, the autoscaler
        replaces the node as soon as it notices the loss). Returns what happened (time, node, type, held types)."""
        node_type = next((n["type"] for n in self.nodes() if n["node_id"] == node_id), None)
        if node_type is None or node_type == "head":
            raise ValueError(f"{node_id} is not an alive worker node of this cluster")
        held = sorted({node_type, *(gap_types or ())}) if gap_s != 0 else []
        if held:  # before the kill: the autoscaler may notice the loss at once
            hold_capacity(self.capacity_file, held, gap_s, reason=f"{node_type} node {node_id[:8]} preempted")
        t = time.time()
        pids = self.kill_node(node_id)
        return {"time": t, "node": node_id, "type": node_type, "held": held, "gap_s": gap_s, "pids": len(pids)}

    def restore_capacity(self, node_types=None) -> None:
        """Launches of ``node_types`` (all when None) succeed again from the autoscaler's next update."""
        restore_capacity(self.capacity_file, node_types)

    def kill_node(self, node_id: str) -> list[int]:
        """A spot preemption: SIGKILL the raylet of worker node ``node_id`` (of this cluster) and everything under it
        (its workers and agents). Returns the process ids killed."""
        procs = procs_mod.processes()
        roots = {pid for pid, (_, cmd) in procs.items()
                 if self.state["temp_dir"] in cmd and f"--node_id={node_id}" in cmd and "raylet" in cmd}
        if not roots:
            raise ValueError(f"no raylet of node {node_id} in this cluster")
        pids = procs_mod.with_descendants(roots, procs)
        procs_mod.stop(pids, signal.SIGKILL, timeout=5)
        return pids

    def down(self, grace_s: float = 15) -> int:
        """Stop every process of this cluster (SIGTERM, then SIGKILL after ``grace_s``); returns how many. A test
        cluster, whose state is thrown away, may use a short grace."""
        pids = self.pids()
        procs_mod.stop(pids, timeout=grace_s)
        shutil.rmtree(self.state["temp_dir"], ignore_errors=True)
        return len(pids)


def up(state_dir: str | Path = STATE_DIR, *, aws_yaml: str | Path = AWS_YAML, idle_timeout_minutes: float | None = None,
       heartbeat_timeout_s: int = 30, env: dict[str, str] | None = None, timeout: float = 180) -> LocalCluster:
    """Start the head (no worker resources) with the autoscaler; the workers come when something asks for them."""
    state_dir = Path(state_dir)
    if (state_dir / "state.json").exists():
        old = LocalCluster.load(state_dir)
        if old.pids():
            raise SystemExit(f"a local cluster is already running ({old.address}); stop it with `make cluster-down`")
    state_dir.mkdir(parents=True, exist_ok=True)
    # a short path: Ray's unix sockets live under it (108-byte limit)
    temp_dir = tempfile.mkdtemp(prefix="mujo-lc-", dir="/tmp")
    gcs, dashboard, client = procs_mod.free_ports(3)
    gcs_address = f"127.0.0.1:{gcs}"
    capacity_file = os.path.join(temp_dir, "capacity.json")
    cfg = generate(aws_yaml, gcs_address, idle_timeout_minutes, capacity_file=capacity_file)
    config_path = str(state_dir / "autoscaling.yaml")
    Path(config_path).write_text(yaml.safe_dump(cfg, sort_keys=False))
    head = cfg["available_node_types"][HEAD_TYPE]["resources"]
    run_env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    run_env.update(env or {})
    run_env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{run_env.get('PATH', '')}"  # `python` in jobs
    # the autoscaler (on the head) imports the provider from this folder
    run_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(Path(__file__).resolve().parent),
                                                        run_env.get("PYTHONPATH")) if p)
    run_env.update({"RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1",
                    "AUTOSCALER_HEARTBEAT_TIMEOUT_S": str(heartbeat_timeout_s), "RAY_AUTH_MODE": "disabled",
                    "RAY_USAGE_STATS_ENABLED": "0", "GLOO_SOCKET_IFNAME": "lo",
                    "RAY_DATA_PARQUET_FOOTER_NUM_ACTORS": "1", "MUJO_CLUSTER_CONFIG": config_path})
    node_manager, object_manager, agent_listen, agent_grpc, metrics, runtime_env = procs_mod.free_ports(6)
    cmd = [RAY, "start", "--head", "--port", str(gcs), "--temp-dir", temp_dir, "--node-ip-address", "127.0.0.1",
           "--autoscaling-config", config_path, "--num-cpus", str(int(head.get("CPU", 0))),
           "--num-gpus", str(int(head.get("GPU", 0))), "--object-store-memory", str(150 * 2**20),
           "--include-dashboard", "true", "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard),
           "--ray-client-server-port", str(client), "--disable-usage-stats",
           "--node-manager-port", str(node_manager), "--object-manager-port", str(object_manager),
           "--dashboard-agent-listen-port", str(agent_listen), "--dashboard-agent-grpc-port", str(agent_grpc),
           "--metrics-export-port", str(metrics), "--runtime-env-agent-port", str(runtime_env)]
    cluster = LocalCluster({"temp_dir": temp_dir, "address": f"http://127.0.0.1:{dashboard}",
                            "gcs_address": gcs_address, "config": config_path, "capacity_file": capacity_file,
                            "started": time.time()})
    (state_dir / "state.json").write_text(json.dumps(cluster.state, indent=1))
    try:
        subprocess.run(cmd, env=run_env, check=True, capture_output=True, text=True, timeout=timeout)
        _wait_for_job_server(cluster, timeout)
    except BaseException as exc:
        cluster.down()
        if isinstance(exc, subprocess.CalledProcessError):
            raise RuntimeError(f"ray start failed: {exc.stderr[-3000:]}") from None
        raise
    return cluster


def _wait_for_job_server(cluster: LocalCluster, timeout: float) -> None:
    from ray.job_submission import JobSubmissionClient

    deadline = time.time() + timeout
    while True:
        try:
            JobSubmissionClient(cluster.address).list_jobs()
            cluster.nodes()
            return
        except Exception:  # the dashboard is still starting
            if time.time() > deadline:
                raise
            time.sleep(1)


def down(state_dir: str | Path = STATE_DIR) -> int:
    cluster = LocalCluster.load(state_dir)
    n = cluster.down()
    (Path(state_dir) / "state.json").unlink(missing_ok=True)
    return n


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("command", choices=["up", "down", "status", "config", "preempt", "restore"])
    ap.add_argument("node_id", nargs="?", help="preempt: the worker node to kill (ids: `status`)")
    ap.add_argument("--gap-s", type=float, default=0,
                    help="preempt: refuse launches of the node's type for this many seconds (-1: until `restore`)")
    ap.add_argument("--gap-types", default="", help="preempt: more node types to hold, comma-separated")
    ap.add_argument("--state-dir", default=str(STATE_DIR))
    ap.add_argument("--aws-yaml", default=str(AWS_YAML))
    ap.add_argument("--idle-timeout-minutes", type=float, default=None,
                    help="override aws.yaml's idle_timeout_minutes (e.g. 0.5 to watch nodes go away)")
    args = ap.parse_args(argv)
    os.environ["RAY_AUTH_MODE"] = "disabled"
    if args.command == "config":
        print(yaml.safe_dump(generate(args.aws_yaml, idle_timeout_minutes=args.idle_timeout_minutes), sort_keys=False))
    elif args.command == "up":
        c = up(args.state_dir, aws_yaml=args.aws_yaml, idle_timeout_minutes=args.idle_timeout_minutes)
        print(f"local autoscaling cluster up: head (no worker resources) + autoscaler, node types of {args.aws_yaml}\n"
              f"  RAY_AUTH_MODE=disabled ray job submit --address {c.address} --runtime-env jobs/runtime_env.yaml -- "
              "python jobs/main.py --config jobs/configs/main.yaml --set pretrain.use_gpu=true "
              "--set pretrain.simulated_gpus=true\n"
              f"  RAY_AUTH_MODE=disabled ray status --address {c.gcs_address}\n  make cluster-down")
    elif args.command == "status":
        c = LocalCluster.load(args.state_dir)
        print(json.dumps({"address": c.address, "workers_by_type": c.counts(), "processes": len(c.pids()),
                          "workers": [n for n in c.nodes() if n["type"] != "head"]}))
    elif args.command == "preempt":
        if not args.node_id:
            raise SystemExit("preempt needs a node id (see `status`)")
        c = LocalCluster.load(args.state_dir)
        gap = None if args.gap_s < 0 else args.gap_s
        print(json.dumps(c.preempt(args.node_id, gap, [t for t in args.gap_types.split(",") if t])))
    elif args.command == "restore":
        LocalCluster.load(args.state_dir).restore_capacity()
        print("capacity restored: launches of every node type succeed again")
    else:
        print(f"stopped {down(args.state_dir)} process(es) of the local cluster")


if __name__ == "__main__":
    main()
