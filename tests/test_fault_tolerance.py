"""A pretraining run survives losing a worker: SIGKILL one Ray Train worker process mid-run on the real local Ray;
FailureConfig restarts the worker group from the last checkpoint, the run ends at the right step with a contiguous
history, and the checkpoint it resumed from is intact."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import pytest
import torch

from mujo import storage
from mujo.config import load_config
from mujo.models import load_pretrained
from mujo.train.pretrain import STATE_FILE, pretrain

pytestmark = [pytest.mark.ray]

CONFIG = [
    "run_name=fault",
    "generate.datasets=[{name: mini, activities: [squats, bicep_curls, jumping_jacks, walking], "
    "subjects: {train: 4, val: 1}, clip_seconds: [8, 10]}]",
    "model.embed_dim=32", "model.proj_hidden=32", "model.text_hidden=32", "model.video_hidden=32",
    # 4 steps per epoch; the kill comes once the first checkpoint (step 4) is registered, usually within an epoch or
    # two of it: 8 epochs leave the restarted group 20+ steps to finish (each epoch also costs Ray Data a listing)
    "pretrain.dataset=mini", "pretrain.batch_size=8", "pretrain.epochs=8", "pretrain.checkpoint_every_steps=4",
    "pretrain.num_to_keep=100", "pretrain.max_failures=2", "pretrain.warmup_steps=2",
]


def train_worker_pids() -> list[int]:
    """Ray Train worker processes of THIS test session's Ray (children of its raylet), never anyone else's."""
    import ray._private.worker

    raylet = ray._private.worker._global_node.all_processes["raylet"][0].process.pid
    out = subprocess.run(["pgrep", "-P", str(raylet), "-f", "RayTrainWorker"], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def registered_checkpoint(root: str) -> bool:
    """The Train controller has registered a checkpoint (its snapshot names one): a restart will resume from it.
    A checkpoint folder on storage alone is not enough: the controller registers it only after the report."""
    uri = storage.join(root, "checkpoint_manager_snapshot.json")
    try:
        return "checkpoint_" in storage.read_bytes(uri).decode()
    except storage.StorageError:
        return False


def checkpoint_dirs(root: str) -> list[str]:
    return sorted({os.path.dirname(p) for p in storage.list_files(root) if p.endswith(STATE_FILE)})


def test_sigkill_worker_resumes_from_checkpoint(mini_corpus, tmp_path):
    cfg = load_config(None, CONFIG + [f"storage.root={tmp_path}"])
    manifest = mini_corpus  # the session's small corpus (tests/conftest.py), shared with the search tests
    steps_per_epoch = manifest.rows["train"] // (8 * 2)
    total = steps_per_epoch * cfg.pretrain.epochs
    train_root = storage.join(cfg.run_dir, "train", "fault-pretrain")

    outcome: dict = {}
    thread = threading.Thread(target=lambda: outcome.update(zip(("result", "artefact"), pretrain(cfg, manifest,
                                                                                               name="fault-pretrain"))))
    thread.start()
    killed = None
    deadline = time.time() + 300
    while time.time() < deadline and thread.is_alive() and killed is None:
        if registered_checkpoint(train_root) and train_worker_pids():
            victim = max(train_worker_pids())
            os.kill(victim, signal.SIGKILL)
            killed = victim
        time.sleep(0.5)
    assert killed is not None, "no checkpoint appeared before the run ended; cannot test recovery"
    thread.join(timeout=600)
    assert not thread.is_alive()
    assert outcome["result"].error is None

    meta = storage.read_json(storage.join(outcome["artefact"], "model.json"))
    assert meta["step"] == total
    resumed = meta["resumed_from_steps"]
    assert len(resumed) == 1 and 0 < resumed[0] < total and resumed[0] % 4 == 0, resumed
    history = storage.read_json(storage.join(outcome["artefact"], "history.json"))
    assert [h["step"] for h in history] == list(range(1, total + 1))

    # the checkpoint the run resumed from is intact: full training state and a loadable model at that step
    by_step = {}
    for d in checkpoint_dirs(train_root):
        state = torch.load(os.path.join(d, STATE_FILE), map_location="cpu", weights_only=True)  # no pickle
        by_step[state["step"]] = (d, state)
    d, state = by_step[resumed[0]]
    assert {"model", "optimizer", "scheduler", "rng", "history", "config"} <= set(state)
    assert len(state["rng"]["torch_by_rank"]) == 2  # every rank's dropout stream, written by rank 0
    assert len(state["history"]) == resumed[0]
    model = load_pretrained(d)
    model.load_state_dict(state["model"])
