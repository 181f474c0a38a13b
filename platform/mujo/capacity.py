"""Requests an autoscaling cluster can never satisfy, refused before any work (no Ray; plain arithmetic).

Ray queues a task, actor or placement group whose resources no node can offer and the autoscaler only warns about
it, so a stage asking for more than any node type has (say 8 GPUs per worker on 4-GPU nodes, or more GPU workers
than all GPU nodes together hold) would wait forever. A job that knows the cluster's node types checks its own
requests against them first and stops with one line naming the request, the node types and the fix.

The node types are the cluster launcher's ``available_node_types`` (resources and ``max_workers`` of each), read
from the autoscaling config named by ``MUJO_CLUSTER_CONFIG`` (the local autoscaling cluster of
``cluster/local_autoscaler.py`` sets it on its nodes, so a submitted job's driver sees it; on EC2 point it at the
head's ``~/ray_bootstrap_config.yaml``). Without it nothing is checked: a fixed cluster has no types to compare.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import yaml

from mujo.config import ConfigError

ENV = "MUJO_CLUSTER_CONFIG"
NodeTypes = dict[str, dict]


def node_types(path: str | None = None) -> tuple[str, NodeTypes] | None:
    """(config path, {type: {"resources": {...}, "max_workers": n}}) from an autoscaling config; None when neither
    ``path`` nor ``MUJO_CLUSTER_CONFIG`` names one. The head type counts as one node whatever its max_workers."""
    path = path or os.environ.get(ENV)
    if not path:
        return None
    try:
        with open(os.path.expanduser(path)) as f:
            doc = yaml.safe_load(f)
        types = doc["available_node_types"]
        head = doc.get("head_node_type")
        out = {name: {"resources": {k: float(v) for k, v in (spec.get("resources") or {}).items()},
                      "max_workers": 1 if name == head else int(spec.get("max_workers", doc.get("max_workers", 0)))}
               for name, spec in types.items()}
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ConfigError(f"{ENV}={path}: not a readable cluster config with available_node_types "
                          f"({type(exc).__name__}: {exc}); fix the file or unset {ENV}") from None
    return path, out


def _fits(bundle: Mapping[str, float], resources: Mapping[str, float], times: int = 1) -> bool:
    return all(amount * times <= resources.get(name, 0.0) + 1e-9 for name, amount in bundle.items() if amount > 0)


def _describe(types: NodeTypes) -> str:
    def res(t: dict) -> str:  # memory sizes are bookkeeping of the node, not what a stage asks for
        return ", ".join(f"{k}: {v:g}" for k, v in t["resources"].items() if k not in ("memory", "object_store_memory"))
    return ", ".join(f"{name} {{{res(t)}}} x{t['max_workers']}" for name, t in types.items())


def unsatisfiable(bundles: Sequence[Mapping[str, float]], types: NodeTypes, strategy: str = "PACK") -> str | None:
    """Why the bundles can never be placed on a cluster of ``types`` (at their maximum counts), or None when they
    can. ``strategy`` is the placement group strategy (STRICT_PACK: all on one node; STRICT_SPREAD: each on its
    own node); independent tasks are ``PACK`` with one bundle."""
    bundles = [{k: float(v) for k, v in b.items() if v} for b in bundles]
    if not bundles:
        return None
    for bundle in bundles:
        if not any(_fits(bundle, t["resources"]) for t in types.values() if t["max_workers"] > 0):
            return f"no node type has {bundle}"
    if strategy == "STRICT_PACK":
        total = {k: sum(b.get(k, 0.0) for b in bundles) for k in set().union(*bundles)}
        if not any(_fits(total, t["resources"]) for t in types.values() if t["max_workers"] > 0):
            return f"no node type holds all {len(bundles)} bundles together ({total}) as STRICT_PACK requires"
        return None
    # every node of every type, at its maximum count; the bundles are equal in every request this platform makes
    bundle = bundles[0]
    slots = []
    for t in types.values():
        per_node = 0
        while per_node < len(bundles) and _fits(bundle, t["resources"], per_node + 1):
            per_node += 1
        slots += [1 if strategy == "STRICT_SPREAD" else per_node] * (t["max_workers"] if per_node else 0)
    if sum(slots) < len(bundles):
        how = "on distinct nodes (STRICT_SPREAD)" if strategy == "STRICT_SPREAD" else "in all"
        return (f"{len(bundles)} bundles of {bundle} need more room than the cluster has at its largest "
                f"({sum(slots)} {how})")
    return None


def check(stage: str, bundles: Sequence[Mapping[str, float]], strategy: str = "PACK", fix: str = "",
          path: str | None = None) -> None:
    """ConfigError when the cluster (``MUJO_CLUSTER_CONFIG`` or ``path``) can never place ``stage``'s bundles."""
    found = node_types(path)
    if found is None:
        return
    where, types = found
    why = unsatisfiable(bundles, types, strategy)
    if why:
        shape = f"{len(bundles)} x {dict(bundles[0])}" + (f" ({strategy})" if len(bundles) > 1 else "")
        raise ConfigError(f"{stage} asks for {shape}, which this cluster "
                          f"can never place: {why}. Node types ({where}): {_describe(types)}."
                          + (f" {fix}" if fix else ""))


def pretrain_bundles(pc) -> list[dict[str, float]]:
    """The Train workers a pretraining run needs at least (``min_workers`` of an elastic group)."""
    bundle = {"CPU": pc.cpus_per_worker, **({"GPU": 1.0} if pc.use_gpu else {})}
    return [bundle] * (pc.min_workers or max(pc.num_workers, 1))


def check_pretrain(pc, path: str | None = None) -> None:
    """The pretraining run's Train workers (none with ``num_workers: 0``, which trains in the driver)."""
    if pc.num_workers == 0:
        return
    check("pretrain", pretrain_bundles(pc), pc.placement_strategy, path=path,
          fix="Lower pretrain.num_workers (or its min) or pretrain.cpus_per_worker, change pretrain.use_gpu or "
              "pretrain.placement_strategy, or add a node type that can hold them.")


def check_config(cfg, path: str | None = None) -> None:
    """Every stage's request in ``cfg`` against the cluster's node types (what a job checks before any work; a
    stage the job does not run is checked as well: one bad setting in a shared config fails every job at once)."""
    if node_types(path) is None:
        return
    check_pretrain(cfg.pretrain, path)
    ev, pp, ft, pr, em = cfg.evaluate, cfg.preprocess, cfg.finetune, cfg.predict, cfg.embed
    stages = [("the fan-out (a Tune trial)", {"CPU": ev.cpus_per_trial, "GPU": ev.gpus_per_trial},
               "evaluate.cpus_per_trial / evaluate.gpus_per_trial"),
              ("preprocessing (a file worker)", {"CPU": pp.window_cpus}, "preprocess.window_cpus"),
              ("finetune (its training task)", {"CPU": ft.cpus, "GPU": ft.gpus}, "finetune.cpus / finetune.gpus"),
              ("predict (a model actor)", {"CPU": pr.cpus_per_actor, "GPU": pr.num_gpus},
               "predict.cpus_per_actor / predict.num_gpus"),
              ("embed (a model actor)", {"CPU": em.cpus_per_actor, "GPU": em.num_gpus},
               "embed.cpus_per_actor / embed.num_gpus")]
    for stage, bundle, fields in stages:
        check(stage, [bundle], path=path, fix=f"Lower {fields}, or add a node type that can hold it.")


__all__ = ["ENV", "check", "check_config", "check_pretrain", "node_types", "pretrain_bundles", "unsatisfiable"]
