"""Starting or attaching to Ray, the same way for every job.

``ray.address`` unset: attach when the job runs under ``ray job submit`` (``RAY_ADDRESS`` is set), else start a
local Ray inside the job (the embedded default). Storage settings (endpoint, region — never credentials) travel to
every worker through the runtime environment; credentials come from each node's own environment or instance profile.
"""

from __future__ import annotations

import json
import logging
import os

from mujo import storage
from mujo.config import RayConfig

log = logging.getLogger(__name__)

# Ray Data's Parquet reader otherwise starts up to 32 footer-reading actor processes (tens of seconds on 2 cores).
RAY_DATA_ENV = {"RAY_DATA_PARQUET_FOOTER_NUM_ACTORS": "1"}


JOB_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"  # set by Ray's job manager in the driver of a submitted job


def _job_env_vars() -> dict[str, str] | None:
    """The env_vars of this submitted job's runtime environment, or None outside ``ray job submit``."""
    raw = os.environ.get(JOB_ENV)
    if not raw:
        return None
    try:
        return dict((json.loads(raw).get("runtime_env") or {}).get("env_vars") or {})
    except (ValueError, AttributeError):
        return {}


def check_job_storage_env(configured: dict[str, str]) -> None:
    """Inside a submitted job, Ray ignores ``ray.init(runtime_env=...)``: workers see the job's runtime environment
    and their node's environment only. Storage settings that came from the config (``configured``: the variables
    ``storage.configure`` set in this driver) would silently not reach them; fail with the fix instead."""
    if _job_env_vars() is None or not configured:
        return
    from mujo.config import ConfigError

    env_json = json.dumps({"env_vars": configured})
    raise ConfigError(
        "this job runs under `ray job submit`, where Ray workers do not see settings made in the driver; the config's "
        f"storage settings {sorted(configured)} would not reach them. Put them in the job's runtime environment, "
        f"e.g. `ray job submit ... --runtime-env-json '{env_json}'` (or an env_vars entry in the --runtime-env YAML), "
        "or set them in the cluster nodes' environment, and leave storage.endpoint_url/region out of the config")


def check_job_storage_root(root: str) -> None:
    """Inside a submitted job the working directory is Ray's temporary copy of the shipped tree: a relative local
    storage root would put the run there (and a later job would not find it). Require an absolute path or s3://."""
    if _job_env_vars() is None or storage.is_s3(root) or os.path.isabs(root):
        return
    from mujo.config import ConfigError

    raise ConfigError(
        f"storage.root '{root}' is relative: under `ray job submit` it would resolve inside Ray's temporary copy of "
        f"the working dir. Pass an absolute path (e.g. --set storage.root=$PWD/{root} on a one-machine cluster) or "
        "an s3:// URI (any cluster of several machines)")


def exit_on_sigterm() -> None:
    """Turn SIGTERM (``kill``, ``ray job stop``, a scheduler) into a normal exit, so that ``finally`` blocks and
    exit handlers run: the local Ray is shut down, the run lock released. Only where nobody installed a handler."""
    import signal
    import sys

    def handler(signum, frame):  # noqa: ARG001
        sys.exit(128 + signum)

    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, handler)


def init_ray(cfg: RayConfig, working_dir_env: dict[str, str] | None = None):
    import ray

    from mujo import raycompat, reaper

    for k, v in RAY_DATA_ENV.items():
        os.environ.setdefault(k, v)
    raycompat.stop_tune_copying_credentials()  # before any Tune run of this process: no secret in runtime envs
    if ray.is_initialized():
        return ray
    env = {**RAY_DATA_ENV, **storage.environment(), **(working_dir_env or {})}
    runtime_env = {"env_vars": env}
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    if address in (None, "", "local"):
        log.info("starting a local Ray (num_cpus=%s)", cfg.num_cpus)
        exit_on_sigterm()
        reaper.start()  # ends this Ray's processes if this driver is killed without a chance to clean up
        ray.init(address="local", num_cpus=cfg.num_cpus, include_dashboard=cfg.include_dashboard,
                 dashboard_host="127.0.0.1", runtime_env=runtime_env,
                 object_store_memory=cfg.object_store_mb * 2**20 if cfg.object_store_mb else None,
                 log_to_driver=True)
    elif _job_env_vars() is not None:  # a submitted job: its runtime environment (ray job submit) is the one used
        log.info("attaching to Ray at %s (submitted job)", address)
        ray.init(address=address)
    else:
        log.info("attaching to Ray at %s", address)
        ray.init(address=address, runtime_env=runtime_env)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    return ray
