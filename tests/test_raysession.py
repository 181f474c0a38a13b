"""What a submitted job checks before it starts work (Ray ignores a driver's runtime_env inside a job)."""

from __future__ import annotations

import json

import pytest

from mujo.config import ConfigError
from mujo.raysession import check_job_storage_env, check_job_storage_root

JOB = "RAY_JOB_CONFIG_JSON_ENV_VAR"


def test_outside_a_job_nothing_is_checked(monkeypatch):
    monkeypatch.delenv(JOB, raising=False)
    check_job_storage_env({"AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9000"})
    check_job_storage_root("runs")


def test_config_storage_settings_the_workers_would_not_see(monkeypatch):
    monkeypatch.setenv(JOB, json.dumps({"runtime_env": {"working_dir": "gcs://x.zip"}}))
    check_job_storage_env({})  # nothing set by the config: the nodes' environment is what the workers use
    with pytest.raises(ConfigError) as err:
        check_job_storage_env({"AWS_ENDPOINT_URL_S3": "http://minio.internal:9000"})
    msg = str(err.value)
    assert "AWS_ENDPOINT_URL_S3" in msg and "--runtime-env-json" in msg and "http://minio.internal:9000" in msg


def test_relative_local_root_in_a_job(monkeypatch, tmp_path):
    monkeypatch.setenv(JOB, json.dumps({"runtime_env": {}}))
    with pytest.raises(ConfigError, match="storage.root 'runs' is relative"):
        check_job_storage_root("runs")
    check_job_storage_root(str(tmp_path))
    check_job_storage_root("s3://bucket/runs")
