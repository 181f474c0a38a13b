"""Contrastive pretraining on Ray Train from a preprocessed dataset (pretrain.dataset); resumes a run of the same
name from its latest checkpoint.

    python jobs/pretrain.py --config jobs/configs/main.yaml
"""

from _common import parse, run

from mujo.pipelines.preprocess import read_manifest
from mujo.train.pretrain import pretrain
from mujo.workflows import prepare


def main() -> None:
    cfg = parse(__doc__.splitlines()[0])
    run_dir = prepare(cfg)
    result, artefact = pretrain(cfg, read_manifest(run_dir, cfg.pretrain.dataset))
    print(f"pretrained model: {artefact}; last metrics: {result.metrics}")


if __name__ == "__main__":
    run(main)
