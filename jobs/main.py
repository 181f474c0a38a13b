"""The main job: generate a synthetic corpus, window it with Ray Data, pretrain on Ray Train, fan the downstream
evaluation out on Ray Tune, and print the Macro F1 table.

    python jobs/main.py --config jobs/configs/main.yaml
    ray job submit --runtime-env jobs/runtime_env.yaml -- python jobs/main.py --config jobs/configs/main.yaml
"""

from _common import echo, parse, run

from mujo.workflows import run_main


def main() -> None:
    cfg = parse(__doc__.splitlines()[0])
    out = run_main(cfg)
    echo()
    echo(out["table"])
    echo(f"pretraining: {out['pretrain']}")
    echo(f"trials: {out['trials']} ({out['failed_trials']} failed); stage times (s): {out['timings_s']}")
    echo(f"results, plot and pretrained model under: {out['results']} and {out['artefact']}")
    echo(f"TensorBoard (pretraining and every trial): {out['tensorboard']}")


if __name__ == "__main__":
    run(main)
