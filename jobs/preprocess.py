"""Window raw clips into sample shards with Ray Data (every dataset of generate.datasets, or --set-selected ones).

    python jobs/preprocess.py --config jobs/configs/main.yaml
"""

from _common import echo, parse, run

from mujo.pipelines.preprocess import check_inputs, preprocess
from mujo.raysession import init_ray
from mujo.workflows import prepare


def main() -> None:
    cfg = parse(__doc__.splitlines()[0])
    run_dir = prepare(cfg, start_ray=False)
    datasets = {spec.name: spec.video_dim for spec in cfg.generate.datasets}
    check_inputs(datasets, run_dir)  # bad input is one line before Ray starts
    init_ray(cfg.ray)
    manifests = preprocess(datasets, run_dir, cfg.preprocess)
    for name, m in manifests.items():
        q = m.quarantine
        echo(f"{name}: windows {m.rows}, quarantined clips {q.clips} ({q.count} entries, {q.files} whole files)")


if __name__ == "__main__":
    run(main)
