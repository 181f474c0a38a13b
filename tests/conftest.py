"""Shared fixtures: a real S3-compatible server on loopback and one real local Ray instance per test session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "infra"))

from local_s3 import LocalS3  # noqa: E402

BUCKET = "mujo-test"


@pytest.fixture(scope="session")
def s3():
    """A moto S3 server process on 127.0.0.1 with a bucket; the process environment points clients at it."""
    server = LocalS3().start()
    server.create_bucket(BUCKET)
    saved = {k: os.environ.get(k) for k in server.env}
    os.environ.update(server.env)
    from mujo import storage

    storage.configure()
    yield server
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def s3_root(s3) -> str:
    return f"s3://{BUCKET}"


@pytest.fixture(scope="session")
def ray_session(s3):
    """One real local Ray (2 CPUs) for the whole session; workers inherit the S3 variables."""
    import ray

    os.environ.setdefault("RAY_DATA_PARQUET_FOOTER_NUM_ACTORS", "1")
    from mujo import storage

    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=300 * 2**20,
             log_to_driver=False, runtime_env={"env_vars": {**storage.environment(),
                                                            "RAY_DATA_PARQUET_FOOTER_NUM_ACTORS": "1"}})
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    yield ray
    ray.shutdown()
