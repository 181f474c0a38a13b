"""Shared fixtures: a real S3-compatible server on loopback, one real local Ray instance per test session, and one
small preprocessed pretraining corpus shared by the Ray Train / Tune tests (search, fault tolerance)."""

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


# The small pretraining corpus of the search and fault-tolerance tests (4 activities, 4 train + 1 val subjects, 8-10 s
# clips: 4-6 steps per epoch at 2 workers x batch 8). Generated and preprocessed once per session: both modules read
# it, each writes its own runs elsewhere.
MINI_CORPUS = [
    "run_name=mini",
    "generate.datasets=[{name: mini, activities: [squats, bicep_curls, jumping_jacks, walking], "
    "subjects: {train: 4, val: 1}, clip_seconds: [8, 10]}]",
]


@pytest.fixture(scope="session")
def mini_corpus(ray_session, tmp_path_factory):
    """The ``mini`` dataset generated and windowed on the session's Ray; returns its Manifest (shards are read-only
    for the tests: pretraining and the search only read them)."""
    from mujo.config import load_config
    from mujo.pipelines.generate import generate
    from mujo.pipelines.preprocess import preprocess

    cfg = load_config(None, MINI_CORPUS + [f"storage.root={tmp_path_factory.mktemp('mini-corpus')}"])
    generate(cfg.generate, cfg.run_dir)
    return preprocess({"mini": 512}, cfg.run_dir, cfg.preprocess)["mini"]
