"""Window raw clips into sample shards with Ray Data (every dataset of generate.datasets, or --set-selected ones).

    python jobs/preprocess.py --config jobs/configs/main.yaml
"""

from _common import parse, run

from mujo.pipelines.preprocess import preprocess
from mujo.workflows import prepare


def main() -> None:
    cfg = parse(__doc__.splitlines()[0])
    run_dir = prepare(cfg)
    manifests = preprocess({spec.name: spec.video_dim for spec in cfg.generate.datasets}, run_dir, cfg.preprocess)
    for name, m in manifests.items():
        print(f"{name}: windows {m['rows']}, quarantined clips {m['quarantine']['count']}")


if __name__ == "__main__":
    run(main)
