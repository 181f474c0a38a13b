"""How much of a node one fan-out trial asks for, chosen from the cluster's resources so that a node is filled.

A fan-out trial trains one small classifier (or one seed group of it): it cannot use a 16-core node or a whole GPU
by itself, so what fills a machine is running many trials side by side. :func:`size_trials` is the rule, a pure
function of the nodes' resources and the number of trials (unit-tested without Ray); :func:`sized_evaluate` applies
it to the fan-out's config on a running cluster (the only part that asks Ray anything).

The rule, per resource the config leaves unset (a value set in the config is always used as given):

- **GPUs**, when some node has one: ``k`` trials share each GPU, ``gpus_per_trial = 1/k`` with ``k`` the largest
  number that every GPU node can also give a CPU each (``k <= CPUs / GPUs`` of the node), at most
  ``max_trials_per_gpu`` (small models stop gaining from more sharers once the GPU is busy; memory is the other
  bound) and no more than the trials need (``k <= ceil(trials / GPUs)``). Without a GPU anywhere: 0.
- **CPUs**: 1 per trial when there are at least as many trials as CPUs (every core runs its own trial: the best
  use of cores for models this small); with fewer trials than CPUs, the spare cores go to the trials as threads
  (``floor(CPUs / trials)``, at most ``max_threads``, at most the smallest node's CPUs). On GPU nodes, the node's
  CPUs divided among its ``k * GPUs`` trials. Ray sets ``OMP_NUM_THREADS`` of a trial's worker to the floor of its
  CPUs, so ``threads`` is what torch uses in the trial.

A GPU node is trusted to have a CUDA build of torch (the driver's own build says nothing: on the EC2 cluster the
head has the CPU build, the GPU workers the CUDA one); a trial that finds no CUDA device fails at once saying to set
``evaluate.gpus_per_trial: 0`` (:func:`mujo.tune.fanout.trial_device`). Clusters whose GPUs are only declared
resources (the local autoscaling cluster's simulated GPUs) set it.

Nodes are the alive nodes' resources (``ray.nodes()``), or, on an autoscaling cluster whose node types are known
(``MUJO_CLUSTER_CONFIG``, see :mod:`mujo.capacity`), the worker types it can start: a cluster that starts from zero
workers is sized for the nodes it will get, not for its head alone.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)

MAX_THREADS = 4  # per trial: a batch-64 classifier step gains little beyond a few threads; more trials gain more
MAX_TRIALS_PER_GPU = 8


@dataclass(frozen=True)
class TrialSize:
    """One trial's resource request and what it gives on the nodes it was sized for."""

    cpus: float
    gpus: float
    threads: int
    concurrent: int  # trials that run at once on the nodes (each node holding as many as fit)
    why: str

    def resources(self) -> dict[str, float]:
        """The request for ``tune.with_resources``."""
        return {"cpu": self.cpus, **({"gpu": self.gpus} if self.gpus else {})}


def _fit(node: Mapping[str, float], cpus: float, gpus: float) -> int:
    n = math.floor(node.get("CPU", 0.0) / cpus + 1e-9) if cpus > 0 else 10**9
    if gpus > 0:
        n = min(n, math.floor(node.get("GPU", 0.0) / gpus + 1e-6))
    return max(n, 0)


def size_trials(nodes: Sequence[Mapping[str, float]], trials: int, cpus: float | None = None,
                gpus: float | None = None, max_threads: int = MAX_THREADS,
                max_trials_per_gpu: int = MAX_TRIALS_PER_GPU) -> TrialSize:
    """The per-trial request for ``trials`` trials on ``nodes`` (each a resource map with ``CPU`` and optionally
    ``GPU``); ``cpus``/``gpus`` given are kept, ``None`` is chosen (module docstring)."""
    nodes = [n for n in nodes if n.get("CPU", 0.0) >= 1]
    if not nodes:
        raise ValueError("no node with a CPU to size the fan-out's trials for")
    trials = max(int(trials), 1)
    gpu_nodes = [n for n in nodes if n.get("GPU", 0.0) >= 1]
    why = []
    if gpus is None:
        if gpu_nodes:
            per_cpu = cpus or 1.0
            k = min(math.floor(n["CPU"] / (n["GPU"] * per_cpu) + 1e-9) for n in gpu_nodes)
            total_gpus = sum(int(n["GPU"]) for n in gpu_nodes)
            k = max(1, min(k, max_trials_per_gpu, math.ceil(trials / total_gpus)))
            gpus = math.floor(1e4 / k) / 1e4  # k of them fit in one GPU despite rounding
            why.append(f"{k} trial(s) per GPU ({total_gpus} GPU(s))")
        else:
            gpus = 0.0
            why.append("no GPU in the cluster")
    if cpus is None:
        if gpus > 0:
            cpus = float(max(1, min(max_threads, min(math.floor(n["CPU"] / (n.get("GPU", 0.0) / gpus))
                                                      for n in gpu_nodes))))
            why.append("the GPU nodes' CPUs shared by their trials")
        else:
            total = sum(n["CPU"] for n in nodes)
            smallest = min(n["CPU"] for n in nodes)
            cpus = float(max(1, min(max_threads, math.floor(smallest), math.floor(total / trials))))
            why.append("1 CPU per trial, every core busy" if cpus == 1 else
                       f"{trials} trial(s) for {total:g} CPUs: the spare cores as threads")
    usable = gpu_nodes if gpus > 0 else nodes
    concurrent = min(trials, sum(_fit(n, cpus, gpus) for n in usable))
    return TrialSize(cpus=float(cpus), gpus=float(gpus), threads=max(1, math.floor(cpus)), concurrent=concurrent,
                     why="; ".join(why))


def trials_in(param_space: Mapping) -> int:
    """The number of trials of a Tune param space made of grid searches (other entries count once)."""
    n = 1
    for v in param_space.values():
        if isinstance(v, Mapping) and "grid_search" in v:
            n *= len(v["grid_search"])
    return n


def cluster_nodes() -> list[dict[str, float]]:
    """The resources of the nodes trials can run on: the autoscaling config's worker types when known (each type
    once, those with workers to start), else the alive nodes of the connected Ray cluster."""
    from mujo.capacity import node_types

    known = node_types()
    if known is not None:
        _, types = known
        out = [dict(t["resources"]) for t in types.values() if t["max_workers"] > 0 and t["resources"].get("CPU")]
        if out:
            return out
    import ray

    return [{k: float(v) for k, v in n["Resources"].items() if k in ("CPU", "GPU")}
            for n in ray.nodes() if n.get("Alive")]


def sized_evaluate(ecfg, param_space: Mapping, nodes: Sequence[Mapping[str, float]] | None = None):
    """``ecfg`` (an :class:`~mujo.config.EvaluateConfig`) with ``cpus_per_trial``/``gpus_per_trial`` chosen from
    the cluster where the config leaves them unset (fields set in the YAML or by ``--set`` are kept)."""
    explicit = ecfg.model_fields_set
    size = size_trials(nodes if nodes is not None else cluster_nodes(), trials_in(param_space),
                       cpus=ecfg.cpus_per_trial if "cpus_per_trial" in explicit else None,
                       gpus=ecfg.gpus_per_trial if "gpus_per_trial" in explicit else None)
    log.info("fan-out trial size: %g CPU, %g GPU, %d thread(s), %d at once (%s)", size.cpus, size.gpus, size.threads,
             size.concurrent, size.why)
    return ecfg.model_copy(update={"cpus_per_trial": size.cpus, "gpus_per_trial": size.gpus})


__all__ = ["TrialSize", "cluster_nodes", "size_trials", "sized_evaluate", "trials_in"]
