"""Train one classifier (inputs, setting, label fraction, calibration, seed) on a preprocessed dataset and save it
as a versioned artefact folder (weights, classes, window contract, calibration, metrics, provenance).

    python jobs/finetune.py --config jobs/configs/finetune.yaml
    python jobs/finetune.py --config jobs/configs/finetune.yaml --set finetune.inputs=[acc] --set finetune.seed=3
"""

from _common import echo, parse, run


def main() -> None:
    cfg = parse(__doc__.splitlines()[0])
    from mujo.classifiers import run_finetune_job
    from mujo.run import RunLayout
    from mujo.workflows import ensure_manifest, prepare

    run_dir = prepare(cfg)
    pretrained = cfg.finetune.pretrained or RunLayout(run_dir).pretrained
    manifest = ensure_manifest(cfg, cfg.finetune.dataset)
    reference = ensure_manifest(cfg, cfg.pretrain.dataset) if cfg.finetune.calibration != "none" else None
    out = run_finetune_job(cfg, manifest, pretrained, reference)
    echo()
    echo(f"classifier {'+'.join(cfg.finetune.inputs)} {cfg.finetune.setting} at {cfg.finetune.fraction:g} of the "
          f"labels: val Macro F1 {out['val_macro_f1']:.3f}, test Macro F1 {out['test_macro_f1']:.3f} "
          f"(best epoch {out['best_epoch']} of {out['epochs_run']})")
    echo(f"artefact: {out['artefact']}")


if __name__ == "__main__":
    run(main)
