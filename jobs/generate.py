"""Generate the synthetic corpus (raw clips) with Ray tasks, to local storage or S3.

    python jobs/generate.py --config jobs/configs/main.yaml
    ray job submit --runtime-env jobs/runtime_env.yaml -- python jobs/generate.py --config jobs/configs/main.yaml
"""

from _common import echo, parse, run

from mujo.pipelines.generate import generate
from mujo.workflows import prepare


def main() -> None:
    cfg = parse(__doc__.splitlines()[0])
    run_dir = prepare(cfg)
    for name, card in generate(cfg.generate, run_dir).items():
        echo(f"{name}: {card['clips']} clips ({card['hours']:.2f} h) written, {card['skipped_parts']} parts kept")


if __name__ == "__main__":
    run(main)
