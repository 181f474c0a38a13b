"""Fan-out trial sizing (mujo.tune.sizing): the per-trial request fills a 2-core, a 16-core and a 4-GPU node; values
set in the config are kept. Pure functions, no Ray."""

from __future__ import annotations

import pytest

from mujo.config import EvaluateConfig, load_config
from mujo.tune.sizing import size_trials, sized_evaluate, trials_in


def test_two_cores_run_two_single_threaded_trials():
    s = size_trials([{"CPU": 2.0}], trials=36)
    assert (s.cpus, s.gpus, s.threads, s.concurrent) == (1.0, 0.0, 1, 2)
    assert s.resources() == {"cpu": 1.0}


def test_sixteen_cores_are_filled_by_trials_then_by_threads():
    s = size_trials([{"CPU": 16.0}], trials=840)
    assert (s.cpus, s.gpus, s.concurrent) == (1.0, 0.0, 16)
    few = size_trials([{"CPU": 16.0}], trials=6)  # fewer trials than cores: the spare cores become threads
    assert (few.cpus, few.threads, few.concurrent) == (2.0, 2, 6)
    one = size_trials([{"CPU": 16.0}], trials=1)
    assert one.cpus == 4.0  # at most MAX_THREADS: a small model gains little from more
    # two nodes: sized so that a trial fits on the smaller one, every core of both busy
    both = size_trials([{"CPU": 2.0}, {"CPU": 16.0}], trials=100)
    assert (both.cpus, both.concurrent) == (1.0, 18)


def test_four_gpu_node_is_shared_by_fractional_gpu_trials():
    node = {"CPU": 32.0, "GPU": 4.0}
    s = size_trials([node], trials=840)
    assert (s.gpus, s.cpus, s.concurrent) == (0.125, 1.0, 32)  # 8 per GPU, one core each: 32 at once
    assert s.resources() == {"cpu": 1.0, "gpu": 0.125}
    small = size_trials([{"CPU": 16.0, "GPU": 4.0}], trials=840)
    assert (small.gpus, small.cpus, small.concurrent) == (0.25, 1.0, 16)  # bounded by the node's CPUs
    few = size_trials([node], trials=6)
    assert (few.gpus, few.cpus, few.concurrent) == (0.5, 4.0, 6)  # GPUs split no finer than the trials need
    three = size_trials([{"CPU": 3.0, "GPU": 1.0}], trials=50)
    assert three.concurrent == 3 and three.gpus * 3 <= 1.0  # rounding never leaves a third trial out
    # a CPU head and GPU workers: trials go to the GPU nodes
    mixed = size_trials([{"CPU": 2.0}, {"CPU": 48.0, "GPU": 4.0}, {"CPU": 48.0, "GPU": 4.0}], trials=840)
    assert (mixed.gpus, mixed.concurrent) == (0.125, 64)


def test_values_set_in_the_config_are_kept():
    assert size_trials([{"CPU": 16.0}], trials=840, cpus=0.5).cpus == 0.5
    s = size_trials([{"CPU": 32.0, "GPU": 4.0}], trials=840, gpus=0.0)
    assert (s.gpus, s.cpus, s.concurrent) == (0.0, 1.0, 32)  # GPUs switched off: a CPU fan-out
    s = size_trials([{"CPU": 32.0, "GPU": 4.0}], trials=840, gpus=1.0)
    assert (s.gpus, s.cpus, s.concurrent) == (1.0, 4.0, 4)
    with pytest.raises(ValueError, match="no node with a CPU"):
        size_trials([], trials=3)


def test_sized_evaluate_reads_the_grid_and_keeps_explicit_fields():
    space = {"inputs": {"grid_search": ["acc", "video+pose+acc"]}, "setting": {"grid_search": ["a", "b", "c"]},
             "seed": {"grid_search": list(range(20))}, "fixed": 3}
    assert trials_in(space) == 120
    node = [{"CPU": 32.0, "GPU": 4.0}]
    auto = sized_evaluate(EvaluateConfig(), space, nodes=node)
    assert (auto.cpus_per_trial, auto.gpus_per_trial) == (1.0, 0.125)
    cfg = load_config(None, ["evaluate.gpus_per_trial=0", "evaluate.cpus_per_trial=2"]).evaluate
    kept = sized_evaluate(cfg, space, nodes=node)
    assert (kept.cpus_per_trial, kept.gpus_per_trial) == (2.0, 0.0)
