"""Evaluate a pretrained model on any preprocessed or ingested dataset: the Ray Tune fine-tuning fan-out
(inputs x setting x label fraction x seed x calibration) and zero-shot, as tables and plots.

    python jobs/ingest.py --dataset mhealth --source /data/MHEALTHDATASET --out runs/eval
    python jobs/evaluate.py --config jobs/configs/evaluate.yaml --set evaluate.dataset=mhealth
"""

from _common import parse

from mujo import storage
from mujo.workflows import ensure_manifest, prepare, run_evaluation


def main() -> None:
    cfg = parse(__doc__.splitlines()[0])
    run_dir = prepare(cfg)
    artefact = cfg.evaluate.pretrained or storage.join(run_dir, "pretrain", "model")
    manifest = ensure_manifest(cfg, cfg.evaluate.dataset)
    needs_reference = any(c != "none" for c in [*cfg.evaluate.calibrations, *cfg.evaluate.zero_shot_calibrations])
    reference = ensure_manifest(cfg, cfg.pretrain.dataset) if needs_reference else None
    out = run_evaluation(cfg, artefact, manifest, reference)
    print()
    print(out["table"])
    print(f"results under {out['results']}")


if __name__ == "__main__":
    main()
