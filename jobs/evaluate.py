"""Evaluate a pretrained model on any preprocessed or ingested dataset: the Ray Tune fine-tuning fan-out
(inputs x setting x label fraction x seed x calibration) and zero-shot, as tables and plots.
(jobs/fanout.py and jobs/zeroshot.py run either alone.)

    python jobs/ingest.py --dataset mhealth --source /data/MHEALTHDATASET --out runs/eval
    python jobs/evaluate.py --config jobs/configs/evaluate.yaml --set evaluate.dataset=mhealth
"""

from _common import evaluation_inputs, parse, print_results, run

from mujo.workflows import run_evaluation


def main() -> None:
    cfg = parse(__doc__.splitlines()[0])
    calibrations = [*cfg.evaluate.calibrations, *(cfg.evaluate.zero_shot_calibrations if cfg.evaluate.zero_shot
                                                  else [])]
    artefact, manifest, reference = evaluation_inputs(cfg, calibrations)
    out = run_evaluation(cfg, artefact, manifest, reference)
    print_results(out)


if __name__ == "__main__":
    run(main)
