"""The pretraining search job: Ray Tune over learning rate, projection depth/width, dropout, activation, temperature
and loss form (random search or Optuna, ASHA early stopping); each trial a Ray Train pretraining run.

    python jobs/search.py --config jobs/configs/search.yaml
    ray job submit --runtime-env jobs/runtime_env.yaml -- python jobs/search.py --config jobs/configs/search.yaml

Generates and preprocesses the pretraining dataset when the run has no manifest for it. Leaves under
<run_dir>/search/: best.json (the best trial's full config, metric, artefact), best_model/ (its model artefact),
trials.json, and every trial's TensorBoard files (tensorboard --logdir <run_dir>/search).
"""

import logging

from _common import echo, parse, run

from mujo.tune.search import ensure_manifest, run_search
from mujo.workflows import prepare


def main() -> None:
    cfg = parse(__doc__.splitlines()[0])
    # Tune's TensorBoard logger: tensorboardX logs each renamed tag ('val/R@1/mean' -> 'val/R_1/mean') at INFO
    logging.getLogger("tensorboardX").setLevel(logging.WARNING)
    run_dir = prepare(cfg)
    manifest = ensure_manifest(cfg, run_dir)
    out = run_search(cfg, manifest)
    best = out["best"]
    echo()
    for r in out["trials"]:
        metric = "-" if r["metric"] is None else f"{r['metric']:.3f}"
        echo(f"{r['trial_id']}: {r['status']:<9} {r['iterations']:>4}/{r['expected_iterations']} iterations  "
              f"{best['metric']}={metric}  {r['values']}")
    echo(f"\nbest trial {best['trial_id']} ({best['status']}): {best['metric']}={best['value']:.4f} "
          f"with {best['values']}")
    echo(f"best config and model: {out['best_json']} and {best['artefact']}")
    echo(f"TensorBoard: tensorboard --logdir {best['tensorboard_logdir']}")


if __name__ == "__main__":
    run(main)
