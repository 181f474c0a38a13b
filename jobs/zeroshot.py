"""Zero-shot alone (top-1/3/5 Macro F1, per input and calibration) of a pretrained model, and of
evaluate.zero_shot_models, on one dataset; zeroshot.md and zeroshot.csv under <run>/results/<dataset>/.

    python jobs/zeroshot.py --config jobs/configs/evaluate.yaml --set evaluate.dataset=mhealth
"""

from _common import evaluation_inputs, parse, print_results, run

from mujo.workflows import run_zero_shot_stage


def main() -> None:
    cfg = parse(__doc__.splitlines()[0])
    artefact, manifest, reference = evaluation_inputs(cfg, cfg.evaluate.zero_shot_calibrations)
    out = run_zero_shot_stage(cfg, artefact, manifest, reference)
    print_results(out)


if __name__ == "__main__":
    run(main)
