"""Every job entrypoint reports argument and config errors before any cluster work starts (exit code 2)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
JOBS = ["main", "generate", "preprocess", "pretrain", "evaluate", "fanout", "zeroshot", "search"]


@pytest.mark.parametrize("job", JOBS)
def test_bad_config_is_reported_before_ray_starts(job, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("pretrain:\n  epochs: -3\n  batch_sise: 8\n")
    proc = subprocess.run([sys.executable, str(ROOT / "jobs" / f"{job}.py"), "--config", str(bad)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "pretrain.epochs" in proc.stderr and "pretrain.batch_sise" in proc.stderr and str(bad) in proc.stderr
    assert "Traceback" not in proc.stderr and "Started a local Ray" not in proc.stderr + proc.stdout
