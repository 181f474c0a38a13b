"""Starting or attaching to Ray, the same way for every job.

``ray.address`` unset: attach when the job runs under ``ray job submit`` (``RAY_ADDRESS`` is set), else start a
local Ray inside the job (the embedded default). Storage settings (endpoint, region — never credentials) travel to
every worker through the runtime environment; credentials come from each node's own environment or instance profile.
"""

from __future__ import annotations

import logging
import os

from mujo import storage
from mujo.config import RayConfig

log = logging.getLogger(__name__)

# Ray Data's Parquet reader otherwise starts up to 32 footer-reading actor processes (tens of seconds on 2 cores).
RAY_DATA_ENV = {"RAY_DATA_PARQUET_FOOTER_NUM_ACTORS": "1"}


def init_ray(cfg: RayConfig, working_dir_env: dict[str, str] | None = None):
    import ray

    for k, v in RAY_DATA_ENV.items():
        os.environ.setdefault(k, v)
    if ray.is_initialized():
        return ray
    env = {**RAY_DATA_ENV, **storage.environment(), **(working_dir_env or {})}
    runtime_env = {"env_vars": env}
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    if address in (None, "", "local"):
        log.info("starting a local Ray (num_cpus=%s)", cfg.num_cpus)
        ray.init(address="local", num_cpus=cfg.num_cpus, include_dashboard=cfg.include_dashboard,
                 dashboard_host="127.0.0.1", runtime_env=runtime_env,
                 object_store_memory=cfg.object_store_mb * 2**20 if cfg.object_store_mb else None,
                 log_to_driver=True)
    else:
        log.info("attaching to Ray at %s", address)
        ray.init(address=address, runtime_env=runtime_env)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    return ray
