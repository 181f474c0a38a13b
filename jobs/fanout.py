"""The Ray Tune fine-tuning fan-out alone (inputs x setting x label fraction x seed x calibration) of a pretrained
model on one dataset; results.md, trials.csv, summary.csv and macro_f1.png under <run>/results/<dataset>/.

    python jobs/fanout.py --config jobs/configs/evaluate.yaml --set evaluate.dataset=mhealth
"""

from _common import evaluation_inputs, parse, print_results, run

from mujo.workflows import run_fanout_stage


def main() -> None:
    cfg = parse(__doc__.splitlines()[0])
    artefact, manifest, reference = evaluation_inputs(cfg, cfg.evaluate.calibrations)
    out = run_fanout_stage(cfg, artefact, manifest, reference)
    print_results(out)


if __name__ == "__main__":
    run(main)
