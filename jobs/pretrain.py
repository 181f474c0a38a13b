"""Contrastive pretraining on Ray Train from a preprocessed dataset (pretrain.dataset); resumes a run of the same
name from its latest checkpoint.

    python jobs/pretrain.py --config jobs/configs/main.yaml
"""

from _common import echo, parse, run

from mujo.pipelines.preprocess import read_manifest
from mujo.raysession import init_ray
from mujo.train.pretrain import check_fits, pretrain
from mujo.workflows import prepare


def main() -> None:
    cfg = parse(__doc__.splitlines()[0])
    run_dir = prepare(cfg, start_ray=False)
    manifest = read_manifest(run_dir, cfg.pretrain.dataset)
    check_fits(cfg, manifest)  # an impossible batch size is one line before Ray starts
    init_ray(cfg.ray)
    result, artefact = pretrain(cfg, manifest)
    last = result.metrics or {}
    shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in last.items()
             if k in ("step", "loss_mean", "val/R@1/mean", "val/fewshot_f1/mean")}
    echo(f"pretrained model: {artefact}  {shown}")
    echo(f"TensorBoard: tensorboard --logdir {run_dir}")


if __name__ == "__main__":
    run(main)
