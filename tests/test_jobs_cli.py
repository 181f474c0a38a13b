"""Every job entrypoint reports argument and config errors before any cluster work starts (exit code 2).

The jobs are started together (one module fixture, one process each) and each test reads its own job's outcome: a
job spends its time importing on one core, so side by side they share the cores instead of waiting in line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
JOBS = ["main", "generate", "preprocess", "pretrain", "evaluate", "fanout", "zeroshot", "search"]


@pytest.fixture(scope="module")
def bad_config_runs(tmp_path_factory) -> tuple[Path, dict[str, subprocess.Popen]]:
    """(the bad config, every job started on it at once)."""
    bad = tmp_path_factory.mktemp("jobs-cli") / "bad.yaml"
    bad.write_text("pretrain:\n  epochs: -3\n  batch_sise: 8\n")
    procs = {job: subprocess.Popen([sys.executable, str(ROOT / "jobs" / f"{job}.py"), "--config", str(bad)],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for job in JOBS}
    yield bad, procs
    for proc in procs.values():  # a failed test must not leave a job running
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("job", JOBS)
def test_bad_config_is_reported_before_ray_starts(job, bad_config_runs):
    bad, procs = bad_config_runs
    stdout, stderr = procs[job].communicate(timeout=240)
    assert procs[job].returncode == 2, stderr
    assert "pretrain.epochs" in stderr and "pretrain.batch_sise" in stderr and str(bad) in stderr
    assert "Traceback" not in stderr and "Started a local Ray" not in stderr + stdout
